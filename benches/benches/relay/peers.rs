//! Peers that operators would otherwise deploy, measured in the same run as the relay with the
//! same load: `PAYLOAD`-byte messages, N sender→receiver pairs, `WINDOW` messages in flight per
//! pair, a message leaving the window when the receiver got it and acknowledged it.
//!
//! * `mosquitto_tls_qos1/N`: Mosquitto 2 (the Debian package's `mosquitto` binary, a child
//!   process) on 127.0.0.1 over TLS 1.3 with a self-signed certificate, `persistence true` in a
//!   temporary directory. Each pair: a receiver subscribed to the pair's topic with QoS 1 and
//!   a sender publishing QoS 1 to it, both with persistent sessions (`clean_session` off),
//!   through `rumqttc` (rustls with ring, the relay bench's pinned-certificate verifier). The
//!   receiver's client sends PUBACK as it takes the message; the sender's run ends when every
//!   PUBACK came back (as the relay's ends when every `Accepted` came back).
//! * `nats_jetstream_file/N`: `nats-server -js` (a child process) with file storage in a
//!   temporary directory, over TLS 1.3 as well. A work-queue stream (a message is deleted once
//!   acknowledged, like the relay's mailbox) and a durable pull consumer per pair with explicit
//!   acks, through `async-nats`; the sender publishes with a publish ack (the stream stored it)
//!   and the receiver acknowledges each message it takes.
//! * Sealpost/peer ratio per peer and N: `RATIO_ROUNDS` rounds of one relay run (SQLite) and
//!   one peer run of about `RATIO_RUN` each, back to back in alternating order (as the
//!   relay/ceiling ratio); the median of the per-round ratios, printed as a table at the end.
//!
//! A broker binary that is not installed skips its peer with a loud line; the rest runs.

use super::{
    Child, PAYLOAD, Pinned, RATIO_ROUNDS, RATIO_RUN, RelayBench, Stats, TIMEOUT, WINDOW,
    bench_group, run_relay, share, timed_run,
};
use criterion::Criterion;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc};

/// A message as the receiver saw it: the id the sender put in its first 16 bytes (run nonce,
/// sequence number), and when it arrived.
type Arrival = ([u8; 16], Instant);

/// Message ids distinguish runs, so a stale message of an earlier run fails loudly.
static NONCE: AtomicU64 = AtomicU64::new(1);

/// A `PAYLOAD`-byte message whose first 16 bytes are `nonce ‖ seq`.
fn message(nonce: u64, seq: u64) -> Vec<u8> {
    let mut m = vec![0xA5; PAYLOAD];
    m[..8].copy_from_slice(&nonce.to_be_bytes());
    m[8..16].copy_from_slice(&seq.to_be_bytes());
    m
}

fn message_id(payload: &[u8]) -> [u8; 16] {
    payload[..16].try_into().unwrap()
}

/// A rustls client config (ring, TLS 1.3 only, the certificate pinned by its SHA-256), as the
/// relay bench's QUIC clients use.
fn tls_client(fingerprint: [u8; 32]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint,
            provider,
        }))
        .with_no_client_auth()
}

