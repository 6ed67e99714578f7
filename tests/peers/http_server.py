#!/usr/bin/env python3
"""A kernel HTTP server for a directory: usage: http_server.py ADDRESS PORT DIR.
Prints "listening" once it accepts connections.

Not `python3 -m http.server`: its HTTPServer looks its own name up in DNS
(socket.getfqdn) when it binds, which hangs in a namespace whose default
route leads nowhere."""
import functools
import http.server
import socketserver
import sys


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


handler = functools.partial(Quiet, directory=sys.argv[3])
with Server((sys.argv[1], int(sys.argv[2])), handler) as server:
    print("listening", flush=True)
    server.serve_forever()
