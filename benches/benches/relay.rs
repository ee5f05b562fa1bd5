//! Relay benchmarks on 127.0.0.1:
//!
//! * `relay_throughput/N`: N sender→receiver pairs through an in-process relay with durable
//!   SQLite storage (tempdir). Each message is Send → Accepted → Deliver push → Ack, pipelined
//!   per pair with a bounded window of `WINDOW` unacknowledged messages. Criterion's
//!   elements/s is messages/s; a summary line adds p50/p99 of send start → delivery.
//! * `relay_throughput_postgres/N`: the same through a relay on PostgreSQL (a fresh schema on
//!   the server in `SEALPOST_BENCH_POSTGRES`; skipped without it), measured in the same run.
//! * `relay_throughput_pg3nodes/N`: the same through three relay nodes on one PostgreSQL
//!   schema and one NATS server, senders on one node and receivers on the others (with
//!   `SEALPOST_BENCH_POSTGRES` and `SEALPOST_BENCH_NATS`; `relay/nodes.rs`).
//! * `quinn_echo_ceiling/N`: the same N, window and payload size against a bare quinn echo
//!   server (one bidi stream per request, TLS 1.3, no ALPN), in the same process and run.
//! * relay/ceiling ratio per N: after both criterion groups, `RATIO_ROUNDS` rounds of one
//!   relay run and one echo run of about `RATIO_RUN` each, back to back with alternating
//!   order; the reported ratio is the median of the per-round ratios (with min and max).
//! * peers (`relay/peers.rs`): Mosquitto over TLS with QoS 1 and NATS JetStream with file
//!   storage, same load, their own criterion groups and Sealpost/peer ratios by the same method.
//! * idle connections (plain measurement after criterion, `relay/idle.rs`): the real
//!   `sealpost-relay` binary as a child process, `SEALPOST_BENCH_IDLE_CONNS` (default 10000;
//!   100000 for the scale target, which then runs only the reconnecting kind; 0 skips)
//!   concurrent idle QUIC connections from 16 loopback addresses, VmRSS before/after →
//!   KiB per connection, three times, each with a fresh relay:
//!   - connections that only completed the handshake;
//!   - connections that authenticated as devices registered before the measurement, each on
//!     a connection of its own (an app reconnecting; accounts are not connection state);
//!   - connections that each registered a device of a fresh account and authenticated as it
//!     (a first start: the registration's memory is counted too).
//!
//!   Codes come through a loopback webhook. Then the same against a bare quinn server (this
//!   binary in echo-server mode, the relay's TLS and transport settings for an
//!   unauthenticated connection) to separate the relay's own cost from quinn + rustls
//!   (`SEALPOST_BENCH_ONE_SEGMENT=1` adds a bare-quinn run without GSO batching).
//!
//! * CPU per message, relay against echo (`SEALPOST_BENCH_CPU=N:count:rounds`, only that;
//!   `relay/cpu.rs`): for comparing builds where wall-clock ratios are noisy.
//!
//! Run: `cargo bench -p sealpost-benches --bench relay`.
// A bench binary: panicking on a broken setup and printing results is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs,
    clippy::indexing_slicing
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sealpost_relay::config::StoreBackend;
use sealpost_relay::limits::{MAX_CONCURRENT_REQUESTS, PRE_AUTH_CONCURRENT_REQUESTS};
use sealpost_relay::{CodeSender, Relay, RelayConfig, RelayHandle, VerificationCode};
use sealpost_session::IdentityKeyPair;
use sealpost_wire::relay::{
    ALPN, EXPORTER_LABEL, MAX_FRAME_LEN, MAX_PUSH_STREAM_LEN, OutgoingEnvelope, Push, Request,
    Response, auth_signed_bytes, frame_len, register_signed_bytes,
};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc};

#[path = "relay/peers.rs"]
mod peers;

/// Pair counts.
const PAIRS: [usize; 3] = [1, 8, 32];
/// Messages in flight (sent, not yet acknowledged / echoed) per pair.
const WINDOW: usize = 16;
/// Envelope / echo payload size, bytes.
const PAYLOAD: usize = 200;
/// Anything slower than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// TLS: a verifier pinning the server certificate's SHA-256.

