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
