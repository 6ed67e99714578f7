#!/usr/bin/env python3
"""A kernel TCP echo server: usage: echo_server.py ADDRESS PORT. Prints
"listening" once it accepts connections; serves each on a thread."""
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


with Server((sys.argv[1], int(sys.argv[2])), Echo) as server:
    print("listening", flush=True)
    server.serve_forever()