#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("fingerprint mismatch".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(fingerprint: [u8; 32], alpn: Vec<Vec<u8>>) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint,
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = alpn;
    let mut cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(100u32.into());
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    cfg.transport_config(Arc::new(transport));
    cfg
}

async fn connect(
    addr: SocketAddr,
    fingerprint: [u8; 32],
    alpn: Vec<Vec<u8>>,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(fingerprint, alpn));
    let conn = endpoint
        .connect(addr, "localhost")
        .unwrap()
        .await
        .expect("connect");
    (endpoint, conn)
}

// ---------------------------------------------------------------------------------------
// Latency / throughput bookkeeping shared by both sides.

#[derive(Default)]
struct Stats {
    /// Send start → delivery (relay) or → echo received (ceiling), microseconds.
    latencies_us: Mutex<Vec<u32>>,
    messages: AtomicU64,
    nanos: AtomicU64,
}

impl Stats {
    fn record(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.latencies_us.lock().unwrap().push(us);
    }

    fn add_run(&self, messages: u64, elapsed: Duration) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// (msgs/s, p50 ms, p99 ms).
    fn summary(&self) -> (f64, f64, f64) {
        let mut v = self.latencies_us.lock().unwrap().clone();
        v.sort_unstable();
        let pct = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((v.len() as f64 - 1.0) * p).round() as usize;
            f64::from(v[i.min(v.len() - 1)]) / 1000.0
        };
        let msgs = self.messages.load(Ordering::Relaxed) as f64;
        let secs = self.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (msgs / secs, pct(0.50), pct(0.99))
    }
}

/// Splits `total` messages over `n` pairs.
fn share(total: u64, n: usize, i: usize) -> u64 {
    let n64 = n as u64;
    total / n64 + u64::from((i as u64) < total % n64)
}

// ---------------------------------------------------------------------------------------
// Relay side.

#[derive(Default)]
struct Codes(Mutex<Vec<(AccountId, String)>>);

impl CodeSender for Codes {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .push((account.clone(), code.as_str().to_owned()));
    }
}

impl Codes {
    fn last(&self, account: &AccountId) -> [u8; 6] {
        let v = self.0.lock().unwrap();
        let (_, c) = v.iter().rev().find(|(a, _)| a == account).unwrap();
        c.as_bytes().try_into().unwrap()
    }
}

async fn request(conn: &quinn::Connection, req: &Request) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&req.encode()).await.unwrap();
    send.finish().unwrap();
    let frame = tokio::time::timeout(TIMEOUT, recv.read_to_end(MAX_FRAME_LEN + 4))
        .await
        .expect("response timeout")
        .expect("response stream");
    let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
    assert_eq!(len, frame.len() - 4);
    Response::decode(&frame[4..]).unwrap()
}

/// Registers a new device of `account` on `conn` (the code comes from `code`) and
/// authenticates the connection as it; returns the device's address.
async fn register_and_authenticate<F, Fut>(
    conn: &quinn::Connection,
    account: &AccountId,
    code: F,
) -> DeviceAddress
where
    F: FnOnce(AccountId) -> Fut,
    Fut: std::future::Future<Output = Option<[u8; 6]>>,
{
    let (id, address) = register(conn, account, code).await;
    authenticate(conn, &id, &address).await;
    address
}

/// Registers a new device of `account` on `conn` (the code comes from `code`); returns its
/// identity key pair and address.
async fn register<F, Fut>(
    conn: &quinn::Connection,
    account: &AccountId,
    code: F,
) -> (IdentityKeyPair, DeviceAddress)
where
    F: FnOnce(AccountId) -> Fut,
    Fut: std::future::Future<Output = Option<[u8; 6]>>,
{
    let r = request(
        conn,
        &Request::RequestCode {
            account: account.clone(),
        },
    )
    .await;
    assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    let code = code(account.clone()).await.expect("verification code");
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let identity = id.public().to_wire();
    let signature = id
        .sign(&register_signed_bytes(&exporter(conn), account, &identity))
        .to_bytes();
    let r = request(
        conn,
        &Request::Register {
            account: account.clone(),
            code,
            identity,
            signature,
            reglock: None,
        },
    )
    .await;
    let Response::Registered { device_id } = r else {
        panic!("{r:?}")
    };
    (id, DeviceAddress::new(account.clone(), DeviceId(device_id)))
}

