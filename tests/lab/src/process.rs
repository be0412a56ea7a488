//! Child processes owned by a test: ended by PID on drop (also when the test panics).

use std::{
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// A child process that is killed (SIGKILL, by its own PID) if still running on drop.
#[derive(Debug)]
pub struct Owned {
    child: Child,
    name: String,
}

impl Owned {
    /// Takes ownership of `child`; `name` is used in messages.
    pub fn new(name: &str, child: Child) -> Self {
        Self {
            child,
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        if let Err(e) = kill(pid, signal) {
            eprintln!(
                "warning: signalling {} ({}): {e}",
                self.name,
                self.child.id()
            );
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.running() {
            // Forking servers (Kamailio's workers, say) outlive a SIGKILL of their parent:
            // take the descendants, listed before the parent dies (while they are still
            // ours by parentage), down with it, each by its PID.
            let descendants = descendants(self.child.id());
            let _ = self.child.kill();
            let _ = self.child.wait();
            for pid in descendants {
                let _ = kill(
                    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                    Signal::SIGKILL,
                );
            }
        }
    }
}

/// Every process below `root` in the process tree (children, their children, …), from
/// `/proc/<pid>/stat` (field 4 is the parent's PID; the command name before it is in
/// parentheses and may itself contain spaces or parentheses).
fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 1..];
            let ppid = after_name.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_grandchild_is_ended_with_its_parent() {
        // sh starts a background sleep (a grandchild of this test) and waits.
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut owned = Owned::new("sh", child);
        let mut line = String::new();
        let out = owned.child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).expect("pid");
        let grandchild: u32 = line.trim().parse().expect("pid of sleep");
        assert!(descendants(owned.pid()).contains(&grandchild));
        drop(owned);
        let gone = (0..50).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the grandchild {grandchild} outlived its owner");
    }
}
