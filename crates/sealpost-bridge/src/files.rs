//! The bridge's own files in the store directory: secrets (the API token, the webhook
//! secret), the webhook's delivered cursor and the journal of messages the bridge sent.
//! Secrets are created owner-only (mode 0600 on Unix); every rewrite is atomic (a temporary
//! file, synced, renamed over the old one, and the directory synced).

use crate::error::BridgeError;
use sealpost_client::MessageId;
use sealpost_crypto::Zeroizing;
use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// File name of the API token in the store directory.
pub const TOKEN_FILE: &str = "bridge-token";
/// File name of the webhook secret in the store directory.
pub const WEBHOOK_SECRET_FILE: &str = "bridge-webhook-secret";
/// File name of the webhook's delivered cursor in the store directory.
pub const WEBHOOK_CURSOR_FILE: &str = "bridge-webhook-cursor";
/// File name of the journal of message ids the bridge sent.
pub const SENT_JOURNAL_FILE: &str = "bridge-sent";

/// Random bytes in a generated secret.
pub const SECRET_BYTES: usize = 32;

/// A bearer token or webhook secret: 64 lowercase hex digits (32 random bytes). Its text is
/// what clients send (`Authorization: Bearer <text>`) and the HMAC key of webhook
/// signatures. Not `Clone`; wiped on drop; `Debug` prints nothing of it.
pub struct Secret(Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads the secret at `path`, or creates it (owner-only) with fresh random bytes if it
    /// does not exist. A file that exists but holds no valid secret is an error, never
    /// silently replaced.
    pub fn load_or_create(path: &Path) -> Result<Self, BridgeError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = sealpost_crypto::random_array::<SECRET_BYTES, _>(&mut rand::rng());
                let text = Zeroizing::new(hex::encode(bytes.as_slice()));
                write_new_private(path, text.as_bytes())?;
                Ok(Self(text))
            }
            Err(e) => Err(BridgeError::io("reading a secret", path, e)),
        }
    }

    /// Reads an existing secret file (for `--token-file`).
    pub fn load(path: &Path) -> Result<Self, BridgeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BridgeError::io("reading a secret", path, e))?;
        Self::parse(text, path)
    }

    fn parse(text: String, path: &Path) -> Result<Self, BridgeError> {
        let text = Zeroizing::new(text);
        let trimmed = text.trim();
        // At least 128 bits, printable, no spaces: what a header can carry.
        if trimmed.len() < 32 || !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BridgeError::InvalidSecret {
                path: path.to_owned(),
            });
        }
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    /// Whether `candidate` is this secret, in constant time (lengths are not secret).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        sealpost_crypto::ct_eq(self.0.as_bytes(), candidate)
    }

    /// `sha256=<hex HMAC-SHA256(secret text, body)>`: the `X-Sealpost-Signature` value.
    pub fn sign(&self, body: &[u8]) -> String {
        let mac = sealpost_crypto::kdf::hmac_sha256(self.0.as_bytes(), body);
        format!("sha256={}", hex::encode(mac))
    }
}

/// Creates `path` with `contents`, owner-only, failing if it exists.
fn write_new_private(path: &Path, contents: &[u8]) -> Result<(), BridgeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| BridgeError::io("creating a secret", path, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| BridgeError::io("writing a secret", path, e))?;
    sync_dir(path);
    Ok(())
}

/// Syncs the directory holding `path` (so a rename or creation survives a crash); best
/// effort where directories cannot be opened.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Replaces `path` with `contents` atomically (temporary file, sync, rename, directory sync).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), BridgeError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| BridgeError::io("writing", path, e))?;
    sync_dir(path);
    Ok(())
}

/// Reads a cursor file: 0 if it does not exist.
pub fn read_cursor(path: &Path) -> Result<u64, BridgeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| BridgeError::InvalidCursorFile {
                path: path.to_owned(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(BridgeError::io("reading", path, e)),
    }
}

/// The ids of the messages this bridge sent, one hex id per line, appended and synced after
/// each send: for history entries that do not record which of the business's devices sent
/// them (stored by older versions), the feed tells this bridge's messages from what the
/// account's other devices sent by this journal.
///
/// A crash between the client committing a message and this append leaves that one message
/// marked as sent by another device; nothing is lost.
#[derive(Debug)]
pub struct SentJournal {
    path: PathBuf,
    ids: HashSet<MessageId>,
}

impl SentJournal {
    /// Loads the journal at `path` (empty if it does not exist); unreadable lines are skipped.
    pub fn load(path: PathBuf) -> Result<Self, BridgeError> {
        let mut ids = HashSet::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some(id) = parse_message_id(line.trim()) {
                        ids.insert(id);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BridgeError::io("reading", &path, e)),
        }
        Ok(Self { path, ids })
    }

    /// Whether this bridge sent `id`.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains(id)
    }

    /// Records `id` (appended and synced).
    pub fn record(&mut self, id: MessageId) -> Result<(), BridgeError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| BridgeError::io("opening", &self.path, e))?;
        let line = format!("{}\n", hex::encode(id.as_bytes()));
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| BridgeError::io("appending to", &self.path, e))?;
        self.ids.insert(id);
        Ok(())
    }
}

/// A message id from its 32 hex digits.
pub fn parse_message_id(text: &str) -> Option<MessageId> {
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(MessageId::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_created_private_reloaded_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let a = Secret::load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = Secret::load_or_create(&path).unwrap();
        assert!(a.matches(text.as_bytes()) && b.matches(text.as_bytes()));
        assert!(!a.matches(b"wrong"));
        assert!(!a.matches(&text.as_bytes()[1..]));
        assert_eq!(format!("{a:?}"), "Secret(..)");
        // A damaged file is refused, not replaced.
        std::fs::write(&path, "short").unwrap();
        assert!(Secret::load_or_create(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short");
    }

    #[test]
    fn cursor_and_journal_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = dir.path().join(WEBHOOK_CURSOR_FILE);
        assert_eq!(read_cursor(&cursor).unwrap(), 0);
        write_atomic(&cursor, b"42").unwrap();
        assert_eq!(read_cursor(&cursor).unwrap(), 42);
        let path = dir.path().join(SENT_JOURNAL_FILE);
        let id = MessageId::random();
        SentJournal::load(path.clone()).unwrap().record(id).unwrap();
        let journal = SentJournal::load(path).unwrap();
        assert!(journal.contains(&id));
        assert!(!journal.contains(&MessageId::random()));
    }
}
