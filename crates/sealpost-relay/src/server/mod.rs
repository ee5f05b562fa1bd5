//! The quinn/tokio driver: accepts connections, reads request streams, runs the
//! [`Handler`], writes responses, carries out [`Effect`]s and delivers
//! mailboxes on server-opened unidirectional streams (spec/relay.md sections 1, 2, 4, 5).
//!
//! Per connection there is one task accepting request streams (one task per stream) and,
//! once the connection has authenticated, a delivery slot whose task runs only while there
//! is something to deliver (an idle connection keeps no delivery task). Requests of one
//! connection are handled one at a time (they share the connection's state), except `Send`
//! and `Ack`, which run from a snapshot of it ([`Handler::handle_send_or_ack`]); different
//! connections run in parallel, and their writes meet in the store's group commit. Every
//! response is queued by its request's task once the store's future has resolved, and the
//! connection's responses that are ready together are written together (`responder.rs`); the
//! store never touches a stream. Envelopes reach deliveries through commit notices and,
//! with SQLite, the store's mail feed (`delivery.rs`).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Relay::start`], [`RelayHandle`] (accessors, shutdown), the shared state, the sweep |
//! | `accept.rs` | accepting connections: limits, Retry, per-address slots, the stream-accept loop |
//! | `requests.rs` | reading a request within the request buffer, handling it, writing the response |
//! | `responder.rs` | writing a connection's ready responses together, in one flight |
//! | `delivery.rs` | the per-device registry, delivery slots and the delivery loop |
//! | `files.rs` | the data directory's lock and the secret files |
//! | `refusals.rs` | refused connections: counted by reason, logged as a rate-limited summary |
//! | `wakeups.rs` | cross-node wake-ups over NATS (feature `nats`) |

mod accept;
mod delivery;
mod files;
mod provisioning;
mod refusals;
mod requests;
mod responder;
#[cfg(feature = "nats")]
mod wakeups;

use accept::{ConnCtx, accept_loop};
use delivery::{Registry, Slot, apply_effects, dispatch_feed};
pub(crate) use files::lock_data_dir;
pub use files::{CODE_KEY_FILE, DB_FILE, ISSUER_KEY_FILE, LOCK_FILE};
use files::{load_or_create_code_key, load_or_create_issuer_key};
pub use provisioning::PROVISIONING_POLL;
use requests::{Budget, serve_request};
use responder::Responder;

use crate::codes::{CodeSender, LogCodeSender, WebhookCodeSender};
use crate::config::{RelayConfig, StoreBackend};
use crate::handler::{ConnectionState, Effect, Handler, decode_error_response};
use crate::limits::{
    AUTH_CONCURRENT_REQUESTS, DELIVERY_WINDOW, IDLE_TIMEOUT_SECS, MAX_CONCURRENT_REQUESTS,
    PRE_AUTH_CONCURRENT_REQUESTS,
};
#[cfg(feature = "postgres")]
use crate::store::PgStore;
use crate::store::{AnyStore, MailFeed, SqliteStore, Store, StoredEnvelope, Written};
use crate::{ConfigError, RelayError, StoreError, TlsError, metrics, tls};
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
#[cfg(feature = "nats")]
pub use wakeups::{
    WAKE_FALLBACK_POLL, WAKE_PAYLOAD_LEN, WAKE_SUBJECT_PREFIX, WAKE_VERSION, parse_wake_payload,
    wake_payload, wake_subject,
};

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
/// Application close code: the connection's device was removed from its account's device
/// list (`PublishDeviceList` or `LinkDevice`, spec/relay.md sections 3.9 and 3.10); the client
/// does not reconnect.
pub const CLOSE_DEVICE_UNLISTED: u32 = 5;
/// Stream reset / stop code: the request stream was abandoned.
pub const STREAM_ABANDONED: u32 = 1;

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

