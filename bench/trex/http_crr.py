"""TRex ASTF profile: HTTP connect-request-close against shardnet's `http` rule.

Each connection does a handshake, one GET, the response, and the close:
connections per second, the cost of accept, TCB set-up and teardown. TRex
plays the clients only (start TRex with `--astf --astf-client-mask 0x1`); the
server template mirrors shardnet for TRex-to-TRex self-tests.

    trex> start -f bench/trex/http_crr.py -m 100 \
            -t dut_ip=198.18.0.1,client_min=198.19.0.1,client_max=198.19.255.254

Who closes first decides who holds TIME-WAIT:
  --close_by client  (default) the request is kept alive and TRex closes once
                     the response is in: TIME-WAIT on TRex's side, shardnet's
                     connection table holds only live connections.
  --close_by server  the request says `Connection: close`; shardnet answers
                     with `Connection: close` and closes first: each connection
                     then sits in shardnet's TIME-WAIT for [tcp] time_wait_ms
                     (tcp_connections_time_wait); at high rates size
                     max_connections_per_worker for cps x time_wait.
Other tunables as in http_keepalive.py: --dut_ip, --client_min, --client_max,
--dport, --body (the DUT's [http] body, exactly) or --body_len, --cps.
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


def http_request(host, server_close):
    """A minimal HTTP/1.1 GET, with `Connection: close` when the server is
    to close first."""
    connection = "Connection: close\r\n" if server_close else ""
    return ("GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: trex\r\n{}\r\n"
            .format(host, connection)).encode()


def http_response(body, server_close):
    """What shardnet's http service answers to that GET, byte for byte
    (src/service/http.rs, build_response)."""
    body = body.encode()
    connection = "Connection: close\r\n" if server_close else ""
    head = ("HTTP/1.1 200 OK\r\nServer: shardnet\r\nContent-Type: text/plain\r\n"
            "Content-Length: {}\r\n{}\r\n".format(len(body), connection)).encode()
    return head + body


def parse_tunables(tunables):
    parser = argparse.ArgumentParser(
        description="Argparser for {}".format(os.path.basename(__file__)),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dut_ip", default="198.18.0.1", help="shardnet's address")
    parser.add_argument("--client_min", default="198.19.0.1", help="first client address")
    parser.add_argument("--client_max", default="198.19.255.254", help="last client address")
    parser.add_argument("--dport", type=int, default=80, help="the DUT's http port")
    parser.add_argument("--body", default=DEFAULT_BODY, help="the DUT's [http] body")
    parser.add_argument("--body_len", type=int, default=None,
                        help="the length of the DUT's [http] body, in bytes, instead of --body")
    parser.add_argument("--close_by", choices=["client", "server"], default="client",
                        help="which side closes first (holds TIME-WAIT)")
    parser.add_argument("--cps", type=float, default=1000.0, help="connections per second at -m 1")
    args = parser.parse_args(tunables)
    if args.body_len is not None:
        if not 0 <= args.body_len <= 1 << 20:
            parser.error("body_len must be 0-1048576 (shardnet's limit)")
        # Only the length matters: TRex counts the response's bytes.
        args.body = "x" * args.body_len
    if not 1 <= args.dport <= 65535:
        parser.error("dport must be 1-65535")
    if args.cps <= 0:
        parser.error("cps must be positive")
    return args


class Prof1(object):
    def __init__(self):
        pass

    def create_profile(self, args):
        server_close = args.close_by == "server"
        req = http_request(args.dut_ip, server_close)
        resp = http_response(args.body, server_close)

        prog_c = ASTFProgram()
        prog_c.send(req)
        prog_c.recv(len(resp))
        if server_close:
            # shardnet's FIN follows the response; answer it.
            prog_c.wait_for_peer_close()
        # Otherwise the end of the program closes: client FIN first.

        prog_s = ASTFProgram()
        prog_s.recv(len(req))
        prog_s.send(resp)
        if not server_close:
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
