//! The relay over real QUIC on 127.0.0.1, with its real self-signed certificate (pinned) and
//! real SQLite files in temporary directories.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Codes, Device, Raw, TestRelay, acct, config};
use sealpost_relay::Relay;
use sealpost_session::VerifiedBundle;
use sealpost_wire::relay::{ErrorCode, OutgoingEnvelope, Push, Request, Response};
use sealpost_wire::{AccountId, DeviceAddress};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn send_req(to: &AccountId, devices: &[u32], body: &[u8], msg: u8) -> Request {
    Request::Send {
        message_id: [msg; 16],
        sender_seq: 0,
        recipient: to.clone(),
        envelopes: devices
            .iter()
            .map(|d| OutgoingEnvelope {
                device_id: *d,
                envelope: body.to_vec(),
            })
            .collect(),
    }
}

/// Waits until no delivery task runs (each idle connected device keeps none).
async fn until_no_delivery_task(relay: &sealpost_relay::RelayHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.delivery_tasks() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} delivery tasks still running",
            relay.delivery_tasks()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `open` once, without waiting: `Some` if the stream could be opened right now. A
/// client knows its stream credit from the relay's transport parameters and the
/// `MAX_STREAMS` frames received so far, so `None` means the relay has granted no more.
fn now<T>(open: impl std::future::Future<Output = Result<T, quinn::ConnectionError>>) -> Option<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(open).poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r.expect("connection alive")),
        std::task::Poll::Pending => None,
    }
}

async fn expect_deliver(c: &mut Client) -> sealpost_wire::relay::Delivery {
    match c.next_push().await {
        Push::Deliver(d) => d,
        other => panic!("expected Deliver, got {other:?}"),
    }
}

/// Scenario 1: register, authenticate, upload, fetch, send; live push and ack; queued
/// delivery in order then QueueDrained; redelivery of unacked envelopes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_upload_fetch_send_deliver_ack_redeliver() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let (addr, fp) = (relay.local_addr(), relay.cert_fingerprint());

    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    // Both had empty mailboxes: delivery says so right away.
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    assert_eq!(
        alice.upload(25, 5).await,
        Response::PreKeysStored {
            one_time_prekeys: 25,
            kem_prekeys: 5
        }
    );
    bob.upload(25, 6).await;

    // Bob fetches Alice's bundle; it verifies under her identity.
    let a = alice.address.account.clone();
    let r = bob
        .client
        .request(&Request::FetchBundles { account: a.clone() })
        .await;
    let Response::Bundles(bundles) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bundles.len(), 1);
    let v = VerifiedBundle::verify(&bundles[0]).unwrap();
    assert_eq!(v.identity(), &alice.id.public());
    // 24 and 4 left: 4 is below the KEM watermark (5), so Alice is told.
    assert_eq!(
        alice.client.next_push().await,
        Push::PreKeysLow {
            one_time_prekeys: 24,
            kem_prekeys: 4
        }
    );
    let r = bob
        .client
        .request(&Request::ListDevices { account: a.clone() })
        .await;
    assert!(matches!(r, Response::Devices(ref d) if d.len() == 1 && d[0].device_id == 1));

    // Alice is online: live push, then ack.
    let r = bob.client.request(&send_req(&a, &[1], b"live", 1)).await;
    let Response::Accepted { timestamp } = r else {
        panic!("{r:?}")
    };
    let d = expect_deliver(&mut alice.client).await;
    assert_eq!(d.envelope, b"live");
    assert_eq!(d.sender, bob.address);
    assert_eq!(d.message_id, [1; 16]);
    assert_eq!(d.timestamp, timestamp);
    let r = alice
        .client
        .request(&Request::Ack {
            server_ids: vec![d.server_id],
        })
        .await;
    assert_eq!(r, Response::Acked { removed: 1 });

    // Alice goes offline; Bob sends three.
    let old = std::mem::replace(&mut alice.client, Client::connect(addr, fp).await);
    old.close().await;
    for i in 0..3u8 {
        let r = bob
            .client
            .request(&send_req(&a, &[1], &[b'q', i], 10 + i))
            .await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    let r = alice.authenticate().await;
    assert_eq!(
        r,
        Response::Authenticated {
            one_time_prekeys: 24,
            kem_prekeys: 4,
            queued: 3,
            sender_seq: 0,
        }
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(expect_deliver(&mut alice.client).await);
    }
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.envelope.as_slice()).collect();
    assert_eq!(bodies, vec![b"q\0" as &[u8], b"q\x01", b"q\x02"]);
    let ids: BTreeSet<u64> = got.iter().map(|d| d.server_id).collect();
    assert_eq!(ids.len(), 3, "server ids are distinct on a connection");
    // Ack only the first, then reconnect: the other two come again, the first does not.
    alice
        .client
        .request(&Request::Ack {
            server_ids: vec![got[0].server_id],
        })
        .await;
    let r = alice.reconnect(addr, fp).await;
    assert!(
        matches!(r, Response::Authenticated { queued: 2, .. }),
        "{r:?}"
    );
    let again = [
        expect_deliver(&mut alice.client).await,
        expect_deliver(&mut alice.client).await,
    ];
    let bodies: Vec<&[u8]> = again.iter().map(|d| d.envelope.as_slice()).collect();
    assert_eq!(bodies, vec![b"q\x01" as &[u8], b"q\x02"]);
    let again: Vec<u64> = again.iter().map(|d| d.server_id).collect();
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    alice
        .client
        .request(&Request::Ack {
            server_ids: again.clone(),
        })
        .await;
    let r = alice.reconnect(addr, fp).await;
    assert!(
        matches!(r, Response::Authenticated { queued: 0, .. }),
        "{r:?}"
    );
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);

    // Errors over the wire: mismatched devices, unauthenticated requests.
    let r = bob.client.request(&send_req(&a, &[1, 2], b"x", 9)).await;
    assert_eq!(err(&r), ErrorCode::MismatchedDevices);
    let anon = Client::connect(addr, fp).await;
    let r = anon
        .request(&Request::FetchBundles { account: a.clone() })
        .await;
    assert_eq!(err(&r), ErrorCode::Unauthenticated);
    relay.shutdown().await;
}