struct Shared {
    handler: Arc<Handler>,
    store: Arc<AnyStore>,
    /// The store publishes written envelopes on a mail feed (SQLite); without one, commit
    /// notices alone drive deliveries.
    early_delivery: bool,
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
    /// Push frames handed to push streams ([`RelayHandle::pushes_sent`]).
    pushes: AtomicU64,
    /// Where delivery tasks are spawned.
    runtime: tokio::runtime::Handle,
    max_connections: usize,
    max_connections_per_ip: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Refused connections, for the log's rate-limited summary.
    refusals: Mutex<refusals::RefusalLog>,
    /// Cross-node wake-ups (`nats` configured).
    #[cfg(feature = "nats")]
    wakeups: Option<Arc<wakeups::Wakeups>>,
    /// Rounds of the wake-up fallback poll ([`RelayHandle::wake_polls`]).
    wake_polls: AtomicU64,
    /// Connections waiting for a provisioning message, by provisioning id.
    provisioning: provisioning::Watches,
}

/// The wake-up hooks of the driver; no-ops without a NATS link.
impl Shared {
    /// A `Send` committed mail up to `up_to` for `device`: tell the other nodes.
    fn wake_publish(&self, device: &DeviceAddress, up_to: u64) {
        #[cfg(feature = "nats")]
        if let Some(w) = &self.wakeups {
            w.publish(device, up_to);
        }
        #[cfg(not(feature = "nats"))]
        let _ = (device, up_to);
    }

    /// `device` is authenticating here: subscribe to its wake-ups before its delivery starts.
    async fn wake_watch(self: &Arc<Self>, device: &DeviceAddress) {
        #[cfg(feature = "nats")]
        if let Some(w) = &self.wakeups {
            w.watch(self, device).await;
        }
        #[cfg(not(feature = "nats"))]
        let _ = device;
    }

    /// `device` was registered here: keep its subscription.
    fn wake_ensure(self: &Arc<Self>, device: &DeviceAddress) {
        #[cfg(feature = "nats")]
        if let Some(w) = &self.wakeups {
            w.ensure(self, device);
        }
        #[cfg(not(feature = "nats"))]
        let _ = device;
    }

    /// A connection of `device` left the registry: unsubscribe if it was the last.
    fn wake_sync(&self, device: &DeviceAddress) {
        #[cfg(feature = "nats")]
        if let Some(w) = &self.wakeups {
            w.sync(self, device);
        }
        #[cfg(not(feature = "nats"))]
        let _ = device;
    }
}

/// A spawned task aborted on drop: a start that fails half-way leaves no task behind.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    fn into_inner(mut self) -> Option<JoinHandle<()>> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
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
    /// What `GET /readyz` answers.
    readiness: Arc<metrics::Readiness>,
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
        .datagram_receive_buffer_size(None)
        // No path-MTU discovery: datagrams stay at QUIC's 1,200 bytes (spec/relay.md section
        // 1). quinn keeps each connection's transmit buffer at the largest size it ever
        // needed, and its first MTU probe doubles that buffer from 1,200 to 2,400 bytes for
        // the connection's life; an idle connection's memory is the budget, and relay
        // traffic is small frames.
        .mtu_discovery_config(None);
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(IDLE_TIMEOUT_SECS)) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

/// Opens the configured store: SQLite in the data directory, or a PostgreSQL database that
/// other relay nodes may share.
async fn open_store(config: &RelayConfig) -> Result<AnyStore, RelayError> {
    match &config.store {
        StoreBackend::Sqlite => {
            let db = config.data_dir.join(DB_FILE);
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(db))
                .await
                .map_err(|e| RelayError::Store(StoreError::backend("opening the database", e)))??;
            Ok(AnyStore::from(store))
        }
        #[cfg(feature = "postgres")]
        StoreBackend::Postgres(url) => Ok(AnyStore::from(PgStore::connect(url).await?)),
        #[cfg(not(feature = "postgres"))]
        StoreBackend::Postgres(_) => Err(RelayError::Config(ConfigError::FeatureMissing {
            setting: "store = postgres://...",
            feature: "postgres",
        })),
    }
}

