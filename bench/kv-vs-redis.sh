#!/usr/bin/env bash
# The Redis-protocol server of examples/kv.rs on shardnet against redis-server
# on the kernel, one server core each, in one run, over one veth pair between
# two throwaway network namespaces (bench/lab-common.sh, with its own names):
#
#   snr-cli (client, core 0)  snr-c 198.18.0.1/24 <--veth--> snr-d  snr-dut (server, core 1)
#
# The contenders, in turns on core 1:
#   redis   redis-server (Debian's), pinned to core 1, no persistence, one I/O
#           thread, on the kernel's TCP;
#   kv      examples/kv.rs on shardnet: one busy-polling worker on core 1
#           owning snr-d, its keyspace on that worker.
# Two clients, in turns on core 0, each with 50 connections, random keys out
# of 100,000, 3-byte values, GET and SET, without pipelining and with 16
# requests in flight per connection:
#   redis-benchmark (-r 100000, -P 16: 16 sent, then 16 awaited) on the
#           client namespace's kernel, as 198.18.0.1;
#   shardnet-load --proto redis-get|redis-set (--pipeline 16: 16 in flight
#           at all times) on shardnet's own stack, one busy-polling worker
#           on core 0 over AF_PACKET on snr-c, as 198.18.0.3 (an address
#           the client namespace's kernel does not hold).
# The report gives the client core's utilisation: near 100% for
# redis-benchmark means it, not the server, set the rate (shardnet-load
# busy-polls: its core always shows 100%).
# Each round measures both servers, redis first in odd rounds and kv first
# in even ones; the table shows medians over the rounds.
#
#   sudo ./bench/kv-vs-redis.sh [rounds] [af_packet|dpdk]
#       (defaults: 2 rounds, af_packet; about 4 minutes, plus the build)
#
# Requests per redis-benchmark run: KV_BENCH_REQUESTS (default 300000)
# without pipelining, ten times that with -P 16. Seconds per shardnet-load
# run: KV_LOAD_SECONDS (default 10, fractions allowed).
#
# Prints a table (requests/s per client, server and test, the ratio
# kv/redis, the cores' utilisation) and writes bench/out/kv-vs-redis.json.
# Exits 1 if a check fails (a client failed or saw errors, a server died, or
# a server does not hold what was SET).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [rounds] [af_packet|dpdk]"
rounds="${1:-2}"
backend="${2:-af_packet}"
case "$rounds" in ''|*[!0-9]*|0) echo "$usage" >&2; exit 2;; esac
case "$backend" in af_packet|dpdk) ;; *) echo "$usage" >&2; exit 2;; esac
requests="${KV_BENCH_REQUESTS:-300000}"
case "$requests" in ''|*[!0-9]*|0) echo "KV_BENCH_REQUESTS must be a positive number" >&2; exit 2;; esac
load_secs="${KV_LOAD_SECONDS:-10}"
if ! [[ "$load_secs" =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v s="$load_secs" 'BEGIN { exit !(s + 0 > 0) }'; then
    echo "KV_LOAD_SECONDS must be a positive number" >&2; exit 2
fi

die() { echo "kv-vs-redis: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
. bench/lab-common.sh
lab_require redis-server redis-benchmark redis-cli ethtool taskset timeout
echo "== building shardnet, shardnet-load and the kv example (release)" >&2
cargo build --release --quiet --bin shardnet --bin shardnet-load --example kv
# shellcheck disable=SC2034 # bench/lab-common.sh reads bin, LOAD_IP and made_ns
bin="$PWD/target/release/shardnet"
kvbin="$PWD/target/release/examples/kv"
loadbin="$PWD/target/release/shardnet-load"
out=bench/out; mkdir -p "$out"

DUT=snr-dut CLI=snr-cli DIF=snr-d CIF=snr-c
# shellcheck disable=SC2034
SRV=198.18.0.2 LOAD_IP=198.18.0.3 CLIENT=198.18.0.1
PORT=6379 CONNS=50 KEYS=100000
CONTENDERS=(redis kv)

lab_check_free

work=$(mktemp -d /tmp/kv-vs-redis.XXXXXX)
# shellcheck disable=SC2034
made_ns=() srv_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$srv_pid" INT
    lab_teardown kv-vs-redis "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

busy_before=$(lab_busy_pct)
lab_up
client_csum=$(lab_client_csum SNR_CLIENT_CSUM)
ip -n "$CLI" addr add "$CLIENT/24" dev "$CIF"
lab_steer
lab_load_toml ""

contender="" round=""
cli() { ip netns exec "$CLI" redis-cli -h "$SRV" -p "$PORT" "$@"; }
wait_redis() { # PONG from the client's side within 10 s
    for _ in $(seq 1 100); do
        [ "$(timeout 2 ip netns exec "$CLI" redis-cli -h "$SRV" -p "$PORT" PING 2>/dev/null)" = PONG ] && return 0
        kill -0 "$srv_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
bench() { # TEST PIPELINE: redis-benchmark's CSV to $work/CONTENDER-rROUND-TEST-pPIPELINE.csv
    local tag="$work/$contender-r$round-$1-p$2" n=$requests
    [ "$2" = 1 ] || n=$((requests * 10))
    echo "== round $round, $contender: $1, -P $2, $n requests" >&2
    lab_cpu_snap "$tag.pre"
    in_cli timeout 300 redis-benchmark -h "$SRV" -p "$PORT" -c "$CONNS" -n "$n" -r "$KEYS" \
        -t "$1" -P "$2" --csv > "$tag.csv" 2> "$tag.err" || { cat "$tag.csv" "$tag.err" >&2; die "$contender: redis-benchmark failed"; }
    lab_cpu_snap "$tag.post"
    kill -0 "$srv_pid" 2>/dev/null || die "$contender: the server died during $1 -P $2"
}
load_bench() { # TEST PIPELINE: shardnet-load's JSON to $work/CONTENDER-rROUND-TEST-pPIPELINE.sl.json
    local tag="$work/$contender-r$round-$1-p$2.sl"
    echo "== round $round, $contender: $1, shardnet-load --pipeline $2, ${load_secs}s" >&2
    lab_cpu_snap "$tag.pre"
    in_cli timeout 120 "$loadbin" --config "$work/load.toml" --mode rps --target "$SRV:$PORT" \
        --proto "redis-$1" --connections "$CONNS" --keyspace "$KEYS" --size 3 --pipeline "$2" \
        --duration "$load_secs" --quiet --json "$tag.json" > "$tag.out" 2>&1 ||
        { cat "$tag.out" >&2; die "$contender: shardnet-load failed"; }
    lab_cpu_snap "$tag.post"
    kill -0 "$srv_pid" 2>/dev/null || die "$contender: the server died during shardnet-load $1 --pipeline $2"
}
run_tests() {
    # What SET stored must read back: the server holds data, not errors.
    [ "$(cli SET bench:check shardnet)" = OK ] || die "$contender: SET failed"
    [ "$(cli GET bench:check)" = shardnet ] || die "$contender: GET does not return what SET stored"
    for p in 1 16; do
        bench set "$p"
        bench get "$p"
        load_bench set "$p"
        load_bench get "$p"
    done
    [ "$(cli DBSIZE)" -gt 1000 ] || die "$contender: after the SET runs the server holds $(cli DBSIZE) keys"
}

start_redis() {
    ip -n "$DUT" addr add "$SRV/24" dev "$DIF"
    ip netns exec "$DUT" taskset -c 1 redis-server --bind "$SRV" --port "$PORT" --save '' --appendonly no \
        --protected-mode no --io-threads 1 --daemonize no --logfile "$work/redis-r$round.log" &
    srv_pid=$!
    wait_redis || { cat "$work/redis-r$round.log" >&2; die "redis-server does not answer on $SRV:$PORT"; }
}
stop_redis() {
    stop_pid "$srv_pid"; srv_pid=""
    ip -n "$DUT" addr flush dev "$DIF"
}

cat > "$work/kv.toml" <<TOML
$(lab_dataplane "snr-$$")

[interface]
address = "$SRV/24"
mac = "auto"

[[rule]]
name = "kv"
protocol = "tcp"
ports = $PORT
service = "kv"

[default]
action = "drop"
TOML
start_kv() {
    ip netns exec "$DUT" "$kvbin" --config "$work/kv.toml" > "$work/kv-r$round.log" 2>&1 &
    srv_pid=$!
    wait_redis || { cat "$work/kv-r$round.log" >&2; die "kv does not answer on $SRV:$PORT"; }
}
stop_kv() {
    local pid=$srv_pid
    srv_pid=""
    lab_stop_checked "$pid" INT "$work/kv-r$round.log" kv
}

for round in $(seq 1 "$rounds"); do
    order=("${CONTENDERS[@]}")
    [ $((round % 2)) = 1 ] || order=(kv redis)
    for contender in "${order[@]}"; do
        echo "== round $round, $contender: starting on core 1" >&2
        "start_$contender"
        run_tests
        "stop_$contender"
    done
done

/usr/bin/python3 bench/kv_vs_redis_report.py "$work" "$out/kv-vs-redis.json" "$rounds" "$backend" \
    "$requests" "$load_secs" "$busy_before" "$client_csum"
