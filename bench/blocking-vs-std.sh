#!/usr/bin/env bash
# What the blocking sockets (`shardnet::net::blocking`) cost against
# `std::net` on the kernel: the same thread-per-connection echo server
# (examples/blocking_echo.rs; `--std ADDR` runs the same source, instantiated
# over std::net), one server core each, in one run, over one veth pair
# between two throwaway network namespaces (bench/lab-common.sh):
#
#   sncb-cli (client, core 0)  sncb-c 198.18.0.1/24 <--veth--> sncb-d  sncb-dut (server, core 1)
#
# The contenders, in turns on core 1 (the whole process pinned there):
#   std        the echo server on std::net, the kernel's TCP (receive work
#              steered to core 1 too);
#   blocking   the same echo server on shardnet's blocking sockets: one
#              worker on core 1 owning sncb-d, the application's threads on
#              core 1 with it. The worker idles "adaptive" (it sleeps after
#              a run of empty polls, so the threads get the core); set
#              SNC_IDLE=busy to make it spin (it then shares core 1 with
#              50 threads by the scheduler's time slices).
# shardnet-load on core 0 (shardnet's own stack over AF_PACKET on the
# client's veth, as 198.18.0.3) drives each, --mode rps --proto echo:
#   small      64-byte messages, 50 connections, one in flight each;
#   big        16 KiB messages, 50 connections;
#   latency    64-byte messages, 1 connection (p50/p99 round trips).
# Each round measures both, std first in odd rounds, blocking first in even
# ones; the report takes medians over the rounds.
#
#   sudo ./bench/blocking-vs-std.sh [rounds] [af_packet|dpdk] [seconds per run]
#       (defaults: 2 rounds, af_packet, 8 s; about 2 minutes plus the build)
#
# Prints requests/s per contender and test, the ratio blocking/std, core 1's
# CPU (the server's core: its threads, the worker, the kernel's network
# work), and the costs derived from them: server CPU per request (CPU-seconds
# / requests, from the small messages), per byte (the slope from small to big:
# each request moves SIZE bytes in and SIZE out), and what blocking adds to
# each. Writes bench/out/blocking-vs-std.json. Exits 1 if a check fails
# (client errors or resets, a server that died, no request completed).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [rounds] [af_packet|dpdk] [seconds per run]"
rounds="${1:-2}"
backend="${2:-af_packet}"
secs="${3:-8}"
case "$rounds" in ''|*[!0-9]*|0) echo "$usage" >&2; exit 2;; esac
case "$backend" in af_packet|dpdk) ;; *) echo "$usage" >&2; exit 2;; esac
case "$secs" in ''|*[!0-9]*|0) echo "$usage" >&2; exit 2;; esac
idle="${SNC_IDLE:-adaptive}"
case "$idle" in adaptive|busy) ;; *) echo "SNC_IDLE must be adaptive or busy" >&2; exit 2;; esac