/// Delivery window: with more than 64 queued, at most 64 are pushed before acks arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_window_waits_for_acks() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let old = std::mem::replace(&mut bob.client, Client::for_relay(&relay).await);
    old.close().await;
    let b = bob.address.account.clone();
    for i in 0..70u8 {
        let r = alice.client.request(&send_req(&b, &[1], &[i], i)).await;
        assert!(matches!(r, Response::Accepted { .. }));
    }
    let before = relay.pushes_sent();
    bob.authenticate().await;
    let mut ids = Vec::new();
    for _ in 0..64 {
        ids.push(expect_deliver(&mut bob.client).await.server_id);
    }
    // Waiting for acks keeps no task: the ack starts the next run. The ended run pushed
    // the window and nothing more.
    until_no_delivery_task(&relay).await;
    assert_eq!(relay.pushes_sent() - before, 64, "pushed past the window");
    bob.client
        .request(&Request::Ack {
            server_ids: ids[..10].to_vec(),
        })
        .await;
    for i in 64..70u8 {
        assert_eq!(expect_deliver(&mut bob.client).await.envelope, [i]);
    }
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    relay.shutdown().await;
}

/// Idle connected devices keep no delivery task: a run reads the mailbox after
/// authentication, another pushes each new message, and each ends once its device is up to
/// date. Mail sent to an idle device is still pushed live, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_tasks_run_only_while_there_is_something_to_push() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let before = relay.pushes_sent();
    let a = alice.address.account.clone();
    for round in 0..3u8 {
        until_no_delivery_task(&relay).await;
        let mut ids = Vec::new();
        for i in 0..4u8 {
            let msg = round * 4 + i;
            let r = bob.client.request(&send_req(&a, &[1], &[msg], msg)).await;
            assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
        }
        for i in 0..4u8 {
            let d = expect_deliver(&mut alice.client).await;
            assert_eq!(d.envelope, [round * 4 + i]);
            ids.push(d.server_id);
        }
        let r = alice
            .client
            .request(&Request::Ack { server_ids: ids })
            .await;
        assert_eq!(r, Response::Acked { removed: 4 });
    }
    // Each message was pushed once, and nothing else: the runs that ended pushed nothing
    // more (no redelivery of acknowledged mail, no second QueueDrained).
    until_no_delivery_task(&relay).await;
    assert_eq!(relay.pushes_sent() - before, 12);
    relay.shutdown().await;
}

