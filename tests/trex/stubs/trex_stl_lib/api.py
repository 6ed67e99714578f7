"""A stand-in for TRex's `trex_stl_lib.api`, for tests/trex/check_profiles.py
only: TRex is not installable here. It has the names bench/trex's STL profile
uses, with the real API's keyword names (a misspelt keyword fails here as it
would in TRex), records what it is given, and re-exports scapy's layers as
the real module does."""

from scapy.layers.inet import IP, TCP, UDP  # noqa: F401
from scapy.layers.l2 import Ether  # noqa: F401


class CTRexVmInsFixHwCs(object):
    L4_TYPE_UDP = 11
    L4_TYPE_TCP = 13


class STLTXCont(object):
    def __init__(self, bps_L1=None, bps_L2=None, pps=None, percentage=None):
        self.pps = pps


class STLVmFlowVar(object):
    def __init__(self, name, init_value=None, min_value=0, max_value=255, size=4,
                 step=1, op="inc", value_list=None, next_var=None, split_to_cores=True):
        if op not in ("inc", "dec", "random"):
            raise ValueError("STLVmFlowVar: bad op {!r}".format(op))
        if size not in (1, 2, 4, 8):
            raise ValueError("STLVmFlowVar: bad size {!r}".format(size))
        self.name, self.min_value, self.max_value = name, min_value, max_value
        self.size, self.op = size, op


class STLVmWrFlowVar(object):
    def __init__(self, fv_name, pkt_offset, offset_fixup=0, add_val=0, is_big=True):
        self.fv_name, self.pkt_offset = fv_name, pkt_offset


class STLVmFixChecksumHw(object):
    def __init__(self, l3_offset, l4_offset, l4_type):
        self.l3_offset, self.l4_offset, self.l4_type = l3_offset, l4_offset, l4_type


class STLVmFixIpv4(object):
    def __init__(self, offset):
        self.offset = offset


class STLPktBuilder(object):
    def __init__(self, pkt=None, pkt_buffer=None, vm=None, path_relative_to_profile=False,
                 build_raw=False, remove_fcs=True):
        self.pkt, self.vm = pkt, list(vm or [])


class STLStream(object):
    def __init__(self, name=None, packet=None, mode=None, enabled=True, self_start=True,
                 isg=0.0, flow_stats=None, next=None, stream_id=None, action_count=0,
                 random_seed=0, mac_src_override_by_pkt=None, mac_dst_override_mode=None,
                 dummy_stream=False, start_paused=False, core_id=-1):
        self.packet, self.mode = packet, mode
