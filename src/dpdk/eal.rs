//! EAL: the command line, initialisation and cleanup, and lcore launch.

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{last_errno, strerror, DpdkError};

/// The program name passed to EAL as `argv[0]`.
pub const PROGRAM_NAME: &str = "shardnet";

/// Whether EAL is up in this process (set by [`Eal::init`], cleared by
/// cleanup). Pools check it before handing memory back.
static EAL_RUNNING: AtomicBool = AtomicBool::new(false);

/// Whether EAL is initialised and not yet cleaned up.
pub(crate) fn eal_running() -> bool {
    EAL_RUNNING.load(Ordering::Acquire)
}

/// EAL options that set the core list; shardnet derives it from `workers` and
/// `control_core`, so `eal_args` must not.
fn sets_cores(arg: &str) -> Option<&'static str> {
    let name = arg.split('=').next().unwrap_or(arg);
    match name {
        "--lcores" => Some("--lcores"),
        "--main-lcore" => Some("--main-lcore"),
        "--master-lcore" => Some("--master-lcore"),
        _ if arg.starts_with("-l") => Some("-l"),
        _ if arg.starts_with("-c") => Some("-c"),
        _ => None,
    }
}

/// The EAL command line for a dataplane: the program name, the core mapping,
/// then `user_args` (the config's `eal_args`, such as `--no-pci`, `--vdev=...`).
///
/// Lcore 0 is the main lcore and runs on `control_core`; worker `i` is lcore
/// `i + 1`, pinned to CPU `workers[i]`: `--lcores=0@C,1@W0,2@W1,...
/// --main-lcore=0`. Lcore ids are distinct; CPUs may repeat (a small machine
/// can put the control thread on a worker's core).
///
/// Fails if `workers` is empty or too long for `RTE_MAX_LCORE`, or if
/// `user_args` set the cores themselves (`-l`, `-c`, `--lcores`,
/// `--main-lcore`).
pub fn eal_arguments(
    user_args: &[String],
    workers: &[usize],
    control_core: usize,
) -> Result<Vec<String>, DpdkError> {
    if let Some(option) = user_args.iter().find_map(|a| sets_cores(a)) {
        return Err(DpdkError::Arguments(format!(
            "eal_args must not contain {option}: shardnet derives the EAL core list \
             from [dataplane] workers and control_core"
        )));
    }
    if workers.is_empty() {
        return Err(DpdkError::Arguments(
            "no workers: [dataplane] workers must list at least one CPU".into(),
        ));
    }
    let max_lcore = dpdk_sys::RTE_MAX_LCORE as usize;
    if workers.len() + 1 > max_lcore {
        return Err(DpdkError::Arguments(format!(
            "{} workers plus the control thread need {} lcores; this DPDK allows {max_lcore}",
            workers.len(),
            workers.len() + 1
        )));
    }
    let mut lcores = format!("--lcores=0@{control_core}");
    for (i, cpu) in workers.iter().enumerate() {
        lcores.push_str(&format!(",{}@{cpu}", i + 1));
    }
    let mut args = Vec::with_capacity(user_args.len() + 3);
    args.push(PROGRAM_NAME.to_owned());
    args.push(lcores);
    args.push("--main-lcore=0".to_owned());
    args.extend(user_args.iter().cloned());
    Ok(args)
}

/// The likely cause of an `rte_eal_init` failure, from `rte_errno`.
fn init_hint(code: i32) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match code {
        libc::EACCES if !root => "permission denied: DPDK needs root (or CAP_SYS_ADMIN, \
             CAP_IPC_LOCK and CAP_NET_RAW); run shardnet as root"
            .into(),
        libc::EACCES => "permission denied reading hugepage or device information: check \
             that hugetlbfs is mounted and accessible, or add --no-huge to eal_args"
            .into(),
        libc::ENOMEM => "cannot reserve memory: probably no free hugepages; reserve some with \
             `echo 512 > /proc/sys/vm/nr_hugepages`, or add --no-huge to eal_args"
            .into(),
        libc::EALREADY => "EAL is already initialised in this process (it can be \
             initialised only once; restart the process)"
            .into(),
        libc::EINVAL => "invalid EAL arguments; see the EAL messages above and check eal_args \
             (note that --in-memory cannot be combined with --no-huge: use --no-shconf)"
            .into(),
        libc::ENODEV => "device or memory setup failed: check --vdev/--allow in eal_args and \
             that NICs are bound to a DPDK driver (vfio-pci)"
            .into(),
        libc::ENOEXEC => "a driver plugin or service failed to load; check -d in eal_args and \
             the DPDK plugin directory"
            .into(),
        libc::ENOTSUP => "an EAL subsystem (lcore detection, interrupts, timers, device probe) \
             is unsupported here; see the EAL messages above"
            .into(),
        libc::EPROTO => {
            "secondary process could not reach the primary (check --file-prefix)".into()
        }
        libc::EFAULT => "EAL internal error; see the EAL messages above".into(),
        _ => "see the EAL messages above".into(),
    }
}

