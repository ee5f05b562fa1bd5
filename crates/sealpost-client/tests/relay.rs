//! Integration tests against the real relay (`sealpost_relay::Relay`) over QUIC on
//! 127.0.0.1, with SQLite stores in temporary directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    Client, ClientError, ClientEvent, DeviceId, Direction, ErrorCode, MessageBody, MessageStatus,
    SpkiPin,
};
use sealpost_relay::Limits;
use std::sync::Arc;
use std::time::Duration;

const ALICE: &str = "+15550001001";
const BOB: &str = "+15550001002";

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_talk_and_safety_numbers_match() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &dir.path().join("relay"),
        any_port(),
        &codes,
        Limits::default(),
    )
    .await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    assert_eq!(alice.address().device, DeviceId(1));
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);

    let id = alice
        .send_text(&acct(BOB), "Where is my order #1234?")
        .await
        .unwrap();
    b_seen
        .wait("bob's first message", 30, |c| c.count() == 1)
        .await;
    let first = b_seen.messages.lock().unwrap()[0].clone();
    assert_eq!(first.text, "Where is my order #1234?");
    assert_eq!(first.id, id);
    assert_eq!(first.from, alice.address().clone());
    a_seen
        .wait("delivery ack", 30, |c| c.delivered() == 1)
        .await;

    bob.send_bytes(&acct(ALICE), b"\x01ships today")
        .await
        .unwrap();
    bob.send_text(&acct(ALICE), "It ships today.")
        .await
        .unwrap();
    a_seen.wait("alice's replies", 30, |c| c.count() == 2).await;
    assert_eq!(a_seen.texts()[1], "It ships today.");
    {
        let events = a_seen.events.lock().unwrap();
        let bytes = events.iter().find_map(|e| match e {
            ClientEvent::Message { body, identity, .. } => Some((body.clone(), *identity)),
            _ => None,
        });
        let (body, identity) = bytes.unwrap();
        assert_eq!(body, MessageBody::Bytes(b"\x01ships today".to_vec()));
        assert_eq!(identity, bob.identity());
    }

    // Safety numbers agree on both sides and cover the right identities.
    let sa = alice.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    let sb = bob.safety_number(&acct(ALICE), DeviceId(1)).await.unwrap();
    assert_eq!(sa.digits(), sb.digits());
    assert_eq!(sa.digits().len(), 60);
    sa.verify_scanned(&sb.qr_payload()).unwrap();
    assert!(matches!(
        alice.safety_number(&acct(BOB), DeviceId(9)).await,
        Err(ClientError::UnknownContact)
    ));

    // Device list and history.
    let devices = alice.devices(&acct(BOB)).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].identity, bob.identity());
    assert_eq!(devices[0].known, Some(true));
    let h = alice.history(&acct(BOB), 10).await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].direction, Direction::Outgoing);
    assert!(matches!(h[0].status, MessageStatus::Delivered { .. }));
    assert_eq!(h[2].body.as_text(), Some("It ships today."));
    assert_eq!(alice.outbox_len().await.unwrap(), 0);

    // No safety-number warnings in a plain first contact.
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::SafetyNumberChanged { .. })),
        0
    );
    // Messages to an unknown account fail for good and leave the outbox.
    let bad = alice
        .send_text(&acct("+15550009999"), "hello?")
        .await
        .unwrap();
    a_seen
        .wait("send failure", 30, |c| {
            c.count_events(
                |e| matches!(e, ClientEvent::SendFailed { message_id, .. } if *message_id == bad),
            ) == 1
        })
        .await;
    assert_eq!(alice.outbox_len().await.unwrap(), 0);

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(dir.path(), any_port(), &codes, Limits::default()).await;
    let mut pin = *relay.spki_pin().as_bytes();
    pin[0] ^= 0x80;
    let config = client_config(relay.local_addr(), SpkiPin::from_bytes(pin));
    let err = Client::request_code(&config, &acct(ALICE))
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::PinMismatch { pinned: 1 });
    assert!(!err.is_transient());
    assert!(
        codes.0.lock().unwrap().is_empty(),
        "no request reached the relay"
    );
    // The right pin works.
    let config = client_config(relay.local_addr(), relay.spki_pin());
    Client::request_code(&config, &acct(ALICE)).await.unwrap();
    // A wrong code is the relay's typed error.
    let err = Client::register(
        open_store(dir.path(), "a"),
        config.clone(),
        acct(ALICE),
        "000000",
    )
    .await
    .err();
    let code = codes.take(ALICE);
    if code != "000000" {
        assert_eq!(
            err.and_then(|e| e.relay_code()),
            Some(ErrorCode::CodeInvalid)
        );
    }
    assert!(matches!(
        Client::register(open_store(dir.path(), "b"), config, acct(ALICE), "12a456").await,
        Err(ClientError::InvalidCode)
    ));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_queued_messages_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let a_seen = Collector::default();
    a_seen.spawn(a_rx);
    drop(b_rx);
    bob.shutdown().await;

    for i in 0..50 {
        alice.send_text(&acct(BOB), &format!("q{i}")).await.unwrap();
    }
    a_seen
        .wait("all accepted", 60, |c| c.delivered() == 50)
        .await;

    // Bob comes back: everything, once, in order.
    let seen = Collector::default();
    for round in 0..3 {
        let (bob, rx) = Client::open(open_store(dir.path(), "bob"), config.clone())
            .await
            .unwrap();
        let task = seen.spawn(rx);
        if round == 0 {
            seen.wait("queued messages", 60, |c| c.count() == 50).await;
        } else {
            // Reopening again delivers nothing new. A marker sent now is queued behind
            // anything the relay would deliver again, and the relay delivers in queue
            // order: once the marker is in, nothing else came before it.
            seen.wait("reconnect", 30, |c| {
                c.count_events(|e| matches!(e, ClientEvent::Connected)) == round + 1
            })
            .await;
            alice
                .send_text(&acct(BOB), &format!("marker {round}"))
                .await
                .unwrap();
            seen.wait("the marker", 30, |c| {
                c.texts().iter().any(|t| *t == format!("marker {round}"))
            })
            .await;
        }
        bob.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let mut expected: Vec<String> = (0..50).map(|i| format!("q{i}")).collect();
    expected.extend(["marker 1".to_owned(), "marker 2".to_owned()]);
    assert_eq!(seen.texts(), expected);
    let bob_store = open_store(dir.path(), "bob");
    assert_eq!(bob_store.history(&acct(ALICE), 100).unwrap().len(), 52);

    alice.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_client_restart_and_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    // A tight send rate: the client must wait out `RateLimited` and lose nothing.
    let limits = Limits {
        sends_per_second: 5,
        send_burst: 5,
        ..bulk_limits()
    };
    let relay = start_relay(&relay_dir, any_port(), &codes, limits.clone()).await;
    let addr = relay.local_addr();
    let config = client_config(addr, relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let b_seen = Collector::default();
    b_seen.spawn(b_rx);
    drop(a_rx);

    // The relay goes away; Alice queues messages and quits with them unsent.
    relay.shutdown().await;
    for i in 0..12 {
        alice.send_text(&acct(BOB), &format!("o{i}")).await.unwrap();
    }
    alice.shutdown().await;
    assert_eq!(open_store(dir.path(), "alice").outbox_len().unwrap(), 12);

    // Relay back on the same address; Alice restarts and her outbox drains.
    let relay = start_relay(&relay_dir, addr, &codes, limits).await;
    let (alice, a_rx) = Client::open(open_store(dir.path(), "alice"), config.clone())
        .await
        .unwrap();
    let a_seen = Collector::default();
    a_seen.spawn(a_rx);
    a_seen
        .wait("outbox drained", 60, |c| c.delivered() == 12)
        .await;
    b_seen.wait("bob receives", 60, |c| c.count() == 12).await;
    let expected: Vec<String> = (0..12).map(|i| format!("o{i}")).collect();
    assert_eq!(b_seen.texts(), expected);
    assert_eq!(alice.outbox_len().await.unwrap(), 0);

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// The headline test: 1,000 messages each way while the receiver is offline for part of
/// the time and the relay restarts in the middle; every message reaches the app exactly
/// once, in order per sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages_each_way_through_offline_and_relay_restart() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&relay_dir, any_port(), &codes, bulk_limits()).await;
    let addr = relay.local_addr();
    let config = client_config(addr, relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    let b_task = b_seen.spawn(b_rx);
    let a_text = |i: usize| format!("from alice #{i}");
    let b_text = |i: usize| format!("from bob #{i}");

    // Phase 1: both online, both sending.
    for i in 0..300 {
        alice.send_text(&acct(BOB), &a_text(i)).await.unwrap();
        bob.send_text(&acct(ALICE), &b_text(i)).await.unwrap();
    }
    b_seen
        .wait("phase 1 at bob", 120, |c| c.count() >= 150)
        .await;

    // Phase 2: Bob goes offline mid-stream; Alice keeps sending.
    bob.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), b_task).await;
    for i in 300..600 {
        alice.send_text(&acct(BOB), &a_text(i)).await.unwrap();
    }
    a_seen
        .wait("alice's messages accepted", 120, |c| c.delivered() >= 450)
        .await;

    // Phase 3: the relay restarts (same data directory, port and certificate) while Alice
    // is sending; what she sends meanwhile waits in her outbox.
    relay.shutdown().await;
    for i in 600..800 {
        alice.send_text(&acct(BOB), &a_text(i)).await.unwrap();
    }
    let relay = start_relay(&relay_dir, addr, &codes, bulk_limits()).await;

    // Phase 4: Bob comes back and both finish.
    let (bob, b_rx) = Client::open(open_store(dir.path(), "bob"), config.clone())
        .await
        .unwrap();
    b_seen.spawn(b_rx);
    for i in 300..N {
        bob.send_text(&acct(ALICE), &b_text(i)).await.unwrap();
    }
    for i in 800..N {
        alice.send_text(&acct(BOB), &a_text(i)).await.unwrap();
    }
    b_seen
        .wait("all of alice's messages", 300, |c| c.count() >= N)
        .await;
    a_seen
        .wait("all of bob's messages", 300, |c| c.count() >= N)
        .await;
    // A stray duplicate would be delivered before a marker sent now (each relay queue and
    // each outbox is in order), so once the markers are in, exactly-once can be checked.
    alice.send_text(&acct(BOB), "alice's marker").await.unwrap();
    bob.send_text(&acct(ALICE), "bob's marker").await.unwrap();
    let has = |c: &Collector, marker: &str| c.texts().iter().any(|t| t == marker);
    b_seen
        .wait("alice's marker", 60, |c| has(c, "alice's marker"))
        .await;
    a_seen
        .wait("bob's marker", 60, |c| has(c, "bob's marker"))
        .await;

    let mut expected_b: Vec<String> = (0..N).map(a_text).collect();
    let mut expected_a: Vec<String> = (0..N).map(b_text).collect();
    expected_b.push("alice's marker".into());
    expected_a.push("bob's marker".into());
    assert_eq!(b_seen.texts(), expected_b, "bob: exactly once, in order");
    assert_eq!(a_seen.texts(), expected_a, "alice: exactly once, in order");
    a_seen
        .wait("alice's outbox empty", 60, |c| c.delivered() == N + 1)
        .await;
    // Alice really lived through the relay restart on one client instance.
    assert!(a_seen.count_events(|e| matches!(e, ClientEvent::Connected)) >= 2);
    assert!(a_seen.count_events(|e| matches!(e, ClientEvent::Disconnected)) >= 1);
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::Undecryptable { .. })),
        0
    );
    assert_eq!(alice.outbox_len().await.unwrap(), 0);
    assert_eq!(bob.outbox_len().await.unwrap(), 0);

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// Bob moves his number to a new phone: Alice's next message hits `MismatchedDevices`,
/// she refreshes, warns about the new safety number and reaches the new device; the old
/// device learns that it was deregistered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistration_changes_the_safety_number() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    alice.send_text(&acct(BOB), "before").await.unwrap();
    b_seen.wait("first message", 30, |c| c.count() == 1).await;
    let old_number = alice.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();

    // The new phone registers the same number (device 2; device 1 is removed, and its
    // connection is closed: the old phone learns at once that it is deregistered).
    let (new_bob, nb_rx) = register(
        &config,
        &codes,
        BOB,
        open_store(dir.path(), "bob-new-phone"),
    )
    .await;
    assert_eq!(new_bob.address().device, DeviceId(2));
    b_seen
        .wait("deregistration of the connected old phone", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::Deregistered)) == 1
        })
        .await;
    bob.shutdown().await;
    let nb_seen = Collector::default();
    nb_seen.spawn(nb_rx);

    alice.send_text(&acct(BOB), "after").await.unwrap();
    nb_seen
        .wait("message on the new phone", 30, |c| c.count() == 1)
        .await;
    assert_eq!(nb_seen.texts(), vec!["after".to_owned()]);
    a_seen
        .wait("safety number warning", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::SafetyNumberChanged { device, .. } if *device == DeviceId(2))
            }) == 1
        })
        .await;
    let new_number = alice.safety_number(&acct(BOB), DeviceId(2)).await.unwrap();
    assert_ne!(new_number.digits(), old_number.digits());
    let theirs = new_bob
        .safety_number(&acct(ALICE), DeviceId(1))
        .await
        .unwrap();
    assert_eq!(new_number.digits(), theirs.digits());
    let devices = alice.devices(&acct(BOB)).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].address.device, DeviceId(2));
    assert_eq!(devices[0].known, Some(true));

    // Reopened later, the old phone is still told it is no longer registered.
    let (old_bob, ob_rx) = Client::open(open_store(dir.path(), "bob"), config.clone())
        .await
        .unwrap();
    let ob_seen = Collector::default();
    ob_seen.spawn(ob_rx);
    ob_seen
        .wait("deregistration", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::Deregistered)) == 1
        })
        .await;
    old_bob.shutdown().await;

    alice.shutdown().await;
    new_bob.shutdown().await;
    relay.shutdown().await;
}

