//! Admin API hardening against the real `sbc`, each in its own network namespace: a live
//! change keeps the config file's mode and owner; a full file system (a 64 KiB tmpfs) refuses
//! the change with the reason, leaves the old file and no temporary file, and the running
//! configuration unchanged; a change that would leave a non-loopback admin API without a token
//! is refused with 422; a `Host` that is not an address, `localhost` or a configured name is
//! refused with 421 (DNS rebinding).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use sbc_e2e::{http, netns::Netns, process::Owned};
use serde_json::Value;

const TOKEN: &str = "hardening-token-0123456789";

/// A temporary directory removed on drop; with `tmpfs`, a size-limited tmpfs mounted on it and
/// unmounted on drop (also when the test fails).
struct Dir {
    path: PathBuf,
    mounted: bool,
}

impl Dir {
    fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(sbc_e2e::netns::unique(prefix));
        std::fs::create_dir(&path).expect("create temp dir");
        Self {
            path,
            mounted: false,
        }
    }

    fn tmpfs(prefix: &str, size: &str) -> Self {
        let mut d = Self::new(prefix);
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&d.path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a {size} tmpfs on {}", d.path.display());
        d.mounted = true;
        d
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.path)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Busy (a process still has a file open): detach it now, it goes when freed.
                let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The SBC in its own namespace, on the given config file. Field order: the process ends
/// before the namespace goes.
struct Sbc {
    proc: Owned,
    ns: Netns,
    admin: SocketAddr,
    token: Option<&'static str>,
}

fn config_text(admin: &str, extra_admin: &str) -> String {
    format!(
        r#"[general]
instance = "hardening"
[inside]
udp = ["127.0.0.1:5060"]
media_address = "127.0.0.1"
[outside]
udp = ["127.0.0.1:5080"]
media_address = "127.0.0.1"
[pbx]
address = "127.0.0.1:5070"
allow = ["127.0.0.0/8"]
[[trunk]]
name = "carrier"
proxy = "127.0.0.1:5090"
[media]
xdp = "off"
[admin]
listen = "{admin}"
{extra_admin}
"#
    )
}

impl Sbc {
    fn start(prefix: &str, config: &Path, admin: &str, token: Option<&'static str>) -> Self {
        let ns = Netns::new(prefix).expect("create netns");
        let child = ns
            .command(&sbc_e2e::sbc_bin().display().to_string())
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sbc");
        let mut me = Self {
            proc: Owned::new("sbc", child),
            ns,
            // A listener on 0.0.0.0 is reached through loopback.
            admin: admin
                .replace("0.0.0.0", "127.0.0.1")
                .parse()
                .expect("admin"),
            token,
        };
        for _ in 0..100 {
            if me.raw("GET", "/readyz", "127.0.0.1", "").0 == 200 {
                return me;
            }
            assert!(me.proc.running(), "sbc exited during start-up");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sbc not ready within 10 s");
    }

    /// One request with exactly this `Host` (none when empty), the token if any, and a JSON
    /// body; (status, body). Status 0: no answer.
    fn raw(&self, method: &str, path: &str, host: &str, body: &str) -> (u16, String) {
        let _in = self.ns.enter().expect("enter netns");
        let Ok(mut s) = TcpStream::connect_timeout(&self.admin, Duration::from_secs(2)) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !host.is_empty() {
            req.push_str(&format!("Host: {host}\r\n"));
        }
        if let Some(t) = self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        let _ = s.write_all(req.as_bytes());
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).to_string();
        let Some((head, rest)) = text.split_once("\r\n\r\n") else {
            return (0, text);
        };
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, rest.to_owned())
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = self.raw(method, path, "127.0.0.1:8080", body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn user_agent(&self) -> String {
        let (status, v) = self.json("GET", "/api/v1/config", "");
        assert_eq!(status, 200, "{v}");
        v["general"]["user_agent"].as_str().unwrap_or("").to_owned()
    }

    /// PUT of the whole running configuration with another user agent.
    fn put_user_agent(&self, ua: &str) -> (u16, Value) {
        let (status, mut v) = self.json("GET", "/api/v1/config", "");
        assert_eq!(status, 200, "{v}");
        v["general"]["user_agent"] = Value::String(ua.into());
        self.json("PUT", "/api/v1/config", &v.to_string())
    }
}

#[test]
fn a_config_write_keeps_the_files_mode_and_owner() {
    if !sbc_e2e::require_root("admin_hardening") {
        return;
    }
    let dir = Dir::new("ahm");
    let path = dir.path.join("sbc.toml");
    std::fs::write(&path, config_text("127.0.0.1:8080", "")).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // An owner other than the SBC's (root): the service account an operator gave the file.
    nix::unistd::chown(
        &path,
        Some(nix::unistd::Uid::from_raw(4242)),
        Some(nix::unistd::Gid::from_raw(4243)),
    )
    .expect("chown");
    let sbc = Sbc::start("ahm", &path, "127.0.0.1:8080", None);
    let (status, v) = sbc.put_user_agent("kept-mode/1");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["persisted"], true, "{v}");
    let m = std::fs::metadata(&path).expect("stat");
    assert_eq!(m.permissions().mode() & 0o7777, 0o600, "mode kept");
    assert_eq!((m.uid(), m.gid()), (4242, 4243), "owner kept");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("kept-mode/1"), "{text}");
    assert_eq!(dir.entries(), ["sbc.toml"], "no temporary file left");
}

