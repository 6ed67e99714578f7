//! What shardnet changed on a NIC, written down before it is changed, so that
//! a crash cannot lose the originals.
//!
//! While the kernel still sees the NIC, shardnet changes some of the host's
//! settings for it ([`super::netif::isolate_from_kernel`]'s sysctls, and with
//! `[af_packet] kernel_ingress = "drop"` an nftables table) and puts them back
//! at a clean stop. A process killed by SIGKILL, an abort or the OOM killer
//! never gets to its stop: without a record, the next start would find the
//! settings "already set", leave them alone and restore nothing, and the
//! originals would be lost for good (a NIC that never answers ARP again).
//!
//! A [`NicJournal`] is that record, one per NIC and network namespace:
//!
//! - `DIR/NIC.netns-INODE.json`: the changes not yet undone, in the order
//!   they were made (each sysctl's path, original value and the value set;
//!   the nftables table), the pid and the namespace. It is written (a
//!   temporary file, fsync, rename, fsync of the directory) *before* each
//!   change is made, rewritten as changes are undone, and removed once
//!   nothing is left: it exists exactly while there is something to restore.
//! - `DIR/NIC.netns-INODE.lock`: an exclusive `flock` held by the process
//!   that owns the NIC's changes, for as long as it lives. The kernel releases
//!   it when the process dies, however it dies, so a held lock means a live
//!   owner (a pid could be reused; a lock cannot be inherited by accident).
//!
//! `INODE` is the inode of the calling thread's network namespace
//! (`/proc/thread-self/ns/net`): sysctls under `/proc/sys/net` belong to a
//! namespace while `/run` does not, so the same NIC name in two namespaces
//! gets two journals.
//!
//! `DIR` is [`state_dir`]: `$SHARDNET_STATE_DIR`, or `/run/shardnet`. `/run`
//! is a tmpfs, cleared at boot, when the sysctls are back to their defaults
//! too: a journal never outlives the settings it describes.
//!
//! Restoring ([`restore`]) puts a sysctl back only while it still holds the
//! value shardnet set: one that someone changed since is left alone (and
//! reported), and one that was recorded but never written (a crash between
//! the two) is already right. That also keeps harmless a journal left for a
//! namespace that is gone, whose inode a new namespace may get again (seen
//! in tests): the new namespace's values are its own defaults, not the ones
//! shardnet set.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::netif::{self, SysctlChange, SysctlRestore};
use crate::port::af_packet::{ingress, sys};

/// The environment variable that overrides [`DEFAULT_STATE_DIR`].
pub const STATE_DIR_ENV: &str = "SHARDNET_STATE_DIR";

/// Where journals live unless [`STATE_DIR_ENV`] says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/shardnet";

/// The journals' directory: `$SHARDNET_STATE_DIR` if set and not empty,
/// otherwise `/run/shardnet`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os(STATE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// What a journal records: the changes to a NIC's settings that are not
/// undone yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRecord {
    /// The NIC.
    pub nic: String,
    /// The inode of the network namespace the changes were made in.
    pub netns: u64,
    /// The process that made them.
    pub pid: u32,
    /// The sysctls changed, in the order they were changed.
    pub sysctls: Vec<SysctlChange>,
    /// The `netdev` nftables table installed on the NIC, if any.
    pub nftables_table: Option<String>,
}

impl NicRecord {
    /// Whether nothing is left to restore.
    pub fn is_empty(&self) -> bool {
        self.sysctls.is_empty() && self.nftables_table.is_none()
    }

    /// The changes on one line, for a log message.
    pub fn summary(&self) -> String {
        let mut all: Vec<String> = self.sysctls.iter().map(ToString::to_string).collect();
        if let Some(table) = &self.nftables_table {
            all.push(format!("nftables table netdev {table}"));
        }
        if all.is_empty() {
            return "nothing".to_owned();
        }
        all.join(", ")
    }
}

