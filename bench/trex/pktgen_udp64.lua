-- pktgen-dpdk: 64-byte UDP frames to shardnet's UDP `echo` rule.
--
-- The same test as udp64_echo.py (TRex STL), for pktgen-dpdk (20.x and
-- later, range mode). Frames are 64 bytes on the wire (pktgen's size counts
-- the FCS: 60 bytes built). The source address and port walk a range so the
-- NIC's RSS spreads the flows over every shardnet worker; echo answers each
-- datagram to its source, and pktgen's RX counters show the round trip.
--
--   pktgen -l 0-4 -n 4 -a 0000:5e:00.0 -- -P -m "[1-2:3-4].0" \
--          -f bench/trex/pktgen_udp64.lua
--
-- Edit the values below, or set them in the environment before starting
-- pktgen (SN_DUT_MAC is required: shardnet's [interface] mac, see
-- bench/trex/README.md for finding it). Then `start 0` (or
-- SN_START=1 to start at once) and `page range`.

local function env(name, default)
    local v = os.getenv(name)
    if v == nil or v == "" then
        return default
    end
    return v
end

local port = env("SN_PORT", "0")
local dut_mac = env("SN_DUT_MAC", nil)
local dut_ip = env("SN_DUT_IP", "198.18.0.1")
-- pktgen's own address on the DUT's subnet (shardnet's [interface] gateway,
-- so its replies to the off-subnet clients come back to this port).
local src_cidr = env("SN_SRC_CIDR", "198.18.0.2/24")
local client_min = env("SN_CLIENT_MIN", "198.19.0.1")
local client_max = env("SN_CLIENT_MAX", "198.19.0.255")
-- At least 1024: shardnet's echo does not answer lower source ports.
local sport_min = tonumber(env("SN_SPORT_MIN", "1024"))
local sport_max = tonumber(env("SN_SPORT_MAX", "65535"))
local dport = tonumber(env("SN_DPORT", "7"))
local size = tonumber(env("SN_SIZE", "64"))
local rate = tonumber(env("SN_RATE", "100"))

if dut_mac == nil then
    error("pktgen_udp64.lua: set SN_DUT_MAC to shardnet's MAC ([interface] mac)")
end
if sport_min == nil or sport_max == nil or sport_min < 1024 or sport_max > 65535
    or sport_min > sport_max then
    error("pktgen_udp64.lua: source ports must satisfy 1024 <= SN_SPORT_MIN <= SN_SPORT_MAX <= 65535")
end
if dport == nil or dport < 1 or dport > 65535 then
    error("pktgen_udp64.lua: SN_DPORT must be 1-65535")
end
if size == nil or size < 64 or size > 1518 then
    error("pktgen_udp64.lua: SN_SIZE must be 64-1518 (with FCS)")
end

-- The single-packet settings (shown on the main page).
pktgen.set_mac(port, "dst", dut_mac)
pktgen.set_ipaddr(port, "dst", dut_ip)
pktgen.set_ipaddr(port, "src", src_cidr)
pktgen.set_proto(port, "udp")
pktgen.set(port, "sport", sport_min)
pktgen.set(port, "dport", dport)
pktgen.set(port, "size", size)
pktgen.set(port, "rate", rate)

-- Range mode: what is sent once `range` is on.
pktgen.range.dst_mac(port, "start", dut_mac)
pktgen.range.dst_ip(port, "start", dut_ip)
pktgen.range.dst_ip(port, "inc", "0.0.0.0")
pktgen.range.dst_ip(port, "min", dut_ip)
pktgen.range.dst_ip(port, "max", dut_ip)
pktgen.range.src_ip(port, "start", client_min)
pktgen.range.src_ip(port, "inc", "0.0.0.1")
pktgen.range.src_ip(port, "min", client_min)
pktgen.range.src_ip(port, "max", client_max)
pktgen.range.ip_proto(port, "udp")
pktgen.range.src_port(port, "start", sport_min)
pktgen.range.src_port(port, "inc", 1)
pktgen.range.src_port(port, "min", sport_min)
pktgen.range.src_port(port, "max", sport_max)
pktgen.range.dst_port(port, "start", dport)
pktgen.range.dst_port(port, "inc", 0)
pktgen.range.dst_port(port, "min", dport)
pktgen.range.dst_port(port, "max", dport)
pktgen.range.pkt_size(port, "start", size)
pktgen.range.pkt_size(port, "inc", 0)
pktgen.range.pkt_size(port, "min", size)
pktgen.range.pkt_size(port, "max", size)
pktgen.set_range(port, "on")

if env("SN_START", "0") == "1" then
    pktgen.start(port)
end
