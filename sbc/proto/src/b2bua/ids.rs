//! Tags, branches, Call-IDs, nonce salts and keys from a cryptographically secure generator.
//!
//! Every identifier the SBC puts on the wire is a capability: whoever knows a dialog's Call-ID
//! and tags can end or redirect the call, and whoever knows the next branch can answer a
//! request before its real peer does. So they must not be predictable from the ones already
//! seen, and `Rng` is ChaCha20 (RFC 8439 as a stream generator; 256-bit key), never an
//! invertible mixer such as splitmix64.
//!
//! The core stays sans-I/O and deterministic: it never asks the OS for entropy itself. The
//! runtime seeds one generator with 32 bytes from the OS (`getrandom`; refusing to start when
//! the OS has none, with no fallback to time or PID) and derives every other one from it with
//! [`Rng::fork`]; tests seed with [`Rng::from_test_seed`] and get the same tokens every run.

use std::fmt::Write as _;

use chacha20::{
    ChaCha20Rng,
    rand_core::{Rng as _, SeedableRng as _},
};

/// A cryptographically secure generator (ChaCha20) for tokens, keys and random choices.
pub struct Rng(ChaCha20Rng);

impl std::fmt::Debug for Rng {
    // The state is the key to every future token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rng(ChaCha20, state hidden)")
    }
}

impl Rng {
    /// A generator keyed with `seed`, which must be 32 bytes from the OS's secure source
    /// (or from another `Rng`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// A reproducible generator for tests and simulations: the key is spread from `seed`
    /// alone, so anyone knowing the 64-bit seed knows every token. Never for the wire.
    pub fn from_test_seed(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }

    /// An independent generator keyed from this one's output (per-task generators in the
    /// runtime, so no task's tokens say anything about another's).
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fills `out` with random bytes (keys).
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    /// 16 hex digits (64 random bits): tags and the random part of Call-IDs.
    pub fn token(&mut self) -> String {
        let mut s = String::with_capacity(16);
        let _ = write!(s, "{:016x}", self.next_u64());
        s
    }

    /// An RFC 3261 branch (magic cookie + token).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.token())
    }
}