/// Authenticates `conn` as the device `address` with its identity key pair.
async fn authenticate(conn: &quinn::Connection, id: &IdentityKeyPair, address: &DeviceAddress) {
    let Response::ChallengeIssued { nonce } = request(conn, &Request::Challenge).await else {
        panic!("no challenge")
    };
    let signature = id
        .sign(&auth_signed_bytes(&exporter(conn), &nonce, address))
        .to_bytes();
    let r = request(
        conn,
        &Request::Authenticate {
            address: address.clone(),
            signature,
        },
    )
    .await;
    assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
}

/// The connection's exporter value that registration and authentication signatures bind.
fn exporter(conn: &quinn::Connection) -> [u8; 32] {
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .unwrap();
    exporter
}

/// A delivered envelope as seen by a receiver: server id, message id, arrival time.
type Arrival = (u64, [u8; 16], Instant);

struct Device {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    address: DeviceAddress,
    /// Deliver pushes (other pushes are dropped).
    deliveries: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arrival>>,
}

impl Device {
    async fn register(relay: &RelayHandle, codes: &Codes, account: &str) -> Self {
        let (endpoint, conn) = connect(
            relay.local_addr(),
            relay.cert_fingerprint(),
            vec![ALPN.to_vec()],
        )
        .await;
        let (tx, rx) = mpsc::unbounded_channel();
        let c = conn.clone();
        tokio::spawn(async move {
            while let Ok(mut s) = c.accept_uni().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(stream) = s.read_to_end(MAX_PUSH_STREAM_LEN).await else {
                        return;
                    };
                    let now = Instant::now();
                    for push in Push::decode_stream(&stream).unwrap() {
                        if let Push::Deliver(d) = push {
                            let _ = tx.send((d.server_id, d.message_id, now));
                        }
                    }
                });
            }
        });
        let a = AccountId::new(account).unwrap();
        let address =
            register_and_authenticate(&conn, &a, |a| async move { Some(codes.last(&a)) }).await;
        Self {
            _endpoint: endpoint,
            conn,
            address,
            deliveries: tokio::sync::Mutex::new(rx),
        }
    }
}

struct RelayBench {
    _dir: tempfile::TempDir,
    relay: Option<RelayHandle>,
    pairs: Vec<(Arc<Device>, Arc<Device>)>,
}

