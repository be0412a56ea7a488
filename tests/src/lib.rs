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
