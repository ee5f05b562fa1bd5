//! The async client: its API (registration, sending, contacts, the PIN) and shared state.
//! Its two background tasks live in `receiving` (the connection task: authentication,
//! pushes, acks, prekey maintenance, reconnection) and `sending` (the outbox task).

use crate::config::{BackoffState, ClientConfig};
use crate::content::{MAX_BODY_LEN, MessageBody, MessageId};
use crate::engine::{Engine, Processed};
use crate::error::{ClientError, ProtocolViolation};
use crate::event::{ClientEvent, EventReceiver, EventSender};
use crate::outbox::{OUTBOX_SCAN_LIMIT, Retries, Verdict};
use crate::pin::{PinCheck, PinStatus};
use crate::state::{ConnectionState, StopReason};
use crate::store::{
    AccountRecord, Batch, Contact, DAY_MS, HistoryEntry, PinRecord, Store, Verification,
};
use crate::transport::{Connection, PreKeyCounts, Transport};
use sealpost_pin::normalize::NormalizedPin;
use sealpost_pin::reminder::{LocalVerifier, ReminderState};
use sealpost_pin::vault::MasterSecret;
use sealpost_session::{IdentityKey, IdentityKeyPair, SafetyNumber};
use sealpost_wire::relay::{ErrorCode, Push};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;

mod business;
mod desk;
mod devices;
mod feed;
mod linking;
mod pin;
mod receiving;
mod sending;
mod sync;

pub use business::BusinessProfile;
pub use desk::{DeskConversation, DeskNote, HandoffInfo};
pub use devices::DEVICE_LIST_REFRESH;
use devices::*;
pub use linking::PendingLink;
use pin::{enrol_pin, save_pin};
use receiving::*;
use sending::*;

/// Acknowledge after this many processed envelopes (the relay's window is 64).
const ACK_BATCH: usize = 32;
/// Or after this long without a further push.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Processed message ids are kept this long (the relay's mailbox TTL plus margin).
const PROCESSED_RETENTION_MS: u64 = 35 * DAY_MS;
/// Pushes read ahead of processing (the relay's window is 64).
const PUSH_QUEUE: usize = 64;
/// Prekey upload rounds per maintenance run.
const PREKEY_ROUNDS: usize = 3;
/// Application close code of a relay connection whose device was removed (spec/relay.md 1).
const RELAY_CLOSE_DEVICE_REMOVED: u32 = 1;
/// Application close code of a relay connection whose device was removed from its account's
/// device list (unlinked; spec/relay.md 1, 3.9).
const RELAY_CLOSE_DEVICE_UNLINKED: u32 = 5;
/// Application close code of a relay connection replaced by a newer connection of the same
/// device (spec/relay.md section 3.4).
const RELAY_CLOSE_REPLACED: u32 = 3;
/// How often `shutdown` checks that the helpers have let go of the store.
const RELEASE_POLL: Duration = Duration::from_millis(5);
/// How long `shutdown` waits for the background tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs store and crypto work on a blocking thread.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ClientError>
where
    F: FnOnce() -> Result<T, ClientError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ClientError::join)?
}

fn parse_code(code: &str) -> Result<[u8; 6], ClientError> {
    let bytes: [u8; 6] = code
        .as_bytes()
        .try_into()
        .map_err(|_| ClientError::InvalidCode)?;
    if bytes.iter().all(u8::is_ascii_digit) {
        Ok(bytes)
    } else {
        Err(ClientError::InvalidCode)
    }
}

/// A device as the relay lists it, compared with what this device knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The device.
    pub address: DeviceAddress,
    /// Its registered identity.
    pub identity: IdentityKey,
    /// Whether this identity is the one stored for the device: `None` if no identity is
    /// stored for it yet.
    pub known: Option<bool>,
}

struct Shared {
    engine: Arc<Engine>,
    config: ClientConfig,
    transport: Transport,
    conn: watch::Sender<Option<Connection>>,
    outbox_wake: Notify,
    shutdown: watch::Sender<bool>,
    events: EventSender,
    /// The connection state the app observes.
    state: watch::Sender<ConnectionState>,
    /// The relay's last reported prekey counts.
    prekey_counts: std::sync::Mutex<Option<PreKeyCounts>>,
    /// Serializes prekey maintenance runs.
    prekey_lock: Mutex<()>,
    /// When each contact account's device list was last fetched ([`DEVICE_LIST_REFRESH`]).
    list_checked: std::sync::Mutex<std::collections::HashMap<AccountId, tokio::time::Instant>>,
    /// Whether this client publishes its account's device list (off only for the hazmat
    /// version-1 client of tests).
    publishes_list: bool,
}

