#!/usr/bin/env bash
# The same axum application on shardnet and on tokio, one server core each,
# in one run, over one veth pair between two throwaway network namespaces
# (as bench/http-vs-kernel.sh, with its own names):
#
#   sna-cli (client, core 0)  sna-c 198.18.0.1/24 <--veth--> sna-d  sna-dut (server, core 1)
#
# The contenders, in turns on core 1, each answering GET / with the 19-byte
# body "hello from shardnet" (their headers differ; the report gives each
# one's response size):
#   nginx      the kernel's TCP, nginx (1 worker), `return 200`;
#   tokio      the kernel's TCP, examples/shared/axum_router.rs's router under
#              hyper on a current-thread tokio runtime pinned to core 1
#              (bench/axum_tokio.rs);
#   http       shardnet (one busy-polling worker on core 1 owning sna-d), its
#              built-in callback `http` service;
#   axum       shardnet, the same axum router under hyper on the worker's
#              executor (examples/axum_app.rs).
# Two clients pinned to core 0 measure each, HTTP/1.1 keep-alive, GET /, 256
# connections, one request in flight on each:
#   1. wrk -t1 -c256;
#   2. shardnet-load -c256 (shardnet's own stack over AF_PACKET on the
#      client's veth, as 198.18.0.3): one client core drives about twice what
#      wrk drives, so the server's limit shows. The report gives the client
#      core's utilisation: near 100% means the client is the bottleneck.
# Each round measures all four, in this order in odd rounds and the reverse
# in even ones; the table shows medians over the rounds.
#
#   sudo ./bench/axum-vs-tokio.sh [seconds per run] [rounds] [af_packet|dpdk]
#       (defaults: 8 s, 2 rounds, af_packet; about 3 minutes, plus the build)
#
# Prints a table (requests/s per contender and client, the ratios axum/tokio,
# axum/http and each against nginx, the cores' utilisation) and writes
# bench/out/axum-vs-tokio.json. Exits 1 if a check fails (errors from a
# client, a wrong body, a server that died, server counts that disagree with
# the client's).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [seconds per run] [rounds] [af_packet|dpdk]"
secs="${1:-8}"
rounds="${2:-2}"
backend="${3:-af_packet}"
case "$secs" in ''|*[!0-9]*) echo "$usage" >&2; exit 2;; esac
case "$rounds" in ''|*[!0-9]*|0) echo "$usage" >&2; exit 2;; esac
case "$backend" in af_packet|dpdk) ;; *) echo "$usage" >&2; exit 2;; esac
[ "$secs" -ge 2 ] || { echo "axum-vs-tokio: at least 2 seconds per run" >&2; exit 2; }

