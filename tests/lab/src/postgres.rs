//! A throw-away PostgreSQL server for a test: `initdb` into a fresh temporary directory owned
//! by the unprivileged `nobody`, `postgres` run as `nobody` inside a network namespace the
//! test owns, listening on its loopback only (TCP port and a Unix socket in the same
//! directory). On drop the server gets a fast shutdown (SIGINT, by its PID; SIGKILL if it
//! lingers) and the directory is removed. Needs the Debian `postgresql` package.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;

use crate::process::Owned;

/// A running server; `psql` runs queries as the superuser `sbc` (trust authentication).
#[derive(Debug)]
pub struct Postgres {
    ns: String,
    dir: PathBuf,
    bin: PathBuf,
    /// TCP port on the namespace's 127.0.0.1.
    pub port: u16,
    server: Option<Owned>,
}

/// The newest installed server's binary directory (`/usr/lib/postgresql/<v>/bin`).
pub fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn as_nobody(cmd: &mut Command) -> &mut Command {
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
}

impl Postgres {
    /// Initialises and starts a server in namespace `ns` on `127.0.0.1:port`; `name` makes the
    /// directory unique. Waits (bounded, 30 s) until it accepts connections.
    pub fn start(ns: &str, name: &str, port: u16) -> Result<Self, String> {
        let bin = bin_dir().ok_or("PostgreSQL not installed (Debian package postgresql)")?;
        let dir = std::env::temp_dir().join(format!("{name}-pg"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut me = Self {
            ns: ns.to_owned(),
            dir: dir.clone(),
            bin: bin.clone(),
            port,
            server: None,
        };
        let ok = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("chown nobody".into());
        }
        let data = dir.join("data");
        let out = as_nobody(&mut Command::new("setpriv"))
            .arg(bin.join("initdb"))
            .args(["-U", "sbc", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .env("LC_ALL", "C")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let mut server = Command::new("ip");
        server.args(["netns", "exec", ns, "setpriv"]);
        let child = as_nobody(&mut server)
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .env("LC_ALL", "C")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        me.server = Some(Owned::new("postgres", child));
        for _ in 0..300 {
            if me.psql("SELECT 1").is_ok_and(|o| o.trim() == "1") {
                return Ok(me);
            }
            if me.server.as_mut().is_some_and(|s| !s.running()) {
                return Err("postgres exited during start-up".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("postgres not ready within 30 s".into())
    }

    /// The connection URL for clients in the namespace.
    pub fn url(&self) -> String {
        format!("postgresql://sbc@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one SQL statement with `psql` in the namespace; unaligned, tuples only.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(self.bin.join("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "sbc",
            ])
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The directory holding the data and the socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            // Fast shutdown: the postmaster ends its children and frees its shared memory.
            s.signal(Signal::SIGINT);
            let _ = s.wait_timeout(Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
