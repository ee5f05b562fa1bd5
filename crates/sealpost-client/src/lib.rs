//! The Sealpost client SDK: an async (tokio) client for apps that exchange end-to-end
//! encrypted messages through a Sealpost relay.
//!
//! * **Connection**: QUIC to the relay with TLS 1.3 and a *pinned* relay public key
//!   ([`tls::PinnedSpkiVerifier`]; a list of pins, so the relay can renew its certificate
//!   and rotate to an announced next key), ALPN `sealpost/1`, keep-alives every 3 s, and
//!   reconnection with bounded exponential backoff and jitter ([`Backoff`]). Every
//!   connection re-authenticates the device (spec/relay.md 3.3–3.4).
//! * **Failover**: the relay may be several nodes ([`ClientConfig::with_relays`]: addresses,
//!   or a DNS name standing for all its addresses), tried in order, each checked against the
//!   same pins. A connection that dies (a restarted node resets it at the next keep-alive; a
//!   vanished one hits the 10 s idle timeout; [`DEAD_AFTER_TIMEOUTS`] requests in a row
//!   time out) is closed and the client reconnects, to the next node if that one stopped
//!   answering.
//! * **Store**: everything durable lives in a [`Store`], encrypted at rest under a key the
//!   app provides or derives from a passphrase (Argon2id): identity, prekeys, sessions,
//!   contacts, history, outbox and de-duplication state. Backends implement
//!   [`store::ClientStore`] and see only ciphertext and blind tags; [`store::SqliteClientStore`]
//!   is the SQLite backend. Layouts: `spec/client-store.md`.
//! * **Sending**: [`Client::send_text`]/[`Client::send_bytes`] commit the message to a durable
//!   outbox and return; a background task fans it out to every device of the recipient,
//!   persisting session state *before* the ciphertext leaves, and retries across
//!   disconnects and restarts. [`ClientEvent::Delivered`] reports the relay's acceptance.
//! * **Receiving**: envelopes are decrypted and committed (session, history, processed id)
//!   in one transaction before they are acknowledged, so at-least-once delivery by the
//!   relay becomes exactly-once [`ClientEvent::Message`]s, in order per sending device.
//! * **Prekeys**: published at registration and replenished when the relay reports them low;
//!   signed and last-resort prekeys rotate weekly.
//!
//! # Quick start
//!
//! ```no_run
//! use sealpost_client::{
//!     AccountId, Client, ClientConfig, ClientEvent, SpkiPin, Store, StoreSecret,
//! };
//!
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! // The relay's address and its public-key pin (printed by the relay at start).
//! let pin: SpkiPin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse()?;
//! let config = ClientConfig::new("127.0.0.1:4433".parse()?, pin);
//! let store = Store::open_sqlite("shop.db", StoreSecret::passphrase("a long passphrase"))?;
//! let me = AccountId::new("+15550001111")?;
//!
//! // Registration, step 1: the relay sends a 6-digit code to the phone number.
//! Client::request_code(&config, &me).await?;
//! // Step 2: the user types the code in.
//! let code = "123456";
//! let (client, mut events) = Client::register(store, config.clone(), me, code).await?;
//! // Later runs use `Client::open(store, config)` instead.
//!
//! let customer = AccountId::new("+4915112345678")?;
//! let id = client.send_text(&customer, "Your order #1234 has shipped.").await?;
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ClientEvent::Delivered { message_id, .. } if message_id == id => {
//!             println!("the relay has it");
//!         }
//!         ClientEvent::Message { from, body, .. } => {
//!             println!("{} wrote {:?}", from.device.0, body.as_text());
//!         }
//!         ClientEvent::SafetyNumberChanged { account, device } => {
//!             let number = client.safety_number(&account, device).await?;
//!             println!("new safety number: {}", number.display_groups().join(" "));
//!         }
//!         _ => {}
//!     }
//! }
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees and their limits
//!
//! * A message reported by [`ClientEvent::Message`] is already in the store's history; if the
//!   app crashes before handling the event, the message is in [`Client::history`], not
//!   delivered again.
//! * A store restored from an older copy of itself (a backup, a copied app directory) is
//!   detected at its first authentication, by the relay's count of this device's sends
//!   (spec/client-store.md section 9): [`ClientEvent::StoreRolledBack`] is reported, no
//!   message key is used twice, and the next message to each peer starts a new session (the
//!   peer sees [`ClientEvent::SessionReset`]). Messages received or sent between the backup
//!   and the restore are missing from the restored history.
//! * Secrets and message content are never logged, at any level; `Debug` of keys, stores and
//!   message bodies prints no secret or content.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod client;
mod config;
mod content;
mod engine;
mod error;
mod event;
mod outbox;
mod pin;
pub mod store;
pub mod tls;
mod transport;

pub use client::{Client, Device, EventReceiver};
pub use config::{
    Backoff, CONNECT_STAGGER, CONNECT_TIMEOUT, ClientConfig, DEAD_AFTER_TIMEOUTS, Guardian,
    Guardians, IDLE_TIMEOUT, KEEP_ALIVE, RelayAddr, RelayAddrError,
};
pub use content::{
    CONTENT_BYTES, CONTENT_OVERHEAD, CONTENT_TEXT, CONTENT_VERSION, MAX_BODY_LEN, MessageBody,
    MessageId,
};
pub use engine::{
    KEM_PREKEY_LOW, KEM_PREKEY_TARGET, MAX_RETIRED_PREKEYS, ONE_TIME_PREKEY_LOW,
    ONE_TIME_PREKEY_TARGET, PREKEY_ROTATION_SECS, RETIRED_PREKEY_RETENTION_SECS,
};
pub use error::{ClientError, StoreError};
pub use event::ClientEvent;
pub use outbox::{MAX_SEND_ATTEMPTS, OUTBOX_SCAN_LIMIT, SEND_RETRY_INITIAL, SEND_RETRY_MAX};
pub use pin::{PinCheck, PinStatus, RecoveredKey, RegistrationLock};
pub use sealpost_crypto::spki::{SpkiPin, SpkiPinError, SpkiPins};
pub use sealpost_pin::stretch::Argon2Params;
pub use sealpost_session::{IdentityKey, SafetyNumber};
pub use sealpost_wire::relay::ErrorCode;
pub use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
pub use store::{
    Direction, HistoryEntry, MessageStatus, Store, StoreKey, StoreSecret, Verification,
};
