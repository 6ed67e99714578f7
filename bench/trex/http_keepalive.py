"""TRex ASTF profile: HTTP/1.1 keep-alive against shardnet's `http` rule.

Each connection sends `--requests` GETs one after the other (the next once the
whole response is in) and then closes: requests per second with few
handshakes. TRex plays the clients only (start TRex with
`--astf --astf-client-mask 0x1`, or `-c` with the client ports); the server
template below mirrors what shardnet answers so the profile also runs
TRex-to-TRex as a self-test.

    trex> start -f bench/trex/http_keepalive.py -m 1000 \
            -t dut_ip=198.18.0.1,client_min=198.19.0.1,client_max=198.19.0.255

Tunables (argparse, TRex's `-t key=value,...`):
  --dut_ip       shardnet's [interface] address (the only server address)
  --client_min / --client_max
                 the client address range (off the DUT's subnet; shardnet
                 answers through its [interface] gateway, the TRex port)
  --dport        a port of the DUT's http rule (80 in production.toml)
  --body         the DUT's [http] body, exactly (the response length TRex
                 waits for depends on it); default shardnet's default
  --body_len     or only its length in bytes (config/production.toml's
                 "hello from shardnet\n": body_len=20)
  --requests     requests per connection
  --cps          new connections per second at -m 1
See bench/trex/README.md for the set-up (ARP, RSS queues, counters).
"""

import argparse
import os

from trex.astf.api import (
    ASTFAssociationRule,
    ASTFIPGen,
    ASTFIPGenDist,
    ASTFIPGenGlobal,
    ASTFProfile,
    ASTFProgram,
    ASTFTCPClientTemplate,
    ASTFTCPServerTemplate,
    ASTFTemplate,
)

# shardnet's default `[http] body`.
DEFAULT_BODY = "shardnet\n"


def http_request(host):
    """A minimal HTTP/1.1 GET: kept alive (HTTP/1.1's default)."""
    return ("GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: trex\r\n\r\n".format(host)).encode()


def http_response(body):
    """What shardnet's http service answers to a kept-alive GET, byte for byte
    (src/service/http.rs, build_response)."""
    body = body.encode()
    head = ("HTTP/1.1 200 OK\r\nServer: shardnet\r\nContent-Type: text/plain\r\n"
            "Content-Length: {}\r\n\r\n".format(len(body))).encode()
    return head + body


def parse_tunables(tunables):
    parser = argparse.ArgumentParser(
        description="Argparser for {}".format(os.path.basename(__file__)),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dut_ip", default="198.18.0.1", help="shardnet's address")
    parser.add_argument("--client_min", default="198.19.0.1", help="first client address")
    parser.add_argument("--client_max", default="198.19.0.255", help="last client address")
    parser.add_argument("--dport", type=int, default=80, help="the DUT's http port")
    parser.add_argument("--body", default=DEFAULT_BODY, help="the DUT's [http] body")
    parser.add_argument("--body_len", type=int, default=None,
                        help="the length of the DUT's [http] body, in bytes, instead of --body")
    parser.add_argument("--requests", type=int, default=100, help="requests per connection")
    parser.add_argument("--cps", type=float, default=100.0, help="connections per second at -m 1")
    args = parser.parse_args(tunables)
    if args.body_len is not None:
        if not 0 <= args.body_len <= 1 << 20:
            parser.error("body_len must be 0-1048576 (shardnet's limit)")
        # Only the length matters: TRex counts the response's bytes.
        args.body = "x" * args.body_len
    if not 1 <= args.dport <= 65535:
        parser.error("dport must be 1-65535")
    if args.requests < 1:
        parser.error("requests must be at least 1")
    if args.cps <= 0:
        parser.error("cps must be positive")
    return args


class Prof1(object):
    def __init__(self):
        pass

    def create_profile(self, args):
        req = http_request(args.dut_ip)
        resp = http_response(args.body)

        # Client: N requests on one connection, each waiting for its whole
        # response (recv counts bytes; True clears the count for the next).
        prog_c = ASTFProgram()
        prog_c.set_var("requests", args.requests)
        prog_c.set_label("next:")
        prog_c.send(req)
        prog_c.recv(len(resp), True)
        prog_c.jmp_nz("requests", "next:")
        # The end of the program closes the connection (client FIN first:
        # the TIME-WAIT stays on TRex's side).

        # Server: what shardnet does, for TRex-to-TRex runs only.
        prog_s = ASTFProgram()
        prog_s.set_var("requests", args.requests)
        prog_s.set_label("next:")
        prog_s.recv(len(req), True)
        prog_s.send(resp)
        prog_s.jmp_nz("requests", "next:")
        prog_s.wait_for_peer_close()

        ip_gen = ASTFIPGen(
            glob=ASTFIPGenGlobal(ip_offset="0.0.0.0"),
            dist_client=ASTFIPGenDist(ip_range=[args.client_min, args.client_max],
                                      distribution="seq"),
            dist_server=ASTFIPGenDist(ip_range=[args.dut_ip, args.dut_ip],
                                      distribution="seq"),
        )
        temp_c = ASTFTCPClientTemplate(program=prog_c, ip_gen=ip_gen,
                                       port=args.dport, cps=args.cps)
        temp_s = ASTFTCPServerTemplate(program=prog_s,
                                       assoc=ASTFAssociationRule(port=args.dport))
        template = ASTFTemplate(client_template=temp_c, server_template=temp_s)
        return ASTFProfile(default_ip_gen=ip_gen, templates=template)

    def get_profile(self, tunables=None, **kwargs):
        return self.create_profile(parse_tunables(tunables or []))


def register():
    return Prof1()
