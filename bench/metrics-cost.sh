#!/usr/bin/env bash
# What the control endpoint costs the fast path: shardnet's UDP echo on one
# worker core, with the control HTTP endpoint off, and on while a scraper
# fetches /metrics every 100 ms (50 times the 5 s of deploy/prometheus.yml).
# Same traffic as udp-echo.sh: a pcap of 60-byte requests over 1024 flows
# replayed from memory by net_pcap (infinite_rx=1), TX into net_pcap's drop.
#
# The two contenders alternate (off, on, off, on, ...) so that drift of this
# noisy VM hits both alike; each run lasts T and then 2T seconds and its rate
# is the extra packets echoed over the extra T (start-up cancels out). Worker
# on core 1; the control thread, the HTTP server and the scraper on core 0.
#
#   sudo ./bench/metrics-cost.sh [seconds per run] [pairs]     (default 4, 3)
# Prints a table and writes bench/out/metrics-cost.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-4}"
pairs="${2:-3}"
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --bin shardnet
out=bench/out; mkdir -p "$out"
work=$(mktemp -d)
scraper=""
cleanup() {
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

. bench/echo-common.sh
request_pcap "$work/req.pcap"
vdev="net_pcap0,rx_pcap=$work/req.pcap,infinite_rx=1"
listen="127.0.0.1:19464"

config() { # prefix metrics(on|off)
    echo_config "$vdev" snb-metrics
    if [ "$2" = on ]; then printf '\n[metrics]\nlisten = "%s"\n' "$listen"; fi
}

run_once() { # seconds prefix metrics -> prints "udp_tx scrapes"
    config "$2" "$3" > "$work/sn.toml"
    local scrapes="$work/scrapes"
    : > "$scrapes"
    if [ "$3" = on ]; then
        taskset -c 0 bash -c "while :; do curl -s -o /dev/null -w '%{http_code}\n' \
            http://$listen/metrics >> '$scrapes' 2>/dev/null; sleep 0.1; done" &
        scraper=$!
    fi
    timeout -s INT "$1" ./target/release/shardnet run --config "$work/sn.toml" 2> "$2.log" || true
    if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; scraper=""; fi
    local tx
    tx=$(echoed "$2.log")
    echo "$tx $(grep -c '^200$' "$scrapes" || true)"
}

rate() { # metrics -> prints "pps scrapes_in_long_run"
    local short long s_scr l_scr
    read -r short s_scr < <(run_once "$secs" "$work/s" "$1")
    read -r long l_scr < <(run_once "$((2 * secs))" "$work/l" "$1")
    if [ "$1" = on ] && [ "$l_scr" -lt $((secs * 5)) ]; then
        echo "the scraper got only $l_scr answers in $((2 * secs)) s" >&2; exit 1
    fi
    echo "$(( (long - short) / secs )) $l_scr"
}

results=()
for i in $(seq "$pairs"); do
    echo "== pair $i of $pairs: metrics off, then on (scraped every 100 ms), ${secs}s + $((2 * secs))s each" >&2
    read -r off _ < <(rate off)
    read -r on scrapes < <(rate on)
    results+=("$off $on $scrapes")
done

/usr/bin/python3 - "$secs" "${results[@]}" <<'PY' | tee "$out/metrics-cost.json"
import json, statistics, sys
secs = int(sys.argv[1])
pairs = [tuple(int(x) for x in r.split()) for r in sys.argv[2:]]
print(f'{"UDP echo, 1 worker, 60-byte, net_pcap":<40} {"off Mpps":>9} {"on Mpps":>9} {"on/off":>7} {"scrapes":>8}', file=sys.stderr)
ratios = []
for i, (off, on, scrapes) in enumerate(pairs, 1):
    ratios.append(on / off)
    print(f'{"pair " + str(i):<40} {off / 1e6:>9.3f} {on / 1e6:>9.3f} {on / off:>7.3f} {scrapes:>8}', file=sys.stderr)
median = statistics.median(ratios)
print(f'{"median ratio (metrics on / off)":<40} {"":>9} {"":>9} {median:>7.3f}', file=sys.stderr)
print(json.dumps({"seconds_per_run": secs, "scrape_interval_ms": 100,
                  "pairs": [{"off_pps": off, "on_pps": on, "scrapes_in_long_run": s} for off, on, s in pairs],
                  "ratios": ratios, "median_ratio": median}))
PY
