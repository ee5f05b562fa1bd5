//! Argon2id stretching of a normalised PIN (spec/pin.md "Stretching").
//!
//! `stretched = Argon2id(P = normalised PIN, S = salt, m, t, p, T = 32)` with
//! `salt = SHA-256("Sealpost_PIN_Salt_v1" || u16be(len(account_id)) || account_id || user_salt)`.
//!
//! The salt binds the account (two accounts with the same PIN and the same random salt still
//! stretch differently, so no precomputation spans accounts), the random 16-byte per-user salt
//! (re-registering the same account with a new PIN gives an unrelated value, and the account id
//! alone is guessable), and a version label (a future parameter or construction change cannot
//! collide with v1). Hashing makes the salt a fixed 32 bytes whatever the account id length.

use crate::{PinError, normalize::NormalizedPin};
use argon2::{Algorithm, Argon2, Version};
use core::fmt;
use sealpost_crypto::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Version label prefixed to the salt hash.
pub const SALT_LABEL: &[u8] = b"Sealpost_PIN_Salt_v1";
/// Length of the random per-user salt.
pub const USER_SALT_LEN: usize = 16;
/// Length of the stretched PIN.
pub const STRETCHED_LEN: usize = 32;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB (`m`).
    pub memory_kib: u32,
    /// Number of passes (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub lanes: u32,
}

impl Argon2Params {
    /// Production parameters: 16 MiB, 32 passes, 1 lane (Signal's reference point for PINs,
    /// affordable on low-end phones; see spec/pin.md for the reasoning).
    pub const PRODUCTION: Self = Self {
        memory_kib: 16 * 1024,
        iterations: 32,
        lanes: 1,
    };

    /// Small parameters for tests and test vectors only: 256 KiB, 2 passes, 1 lane.
    pub const fn testing() -> Self {
        Self {
            memory_kib: 256,
            iterations: 2,
            lanes: 1,
        }
    }
}

/// Largest Argon2id memory cost (KiB) accepted in a stored record: 256 MiB.
pub const MAX_MEMORY_KIB: u32 = 262_144;
/// Largest number of Argon2id passes accepted in a stored record.
pub const MAX_ITERATIONS: u32 = 64;
/// Largest number of Argon2id lanes accepted in a stored record.
pub const MAX_LANES: u32 = 4;

impl Argon2Params {
    /// Checks the bounds a vault record or local verifier accepts (spec/pin.md 6.3):
    /// `8·p ≤ m ≤ 262144` KiB, `1 ≤ t ≤ 64`, `1 ≤ p ≤ 4`. These keep a hostile record from
    /// making a client allocate or compute without limit; within them the Argon2 crate
    /// accepts every combination.
    pub fn check_accepted(&self) -> Result<(), PinError> {
        let ok = (1..=MAX_LANES).contains(&self.lanes)
            && (1..=MAX_ITERATIONS).contains(&self.iterations)
            && self.memory_kib <= MAX_MEMORY_KIB
            && self.memory_kib >= 8 * self.lanes;
        if ok {
            Ok(())
        } else {
            Err(PinError::Argon2ParamsOutOfRange {
                memory_kib: self.memory_kib,
                iterations: self.iterations,
                lanes: self.lanes,
            })
        }
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::PRODUCTION
    }
}

/// The random per-user salt, stored with the account (not secret, but not guessable).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserSalt([u8; USER_SALT_LEN]);

impl UserSalt {
    /// Draws a fresh salt.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; USER_SALT_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; USER_SALT_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; USER_SALT_LEN] {
        &self.0
    }
}

impl fmt::Debug for UserSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserSalt(..)")
    }
}

/// The Argon2id output: the OPRF input. Zeroized on drop; `Debug` prints nothing.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StretchedPin([u8; STRETCHED_LEN]);

impl StretchedPin {
    /// The 32 bytes (secret).
    pub fn as_bytes(&self) -> &[u8; STRETCHED_LEN] {
        &self.0
    }

