//! The `shardnet` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use shardnet::config::Config;
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

/// Load and validate, printing `FILE:LINE:COL: reason` lines on failure.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    let config = match Config::load(path) {
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
