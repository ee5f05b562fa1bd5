//! Two relay nodes on one real PostgreSQL schema and one real NATS server: a device connected
//! to one node receives, live, what the other node accepted (cross-node wake-ups,
//! spec/relay.md section 8). The servers are `SEALPOST_TEST_POSTGRES` and `SEALPOST_TEST_NATS`
//! (`.ci/postgres.sh start`, `.ci/nats.sh start`); without them the tests say so loudly and
//! return, unless `SEALPOST_REQUIRE_POSTGRES=1` / `SEALPOST_REQUIRE_NATS=1`, which make them
//! fail.
#![cfg(all(feature = "postgres", feature = "nats"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::pg::Schema;
use common::{Client, Codes, Device, TIMEOUT, config};
use sealpost_relay::config::StoreBackend;
use sealpost_relay::{Relay, RelayHandle};
use sealpost_wire::AccountId;
use sealpost_wire::relay::{OutgoingEnvelope, Push, Request, Response};
use std::collections::BTreeSet;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Both servers, or `None` (see `common::servers`).
fn servers() -> Option<(String, String)> {
    common::servers::postgres_and_nats("NATS multi-node tests")
}

/// Two nodes on `schema`, both linked to the NATS server `nats`.
async fn two_nodes(
    schema: &Schema,
    nats: &str,
    codes: &Arc<Codes>,
    dirs: &[tempfile::TempDir; 2],
) -> (RelayHandle, RelayHandle) {
    let start = |dir: &std::path::Path| {
        let mut c = config(dir, codes);
        c.store = StoreBackend::Postgres(Zeroizing::new(schema.url.clone()));
        c.nats = Some(nats.parse().unwrap());
        Relay::start(c)
    };
    (
        start(dirs[0].path()).await.unwrap(),
        start(dirs[1].path()).await.unwrap(),
    )
}

fn send(to: &AccountId, device: u32, body: &[u8], msg: u8) -> Request {
    Request::Send {
        message_id: [msg; 16],
        sender_seq: u64::from(msg),
        recipient: to.clone(),
        envelopes: vec![OutgoingEnvelope {
            device_id: device,
            envelope: body.to_vec(),
        }],
    }
}

/// The next `Deliver`'s body, skipping `QueueDrained` (bounded by the harness's timeout).
async fn next_body(c: &mut Client) -> Vec<u8> {
    loop {
        match c.next_push().await {
            Push::Deliver(d) => return d.envelope,
            Push::QueueDrained => {}
            other => panic!("expected Deliver, got {other:?}"),
        }
    }
}