impl Relay {
    /// Starts a relay: creates the data directory, loads or generates the TLS certificate
    /// and the code-MAC key, opens the database, binds `config.listen` and starts serving.
    pub async fn start(config: RelayConfig) -> Result<RelayHandle, RelayError> {
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
        dir.create(&config.data_dir).map_err(|e| {
            RelayError::io(
                "creating",
                crate::error::IoTarget::Path(config.data_dir.clone()),
                e,
            )
        })?;
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
        // The probes answer from here on: alive, and not ready until the endpoint listens.
        let readiness = Arc::new(metrics::Readiness::new());
        let (metrics_addr, metrics_task) = match config.metrics_listen {
            Some(addr) => {
                let (addr, task) = metrics::install_prometheus(addr, Arc::clone(&readiness))?;
                tracing::info!(%addr, "Prometheus exporter and probes listening");
                (Some(addr), AbortOnDrop(Some(task)))
            }
            None => (None, AbortOnDrop(None)),
        };
        let store = Arc::new(open_store(&config).await?);
        readiness.set_store(Arc::clone(&store));
        // Before any connection: every envelope written from now on is published.
        let feed: Option<MailFeed> = store.subscribe().await;
        let code_sender = code_sender(&config)?;
        #[cfg(feature = "nats")]
        let (wakeups, wake_task) = match &config.nats {
            Some(url) => {
                if matches!(config.store, StoreBackend::Sqlite) {
                    tracing::warn!(
                        "nats is configured but the store is SQLite, which no other node shares"
                    );
                }
                let (w, task) = wakeups::Wakeups::connect(url.expose()).await?;
                (Some(w), Some(task))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "nats"))]
        if config.nats.is_some() {
            return Err(RelayError::Config(ConfigError::FeatureMissing {
                setting: "nats",
                feature: "nats",
            }));
        }
        #[cfg(not(feature = "nats"))]
        let wake_task: Option<JoinHandle<()>> = None;
        let handler = Arc::new(
            Handler::new(
                Arc::clone(&store),
                code_sender,
                code_key,
                config.limits.clone(),
                StdRng::from_rng(&mut rand::rng()),
            )
            .with_issuer(issuer)
            .with_guardian(config.guardian.clone())?,
        );
        let issuer_public = handler.issuer_public();

        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| {
            RelayError::Tls(TlsError::Material {
                what: "QUIC TLS configuration",
                source: crate::Cause::new(e),
            })
        })?;
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
            .map_err(|e| {
                RelayError::io("binding", crate::error::IoTarget::Addr(config.listen), e)
            })?;
        let local_addr = endpoint.local_addr().map_err(|e| {
            RelayError::io(
                "reading the bound address of",
                crate::error::IoTarget::Endpoint,
                e,
            )
        })?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // Bounded by tokio's semaphore (`usize::MAX >> 3` permits).
        let request_buffer = usize::try_from(config.limits.request_buffer_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            handler,
            store,
            early_delivery: feed.is_some(),
            registry: Registry::default(),
            in_flight: Arc::new(InFlight::default()),
            budget: Budget {
                global: Arc::new(Semaphore::new(request_buffer)),
                capacity: request_buffer,
                per_connection: usize::try_from(config.limits.request_buffer_per_connection)
                    .unwrap_or(usize::MAX)
                    .min(request_buffer),
                stall: Duration::from_millis(config.limits.request_stall_timeout_ms),
                peak: AtomicUsize::new(0),
            },
            retries: AtomicU64::new(0),
            retry_threshold: config.limits.retry_threshold as usize,
            shutdown: shutdown_rx,
            next_conn_id: AtomicU64::new(1),
            delivery_tasks: AtomicUsize::new(0),
            pushes: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            max_connections: config.limits.max_connections as usize,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            per_ip: Mutex::new(HashMap::new()),
            refusals: Mutex::new(refusals::RefusalLog::default()),
            #[cfg(feature = "nats")]
            wakeups,
            wake_polls: AtomicU64::new(0),
            provisioning: provisioning::Watches::default(),
        });
        #[cfg(feature = "nats")]
        let poll_task = match &shared.wakeups {
            Some(w) if !shared.early_delivery => Some(tokio::spawn(wakeups::fallback_poll(
                w.client(),
                Arc::downgrade(&shared),
            ))),
            _ => None,
        };
        #[cfg(not(feature = "nats"))]
        let poll_task: Option<JoinHandle<()>> = None;
        let dispatch = feed.map(|feed| tokio::spawn(dispatch_feed(Arc::clone(&shared), feed)));
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        readiness.set_accepting(true);
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
            metrics_addr,
            tasks: [accept, sweep]
                .into_iter()
                .chain(dispatch)
                .chain(wake_task)
                .chain(poll_task)
                .chain(metrics_task.into_inner())
                .collect(),
            done: false,
            lock: Some(lock),
            readiness,
        })
    }
}

