#!/usr/bin/env bash
# shardnet-load against shardnet over a shared-memory link: two DPDK
# processes joined by net_memif (no kernel, no NIC), one core each on this
# 2-core VM (server worker on core 1, load generator worker on core 0).
# Runs every mode of the load generator once and prints its results; the
# server's own counters are printed beside them so the two can be compared.
#
#   sudo ./bench/loadgen-memif.sh [seconds per mode]     (default 5)
# Writes bench/out/loadgen-memif-<mode>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --bin shardnet --bin shardnet-load
out=bench/out; mkdir -p "$out"
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

eal() { # file-prefix role core -> eal_args
    echo "[\"--no-pci\", \"--no-huge\", \"--no-shconf\", \"-m\", \"512\", \"--file-prefix=$1\", \"--vdev=net_memif0,role=$2,socket=$work/memif.sock\"]"
}
cat > "$work/server.toml" <<CONF
[dataplane]
backend = "dpdk"
workers = [1]
control_core = 0
idle = "busy"
[dpdk]
eal_args = $(eal snb-memif-srv server)
mbufs_per_worker = 16383
[interface]
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
[metrics]
listen = "127.0.0.1:19480"
[[rule]]
name = "udp-echo"
protocol = "udp"
ports = "7"
service = "echo"
[[rule]]
name = "tcp-echo"
protocol = "tcp"
ports = "7"
service = "echo"
[[rule]]
name = "discard"
protocol = "tcp"
ports = "9"
service = "discard"
[[rule]]
name = "web"
protocol = "tcp"
ports = "80"
service = "http"
[tcp]
time_wait_ms = 1000
[default]
action = "drop"
CONF
cat > "$work/client.toml" <<CONF
[dataplane]
backend = "dpdk"
workers = [0]
control_core = 1
idle = "busy"
[dpdk]
eal_args = $(eal snb-memif-cli client)
mbufs_per_worker = 16383
[interface]
address = "198.18.0.3/24"
mac = "02:00:00:00:00:03"
[default]
action = "drop"
CONF

./target/release/shardnet run --config "$work/server.toml" 2> "$work/server.log" &
server_pid=$!
sleep 2
metric() { # name label -> the sum of the samples
    curl -sf http://127.0.0.1:19480/metrics | grep -F "$1{" | grep -F "$2" |
        awk '{s += $NF} END {printf "%.0f", s}'
}

run() { # name args...
    local name=$1; shift
    echo "== $name" >&2
    ./target/release/shardnet-load --config "$work/client.toml" --duration "$secs" --quiet \
        --json "$out/loadgen-memif-$name.json" "$@"
}
run udp --mode udp --target 198.18.0.2:7 --flows 256 --size 64
run rps --mode rps --target 198.18.0.2:80 --connections 256
run cps --mode cps --target 198.18.0.2:80 --connections 128
run latency --mode rps --proto echo --size 64 --target 198.18.0.2:7 --connections 1
run bulk --mode bulk --target 198.18.0.2:9 --connections 1
echo "== the server's counters" >&2
echo "server: udp datagrams echoed $(metric shardnet_udp_datagrams_total 'direction="tx"'), \
connections accepted $(metric shardnet_tcp_connections_opened_total 'side="passive"'), \
rx bytes $(metric shardnet_rx_bytes_total worker)"