/// Pipelined `Send`s that one group commit answers get their `Accepted` responses in one
/// flight, not one packet each (`server/responder.rs`): 16 requests sent in one flight
/// come back in a few datagrams (in the best of three rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_ready_together_share_packets() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    let b = bob.address.account.clone();
    let conn = alice.client.conn.clone();
    // Four requests at once earn the connection its full request-stream allowance.
    let warm: Vec<_> = (0..4u8)
        .map(|i| {
            let (conn, req) = (conn.clone(), send_req(&b, &[1], &[i], i));
            tokio::spawn(async move { common::request_on(&conn, &req).await })
        })
        .collect();
    for w in warm {
        assert!(matches!(w.await.unwrap(), Response::Accepted { .. }));
    }
    let mut fewest = u64::MAX;
    for round in 0..3u8 {
        let before = conn.stats().udp_rx.datagrams;
        // All 16 written before the client's connection sends anything: one flight.
        let mut streams = Vec::new();
        for i in 0..16u8 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            let msg = 16 * (round + 1) + i;
            send.write_all(&send_req(&b, &[1], &[msg], msg).encode())
                .await
                .unwrap();
            send.finish().unwrap();
            streams.push(recv);
        }
        for mut recv in streams {
            let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
                .await
                .unwrap()
                .unwrap();
            let r = Response::decode(&frame[4..]).unwrap();
            assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
        }
        fewest = fewest.min(conn.stats().udp_rx.datagrams - before);
    }
    // One flight per group commit that answered them (usually one or two) and the relay's
    // acknowledgements of the requests: 4 to 6 here; one packet per response (each
    // request's task writing its own) took 16 to 18. The best of three rounds, so that a
    // busy machine splitting one round's group commits does not fail the test.
    assert!(fewest < 10, "16 responses took {fewest} datagrams");
    relay.shutdown().await;
}

/// A connection's ready responses are written together (`server/responder.rs`); a client
/// whose stream window is smaller than a response gets the first bytes from there and the
/// rest from a task of their own, intact and exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_larger_than_the_stream_window_arrive_whole() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    for d in [&mut alice, &mut bob] {
        // 5 bytes at a time: less than any response frame (a 4-byte length prefix, then at
        // least a type byte and a field).
        let narrow =
            Client::connect_windowed(relay.local_addr(), relay.cert_fingerprint(), Some(5)).await;
        let old = std::mem::replace(&mut d.client, narrow);
        old.close().await;
        assert!(matches!(
            d.authenticate().await,
            Response::Authenticated { .. }
        ));
    }
    let b = bob.address.account.clone();
    let mut sends = Vec::new();
    for i in 0..20u8 {
        let req = send_req(&b, &[1], &[i; 40], i);
        let conn = alice.client.conn.clone();
        sends.push(tokio::spawn(async move {
            common::request_on(&conn, &req).await
        }));
    }
    for s in sends {
        let r = s.await.unwrap();
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    let mut delivered = BTreeSet::new();
    let mut messages = BTreeSet::new();
    while delivered.len() < 20 {
        match bob.client.next_push().await {
            Push::Deliver(d) => {
                assert_eq!(d.envelope, [d.message_id[0]; 40]);
                assert!(delivered.insert(d.server_id), "pushed twice");
                messages.insert(d.message_id[0]);
            }
            Push::QueueDrained => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(messages, (0..20).collect());
    let r = bob
        .client
        .request(&Request::Ack {
            server_ids: delivered.into_iter().collect(),
        })
        .await;
    assert_eq!(r, Response::Acked { removed: 20 });
    relay.shutdown().await;
}

/// Scenario 2: concurrent bundle fetches never serve a one-time prekey twice (SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_serve_each_one_time_prekey_once() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut bob = Device::register(&relay, &codes, "+15550000100").await;
    bob.upload(40, 15).await;
    let b = bob.address.account.clone();
    let mut fetchers = Vec::new();
    for i in 0..6 {
        fetchers.push(Device::register(&relay, &codes, &format!("+1555000020{i}")).await);
    }
    // 6 connections x 10 concurrent fetches each, all in flight at once.
    let mut set = tokio::task::JoinSet::new();
    for d in &fetchers {
        for _ in 0..10 {
            let conn = d.client.conn.clone();
            let b = b.clone();
            set.spawn(async move {
                common::request_on(&conn, &Request::FetchBundles { account: b }).await
            });
        }
    }
    let mut responses = Vec::new();
    while let Some(r) = set.join_next().await {
        responses.push(r.unwrap());
    }
    let mut one_time = Vec::new();
    let mut kem = Vec::new();
    assert_eq!(responses.len(), 60);
    for r in responses {
        let Response::Bundles(b) = r else {
            panic!("{r:?}")
        };
        let bundle = &b[0];
        if let Some((id, _)) = bundle.one_time_prekey {
            one_time.push(id);
        }
        if bundle.kem_prekey.kind == sealpost_wire::KemPreKeyKind::OneTime {
            kem.push(bundle.kem_prekey.id);
        }
    }
    assert_eq!(one_time.len(), 40, "all 40 one-time prekeys were served");
    assert_eq!(
        one_time.iter().collect::<BTreeSet<_>>().len(),
        40,
        "none twice"
    );
    assert_eq!(kem.len(), 15);
    assert_eq!(kem.iter().collect::<BTreeSet<_>>().len(), 15);
    relay.shutdown().await;
}

/// Scenario 3a: graceful shutdown loses nothing; the certificate is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_survives_graceful_restart() {
    let TestRelay { dir, codes, relay } = TestRelay::start().await;
    let fp = relay.cert_fingerprint();
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    let b = bob.address.account.clone();
    bob.client.close().await;
    for i in 0..5u8 {
        let r = alice.client.request(&send_req(&b, &[1], &[i; 3], i)).await;
        assert!(matches!(r, Response::Accepted { .. }));
    }
    let conn = alice.client.conn.clone();
    relay.shutdown().await;
    // Connections were closed with application code 0.
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(0));
        }
        other => panic!("{other:?}"),
    }

    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    assert_eq!(relay.cert_fingerprint(), fp, "certificate reused");
    let mut bob = Device {
        client: Client::for_relay(&relay).await,
        ..bob
    };
    let r = bob.authenticate().await;
    assert!(
        matches!(r, Response::Authenticated { queued: 5, .. }),
        "{r:?}"
    );
    for i in 0..5u8 {
        assert_eq!(expect_deliver(&mut bob.client).await.envelope, vec![i; 3]);
    }
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let _ = alice.client.try_push(Duration::ZERO).await;
    relay.shutdown().await;
}

