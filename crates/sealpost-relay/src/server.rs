//! The quinn/tokio driver: accepts connections, reads request streams, runs the
//! [`Handler`] on a blocking thread, writes responses, carries out [`Effect`]s and delivers
//! mailboxes on server-opened unidirectional streams (spec/relay.md sections 1, 2, 4, 5).
//!
//! Per connection there is one task accepting request streams (one task per stream) and,
//! once the connection has authenticated, a delivery slot whose task runs only while there
//! is something to deliver (an idle connection keeps no delivery task). Requests of one
//! connection are handled one at a time (they share the connection's state), except `Send` and `Ack`, which
//! run from a snapshot of it and wait for the store's writer thread without holding a
//! thread ([`Handler::handle_concurrent_then`]); different connections run in parallel, and
//! their writes meet in the store's group commit. The writer thread writes those responses
//! itself when quinn takes them at once (`serve_concurrent`).

use crate::codes::{CodeSender, LogCodeSender, WebhookCodeSender};
use crate::config::RelayConfig;
use crate::handler::{
    ConnectionSnapshot, ConnectionState, Done, Early, Effect, Handler, decode_error_response,
};
use crate::limits::{
    AUTH_CONCURRENT_REQUESTS, DELIVERY_WINDOW, IDLE_TIMEOUT_SECS, MAX_CONCURRENT_REQUESTS,
    PRE_AUTH_CONCURRENT_REQUESTS,
};
use crate::store::{SqliteStore, Store, StoredEnvelope};
use crate::{RelayError, metrics, tls};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sealpost_crypto::ed25519::SigningKey;
use sealpost_crypto::spki::SpkiPin;
use sealpost_wire::relay::{
    Delivery, EXPORTER_LABEL, MAX_FRAME_LEN, MAX_PRE_AUTH_FRAME, Push, Request, Response,
    frame_len_within,
};
use sealpost_wire::{AccountId, DecodeError, DeviceAddress, DeviceId};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{AbortHandle, JoinHandle};

/// Application close code: the relay is shutting down (spec/relay.md section 5).
pub const CLOSE_SHUTDOWN: u32 = 0;
/// Application close code: the connection's device was removed by a re-registration.
pub const CLOSE_DEVICE_REMOVED: u32 = 1;
/// Application close code: the client violated the protocol at connection level. Reserved:
/// a client without ALPN `sealpost/1` is refused by the TLS handshake before it could be sent
/// (spec/relay.md section 1).
pub const CLOSE_PROTOCOL_VIOLATION: u32 = 2;
/// Application close code: the connection's device authenticated on a newer connection,
/// which replaces this one (spec/relay.md section 3.4).
pub const CLOSE_REPLACED: u32 = 3;
/// Application close code: the client's (validated) address has its connection allowance in
/// use (spec/relay.md section 1).
pub const CLOSE_ADDRESS_LIMIT: u32 = 4;
/// Stream reset / stop code: the request stream was abandoned.
pub const STREAM_ABANDONED: u32 = 1;

/// Time allowed to receive a complete request (prefix, body and end of stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a response or push to be acknowledged before the stream is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A push stream is closed once its frames pass this size (a larger single frame goes alone);
/// below `MAX_PUSH_STREAM_LEN` (spec/relay.md section 1).
const PUSH_BATCH_BYTES: usize = 64 * 1024;
/// How long a delivery task with nothing to do waits for the next update before it ends:
/// long enough that a device receiving a steady stream keeps its task, short enough that
/// idle connections keep none.
const DELIVERY_LINGER: Duration = Duration::from_millis(200);
/// Name of the code-MAC key file in the data directory.
const CODE_KEY_FILE: &str = "code-hmac.key";
/// Name of the guardian-credential issuer key file (an Ed25519 seed) in the data directory.
pub const ISSUER_KEY_FILE: &str = "issuer.key";
/// Name of the database file in the data directory.
pub const DB_FILE: &str = "relay.db";
/// Name of the lock file in the data directory (spec/relay.md section 5): a relay holds an
/// exclusive advisory lock on it for as long as it runs.
pub const LOCK_FILE: &str = "relay.lock";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Counts requests in flight so shutdown can wait for them.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What an authenticated connection's delivery is told by other connections' requests and
/// by the store's writer ([`Slot::update`]); taken as a whole by the delivery.
#[derive(Default)]
struct Inbox {
    /// Highest server id committed for the device since the delivery last looked (0: none).
    committed: u64,
    /// Envelopes written for the device whose commit may still be under way, in server-id
    /// order; at most `DELIVERY_WINDOW`.
    staged: Vec<StoredEnvelope>,
    /// Highest server id of a staged envelope not kept because `staged` was full (0: none).
    dropped: u64,
    acked: Vec<u64>,
    prekeys_low: Option<(u32, u32)>,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.committed == 0
            && self.staged.is_empty()
            && self.dropped == 0
            && self.acked.is_empty()
            && self.prekeys_low.is_none()
    }
}

/// Where a delivery stands between two runs of its task (see [`delivery_loop`]).
#[derive(Default)]
struct Progress {
    /// The first run has waited for the writes queued before the slot was registered.
    started: bool,
    /// Highest server id pushed on this connection (or read past).
    last: u64,
    /// Pushed and not yet acknowledged.
    in_flight: BTreeSet<u64>,
    /// `QueueDrained` was pushed.
    drained: bool,
    up_to_date: bool,
    /// Highest server id known to be committed.
    committed: u64,
    /// Highest staged server id not pushed.
    missed: u64,
}

#[derive(Default)]
struct SlotState {
    inbox: Inbox,
    /// The device was removed or the connection stopped delivering: no more runs.
    removed: bool,
    /// Kept here while no run is under way.
    progress: Progress,
    /// The running delivery task, if any.
    task: Option<AbortHandle>,
    /// The `server_id`s of this connection's pushed, unacknowledged envelopes (random, so
    /// that they tell the recipient nothing about the relay's traffic; spec/relay.md
    /// section 4) and the store's ids they stand for. At most about `DELIVERY_WINDOW`.
    wire_ids: HashMap<u64, u64>,
}

