//! The Debian package: `cargo xtask package` builds it; its contents and conffiles are what
//! the README promises; it unpacks into a fresh dpkg root (never the host's /); the systemd
//! unit passes `systemd-analyze verify` and carries the hardening; the logrotate rule parses;
//! and the installed binary, run as an unprivileged user in a namespace with exactly the
//! unit's capabilities, starts and attaches XDP — and without any one of them it does not
//! attach (it still runs, relaying in userspace), which proves each capability is needed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use sbc_e2e::{http, netns::Netns, process::Owned};

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `CAP_BPF CAP_NET_ADMIN` → `["bpf", "net_admin"]`.
fn caps_of(unit: &str, key: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}"));
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// Runs the installed `sbc` in a fresh namespace with a veth for media, as `nobody` with
/// exactly `caps` (ambient, inheritable and bounding set), and reports whether it became
/// ready and whether XDP attached.
fn run_unprivileged(root: &Path, work: &Path, caps: &[String]) -> (bool, bool) {
    let ns = Netns::new("spk").expect("netns");
    ns.exec_ip(&["link", "add", "m0", "type", "veth", "peer", "name", "m1"])
        .expect("veth");
    for args in [
        &["link", "set", "m0", "up"][..],
        &["link", "set", "m1", "up"],
        &["addr", "add", "198.18.9.1/24", "dev", "m0"],
    ] {
        ns.exec_ip(args).expect("ip");
    }
    let instance = ns.name().replace('-', "_");
    let config = work.join(format!("{instance}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[general]
instance = "{instance}"
[inside]
udp = ["198.18.9.1:5060"]
media_address = "198.18.9.1"
[outside]
udp = ["127.0.0.1:5080"]
media_address = "127.0.0.1"
[pbx]
address = "198.18.9.2:5060"
allow = ["198.18.9.0/24"]
[[trunk]]
name = "carrier"
proxy = "127.0.0.1:5090"
[media]
interfaces = ["m0"]
[admin]
listen = "127.0.0.1:8080"
"#
        ),
    )
    .expect("config");
    // What the unit's `ExecStartPre=+install -d -o sbc …` does for the service user.
    let pins = PathBuf::from("/sys/fs/bpf/sbc").join(&instance);
    std::fs::create_dir_all(&pins).expect("bpffs pin dir");
    run(Command::new("chown").arg("nobody:nogroup").arg(&pins));
    let set = caps
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let set = if set.is_empty() {
        "-all".to_owned()
    } else {
        format!("-all,{set}")
    };
    // nsenter, not `ip netns exec`: the latter remounts /sys, hiding bpffs.
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ])
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg("--no-new-privs")
        .arg(root.join("usr/bin/sbc"))
        .args(["run", "--config"])
        .arg(&config)
        .env("SBC_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the installed sbc");
    let mut sbc = Owned::new("sbc", child);
    let get = |path: &str| {
        let _in = ns.enter().expect("enter");
        http::request_with(
            "127.0.0.1:8080".parse().expect("literal"),
            "GET",
            path,
            &[],
            None,
        )
    };
    let mut ready = false;
    for _ in 0..150 {
        if get("/readyz").is_some_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        if !sbc.running() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let attached =
        ready && get("/metrics").is_some_and(|r| r.body.lines().any(|l| l == "sbc_xdp_attached 1"));
    sbc.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = sbc.wait_timeout(Duration::from_secs(10));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "clean exit: {stopped:?}"
    );
    // The pinned fast path stays after a stop by design; remove it (as root).
    run(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg(root.join("usr/bin/sbc"))
        .args(["xdp", "detach", "--instance", &instance]));
    let _ = std::fs::remove_dir(&pins);
    (ready, attached)
}

