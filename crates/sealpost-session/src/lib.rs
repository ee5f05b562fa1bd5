//! The Sealpost 1:1 session protocol: an asynchronous, post-quantum hybrid handshake in the
//! manner of Signal's X3DH/PQXDH, followed by the Double Ratchet exactly as in Signal's
//! specification (section 3), with ChaCha20-Poly1305. Byte-level definitions live in
//! `spec/session.md` and `spec/wire.md`; `spec/vectors/` holds test vectors.
//!
//! This crate does no I/O: randomness is passed in as `&mut impl CryptoRng` and time as
//! Unix seconds. Every decryption is transactional: a forged, replayed, reflected,
//! truncated or otherwise bad message returns a typed error and leaves the session exactly
//! as it was.
//!
//! # Quick start
//! ```
//! use sealpost_session::{
//!     initiate, respond, AccountId, DeviceAddress, DeviceId, IdentityKeyPair, KemPreKeyKind,
//!     PreKeyStore, SessionAddresses, SessionConfig, SessionMessage, VerifiedBundle,
//! };
//! let mut rng = rand::rng();
//! let now = 1_700_000_000;
//!
//! // Bob (a shop's support device) publishes prekeys through the relay.
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let mut bob_store = PreKeyStore::new();
//! bob_store.generate_signed_prekey(&mut rng, &bob, now);
//! bob_store.generate_one_time_prekeys(&mut rng, 10);
//! bob_store.generate_kem_prekeys(&mut rng, &bob, KemPreKeyKind::LastResort, 1, now);
//! let bundle = bob_store.bundle(&bob, 1, true).unwrap();
//! let bob_addr = DeviceAddress::new(AccountId::new("+15550000002")?, DeviceId(1));
//!
//! // Alice (a customer) verifies the bundle and starts a session.
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let alice_addr = DeviceAddress::new(AccountId::new("+15550000001")?, DeviceId(1));
//! let bundle = VerifiedBundle::verify(&bundle)?;
//! let to_bob = SessionAddresses::new(alice_addr.clone(), bob_addr.clone());
//! let mut a = initiate(&mut rng, &alice, &to_bob, &bundle, SessionConfig::default())?;
//! let first = a.encrypt(b"Where is my order #1234?")?;
//!
//! // Bob accepts the first message, which creates his side of the session. The relay says
//! // it comes from Alice's address; the handshake authenticates that claim.
//! let SessionMessage::PreKey(pkm) = SessionMessage::decode(&first.encode())? else { unreachable!() };
//! let from_alice = SessionAddresses::new(bob_addr, alice_addr);
//! let (mut b, text) =
//!     respond(&mut rng, &bob, &from_alice, &mut bob_store, &pkm, SessionConfig::default())?;
//! assert_eq!(text, b"Where is my order #1234?");
//!
//! let reply = b.encrypt(b"It ships today.")?;
//! assert_eq!(a.decrypt(&mut rng, &reply)?, b"It ships today.");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod error;
pub mod fingerprint;
mod handshake;
#[cfg(feature = "hazmat")]
pub mod hazmat;
mod keys;
mod ratchet;
mod session;

pub use error::{ConfigError, DecryptError, EncryptError, HandshakeError, PickleError};
pub use fingerprint::{FingerprintError, SafetyNumber};
pub use handshake::{
    HANDSHAKE_INFO, HANDSHAKE_PREFIX, MAX_AD_LEN, SessionAddresses, initiate, respond,
};
pub use keys::{
    IdentityKey, IdentityKeyPair, KemPreKey, MAX_ONE_TIME_PREKEYS, PreKeyStore, SignedPreKey,
    VerifiedBundle,
};
pub use ratchet::{CHAIN_KEY_CONSTANT, KDF_RK_INFO, MESSAGE_KEY_CONSTANT, NONCE_KEY_CONSTANT};
pub use sealpost_crypto::CryptoRng;
pub use sealpost_wire::{
    AccountId, DeviceAddress, DeviceId, KemPreKeyKind, PreKeyBundle, PreKeyMessage, RatchetMessage,
    SessionMessage,
};
pub use session::{
    DEFAULT_MAX_SKIP, DEFAULT_MAX_SKIPPED_KEYS, HARD_MAX_SKIPPED_KEYS,
    LEGACY_SESSION_STATE_VERSION, PICKLE_INFO, PICKLE_SALT_LEN, PICKLE_VERSION, PickleKey, Role,
    SESSION_STATE_VERSION, Session, SessionConfig,
};
