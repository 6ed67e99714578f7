#!/usr/bin/env bash
# shardnet demo: two throwaway network namespaces joined by a veth pair. shardnet
# (2 workers) owns one end; on the other, plain Linux pings it, exchanges UDP
# with its echo and discard services, and talks TCP to its http and echo services. Everything is removed at the end.
#
#   sudo ./scripts/demo.sh [af_packet|dpdk]      (default: dpdk)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-dpdk}"
case "$backend" in af_packet|dpdk) ;; *) echo "usage: $0 [af_packet|dpdk]" >&2; exit 2;; esac

./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building shardnet (release)"
cargo build --release --quiet
bin="$PWD/target/release/shardnet"

tag=$$
peer=snd-peer-$tag dut=snd-dut-$tag pif=sndp$tag dif=sndd$tag
work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    ip netns del "$peer" 2>/dev/null || true
    ip netns del "$dut" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== network: $peer ($pif 198.18.0.1/24) <--veth--> $dut ($dif, shardnet 198.18.0.2/24)"
ip netns add "$peer"; ip netns add "$dut"
ip link add "$pif" netns "$peer" type veth peer name "$dif" netns "$dut"
for pair in "$peer $pif" "$dut $dif"; do
    set -- $pair
    ip -n "$1" link set lo up; ip -n "$1" link set "$2" up
    ip netns exec "$1" ethtool -K "$2" rx off tx off tso off gso off gro off >/dev/null
done
ip -n "$peer" addr add 198.18.0.1/24 dev "$pif"

if [ "$backend" = dpdk ]; then
    dataplane="[dataplane]
backend = \"dpdk\"
workers = [0, 1]
control_core = 0
idle = \"adaptive\"

[dpdk]
eal_args = [\"--no-pci\", \"--no-huge\", \"--no-shconf\", \"-m\", \"512\", \"--vdev=net_af_packet0,iface=$dif,qpairs=2\"]
port = 0
mbufs_per_worker = 4095"
else
    dataplane="[dataplane]
backend = \"af_packet\"
workers = [0, 1]
control_core = 0
idle = \"adaptive\"

[af_packet]
interface = \"$dif\""
fi
cat > "$work/demo.toml" <<TOML
$dataplane

[interface]
address = "198.18.0.2/24"
gateway = "198.18.0.1"

[kernel]
enabled = true
kind = "tap"
name = "sn0"
queue_size = 512

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "discard"
protocol = "udp"
ports = "9"
service = "discard"

[[rule]]
name = "web"
protocol = "tcp"
ports = [80]
service = "http"

[[rule]]
name = "tcp-echo"
protocol = "tcp"
ports = "7"
service = "echo"

[tcp]
time_wait_ms = 1000

[default]
action = "kernel"

[metrics]
listen = "127.0.0.1:9464"

[debug]
flow_record = "$work/rec"
TOML
echo "== config ($backend backend)"
"$bin" check --config "$work/demo.toml"

echo "== starting shardnet"
ip netns exec "$dut" "$bin" run --config "$work/demo.toml" 2>"$work/shardnet.log" &
pid=$!
for _ in $(seq 1 40); do
    ip netns exec "$peer" ping -c1 -W1 198.18.0.2 >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/shardnet.log"; exit 1; }
    sleep 0.25
done

echo "== ping 198.18.0.2 (ICMP echo answered by shardnet; ARP too)"
ip netns exec "$peer" ping -c 5 -i 0.2 198.18.0.2
ip netns exec "$peer" ip neigh show dev "$pif"

echo "== UDP echo on port 7: 64 flows x 10 datagrams, checked byte for byte by a Linux client"
ip netns exec "$peer" /usr/bin/python3 tests/peers/udp_flows.py --dst 198.18.0.2 --port 7 --flows 64 --packets 10 \
    | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print("sent %d, echoed intact %d, mismatched %d" % (r["sent"], r["received"], r["mismatched"])); sys.exit(r["sent"]!=r["received"] or r["mismatched"])'

echo "== one datagram by hand through Python's socket API"
ip netns exec "$peer" /usr/bin/python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"hello, shardnet", ("198.18.0.2", 7)); print("reply:", s.recvfrom(100)[0].decode())'

