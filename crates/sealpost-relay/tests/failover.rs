//! Failover proven, not assumed: senders and receivers run against real `sealpost-relay`
//! processes while nodes are killed with SIGKILL at random points and restarted on the same
//! port and data directory; a Jepsen-style total-queue checker (`common/checker.rs`) then
//! checks the history: every message the relay answered `Accepted` for reached its
//! recipient's app (lost = 0), nothing reached an app that was not sent, and the app saw no
//! duplicate after the client's de-duplication by (sender, message id).
//!
//! Receivers never rely on live pushes from another node: they receive by (re)connecting and
//! draining their mailbox, which any node serves.
//!
//! A bounded run in CI (20 kill points). Longer runs: `SEALPOST_FAILOVER_KILLS=500`
//! (kill points), `SEALPOST_FAILOVER_SEED=<n>` replays a printed seed's choices (the kill
//! timing still races with the load).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::checker::{Checker, Key, Outcome};
use common::{Client, Codes, Device, RelayProcess, config};
use sealpost_relay::Relay;
use sealpost_session::IdentityKeyPair;
use sealpost_wire::DeviceAddress;
use sealpost_wire::relay::{
    ErrorCode, OutgoingEnvelope, Push, Request, Response, auth_signed_bytes,
};
use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a client waits for an answer before it takes its node for dead.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long a connection attempt to a node may take.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// SplitMix64: a seeded, reproducible source of the run's choices (which node, when, to whom).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// Straight to the process's stderr: the harness hides `eprintln!` of passing tests.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One relay node: a process restarted on the same port and data directory after a kill.
struct Node {
    dir: PathBuf,
    extra: Vec<String>,
    addr: SocketAddr,
    process: Option<RelayProcess>,
}

