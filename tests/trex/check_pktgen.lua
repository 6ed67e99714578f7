-- Runs bench/trex/pktgen_udp64.lua against a stand-in `pktgen` table (pktgen
-- is not installable here) and checks what it configures: a 64-byte UDP
-- stream to the DUT's echo port, a source range for RSS, range mode on.
--   lua5.4 tests/trex/check_pktgen.lua SCRIPT            (SN_DUT_MAC set)
--   lua5.4 tests/trex/check_pktgen.lua SCRIPT --no-mac   (expects the error)
local script, mode = arg[1], arg[2]
local calls = {}
local function rec(name)
    return function(...)
        local t = { ... }
        calls[#calls + 1] = name .. "(" .. table.concat(t, ",", 1, select("#", ...)) .. ")"
    end
end
local range = setmetatable({}, { __index = function(_, k) return rec("range." .. k) end })
pktgen = setmetatable({ range = range }, { __index = function(_, k) return rec(k) end })

local ok, err = pcall(dofile, script)
if mode == "--no-mac" then
    if ok or not string.find(tostring(err), "set SN_DUT_MAC", 1, true) then
        print("FAIL: no SN_DUT_MAC: expected the error, got " .. tostring(err))
        os.exit(1)
    end
    print("check_pktgen: refuses to run without SN_DUT_MAC")
    os.exit(0)
end
if not ok then
    print("FAIL: " .. tostring(err))
    os.exit(1)
end
local have = {}
for _, c in ipairs(calls) do have[c] = true end
local mac = os.getenv("SN_DUT_MAC")
local want = {
    "set_mac(0,dst," .. mac .. ")",
    "set_ipaddr(0,dst,198.18.0.1)",
    "set_ipaddr(0,src,198.18.0.2/24)",
    "set_proto(0,udp)",
    "set(0,size,64)",
    "set(0,dport,7)",
    "range.dst_mac(0,start," .. mac .. ")",
    "range.src_ip(0,min,198.19.0.1)",
    "range.src_ip(0,max,198.19.0.255)",
    "range.src_ip(0,inc,0.0.0.1)",
    "range.src_port(0,min,1024)",
    "range.src_port(0,max,65535)",
    "range.dst_port(0,start,7)",
    "range.dst_port(0,inc,0)",
    "range.ip_proto(0,udp)",
    "range.pkt_size(0,start,64)",
    "range.pkt_size(0,max,64)",
    "set_range(0,on)",
}
local failed = 0
for _, w in ipairs(want) do
    if not have[w] then
        print("FAIL: pktgen_udp64.lua does not call " .. w)
        failed = failed + 1
    end
end
if have["start(0)"] then
    print("FAIL: started without SN_START=1")
    failed = failed + 1
end
if failed > 0 then os.exit(1) end
print("check_pktgen: " .. #calls .. " calls, all expected ones present")