#[test]
fn a_full_file_system_refuses_the_change_and_leaves_everything_as_it_was() {
    if !sbc_e2e::require_root("admin_hardening") {
        return;
    }
    let dir = Dir::tmpfs("ahs", "64k");
    let path = dir.path.join("sbc.toml");
    std::fs::write(&path, config_text("127.0.0.1:8080", "")).expect("write config");
    let sbc = Sbc::start("ahs", &path, "127.0.0.1:8080", None);
    let before_ua = sbc.user_agent();
    let before = std::fs::read(&path).expect("read");
    // Fill the file system: write until ENOSPC (at most the tmpfs size, bounded).
    let filler = dir.path.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = [0u8; 1024];
        for _ in 0..256 {
            if f.write_all(&block).and_then(|()| f.sync_all()).is_err() {
                break;
            }
        }
    }
    let (status, v) = sbc.put_user_agent("no-space/1");
    assert_eq!(status, 500, "{v}");
    let error = v["error"].as_str().unwrap_or("");
    assert!(
        error.contains("No space left on device") && error.contains("nothing was changed"),
        "the reason is given: {v}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "old file intact"
    );
    assert_eq!(
        dir.entries(),
        ["filler", "sbc.toml"],
        "no temporary file left"
    );
    assert_eq!(
        sbc.user_agent(),
        before_ua,
        "running configuration unchanged"
    );
    // With space again, the same change goes through.
    std::fs::remove_file(&filler).expect("remove filler");
    let (status, v) = sbc.put_user_agent("no-space/1");
    assert_eq!(status, 200, "{v}");
    assert_eq!(sbc.user_agent(), "no-space/1");
    drop(sbc);
}

#[test]
fn a_change_that_would_open_a_non_loopback_admin_api_is_refused() {
    if !sbc_e2e::require_root("admin_hardening") {
        return;
    }
    let dir = Dir::new("aht");
    let path = dir.path.join("sbc.toml");
    std::fs::write(
        &path,
        config_text("0.0.0.0:8080", &format!("token = \"{TOKEN}\"")),
    )
    .expect("write config");
    let mut sbc = Sbc::start("aht", &path, "0.0.0.0:8080", Some(TOKEN));
    let before = std::fs::read(&path).expect("read");
    let (status, v) = sbc.json("PATCH", "/api/v1/config", r#"{"admin": {"token": null}}"#);
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["problems"][0]["path"], "admin.token", "{v}");
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("0.0.0.0:8080")),
        "{v}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "file unchanged"
    );
    // The token still applies: a request without it is refused.
    sbc.token = None;
    assert_eq!(sbc.json("GET", "/api/v1/config", "").0, 401);
    sbc.token = Some(TOKEN);
    assert_eq!(sbc.json("GET", "/api/v1/config", "").0, 200);
}

#[test]
fn a_change_that_would_move_a_tokenless_admin_api_off_loopback_is_refused() {
    if !sbc_e2e::require_root("admin_hardening") {
        return;
    }
    let dir = Dir::new("ahl");
    let path = dir.path.join("sbc.toml");
    std::fs::write(&path, config_text("127.0.0.1:8080", "")).expect("write config");
    let sbc = Sbc::start("ahl", &path, "127.0.0.1:8080", None);
    let before = std::fs::read(&path).expect("read");
    let (status, v) = sbc.json(
        "PATCH",
        "/api/v1/config",
        r#"{"admin": {"listen": "0.0.0.0:8080"}}"#,
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["problems"][0]["path"], "admin.token", "{v}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "file unchanged"
    );
}

#[test]
fn requests_naming_another_host_are_refused() {
    if !sbc_e2e::require_root("admin_hardening") {
        return;
    }
    let dir = Dir::new("ahh");
    let path = dir.path.join("sbc.toml");
    std::fs::write(
        &path,
        config_text("127.0.0.1:8080", "hosts = [\"sbc.mgmt.test\"]"),
    )
    .expect("write config");
    let sbc = Sbc::start("ahh", &path, "127.0.0.1:8080", None);
    for host in [
        "127.0.0.1:8080",
        "[::1]:8080",
        "localhost:8080",
        "sbc.mgmt.test:8080",
    ] {
        let (status, body) = sbc.raw("GET", "/api/v1/config", host, "");
        assert_eq!(status, 200, "Host: {host}: {body}");
    }
    // What a page on a rebound name makes the browser send: refused everywhere, writes too.
    for path in ["/api/v1/config", "/metrics", "/healthz"] {
        let (status, body) = sbc.raw("GET", path, "rebind.attacker.test:8080", "");
        assert_eq!(status, 421, "{path}: {body}");
    }
    let (status, _) = sbc.raw(
        "PATCH",
        "/api/v1/config",
        "rebind.attacker.test:8080",
        r#"{"general": {"user_agent": "rebound"}}"#,
    );
    assert_eq!(status, 421);
    assert_ne!(sbc.user_agent(), "rebound");
    assert_eq!(sbc.raw("GET", "/api/v1/config", "", "").0, 400, "no Host");
    let (_, metrics) = sbc.raw("GET", "/metrics", "127.0.0.1:8080", "");
    assert!(
        metrics.contains("sbc_admin_requests_refused_total{reason=\"host\"} 5"),
        "{metrics}"
    );
    // The Host check follows live changes of [admin] hosts.
    let (status, v) = sbc.json(
        "PATCH",
        "/api/v1/config",
        r#"{"admin": {"hosts": ["rebind.attacker.test"]}}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        sbc.raw("GET", "/healthz", "rebind.attacker.test:8080", "")
            .0,
        200
    );
    // Shown to http::request's users: the lab client's Host (the address) passes.
    let _in = sbc.ns.enter().expect("enter netns");
    assert_eq!(
        http::get(sbc.admin, "/healthz").map(|r| r.status),
        Some(200)
    );
}
