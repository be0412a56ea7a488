//! Tags, branches and Call-IDs from a seeded generator: unpredictable enough on the wire (the
//! runtime seeds it from the OS), reproducible in tests.

use std::fmt::Write as _;

/// splitmix64; the runtime seeds it with OS randomness, tests with a constant.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 16 hex digits.
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
