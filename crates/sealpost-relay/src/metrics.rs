//! Metric names and recording helpers (the `metrics` facade). Nothing is recorded unless a
//! recorder is installed: the relay installs the Prometheus exporter only when
//! `metrics_listen` is configured (the `server` feature), on an HTTP listener that also answers
//! the probes `GET /healthz` (alias `/live`) and `GET /readyz` (alias `/ready`; spec/relay.md
//! section 5).
//!
//! Labels are static strings (request kinds, reasons), never built per request: recording
//! a sample costs a lookup of an existing series, not an allocation. Histograms are in
//! seconds (Prometheus summaries: the exporter's default quantiles 0, 0.5, 0.9, 0.95, 0.99,
//! 0.999 and 1, with `_sum` and `_count`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sealpost_connections` | gauge | |
//! | `sealpost_frames_total` | counter | `kind` (request name, or `malformed`) |
//! | `sealpost_messages_queued_total` | counter | |
//! | `sealpost_messages_delivered_total` | counter | (envelopes acknowledged by recipients) |
//! | `sealpost_messages_expired_total` | counter | |
//! | `sealpost_queue_depth` | gauge | (envelopes queued relay-wide, set by the sweep) |
//! | `sealpost_auth_failures_total` | counter | |
//! | `sealpost_webhook_failures_total` | counter | `what` (`retried`: an attempt failed and is retried; `gave_up`: the last attempt failed; `refused`: the gateway refused the code (4xx); `dropped`: too many deliveries in flight) |
//! | `sealpost_rate_limited_total` | counter | `what` (`code_number`, `code_source`, `code_country`, `code_global`, `code_connection`, `auth`, `bundles`, `sends`, `connections_per_ip`) |
//! | `sealpost_request_buffer_bytes` | gauge | (request body bytes reserved relay-wide) |
//! | `sealpost_requests_abandoned_total` | counter | `why` (`stalled`, `timeout`) |
//! | `sealpost_quic_retries_total` | counter | (QUIC Retry packets sent) |
//! | `sealpost_connections_replaced_total` | counter | (closed because their device authenticated again) |
//! | `sealpost_connections_refused_total` | counter | `reason` (`connection_limit`, `address_limit`, `retry_failed`, `alpn`, `shutting_down`) |
//! | `sealpost_request_duration_seconds` | histogram | `kind` (request name): from a decoded request to its response, store commit included |
//! | `sealpost_store_commit_seconds` | histogram | `store` (`sqlite`: one group's `COMMIT`; `postgres`: a transaction's `COMMIT` round trip, the server's WAL flush included, or a send group's pipelined statements and `COMMIT`) |
//! | `sealpost_store_fsync_seconds` | histogram | (SQLite: one `fdatasync` of the WAL, which makes the groups committed since the last one durable) |
//! | `sealpost_vaults_deleted_total` | counter | `why` (`attempts`: the last allowed evaluation; `owner`: a `VaultDelete`) |
//! | `sealpost_wakeups_dropped_total`, `sealpost_wakeups_received_total`, `sealpost_nats_events_total` | counter | cross-node wake-ups (spec/relay.md section 8) |

/// Gauge: open connections.
pub const CONNECTIONS: &str = "sealpost_connections";
/// Counter: frames received, by kind.
pub const FRAMES: &str = "sealpost_frames_total";
/// Counter: envelopes queued.
pub const QUEUED: &str = "sealpost_messages_queued_total";
/// Counter: envelopes acknowledged (and so deleted) by their recipients.
pub const DELIVERED: &str = "sealpost_messages_delivered_total";
/// Counter: envelopes deleted unread after the mailbox TTL.
pub const EXPIRED: &str = "sealpost_messages_expired_total";
/// Gauge: envelopes queued relay-wide.
pub const QUEUE_DEPTH: &str = "sealpost_queue_depth";
/// Counter: failed `Authenticate` requests.
pub const AUTH_FAILURES: &str = "sealpost_auth_failures_total";
/// Counter: requests refused by a rate limit, by limit.
pub const RATE_LIMITED: &str = "sealpost_rate_limited_total";