/// Damages every record of a table in a client's SQLite file (flips a ciphertext byte), as
/// a disk fault or a tampering would.
fn corrupt_table(db: &std::path::Path, table: sealpost_client::store::Table) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
        .prepare("SELECT key, value FROM records WHERE tbl = ?1")
        .unwrap()
        .query_map([table.id()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (key, mut value) in rows.clone() {
        value[20] ^= 0x40;
        conn.execute(
            "UPDATE records SET value = ?1 WHERE tbl = ?2 AND key = ?3",
            rusqlite::params![value, table.id(), key],
        )
        .unwrap();
    }
    rows.len()
}

/// One recipient whose stored state is broken (its contact record does not authenticate)
/// and one unreadable outbox record, queued before and between messages to a healthy
/// recipient: the healthy messages all arrive in order, the poisoned ones end with
/// `SendFailed` and the reason, the unreadable record is dropped and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_recipient_does_not_block_the_others() {
    use sealpost_client::StoreError;
    use sealpost_client::store::Table;
    const CAROL: &str = "+15550001003";
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&relay_dir, any_port(), &codes, bulk_limits()).await;
    let addr = relay.local_addr();
    let config = client_config(addr, relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (carol, _c_rx) = register(&config, &codes, CAROL, open_store(dir.path(), "carol")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    carol.shutdown().await;

    // Alice knows Carol; then Carol's contact record on Alice's disk is damaged.
    alice.send_text(&acct(CAROL), "hi carol").await.unwrap();
    a_seen
        .wait("first delivery", 30, |c| c.delivered() == 1)
        .await;
    let alice_db = dir.path().join("alice.db");
    assert_eq!(corrupt_table(&alice_db, Table::Contacts), 1);

    // Offline, Alice queues a message whose outbox record is then damaged, and more.
    relay.shutdown().await;
    alice.send_text(&acct(BOB), "lost on disk").await.unwrap();
    assert_eq!(corrupt_table(&alice_db, Table::Outbox), 1);
    let c1 = alice.send_text(&acct(CAROL), "carol 1").await.unwrap();
    alice.send_text(&acct(BOB), "bob 1").await.unwrap();
    let c2 = alice.send_text(&acct(CAROL), "carol 2").await.unwrap();
    alice.send_text(&acct(BOB), "bob 2").await.unwrap();
    let relay = start_relay(&relay_dir, addr, &codes, bulk_limits()).await;

    b_seen.wait("bob's messages", 60, |c| c.count() == 2).await;
    assert_eq!(b_seen.texts(), ["bob 1", "bob 2"]);
    let failed = |c: &Collector| {
        c.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ClientEvent::SendFailed { message_id, error } => Some((*message_id, error.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    a_seen
        .wait("carol's messages given up", 60, |c| failed(c).len() == 2)
        .await;
    let reason = ClientError::Store(StoreError::Authentication { table: "contacts" });
    assert_eq!(failed(&a_seen), [(c1, reason.clone()), (c2, reason)]);
    assert!(reason_is_permanent());
    a_seen
        .wait("the unreadable entry reported", 30, |c| {
            c.count_events(|e| {
                *e == ClientEvent::UnreadableOutboxEntry {
                    error: StoreError::Authentication { table: "outbox" },
                }
            }) == 1
        })
        .await;
    a_seen.wait("deliveries", 30, |c| c.delivered() == 3).await;
    assert_eq!(alice.outbox_len().await.unwrap(), 0);
    let to_carol = alice.history(&acct(CAROL), 10).await.unwrap();
    assert_eq!(to_carol.len(), 3);
    assert!(matches!(
        to_carol[0].status,
        MessageStatus::Delivered { .. }
    ));
    assert!(matches!(to_carol[1].status, MessageStatus::Failed { .. }));
    assert!(matches!(to_carol[2].status, MessageStatus::Failed { .. }));

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

fn reason_is_permanent() -> bool {
    use sealpost_client::StoreError;
    let table = "contacts";
    ClientError::Store(StoreError::Authentication { table }).is_permanent()
        && !ClientError::Store(StoreError::Database(
            sealpost_client::DatabaseErrorKind::Io.into(),
        ))
        .is_permanent()
        && !ClientError::Timeout.is_permanent()
}

/// A verified contact re-registers: Alice's app gets `VerifiedIdentityChanged` (not the
/// plain warning), her message stays queued while later messages to others go out, and
/// after `approve_identity` it is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_contacts_new_identity_holds_sending_until_approved() {
    use sealpost_client::Verification;
    const CAROL: &str = "+15550001003";
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (carol, c_rx) = register(&config, &codes, CAROL, open_store(dir.path(), "carol")).await;
    let (a_seen, b_seen, c_seen) = (
        Collector::default(),
        Collector::default(),
        Collector::default(),
    );
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    c_seen.spawn(c_rx);
    alice.send_text(&acct(BOB), "before").await.unwrap();
    b_seen.wait("first message", 30, |c| c.count() == 1).await;

    // Alice compares the safety number with Bob and marks him verified.
    let number = alice.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    assert_eq!(
        alice
            .mark_verified(&acct(BOB), DeviceId(1), &"0".repeat(60))
            .await,
        Err(ClientError::SafetyNumberMismatch)
    );
    assert_eq!(
        alice.verification(&acct(BOB), DeviceId(1)).await,
        Ok(Verification::Unverified)
    );
    alice
        .mark_verified(&acct(BOB), DeviceId(1), &number.digits())
        .await
        .unwrap();
    assert_eq!(
        alice.verification(&acct(BOB), DeviceId(1)).await,
        Ok(Verification::Verified)
    );

    // Bob's number is registered on a new phone (a new identity).
    let (new_bob, nb_rx) = register(
        &config,
        &codes,
        BOB,
        open_store(dir.path(), "bob-new-phone"),
    )
    .await;
    bob.shutdown().await;
    let nb_seen = Collector::default();
    nb_seen.spawn(nb_rx);

    let held = alice.send_text(&acct(BOB), "held").await.unwrap();
    let later = alice.send_text(&acct(CAROL), "to carol").await.unwrap();
    a_seen
        .wait("the verified identity change", 30, |c| {
            c.count_events(|e| {
                *e == ClientEvent::VerifiedIdentityChanged {
                    account: acct(BOB),
                    device: DeviceId(2),
                }
            }) == 1
        })
        .await;
    c_seen.wait("carol's message", 30, |c| c.count() == 1).await;
    // Sends go in queue order: the later message to Carol was accepted, the held one was
    // not (it would have been first), and it is still queued.
    a_seen
        .wait("carol's delivery", 30, |c| {
            c.count_events(
                |e| matches!(e, ClientEvent::Delivered { message_id, .. } if *message_id == later),
            ) == 1
        })
        .await;
    assert_eq!(
        a_seen.count_events(
            |e| matches!(e, ClientEvent::Delivered { message_id, .. } if *message_id == held)
        ),
        0
    );
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::SafetyNumberChanged { .. })),
        0
    );
    assert_eq!(alice.outbox_len().await.unwrap(), 1);
    assert_eq!(
        alice.verification(&acct(BOB), DeviceId(2)).await,
        Ok(Verification::ChangedSinceVerified)
    );

    // Approving sends it, once.
    assert_eq!(alice.approve_identity(&acct(BOB)).await, Ok(1));
    nb_seen
        .wait("the held message", 30, |c| c.count() == 1)
        .await;
    assert_eq!(nb_seen.texts(), ["held"]);
    a_seen
        .wait("its delivery", 30, |c| {
            c.count_events(
                |e| matches!(e, ClientEvent::Delivered { message_id, .. } if *message_id == held),
            ) == 1
        })
        .await;
    assert_eq!(alice.outbox_len().await.unwrap(), 0);
    assert_eq!(
        alice.verification(&acct(BOB), DeviceId(2)).await,
        Ok(Verification::Unverified)
    );

    alice.shutdown().await;
    new_bob.shutdown().await;
    carol.shutdown().await;
    relay.shutdown().await;
}
