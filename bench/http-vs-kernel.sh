#!/usr/bin/env bash
# shardnet against the Linux kernel, one server core each, in one run, over one
# veth pair between two throwaway network namespaces:
#
#   snb-cli (client, core 0)  snb-c 198.18.0.1/24 <--veth--> snb-d  snb-dut (server, core 1)
#
# The server side is in turns the kernel (nginx, a C echo server, a C discard
# sink, with 198.18.0.2/24 on snb-d) and shardnet (one busy-polling worker on
# core 1 owning snb-d as 198.18.0.2/24, its http, echo and discard services).
# The same clients measure both, pinned to core 0:
#   1. HTTP keep-alive requests/s: wrk -t1 -c256, 9-byte body;
#   2. HTTP connections/s: the same with "Connection: close" (a connection per
#      request; checked against the servers' own counts of accepted connections);
#   3. and 4. the same two with shardnet-load as the client (shardnet's own
#      stack over AF_PACKET on the client's veth, as 198.18.0.3): one client
#      core drives about twice what wrk drives, so the server's limit shows;
#   5. HTTP latency under a fixed load: shardnet-load at LAT_RATE requests/s
#      over the same keep-alive connections, each request timed from when it
#      was due (as wrk2), p50 and p99;
#   6. one TCP connection's throughput into a discard server (bench/tcp_probe.py);
#   7. round-trip time of 64-byte messages on one connection to an echo server.
# Each round measures both contenders, the kernel first in odd rounds and
# shardnet first in even ones; the table shows medians over the rounds.
#
#   sudo ./bench/http-vs-kernel.sh [seconds per run] [af_packet|dpdk] [rounds]
#       (defaults: 8 s, af_packet, 2 rounds; about 4 minutes, plus the build)
#
# Prints a table (metric | kernel | shardnet | shardnet/kernel) and the cores'
# utilisation, and writes bench/out/http-vs-kernel.json. Exits 1 if a check
# fails (errors from wrk, server counts that disagree with the client's).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [seconds per run] [af_packet|dpdk] [rounds]"
secs="${1:-8}"
backend="${2:-af_packet}"
rounds="${3:-2}"
case "$secs" in ''|*[!0-9]*) echo "$usage" >&2; exit 2;; esac
case "$backend" in af_packet|dpdk) ;; *) echo "$usage" >&2; exit 2;; esac
case "$rounds" in ''|*[!0-9]*|0) echo "$usage" >&2; exit 2;; esac
[ "$secs" -ge 2 ] || { echo "http-vs-kernel: at least 2 seconds per run" >&2; exit 2; }

