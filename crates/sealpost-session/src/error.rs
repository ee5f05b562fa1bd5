//! Typed errors. Display strings carry ids, counts and sizes, never key material or plaintext.

use sealpost_crypto::CryptoError;
use sealpost_wire::DecodeError;

/// Why a handshake could not be started or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A message or bundle did not decode.
    #[error("malformed handshake input: {0}")]
    Decode(#[from] DecodeError),
    /// The peer's Ed25519 identity key is invalid or of small order.
    #[error("invalid identity key")]
    InvalidIdentityKey,
    /// The signed prekey's signature does not verify under the bundle's identity.
    #[error("signed prekey {0} has a bad signature")]
    BadSignedPreKeySignature(u32),
    /// The ML-KEM prekey's signature does not verify under the bundle's identity.
    #[error("KEM prekey {0} has a bad signature")]
    BadKemPreKeySignature(u32),
    /// The ML-KEM prekey is not a valid encapsulation key.
    #[error("KEM prekey {0} is not a valid ML-KEM-1024 key")]
    InvalidKemPreKey(u32),
    /// A Diffie-Hellman input was of small order (all-zero agreement).
    #[error("a handshake key is of small order")]
    NonContributory,
    /// The responder has no signed prekey with this id.
    #[error("unknown signed prekey id {0}")]
    UnknownSignedPreKey(u32),
    /// The responder never issued a one-time prekey with this id.
    #[error("unknown one-time prekey id {0}")]
    UnknownOneTimePreKey(u32),
    /// The one-time prekey was already consumed by an earlier handshake.
    #[error("one-time prekey {0} was already used")]
    OneTimePreKeyReused(u32),
    /// The responder has no ML-KEM prekey with this id.
    #[error("unknown KEM prekey id {0}")]
    UnknownKemPreKey(u32),
    /// The one-time ML-KEM prekey was already consumed by an earlier handshake.
    #[error("one-time KEM prekey {0} was already used")]
    KemPreKeyReused(u32),
    /// The peer presented our own identity.
    #[error("the peer's identity is our own")]
    OwnIdentity,
    /// The local and the remote address are the same device.
    #[error("the peer's address is our own")]
    OwnAddress,
    /// The bundle was published for another device than the address it is used for.
    #[error("bundle of device {bundle} used for device {address}")]
    DeviceMismatch {
        /// The bundle's device id.
        bundle: u32,
        /// The device id of the remote address.
        address: u32,
    },
    /// The embedded first message did not decrypt.
    #[error("first message rejected: {0}")]
    FirstMessage(DecryptError),
}

impl From<CryptoError> for HandshakeError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::NonContributory => Self::NonContributory,
            _ => Self::InvalidIdentityKey,
        }
    }
}

/// Why a message could not be decrypted. In every case the session is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The bytes are not a session message.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// Authentication failed: tampered ciphertext, header or AD, or a message for another session.
    #[error("message failed authentication")]
    Authentication,
    /// The message key was already used (a duplicate or replay) or has been evicted.
    #[error("duplicate or expired message {message_number} on an old or current chain")]
    Duplicate {
        /// The message number in the header.
        message_number: u32,
    },
    /// Accepting the message would skip more message keys than allowed.
    #[error("message skips {skipped} keys, limit {max_skip}")]
    TooManySkipped {
        /// Keys that would have to be skipped.
        skipped: u64,
        /// The configured per-chain limit.
        max_skip: u32,
    },
    /// The message carries our own current ratchet key: a reflected message.
    #[error("reflected message (our own ratchet key)")]
    Reflected,
    /// The header's ratchet key is of small order.
    #[error("ratchet key is of small order")]
    NonContributory,
    /// A prekey message that belongs to a different session (other base key or identity).
    #[error("prekey message does not belong to this session")]
    WrongSession,
    /// The receiving chain's message counter is exhausted.
    #[error("message counter exhausted")]
    CounterExhausted,
    /// A legacy session (loaded from version-1 state) decrypts nothing: version-1 messages
    /// no longer decode, and it is bound to no addresses.
    #[error("legacy (version 1) session cannot decrypt")]
    LegacySession,
}

/// Why a message could not be encrypted. The session is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The plaintext exceeds the per-message limit.
    #[error("plaintext is {len} bytes, limit {max}")]
    PlaintextTooLong {
        /// Plaintext length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The sending chain's counter is exhausted (2^32 - 1 messages without a reply).
    #[error("sending chain exhausted; a reply is needed to ratchet")]
    CounterExhausted,
    /// This side has no sending chain yet (cannot happen for sessions created by this crate).
    #[error("no sending chain")]
    NoSendingChain,
    /// A legacy session (loaded from version-1 state) must not encrypt: start a new
    /// handshake with the peer instead (spec/session.md, "Upgrading from version 1").
    #[error("legacy (version 1) session cannot encrypt; start a new session")]
    LegacySession,
}

/// Why a pickle or serialized state could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// Malformed encoding.
    #[error("malformed state: {0}")]
    Decode(#[from] DecodeError),
    /// The pickle did not authenticate under the given key (wrong key or tampered).
    #[error("pickle failed authentication")]
    Authentication,
    /// The state decoded but is internally inconsistent.
    #[error("inconsistent state: {0}")]
    Inconsistent(&'static str),
}

/// Errors from the session configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_skip` must be at least 1 and at most `max_skipped_keys`.
    #[error("max_skip {max_skip} must be in 1..={max_skipped_keys}")]
    MaxSkip {
        /// Requested per-chain limit.
        max_skip: u32,
        /// Requested total.
        max_skipped_keys: u32,
    },
    /// `max_skipped_keys` exceeds the hard limit.
    #[error("max_skipped_keys {0} exceeds the hard limit {1}")]
    TooManyKeys(u32, u32),
}