#[test]
fn the_package_installs_and_runs_unprivileged_with_only_its_capabilities() {
    if !sbc_e2e::require_root("package") {
        return;
    }
    let work = TempDir(std::env::temp_dir().join(sbc_e2e::netns::unique("sbcpkg")));
    std::fs::create_dir_all(&work.0).expect("work dir");
    // World-readable: the unprivileged run reads its configuration from here.
    run(Command::new("chmod").arg("755").arg(&work.0));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(Command::new(cargo)
        .args([
            "run",
            "-q",
            "-p",
            "xtask",
            "--",
            "package",
            "--profile",
            "dev",
            "--out",
        ])
        .arg(work.0.join("out"))
        .current_dir(sbc_e2e::workspace_root()));
    // The path is the last line (dpkg-deb reports on stdout too).
    let deb = PathBuf::from(text(&out).lines().last().unwrap_or_default());
    assert!(deb.is_file(), "{}", deb.display());

    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/sbc",
        "./etc/sbc/sbc.toml",
        "./lib/systemd/system/sbc.service",
        "./etc/logrotate.d/sbc",
        "./usr/share/sbc/dashboards/sbc-overview.json",
        "./usr/share/sbc/dashboards/sbc-alerts.rules.yml",
        "./usr/share/doc/sbc/README.md",
        "./usr/share/doc/sbc/cdr.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing:\n{contents}"
        );
    }
    let conffiles = text(&run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles")));
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/sbc/sbc.toml", "/etc/logrotate.d/sbc"]
    );
    let control = text(&run(Command::new("dpkg-deb").arg("--field").arg(&deb)));
    assert!(
        control.contains("Package: sbc") && control.contains("Depends: libc6"),
        "{control}"
    );

    // A fresh dpkg root: an empty database, then the package unpacked into it.
    let root = work.0.join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).expect("dpkg root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).expect("dpkg root");
    for f in ["status", "available"] {
        std::fs::write(root.join("var/lib/dpkg").join(f), "").expect("dpkg db");
    }
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--unpack"])
        .arg(&deb));
    let listed = text(&run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-L", "sbc"])));
    assert!(listed.lines().any(|l| l == "/usr/bin/sbc"), "{listed}");
    let shipped = std::fs::read_to_string(sbc_e2e::workspace_root().join("config/sbc.toml"))
        .expect("config/sbc.toml");
    // Unpacked, not configured (that runs the maintainer scripts, which need a whole Debian
    // chroot): dpkg holds conffiles as `.dpkg-new` until then, which shows it treats them as
    // conffiles.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/sbc/sbc.toml.dpkg-new")).expect("unpacked config"),
        shipped
    );

    // The unit: hardening and reload as documented, and systemd's own check.
    let unit_path = root.join("lib/systemd/system/sbc.service");
    let unit = std::fs::read_to_string(&unit_path).expect("unit");
    for line in [
        "User=sbc",
        "ExecStart=/usr/bin/sbc run --config /etc/sbc/sbc.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ReadWritePaths=/etc/sbc",
        "LogsDirectory=sbc",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let caps = caps_of(&unit, "AmbientCapabilities");
    assert_eq!(caps, caps_of(&unit, "CapabilityBoundingSet"));
    // The binaries the unit names exist on this host except sbc itself (not installed here):
    // check a copy that points at the unpacked one.
    let check = work.0.join("sbc.service");
    let usr_bin_sbc = root.join("usr/bin/sbc");
    std::fs::write(
        &check,
        unit.replace("/usr/bin/sbc", &usr_bin_sbc.to_string_lossy()),
    )
    .expect("unit copy");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&check)
        .output()
        .expect("systemd-analyze (Debian package systemd; cargo xtask setup installs it)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let state = work.0.join("logrotate.state");
    run(Command::new("logrotate")
        .args(["--debug", "--state"])
        .arg(&state)
        .arg(root.join("etc/logrotate.d/sbc.dpkg-new")));

    // --help documents how to run it without the README.
    let help = text(&run(Command::new(&usr_bin_sbc).arg("--help")));
    for word in [
        "run",
        "check-config",
        "xdp",
        "/etc/sbc/sbc.toml",
        "SIGHUP",
        "SBC_LOG",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }

    // Exactly the unit's capabilities: ready and XDP attached, as nobody.
    assert_eq!(run_unprivileged(&root, &work.0, &caps), (true, true));
    // Each one is needed: without it the SBC still runs, but XDP does not attach.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        assert_eq!(
            run_unprivileged(&root, &work.0, &fewer),
            (true, false),
            "XDP attached without CAP_{}",
            missing.to_uppercase()
        );
    }
}
