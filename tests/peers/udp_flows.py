#!/usr/bin/python3
"""A Linux UDP client: N flows (distinct source ports), M datagrams each, every
echo checked byte for byte. Prints one JSON object. Bounded in count and time."""
import argparse, json, os, select, socket, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--dst", required=True)
ap.add_argument("--port", type=int, default=7)
ap.add_argument("--flows", type=int, default=64)
ap.add_argument("--packets", type=int, default=8, help="datagrams per flow")
ap.add_argument("--min-size", type=int, default=1)
ap.add_argument("--max-size", type=int, default=1400)
ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for echoes")
ap.add_argument("--expect-echo", type=int, default=1, help="0: expect no reply (discard)")
args = ap.parse_args()

socks = []
for _ in range(args.flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.setblocking(False)
    socks.append(s)

sent = {}      # (sport, seq) -> payload
flows = []
for i, s in enumerate(socks):
    sport = s.getsockname()[1]
    flows.append(sport)
    for seq in range(args.packets):
        size = args.min_size + (i * 131 + seq * 17) % (args.max_size - args.min_size + 1)
        head = f"{sport}:{seq}:".encode()
        payload = (head + os.urandom(max(0, size - len(head))))[:max(size, len(head))]
        sent[(sport, seq)] = payload
        s.sendto(payload, (args.dst, args.port))
        if seq % 4 == 3:
            time.sleep(0.0005)  # pace: the stack's RX ring is not the thing under test

received, mismatched, duplicates, unexpected_source = 0, 0, 0, 0
seen = set()
fd_sock = {s.fileno(): s for s in socks}
poller = select.poll()
for s in socks:
    poller.register(s, select.POLLIN)
deadline = time.time() + (args.timeout if args.expect_echo else 1.0)
while time.time() < deadline and received < len(sent):
    for fd, _ in poller.poll(100):
        s = fd_sock[fd]
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            if addr != (args.dst, args.port):
                unexpected_source += 1
                continue
            sport = s.getsockname()[1]
            try:
                seq = int(data.split(b":")[1])
            except (IndexError, ValueError):
                mismatched += 1
                continue
            key = (sport, seq)
            if key in seen:
                duplicates += 1
            elif sent.get(key) == data:
                seen.add(key)
                received += 1
            else:
                mismatched += 1

json.dump({"sent": len(sent), "received": received, "mismatched": mismatched,
           "duplicates": duplicates, "unexpected_source": unexpected_source,
           "flows": flows, "packets_per_flow": args.packets}, sys.stdout)
print()
