#!/usr/bin/env bash
# Where the server core's time goes in http-vs-kernel.sh's one-connection test
# (one TCP connection from the kernel into shardnet's discard service): the
# same lab (lab-common.sh, the client's checksum left to "hardware", each
# side's receive softirq on its own core), shardnet alone on core 1, and
# `perf record` (cpu-clock samples, no call graphs) on the worker thread for
# the middle of the transfer. The kernel's softirq work that RPS puts on
# core 1 (veth receive, AF_PACKET's copy into the ring) runs in the worker
# thread's context and is counted with it.
#
#   snop-cli (client, core 0)  snop-c 198.19.62.1/24 <--veth--> snop-d  snop-dut (shardnet, core 1)
#
#   sudo ./bench/one-conn-profile.sh [seconds (default 8)] [af_packet|dpdk]
#
# Prints the client's rate, then the samples by object (kernel, shardnet,
# vdso, libc) and the 30 hottest symbols. perf.data goes to
# bench/out/one-conn-profile.perf.data.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
backend=${2:-af_packet}
case "$secs" in ''|*[!0-9]*) echo "one-conn-profile: seconds must be a number" >&2; exit 2;; esac
[ "$secs" -ge 4 ] || { echo "one-conn-profile: at least 4 seconds" >&2; exit 2; }
case "$backend" in af_packet|dpdk) ;; *) echo "one-conn-profile: backend af_packet or dpdk" >&2; exit 2;; esac
die() { echo "one-conn-profile: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
source bench/lab-common.sh

# shellcheck disable=SC2034 # DIF is lab-common.sh's
DUT=snop-dut CLI=snop-cli DIF=snop-d CIF=snop-c
CLIENT=198.19.62.1 SRV=198.19.62.2
lab_require perf ethtool taskset timeout python3
lab_check_free
echo "== building shardnet (release)" >&2
cargo build --release --quiet --bin shardnet
bin="$PWD/target/release/shardnet"
out="$PWD/bench/out"
mkdir -p "$out"
work=$(mktemp -d /tmp/one-conn-profile.XXXXXX)
made_ns=() sn_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$sn_pid" INT
    lab_teardown one-conn-profile "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up
lab_client_csum SNB_CLIENT_CSUM > /dev/null
ip -n "$CLI" addr add "$CLIENT/24" dev "$CIF"
lab_steer
cat > "$work/shardnet.toml" <<TOML
$(lab_dataplane "snop-$$")

[interface]
address = "$SRV/24"
mac = "auto"

[tcp]
# As http-vs-kernel.sh: 4 MiB per direction.
buffer_size = 4194304
max_buffers_per_worker = 1024

[[rule]]
name = "discard"
protocol = "tcp"
ports = 9
service = "discard"

[default]
action = "drop"
TOML
"$bin" check --config "$work/shardnet.toml" > /dev/null || die "shardnet check rejects its configuration"
ip netns exec "$DUT" "$bin" run --config "$work/shardnet.toml" > "$work/shardnet.log" 2>&1 &
sn_pid=$!
# The worker thread: the one on core 1 (the control thread is on core 0).
worker=""
for _ in $(seq 1 100); do
    worker=$(ps -T -p "$sn_pid" -o spid=,psr=,comm= | awk '$2 == 1 && $3 ~ /-w/ {print $1; exit}')
    [ -n "$worker" ] && break
    sleep 0.1
done
[ -n "$worker" ] || { cat "$work/shardnet.log" >&2; die "no shardnet worker thread on core 1"; }
sleep 1
in_cli timeout $((secs + 30)) /usr/bin/python3 bench/tcp_probe.py bulk \
    --dst "$SRV" --port 9 --seconds "$secs" > "$work/bulk.json" &
client=$!
# The middle of the transfer: from 1 s in to 1 s before its end.
sleep 1
perf record -q -F 4999 -t "$worker" -o "$out/one-conn-profile.perf.data" -- sleep $((secs - 2)) 2> "$work/perf.err" ||
    { cat "$work/perf.err" >&2; die "perf record failed"; }
wait "$client" || { cat "$work/bulk.json" >&2; die "the client failed"; }
echo "== client: $(cat "$work/bulk.json")"
report() { perf report -i "$out/one-conn-profile.perf.data" --stdio --sort "$1" 2> /dev/null | grep -v -e '^#' -e '^$' > "$work/report"; head -"$2" "$work/report"; }
echo "== samples on the worker's core by object"
report dso 8
echo "== the hottest symbols"
report dso,symbol 30
