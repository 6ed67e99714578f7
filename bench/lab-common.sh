# shellcheck shell=bash disable=SC2154 # the caller sets work, backend and bin
# Sourced by http-vs-kernel.sh and axum-vs-tokio.sh: the lab they share, one
# veth pair between two throwaway network namespaces, the server's on core 1
# and the client's on core 0,
#
#   $CLI (client, core 0)  $CIF $CLIENT/24 <--veth--> $DIF  $DUT (server, core 1)
#
# and the helpers around it. The caller defines die() and sets DUT, CLI, DIF,
# CIF, CLIENT, SRV (the server's address), LOAD_IP (shardnet-load's), backend
# (af_packet or dpdk), bin (the shardnet binary) and work (its scratch
# directory), and keeps the namespaces it made in the array made_ns.

# lab_require TOOL...: root, the dependencies installed, each TOOL on the
# PATH (with ~/.cargo/bin) and two cores, or die.
lab_require() {
    [ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, nginx, AF_PACKET)"
    ./scripts/install-deps.sh
    export PATH="$HOME/.cargo/bin:$PATH"
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh installs it)"
    done
    [ "$(nproc)" -ge 2 ] || die "needs 2 cores (client on core 0, server on core 1)"
}

# lab_check_free: die if a namespace of the lab exists already.
lab_check_free() {
    local ns
    for ns in "$DUT" "$CLI"; do
        ! ip netns list | awk '{print $1}' | grep -qx "$ns" || die "network namespace $ns exists already (another run, or a \
crashed one: ip netns del $ns)"
    done
}

# stop_pid PID [signal]: signal one process we started and wait (at most 10 s)
# for it to end, then kill it.
stop_pid() {
    [ -n "$1" ] || return 0
    kill "-${2:-TERM}" "$1" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# lab_stop_checked PID SIGNAL LOG NAME: signal a server we started, wait for
# it to end (polling at most 10 s, then without limit) and die, with the end
# of its LOG, unless it exited with 0.
lab_stop_checked() {
    local rc=0
    kill "-$2" "$1"
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    wait "$1" || rc=$?
    [ "$rc" = 0 ] || { tail -20 "$3" >&2; die "$4 exited with $rc"; }
}

# lab_teardown NAME RC: delete the namespaces made, and the scratch directory
# if RC is 0 (else say where the logs are).
lab_teardown() {
    local ns
    for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    if [ "$2" -eq 0 ]; then rm -rf "$work"; else echo "$1: failed; logs kept in $work" >&2; fi
}

# lab_busy_pct: how busy (%) the CPUs are over 2 s, with a warning if over 10:
# both cores are needed, so see whether anything else is using them.
lab_busy_pct() {
    local cpu_a cpu_b busy
    cpu_a=$(grep '^cpu ' /proc/stat); sleep 2; cpu_b=$(grep '^cpu ' /proc/stat)
    busy=$(printf '%s\n%s\n' "$cpu_a" "$cpu_b" | awk '{ b = $2 + $3 + $4 + $7 + $8; t = b + $5 + $6 + $9 }
    NR == 1 { b0 = b; t0 = t } NR == 2 { printf "%.0f", 100 * (b - b0) / (t - t0 + 1e-9) }')
    [ "$busy" -le 10 ] ||
        echo "WARNING: the CPUs were ${busy}% busy before the run: something else is using them, results will be noisy" >&2
    echo "$busy"
}

# lab_up: the namespaces and the veth pair between them, up, without
# segmentation or receive offloads on either end.
lab_up() {
    local ns pair dev
    echo "== network: $CLI ($CIF $CLIENT, core 0) <--veth--> $DUT ($DIF $SRV, core 1)" >&2
    for ns in "$DUT" "$CLI"; do
        ip netns add "$ns" || die "cannot create network namespace $ns"
        made_ns+=("$ns")
    done
    ip link add "$CIF" netns "$CLI" type veth peer name "$DIF" netns "$DUT"
    for pair in "$CLI $CIF" "$DUT $DIF"; do
        read -r ns dev <<< "$pair"
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$dev" up
        ip netns exec "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null
    done
}

# lab_client_csum VAR: the client's TCP checksum setting, from the environment
# variable named VAR (1: left to "hardware", the default with AF_PACKET; 0:
# summed in software, the only choice with DPDK); turns the client's TX
# checksum offload on for 1. Prints the setting.
lab_client_csum() {
    local default=1 csum features
    [ "$backend" = dpdk ] && default=0
    csum="${!1:-$default}"
    case "$csum" in 0|1) ;; *) die "$1 must be 0 or 1";; esac
    [ "$backend$csum" = dpdk1 ] &&
        die "$1=1 with the dpdk backend: net_af_packet does not pass the pending checksum on"
    if [ "$csum" = 1 ]; then
        ip netns exec "$CLI" ethtool -K "$CIF" tx on >/dev/null
        features=$(ip netns exec "$CLI" ethtool -k "$CIF")
        grep -q '^tx-checksumming: on' <<< "$features" || die "cannot turn on $CIF's TX checksum offload"
    fi
    echo "$csum"
}