/// Gauge: request body bytes reserved relay-wide (spec/relay.md section 2).
pub const REQUEST_BUFFER: &str = "sealpost_request_buffer_bytes";
/// Counter: request streams abandoned (stalled under buffer pressure, or timed out).
pub const REQUESTS_ABANDONED: &str = "sealpost_requests_abandoned_total";
/// Counter: QUIC Retry packets sent (address validation, spec/relay.md section 1).
pub const RETRIES: &str = "sealpost_quic_retries_total";
/// Counter: connections closed because their device authenticated on a newer one.
pub const CONNECTIONS_REPLACED: &str = "sealpost_connections_replaced_total";
/// Counter: failed verification-code webhook deliveries and attempts, by kind.
pub const WEBHOOK_FAILURES: &str = "sealpost_webhook_failures_total";
/// Counter: cross-node wake-ups not published (spec/relay.md section 8.3), by reason.
pub const WAKEUPS_DROPPED: &str = "sealpost_wakeups_dropped_total";
/// Counter: cross-node wake-ups received, by outcome (`ok`, `malformed`).
pub const WAKEUPS_RECEIVED: &str = "sealpost_wakeups_received_total";
/// Counter: events of the NATS connection (`connected`, `disconnected`, ...).
pub const NATS_EVENTS: &str = "sealpost_nats_events_total";
/// Counter: connections refused before they were served, by reason.
pub const CONNECTIONS_REFUSED: &str = "sealpost_connections_refused_total";
/// Histogram (seconds): handling one request, by kind.
pub const REQUEST_DURATION: &str = "sealpost_request_duration_seconds";
/// Histogram (seconds): committing one transaction or write group, by store.
pub const STORE_COMMIT: &str = "sealpost_store_commit_seconds";
/// Histogram (seconds): one `fdatasync` of the SQLite WAL.
pub const STORE_FSYNC: &str = "sealpost_store_fsync_seconds";
/// Counter: guardian vaults deleted, by why.
pub const VAULTS_DELETED: &str = "sealpost_vaults_deleted_total";
/// Provisioning ids (spec/relay.md 3.11), by event.
pub const PROVISIONING: &str = "sealpost_provisioning_total";
/// Counter: `PublishDeviceList`, `LinkDevice`, `StoreAccountKeyBackup` and
/// `PublishBusinessProfile` requests (spec/relay.md 3.9, 3.10, 3.13, 3.14), by request
/// (`publish`, `link`, `backup`, `business_profile`) and outcome (`stored`, `invalid`,
/// `invalid_profile`, `stale`, `too_many`, `bad_signature`, `rate_limited`, `failed`).
pub const DEVICE_LISTS: &str = "sealpost_device_lists_total";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    metrics::describe_gauge!(CONNECTIONS, "open QUIC connections");
    metrics::describe_counter!(FRAMES, "request frames received, by kind");
    metrics::describe_counter!(QUEUED, "envelopes queued");
    metrics::describe_counter!(DELIVERED, "envelopes acknowledged by their recipients");
    metrics::describe_counter!(EXPIRED, "envelopes deleted unread after the mailbox TTL");
    metrics::describe_gauge!(QUEUE_DEPTH, "envelopes queued relay-wide");
    metrics::describe_counter!(AUTH_FAILURES, "failed device authentications");
    metrics::describe_counter!(RATE_LIMITED, "requests refused by a rate limit");
    metrics::describe_gauge!(REQUEST_BUFFER, "request body bytes reserved relay-wide");
    metrics::describe_counter!(REQUESTS_ABANDONED, "request streams abandoned");
    metrics::describe_counter!(RETRIES, "QUIC Retry packets sent");
    metrics::describe_counter!(
        CONNECTIONS_REPLACED,
        "connections closed because their device authenticated on a newer one"
    );
    metrics::describe_counter!(WAKEUPS_DROPPED, "cross-node wake-ups not published");
    metrics::describe_counter!(WAKEUPS_RECEIVED, "cross-node wake-ups received, by outcome");
    metrics::describe_counter!(NATS_EVENTS, "events of the NATS connection");
    metrics::describe_counter!(
        WEBHOOK_FAILURES,
        "failed verification-code webhook attempts and deliveries"
    );
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "connections refused before they were served, by reason"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "time to handle one request, by kind"
    );
    metrics::describe_histogram!(
        STORE_COMMIT,
        metrics::Unit::Seconds,
        "time to commit one transaction or write group, by store"
    );
    metrics::describe_histogram!(
        STORE_FSYNC,
        metrics::Unit::Seconds,
        "time of one fdatasync of the SQLite WAL"
    );
    metrics::describe_counter!(VAULTS_DELETED, "guardian vaults deleted, by why");
    metrics::describe_counter!(
        PROVISIONING,
        "provisioning ids opened, provisioned, refused as not found, and pushed"
    );
    metrics::describe_counter!(
        DEVICE_LISTS,
        "device lists published or linked, by request and outcome"
    );
}

