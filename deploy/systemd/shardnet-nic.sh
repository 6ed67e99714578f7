#!/bin/bash
# shardnet-nic.sh: hand the NIC to shardnet before it starts (`bind`), and
# give it back to the kernel after it stops, cleanly or not (`restore`), so
# that ssh on a single-NIC server comes back while shardnet is down.
# shardnet.service runs `bind` as ExecStartPre= and `restore` as
# ExecStopPost=. Both are idempotent: run twice, the second does nothing.
#
# Usage: shardnet-nic.sh [--dry-run] bind|restore
#   --dry-run   print what would be done; change nothing
#
# Settings, from the environment (shardnet.service reads /etc/default/shardnet):
#   SHARDNET_NIC_PCI          PCI address of the NIC shardnet owns (0000:3b:00.0).
#                             Unset: nothing to rebind (AF_PACKET; mlx5).
#   SHARDNET_NIC_DPDK_DRIVER  driver shardnet needs: vfio-pci (default) for
#                             Intel and most NICs; "kernel" for Mellanox mlx5,
#                             which DPDK drives through its own kernel driver
#                             (bifurcated): never rebound.
#   SHARDNET_NIC_IFACE        the kernel's interface name of the NIC (eno1).
#   SHARDNET_NIC_ADDRESS      optional: an address (CIDR) to put on the
#                             interface while shardnet is down, removed before
#                             it starts (shardnet answers it then).
#   SHARDNET_NIC_GATEWAY      optional: a default route via this gateway, with it.
#   SHARDNET_SYSFS            sysfs root (default /sys; tests point it elsewhere).
#   SHARDNET_NIC_WAIT_S       seconds to wait for the interface to appear after
#                             a rebind (default 10).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi
action="${1:-}"
case "$action" in
    bind | restore) ;;
    *)
        echo "usage: shardnet-nic.sh [--dry-run] bind|restore" >&2
        exit 2
        ;;
esac

sysfs="${SHARDNET_SYSFS:-/sys}"
pci="${SHARDNET_NIC_PCI:-}"
dpdk_driver="${SHARDNET_NIC_DPDK_DRIVER:-vfio-pci}"
iface="${SHARDNET_NIC_IFACE:-}"
address="${SHARDNET_NIC_ADDRESS:-}"
gateway="${SHARDNET_NIC_GATEWAY:-}"
wait_s="${SHARDNET_NIC_WAIT_S:-10}"

say() { echo "shardnet-nic: $*"; }
fail() {
    echo "shardnet-nic: $*" >&2
    exit 1
}

# Run a command, or print it with --dry-run.
run() {
    if [ "$dry_run" = 1 ]; then
        say "would run: $*"
    else
        "$@"
    fi
}

# Write $1 to the sysfs file $2, or print it with --dry-run.
write() {
    if [ "$dry_run" = 1 ]; then
        say "would write '$1' to $2"
    else
        printf '%s\n' "$1" >"$2" || fail "cannot write '$1' to $2"
    fi
}

device="$sysfs/bus/pci/devices/$pci"

# The driver the PCI device is bound to now, or nothing.
current_driver() {
    if [ -e "$device/driver" ]; then
        basename "$(readlink -f "$device/driver")"
    fi
}

# Bind the PCI device to driver $1 ("" = whatever the kernel picks) through
# driver_override, as driverctl and dpdk-devbind.py do.
rebind() {
    local want="$1" now
    now="$(current_driver)"
    if [ -n "$now" ]; then
        write "$pci" "$device/driver/unbind"
    fi
    # An empty override hands the device back to the kernel's own choice.
    write "$want" "$device/driver_override"
    write "$pci" "$sysfs/bus/pci/drivers_probe"
}

# The interface exists (in this network namespace).
has_iface() { ip link show dev "$iface" >/dev/null 2>&1; }

# The fallback address is on the interface. (ip's output is read whole
# first: with pipefail, grep -q quitting early would SIGPIPE ip and fail.)
has_address() {
    [ -n "$address" ] && has_iface || return 1
    local addrs
    addrs="$(ip -o addr show dev "$iface")"
    grep -qF " ${address} " <<<"$addrs"
}

pci_bind() {
    [ -n "$pci" ] || return 0
    [ "$dpdk_driver" != kernel ] || return 0
    [ -e "$device" ] || fail "no PCI device $pci (SHARDNET_NIC_PCI): see lspci -D"
    local now
    now="$(current_driver)"
    if [ "$now" = "$dpdk_driver" ]; then
        say "$pci is bound to $dpdk_driver already"
        return 0
    fi
    run modprobe "$dpdk_driver"
    say "binding $pci to $dpdk_driver (was: ${now:-no driver})"
    rebind "$dpdk_driver"
    if [ "$dry_run" = 0 ] && [ "$(current_driver)" != "$dpdk_driver" ]; then
        fail "$pci did not bind to $dpdk_driver: is the IOMMU on (intel_iommu=on iommu=pt)? see dmesg"
    fi
}

pci_restore() {
    [ -n "$pci" ] || return 0
    [ "$dpdk_driver" != kernel ] || return 0
    [ -e "$device" ] || fail "no PCI device $pci (SHARDNET_NIC_PCI): see lspci -D"
    local now
    now="$(current_driver)"
    if [ -n "$now" ] && [ "$now" != "$dpdk_driver" ]; then
        say "$pci is bound to its kernel driver $now already"
        return 0
    fi
    say "giving $pci back to its kernel driver (was: ${now:-no driver})"
    rebind ""
}

# Wait (bounded) for the interface after a rebind.
wait_iface() {
    [ -n "$iface" ] || return 0
    if [ "$dry_run" = 1 ]; then
        return 0
    fi
    local tries=$((wait_s * 10))
    while ! has_iface; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "interface $iface did not appear within ${wait_s} s"
        sleep 0.1
    done
}

case "$action" in
    bind)
        if has_address; then
            say "removing $address from $iface (shardnet answers it)"
            run ip addr del "$address" dev "$iface"
        fi
        pci_bind
        # A NIC that stays with its kernel driver (AF_PACKET, mlx5) must be up.
        if [ -n "$iface" ] && { [ -z "$pci" ] || [ "$dpdk_driver" = kernel ]; }; then
            run ip link set dev "$iface" up
        fi
        ;;
    restore)
        pci_restore
        wait_iface
        if [ -n "$iface" ]; then
            run ip link set dev "$iface" up
            if [ -n "$address" ]; then
                run ip addr replace "$address" dev "$iface"
                if [ -n "$gateway" ]; then
                    run ip route replace default via "$gateway" dev "$iface"
                fi
            fi
        fi
        ;;
esac
say "$action done"