/// Waits (bounded) until `node` holds `n` wake-up subscriptions.
async fn subscriptions_become(node: &RelayHandle, n: usize) {
    tokio::time::timeout(TIMEOUT, async {
        while node.wake_subscriptions() != n {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} subscriptions, not {n}", node.wake_subscriptions()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_node_a_gets_live_what_node_b_accepted() {
    let Some((pg, nats)) = servers() else {
        return;
    };
    let schema = Schema::create(&pg, "sealpost_nats").await;
    let codes = Arc::new(Codes::default());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (node_a, node_b) = two_nodes(&schema, &nats, &codes, &dirs).await;

    // Bob stays connected to A (registering authenticates him there); Alice sends through B.
    let mut bob = Device::register(&node_a, &codes, "+15550000011").await;
    assert_eq!(node_a.wake_subscriptions(), 1);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let alice = Device::register(&node_b, &codes, "+15550000012").await;
    let b = bob.address.account.clone();
    for (i, body) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        let r = alice
            .client
            .request(&send(&b, bob.address.device.0, body, i as u8 + 1))
            .await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
        // Live on A, without a reconnection: only B's wake-up tells A.
        assert_eq!(next_body(&mut bob.client).await, body);
    }

    // Bob's last connection on A closes: A drops his subscription.
    bob.client.close().await;
    subscriptions_become(&node_a, 0).await;

    node_a.shutdown().await;
    node_b.shutdown().await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_both_nodes_gets_each_envelope_at_least_once() {
    let Some((pg, nats)) = servers() else {
        return;
    };
    let schema = Schema::create(&pg, "sealpost_nats").await;
    let codes = Arc::new(Codes::default());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (node_a, node_b) = two_nodes(&schema, &nats, &codes, &dirs).await;

    // Bob's device on A, and the same device also on B (a reconnection race: a newer
    // connection replaces an older one only on the same node).
    let mut bob = Device::register(&node_a, &codes, "+15550000021").await;
    let mut on_a = std::mem::replace(
        &mut bob.client,
        Client::connect(node_b.local_addr(), node_b.cert_fingerprint()).await,
    );
    let r = bob.authenticate().await;
    assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
    let mut on_b = bob.client;
    assert_eq!(node_a.wake_subscriptions(), 1);
    assert_eq!(node_b.wake_subscriptions(), 1);

    // Senders on both nodes.
    let carol = Device::register(&node_a, &codes, "+15550000022").await;
    let dave = Device::register(&node_b, &codes, "+15550000023").await;
    let b = bob.address.account.clone();
    let mut sent = BTreeSet::new();
    for i in 1..=6u8 {
        let sender = if i % 2 == 0 { &carol } else { &dave };
        let body = vec![i; 8];
        let r = sender
            .client
            .request(&send(&b, bob.address.device.0, &body, i))
            .await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
        sent.insert(body);
    }

    // Each connection gets every envelope (nothing is acknowledged), whichever node took it.
    for c in [&mut on_a, &mut on_b] {
        let mut got = BTreeSet::new();
        while got.len() < sent.len() {
            got.insert(next_body(c).await);
        }
        assert_eq!(got, sent);
    }

    on_a.close().await;
    on_b.close().await;
    node_a.shutdown().await;
    node_b.shutdown().await;
    schema.drop_now().await;
}

/// A closed port on 127.0.0.1 (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_and_delivers_while_nats_is_unreachable() {
    // Needs no server: NATS is down on purpose (and the store is SQLite, no other node).
    let codes = Arc::new(Codes::default());
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &codes);
    c.nats = Some(
        format!("nats://127.0.0.1:{}", closed_port())
            .parse()
            .unwrap(),
    );
    let node = Relay::start(c).await.expect("starts without NATS");
    let mut bob = Device::register(&node, &codes, "+15550000031").await;
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let alice = Device::register(&node, &codes, "+15550000032").await;
    let b = bob.address.account.clone();
    let r = alice
        .client
        .request(&send(&b, bob.address.device.0, b"local", 1))
        .await;
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    // Local commit notices do not need the bus.
    assert_eq!(next_body(&mut bob.client).await, b"local");
    node.shutdown().await;
}

/// A private `nats-server` started by the test, on a free loopback port, so that it can be
/// killed with SIGKILL and restarted on the same port without touching a shared server.
struct PrivateNats {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    const BINARY: &str = "/usr/sbin/nats-server";