/// An authenticated connection's delivery (spec/relay.md section 4). Its task runs only
/// while there is something to do: it ends when the connection is up to date and its inbox
/// has stayed empty for `DELIVERY_LINGER`, and the next [`Slot::update`] starts a new one.
/// An idle connection so keeps this slot and no task.
struct Slot {
    conn_id: u64,
    conn: Connection,
    device: DeviceAddress,
    shared: Arc<Shared>,
    state: Mutex<SlotState>,
    /// Wakes a running task that waits for its next update.
    wake: Notify,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the delivery something (`f` changes its inbox) and starts its task unless one
    /// is running. Callable from any thread (the store's writer calls it).
    fn update(self: &Arc<Self>, f: impl FnOnce(&mut Inbox)) {
        let mut state = self.lock();
        f(&mut state.inbox);
        if state.task.is_some() {
            self.wake.notify_one();
        } else if !state.removed {
            let task = self.shared.runtime.spawn(deliver(Arc::clone(self)));
            state.task = Some(task.abort_handle());
        }
    }

    /// The `Deliver` push of `e`, under a fresh random `server_id` for this connection.
    fn deliver_push(&self, e: StoredEnvelope) -> Push {
        let mut state = self.lock();
        let wire = loop {
            let mut b = [0u8; 8];
            rand::fill(&mut b);
            let id = u64::from_be_bytes(b);
            if id != 0 && !state.wire_ids.contains_key(&id) {
                break id;
            }
        };
        state.wire_ids.insert(wire, e.server_id);
        Push::Deliver(Delivery {
            server_id: wire,
            sender: e.sender,
            message_id: e.message_id,
            timestamp: e.timestamp,
            envelope: e.envelope,
        })
    }

    /// The store's ids of the envelopes acknowledged by `wire` ids pushed on this
    /// connection; ids this connection did not push (or already translated) are dropped.
    fn take_acked(&self, wire: &[u64]) -> Vec<u64> {
        let mut state = self.lock();
        wire.iter()
            .filter_map(|w| state.wire_ids.remove(w))
            .collect()
    }

    /// Stops the delivery for good (its device was removed, or the connection is closing
    /// or no longer authenticated).
    fn remove(&self) {
        let mut state = self.lock();
        state.removed = true;
        if let Some(task) = state.task.take() {
            task.abort();
        }
    }
}

/// Authenticated connections by device: one per device (a newer authentication replaces the
/// older connection, which is closed).
#[derive(Default)]
struct Registry {
    map: Mutex<HashMap<DeviceAddress, Vec<Arc<Slot>>>>,
}

impl Registry {
    fn slots(&self, device: &DeviceAddress) -> Vec<Arc<Slot>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(device)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `slot` the device's only connection; returns the ones it replaces (spec/relay.md
    /// section 3.4: the newest authentication wins).
    fn replace(&self, device: DeviceAddress, slot: Arc<Slot>) -> Vec<Arc<Slot>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(map.entry(device).or_default(), vec![slot])
    }

    fn remove(&self, device: &DeviceAddress, conn_id: u64) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = map.get_mut(device) {
            v.retain(|s| s.conn_id != conn_id);
            if v.is_empty() {
                map.remove(device);
            }
        }
    }

    fn take_device(&self, device: &DeviceAddress) -> Vec<Arc<Slot>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(device)
            .unwrap_or_default()
    }
}

struct Shared {
    handler: Arc<Handler>,
    store: Arc<SqliteStore>,
    registry: Registry,
    in_flight: Arc<InFlight>,
    budget: Budget,
    /// QUIC Retry packets sent.
    retries: AtomicU64,
    retry_threshold: usize,
    shutdown: watch::Receiver<bool>,
    next_conn_id: AtomicU64,
    /// Delivery tasks running (see [`Slot`]).
    delivery_tasks: AtomicUsize,
    /// Where delivery tasks are spawned ([`Slot::update`] also runs on the store's writer
    /// thread).
    runtime: tokio::runtime::Handle,
    max_connections: usize,
    max_connections_per_ip: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// The buffer for request bodies (spec/relay.md section 2): a body's bytes are reserved,
/// as declared by its length prefix, from its connection's budget and then from the
/// relay-wide one before it is read, and released when the request has been handled.
struct Budget {
    global: Arc<Semaphore>,
    capacity: usize,
    per_connection: usize,
    /// Under pressure (more than half of `capacity` reserved), a body idle this long is
    /// abandoned.
    stall: Duration,
}

impl Budget {
    fn in_use(&self) -> usize {
        self.capacity
            .saturating_sub(self.global.available_permits())
    }

    fn under_pressure(&self) -> bool {
        self.in_use().saturating_mul(2) > self.capacity
    }
}

/// Bytes reserved for one request body; the gauge follows on drop.
struct Reserved<'a> {
    budget: &'a Budget,
    _global: tokio::sync::OwnedSemaphorePermit,
    _connection: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        // The permits are released after this body: count them out first.
        let n = self._global.num_permits();
        metrics::request_buffer(self.budget.in_use().saturating_sub(n));
    }
}

/// Holds one slot of an IP address's connection allowance; released on drop.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    /// Whether `ip` has its whole allowance in use.
    fn full(shared: &Shared, ip: IpAddr) -> bool {
        let map = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&ip)
            .is_some_and(|n| *n >= shared.max_connections_per_ip)
    }

    /// Takes a slot for `ip`, or `None` when the address is at its limit.
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let mut map = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= shared.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Starts relays. See [`Relay::start`].
#[derive(Debug)]
pub struct Relay;

/// A running relay. Dropping it without [`RelayHandle::shutdown`] closes every connection at
/// once (nothing acknowledged is lost: it is already committed).
pub struct RelayHandle {
    local_addr: SocketAddr,
    fingerprint: [u8; 32],
    spki_pin: SpkiPin,
    issuer_public: [u8; 32],
    metrics_addr: Option<SocketAddr>,
    cert_der: Vec<u8>,
    endpoint: Endpoint,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    grace: Duration,
    tasks: Vec<JoinHandle<()>>,
    done: bool,
    /// The data directory's lock ([`LOCK_FILE`]), released when the relay has stopped (or
    /// the handle is dropped).
    lock: Option<std::fs::File>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("local_addr", &self.local_addr)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .field("spki_pin", &self.spki_pin)
            .field("issuer_public", &hex::encode(self.issuer_public))
            .finish_non_exhaustive()
    }
}

/// Takes the data directory's exclusive lock ([`LOCK_FILE`], an OS advisory lock that the
/// OS releases when the process ends, also on a crash), or fails at once with
/// [`RelayError::DataDirInUse`] when another relay holds it.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, RelayError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| RelayError::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RelayError::DataDirInUse {
            dir: data_dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(RelayError::io(format!("locking {}", path.display()), e))
        }
    }
}

fn load_or_create_code_key(data_dir: &Path) -> Result<[u8; 32], RelayError> {
    load_or_create_secret(data_dir, CODE_KEY_FILE)
}

