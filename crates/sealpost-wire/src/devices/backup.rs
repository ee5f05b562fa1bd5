//! The account-key backup (`spec/devices.md` section 2.1): the account key's seed sealed
//! under a key only the PIN recovers, stored by the relay for the account's key holder.
//! Structure only: `sealpost-devices` seals and opens it.

use super::{DEVICES_VERSION, TYPE_ACCOUNT_KEY_BACKUP};
use crate::{DecodeError, KEY_LEN, Reader, Writer};

/// Length of the AEAD nonce in an [`AccountKeyBackup`].
pub const BACKUP_NONCE_LEN: usize = 12;
/// Length of the sealed seed (32 bytes and a 16-byte tag) in an [`AccountKeyBackup`].
pub const BACKUP_SEALED_LEN: usize = 32 + 16;
/// Encoded length of an [`AccountKeyBackup`] (94 bytes).
pub const ACCOUNT_KEY_BACKUP_LEN: usize = 2 + KEY_LEN + BACKUP_NONCE_LEN + BACKUP_SEALED_LEN;

/// `version: u8 || type: u8 || account_key: 32 || nonce: 12 || sealed: 48` (94 bytes).
/// The account key is public (the relay compares it with the stored list's); the sealed
/// seed opens only with the backup key the PIN recovers.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountKeyBackup {
    /// The public account key whose seed is sealed.
    pub account_key: [u8; KEY_LEN],
    /// The AEAD nonce.
    pub nonce: [u8; BACKUP_NONCE_LEN],
    /// The sealed seed (ciphertext and tag).
    pub sealed: [u8; BACKUP_SEALED_LEN],
}

impl AccountKeyBackup {
    /// The bytes before `sealed` (version, type, account key, nonce): part of the AEAD's
    /// associated data.
    pub fn header(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(DEVICES_VERSION)
            .u8(TYPE_ACCOUNT_KEY_BACKUP)
            .bytes(&self.account_key)
            .bytes(&self.nonce);
        w.into_bytes()
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Decodes exactly [`ACCOUNT_KEY_BACKUP_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let b = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(b)
    }

    /// Decodes one backup from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != DEVICES_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        if kind != TYPE_ACCOUNT_KEY_BACKUP {
            return Err(DecodeError::UnknownType {
                what: "account key backup",
                value: kind,
            });
        }
        Ok(Self {
            account_key: r.array()?,
            nonce: r.array()?,
            sealed: r.array()?,
        })
    }
}

impl core::fmt::Debug for AccountKeyBackup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AccountKeyBackup")
            .field("account_key", &self.account_key)
            .finish_non_exhaustive()
    }
}
