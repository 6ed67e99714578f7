"""A stand-in for TRex's `trex.astf.api`, for tests/trex/check_profiles.py
only: TRex is not installable here. It has the names bench/trex's ASTF
profiles use, with the real API's keyword names, and records the programs
(a list of (command, arguments)) so the checker can run them."""


class ASTFProgram(object):
    def __init__(self, file=None, side="c", commands=None, stream=True):
        self.commands = []

    def send(self, buf, size=None, fill=None):
        if isinstance(buf, str):
            buf = buf.encode("ascii")
        if not isinstance(buf, bytes):
            raise TypeError("ASTFProgram.send: bytes or an ascii str")
        self.commands.append(("send", buf))

    def recv(self, bytes, clear=False):  # noqa: A002 (TRex's name)
        if not isinstance(bytes, int) or bytes <= 0:
            raise ValueError("ASTFProgram.recv: a positive byte count")
        self.commands.append(("recv", bytes, clear))

    def set_var(self, var_id, val):
        self.commands.append(("set_var", var_id, val))

    def set_label(self, label):
        if not label.endswith(":"):
            raise ValueError("ASTFProgram.set_label: a label ends with ':'")
        self.commands.append(("set_label", label))

    def jmp_nz(self, var_id, label):
        self.commands.append(("jmp_nz", var_id, label))

    def wait_for_peer_close(self):
        self.commands.append(("wait_for_peer_close",))

    def reset(self):
        self.commands.append(("reset",))

    def delay(self, usec):
        self.commands.append(("delay", usec))


class ASTFIPGenDist(object):
    def __init__(self, ip_range, distribution="seq", per_core_distribution=None):
        self.ip_range, self.distribution = ip_range, distribution


class ASTFIPGenGlobal(object):
    def __init__(self, ip_offset="1.0.0.0"):
        self.ip_offset = ip_offset


class ASTFIPGen(object):
    def __init__(self, dist_client, dist_server, glob=None):
        self.dist_client, self.dist_server, self.glob = dist_client, dist_server, glob


class ASTFAssociationRule(object):
    def __init__(self, port=80, ip_start=None, ip_end=None, l7_map=None):
        self.port = port


class ASTFTCPClientTemplate(object):
    def __init__(self, program=None, ip_gen=None, cluster=None, port=80, cps=1,
                 glob_info=None, limit=None, cont=None, tg_name=None):
        self.program, self.ip_gen, self.port, self.cps = program, ip_gen, port, cps


class ASTFTCPServerTemplate(object):
    def __init__(self, program=None, assoc=None, glob_info=None):
        self.program = program
        self.assoc = assoc if assoc is not None else ASTFAssociationRule()


class ASTFTemplate(object):
    def __init__(self, client_template=None, server_template=None, tg_name=None):
        self.client_template, self.server_template = client_template, server_template


class ASTFProfile(object):
    def __init__(self, default_ip_gen, default_c_glob_info=None, default_s_glob_info=None,
                 templates=None, cap_list=None, s_delay=None, udp_mtu=None):
        if templates is None and cap_list is None:
            raise ValueError("ASTFProfile: templates or cap_list")
        self.default_ip_gen = default_ip_gen
        self.templates = templates if isinstance(templates, list) else [templates]
