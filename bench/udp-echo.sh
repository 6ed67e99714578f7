#!/usr/bin/env bash
# UDP echo, one worker core, side by side in one run on the same vdevs:
#   - dpdk-testpmd --forward-mode=macswap: the I/O limit of this machine
#     (receive, swap MACs, transmit: no protocol work at all);
#   - shardnet's echo service (parse Ethernet/IPv4/UDP, verify both checksums in
#     software, look the rule up, swap everything in place, send).
# Both read a pcap of 60-byte UDP requests over 1024 flows from net_pcap with
# infinite_rx=1 (replayed from memory), and transmit into net_pcap's TX drop.
# Then instructions per packet under callgrind (repeatable, unlike time here):
#   - the stack alone (bench/stack_replay.rs, no I/O);
#   - the whole shardnet process on the same vdev (PMD RX/TX included).
#
#   sudo ./bench/udp-echo.sh [seconds per run]       (default 8)
# Prints a table and writes bench/out/udp-echo.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-8}"
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing (package dpdk)" >&2; exit 1; }
cargo build --release --quiet --bin shardnet --example stack_replay
out=bench/out; mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

. bench/echo-common.sh
request_pcap "$work/req.pcap"
vdev="net_pcap0,rx_pcap=$work/req.pcap,infinite_rx=1"
eal=(--no-pci --no-huge -m 1024 --no-shconf --no-telemetry)

echo "== dpdk-testpmd macswap, 1 forwarding core, ${secs}s" >&2
# Three seconds more than asked for EAL's start-up, which took up to 4 s here:
# the samples before forwarding began read 0 and are left out.
timeout -s INT "$((secs + 3))" dpdk-testpmd "${eal[@]}" --file-prefix=snb-testpmd -l 0,1 --vdev="$vdev" -- \
    --forward-mode=macswap --nb-cores=1 --total-num-mbufs=8192 --stats-period 1 \
    > "$work/testpmd.log" 2>&1 || true
# Per-second Tx-pps samples from the first non-zero one, that one (a partial
# second) and the next (warm-up) dropped; the median.
testpmd_pps=$(awk '/Tx-pps:/ && ($2 > 0 || n > 0) {n++; if (n > 2) print $2}' "$work/testpmd.log" | sort -n |
    awk '{v[NR]=$1} END {if (NR == 0) exit 1; print v[int((NR + 1) / 2)]}') || {
    echo "testpmd produced no rate:" >&2; cat "$work/testpmd.log" >&2; exit 1; }

# shardnet: run twice, for T and 2T seconds; rate = extra packets / extra time
# (start-up and shutdown cancel out).
config() { echo_config "$vdev" snb-shardnet; }
run_shardnet() { # seconds prefix -> prints udp_tx
    config "$2" > "$work/sn.toml"
    timeout -s INT "$1" ./target/release/shardnet run --config "$work/sn.toml" 2> "$2.log" || true
    echoed "$2.log"
}
echo "== shardnet echo, 1 worker, ${secs}s and $((2 * secs))s" >&2
short=$(run_shardnet "$secs" "$work/short")
long=$(run_shardnet "$((2 * secs))" "$work/long")
shardnet_pps=$(( (long - short) / secs ))

echo "== callgrind: instructions per packet" >&2
ir() { # command... -> total instructions executed
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$@" >/dev/null 2>"$work/cg.err" || {
        cat "$work/cg.err" >&2; exit 1; }
    awk '/^summary:/ {print $2}' "$work/cg.out"
}
n1=200000 n2=1200000
ir1=$(ir ./target/release/examples/stack_replay $n1)
ir2=$(ir ./target/release/examples/stack_replay $n2)
stack_ipp=$(( (ir2 - ir1) / (n2 - n1) ))

# The whole shardnet process on net_pcap, PMD RX/TX included, for two run
# lengths: extra instructions / extra packets echoed (start-up cancels out).
# (The worker loop is inlined into its launch closure, so there is no symbol to
# toggle collection on.)
cg_shardnet() { # seconds tag -> "instructions packets"
    config "$work/$2" > "$work/sn.toml"
    # --fair-sched=yes: valgrind runs one thread at a time, and without it the
    # busy-polling worker can keep the control thread, which handles SIGINT,
    # from running for minutes (a 20 s run once echoed for about 5 minutes).
    timeout -s INT "$1" valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$work/$2.out" \
        ./target/release/shardnet run --config "$work/sn.toml" >/dev/null 2>"$work/$2.err" || true
    local ir pkts
    ir=$(awk '/^summary:/ {print $2}' "$work/$2.out")
    pkts=$(echoed "$work/$2.err")
    echo "$ir $pkts"
}
read -r lir1 lp1 < <(cg_shardnet 20 cg1)
read -r lir2 lp2 < <(cg_shardnet 40 cg2)
[ "$lp2" -gt "$lp1" ] || { echo "callgrind runs echoed $lp1 and $lp2 packets" >&2; exit 1; }
loop_ipp=$(( (lir2 - lir1) / (lp2 - lp1) ))
loop_pkts=$(( lp2 - lp1 ))

/usr/bin/python3 - "$testpmd_pps" "$shardnet_pps" "$stack_ipp" "$loop_ipp" "$loop_pkts" "$secs" <<'PY' | tee "$out/udp-echo.json"
import json, sys
tp, sn, stack_ipp, loop_ipp, loop_pkts, secs = sys.argv[1:]
tp, sn = float(tp), float(sn)
rows = [("dpdk-testpmd macswap (I/O limit)", tp), ("shardnet UDP echo", sn)]
print(f'{"1 core, 60-byte UDP, 1024 flows, net_pcap":<44} {"Mpps":>8} {"ratio":>8}', file=sys.stderr)
for name, pps in rows:
    print(f'{name:<44} {pps / 1e6:>8.2f} {pps / tp:>8.2f}', file=sys.stderr)
print(f'instructions per packet (callgrind): stack alone {stack_ipp}, whole process '
      f'with PMD RX/TX {loop_ipp} (slope over {loop_pkts} extra packets)', file=sys.stderr)
print(json.dumps({"seconds_per_run": int(secs), "testpmd_macswap_pps": tp, "shardnet_echo_pps": sn,
                  "ratio": sn / tp, "stack_instructions_per_packet": int(stack_ipp),
                  "process_instructions_per_packet": int(loop_ipp)}))
PY
