# syntax=docker/dockerfile:1
# shardnet's container image: a Debian 12 build stage with DPDK 22.11's
# development files and Rust, and a slim Debian 12 runtime stage with only the
# DPDK runtime libraries shardnet links and the poll-mode drivers it loads.
#
#   docker build -t shardnet:0.1.0 .
#   docker run --rm shardnet:0.1.0 --version
#
# Not yet built by CI: the development machines have no Docker daemon and no
# container registry. The runtime packages are the ones `ldd` and `dpkg -S`
# name for shardnet on Debian 12 (each checked with apt-cache).
#
# Running the dataplane (`shardnet run`) needs the host's hugepages, the NIC
# (a vfio-pci device or an SR-IOV VF under /dev/vfio, or mlx5's /dev/infiniband)
# and these capabilities, nothing more (see deploy/k8s/daemonset.yaml):
#   IPC_LOCK   lock hugepage memory and let vfio map it for DMA
#   NET_ADMIN  create and configure the exception port (sn0) in the host's
#              network namespace
#   NET_RAW    the net_af_packet backend and mlx5's flow rules only
#   SYS_ADMIN  only without an IOMMU (IOVA as physical addresses: DPDK reads
#              /proc/self/pagemap); not needed with vfio-pci and an IOMMU
# The image's default user is the unprivileged `shardnet` (enough for
# `--version`, `check`, `status`); `run` on a vfio device needs root in the
# container (the /dev/vfio/N node is root-only) with every other capability
# dropped, as the DaemonSet does.

ARG DEBIAN=bookworm

# --- build -------------------------------------------------------------------
# The official Rust image is Debian 12 underneath; rust-version is 1.86.
FROM rust:1-${DEBIAN} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libdpdk-dev libclang-dev clang pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin shardnet \
 && install -D -m 0755 target/release/shardnet /out/shardnet

# --- runtime -----------------------------------------------------------------
FROM debian:${DEBIAN}-slim AS runtime
# The libraries `ldd shardnet` lists (librte-eal23 ... librte-telemetry23; their
# own dependencies libnuma1, libfdt1, libbsd0 come with them) and the drivers
# EAL loads from its plugin directory: the ring mempool (needed by every
# pool), the PCI and vdev buses, Intel's ixgbe/i40e/ice, Mellanox mlx5 (with
# rdma-core's libibverbs and libmlx5), virtio (the exception port's
# virtio-user), tap and af_packet. Add a librte-net-*23 package for another NIC.
ARG PMDS="librte-mempool-ring23 librte-bus-pci23 librte-bus-vdev23 \
    librte-net-ixgbe23 librte-net-i40e23 librte-net-ice23 librte-net-mlx5-23 \
    librte-net-virtio23 librte-net-tap23 librte-net-af-packet23"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librte-eal23 librte-ethdev23 librte-mbuf23 librte-mempool23 librte-net23 \
      librte-ring23 librte-meter23 librte-kvargs23 librte-telemetry23 \
      ${PMDS} ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin shardnet \
 && install -d -o shardnet -g shardnet -m 0750 /run/shardnet /etc/shardnet
COPY --from=build /out/shardnet /usr/local/bin/shardnet
COPY config/production.toml /etc/shardnet/shardnet.toml
USER shardnet
# /metrics and /healthz ([metrics] listen).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/shardnet"]
CMD ["run", "--config", "/etc/shardnet/shardnet.toml"]
