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
//!
//! With several signaling shards each shard's generator carries its shard's label
//! ([`Rng::for_shard`]): every token it makes starts with `s<k>-` and then has the same 64
//! random bits as without one, so a message can be routed back to its shard
//! (`crate::shard`) without making any identifier easier to guess.

use chacha20::{
    ChaCha20Rng,
    rand_core::{Rng as _, SeedableRng as _},
};

use crate::shard::ShardId;

/// Lower-case hex digits (`{:x}`).
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A cryptographically secure generator (ChaCha20) for tokens, keys and random choices.
pub struct Rng {
    inner: ChaCha20Rng,
    /// The shard whose label starts every token (None: one shard, no label).
    shard: Option<ShardId>,
}

impl std::fmt::Debug for Rng {
    // The state is the key to every future token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rng(ChaCha20, state hidden, shard {:?})", self.shard)
    }
}

impl Rng {
    /// A generator keyed with `seed`, which must be 32 bytes from the OS's secure source
    /// (or from another `Rng`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            inner: ChaCha20Rng::from_seed(seed),
            shard: None,
        }
    }

    /// A reproducible generator for tests and simulations: the key is spread from `seed`
    /// alone, so anyone knowing the 64-bit seed knows every token. Never for the wire.
    pub fn from_test_seed(seed: u64) -> Self {
        Self {
            inner: ChaCha20Rng::seed_from_u64(seed),
            shard: None,
        }
    }

    /// An independent generator keyed from this one's output (per-task generators in the
    /// runtime, so no task's tokens say anything about another's). It keeps this one's shard
    /// label.
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.fill_bytes(&mut seed);
        Self {
            shard: self.shard,
            ..Self::from_seed(seed)
        }
    }

    /// An independent generator (as [`Rng::fork`]) whose tokens carry `shard`'s label.
    pub fn for_shard(&mut self, shard: ShardId) -> Self {
        Self {
            shard: Some(shard),
            ..self.fork()
        }
    }

    /// The shard whose label this generator's tokens carry.
    pub fn shard(&self) -> Option<ShardId> {
        self.shard
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Fills `out` with random bytes (keys).
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        self.inner.fill_bytes(out);
    }

    /// 16 hex digits (64 random bits), after the shard label if there is one: tags and the
    /// random part of Call-IDs.
    pub fn token(&mut self) -> String {
        let mut s = String::with_capacity(24);
        self.write_token(&mut s);
        s
    }

    /// An RFC 3261 branch (magic cookie + token).
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(31);
        s.push_str("z9hG4bK");
        self.write_token(&mut s);
        s
    }

    fn write_token(&mut self, out: &mut String) {
        if let Some(shard) = self.shard {
            shard.write_label(out);
        }
        // `{:016x}` by hand: core::fmt's padding path was ~300 instructions per token, and
        // every call makes several (tags, branches, Call-IDs).
        let n = self.next_u64();
        for i in (0..16).rev() {
            out.push(char::from(HEX[((n >> (i * 4)) & 0xf) as usize]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_the_64_bits_in_zero_padded_lower_hex() {
        let (mut a, mut b) = (Rng::from_test_seed(7), Rng::from_test_seed(7));
        for _ in 0..100 {
            assert_eq!(a.token(), format!("{:016x}", b.next_u64()));
            assert_eq!(a.branch(), format!("z9hG4bK{:016x}", b.next_u64()));
        }
    }
}
