//! Process-level set-up that talks to the OS, and the batched UDP system calls of the media
//! relay ([`udp_batch`]) and its AF_XDP sockets ([`xsk`]).

pub mod udp_batch;
pub mod xsk;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors to aim for: every call in userspace relay mode holds relay sockets, and SIP
/// over TCP/TLS holds one per connection, so the common default (1,024) caps an SBC at a few
/// hundred calls.
const WANTED_FDS: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE: the soft limit to the hard one, and both further (up to
/// `fs.nr_open`) when the process may (CAP_SYS_RESOURCE). Returns the resulting soft limit.
pub fn raise_fd_limit() -> Result<u64, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let target = WANTED_FDS.min(nr_open);
    if target > hard && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
        return Ok(target);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fd_limit_never_goes_down() {
        let (before, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .expect("getrlimit");
        let after = super::raise_fd_limit().expect("raise");
        assert!(after >= before);
    }
}
