//! Turning fuzz input into choices and randomness.

use rand::SeedableRng;
use rand::rngs::StdRng;
use sealpost_crypto::kdf::hkdf_sha256;

/// A deterministic CSPRNG (ChaCha12) whose seed is HKDF-SHA256 of `label` and `data`: the
/// same input always gives the same keys, so every crash reproduces.
pub fn rng_from(label: &[u8], data: &[u8]) -> StdRng {
    let mut seed = [0u8; 32];
    hkdf_sha256(b"sealpost-fuzz", data, label, &mut seed).expect("32 bytes is within HKDF's limit");
    StdRng::from_seed(seed)
}

/// Reads choices from the input; once it is exhausted every read returns zero, so any
/// input is a valid program.
#[derive(Debug, Clone)]
pub struct ByteSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteSource<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A value in `0..n` (`n > 0`), from one byte when `n <= 256`, else from two.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        if n <= 256 {
            usize::from(self.u8()) % n
        } else {
            usize::from(self.u16()) % n
        }
    }

    /// Up to `max` bytes, as many as are left.
    pub fn take(&mut self, max: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(max).min(self.data.len());
        self.pos = self.pos.saturating_add(max);
        &self.data[start..end]
    }
}
