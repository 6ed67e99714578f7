#!/usr/bin/env python3
"""Open many idle TCP connections to one address and hold them.

usage: conn_flood.py HOST PORT COUNT OPEN_SECONDS HOLD_SECONDS

Opens up to COUNT connections (sending nothing), for at most OPEN_SECONDS,
prints {"opened": N, "failed": N} on one line, holds them HOLD_SECONDS (or
until stdin closes, whichever is first), then prints {"closed_by_server": N}
(how many the server had closed) and exits 0. Bounded in count and time.
"""
import json
import resource
import select
import socket
import sys
import time


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    count, open_s, hold_s = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, count + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks, failed = [], 0
    start = time.monotonic()
    while len(socks) < count and time.monotonic() - start < open_s:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((host, port))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    print(json.dumps({"opened": len(socks), "failed": failed}), flush=True)
    # Hold, until the time is up or the caller closes stdin.
    select.select([sys.stdin], [], [], hold_s)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print(json.dumps({"closed_by_server": closed}), flush=True)


if __name__ == "__main__":
    main()
