#!/usr/bin/python3
"""Open one TCP connection to the stack by hand (scapy), then inject segments
it must refuse, and count the ACKs it answers with. Prints JSON.

Phases, each of --count segments sent as fast as scapy goes:
- "stale": pure ACKs far below the receive window (out of window);
- "rst": RSTs inside the window but not at RCV.NXT (RFC 5961 challenge).

The kernel of this namespace knows nothing of the connection: the caller
drops its RSTs (nftables) so that it cannot reset it."""
import argparse, json, sys, time
from scapy.all import Ether, IP, TCP, AsyncSniffer, sendp, conf

conf.verb = 0
ap = argparse.ArgumentParser()
ap.add_argument("--iface", required=True)
ap.add_argument("--dst-mac", required=True)
ap.add_argument("--src-ip", required=True)
ap.add_argument("--dst-ip", required=True)
ap.add_argument("--port", type=int, default=7)
ap.add_argument("--count", type=int, default=2000)
args = ap.parse_args()

SPORT = 47123
ISN = 1000
src_mac = open(f"/sys/class/net/{args.iface}/address").read().strip()
eth = Ether(src=src_mac, dst=args.dst_mac)
ip = IP(src=args.src_ip, dst=args.dst_ip)

def from_stack(p):
    return TCP in p and p[IP].src == args.dst_ip and p[TCP].sport == args.port and p[TCP].dport == SPORT

syn_ack = None
for _ in range(3):
    sniffer = AsyncSniffer(iface=args.iface, lfilter=from_stack, store=True, count=1)
    sniffer.start()
    time.sleep(0.2)
    sendp(eth / ip / TCP(sport=SPORT, dport=args.port, flags="S", seq=ISN, window=65535),
          iface=args.iface)
    sniffer.join(timeout=2)
    if sniffer.running:
        sniffer.stop()
    if sniffer.results:
        syn_ack = sniffer.results[0]
        break
if syn_ack is None or syn_ack[TCP].flags != "SA":
    print(json.dumps({"error": "no SYN-ACK"}))
    sys.exit(1)
rcv = (syn_ack[TCP].seq + 1) % 2**32
snd = ISN + 1
sendp(eth / ip / TCP(sport=SPORT, dport=args.port, flags="A", seq=snd, ack=rcv, window=65535),
      iface=args.iface)
time.sleep(0.3)

result = {"count": args.count}
phases = {
    "stale": TCP(sport=SPORT, dport=args.port, flags="A", seq=(snd - 100000) % 2**32, ack=rcv, window=65535),
    "rst": TCP(sport=SPORT, dport=args.port, flags="R", seq=snd + 100, window=65535),
}
for name, segment in phases.items():
    sniffer = AsyncSniffer(iface=args.iface, lfilter=from_stack, store=True)
    sniffer.start()
    time.sleep(0.2)
    start = time.time()
    sendp([eth / ip / segment] * args.count, iface=args.iface)
    seconds = time.time() - start
    time.sleep(0.5)
    sniffer.stop()
    answers = [p for p in sniffer.results if not p[TCP].flags & 0x04]  # not RSTs
    result[name] = {"answers": len(answers), "seconds": seconds}
    time.sleep(0.6)  # past the connection's 500 ms limit before the next phase
json.dump(result, sys.stdout)
print()