    /// Wraps 32 bytes, for test vectors and callers that stretch elsewhere.
    pub fn from_bytes(bytes: [u8; STRETCHED_LEN]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for StretchedPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StretchedPin(redacted)")
    }
}

/// Computes the 32-byte Argon2id salt from the account id and the per-user salt.
///
/// Account ids longer than 65535 bytes are rejected.
pub fn derive_salt(account_id: &[u8], user_salt: &UserSalt) -> Result<[u8; 32], PinError> {
    let len = u16::try_from(account_id.len()).map_err(|_| PinError::InvalidLength {
        what: "account id (at most 65535)",
        expected: usize::from(u16::MAX),
        actual: account_id.len(),
    })?;
    let mut h = Sha256::new();
    h.update(SALT_LABEL);
    h.update(len.to_be_bytes());
    h.update(account_id);
    h.update(user_salt.as_bytes());
    Ok(h.finalize().into())
}

/// Stretches a normalised PIN with Argon2id (version 0x13).
pub fn stretch(
    pin: &NormalizedPin,
    account_id: &[u8],
    user_salt: &UserSalt,
    params: &Argon2Params,
) -> Result<StretchedPin, PinError> {
    let salt = derive_salt(account_id, user_salt)?;
    let out = argon2id(pin.as_bytes(), &salt, params)?;
    Ok(StretchedPin(*out))
}

/// Argon2id (version 0x13) with a 32-byte output: the primitive behind [`stretch`] and the
/// local reminder verifier.
pub(crate) fn argon2id(
    password: &[u8],
    salt: &[u8],
    params: &Argon2Params,
) -> Result<Zeroizing<[u8; STRETCHED_LEN]>, PinError> {
    let p = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.lanes,
        Some(STRETCHED_LEN),
    )
    .map_err(|_| PinError::InvalidArgon2Params)?;
    let mut out = Zeroizing::new([0u8; STRETCHED_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, out.as_mut_slice())
        .map_err(|_| PinError::InvalidArgon2Params)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;

    const SALT: UserSalt = UserSalt::from_bytes([7u8; 16]);

    #[test]
    fn deterministic_and_input_sensitive() {
        let p = Argon2Params::testing();
        let a = stretch(&normalize("123456").unwrap(), b"acct", &SALT, &p).unwrap();
        let b = stretch(&normalize("\u{FF11}23456 ").unwrap(), b"acct", &SALT, &p).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        let c = stretch(&normalize("123457").unwrap(), b"acct", &SALT, &p).unwrap();
        assert_ne!(a.as_bytes(), c.as_bytes());
        let d = stretch(&normalize("123456").unwrap(), b"acct2", &SALT, &p).unwrap();
        assert_ne!(a.as_bytes(), d.as_bytes());
        let e = stretch(
            &normalize("123456").unwrap(),
            b"acct",
            &UserSalt::from_bytes([8u8; 16]),
            &p,
        )
        .unwrap();
        assert_ne!(a.as_bytes(), e.as_bytes());
    }

    #[test]
    fn salt_is_length_prefixed() {
        // Without the length prefix these two would collide.
        let s1 = derive_salt(b"ab", &SALT).unwrap();
        let s2 = derive_salt(
            b"a",
            &UserSalt::from_bytes(
                *b"b\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07",
            ),
        )
        .unwrap();
        assert_ne!(s1, s2);
        assert!(derive_salt(&vec![0u8; 65536], &SALT).is_err());
    }

    #[test]
    fn bad_params_rejected() {
        let p = Argon2Params {
            memory_kib: 1,
            iterations: 1,
            lanes: 1,
        };
        assert_eq!(
            stretch(&normalize("123456").unwrap(), b"a", &SALT, &p).unwrap_err(),
            PinError::InvalidArgon2Params
        );
        assert_eq!(Argon2Params::default(), Argon2Params::PRODUCTION);
    }

    #[test]
    fn debug_redacts() {
        let s = StretchedPin::from_bytes([0xAB; 32]);
        assert!(!format!("{s:?}").to_lowercase().contains("abab"));
    }
}
