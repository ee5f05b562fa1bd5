//! The async client: registration, the connection task (authentication, pushes, acks,
//! prekey maintenance, reconnection) and the outbox task (sending).

use crate::config::{BackoffState, ClientConfig};
use crate::content::{MAX_BODY_LEN, MessageBody, MessageId};
use crate::engine::{Engine, Processed};
use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::outbox::{OUTBOX_SCAN_LIMIT, Retries, Verdict};
use crate::pin::{PinCheck, PinStatus};
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
/// Application close code of a relay connection replaced by a newer connection of the same
/// device (spec/relay.md section 3.4).
const RELAY_CLOSE_REPLACED: u32 = 3;
/// How often `shutdown` checks that the helpers have let go of the store.
const RELEASE_POLL: Duration = Duration::from_millis(5);
/// How long `shutdown` waits for the background tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The receiving end of a client's events.
pub type EventReceiver = mpsc::Receiver<ClientEvent>;

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
        .map_err(|e| ClientError::Internal(format!("blocking task failed: {e}")))?
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
    events: mpsc::Sender<ClientEvent>,
    /// The relay's last reported prekey counts.
    prekey_counts: std::sync::Mutex<Option<PreKeyCounts>>,
    /// Serializes prekey maintenance runs.
    prekey_lock: Mutex<()>,
}

impl Shared {
    async fn emit(&self, event: ClientEvent) {
        // A dropped receiver means the app does not want events; state is in the store.
        let _ = self.events.send(event).await;
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

/// A registered device connected (or reconnecting) to its relay.
///
/// One client per store: a SQLite store is locked while open ([`Store::open_sqlite`] fails
/// with [`crate::StoreError::InUse`] while another open, in this process or another, holds
/// it), and a client owns the [`Store`] it was given.
///
/// Dropping a client aborts its background tasks; prefer [`Client::shutdown`], which
/// acknowledges what was processed and closes the connection cleanly. Everything durable is
/// in the [`Store`] either way.
pub struct Client {
    shared: Arc<Shared>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.shared.engine.address)
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
    pub async fn register(
        store: Store,
        config: ClientConfig,
        account: AccountId,
        code: &str,
    ) -> Result<(Client, EventReceiver), ClientError> {
        Self::register_inner(store, config, account, code, None).await
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
        Self::register_inner(store, config, account, code, Some(pin)).await
    }

    async fn register_inner(
        store: Store,
        config: ClientConfig,
        account: AccountId,
        code: &str,
        pin: Option<NormalizedPin>,
    ) -> Result<(Client, EventReceiver), ClientError> {
        let code = parse_code(code)?;
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
        let (client, events) = Self::start(engine, config, transport);
        // Publish before returning, so that others can reach the device right away.
        let shared = client.shared.clone();
        shared.set_prekey_counts((one_time, kem));
        maintain_prekeys(&shared, &conn).await?;
        if let Some((master, pin, reenrol)) = recovered {
            if reenrol {
                // The recovery used a guardian's last attempt: a fresh vault. Best effort: the
                // device is registered and the lock is on either way; `set_pin` retries.
                if let Err(e) = client.enrol_pin(&conn, &pin, master.clone()).await {
                    tracing::warn!(error = %e, "could not enrol a fresh PIN vault; run set_pin again");
                    client.save_pin(&pin, master).await?;
                }
            } else {
                client.save_pin(&pin, master).await?;
            }
        }
        client.spawn_tasks(Some(conn));
        Ok((client, events))
    }

    /// Opens an already registered device and starts connecting in the background (it
    /// works offline: messages sent meanwhile wait in the outbox). Watch the events for
    /// [`ClientEvent::Connected`].
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
        let (client, events) = Self::start(engine, config, transport);
        client.spawn_tasks(None);
        Ok((client, events))
    }