/// A `PublishDeviceList` or `LinkDevice` (`request`) ended with `outcome`.
pub(crate) fn device_list(request: &'static str, outcome: &'static str) {
    metrics::counter!(DEVICE_LISTS, "request" => request, "outcome" => outcome).increment(1);
}

/// One request of `kind` took `elapsed`.
pub(crate) fn request_duration(kind: &'static str, elapsed: std::time::Duration) {
    metrics::histogram!(REQUEST_DURATION, "kind" => kind).record(elapsed.as_secs_f64());
}

/// A commit of `store` (`sqlite`, `postgres`) took `elapsed`.
#[cfg(feature = "server")]
pub(crate) fn store_commit(store: &'static str, elapsed: std::time::Duration) {
    metrics::histogram!(STORE_COMMIT, "store" => store).record(elapsed.as_secs_f64());
}

/// An `fdatasync` of the SQLite WAL took `elapsed`.
#[cfg(feature = "server")]
pub(crate) fn store_fsync(elapsed: std::time::Duration) {
    metrics::histogram!(STORE_FSYNC).record(elapsed.as_secs_f64());
}

/// A guardian vault was deleted (`attempts`, `owner`).
pub(crate) fn vault_deleted(why: &'static str) {
    metrics::counter!(VAULTS_DELETED, "why" => why).increment(1);
}

/// A provisioning event (`opened`, `provisioned`, `not_found`, `pushed`).
pub(crate) fn provisioning(event: &'static str) {
    metrics::counter!(PROVISIONING, "event" => event).increment(1);
}

