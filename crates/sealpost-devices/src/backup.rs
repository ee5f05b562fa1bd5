//! The account-key backup (`spec/devices.md` section 2.1): the key holder seals the account
//! key's seed under a key derived from the PIN vault's backup key (`spec/pin.md` 6.1) and
//! leaves it with the relay; a new key holder that recovered the PIN opens it, so the
//! account keeps its account key (and its contacts their safety number).

use crate::{AccountKeyPair, BackupError};
use sealpost_crypto::{CryptoRng, aead, kdf};
use sealpost_wire::devices::{AccountKeyBackup, BACKUP_NONCE_LEN, BACKUP_SEALED_LEN};
use sealpost_wire::{AccountId, Writer};
use zeroize::Zeroizing;

/// HKDF info of the backup's key, and the first bytes of its associated data.
pub const ACCOUNT_KEY_BACKUP_INFO: &[u8] = b"Sealpost_AccountKey_Backup_v1";

/// `HKDF-SHA256(salt = "", IKM = backup_key, info = "Sealpost_AccountKey_Backup_v1", L = 32)`.
fn sealing_key(backup_key: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    kdf::hkdf_sha256_array::<32>(&[], backup_key, ACCOUNT_KEY_BACKUP_INFO)
        .map_err(|_| BackupError::Decrypt)
}

/// `"Sealpost_AccountKey_Backup_v1" || AccountId encoding || header`.
fn associated_data(account: &AccountId, backup: &AccountKeyBackup) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(ACCOUNT_KEY_BACKUP_INFO);
    account.encode_into(&mut w);
    w.bytes(&backup.header());
    w.into_bytes()
}

/// Seals `key` for `account` under `backup_key` (the PIN vault's, `spec/pin.md` 6.1) with a
/// random nonce.
pub fn seal_account_key_backup<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &AccountKeyPair,
    account: &AccountId,
    backup_key: &[u8; 32],
) -> Result<AccountKeyBackup, BackupError> {
    let mut nonce = [0u8; BACKUP_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(nonce, key, account, backup_key)
}

pub(crate) fn seal_with_nonce(
    nonce: [u8; BACKUP_NONCE_LEN],
    key: &AccountKeyPair,
    account: &AccountId,
    backup_key: &[u8; 32],
) -> Result<AccountKeyBackup, BackupError> {
    let mut backup = AccountKeyBackup {
        account_key: key.public().to_bytes(),
        nonce,
        sealed: [0; BACKUP_SEALED_LEN],
    };
    let ad = associated_data(account, &backup);
    let sealed = aead::seal(&*sealing_key(backup_key)?, &nonce, &ad, &*key.to_seed());
    backup.sealed = sealed
        .as_slice()
        .try_into()
        .map_err(|_| BackupError::Decrypt)?;
    Ok(backup)
}

/// Opens `backup` for `account` with `backup_key`: the account key, whose public half is
/// the one the backup names.
pub fn open_account_key_backup(
    backup: &AccountKeyBackup,
    account: &AccountId,
    backup_key: &[u8; 32],
) -> Result<AccountKeyPair, BackupError> {
    let ad = associated_data(account, backup);
    let seed = Zeroizing::new(
        aead::open(
            &*sealing_key(backup_key)?,
            &backup.nonce,
            &ad,
            &backup.sealed,
        )
        .map_err(|_| BackupError::Decrypt)?,
    );
    let seed: &[u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| BackupError::Decrypt)?;
    let key = AccountKeyPair::from_seed(seed);
    if key.public().to_bytes() != backup.account_key {
        return Err(BackupError::KeyMismatch);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    #[test]
    fn round_trip_and_refusals() {
        let mut rng = rand::rng();
        let key = AccountKeyPair::generate(&mut rng);
        let a = acct("+15550001001");
        let bk = [7u8; 32];
        let backup = seal_account_key_backup(&mut rng, &key, &a, &bk).unwrap();
        assert_eq!(backup.account_key, key.public().to_bytes());
        let opened = open_account_key_backup(&backup, &a, &bk).unwrap();
        assert_eq!(opened.public(), key.public());
        // Another master secret, another account: no key.
        assert_eq!(
            open_account_key_backup(&backup, &a, &[8; 32]).err(),
            Some(BackupError::Decrypt)
        );
        assert_eq!(
            open_account_key_backup(&backup, &acct("+15550001002"), &bk).err(),
            Some(BackupError::Decrypt)
        );
        // The account key and the nonce are in the associated data.
        let mut other = backup.clone();
        other.account_key = AccountKeyPair::generate(&mut rng).public().to_bytes();
        assert_eq!(
            open_account_key_backup(&other, &a, &bk).err(),
            Some(BackupError::Decrypt)
        );
        let mut other = backup.clone();
        other.nonce[0] ^= 1;
        assert_eq!(
            open_account_key_backup(&other, &a, &bk).err(),
            Some(BackupError::Decrypt)
        );
        let mut other = backup;
        other.sealed[0] ^= 1;
        assert_eq!(
            open_account_key_backup(&other, &a, &bk).err(),
            Some(BackupError::Decrypt)
        );
    }
}
