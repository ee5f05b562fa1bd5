//! Ed25519 signatures (RFC 8032) with strict verification.

use crate::{CryptoError, CryptoRng};
use core::fmt;
use ed25519_dalek::Signer as _;
use zeroize::ZeroizeOnDrop;

/// Length of an Ed25519 public key and of a secret seed.
pub const ED25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signing key (the 32-byte RFC 8032 seed). Zeroized on drop.
#[derive(Clone, ZeroizeOnDrop)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// Generates a fresh signing key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(ed25519_dalek::SigningKey::generate(rng))
    }

    /// Restores a signing key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; ED25519_KEY_LEN]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for serialization into an encrypted pickle.
    pub fn to_seed(&self) -> zeroize::Zeroizing<[u8; ED25519_KEY_LEN]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `message` (pure Ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key: a canonical encoding of a point that is not of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Parses and validates a public key. Rejects non-canonical encodings (y >= p), encodings
    /// that do not decompress, and keys of small order ("weak" keys, for which signatures
    /// prove nothing). A point therefore has exactly one accepted encoding, so two identity
    /// keys are equal exactly when their bytes are.
    pub fn from_bytes(bytes: &[u8; ED25519_KEY_LEN]) -> Result<Self, CryptoError> {
        if !is_canonical_y(bytes) {
            return Err(CryptoError::InvalidVerifyingKey);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| CryptoError::InvalidVerifyingKey)?;
        if key.is_weak() {
            return Err(CryptoError::InvalidVerifyingKey);
        }
        Ok(Self(key))
    }

    /// Parses from a slice of exactly 32 bytes; see [`VerifyingKey::from_bytes`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; ED25519_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "Ed25519 public key",
                expected: ED25519_KEY_LEN,
                actual: bytes.len(),
            })?;
        Self::from_bytes(arr)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; ED25519_KEY_LEN] {
        self.0.to_bytes()
    }

    /// The 32-byte encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; ED25519_KEY_LEN] {
        self.0.as_bytes()
    }

    /// Verifies with `verify_strict`: rejects non-canonical `S`, small-order `R` and
    /// malleable encodings, in addition to ordinary forgeries.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// Whether the little-endian y coordinate (sign bit masked) is below p = 2^255 - 19.
/// y >= p exactly when the top 31 bytes are all 0xff (0x7f in the last, sign bit masked)
/// and the first byte is at least 0xed.
fn is_canonical_y(bytes: &[u8; ED25519_KEY_LEN]) -> bool {
    let (first, rest) = bytes.split_at(1);
    let (middle, last) = rest.split_at(ED25519_KEY_LEN - 2);
    let high_all_ones = middle.iter().all(|&b| b == 0xff) && last.iter().all(|&b| b & 0x7f == 0x7f);
    !(high_all_ones && first.iter().all(|&b| b >= 0xed))
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VerifyingKey({})",
            crate::kdf::short_hex(self.0.as_bytes())
        )
    }
}

impl core::hash::Hash for VerifyingKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

/// A 64-byte Ed25519 signature (`R || S`), as received; validated when verified.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps the 64-byte encoding.
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses from a slice of exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; SIGNATURE_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "Ed25519 signature",
                expected: SIGNATURE_LEN,
                actual: bytes.len(),
            })?;
        Ok(Self(arr))
    }

    /// The 64-byte encoding.
    pub const fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }

    /// The 64-byte encoding, borrowed.
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", crate::kdf::short_hex(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let mut rng = rand::rng();
        let sk = SigningKey::generate(&mut rng);
        let vk = sk.verifying_key();
        let sig = sk.sign(b"msg");
        vk.verify(b"msg", &sig).unwrap();
        assert_eq!(vk.verify(b"msh", &sig), Err(CryptoError::BadSignature));
        let mut bad = sig.to_bytes();
        bad[10] ^= 1;
        assert_eq!(
            vk.verify(b"msg", &Signature::from_bytes(bad)),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn weak_keys_are_rejected() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerifyingKey::from_bytes(&identity),
            Err(CryptoError::InvalidVerifyingKey)
        );
    }

    #[test]
    fn non_canonical_encodings_are_rejected() {
        // y = p + k for small k: every such encoding is non-canonical, whether or not the
        // reduced y is on the curve; dalek alone would accept those that decompress.
        let mut accepted_by_dalek = 0;
        for k in 0u8..19 {
            let mut enc = [0xffu8; 32];
            enc[0] = 0xed + k;
            enc[31] = 0x7f;
            assert_eq!(
                VerifyingKey::from_bytes(&enc),
                Err(CryptoError::InvalidVerifyingKey)
            );
            if ed25519_dalek::VerifyingKey::from_bytes(&enc).is_ok_and(|k| !k.is_weak()) {
                accepted_by_dalek += 1;
            }
        }
        assert!(
            accepted_by_dalek > 0,
            "the check must matter for some encoding"
        );
        // The largest canonical y (p - 1) is not rejected by the canonical check.
        let mut enc = [0xffu8; 32];
        enc[0] = 0xec;
        enc[31] = 0x7f;
        assert!(is_canonical_y(&enc));
    }

    #[test]
    fn debug_prints_no_secret() {
        let sk = SigningKey::from_seed(&[0x42; 32]);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains("4242") && !dbg.contains("66, 66"), "{dbg}");
    }
}
