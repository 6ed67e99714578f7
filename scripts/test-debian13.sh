#!/usr/bin/env bash
# Build shardnet and run its DPDK tests against Debian 13 (trixie)'s DPDK 24.11,
# in a trixie root made with debootstrap, so both supported DPDK releases (22.11
# on the Debian 12 host, 24.11 here) are built and tested.
#
# The root is cached (default /var/cache/shardnet/trixie; SHARDNET_TRIXIE_ROOT
# to change it): created when absent, reused when present. Its build directory
# (CARGO_TARGET_DIR) is inside it, apart from the host's target/. The host's
# ~/.cargo and ~/.rustup are bind-mounted in, so the toolchain is the host's.
# Every mount is made in a private mount namespace (unshare), so nothing is
# left mounted when the script ends, however it ends.
#
# Needs root. Fails (never skips) when the mirror cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "test-debian13: run as root (debootstrap, chroot, network namespaces)" >&2
    exit 1
fi

root=${SHARDNET_TRIXIE_ROOT:-/var/cache/shardnet/trixie}
# The bookkeeping of what the root holds: one stamp per stage.
base_stamp=$root/.shardnet-base
deps_stamp=$root/.shardnet-deps

# The Debian mirror this host's apt uses (deb822 .sources or one-line .list),
# deb.debian.org when none is named.
mirror_of_host() {
    local uri
    uri=$(grep -hs -E '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hs -E '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/\[[^]]*\]//' | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# Every mount below dies with this private mount namespace.
if [ -z "${SHARDNET_TRIXIE_UNSHARED:-}" ]; then
    exec env SHARDNET_TRIXIE_UNSHARED=1 unshare --mount --propagation private "$0" "$@"
fi

start=$(date +%s)
stage() { echo "== test-debian13: $* ($(($(date +%s) - start)) s)"; }

# -- 1. The base system (debootstrap), once.
if [ ! -e "$base_stamp" ]; then
    mirror=$(mirror_of_host)
    stage "debootstrap trixie from $mirror into $root"
    if ! command -v debootstrap >/dev/null 2>&1; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
    fi
    if [ ! -e /usr/share/debootstrap/scripts/trixie ]; then
        echo "test-debian13: this debootstrap does not know trixie; install a newer debootstrap" >&2
        exit 1
    fi
    rm -rf "$root.partial"
    mkdir -p "$(dirname "$root")"
    if ! debootstrap --variant=minbase --include=ca-certificates trixie "$root.partial" "$mirror" \
        >"$root.debootstrap.log" 2>&1; then
        tail -n 20 "$root.debootstrap.log" >&2
        echo "test-debian13: debootstrap of trixie from $mirror failed (log: $root.debootstrap.log)" >&2
        exit 1
    fi
    rm -rf "$root"
    mv "$root.partial" "$root"
    touch "$base_stamp"
fi

# -- 2. The mounts: kernel file systems, the toolchain, the source tree.
# The root is made a mount point of its own first: `ip netns exec` and
# `ip -n` run `mount --make-rslave /`, which a plain directory refuses.
mount --bind "$root" "$root"
mount --rbind /proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
# ip netns keeps its namespaces here; a tmpfs of the root's own, so the host's
# /run/netns is neither seen nor changed.
mkdir -p "$root/run/netns"
mount -t tmpfs tmpfs "$root/run/netns"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/root/.cargo" "$root/root/.rustup" "$root/shardnet"
mount --bind "${CARGO_HOME:-$HOME/.cargo}" "$root/root/.cargo"
mount --bind "${RUSTUP_HOME:-$HOME/.rustup}" "$root/root/.rustup"
mount --bind "$repo" "$root/shardnet"

in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" "$@"
}

# -- 3. The packages: scripts/install-deps.sh's whole list must resolve on
# trixie (a dry run); what the DPDK tests need is installed.
deps_hash=$(sha256sum scripts/install-deps.sh | cut -d" " -f1)
if [ "$(cat "$deps_stamp" 2>/dev/null)" != "$deps_hash" ]; then
    stage "install-deps.sh --dry-run in the root (the whole package list on trixie)"
    in_root /shardnet/scripts/install-deps.sh --dry-run
    stage "installing the DPDK tests' packages in the root"
    in_root /shardnet/scripts/install-deps.sh --only-dpdk-tests
    in_root apt-get clean
    rm -rf "$root/var/lib/apt/lists/"*_Packages "$root/var/lib/apt/lists/"*_Translation-*
    echo "$deps_hash" >"$deps_stamp"
fi
echo "test-debian13: DPDK $(in_root pkg-config --modversion libdpdk) in the root"

# -- 4. Build and test against DPDK 24.11, apart from the host's target/.
stage "cargo build and the DPDK tests in the root"
in_root /bin/bash -euo pipefail -c '
    cd /shardnet
    export CARGO_TARGET_DIR=/var/tmp/shardnet-target
    cargo --version
    echo "== dpdk-sys (bindings, constants, EAL)"
    cargo test -p dpdk-sys
    echo "== the DPDK parts of the lib tests"
    cargo test --lib dpdk
    echo "== tests/dpdk_port.rs"
    cargo test --test dpdk_port
    echo "== the DPDK backend in network namespaces (net_af_packet) with Linux peers"
    cargo test --test interop_udp dpdk_backend
    cargo test --test interop_tcp dpdk_backend
    echo "== the rest builds: the binary, examples"
    cargo build --bins --examples
    echo "== clippy on 24.11 (the cfg-chosen code paths)"
    cargo clippy -p dpdk-sys --all-targets -- -D warnings
    cargo clippy --lib --test dpdk_port -- -D warnings
'
stage "done: DPDK 24.11 built and tested"
