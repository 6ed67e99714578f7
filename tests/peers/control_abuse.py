#!/usr/bin/env python3
"""Slow and oversized requests against an HTTP endpoint, all at once.

usage: control_abuse.py HOST PORT LIMIT_SECONDS

Each case runs on its own thread and ends within LIMIT_SECONDS; prints one
JSON object: for each case the status line the server answered (or null) and
whether and when (seconds after connecting) it closed the connection.

- silent: connects and sends nothing;
- drip: sends a request head one byte every 0.5 s, never finishing it;
- idle_keepalive: one complete keep-alive GET /healthz, then nothing;
- big_head: a request head of 12 KiB (one long header);
- big_body: POST /reload announcing a 100 MB body, then sends 1 KiB of it.
"""
import json
import socket
import sys
import threading
import time

HOST, PORT, LIMIT = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def run(name, results, action):
    start = time.monotonic()
    out = {"status": None, "closed_after": None}
    try:
        s = socket.create_connection((HOST, PORT), timeout=2)
    except OSError as e:
        out["error"] = f"connect: {e}"
        results[name] = out
        return
    data = b""

    def read_some(timeout):
        nonlocal data
        s.settimeout(max(timeout, 0.01))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            out["closed_after"] = round(time.monotonic() - start, 2)
            return False
        data += chunk
        return True

    try:
        action(s, read_some, start)
    except OSError:
        pass
    while out["closed_after"] is None and time.monotonic() - start < LIMIT:
        if not read_some(LIMIT - (time.monotonic() - start)):
            break
    if data.startswith(b"HTTP/1.1 "):
        out["status"] = int(data[9:12])
    s.close()
    results[name] = out


def silent(s, read_some, start):
    pass


def drip(s, read_some, start):
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-slow: " + b"a" * 1000
    for byte in head:
        if time.monotonic() - start > LIMIT:
            return
        s.sendall(bytes([byte]))
        if not read_some(0.5):
            return


def idle_keepalive(s, read_some, start):
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")


def big_head(s, read_some, start):
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-big: " + b"a" * 12288 + b"\r\n\r\n")


def big_body(s, read_some, start):
    s.sendall(b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    s.sendall(b"x" * 1024)


def main():
    results = {}
    threads = [
        threading.Thread(target=run, args=(name, results, fn))
        for name, fn in [
            ("silent", silent),
            ("drip", drip),
            ("idle_keepalive", idle_keepalive),
            ("big_head", big_head),
            ("big_body", big_body),
        ]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIMIT + 5)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