/// Scenario 3b: the relay process is killed (SIGKILL) right after `Accepted`; a new relay on
/// the same data directory delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_survives_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    // Register both devices with an in-process relay (codes are captured there).
    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    let fp = relay.cert_fingerprint();
    alice.client.close().await;
    bob.client.close().await;
    relay.shutdown().await;

    // The real binary on the same data directory.
    let mut process = common::RelayProcess::start(dir.path()).await;
    let (addr, printed_fp) = (process.addr, process.fingerprint_hex.clone());
    assert_eq!(printed_fp, hex::encode(fp));
    let mut alice = Device {
        client: Client::connect(addr, fp).await,
        ..alice
    };
    assert!(matches!(
        alice.authenticate().await,
        Response::Authenticated { .. }
    ));
    let b = bob.address.account.clone();
    for i in 0..4u8 {
        let r = alice.client.request(&send_req(&b, &[1], &[i; 5], i)).await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    process.kill();

    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let mut bob = Device {
        client: Client::for_relay(&relay).await,
        ..bob
    };
    let r = bob.authenticate().await;
    assert!(
        matches!(r, Response::Authenticated { queued: 4, .. }),
        "{r:?}"
    );
    for i in 0..4u8 {
        assert_eq!(expect_deliver(&mut bob.client).await.envelope, vec![i; 5]);
    }
    relay.shutdown().await;

    // SIGTERM: the binary shuts down gracefully (exit status 0) and checkpoints the WAL.
    let mut process = common::RelayProcess::start(dir.path()).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = process.child.wait().unwrap();
        drop(process);
        status
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
    let wal = dir.path().join("relay.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

/// Scenario 4: malformed frames, oversized lengths, unknown kinds, trailing bytes and
/// client-opened unidirectional streams affect only themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_isolated() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let c = Client::for_relay(&relay).await;
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![0xff, 0xff, 0xff, 0xff], ErrorCode::TooLarge),
        ([0u8, 0x30, 0, 1].to_vec(), ErrorCode::TooLarge),
        (vec![0, 0, 0, 1, 1], ErrorCode::Malformed),
        (vec![0, 0, 0, 2, 1, 0x3e], ErrorCode::UnknownRequest),
        (vec![0, 0, 0, 2, 9, 0x03], ErrorCode::UnsupportedVersion),
        (vec![0, 0, 0, 3, 1, 0x03, 0], ErrorCode::Malformed),
        (vec![0, 0], ErrorCode::Malformed),
        (vec![0, 0, 0, 9, 1, 0x03], ErrorCode::Malformed),
    ];
    for (bytes, code) in cases {
        match c.raw(&bytes).await {
            Raw::Response(r) => assert_eq!(err(&r), code, "{bytes:?}"),
            Raw::Reset => panic!("{bytes:?}: reset instead of an error response"),
        }
    }
    // A valid frame followed by more bytes on the same stream.
    let mut trailing = Request::Challenge.encode();
    trailing.extend_from_slice(&Request::Challenge.encode());
    match c.raw(&trailing).await {
        Raw::Response(r) => assert_eq!(err(&r), ErrorCode::Malformed),
        Raw::Reset => panic!("reset"),
    }
    // A stream the client resets halfway.
    let (mut send, _recv) = c.conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 1, 0, 1]).await.unwrap();
    send.reset(7u32.into()).unwrap();
    // A unidirectional stream: the relay grants none (its transport parameters, and no
    // MAX_STREAMS frame since, in the answers above), so it can never be opened.
    assert!(
        now(c.conn.open_uni()).is_none(),
        "the relay must not grant unidirectional streams"
    );
    // The same connection, and others, keep working.
    assert!(matches!(
        c.request(&Request::Challenge).await,
        Response::ChallengeIssued { .. }
    ));
    let r = alice
        .client
        .request(&Request::ListDevices {
            account: alice.address.account.clone(),
        })
        .await;
    assert!(matches!(r, Response::Devices(_)));
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    // A client without the sealpost/1 ALPN is refused.
    let r = common::connect_with(
        relay.local_addr(),
        relay.cert_fingerprint(),
        vec![b"h3".to_vec()],
    )
    .await;
    assert!(r.is_err(), "connected without ALPN sealpost/1");
    // A client pinning another fingerprint refuses the relay.
    let r = common::connect_with(relay.local_addr(), [0; 32], vec![b"sealpost/1".to_vec()]).await;
    assert!(r.is_err());
    relay.shutdown().await;
}