/// A connection was refused for `reason`.
#[cfg(feature = "server")]
pub(crate) fn connection_refused(reason: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

#[cfg(feature = "server")]
pub(crate) fn request_buffer(bytes: usize) {
    metrics::gauge!(REQUEST_BUFFER).set(bytes as f64);
}

#[cfg(feature = "server")]
pub(crate) fn request_abandoned(why: &'static str) {
    metrics::counter!(REQUESTS_ABANDONED, "why" => why).increment(1);
}

#[cfg(feature = "server")]
pub(crate) fn retry_sent() {
    metrics::counter!(RETRIES).increment(1);
}

#[cfg(feature = "server")]
pub(crate) fn connection_replaced() {
    metrics::counter!(CONNECTIONS_REPLACED).increment(1);
}

pub(crate) fn frame(kind: &'static str) {
    metrics::counter!(FRAMES, "kind" => kind).increment(1);
}

pub(crate) fn rate_limited(what: &'static str) {
    metrics::counter!(RATE_LIMITED, "what" => what).increment(1);
}

#[cfg(feature = "server")]
pub(crate) fn webhook_failure(what: &'static str) {
    metrics::counter!(WEBHOOK_FAILURES, "what" => what).increment(1);
}

#[cfg(feature = "nats")]
pub(crate) fn wakeup_dropped(why: &'static str) {
    metrics::counter!(WAKEUPS_DROPPED, "why" => why).increment(1);
}

#[cfg(feature = "nats")]
pub(crate) fn wakeup_received(outcome: &'static str) {
    metrics::counter!(WAKEUPS_RECEIVED, "outcome" => outcome).increment(1);
}

#[cfg(feature = "nats")]
pub(crate) fn nats_event(event: &'static str) {
    metrics::counter!(NATS_EVENTS, "event" => event).increment(1);
}

pub(crate) fn auth_failure() {
    metrics::counter!(AUTH_FAILURES).increment(1);
}

pub(crate) fn queued(n: u64) {
    metrics::counter!(QUEUED).increment(n);
}

pub(crate) fn delivered(n: u64) {
    metrics::counter!(DELIVERED).increment(n);
}

pub(crate) fn expired(n: u64) {
    metrics::counter!(EXPIRED).increment(n);
}

pub(crate) fn queue_depth(n: u64) {
    metrics::gauge!(QUEUE_DEPTH).set(n as f64);
}

#[cfg(feature = "server")]
pub(crate) fn connections(delta: f64) {
    metrics::gauge!(CONNECTIONS).increment(delta);
}

/// Installs the Prometheus recorder as the process-wide recorder and serves it over HTTP
/// (`GET /metrics`), with the node's readiness (`GET /readyz`) and liveness (`GET /healthz`), on
/// `addr`, which may have port 0: the bound address is returned (with the serving task).
/// Must be called inside a tokio runtime. Fails if the address cannot be bound or a
/// recorder is already installed.
#[cfg(feature = "server")]
pub(crate) fn install_prometheus(
    addr: std::net::SocketAddr,
    readiness: std::sync::Arc<Readiness>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), crate::RelayError> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| {
            crate::RelayError::io(
                "binding the metrics listener to",
                crate::error::IoTarget::Addr(addr),
                e,
            )
        })?;
    let bound = listener.local_addr().map_err(|e| {
        crate::RelayError::io(
            "reading the bound address of",
            crate::error::IoTarget::MetricsListener,
            e,
        )
    })?;
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| crate::RelayError::Metrics(crate::Cause::new(e)))?;
    describe();
    Ok((
        bound,
        tokio::spawn(http::serve(listener, handle, readiness)),
    ))
}

/// How long a readiness answer is reused: a load balancer polling every node often costs the
/// store at most one probe per this interval.
#[cfg(feature = "server")]
pub const READY_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the store's health probe may take before the node counts as not ready.
#[cfg(feature = "server")]
pub const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the node is not ready (the body of a `503` from `GET /readyz`).
#[cfg(feature = "server")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// The relay is starting: its store is not open yet.
    OpeningStore,
    /// The store is open; the QUIC endpoint is not listening yet.
    NotListening,
    /// The relay is shutting down (or the endpoint stopped accepting connections).
    ShuttingDown,
    /// The store's health probe failed.
    Store(crate::StoreError),
    /// The store's health probe did not answer within [`HEALTH_TIMEOUT`].
    StoreTimeout,
}

#[cfg(feature = "server")]
impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OpeningStore => f.write_str("starting: opening the store"),
            Self::NotListening => f.write_str("starting: not accepting connections yet"),
            Self::ShuttingDown => f.write_str("not accepting connections (shutting down)"),
            // One line: a backend's message never spans lines, but make sure.
            Self::Store(e) => {
                let reason = e.to_string().replace(|c: char| c.is_control(), " ");
                write!(f, "store not writable: {reason}")
            }
            Self::StoreTimeout => write!(
                f,
                "store not writable: its health probe did not answer within {} s",
                HEALTH_TIMEOUT.as_secs()
            ),
        }
    }
}