    fn start(
        engine: Arc<Engine>,
        config: ClientConfig,
        transport: Transport,
    ) -> (Client, EventReceiver) {
        let (events, rx) = mpsc::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            engine,
            config,
            transport,
            conn: watch::channel(None).0,
            outbox_wake: Notify::new(),
            shutdown: watch::channel(false).0,
            events,
            prekey_counts: std::sync::Mutex::new(None),
            prekey_lock: Mutex::new(()),
        });
        (
            Client {
                shared,
                tasks: std::sync::Mutex::new(Vec::new()),
            },
            rx,
        )
    }

    fn spawn_tasks(&self, initial: Option<Connection>) {
        let a = tokio::spawn(connection_task(self.shared.clone(), initial));
        let b = tokio::spawn(outbox_task(self.shared.clone()));
        if let Ok(mut t) = self.tasks.lock() {
            t.push(a);
            t.push(b);
        }
    }

    /// This device's address.
    pub fn address(&self) -> &DeviceAddress {
        &self.shared.engine.address
    }

    /// This device's public identity.
    pub fn identity(&self) -> IdentityKey {
        self.shared.engine.identity.public()
    }

    /// The local store.
    pub fn store(&self) -> &Store {
        &self.shared.engine.store
    }

    /// Whether the client is connected and authenticated right now.
    pub fn is_connected(&self) -> bool {
        self.shared.conn.borrow().is_some()
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
        if self.shared.is_shutting_down() {
            return Err(ClientError::ShutDown);
        }
        let len = body.as_bytes().len();
        if len > MAX_BODY_LEN {
            return Err(ClientError::MessageTooLong {
                len,
                max: MAX_BODY_LEN,
            });
        }
        let engine = self.shared.engine.clone();
        let account = account.clone();
        let id = blocking(move || engine.enqueue(&account, &body, now_ms())).await?;
        self.shared.outbox_wake.notify_one();
        Ok(id)
    }

    /// Publishes prekeys now: an unconfirmed earlier upload, a signed prekey or last-resort
    /// KEM prekey that is missing or due for rotation, and one-time keys if the relay's last
    /// reported counts are low. The client also does this by itself after authenticating
    /// and on `PreKeysLow`.
    pub async fn publish_prekeys(&self) -> Result<(), ClientError> {
        let conn = self.shared.connection()?;
        maintain_prekeys(&self.shared, &conn).await
    }

    /// The safety number between this device and a remote device whose identity this
    /// device knows (from a session).
    pub async fn safety_number(
        &self,
        account: &AccountId,
        device: DeviceId,
    ) -> Result<SafetyNumber, ClientError> {
        let engine = self.shared.engine.clone();
        let address = DeviceAddress::new(account.clone(), device);
        blocking(move || Ok(engine.safety_number(&address)?.1)).await
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
        let engine = self.shared.engine.clone();
        let address = DeviceAddress::new(account.clone(), device);
        let digits = safety_number.to_owned();
        blocking(move || engine.mark_verified(&address, &digits)).await?;
        self.shared.outbox_wake.notify_one();
        Ok(())
    }

    /// Accepts the changed identities of a verified `account` without verifying them
    /// (they become unverified) and resumes sending the messages held for it. Returns how
    /// many device identities were approved (0 if nothing was held).
    pub async fn approve_identity(&self, account: &AccountId) -> Result<usize, ClientError> {
        let engine = self.shared.engine.clone();
        let account = account.clone();
        let approved = blocking(move || engine.approve_identity(&account)).await?;
        self.shared.outbox_wake.notify_one();
        Ok(approved)
    }

    /// Whether the user verified a device of `account`, and whether its identity changed
    /// since ([`Verification`]).
    pub async fn verification(
        &self,
        account: &AccountId,
        device: DeviceId,
    ) -> Result<Verification, ClientError> {
        let engine = self.shared.engine.clone();
        let address = DeviceAddress::new(account.clone(), device);
        blocking(move || Ok(engine.safety_number(&address)?.0.verification)).await
    }

    /// The devices of `account` as the relay lists them (needs a connection), each compared
    /// with the identity stored for it.
    pub async fn devices(&self, account: &AccountId) -> Result<Vec<Device>, ClientError> {
        let conn = self.shared.connection()?;
        let listed = conn.list_devices(account).await?;
        let engine = self.shared.engine.clone();
        let account = account.clone();
        blocking(move || {
            let known: Vec<Contact> = engine.store.contacts(&account)?;
            listed
                .into_iter()
                .map(|d| {
                    let identity = IdentityKey::from_wire(&d.identity)
                        .map_err(|_| ClientError::protocol("invalid identity in device list"))?;
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

    /// Sets the two-step verification PIN, or changes it (spec/pin.md section 11): enrols a
    /// vault holding the master secret at every configured guardian, turns the
    /// registration lock on at the relay, and stores the master secret and a local
    /// verifier for reminders. Changing keeps the master secret (and the lock's token).
    /// Needs a connection (waits up to the request timeout for one); all guardians must be
    /// reachable.
    pub async fn set_pin(&self, pin: &str) -> Result<(), ClientError> {
        let pin = crate::pin::normalized(pin)?;
        let conn = self.shared.wait_connection().await?;
        let store = self.shared.engine.store.clone();
        let master = blocking(move || Ok(store.pin()?.map(|p| p.master)))
            .await?
            .unwrap_or_else(|| MasterSecret::generate(&mut rand::rng()));
        self.enrol_pin(&conn, &pin, master).await
    }

    async fn enrol_pin(
        &self,
        conn: &Connection,
        pin: &NormalizedPin,
        master: MasterSecret,
    ) -> Result<(), ClientError> {
        let shared = &self.shared;
        crate::pin::enrol(
            conn,
            &shared.config,
            &shared.engine.address.account,
            pin,
            &master,
        )
        .await?;
        self.save_pin(pin, master).await?;
        tracing::info!("PIN set; registration lock on");
        Ok(())
    }

    /// Stores the master secret and a new local verifier of `pin`.
    async fn save_pin(&self, pin: &NormalizedPin, master: MasterSecret) -> Result<(), ClientError> {
        let store = self.shared.engine.store.clone();
        let params = self.shared.config.pin_params;
        let pin = pin.clone();
        blocking(move || {
            let verifier =
                LocalVerifier::create(&pin, &params, &mut rand::rng()).map_err(ClientError::Pin)?;
            let reminder = ReminderState::new(crate::client::now_ms() / 1000);
            let mut batch = Batch::new();
            store.put_pin(
                &mut batch,
                &PinRecord {
                    master,
                    verifier: verifier.to_bytes(),
                    reminder: reminder.encode().to_vec(),
                },
            );
            Ok(store.commit(batch)?)
        })
        .await
    }

    /// Turns two-step verification off: clears the registration lock, deletes the vault at
    /// every guardian and forgets the master secret and the local verifier.
    pub async fn disable_pin(&self) -> Result<(), ClientError> {
        let conn = self.shared.wait_connection().await?;
        crate::pin::disable(&conn, &self.shared.config).await?;
        let store = self.shared.engine.store.clone();
        blocking(move || {
            let mut batch = Batch::new();
            store.delete_pin(&mut batch);
            Ok(store.commit(batch)?)
        })
        .await?;
        tracing::info!("PIN disabled; registration lock off");
        Ok(())
    }

    /// Whether a PIN is set and whether a reminder is due.
    pub async fn pin_status(&self) -> Result<PinStatus, ClientError> {
        let store = self.shared.engine.store.clone();
        blocking(move || {
            Ok(match store.pin()? {
                None => PinStatus {
                    enabled: false,
                    reminder_due: false,
                },
                Some(p) => PinStatus {
                    enabled: true,
                    reminder_due: ReminderState::decode(&p.reminder)
                        .map_err(ClientError::Pin)?
                        .reminder_due(now_ms() / 1000),
                },
            })
        })
        .await
    }

    /// Checks `pin` against the local verifier for a "do you still remember your PIN"
    /// reminder. Local only (no guardian attempt is used); rate-limited after repeated
    /// wrong answers, and the limit survives restarts (spec/pin.md section 11).
    pub async fn check_pin(&self, pin: &str) -> Result<PinCheck, ClientError> {
        let store = self.shared.engine.store.clone();
        let pin = pin.to_owned();
        blocking(move || {
            let mut record = store.pin()?.ok_or(ClientError::PinNotSet)?;
            let now = now_ms() / 1000;
            let mut state = ReminderState::decode(&record.reminder).map_err(ClientError::Pin)?;
            if !state.can_check(now) {
                return Ok(PinCheck::RateLimited {
                    retry_in: Duration::from_secs(state.locked_until().saturating_sub(now)),
                });
            }
            let ok = match sealpost_pin::normalize::normalize(&pin) {
                Ok(p) => LocalVerifier::from_bytes(&record.verifier)
                    .and_then(|v| v.verify(&p))
                    .map_err(ClientError::Pin)?,
                Err(_) => false,
            };
            state.record_result(ok, now);
            record.reminder = state.encode().to_vec();
            let mut batch = Batch::new();
            store.put_pin(&mut batch, &record);
            store.commit(batch)?;
            Ok(if ok {
                PinCheck::Correct
            } else {
                PinCheck::Wrong
            })
        })
        .await
    }

    /// The key for encrypted backups derived from the master secret (spec/pin.md section
    /// 6.1), if a PIN is set. It is recovered with the PIN on a new device.
    pub async fn backup_key(
        &self,
    ) -> Result<Option<sealpost_crypto::Zeroizing<[u8; 32]>>, ClientError> {
        let store = self.shared.engine.store.clone();
        blocking(move || Ok(store.pin()?.map(|p| p.master.backup_key()))).await
    }

    /// The newest `limit` messages exchanged with `account`, oldest first.
    pub async fn history(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        let store = self.shared.engine.store.clone();
        let account = account.clone();
        blocking(move || Ok(store.history(&account, limit)?)).await
    }

    /// Messages waiting in the outbox.
    pub async fn outbox_len(&self) -> Result<u64, ClientError> {
        let store = self.shared.engine.store.clone();
        blocking(move || Ok(store.outbox_len()?)).await
    }

    /// Stops the background tasks, closes the connection cleanly and waits (bounded) for
    /// the tasks to finish. Unsent messages stay in the outbox for the next `open`.
    ///
    /// When it returns, the client no longer uses the [`Store`]: unless the app holds a
    /// clone of it, the store is closed and its lock released, so it can be opened again
    /// at once.
    pub async fn shutdown(self) {
        // The connection task acknowledges what it has processed, then closes the
        // connection; whatever is still running after the grace period is aborted and the
        // endpoint closed.
        self.shared.shutdown.send_replace(true);
        self.shared.outbox_wake.notify_one();
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for mut t in tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut t).await.is_err() {
                t.abort();
            }
        }
        self.shared.transport.close().await;
        // Short-lived helpers (prekey maintenance, store work on blocking threads) may still
        // hold the engine, and with it the store and its lock: wait (bounded) for them.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while (Arc::strong_count(&self.shared) > 1 || Arc::strong_count(&self.shared.engine) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(RELEASE_POLL).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// Uploads prekeys until nothing more is due (bounded rounds), tracking the relay's counts.
async fn maintain_prekeys(shared: &Arc<Shared>, conn: &Connection) -> Result<(), ClientError> {
    let _serial = shared.prekey_lock.lock().await;
    for _ in 0..PREKEY_ROUNDS {
        let engine = shared.engine.clone();
        let counts = shared.prekey_counts();
        let now_s = now_ms() / 1000;
        let Some(upload) = blocking(move || engine.plan_prekeys(counts, now_s)).await? else {
            return Ok(());
        };
        let (one_time, kem) = (upload.one_time.len(), upload.kem.len());
        let stored = match conn.upload_prekeys(upload.clone()).await {
            Ok(stored) => {
                tracing::debug!(one_time, kem, "prekeys published");
                shared.set_prekey_counts(stored);
                true
            }
            Err(e) if !e.is_transient() => {
                // E.g. InvalidPreKey for a re-sent upload the relay had already stored
                // before the response was lost. Drop it so we do not loop; the next counts
                // tell whether more keys are needed.
                tracing::warn!(error = %e, "prekey upload rejected; discarded");
                false
            }
            Err(e) => return Err(e),
        };
        let engine = shared.engine.clone();
        blocking(move || engine.prekeys_uploaded(&upload)).await?;
        if !stored {
            return Ok(());
        }
    }
    Ok(())
}

async fn connect_and_authenticate(shared: &Arc<Shared>) -> Result<Connection, ClientError> {
    let conn = shared.transport.connect().await?;
    let engine = &shared.engine;
    let ((one_time, kem), queued, sender_seq) =
        conn.authenticate(&engine.identity, &engine.address).await?;
    tracing::debug!(queued, "authenticated to the relay");
    shared.set_prekey_counts((one_time, kem));
    // Before the connection is handed to the outbox task, so nothing is encrypted from a
    // rolled-back state on it (spec/client-store.md section 9).
    let engine = engine.clone();
    if let Some(ev) = blocking(move || engine.check_rollback(sender_seq)).await? {
        shared.emit(ev).await;
    }
    Ok(conn)
}

/// The relay closed the connection because a new registration removed this device
/// (application close code 1, spec/relay.md section 1).
fn is_device_removed(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code == quinn::VarInt::from_u32(RELAY_CLOSE_DEVICE_REMOVED))
}

/// The relay closed the connection because this device authenticated on a newer connection
/// (application close code 3, spec/relay.md section 3.4).
fn is_replaced(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code == quinn::VarInt::from_u32(RELAY_CLOSE_REPLACED))
}

async fn connection_task(shared: Arc<Shared>, mut initial: Option<Connection>) {
    let mut backoff = BackoffState::new(shared.config.reconnect);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if shared.is_shutting_down() {
            break;
        }
        let attempt = match initial.take() {
            Some(c) => Ok(c),
            None => tokio::select! {
                r = connect_and_authenticate(&shared) => r,
                _ = shutdown.changed() => break,
            },
        };
        match attempt {
            Ok(conn) => {
                backoff.reset();
                shared.conn.send_replace(Some(conn.clone()));
                shared.emit(ClientEvent::Connected).await;
                shared.outbox_wake.notify_one();
                {
                    let shared = shared.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        if let Err(e) = maintain_prekeys(&shared, &conn).await {
                            tracing::warn!(error = %e, "prekey maintenance failed");
                        }
                    });
                }
                run_pushes(&shared, &conn, &mut shutdown).await;
                shared.conn.send_replace(None);
                // A node that stopped answering (idle timeout, or requests timing out) is
                // likely gone: try the next address first. A reset or a close comes from a
                // live node (a restart resets old connections at once): stay with it.
                if conn.given_up()
                    || matches!(conn.close_reason(), Some(quinn::ConnectionError::TimedOut))
                {
                    shared.transport.connection_died(&conn);
                }
                if shared.is_shutting_down() {
                    conn.close(0, b"client shutdown");
                }
                shared.emit(ClientEvent::Disconnected).await;
                if conn.close_reason().is_some_and(|r| is_device_removed(&r)) {
                    tracing::error!("this device was removed by a new registration of its account");
                    shared.emit(ClientEvent::Deregistered).await;
                    break;
                }
                if conn.close_reason().is_some_and(|r| is_replaced(&r)) {
                    tracing::error!(
                        "another copy of this device connected to the relay; not reconnecting"
                    );
                    shared.emit(ClientEvent::ReplacedByAnotherConnection).await;
                    break;
                }
            }
            Err(e) if e.relay_code() == Some(ErrorCode::AuthFailed) => {
                tracing::error!("the relay does not know this device any more");
                shared.emit(ClientEvent::Deregistered).await;
                break;
            }
            Err(e) => tracing::info!(error = %e, "connecting to the relay failed"),
        }
        if shared.is_shutting_down() {
            break;
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
}

async fn flush_acks(conn: &Connection, acks: &mut Vec<u64>) {
    if acks.is_empty() {
        return;
    }
    let ids = std::mem::take(acks);
    if let Err(e) = conn.ack(ids).await {
        // Not acknowledged means delivered again later and de-duplicated then.
        tracing::debug!(error = %e, "ack failed");
    }
}

/// Reads pushes in stream order (a dedicated reader task, so that no push is lost to a
/// cancelled read) and processes them one at a time, so that messages reach the app in
/// delivery order. Returns when the connection ends or on shutdown.
async fn run_pushes(shared: &Arc<Shared>, conn: &Connection, shutdown: &mut watch::Receiver<bool>) {
    let (tx, mut pushes) = mpsc::channel(PUSH_QUEUE);
    let reader = {
        let conn = conn.clone();
        tokio::spawn(async move {
            loop {
                let (pushes, fatal) = match conn.accept_pushes().await {
                    Ok(pushes) => (pushes.into_iter().map(Ok).collect(), false),
                    Err(e) => {
                        let fatal = matches!(e, ClientError::Connection(_));
                        (vec![Err(e)], fatal)
                    }
                };
                for push in pushes {
                    if tx.send(push).await.is_err() {
                        return;
                    }
                }
                if fatal {
                    break;
                }
            }
        })
    };
    read_pushes(shared, conn, shutdown, &mut pushes).await;
    reader.abort();
}

async fn read_pushes(
    shared: &Arc<Shared>,
    conn: &Connection,
    shutdown: &mut watch::Receiver<bool>,
    pushes: &mut mpsc::Receiver<Result<Push, ClientError>>,
) {
    let mut acks: Vec<u64> = Vec::new();
    loop {
        let push = tokio::select! {
            p = pushes.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = tokio::time::sleep(ACK_DELAY), if !acks.is_empty() => {
                flush_acks(conn, &mut acks).await;
                continue;
            }
            _ = shutdown.changed() => {
                flush_acks(conn, &mut acks).await;
                return;
            }
        };
        match push {
            Ok(Push::Deliver(d)) => {
                let server_id = d.server_id;
                let from = d.sender.clone();
                let message_id = MessageId::from_bytes(d.message_id);
                let engine = shared.engine.clone();
                match blocking(move || engine.process_delivery(&d, now_ms())).await {
                    Ok(Processed::Duplicate) => {}
                    Ok(Processed::Accepted(events)) => {
                        for ev in events {
                            shared.emit(ev).await;
                        }
                    }
                    Ok(Processed::Rejected(why)) => {
                        tracing::warn!(reason = why, "undecryptable envelope dropped");
                        shared
                            .emit(ClientEvent::Undecryptable { from, message_id })
                            .await;
                    }
                    Err(e) => {
                        // Not acknowledged: it comes again on the next connection. Drop this
                        // one so that later envelopes are not processed out of order.
                        tracing::error!(error = %e, "storing an incoming message failed");
                        flush_acks(conn, &mut acks).await;
                        conn.close(1, b"client store failure");
                        return;
                    }
                }
                acks.push(server_id);
                if acks.len() >= ACK_BATCH {
                    flush_acks(conn, &mut acks).await;
                }
            }
            Ok(Push::PreKeysLow {
                one_time_prekeys,
                kem_prekeys,
            }) => {
                shared.set_prekey_counts((one_time_prekeys, kem_prekeys));
                let shared = shared.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    if let Err(e) = maintain_prekeys(&shared, &conn).await {
                        tracing::warn!(error = %e, "prekey replenishment failed");
                    }
                });
            }
            Ok(Push::QueueDrained) => flush_acks(conn, &mut acks).await,
            Err(ClientError::Connection(e)) => {
                tracing::info!(error = %e, "relay connection ended");
                return;
            }
            Err(e) => {
                if conn.close_reason().is_some() {
                    return;
                }
                tracing::warn!(error = %e, "bad push stream ignored");
            }
        }
    }
}