/// The guardian-credential issuer key (spec/pin.md section 7): a 32-byte Ed25519 seed in
/// `issuer.key`, created on first start with mode 0600.
fn load_or_create_issuer_key(data_dir: &Path) -> Result<SigningKey, RelayError> {
    let seed = zeroize::Zeroizing::new(load_or_create_secret(data_dir, ISSUER_KEY_FILE)?);
    Ok(SigningKey::from_seed(&seed))
}

/// Reads a 32-byte secret file in `data_dir`, or creates it (mode 0600, random).
fn load_or_create_secret(data_dir: &Path, name: &str) -> Result<[u8; 32], RelayError> {
    crate::startup::load_or_create_secret(&data_dir.join(name)).map(|k| *k)
}

fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Raised to AUTH_CONCURRENT_REQUESTS at authentication, and to MAX_CONCURRENT_REQUESTS
    // once an authenticated connection uses all of those at once (ConnCtx::request_opened).
    t.max_concurrent_bidi_streams(VarInt::from_u32(PRE_AUTH_CONCURRENT_REQUESTS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        // Flow-control credit, not preallocated memory: an idle connection costs a few KiB.
        .stream_receive_window(VarInt::from_u32(256 * 1024))
        .receive_window(VarInt::from_u32(1024 * 1024))
        .send_window(2 * 1024 * 1024)
        .datagram_receive_buffer_size(None);
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(IDLE_TIMEOUT_SECS)) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

impl Relay {
    /// Starts a relay: creates the data directory, loads or generates the TLS certificate
    /// and the code-MAC key, opens the database, binds `config.listen` and starts serving.
    /// Errors are [`RelayError`]s (inside the `anyhow::Error`).
    pub async fn start(config: RelayConfig) -> anyhow::Result<RelayHandle> {
        config.validate()?;
        // A new data directory is private to the relay's user (it holds the TLS key, the
        // code-MAC key and the database); an existing one keeps the operator's permissions.
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            dir.mode(0o700);
        }
        dir.create(&config.data_dir)
            .map_err(|e| RelayError::io(format!("creating {}", config.data_dir.display()), e))?;
        // A store that cannot take writes would accept connections and fail every request.
        crate::startup::check_writable(&config.data_dir, &config.data_dir.join(DB_FILE))?;
        // Before anything in the directory is read or created: two relays on one database
        // would hand out the same server ids and each believe it is the only writer.
        let lock = lock_data_dir(&config.data_dir)?;
        let material = match (&config.cert_path, &config.key_path) {
            (Some(c), Some(k)) => tls::load_pem(c, k)?,
            _ => tls::load_or_generate(&config.data_dir, &config.cert_names)?,
        };
        let crypto = tls::server_crypto(&material)?;
        let code_key = load_or_create_code_key(&config.data_dir)?;
        let issuer = load_or_create_issuer_key(&config.data_dir)?;
        let reset_key =
            crate::startup::load_reset_key(&config.data_dir, config.reset_key_file.as_deref())?;
        let db = config.data_dir.join(DB_FILE);
        let store = Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(db))
                .await
                .map_err(|e| RelayError::Config(format!("opening the database: {e}")))??,
        );
        let code_sender = code_sender(&config)?;
        let metrics_server = match config.metrics_listen {
            Some(addr) => {
                let (addr, task) = metrics::install_prometheus(addr)?;
                tracing::info!(%addr, "Prometheus exporter listening");
                Some((addr, task))
            }
            None => None,
        };
        let handler = Arc::new(
            Handler::new(
                Arc::clone(&store) as Arc<dyn Store>,
                code_sender,
                code_key,
                config.limits.clone(),
                StdRng::from_rng(&mut rand::rng()),
            )
            .with_issuer(issuer)
            .with_guardian(config.guardian.clone())
            .map_err(RelayError::Config)?,
        );
        let issuer_public = handler.issuer_public();

        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|e| RelayError::Tls(format!("QUIC TLS configuration: {e}")))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server_config.transport_config(Arc::new(transport_config()));
        // The persistent reset key lets a restarted relay reset its predecessor's connections
        // at once (spec/relay.md section 1.2).
        let endpoint = std::net::UdpSocket::bind(config.listen)
            .and_then(|socket| {
                Endpoint::new(
                    crate::startup::endpoint_config(reset_key),
                    Some(server_config),
                    socket,
                    Arc::new(quinn::TokioRuntime),
                )
            })
            .map_err(|e| RelayError::io(format!("binding {}", config.listen), e))?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| RelayError::io("reading the bound address", e))?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // Bounded by tokio's semaphore (`usize::MAX >> 3` permits).
        let request_buffer = usize::try_from(config.limits.request_buffer_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            handler,
            store,
            registry: Registry::default(),
            in_flight: Arc::new(InFlight::default()),
            budget: Budget {
                global: Arc::new(Semaphore::new(request_buffer)),
                capacity: request_buffer,
                per_connection: usize::try_from(config.limits.request_buffer_per_connection)
                    .unwrap_or(usize::MAX)
                    .min(request_buffer),
                stall: Duration::from_millis(config.limits.request_stall_timeout_ms),
            },
            retries: AtomicU64::new(0),
            retry_threshold: config.limits.retry_threshold as usize,
            shutdown: shutdown_rx,
            next_conn_id: AtomicU64::new(1),
            delivery_tasks: AtomicUsize::new(0),
            runtime: tokio::runtime::Handle::current(),
            max_connections: config.limits.max_connections as usize,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            per_ip: Mutex::new(HashMap::new()),
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        let sweep = tokio::spawn(sweep_loop(
            Arc::clone(&shared),
            Duration::from_secs(config.sweep_interval_secs),
        ));
        tracing::info!(
            %local_addr,
            data_dir = %config.data_dir.display(),
            fingerprint = %hex::encode(material.fingerprint),
            spki_pin = %material.spki_pin,
            issuer = %hex::encode(issuer_public),
            guardian = config.guardian.enabled,
            "relay started"
        );
        Ok(RelayHandle {
            local_addr,
            fingerprint: material.fingerprint,
            spki_pin: material.spki_pin,
            issuer_public,
            cert_der: material.cert_der().to_vec(),
            endpoint,
            shared,
            shutdown_tx,
            grace: Duration::from_secs(config.shutdown_grace_secs),
            metrics_addr: metrics_server.as_ref().map(|(addr, _)| *addr),
            tasks: [accept, sweep]
                .into_iter()
                .chain(metrics_server.map(|(_, task)| task))
                .collect(),
            done: false,
            lock: Some(lock),
        })
    }
}

impl RelayHandle {
    /// Delivery tasks running now. A connected device has one only while the relay has
    /// something to push to it (spec/relay.md section 4); idle connections keep none.
    pub fn delivery_tasks(&self) -> usize {
        self.shared.delivery_tasks.load(Ordering::Relaxed)
    }

