#!/usr/bin/env python3
"""A kernel TCP server that counts what it serves.

usage: counting_server.py ADDRESS HTTP_PORT DISCARD_PORT

HTTP_PORT answers keep-alive HTTP/1.1 requests (each up to its blank line)
with a 2-byte body; DISCARD_PORT reads and drops everything. Prints
"listening" once both accept connections; on SIGTERM prints one JSON line,
{"requests": N, "bytes": M} (requests answered, bytes discarded), and exits.
"""
import asyncio
import json
import signal
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
counts = {"requests": 0, "bytes": 0}


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        self.pending += data
        while (end := self.pending.find(b"\r\n\r\n")) >= 0:
            self.pending = self.pending[end + 4 :]
            counts["requests"] += 1
            self.transport.write(RESPONSE)


class Discard(asyncio.Protocol):
    def data_received(self, data):
        counts["bytes"] += len(data)


async def main():
    address, http_port, discard_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    loop = asyncio.get_running_loop()
    await loop.create_server(Http, address, http_port, reuse_address=True)
    await loop.create_server(Discard, address, discard_port, reuse_address=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    await stop.wait()
    print(json.dumps(counts), flush=True)


asyncio.run(main())