die() { echo "http-vs-kernel: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
. bench/lab-common.sh
lab_require nginx wrk curl nstat ethtool taskset cc timeout
echo "== building shardnet (release)" >&2
cargo build --release --quiet --bin shardnet --bin shardnet-load
bin="$PWD/target/release/shardnet"
loadbin="$PWD/target/release/shardnet-load"
out=bench/out; mkdir -p "$out"

DUT=snb-dut CLI=snb-cli DIF=snb-d CIF=snb-c
SRV=198.18.0.2 CLIENT=198.18.0.1 LOAD_IP=198.18.0.3
BODY='shardnet\n'          # both servers' body: "shardnet" and a newline, 9 bytes
CONNS=256 WARMUP=2 RTT_COUNT=20000
LAT_RATE=10000             # requests/s for the latency-under-load test: well under both servers' limits

lab_check_free

work=$(mktemp -d /tmp/http-vs-kernel.XXXXXX)
made_ns=() nginx_pid="" echo_pid="" sink_pid="" sn_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$sn_pid" INT; stop_pid "$nginx_pid"; stop_pid "$echo_pid"; stop_pid "$sink_pid"
    lab_teardown http-vs-kernel "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -Wall -Wextra -o "$work/kernel_tcp_server" bench/kernel_tcp_server.c || die "cannot build bench/kernel_tcp_server.c"

read -r load_before _ < /proc/loadavg
busy_before=$(lab_busy_pct)

lab_up
# Offloads model a wire between two hosts with NICs. No segmentation or
# receive offload on either side: a wire carries MTU-sized frames, and neither
# server gets GRO (shardnet has none). The client's TCP checksum is left to
# "hardware" as on a NIC (veth hands the packet over with the checksum
# pending, CHECKSUM_PARTIAL), which both servers then accept without summing
# the payload, as they accept a NIC's RX checksum verdict: the kernel because
# such a packet never left the host, shardnet because the AF_PACKET frame says
# TP_STATUS_CSUMNOTREADY. Real 10G NICs verify TCP checksums on receive.
# With the dpdk backend it stays off: DPDK's net_af_packet drops that status,
# so shardnet would sum a checksum the client never finished and drop every
# segment. SNB_CLIENT_CSUM=0 makes the client sum in software and both servers
# verify every segment themselves (the setting of runs before 2026-11-23).
client_csum=$(lab_client_csum SNB_CLIENT_CSUM)
# The client's TCP congestion control shapes the one-connection test (BBR paces
# its sends; CUBIC fills the receiver's queue until it loses a packet); the
# system default applies to both servers alike and goes into the report.
client_cc=$(ip netns exec "$CLI" sysctl -n net.ipv4.tcp_congestion_control)
ip -n "$CLI" addr add "$CLIENT/24" dev "$CIF"
# The client cycles through many connections in the connections/s test.
ip netns exec "$CLI" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
# Receive Packet Steering: a veth receives on the sender's core unless told
# otherwise, which would run the server's receive path on the client's core and
# the client's on the server's. Steer each side's receive work to its own core:
# the client's to core 0 (mask 1), the server's to core 1 (mask 2).
# SNB_STEER=0 leaves the veth's default (for comparison).
if [ "${SNB_STEER:-1}" = 1 ]; then lab_steer; fi

# ---------------------------------------------------------------------------
# Measurement: snapshots of the cores and the server's counters around each
# client run; bench/http_vs_kernel_report.py reads them all at the end.
contender="" round="" srv_pid=""
snap() { # PREFIX
    lab_cpu_snap "$1"
    ip netns exec "$CLI" nstat -asz -j > "$1.client-nstat.json"
    if [ "$contender" = kernel ]; then
        ip netns exec "$DUT" curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:8080/stub > "$1.stub"
        ip netns exec "$DUT" nstat -asz -j > "$1.nstat.json"
        cat "/proc/$srv_pid/stat" > "$1.proc"
    else
        ip netns exec "$DUT" curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:9464/metrics > "$1.metrics"
    fi
}
# measure TEST CMD...: runs CMD (the client) between two snapshots; its stdout
# goes to $work/CONTENDER-rROUND-TEST.out.
measure() {
    local tag="$work/$contender-r$round-$1"; shift
    snap "$tag.pre"
    "$@" > "$tag.out" 2> "$tag.err" || { cat "$tag.out" "$tag.err" >&2; die "$contender: client failed: $*"; }
    snap "$tag.post"
}
wrk_run() { # SECONDS [wrk args...]
    local d="$1"; shift
    in_cli timeout $((d + 30)) wrk -t1 -c"$CONNS" -d"${d}s" --timeout 2s -s bench/wrk-json.lua "$@"
}
# shardnet-load, the second client: shardnet's own stack on core 0 over
# AF_PACKET on the client's veth, as LOAD_IP (an address the client
# namespace's kernel does not hold, so it ignores the replies); one line of
# JSON on stdout.
load_run() { # SECONDS rps|cps [shardnet-load args...]
    local d="$1" mode="$2"; shift 2
    in_cli timeout $((d + 30)) "$loadbin" --config "$work/load.toml" --mode "$mode" --target "$SRV:80" \
        --connections "$CONNS" --duration "$d" --quiet --json "$work/load-last.json" "$@" \
        >> "$work/shardnet-load.log" 2>&1 || { tail -20 "$work/shardnet-load.log" >&2; return 1; }
    /usr/bin/python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/load-last.json"
}
wait_http() { # URL: 200 from the client's side within 10 s
    for _ in $(seq 1 100); do
        [ "$(ip netns exec "$CLI" curl -s --noproxy '*' --max-time 1 -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
check_close() { # the server answers "Connection: close" and closes
    local headers
    headers=$(ip netns exec "$CLI" curl -sS --noproxy '*' --max-time 5 -D - -o /dev/null -H 'Connection: close' "http://$SRV/")
    grep -qi '^connection: *close' <<< "$headers" || die "$contender: no 'Connection: close' in the response: $headers"
}
run_tests() {
    local body
    body=$(ip netns exec "$CLI" curl -sS --noproxy '*' --max-time 5 "http://$SRV/" | od -An -c | tr -s ' ')
    echo "$contender body:$body" > "$work/$contender-body.txt"
    check_close
    echo "== round $round, $contender: HTTP keep-alive, wrk -t1 -c$CONNS, ${WARMUP}s warm-up + ${secs}s" >&2
    wrk_run "$WARMUP" "http://$SRV/" > /dev/null
    measure rps wrk_run "$secs" "http://$SRV/"
    echo "== round $round, $contender: HTTP Connection: close, wrk -t1 -c$CONNS, ${WARMUP}s warm-up + ${secs}s" >&2
    wrk_run "$WARMUP" -H "Connection: close" "http://$SRV/" > /dev/null
    measure cps wrk_run "$secs" -H "Connection: close" "http://$SRV/"
    echo "== round $round, $contender: HTTP keep-alive, shardnet-load -c$CONNS, ${WARMUP}s warm-up + ${secs}s" >&2
    load_run "$WARMUP" rps > /dev/null
    measure rps-sl load_run "$secs" rps
    echo "== round $round, $contender: HTTP keep-alive at $LAT_RATE requests/s, shardnet-load -c$CONNS, ${secs}s" >&2
    measure lat-sl load_run "$secs" rps --rate "$LAT_RATE"
    echo "== round $round, $contender: HTTP connect-request-close, shardnet-load -c$CONNS, ${WARMUP}s warm-up + ${secs}s" >&2
    load_run "$WARMUP" cps > /dev/null
    measure cps-sl load_run "$secs" cps
    echo "== round $round, $contender: one connection into discard (port 9), ${secs}s" >&2
    [ "$contender" = kernel ] && srv_pid=$sink_pid
    measure bulk in_cli timeout $((secs + 30)) /usr/bin/python3 bench/tcp_probe.py bulk \
        --dst "$SRV" --port 9 --seconds "$secs"
    echo "== round $round, $contender: $RTT_COUNT round trips of 64 bytes through echo (port 7)" >&2
    [ "$contender" = kernel ] && srv_pid=$echo_pid
    measure rtt in_cli timeout 60 /usr/bin/python3 bench/tcp_probe.py rtt \
        --dst "$SRV" --port 7 --count "$RTT_COUNT" --warmup 1000 --size 64 --max-seconds 20
}

# ---------------------------------------------------------------------------
# The kernel: nginx (1 worker on core 1), the C echo and discard servers on core 1.
lab_nginx_conf text/plain

start_kernel() {
    echo "== round $round, kernel: starting nginx, echo and discard servers on core 1" >&2
    ip -n "$DUT" addr add "$SRV/24" dev "$DIF"
    ip netns exec "$DUT" nginx -t -q "${nginx_args[@]}" || die "nginx rejects its configuration"
    ip netns exec "$DUT" taskset -c 1 nginx "${nginx_args[@]}" > "$work/nginx/stdout.log" 2>&1 &
    nginx_pid=$!
    ip netns exec "$DUT" taskset -c 1 "$work/kernel_tcp_server" echo "$SRV" 7 > "$work/kernel-r$round-echo.log" 2>&1 &
    echo_pid=$!
    ip netns exec "$DUT" taskset -c 1 "$work/kernel_tcp_server" discard "$SRV" 9 > "$work/kernel-r$round-sink.log" 2>&1 &
    sink_pid=$!
    wait_http "http://$SRV/" || { cat "$work/nginx/error.log" >&2; die "nginx does not answer on $SRV:80"; }
    for log in echo sink; do
        for _ in $(seq 1 50); do grep -q listening "$work/kernel-r$round-$log.log" && break; sleep 0.1; done
        grep -q listening "$work/kernel-r$round-$log.log" || { cat "$work/kernel-r$round-$log.log" >&2; die "kernel $log server does not listen"; }
    done
    srv_pid=$(pgrep -P "$nginx_pid" | head -1)
    [ -n "$srv_pid" ] || die "no nginx worker process"
    [ "$(awk '{print $39}' "/proc/$srv_pid/stat")" = 1 ] || die "the nginx worker is not on core 1"
}
stop_kernel() {
    stop_pid "$nginx_pid"; nginx_pid=""
    stop_pid "$echo_pid"; echo_pid=""
    stop_pid "$sink_pid"; sink_pid=""
    ip -n "$DUT" addr flush dev "$DIF"
}

# ---------------------------------------------------------------------------
# shardnet: one busy worker on core 1; the control thread on core 0 (it only
# answers the metrics scrapes here).
cat > "$work/shardnet.toml" <<TOML
$(lab_dataplane "snb-$$")

[interface]
address = "$SRV/24"
mac = "auto"

[metrics]
listen = "127.0.0.1:9464"

[tcp]
# The connections/s test leaves every connection in TIME-WAIT (60 s, as
# Linux) on the server, which closes first: room for them all.
max_connections_per_worker = 1048576
# 4 MiB per direction (the default 256 KiB window limits one connection to
# about 2.5 Gbit/s at this setup's round trip; Linux autotunes its receive
# buffer up to net.ipv4.tcp_rmem's maximum). Buffers are taken only while
# they hold data, so the keep-alive connections hold none between requests.
buffer_size = 4194304
max_buffers_per_worker = 1024

[http]
body = "$BODY"

[[rule]]
name = "web"
protocol = "tcp"
ports = 80
service = "http"

[[rule]]
name = "discard"
protocol = "tcp"
ports = 9
service = "discard"

[[rule]]
name = "echo"
protocol = "tcp"
ports = 7
service = "echo"

[default]
action = "drop"
TOML
"$bin" check --config "$work/shardnet.toml" > /dev/null || die "shardnet check rejects its configuration"
lab_load_toml "[tcp]
max_connections_per_worker = 1048576"

start_shardnet() {
    echo "== round $round, shardnet ($backend backend): starting, 1 worker on core 1" >&2
    ip netns exec "$DUT" "$bin" run --config "$work/shardnet.toml" > "$work/shardnet-r$round.log" 2>&1 &
    sn_pid=$!
    if ! wait_http "http://$SRV/"; then
        cat "$work/shardnet-r$round.log" >&2; die "shardnet does not answer on $SRV:80"
    fi
    [ "$(ip netns exec "$DUT" curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:9464/healthz)" = 200 ] ||
        die "shardnet's /healthz is not 200"
    # The idle poll rate, for the estimate of the worker's busy time under load.
    sleep 1
    snap "$work/shardnet-r$round-idle.pre"; sleep 2; snap "$work/shardnet-r$round-idle.post"
}
stop_shardnet() {
    local pid=$sn_pid
    sn_pid=""
    lab_stop_checked "$pid" INT "$work/shardnet-r$round.log" shardnet
    sed -n 's/.*final counters: //p' "$work/shardnet-r$round.log" | tail -1 > "$work/shardnet-r$round-final.json"
    [ -s "$work/shardnet-r$round-final.json" ] || die "no final counters in shardnet's log"
}

# ---------------------------------------------------------------------------
# The rounds: kernel then shardnet in odd rounds, shardnet then kernel in even
# ones, so that a drift of the machine during the run favours neither.
for round in $(seq 1 "$rounds"); do
    order="kernel shardnet"
    [ $((round % 2)) = 0 ] && order="shardnet kernel"
    for contender in $order; do
        "start_$contender"
        run_tests
        "stop_$contender"
    done
done

read -r load_after _ < /proc/loadavg
/usr/bin/python3 bench/http_vs_kernel_report.py "$work" "$out/http-vs-kernel.json" \
    --seconds "$secs" --rounds "$rounds" --backend "$backend" --connections "$CONNS" --rtt-count "$RTT_COUNT" \
    --lat-rate "$LAT_RATE" \
    --load-before "$load_before" --load-after "$load_after" --busy-before "$busy_before" --steer "${SNB_STEER:-1}" \
    --client-csum "$client_csum" --client-cc "$client_cc"
