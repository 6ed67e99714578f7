#!/usr/bin/env bash
# Smoke test of examples/axum_app in two throwaway network namespaces (AF_PACKET,
# 2 workers): GET /, GET /users/42, POST /echo (small and 200 KB), a 404.
#   cargo build --example axum_app && sudo ./scripts/axum-smoke.sh [BINARY]
set -u
bin="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/examples/axum_app}"
tag=$$; peer=axp-$tag dut=axd-$tag pif=axp$tag dif=axd$tag
work=$(mktemp -d); pid=""
cleanup(){ [ -n "$pid" ] && kill $pid 2>/dev/null; wait $pid 2>/dev/null; ip netns del $peer 2>/dev/null; ip netns del $dut 2>/dev/null; rm -rf $work; }
trap cleanup EXIT
ip netns add $peer; ip netns add $dut
ip link add $pif netns $peer type veth peer name $dif netns $dut
for pair in "$peer $pif" "$dut $dif"; do set -- $pair; ip -n $1 link set lo up; ip -n $1 link set $2 up; ip netns exec $1 ethtool -K $2 rx off tx off tso off gso off gro off >/dev/null; done
ip -n $peer addr add 198.18.0.1/24 dev $pif
cat > $work/c.toml <<TOML
[dataplane]
backend = "af_packet"
workers = [0, 1]
control_core = 0
idle = "adaptive"

[af_packet]
interface = "$dif"

[interface]
address = "198.18.0.2/24"

[[rule]]
name = "web"
protocol = "tcp"
ports = [8080]
service = "app"

[default]
action = "drop"
TOML
ip netns exec $dut $bin --config $work/c.toml 2>$work/log &
pid=$!
for i in $(seq 1 40); do ip netns exec $peer ping -c1 -W1 198.18.0.2 >/dev/null 2>&1 && break; kill -0 $pid 2>/dev/null || { cat $work/log; exit 1; }; sleep 0.25; done
for p in 40001 40002 40003 40004; do
ip netns exec $peer curl -s -m 5 --local-port $p http://198.18.0.2:8080/ ; echo " [GET / rc=$?]"
done
ip netns exec $peer curl -s -m 5 http://198.18.0.2:8080/users/42; echo " [users rc=$?]"
ip netns exec $peer curl -s -m 5 -X POST --data-binary 'echo me please' http://198.18.0.2:8080/echo; echo " [echo rc=$?]"
head -c 200000 /dev/urandom > $work/big
ip netns exec $peer curl -s -m 10 -X POST --data-binary @$work/big http://198.18.0.2:8080/echo -o $work/big.out; echo " [big echo rc=$?]"; cmp $work/big $work/big.out && echo "big echo identical"
ip netns exec $peer curl -s -m 5 -o /dev/null -w '%{http_code}\n' http://198.18.0.2:8080/nope
echo "--- log"; tail -5 $work/log
