//! Failover proven, not assumed: senders and receivers run against real `sealpost-relay`
//! processes while nodes are killed with SIGKILL at random points and restarted on the same
//! port and data directory; a Jepsen-style total-queue checker (`common/checker.rs`) then
//! checks the history: every message the relay answered `Accepted` for reached its
//! recipient's app (lost = 0), nothing reached an app that was not sent, the app saw no
//! duplicate after the client's de-duplication by (sender, message id), and every app saw
//! each sender's messages in the order they were sent.
//!
//! The harness is `common/failover.rs`. Round-robin receivers receive by (re)connecting and
//! draining their mailbox, which any node serves; live receivers stay connected to one node
//! and take what it pushes. On three PostgreSQL nodes linked by NATS, senders do not send
//! to a live receiver through its own node, so its live pushes are cross-node wake-ups
//! (spec/relay.md section 8); the run prints how long they took (`Accepted` to app: p50,
//! p99, max) and fails when live receivers get their mail only after reconnecting, or a
//! message is not at the app `LIVE_GRACE` after `Accepted` on a connection that stayed up.
//!
//! A bounded run in CI (20 kill points). Longer runs: `SEALPOST_FAILOVER_KILLS=500`
//! (kill points), `SEALPOST_FAILOVER_SEED=<n>` replays a printed seed's choices (the kill
//! timing still races with the load); for example
//! `SEALPOST_FAILOVER_KILLS=500 cargo test -p sealpost-relay --test failover -- --nocapture`
//! with `SEALPOST_TEST_POSTGRES` and `SEALPOST_TEST_NATS` set (README, "Failover").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::checker::{Checker, Key, Outcome};
use common::failover::{Cast, Node, Peer, assert_kept, run, seed};
use common::{Codes, Device, TestRelay, config, say};
use sealpost_relay::Relay;
use sealpost_wire::DeviceAddress;
use sealpost_wire::relay::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

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