/// Scenario 6: rate limits and the code attempt limit over the wire; a re-registration
/// closes the old device's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_code_attempts_and_reregistration() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start_with(|cfg| {
        cfg.limits.code_requests_per_account = 2;
    })
    .await;
    let c = Client::for_relay(&relay).await;
    let a = acct("+15550000001");
    let rc = Request::RequestCode { account: a.clone() };
    assert!(matches!(c.request(&rc).await, Response::CodeSent { .. }));
    assert!(matches!(c.request(&rc).await, Response::CodeSent { .. }));
    match c.request(&rc).await {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            ..
        } => assert!(retry_after > 0 && retry_after <= 300, "{retry_after}"),
        other => panic!("{other:?}"),
    }

    // Five wrong codes, then even the right one is refused.
    let id = sealpost_session::IdentityKeyPair::generate(&mut rand::rng());
    let identity = id.public().to_wire();
    let signature = id
        .sign(&sealpost_wire::relay::register_signed_bytes(
            &c.exporter,
            &a,
            &identity,
        ))
        .to_bytes();
    let right = codes.last(&a);
    let mut wrong = right;
    wrong[0] = if wrong[0] == b'9' { b'0' } else { wrong[0] + 1 };
    let register = |code| Request::Register {
        account: a.clone(),
        code,
        identity,
        signature,
        reglock: None,
    };
    for _ in 0..5 {
        assert_eq!(
            err(&c.request(&register(wrong)).await),
            ErrorCode::CodeInvalid
        );
    }
    assert_eq!(
        err(&c.request(&register(right)).await),
        ErrorCode::CodeAttemptsExceeded
    );

    // Re-registration: the old device's connection is closed with code 1.
    let old = Device::register(&relay, &codes, "+15550000009").await;
    let old_conn = old.client.conn.clone();
    let new = Device::register(&relay, &codes, "+15550000009").await;
    assert_eq!(new.address.device.0, 2);
    match tokio::time::timeout(common::TIMEOUT, old_conn.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(1));
        }
        other => panic!("{other:?}"),
    }
    let _: DeviceAddress = new.address;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_limited_and_released() {
    let TestRelay {
        dir: _dir,
        codes: _,
        relay,
    } = TestRelay::start_with(|cfg| {
        cfg.limits.max_connections_per_ip = 3;
    })
    .await;
    let (addr, fp) = (relay.local_addr(), relay.cert_fingerprint());
    let alpn = || vec![sealpost_wire::relay::ALPN.to_vec()];
    let mut held = Vec::new();
    for _ in 0..3 {
        let (ep, conn) = common::connect_with(addr, fp, alpn()).await.unwrap();
        // Each held connection works.
        let r = common::request_on(&conn, &Request::Challenge).await;
        assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
        held.push((ep, conn));
    }
    // The fourth from the same address is refused, and refused again while all are held.
    for _ in 0..2 {
        let refused = common::connect_with(addr, fp, alpn()).await;
        assert!(
            refused.is_err(),
            "a connection over the per-address limit was accepted"
        );
    }
    // Closing one frees its slot.
    let (ep, conn) = held.pop().unwrap();
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(c) = common::connect_with(addr, fp, alpn()).await {
            admitted = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_ep, conn) = admitted.expect("a slot is released when a connection closes");
    let r = common::request_on(&conn, &Request::Challenge).await;
    assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
    relay.shutdown().await;
}

