//! Helpers for the end-to-end tests: the rule for privileged tests (they run whenever possible,
//! and never skip in CI) and the binary under test. The lab lives in `sbc-lab`.
#![forbid(unsafe_code)]

pub use sbc_lab::{capture, http, lab, netns, postgres, process, sipp};

pub mod frame;
pub mod xdp_run;

/// Whether a privileged test can run here. Not root outside CI: skip with a message. Not root
/// in CI: fail, because CI is root and a skipped XDP test there would hide a regression.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs root (CAP_NET_ADMIN, CAP_BPF); CI must run it as root"
    );
    eprintln!("SKIPPED {test}: needs root (network namespaces and XDP); run as root to include it");
    false
}

/// The environment variable that runs the e2e tests' SBC with that many signaling shards
/// (`[general] signaling_shards`); unset: the configuration's default. `cargo xtask test` runs
/// the signaling suites a second time with 2 (docs/sharding.md).
pub const SHARDS_ENV: &str = "SBC_E2E_SHARDS";

/// The `[general]` line a test configuration gets from [`SHARDS_ENV`], or nothing. A
/// configuration with `[state]` gets nothing: persisted calls need one shard (the loader
/// refuses more), so those tests run as they are.
///
/// # Panics
/// When the variable is set to something other than a shard count (a typo must not quietly
/// run the single-shard tests again).
pub fn shards_toml(config_has_state: bool) -> String {
    let Some(v) = std::env::var_os(SHARDS_ENV) else {
        return String::new();
    };
    let v = v.to_string_lossy();
    let n: u16 = v
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{SHARDS_ENV}={v}: not a shard count"));
    if config_has_state {
        eprintln!("{SHARDS_ENV}={n} ignored: [state] runs one shard");
        return String::new();
    }
    format!("signaling_shards = {n}")
}

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// Path of the `sbc` binary under test: `$SBC_BIN`, else the workspace's debug build.
/// `cargo xtask test` builds it before running the tests.
pub fn sbc_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SBC_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug/sbc");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p sbc` first (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// Starts `sbc run --config <config>` (the binary under test, `SBC_LOG=<log>`) in network
/// namespace `ns` and waits until `ready` says it is (polled every 100 ms, at most 10 s).
/// `nsenter`, not `ip netns exec`: the latter also makes a private mount namespace with a fresh
/// /sys, which hides bpffs, and pins made there would die with the process.
///
/// # Panics
/// When the SBC cannot be started, exits during start-up, or is not ready within 10 s.
pub fn start_sbc_in(
    ns: &str,
    config: &std::path::Path,
    log: &str,
    mut ready: impl FnMut() -> bool,
) -> process::Owned {
    let child = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(sbc_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("SBC_LOG", log)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start sbc");
    let mut owned = process::Owned::new("sbc", child);
    for _ in 0..100 {
        if ready() {
            return owned;
        }
        assert!(owned.running(), "sbc in {ns} exited during start-up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("sbc in {ns} not ready within 10 s");
}