/// A fresh schema on the PostgreSQL server at `server` (dropped by [`drop_pg_schema`]) and
/// the relay store URL that selects it.
async fn pg_schema(server: &str) -> (String, String) {
    let (admin, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .expect("SEALPOST_BENCH_POSTGRES is reachable");
    tokio::spawn(conn);
    let name = format!("sealpost_bench_{:016x}", rand::random::<u64>());
    admin
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    let sep = if server.contains('?') { '&' } else { '?' };
    (
        name.clone(),
        format!("{server}{sep}options=-c%20search_path%3D{name}"),
    )
}

async fn drop_pg_schema(server: &str, name: &str) {
    let (admin, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await
        .unwrap();
}

/// A relay with `max_pairs` registered pairs, on SQLite in a temporary directory or on the
/// PostgreSQL database at `postgres` (a store URL).
async fn relay_setup(max_pairs: usize, postgres: Option<&str>) -> RelayBench {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut config = RelayConfig::for_tests(dir.path());
    if let Some(url) = postgres {
        config.store = StoreBackend::Postgres(zeroize::Zeroizing::new(url.to_owned()));
    }
    config.code_sender = Some(Arc::clone(&codes) as Arc<dyn CodeSender>);
    // The bench measures the data path, not the per-device send rate limit.
    config.limits.sends_per_second = 10_000_000;
    config.limits.send_burst = 10_000_000;
    // Nor the registration quotas against SMS pumping (every device registers from here).
    config.limits.code_requests_per_source_per_hour = 10_000_000;
    config.limits.code_requests_per_country_per_hour = 10_000_000;
    config.limits.code_requests_per_hour = 10_000_000;
    config.limits.bundle_fetches_per_pair_burst = 10_000_000;
    config.limits.bundle_fetches_per_target_per_day = 10_000_000;
    let relay = Relay::start(config).await.unwrap();
    let mut pairs = Vec::new();
    for i in 0..max_pairs {
        let s = Device::register(&relay, &codes, &format!("+1555{:07}", 2 * i)).await;
        let r = Device::register(&relay, &codes, &format!("+1555{:07}", 2 * i + 1)).await;
        pairs.push((Arc::new(s), Arc::new(r)));
    }
    RelayBench {
        _dir: dir,
        relay: Some(relay),
        pairs,
    }
}

static NONCE: AtomicU64 = AtomicU64::new(1);

/// `count` messages from `sender` to `receiver`, at most `WINDOW` unacknowledged.
async fn relay_pair(sender: Arc<Device>, receiver: Arc<Device>, count: u64, stats: Arc<Stats>) {
    if count == 0 {
        return;
    }
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    let window = Arc::new(Semaphore::new(WINDOW));
    let starts: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; usize::try_from(count).unwrap()]));
    let send_task = {
        let (window, starts) = (Arc::clone(&window), Arc::clone(&starts));
        let recipient = receiver.address.account.clone();
        let device_id = receiver.address.device.0;
        tokio::spawn(async move {
            let mut inflight = Vec::new();
            for seq in 0..count {
                window.acquire().await.unwrap().forget();
                let mut message_id = [0u8; 16];
                message_id[..8].copy_from_slice(&nonce.to_be_bytes());
                message_id[8..].copy_from_slice(&seq.to_be_bytes());
                let req = Request::Send {
                    message_id,
                    sender_seq: seq + 1,
                    recipient: recipient.clone(),
                    envelopes: vec![OutgoingEnvelope {
                        device_id,
                        envelope: vec![0xA5; PAYLOAD],
                    }],
                };
                starts.lock().unwrap()[usize::try_from(seq).unwrap()] = Some(Instant::now());
                let conn = sender.conn.clone();
                inflight.push(tokio::spawn(async move {
                    let r = request(&conn, &req).await;
                    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
                }));
            }
            for t in inflight {
                t.await.unwrap();
            }
        })
    };
    // Receive deliveries, ack them in batches (everything already arrived), free the window.
    let mut deliveries = receiver.deliveries.lock().await;
    let mut acked = 0u64;
    while acked < count {
        let first = tokio::time::timeout(TIMEOUT, deliveries.recv())
            .await
            .expect("no delivery in time")
            .unwrap();
        let mut batch = vec![first];
        while let Ok(d) = deliveries.try_recv() {
            batch.push(d);
        }
        let mut server_ids = Vec::with_capacity(batch.len());
        {
            let starts = starts.lock().unwrap();
            for (server_id, message_id, at) in &batch {
                server_ids.push(*server_id);
                assert_eq!(message_id[..8], nonce.to_be_bytes(), "stale delivery");
                let seq = u64::from_be_bytes(message_id[8..].try_into().unwrap());
                let start = starts[usize::try_from(seq).unwrap()].unwrap();
                stats.record(at.duration_since(start));
            }
        }
        let n = server_ids.len();
        let r = request(&receiver.conn, &Request::Ack { server_ids }).await;
        assert!(matches!(r, Response::Acked { .. }), "{r:?}");
        acked += n as u64;
        window.add_permits(n);
    }
    send_task.await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Echo ceiling.

struct EchoBench {
    server: quinn::Endpoint,
    clients: Vec<(quinn::Endpoint, quinn::Connection)>,
}