    /// Request body bytes reserved relay-wide now (the `sealpost_request_buffer_bytes`
    /// gauge): never more than `limits.request_buffer_bytes`.
    pub fn buffered_request_bytes(&self) -> usize {
        self.shared.budget.in_use()
    }

    /// QUIC Retry packets sent so far (the `sealpost_quic_retries_total` counter).
    pub fn retries_sent(&self) -> u64 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// The bound UDP address (with the real port when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// SHA-256 of the end-entity certificate's DER (changes with every renewal; clients
    /// pin [`RelayHandle::spki_pin`]).
    pub fn cert_fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The bound address of the Prometheus `/metrics` endpoint (with the real port when the
    /// configured `metrics_listen` port was 0); `None` without `metrics_listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The certificate's public-key pin, SHA-256 of its `SubjectPublicKeyInfo`: what clients
    /// pin (spec/relay.md section 1.1).
    pub fn spki_pin(&self) -> SpkiPin {
        self.spki_pin
    }

    /// The public key of this relay's guardian-credential issuer key (`issuer.key`): what
    /// other guardians list in `trusted_issuers` (spec/pin.md section 7).
    pub fn issuer_public(&self) -> [u8; 32] {
        self.issuer_public
    }

    /// The end-entity certificate, DER-encoded.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// Graceful shutdown (spec/relay.md section 5): stops accepting connections and
    /// requests, waits for in-flight requests (up to the configured grace period, 10 s by
    /// default), closes every connection with application code 0 and closes the database.
    pub async fn shutdown(mut self) {
        self.done = true;
        tracing::info!("shutting down");
        let _ = self.shutdown_tx.send(true);
        self.endpoint.set_server_config(None);
        if tokio::time::timeout(self.grace, self.shared.in_flight.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish within the grace period");
        }
        self.endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let store = Arc::clone(&self.shared.store);
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        // The database is closed: another relay may have the directory now.
        drop(self.lock.take());
        tracing::info!("relay stopped");
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.shutdown_tx.send(true);
            self.endpoint
                .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"relay dropped");
            for t in &self.tasks {
                t.abort();
            }
        }
    }
}

async fn sweep_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let handler = Arc::clone(&shared.handler);
        match tokio::task::spawn_blocking(move || handler.sweep(now_ms())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "expiry sweep failed"),
            Err(e) => tracing::error!(error = %e, "expiry sweep task failed"),
        }
    }
}

/// The configured code sender: an explicit one, else the webhook, else (development only,
/// `dev_log_codes`) the log; none is a configuration error.
fn code_sender(config: &RelayConfig) -> Result<Arc<dyn CodeSender>, RelayError> {
    match (&config.code_sender, &config.webhook_url) {
        (Some(s), _) => Ok(Arc::clone(s)),
        (None, Some(url)) => {
            let secret = config
                .load_webhook_secret()?
                .ok_or_else(|| RelayError::Config("webhook_url needs a webhook secret".into()))?;
            Ok(Arc::new(WebhookCodeSender::new(
                url.clone(),
                secret,
                Duration::from_secs(config.webhook_timeout_secs),
                tokio::runtime::Handle::current(),
            )))
        }
        (None, None) if config.dev_log_codes => {
            tracing::warn!(
                "--dev-log-codes: verification codes are written to the log (development only)"
            );
            Ok(Arc::new(LogCodeSender))
        }
        (None, None) => Err(RelayError::Config(crate::config::NO_CODE_SENDER.into())),
    }
}

async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        if *shutdown.borrow() {
            incoming.refuse();
            continue;
        }
        if endpoint.open_connections() >= shared.max_connections {
            tracing::warn!("connection limit reached; refusing a connection");
            incoming.refuse();
            continue;
        }
        // Address validation (spec/relay.md section 1): when busy, a peer must first show
        // that it receives at its address (a Retry costs the relay no state).
        let validated = incoming.remote_address_validated();
        if !validated
            && incoming.may_retry()
            && endpoint.open_connections() >= shared.retry_threshold
        {
            match incoming.retry() {
                Ok(()) => {
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::retry_sent();
                }
                Err(e) => e.into_incoming().refuse(),
            }
            continue;
        }
        // Per-address slots are taken only for validated addresses: here after a Retry,
        // otherwise once the handshake (which validates the address) is complete.
        let ip = incoming.remote_address().ip();
        let slot = if validated {
            let Some(slot) = IpSlot::take(&shared, ip) else {
                tracing::warn!("per-address connection limit reached; refusing a connection");
                metrics::rate_limited("connections_per_ip");
                incoming.refuse();
                continue;
            };
            Some(slot)
        } else {
            if IpSlot::full(&shared, ip) {
                tracing::warn!("per-address connection limit reached; refusing a connection");
                metrics::rate_limited("connections_per_ip");
                incoming.refuse();
                continue;
            }
            None
        };
        let shared = Arc::clone(&shared);
        // Boxed: the pending handshake is 384 bytes that the connection's task would
        // otherwise keep for its whole life (an idle connection's memory is the budget).
        tokio::spawn(serve_connection(Box::new(incoming), shared, slot));
    }
}

struct ConnectionGauge;

impl ConnectionGauge {
    fn new() -> Self {
        metrics::connections(1.0);
        Self
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::connections(-1.0);
    }
}

/// Completes a handshake. The box is freed when this returns: awaited directly in
/// [`serve_connection`], it would live (empty) as long as the connection.
async fn handshake(incoming: Box<quinn::Incoming>) -> Result<Connection, quinn::ConnectionError> {
    (*incoming).await
}

