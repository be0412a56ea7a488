//! `cargo xtask package`: the Debian package, built with `dpkg-deb` from a staged tree (no
//! extra tool to install): the `sbc` binary, `config/sbc.toml` as the conffile
//! `/etc/sbc/sbc.toml`, the systemd unit and logrotate rule from `packaging/`, the dashboards
//! under `/usr/share/sbc/`, the README and docs under `/usr/share/doc/sbc/`, and maintainer
//! scripts that create the `sbc` system user. `tests/tests/package.rs` installs and runs it.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// Files copied into the package: (source in the workspace, destination, mode).
const FILES: &[(&str, &str, u32)] = &[
    ("config/sbc.toml", "etc/sbc/sbc.toml", 0o640),
    (
        "packaging/sbc.service",
        "lib/systemd/system/sbc.service",
        0o644,
    ),
    ("packaging/sbc.logrotate", "etc/logrotate.d/sbc", 0o644),
    ("README.md", "usr/share/doc/sbc/README.md", 0o644),
    ("docs/cdr.md", "usr/share/doc/sbc/cdr.md", 0o644),
    ("docs/admin.md", "usr/share/doc/sbc/admin.md", 0o644),
    ("docs/media.md", "usr/share/doc/sbc/media.md", 0o644),
];

/// Files dpkg treats as configuration (kept when the operator changed them).
const CONFFILES: &[&str] = &["/etc/sbc/sbc.toml", "/etc/logrotate.d/sbc"];

const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd sbc >/dev/null; then
        adduser --system --group --home /var/lib/sbc --no-create-home \
            --gecos "SIP Session Border Controller" sbc
    fi
    # Live changes from the admin API are written back here (atomically: a new file in the
    # directory, then a rename), so the directory belongs to sbc.
    chown sbc:sbc /etc/sbc /etc/sbc/sbc.toml
    chmod 0750 /etc/sbc
    chmod 0640 /etc/sbc/sbc.toml
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    if [ "$1" = configure ]; then
        deb-systemd-helper enable sbc.service >/dev/null || true
        deb-systemd-invoke restart sbc.service >/dev/null || true
    fi
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    deb-systemd-invoke stop sbc.service >/dev/null || true
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper purge sbc.service >/dev/null || true
    fi
    rm -rf /var/lib/sbc /var/log/sbc
    # The pinned XDP fast path of a stopped SBC would keep forwarding nobody manages.
    rm -rf /sys/fs/bpf/sbc
fi
exit 0
"#;

/// Builds the package with `profile` (`release`, or `dev` for tests) into `out`; returns its
/// path.
pub fn run(profile: &str, out: Option<PathBuf>) -> Result<PathBuf> {
    let root = crate::root();
    crate::cargo(&[
        "build",
        "--profile",
        profile,
        "--package",
        "sbc",
        "--bin",
        "sbc",
    ])?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = if profile == "dev" { "debug" } else { profile };
    let binary = target.join(dir).join("sbc");
    let version = env!("CARGO_PKG_VERSION");
    let arch = output("dpkg", &["--print-architecture"])?;
    let stage = target.join("package").join(format!("sbc_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    install(&binary, &stage.join("usr/bin/sbc"), 0o755)?;
    for (from, to, mode) in FILES {
        install(&root.join(from), &stage.join(to), *mode)?;
    }
    for entry in fs::read_dir(root.join("dashboards")).context("dashboards/")? {
        let p = entry?.path();
        if let Some(name) = p.file_name() {
            let to = stage.join("usr/share/sbc/dashboards").join(name);
            install(&p, &to, 0o644)?;
        }
    }
    let copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: sbc\nFiles: *\nLicense: {}\n",
        env!("CARGO_PKG_LICENSE")
    );
    write(
        &stage.join("usr/share/doc/sbc/copyright"),
        &copyright,
        0o644,
    )?;
    let debian = stage.join("DEBIAN");
    write(&debian.join("postinst"), POSTINST, 0o755)?;
    write(&debian.join("prerm"), PRERM, 0o755)?;
    write(&debian.join("postrm"), POSTRM, 0o755)?;
    write(
        &debian.join("conffiles"),
        &(CONFFILES.join("\n") + "\n"),
        0o644,
    )?;
    let size_kib = output("du", &["-sk", &stage.to_string_lossy()])?
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .to_owned();
    let control = format!(
        "Package: sbc\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: SBC maintainers <sbc@localhost>\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6 (>= {glibc}), adduser\n\
         Recommends: logrotate\n\
         Section: net\n\
         Priority: optional\n\
         Description: SIP trunk Session Border Controller\n \
         A back-to-back user agent between an IP-PBX and carrier SIP trunks: topology\n \
         hiding, NAT fixing, routing and number normalisation, an XDP fast path for\n \
         media, call detail records, Prometheus metrics and an HTTP admin API.\n",
        glibc = glibc_needed(&binary)?,
    );
    write(&debian.join("control"), &control, 0o644)?;
    let out = out.unwrap_or_else(|| target.join("package"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let deb = out.join(format!("sbc_{version}_{arch}.deb"));
    // xz for releases; a quick gzip for test builds (their unstripped binary is large).
    let compression: &[&str] = if profile == "dev" {
        &["-Zgzip", "-z1"]
    } else {
        &["-Zxz"]
    };
    let status = Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .args(compression)
        .arg("--build")
        .arg(&stage)
        .arg(&deb)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed ({status})");
    }
    eprintln!("xtask: built {}", deb.display());
    Ok(deb)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

fn output(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd} {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The newest `GLIBC_x.y` symbol version the binary links against (its real libc6 need).
fn glibc_needed(binary: &Path) -> Result<String> {
    let symbols = output("objdump", &["-T", &binary.to_string_lossy()])?;
    let newest = symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((2, 17));
    Ok(format!("{}.{}", newest.0, newest.1))
}
