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
# The client is redis-benchmark pinned to core 0: 50 connections, random keys
# out of 100,000 (-r), 3-byte values (its default), GET and SET, without
# pipelining and with -P 16. The report gives the client core's utilisation:
# near 100% means redis-benchmark, not the server, set the rate.
# Each round measures both, redis first in odd rounds and kv first in even
# ones; the table shows medians over the rounds.
#
#   sudo ./bench/kv-vs-redis.sh [rounds] [af_packet|dpdk]
#       (defaults: 2 rounds, af_packet; about 2 minutes, plus the build)
#
# Requests per run: KV_BENCH_REQUESTS (default 300000) without pipelining,
# ten times that with -P 16.
#
# Prints a table (requests/s per contender and test, the ratio kv/redis, the
# cores' utilisation) and writes bench/out/kv-vs-redis.json. Exits 1 if a
# check fails (redis-benchmark failed, or a server died, or a server does not
# hold what was SET).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [rounds] [af_packet|dpdk]"
rounds="${1:-2}"
backend="${2:-af_packet}"
case "$rounds" in ''|*[!0-9]*|0) echo "$usage" >&2; exit 2;; esac
case "$backend" in af_packet|dpdk) ;; *) echo "$usage" >&2; exit 2;; esac
requests="${KV_BENCH_REQUESTS:-300000}"
case "$requests" in ''|*[!0-9]*|0) echo "KV_BENCH_REQUESTS must be a positive number" >&2; exit 2;; esac

die() { echo "kv-vs-redis: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
. bench/lab-common.sh
lab_require redis-server redis-benchmark redis-cli ethtool taskset timeout
echo "== building shardnet and the kv example (release)" >&2
cargo build --release --quiet --bin shardnet --example kv
# shellcheck disable=SC2034 # bench/lab-common.sh reads bin, LOAD_IP and made_ns
bin="$PWD/target/release/shardnet"
kvbin="$PWD/target/release/examples/kv"
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
run_tests() {
    # What SET stored must read back: the server holds data, not errors.
    [ "$(cli SET bench:check shardnet)" = OK ] || die "$contender: SET failed"
    [ "$(cli GET bench:check)" = shardnet ] || die "$contender: GET does not return what SET stored"
    for p in 1 16; do
        bench set "$p"
        bench get "$p"
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

/usr/bin/python3 - "$work" "$out/kv-vs-redis.json" "$rounds" "$backend" "$requests" "$busy_before" "$client_csum" <<'PY'
import csv, json, statistics, sys
sys.path.insert(0, "bench")
import lab_report as lab

work, out, rounds, backend, requests, busy_before, client_csum = sys.argv[1:]
rounds = int(rounds)
rows, result = [], {"backend": backend, "rounds": rounds, "requests": int(requests),
                     "connections": 50, "busy_before_pct": float(busy_before), "tests": {}}
for test in ("set", "get"):
    for p in (1, 16):
        entry = {}
        for who in ("redis", "kv"):
            rps, client, server = [], [], []
            for r in range(1, rounds + 1):
                tag = f"{work}/{who}-r{r}-{test}-p{p}"
                with open(f"{tag}.csv") as f:
                    data = [row for row in csv.reader(f) if row and row[0] != "test"]
                lab.check(len(data) == 1, f"{who} {test} -P {p}: redis-benchmark printed {data!r}")
                rps.append(float(data[0][1]))
                _, cores = lab.cores(f"{tag}.pre.stat", f"{tag}.post.stat")
                client.append(cores["cpu0"]["busy_pct"])
                server.append(cores["cpu1"]["busy_pct"])
            entry[who] = {"rps": statistics.median(rps), "rps_rounds": rps,
                          "client_core_pct": statistics.median(client),
                          "server_core_pct": statistics.median(server)}
        entry["ratio"] = entry["kv"]["rps"] / entry["redis"]["rps"]
        result["tests"][f"{test.upper()} -P {p}"] = entry
print()
print(f"redis-benchmark -c 50 -r 100000, one server core (1), the client on core 0; median of {rounds} round(s), {backend} backend for shardnet")
print(f"{'test':10} {'redis-server req/s':>19} {'client/server core':>19} {'kv on shardnet req/s':>21} {'client/server core':>19} {'kv/redis':>9}")
for name, e in result["tests"].items():
    r, k = e["redis"], e["kv"]
    print(f"{name:10} {r['rps']:19,.0f} {r['client_core_pct']:8.0f}% / {r['server_core_pct']:3.0f}% "
          f"{k['rps']:21,.0f} {k['client_core_pct']:8.0f}% / {k['server_core_pct']:3.0f}% {e['ratio']:9.2f}")
print("A client core near 100% means redis-benchmark, not the server, set the rate. shardnet's worker")
print("busy-polls: its core always shows 100%.")
result["failures"] = lab.failures
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(f"written to {out}")
for failure in lab.failures:
    print(f"CHECK FAILED: {failure}")
sys.exit(1 if lab.failures else 0)
PY