async fn serve_connection(
    incoming: Box<quinn::Incoming>,
    shared: Arc<Shared>,
    slot: Option<IpSlot>,
) {
    let conn = match handshake(incoming).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    // The completed handshake validated the address: now it counts.
    let _slot = match slot {
        Some(s) => s,
        None => {
            let Some(s) = IpSlot::take(&shared, conn.remote_address().ip()) else {
                metrics::rate_limited("connections_per_ip");
                conn.close(
                    VarInt::from_u32(CLOSE_ADDRESS_LIMIT),
                    b"too many connections from this address",
                );
                return;
            };
            s
        }
    };
    let _gauge = ConnectionGauge::new();
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let alpn_ok = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == sealpost_wire::relay::ALPN);
    let mut exporter = [0u8; 32];
    if !alpn_ok
        || conn
            .export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
            .is_err()
    {
        tracing::debug!(conn = conn_id, "connection without ALPN sealpost/1 refused");
        conn.close(
            VarInt::from_u32(CLOSE_PROTOCOL_VIOLATION),
            b"ALPN sealpost/1 required",
        );
        return;
    }
    tracing::debug!(conn = conn_id, remote = %conn.remote_address(), "connection open");
    let state = Arc::new(tokio::sync::Mutex::new(
        // The handshake is complete, so the peer's address is validated (RFC 9000 section
        // 8.1): per-source quotas count addresses that really answered.
        shared
            .handler
            .new_connection(conn_id, now_ms())
            .with_source(conn.remote_address().ip()),
    ));
    let ctx = Arc::new(ConnCtx {
        conn_id,
        conn: conn.clone(),
        exporter,
        state,
        shared: Arc::clone(&shared),
        delivery: Mutex::new(None),
        open_requests: AtomicU32::new(0),
        budget: Arc::new(Semaphore::new(shared.budget.per_connection)),
        authed: AtomicBool::new(false),
        authenticated: AtomicBool::new(false),
        full_allowance: AtomicBool::new(false),
    });
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = shutdown.changed() => break,
        };
        match stream {
            Ok((send, recv)) => {
                let guard = shared.in_flight.enter();
                tokio::spawn(serve_request(Arc::clone(&ctx), send, recv, guard));
            }
            Err(e) => {
                tracing::debug!(conn = conn_id, reason = %e, "connection closed");
                break;
            }
        }
    }
    // Wait for the connection to end (on shutdown the endpoint closes it), then clean up.
    conn.closed().await;
    ctx.stop_delivery();
    // An authenticated connection's end counts as its account being seen (registration lock,
    // spec/pin.md section 10). Waits for any request still holding the state.
    let state = Arc::clone(&ctx.state).lock_owned().await;
    if state.authenticated().is_some() {
        let handler = Arc::clone(&shared.handler);
        let _guard = shared.in_flight.enter();
        let r =
            tokio::task::spawn_blocking(move || handler.connection_closed(&state, now_ms())).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(conn = conn_id, error = %e, "recording last_seen failed");
        }
    }
}

/// One connection's context, shared by its request tasks.
struct ConnCtx {
    conn_id: u64,
    conn: Connection,
    exporter: [u8; 32],
    state: Arc<tokio::sync::Mutex<ConnectionState>>,
    shared: Arc<Shared>,
    /// Once authenticated: the delivery's slot (also in the registry).
    delivery: Mutex<Option<Arc<Slot>>>,
    /// Request streams being served.
    open_requests: AtomicU32,
    /// This connection's request buffer (`limits.request_buffer_per_connection`).
    budget: Arc<Semaphore>,
    /// The connection is authenticated now (frames up to `MAX_FRAME_LEN`; before, up to
    /// `MAX_PRE_AUTH_FRAME`).
    authed: AtomicBool,
    /// The connection has authenticated (it may get the full request-stream allowance).
    authenticated: AtomicBool,
    /// The full allowance (`MAX_CONCURRENT_REQUESTS`) was granted.
    full_allowance: AtomicBool,
}

impl ConnCtx {
    /// Counts a request stream; grants an authenticated connection the full request-stream
    /// allowance the first time it uses all of `AUTH_CONCURRENT_REQUESTS` (spec/relay.md
    /// section 1).
    /// quinn keeps state for every stream a peer may open, so connections that never
    /// pipeline requests (most idle apps) stay small.
    fn request_opened(&self) -> RequestGuard<'_> {
        let open = self.open_requests.fetch_add(1, Ordering::AcqRel) + 1;
        if open >= AUTH_CONCURRENT_REQUESTS
            && self.authenticated.load(Ordering::Acquire)
            && !self.full_allowance.swap(true, Ordering::AcqRel)
        {
            self.conn
                .set_max_concurrent_bi_streams(VarInt::from_u32(MAX_CONCURRENT_REQUESTS));
        }
        RequestGuard(&self.open_requests)
    }
}

/// Uncounts a request stream when dropped.
struct RequestGuard<'a>(&'a AtomicU32);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnCtx {
    fn start_delivery(&self, device: DeviceAddress) {
        let mut d = self.delivery.lock().unwrap_or_else(PoisonError::into_inner);
        if d.is_some() {
            return;
        }
        let slot = Arc::new(Slot {
            conn_id: self.conn_id,
            conn: self.conn.clone(),
            device: device.clone(),
            shared: Arc::clone(&self.shared),
            state: Mutex::new(SlotState::default()),
            wake: Notify::new(),
        });
        for old in self.shared.registry.replace(device, Arc::clone(&slot)) {
            if old.conn_id != self.conn_id {
                old.remove();
                metrics::connection_replaced();
                old.conn.close(
                    VarInt::from_u32(CLOSE_REPLACED),
                    b"the device authenticated on a newer connection",
                );
            }
        }
        // The first run reads the mailbox.
        slot.update(|_| {});
        *d = Some(slot);
    }

    /// An `Ack` body with the store's ids for this connection's `server_id`s (spec/relay.md
    /// section 3.8). A body that does not decode, or a connection without a delivery, is
    /// left to the handler (which answers it with the error it deserves).
    fn translate_ack(&self, body: Vec<u8>) -> Vec<u8> {
        let Ok(Request::Ack { server_ids }) = Request::decode(&body) else {
            return body;
        };
        let slot = self
            .delivery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(slot) = slot else { return body };
        let server_ids = slot.take_acked(&server_ids);
        let mut frame = Request::Ack { server_ids }.encode();
        frame.drain(..4);
        frame
    }

    fn stop_delivery(&self) {
        let taken = self
            .delivery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(slot) = taken {
            slot.remove();
            self.shared.registry.remove(&slot.device, self.conn_id);
        }
    }
}

enum ReadOutcome {
    Body(Vec<u8>),
    /// Answer with this error and stop reading.
    Refuse(Response),
    /// The peer reset the stream or the connection is gone.
    Gone,
    /// The body stalled while the request buffer was under pressure.
    Stalled,
}

