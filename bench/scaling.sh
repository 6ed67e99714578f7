#!/usr/bin/env bash
# Multi-core scaling of shardnet without a NIC: for each worker count W,
# shardnet (W workers, cores 1..W) against shardnet-load (W workers on W other
# cores), two DPDK processes joined by a net_memif link with W queue pairs.
# Measures UDP echo (64-byte datagrams, closed loop, 256 flows per worker) in
# Mpps and HTTP keep-alive (256 connections per worker) in requests/s, and
# the efficiency of each: (rate / W) / (rate / W at the smallest W run), that
# is rate / (W * rate at 1 worker) when 1 runs.
#
#   sudo ./bench/scaling.sh ["1 2 4 8 12"] [seconds per run]    (default 8)
#
# Worker counts whose 2*W cores the machine does not have are refused (with
# the reason) and the others run; SNB_SCALING_SHARE_CORES=1 runs them on
# shared cores instead, to check the multi-queue path on a small machine
# (its rates then mean nothing). The plan and its duration are printed
# first. Results: a table on stdout and bench/out/scaling.json.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lab-common.sh
. bench/lab-common.sh # stop_pid

die() { echo "scaling.sh: $*" >&2; exit 1; }

counts="${1:-1 2 4 8 12}"
secs="${2:-8}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]] || [ "$secs" -gt 120 ]; then
    die "seconds per run must be a whole number from 1 to 120, not '$secs'"
fi
cores=$(nproc)
[ "$cores" -ge 2 ] || die "needs 2 cores at least (one worker, one load generator core), this machine has $cores"
for tool in curl python3 ldd timeout; do
    command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh installs it)"
done
export PATH="$HOME/.cargo/bin:$PATH"

# The plan: W server workers on cores 1..W, W generator workers on the next
# W cores (wrapping to core 0, which is otherwise left to the two control
# threads). The generator gets as many workers as the server: memif pairs
# queue i of one side with queue i of the other, and shardnet-load picks each
# flow's source port so that its replies hash to the worker that sent it,
# which with the same number of workers is the server's worker of that queue
# too: no packet crosses between workers on either side.
plan=()
refused=()
for w in $(tr -s ' \t' '\n' <<<"$counts" | sort -n | uniq); do
    [[ "$w" =~ ^[1-9][0-9]*$ ]] || die "worker counts must be positive whole numbers, not '$w'"
    if [ $((2 * w)) -le "$cores" ]; then
        plan+=("$w")
    elif [ "${SNB_SCALING_SHARE_CORES:-0}" = 1 ]; then
        plan+=("$w")
        echo "scaling.sh: WARNING: $w workers share cores (SNB_SCALING_SHARE_CORES=1): a check that the \
multi-queue path works, its rates mean nothing" >&2
    else
        refused+=("$w")
        echo "scaling.sh: $w workers refused: the server's $w cores and the load generator's $w need \
$((2 * w)) cores, this machine has $cores" >&2
    fi
