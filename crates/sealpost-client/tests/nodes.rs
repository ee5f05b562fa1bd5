//! Several relay nodes under the SDK (issue 12, "Several relay nodes"): real `Client`s, the
//! ones apps use, against two relay processes on one real PostgreSQL schema and one real NATS
//! server, nodes killed with SIGKILL.
//!
//! * A receiver given both nodes' addresses, connected to node A, gets live what a sender on
//!   node B sends (cross-node wake-ups); A is killed midway, the receiver fails over to B,
//!   A is restarted and the sender moves to it: the app sees every message exactly once, in
//!   the sender's order, and the failover costs seconds.
//! * A reconnection race that really delivers envelopes twice: node A pushes envelopes the
//!   receiver processes, but its acknowledgements never reach A (a UDP relay in front of A
//!   drops everything from the client), A is killed, and B delivers the same envelopes again
//!   from the mailbox. The app sees each once, in order.
//!
//! The servers are `SEALPOST_TEST_POSTGRES` and `SEALPOST_TEST_NATS` (`.ci/postgres.sh
//! start`, `.ci/nats.sh start`); without them the tests say so loudly and return, unless
//! `SEALPOST_REQUIRE_POSTGRES=1` / `SEALPOST_REQUIRE_NATS=1`, which make them fail.
//!
//! The nodes are separate processes: this test binary run again in "node" mode (the
//! environment variable [`NODE_DATA_DIR`] set), where [`NODE_TEST`] starts a relay with
//! `Relay::start`, as the `sealpost-relay` binary does, prints its address and pin, and
//! serves until killed (or until its parent's end closes its stdin).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

mod common;

use common::{Codes, Collector, acct, bulk_limits, open_store};
use sealpost_client::{Client, ClientConfig, ClientEvent, RelayAddr, SpkiPin};
use sealpost_relay::config::StoreBackend;
use sealpost_relay::{Relay, RelayConfig};
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// In a node process: the relay's data directory.
const NODE_DATA_DIR: &str = "SEALPOST_TEST_NODE_DATA_DIR";
/// In a node process: the address to listen on.
const NODE_LISTEN: &str = "SEALPOST_TEST_NODE_LISTEN";
/// In a node process: the PostgreSQL store URL (with the test's schema).
const NODE_STORE: &str = "SEALPOST_TEST_NODE_STORE";
/// In a node process: the NATS URL.
const NODE_NATS: &str = "SEALPOST_TEST_NODE_NATS";
/// The test that doubles as a relay node.
const NODE_TEST: &str = "a_receiver_fails_over_between_nodes_without_gap_or_duplicate";

/// Straight to the process's stderr: the harness hides `eprintln!` of passing tests.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The value of `var`, or `None` after a loud banner (a panic when `require` is set to 1).
fn server(var: &str, require: &str, how: &str) -> Option<String> {
    let required = std::env::var(require).is_ok_and(|v| v == "1");
    let Ok(url) = std::env::var(var) else {
        assert!(!required, "{require}=1 but {var} is not set");
        say(&format!(
            "\n{bar}\n SDK multi-node tests SKIPPED: {var} is not set.\n \
             Start a server with `eval \"$({how} start)\"` (README, \"Several nodes\").\n{bar}\n",
            bar = "!".repeat(78)
        ));
        return None;
    };
    Some(url)
}

/// Both servers, or `None` (see [`server`]).
fn servers() -> Option<(String, String)> {
    let pg = server(
        "SEALPOST_TEST_POSTGRES",
        "SEALPOST_REQUIRE_POSTGRES",
        ".ci/postgres.sh",
    );
    let nats = server("SEALPOST_TEST_NATS", "SEALPOST_REQUIRE_NATS", ".ci/nats.sh");
    Some((pg?, nats?))
}

