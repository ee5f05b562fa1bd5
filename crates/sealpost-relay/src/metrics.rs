//! Metric names and recording helpers (the `metrics` facade). Nothing is recorded unless a
//! recorder is installed: the relay installs the Prometheus exporter only when
//! `metrics_listen` is configured (the `server` feature), on an HTTP listener that also answers
//! `GET /ready` and `GET /live` (spec/relay.md section 5).
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
/// (`GET /metrics`), with the node's readiness (`GET /ready`) and liveness (`GET /live`), on
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
        .map_err(|e| crate::RelayError::io(format!("binding the metrics listener {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| crate::RelayError::io("reading the metrics listener address", e))?;
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| crate::RelayError::Config(format!("metrics recorder: {e}")))?;
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

/// Whether the node is ready (spec/relay.md section 5, "Readiness"): it accepts connections
/// and its store's health probe ([`crate::store::Store::health`]) answered `Ok` within
/// [`HEALTH_TIMEOUT`]. Probed at request time; an answer is reused for [`READY_CACHE`].
#[cfg(feature = "server")]
pub(crate) struct Readiness {
    store: std::sync::Arc<crate::store::AnyStore>,
    accepting: std::sync::atomic::AtomicBool,
    /// The last probe's time and answer; the lock also makes concurrent requests share one
    /// probe.
    cache: tokio::sync::Mutex<Option<(tokio::time::Instant, Result<(), String>)>>,
}

#[cfg(feature = "server")]
impl Readiness {
    /// Not accepting connections until [`Readiness::set_accepting`].
    pub(crate) fn new(store: std::sync::Arc<crate::store::AnyStore>) -> Self {
        Self {
            store,
            accepting: std::sync::atomic::AtomicBool::new(false),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The node accepts connections (`true`, once serving) or not (starting, shutting down).
    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.accepting
            .store(accepting, std::sync::atomic::Ordering::SeqCst);
    }

    /// `Ok` when ready, else the reason on one line.
    pub(crate) async fn check(&self) -> Result<(), String> {
        use crate::store::Store as _;
        if !self.accepting.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("not accepting connections (starting or shutting down)".into());
        }
        let mut cache = self.cache.lock().await;
        if let Some((at, answer)) = &*cache
            && at.elapsed() < READY_CACHE
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(HEALTH_TIMEOUT, self.store.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("store not writable: {e}")),
            Err(_) => Err(format!(
                "store not writable: its health probe did not answer within {} s",
                HEALTH_TIMEOUT.as_secs()
            )),
        };
        // One line: a backend's message never spans lines, but make sure.
        let answer = answer.map_err(|r| r.replace(|c: char| c.is_control(), " "));
        *cache = Some((tokio::time::Instant::now(), answer.clone()));
        answer
    }
}

/// The `/metrics`, `/ready` and `/live` endpoints. The exporter's own HTTP listener binds the
/// configured address itself and cannot report the port it got (so port 0, and with it
/// race-free tests, was impossible); this serves the exporter's rendering on a listener bound
/// here. It answers one request per connection and closes it: `GET /metrics`; `GET /ready`,
/// `200` and `ready` when the node is ready, else `503` and the reason (one line); `GET
/// /live`, `200` while the process serves; anything else gets 404 or 400. Request heads are
/// bounded in size and time.
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
            (Some(b"GET"), Some(b"/ready")) => match readiness.check().await {
                Ok(()) => ("200 OK", "ready\n".to_owned()),
                Err(reason) => ("503 Service Unavailable", format!("{reason}\n")),
            },
            (Some(b"GET"), Some(b"/live")) => ("200 OK", "live\n".to_owned()),
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

#[cfg(all(test, feature = "server"))]
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

    /// `GET /ready` answers 503 with the reason while the node does not accept connections,
    /// 200 once it does and its store is healthy, 503 with the store's reason once the store
    /// is closed; `GET /live` answers 200 throughout.
    #[tokio::test]
    async fn ready_and_live_answer_over_http() {
        let store = Arc::new(AnyStore::from(MemoryStore::new()));
        let sqlite_dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(AnyStore::from(
            crate::store::SqliteStore::open(sqlite_dir.path().join("r.db")).unwrap(),
        ));
        for store in [store, Arc::clone(&sqlite)] {
            let readiness = Arc::new(Readiness::new(store));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle();
            let server = tokio::spawn(http::serve(listener, handle, Arc::clone(&readiness)));

            let r = get(addr, "/ready").await;
            assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
            assert!(r.ends_with("not accepting connections (starting or shutting down)\n"));
            assert!(get(addr, "/live").await.starts_with("HTTP/1.1 200 "));
            readiness.set_accepting(true);
            let r = get(addr, "/ready").await;
            assert!(
                r.starts_with("HTTP/1.1 200 ") && r.ends_with("\r\n\r\nready\n"),
                "{r}"
            );
            assert!(get(addr, "/metrics").await.starts_with("HTTP/1.1 200 "));
            assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404 "));
            server.abort();
        }
        // A closed store: not ready, and says why.
        sqlite.close();
        let readiness = Readiness::new(sqlite);
        readiness.set_accepting(true);
        assert_eq!(
            readiness.check().await,
            Err("store not writable: store is closed".to_owned())
        );
    }
}
