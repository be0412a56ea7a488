//! The `sbc` command: run the daemon, check a configuration file.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use sbc::config::{self, LogFormat};

/// SIP trunk Session Border Controller.
#[derive(Debug, Parser)]
#[command(name = "sbc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SBC.
    Run {
        /// Configuration file. Default: ./config/sbc.toml, else the built-in shipped default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log JSON lines instead of text (overrides `log.format`).
        #[arg(long)]
        log_json: bool,
    },
    /// Validate a configuration file; reports every problem with its key path and line.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match config::load_file(&file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, log_json } => run(config, log_json),
    }
}

fn run(path: Option<PathBuf>, log_json: bool) -> ExitCode {
    let default_path = PathBuf::from("config/sbc.toml");
    let (config, source) = match path {
        Some(p) => match config::load_file(&p) {
            Ok((c, _)) => (c, p.display().to_string()),
            Err(e) => {
                eprintln!("sbc: {e}");
                return ExitCode::FAILURE;
            }
        },
        None if default_path.is_file() => match config::load_file(&default_path) {
            Ok((c, _)) => (c, default_path.display().to_string()),
            Err(e) => {
                eprintln!("sbc: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => match config::parse(config::SHIPPED_DEFAULT) {
            Ok(c) => (c, "built-in default".to_owned()),
            Err(problems) => {
                // The shipped default is tested; reaching this is a build defect.
                for p in problems {
                    eprintln!("sbc: built-in default config: {p}");
                }
                return ExitCode::FAILURE;
            }
        },
    };
    let format = if log_json {
        LogFormat::Json
    } else {
        config.log.format
    };
    sbc::logging::init(&config.log.level, format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, "starting sbc");

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sbc::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sbc failed");
            ExitCode::FAILURE
        }
    }
}