impl Shared {
    /// Reports an event; never waits (a slow app gets [`ClientEvent::Lagged`]).
    fn emit(&self, event: ClientEvent) {
        self.events.send(event);
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.send_replace(state);
    }

    fn connection(&self) -> Result<Connection, ClientError> {
        self.conn.borrow().clone().ok_or(ClientError::Offline)
    }

    /// The connection, waiting up to the request timeout for one (right after `register` or
    /// `open` the client may still be connecting).
    async fn wait_connection(&self) -> Result<Connection, ClientError> {
        let mut rx = self.conn.subscribe();
        let waited =
            tokio::time::timeout(self.config.request_timeout, rx.wait_for(|c| c.is_some())).await;
        match waited {
            Ok(Ok(c)) => c.clone().ok_or(ClientError::Offline),
            _ => Err(ClientError::Offline),
        }
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn set_prekey_counts(&self, counts: PreKeyCounts) {
        if let Ok(mut c) = self.prekey_counts.lock() {
            *c = Some(counts);
        }
    }

    fn prekey_counts(&self) -> Option<PreKeyCounts> {
        self.prekey_counts.lock().ok().and_then(|c| *c)
    }
}

/// A registered device connected (or reconnecting) to its relay: a cheap handle, `Clone`,
/// to share across tasks. Every clone drives the same client: one engine (the store's only
/// writer), one connection, one outbox, one [`EventReceiver`] (returned once, by
/// [`Client::register`] or [`Client::open`]).
///
/// One client per store: a SQLite store is locked while open ([`Store::open_sqlite`] fails
/// with [`crate::StoreError::InUse`] while another open, in this process or another, holds
/// it), and a client owns the [`Store`] it was given.
///
/// [`Client::shutdown`] (from any clone) acknowledges what was processed, closes the
/// connection cleanly and releases the store; every clone then answers
/// [`ClientError::ShutDown`]. Dropping the last clone without it aborts the background
/// tasks. Everything durable is in the [`Store`] either way.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

/// What the clones of a [`Client`] share.
struct Handle {
    address: DeviceAddress,
    identity: IdentityKey,
    /// `None` once shut down: the handles then hold neither the engine nor the store.
    shared: std::sync::Mutex<Option<Arc<Shared>>>,
    state: watch::Receiver<ConnectionState>,
    /// The background tasks; locked for the whole of a shutdown, so that a concurrent
    /// second `shutdown` returns only when the first is done.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Handle {
    fn shared(&self) -> Result<Arc<Shared>, ClientError> {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(ClientError::ShutDown)
    }

