#!/usr/bin/python3
"""Spoofed and martian frames against a shardnet, sent with scapy.

  martians.py loop --iface IF --src-mac MAC --src-ip IP --dst-mac MAC --dst-ip IP
      One UDP datagram from SRC-IP port 7 to DST-IP port 7: between two echo
      services, the start of a loop. Prints {"sent": 1}.

  martians.py martians --iface IF --dst-mac MAC --dst-ip IP --peer-ip IP [--wait S]
      Frames that must get no answer: UDP echo, ICMP echo and TCP SYN from
      each martian source; UDP echo from source port 0 and from chargen's
      port; TCP with a data offset below 5; an ARP reply claiming DST-IP from
      this interface's MAC. Listens on IF meanwhile (and WAIT seconds after)
      for anything DST-MAC sends. Prints JSON: how many frames of each kind
      went out (keyed by the drop reason each should count under) and what
      came back.
"""
import argparse
import json
import sys
import threading
import time

from scapy.all import ARP, ICMP, IP, TCP, UDP, AsyncSniffer, Ether, Raw, conf, raw, sendp

conf.verb = 0
ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["loop", "martians"])
ap.add_argument("--iface", required=True)
ap.add_argument("--src-mac")
ap.add_argument("--src-ip")
ap.add_argument("--dst-mac", required=True)
ap.add_argument("--dst-ip", required=True)
ap.add_argument("--peer-ip")
ap.add_argument("--wait", type=float, default=2.0)
args = ap.parse_args()

own_mac = open(f"/sys/class/net/{args.iface}/address").read().strip()

if args.mode == "loop":
    frame = (
        Ether(src=args.src_mac, dst=args.dst_mac)
        / IP(src=args.src_ip, dst=args.dst_ip)
        / UDP(sport=7, dport=7)
        / Raw(b"one spoofed datagram")
    )
    sendp(frame, iface=args.iface)
    json.dump({"sent": 1}, sys.stdout)
    print()
    sys.exit(0)

eth = Ether(src=own_mac, dst=args.dst_mac)
# Linux's martian sources for a datagram to DST-IP (a /24): "this network",
# loopback, multicast, the limited broadcast, the subnet's broadcast, and
# DST-IP itself.
subnet_broadcast = ".".join(args.dst_ip.split(".")[:3] + ["255"])
martians = ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "255.255.255.255",
            subnet_broadcast, args.dst_ip]
frames = {"martian_source": [], "source_port_zero": [], "loop_protection": [],
          "malformed": [], "address_conflict": []}
for src in martians:
    ip = IP(src=src, dst=args.dst_ip)
    frames["martian_source"] += [
        eth / ip / UDP(sport=40000, dport=7) / Raw(b"echo me"),
        eth / ip / ICMP(type=8, id=7, seq=1) / Raw(b"ping"),
        eth / ip / TCP(sport=40001, dport=7, flags="S", seq=1000),
    ]
peer = IP(src=args.peer_ip, dst=args.dst_ip)
frames["source_port_zero"].append(eth / peer / UDP(sport=0, dport=7) / Raw(b"zero"))
frames["loop_protection"].append(eth / peer / UDP(sport=19, dport=7) / Raw(b"chargen"))
# A TCP header whose data offset says 4 words (16 bytes): to a service's
# port and to a port the rules give the kernel.
for dport in (7, 22):
    segment = bytearray(raw(TCP(sport=40002, dport=dport, flags="S", seq=1)))
    segment[12] = 4 << 4
    frames["malformed"].append(eth / IP(src=args.peer_ip, dst=args.dst_ip, proto=6) / Raw(bytes(segment)))
frames["address_conflict"].append(
    Ether(src=own_mac, dst="ff:ff:ff:ff:ff:ff")
    / ARP(op=2, hwsrc=own_mac, psrc=args.dst_ip, hwdst="ff:ff:ff:ff:ff:ff", pdst=args.dst_ip)
)

answers = []
listening = threading.Event()
sniffer = AsyncSniffer(
    iface=args.iface,
    lfilter=lambda p: Ether in p and p[Ether].src.lower() == args.dst_mac.lower(),
    prn=lambda p: answers.append(p.summary()),
    store=False,
    started_callback=listening.set,
)
sniffer.start()
if not listening.wait(10):
    sys.exit("the sniffer did not start within 10 s")
for kind in frames.values():
    sendp(kind, iface=args.iface)
time.sleep(args.wait)
sniffer.stop()
json.dump({"sent": {k: len(v) for k, v in frames.items()}, "answers": answers}, sys.stdout)
print()