/// Where the node is in its life, for [`Readiness`].
#[cfg(feature = "server")]
const STARTING: u8 = 0;
#[cfg(feature = "server")]
const ACCEPTING: u8 = 1;
#[cfg(feature = "server")]
const STOPPING: u8 = 2;

/// Whether the node is ready (spec/relay.md section 5, "Readiness"): its store is open and
/// its health probe ([`crate::store::Store::health`]) answered `Ok` within
/// [`HEALTH_TIMEOUT`], and its QUIC endpoint accepts connections. Probed at request time; an
/// answer is reused for [`READY_CACHE`]. The listener starts before the store is opened, so
/// a supervisor sees the process alive (`/healthz`) and why it is not ready yet (`/readyz`)
/// while it starts.
#[cfg(feature = "server")]
pub(crate) struct Readiness {
    store: std::sync::OnceLock<std::sync::Arc<crate::store::AnyStore>>,
    phase: std::sync::atomic::AtomicU8,
    /// The last probe's time and answer; the lock also makes concurrent requests share one
    /// probe.
    cache: tokio::sync::Mutex<Option<(tokio::time::Instant, Result<(), NotReady>)>>,
}

#[cfg(feature = "server")]
impl Readiness {
    /// Starting: no store yet, not accepting connections.
    pub(crate) fn new() -> Self {
        Self {
            store: std::sync::OnceLock::new(),
            phase: std::sync::atomic::AtomicU8::new(STARTING),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The store is open; its health is probed from now on.
    pub(crate) fn set_store(&self, store: std::sync::Arc<crate::store::AnyStore>) {
        let _ = self.store.set(store);
    }

    /// The node accepts connections (`true`, once serving) or no longer does (shutting
    /// down).
    pub(crate) fn set_accepting(&self, accepting: bool) {
        let phase = if accepting { ACCEPTING } else { STOPPING };
        self.phase.store(phase, std::sync::atomic::Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub(crate) async fn check(&self) -> Result<(), NotReady> {
        use crate::store::Store as _;
        let Some(store) = self.store.get() else {
            return Err(NotReady::OpeningStore);
        };
        match self.phase.load(std::sync::atomic::Ordering::SeqCst) {
            STARTING => return Err(NotReady::NotListening),
            ACCEPTING => {}
            _ => return Err(NotReady::ShuttingDown),
        }
        let mut cache = self.cache.lock().await;
        if let Some((at, answer)) = &*cache
            && at.elapsed() < READY_CACHE
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(HEALTH_TIMEOUT, store.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NotReady::Store(e)),
            Err(_) => Err(NotReady::StoreTimeout),
        };
        *cache = Some((tokio::time::Instant::now(), answer.clone()));
        answer
    }
}

/// The `/metrics`, `/healthz` and `/readyz` endpoints. The exporter's own HTTP listener
/// binds the configured address itself and cannot report the port it got (so port 0, and
/// with it race-free tests, was impossible); this serves the exporter's rendering on a
/// listener bound here. It answers one request per connection and closes it: `GET
/// /metrics`; `GET /readyz` (or `/ready`), `200` and `ready` when the node is ready, else
/// `503` and the reason (one line); `GET /healthz` (or `/live`), `200` while the process
/// serves; anything else gets 404 or 400. Request heads are bounded in size and time.
#[cfg(feature = "server")]
mod http {
    use super::Readiness;
    use metrics_exporter_prometheus::PrometheusHandle;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    /// Longest request head read.
    const MAX_HEAD: usize = 8 * 1024;
    /// Time a client has to send its request head and read the answer.
    const IO_TIMEOUT: Duration = Duration::from_secs(5);
    /// Histogram upkeep interval (what the exporter's own listener does).
    const UPKEEP: Duration = Duration::from_secs(5);

    pub(super) async fn serve(
        listener: TcpListener,
        handle: PrometheusHandle,
        readiness: Arc<Readiness>,
    ) {
        let mut upkeep = tokio::time::interval(UPKEEP);
        loop {
            tokio::select! {
                _ = upkeep.tick() => handle.run_upkeep(),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handle = handle.clone();
                        let readiness = Arc::clone(&readiness);
                        tokio::spawn(async move {
                            if tokio::time::timeout(IO_TIMEOUT, answer(stream, &handle, &readiness))
                                .await
                                .is_err()
                            {
                                tracing::debug!("metrics request timed out");
                            }
                        });
                    }
                    Err(e) => tracing::debug!(error = %e, "metrics accept failed"),
                },
            }
        }
    }

    async fn answer(stream: TcpStream, handle: &PrometheusHandle, readiness: &Readiness) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_HEAD || stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
        let mut parts = line.split(|b| *b == b' ');
        let (method, target) = (parts.next(), parts.next());
        let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
        let (status, body) = match (method, path) {
            (Some(b"GET"), Some(b"/metrics")) => ("200 OK", handle.render()),
            (Some(b"GET"), Some(b"/readyz" | b"/ready")) => match readiness.check().await {
                Ok(()) => ("200 OK", "ready\n".to_owned()),
                Err(reason) => ("503 Service Unavailable", format!("{reason}\n")),
            },
            (Some(b"GET"), Some(b"/healthz" | b"/live")) => ("200 OK", "live\n".to_owned()),
            (Some(_), Some(_)) => ("404 Not Found", String::new()),
            _ => ("400 Bad Request", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut rest = response.as_bytes();
        while !rest.is_empty() {
            if stream.writable().await.is_err() {
                return;
            }
            match stream.try_write(rest) {
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "server")]
mod tests {
    use super::*;
    use crate::store::{AnyStore, MemoryStore};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// `GET /readyz` (and its alias `/ready`) answers 503 with the reason while the node
    /// has no store and does not accept connections, 200 once it does and its store is
    /// healthy, 503 with the store's reason once the store is closed; `GET /healthz` (and
    /// `/live`) answers 200 throughout.
    #[tokio::test]
    async fn ready_and_live_answer_over_http() {
        let store = Arc::new(AnyStore::from(MemoryStore::new()));
        let sqlite_dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(AnyStore::from(
            crate::store::SqliteStore::open(sqlite_dir.path().join("r.db")).unwrap(),
        ));
        for store in [store, Arc::clone(&sqlite)] {
            let readiness = Arc::new(Readiness::new());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle();
            let server = tokio::spawn(http::serve(listener, handle, Arc::clone(&readiness)));

            let r = get(addr, "/readyz").await;
            assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
            assert!(r.ends_with("starting: opening the store\n"), "{r}");
            readiness.set_store(store);
            let r = get(addr, "/ready").await;
            assert!(
                r.ends_with("starting: not accepting connections yet\n"),
                "{r}"
            );
            for live in ["/healthz", "/live"] {
                assert!(get(addr, live).await.starts_with("HTTP/1.1 200 "));
            }
            readiness.set_accepting(true);
            for ready in ["/readyz", "/ready"] {
                let r = get(addr, ready).await;
                assert!(
                    r.starts_with("HTTP/1.1 200 ") && r.ends_with("\r\n\r\nready\n"),
                    "{r}"
                );
            }
            assert!(get(addr, "/metrics").await.starts_with("HTTP/1.1 200 "));
            assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404 "));
            server.abort();
        }
        // A closed store: not ready, and says why.
        sqlite.close();
        let readiness = Readiness::new();
        readiness.set_store(sqlite);
        readiness.set_accepting(true);
        let answer = readiness.check().await;
        assert_eq!(answer, Err(NotReady::Store(crate::StoreError::Closed)));
        assert_eq!(
            answer.unwrap_err().to_string(),
            "store not writable: store is closed"
        );
        readiness.set_accepting(false);
        assert_eq!(readiness.check().await, Err(NotReady::ShuttingDown));
    }
}