/// Reads one request frame (spec/relay.md section 2): the length prefix is checked against
/// the connection's frame limit before anything else, the body's bytes are reserved in the
/// request buffer before it is read, and a body that stalls while the buffer is under
/// pressure is abandoned. The caller bounds the whole by `REQUEST_TIMEOUT`.
async fn read_request(recv: &mut RecvStream, ctx: &ConnCtx) -> ReadOutcome {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return ReadOutcome::Refuse(decode_error_response(&DecodeError::Truncated {
                offset: 0,
                needed: 4,
            }));
        }
        Err(quinn::ReadExactError::ReadError(_)) => return ReadOutcome::Gone,
    }
    let max = if ctx.authed.load(Ordering::Acquire) {
        MAX_FRAME_LEN
    } else {
        MAX_PRE_AUTH_FRAME
    };
    let len = match frame_len_within(prefix, max) {
        Ok(l) => l,
        Err(e) => return ReadOutcome::Refuse(decode_error_response(&e)),
    };
    let budget = &ctx.shared.budget;
    if len > budget.per_connection {
        return ReadOutcome::Refuse(Response::error(
            sealpost_wire::relay::ErrorCode::TooLarge,
            format!(
                "frame is {len} bytes, this relay buffers at most {}",
                budget.per_connection
            ),
        ));
    }
    // `len` fits both semaphores (checked above; the global one is at least as large).
    let n = u32::try_from(len).unwrap_or(u32::MAX);
    let Ok(connection) = Arc::clone(&ctx.budget).acquire_many_owned(n).await else {
        return ReadOutcome::Gone;
    };
    let Ok(global) = Arc::clone(&budget.global).acquire_many_owned(n).await else {
        return ReadOutcome::Gone;
    };
    metrics::request_buffer(budget.in_use());
    let _reserved = Reserved {
        budget,
        _global: global,
        _connection: connection,
    };
    read_body(recv, len, budget).await
}

/// Reads `len` body bytes and the end of the stream.
async fn read_body(recv: &mut RecvStream, len: usize, budget: &Budget) -> ReadOutcome {
    let mut body = Vec::with_capacity(len);
    let mut progress = tokio::time::Instant::now();
    loop {
        // One byte past a complete body: the end of the stream, or a protocol error.
        let want = (len - body.len()).max(1);
        match tokio::time::timeout(budget.stall, recv.read_chunk(want, true)).await {
            Ok(Ok(Some(chunk))) => {
                if body.len() == len {
                    return ReadOutcome::Refuse(Response::error(
                        sealpost_wire::relay::ErrorCode::Malformed,
                        "bytes after the frame",
                    ));
                }
                body.extend_from_slice(&chunk.bytes);
                progress = tokio::time::Instant::now();
            }
            Ok(Ok(None)) if body.len() == len => return ReadOutcome::Body(body),
            Ok(Ok(None)) => {
                return ReadOutcome::Refuse(decode_error_response(&DecodeError::Truncated {
                    offset: body.len(),
                    needed: len - body.len(),
                }));
            }
            Ok(Err(_)) => return ReadOutcome::Gone,
            // Checked at least every `stall`: a body idle for `stall` or more while the
            // buffer is under pressure goes.
            Err(_) => {
                if budget.under_pressure() && progress.elapsed() >= budget.stall {
                    return ReadOutcome::Stalled;
                }
            }
        }
    }
}

async fn write_frame(send: &mut SendStream, frame: &[u8]) -> bool {
    if send.write_all(frame).await.is_err() || send.finish().is_err() {
        return false;
    }
    // Wait until the peer has the whole frame, so a graceful shutdown loses no response.
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, send.stopped()).await,
        Ok(Ok(None))
    )
}

async fn serve_request(
    ctx: Arc<ConnCtx>,
    mut send: SendStream,
    mut recv: RecvStream,
    _in_flight: InFlightGuard,
) {
    let _open = ctx.request_opened();
    let shared = Arc::clone(&ctx.shared);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut recv, &ctx));
    let body = match read.await {
        Ok(ReadOutcome::Body(b)) => b,
        Ok(ReadOutcome::Refuse(resp)) => {
            metrics::frame("malformed");
            let _ = recv.stop(VarInt::from_u32(STREAM_ABANDONED));
            write_frame(&mut send, &resp.encode()).await;
            return;
        }
        outcome @ (Ok(ReadOutcome::Gone | ReadOutcome::Stalled) | Err(_)) => {
            match outcome {
                Ok(ReadOutcome::Stalled) => metrics::request_abandoned("stalled"),
                Err(_) => metrics::request_abandoned("timeout"),
                _ => {}
            }
            let _ = recv.stop(VarInt::from_u32(STREAM_ABANDONED));
            let _ = send.reset(VarInt::from_u32(STREAM_ABANDONED));
            return;
        }
    };
    // `server_id`s in an `Ack` are this connection's (see `Slot::deliver_push`).
    let body = if body.get(1) == Some(&0x21) {
        ctx.translate_ack(body)
    } else {
        body
    };
    let handler = Arc::clone(&shared.handler);
    let exporter = ctx.exporter;
    // `Send` and `Ack` (types 0x20, 0x21) only read the authenticated device: run them from a
    // snapshot, without holding the connection's state, so a client's pipelined sends share
    // the store's group commit instead of queueing for one fsync each.
    let body = if matches!(body.get(1), Some(0x20 | 0x21)) {
        let snap = ctx.state.lock().await.snapshot();
        match serve_concurrent(&ctx, snap, body, send).await {
            Some((s, Ok(answer))) => {
                send = s;
                finish_request(&ctx, send, answer).await;
                return;
            }
            Some((s, Err(body))) => {
                send = s;
                body
            }
            None => return,
        }
    } else {
        body
    };
    let mut guard = Arc::clone(&ctx.state).lock_owned().await;
    let handled = tokio::task::spawn_blocking(move || {
        let (response, effects) = handler.handle_frame(&mut guard, exporter, &body, now_ms());
        let device = guard.authenticated().cloned();
        Answer::new(response, effects, device)
    })
    .await;
    match handled {
        Ok(answer) => finish_request(&ctx, send, answer).await,
        Err(e) => {
            tracing::error!(conn = ctx.conn_id, error = %e, "request handler failed");
            let resp = Response::error(sealpost_wire::relay::ErrorCode::Internal, "internal error");
            write_frame(&mut send, &resp.encode()).await;
        }
    }
}

/// What handling a request produced.
struct Answer {
    response: Response,
    effects: Vec<Effect>,
    /// The connection's device after the request.
    device: Option<DeviceAddress>,
    /// `response`, encoded.
    frame: Vec<u8>,
    /// Bytes of `frame` already written (see [`write_now`]); all of them means the stream
    /// is finished too.
    written: usize,
}

impl Answer {
    fn new(response: Response, effects: Vec<Effect>, device: Option<DeviceAddress>) -> Self {
        let frame = response.encode();
        Self {
            response,
            effects,
            device,
            frame,
            written: 0,
        }
    }
}

