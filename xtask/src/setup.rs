//! `cargo xtask setup`: installs what the project needs on a fresh Debian bookworm machine,
//! idempotently. Every step first checks, and only acts when something is missing, so a second
//! run changes nothing and takes seconds. A failure names the missing piece and the command
//! that fixes it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// Debian packages and why the project needs each.
const PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "bpf-linker links against LLVM 22 (the nightly's LLVM)",
    ),
    ("libpolly-22-dev", "LLVM 22 link dependency of bpf-linker"),
    ("clang-22", "LLVM 22 tools used when building bpf-linker"),
    ("libzstd-dev", "LLVM 22 link dependency of bpf-linker"),
    (
        "iproute2",
        "network namespaces and veth pairs for tests and the lab",
    ),
    ("bpftool", "inspecting loaded XDP programs and pinned maps"),
    (
        "sip-tester",
        "SIPp, the PBX and carrier in end-to-end tests and benchmarks",
    ),
    ("tshark", "packet captures that check topology hiding"),
    (
        "kamailio",
        "reference SIP proxy for benchmarks and the registrar in tests",
    ),
    ("rtpengine", "reference media relay for benchmarks"),
    (
        "valgrind",
        "callgrind instruction and allocation counts per call in the CI regression check",
    ),
    (
        "baresip-core",
        "SIP phones with SRTP, tone generation and recording in the SRTP end-to-end tests",
    ),
    (
        "prometheus",
        "scrapes the SBC in the metrics/dashboard test",
    ),
    ("ethtool", "inspecting lab interfaces"),
    ("iputils-ping", "reachability checks in the lab test"),
    (
        "sipvicious",
        "svmap/svwar/svcrack against both sides in the border test",
    ),
    (
        "postgresql",
        "the CDR test's own PostgreSQL server (initdb/postgres as nobody, in a namespace)",
    ),
    (
        "systemd",
        "systemd-analyze verify on the packaged unit in the package test",
    ),
    (
        "logrotate",
        "checks the packaged logrotate rule for CDR files in the package test",
    ),
    (
        "redis-server",
        "the call state store of the restart-recovery tests (each test runs its own server)",
    ),
    (
        "keepalived",
        "moves the virtual address of the active/standby pair (VRRP) in the failover test",
    ),
];

const NIGHTLY: &str = "nightly";

/// Runs every step; with `check_only`, reports what is missing without changing anything.
pub fn run(check_only: bool) -> Result<()> {
    let started = Instant::now();
    let mut changed = false;
    changed |= packages(check_only)?;
    changed |= rust_src(check_only)?;
    changed |= bpf_linker(check_only)?;
    changed |= bpffs(check_only)?;
    eprintln!(
        "xtask setup: {} in {:.1?}",
        if changed {
            "installed what was missing"
        } else {
            "everything already in place"
        },
        started.elapsed()
    );
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout) == "install ok installed")
        .unwrap_or(false)
}

fn packages(check_only: bool) -> Result<bool> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        eprintln!(
            "xtask setup: Debian packages: all {} installed",
            PACKAGES.len()
        );
        return Ok(false);
    }
    let fix = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    for p in &missing {
        let why = PACKAGES.iter().find(|(n, _)| n == p).map_or("", |(_, w)| w);
        eprintln!("xtask setup: missing Debian package {p} ({why})");
    }
    if check_only {
        bail!("missing Debian packages; fix: {fix}");
    }
    if !is_root() {
        bail!("missing Debian packages and not root; fix: sudo sh -c '{fix}'");
    }
    // Package scripts must not start system daemons (a packaged Kamailio would take port 5060
    // from the SBC); tests and benchmarks start their own instances. Debian's policy-rc.d
    // mechanism is the documented way; install one only for the duration of the install.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        std::fs::write(
            policy,
            "#!/bin/sh\n# written by cargo xtask setup during apt-get\nexit 101\n",
        )
        .context("writing /usr/sbin/policy-rc.d")?;
        set_mode(policy, 0o755)?;
    }
    let result = apt_install(&missing);
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    result.with_context(|| format!("installing Debian packages failed; try: {fix}"))?;
    Ok(true)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get update")?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install failed ({status})");
    }
    Ok(())
}

fn nightly_sysroot() -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn rust_src(check_only: bool) -> Result<bool> {
    let sysroot = match nightly_sysroot() {
        Some(s) => s,
        None => {
            let fix = format!("rustup toolchain install {NIGHTLY} --profile minimal -c rust-src");
            if check_only {
                bail!("the {NIGHTLY} Rust toolchain is missing; fix: {fix}");
            }
            eprintln!("xtask setup: installing the {NIGHTLY} toolchain");
            run_cmd(
                Command::new("rustup").args([
                    "toolchain",
                    "install",
                    NIGHTLY,
                    "--profile",
                    "minimal",
                    "-c",
                    "rust-src",
                ]),
                &fix,
            )?;
            return Ok(true);
        }
    };
    if sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .exists()
    {
        eprintln!("xtask setup: {NIGHTLY} rust-src: installed");
        return Ok(false);
    }
    let fix = format!("rustup component add rust-src --toolchain {NIGHTLY}");
    if check_only {
        bail!("{NIGHTLY} has no rust-src (needed for -Z build-std); fix: {fix}");
    }
    eprintln!("xtask setup: installing rust-src for {NIGHTLY}");
    run_cmd(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]),
        &fix,
    )?;
    Ok(true)
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin").join(name)
}

fn bpf_linker(check_only: bool) -> Result<bool> {
    let bin = cargo_bin("bpf-linker");
    let works = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        eprintln!("xtask setup: bpf-linker: installed");
        return Ok(false);
    }
    // bpf-linker's build script finds LLVM through LLVM_PREFIX; llvm-sys through
    // LLVM_SYS_221_PREFIX. Without them it looks in /usr and fails with "-lLLVM not found".
    let fix = "LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 cargo install \
               bpf-linker --locked --no-default-features --features llvm-22";
    if check_only {
        bail!("bpf-linker is missing; fix: {fix}");
    }
    if !Path::new("/usr/lib/llvm-22/lib").exists() {
        bail!("LLVM 22 is missing (needed to build bpf-linker); fix: apt-get install llvm-22-dev");
    }
    eprintln!("xtask setup: building bpf-linker against LLVM 22 (takes a few minutes)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(
        Command::new(cargo)
            .args(["install", "bpf-linker", "--locked", "--no-default-features"])
            .args(["--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
            .env_remove("RUSTUP_TOOLCHAIN"),
        fix,
    )?;
    Ok(true)
}

fn bpffs(check_only: bool) -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, at, kind) = (f.next(), f.next(), f.next());
        at == Some("/sys/fs/bpf") && kind == Some("bpf")
    }) {
        eprintln!("xtask setup: bpffs: mounted at /sys/fs/bpf");
        return Ok(false);
    }
    let fix = "mount -t bpf bpf /sys/fs/bpf";
    if check_only || !is_root() {
        // Not fatal: pinning is needed for media to survive restarts, not for running.
        eprintln!("xtask setup: bpffs is not mounted (XDP maps cannot be pinned); fix: {fix}");
        return Ok(false);
    }
    run_cmd(
        Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]),
        fix,
    )?;
    eprintln!("xtask setup: mounted bpffs at /sys/fs/bpf");
    Ok(true)
}

fn run_cmd(cmd: &mut Command, fix: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {cmd:?}; fix: {fix}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status}); fix: {fix}");
    }
    Ok(())
}