impl Node {
    async fn start(dir: &Path, extra: &[String]) -> Self {
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let process = RelayProcess::start_with(dir, "127.0.0.1:0", &args).await;
        Self {
            dir: dir.to_path_buf(),
            extra: extra.to_vec(),
            addr: process.addr,
            process: Some(process),
        }
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    async fn restart(&mut self) {
        let args: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        // A client's ephemeral port may take the node's port while it is down: try again.
        for _ in 0..50 {
            if let Some(p) =
                RelayProcess::try_start_with(&self.dir, &self.addr.to_string(), &args).await
            {
                assert_eq!(p.addr, self.addr);
                self.process = Some(p);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {} did not restart", self.addr);
    }
}

/// A registered device's identity and address, without a connection.
struct Peer {
    id: IdentityKeyPair,
    address: DeviceAddress,
}

impl Peer {
    async fn from(device: Device) -> Self {
        let Device {
            id,
            address,
            client,
            ..
        } = device;
        client.close().await;
        Self { id, address }
    }

    /// A fresh authenticated connection to `addr`, and the number of envelopes queued.
    async fn session(&self, addr: SocketAddr, fp: [u8; 32]) -> Result<(Client, u32), String> {
        let client = tokio::time::timeout(CONNECT_WAIT, Client::try_connect(addr, fp))
            .await
            .map_err(|_| "connect timed out".to_owned())??;
        let Response::ChallengeIssued { nonce } =
            client.try_request(&Request::Challenge, ANSWER_WAIT).await?
        else {
            return Err("no challenge".to_owned());
        };
        let signature = self
            .id
            .sign(&auth_signed_bytes(&client.exporter, &nonce, &self.address))
            .to_bytes();
        let r = client
            .try_request(
                &Request::Authenticate {
                    address: self.address.clone(),
                    signature,
                },
                ANSWER_WAIT,
            )
            .await?;
        match r {
            Response::Authenticated { queued, .. } => Ok((client, queued)),
            other => Err(format!("authentication: {other:?}")),
        }
    }

    /// A session on the first node, from `first` on, that answers.
    async fn session_anywhere(
        &self,
        nodes: &[SocketAddr],
        fp: [u8; 32],
        first: usize,
    ) -> (Client, u32, usize) {
        for round in 0u32.. {
            for i in 0..nodes.len() {
                let n = (first + i) % nodes.len();
                if let Ok((c, queued)) = self.session(nodes[n], fp).await {
                    return (c, queued, n);
                }
            }
            assert!(round < 200, "no node answered for a long time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        unreachable!()
    }
}

/// Sends messages to random receivers until `stop`; an unanswered message is retried with the
/// same message id on the next connection (to any node).
async fn sender(
    me: Peer,
    receivers: Arc<Vec<DeviceAddress>>,
    nodes: Arc<Vec<SocketAddr>>,
    fp: [u8; 32],
    checker: Arc<Checker>,
    stop: Arc<AtomicBool>,
    mut rng: Rng,
) {
    let mut home = rng.below(nodes.len() as u64) as usize;
    let mut conn: Option<Client> = None;
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut message_id = [0u8; 16];
        message_id[..8].copy_from_slice(&rng.next().to_be_bytes());
        message_id[8..].copy_from_slice(&n.to_be_bytes());
        let to = &receivers[rng.below(receivers.len() as u64) as usize];
        let body = format!("{:?}/{n} -> {to:?}", me.address).into_bytes();
        let key: Key = (me.address.clone(), message_id);
        let req = Request::Send {
            message_id,
            sender_seq: n + 1,
            recipient: to.account.clone(),
            envelopes: vec![OutgoingEnvelope {
                device_id: to.device.0,
                envelope: body.clone(),
            }],
        };
        loop {
            let client = match conn.take() {
                Some(c) => c,
                None => {
                    if stop.load(Ordering::SeqCst) {
                        // The message stays unanswered: it may or may not be delivered.
                        return;
                    }
                    let (c, _, at) = me.session_anywhere(&nodes, fp, home).await;
                    home = at;
                    c
                }
            };
            match client.try_request(&req, ANSWER_WAIT).await {
                Ok(Response::Accepted { .. }) => {
                    checker.attempt(&key, to, &body, Outcome::Accepted);
                    conn = Some(client);
                    break;
                }
                Ok(Response::Error {
                    code, retry_after, ..
                }) => {
                    checker.attempt(&key, to, &body, Outcome::Rejected(code));
                    assert!(
                        matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable),
                        "a send failed with a non-retryable {code:?}"
                    );
                    conn = Some(client);
                    let wait = Duration::from_secs(retry_after.into()).max(rng.ms(20, 100));
                    tokio::time::sleep(wait).await;
                }
                Ok(other) => panic!("unexpected answer to a send: {other:?}"),
                Err(_) => {
                    checker.attempt(&key, to, &body, Outcome::NoAnswer);
                    client.conn.close(0u32.into(), b"dead");
                    // Another node next time (if there is one).
                    home = (home + 1) % nodes.len();
                }
            }
        }
        tokio::time::sleep(rng.ms(1, 20)).await;
    }
}

/// Receives by connecting, draining the mailbox (and what arrives live for a moment),
/// acknowledging, and reconnecting to the next node; de-duplicates by (sender, message id)
/// before the "app". Returns after `drain` is set and a session found the mailbox empty.
async fn receiver(
    me: Peer,
    nodes: Arc<Vec<SocketAddr>>,
    fp: [u8; 32],
    checker: Arc<Checker>,
    drain: Arc<AtomicBool>,
    mut rng: Rng,
) {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut next = rng.below(nodes.len() as u64) as usize;
    loop {
        let draining = drain.load(Ordering::SeqCst);
        let (mut client, queued, at) = me.session_anywhere(&nodes, fp, next).await;
        next = (at + 1) % nodes.len();
        if draining && queued == 0 {
            client.close().await;
            return;
        }
        let mut ids = Vec::new();
        let mut drained = false;
        loop {
            let wait = if drained {
                Duration::from_millis(300)
            } else {
                ANSWER_WAIT
            };
            match client.try_push(wait).await {
                Some(Push::Deliver(d)) => {
                    let key: Key = (d.sender.clone(), d.message_id);
                    checker.relay_delivery(&me.address, &key);
                    if seen.insert(key.clone()) {
                        checker.app_delivery(&me.address, &key, &d.envelope);
                    }
                    ids.push(d.server_id);
                    if drained && ids.len() >= 16 && !ack(&client, &mut ids).await {
                        break;
                    }
                }
                Some(Push::QueueDrained) => {
                    drained = true;
                    if !ack(&client, &mut ids).await {
                        break;
                    }
                }
                Some(Push::PreKeysLow { .. }) => {}
                None => {
                    // Quiet for a moment, or the node died: acknowledge what arrived (if the
                    // node is gone the envelopes come again, and the app de-duplicates).
                    let _ = ack(&client, &mut ids).await;
                    break;
                }
            }
        }
        client.conn.close(0u32.into(), b"next");
    }
}

/// Acknowledges `ids` (emptied); false when the connection failed.
async fn ack(client: &Client, ids: &mut Vec<u64>) -> bool {
    while !ids.is_empty() {
        let batch: Vec<u64> = ids.drain(..ids.len().min(64)).collect();
        match client
            .try_request(&Request::Ack { server_ids: batch }, ANSWER_WAIT)
            .await
        {
            Ok(Response::Acked { .. }) => {}
            _ => return false,
        }
    }
    true
}

/// The run: `senders` and `receivers` against `nodes`, `kills` SIGKILLs of random nodes,
/// then the final drain and the checker.
async fn run(
    nodes: &mut [Node],
    fp: [u8; 32],
    senders: Vec<Peer>,
    receivers: Vec<Peer>,
    seed: u64,
) -> common::checker::Report {
    let kills = env_u64("SEALPOST_FAILOVER_KILLS").unwrap_or(20);
    let mut rng = Rng(seed);
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(nodes.iter().map(|n| n.addr).collect());
    let checker = Arc::new(Checker::default());
    let stop = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(AtomicBool::new(false));
    let to: Arc<Vec<DeviceAddress>> =
        Arc::new(receivers.iter().map(|p| p.address.clone()).collect());
    let mut sending = Vec::new();
    for p in senders {
        sending.push(tokio::spawn(sender(
            p,
            Arc::clone(&to),
            Arc::clone(&addrs),
            fp,
            Arc::clone(&checker),
            Arc::clone(&stop),
            Rng(rng.next()),
        )));
    }
    let mut receiving = Vec::new();
    for p in receivers {
        receiving.push(tokio::spawn(receiver(
            p,
            Arc::clone(&addrs),
            fp,
            Arc::clone(&checker),
            Arc::clone(&drain),
            Rng(rng.next()),
        )));
    }
    for _ in 0..kills {
        tokio::time::sleep(rng.ms(100, 600)).await;
        let n = rng.below(nodes.len() as u64) as usize;
        nodes[n].kill();
        tokio::time::sleep(rng.ms(0, 300)).await;
        nodes[n].restart().await;
    }
    // Load continues a moment on the last restart, then stops; every node is up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for s in sending {
        s.await.unwrap();
    }
    drain.store(true, Ordering::SeqCst);
    for r in receiving {
        tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .expect("the receivers drain their mailboxes")
            .unwrap();
    }
    let report = checker.check();
    say(&format!("{report} (seed {seed}, {kills} kill points)"));
    report
}

fn seed() -> u64 {
    let seed = env_u64("SEALPOST_FAILOVER_SEED").unwrap_or_else(rand::random);
    say(&format!(
        "failover seed: {seed} (SEALPOST_FAILOVER_SEED={seed} to reuse)"
    ));
    seed
}

fn assert_kept(report: &common::checker::Report, seed: u64) {
    assert!(report.accepted > 0, "nothing was accepted: {report}");
    assert!(
        report.ok(),
        "{report} (seed {seed}); lost: {:?}; phantom: {:?}",
        report.lost,
        report.phantom
    );
}

/// The checker itself reports what it must: a lost accepted message, a phantom delivery, an
/// app-level duplicate, while a relay-level redelivery and an unanswered, undelivered message
/// are allowed.
#[test]
fn checker_catches_loss_phantoms_and_duplicates() {
    let a = DeviceAddress::new(common::acct("+15550000001"), sealpost_wire::DeviceId(1));
    let b = DeviceAddress::new(common::acct("+15550000002"), sealpost_wire::DeviceId(1));
    let key = |i: u8| -> Key { (a.clone(), [i; 16]) };
    let c = Checker::default();
    // 1: accepted after a retry, delivered twice by the relay, once to the app: fine.
    c.attempt(&key(1), &b, b"one", Outcome::NoAnswer);
    c.attempt(&key(1), &b, b"one", Outcome::Accepted);
    c.relay_delivery(&b, &key(1));
    c.relay_delivery(&b, &key(1));
    c.app_delivery(&b, &key(1), b"one");
    // 2: never answered, never delivered: fine.
    c.attempt(&key(2), &b, b"two", Outcome::NoAnswer);
    let r = c.check();
    assert!(r.ok(), "{r}");
    assert_eq!((r.attempted, r.accepted, r.delivered), (2, 1, 1));
    assert_eq!((r.redeliveries, r.unanswered), (1, 1));

    // 3: accepted, never delivered: lost.
    c.attempt(&key(3), &b, b"three", Outcome::Accepted);
    let r = c.check();
    assert_eq!(r.lost, vec![key(3)]);
    assert!(!r.ok());
    c.relay_delivery(&b, &key(3));
    c.app_delivery(&b, &key(3), b"three");
    assert!(c.check().ok());

    // 4: delivered but never sent; 5: delivered with another body: phantoms.
    c.app_delivery(&b, &key(4), b"four");
    c.attempt(&key(5), &b, b"five", Outcome::Rejected(ErrorCode::Internal));
    c.app_delivery(&b, &key(5), b"FIVE");
    let r = c.check();
    assert_eq!(r.phantom, vec![key(4), key(5)]);
    assert!(!r.ok());

    // The app seeing a message twice.
    let c = Checker::default();
    c.attempt(&key(1), &b, b"one", Outcome::Accepted);
    c.app_delivery(&b, &key(1), b"one");
    c.app_delivery(&b, &key(1), b"one");
    let r = c.check();
    assert_eq!(r.app_duplicates, 1);
    assert!(!r.ok());
}

/// A free TCP port on 127.0.0.1 (bound, then released) for a relay process's metrics listener.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the relay's metrics listener: the status code and the body.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: relay\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// Polls `GET /ready` (answers are cached for a second) until it answers `status`.
async fn ready_becomes(port: u16, status: u16) -> String {
    for _ in 0..100 {
        let (got, body) = http_get(port, "/ready").await;
        if got == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "/ready did not answer {status}: {:?}",
        http_get(port, "/ready").await
    );
}

/// A SQLite relay process reports ready on its metrics listener, and live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_relay_reports_ready() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let node = Node::start(
        dir.path(),
        &["--metrics-listen".to_owned(), format!("127.0.0.1:{port}")],
    )
    .await;
    assert_eq!(http_get(port, "/ready").await, (200, "ready\n".to_owned()));
    assert_eq!(http_get(port, "/live").await, (200, "live\n".to_owned()));
    drop(node);
}

