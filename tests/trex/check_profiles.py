#!/usr/bin/python3
"""Checks bench/trex's TRex profiles without TRex (not installable here):
imports each profile against the stand-in modules in stubs/, builds its
packets with scapy and checks their bytes (lengths, checksums, ports, the
64-byte frame, the HTTP request), runs the ASTF client program against its
server program, and checks the tunables.

    /usr/bin/python3 tests/trex/check_profiles.py            # the checks
    /usr/bin/python3 tests/trex/check_profiles.py --emit-http
        # one JSON line per ASTF case: the request bytes and the response
        # length TRex waits for; tests/kit.rs feeds them to shardnet's real
        # http service and compares.

Exits non-zero with one line per failure. Run by tests/kit.rs.
"""

import importlib.util
import ipaddress
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TREX = os.path.join(ROOT, "bench", "trex")
sys.path.insert(0, os.path.join(HERE, "stubs"))

from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
    return cond


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TREX, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def refused(fn, tunables):
    """Whether the profile's argparse refuses these tunables."""
    stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")
    try:
        fn(tunables)
    except SystemExit as e:
        return e.code != 0
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    return False


def checksums_ok(frame):
    """IPv4 and L4 checksums of `frame` as a receiver checks them."""
    pkt = Ether(frame)
    rebuilt = pkt.copy()
    del rebuilt[IP].chksum
    l4 = UDP if UDP in pkt else TCP
    del rebuilt[l4].chksum
    rebuilt = Ether(bytes(rebuilt))
    return (pkt[IP].chksum == rebuilt[IP].chksum and pkt[l4].chksum == rebuilt[l4].chksum
            and pkt[l4].chksum != 0)


def field_offset(pkt, spec):
    """The byte offset of `LAYER.field` in pkt's bytes (what TRex's
    pkt_offset names), found by changing the field and diffing the bytes."""
    layer, field = spec.split(".")
    cls = {"IP": IP, "UDP": UDP, "TCP": TCP, "Ether": Ether}[layer]
    # A parsed copy keeps its checksums as fixed values: only the field changes.
    base = Ether(bytes(pkt))
    a = bytes(base)
    other = base.copy()
    old = getattr(other[cls], field)
    if isinstance(old, str):
        new = "0.0.0.0" if old != "0.0.0.0" else "255.255.255.255"
    else:
        new = old ^ 0xFFFF
    setattr(other[cls], field, new)
    b = bytes(other)
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return diff[0]


def ip_int(v):
    return int(ipaddress.IPv4Address(v)) if isinstance(v, str) else v


# ---------------------------------------------------------------------------
# STL: udp64_echo.py

