#!/usr/bin/env python3
"""A TCP connection held open across a rules reload.

usage: held_conn.py HOST PORT MODE [ROUNDS]

MODE "echo": each exchange sends a line and expects the same line back.
MODE "http": each exchange sends a keep-alive GET and reads one response
(Content-Length framed) and reports its body.

Connects, does one exchange and prints "1 <result>", then for every line read
on stdin does the next exchange on the SAME connection and prints
"<n> <result>". Exits 0 after ROUNDS exchanges (default 2); any failure (reset,
timeout, wrong echo) prints "fail <n> <reason>" and exits 1.
"""
import socket
import sys


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return data


def exchange(sock, mode, n):
    if mode == "echo":
        line = f"line {n} through the same connection\n".encode()
        sock.sendall(line)
        back = read_exact(sock, len(line))
        if back != line:
            raise ValueError(f"echo mismatch: {back!r}")
        return "echoed"
    request = b"GET / HTTP/1.1\r\nHost: shardnet\r\n\r\n"
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed by the peer")
        head += chunk
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = read_exact(sock, length)
    return body.decode(errors="replace").strip() or "(empty)"


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    n = 1
    try:
        sock = socket.create_connection((host, port), timeout=5)
        print(f"{n} {exchange(sock, mode, n)}", flush=True)
        while n < rounds:
            if not sys.stdin.readline():
                raise EOFError("stdin closed before the next round")
            n += 1
            print(f"{n} {exchange(sock, mode, n)}", flush=True)
    except Exception as error:  # report every failure the same way
        print(f"fail {n} {type(error).__name__}: {error}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
