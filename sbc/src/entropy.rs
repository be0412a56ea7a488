//! Randomness for every identifier and key the SBC makes (tags, Call-IDs, branches, nonce
//! salts, the nonce HMAC key, SRV and route weights).
//!
//! The core's generator is ChaCha20 with a key the runtime supplies (`sbc_proto::b2bua::Rng`,
//! see `b2bua/ids.rs`). Here one master generator is keyed with 32 bytes from the OS
//! (`getrandom(2)`) when the daemon starts — the daemon refuses to start when the OS has no
//! secure randomness; there is no fallback to the time or the PID — and every task's
//! generator is forked from it, so no task's tokens tell anything about another's.

use parking_lot::Mutex;
use sbc_proto::b2bua::Rng;

static MASTER: Mutex<Option<Rng>> = Mutex::new(None);

/// The OS could not supply secure random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the OS has no secure random bytes to key the identifier generator: {0}")]
pub struct EntropyError(getrandom::Error);

/// Keys the master generator from the OS. Called once at start; an error stops the daemon.
pub fn init() -> Result<(), EntropyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(EntropyError)?;
    *MASTER.lock() = Some(Rng::from_seed(seed));
    Ok(())
}

/// A new generator for one task, forked from the master (keyed from the OS on first use when
/// [`init`] was not called, e.g. in unit tests of this crate).
///
/// # Panics
///
/// Only when [`init`] was never called and the OS has no secure random bytes: making
/// guessable identifiers instead is not an option.
pub fn rng() -> Rng {
    let mut master = MASTER.lock();
    let master = match master.as_mut() {
        Some(m) => m,
        None => {
            let mut seed = [0u8; 32];
            // No secure randomness means no safe identifiers; `init` reports this at start.
            getrandom::fill(&mut seed).expect("OS random bytes (getrandom)");
            master.insert(Rng::from_seed(seed))
        }
    };
    master.fork()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forked_generators_differ_and_are_not_the_all_zero_key() {
        init().expect("OS randomness in the test environment");
        let (mut a, mut b) = (rng(), rng());
        let (x, y) = (a.token(), b.token());
        assert_ne!(x, y);
        assert_ne!(x, Rng::from_seed([0; 32]).token());
    }
}