/// The initialised DPDK environment (EAL) of this process.
///
/// At most one exists. Dropping it (or [`Eal::cleanup`]) calls
/// `rte_eal_cleanup`, which releases EAL's memory and runtime files so the next
/// process can start at once; EAL cannot be initialised again in this process.
/// Not `Send`: cleanup must run on the main lcore, the thread that initialised.
#[derive(Debug)]
pub struct Eal {
    /// The argument strings EAL was given; kept alive for as long as EAL runs
    /// (EAL may keep pointers into argv).
    _args: Vec<CString>,
    cleaned_up: bool,
    _not_send: PhantomData<*const ()>,
}

impl Eal {
    /// Initialise EAL with `args` (the full command line, program name first, as
    /// [`eal_arguments`] builds it). The calling thread becomes the main lcore.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if let Err(bad) = crate::eal::check_arguments(args.get(1..).unwrap_or_default()) {
            return Err(DpdkError::BadArgument(bad.reason));
        }
        let args = args
            .iter()
            .map(|a| {
                CString::new(a.as_str())
                    .map_err(|_| DpdkError::Arguments(format!("{a:?} contains a NUL byte")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if args.is_empty() {
            return Err(DpdkError::Arguments("empty command line".into()));
        }
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
        let argc = c_int::try_from(argv.len())
            .map_err(|_| DpdkError::Arguments("too many arguments".into()))?;
        // SAFETY: argv holds argc pointers to NUL-terminated strings that live in
        // `args`, which the returned Eal keeps; EAL may permute the pointer
        // array (getopt) but not write into the strings. EAL itself refuses a
        // second initialisation (EALREADY).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let code = last_errno();
            return Err(DpdkError::EalInit {
                code,
                text: strerror(code),
                hint: init_hint(code),
            });
        }
        EAL_RUNNING.store(true, Ordering::Release);
        tracing::info!(
            version = dpdk_sys::VERSION,
            lcores = Eal::lcore_count(),
            ports = Eal::port_count(),
            "DPDK EAL initialised"
        );
        Ok(Eal {
            _args: args,
            cleaned_up: false,
            _not_send: PhantomData,
        })
    }

    /// The number of lcores EAL runs (main included).
    pub fn lcore_count() -> u32 {
        // SAFETY: reads EAL's configuration; returns 0-ish garbage-free value
        // even before init (the static config is zeroed).
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    /// The number of ethdev ports EAL probed.
    pub fn port_count() -> u16 {
        // SAFETY: walks ethdev's port table; valid before and after init.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// Release EAL (`rte_eal_cleanup`): its memory, its runtime files, its
    /// threads' resources. Stop worker lcores ([`wait_all_lcores`]), close ports
    /// and drop pools first.
    pub fn cleanup(mut self) -> Result<(), DpdkError> {
        self.cleanup_inner()
    }

    fn cleanup_inner(&mut self) -> Result<(), DpdkError> {
        if self.cleaned_up {
            return Ok(());
        }
        self.cleaned_up = true;
        EAL_RUNNING.store(false, Ordering::Release);
        // SAFETY: EAL was initialised by this Eal on this thread (Eal is not
        // Send); cleanup runs once (guarded by `cleaned_up`).
        let rc = unsafe { dpdk_sys::rte_eal_cleanup() };
        if rc < 0 {
            let code = rc.abs();
            return Err(DpdkError::EalCleanup {
                code,
                text: strerror(code),
            });
        }
        tracing::info!("DPDK EAL cleaned up");
        Ok(())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup_inner() {
            tracing::warn!("{e}");
        }
    }
}

/// The function an lcore runs, boxed twice so a thin pointer crosses into C.
type LaunchedFn = Box<dyn FnOnce() + Send>;

/// Runs the boxed closure that `arg` points to; returns 0, or -1 if it
/// panicked (a panic must not unwind into C).
extern "C" fn launch_trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the pointer launch_on_lcore made with Box::into_raw on a
    // Box<LaunchedFn>, and EAL calls this function once per successful launch,
    // so the box is reclaimed exactly once.
    let f: Box<LaunchedFn> = unsafe { Box::from_raw(arg.cast::<LaunchedFn>()) };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => 0,
        Err(_) => {
            tracing::error!("a function launched on an lcore panicked");
            -1
        }
    }
}

/// Run `f` on worker lcore `lcore` (`rte_eal_remote_launch`). The lcore must
/// be an enabled worker (not the main lcore) and idle. A panic in `f` is caught
/// at the lcore's edge (it must not unwind into C) and reported by
/// [`wait_lcore`] as -1. Returns at once; use
/// [`wait_lcore`] or [`wait_all_lcores`] to join.
pub fn launch_on_lcore(lcore: u32, f: Box<dyn FnOnce() + Send>) -> Result<(), DpdkError> {
    if !eal_running() {
        return Err(DpdkError::Launch {
            lcore,
            reason: "EAL is not initialised".into(),
        });
    }
    // EAL does not check these itself: launching on a disabled lcore would
    // write to a pipe that was never opened.
    // SAFETY: plain reads of EAL's lcore table, valid for any id after init.
    let (enabled, main) = unsafe {
        (
            lcore < dpdk_sys::RTE_MAX_LCORE && dpdk_sys::rte_lcore_is_enabled(lcore) != 0,
            dpdk_sys::rte_get_main_lcore(),
        )
    };
    if !enabled {
        return Err(DpdkError::Launch {
            lcore,
            reason: "no such lcore (EAL runs the lcores of --lcores, derived from \
                     [dataplane] workers)"
                .into(),
        });
    }
    if lcore == main {
        return Err(DpdkError::Launch {
            lcore,
            reason: "it is the main lcore (the control thread); launch on worker lcores only"
                .into(),
        });
    }
    let arg = Box::into_raw(Box::new(f)).cast::<c_void>();
    // SAFETY: the trampoline matches lcore_function_t and takes ownership of
    // `arg` when EAL runs it; EAL checks the lcore id and state itself.
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(launch_trampoline), arg, lcore) };
    if rc != 0 {
        // SAFETY: the launch failed, so EAL will never run the trampoline:
        // reclaim the box made above, once.
        drop(unsafe { Box::from_raw(arg.cast::<LaunchedFn>()) });
        let code = rc.abs();
        return Err(DpdkError::Launch {
            lcore,
            reason: match code {
                libc::EBUSY => "the lcore is busy running another function".into(),
                _ => format!("{} (error {code})", strerror(code)),
            },
        });
    }
    Ok(())
}