def check_udp64():
    mod = load("udp64_echo")
    prof = mod.register()
    streams = prof.get_streams(tunables=[])
    if not check(len(streams) == 1, "udp64_echo: one stream"):
        return
    pkt = streams[0].packet.pkt
    vm = streams[0].packet.vm
    frame = bytes(pkt)
    check(len(frame) == 60, "udp64_echo: frame is 60 bytes without FCS (64 on the wire), got {}"
          .format(len(frame)))
    e = Ether(frame)
    check(e.type == 0x0800, "udp64_echo: EtherType IPv4")
    ip = e[IP]
    check(ip.version == 4 and ip.ihl == 5, "udp64_echo: IPv4 header of 20 bytes")
    check(ip.len == 46, "udp64_echo: IPv4 total length 46, got {}".format(ip.len))
    check(ip.proto == 17, "udp64_echo: protocol UDP")
    check(ip.flags.DF or ip.frag == 0, "udp64_echo: not a fragment")
    check(ip.dst == "198.18.0.1" and ip.src == "198.19.0.1", "udp64_echo: default addresses")
    udp = e[UDP]
    check(udp.len == 26, "udp64_echo: UDP length 26, got {}".format(udp.len))
    check(udp.dport == 7, "udp64_echo: destination port 7 (echo)")
    check(udp.sport >= 1024, "udp64_echo: source port >= 1024 (echo's loop protection)")
    check(len(bytes(udp.payload)) == 18, "udp64_echo: 18 bytes of payload")
    check(checksums_ok(frame), "udp64_echo: IPv4 and UDP checksums")

    # The field engine: every variable written at a real field, within its
    # range; each (address, port) it makes is a valid frame once the NIC fixes
    # the checksums.
    fvs = {i.name: i for i in vm if type(i).__name__ == "STLVmFlowVar"}
    writes = [i for i in vm if type(i).__name__ == "STLVmWrFlowVar"]
    fixes = [i for i in vm if type(i).__name__ == "STLVmFixChecksumHw"]
    check({w.pkt_offset for w in writes} == {"IP.src", "UDP.sport"},
          "udp64_echo: the field engine writes IP.src and UDP.sport")
    check(len(fixes) == 1 and fixes[0].l3_offset == "IP" and fixes[0].l4_offset == "UDP",
          "udp64_echo: the NIC fixes the IPv4 and UDP checksums")
    seen = set()
    for pick in (min, max):
        buf = bytearray(frame)
        for w in writes:
            fv = fvs[w.fv_name]
            lo, hi = ip_int(fv.min_value), ip_int(fv.max_value)
            check(lo <= hi, "udp64_echo: {} range".format(fv.name))
            val = pick(lo, hi)
            off = field_offset(pkt, w.pkt_offset)
            buf[off:off + fv.size] = val.to_bytes(fv.size, "big")
        p = Ether(bytes(buf))
        del p[IP].chksum
        del p[UDP].chksum
        out = bytes(p)
        check(len(out) == 60 and checksums_ok(out), "udp64_echo: a field-engine frame is valid")
        q = Ether(out)
        check(q[UDP].sport >= 1024 and q[UDP].dport == 7, "udp64_echo: field-engine ports")
        check(ipaddress.IPv4Address(q[IP].src) in ipaddress.IPv4Network("198.19.0.0/24"),
              "udp64_echo: field-engine source in the client range")
        seen.add((q[IP].src, q[UDP].sport))
    check(len(seen) == 2, "udp64_echo: the field engine varies the flow")

    # Tunables.
    s = prof.get_streams(tunables=["--dut_ip", "198.18.7.1", "--dport", "9000",
                                   "--size", "128"])[0].packet.pkt
    b = bytes(s)
    check(len(b) == 128 and Ether(b)[UDP].dport == 9000 and Ether(b)[IP].dst == "198.18.7.1"
          and checksums_ok(b), "udp64_echo: tunables dut_ip, dport, size")
    check(refused(lambda t: prof.get_streams(tunables=t), ["--sport_min", "53"]),
          "udp64_echo: a source port below 1024 is refused")
    check(refused(lambda t: prof.get_streams(tunables=t), ["--size", "59"]),
          "udp64_echo: a frame under 60 bytes is refused")


# ---------------------------------------------------------------------------
# ASTF: http_keepalive.py, http_crr.py

def run_programs(client, server, limit=100000):
    """Runs an ASTF client program against a server program, TRex's way
    (send adds to the peer's byte count, recv waits for it, jmp_nz decrements
    and jumps while non-zero, the end of a program closes). Returns the
    requests the client sent and who closed first, or raises on a deadlock."""
    progs = {"c": client.commands, "s": server.commands}
    st = {k: {"pc": 0, "vars": {}, "rx": 0, "done": False} for k in progs}
    labels = {k: {c[1]: i for i, c in enumerate(v) if c[0] == "set_label"}
              for k, v in progs.items()}
    sends = {"c": 0, "s": 0}
    first_close = None
    for _ in range(limit):
        moved = False
        for side, peer in (("c", "s"), ("s", "c")):
            me = st[side]
            if me["done"]:
                continue
            if me["pc"] >= len(progs[side]):
                me["done"] = True
                first_close = first_close or side
                moved = True
                continue
            cmd = progs[side][me["pc"]]
            op = cmd[0]
            if op == "send":
                st[peer]["rx"] += len(cmd[1])
                sends[side] += 1
            elif op == "recv":
                if me["rx"] < cmd[1]:
                    continue
                if me["rx"] > cmd[1] and not cmd[2]:
                    raise AssertionError("{}: received more than it waits for".format(side))
                me["rx"] = me["rx"] - cmd[1] if cmd[2] else 0
            elif op == "set_var":
                me["vars"][cmd[1]] = cmd[2]
            elif op == "jmp_nz":
                me["vars"][cmd[1]] -= 1
                if me["vars"][cmd[1]] != 0:
                    me["pc"] = labels[side][cmd[2]]
                    moved = True
                    continue
            elif op == "wait_for_peer_close":
                if not st[peer]["done"]:
                    continue
            elif op != "set_label":
                raise AssertionError("unexpected command {}".format(op))
            me["pc"] += 1
            moved = True
        if st["c"]["done"] and st["s"]["done"]:
            return sends["c"], first_close
        if not moved:
            raise AssertionError("deadlock: client at {}, server at {}".format(
                st["c"]["pc"], st["s"]["pc"]))
    raise AssertionError("did not finish in {} steps".format(limit))


def check_http_request(name, req, host, server_close):
    text = req.decode("ascii")
    check(text.endswith("\r\n\r\n"), name + ": the request head ends with CRLF CRLF")
    lines = text[:-4].split("\r\n")
    check(lines[0] == "GET / HTTP/1.1", name + ": request line GET / HTTP/1.1")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    check(headers.get("host") == host, name + ": Host header")
    check(("connection" in headers) == server_close
          and headers.get("connection", "close").lower() == "close",
          name + ": Connection: close only when the server closes")
    check("content-length" not in headers and "transfer-encoding" not in headers,
          name + ": no request body")


