#!/usr/bin/env bash
# Bind a NIC's PCI device to vfio-pci for shardnet, or give it back to its
# kernel driver. See deploy/nic-setup.md.
#
#   deploy/nic-bind.sh [--dry-run] [--persist] bind   0000:3b:00.0
#   deploy/nic-bind.sh [--dry-run] [--persist] unbind 0000:3b:00.0
#   deploy/nic-bind.sh status 0000:3b:00.0
#
# bind:   takes the kernel interface down, loads vfio-pci and binds the device
#         to it (driverctl when installed and --persist is given: the binding
#         then survives reboots; dpdk-devbind.py otherwise, or plain sysfs).
#         A Mellanox device (vendor 0x15b3) is refused: mlx5 is bifurcated
#         and runs on the kernel's mlx5_core, never on vfio-pci.
# unbind: gives the device back to its kernel driver (the override cleared:
#         driverctl unset-override, or driver_override emptied and the device
#         reprobed), which also recovers a Mellanox device bound by mistake.
# --dry-run prints each command instead of running it. Exits 0 on success,
# 1 on a failure (one sentence on stderr), 2 on a usage error.
set -euo pipefail

SYSFS=${SYSFS:-/sys}
DRY_RUN=0
PERSIST=0

usage() {
    echo "usage: $0 [--dry-run] [--persist] bind|unbind|status PCI_ADDRESS" >&2
    exit 2
}

die() {
    echo "nic-bind: $*" >&2
    exit 1
}

# Run (or, with --dry-run, print) one command.
run() {
    if [[ $DRY_RUN == 1 ]]; then
        printf '%s\n' "$*"
    else
        "$@"
    fi
}

# Write $2 into sysfs file $1 (or print it with --dry-run).
write_sysfs() {
    if [[ $DRY_RUN == 1 ]]; then
        printf 'echo %s > %s\n' "$2" "$1"
    else
        printf '%s\n' "$2" >"$1"
    fi
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --dry-run) DRY_RUN=1 ;;
    --persist) PERSIST=1 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) break ;;
    esac
    shift
done
[[ $# -eq 2 ]] || usage
action=$1
address=$2
# The short form 3b:00.0 is 0000:3b:00.0.
if [[ $address =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
    address=0000:$address
fi
[[ $address =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] ||
    die "$address is not a PCI address (DOMAIN:BUS:DEVICE.FUNCTION, as lspci -D prints it)"
address=${address,,}

device=$SYSFS/bus/pci/devices/$address
[[ -e $device ]] || die "$address: no such PCI device (lspci -D -d ::0200 lists the NICs)"
vendor=$(cat "$device/vendor")
driver=
if [[ -L $device/driver ]]; then
    driver=$(basename "$(readlink "$device/driver")")
fi
netdevs=()
if [[ -d $device/net ]]; then
    for n in "$device"/net/*; do
        [[ -e $n ]] && netdevs+=("$(basename "$n")")
    done
fi

case $action in
status)
    echo "$address vendor $vendor driver ${driver:-none} interfaces ${netdevs[*]:-none}"
    ;;
bind)
    if [[ $vendor == 0x15b3 ]]; then
        die "$address is a Mellanox device: mlx5 is bifurcated and stays on mlx5_core (install rdma-core; no rebinding), see deploy/nic-setup.md"
    fi
    if [[ $driver == vfio-pci ]]; then
        echo "$address is already bound to vfio-pci"
        exit 0
    fi
    if [[ -z $(ls -A "$SYSFS/kernel/iommu_groups" 2>/dev/null) ]]; then
        die "the IOMMU is off ($SYSFS/kernel/iommu_groups is empty): add intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) to the kernel command line and reboot, see deploy/nic-setup.md"
    fi
    for n in "${netdevs[@]}"; do
        if [ -n "$(ip -4 route show default dev "$n" 2>/dev/null)" ]; then
            die "$n ($address) carries the default route: binding it would cut this host off; use a management NIC, see deploy/nic-setup.md"
        fi
        run ip link set dev "$n" down
    done
    run modprobe vfio-pci
    if [[ $PERSIST == 1 ]] && command -v driverctl >/dev/null; then
        run driverctl set-override "$address" vfio-pci
    elif command -v dpdk-devbind.py >/dev/null; then
        run dpdk-devbind.py --bind=vfio-pci "$address"
    else
        write_sysfs "$device/driver_override" vfio-pci
        if [[ -n $driver ]]; then
            write_sysfs "$device/driver/unbind" "$address"
        fi
        write_sysfs "$SYSFS/bus/pci/drivers_probe" "$address"
    fi
    if [[ $PERSIST == 1 ]] && ! command -v driverctl >/dev/null; then
        echo "nic-bind: driverctl is not installed, so the binding lasts until reboot (apt-get install driverctl)" >&2
    fi
    ;;
unbind)
    if [[ $PERSIST == 1 ]] && command -v driverctl >/dev/null; then
        run driverctl unset-override "$address"
    else
        write_sysfs "$device/driver_override" ""
        if [[ -n $driver ]]; then
            write_sysfs "$device/driver/unbind" "$address"
        fi
        write_sysfs "$SYSFS/bus/pci/drivers_probe" "$address"
    fi
    ;;
*)
    usage
    ;;
esac
