//! The `shardnet` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use shardnet::config::{Config, CoreSet};
use shardnet::control::capture_client::{self, CaptureArgs};
use shardnet::runtime::{self, Signals};

/// A multi-core userspace TCP/UDP network stack on DPDK poll-mode drivers.
#[derive(Parser)]
#[command(name = "shardnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the stack in the foreground until SIGINT or SIGTERM; SIGHUP reloads the rules.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print a summary.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Report what this host lacks for a configuration, one finding a line.
    ///
    /// Each line is `BLOCKER: ...`, `WARN: ...` or `OK: ...`, a blocker or
    /// warning followed by `; fix: COMMAND`. Checked: the IOMMU; each PCI
    /// device of `-a` in eal_args present and bound to vfio-pci (Mellanox:
    /// mlx5_core with rdma-core, never vfio-pci); free hugepages on the NIC's
    /// NUMA node against the pools' need; the worker cores' node, isolcpus and
    /// nohz_full, and CPU governor; irqbalance; the link of the kernel
    /// interfaces involved and, with [kernel] enabled, that they carry no IPv4
    /// address. Only reads. Exits 0 when nothing blocks a start,
    /// 1 when something does, 2 when the configuration is invalid.
    Doctor {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Read sys/ and proc/ under this directory instead of / (for tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Undo what a shardnet that did not stop cleanly left changed on the config's NIC.
    ///
    /// While it runs, shardnet changes the NIC's sysctls (arp_ignore, rp_filter,
    /// disable_ipv6, the namespace's udp_early_demux) and, with
    /// `kernel_ingress = "drop"`, adds an nftables table; it records each change
    /// beforehand in $SHARDNET_STATE_DIR (default /run/shardnet). After a crash
    /// (SIGKILL, abort), this puts back what the record lists, in the current
    /// network namespace, and prints what it did. The next `shardnet run` does the
    /// same by itself; this is for the time in between, e.g. systemd's
    /// `ExecStopPost=shardnet restore --config FILE`. Exits 0 when all was restored
    /// or nothing was left, 1 if a running shardnet still holds the NIC or
    /// something could not be restored.
    Restore {
        /// The TOML configuration file of the run to clean up after.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// A table of a running instance, refreshed every second (like F-Stack's ff_top).
    ///
    /// Per worker: packets received and sent per second, TCP connections,
    /// pool buffers in use, drops per second; then the drops by reason and
    /// the port's link. Read from the control endpoint's /metrics.
    Status {
        /// The control endpoint: `[metrics] listen` (HOST:PORT) or the path of `[metrics] admin_socket`.
        #[arg(long)]
        control: String,
        /// Print one table (two scrapes an interval apart) and exit.
        #[arg(long)]
        once: bool,
        /// Seconds between scrapes (0.1 to 3600).
        #[arg(long, default_value = "1", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Write a pcap of the frames the workers receive and send.
    ///
    /// Asks the running instance's admin socket (`[metrics] admin_socket`) for
    /// `POST /capture`; stops after --count frames or on Ctrl-C, and prints how
    /// many frames it wrote and how many copies the workers dropped (their
    /// ring to the control thread was full). Frames are cut at 256 bytes.
    Capture {
        /// The admin socket's path.
        #[arg(long)]
        control: PathBuf,
        /// Capture this worker only (default: all).
        #[arg(long)]
        worker: Option<usize>,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Which frames: udp, tcp, icmp, arp, port N, host A.B.C.D, and, or, not, ( ).
        #[arg(long)]
        filter: Option<String>,
        /// The pcap file to write; `-` for stdout.
        #[arg(short = 'w', long = "write")]
        write: PathBuf,
    },
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.1..=3600.0).contains(&secs) => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "{text} is not a number of seconds from 0.1 to 3600"
        )),
    }
}

/// Load and validate, printing `FILE:LINE:COL: reason` lines on failure.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    load_on(path, &CoreSet::online())
}

/// [`load`] against the given online cores.
fn load_on(path: &std::path::Path, online: &CoreSet) -> Result<Config, ExitCode> {
    let config = match Config::load_with(path, online) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Err(ExitCode::from(1));
        }
    };
    let unsupported = config.check_supported();
    if !unsupported.is_empty() {
        for error in unsupported {
            eprintln!("{}", error.display_in(path));
        }
        return Err(ExitCode::from(1));
    }
    for warning in &config.warnings {
        eprintln!("{} (warning)", warning.display_in(path));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(config) => {
                println!("{}: OK", config.path.display());
                println!("{}", config.summary().trim_end());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Doctor { config, root } => {
            // The cores online on the host examined, which --root may fake.
            let online = std::fs::read_to_string(root.join("sys/devices/system/cpu/online"))
                .ok()
                .and_then(|list| CoreSet::parse_list(&list))
                .filter(|set| !set.is_empty())
                .unwrap_or_else(CoreSet::online);
            let config = match load_on(&config, &online) {
                Ok(config) => config,
                Err(_) => return ExitCode::from(2),
            };
            let findings = shardnet::doctor::diagnose(&config, &shardnet::doctor::Host::new(root));
            for finding in &findings {
                println!("{finding}");
            }
            ExitCode::from(shardnet::doctor::exit_code(&findings))
        }
        Command::Restore { config } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(1);
                }
            };
            let mut say = |line: String| println!("{line}");
            match runtime::restore_after_crash(&config, &mut say) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shardnet: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Status {
            control,
            once,
            interval,
        } => {
            let stdout = std::io::stdout();
            let clear = std::io::IsTerminal::is_terminal(&stdout);
            let mut out = stdout.lock();
            match shardnet::control::status::run(&control, once, interval, clear, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shardnet: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Capture {
            control,
            worker,
            count,
            filter,
            write,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                    eprintln!("shardnet: cannot handle signals: {e}");
                    return ExitCode::from(1);
                }
            }
            let args = CaptureArgs {
                control,
                worker,
                count,
                filter,
                write,
            };
            match capture_client::capture(&args, &stop) {
                Ok(outcome) => {
                    eprintln!(
                        "{} frames written, {} dropped",
                        outcome.written, outcome.dropped
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shardnet: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("SHARDNET_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let signals = match Signals::install() {
                Ok(signals) => signals,
                Err(e) => {
                    eprintln!("shardnet: {e:#}");
                    return ExitCode::from(1);
                }
            };
            match runtime::run(config, &signals) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shardnet: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