    fn start() -> Self {
        let mut n = Self {
            port: closed_port(),
            child: None,
        };
        n.restart();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new(Self::BINARY)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", Self::BINARY));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("nats-server did not listen on {}", self.port);
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// NATS is killed (SIGKILL) and restarted while two senders on node B send to a receiver on
/// node A, so that live delivery relies on B's wake-ups: nothing accepted is lost, the app
/// sees no duplicate, messages still arrive while NATS is down (A's fallback poll reads the
/// mailbox, spec/relay.md section 8.3), and once NATS is back, delivery is live through
/// wake-ups again (A's client reconnected and resubscribed: a message arrives while A's
/// poll count stays put).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_under_load_loses_nothing_and_wakeups_resume() {
    use common::checker::{Checker, Key, Outcome};
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    let Some((pg, _)) = servers() else {
        return;
    };
    let mut nats = PrivateNats::start();
    let schema = Schema::create(&pg, "sealpost_natskill").await;
    let codes = Arc::new(Codes::default());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (node_a, node_b) = two_nodes(&schema, &nats.url(), &codes, &dirs).await;

    let mut bob = Device::register(&node_a, &codes, "+15550000041").await;
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let senders = [
        Device::register(&node_b, &codes, "+15550000042").await,
        Device::register(&node_b, &codes, "+15550000043").await,
    ];
    let checker = Arc::new(Checker::default());
    let stop = Arc::new(AtomicBool::new(false));
    let to = bob.address.clone();
    let mut sending = Vec::new();
    for (s, sender) in senders.into_iter().enumerate() {
        let (checker, stop, to) = (Arc::clone(&checker), Arc::clone(&stop), to.clone());
        sending.push(tokio::spawn(async move {
            for n in 1u64.. {
                if stop.load(Ordering::SeqCst) {
                    return sender;
                }
                let mut message_id = [s as u8; 16];
                message_id[8..].copy_from_slice(&n.to_be_bytes());
                let body = format!("{s}/{n}").into_bytes();
                let key: Key = (sender.address.clone(), message_id);
                let req = Request::Send {
                    message_id,
                    sender_seq: n,
                    recipient: to.account.clone(),
                    envelopes: vec![OutgoingEnvelope {
                        device_id: to.device.0,
                        envelope: body.clone(),
                    }],
                };
                // The store is up throughout: every send is accepted.
                let r = sender.client.request(&req).await;
                assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
                checker.attempt(&key, &to, &body, Outcome::Accepted);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            unreachable!()
        }));
    }
    // The receiver on A: the app de-duplicates by (sender, message id).
    let delivered = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiving = {
        let (checker, delivered, done) = (
            Arc::clone(&checker),
            Arc::clone(&delivered),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            let mut seen: HashSet<Key> = HashSet::new();
            loop {
                match bob.client.try_push(Duration::from_millis(200)).await {
                    Some(Push::Deliver(d)) => {
                        let key: Key = (d.sender.clone(), d.message_id);
                        checker.relay_delivery(&bob.address, &key);
                        if seen.insert(key.clone()) {
                            checker.app_delivery(&bob.address, &key, &d.envelope);
                            delivered.fetch_add(1, Ordering::SeqCst);
                        }
                        let r = bob
                            .client
                            .request(&Request::Ack {
                                server_ids: vec![d.server_id],
                            })
                            .await;
                        assert!(matches!(r, Response::Acked { .. }), "{r:?}");
                    }
                    Some(_) => {}
                    None if done.load(Ordering::SeqCst) => return bob,
                    None => {}
                }
            }
        })
    };

    // Live through wake-ups first.
    let d = Arc::clone(&delivered);
    until("first deliveries", || d.load(Ordering::SeqCst) >= 5).await;
    // (A may have polled while its link was still connecting at start.)
    let polls = node_a.wake_polls();

    // NATS dies: A notices, polls, and mail still arrives.
    nats.kill();
    until("A polls while NATS is down", || {
        node_a.wake_polls() >= polls + 2
    })
    .await;
    let before = delivered.load(Ordering::SeqCst);
    until("deliveries while NATS is down", || {
        d.load(Ordering::SeqCst) >= before + 10
    })
    .await;

    // NATS is back: A's poll stops once it has reconnected (one catch-up round), and
    // delivery goes on through wake-ups alone.
    nats.restart();
    // Stable over more than one poll interval: A is connected again and has paid its
    // catch-up round (bounded: the test times out if it keeps polling).
    let mut settled = false;
    for _ in 0..20 {
        let p = node_a.wake_polls();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if node_a.wake_polls() == p {
            settled = true;
            break;
        }
    }
    assert!(settled, "A keeps polling after NATS is back");
    let polls = node_a.wake_polls();
    let before = delivered.load(Ordering::SeqCst);
    until("live deliveries after NATS is back", || {
        d.load(Ordering::SeqCst) >= before + 10
    })
    .await;
    assert_eq!(
        node_a.wake_polls(),
        polls,
        "deliveries came from the fallback poll, not from wake-ups"
    );

    stop.store(true, Ordering::SeqCst);
    for s in sending {
        s.await.unwrap();
    }
    let accepted = checker.check().accepted as u64;
    until("every accepted message delivered", || {
        d.load(Ordering::SeqCst) >= accepted
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let bob = receiving.await.unwrap();
    let report = checker.check();
    common::say(&format!("{report}"));
    assert!(report.ok() && report.accepted > 0, "{report}");
    assert_eq!(report.app_duplicates, 0);

    bob.client.close().await;
    node_a.shutdown().await;
    node_b.shutdown().await;
    schema.drop_now().await;
}