/// spec/relay.md section 1: an unauthenticated connection may have 2 request streams open
/// at once, an authenticated one 4, and 32 once it has used all 4 at the same time (an idle
/// authenticated connection keeps 4). Whether a stream can be opened is checked without
/// waiting ([`now`]), after a barrier that every grant the relay made has reached the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_streams_are_limited_until_authenticated_and_busy() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let wait = Duration::from_secs(2);
    // Opens a stream (waiting for credit) and starts a request on it: a length prefix and
    // part of a 100-byte body, so the relay reserves the body and keeps the stream open.
    let start = |conn: quinn::Connection| async move {
        let (mut send, recv) = tokio::time::timeout(wait, conn.open_bi())
            .await
            .expect("stream credit")
            .unwrap();
        send.write_all(&[0, 0, 0, 100, 1]).await.unwrap();
        (send, recv)
    };
    // Waits until the relay has reserved `n` bytes of request bodies: it serves that many
    // 100-byte requests.
    let serving = |n: usize| {
        let relay = &relay;
        async move {
            let deadline = tokio::time::Instant::now() + common::TIMEOUT;
            while relay.buffered_request_bytes() != n {
                assert!(tokio::time::Instant::now() < deadline, "never {n} bytes");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };

    // Sequential requests before authentication (registration, guardians) never wait for
    // stream credit: the next stream's packet acknowledges the previous response, which
    // frees its stream, and the relay's grant precedes the next response.
    let anonymous = Client::for_relay(&relay).await;
    for round in 0..4 {
        let (mut send, mut recv) = now(anonymous.conn.open_bi())
            .unwrap_or_else(|| panic!("round {round}: a sequential request waits for credit"));
        send.write_all(&Request::Challenge.encode()).await.unwrap();
        send.finish().unwrap();
        let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
            .await
            .expect("answered")
            .unwrap();
        let r = Response::decode(&frame[4..]).unwrap();
        assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
    }
    drop(anonymous);

    // A fresh unauthenticated connection: 2 at once, not 3, even when both are in use.
    let anonymous = Client::for_relay(&relay).await;
    let mut open = vec![start(anonymous.conn.clone()).await];
    open.push(start(anonymous.conn.clone()).await);
    assert!(
        now(anonymous.conn.open_bi()).is_none(),
        "a third stream before authentication"
    );
    // Both are served (a busy authenticated connection would now get more). Barrier: the
    // answer to the first, which the relay writes after any grant it made on seeing both.
    serving(200).await;
    let (mut send, mut recv) = open.remove(0);
    send.write_all(&[0; 99]).await.unwrap();
    send.finish().unwrap();
    let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
        .await
        .expect("answered")
        .unwrap();
    assert!(matches!(
        Response::decode(&frame[4..]),
        Ok(Response::Error { .. })
    ));
    // At most the finished stream's credit may be back (if the client's acknowledgement of
    // the answer has made the round trip already); a raised allowance would show as more.
    let mut extra = Vec::new();
    while let Some(s) = now(anonymous.conn.open_bi()) {
        extra.push(s);
        assert!(extra.len() <= 1, "busy but unauthenticated: more than 2");
    }
    drop((open, extra));
    anonymous.close().await;

    let alice = Device::register(&relay, &codes, "+15550000001").await;
    // Authenticated, never more than one request at a time: 4 (each open waits for the
    // credit of the registration's streams, so every grant so far has arrived).
    let mut open = Vec::new();
    for _ in 0..4 {
        let s = tokio::time::timeout(wait, alice.client.conn.open_bi()).await;
        open.push(s.expect("stream credit").unwrap());
    }
    assert!(
        now(alice.client.conn.open_bi()).is_none(),
        "an idle authenticated connection keeps 4"
    );
    drop(open);
    // Four requests at once: the full allowance.
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(start(alice.client.conn.clone()).await);
    }
    let mut open = Vec::new();
    for _ in 0..28 {
        let s = tokio::time::timeout(wait, alice.client.conn.open_bi()).await;
        open.push(s.expect("full allowance once 4 are in use").unwrap());
    }
    drop((busy, open));
    relay.shutdown().await;
}

