#!/usr/bin/env python3
"""Count UDP datagrams: usage: udp_count.py ADDRESS PORT SECONDS. Binds, prints
"listening", then after SECONDS prints the number of datagrams received."""
import socket
import sys
import time

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
deadline = time.monotonic() + float(sys.argv[3])
count = 0
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    sock.settimeout(left)
    try:
        sock.recv(65536)
        count += 1
    except socket.timeout:
        break
print(count, flush=True)
