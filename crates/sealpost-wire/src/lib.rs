//! Byte encodings of everything Sealpost puts on the wire, as defined in `spec/wire.md`.
//!
//! This crate only parses and serializes: it checks versions, types, lengths and limits and
//! returns a typed [`DecodeError`] for anything else. It performs no cryptography; keys are
//! carried as fixed-size byte arrays and validated by `sealpost-session` when used.
//!
//! Every decoder is total: for any input it returns `Ok` or `Err`, never panics, and never
//! allocates more than the input's length.
//!
//! ```
//! use sealpost_wire::{RatchetMessage, SessionMessage};
//! let msg = RatchetMessage {
//!     ratchet_key: [7; 32],
//!     previous_chain_length: 0,
//!     message_number: 3,
//!     nonce: [9; 12],
//!     ciphertext: vec![0; 16],
//! };
//! let bytes = msg.encode();
//! assert_eq!(SessionMessage::decode(&bytes).unwrap(), SessionMessage::Ratchet(msg));
//! ```
#![forbid(unsafe_code)]
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod address;
pub mod business;
mod codec;
pub mod content;
pub mod devices;
mod error;
mod messages;
pub mod relay;

pub use address::{AccountId, DeviceAddress, DeviceId, MAX_ACCOUNT_ID_LEN};
pub use codec::{Reader, Writer};
pub use error::DecodeError;
pub use messages::*;

/// The protocol version byte that starts every Sealpost encoding.
pub const PROTOCOL_VERSION: u8 = 1;

/// Length of an X25519 or Ed25519 public key.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an ML-KEM-1024 encapsulation key.
pub const KEM_PUBLIC_LEN: usize = 1568;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of the AEAD tag at the end of every ratchet ciphertext.
pub const TAG_LEN: usize = 16;

/// Largest plaintext a single session message may carry (256 KiB). Larger payloads
/// (attachments) are encrypted separately and referenced from a message.
pub const MAX_PLAINTEXT_LEN: usize = 256 * 1024;
/// Largest encoded ratchet message: header + plaintext limit + tag.
pub const MAX_RATCHET_MESSAGE_LEN: usize = RATCHET_HEADER_LEN + MAX_PLAINTEXT_LEN + TAG_LEN;
/// Largest encoded session message of any type.
pub const MAX_SESSION_MESSAGE_LEN: usize = PREKEY_MESSAGE_FIXED_LEN + MAX_RATCHET_MESSAGE_LEN;
