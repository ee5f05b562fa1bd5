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
//! * **Linked devices** (spec/devices.md): an account has a signed device list. A new
//!   account (and a store from before linked devices, on its next start) makes its account
//!   key and publishes list version 1; [`Client::link`] / [`Client::link_device`] link a
//!   new device, [`Client::remove_device`] unlinks one. Messages go to exactly the devices
//!   on the recipient's verified list, pinned with the update rule: a device the relay
//!   adds, or an older list it serves, is refused ([`ClientEvent::DeviceListRefused`],
//!   [`ClientEvent::RejectedUnlistedDevice`]); list changes are reported as
//!   [`ClientEvent::DevicesChanged`], and safety numbers are over account keys.
//! * **Business accounts**: registered with [`AccountKind::Business`] (this device is the
//!   `owner`), devices linked as `admin`, `agent` or `bot` ([`Client::link_device_as`]) and
//!   renamed or given another role ([`Client::update_device`]); every
//!   [`ClientEvent::Message`] names its `author` as the sender's signed list does, so a
//!   customer knows which agent or bot answered.
//! * **Prekeys**: published at registration and replenished when the relay reports them low;
//!   signed and last-resort prekeys rotate weekly.
//! * **Front door**: [`ClientConfig::builder`] takes the relay's host name, port and pin in
//!   text form; [`Store::open_sqlite`] is async (the key derivation runs off the runtime);
//!   [`Store::has_account`] tells a first run from a later one; [`Client`] is a cheap
//!   `Clone` handle with [`Client::shutdown`] on any clone; [`Client::connection_state`]
//!   reports connecting, connected, backing off (with a typed [`ConnectFailure`], e.g. a pin
//!   mismatch) or stopped; the [`EventReceiver`] is bounded and never holds up processing
//!   (a slow reader gets [`ClientEvent::Lagged`]).
//!
//! # Quick start
//!
//! The whole app "register (or open the account on later runs), send a message to a shop,
//! print the replies":
//!
//! ```no_run
//! use sealpost_client::{AccountId, Client, ClientConfig, ClientEvent, Store, StoreSecret};
//!
//! # fn read_code_from_user() -> String { String::new() }
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! // The relay: host name, port and public-key pin (the relay prints its pin at start).
//! let config = ClientConfig::builder()
//!     .relay("relay.example.org", 4433)
//!     .pin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
//!     .build()?;
//! // The encrypted store (the passphrase is stretched off the async runtime).
//! let store = Store::open_sqlite("app.db", StoreSecret::passphrase("a long passphrase")).await?;
//!
//! let (client, mut events) = if store.has_account().await? {
//!     Client::open(store, config).await?
//! } else {
//!     // First run: the relay texts a 6-digit code to the number; the user types it in.
//!     let me = AccountId::new("+15550001111")?;
//!     Client::request_code(&config, &me).await?;
//!     Client::register(store, config, me, &read_code_from_user()).await?
//! };
//!
//! let shop = AccountId::new("+4915112345678")?;
//! client.send_text(&shop, "Is order #1234 on its way?").await?;
//!
//! // Optional: show "offline" or "the relay's certificate does not match".
//! let mut state = client.connection_state();
//! tokio::spawn(async move {
//!     while state.changed().await.is_ok() {
//!         eprintln!("connection: {:?}", *state.borrow_and_update());
//!     }
//! });
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ClientEvent::Message { from, body, .. } if from.account == shop => {
//!             println!("the shop replied: {}", body.as_text().unwrap_or("(bytes)"));
//!         }
//!         // Read too slowly: nothing is lost, the messages are in `client.history(..)`.
//!         ClientEvent::Lagged { .. } => {}
//!         _ => {}
//!     }
//! }
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/examples/quick_start.rs` runs this app against an in-process relay.
//!
//! # Guarantees and their limits
//!
//! * A message reported by [`ClientEvent::Message`] is already in the store's history; if the
//!   app crashes before handling the event, or reads its events so slowly that some are
//!   dropped ([`ClientEvent::Lagged`]), the message is in [`Client::history`], not
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
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod bot;
mod builder;
mod client;
mod config;
mod content;
#[cfg(test)]
mod content_vectors;
mod desk;
mod engine;
mod error;
mod event;
#[cfg(feature = "hazmat")]
pub mod hazmat;
mod outbox;
mod pin;
mod state;
pub mod store;
pub mod tls;
mod transport;

pub use bot::{BOT_READ_BATCH, BotError, BotMessage, BusinessBot};
pub use builder::{ClientConfigBuilder, ConfigError};
pub use client::{
    BusinessProfile, Client, DEVICE_LIST_REFRESH, DeskConversation, DeskNote, Device, HandoffInfo,
    PendingLink,
};
pub use config::{
    AccountKind, Backoff, CONNECT_STAGGER, CONNECT_TIMEOUT, ClientConfig, DEAD_AFTER_TIMEOUTS,
    DEFAULT_EVENT_CAPACITY, Guardian, Guardians, IDLE_TIMEOUT, KEEP_ALIVE, RelayAddr,
    RelayAddrError,
};
pub use content::{
    CONTENT_BYTES, CONTENT_HISTORY_PART, CONTENT_OVERHEAD, CONTENT_SENT_COPY, CONTENT_SYNC,
    CONTENT_TEXT, CONTENT_VERSION, MAX_BODY_LEN, MAX_SYNC_DELETE_IDS, MAX_SYNC_ITEMS, MessageBody,
    MessageId,
};
pub use engine::{HISTORY_BUNDLE_MAX_AGE, HISTORY_BUNDLE_MAX_MESSAGES, HISTORY_PART_LINK_WAIT};
pub use engine::{
    KEM_PREKEY_LOW, KEM_PREKEY_TARGET, MAX_RETIRED_PREKEYS, ONE_TIME_PREKEY_LOW,
    ONE_TIME_PREKEY_TARGET, PREKEY_ROTATION_SECS, RETIRED_PREKEY_RETENTION_SECS,
};
pub use engine::{OWNER_DEVICE_NAME, PRIMARY_DEVICE_NAME};
pub use error::{
    ClientError, ConnectionError, ConnectionErrorKind, DatabaseError, DatabaseErrorKind,
    DeviceListRefusal, EndpointError, EndpointErrorKind, InternalError, KdfError, KdfErrorKind,
    LinkFailure, ProtocolViolation, StoreError, StreamError, StreamErrorKind, VaultUnavailable,
};
pub use event::{ClientEvent, DeviceActivity, DeviceInfo, EventReceiver};
pub use outbox::{MAX_SEND_ATTEMPTS, OUTBOX_SCAN_LIMIT, SEND_RETRY_INITIAL, SEND_RETRY_MAX};
pub use pin::{PinCheck, PinStatus, RecoveredKey, RegistrationLock};
pub use sealpost_crypto::spki::{SpkiPin, SpkiPinError, SpkiPins};
pub use sealpost_devices::DeviceRole;
pub use sealpost_devices::HandoffCheck;
pub use sealpost_devices::RouteError;
pub use sealpost_devices::TrustedVerifier;
/// The PIN's Argon2id cost parameters ([`ClientConfig::pin_params`]; default
/// `PinArgon2Params::PRODUCTION`, 16 MiB and 32 passes). Not the store passphrase's:
/// that is [`StoreArgon2Params`].
pub use sealpost_pin::stretch::Argon2Params as PinArgon2Params;
pub use sealpost_session::{IdentityKey, SafetyNumber};
pub use sealpost_wire::business::BusinessProfileFields;
pub use sealpost_wire::business::Side;
pub use sealpost_wire::relay::ErrorCode;
pub use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
pub use state::{ConnectFailure, ConnectionState, StopReason};
pub use store::{
    Direction, HistoryEntry, MessageStatus, Store, StoreArgon2Params, StoreKey, StoreSecret,
    Verification,
};