echo "== UDP discard on port 9: 8 flows x 4 datagrams, no reply expected"
ip netns exec "$peer" /usr/bin/python3 tests/peers/udp_flows.py --dst 198.18.0.2 --port 9 --flows 8 --packets 4 --expect-echo 0 \
    | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print("sent %d, replies %d" % (r["sent"], r["received"]))'

echo "== TCP: curl against the http service on port 80"
ip netns exec "$peer" curl -sS --max-time 5 -i http://198.18.0.2/
echo "== TCP: 4 MiB through the echo service on port 7, compared by SHA-256"
ip netns exec "$peer" timeout 60 /usr/bin/python3 tests/peers/tcp_peer.py echo --dst 198.18.0.2 --port 7 --mib 4 \
    | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print("sent %d bytes, echoed %d, sha256 match %s, %.1f MiB/s" % (r["sent"], r["received"], r["match"], r["mib_per_s"])); sys.exit(not r["match"])'

echo "== the kernel's share: sn0 (created by shardnet, same address and MAC) and a kernel web server on :8000"
ip netns exec "$dut" ip -br addr show dev sn0
ip netns exec "$dut" ip route show default
mkdir -p "$work/www" && echo "served by the Linux kernel, through shardnet's exception port" > "$work/www/index.txt"
ip netns exec "$dut" /usr/bin/python3 tests/peers/http_server.py 198.18.0.2 8000 "$work/www" > "$work/www.log" 2>&1 &
www=$!
for _ in $(seq 1 40); do grep -q listening "$work/www.log" && break; sleep 0.1; done
ip netns exec "$peer" curl -sS --max-time 5 http://198.18.0.2:8000/index.txt
echo "== the kernel pings the peer (its ARP and ICMP go through shardnet both ways)"
ip netns exec "$dut" ping -c 2 -i 0.2 198.18.0.1 | tail -2
kill "$www"; wait "$www" 2>/dev/null || true

echo "== the control endpoint (in the DUT namespace): /healthz, /rules, a few of /metrics"
ip netns exec "$dut" curl -sS --max-time 5 http://127.0.0.1:9464/healthz
ip netns exec "$dut" curl -sS --max-time 5 http://127.0.0.1:9464/rules \
    | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); [print("rule %-9s %s %-8s -> %-8s hits %d" % (x["name"], x["protocol"], ",".join(x["ports"]), x["service"], x["hits"])) for x in r["rules"]]'
ip netns exec "$dut" curl -sS --max-time 5 http://127.0.0.1:9464/metrics \
    | grep -E '^shardnet_(udp_datagrams_total|tcp_connections_opened_total\{.*passive|worker_up|kernel_packets_total)'
if command -v promtool >/dev/null; then
    ip netns exec "$dut" curl -sS --max-time 5 http://127.0.0.1:9464/metrics | promtool check metrics \
        && echo "promtool check metrics: clean"
fi

echo "== stopping shardnet (SIGTERM)"
kill -TERM "$pid"; wait "$pid"; pid=""
/usr/bin/python3 - "$work/rec.stats.json" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
print(f'{"worker":>6} {"rx":>8} {"tx":>8} {"udp in":>8} {"udp out":>8} {"icmp":>6} {"tcp conns":>9} {"drops":>6}')
for w in stats["workers"]:
    print(f'{w["worker"]:>6} {w["rx_packets"]:>8} {w["tx_packets"]:>8} {w["udp_rx"]:>8} {w["udp_tx"]:>8} '
          f'{w["icmp_echo_replies"]:>6} {w["tcp"]["opened_passive"]:>9} {sum(w["drops"].values()):>6}')
PY
for f in "$work"/rec.worker*.flows; do
    echo "$(basename "$f" .flows): $(wc -l < "$f") flows"
done
echo "== demo done: shardnet log was:"
sed 's/^/   /' "$work/shardnet.log" | grep -v "final counters" || true