/// Registers `senders` + `receivers` devices through an in-process relay `relay`.
async fn register(relay: &sealpost_relay::RelayHandle, codes: &Codes, n: u32) -> Vec<Peer> {
    let mut peers = Vec::new();
    for i in 0..n {
        let d = Device::register(relay, codes, &format!("+1555000{:04}", i + 1)).await;
        peers.push(Peer::from(d).await);
    }
    peers
}

/// Single node, SQLite: one relay process killed with SIGKILL at random points and restarted
/// on the same port and data directory under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_relay_killed_loses_nothing() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let fp = relay.cert_fingerprint();
    let mut peers = register(&relay, &codes, 6).await;
    relay.shutdown().await;
    let receivers = peers.split_off(3);

    let mut nodes = vec![Node::start(dir.path(), &[]).await];
    let report = run(&mut nodes, fp, peers, receivers, seed).await;
    assert_kept(&report, seed);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sealpost_relay::config::StoreBackend;
    use zeroize::Zeroizing;

    /// The test server's URL, or `None` after a loud banner (a panic when it is required).
    fn server() -> Option<String> {
        let required = std::env::var("SEALPOST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Ok(url) = std::env::var("SEALPOST_TEST_POSTGRES") else {
            assert!(
                !required,
                "SEALPOST_REQUIRE_POSTGRES=1 but SEALPOST_TEST_POSTGRES is not set"
            );
            say(&format!(
                "\n{bar}\n PostgreSQL failover test SKIPPED: SEALPOST_TEST_POSTGRES is not set.\n \
                 Start a server with `eval \"$(.ci/postgres.sh start)\"` (README, \"PostgreSQL\").\n{bar}\n",
                bar = "!".repeat(78)
            ));
            return None;
        };
        Some(url)
    }

    /// Three relay processes on one fresh schema, nodes killed with SIGKILL at random points
    /// and restarted; clients fail over to another node when theirs dies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_postgres_nodes_killed_lose_nothing() {
        let Some(server) = server() else {
            return;
        };
        let seed = seed();
        let (admin, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .expect("the PostgreSQL test server is reachable");
        tokio::spawn(conn);
        let schema = format!("sealpost_failover_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");

        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let codes = Arc::new(Codes::default());
        let mut c = config(dirs[0].path(), &codes);
        c.store = StoreBackend::Postgres(Zeroizing::new(url.clone()));
        let relay = Relay::start(c).await.unwrap();
        let fp = relay.cert_fingerprint();
        let mut peers = register(&relay, &codes, 6).await;
        relay.shutdown().await;
        let receivers = peers.split_off(3);
        // The nodes of one deployment share the secret files (README, "PostgreSQL: several
        // relay nodes"): keys and certificate, everything but the node's lock and SQLite file.
        for entry in std::fs::read_dir(dirs[0].path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_file() && !name.starts_with("relay.") {
                for d in &dirs[1..] {
                    std::fs::copy(entry.path(), d.path().join(&name)).unwrap();
                }
            }
        }

        let extra = vec!["--store".to_owned(), url];
        let mut nodes = Vec::new();
        for d in &dirs {
            nodes.push(Node::start(d.path(), &extra).await);
        }
        let report = run(&mut nodes, fp, peers, receivers, seed).await;
        for n in &mut nodes {
            n.kill();
        }
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
        assert_kept(&report, seed);
    }

    /// Runs `.ci/postgres.sh <what>` on the private server in `pg_dir`.
    fn pg(pg_dir: &str, what: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/postgres.sh");
        let status = std::process::Command::new(script)
            .arg(what)
            .env("SEALPOST_PG_DIR", pg_dir)
            .status()
            .unwrap();
        assert!(status.success(), "postgres.sh {what}: {status}");
    }

    /// PostgreSQL itself crashes (immediate stop) under a relay process: every send while the
    /// database is down fails with the typed, retryable `Unavailable` error (never `Accepted`, nor
    /// `Internal`, which would say the relay is broken rather than its database away), and
    /// sends resume once it is back; the checker finds nothing lost. It stops the server, so it
    /// runs only on a second server that no other test uses: `SEALPOST_FAILOVER_OWN_POSTGRES` is
    /// the `SEALPOST_PG_DIR` it was started with (README, "Failover").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_crash_fails_sends_retryably_then_resumes() {
        let Ok(pg_dir) = std::env::var("SEALPOST_FAILOVER_OWN_POSTGRES") else {
            assert_ne!(
                std::env::var("SEALPOST_REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "SEALPOST_REQUIRE_POSTGRES=1 but SEALPOST_FAILOVER_OWN_POSTGRES is not set"
            );
            say(&format!(
                "\n{bar}\n PostgreSQL crash test SKIPPED: SEALPOST_FAILOVER_OWN_POSTGRES is not set \
                 (it stops the server;\n give it a private one, README \"Failover\").\n{bar}\n",
                bar = "!".repeat(78)
            ));
            return;
        };
        // Its own server, never the one other tests share (SEALPOST_TEST_POSTGRES).
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/postgres.sh");
        let out = std::process::Command::new(script)
            .arg("url")
            .env("SEALPOST_PG_DIR", &pg_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "no server in {pg_dir}");
        let server = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_ne!(
            std::env::var("SEALPOST_TEST_POSTGRES").ok().as_deref(),
            Some(server.as_str()),
            "SEALPOST_FAILOVER_OWN_POSTGRES must be a server no other test uses"
        );
        let (admin, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .expect("the private PostgreSQL server is reachable");
        tokio::spawn(conn);
        let schema = format!("sealpost_pgcrash_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        drop(admin);
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");
        let dir = tempfile::tempdir().unwrap();
        let codes = Arc::new(Codes::default());
        let mut c = config(dir.path(), &codes);
        c.store = StoreBackend::Postgres(Zeroizing::new(url.clone()));
        let relay = Relay::start(c).await.unwrap();
        let fp = relay.cert_fingerprint();
        let mut peers = register(&relay, &codes, 2).await;
        relay.shutdown().await;
        let bob = peers.pop().unwrap();
        let alice = peers.pop().unwrap();
        let port = free_tcp_port();
        let node = Node::start(
            dir.path(),
            &[
                "--store".to_owned(),
                url,
                "--metrics-listen".to_owned(),
                format!("127.0.0.1:{port}"),
            ],
        )
        .await;
        assert_eq!(http_get(port, "/ready").await, (200, "ready\n".to_owned()));
        let checker = Checker::default();
        let (client, _) = alice.session(node.addr, fp).await.unwrap();
        let send = |n: u8| {
            let body = vec![n; 8];
            let key: Key = (alice.address.clone(), [n; 16]);
            let req = Request::Send {
                message_id: [n; 16],
                sender_seq: u64::from(n),
                recipient: bob.address.account.clone(),
                envelopes: vec![OutgoingEnvelope {
                    device_id: bob.address.device.0,
                    envelope: body.clone(),
                }],
            };
            (key, body, req)
        };
        for n in 1..=5u8 {
            let (key, body, req) = send(n);
            let r = client.try_request(&req, ANSWER_WAIT).await.unwrap();
            assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
            checker.attempt(&key, &bob.address, &body, Outcome::Accepted);
        }

        pg(&pg_dir, "crash");
        // Not ready while the database is down, and it says why (spec/relay.md section 5).
        let reason = ready_becomes(port, 503).await;
        assert!(reason.starts_with("store not writable: "), "{reason}");
        assert_eq!(http_get(port, "/live").await.0, 200);
        for n in 6..=15u8 {
            let (key, body, req) = send(n);
            let r = client.try_request(&req, ANSWER_WAIT).await;
            match r {
                Ok(Response::Error {
                    code: ErrorCode::Unavailable,
                    ..
                }) => checker.attempt(
                    &key,
                    &bob.address,
                    &body,
                    Outcome::Rejected(ErrorCode::Unavailable),
                ),
                other => {
                    pg(&pg_dir, "resume");
                    panic!("a send while the database is down got {other:?}");
                }
            }
        }
        pg(&pg_dir, "resume");
        ready_becomes(port, 200).await;
        // Every message is retried with its id until accepted.
        for n in 6..=15u8 {
            let (key, body, req) = send(n);
            let mut tries = 0;
            loop {
                let r = client.try_request(&req, ANSWER_WAIT).await.unwrap();
                if matches!(r, Response::Accepted { .. }) {
                    checker.attempt(&key, &bob.address, &body, Outcome::Accepted);
                    break;
                }
                let Response::Error { code, .. } = r else {
                    panic!("unexpected answer to a send: {r:?}");
                };
                assert_eq!(code, ErrorCode::Unavailable, "{r:?}");
                checker.attempt(&key, &bob.address, &body, Outcome::Rejected(code));
                tries += 1;
                assert!(
                    tries < 100,
                    "sends do not resume after the database is back: {r:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let checker = Arc::new(checker);
        receiver(
            bob,
            Arc::new(vec![node.addr]),
            fp,
            Arc::clone(&checker),
            Arc::new(AtomicBool::new(true)),
            Rng(1),
        )
        .await;
        let report = checker.check();
        say(&format!("{report}"));
        assert!(report.ok() && report.accepted == 15, "{report}");
        drop(node);
    }
}
