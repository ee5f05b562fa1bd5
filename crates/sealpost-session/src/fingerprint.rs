//! Safety numbers: a 60-digit fingerprint of two devices' identities, the same on both
//! sides, and a QR payload to compare them by scanning (spec/session.md, "Safety numbers").

use crate::IdentityKey;
use sealpost_wire::AccountId;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Version of the fingerprint derivation, hashed in first (2 bytes, big-endian).
pub const FINGERPRINT_VERSION: u16 = 0;
/// Version of the fingerprint over an account key (spec/session.md 10.6,
/// spec/devices.md 8.4).
pub const ACCOUNT_KEY_FINGERPRINT_VERSION: u16 = 1;
/// SHA-512 iterations per half.
pub const FINGERPRINT_ITERATIONS: u32 = 5200;
/// Version byte of the QR payload.
pub const QR_VERSION: u8 = 1;
/// Length of the QR payload: version + two 32-byte halves.
pub const QR_PAYLOAD_LEN: usize = 65;

/// One side's 32-byte fingerprint:
/// `H_0 = SHA-512(version(2) || identity(64) || len(account)(1) || account)`,
/// `H_i = SHA-512(H_{i-1} || identity(64))` for 5200 iterations, truncated to 32 bytes.
pub fn fingerprint_half(identity: &IdentityKey, account: &AccountId) -> [u8; 32] {
    half(FINGERPRINT_VERSION, &identity.to_bytes(), account)
}

/// One side's 32-byte fingerprint over its account key (fingerprint version 1,
/// spec/session.md 10.6): as [`fingerprint_half`] with the version `0x0001` and the
/// 32-byte Ed25519 account key in place of the identity.
pub fn account_key_fingerprint_half(account_key: &[u8; 32], account: &AccountId) -> [u8; 32] {
    half(ACCOUNT_KEY_FINGERPRINT_VERSION, account_key, account)
}

fn half(version: u16, id: &[u8], account: &AccountId) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update(version.to_be_bytes());
    h.update(id);
    let acct = account.as_str().as_bytes();
    h.update([acct.len() as u8]);
    h.update(acct);
    let mut digest = h.finalize();
    for _ in 0..FINGERPRINT_ITERATIONS {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(id);
        digest = h.finalize();
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.get(..32).unwrap_or(&[0u8; 32]));
    out
}

/// 30 decimal digits from a half: six big-endian 5-byte chunks, each modulo 100000,
/// zero-padded to five digits.
pub fn digits(half: &[u8; 32]) -> String {
    let mut s = String::with_capacity(30);
    for chunk in half.chunks_exact(5).take(6) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        s.push_str(&format!("{:05}", v % 100_000));
    }
    s
}

/// The safety number of two devices, computed by either side with the same result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber {
    local: [u8; 32],
    remote: [u8; 32],
}

/// Why a scanned QR payload was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// Not a payload of a version we understand, or the wrong length.
    #[error("unrecognised safety number payload ({len} bytes, version {version})")]
    Malformed {
        /// Payload length.
        len: usize,
        /// First byte, if any.
        version: u8,
    },
    /// The payload is well formed but belongs to other identities: do not trust this session.
    #[error("safety numbers do not match")]
    Mismatch,
}

impl SafetyNumber {
    /// Computes the safety number between us and a remote device.
    pub fn new(
        local_identity: &IdentityKey,
        local_account: &AccountId,
        remote_identity: &IdentityKey,
        remote_account: &AccountId,
    ) -> Self {
        Self {
            local: fingerprint_half(local_identity, local_account),
            remote: fingerprint_half(remote_identity, remote_account),
        }
    }

    /// The safety number of two accounts that have device lists, over their account keys
    /// (fingerprint version 1): it does not change when devices are linked or removed.
    pub fn for_account_keys(
        local_account_key: &[u8; 32],
        local_account: &AccountId,
        remote_account_key: &[u8; 32],
        remote_account: &AccountId,
    ) -> Self {
        Self {
            local: account_key_fingerprint_half(local_account_key, local_account),
            remote: account_key_fingerprint_half(remote_account_key, remote_account),
        }
    }

    /// The 60 digits: the two 30-digit halves, the numerically smaller first.
    pub fn digits(&self) -> String {
        let (a, b) = (digits(&self.local), digits(&self.remote));
        if a <= b { a + &b } else { b + &a }
    }

    /// The digits in 12 groups of five, as apps display them.
    pub fn display_groups(&self) -> Vec<String> {
        let d = self.digits();
        d.as_bytes()
            .chunks(5)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    /// The QR payload this device shows: `version(1) || local(32) || remote(32)`.
    pub fn qr_payload(&self) -> [u8; QR_PAYLOAD_LEN] {
        let mut out = [0u8; QR_PAYLOAD_LEN];
        let (version, rest) = out.split_at_mut(1);
        let (local, remote) = rest.split_at_mut(32);
        version.copy_from_slice(&[QR_VERSION]);
        local.copy_from_slice(&self.local);
        remote.copy_from_slice(&self.remote);
        out
    }

    /// Verifies a payload scanned from the other device: its "local" must be our remote
    /// and its "remote" our local.
    pub fn verify_scanned(&self, payload: &[u8]) -> Result<(), FingerprintError> {
        let malformed = FingerprintError::Malformed {
            len: payload.len(),
            version: payload.first().copied().unwrap_or(0),
        };
        if payload.len() != QR_PAYLOAD_LEN || payload.first() != Some(&QR_VERSION) {
            return Err(malformed);
        }
        let theirs_local = payload.get(1..33).ok_or(malformed)?;
        let theirs_remote = payload.get(33..).ok_or(malformed)?;
        let ok = theirs_local.ct_eq(&self.remote) & theirs_remote.ct_eq(&self.local);
        if bool::from(ok) {
            Ok(())
        } else {
            Err(FingerprintError::Mismatch)
        }
    }
}