die() { echo "axum-vs-tokio: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
. bench/lab-common.sh
lab_require nginx wrk curl ethtool taskset timeout
echo "== building shardnet, shardnet-load, axum_app and axum_tokio (release)" >&2
cargo build --release --quiet --bin shardnet --bin shardnet-load --example axum_app --example axum_tokio
bin="$PWD/target/release/shardnet"
loadbin="$PWD/target/release/shardnet-load"
axumbin="$PWD/target/release/examples/axum_app"
tokiobin="$PWD/target/release/examples/axum_tokio"
out=bench/out; mkdir -p "$out"

DUT=sna-dut CLI=sna-cli DIF=sna-d CIF=sna-c
SRV=198.18.0.2 LOAD_IP=198.18.0.3 CLIENT=198.18.0.1
BODY='hello from shardnet'     # every contender's body for GET /: 19 bytes, no newline
CONNS=256 WARMUP=2
CONTENDERS=(nginx tokio http axum)

lab_check_free

work=$(mktemp -d /tmp/axum-vs-tokio.XXXXXX)
made_ns=() srv_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$srv_pid" INT
    lab_teardown axum-vs-tokio "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r load_before _ < /proc/loadavg
busy_before=$(lab_busy_pct)

lab_up
# Offloads, checksums and receive steering as in bench/http-vs-kernel.sh (see
# its comments): a wire between two hosts with NICs, the client's TCP checksum
# left to "hardware" with AF_PACKET (SNA_CLIENT_CSUM=0: summed in software),
# each side's receive work on its own core.
client_csum=$(lab_client_csum SNA_CLIENT_CSUM)
ip -n "$CLI" addr add "$CLIENT/24" dev "$CIF"
lab_steer

# ---------------------------------------------------------------------------
# Measurement: the cores (and for shardnet its metrics, for nginx its
# stub_status) around each client run; bench/axum_vs_tokio_report.py reads
# them at the end.
contender="" round=""
snap() { # PREFIX
    lab_cpu_snap "$1"
    case "$contender" in
    nginx) ip netns exec "$DUT" curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:8080/stub > "$1.stub" ;;
    http|axum) ip netns exec "$DUT" curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:9464/metrics > "$1.metrics" ;;
    esac
}
measure() { # TEST CMD...: CMD's stdout to $work/CONTENDER-rROUND-TEST.out
    local tag="$work/$contender-r$round-$1"; shift
    snap "$tag.pre"
    "$@" > "$tag.out" 2> "$tag.err" || { cat "$tag.out" "$tag.err" >&2; die "$contender: client failed: $*"; }
    snap "$tag.post"
    kill -0 "$srv_pid" 2>/dev/null || die "$contender: the server died during $1"
}
wrk_run() { # SECONDS
    in_cli timeout $(($1 + 30)) wrk -t1 -c"$CONNS" -d"${1}s" --timeout 2s -s bench/wrk-json.lua "http://$SRV/"
}
load_run() { # SECONDS: shardnet-load's JSON on one line
    in_cli timeout $(($1 + 30)) "$loadbin" --config "$work/load.toml" --mode rps --target "$SRV:80" \
        --connections "$CONNS" --duration "$1" --quiet --json "$work/load-last.json" \
        >> "$work/shardnet-load.log" 2>&1 || { tail -20 "$work/shardnet-load.log" >&2; return 1; }
    /usr/bin/python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/load-last.json"
}
wait_http() { # 200 from the client's side within 10 s
    for _ in $(seq 1 100); do
        [ "$(ip netns exec "$CLI" curl -s --noproxy '*' --max-time 1 -o /dev/null -w '%{http_code}' "http://$SRV/")" = 200 ] &&
            return 0
        kill -0 "$srv_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
run_tests() {
    local body sizes
    # What the contender answers: its body must be BODY; its header and body
    # sizes (bytes of HTTP on the wire per response) go into the report.
    body=$(ip netns exec "$CLI" curl -sS --noproxy '*' --max-time 5 -D "$work/$contender-headers.txt" "http://$SRV/")
    [ "$body" = "$BODY" ] || die "$contender answers '$body', not '$BODY'"
    sizes=$(ip netns exec "$CLI" curl -sS --noproxy '*' --max-time 5 -o /dev/null -w '%{size_header} %{size_download}' "http://$SRV/")
    echo "$sizes" > "$work/$contender-sizes.txt"
    echo "== round $round, $contender: HTTP keep-alive, wrk -t1 -c$CONNS, ${WARMUP}s warm-up + ${secs}s" >&2
    wrk_run "$WARMUP" > /dev/null
    measure rps wrk_run "$secs"
    echo "== round $round, $contender: HTTP keep-alive, shardnet-load -c$CONNS, ${WARMUP}s warm-up + ${secs}s" >&2
    load_run "$WARMUP" > /dev/null
    measure rps-sl load_run "$secs"
}

# ---------------------------------------------------------------------------
# nginx: 1 worker on core 1.
lab_nginx_conf '"text/plain; charset=utf-8"'
start_nginx() {
    ip -n "$DUT" addr add "$SRV/24" dev "$DIF"
    ip netns exec "$DUT" nginx -t -q "${nginx_args[@]}" || die "nginx rejects its configuration"
    ip netns exec "$DUT" taskset -c 1 nginx "${nginx_args[@]}" > "$work/nginx/stdout.log" 2>&1 &
    srv_pid=$!
    wait_http || { cat "$work/nginx/error.log" >&2; die "nginx does not answer on $SRV:80"; }
    local worker
    worker=$(pgrep -P "$srv_pid" | head -1)
    [ -n "$worker" ] || die "no nginx worker process"
    [ "$(awk '{print $39}' "/proc/$worker/stat")" = 1 ] || die "the nginx worker is not on core 1"
}
stop_nginx() {
    stop_pid "$srv_pid"; srv_pid=""
    ip -n "$DUT" addr flush dev "$DIF"
}

# tokio: bench/axum_tokio.rs, its one thread pinned to core 1 (it checks).
start_tokio() {
    ip -n "$DUT" addr add "$SRV/24" dev "$DIF"
    ip netns exec "$DUT" "$tokiobin" --listen "$SRV:80" --core 1 > "$work/tokio-r$round.log" 2>&1 &
    srv_pid=$!
    wait_http || { cat "$work/tokio-r$round.log" >&2; die "axum_tokio does not answer on $SRV:80"; }
    local cores
    cores=$(awk '/^Cpus_allowed_list/ {print $2}' "/proc/$srv_pid/status")
    [ "$cores" = 1 ] || die "axum_tokio runs on cores $cores, not 1"
}
stop_tokio() {
    local pid=$srv_pid
    srv_pid=""
    lab_stop_checked "$pid" TERM "$work/tokio-r$round.log" axum_tokio
    ip -n "$DUT" addr flush dev "$DIF"
}

# shardnet (http, axum): one busy worker on core 1; the control thread on
# core 0 (it only answers the metrics scrapes here).
for service in http app; do
    cat > "$work/shardnet-$service.toml" <<TOML
$(lab_dataplane "sna-$$")

[interface]
address = "$SRV/24"
mac = "auto"

[metrics]
listen = "127.0.0.1:9464"

[http]
body = "$BODY"

[[rule]]
name = "web"
protocol = "tcp"
ports = 80
service = "$service"

[default]
action = "drop"
TOML
done
"$bin" check --config "$work/shardnet-http.toml" > /dev/null || die "shardnet check rejects its configuration"
lab_load_toml ""

start_shardnet() { # BINARY ARGS...
    ip netns exec "$DUT" "$@" > "$work/$contender-r$round.log" 2>&1 &
    srv_pid=$!
    wait_http || { cat "$work/$contender-r$round.log" >&2; die "$contender does not answer on $SRV:80"; }
    [ "$(ip netns exec "$DUT" curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:9464/healthz)" = 200 ] ||
        die "$contender: shardnet's /healthz is not 200"
}
stop_shardnet() {
    local pid=$srv_pid
    srv_pid=""
    lab_stop_checked "$pid" INT "$work/$contender-r$round.log" "$contender"
}
start_http() { start_shardnet "$bin" run --config "$work/shardnet-http.toml"; }
stop_http() { stop_shardnet; }
start_axum() { start_shardnet "$axumbin" --config "$work/shardnet-app.toml"; }
stop_axum() { stop_shardnet; }

# ---------------------------------------------------------------------------
for round in $(seq 1 "$rounds"); do
    order=("${CONTENDERS[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=(); for ((i = ${#CONTENDERS[@]} - 1; i >= 0; i--)); do order+=("${CONTENDERS[i]}"); done
    fi
    for contender in "${order[@]}"; do
        echo "== round $round, $contender: starting on core 1" >&2
        "start_$contender"
        run_tests
        "stop_$contender"
    done
done

read -r load_after _ < /proc/loadavg
/usr/bin/python3 bench/axum_vs_tokio_report.py "$work" "$out/axum-vs-tokio.json" \
    --seconds "$secs" --rounds "$rounds" --backend "$backend" --connections "$CONNS" \
    --load-before "$load_before" --load-after "$load_after" --busy-before "$busy_before" \
    --client-csum "$client_csum"
