"""TRex STL profile: 64-byte UDP frames to shardnet's UDP `echo` rule.

Every frame is 60 bytes as built (Ethernet 14 + IPv4 20 + UDP 8 + 18 bytes of
payload) and 64 on the wire with the FCS the NIC appends: the classic
minimum-size packet rate test (14.88 Mpps per 10G port). The source address
and port walk the client range so that RSS spreads the flows over every
shardnet worker; the echo service answers each datagram back to its source,
so TRex's RX counters show the round trip.

    trex> start -f bench/trex/udp64_echo.py -m 10mpps -p 0 \
            -t dut_ip=198.18.0.1,client_min=198.19.0.1,client_max=198.19.0.255

Tunables (argparse, TRex's `-t key=value,...` or `--tunables` convention):
  --dut_ip       shardnet's [interface] address (the destination)
  --client_min / --client_max
                 the source address range (off the DUT's subnet: shardnet
                 answers through its [interface] gateway, the TRex port)
  --sport_min / --sport_max
                 the source port range; at least 1024 (the echo service does
                 not answer ports below, its loop protection)
  --dport        a port of the DUT's UDP echo rule (7 in production.toml)
  --size         the frame size without FCS (default 60, i.e. 64 on the wire)
See bench/trex/README.md for the set-up (ARP, RSS queues, counters).
"""

import argparse
import os

from trex_stl_lib.api import (
    IP,
    STLPktBuilder,
    STLStream,
    STLTXCont,
    STLVmFixChecksumHw,
    STLVmFlowVar,
    STLVmWrFlowVar,
    UDP,
    CTRexVmInsFixHwCs,
    Ether,
)

# Ethernet + IPv4 + UDP headers.
HEADERS = 14 + 20 + 8
# The smallest frame without the 4-byte FCS.
MIN_FRAME = 60


def parse_tunables(tunables):
    """The profile's tunables, TRex-style (a list of `--key value` strings)."""
    parser = argparse.ArgumentParser(
        description="Argparser for {}".format(os.path.basename(__file__)),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dut_ip", default="198.18.0.1", help="shardnet's address")
    parser.add_argument("--client_min", default="198.19.0.1", help="first source address")
    parser.add_argument("--client_max", default="198.19.0.255", help="last source address")
    parser.add_argument("--sport_min", type=int, default=1024, help="first source port (>= 1024)")
    parser.add_argument("--sport_max", type=int, default=65535, help="last source port")
    parser.add_argument("--dport", type=int, default=7, help="the DUT's UDP echo port")
    parser.add_argument("--size", type=int, default=MIN_FRAME, help="frame size without FCS")
    args = parser.parse_args(tunables)
    if not 1024 <= args.sport_min <= args.sport_max <= 65535:
        parser.error("source ports must satisfy 1024 <= sport_min <= sport_max <= 65535 "
                     "(shardnet's echo does not answer source ports below 1024)")
    if not 1 <= args.dport <= 65535:
        parser.error("dport must be 1-65535")
    if not MIN_FRAME <= args.size <= 1514:
        parser.error("size must be 60-1514 bytes (without FCS)")
    return args


class STLS1(object):
    def create_stream(self, args):
        payload = b"x" * (args.size - HEADERS)
        base = (
            Ether()
            / IP(src=args.client_min, dst=args.dut_ip)
            / UDP(sport=args.sport_min, dport=args.dport)
            / payload
        )
        vm = [
            # Source address and port walk their ranges: distinct 4-tuples,
            # which the NIC's RSS spreads over shardnet's queues.
            STLVmFlowVar(name="ip_src", min_value=args.client_min,
                         max_value=args.client_max, size=4, op="inc"),
            STLVmWrFlowVar(fv_name="ip_src", pkt_offset="IP.src"),
            STLVmFlowVar(name="sport", min_value=args.sport_min,
                         max_value=args.sport_max, size=2, op="random"),
            STLVmWrFlowVar(fv_name="sport", pkt_offset="UDP.sport"),
            # The IPv4 and UDP checksums, by the NIC (shardnet drops a bad
            # one as bad_ip_checksum / bad_l4_checksum).
            STLVmFixChecksumHw(l3_offset="IP", l4_offset="UDP",
                               l4_type=CTRexVmInsFixHwCs.L4_TYPE_UDP),
        ]
        return STLStream(packet=STLPktBuilder(pkt=base, vm=vm), mode=STLTXCont())

    def get_streams(self, tunables=None, **kwargs):
        args = parse_tunables(tunables or [])
        return [self.create_stream(args)]


def register():
    return STLS1()
