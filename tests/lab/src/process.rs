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
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
