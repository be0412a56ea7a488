//! Maps keyed by the B2BUA's own handles (call, transaction, media session and timer owner
//! ids), hashed with a multiply-rotate mix instead of SipHash.
//!
//! SipHash's key protects a table from keys an attacker picks to collide (Call-IDs, tags,
//! branches: those maps keep `std`'s keyed `RandomState`). These keys are counters and slab
//! slots the SBC hands out itself, so nobody outside can aim them at one bucket, and SipHash
//! was ~140 instructions per lookup, a dozen lookups per message (issue 16, CPU per call).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by an internal id (never by text from the wire).
pub(super) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The multiply-rotate hash of rustc's `FxHasher`: integer words folded in with one rotate,
/// xor and multiply each. Its top bits (which hashbrown's control bytes use) and low bits (its
/// bucket index) both spread sequential ids.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct IdHasher {
    hash: u64,
}

/// An odd constant with well-mixed bits (from the golden ratio, as in `FxHasher`).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by the integer ids, but `Hash` may hand any key's bytes here.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_ids_spread_over_buckets_and_control_bits() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (0u64..1024).map(|i| build.hash_one(i)).collect();
        // Low bits: 1024 ids fill most of 1024 buckets.
        let mut low: Vec<u64> = hashes.iter().map(|h| h & 1023).collect();
        low.sort_unstable();
        low.dedup();
        assert!(low.len() > 600, "{} distinct buckets", low.len());
        // Top 7 bits (hashbrown's tag): all 128 values appear.
        let mut top: Vec<u64> = hashes.iter().map(|h| h >> 57).collect();
        top.sort_unstable();
        top.dedup();
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i, i * 2);
        }
        assert!((0..10_000).all(|i| m.get(&i) == Some(&(i * 2))));
    }
}