impl RelayHandle {
    /// Cross-node wake-up subscriptions held now: one per device connected to this node
    /// while `nats` is configured (spec/relay.md section 8); 0 without NATS.
    pub fn wake_subscriptions(&self) -> usize {
        #[cfg(feature = "nats")]
        if let Some(w) = &self.shared.wakeups {
            return w.subscriptions();
        }
        0
    }

    /// Rounds of the cross-node wake-up fallback poll so far: one per
    /// `WAKE_FALLBACK_POLL` while the node's NATS link is down, and one after it has
    /// reconnected (spec/relay.md section 8.3); 0 without NATS.
    pub fn wake_polls(&self) -> u64 {
        self.shared.wake_polls.load(Ordering::Relaxed)
    }

    /// Delivery tasks running now. A connected device has one only while the relay has
    /// something to push to it (spec/relay.md section 4); idle connections keep none.
    pub fn delivery_tasks(&self) -> usize {
        self.shared.delivery_tasks.load(Ordering::Acquire)
    }

    /// Request body bytes reserved relay-wide now (the `sealpost_request_buffer_bytes`
    /// gauge): never more than `limits.request_buffer_bytes`.
    pub fn buffered_request_bytes(&self) -> usize {
        self.shared.budget.in_use()
    }

    /// The most request body bytes reserved relay-wide at any one time since the relay
    /// started: every reservation is counted, so a budget that held never shows more.
    pub fn peak_buffered_request_bytes(&self) -> usize {
        self.shared.budget.peak.load(Ordering::Relaxed)
    }

    /// Push frames (`Deliver`, `QueueDrained`, `PreKeysLow`) handed to push streams so far,
    /// on every connection. A delivery pushes only from its task: once
    /// [`RelayHandle::delivery_tasks`] is 0 this count stays put until the next update.
    pub fn pushes_sent(&self) -> u64 {
        self.shared.pushes.load(Ordering::Relaxed)
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
        self.readiness.set_accepting(false);
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
        if let Err(e) = shared.handler.sweep(now_ms()).await {
            tracing::error!(error = %e, "expiry sweep failed");
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
                .ok_or(ConfigError::WebhookSecretMissing)?;
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
        (None, None) => Err(RelayError::Config(ConfigError::NoCodeSender)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path-MTU discovery stays off (spec/relay.md section 1): its first probe doubles every
    /// connection's transmit buffer in quinn (1,200 to 2,400 bytes, kept for the connection's
    /// life). quinn's `TransportConfig` shows its settings only through `Debug`.
    #[test]
    fn connections_do_no_mtu_discovery() {
        let shown = format!("{:?}", transport_config());
        assert!(
            shown.contains("mtu_discovery_config: None"),
            "transport config: {shown}"
        );
        assert!(
            shown.contains("initial_mtu: 1200"),
            "transport config: {shown}"
        );
    }
}
