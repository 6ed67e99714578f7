#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, simulation, and the
# interop tests against real Linux peers in network namespaces (AF_PACKET and
# DPDK backends). Needs root; installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== layers (src/lib.rs's list: no module imports a higher layer)"
./scripts/check-layers.sh
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --no-default-features --all-targets -- -D warnings
cargo clippy --all-targets --features futures-io -- -D warnings
echo "== cargo doc (no warnings: every public item documented, links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --features futures-io
echo "== deploy/ monitoring kit (promtool check config, check rules, test rules)"
./deploy/check.sh
echo "== deploy/k8s (yamllint, kubernetes-validate --strict, QoS rules, shardnet check on the ConfigMap)"
cargo build --bin shardnet
./deploy/k8s/check.sh target/debug/shardnet
echo "== bench/trex profiles (TRex stand-ins + scapy; pktgen script against a stand-in)"
/usr/bin/python3 tests/trex/check_profiles.py
echo "== cargo test"
cargo test --workspace
echo "== cargo test (without the DPDK feature)"
cargo test --no-default-features --lib
echo "== cargo test (the async layer with the futures-io feature)"
cargo test --lib --features futures-io -- rt:: stack::tests::connect
echo "== Debian 13 (DPDK 24.11): build and the DPDK tests in a debootstrap root (scripts/test-debian13.sh)"
deb13_start=$(date +%s)
./scripts/test-debian13.sh
echo "== Debian 13 took $(($(date +%s) - deb13_start)) s"