/// The checker reports a message that reached an app after a later message of the same
/// sender, per receiver; a duplicate arriving late, another sender's messages in between, or
/// another receiver's own order are no reordering.
#[test]
fn checker_catches_reordering() {
    let a = DeviceAddress::new(common::acct("+15550000001"), sealpost_wire::DeviceId(1));
    let b = DeviceAddress::new(common::acct("+15550000002"), sealpost_wire::DeviceId(1));
    let c = DeviceAddress::new(common::acct("+15550000003"), sealpost_wire::DeviceId(1));
    let d = DeviceAddress::new(common::acct("+15550000004"), sealpost_wire::DeviceId(1));
    let from = |s: &DeviceAddress, i: u8| -> Key { (s.clone(), [i; 16]) };
    let ch = Checker::default();
    // a sends 1, 2, 3 to b; d sends 1, 2 to b and 3 to c; every message accepted.
    for (s, i, to) in [
        (&a, 1, &b),
        (&d, 1, &b),
        (&a, 2, &b),
        (&d, 2, &b),
        (&a, 3, &b),
        (&d, 3, &c),
    ] {
        ch.attempt(&from(s, i), to, &[i], Outcome::Accepted);
    }
    // b sees a's messages in order, interleaved with d's (also in order), and a late
    // duplicate of a/1 (an app duplicate, which is not a reordering).
    for (s, i) in [(&d, 1), (&a, 1), (&a, 2), (&d, 2), (&a, 1), (&a, 3)] {
        ch.app_delivery(&b, &from(s, i), &[i]);
    }
    ch.app_delivery(&c, &from(&d, 3), &[3]);
    let r = ch.check();
    assert_eq!((r.lost.len(), r.phantom.len()), (0, 0), "{r}");
    assert_eq!((r.app_duplicates, r.reordered.len()), (1, 0), "{r}");

    // b seeing a/2 before a/1: a/1 arrived late.
    let ch = Checker::default();
    for i in 1..=3 {
        ch.attempt(&from(&a, i), &b, &[i], Outcome::Accepted);
    }
    for i in [2, 1, 3] {
        ch.app_delivery(&b, &from(&a, i), &[i]);
    }
    let r = ch.check();
    assert_eq!(r.reordered, vec![from(&a, 1)], "{r}");
    assert!(!r.ok());
    // The order is that of the first attempts: a retry does not move a message.
    let ch = Checker::default();
    ch.attempt(&from(&a, 1), &b, &[1], Outcome::NoAnswer);
    ch.attempt(&from(&a, 2), &b, &[2], Outcome::Accepted);
    ch.attempt(&from(&a, 1), &b, &[1], Outcome::Accepted);
    ch.app_delivery(&b, &from(&a, 1), &[1]);
    ch.app_delivery(&b, &from(&a, 2), &[2]);
    assert!(ch.check().ok(), "{}", ch.check());
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

/// Registers `n` devices through an in-process relay `relay`.
async fn register(relay: &sealpost_relay::RelayHandle, codes: &Codes, n: u32) -> Vec<Peer> {
    let mut peers = Vec::new();
    for i in 0..n {
        let d = Device::register(relay, codes, &format!("+1555000{:04}", i + 1)).await;
        peers.push(Peer::from(d).await);
    }
    peers
}

/// Single node, SQLite: one relay process killed with SIGKILL at random points and restarted
/// on the same port and data directory under load; one receiver stays connected (pushes
/// from the node's own commits, early delivery), two drain round-robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_relay_killed_loses_nothing() {
    let seed = seed();
    let TestRelay { dir, codes, relay } = TestRelay::start().await;
    let fp = relay.cert_fingerprint();
    let mut peers = register(&relay, &codes, 6).await;
    relay.shutdown().await;
    let live = peers.split_off(5);
    let receivers = peers.split_off(3);

    let mut nodes = vec![Node::start(dir.path(), &[]).await];
    let cast = Cast {
        senders: peers,
        receivers,
        live,
    };
    let outcomes = run(&mut nodes, fp, cast, seed).await;
    assert_kept(&outcomes);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::failover::{ANSWER_WAIT, Rng, World, receiver};
    use common::pg::Schema;
    use sealpost_relay::config::StoreBackend;
    use sealpost_wire::relay::{OutgoingEnvelope, Request, Response};
    use zeroize::Zeroizing;

    /// Three relay processes on one fresh schema, linked by one NATS server, nodes killed
    /// with SIGKILL at random points and restarted; clients fail over to another node when
    /// theirs dies. Four senders; two round-robin receivers; two live receivers, on nodes 0
    /// and 1 at first, which the senders reach only through other nodes.
    #[cfg(feature = "nats")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_postgres_nodes_killed_lose_nothing() {
        let Some((server, nats)) =
            common::servers::postgres_and_nats("PostgreSQL + NATS failover test")
        else {
            return;
        };
        let seed = seed();
        let schema = Schema::create(&server, "sealpost_failover").await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let codes = Arc::new(Codes::default());
        let mut c = config(dirs[0].path(), &codes);
        c.store = StoreBackend::Postgres(Zeroizing::new(schema.url.clone()));
        let relay = Relay::start(c).await.unwrap();
        let fp = relay.cert_fingerprint();
        let mut peers = register(&relay, &codes, 8).await;
        relay.shutdown().await;
        let live = peers.split_off(6);
        let receivers = peers.split_off(4);
        let others: Vec<&std::path::Path> = dirs[1..].iter().map(|d| d.path()).collect();
        common::nodes::share_key_files(dirs[0].path(), &others);

        let extra = vec![
            "--store".to_owned(),
            schema.url.clone(),
            "--nats".to_owned(),
            nats,
        ];
        let mut nodes = Vec::new();
        for d in &dirs {
            let node = Node::start(d.path(), &extra).await;
            assert_eq!(node.fingerprint(), fp, "the nodes share one certificate");
            nodes.push(node);
        }
        let cast = Cast {
            senders: peers,
            receivers,
            live,
        };
        let outcomes = run(&mut nodes, fp, cast, seed).await;
        for n in &mut nodes {
            n.kill();
        }
        schema.drop_now().await;
        assert_kept(&outcomes);
        // Cross-node wake-ups were exercised at all.
        assert!(
            outcomes.live.cross_node.accepted >= 20,
            "{} (seed {seed})",
            outcomes.live
        );
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
        // (Not dropped: its admin connection dies with the server; the server is private.)
        let url = Schema::create(&server, "sealpost_pgcrash").await.url;
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
        let world = Arc::new(World::new(vec![node.addr], fp));
        let checker = &world.checker;
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
        world.drain.store(true, std::sync::atomic::Ordering::SeqCst);
        receiver(bob, Arc::clone(&world), Rng(1)).await;
        let report = world.checker.check();
        say(&format!("{report}"));
        assert!(report.ok() && report.accepted == 15, "{report}");
        drop(node);
    }
}