done
[ "${#plan[@]}" -gt 0 ] || die "no worker count fits on $cores cores"
# Per worker count: server start (~3 s), UDP run (secs, 2 s of drain, ~2 s
# of start-up), HTTP run (secs, ~2 s of start-up), server stop (~1 s).
per_count=$((2 * secs + 10))
echo "== plan: workers ${plan[*]} on $cores cores, $secs s per run: about $((${#plan[@]} * per_count)) s \
after the build (${per_count} s per worker count)" >&2
[ $((${#plan[@]} * per_count)) -le 300 ] ||
    echo "scaling.sh: WARNING: the plan takes more than 5 minutes; fewer seconds per run would shorten it" >&2

cargo build --release --quiet --bin shardnet --bin shardnet-load
out=bench/out; mkdir -p "$out"
work=$(mktemp -d /tmp/snb-scaling.XXXXXX)
prefix="snb-scal-$$"
server_pid=
load_pid=
cleanup() {
    local rc=$?
    stop_pid "$load_pid"
    stop_pid "$server_pid"
    # EAL's runtime folders: /var/run/dpdk as root, else $XDG_RUNTIME_DIR/dpdk.
    rm -rf "$work" "/var/run/dpdk/$prefix-server" "/var/run/dpdk/$prefix-client" \
        "${XDG_RUNTIME_DIR:-/tmp}/dpdk/$prefix-server" "${XDG_RUNTIME_DIR:-/tmp}/dpdk/$prefix-client"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary set: copied out of target/ and run from the scratch directory;
# DPDK and the C libraries come from the distribution, nothing from target/.
mkdir "$work/bin"
cp target/release/shardnet target/release/shardnet-load "$work/bin/"
for b in shardnet shardnet-load; do
    libs=$(ldd "$work/bin/$b")
    if grep -q "not found" <<<"$libs"; then
        die "$b: a library is missing: $(grep "not found" <<<"$libs" | tr -s ' \t\n' ' ')"
    fi
    if grep -qF "$PWD/target" <<<"$libs"; then
        die "$b needs a library from target/: $(grep -F "$PWD/target" <<<"$libs" | tr -s ' \t\n' ' ')"
    fi
    echo "== ldd $b: $(grep -c . <<<"$libs") libraries, $(grep -c 'librte_' <<<"$libs") of them DPDK's \
($(grep -o '/[^ ]*librte_ethdev[^ ]*' <<<"$libs" | head -1)), none from target/, none missing" >&2
done
# net_memif is a driver plugin EAL loads from the distribution's PMD folder,
# not a library ldd lists: check it is there.
pmd_dir=$(pkg-config --variable=libdir libdpdk 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/dpdk
memif_pmd=$(find "$pmd_dir" -maxdepth 2 -name 'librte_net_memif.so*' 2>/dev/null | head -1)
[ -n "$memif_pmd" ] || die "the net_memif driver is not in $pmd_dir (the distribution's dpdk package has it)"
echo "== net_memif driver: $memif_pmd" >&2
bin="$work/bin"

eal() { # role workers -> eal_args
    local mem=$((256 + 64 * $2))
    echo "[\"--no-pci\", \"--no-huge\", \"--no-shconf\", \"--no-telemetry\", \"-m\", \"$mem\", \
\"--file-prefix=$prefix-$1\", \"--vdev=net_memif0,role=$1,socket=$work/memif.sock\"]"
}
list() { local IFS=,; echo "$*"; }
metrics_port=19482
metrics() { # FILE: the server's counters now
    curl -sf --max-time 5 "http://127.0.0.1:$metrics_port/metrics" > "$1" ||
        die "the server's metrics endpoint did not answer"
}

measure() { # W
    local w=$1 c srv=() cli=() cli_control=0
    for ((c = 1; c <= w; c++)); do srv+=("$((c % cores))"); done
    for ((c = w + 1; c <= 2 * w; c++)); do cli+=("$((c % cores))"); done
    [ "${cli[-1]}" != 0 ] || cli_control=1 # core 0 is a generator worker: share a server core
    cat > "$work/server.toml" <<CONF
[dataplane]
backend = "dpdk"
workers = [$(list "${srv[@]}")]
control_core = 0
idle = "busy"
[dpdk]
eal_args = $(eal server "$w")
mbufs_per_worker = 16383
[interface]
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
[metrics]
listen = "127.0.0.1:$metrics_port"
[[rule]]
name = "udp-echo"
protocol = "udp"
ports = "7"
service = "echo"
[[rule]]
name = "web"
protocol = "tcp"
ports = "80"
service = "http"
[tcp]
time_wait_ms = 1000
[default]
action = "drop"
CONF
    cat > "$work/client.toml" <<CONF
[dataplane]
backend = "dpdk"
workers = [$(list "${cli[@]}")]
control_core = $cli_control
idle = "busy"
[dpdk]
eal_args = $(eal client "$w")
mbufs_per_worker = 16383
[interface]
address = "198.18.0.3/24"
mac = "02:00:00:00:00:03"
[default]
action = "drop"
CONF
    echo "== $w workers: server on cores $(list "${srv[@]}"), shardnet-load on cores $(list "${cli[@]}")" >&2
    "$bin/shardnet" run --config "$work/server.toml" 2> "$work/server-$w.log" &
    server_pid=$!
    local up=
    for _ in $(seq 1 150); do
        kill -0 "$server_pid" 2>/dev/null || { tail -20 "$work/server-$w.log" >&2; die "the server exited at start"; }
        if curl -sf --max-time 1 "http://127.0.0.1:$metrics_port/metrics" >/dev/null; then up=1; break; fi
        sleep 0.1
    done
    [ -n "$up" ] || { tail -20 "$work/server-$w.log" >&2; die "the server's metrics endpoint was not up after 15 s"; }

    local mode limit=$((3 * secs + 30))
    for mode in udp http; do
        local args=(--mode udp --target 198.18.0.2:7 --flows $((256 * w)) --size 64)
        [ "$mode" = udp ] || args=(--mode rps --target 198.18.0.2:80 --connections $((256 * w)))
        metrics "$work/m-$w-$mode-a.prom"
        timeout --kill-after=10 "$limit" "$bin/shardnet-load" --config "$work/client.toml" \
            --duration "$secs" --quiet --json "$work/$mode-$w.json" "${args[@]}" \
            > "$work/$mode-$w.out" 2> "$work/$mode-$w.log" &
        load_pid=$!
        local rc=0
        wait "$load_pid" || rc=$?
        load_pid=
        [ "$rc" = 0 ] || { tail -20 "$work/$mode-$w.log" >&2; die "shardnet-load ($mode, $w workers) exited with $rc"; }
        metrics "$work/m-$w-$mode-b.prom"
    done
    cp "$work/server-$w.log" "$out/scaling-server-$w.log"
    stop_pid "$server_pid"
    server_pid=
}

for w in "${plan[@]}"; do measure "$w"; done
python3 bench/scaling_report.py "$work" "$out/scaling.json" "$secs" "$cores" "${plan[*]}" "${refused[*]}"
