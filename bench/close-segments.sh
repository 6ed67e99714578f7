#!/usr/bin/env bash
# What one Connection: close HTTP exchange costs the client (issue 20, item
# 4), shardnet against the kernel (nginx), counted, not timed:
#
#   snwc-cli (client)  snwc-c 198.19.61.1/24 <--veth--> snwc-d  snwc-dut (server, core 1)
#
# For each server in turn: a capture on the client's veth of three
# `curl -H 'Connection: close'` and a 1 s `wrk -c1 -t1 -H 'Connection: close'`,
# summarised by tshark as each connection's segments (flags, lengths, who
# sends the FIN first), then N sequential connections from a Python client
# (connect, request, read until EOF, close) with the client kernel's TCP
# counters (nstat) per connection and the TIME-WAIT sockets left on it.
#
#   sudo ./bench/close-segments.sh [N (default 1000)] [af_packet|dpdk]
#
# Nothing is timed, so a busy machine changes no result. Captures and JSON
# go to bench/out/close-segments/.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
backend=${2:-af_packet}
case "$backend" in af_packet|dpdk) ;; *) echo "close-segments: backend af_packet or dpdk" >&2; exit 2;; esac
die() { echo "close-segments: $*" >&2; exit 1; }
# shellcheck source=bench/lab-common.sh
source bench/lab-common.sh

DUT=snwc-dut CLI=snwc-cli DIF=snwc-d CIF=snwc-c
CLIENT=198.19.61.1 SRV=198.19.61.2
BODY='shardnet\n'
lab_require nginx wrk curl nstat ethtool dumpcap tshark python3
lab_check_free
echo "== building shardnet (release)" >&2
cargo build --release --quiet --bin shardnet
bin="$PWD/target/release/shardnet"
out="$PWD/bench/out/close-segments"
mkdir -p "$out"
work=$(mktemp -d /tmp/close-segments.XXXXXX)
made_ns=() server_pid="" cap_pid=""
cleanup() {
    local rc=$?
    stop_pid "$cap_pid" INT; stop_pid "$server_pid" INT
    lab_teardown close-segments "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up
lab_client_csum SNB_CLIENT_CSUM > /dev/null
ip -n "$CLI" addr add "$CLIENT/24" dev "$CIF"
ip netns exec "$CLI" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
# Each side's receive work on its own core, as in http-vs-kernel.sh.
lab_steer

wait_http() { # 200 from the client's side within 10 s
    for _ in $(seq 1 50); do
        [ "$(ip netns exec "$CLI" curl -s --noproxy '*' --max-time 1 -o /dev/null -w '%{http_code}' "http://$SRV/")" = 200 ] && return 0
        sleep 0.2
    done
    return 1
}

# measure NAME: the capture, its summary, and the counted connections.
measure() {
    local name=$1 i
    ip netns exec "$CLI" dumpcap -q -i "$CIF" -w "$out/$name.pcapng" -a duration:60 2>/dev/null &
    cap_pid=$!
    sleep 1.5
    for i in 1 2 3; do
        ip netns exec "$CLI" curl -sS --noproxy '*' --max-time 5 -o /dev/null -H 'Connection: close' "http://$SRV/" ||
            die "curl $i against $name failed"
    done
    in_cli timeout 10 wrk -c1 -t1 -d1s -H 'Connection: close' "http://$SRV/" > "$out/$name.wrk"
    sleep 0.5
    stop_pid "$cap_pid" INT; cap_pid=""
    echo "== $name: each connection's segments (> from the client, < to it), most common first"
    python3 bench/close_segments.py patterns "$out/$name.pcapng" "$CLIENT"
    echo "== $name: the client kernel's counters per connection, $count sequential connections"
    in_cli python3 bench/close_segments.py client "$SRV" "$count" | tee "$out/$name.json"
}

# The kernel: nginx, one worker on core 1.
lab_nginx_conf text/plain
ip -n "$DUT" addr add "$SRV/24" dev "$DIF"
ip netns exec "$DUT" nginx -t -q "${nginx_args[@]}" || die "nginx rejects its configuration"
ip netns exec "$DUT" taskset -c 1 nginx "${nginx_args[@]}" > "$work/nginx/stdout.log" 2>&1 &
server_pid=$!
wait_http || { cat "$work/nginx/error.log" >&2; die "nginx does not answer on $SRV:80"; }
measure kernel
stop_pid "$server_pid"; server_pid=""
ip -n "$DUT" addr del "$SRV/24" dev "$DIF"
ip -n "$CLI" neigh flush all

# shardnet: one busy worker on core 1, the http service on port 80.
cat > "$work/shardnet.toml" <<TOML
$(lab_dataplane "snwc-$$")

[interface]
address = "$SRV/24"
mac = "auto"

[http]
body = "$BODY"

[[rule]]
name = "web"
protocol = "tcp"
ports = 80
service = "http"

[default]
action = "drop"
TOML
"$bin" check --config "$work/shardnet.toml" > /dev/null || die "shardnet check rejects its configuration"
ip netns exec "$DUT" "$bin" run --config "$work/shardnet.toml" > "$work/shardnet.log" 2>&1 &
server_pid=$!
wait_http || { cat "$work/shardnet.log" >&2; die "shardnet does not answer on $SRV:80"; }
measure shardnet
lab_stop_checked "$server_pid" INT "$work/shardnet.log" shardnet
server_pid=""
