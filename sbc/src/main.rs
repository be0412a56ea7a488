//! The `sbc` command: run the daemon, check a configuration file.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use sbc::config::{self, LogFormat};

/// What `sbc --help` adds after the commands: enough to run it without the README.
const AFTER_HELP: &str = "\
Quick start:
  sbc check-config /etc/sbc/sbc.toml     validate (every problem with key path and line)
  sbc run --config /etc/sbc/sbc.toml     run in the foreground until SIGTERM/SIGINT
  systemctl start sbc                     the same under systemd (Debian package)

Files:
  /etc/sbc/sbc.toml     configuration; every key is documented inline. Live changes from the
                        admin API are validated and written back to it.
  /var/log/sbc/         CDR files when [cdr] path points there (JSON lines, rotated)
  /sys/fs/bpf/sbc/<instance>/  pinned XDP links and maps (media keeps flowing while sbc is
                        down; `sbc xdp detach` removes them)

Signals:
  SIGHUP           re-read the configuration (validated; calls kept) and TLS certificates
  SIGTERM, SIGINT  drain: new calls get 503, calls in progress get [general]
                   drain_timeout_s, then BYE; registrations removed; exit 0.
                   A second signal ends the calls left at once.

Environment:
  SBC_LOG (or RUST_LOG)  log filter, e.g. SBC_LOG=debug,sbc::media=trace
  SBC_ADMIN_TOKEN        admin API bearer token (instead of [admin] token)

Admin API (default 127.0.0.1:8080): /healthz, /readyz, /metrics, /api/v1/... (calls, trunks,
routes, ACLs, bans, config, media, cdrs); the operations are listed at /api/v1/openapi.json.
Privileges: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON for the XDP fast path (without them media
is relayed in userspace); CAP_NET_BIND_SERVICE only for ports below 1024.";

/// SIP trunk Session Border Controller.
#[derive(Debug, Parser)]
#[command(name = "sbc", version, about, after_help = AFTER_HELP)]
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
    /// Operate on the XDP fast path of an instance (also while no sbc runs).
    Xdp {
        #[command(subcommand)]
        action: XdpAction,
    },
}

#[derive(Debug, Subcommand)]
enum XdpAction {
    /// Remove everything the instance pinned in bpffs: detaches the XDP program from the media
    /// interfaces and drops every mapping (established media then stops flowing). Run it after
    /// stopping sbc for good; a running sbc keeps relaying in userspace.
    Detach {
        /// Instance name (`general.instance`); default: the one in --config, else "sbc".
        #[arg(long)]
        instance: Option<String>,
        /// Configuration file to take the instance name from.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Attach the program, with no mappings (it passes every packet), to an interface until
    /// SIGTERM/SIGINT. Native XDP redirect into a veth only delivers if the receiving end has a
    /// program attached; the lab and the demo put this on the peers' veth ends.
    Pass {
        /// Interface (in the current network namespace).
        interface: String,
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
        Command::Xdp {
            action: XdpAction::Detach { instance, config },
        } => xdp_detach(instance, config),
        Command::Xdp {
            action: XdpAction::Pass { interface },
        } => xdp_pass(&interface),
    }
}

fn xdp_pass(interface: &str) -> ExitCode {
    // No mappings: `xdp pass` only hands every packet up; the compiled-in size is plenty.
    let mut relay = match sbc::media::xdp::XdpRelay::load(None, sbc_ebpf_common::MAX_MAPPINGS) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sbc: cannot load the XDP program: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = relay.attach(interface, sbc::config::XdpMode::Native) {
        eprintln!("sbc: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sbc: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    relay.detach_all();
    ExitCode::SUCCESS
}

fn xdp_detach(instance: Option<String>, config: Option<PathBuf>) -> ExitCode {
    let instance = match (instance, config) {
        (Some(i), _) => i,
        (None, Some(path)) => match config::load_file(&path) {
            Ok((c, _)) => c.general.instance,
            Err(e) => {
                eprintln!("sbc: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => "sbc".to_owned(),
    };
    if instance.is_empty()
        || !instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        eprintln!("sbc: invalid instance name {instance:?}");
        return ExitCode::FAILURE;
    }
    let dir = sbc::media::xdp::pin_dir(&instance);
    match sbc::media::xdp::remove_pins(&dir) {
        Ok(0) => {
            println!("{}: nothing pinned", dir.display());
            ExitCode::SUCCESS
        }
        Ok(n) => {
            println!(
                "{}: removed {n} pinned objects (XDP detached, mappings dropped)",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sbc: removing {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn run(path: Option<PathBuf>, log_json: bool) -> ExitCode {
    let default_path = PathBuf::from("config/sbc.toml");
    let mut file = None;
    let (config, source) = match path {
        Some(p) => match config::load_file(&p) {
            Ok((c, _)) => {
                file = Some(p.clone());
                (c, p.display().to_string())
            }
            Err(e) => {
                eprintln!("sbc: {e}");
                return ExitCode::FAILURE;
            }
        },
        None if default_path.is_file() => match config::load_file(&default_path) {
            Ok((c, _)) => {
                file = Some(default_path.clone());
                (c, default_path.display().to_string())
            }
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
    match sbc::sys::raise_fd_limit() {
        Ok(n) => tracing::info!(limit = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the file descriptor limit"),
    }
    // Before the runtime starts any thread (see `reserve_descriptors`).
    match sbc::sys::reserve_descriptors(config.descriptors_needed()) {
        Ok(n) => tracing::debug!(descriptors = n, "descriptor table reserved"),
        Err(e) => tracing::warn!(error = %e, "could not reserve the descriptor table"),
    }

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
    match runtime.block_on(sbc::daemon::run(config, file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sbc failed");
            ExitCode::FAILURE
        }
    }
}