/// A self-signed certificate for `localhost` written as `cert.pem` and `key.pem` into `dir`;
/// returns their paths and the certificate's SHA-256.
fn write_cert(dir: &Path) -> (PathBuf, PathBuf, [u8; 32]) {
    use sha2::Digest;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let fingerprint: [u8; 32] = sha2::Sha256::digest(generated.cert.der().as_ref()).into();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key, fingerprint)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the broker binds it next).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `name` from `PATH`, else from `/usr/sbin` (where Debian puts both brokers, off a normal
/// user's `PATH`).
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_listening(port: u16, child: &mut Child, name: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("{name} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{name} is not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Mosquitto over TLS 1.3, QoS 1, persistence on.

/// What a pair's receiver event loop hands on.
struct MqttReceiver {
    client: rumqttc::AsyncClient,
    messages: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arrival>>,
}

struct MqttSender {
    client: rumqttc::AsyncClient,
    /// One item per PUBACK.
    pubacks: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

struct Mosquitto {
    // Fields drop in order: clients first, then the broker, then its directory.
    pairs: Vec<(Arc<MqttSender>, Arc<MqttReceiver>)>,
    _broker: Child,
    _dir: tempfile::TempDir,
}

/// A connected MQTT client whose event loop runs on a task of its own and hands incoming
/// PUBLISH payloads (with their arrival time) to `publishes` and every PUBACK / SUBACK to
/// `acks`.
async fn mqtt_client(
    id: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    publishes: mpsc::UnboundedSender<Arrival>,
    acks: mpsc::UnboundedSender<()>,
) -> rumqttc::AsyncClient {
    use rumqttc::{Event, Packet, Transport};
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    // Persistent sessions: the broker keeps a receiver's subscription and queued messages
    // across its disconnects (and, with persistence on, across a clean broker restart).
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::clone(tls)),
        ));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 4 * WINDOW);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = publishes.send((message_id(&p.payload), Instant::now()));
                }
                Ok(Event::Incoming(Packet::PubAck(_) | Packet::SubAck(_))) => {
                    let _ = acks.send(());
                }
                Ok(_) => {}
                // Disconnected at the end of the bench (or the broker died: the pair then
                // times out with a message).
                Err(_) => return,
            }
        }
    });
    client
}