/// A fresh schema on the PostgreSQL server, so that tests share one server in parallel.
struct Schema {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl Schema {
    async fn create(server: &str) -> Self {
        let (admin, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .expect("the PostgreSQL test server is reachable");
        tokio::spawn(conn);
        let name = format!("sealpost_sdk_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}");
        Self { admin, name, url }
    }

    /// Envelopes queued (not yet acknowledged) for `account`'s devices: the relay's mailbox
    /// table (spec/relay-store.md), read directly.
    async fn queued_for(&self, account: &str) -> i64 {
        self.admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.deliveries WHERE account = $1",
                    self.name
                ),
                &[&account],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn drop_now(self) {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}

/// The node process: a relay on the shared store and NATS, serving until killed, or until
/// its stdin closes (the test that started it ended), so that no node outlives its test.
async fn node_process(data_dir: String) {
    std::thread::spawn(|| {
        let mut byte = [0u8; 1];
        while matches!(std::io::stdin().read(&mut byte), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let mut config = RelayConfig::for_tests(&data_dir);
    config.listen = std::env::var(NODE_LISTEN).unwrap().parse().unwrap();
    config.store = StoreBackend::Postgres(std::env::var(NODE_STORE).unwrap().into());
    config.nats = Some(std::env::var(NODE_NATS).unwrap().parse().unwrap());
    config.limits = bulk_limits();
    config.code_sender = Some(Arc::new(Codes::default()));
    let relay = Relay::start(config).await.unwrap();
    println!("READY {} {}", relay.local_addr(), relay.spki_pin());
    std::future::pending::<()>().await;
}

/// One relay node: a process, restarted on the same address and data directory after a
/// kill. Killed (SIGKILL) when dropped, so that a failing test leaves no node behind.
struct Node {
    dir: PathBuf,
    store: String,
    nats: String,
    addr: SocketAddr,
    pin: SpkiPin,
    process: Option<Child>,
}

impl Node {
    async fn start(dir: &Path, store: &str, nats: &str) -> Self {
        let (process, addr, pin) = spawn_node(dir, store, nats, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("the node started");
        Self {
            dir: dir.to_path_buf(),
            store: store.to_owned(),
            nats: nats.to_owned(),
            addr,
            pin,
            process: Some(process),
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill().unwrap();
            p.wait().unwrap();
        }
    }

    /// Starts the node again on its address (retrying while the port is taken).
    async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((p, addr, pin)) =
                spawn_node(&self.dir, &self.store, &self.nats, self.addr).await
            {
                assert_eq!((addr, pin), (self.addr, self.pin));
                self.process = Some(p);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not restart",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Starts a node process and waits for its start-up line; `None` if it exited first.
async fn spawn_node(
    dir: &Path,
    store: &str,
    nats: &str,
    listen: SocketAddr,
) -> Option<(Child, SocketAddr, SpkiPin)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([NODE_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(NODE_DATA_DIR, dir)
        .env(NODE_LISTEN, listen.to_string())
        .env(NODE_STORE, store)
        .env(NODE_NATS, nats)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        stdout.lines().map_while(Result::ok).find_map(|line| {
            // libtest writes the test's name on the same line first.
            let (_, rest) = line.split_once("READY ")?;
            let (addr, pin) = rest.split_once(' ')?;
            Some((
                addr.parse::<SocketAddr>().ok()?,
                pin.parse::<SpkiPin>().ok()?,
            ))
        })
    })
    .await
    .unwrap();
    match ready {
        Some((addr, pin)) => Some((child, addr, pin)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// The deployment of a test: the schema, two nodes A and B sharing its secret files, and
/// the registered accounts' stores in `home`.
struct Deployment {
    schema: Schema,
    a: Node,
    b: Node,
    home: PathBuf,
    _tmp: tempfile::TempDir,
}

/// The accounts of a test: Alice sends, Bob receives. Each test has its own numbers, since
/// the tests share the NATS server and a wake-up subject is derived from the account.
#[derive(Clone, Copy)]
struct Accounts {
    alice: &'static str,
    bob: &'static str,
}

const FAILOVER: Accounts = Accounts {
    alice: "+15550003001",
    bob: "+15550003002",
};
const RACE: Accounts = Accounts {
    alice: "+15550003011",
    bob: "+15550003012",
};

impl Deployment {
    /// Registers Alice and Bob through an in-process relay on a fresh schema (which creates
    /// the deployment's keys), then starts nodes A and B on copies of its data directory.
    async fn start(pg: &str, nats: &str, accounts: Accounts) -> Self {
        common::init_logs();
        let schema = Schema::create(pg).await;
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ["setup", "a", "b"].map(|d| tmp.path().join(d));
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let codes = Arc::new(Codes::default());
        let mut c = RelayConfig::for_tests(&dirs[0]);
        c.store = StoreBackend::Postgres(schema.url.clone().into());
        c.limits = bulk_limits();
        c.code_sender = Some(codes.clone());
        let relay = Relay::start(c).await.unwrap();
        let config = common::client_config(relay.local_addr(), relay.spki_pin());
        for phone in [accounts.alice, accounts.bob] {
            let (client, _events) =
                common::register(&config, &codes, phone, open_store(&home, phone)).await;
            client.shutdown().await;
        }
        relay.shutdown().await;
        // The nodes of one deployment share the secret files (TLS key and certificate,
        // stateless-reset key, ...): everything but the node's own `relay.*` files (its
        // lock).
        for d in &dirs[1..] {
            copy_secrets(&dirs[0], d);
        }
        let a = Node::start(&dirs[1], &schema.url, nats).await;
        let b = Node::start(&dirs[2], &schema.url, nats).await;
        assert_eq!(a.pin, b.pin, "the nodes share the deployment's key");
        Self {
            schema,
            a,
            b,
            home,
            _tmp: tmp,
        }
    }

    /// The SDK's default configuration (keep-alive, idle timeout, request timeout, backoff)
    /// with these relay addresses, in order.
    fn config(&self, relays: &[SocketAddr]) -> ClientConfig {
        let first = *relays.first().expect("a relay address");
        ClientConfig::new(first, self.a.pin)
            .with_relays(relays.iter().map(|a| RelayAddr::Socket(*a)))
    }

    /// Opens `phone`'s registered store with `relays` and waits until it is connected.
    async fn open(&self, phone: &str, relays: &[SocketAddr]) -> (Client, Collector) {
        common::open_connected(&self.home, phone, &self.config(relays)).await
    }

    async fn stop(mut self) {
        self.a.kill();
        self.b.kill();
        self.schema.drop_now().await;
    }
}

/// Copies the data directory `from` into `to`, subdirectories included, except the node's
/// own `relay.*` files.
fn copy_secrets(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            copy_secrets(&entry.path(), &to.join(&name));
        } else if !name.to_string_lossy().starts_with("relay.") {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// The numbered text of message `n`.
fn numbered(n: u32) -> String {
    format!("message {n:03}")
}

/// Sends message `n` from Alice to Bob and waits (bounded) until the relay accepted it
/// (Alice's `Delivered` count reaches `delivered`).
async fn send(alice: &Client, alice_seen: &Collector, n: u32, delivered: usize) {
    alice
        .send_text(&acct(FAILOVER.bob), &numbered(n))
        .await
        .unwrap();
    alice_seen
        .wait(&format!("message {n} accepted"), 30, |c| {
            c.delivered() == delivered
        })
        .await;
}

fn count(seen: &Collector, f: impl Fn(&ClientEvent) -> bool) -> usize {
    seen.count_events(f)
}

fn connected(seen: &Collector) -> usize {
    count(seen, |e| matches!(e, ClientEvent::Connected))
}

fn disconnected(seen: &Collector) -> usize {
    count(seen, |e| matches!(e, ClientEvent::Disconnected))
}

/// What the app must have seen at the end: every message, once, in Alice's order, and
/// nothing it could not read.
fn assert_exactly_once_in_order(bob_seen: &Collector, n: u32) {
    let expected: Vec<String> = (1..=n).map(numbered).collect();
    assert_eq!(bob_seen.texts(), expected);
    assert_eq!(
        count(bob_seen, |e| matches!(e, ClientEvent::Undecryptable { .. })),
        0,
        "an envelope reached the app's stream as undecryptable"
    );
}

/// Messages before the kill, during the outage, and after A's restart.
const BEFORE_KILL: u32 = 25;
const DURING_OUTAGE: u32 = 15;
const AFTER_RESTART: u32 = 20;

/// Bob is given A and B and is connected to A; Alice, on B, sends numbered messages, which
/// reach Bob live through B's wake-ups. A is killed (SIGKILL) while Alice goes on sending;
/// Bob fails over to B (his connection to A falls silent and the SDK gives it up after its
/// keep-alive interval plus a grace, spec/relay.md section 1, so he starts with the next
/// address) and gets what was sent meanwhile from the mailbox. A is restarted and
/// Alice moves to it: her messages reach Bob on B live through A's wake-ups. Bob's app sees
/// every message exactly once, in Alice's order, and the failover cost Bob a few seconds
/// (the SDK's default keep-alive of 3 s plus the 2 s grace, then a reconnection), not its
/// 10 s idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_fails_over_between_nodes_without_gap_or_duplicate() {
    if let Ok(dir) = std::env::var(NODE_DATA_DIR) {
        return node_process(dir).await;
    }
    let Some((pg, nats)) = servers() else {
        return;
    };
    let started = Instant::now();
    let mut d = Deployment::start(&pg, &nats, FAILOVER).await;
    let (bob, bob_seen) = d.open(FAILOVER.bob, &[d.a.addr, d.b.addr]).await;
    let (alice, alice_seen) = d.open(FAILOVER.alice, &[d.b.addr]).await;

    // Live across nodes: each message reaches Bob (on A) before the next is sent, without
    // a reconnection.
    for n in 1..=BEFORE_KILL {
        send(&alice, &alice_seen, n, n as usize).await;
        bob_seen
            .wait(&format!("message {n} live on A"), 30, |c| {
                c.count() == n as usize
            })
            .await;
    }
    assert_eq!(
        (connected(&bob_seen), disconnected(&bob_seen)),
        (1, 0),
        "Bob stayed on his first node"
    );

    // A dies; Alice goes on sending through B. A watcher notes when Bob's app gets the
    // first message sent after the kill.
    d.a.kill();
    let killed = Instant::now();
    let first_after = {
        let seen = bob_seen.clone();
        tokio::spawn(async move {
            while seen.count() <= BEFORE_KILL as usize {
                assert!(
                    killed.elapsed() < Duration::from_secs(60),
                    "nothing reached Bob after the kill"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            killed.elapsed()
        })
    };
    for n in BEFORE_KILL + 1..=BEFORE_KILL + DURING_OUTAGE {
        send(&alice, &alice_seen, n, n as usize).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gap = first_after.await.unwrap();
    bob_seen
        .wait("the messages sent during the outage", 30, |c| {
            c.count() == (BEFORE_KILL + DURING_OUTAGE) as usize
        })
        .await;
    // A is still down: Bob reconnected, necessarily to B.
    assert_eq!((connected(&bob_seen), disconnected(&bob_seen)), (2, 1));

    // A comes back; Alice moves to it. Bob, on B, gets her messages live through A's
    // wake-ups, without a reconnection.
    d.a.restart().await;
    alice.shutdown().await;
    let (alice, alice_seen) = d.open(FAILOVER.alice, &[d.a.addr]).await;
    for (i, n) in (BEFORE_KILL + DURING_OUTAGE + 1..)
        .take(AFTER_RESTART as usize)
        .enumerate()
    {
        send(&alice, &alice_seen, n, i + 1).await;
        bob_seen
            .wait(&format!("message {n} live on B"), 30, |c| {
                c.count() == n as usize
            })
            .await;
    }
    assert_eq!(
        (connected(&bob_seen), disconnected(&bob_seen)),
        (2, 1),
        "Bob stayed on B"
    );
    assert_exactly_once_in_order(&bob_seen, BEFORE_KILL + DURING_OUTAGE + AFTER_RESTART);
    say(&format!(
        "SDK failover between nodes: {gap:?} from A's SIGKILL to the next message at Bob's \
         app (test took {:?})",
        started.elapsed()
    ));
    // The silence limit (3 s keep-alive + 2 s grace) is the bulk of it; the idle timeout
    // (10 s) would mean the silent relay was not noticed.
    assert!(
        gap < Duration::from_secs(9),
        "failing over to B cost Bob {gap:?}"
    );
    alice.shutdown().await;
    bob.shutdown().await;
    d.stop().await;
}

/// A UDP relay in front of one node, which the client takes for the node: it forwards both
/// ways until [`Partition::cut_upstream`], after which everything from the client is dropped
/// (a one-way partition: the node's pushes still reach the client, the client's
/// acknowledgements never reach the node). One client at a time.
struct Partition {
    addr: SocketAddr,
    upstream: Arc<AtomicBool>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    dropped: Arc<AtomicU64>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Partition {
    async fn start(node: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(node).await.unwrap();
        let addr = front.local_addr().unwrap();
        let upstream = Arc::new(AtomicBool::new(true));
        let client = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicU64::new(0));
        let up = {
            let (front, back) = (Arc::clone(&front), Arc::clone(&back));
            let (upstream, client, dropped) = (
                Arc::clone(&upstream),
                Arc::clone(&client),
                Arc::clone(&dropped),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let Ok((n, from)) = front.recv_from(&mut buf).await else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    if upstream.load(Ordering::SeqCst) {
                        let _ = back.send(&buf[..n]).await;
                    } else {
                        dropped.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        let down = {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    // Errors: the node's port refused a datagram (it is dead).
                    let Ok(n) = back.recv(&mut buf).await else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let to = *client.lock().unwrap();
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            })
        };
        Self {
            addr,
            upstream,
            client,
            dropped,
            tasks: [up, down],
        }
    }

    fn cut_upstream(&self) {
        self.upstream.store(false, Ordering::SeqCst);
    }

    fn has_client(&self) -> bool {
        self.client.lock().unwrap().is_some()
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The messages the app saw on the client's first connection, and whether that connection
/// has ended.
fn on_first_connection(seen: &Collector) -> (usize, bool) {
    let events = seen.events.lock().unwrap();
    let end = events
        .iter()
        .position(|e| matches!(e, ClientEvent::Disconnected));
    let messages = events
        .iter()
        .take(end.unwrap_or(events.len()))
        .filter(|e| matches!(e, ClientEvent::Message { .. }))
        .count();
    (messages, end.is_some())
}

/// Envelopes sent in the race test.
const RACE_MESSAGES: u32 = 8;

/// A reconnection race that delivers envelopes twice at the wire level, deterministically:
/// Bob reaches node A through a one-way partition that, once cut, drops everything Bob
/// sends to A. Alice (on B) sends; A pushes Bob the envelopes (B's wake-ups), Bob's SDK
/// stores them and shows them to the app, but no acknowledgement reaches A: the mailbox
/// still holds every envelope. A is killed; Bob's connection falls silent and is given up,
/// and he fails over to B, which delivers the whole mailbox again, the envelopes Bob already
/// processed included. The app sees each message once, in order, and Bob acknowledges
/// everything on B (the mailbox empties).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_delivered_again_by_another_node_reach_the_app_once() {
    let Some((pg, nats)) = servers() else {
        return;
    };
    let started = Instant::now();
    let mut d = Deployment::start(&pg, &nats, RACE).await;
    let partition = Partition::start(d.a.addr).await;
    let (bob, bob_seen) = d.open(RACE.bob, &[partition.addr, d.b.addr]).await;
    assert!(partition.has_client(), "Bob is connected to A");
    let (alice, alice_seen) = d.open(RACE.alice, &[d.b.addr]).await;

    // Bob learns Alice's signed device list while his path to A still works: the first
    // message from an account makes the SDK fetch that account's list (spec/devices.md
    // 8.9), a request that could not reach A once the partition is cut. Message 1 is shown
    // and acknowledged before the cut.
    alice
        .send_text(&acct(RACE.bob), &numbered(1))
        .await
        .unwrap();
    bob_seen
        .wait("message 1, before the cut", 30, |c| c.count() == 1)
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.schema.queued_for(RACE.bob).await != 0 {
        assert!(Instant::now() < deadline, "message 1 was not acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    partition.cut_upstream();
    for n in 2..=RACE_MESSAGES {
        alice
            .send_text(&acct(RACE.bob), &numbered(n))
            .await
            .unwrap();
    }
    alice_seen
        .wait("every message accepted", 30, |c| {
            c.delivered() == RACE_MESSAGES as usize
        })
        .await;
    // Bob's app gets messages pushed by A, on his first connection (not after a
    // reconnection: his connection through the partition would die of its idle timeout
    // after a while).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (on_a, ended) = on_first_connection(&bob_seen);
        if on_a >= 2 {
            break;
        }
        assert!(
            !ended,
            "Bob's connection to A ended before A pushed anything"
        );
        assert!(Instant::now() < deadline, "A pushed nothing to Bob");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing Bob acknowledged reached A: every envelope is still queued, those his SDK
    // processed included (all but message 1). From here on nothing from Bob reaches A, and
    // A dies.
    assert_eq!(
        d.schema.queued_for(RACE.bob).await,
        i64::from(RACE_MESSAGES - 1),
        "envelopes left Bob's mailbox while his acknowledgements could not reach any node"
    );
    d.a.kill();

    bob_seen
        .wait("every message, after the failover to B", 60, |c| {
            c.count() == RACE_MESSAGES as usize
        })
        .await;
    // Bob acknowledged on B what B pushed: every envelope after message 1, since every one
    // was queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.schema.queued_for(RACE.bob).await != 0 {
        assert!(Instant::now() < deadline, "Bob's mailbox did not empty");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The messages Bob's app saw on his connection to A after the cut: B delivered each of
    // them again.
    let (on_a, ended) = on_first_connection(&bob_seen);
    let twice = on_a - 1;
    assert!(ended, "Bob's connection to A ended");
    assert!(twice >= 1, "no envelope was delivered twice");
    assert_eq!((connected(&bob_seen), disconnected(&bob_seen)), (2, 1));
    assert_exactly_once_in_order(&bob_seen, RACE_MESSAGES);
    say(&format!(
        "SDK de-duplication across nodes: {twice} of {RACE_MESSAGES} envelopes delivered by A \
         and again by B, each shown once ({} datagrams from Bob dropped; test took {:?})",
        partition.dropped.load(Ordering::SeqCst),
        started.elapsed()
    ));
    alice.shutdown().await;
    bob.shutdown().await;
    d.stop().await;
}