/// Why a journal cannot be claimed.
#[derive(Debug, Error)]
pub enum JournalError {
    /// A live process holds the NIC's lock.
    #[error(
        "a running shardnet{pid} holds {nic} in this network namespace (lock {lock}); \
         stop it first",
        pid = holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        lock = lock.display()
    )]
    Busy {
        /// The NIC.
        nic: String,
        /// The lock file.
        lock: PathBuf,
        /// The pid written in the lock file, if readable.
        holder: Option<u32>,
    },
    /// The journal file exists but is not one.
    #[error(
        "{file} is not a shardnet journal for {nic} ({reason}); it records what a previous \
         run changed on {nic}: restore those settings by hand, then delete it",
        file = file.display()
    )]
    Corrupt {
        /// The NIC.
        nic: String,
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file system step failed.
    #[error("cannot {step}: {source} (the directory is ${STATE_DIR_ENV}, or {DEFAULT_STATE_DIR})")]
    Io {
        /// The step, naming the file.
        step: String,
        /// The system's error.
        source: io::Error,
    },
}

fn io_error(step: String) -> impl FnOnce(io::Error) -> JournalError {
    move |source| JournalError::Io { step, source }
}

/// The journal of one NIC in the calling thread's network namespace, claimed
/// by this process (it holds the lock until dropped). Shared between the
/// owners of the changes it records ([`Arc`]).
#[derive(Debug)]
pub struct NicJournal {
    dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    state: Mutex<NicRecord>,
    /// Holds the `flock` (closed after `drop` removed the file).
    _lock: File,
}

/// The inode of the calling thread's network namespace.
pub fn netns_inode() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

impl NicJournal {
    /// The journal file of `nic` in namespace `netns` under `dir`.
    pub fn path_of(dir: &Path, nic: &str, netns: u64) -> PathBuf {
        dir.join(format!("{nic}.netns-{netns}.json"))
    }

    /// Claim the journal of `nic` (an interface name: no `/`) in the calling
    /// thread's network namespace, under `dir`: take its lock, or fail with
    /// [`JournalError::Busy`] if a live process holds it. Returns the journal
    /// and, if a previous owner died leaving changes not undone, their
    /// record; the journal then holds them, for [`restore`].
    pub fn claim(
        dir: &Path,
        nic: &str,
    ) -> Result<(Arc<NicJournal>, Option<NicRecord>), JournalError> {
        let netns = netns_inode().map_err(io_error("read /proc/thread-self/ns/net".to_owned()))?;
        Self::claim_in(dir, nic, netns)
    }

