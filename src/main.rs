//! The `shardnet` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardnet::config::Config;
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
