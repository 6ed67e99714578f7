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

# echo_config VDEV FILE_PREFIX FLOW_RECORD: one busy worker on core 1 running
# the UDP echo service on the vdev, the control thread on core 0; the
# counters are written to FLOW_RECORD.stats.json at stop.
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

[debug]
flow_record = "$3"
TOML
}

# echoed STATS_JSON: datagrams the echo service sent, over all workers.
echoed() {
    /usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(sum(w["udp_tx"] for w in s["workers"]))' "$1"
}
