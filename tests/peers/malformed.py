#!/usr/bin/python3
"""Send crafted malformed frames at the stack with scapy and print how many of
each kind went out, as JSON. The kinds map to shardnet's drop reasons."""
import argparse, json, sys
from scapy.all import Ether, IP, UDP, ICMP, Raw, sendp, raw, conf

conf.verb = 0
ap = argparse.ArgumentParser()
ap.add_argument("--iface", required=True)
ap.add_argument("--dst-mac", required=True)
ap.add_argument("--src-ip", required=True)
ap.add_argument("--dst-ip", required=True)
ap.add_argument("--count", type=int, default=5)
ap.add_argument("--skip", action="append", default=[], help="a kind not to send")
args = ap.parse_args()

src_mac = open(f"/sys/class/net/{args.iface}/address").read().strip()
eth = Ether(src=src_mac, dst=args.dst_mac, type=0x0800)
good = IP(src=args.src_ip, dst=args.dst_ip) / UDP(sport=40000, dport=7) / Raw(b"x" * 32)
good_bytes = raw(good)

def ip_with(**fields):
    return raw(IP(src=args.src_ip, dst=args.dst_ip, **fields) / UDP(sport=40001, dport=7) / Raw(b"y" * 16))

kinds = {}
# An IPv4 header checksum that is wrong.
kinds["bad_ip_checksum"] = eth / IP(src=args.src_ip, dst=args.dst_ip, chksum=0x1234) / UDP(sport=40002, dport=7) / Raw(b"z" * 8)
# Version 6 in an IPv4 ethertype frame.
b = bytearray(good_bytes); b[0] = (6 << 4) | 5
kinds["bad_version"] = eth / Raw(bytes(b))
# IHL 4 (16 bytes): shorter than the minimum header.
b = bytearray(good_bytes); b[0] = (4 << 4) | 4
kinds["bad_header_length"] = eth / Raw(bytes(b))
# Total length beyond the frame.
kinds["bad_total_length"] = eth / Raw(ip_with(len=1400)[:60])
# A fragment (more-fragments set).
kinds["fragment"] = eth / IP(src=args.src_ip, dst=args.dst_ip, flags="MF", frag=0) / UDP(sport=40003, dport=7) / Raw(b"f" * 16)
# A UDP checksum that is wrong.
kinds["bad_l4_checksum"] = eth / IP(src=args.src_ip, dst=args.dst_ip) / UDP(sport=40004, dport=7, chksum=0x4321) / Raw(b"c" * 16)
# A UDP length field beyond the IP payload.
kinds["malformed"] = eth / IP(src=args.src_ip, dst=args.dst_ip) / UDP(sport=40005, dport=7, len=200) / Raw(b"m" * 8)
# An IPv4 header cut short (12 of its 20 bytes).
kinds["truncated"] = eth / Raw(good_bytes[:12])

for name in args.skip:
    del kinds[name]
for name, frame in kinds.items():
    sendp(frame, iface=args.iface, count=args.count)
json.dump({name: args.count for name in kinds}, sys.stdout)
print()
