//! Process-level set-up that talks to the OS, the batched UDP system calls of the media
//! relay ([`udp_batch`]) and its AF_XDP sockets ([`xsk`]), the batched receive of the SIP
//! sockets ([`stamped_batch`]), and batched XDP map writes ([`bpf_batch`]).

pub mod bpf_batch;
pub mod stamped_batch;
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

/// The soft RLIMIT_NOFILE (`None` when it cannot be read or is unlimited).
pub fn descriptor_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|s| *s != nix::sys::resource::RLIM_INFINITY)
}

/// Grows the descriptor table to hold `wanted` descriptors (capped at the soft
/// RLIMIT_NOFILE), before any other thread exists. Returns the size reserved.
///
/// Why: the kernel doubles a process's descriptor table when a new descriptor does not fit,
/// and when threads share the table it first waits for an RCU grace period
/// (`expand_files` → `synchronize_rcu`, 5–15 ms here). The thread that opened the socket,
/// the signaling thread binding a call's relay ports, sleeps that long with every message
/// queued behind it: measured as the SBC's p99 INVITE forwarding delay (6–7 ms at 500
/// calls/s, one stall per doubling while the relay's sockets grow). Sized once while the
/// process has one thread, the table never needs to grow on the call path. The table costs
/// kernel memory only (8 bytes per slot), not RSS.
pub fn reserve_descriptors(wanted: u64) -> Result<u64, nix::Error> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = wanted.min(soft).min(WANTED_FDS);
    let Ok(highest) = i32::try_from(target.saturating_sub(1)) else {
        return Ok(0);
    };
    if highest < 3 {
        return Ok(0);
    }
    // F_DUPFD takes the lowest free descriptor at or above `highest`: the table grows to
    // hold it, and closing it leaves the table that size (tables never shrink).
    let null = std::fs::File::open("/dev/null").map_err(|e| {
        e.raw_os_error()
            .map_or(nix::Error::EIO, nix::Error::from_raw)
    })?;
    let fd = nix::fcntl::fcntl(&null, nix::fcntl::FcntlArg::F_DUPFD(highest))?;
    // SAFETY: `fd` was created just above by F_DUPFD and nothing else refers to it; the
    // `OwnedFd` closes it when dropped here.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(target)
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

    #[test]
    fn the_descriptor_table_is_reserved_up_to_the_limit() {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let reserved = super::reserve_descriptors(u64::MAX).expect("reserve");
        assert_eq!(reserved, soft.min(super::WANTED_FDS));
        assert_eq!(super::reserve_descriptors(2).expect("reserve"), 0);
    }
}