/// A bare quinn echo server on 127.0.0.1 (must run inside a tokio runtime), with the
/// relay's TLS and transport settings; `bidi_streams` is the relay's request-stream limit for
/// the connections compared (`MAX_CONCURRENT_REQUESTS` once authenticated, for throughput;
/// `PRE_AUTH_CONCURRENT_REQUESTS` for the unauthenticated idle connections). `one_segment`:
/// one datagram per transmit instead of GSO batches (only for the idle-memory comparison:
/// quinn keeps a connection's transmit buffer at the largest size it needed, `10 × MTU`
/// once a GSO batch had two datagrams).
fn echo_server(one_segment: bool, bidi_streams: u32) -> (quinn::Endpoint, [u8; 32]) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = generated.cert.der().clone();
    let fingerprint: [u8; 32] = sha2::Sha256::digest(cert.as_ref()).into();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    // As the relay (crates/sealpost-relay/src/tls.rs): no session tickets, no session cache.
    tls.send_tls13_tickets = 0;
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let mut server_config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    // The relay's transport settings (crates/sealpost-relay/src/server/mod.rs).
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(bidi_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((256u32 * 1024).into())
        .receive_window((1024u32 * 1024).into())
        .send_window(2 * 1024 * 1024)
        .datagram_receive_buffer_size(None)
        .mtu_discovery_config(None)
        .enable_segmentation_offload(!one_segment);
    server_config.transport_config(Arc::new(t));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let ep = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(data) = recv.read_to_end(64 * 1024).await else {
                            return;
                        };
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    (server, fingerprint)
}

async fn echo_setup(max_pairs: usize) -> EchoBench {
    let (server, fingerprint) = echo_server(false, MAX_CONCURRENT_REQUESTS);
    let addr = server.local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..max_pairs {
        clients.push(connect(addr, fingerprint, Vec::new()).await);
    }
    EchoBench { server, clients }
}

async fn echo_pair(conn: quinn::Connection, count: u64, stats: Arc<Stats>) {
    let window = Arc::new(Semaphore::new(WINDOW));
    let mut inflight = Vec::new();
    for _ in 0..count {
        let permit = Arc::clone(&window).acquire_owned().await.unwrap();
        let conn = conn.clone();
        let stats = Arc::clone(&stats);
        inflight.push(tokio::spawn(async move {
            let start = Instant::now();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&[0xA5; PAYLOAD]).await.unwrap();
            send.finish().unwrap();
            let back = tokio::time::timeout(TIMEOUT, recv.read_to_end(64 * 1024))
                .await
                .expect("echo timeout")
                .unwrap();
            assert_eq!(back.len(), PAYLOAD);
            stats.record(start.elapsed());
            drop(permit);
        }));
    }
    for t in inflight {
        t.await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Criterion groups.

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs one future per pair to completion, each on a task of its own; records the run
/// (`count` messages in all) in `stats` and returns its time.
fn timed_run<F>(rt: &Runtime, count: u64, stats: &Stats, pairs: Vec<F>) -> Duration
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let elapsed = rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = pairs.into_iter().map(tokio::spawn).collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    });
    stats.add_run(count, elapsed);
    elapsed
}

/// One timed run: `count` messages over the first `n` relay pairs, split evenly.
fn run_relay(
    rt: &Runtime,
    relay: &RelayBench,
    n: usize,
    count: u64,
    stats: &Arc<Stats>,
) -> Duration {
    let pairs = relay.pairs[..n].iter().enumerate().map(|(i, (s, r))| {
        let (s, r) = (Arc::clone(s), Arc::clone(r));
        relay_pair(s, r, share(count, n, i), Arc::clone(stats))
    });
    timed_run(rt, count, stats, pairs.collect())
}

/// One timed run: `count` echoes over the first `n` echo connections, split evenly.
fn run_echo(rt: &Runtime, echo: &EchoBench, n: usize, count: u64, stats: &Arc<Stats>) -> Duration {
    let pairs = echo.clients[..n]
        .iter()
        .enumerate()
        .map(|(i, (_, c))| echo_pair(c.clone(), share(count, n, i), Arc::clone(stats)));
    timed_run(rt, count, stats, pairs.collect())
}

/// UDP datagrams per message over the first `n` relay pairs' client connections (sent and
/// received, so both directions of both legs), from quinn's connection statistics around one
/// run of `count` messages.
fn relay_datagrams(rt: &Runtime, relay: &RelayBench, n: usize, count: u64) -> (f64, f64) {
    let totals = || {
        let (mut sender, mut receiver) = (0u64, 0u64);
        for (s, r) in &relay.pairs[..n] {
            let (ss, rs) = (s.conn.stats(), r.conn.stats());
            sender += ss.udp_tx.datagrams + ss.udp_rx.datagrams;
            receiver += rs.udp_tx.datagrams + rs.udp_rx.datagrams;
        }
        (sender, receiver)
    };
    let before = totals();
    run_relay(rt, relay, n, count, &Arc::new(Stats::default()));
    let after = totals();
    (
        (after.0 - before.0) as f64 / count as f64,
        (after.1 - before.1) as f64 / count as f64,
    )
}