    fn claim_in(
        dir: &Path,
        nic: &str,
        netns: u64,
    ) -> Result<(Arc<NicJournal>, Option<NicRecord>), JournalError> {
        // The name becomes part of a file name.
        if !sys::valid_name(nic) || nic.starts_with('.') {
            return Err(JournalError::Io {
                step: format!("keep a journal for {nic:?}"),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not an interface name"),
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(format!("create {}", dir.display())))?;
        let path = Self::path_of(dir, nic, netns);
        let lock_path = path.with_extension("lock");
        let lock = take_lock(&lock_path, nic)?;
        let left = match fs::read(&path) {
            Ok(bytes) => {
                Some(
                    parse(&bytes, nic, netns).map_err(|reason| JournalError::Corrupt {
                        nic: nic.to_owned(),
                        file: path.clone(),
                        reason,
                    })?,
                )
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(format!("read {}", path.display()))(e)),
        };
        let left = left.filter(|record| !record.is_empty());
        let state = NicRecord {
            nic: nic.to_owned(),
            netns,
            pid: std::process::id(),
            ..left.clone().unwrap_or_default()
        };
        let journal = NicJournal {
            dir: dir.to_owned(),
            path,
            lock_path,
            state: Mutex::new(state),
            _lock: lock,
        };
        Ok((Arc::new(journal), left))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes recorded and not undone.
    pub fn record(&self) -> NicRecord {
        self.state().clone()
    }

    fn state(&self) -> MutexGuard<'_, NicRecord> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Record `change` (to be made next) and write the journal.
    pub fn record_sysctl(&self, change: &SysctlChange) -> io::Result<()> {
        let mut state = self.state();
        state.sysctls.push(change.clone());
        self.write(&state)
    }

    /// Drop `change` (undone) from the record, and write the journal.
    pub fn forget_sysctl(&self, change: &SysctlChange) -> io::Result<()> {
        let mut state = self.state();
        if let Some(i) = state.sysctls.iter().rposition(|c| c == change) {
            state.sysctls.remove(i);
        }
        self.write(&state)
    }

    /// Record the nftables `table` (to be installed next), and write the
    /// journal.
    pub fn record_table(&self, table: &str) -> io::Result<()> {
        let mut state = self.state();
        state.nftables_table = Some(table.to_owned());
        self.write(&state)
    }

    /// Drop the nftables table (deleted) from the record, and write the
    /// journal.
    pub fn forget_table(&self) -> io::Result<()> {
        let mut state = self.state();
        state.nftables_table = None;
        self.write(&state)
    }

    /// Write `state` atomically, or remove the file when it is empty.
    fn write(&self, state: &NicRecord) -> io::Result<()> {
        if state.is_empty() {
            return match fs::remove_file(&self.path) {
                Ok(()) => sync_dir(&self.dir),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
        }
        let mut text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
        text.push('\n');
        write_atomically(&self.dir, &self.path, text.as_bytes())
    }
}

impl Drop for NicJournal {
    fn drop(&mut self) {
        // Removed while the lock is held: a process that opened the file
        // meanwhile notices that its lock is on a removed file (take_lock)
        // and tries again.
        if let Err(e) = fs::remove_file(&self.lock_path) {
            tracing::debug!(file = %self.lock_path.display(), error = %e, "cannot remove the lock");
        }
    }
}

/// Open `path` and take an exclusive `flock` on it without waiting; write
/// our pid in it. Retries when the file was replaced under us.
fn take_lock(path: &Path, nic: &str) -> Result<File, JournalError> {
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_error(format!("open {}", path.display())))?;
        match sys::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(JournalError::Busy {
                    nic: nic.to_owned(),
                    lock: path.to_owned(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(e) => return Err(io_error(format!("lock {}", path.display()))(e)),
        }
        // The previous holder removes the file before it lets go: the lock
        // counts only if the path still names the file locked.
        let locked = file
            .metadata()
            .map_err(io_error(format!("stat {}", path.display())))?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(format!("stat {}", path.display()))(e)),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(io_error(format!("write {}", path.display())))?;
        return Ok(file);
    }
}

/// Parse a journal, checking that it is the one of `nic` in `netns`.
fn parse(bytes: &[u8], nic: &str, netns: u64) -> Result<NicRecord, String> {
    let record: NicRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if record.nic != nic || record.netns != netns {
        return Err(format!(
            "it is the journal of {} in network namespace {}, not of {nic} in {netns}",
            record.nic, record.netns
        ));
    }
    for change in &record.sysctls {
        let inside = change
            .path
            .strip_prefix("/proc/sys/net/")
            .is_some_and(|rest| !rest.split('/').any(|part| part == ".." || part.is_empty()));
        if !inside {
            return Err(format!("{:?} is not a network sysctl", change.path));
        }
    }
    if let Some(table) = &record.nftables_table {
        if ingress::table_name(nic).as_deref() != Some(table.as_str()) {
            return Err(format!(
                "{table:?} is not shardnet's nftables table for {nic}"
            ));
        }
    }
    Ok(record)
}

/// Write `bytes` to `path` so that a reader sees the old content or the new,
/// never a part, and the new survives a power cut once this returns: a
/// temporary file in the same directory, fsync, rename over `path`, fsync of
/// the directory. (Hand-written: `tempfile` is only a dev-dependency, and
/// this is five calls.)
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What [`restore`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// One line per action, e.g. `net/ipv4/conf/eth1/arp_ignore 8 -> 0`.
    pub done: Vec<String>,
    /// One line per failure; what failed stays in the journal.
    pub failed: Vec<String>,
}

/// Undo every change `journal` records, the last first: each sysctl back to
/// its original value while it still holds the value shardnet set, then the
/// nftables table deleted. What is undone (or needs nothing) leaves the
/// journal; what fails stays, for a later try.
pub fn restore(journal: &NicJournal) -> RestoreReport {
    let mut report = RestoreReport::default();
    let record = journal.record();
    for change in record.sysctls.iter().rev() {
        let line = match netif::restore_sysctl(change) {
            Ok(SysctlRestore::Restored) => format!("{} (restored)", change.reversed()),
            Ok(SysctlRestore::AlreadyOriginal) => {
                format!("{} is {} already", change.key(), change.old)
            }
            Ok(SysctlRestore::Gone) => format!("{} is gone (nothing to restore)", change.key()),
            Ok(SysctlRestore::ChangedSince(now)) => format!(
                "{} left at {now}: changed since shardnet set {} (the original was {})",
                change.key(),
                change.new,
                change.old
            ),
            Err(e) => {
                report.failed.push(format!(
                    "cannot restore {} to {}: {e}",
                    change.key(),
                    change.old
                ));
                continue;
            }
        };
        report.done.push(line);
        if let Err(e) = journal.forget_sysctl(change) {
            report
                .failed
                .push(format!("cannot update {}: {e}", journal.path().display()));
        }
    }
    if let Some(table) = &record.nftables_table {
        match ingress::delete_table(table) {
            Ok(()) => {
                report
                    .done
                    .push(format!("nftables table netdev {table} deleted"));
                if let Err(e) = journal.forget_table() {
                    report
                        .failed
                        .push(format!("cannot update {}: {e}", journal.path().display()));
                }
            }
            Err(e) => report.failed.push(format!(
                "cannot delete nftables table netdev {table}: {e:#}"
            )),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, old: &str, new: &str) -> SysctlChange {
        SysctlChange {
            path: path.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
        }
    }

    const ARP: &str = "/proc/sys/net/ipv4/conf/sntest9/arp_ignore";
    const RP: &str = "/proc/sys/net/ipv4/conf/sntest9/rp_filter";

    #[test]
    fn written_before_and_removed_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (journal, left) = NicJournal::claim_in(&state, "sntest9", 42).unwrap();
        assert_eq!(left, None);
        let path = state.join("sntest9.netns-42.json");
        assert_eq!(journal.path(), path);
        // Nothing recorded, no file; the lock file holds our pid.
        assert!(!path.exists());
        let lock = state.join("sntest9.netns-42.lock");
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            format!("{}\n", std::process::id())
        );

        let arp = change(ARP, "0", "8");
        let rp = change(RP, "0", "1");
        journal.record_sysctl(&arp).unwrap();
        journal.record_sysctl(&rp).unwrap();
        journal.record_table("shardnet_sntest9").unwrap();
        let on_disk = parse(&fs::read(&path).unwrap(), "sntest9", 42).unwrap();
        assert_eq!(on_disk.sysctls, [arp.clone(), rp.clone()]);
        assert_eq!(on_disk.nftables_table.as_deref(), Some("shardnet_sntest9"));
        assert_eq!(on_disk.pid, std::process::id());
        // No temporary file is left beside it.
        let names: Vec<String> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        journal.forget_sysctl(&rp).unwrap();
        journal.forget_table().unwrap();
        let on_disk = parse(&fs::read(&path).unwrap(), "sntest9", 42).unwrap();
        assert_eq!(on_disk.sysctls, std::slice::from_ref(&arp));
        assert_eq!(on_disk.nftables_table, None);
        journal.forget_sysctl(&arp).unwrap();
        assert!(!path.exists(), "an empty journal is removed");
        drop(journal);
        assert!(!lock.exists(), "the lock file goes with its owner");
    }

    #[test]
    fn a_live_owner_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = NicJournal::claim_in(dir.path(), "sntest9", 7).unwrap();
        journal.record_sysctl(&change(ARP, "0", "8")).unwrap();
        // flock locks belong to open files: a second claim conflicts, even
        // from the same process.
        let e = NicJournal::claim_in(dir.path(), "sntest9", 7).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, JournalError::Busy { holder: Some(pid), .. } if *pid == std::process::id()),
            "{e:?}"
        );
        assert!(
            text.starts_with(&format!(
                "a running shardnet (pid {}) holds sntest9 in this network namespace",
                std::process::id()
            )),
            "{text}"
        );
        // Another namespace, or another NIC, is another journal.
        let (other, left) = NicJournal::claim_in(dir.path(), "sntest9", 8).unwrap();
        assert_eq!(left, None);
        drop(other);
        drop(journal);
        // Released (as a dying process's is): the next claim gets the record.
        let (again, left) = NicJournal::claim_in(dir.path(), "sntest9", 7).unwrap();
        let left = left.expect("the changes left behind");
        assert_eq!(left.sysctls, [change(ARP, "0", "8")]);
        assert_eq!(again.record().sysctls, left.sysctls);
        assert_eq!(again.record().pid, std::process::id());
    }

    #[test]
    fn a_journal_left_by_a_dead_process_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        // As a killed process leaves it: the journal, and a lock file that
        // nobody holds, with a pid in it.
        let left = NicRecord {
            nic: "sntest9".to_owned(),
            netns: 9,
            pid: 999_999,
            sysctls: vec![change(ARP, "0", "8"), change(RP, "2", "1")],
            nftables_table: Some("shardnet_sntest9".to_owned()),
        };
        let path = NicJournal::path_of(dir.path(), "sntest9", 9);
        fs::write(&path, serde_json::to_vec(&left).unwrap()).unwrap();
        fs::write(path.with_extension("lock"), "999999\n").unwrap();
        let (journal, found) = NicJournal::claim_in(dir.path(), "sntest9", 9).unwrap();
        assert_eq!(found.as_ref(), Some(&left));
        assert_eq!(
            left.summary(),
            "net/ipv4/conf/sntest9/arp_ignore 0 -> 8, net/ipv4/conf/sntest9/rp_filter 2 -> 1, \
             nftables table netdev shardnet_sntest9"
        );
        // New changes are added to the old ones, under our pid.
        journal.record_sysctl(&change(RP, "2", "1")).unwrap();
        let on_disk = parse(&fs::read(&path).unwrap(), "sntest9", 9).unwrap();
        assert_eq!(on_disk.pid, std::process::id());
        assert_eq!(on_disk.sysctls.len(), 3);

        // An empty journal (all undone before the crash) counts as none.
        drop(journal);
        let empty = NicRecord {
            nic: "sntest9".to_owned(),
            netns: 9,
            ..NicRecord::default()
        };
        fs::write(&path, serde_json::to_vec(&empty).unwrap()).unwrap();
        let (_journal, found) = NicJournal::claim_in(dir.path(), "sntest9", 9).unwrap();
        assert_eq!(found, None);
    }

    #[test]
    fn a_damaged_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = NicJournal::path_of(dir.path(), "sntest9", 5);
        let record = |sysctl: &str, table: Option<&str>, nic: &str| NicRecord {
            nic: nic.to_owned(),
            netns: 5,
            pid: 1,
            sysctls: vec![change(sysctl, "0", "8")],
            nftables_table: table.map(str::to_owned),
        };
        let cases = [
            (b"{\"nic\": \"sntest9\", \"netns\"".to_vec(), "EOF"),
            (
                serde_json::to_vec(&record(ARP, None, "other0")).unwrap(),
                "journal of other0",
            ),
            (
                serde_json::to_vec(&record("/etc/passwd", None, "sntest9")).unwrap(),
                "not a network sysctl",
            ),
            (
                serde_json::to_vec(&record("/proc/sys/net/../kernel/x", None, "sntest9")).unwrap(),
                "not a network sysctl",
            ),
            (
                serde_json::to_vec(&record(ARP, Some("filter"), "sntest9")).unwrap(),
                "not shardnet's nftables table",
            ),
        ];
        for (bytes, expected) in cases {
            fs::write(&path, &bytes).unwrap();
            let e = NicJournal::claim_in(dir.path(), "sntest9", 5).unwrap_err();
            assert!(matches!(e, JournalError::Corrupt { .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(text.contains("restore those settings by hand"), "{text}");
        }
    }

    #[test]
    fn an_atomic_write_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomically(dir.path(), &path, b"first").unwrap();
        write_atomically(dir.path(), &path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let entries = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "no temporary file left");
        // A directory that is not there: an error, nothing written.
        let missing = dir.path().join("missing");
        assert!(write_atomically(&missing, &missing.join("x.json"), b"x").is_err());
    }
}