/// Why a round of the send loop ended.
enum Drained {
    /// The outbox is empty.
    Empty,
    /// Every message left waits for its recipient's retry time (the earliest is given).
    Waiting(tokio::time::Instant),
    /// The connection failed, the relay asked this device to slow down, or the relay cannot
    /// reach its storage: everything waits.
    Stall(Stall),
}

/// Why the whole outbox stopped draining.
#[derive(Debug, PartialEq, Eq)]
enum Stall {
    /// Retry after this long (the relay said so).
    After(Duration),
    /// Retry with backoff.
    Backoff,
}

async fn outbox_task(shared: Arc<Shared>) {
    let mut conn_rx = shared.conn.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = BackoffState::new(shared.config.reconnect);
    let mut retries = Retries::default();
    loop {
        if shared.is_shutting_down() {
            return;
        }
        let current = conn_rx.borrow_and_update().clone();
        let Some(conn) = current else {
            tokio::select! {
                r = conn_rx.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        };
        let drained = tokio::select! {
            r = drain_outbox(&shared, &conn, &mut retries) => r,
            _ = shutdown.changed() => return,
        };
        let delay = match drained {
            Drained::Empty | Drained::Waiting(_) => {
                backoff.reset();
                let until = match drained {
                    Drained::Waiting(at) => Some(at),
                    _ => None,
                };
                tokio::select! {
                    _ = shared.outbox_wake.notified() => {}
                    _ = tokio::time::sleep_until(until.unwrap_or_else(tokio::time::Instant::now)), if until.is_some() => {}
                    r = conn_rx.changed() => if r.is_err() { return },
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            Drained::Stall(Stall::After(d)) => d,
            Drained::Stall(Stall::Backoff) => backoff.next_delay(),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Ends an outgoing message for good: out of the outbox, history failed, `SendFailed`.
async fn give_up(
    shared: &Arc<Shared>,
    entry: crate::store::OutboxEntry,
    error: ClientError,
) -> Result<(), ClientError> {
    tracing::warn!(error = %error, "message could not be sent; giving up");
    let message_id = entry.message_id;
    let engine = shared.engine.clone();
    blocking(move || engine.fail(&entry, now_ms())).await?;
    shared
        .emit(ClientEvent::SendFailed { message_id, error })
        .await;
    Ok(())
}

/// One or more rounds over the outbox (spec/client-store.md section 10). Each round reads the
/// first [`OUTBOX_SCAN_LIMIT`] entries in order and walks them: an entry is tried only if
/// every earlier entry to the same recipient left the outbox in this round and the
/// recipient is not waiting for a retry, so that order is kept per recipient and one
/// recipient never holds up another. A permanent error ends the message at once; a
/// transient one makes its recipient wait (bounded attempts, backoff); a connection
/// failure or the relay's `RateLimited` stops the whole loop. Rounds repeat while they make
/// progress.
async fn drain_outbox(shared: &Arc<Shared>, conn: &Connection, retries: &mut Retries) -> Drained {
    loop {
        let engine = shared.engine.clone();
        let scan = match blocking(move || engine.outbox_scan(OUTBOX_SCAN_LIMIT)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return Drained::Stall(Stall::Backoff);
            }
        };
        if scan.is_empty() {
            return Drained::Empty;
        }
        let mut progressed = false;
        let mut held = false;
        let mut blocked: HashSet<AccountId> = HashSet::new();
        for (seq, entry) in scan {
            let entry = match entry {
                Ok(e) => e,
                Err(error) if error.is_permanent() => {
                    // Its message id and recipient are unknowable: drop the row, report it.
                    tracing::error!(error = %error, "unreadable outbox entry dropped");
                    let engine = shared.engine.clone();
                    if let Err(e) = blocking(move || engine.drop_outbox_row(seq)).await {
                        tracing::error!(error = %e, "dropping an unreadable outbox entry failed");
                        return Drained::Stall(Stall::Backoff);
                    }
                    shared
                        .emit(ClientEvent::UnreadableOutboxEntry { error })
                        .await;
                    progressed = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox failed");
                    return Drained::Stall(Stall::Backoff);
                }
            };
            let recipient = entry.recipient.clone();
            if blocked.contains(&recipient)
                || !retries.ready(&recipient, tokio::time::Instant::now())
            {
                blocked.insert(recipient);
                continue;
            }
            let message_id = entry.message_id;
            let failure = match send_entry(shared, conn, entry.clone()).await {
                Ok((entry, timestamp)) => {
                    let engine = shared.engine.clone();
                    if let Err(e) = blocking(move || engine.complete(&entry, timestamp)).await {
                        tracing::error!(error = %e, "recording a delivery failed");
                        return Drained::Stall(Stall::Backoff);
                    }
                    retries.done(&recipient);
                    progressed = true;
                    shared
                        .emit(ClientEvent::Delivered {
                            message_id,
                            timestamp,
                        })
                        .await;
                    continue;
                }
                Err(e) => e,
            };
            let retry_after = relay_retry_after(&failure);
            if failure == ClientError::UnapprovedIdentity {
                // Held until the user approves or verifies; `approve_identity` wakes us.
                tracing::debug!("recipient held: a verified contact's identity changed");
                held = true;
                blocked.insert(recipient);
                continue;
            }
            if let Some(stall) = stalls_everything(&failure) {
                tracing::debug!(error = %failure, "sending stalled; will retry");
                return Drained::Stall(stall);
            }
            let ended = if failure.is_permanent() {
                Some(failure)
            } else {
                match retries.failed(
                    &recipient,
                    message_id,
                    tokio::time::Instant::now(),
                    retry_after,
                ) {
                    Verdict::RetryAt(_) => {
                        tracing::debug!(error = %failure, "send failed; the recipient's queue waits");
                        blocked.insert(recipient.clone());
                        None
                    }
                    Verdict::GiveUp(attempts) => Some(ClientError::SendAttemptsExhausted {
                        attempts,
                        last: Box::new(failure),
                    }),
                }
            };
            if let Some(error) = ended {
                if let Err(e) = give_up(shared, entry, error).await {
                    tracing::error!(error = %e, "recording a failed send failed");
                    return Drained::Stall(Stall::Backoff);
                }
                retries.done(&recipient);
                progressed = true;
            }
        }
        if !progressed {
            return match retries.next_ready() {
                Some(at) => Drained::Waiting(at),
                // Only held recipients are left: wait for an approval (or a new message).
                None if held => Drained::Empty,
                // Nothing waits and nothing moved: only possible if the outbox changed
                // under us; read it again after the backoff.
                None => Drained::Stall(Stall::Backoff),
            };
        }
    }
}

/// The relay's `retry_after`, if the failure is a relay error that gives one.
fn relay_retry_after(failure: &ClientError) -> Option<Duration> {
    match failure {
        ClientError::Relay { retry_after, .. } if *retry_after > 0 => {
            Some(Duration::from_secs(u64::from(*retry_after)))
        }
        _ => None,
    }
}

/// Whether a failed send stops the whole send loop rather than counting an attempt against
/// its message (spec/client-store.md section 10), and how long it waits: a broken
/// connection (reconnect backoff); the relay's `RateLimited`, which limits this device's
/// sends as a whole; and the relay's `Unavailable`, its storage out of reach, which fails
/// every send alike however long the outage lasts (the message is not at fault: it stays
/// queued with its attempts untouched).
fn stalls_everything(failure: &ClientError) -> Option<Stall> {
    if failure.is_connectivity() {
        return Some(Stall::Backoff);
    }
    match failure.relay_code() {
        Some(ErrorCode::RateLimited | ErrorCode::Unavailable) => {
            Some(relay_retry_after(failure).map_or(Stall::Backoff, Stall::After))
        }
        _ => None,
    }
}

/// Fans one outbox entry out and sends it; returns the entry as prepared and the relay
/// timestamp.
async fn send_entry(
    shared: &Arc<Shared>,
    conn: &Connection,
    mut entry: crate::store::OutboxEntry,
) -> Result<(crate::store::OutboxEntry, u64), ClientError> {
    let recipient = entry.recipient.clone();
    {
        let engine = shared.engine.clone();
        let recipient = recipient.clone();
        blocking(move || engine.check_sendable(&recipient)).await?;
    }
    if entry.envelopes.is_none() {
        let mut devices = recipient_devices(shared, &recipient).await?;
        if devices.is_empty() {
            refresh_devices(shared, conn, &recipient, false).await?;
            devices = recipient_devices(shared, &recipient).await?;
        }
        entry = prepare(shared, conn, entry, devices).await?;
    }
    let envelopes = entry.envelopes.clone().unwrap_or_default();
    match conn
        .send(
            *entry.message_id.as_bytes(),
            entry.sender_seq,
            &recipient,
            envelopes,
        )
        .await
    {
        Ok(ts) => Ok((entry, ts)),
        Err(e) if e.relay_code() == Some(ErrorCode::MismatchedDevices) => {
            tracing::debug!("recipient devices changed; refreshing");
            refresh_devices(shared, conn, &recipient, true).await?;
            let devices = recipient_devices(shared, &recipient).await?;
            entry = prepare(shared, conn, entry, devices).await?;
            let envelopes = entry.envelopes.clone().unwrap_or_default();
            let ts = conn
                .send(
                    *entry.message_id.as_bytes(),
                    entry.sender_seq,
                    &recipient,
                    envelopes,
                )
                .await?;
            Ok((entry, ts))
        }
        Err(e) => Err(e),
    }
}

async fn recipient_devices(
    shared: &Arc<Shared>,
    account: &AccountId,
) -> Result<Vec<DeviceId>, ClientError> {
    let engine = shared.engine.clone();
    let account = account.clone();
    blocking(move || engine.recipient_devices(&account)).await
}

async fn prepare(
    shared: &Arc<Shared>,
    conn: &Connection,
    entry: crate::store::OutboxEntry,
    mut devices: Vec<DeviceId>,
) -> Result<crate::store::OutboxEntry, ClientError> {
    if devices.is_empty() {
        return Err(ClientError::NoDevices);
    }
    let (entry, left) = renew_sessions(shared, conn, entry, &devices).await?;
    if !left.is_empty() {
        // Gone, or registered again with another identity: the ordinary refresh forgets
        // them or starts sessions with their successors.
        refresh_devices(shared, conn, &entry.recipient, true).await?;
        devices = recipient_devices(shared, &entry.recipient).await?;
        if devices.is_empty() {
            return Err(ClientError::NoDevices);
        }
    }
    let engine = shared.engine.clone();
    blocking(move || engine.prepare(entry, &devices)).await
}

/// After a rollback ([`ClientEvent::StoreRolledBack`]): starts new sessions with the devices
/// `entry` still has to encrypt for whose sessions were set aside (one `FetchBundles`).
/// Returns the entry and the devices that got no new session.
async fn renew_sessions(
    shared: &Arc<Shared>,
    conn: &Connection,
    entry: crate::store::OutboxEntry,
    devices: &[DeviceId],
) -> Result<(crate::store::OutboxEntry, Vec<DeviceId>), ClientError> {
    let engine = shared.engine.clone();
    let devs = devices.to_vec();
    let (entry, renew) = blocking(move || {
        let renew = engine.sessions_to_renew(&entry, &devs)?;
        Ok((entry, renew))
    })
    .await?;
    if renew.is_empty() {
        return Ok((entry, renew));
    }
    tracing::info!(
        devices = renew.len(),
        "renewing sessions after a store rollback"
    );
    let bundles = conn.fetch_bundles(&entry.recipient).await?;
    let engine = shared.engine.clone();
    let account = entry.recipient.clone();
    let left = blocking(move || engine.renew_sessions(&account, &renew, &bundles)).await?;
    Ok((entry, left))
}

/// Learns an account's devices from the relay and starts sessions where missing. With
/// `list`, asks `ListDevices` first (and forgets devices that are gone) and fetches bundles
/// only if some device lacks a session; without, fetches bundles directly.
async fn refresh_devices(
    shared: &Arc<Shared>,
    conn: &Connection,
    account: &AccountId,
    list: bool,
) -> Result<(), ClientError> {
    let listed = if list {
        Some(conn.list_devices(account).await?)
    } else {
        None
    };
    let missing = match &listed {
        Some(l) => {
            let engine = shared.engine.clone();
            let account = account.clone();
            let l = l.clone();
            Some(blocking(move || engine.missing_devices(&account, &l)).await?)
        }
        None => None,
    };
    let bundles = match &missing {
        Some(m) if m.is_empty() => Vec::new(),
        _ => {
            let mut b = conn.fetch_bundles(account).await?;
            if let Some(m) = &missing {
                b.retain(|x| m.contains(&x.device_id));
            }
            b
        }
    };
    let engine = shared.engine.clone();
    let account = account.clone();
    let events =
        blocking(move || engine.apply_refresh(&account, listed.as_deref(), &bundles, now_ms()))
            .await?;
    for ev in events {
        shared.emit(ev).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(code: ErrorCode, retry_after: u32) -> ClientError {
        ClientError::Relay {
            code,
            retry_after,
            detail: String::new(),
        }
    }

    /// The relay's `Unavailable` (its storage is out of reach) stops the whole send loop with
    /// backoff, like a broken connection, instead of counting an attempt against the message
    /// (which would give it up after `MAX_SEND_ATTEMPTS` however healthy it is); a
    /// `retry_after` is honoured. `Internal` and `QueueFull` stay per-message failures.
    #[test]
    fn an_unavailable_relay_stalls_the_loop_without_counting_attempts() {
        let unavailable = relay(ErrorCode::Unavailable, 0);
        assert!(unavailable.is_transient());
        assert_eq!(stalls_everything(&unavailable), Some(Stall::Backoff));
        assert_eq!(
            stalls_everything(&relay(ErrorCode::Unavailable, 7)),
            Some(Stall::After(Duration::from_secs(7)))
        );
        assert_eq!(
            stalls_everything(&relay(ErrorCode::RateLimited, 3)),
            Some(Stall::After(Duration::from_secs(3)))
        );
        assert_eq!(
            stalls_everything(&ClientError::Timeout),
            Some(Stall::Backoff)
        );
        for per_message in [ErrorCode::Internal, ErrorCode::QueueFull] {
            assert_eq!(stalls_everything(&relay(per_message, 0)), None);
            assert!(relay(per_message, 0).is_transient());
        }
        assert_eq!(
            stalls_everything(&relay(ErrorCode::UnknownAccount, 0)),
            None
        );
    }
}
