//! Network namespaces and veth pairs for tests and the lab, removed on drop (also on panic).

use std::{
    fs::File,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

/// Errors of namespace set-up.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// Arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
    /// Spawning `ip` failed (iproute2 missing?).
    #[error("cannot run `ip` (install iproute2): {0}")]
    Spawn(#[source] std::io::Error),
    /// Entering a namespace failed.
    #[error("entering netns {name}: {source}")]
    Enter {
        /// Namespace.
        name: String,
        /// Error.
        #[source]
        source: std::io::Error,
    },
}

/// A unique name with `prefix`: process id and a counter, so parallel tests and concurrent runs
/// never collide. Kept under 15 characters where used for interfaces.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs `ip` with `args`; an error carries its stderr.
pub fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetnsError::Spawn)?;
    if !out.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// A network namespace that exists while this value does.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with a unique name starting with `prefix`, loopback up.
    pub fn new(prefix: &str) -> Result<Self, NetnsError> {
        let name = unique(prefix);
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip args…` inside the namespace.
    pub fn exec_ip(&self, args: &[&str]) -> Result<Output, NetnsError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A `Command` that runs `program` inside the namespace (via `ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Moves the calling thread into this namespace until the guard drops. Sockets created
    /// meanwhile stay in this namespace for their whole life.
    pub fn enter(&self) -> Result<EnterGuard, NetnsError> {
        enter(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth ends inside it.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete netns {}: {e}", self.name);
        }
    }
}

/// Moves the calling thread into the named namespace (e.g. one of a [`crate::lab::Lab`]'s)
/// until the guard drops; the namespace is not owned.
pub fn enter(name: &str) -> Result<EnterGuard, NetnsError> {
    let err = |source| NetnsError::Enter {
        name: name.to_owned(),
        source,
    };
    let original = File::open("/proc/thread-self/ns/net").map_err(err)?;
    let target = File::open(format!("/run/netns/{name}")).map_err(err)?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| err(e.into()))?;
    Ok(EnterGuard { original })
}

/// Returns the thread to its original namespace on drop.
#[derive(Debug)]
pub struct EnterGuard {
    original: File,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original, CloneFlags::CLONE_NEWNET) {
            // Staying in a test namespace would misdirect later work on this thread.
            panic!("cannot return to the original network namespace: {e}");
        }
    }
}

/// Creates a veth pair with one end in each namespace, addresses them (`a_cidr`, `b_cidr`, e.g.
/// "10.99.0.1/24") and brings both ends up. Returns the interface names (a, b).
pub fn veth_pair(
    a: &Netns,
    a_cidr: &str,
    b: &Netns,
    b_cidr: &str,
) -> Result<(String, String), NetnsError> {
    let a_if = unique("va");
    let b_if = unique("vb");
    ip(&[
        "link",
        "add",
        &a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        &b_if,
        "netns",
        b.name(),
    ])?;
    a.exec_ip(&["addr", "add", a_cidr, "dev", &a_if])?;
    b.exec_ip(&["addr", "add", b_cidr, "dev", &b_if])?;
    a.exec_ip(&["link", "set", &a_if, "up"])?;
    b.exec_ip(&["link", "set", &b_if, "up"])?;
    Ok((a_if, b_if))
}
