//! What a relay checks and loads before it accepts a connection, kept apart from the
//! request driver: that its store is writable, its 32-byte secret files, and the QUIC
//! endpoint configuration built from the stateless-reset key (spec/relay.md sections 1.2
//! and 5).

use crate::RelayError;
use sealpost_crypto::kdf::{HASH_LEN, hmac_sha256, hmac_sha256_verify};
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The stateless-reset key's file in the data directory (spec/relay.md section 1.2), used
/// when `reset_key_file` is not configured.
pub const RESET_KEY_FILE: &str = "stateless-reset.key";

/// Length of the connection ids the relay issues (random bytes).
const CID_LEN: usize = 8;

/// Name of the file written (and removed) to check that the data directory is writable.
const WRITE_PROBE: &str = ".write-probe";

/// Fails with [`RelayError::NotWritable`] unless the relay can create, write, sync and
/// remove a file in `data_dir` and open `db` (if it exists) for writing: a relay whose
/// store cannot take writes refuses to start rather than accept connections and fail every
/// request (spec/relay.md section 5).
pub(crate) fn check_writable(data_dir: &Path, db: &Path) -> Result<(), RelayError> {
    use std::io::Write;
    let probe = data_dir.join(format!("{WRITE_PROBE}-{}", std::process::id()));
    let not_writable = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RelayError::NotWritable { path, source }
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(&[0]).and_then(|()| f.sync_all()));
    // Removed whether or not the write worked (a full disk may have created it).
    let removed = std::fs::remove_file(&probe);
    written.map_err(not_writable(data_dir))?;
    removed.map_err(not_writable(data_dir))?;
    match std::fs::OpenOptions::new().write(true).open(db) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(not_writable(db)(e)),
    }
}

/// Reads the 32-byte secret at `path`, or creates it (mode 0600, random) if it does not
/// exist.
pub(crate) fn load_or_create_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>, RelayError> {
    use std::io::Write;
    if let Some(key) = load_secret(path)? {
        return Ok(key);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rand::fill(key.as_mut_slice());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        RelayError::io(
            "creating",
            crate::error::IoTarget::Path(path.to_path_buf()),
            e,
        )
    })?;
    f.write_all(key.as_slice())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            RelayError::io(
                "writing",
                crate::error::IoTarget::Path(path.to_path_buf()),
                e,
            )
        })?;
    Ok(key)
}

/// Reads the 32-byte secret at `path`; `None` if the file does not exist.
fn load_secret(path: &Path) -> Result<Option<Zeroizing<[u8; 32]>>, RelayError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let key: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| crate::ConfigError::KeyFileLength {
                        path: path.to_path_buf(),
                    })?;
            Ok(Some(Zeroizing::new(key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RelayError::io(
            "reading",
            crate::error::IoTarget::Path(path.to_path_buf()),
            e,
        )),
    }
}

/// The stateless-reset key: `configured` (a file shared by the nodes of a deployment, which
/// must exist), else [`RESET_KEY_FILE`] in `data_dir` (created on first start).
pub(crate) fn load_reset_key(
    data_dir: &Path,
    configured: Option<&Path>,
) -> Result<ResetKey, RelayError> {
    let secret = match configured {
        Some(path) => load_secret(path)?.ok_or_else(|| {
            RelayError::Config(crate::ConfigError::ResetKeyFileMissing {
                path: path.to_path_buf(),
            })
        })?,
        None => load_or_create_secret(&data_dir.join(RESET_KEY_FILE))?,
    };
    Ok(ResetKey(secret))
}

/// The HMAC-SHA256 key of the relay's stateless reset tokens (spec/relay.md section 1.2):
/// the token of a connection id is the first 16 bytes of HMAC-SHA256(key, connection id).
/// Kept across restarts (and shared by the nodes of a deployment), so that a relay that
/// lost a connection's state resets it at the client's next packet.
pub(crate) struct ResetKey(Zeroizing<[u8; 32]>);

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let tag = Zeroizing::new(hmac_sha256(self.0.as_slice(), data));
        let n = signature_out.len().min(HASH_LEN);
        if let (Some(out), Some(tag)) = (signature_out.get_mut(..n), tag.get(..n)) {
            out.copy_from_slice(tag);
        }
    }

    fn signature_len(&self) -> usize {
        HASH_LEN
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        hmac_sha256_verify(self.0.as_slice(), data, signature)
            .map_err(|_| quinn::crypto::CryptoError)
    }
}

/// Connection ids of [`CID_LEN`] random bytes. quinn's default generator signs its ids under
/// a key drawn at every start and drops packets whose id does not verify, so a restarted
/// relay would never reset an old connection: these ids carry no signature.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut cid = [0u8; CID_LEN];
        rand::fill(&mut cid);
        quinn::ConnectionId::new(&cid)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The endpoint configuration: stateless resets under `key`, connection ids from
/// [`RandomCids`].
pub(crate) fn endpoint_config(key: ResetKey) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(Arc::new(key));
    config.cid_generator(|| Box::new(RandomCids));
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::crypto::HmacKey;

    #[test]
    fn the_reset_key_is_created_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_reset_key(dir.path(), None).unwrap();
        let path = dir.path().join(RESET_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = load_reset_key(dir.path(), None).unwrap();
        let (mut ta, mut tb) = ([0u8; 16], [0u8; 16]);
        a.sign(b"connection id", &mut ta);
        b.sign(b"connection id", &mut tb);
        assert_eq!(ta, tb, "a restart must derive the same reset tokens");
        assert_eq!(
            ta.as_slice(),
            &hmac_sha256(std::fs::read(&path).unwrap().as_slice(), b"connection id")[..16]
        );
        assert!(
            a.verify(b"connection id", &hmac_sha256(&*a.0, b"connection id"))
                .is_ok()
        );
        assert!(a.verify(b"connection id", &ta).is_err(), "truncated tag");
    }

    #[test]
    fn a_configured_reset_key_is_shared_and_must_exist() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let shared = a.path().join("shared.key");
        let err = load_reset_key(b.path(), Some(&shared)).err().unwrap();
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::write(&shared, [7u8; 32]).unwrap();
        let one = load_reset_key(a.path(), Some(&shared)).unwrap();
        let two = load_reset_key(b.path(), Some(&shared)).unwrap();
        assert_eq!(*one.0, *two.0);
        assert!(!b.path().join(RESET_KEY_FILE).exists());
        std::fs::write(&shared, [7u8; 31]).unwrap();
        assert!(load_reset_key(b.path(), Some(&shared)).is_err());
    }

    #[test]
    fn a_writable_directory_passes_the_check_and_keeps_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(dir.path(), &dir.path().join("relay.db")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("gone");
        let err = check_writable(&missing, &missing.join("relay.db"))
            .err()
            .unwrap();
        assert!(matches!(err, RelayError::NotWritable { .. }), "{err}");
    }
}
