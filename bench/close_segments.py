"""Helpers of bench/close-segments.sh (issue 20, item 4).

    close_segments.py client HOST N    N sequential Connection: close
        exchanges with HOST:80 (connect, send the request, read until EOF,
        close), then the client kernel's TCP counters (nstat) per connection
        and the TIME-WAIT sockets the run left on the client, as JSON.
    close_segments.py patterns PCAP CLIENT_IP    each connection of a capture
        as its sequence of segments ('>' from the client, '<' to it, the
        flags, the payload length), with how many connections had it.
"""

import json
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter

COUNTERS = [
    "TcpInSegs", "TcpOutSegs", "TcpRetransSegs", "TcpOutRsts", "TcpEstabResets",
    "TcpExtTCPPureAcks", "TcpExtTCPHPAcks", "TcpExtDelayedACKs", "TcpExtTCPRcvCoalesce",
    "TcpExtTCPOrigDataSent", "TcpExtTW", "TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnData",
]


def nstat():
    out = subprocess.run(["nstat", "-az", "--json"], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    return data.get("kernel", data)


def time_wait_sockets():
    out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True, check=True)
    return out.stdout.count("\n")


def client(host, count):
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    tw_before, before = time_wait_sockets(), nstat()
    deadline = time.monotonic() + 120
    done = 0
    while done < count and time.monotonic() < deadline:
        with socket.create_connection((host, 80), timeout=5) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        if not reply.startswith(b"HTTP/1.1 200 "):
            sys.exit(f"close_segments: not a 200 response: {reply[:40]!r}")
        done += 1
    if done < count:
        sys.exit(f"close_segments: only {done} of {count} connections within 120 s")
    time.sleep(0.5)  # the last ACKs
    after = nstat()
    result = {"connections": done, "client_time_wait": time_wait_sockets() - tw_before}
    for key in COUNTERS:
        result[key] = round((after.get(key, 0) - before.get(key, 0)) / done, 3)
    print(json.dumps(result))


def patterns(pcap, client_ip):
    out = subprocess.run(
        ["tshark", "-r", pcap, "-Y", "tcp", "-T", "fields", "-e", "tcp.stream", "-e", "frame.time_relative",
         "-e", "ip.src", "-e", "tcp.flags.str", "-e", "tcp.len"],
        capture_output=True, text=True, check=True,
    ).stdout
    streams = {}
    for line in out.splitlines():
        stream, at, src, flags, length = (line.split("\t") + [""] * 5)[:5]
        if not stream or not length:
            continue  # a frame cut short by the capture's end
        flags = flags.replace("\u00b7", "")
        step = (">" if src == client_ip else "<") + flags + (f"({length})" if int(length) else "")
        streams.setdefault(stream, []).append((float(at), step))
    by_pattern = {}
    for steps in streams.values():
        gaps = [b[0] - a[0] for a, b in zip(steps, steps[1:])]
        by_pattern.setdefault(" ".join(s for _, s in steps), []).append(gaps)
    common = sorted(by_pattern.items(), key=lambda kv: -len(kv[1]))
    for pattern, seen in common[:6]:
        print(f"{len(seen):7d}  {pattern}  ({len(pattern.split())} segments)")
    pattern, seen = common[0]
    gaps = [round(statistics.median(g) * 1e6) for g in zip(*seen)]
    print(f"         median gaps between them, us (a busy machine changes these): {gaps}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "patterns":
        patterns(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
