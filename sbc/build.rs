//! Builds the XDP relay program (`ebpf/relay`) for the BPF target so that the `sbc` binary
//! embeds exactly the object it loads (`include_bytes!` of `$OUT_DIR/sbc-xdp`).
//!
//! This does what `aya-build` does, in a few lines of our own, for two reasons: a machine
//! without the eBPF toolchain must get an error that names the missing piece and the command
//! that installs it (never a silently different binary), and the eBPF crate lives in its own
//! workspace (BPF target, nightly, build-std) so host builds of the main workspace never see it.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const SETUP: &str = "run `cargo xtask setup` (installs the eBPF toolchain), then build again";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("sbc/ has a parent").to_path_buf();
    let ebpf_dir = root.join("ebpf");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("relay/src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("relay/Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("common/src").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");

    check_toolchain();

    // One target dir for every profile of the host build (debug, release, clippy's check),
    // so the BPF object is compiled once per change rather than once per profile.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("ebpf");

    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--quiet"])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .arg("--manifest-path")
        .arg(ebpf_dir.join("relay/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf",
        );
    // The outer cargo's settings would leak into the nested build and break it (clippy's
    // wrapper, the host rustc, the host toolchain selection).
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "CARGO_ENCODED_RUSTFLAGS_HOST",
    ] {
        cmd.env_remove(key);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("could not run `rustup run nightly cargo`: {e}")));
    if !status.success() {
        fail(&format!(
            "building the XDP program failed ({status}); see the errors above"
        ));
    }
    let object = target_dir.join("bpfel-unknown-none/release/sbc-xdp");
    let dest = out_dir.join("sbc-xdp");
    std::fs::copy(&object, &dest).unwrap_or_else(|e| {
        fail(&format!(
            "copying {} to {}: {e}",
            object.display(),
            dest.display()
        ))
    });
}

/// Fails the build with a message naming the missing piece, unless everything is there.
fn check_toolchain() {
    if which("rustup").is_none() {
        fail("`rustup` is not on PATH; the XDP program needs the nightly toolchain");
    }
    if which("bpf-linker").is_none() {
        fail("`bpf-linker` is not installed (needed to link the XDP program)");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        _ => fail("the `nightly` Rust toolchain is not installed"),
    };
    if !sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .exists()
    {
        fail("the nightly toolchain has no `rust-src` component (needed for -Z build-std=core)");
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    if let Some(home) = env::var_os("CARGO_HOME")
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into_os_string()))
    {
        dirs.push(Path::new(&home).join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn fail(why: &str) -> ! {
    eprintln!("\nerror: cannot build the XDP relay program: {why}.\n  fix: {SETUP}.\n");
    println!("cargo:warning=cannot build the XDP relay program: {why}; fix: {SETUP}");
    std::process::exit(1);
}