/// Wait for the function launched on `lcore` to return; returns its status: 0,
/// or -1 if it panicked (0 as well for an lcore that ran nothing).
pub fn wait_lcore(lcore: u32) -> i32 {
    if !eal_running() {
        return 0;
    }
    // SAFETY: rte_eal_wait_lcore handles any lcore id and state.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) }
}

/// Wait until every worker lcore is idle again (`rte_eal_mp_wait_lcore`).
pub fn wait_all_lcores() {
    if !eal_running() {
        return;
    }
    // SAFETY: called from the main lcore (the only thread holding an Eal),
    // after EAL init.
    unsafe { dpdk_sys::rte_eal_mp_wait_lcore() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn core_mapping_comes_first_then_user_args() {
        let user = strings(&["--no-pci", "--vdev=net_ring0"]);
        let args = eal_arguments(&user, &[2, 3], 1).unwrap();
        assert_eq!(
            args,
            strings(&[
                "shardnet",
                "--lcores=0@1,1@2,2@3",
                "--main-lcore=0",
                "--no-pci",
                "--vdev=net_ring0"
            ])
        );
    }

    #[test]
    fn cpus_may_overlap_lcores_do_not() {
        let args = eal_arguments(&[], &[0, 1], 0).unwrap();
        assert_eq!(args[1], "--lcores=0@0,1@0,2@1");
    }

    #[test]
    fn user_args_must_not_set_cores() {
        for bad in [
            "-l",
            "-l0-3",
            "-c",
            "-c0x3",
            "--lcores=0@0",
            "--lcores",
            "--main-lcore=1",
            "--master-lcore=1",
        ] {
            let err = eal_arguments(&strings(&["--no-pci", bad]), &[1], 0).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("must not contain"), "{bad}: {msg}");
            assert!(msg.contains("workers"), "{bad}: {msg}");
        }
        // Look-alikes are fine.
        assert!(eal_arguments(&strings(&["--log-level=8", "--vdev=net_null0"]), &[1], 0).is_ok());
    }

    #[test]
    fn workers_are_required_and_bounded() {
        assert!(eal_arguments(&[], &[], 0).is_err());
        let many: Vec<usize> = (0..dpdk_sys::RTE_MAX_LCORE as usize).collect();
        assert!(eal_arguments(&[], &many, 0).is_err());
        assert!(eal_arguments(&[], &many[1..], 0).is_ok());
    }

    #[test]
    fn an_unknown_option_is_refused_before_eal_sees_it() {
        let args: Vec<String> = ["shardnet", "--lcores=0@0", "--no-pci", "--bogus"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        match Eal::init(&args) {
            Err(DpdkError::BadArgument(reason)) => assert_eq!(
                reason,
                "unknown EAL option --bogus in eal_args (DPDK 22.11's EAL has no such option)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!eal_running());
    }

    #[test]
    fn init_hints_name_the_cause() {
        assert!(init_hint(libc::ENOMEM).contains("nr_hugepages"));
        assert!(init_hint(libc::ENOMEM).contains("--no-huge"));
        assert!(init_hint(libc::EALREADY).contains("already initialised"));
        assert!(init_hint(libc::EACCES).contains("permission"));
    }

    #[test]
    fn launch_without_eal_is_an_error() {
        let err = launch_on_lcore(1, Box::new(|| {})).unwrap_err();
        assert!(err.to_string().contains("not initialised"));
        wait_all_lcores(); // no-op without EAL
    }
}