    fn take_shared(&self) -> Option<Arc<Shared>> {
        self.shared.lock().ok().and_then(|mut s| s.take())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The last clone is gone without `shutdown`: stop everything now.
        if let Some(shared) = self.shared.get_mut().ok().and_then(Option::take) {
            shared.shutdown.send_replace(true);
            shared.set_state(ConnectionState::Stopped(StopReason::ShutDown));
        }
        for t in self.tasks.get_mut().iter() {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.handle.address)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Registration step 1: asks the relay to send a verification code to `account`.
    /// Returns the code's lifetime in seconds.
    pub async fn request_code(
        config: &ClientConfig,
        account: &AccountId,
    ) -> Result<u32, ClientError> {
        let transport = Transport::new(config)?;
        let conn = transport.connect().await?;
        let result = conn.request_code(account).await;
        conn.close(0, b"done");
        transport.close().await;
        result
    }

    /// Registration step 2: registers a new device for `account` with the code received,
    /// authenticates, publishes prekeys (signed prekey, 100 one-time, 20 one-time KEM and a
    /// last-resort KEM prekey), and starts the client.
    ///
    /// The identity is generated and stored before the request, so an interrupted
    /// registration can be retried with the same store (and a new code). If this fails
    /// *after* the relay registered the device (while authenticating or publishing
    /// prekeys), the store already holds the registration: use [`Client::open`], which
    /// publishes the prekeys when it connects. Registering **replaces** every earlier device
    /// of the account at the relay; their connections are closed and they receive
    /// [`ClientEvent::Deregistered`].
    ///
    /// The account's first signed device list names this device as the key holder of
    /// [`ClientConfig::account_kind`] (`primary`, or `owner` of a business account) under
    /// [`ClientConfig::device_name`] (spec/devices.md 8.9); an invalid name is
    /// [`crate::LinkFailure::InvalidName`] before anything is sent.
    pub async fn register(
        store: Store,
        config: ClientConfig,
        account: AccountId,
        code: &str,
    ) -> Result<(Client, EventReceiver), ClientError> {
        Self::register_inner(store, config, account, code, None, true).await
    }

    /// Registration step 2 for an account that may have a registration lock (spec/pin.md
    /// section 10): registers like [`Client::register`]; if the relay refuses with the
    /// lock, recovers the master secret with `pin` through the configured guardians (each
    /// wrong PIN uses one of the guardians' attempts), registers with the
    /// registration-lock token, and enrols a fresh vault under the same PIN, which restores
    /// every guardian's attempt count and keeps the lock on.
    ///
    /// Errors: [`ClientError::WrongPin`] (with the attempts left),
    /// [`ClientError::VaultUnavailable`] (the vault is gone or too few guardians answer:
    /// wait until the lock lapses), [`ClientError::RegistrationLocked`] (the relay's own
    /// attempt limit for tokens is exhausted).
    pub async fn register_with_pin(
        store: Store,
        config: ClientConfig,
        account: AccountId,
        code: &str,
        pin: &str,
    ) -> Result<(Client, EventReceiver), ClientError> {
        let pin = crate::pin::normalized(pin)?;
        Self::register_inner(store, config, account, code, Some(pin), true).await
    }

    pub(crate) async fn register_inner(
        store: Store,
        config: ClientConfig,
        account: AccountId,
        code: &str,
        pin: Option<NormalizedPin>,
        publishes_list: bool,
    ) -> Result<(Client, EventReceiver), ClientError> {
        let code = parse_code(code)?;
        // The name this device gets on the first list is checked before anything is sent.
        config.key_holder_name(config.account_kind)?;
        let s = store.clone();
        let acct = account.clone();
        let record = blocking(move || match s.account()? {
            Some(a) if a.device.is_some() => Err(ClientError::AlreadyRegistered),
            Some(a) if a.account == acct => Ok(a),
            _ => {
                let a = AccountRecord {
                    identity: IdentityKeyPair::generate(&mut rand::rng()),
                    account: acct,
                    device: None,
                    registered_at: 0,
                };
                let mut batch = Batch::new();
                s.put_account(&mut batch, &a);
                s.commit(batch)?;
                Ok(a)
            }
        })
        .await?;
        let transport = Transport::new(&config)?;
        let conn = transport.connect().await?;
        let mut recovered = None;
        let device_id = match conn.register(&account, code, &record.identity, None).await {
            Ok(id) => id,
            Err(ClientError::RegistrationLocked(lock)) => {
                let Some(pin) = &pin else {
                    return Err(ClientError::RegistrationLocked(lock));
                };
                tracing::info!(
                    lapses_in_s = lock.lapses_in.as_secs(),
                    "registration lock: recovering the master secret through the guardians"
                );
                let (master, reenrol) =
                    crate::pin::recover(&config, &account, &lock.credential, pin).await?;
                let token = master.reglock_token();
                let id = conn
                    .register(&account, code, &record.identity, Some(*token.as_bytes()))
                    .await?;
                recovered = Some((master, pin.clone(), reenrol));
                id
            }
            Err(e) => return Err(e),
        };
        let record = AccountRecord {
            device: Some(DeviceId(device_id)),
            registered_at: now_ms(),
            ..record
        };
        let s = store.clone();
        let saved = record.clone();
        blocking(move || {
            let mut batch = Batch::new();
            s.put_account(&mut batch, &saved);
            Ok(s.commit(batch)?)
        })
        .await?;
        tracing::info!(device = device_id, "device registered");
        let engine = Arc::new(Engine::new(store, &record, config.session)?);
        // A new registration is a new device: the relay reports `sender_seq` 0, and the store
        // (whose account had no device yet) has sent nothing, so there is nothing to check.
        let ((one_time, kem), _queued, _sender_seq) =
            conn.authenticate(&engine.identity, &engine.address).await?;
        let (shared, events) = Self::start(engine, config, transport, publishes_list);
        // Publish before returning, so that others can reach the device right away.
        shared.set_prekey_counts((one_time, kem));
        maintain_prekeys(&shared, &conn).await?;
        // The master secret is stored before the list is published: with it, publishing
        // restores the account key from its backup (spec/devices.md 8.6).
        if let Some((master, pin, reenrol)) = recovered {
            if reenrol {
                // The recovery used a guardian's last attempt: a fresh vault. Best effort: the
                // device is registered and the lock is on either way; `set_pin` retries.
                if let Err(e) = enrol_pin(&shared, &conn, &pin, master.clone()).await {
                    tracing::warn!(error = %e, "could not enrol a fresh PIN vault; run set_pin again");
                    save_pin(&shared, &pin, master).await?;
                }
            } else {
                save_pin(&shared, &pin, master).await?;
            }
        }
        if publishes_list && let Err(e) = publish_own_list(&shared, &conn).await {
            // Retried on every connection until the relay confirms it.
            tracing::warn!(error = %e, "could not publish the device list yet");
        }
        Ok((Self::launch(shared, Some(conn)), events))
    }

    /// Opens an already registered device and starts connecting in the background (it
    /// works offline: messages sent meanwhile wait in the outbox). Watch
    /// [`Client::connection_state`] (or the events, for [`ClientEvent::Connected`]). Fails
    /// with [`ClientError::NotRegistered`] on a store without a registered device: ask
    /// [`Store::has_account`] first.
    pub async fn open(
        store: Store,
        config: ClientConfig,
    ) -> Result<(Client, EventReceiver), ClientError> {
        let s = store.clone();
        let record = blocking(move || {
            let record = s.account()?.ok_or(ClientError::NotRegistered)?;
            s.prune_processed(now_ms().saturating_sub(PROCESSED_RETENTION_MS))?;
            Ok(record)
        })
        .await?;
        if record.device.is_none() {
            return Err(ClientError::NotRegistered);
        }
        let engine = Arc::new(Engine::new(store, &record, config.session)?);
        let transport = Transport::new(&config)?;
        let (shared, events) = Self::start(engine, config, transport, true);
        Ok((Self::launch(shared, None), events))
    }

    fn start(
        engine: Arc<Engine>,
        config: ClientConfig,
        transport: Transport,
        publishes_list: bool,
    ) -> (Arc<Shared>, EventReceiver) {
        let (events, rx) = crate::event::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            engine,
            config,
            transport,
            conn: watch::channel(None).0,
            outbox_wake: Notify::new(),
            shutdown: watch::channel(false).0,
            events,
            state: watch::channel(ConnectionState::Connecting).0,
            prekey_counts: std::sync::Mutex::new(None),
            prekey_lock: Mutex::new(()),
            list_checked: std::sync::Mutex::new(std::collections::HashMap::new()),
            publishes_list,
        });
        (shared, rx)
    }

