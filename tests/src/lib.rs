//! Helpers for the end-to-end tests: network namespaces with RAII clean-up, and the rule for
//! privileged tests (they run whenever possible, and never skip in CI).
#![forbid(unsafe_code)]

pub mod netns;

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
