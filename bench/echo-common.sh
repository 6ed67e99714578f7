# Sourced by udp-echo.sh and metrics-cost.sh: the traffic and the shardnet
# configuration they share.

# request_pcap OUT: 1024 flows, one 60-byte UDP frame each, to
# 02:00:00:00:00:02 / 198.18.0.2:7.
request_pcap() {
    /usr/bin/python3 - "$1" <<'PY'
import sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap
frames = [Ether(src="02:00:00:00:01:01", dst="02:00:00:00:00:02") /
          IP(src=f"198.18.{1 + i // 250}.{1 + i % 250}", dst="198.18.0.2") /
          UDP(sport=10000 + i, dport=7) / Raw(b"\x5a" * 18) for i in range(1024)]
assert all(len(f) == 60 for f in frames)
wrpcap(sys.argv[1], frames)
PY
}

# echo_config VDEV FILE_PREFIX: one busy worker on core 1 running the UDP
# echo service on the vdev, the control thread on core 0. No `[debug]
# flow_record`: recording every packet's flow in a hash map cost about 70
# instructions a packet (a third of the stack's work), so the counters are read
# from the "final counters" line shardnet logs at stop (see echoed below).
echo_config() {
    cat <<TOML
[dataplane]
backend = "dpdk"
workers = [1]
control_core = 0
idle = "busy"

[dpdk]
eal_args = ["--no-pci", "--no-huge", "-m", "1024", "--no-shconf", "--no-telemetry", "--file-prefix=$2", "--vdev=$1"]
port = 0
mbufs_per_worker = 8191

[interface]
address = "198.18.0.2/16"
mac = "02:00:00:00:00:02"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[default]
action = "drop"
TOML
}

# echoed LOG: datagrams the echo service sent, over all workers, from the
# "final counters: {json}" line of shardnet's log (its stderr).
echoed() {
    /usr/bin/python3 - "$1" <<'PY'
import json, sys
mark = "final counters: "
lines = [l for l in open(sys.argv[1], errors="replace") if mark in l]
if not lines:
    sys.exit(f"{sys.argv[1]}: no final counters logged")
s = json.loads(lines[-1].split(mark, 1)[1])
print(sum(w["udp_tx"] for w in s["workers"]))
PY
}