/// Without a code sender (no webhook, no `--dev-log-codes`, none set in-process) the relay
/// refuses to start, in-process and as the binary, and says why; with the development flag
/// it starts.
#[tokio::test]
async fn refuses_to_start_without_a_code_sender() {
    let dir = tempfile::tempdir().unwrap();
    let bare = sealpost_relay::RelayConfig::for_tests(dir.path());
    let e = Relay::start(bare.clone()).await.unwrap_err();
    assert!(
        matches!(
            &e,
            sealpost_relay::RelayError::Config(sealpost_relay::ConfigError::NoCodeSender)
        ),
        "{e:#}"
    );
    let relay = Relay::start(sealpost_relay::RelayConfig {
        dev_log_codes: true,
        ..bare
    })
    .await
    .unwrap();
    relay.shutdown().await;

    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sealpost-relay"))
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir)
                .env_remove("SEALPOST_RELAY_DEV_LOG_CODES")
                .env_remove("SEALPOST_RELAY_WEBHOOK_URL")
                .env_remove("SEALPOST_RELAY_CONFIG")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--dev-log-codes"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    // With the flag the binary starts (and prints its address).
    let process = common::RelayProcess::start(dir.path()).await;
    assert_ne!(process.addr.port(), 0);
}

/// Quotas against SMS pumping over QUIC: a source address that has used its hourly code
/// requests gets `RateLimited` with the seconds until the next one, and a restart of the
/// relay on the same data directory does not give it a fresh allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_quotas_answer_retry_after_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut cfg = config(dir.path(), &codes);
    cfg.limits.code_requests_per_source_per_hour = 2;
    let relay = Relay::start(cfg.clone()).await.unwrap();
    let c = Client::for_relay(&relay).await;
    for n in 0..2 {
        let rc = Request::RequestCode {
            account: acct(&format!("+1555000000{n}")),
        };
        assert!(matches!(c.request(&rc).await, Response::CodeSent { .. }));
    }
    // A third number from the same address: refused, with about half an hour to wait.
    let third = Request::RequestCode {
        account: acct("+15550000003"),
    };
    let retry = |r: Response| match r {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            detail,
        } => {
            assert_eq!(detail, "rate limited (code_source)");
            retry_after
        }
        other => panic!("{other:?}"),
    };
    let before = retry(c.request(&third).await);
    assert!((1700..=1800).contains(&before), "{before}");
    c.close().await;
    relay.shutdown().await;

    let relay = Relay::start(cfg).await.unwrap();
    let c = Client::for_relay(&relay).await;
    let after = retry(c.request(&third).await);
    assert!(
        after <= before && after >= before - 60,
        "{before} then {after}"
    );
    assert_eq!(codes.count(), 2, "no code for refused requests");
    c.close().await;
    relay.shutdown().await;
}