/// Runs a `Send` or `Ack` from a snapshot of the connection's state
/// ([`Handler::handle_concurrent_then`]); the store answers it from its writer thread once
/// the commit is durable (for an `Ack`: committed), and no thread waits for it meanwhile.
///
/// The stream is lent to that answer, which writes the response itself when quinn takes it
/// at once: the answers of one group commit then leave in a few packets. Written by each
/// request's task instead, every response woke the connection's driver, which sent it in a
/// packet of its own before the next task ran.
///
/// Returns the stream with the answer, or with the body when the request needs the
/// connection's state after all; `None` if the stream was lost.
async fn serve_concurrent(
    ctx: &ConnCtx,
    snap: ConnectionSnapshot,
    body: Vec<u8>,
    send: SendStream,
) -> Option<(SendStream, Result<Answer, Vec<u8>>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (done_shared, conn_id) = (Arc::clone(&ctx.shared), ctx.conn_id);
    let early_shared = Arc::clone(&ctx.shared);
    let lent = Arc::new(Mutex::new(Some(send)));
    let answer_stream = Arc::clone(&lent);
    // Staged envelopes go to the recipients' deliveries while the commit is flushed
    // (spec/relay.md section 4).
    let early: Early = Box::new(move |effects| apply_effects(&early_shared, 0, effects));
    let device = snap.authenticated().cloned();
    let done: Done = Box::new(move |response, effects| {
        // Wake the recipients' deliveries right here (on the store's writer thread, as soon
        // as the commit is durable) rather than after this task has been scheduled again:
        // `MailArrived`/`Acked` only notify, they never block.
        apply_effects(&done_shared, conn_id, effects);
        let mut answer = Answer::new(response, Vec::new(), device);
        if let Some(send) = answer_stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            answer.written = write_now(send, &answer.frame);
        }
        let _ = tx.send(answer);
    });
    // Every well-formed `Send` takes this path: the delivery loop relies on staged envelopes
    // and commit notices arriving from the writer thread in commit order.
    let declined = ctx
        .shared
        .handler
        .handle_concurrent_then(&snap, &body, now_ms(), early, done);
    let answer = match declined {
        None => rx.await.unwrap_or_else(|_| {
            Answer::new(
                Response::error(sealpost_wire::relay::ErrorCode::Internal, "internal error"),
                Vec::new(),
                snap.authenticated().cloned(),
            )
        }),
        Some(_) => {
            let send = lent.lock().unwrap_or_else(PoisonError::into_inner).take()?;
            return Some((send, Err(body)));
        }
    };
    // The answer has run (or was dropped unrun): the stream is back.
    let send = lent.lock().unwrap_or_else(PoisonError::into_inner).take()?;
    Some((send, Ok(answer)))
}

/// Carries out a request's effects and writes (the rest of) its response.
async fn finish_request(ctx: &ConnCtx, mut send: SendStream, answer: Answer) {
    let Answer {
        response,
        effects,
        device,
        frame,
        written,
    } = answer;
    if device.is_none() {
        ctx.authed.store(false, Ordering::Release);
        ctx.stop_delivery();
    }
    apply_effects(&ctx.shared, ctx.conn_id, effects);
    match (&device, &response) {
        (Some(d), Response::Authenticated { .. }) => {
            // Larger frames from now on: set before the client can learn it is authenticated.
            ctx.authed.store(true, Ordering::Release);
            // The authenticated allowance (spec/relay.md section 1), once per connection;
            // request_opened grants the full one when it is all in use.
            if !ctx.authenticated.swap(true, Ordering::AcqRel) {
                ctx.conn
                    .set_max_concurrent_bi_streams(VarInt::from_u32(AUTH_CONCURRENT_REQUESTS));
            }
            // Response first, so the client knows it is authenticated before pushes arrive.
            if send.write_all(&frame).await.is_ok() && send.finish().is_ok() {
                ctx.start_delivery(d.clone());
                let _ = tokio::time::timeout(WRITE_TIMEOUT, send.stopped()).await;
            }
        }
        _ if written == frame.len() => {
            // Written and finished already: wait for the peer to have it (graceful shutdown).
            let _ = tokio::time::timeout(WRITE_TIMEOUT, send.stopped()).await;
        }
        _ => {
            write_frame(&mut send, frame.get(written..).unwrap_or_default()).await;
        }
    }
}

/// Writes as much of `frame` as quinn takes without waiting (the stream's flow-control
/// credit) and, when that is all of it, finishes the stream. Returns the bytes written.
/// Callable from any thread: it never blocks on the peer.
fn write_now(send: &mut SendStream, frame: &[u8]) -> usize {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let written = match std::pin::pin!(send.write(frame)).poll(&mut cx) {
        std::task::Poll::Ready(Ok(n)) => n,
        // Not writable now, or the stream is gone: the request's task finds out.
        std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => 0,
    };
    if written == frame.len() {
        // A failure here means the stream is already stopped or the connection closed; the
        // task's wait for `stopped` then ends at once.
        let _ = send.finish();
    }
    written
}

fn apply_effects(shared: &Shared, conn_id: u64, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::MailArrived { device, up_to } => {
                for slot in shared.registry.slots(&device) {
                    slot.update(|i| i.committed = i.committed.max(up_to));
                }
            }
            Effect::MailStaged { device, envelope } => {
                let mut slots = shared.registry.slots(&device);
                let last = slots.pop();
                let stage = |slot: &Arc<Slot>, e: StoredEnvelope| {
                    slot.update(|i| {
                        if i.staged.len() < DELIVERY_WINDOW {
                            i.staged.push(e);
                        } else {
                            i.dropped = i.dropped.max(e.server_id);
                        }
                    });
                };
                for slot in slots {
                    stage(&slot, envelope.clone());
                }
                if let Some(slot) = last {
                    stage(&slot, envelope);
                }
            }
            Effect::PreKeysLow {
                device,
                one_time_prekeys,
                kem_prekeys,
            } => {
                for slot in shared.registry.slots(&device) {
                    slot.update(|i| i.prekeys_low = Some((one_time_prekeys, kem_prekeys)));
                }
            }
            Effect::Acked { device, server_ids } => {
                for slot in shared.registry.slots(&device) {
                    slot.update(|i| i.acked.extend_from_slice(&server_ids));
                }
            }
            Effect::DevicesRemoved { account, devices } => {
                close_removed(shared, conn_id, &account, &devices);
            }
        }
    }
}

fn close_removed(shared: &Shared, conn_id: u64, account: &AccountId, devices: &[u32]) {
    for id in devices {
        let device = DeviceAddress::new(account.clone(), DeviceId(*id));
        for slot in shared.registry.take_device(&device) {
            slot.remove();
            // The registering connection itself stays open (it gets its response); other
            // connections of removed devices are closed.
            if slot.conn_id != conn_id {
                slot.conn.close(
                    VarInt::from_u32(CLOSE_DEVICE_REMOVED),
                    b"device removed by a new registration",
                );
            }
        }
    }
}