die() { echo "blocking-vs-std: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
. bench/lab-common.sh
lab_require ethtool taskset timeout
echo "== building shardnet, shardnet-load and blocking_echo (release)" >&2
cargo build --release --quiet --bin shardnet --bin shardnet-load --example blocking_echo
bin="$PWD/target/release/shardnet"
loadbin="$PWD/target/release/shardnet-load"
echobin="$PWD/target/release/examples/blocking_echo"
out=bench/out; mkdir -p "$out"

DUT=sncb-dut CLI=sncb-cli DIF=sncb-d CIF=sncb-c
SRV=198.18.0.2 LOAD_IP=198.18.0.3 CLIENT=198.18.0.1
PORT=7000 CONNS=50 BIG=16384 WARMUP=1
CONTENDERS=(std blocking)

lab_check_free

work=$(mktemp -d /tmp/blocking-vs-std.XXXXXX)
made_ns=() srv_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$srv_pid" INT
    lab_teardown blocking-vs-std "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r load_before _ < /proc/loadavg
busy_before=$(lab_busy_pct)

lab_up
client_csum=$(lab_client_csum SNC_CLIENT_CSUM)
ip -n "$CLI" addr add "$CLIENT/24" dev "$CIF"
lab_steer

# The example's configuration: its TCP ports (7000 echo, 7001 control, 7002)
# and UDP ports (7003, 7004) for the service "blocking".
cat > "$work/blocking.toml" <<TOML
$(lab_dataplane "sncb-$$" | sed "s/^idle = \"busy\"/idle = \"$idle\"/")

[interface]
address = "$SRV/24"
mac = "auto"

[[rule]]
name = "blocking"
protocol = "tcp"
ports = [7000, 7001, 7002]
service = "blocking"

[[rule]]
name = "blocking-udp"
protocol = "udp"
ports = [7003, 7004]
service = "blocking"

[default]
action = "drop"
TOML
lab_load_toml ""

contender="" round=""
wait_echo() { # the echo port accepts a connection from the client's side within 10 s
    for _ in $(seq 1 100); do
        ip netns exec "$CLI" timeout 1 bash -c "exec 3<>/dev/tcp/$SRV/$PORT" 2>/dev/null && return 0
        kill -0 "$srv_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
load_run() { # SECONDS SIZE CONNECTIONS: shardnet-load's JSON on one line
    in_cli timeout $(($1 + 30)) "$loadbin" --config "$work/load.toml" --mode rps --proto echo \
        --target "$SRV:$PORT" --size "$2" --connections "$3" --duration "$1" --quiet \
        --json "$work/load-last.json" >> "$work/shardnet-load.log" 2>&1 ||
        { tail -20 "$work/shardnet-load.log" >&2; return 1; }
    /usr/bin/python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/load-last.json"
}
measure() { # TEST SIZE CONNECTIONS: $work/CONTENDER-rROUND-TEST.{out,pre.stat,post.stat}
    local tag="$work/$contender-r$round-$1"
    echo "== round $round, $contender: $1 (${2} B, $3 connections), ${WARMUP}s warm-up + ${secs}s" >&2
    load_run "$WARMUP" "$2" "$3" > /dev/null || die "$contender: client failed (warm-up, $1)"
    lab_cpu_snap "$tag.pre"
    load_run "$secs" "$2" "$3" > "$tag.out" || die "$contender: client failed ($1)"
    lab_cpu_snap "$tag.post"
    kill -0 "$srv_pid" 2>/dev/null || die "$contender: the server died during $1"
}
run_tests() {
    measure small 64 "$CONNS"
    measure big "$BIG" "$CONNS"
    measure latency 64 1
}

start_std() {
    ip -n "$DUT" addr add "$SRV/24" dev "$DIF"
    ip netns exec "$DUT" taskset -c 1 "$echobin" --std "$SRV:$PORT" > "$work/std-r$round.log" 2>&1 &
    srv_pid=$!
    wait_echo || { cat "$work/std-r$round.log" >&2; die "the std echo server does not answer on $SRV:$PORT"; }
}
stop_std() {
    stop_pid "$srv_pid" TERM; srv_pid=""
    ip -n "$DUT" addr flush dev "$DIF"
}
start_blocking() {
    ip netns exec "$DUT" taskset -c 1 "$echobin" --config "$work/blocking.toml" > "$work/blocking-r$round.log" 2>&1 &
    srv_pid=$!
    wait_echo || { cat "$work/blocking-r$round.log" >&2; die "blocking_echo does not answer on $SRV:$PORT"; }
}
stop_blocking() {
    local pid=$srv_pid
    srv_pid=""
    lab_stop_checked "$pid" INT "$work/blocking-r$round.log" blocking_echo
}

for round in $(seq 1 "$rounds"); do
    order=("${CONTENDERS[@]}")
    [ $((round % 2)) = 0 ] && order=(blocking std)
    for contender in "${order[@]}"; do
        echo "== round $round, $contender: starting on core 1" >&2
        "start_$contender"
        run_tests
        "stop_$contender"
    done
done

read -r load_after _ < /proc/loadavg
/usr/bin/python3 bench/blocking_vs_std_report.py "$work" "$out/blocking-vs-std.json" \
    --seconds "$secs" --rounds "$rounds" --backend "$backend" --idle "$idle" \
    --connections "$CONNS" --big "$BIG" --load-before "$load_before" \
    --load-after "$load_after" --busy-before "$busy_before" --client-csum "$client_csum"
