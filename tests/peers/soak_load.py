#!/usr/bin/env python3
"""A mixed, bounded load for the soak test.

usage: soak_load.py HOST DURATION_S [--http-threads N] [--udp-flows N]
                    [--udp-rate PER_S] [--slow N]

For DURATION_S seconds, at once:
- HTTP: N threads, each opening a connection, sending 1 to 3 keep-alive GETs
  (the last with "Connection: close"), reading every response (Content-Length
  framed) and closing; then the next connection. Port 80.
- UDP: one thread sending datagrams round-robin over N flows (one socket,
  hence one source port, each) to port 7 at a fixed rate, each carrying its
  flow and sequence number; every echo is matched to what was sent.
- Slowloris: N connections to port 80 that send an unfinished request head
  and then a header byte every 2 s; one the server closes is counted and
  replaced.

Every socket operation has a timeout; every loop ends with the duration (and
the UDP sender also at DURATION_S * PER_S datagrams). At the end it waits up
to 2 s for late echoes and prints one JSON object:
{"http": {"connections", "requests", "errors", "error_samples"},
 "udp": {"sent", "received", "mismatched"},
 "slow": {"opened", "closed_by_server", "errors"}}.
Exit 0 unless the arguments are wrong.
"""
import argparse
import json
import select
import socket
import threading
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
LAST_REQUEST = b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: soak\r\nX-slow: "


class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}
        self.samples = []

    def add(self, key, n=1):
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n

    def sample(self, text):
        with self.lock:
            if len(self.samples) < 10:
                self.samples.append(text)


def read_response(sock, buf):
    """Read one Content-Length framed response; returns the leftover bytes."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise ValueError(f"status line {status!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a body")
        rest += chunk
    return rest[length:]


def http_thread(host, deadline, totals, index):
    n = 0
    while time.monotonic() < deadline:
        n += 1
        requests = 1 + (n + index) % 3
        try:
            with socket.create_connection((host, 80), timeout=10) as sock:
                sock.settimeout(10)
                totals.add("connections")
                buf = b""
                for i in range(requests):
                    last = i == requests - 1
                    sock.sendall(LAST_REQUEST if last else REQUEST)
                    buf = read_response(sock, buf)
                    totals.add("requests")
                # The server closes after "Connection: close": wait for it,
                # so the close is the server's (its TIME-WAIT, not ours).
                if sock.recv(1) != b"":
                    raise ValueError("data after the last response")
        except Exception as e:  # noqa: BLE001 - every failure is counted
            totals.add("errors")
            totals.sample(f"{type(e).__name__}: {e}")


def udp_thread(host, deadline, flows, rate, totals):
    socks = []
    for _ in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        s.setblocking(False)
        socks.append(s)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    outstanding = set()
    limit = int(rate * max(deadline - time.monotonic(), 0))
    seq = 0
    start = time.monotonic()

    def receive(timeout):
        readable, _, _ = select.select(socks, [], [], timeout)
        for s in readable:
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                key = data.decode(errors="replace")
                flow = by_fd[s.fileno()]
                if key in outstanding and key.startswith(f"{flow} "):
                    outstanding.discard(key)
                    totals.add("received")
                else:
                    totals.add("mismatched")

    while time.monotonic() < deadline and seq < limit:
        # Pace: datagram `seq` leaves at start + seq / rate.
        due = start + seq / rate
        now = time.monotonic()
        receive(max(due - now, 0))
        if time.monotonic() < due:
            continue
        flow = seq % flows
        key = f"{flow} {seq}"
        try:
            socks[flow].sendto(key.encode(), (host, 7))
            outstanding.add(key)
            totals.add("sent")
        except OSError as e:
            totals.add("send_errors")
            totals.sample(f"udp send: {e}")
        seq += 1
    drain_until = time.monotonic() + 2
    while outstanding and time.monotonic() < drain_until:
        receive(0.1)
    for s in socks:
        s.close()


def slow_thread(host, deadline, totals):
    sock = None
    next_byte = 0.0
    while time.monotonic() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection((host, 80), timeout=10)
                sock.sendall(SLOW_HEAD)
                totals.add("opened")
                next_byte = time.monotonic() + 2
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                data = sock.recv(4096)
                if not data:
                    totals.add("closed_by_server")
                    sock.close()
                    sock = None
                    continue
                # A 408 (or any answer) before the close: keep reading.
                continue
            if time.monotonic() >= next_byte:
                sock.sendall(b"a")
                next_byte = time.monotonic() + 2
        except (ConnectionResetError, BrokenPipeError):
            totals.add("closed_by_server")
            if sock is not None:
                sock.close()
            sock = None
        except Exception as e:  # noqa: BLE001 - every failure is counted
            totals.add("errors")
            totals.sample(f"slow: {type(e).__name__}: {e}")
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.2)
    if sock is not None:
        sock.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("duration", type=float)
    p.add_argument("--http-threads", type=int, default=4)
    p.add_argument("--udp-flows", type=int, default=64)
    p.add_argument("--udp-rate", type=float, default=1000.0)
    p.add_argument("--slow", type=int, default=8)
    a = p.parse_args()
    deadline = time.monotonic() + a.duration
    http, udp, slow = Totals(), Totals(), Totals()
    threads = [
        threading.Thread(target=http_thread, args=(a.host, deadline, http, i))
        for i in range(a.http_threads)
    ]
    threads.append(
        threading.Thread(
            target=udp_thread, args=(a.host, deadline, a.udp_flows, a.udp_rate, udp)
        )
    )
    threads += [
        threading.Thread(target=slow_thread, args=(a.host, deadline, slow))
        for _ in range(a.slow)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {
        "http": {
            "connections": http.values.get("connections", 0),
            "requests": http.values.get("requests", 0),
            "errors": http.values.get("errors", 0),
            "error_samples": http.samples,
        },
        "udp": {
            "sent": udp.values.get("sent", 0),
            "received": udp.values.get("received", 0),
            "mismatched": udp.values.get("mismatched", 0),
            "send_errors": udp.values.get("send_errors", 0),
            "error_samples": udp.samples,
        },
        "slow": {
            "opened": slow.values.get("opened", 0),
            "closed_by_server": slow.values.get("closed_by_server", 0),
            "errors": slow.values.get("errors", 0),
            "error_samples": slow.samples,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