# lab_steer: each side's receive work on its own core, the client's on core 0
# (mask 1), the server's on core 1 (mask 2).
lab_steer() {
    ip netns exec "$CLI" sh -c "echo 1 > /sys/class/net/$CIF/queues/rx-0/rps_cpus"
    ip netns exec "$DUT" sh -c "echo 2 > /sys/class/net/$DIF/queues/rx-0/rps_cpus"
    [ "$(ip netns exec "$DUT" cat "/sys/class/net/$DIF/queues/rx-0/rps_cpus")" = 2 ] ||
        die "cannot steer $DIF's receive work to core 1"
}

# in_cli CMD...: CMD in the client's namespace, on core 0.
in_cli() { ip netns exec "$CLI" taskset -c 0 "$@"; }

# lab_cpu_snap PREFIX: a timestamp and /proc/stat's per-core lines, to
# PREFIX.stat.
lab_cpu_snap() { { date +%s.%N; grep '^cpu[0-9]' /proc/stat; } > "$1.stat"; }

# lab_nginx_conf DEFAULT_TYPE: nginx's configuration in $work/nginx (1 worker
# on core 1, keep-alive without limit, BODY for every path on $SRV:80,
# stub_status on 127.0.0.1:8080/stub), and nginx_args to run it with.
lab_nginx_conf() {
    mkdir -p "$work/nginx/tmp"
    cat > "$work/nginx/nginx.conf" <<NGINX
user root;
worker_processes 1;
worker_cpu_affinity 10;
worker_rlimit_nofile 16384;
daemon off;
master_process on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server_tokens off;
    tcp_nodelay on;
    default_type $1;
    server {
        listen $SRV:80 backlog=4096;
        location / { return 200 "$BODY"; }
    }
    server {
        listen 127.0.0.1:8080;
        location = /stub { stub_status; }
    }
}
NGINX
    # shellcheck disable=SC2034 # the caller's
    nginx_args=(-p "$work/nginx/" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf")
}

# lab_dataplane FILE_PREFIX: the [dataplane] section (and the backend's) of a
# shardnet server on $DIF: one busy worker on core 1, the control thread on
# core 0 (it only answers the metrics scrapes here); FILE_PREFIX names DPDK's
# files.
lab_dataplane() {
    if [ "$backend" = dpdk ]; then
        cat <<TOML
[dataplane]
backend = "dpdk"
workers = [1]
control_core = 0
idle = "busy"

[dpdk]
eal_args = ["--no-pci", "--no-huge", "-m", "1024", "--no-shconf", "--no-telemetry", "--file-prefix=$1", "--vdev=net_af_packet0,iface=$DIF,qpairs=1,framecnt=4096"]
port = 0
mbufs_per_worker = 16383
TOML
    else
        cat <<TOML
[dataplane]
backend = "af_packet"
workers = [1]
control_core = 0
idle = "busy"

[af_packet]
interface = "$DIF"
# The kernel drops its copy of each frame after AF_PACKET's, and the worker,
# alone on core 1, reads a 1024-frame ring (README: AF_PACKET).
kernel_ingress = "drop"
rx_ring_frames = 1024
TOML
    fi
}

# lab_load_toml [SECTIONS]: $work/load.toml, the configuration of
# shardnet-load, the client: AF_PACKET on $CIF whatever the server's backend
# (the client is not what is measured), busy polling on core 0, as $LOAD_IP,
# with the TOML SECTIONS added; checked by shardnet.
lab_load_toml() {
    cat > "$work/load.toml" <<TOML
[dataplane]
backend = "af_packet"
workers = [0]
control_core = 0
idle = "busy"

[af_packet]
interface = "$CIF"

[interface]
address = "$LOAD_IP/24"
mac = "auto"
${1:+
$1
}
[default]
action = "drop"
TOML
    "$bin" check --config "$work/load.toml" > /dev/null || die "shardnet check rejects the load generator's configuration"
}
