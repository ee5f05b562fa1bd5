//! The data directory: its lock and the secret files (code-MAC key, issuer key).

use super::*;

/// Name of the code-MAC key file in the data directory.
pub const CODE_KEY_FILE: &str = "code-hmac.key";

/// Name of the guardian-credential issuer key file (an Ed25519 seed) in the data directory.
pub const ISSUER_KEY_FILE: &str = "issuer.key";

/// Name of the database file in the data directory.
pub const DB_FILE: &str = "relay.db";

/// Name of the lock file in the data directory (spec/relay.md section 5): a relay holds an
/// exclusive advisory lock on it for as long as it runs.
pub const LOCK_FILE: &str = "relay.lock";

/// Takes the data directory's exclusive lock ([`LOCK_FILE`], an OS advisory lock that the
/// OS releases when the process ends, also on a crash), or fails at once with
/// [`RelayError::DataDirInUse`] when another relay holds it.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, RelayError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            RelayError::io(
                "opening",
                crate::error::IoTarget::Path(path.to_path_buf()),
                e,
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RelayError::DataDirInUse {
            dir: data_dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(RelayError::io(
            "locking",
            crate::error::IoTarget::Path(path.to_path_buf()),
            e,
        )),
    }
}

pub(super) fn load_or_create_code_key(data_dir: &Path) -> Result<[u8; 32], RelayError> {
    load_or_create_secret(data_dir, CODE_KEY_FILE)
}

/// The guardian-credential issuer key (spec/pin.md section 7): a 32-byte Ed25519 seed in
/// `issuer.key`, created on first start with mode 0600.
pub(super) fn load_or_create_issuer_key(data_dir: &Path) -> Result<SigningKey, RelayError> {
    let seed = zeroize::Zeroizing::new(load_or_create_secret(data_dir, ISSUER_KEY_FILE)?);
    Ok(SigningKey::from_seed(&seed))
}

/// Reads a 32-byte secret file in `data_dir`, or creates it (mode 0600, random).
pub(super) fn load_or_create_secret(data_dir: &Path, name: &str) -> Result<[u8; 32], RelayError> {
    crate::startup::load_or_create_secret(&data_dir.join(name)).map(|k| *k)
}
