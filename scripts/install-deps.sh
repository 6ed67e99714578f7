#!/usr/bin/env bash
# Install what shardnet's build, demo and tests need on Debian 12 (DPDK 22.11)
# or Debian 13 (DPDK 24.11); Ubuntu 22.04+ should do too.
# Idempotent: does nothing when everything is there already.
#
#   install-deps.sh                    everything (the default)
#   install-deps.sh --dry-run          only check that every package resolves on
#                                      this release (apt-get --simulate); installs nothing
#   install-deps.sh --only-dpdk-tests  only what the build and the DPDK tests need
#                                      (scripts/test-debian13.sh, in a Debian 13 root)
set -euo pipefail

mode=all
case "${1:-}" in
    "") ;;
    --dry-run) mode=dry-run ;;
    --only-dpdk-tests) mode=dpdk-tests ;;
    *)
        echo "install-deps: unknown argument $1 (--dry-run or --only-dpdk-tests)" >&2
        exit 2
        ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root (apt-get, network namespaces, hugepages)" >&2
    exit 1
fi

# The build: DPDK (22.11 LTS on Debian 12, 24.11 LTS on Debian 13), what
# bindgen needs, and a C compiler and linker (for the shim, and rustc's linker).
build_packages=(libdpdk-dev dpdk dpdk-dev libclang-dev clang pkg-config gcc libc6-dev)
# What the DPDK tests (tests/dpdk_port.rs, tests/interop_{tcp,udp}.rs's DPDK
# cases) run besides: network namespaces, and the Linux peers.
dpdk_test_packages=(iproute2 iputils-ping ethtool procps python3 python3-scapy curl wrk socat nftables)

packages=(
    "${build_packages[@]}"
    # the Linux peers and tools of the demo and the interop tests
    iproute2 iputils-ping ethtool python3 python3-scapy procps
    # the TCP interop tests' peers: HTTP clients, socat, loss injection
    curl wrk socat nftables
    # the exception port's tests: a kernel-side load (UDP flood through shardnet)
    iperf3
    # the control endpoint's tests: a real Prometheus server and promtool
    prometheus
    # `shardnet status` in a terminal (tests/link.rs): tmux
    tmux
    # the kv example's tests and benchmark: redis-cli, redis-benchmark, redis-server, Python's redis
    redis-tools redis-server python3-redis
    # the WebSocket example's tests (tests/ws.rs): Python's websockets and websocket-client
    python3-websockets python3-websocket
    # the systemd units' tests (tests/systemd.rs): systemd-analyze verify, systemd-tmpfiles
    systemd
    # benchmarks (http-vs-kernel.sh: nginx is the kernel's HTTP server; shellcheck for the scripts)
    valgrind nginx shellcheck
    # bench/trex's profile checks (tests/kit.rs: scapy above, Lua for the
    # pktgen script) and deploy/k8s/check.sh (yamllint, python3-venv)
    lua5.4 yamllint python3-venv
    # shardnet capture's tests (tests/capture.rs): tshark reads the pcap (scapy above)
    tshark
)
if [ "$mode" = dpdk-tests ]; then
    packages=("${build_packages[@]}" "${dpdk_test_packages[@]}")
fi
if [ "$mode" = dry-run ]; then
    # shellcheck source=/dev/null
    release=$(. /etc/os-release && echo "$PRETTY_NAME")
    # Resolves every name and its dependencies against this release's lists.
    apt-get update -q >/dev/null
    if ! apt-get install -s -q --no-install-recommends "${packages[@]}" >/dev/null; then
        echo "install-deps: the package list does not resolve on $release" >&2
        exit 1
    fi
    echo "install-deps: all ${#packages[@]} packages resolve on $release" >&2
    exit 0
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    apt-get update -q
    # tshark's package asks whether non-root users may capture: no.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "$mode" = dpdk-tests ]; then
    exit 0
fi

# deploy/k8s/check.sh: kubernetes-validate (PyPI; it ships the Kubernetes JSON
# schemas, so the check runs offline) and PyYAML, in their own venv.
if ! /opt/shardnet-tools/bin/python -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "install-deps: installing kubernetes-validate into /opt/shardnet-tools" >&2
    python3 -m venv /opt/shardnet-tools
    /opt/shardnet-tools/bin/pip install -q kubernetes-validate pyyaml
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: installing the Rust toolchain with rustup" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl ca-certificates
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
fi