def check_tcp_segment(name, req, client, dut, dport):
    """The request as TRex puts it on the wire: one segment under the MSS."""
    frame = bytes(Ether() / IP(src=client, dst=dut) / TCP(sport=1025, dport=dport, flags="PA",
                                                           seq=1, ack=1) / req)
    e = Ether(frame)
    check(e[IP].len == 20 + 20 + len(req), name + ": IPv4 total length")
    check(e[TCP].dport == dport, name + ": TCP destination port")
    check(bytes(e[TCP].payload) == req, name + ": TCP payload is the request")
    check(len(req) <= 1460, name + ": the request fits one segment")
    check(checksums_ok(frame), name + ": IPv4 and TCP checksums")


def astf_cases():
    keep = load("http_keepalive")
    crr = load("http_crr")
    return [
        ("http_keepalive", keep, [], 100, False),
        ("http_keepalive", keep, ["--requests", "3", "--body", "hello from shardnet\n",
                                  "--dport", "8080"], 3, False),
        ("http_keepalive", keep, ["--body_len", "20"], 100, False),
        ("http_crr", crr, [], 1, False),
        ("http_crr", crr, ["--close_by", "server"], 1, True),
        ("http_crr", crr, ["--close_by", "server", "--body", "x" * 3000], 1, True),
    ]


def profile_parts(mod, tunables):
    prof = mod.register().get_profile(tunables=tunables)
    tmpl = prof.templates[0]
    return prof, tmpl.client_template, tmpl.server_template


def check_astf():
    for name, mod, tunables, requests, server_close in astf_cases():
        label = "{} {}".format(name, " ".join(tunables) or "(defaults)")
        prof, c, s = profile_parts(mod, tunables)
        args = mod.parse_tunables(tunables)
        check(c.ip_gen.dist_server.ip_range == [args.dut_ip, args.dut_ip],
              label + ": the only server address is the DUT's")
        check(c.ip_gen.dist_client.ip_range == [args.client_min, args.client_max],
              label + ": the client range")
        check(c.ip_gen.glob.ip_offset == "0.0.0.0", label + ": no per-port address offset")
        check(c.port == args.dport and s.assoc.port == args.dport, label + ": the port")
        sends = [x[1] for x in c.program.commands if x[0] == "send"]
        recvs = [x[1] for x in c.program.commands if x[0] == "recv"]
        if not check(len(sends) == 1 and len(recvs) == 1, label + ": one send, one recv"):
            continue
        req = sends[0]
        check_http_request(label, req, args.dut_ip, server_close)
        check_tcp_segment(label, req, args.client_min, args.dut_ip, args.dport)
        check(recvs[0] == len(mod.http_response(args.body, server_close)
                              if name == "http_crr" else mod.http_response(args.body)),
              label + ": recv waits for the whole response")
        try:
            sent, closer = run_programs(c.program, s.program)
            check(sent == requests, label + ": {} requests per connection, got {}"
                  .format(requests, sent))
            check(closer == ("s" if server_close else "c"),
                  label + ": the {} closes first".format("server" if server_close else "client"))
        except AssertionError as e:
            check(False, label + ": client against server program: {}".format(e))
    check(refused(lambda t: load("http_crr").register().get_profile(tunables=t),
                  ["--close_by", "nobody"]), "http_crr: a bad --close_by is refused")
    check(refused(lambda t: load("http_keepalive").register().get_profile(tunables=t),
                  ["--requests", "0"]), "http_keepalive: 0 requests is refused")


def emit_http():
    for name, mod, tunables, requests, server_close in astf_cases():
        _, c, _ = profile_parts(mod, tunables)
        args = mod.parse_tunables(tunables)
        req = [x[1] for x in c.program.commands if x[0] == "send"][0]
        recv = [x[1] for x in c.program.commands if x[0] == "recv"][0]
        print(json.dumps({
            "case": "{} {}".format(name, " ".join(tunables)),
            "request": req.decode("ascii"),
            "recv_len": recv,
            "requests": requests,
            "server_close": server_close,
            "body": args.body,
        }))


def main():
    if sys.argv[1:] == ["--emit-http"]:
        emit_http()
        return 0
    check_udp64()
    check_astf()
    for f in FAILURES:
        print("FAIL: " + f)
    if FAILURES:
        print("check_profiles: {} failure(s)".format(len(FAILURES)))
        return 1
    print("check_profiles: udp64_echo, http_keepalive, http_crr OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