/// UDP datagrams per echo over the first `n` echo connections (sent and received).
fn echo_datagrams(rt: &Runtime, echo: &EchoBench, n: usize, count: u64) -> f64 {
    let total = || {
        echo.clients[..n]
            .iter()
            .map(|(_, c)| {
                let s = c.stats();
                s.udp_tx.datagrams + s.udp_rx.datagrams
            })
            .sum::<u64>()
    };
    let before = total();
    run_echo(rt, echo, n, count, &Arc::new(Stats::default()));
    (total() - before) as f64 / count as f64
}

/// Rounds of the interleaved ratio measurement per N.
const RATIO_ROUNDS: usize = 7;
/// Target length of one relay or echo run in a round.
const RATIO_RUN: Duration = Duration::from_secs(1);

/// The relay/ceiling ratio measured in `RATIO_ROUNDS` rounds, each a relay run and an echo
/// run of about `RATIO_RUN` back to back (the order alternates from round to round), so both
/// sides of every ratio see the same machine: on a shared VM the absolute rate drifts by
/// ±30% within minutes, far more than between two runs a few hundred milliseconds apart.
/// Returns the per-round ratios, sorted.
fn interleaved_ratios(
    rt: &Runtime,
    relay: &RelayBench,
    echo: &EchoBench,
    n: usize,
    relay_rate: f64,
    echo_rate: f64,
) -> Vec<f64> {
    let count = |rate: f64| ((rate * RATIO_RUN.as_secs_f64()) as u64).max(n as u64 * 100);
    let (relay_count, echo_count) = (count(relay_rate), count(echo_rate));
    let mut ratios = Vec::with_capacity(RATIO_ROUNDS);
    for round in 0..RATIO_ROUNDS {
        let scratch = Arc::new(Stats::default());
        // Each side warms up with a tenth of its run first (untimed), as criterion does.
        let relay_run = || {
            run_relay(rt, relay, n, relay_count / 10, &scratch);
            relay_count as f64 / run_relay(rt, relay, n, relay_count, &scratch).as_secs_f64()
        };
        let echo_run = || {
            run_echo(rt, echo, n, echo_count / 10, &scratch);
            echo_count as f64 / run_echo(rt, echo, n, echo_count, &scratch).as_secs_f64()
        };
        let (r, e) = if round % 2 == 0 {
            let r = relay_run();
            (r, echo_run())
        } else {
            let e = echo_run();
            (relay_run(), e)
        };
        ratios.push(r / e);
    }
    ratios.sort_by(f64::total_cmp);
    ratios
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let max = *PAIRS.iter().max().unwrap();
    // The relay on each store: SQLite always, PostgreSQL when a server is given.
    let pg_server = std::env::var(POSTGRES_ENV).ok();
    let pg_schema = pg_server.as_deref().map(|s| rt.block_on(pg_schema(s)));
    let mut relays = vec![("sqlite", rt.block_on(relay_setup(max, None)))];
    if let Some((_, url)) = &pg_schema {
        relays.push(("postgres", rt.block_on(relay_setup(max, Some(url)))));
    } else {
        println!("relay on PostgreSQL: skipped ({POSTGRES_ENV} is not set)");
    }
    let other_nodes = nodes::setup(&rt, max).map(|(node0, others)| {
        relays.push((nodes::LABEL, node0));
        others
    });
    let echo = rt.block_on(echo_setup(max));
    let mut peers = peers::Peers::start(&rt, max);
    let mut results = Vec::new();

    for &n in &PAIRS {
        let echo_stats = Arc::new(Stats::default());
        let relay_stats: Vec<_> = relays.iter().map(|_| Arc::new(Stats::default())).collect();
        // Each store's relay group, then the ceiling, back to back.
        for (i, (store, relay)) in relays.iter().enumerate() {
            let group = match *store {
                "sqlite" => "relay_throughput".to_owned(),
                other => format!("relay_throughput_{other}"),
            };
            bench_group(c, &group, n, |iters| {
                run_relay(&rt, relay, n, iters, &relay_stats[i])
            });
        }
        bench_group(c, "quinn_echo_ceiling", n, |iters| {
            run_echo(&rt, &echo, n, iters, &echo_stats)
        });
        let (er, e50, e99) = echo_stats.summary();
        println!("echo  N={n}: {er:.0} msg/s, p50 {e50:.2} ms, p99 {e99:.2} ms");
        for ((store, relay), stats) in relays.iter().zip(&relay_stats) {
            let (rr, r50, r99) = stats.summary();
            println!("relay ({store}) N={n}: {rr:.0} msg/s, p50 {r50:.2} ms, p99 {r99:.2} ms");
            // Both groups ran (a criterion filter may skip them): run lengths come from
            // their rates.
            if !(rr.is_finite() && er.is_finite()) {
                continue;
            }
            let (sender, receiver) = relay_datagrams(&rt, relay, n, (rr as u64).max(1000));
            println!(
                "relay ({store}) N={n}: {:.2} datagrams per message ({sender:.2} on the sender's connection, {receiver:.2} on the receiver's); echo {:.2} per echo",
                sender + receiver,
                echo_datagrams(&rt, &echo, n, (er as u64).max(1000)),
            );
            let ratios = interleaved_ratios(&rt, relay, &echo, n, rr, er);
            let (median, min, max) = (
                100.0 * ratios[RATIO_ROUNDS / 2],
                100.0 * ratios[0],
                100.0 * ratios[RATIO_ROUNDS - 1],
            );
            println!(
                "relay ({store})/ceiling N={n}: {median:.1}% median of {RATIO_ROUNDS} interleaved rounds (min {min:.1}%, max {max:.1}%); back-to-back criterion groups: {:.1}%",
                100.0 * rr / er
            );
            results.push(format!(
                "  N={n:>2} {store:<8}: relay {rr:>7.0} msg/s p50 {r50:>6.2} ms p99 {r99:>6.2} ms | echo {er:>7.0} msg/s p50 {e50:>6.2} ms p99 {e99:>6.2} ms | ratio {median:>5.1}% [{min:.1}-{max:.1}]"
            ));
        }
        peers.measure(c, &rt, &relays[0].1, n, relay_stats[0].summary().0);
    }
    println!(
        "\nsummary (window {WINDOW}/pair, {PAYLOAD}-byte payloads, durable stores; percentiles over all timed iterations incl. warm-up; ratio: median of {RATIO_ROUNDS} interleaved rounds [min-max]):"
    );
    for line in results {
        println!("{line}");
    }
    peers.finish(&rt);
    rt.block_on(async move {
        for (_, c) in &echo.clients {
            c.close(0u32.into(), b"done");
        }
        echo.server.close(0u32.into(), b"done");
        for (_, mut relay) in relays {
            relay.pairs.clear();
            relay.relay.take().unwrap().shutdown().await;
        }
        if let (Some(server), Some((name, _))) = (&pg_server, &pg_schema) {
            drop_pg_schema(server, name).await;
        }
        if let Some(others) = other_nodes {
            others.shutdown().await;
        }
    });
}

/// Environment variable: a PostgreSQL server URL; when set, the throughput benches also run
/// the relay on a fresh schema there (`.ci/postgres.sh start` prints one).
const POSTGRES_ENV: &str = "SEALPOST_BENCH_POSTGRES";

/// One criterion group `name/n` timing `run(iters)`.
fn bench_group(c: &mut Criterion, name: &str, n: usize, mut run: impl FnMut(u64) -> Duration) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function(BenchmarkId::from_parameter(n), |b| b.iter_custom(&mut run));
    g.finish();
}

/// A child process (a relay binary, a peer broker) killed and reaped when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "relay/idle.rs"]
mod idle;

#[path = "relay/nodes.rs"]
mod nodes;

#[path = "relay/cpu.rs"]
mod cpu;

criterion_group!(benches, throughput);

fn main() {
    if std::env::var_os(idle::ECHO_SERVER_ENV).is_some() {
        idle::echo_server_process();
        return;
    }
    if let Ok(spec) = std::env::var(cpu::ENV) {
        cpu::main(&spec);
        return;
    }
    benches();
    idle::idle_connections();
    Criterion::default().configure_from_args().final_summary();
}
