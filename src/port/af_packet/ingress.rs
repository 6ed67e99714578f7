//! `[af_packet] kernel_ingress = "drop"`: keep the kernel's receive path off
//! the interface shardnet reads with AF_PACKET.
//!
//! An AF_PACKET socket gets a copy of each frame; the kernel then goes on with
//! the frame itself. For a frame addressed to shardnet that means an IPv4
//! route lookup that fails, a `dst` allocated and freed through RCU, and a
//! drop (`IpInAddrErrors`): about a fifth of a core at 500k frames/s on a
//! veth, spent on the core that also runs the kernel's AF_PACKET delivery.
//!
//! Packet sockets bound to `ETH_P_ALL` (shardnet's) are the taps of
//! `__netif_receive_skb_core`, which run before the ingress hooks. An
//! nftables chain on the `netdev` family's ingress hook with policy drop
//! therefore drops each frame after shardnet has its copy and before the
//! kernel's IP stack sees it. The chain counts what it drops
//! (`nft list table netdev shardnet_<interface>`).
//!
//! The chain is installed with the `nft` tool (package nftables) rather than
//! by speaking nftables' netlink protocol here: it is a one-off control-plane
//! step at start and stop, `nft` is on every distribution that has nftables,
//! and the Rust bindings to it (`nftnl`, `rustables`) wrap the same C library
//! or are young. If shardnet is killed without its stop, the table stays:
//! shardnet records it beforehand (`kernel::journal`), and the next start on
//! the interface, or `shardnet restore`, deletes it; `nft delete table netdev
//! shardnet_<interface>` removes it by hand.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// The nftables table shardnet uses for `interface`: `shardnet_` and the
/// name, or `None` when the name holds characters an nftables identifier does
/// not (anything but ASCII letters, digits, `_`, `-` and `.`).
pub fn table_name(interface: &str) -> Option<String> {
    interface
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .then(|| format!("shardnet_{interface}"))
}

/// The `nft -f` script that (re)creates `table` with the drop chain on
/// `interface`: `table` then `delete table` first, so that a table left by an
/// earlier run is replaced rather than added to, in one transaction.
pub fn install_script(table: &str, interface: &str) -> String {
    format!(
        "table netdev {table}\n\
         delete table netdev {table}\n\
         table netdev {table} {{\n\
         \tchain ingress {{\n\
         \t\ttype filter hook ingress device \"{interface}\" priority 0; policy drop;\n\
         \t\tcounter drop\n\
         \t}}\n\
         }}\n"
    )
}

/// Delete the `netdev` table `table` if it exists (`table` then `delete
/// table` in one transaction, so a missing table is no error).
pub fn delete_table(table: &str) -> anyhow::Result<()> {
    nft(&format!(
        "table netdev {table}\ndelete table netdev {table}\n"
    ))
}

/// The drop chain, installed; dropping it (or [`KernelIngressDrop::remove`])
/// removes the table.
#[derive(Debug)]
pub struct KernelIngressDrop {
    /// `None` once removed.
    table: Option<String>,
}

impl KernelIngressDrop {
    /// Installs the drop chain on `interface`.
    pub fn install(interface: &str) -> anyhow::Result<Self> {
        let Some(table) = table_name(interface) else {
            bail!(
                "[af_packet] kernel_ingress = \"drop\" needs an interface name of ASCII \
                 letters, digits, '_', '-' and '.' (an nftables table is named after it), \
                 not {interface:?}"
            );
        };
        nft(&install_script(&table, interface)).with_context(|| {
            format!(
                "cannot keep the kernel's receive path off {interface} \
                 ([af_packet] kernel_ingress = \"drop\"): it needs nftables' `nft` \
                 and a kernel with netdev ingress hooks (CONFIG_NETFILTER_INGRESS, \
                 CONFIG_NF_TABLES_NETDEV)"
            )
        })?;
        tracing::info!(
            interface,
            table = %table,
            "the kernel drops this interface's frames after AF_PACKET's copy (nftables netdev ingress)"
        );
        Ok(KernelIngressDrop { table: Some(table) })
    }

    /// Remove the table; an error says it stays (and is logged).
    pub fn remove(mut self) -> anyhow::Result<()> {
        match self.table.take() {
            Some(table) => remove_logged(&table),
            None => Ok(()),
        }
    }
}

impl Drop for KernelIngressDrop {
    fn drop(&mut self) {
        if let Some(table) = self.table.take() {
            let _ = remove_logged(&table);
        }
    }
}

fn remove_logged(table: &str) -> anyhow::Result<()> {
    match nft(&format!("delete table netdev {table}\n")) {
        Ok(()) => {
            tracing::info!(table, "the kernel receives on the interface again");
            Ok(())
        }
        Err(e) => {
            tracing::error!(
                table,
                "cannot remove the nftables table; the kernel still drops the interface's \
                 frames: {e:#}"
            );
            Err(e)
        }
    }
}

/// Runs `nft -f -` with `script` on its standard input.
fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    child
        .stdin
        .take()
        .context("nft has no standard input")?
        .write_all(script.as_bytes())
        .context("cannot write to nft")?;
    let out = child.wait_with_output().context("cannot wait for nft")?;
    if !out.status.success() {
        bail!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_nftables_identifiers() {
        assert_eq!(table_name("eth1").as_deref(), Some("shardnet_eth1"));
        assert_eq!(
            table_name("veth-dut.10").as_deref(),
            Some("shardnet_veth-dut.10")
        );
        assert_eq!(table_name("snb@d"), None);
        assert_eq!(table_name("a\"b"), None);
    }

    #[test]
    fn the_script_replaces_a_table_left_behind() {
        let s = install_script(&table_name("veth-dut").unwrap(), "veth-dut");
        let lines: Vec<&str> = s.lines().map(str::trim).collect();
        assert_eq!(lines[0], "table netdev shardnet_veth-dut");
        assert_eq!(lines[1], "delete table netdev shardnet_veth-dut");
        assert!(lines
            .contains(&"type filter hook ingress device \"veth-dut\" priority 0; policy drop;"));
    }
}