impl Mosquitto {
    fn start(rt: &Runtime, max_pairs: usize) -> Option<Self> {
        let Some(bin) = find_binary("mosquitto") else {
            println!(
                "\n*** SKIPPED: mosquitto_tls_qos1: no `mosquitto` binary (Debian package `mosquitto`) ***\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, fingerprint) = write_cert(dir.path());
        let port = free_port();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let config = dir.path().join("mosquitto.conf");
        // `user root`: run as root (CI, this machine), Mosquitto would otherwise switch to the
        // `mosquitto` user, which cannot read this private temporary directory; ignored when
        // not started as root. Persistence: the in-memory database is written to
        // `persistence_location` every `autosave_interval` seconds (default 1800) and on a
        // clean shutdown, not per message.
        std::fs::write(
            &config,
            format!(
                "user root\n\
                 persistence true\n\
                 persistence_location {store}/\n\
                 log_dest none\n\
                 listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 certfile {cert}\n\
                 keyfile {key}\n\
                 tls_version tlsv1.3\n",
                store = store.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        let mut broker = Child(
            std::process::Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_listening(port, &mut broker, "mosquitto");
        let tls = Arc::new(tls_client(fingerprint));
        let pairs = rt.block_on(async {
            let mut pairs = Vec::with_capacity(max_pairs);
            for i in 0..max_pairs {
                let (tx, rx) = mpsc::unbounded_channel();
                let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
                let receiver =
                    mqtt_client(&format!("bench-receiver-{i}"), port, &tls, tx, ack_tx).await;
                receiver
                    .subscribe(format!("bench/{i}"), rumqttc::QoS::AtLeastOnce)
                    .await
                    .unwrap();
                tokio::time::timeout(TIMEOUT, ack_rx.recv())
                    .await
                    .expect("SUBACK in time")
                    .unwrap();
                let (stray, _) = mpsc::unbounded_channel();
                let (ack_tx, ack_rx) = mpsc::unbounded_channel();
                let sender =
                    mqtt_client(&format!("bench-sender-{i}"), port, &tls, stray, ack_tx).await;
                pairs.push((
                    Arc::new(MqttSender {
                        client: sender,
                        pubacks: tokio::sync::Mutex::new(ack_rx),
                    }),
                    Arc::new(MqttReceiver {
                        client: receiver,
                        messages: tokio::sync::Mutex::new(rx),
                    }),
                ));
            }
            pairs
        });
        Some(Self {
            pairs,
            _broker: broker,
            _dir: dir,
        })
    }

    fn run(&self, rt: &Runtime, n: usize, count: u64, stats: &Arc<Stats>) -> Duration {
        let pairs = self.pairs[..n].iter().enumerate().map(|(i, (s, r))| {
            mqtt_pair(
                i,
                Arc::clone(s),
                Arc::clone(r),
                share(count, n, i),
                Arc::clone(stats),
            )
        });
        timed_run(rt, count, stats, pairs.collect())
    }

    fn close(self, rt: &Runtime) {
        rt.block_on(async {
            for (s, r) in &self.pairs {
                let _ = s.client.disconnect().await;
                let _ = r.client.disconnect().await;
            }
        });
    }
}

/// `count` QoS 1 messages from pair `i`'s sender to its receiver, at most `WINDOW` not yet
/// received; returns once all were received and every PUBACK came back.
async fn mqtt_pair(
    i: usize,
    sender: Arc<MqttSender>,
    receiver: Arc<MqttReceiver>,
    count: u64,
    stats: Arc<Stats>,
) {
    if count == 0 {
        return;
    }
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    let window = Arc::new(Semaphore::new(WINDOW));
    let starts = Arc::new(Mutex::new(vec![None; usize::try_from(count).unwrap()]));
    let send_task = {
        let (window, starts) = (Arc::clone(&window), Arc::clone(&starts));
        let topic = format!("bench/{i}");
        tokio::spawn(async move {
            for seq in 0..count {
                window.acquire().await.unwrap().forget();
                starts.lock().unwrap()[usize::try_from(seq).unwrap()] = Some(Instant::now());
                sender
                    .client
                    .publish(
                        topic.as_str(),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        message(nonce, seq),
                    )
                    .await
                    .unwrap();
            }
            let mut pubacks = sender.pubacks.lock().await;
            for _ in 0..count {
                tokio::time::timeout(TIMEOUT, pubacks.recv())
                    .await
                    .expect("PUBACK in time")
                    .unwrap();
            }
        })
    };
    receive(&receiver.messages, nonce, count, &starts, &window, &stats).await;
    send_task.await.unwrap();
}

/// Takes `count` messages of run `nonce` from `messages`, records their latency and frees a
/// window slot for each.
async fn receive(
    messages: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Arrival>>,
    nonce: u64,
    count: u64,
    starts: &Mutex<Vec<Option<Instant>>>,
    window: &Semaphore,
    stats: &Stats,
) {
    let mut messages = messages.lock().await;
    for _ in 0..count {
        let (id, at) = tokio::time::timeout(TIMEOUT, messages.recv())
            .await
            .expect("no message in time")
            .unwrap();
        assert_eq!(id[..8], nonce.to_be_bytes(), "stale message");
        let seq = u64::from_be_bytes(id[8..].try_into().unwrap());
        let start = starts.lock().unwrap()[usize::try_from(seq).unwrap()].unwrap();
        stats.record(at.duration_since(start));
        window.add_permits(1);
    }
}

// ---------------------------------------------------------------------------------------
// NATS JetStream, file storage, over TLS 1.3.

struct JetStreamPair {
    sender: async_nats::jetstream::Context,
    receiver: async_nats::Client,
    /// Messages the pair's consumer delivered, each acknowledged before it is handed on.
    messages: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arrival>>,
}

struct JetStream {
    pairs: Vec<Arc<JetStreamPair>>,
    _server: Child,
    _dir: tempfile::TempDir,
}

const STREAM: &str = "BENCH";

impl JetStream {
    fn start(rt: &Runtime, max_pairs: usize) -> Option<Self> {
        let Some(bin) = find_binary("nats-server") else {
            println!(
                "\n*** SKIPPED: nats_jetstream_file: no `nats-server` binary (Debian package `nats-server`) ***\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, fingerprint) = write_cert(dir.path());
        let port = free_port();
        let mut server = Child(
            std::process::Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.path().join("store"))
                .arg("--tls")
                .arg("--tlscert")
                .arg(&cert)
                .arg("--tlskey")
                .arg(&key)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_listening(port, &mut server, "nats-server");
        let url = format!("tls://127.0.0.1:{port}");
        let pairs = rt.block_on(async {
            use async_nats::jetstream::{self, consumer, stream};
            let connect = || async {
                async_nats::ConnectOptions::new()
                    .require_tls(true)
                    .tls_client_config(tls_client(fingerprint))
                    .connect(url.as_str())
                    .await
                    .unwrap()
            };
            let admin = jetstream::new(connect().await);
            let stream = admin
                .create_stream(stream::Config {
                    name: STREAM.into(),
                    subjects: vec!["bench.>".into()],
                    storage: stream::StorageType::File,
                    // Deleted once acknowledged, as the relay's mailbox deletes on ack.
                    retention: stream::RetentionPolicy::WorkQueue,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut pairs = Vec::with_capacity(max_pairs);
            for i in 0..max_pairs {
                let _: consumer::PullConsumer = stream
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some(format!("pair{i}")),
                        filter_subject: format!("bench.{i}"),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let receiver = connect().await;
                // The consumer bound to the receiver's own connection.
                let consumer: consumer::PullConsumer = jetstream::new(receiver.clone())
                    .get_consumer_from_stream(format!("pair{i}"), STREAM)
                    .await
                    .unwrap();
                let mut messages = consumer.messages().await.unwrap();
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Some(Ok(m)) = messages.next().await {
                        let at = Instant::now();
                        // The window counts until the receiver acknowledged the message.
                        if m.ack().await.is_err() {
                            return;
                        }
                        let _ = tx.send((message_id(&m.payload), at));
                    }
                });
                pairs.push(Arc::new(JetStreamPair {
                    sender: jetstream::new(connect().await),
                    receiver,
                    messages: tokio::sync::Mutex::new(rx),
                }));
            }
            pairs
        });
        Some(Self {
            pairs,
            _server: server,
            _dir: dir,
        })
    }

    fn run(&self, rt: &Runtime, n: usize, count: u64, stats: &Arc<Stats>) -> Duration {
        let pairs = self.pairs[..n]
            .iter()
            .enumerate()
            .map(|(i, p)| jetstream_pair(i, Arc::clone(p), share(count, n, i), Arc::clone(stats)));
        timed_run(rt, count, stats, pairs.collect())
    }

    fn close(self, rt: &Runtime) {
        rt.block_on(async {
            for p in &self.pairs {
                let _ = p.receiver.drain().await;
            }
        });
    }
}

/// `count` messages published to pair `i`'s subject with a publish ack, at most `WINDOW` not
/// yet received and acknowledged; returns once all were and every publish ack came back.
async fn jetstream_pair(i: usize, pair: Arc<JetStreamPair>, count: u64, stats: Arc<Stats>) {
    if count == 0 {
        return;
    }
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    let window = Arc::new(Semaphore::new(WINDOW));
    let starts = Arc::new(Mutex::new(vec![None; usize::try_from(count).unwrap()]));
    let send_task = {
        let (window, starts, pair) = (Arc::clone(&window), Arc::clone(&starts), Arc::clone(&pair));
        let subject = format!("bench.{i}");
        tokio::spawn(async move {
            let mut inflight = Vec::new();
            for seq in 0..count {
                window.acquire().await.unwrap().forget();
                starts.lock().unwrap()[usize::try_from(seq).unwrap()] = Some(Instant::now());
                let stored = pair
                    .sender
                    .publish(subject.clone(), message(nonce, seq).into())
                    .await
                    .unwrap();
                inflight.push(tokio::spawn(async move {
                    tokio::time::timeout(TIMEOUT, stored)
                        .await
                        .expect("publish ack in time")
                        .unwrap();
                }));
            }
            for t in inflight {
                t.await.unwrap();
            }
        })
    };
    receive(&pair.messages, nonce, count, &starts, &window, &stats).await;
    send_task.await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Measurement and report.

/// The peers present on this machine and the report lines collected so far.
pub(super) struct Peers {
    mosquitto: Option<Mosquitto>,
    jetstream: Option<JetStream>,
    lines: Vec<String>,
}

impl Peers {
    /// Starts each installed broker with `max_pairs` connected pairs.
    pub(super) fn start(rt: &Runtime, max_pairs: usize) -> Self {
        Self {
            mosquitto: Mosquitto::start(rt, max_pairs),
            jetstream: JetStream::start(rt, max_pairs),
            lines: Vec::new(),
        }
    }

    /// Criterion groups for each peer at `n` pairs, then the interleaved Sealpost/peer ratio
    /// against `relay` (Sealpost on SQLite; `relay_rate` is its criterion rate at `n`, NaN when
    /// a filter skipped it).
    pub(super) fn measure(
        &mut self,
        c: &mut Criterion,
        rt: &Runtime,
        relay: &RelayBench,
        n: usize,
        relay_rate: f64,
    ) {
        type Run<'a> = Box<dyn Fn(u64, &Arc<Stats>) -> Duration + 'a>;
        let mut peers: Vec<(&str, Run<'_>)> = Vec::new();
        if let Some(m) = &self.mosquitto {
            peers.push((
                "mosquitto_tls_qos1",
                Box::new(move |count, stats| m.run(rt, n, count, stats)),
            ));
        }
        if let Some(j) = &self.jetstream {
            peers.push((
                "nats_jetstream_file",
                Box::new(move |count, stats| j.run(rt, n, count, stats)),
            ));
        }
        for (name, run) in peers {
            let stats = Arc::new(Stats::default());
            bench_group(c, name, n, |iters| run(iters, &stats));
            let (rate, p50, p99) = stats.summary();
            println!("{name} N={n}: {rate:.0} msg/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
            if !(rate.is_finite() && relay_rate.is_finite()) {
                continue;
            }
            let rounds = interleaved(
                n,
                relay_rate,
                rate,
                |count, stats| run_relay(rt, relay, n, count, stats),
                |count, stats| run(count, stats),
            );
            let median = |f: fn(&Round) -> f64| {
                let mut v: Vec<f64> = rounds.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                (v[RATIO_ROUNDS / 2], v[0], v[RATIO_ROUNDS - 1])
            };
            let (ratio, min, max) = median(|r| r.relay / r.peer);
            let (relay_median, _, _) = median(|r| r.relay);
            let (peer_median, _, _) = median(|r| r.peer);
            println!(
                "sealpost (sqlite)/{name} N={n}: {ratio:.2}x median of {RATIO_ROUNDS} interleaved rounds (min {min:.2}x, max {max:.2}x)"
            );
            self.lines.push(format!(
                "  N={n:>2} {name:<20}: sealpost {relay_median:>7.0} msg/s | peer {peer_median:>7.0} msg/s p50 {p50:>6.2} ms p99 {p99:>6.2} ms | sealpost/peer {ratio:>5.2}x [{min:.2}-{max:.2}]"
            ));
        }
    }

    /// Prints the table, disconnects the clients and stops the brokers.
    pub(super) fn finish(self, rt: &Runtime) {
        if !self.lines.is_empty() {
            println!(
                "\npeers (window {WINDOW}/pair, {PAYLOAD}-byte payloads, TLS 1.3; msg/s: medians of {RATIO_ROUNDS} interleaved rounds; p50/p99 over the peer's criterion iterations; ratio: median of per-round sealpost/peer [min-max]):"
            );
            for line in &self.lines {
                println!("{line}");
            }
        }
        if let Some(m) = self.mosquitto {
            m.close(rt);
        }
        if let Some(j) = self.jetstream {
            j.close(rt);
        }
    }
}

/// One interleaved round's rates, msg/s.
struct Round {
    relay: f64,
    peer: f64,
}

/// `RATIO_ROUNDS` rounds of one relay run and one peer run of about `RATIO_RUN` each, back to
/// back, the order alternating from round to round (see `interleaved_ratios`).
fn interleaved(
    n: usize,
    relay_rate: f64,
    peer_rate: f64,
    relay: impl Fn(u64, &Arc<Stats>) -> Duration,
    peer: impl Fn(u64, &Arc<Stats>) -> Duration,
) -> Vec<Round> {
    let count = |rate: f64| ((rate * RATIO_RUN.as_secs_f64()) as u64).max(n as u64 * 100);
    let (relay_count, peer_count) = (count(relay_rate), count(peer_rate));
    (0..RATIO_ROUNDS)
        .map(|round| {
            let scratch = Arc::new(Stats::default());
            // Each side warms up with a tenth of its run first (untimed), as criterion does.
            let timed = |run: &dyn Fn(u64, &Arc<Stats>) -> Duration, count: u64| {
                run(count / 10, &scratch);
                count as f64 / run(count, &scratch).as_secs_f64()
            };
            if round % 2 == 0 {
                let relay = timed(&relay, relay_count);
                Round {
                    relay,
                    peer: timed(&peer, peer_count),
                }
            } else {
                let peer = timed(&peer, peer_count);
                Round {
                    relay: timed(&relay, relay_count),
                    peer,
                }
            }
        })
        .collect()
}