/// Push frames gathered for one unidirectional stream (spec/relay.md section 1: a push
/// stream carries one or more frames back to back). One stream per batch instead of per
/// envelope saves the per-stream work on both ends.
#[derive(Default)]
struct PushBatch {
    frames: Vec<u8>,
}

impl PushBatch {
    /// Adds a push; first sends what is gathered if the stream would pass
    /// `PUSH_BATCH_BYTES`. `false` if the connection is gone.
    async fn add(&mut self, conn: &Connection, push: &Push) -> bool {
        let frame = push.encode();
        if !self.frames.is_empty()
            && self.frames.len() + frame.len() > PUSH_BATCH_BYTES
            && !self.send(conn).await
        {
            return false;
        }
        self.frames.extend_from_slice(&frame);
        true
    }

    /// Sends the gathered pushes on one stream. `false` if the connection is gone.
    async fn send(&mut self, conn: &Connection) -> bool {
        if self.frames.is_empty() {
            return true;
        }
        let frames = std::mem::take(&mut self.frames);
        let Ok(mut stream) = conn.open_uni().await else {
            return false;
        };
        if stream.write_all(&frames).await.is_err() {
            return false;
        }
        stream.finish().is_ok()
    }
}

/// One run of a slot's delivery task.
async fn deliver(slot: Arc<Slot>) {
    /// Counts the task in `Shared::delivery_tasks` while it runs (also when aborted).
    struct Running(Arc<Shared>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.delivery_tasks.fetch_sub(1, Ordering::Relaxed);
        }
    }
    slot.shared.delivery_tasks.fetch_add(1, Ordering::Relaxed);
    let _running = Running(Arc::clone(&slot.shared));
    let conn = slot.conn.clone();
    tokio::select! {
        () = delivery_loop(&slot) => {}
        _ = conn.closed() => {}
    }
}

/// Delivers the slot's device's mailbox on its connection (spec/relay.md section 4): reads
/// it from the store oldest first, then, once up to date, pushes envelopes as the writer
/// stages them, before their commit is flushed. Returns, keeping its [`Progress`] in the
/// slot, when it has nothing left to do until the next [`Slot::update`]; returns for good
/// when the connection is gone or the slot removed.
///
/// Being *up to date* means: the last mailbox read reached the end of the mailbox, and every
/// staged envelope that was not pushed (because the delivery was not up to date, or the
/// window or the staging buffer was full) had been committed before that read started. Only
/// then can a staged envelope be pushed directly: no lower server id can still be missing.
/// This holds because the writer stages envelopes in id order, every envelope staged after
/// this connection's slot was registered reaches its inbox (kept or counted as dropped),
/// and the first read waits until every write queued before that is committed
/// ([`Store::after_queued_writes`]). Commit notices ([`Effect::MailArrived`], sent once the
/// commit is flushed) only tell which missed envelopes a read would now find.
async fn delivery_loop(slot: &Slot) {
    let mut p = std::mem::take(&mut slot.lock().progress);
    if !p.started {
        let (tx, rx) = tokio::sync::oneshot::channel();
        slot.shared.store.after_queued_writes(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        if let Ok(Err(e)) = rx.await {
            tracing::warn!(error = %e, "waiting for queued writes failed");
        }
        p.started = true;
    }
    let mut pushes = PushBatch::default();
    // Taken after the first run's wait for queued writes.
    let mut inbox = std::mem::take(&mut slot.lock().inbox);
    loop {
        let Inbox {
            committed: new_commit,
            staged,
            dropped,
            acked,
            prekeys_low,
        } = inbox;
        for id in acked {
            p.in_flight.remove(&id);
        }
        if let Some((one_time_prekeys, kem_prekeys)) = prekeys_low {
            let push = Push::PreKeysLow {
                one_time_prekeys,
                kem_prekeys,
            };
            if !pushes.add(&slot.conn, &push).await {
                return;
            }
        }
        p.committed = p.committed.max(new_commit);
        if dropped > p.last {
            p.missed = p.missed.max(dropped);
            p.up_to_date = false;
        }
        for e in staged {
            if e.server_id <= p.last {
                continue;
            }
            if p.up_to_date && p.in_flight.len() < DELIVERY_WINDOW {
                let id = e.server_id;
                if !pushes.add(&slot.conn, &slot.deliver_push(e)).await {
                    return;
                }
                p.in_flight.insert(id);
                p.last = id;
            } else {
                p.missed = p.missed.max(e.server_id);
                p.up_to_date = false;
            }
        }
        let room = DELIVERY_WINDOW.saturating_sub(p.in_flight.len());
        if room > 0 && !p.up_to_date {
            // What is gathered goes out before the read.
            if !pushes.send(&slot.conn).await {
                return;
            }
            // Every missed envelope is committed (or its commit failed) before this read
            // starts: a read to the end then brings the delivery up to date.
            let complete = p.committed >= p.missed;
            let store = Arc::clone(&slot.shared.store);
            let (device, last) = (slot.device.clone(), p.last);
            let batch =
                tokio::task::spawn_blocking(move || store.mailbox(&device, last, room)).await;
            let batch = match batch {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading a mailbox failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    inbox = std::mem::take(&mut slot.lock().inbox);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "mailbox task failed");
                    return;
                }
            };
            let reached_end = batch.len() < room;
            for e in batch {
                let id = e.server_id;
                if !pushes.add(&slot.conn, &slot.deliver_push(e)).await {
                    return;
                }
                p.in_flight.insert(id);
                p.last = p.last.max(id);
            }
            p.up_to_date = reached_end && complete;
            if reached_end && !p.drained {
                if !pushes.add(&slot.conn, &Push::QueueDrained).await {
                    return;
                }
                p.drained = true;
            }
        }
        if !pushes.send(&slot.conn).await {
            return;
        }
        // Wait for the next update, but not long: a busy device keeps its task, an idle one
        // ends the run (the next update starts another). Checked under the lock that updates
        // take, so no update is missed.
        let mut waited = false;
        inbox = loop {
            {
                let mut state = slot.lock();
                if state.removed {
                    return;
                }
                if !state.inbox.is_empty() {
                    break std::mem::take(&mut state.inbox);
                }
                if waited {
                    state.progress = p;
                    state.task = None;
                    return;
                }
            }
            waited = tokio::time::timeout(DELIVERY_LINGER, slot.wake.notified())
                .await
                .is_err();
        };
    }
}
