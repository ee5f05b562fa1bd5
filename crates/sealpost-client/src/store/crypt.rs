//! Encryption at rest (spec/client-store.md sections 2 and 3): the store key, its
//! derivation from a passphrase with Argon2id, the per-store sub-keys, sealed records and
//! blind index tags.

use crate::error::{KdfError, KdfErrorKind, StoreError};
use sealpost_crypto::aead::{self, AEAD_NONCE_LEN, AEAD_TAG_LEN};
use sealpost_crypto::kdf::{hkdf_sha256_array, hmac_sha256};
use sealpost_crypto::{Zeroize, ZeroizeOnDrop, Zeroizing};
use sealpost_session::PickleKey;
use std::fmt;

/// Version byte of a sealed record.
pub const RECORD_VERSION: u8 = 1;
/// Prefix of every record's associated data.
pub const RECORD_AD_LABEL: &[u8] = b"Sealpost_ClientStore_v1";
/// HKDF info of the record key.
pub const RECORD_KEY_INFO: &[u8] = b"Sealpost_ClientStore_Record_v1";
/// HKDF info of the index key.
pub const INDEX_KEY_INFO: &[u8] = b"Sealpost_ClientStore_Index_v1";
/// HKDF info of the pickle key.
pub const PICKLE_KEY_INFO: &[u8] = b"Sealpost_ClientStore_Pickle_v1";
/// Plaintext of the key-check record.
pub const KEY_CHECK_PLAINTEXT: &[u8] = b"Sealpost_ClientStore_KeyCheck_v1";
/// Length of the random per-store salt.
pub const DB_SALT_LEN: usize = 32;
/// Length of the Argon2id salt.
pub const ARGON2_SALT_LEN: usize = 16;
/// Overhead of a sealed record: version, nonce and tag.
pub const RECORD_OVERHEAD: usize = 1 + AEAD_NONCE_LEN + AEAD_TAG_LEN;

/// argon2's error as a `std::error::Error` (the crate implements it only with its `std`
/// feature, which the workspace does not enable).
#[derive(Debug)]
struct Argon2Failure(argon2::Error);

impl fmt::Display for Argon2Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Argon2Failure {}

/// The 32-byte key a store is encrypted under: from the platform keystore, or derived from
/// a passphrase with [`StoreKey::from_passphrase`]. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// Wraps 32 bytes of key material.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key (to be kept in the platform keystore).
    pub fn generate() -> Self {
        let k = sealpost_crypto::random_array::<32, _>(&mut rand::rng());
        Self(*k)
    }

    /// Argon2id (version 0x13) of `passphrase` with `salt`, 32 bytes of output.
    pub fn from_passphrase(
        passphrase: &[u8],
        salt: &[u8; ARGON2_SALT_LEN],
        params: &StoreArgon2Params,
    ) -> Result<Self, StoreError> {
        let p = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|e| {
            StoreError::Kdf(KdfError::with_source(
                KdfErrorKind::Argon2Params,
                Argon2Failure(e),
            ))
        })?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut out = [0u8; 32];
        a.hash_password_into(passphrase, salt, &mut out)
            .map_err(|e| {
                StoreError::Kdf(KdfError::with_source(
                    KdfErrorKind::Argon2Params,
                    Argon2Failure(e),
                ))
            })?;
        let key = Self(out);
        out.zeroize();
        Ok(key)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

/// Argon2id cost parameters for passphrase-derived store keys (spec/client-store.md 2.2).
///
/// The default is 64 MiB of memory, 3 passes, 1 lane (RFC 9106 section 4's second
/// recommended option with a single lane, which suits phones): about 0.1–0.5 s on current
/// hardware. The parameters are stored with the store, so they can be raised for new stores
/// without breaking old ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreArgon2Params {
    /// Memory in KiB (`m`), at least `8 * parallelism`.
    pub memory_kib: u32,
    /// Number of passes (`t`), at least 1.
    pub iterations: u32,
    /// Degree of parallelism (`p`), 1..=2^24-1.
    pub parallelism: u32,
}

impl Default for StoreArgon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// Kinds of blind index tags (spec/client-store.md 3.3).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(crate) enum TagKind {
    Device = 1,
    Account = 2,
    Processed = 3,
    Session = 4,
}

/// The sub-keys of one store, derived from the store key and the store's random salt.
pub(crate) struct StoreKeys {
    record: Zeroizing<[u8; 32]>,
    index: Zeroizing<[u8; 32]>,
    pickle: PickleKey,
}

