//! Packet captures with tshark in a namespace, for tests that check what crossed a link.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use nix::sys::signal::Signal;

use crate::process::Owned;

/// A running capture; [`Capture::stop`] returns the raw pcap bytes.
#[derive(Debug)]
pub struct Capture {
    tshark: Owned,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing UDP and TCP on `ifname` in namespace `ns`, and returns once tshark
    /// reports that it is capturing (so nothing sent afterwards is missed).
    pub fn start(ns: &str, ifname: &str) -> Result<Self, String> {
        Self::start_on(ns, &[ifname], "udp or tcp")
    }

    /// Starts capturing on several interfaces of `ns` with a capture `filter`; in the file,
    /// `frame.interface_id` is the index into `ifnames`.
    pub fn start_on(ns: &str, ifnames: &[&str], filter: &str) -> Result<Self, String> {
        Self::start_pinned(ns, ifnames, filter, None)
    }

    /// As [`start_on`](Self::start_on), with tshark and its dumpcap confined to the CPU list
    /// `cpus` (taskset syntax): a benchmark keeps the capture off the CPU of the system it
    /// measures, whose delays the capture's own work would otherwise add to.
    pub fn start_pinned(
        ns: &str,
        ifnames: &[&str],
        filter: &str,
        cpus: Option<&str>,
    ) -> Result<Self, String> {
        let file = std::env::temp_dir().join(format!("{}.pcap", crate::netns::unique("cap")));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        if let Some(cpus) = cpus {
            cmd.args(["taskset", "-c", cpus]);
        }
        cmd.arg("tshark");
        for i in ifnames {
            cmd.args(["-i", i]);
        }
        let mut child = cmd
            .args(["-f", filter, "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start tshark (cargo xtask setup installs it): {e}"))?;
        let stderr = child.stderr.take();
        let tshark = Owned::new("tshark", child);
        let (tx, rx) = mpsc::channel();
        if let Some(stderr) = stderr {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Capturing on") {
                        let _ = tx.send(());
                    }
                }
            });
        }
        rx.recv_timeout(Duration::from_secs(15))
            .map_err(|_| "tshark did not start capturing within 15 s".to_owned())?;
        Ok(Self { tshark, file })
    }

    /// Stops the capture and returns the pcap file's bytes (the file is removed).
    pub fn stop(mut self) -> Vec<u8> {
        self.tshark.signal(Signal::SIGINT);
        let _ = self.tshark.wait_timeout(Duration::from_secs(10));
        let bytes = std::fs::read(&self.file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.file);
        bytes
    }
}
