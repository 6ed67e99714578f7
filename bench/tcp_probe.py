#!/usr/bin/python3
"""The client of bench/http-vs-kernel.sh for one TCP connection, the same
against the kernel and against shardnet. Prints one JSON object.

  tcp_probe.py bulk --dst A --port P --seconds S [--congestion ALGO]
      Sends zeros in 256 KiB writes for S seconds, then stops writing and
      waits (at most 10 s) until the peer has acknowledged every byte
      (TIOCOUTQ == 0). Rate = bytes / (time of the last ACK - time of the
      connect): bytes the server took, not bytes the client buffered.
      --congestion sets TCP_CONGESTION on the socket (a network namespace
      other than the first may only make tcp_allowed_congestion_control's
      algorithms its default; a socket of root's may use any loaded one).

  tcp_probe.py rtt --dst A --port P --count N --size B [--warmup W]
      TCP_NODELAY; N round trips of B bytes each (sent whole, read back whole,
      compared), timed with time.perf_counter_ns around send and the last
      recv. Bounded: stops after --max-seconds even if N is not reached.
      The times include this interpreter's own send/recv path (a few us per
      round trip, the same against both servers).
"""
import argparse
import fcntl
import json
import socket
import struct
import sys
import termios
import time


def connect(dst, port, congestion=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if congestion:
        # Per socket: a network namespace other than the first may not make
        # an algorithm outside tcp_allowed_congestion_control its default.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
    s.settimeout(5)
    s.connect((dst, port))
    return s


def outq(s):
    """Bytes in the send queue not yet acknowledged by the peer."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def bulk(a):
    chunk = bytes(256 * 1024)
    t0 = time.perf_counter()
    s = connect(a.dst, a.port, a.congestion)
    deadline = t0 + a.seconds
    sent = 0
    while time.perf_counter() < deadline:
        sent += s.send(chunk)
    stop = time.perf_counter()
    drain_deadline = stop + 10
    while outq(s) > 0 and time.perf_counter() < drain_deadline:
        time.sleep(0.0002)
    left = outq(s)
    t1 = time.perf_counter()
    s.close()
    acked = sent - left
    print(json.dumps({"bytes_sent": sent, "bytes_acked": acked, "unacked_at_end": left,
                      "seconds": t1 - t0, "gbit_s": acked * 8 / (t1 - t0) / 1e9}))
    return 0 if left == 0 and acked > 0 else 1


def rtt(a):
    msg = bytes((i * 7 + 1) & 0xFF for i in range(a.size))
    s = connect(a.dst, a.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send, recv_into = s.send, s.recv_into
    buf = bytearray(a.size)
    view = memoryview(buf)
    ns = time.perf_counter_ns
    samples = []
    bad = 0
    deadline = time.monotonic() + a.max_seconds
    for i in range(a.warmup + a.count):
        t0 = ns()
        send(msg)
        got = 0
        while got < a.size:
            n = recv_into(view[got:])
            if n == 0:
                raise SystemExit("rtt: the server closed the connection")
            got += n
        t1 = ns()
        if buf != msg:
            bad += 1
        if i >= a.warmup:
            samples.append(t1 - t0)
        if i % 256 == 0 and time.monotonic() > deadline:
            break
    s.close()
    samples.sort()
    n = len(samples)

    def pct(p):
        return samples[min(n - 1, int(p / 100 * n))] / 1000

    print(json.dumps({"round_trips": n, "mismatched": bad, "size": a.size,
                      "min_us": samples[0] / 1000, "p50_us": pct(50), "p90_us": pct(90),
                      "p99_us": pct(99), "p999_us": pct(99.9), "max_us": samples[-1] / 1000,
                      "mean_us": sum(samples) / n / 1000}))
    return 0 if n > 0 and bad == 0 else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bulk")
    b.add_argument("--dst", required=True)
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--seconds", type=float, required=True)
    b.add_argument("--congestion", help="TCP_CONGESTION for the socket (default: the system's)")
    r = sub.add_parser("rtt")
    r.add_argument("--dst", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, default=20000)
    r.add_argument("--warmup", type=int, default=1000)
    r.add_argument("--size", type=int, default=64)
    r.add_argument("--max-seconds", type=float, default=20)
    a = p.parse_args()
    return bulk(a) if a.cmd == "bulk" else rtt(a)


if __name__ == "__main__":
    sys.exit(main())