impl StoreKeys {
    pub(crate) fn derive(key: &StoreKey, db_salt: &[u8; DB_SALT_LEN]) -> Result<Self, StoreError> {
        let kdf = |info: &[u8]| {
            hkdf_sha256_array::<32>(db_salt, key.as_bytes(), info)
                .map_err(|e| StoreError::Kdf(KdfError::with_source(KdfErrorKind::Hkdf, e)))
        };
        let record = kdf(RECORD_KEY_INFO)?;
        let index = kdf(INDEX_KEY_INFO)?;
        let pickle = PickleKey::new(*kdf(PICKLE_KEY_INFO)?);
        Ok(Self {
            record,
            index,
            pickle,
        })
    }

    pub(crate) fn pickle_key(&self) -> &PickleKey {
        &self.pickle
    }

    /// `AD = "Sealpost_ClientStore_v1" || u8(len(table)) || table || row`, where `row` is
    /// the encoding of the row's position (spec/client-store.md 3.2).
    fn ad(table: &str, row: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(RECORD_AD_LABEL.len() + 1 + table.len() + row.len());
        ad.extend_from_slice(RECORD_AD_LABEL);
        ad.push(u8::try_from(table.len()).unwrap_or(u8::MAX));
        ad.extend_from_slice(table.as_bytes());
        ad.extend_from_slice(row);
        ad
    }

    /// Seals a record: `0x01 || nonce(12) || ChaCha20-Poly1305(record_key, nonce, AD, plaintext)`.
    pub(crate) fn seal(&self, table: &str, row: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = sealpost_crypto::random_array::<AEAD_NONCE_LEN, _>(&mut rand::rng());
        let mut out = Vec::with_capacity(plaintext.len() + RECORD_OVERHEAD);
        out.push(RECORD_VERSION);
        out.extend_from_slice(nonce.as_slice());
        aead::seal_into(
            &self.record,
            &nonce,
            &Self::ad(table, row),
            plaintext,
            &mut out,
        );
        out
    }

    /// Opens a sealed record written by [`StoreKeys::seal`] for the same table and row.
    pub(crate) fn open(
        &self,
        table: &'static str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let bad = StoreError::Authentication { table };
        let (version, rest) = sealed.split_first().ok_or(bad.clone())?;
        if *version != RECORD_VERSION || rest.len() < AEAD_NONCE_LEN + AEAD_TAG_LEN {
            return Err(bad);
        }
        let (nonce, body) = rest.split_at(AEAD_NONCE_LEN);
        let nonce: [u8; AEAD_NONCE_LEN] = nonce.try_into().map_err(|_| bad.clone())?;
        aead::open(&self.record, &nonce, &Self::ad(table, row), body)
            .map(Zeroizing::new)
            .map_err(|_| bad)
    }

    /// A blind index tag: `HMAC-SHA256(index_key, kind || data)`.
    pub(crate) fn tag(&self, kind: TagKind, data: &[u8]) -> [u8; 32] {
        let mut msg = Zeroizing::new(Vec::with_capacity(1 + data.len()));
        msg.push(kind as u8);
        msg.extend_from_slice(data);
        hmac_sha256(self.index.as_slice(), &msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_bind_table_and_row() {
        let keys = StoreKeys::derive(&StoreKey::from_bytes([7; 32]), &[1; 32]).unwrap();
        let sealed = keys.seal("sessions", b"row-1", b"secret");
        assert_eq!(sealed.len(), 6 + RECORD_OVERHEAD);
        assert_eq!(
            &keys.open("sessions", b"row-1", &sealed).unwrap()[..],
            b"secret"
        );
        assert!(keys.open("sessions", b"row-2", &sealed).is_err());
        assert!(keys.open("contacts", b"row-1", &sealed).is_err());
        let other = StoreKeys::derive(&StoreKey::from_bytes([7; 32]), &[2; 32]).unwrap();
        assert!(other.open("sessions", b"row-1", &sealed).is_err());
        assert!(keys.open("sessions", b"row-1", &sealed[..10]).is_err());
        assert_ne!(
            keys.tag(TagKind::Device, b"x"),
            keys.tag(TagKind::Account, b"x")
        );
        assert_eq!(
            format!("{:?}", StoreKey::from_bytes([9; 32])),
            "StoreKey(..)"
        );
    }

    #[test]
    fn passphrase_derivation_is_deterministic() {
        let params = StoreArgon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = StoreKey::from_passphrase(b"pw", &[1; 16], &params).unwrap();
        let b = StoreKey::from_passphrase(b"pw", &[1; 16], &params).unwrap();
        let c = StoreKey::from_passphrase(b"pw", &[2; 16], &params).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
        let bad = StoreArgon2Params {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        };
        assert!(StoreKey::from_passphrase(b"pw", &[1; 16], &bad).is_err());
    }
}
