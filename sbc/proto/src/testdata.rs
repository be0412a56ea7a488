//! Test inputs shared by the unit tests of the scans that must agree with the parser: RFC 4475's
//! torture messages and cut or altered copies of them.

use std::path::PathBuf;

/// Every RFC 4475 message file (`*.dat`) of `testdata/rfc4475` and its `valid`/`invalid`
/// folders. Panics when fewer than 40 are found: a test that finds none must not pass.
pub(crate) fn rfc4475_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/rfc4475");
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in [dir.join("valid"), dir.join("invalid"), dir.clone()] {
        if let Ok(entries) = std::fs::read_dir(&sub) {
            files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "dat")),
            );
        }
    }
    assert!(files.len() >= 40, "the torture messages are there");
    files.sort();
    files
}

/// Copies of `raw` cut short every `step` bytes.
pub(crate) fn cuts(raw: &[u8], step: usize) -> impl Iterator<Item = &[u8]> {
    (0..raw.len())
        .step_by(step.max(1))
        .map(move |cut| raw.get(..cut).unwrap_or_default())
}

/// `raw` itself, its cuts every `cut_step` bytes and `altered` altered copies: what an
/// agreement test holds a scan to the parser on.
pub(crate) fn variants(
    raw: &[u8],
    cut_step: usize,
    alter: &mut Alter,
    altered: usize,
) -> Vec<Vec<u8>> {
    let mut copies = vec![raw.to_vec()];
    copies.extend(cuts(raw, cut_step).map(<[u8]>::to_vec));
    copies.extend((0..altered).map(|_| alter.copy(raw)));
    copies
}

/// Altered copies: one byte at a time replaced by one of eight bytes the scans treat specially,
/// both chosen by a xorshift generator, so a failure is reproduced by the same seed.
pub(crate) struct Alter {
    seed: u32,
    alphabet: [u8; 8],
}

impl Alter {
    /// A generator starting at `seed` (not 0) that writes bytes of `alphabet`.
    pub(crate) fn new(seed: u32, alphabet: [u8; 8]) -> Self {
        Self {
            seed: seed.max(1),
            alphabet,
        }
    }

    /// `raw` with one byte replaced.
    pub(crate) fn copy(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut copy = raw.to_vec();
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        let at = usize::try_from(self.seed).unwrap_or(0) % copy.len().max(1);
        if let Some(b) = copy.get_mut(at) {
            *b = self.alphabet[(self.seed >> 24) as usize % 8];
        }
        copy
    }
}