    /// Starts the background tasks (with `initial` as the first connection) and wraps
    /// `shared` in the first handle.
    fn launch(shared: Arc<Shared>, initial: Option<Connection>) -> Client {
        let tasks = vec![
            tokio::spawn(connection_task(shared.clone(), initial)),
            tokio::spawn(outbox_task(shared.clone())),
        ];
        Client {
            handle: Arc::new(Handle {
                address: shared.engine.address.clone(),
                identity: shared.engine.identity.public(),
                state: shared.state.subscribe(),
                shared: std::sync::Mutex::new(Some(shared)),
                tasks: Mutex::new(tasks),
            }),
        }
    }

    fn shared(&self) -> Result<Arc<Shared>, ClientError> {
        self.handle.shared()
    }

    /// This device's address.
    pub fn address(&self) -> &DeviceAddress {
        &self.handle.address
    }

    /// This device's public identity.
    pub fn identity(&self) -> IdentityKey {
        self.handle.identity
    }

    /// Whether the client is connected and authenticated right now.
    pub fn is_connected(&self) -> bool {
        self.shared()
            .is_ok_and(|shared| shared.conn.borrow().is_some())
    }

    /// The connection state, to show the app's user: connecting, connected, backing off
    /// (with why and when the next attempt is), or stopped ([`ConnectionState`]).
    ///
    /// `borrow()` on the receiver reads the current state; `changed().await` waits for the
    /// next change (states in between may be skipped: a watch channel keeps only the
    /// latest), `wait_for` for one that matches. After [`Client::shutdown`] the state is
    /// [`ConnectionState::Stopped`] and `changed` returns an error.
    pub fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        let mut rx = self.handle.state.clone();
        rx.mark_unchanged();
        rx
    }

    /// Sends text to every device of `account` (and to this account's other devices when
    /// `account` is our own). See [`Client::send_bytes`].
    pub async fn send_text(
        &self,
        account: &AccountId,
        text: &str,
    ) -> Result<MessageId, ClientError> {
        self.send(account, MessageBody::Text(text.to_owned())).await
    }

    /// Queues bytes for every device of `account` and returns the message id.
    ///
    /// The message is first committed to the durable outbox (and the history); the
    /// background sender then fans it out: it starts sessions with devices it has none with
    /// (`FetchBundles`), encrypts one envelope per device, **persists the advanced sessions
    /// and the envelopes before sending**, and sends. On `MismatchedDevices` it refreshes the
    /// device list and retries once. Success is reported as [`ClientEvent::Delivered`],
    /// failure for good as [`ClientEvent::SendFailed`]. Each recipient account has its own
    /// queue: order is kept per account and a failing account never holds up another.
    /// Connection loss and the relay's rate limit pause sending (also across a restart of
    /// the app); other transient failures are retried with backoff up to
    /// [`crate::MAX_SEND_ATTEMPTS`] times; permanent ones ([`ClientError::is_permanent`])
    /// end the message at once (spec/client-store.md section 10).
    pub async fn send_bytes(
        &self,
        account: &AccountId,
        bytes: &[u8],
    ) -> Result<MessageId, ClientError> {
        self.send(account, MessageBody::Bytes(bytes.to_vec())).await
    }

    async fn send(&self, account: &AccountId, body: MessageBody) -> Result<MessageId, ClientError> {
        let shared = self.shared()?;
        if shared.is_shutting_down() {
            return Err(ClientError::ShutDown);
        }
        let len = body.as_bytes().len();
        if len > MAX_BODY_LEN {
            return Err(ClientError::MessageTooLong {
                len,
                max: MAX_BODY_LEN,
            });
        }
        let engine = shared.engine.clone();
        let account = account.clone();
        let id = blocking(move || engine.enqueue(&account, &body, now_ms())).await?;
        shared.outbox_wake.notify_one();
        Ok(id)
    }

    /// Publishes prekeys now: an unconfirmed earlier upload, a signed prekey or last-resort
    /// KEM prekey that is missing or due for rotation, and one-time keys if the relay's last
    /// reported counts are low. The client also does this by itself after authenticating
    /// and on `PreKeysLow`.
    pub async fn publish_prekeys(&self) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let conn = shared.connection()?;
        maintain_prekeys(&shared, &conn).await
    }

    /// The safety number with `account`, to compare with the other side. When both this
    /// account and `account` have signed device lists it is over their account keys
    /// (spec/devices.md 8.4; fingerprint version 1) and the same for every listed `device`
    /// of `account`; otherwise it is between this device and the remote device, whose
    /// identity this device knows (from a session). A device neither listed nor known is
    /// [`ClientError::UnknownContact`].
    pub async fn safety_number(
        &self,
        account: &AccountId,
        device: DeviceId,
    ) -> Result<SafetyNumber, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let address = DeviceAddress::new(account.clone(), device);
        blocking(move || engine.shown_safety_number(&address)).await
    }

    /// Marks a device of `account` as verified: `safety_number` (the 60 digits, spaces
    /// allowed) must be the current safety number with it ([`Client::safety_number`]),
    /// compared by the user with the other side; otherwise
    /// [`ClientError::SafetyNumberMismatch`]. From then on, a new or changed identity of
    /// the account holds sending to it ([`ClientEvent::VerifiedIdentityChanged`]) until
    /// approved; verifying a changed identity approves it.
    pub async fn mark_verified(
        &self,
        account: &AccountId,
        device: DeviceId,
        safety_number: &str,
    ) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let address = DeviceAddress::new(account.clone(), device);
        let digits = safety_number.to_owned();
        blocking(move || engine.mark_verified(&address, &digits)).await?;
        shared.outbox_wake.notify_one();
        Ok(())
    }

    /// Accepts the changed identities of a verified `account` without verifying them
    /// (they become unverified) and resumes sending the messages held for it. Returns how
    /// many device identities were approved (0 if nothing was held).
    pub async fn approve_identity(&self, account: &AccountId) -> Result<usize, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let account = account.clone();
        let approved = blocking(move || engine.approve_identity(&account)).await?;
        shared.outbox_wake.notify_one();
        Ok(approved)
    }

    /// Whether the user verified a device of `account`, and whether its identity changed
    /// since ([`Verification`]).
    pub async fn verification(
        &self,
        account: &AccountId,
        device: DeviceId,
    ) -> Result<Verification, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let address = DeviceAddress::new(account.clone(), device);
        blocking(move || engine.verification(&address)).await
    }

    /// The devices of `account` as the relay lists them (needs a connection), each compared
    /// with the identity stored for it. This is the relay's own, unsigned view (`ListDevices`):
    /// for an account with a signed device list, messages go to the listed devices only
    /// (spec/devices.md 8.9), and this account's list is [`Client::own_devices`].
    pub async fn devices(&self, account: &AccountId) -> Result<Vec<Device>, ClientError> {
        let shared = self.shared()?;
        let conn = shared.connection()?;
        let listed = conn.list_devices(account).await?;
        let engine = shared.engine.clone();
        let account = account.clone();
        blocking(move || {
            let known: Vec<Contact> = engine.store.contacts(&account)?;
            listed
                .into_iter()
                .map(|d| {
                    let identity = IdentityKey::from_wire(&d.identity)
                        .map_err(|_| ClientError::protocol(ProtocolViolation::InvalidIdentity))?;
                    let known = known
                        .iter()
                        .find(|c| c.address.device.0 == d.device_id)
                        .map(|c| c.identity == identity);
                    Ok(Device {
                        address: DeviceAddress::new(account.clone(), DeviceId(d.device_id)),
                        identity,
                        known,
                    })
                })
                .collect()
        })
        .await
    }

    /// The newest `limit` messages exchanged with `account`, oldest first.
    pub async fn history(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        let account = account.clone();
        blocking(move || Ok(store.history(&account, limit)?)).await
    }

    /// Messages waiting in the outbox.
    pub async fn outbox_len(&self) -> Result<u64, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        blocking(move || Ok(store.outbox_len()?)).await
    }

    /// Stops the client: the background tasks stop, what was processed is acknowledged, the
    /// connection is closed cleanly, and the call waits (bounded) for all of it. Unsent
    /// messages stay in the outbox for the next `open`.
    ///
    /// Any clone may call it, any number of times: every clone answers
    /// [`ClientError::ShutDown`] from then on, [`Client::connection_state`] is
    /// [`ConnectionState::Stopped`], and the [`EventReceiver`] returns the events still
    /// queued, then `None`. A second call (concurrent or later) returns once the first is done.
    ///
    /// When it returns, the client no longer uses the [`Store`]: unless the app holds a
    /// clone of it, the store is closed and its lock released, so it can be opened again
    /// at once.
    pub async fn shutdown(&self) {
        let mut tasks = self.handle.tasks.lock().await;
        let Some(shared) = self.handle.take_shared() else {
            return;
        };
        // The connection task acknowledges what it has processed, then closes the
        // connection; whatever is still running after the grace period is aborted and the
        // endpoint closed.
        shared.shutdown.send_replace(true);
        shared.outbox_wake.notify_one();
        for mut t in tasks.drain(..) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut t).await.is_err() {
                t.abort();
            }
        }
        shared.transport.close().await;
        shared.set_state(ConnectionState::Stopped(StopReason::ShutDown));
        // Short-lived helpers (prekey maintenance, store work on blocking threads, calls
        // of other handles that began before) may still hold the engine, and with it the
        // store and its lock: wait (bounded) for them.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while (Arc::strong_count(&shared) > 1 || Arc::strong_count(&shared.engine) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(RELEASE_POLL).await;
        }
    }
}
