//! A client store restored from an older copy of itself (spec/client-store.md section 9),
//! against the real relay over QUIC on 127.0.0.1 with SQLite stores and the relay's SQLite
//! database: the restored copy detects the rollback at its first authentication, never
//! encrypts under a (ratchet key, counter) its live copy already used, and the conversation
//! continues with a new session on both sides.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{Client, ClientEvent, DeviceAddress};
use sealpost_session::SessionMessage;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

const ALICE: &str = "+15550007001";
const BOB: &str = "+15550007002";

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `(ratchet key, message number)` of every envelope the relay holds from `sender`, in
/// acceptance order, read from the relay's own database (the recipient is offline, so
/// nothing has been acknowledged and deleted yet).
fn carried(relay_dir: &Path, sender: &DeviceAddress) -> Vec<([u8; 32], u32)> {
    let db = rusqlite::Connection::open_with_flags(
        relay_dir.join("relay.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare(
            "SELECT envelope FROM envelopes WHERE sender_account = ?1 AND sender_device = ?2
             ORDER BY server_id",
        )
        .unwrap();
    let rows = stmt
        .query_map(
            rusqlite::params![sender.account.as_str(), sender.device.0],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .unwrap();
    rows.map(
        |envelope| match SessionMessage::decode(&envelope.unwrap()).unwrap() {
            SessionMessage::Ratchet(m) => (m.ratchet_key, m.message_number),
            SessionMessage::PreKey(p) => (p.message.ratchet_key, p.message.message_number),
        },
    )
    .collect()
}

/// Sends `texts` in order and waits until the relay has accepted all of them.
async fn send_all(client: &Client, seen: &Collector, texts: &[&str]) {
    let before = seen.delivered();
    for t in texts {
        client.send_text(&acct(BOB), t).await.unwrap();
    }
    seen.wait("deliveries", 30, |c| c.delivered() == before + texts.len())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_store_never_reuses_a_message_key_and_the_conversation_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&relay_dir, any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let alice_home = dir.path().join("alice");
    let bob_home = dir.path().join("bob");
    std::fs::create_dir_all(&alice_home).unwrap();
    std::fs::create_dir_all(&bob_home).unwrap();
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(&bob_home, "bob")).await;
    let bob_address = bob.address().clone();
    drop(b_rx);
    // Bob is offline whenever Alice sends, so that every envelope from Alice's device is
    // still in the relay's database when it is read.
    bob.shutdown().await;
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(&alice_home, "alice")).await;
    let alice_address = alice.address().clone();
    let a_seen = Collector::default();
    a_seen.spawn(a_rx);
    let mut pairs = Vec::new();

    // 1. A normal exchange.
    send_all(&alice, &a_seen, &["a1", "a2"]).await;
    pairs.extend(carried(&relay_dir, &alice_address));
    assert_eq!(pairs.len(), 2);
    let (bob, b_seen) = open_connected(&bob_home, "bob", &config).await;
    b_seen.wait("a1, a2", 30, |c| c.count() == 2).await;
    bob.send_text(&acct(ALICE), "b1").await.unwrap();
    a_seen.wait("b1", 30, |c| c.texts() == ["b1"]).await;
    // First contact is not a reset.
    for seen in [&a_seen, &b_seen] {
        assert_eq!(
            seen.count_events(|e| matches!(e, ClientEvent::SessionReset { .. })),
            0
        );
    }
    bob.shutdown().await;
    alice.shutdown().await;

    // 2. Back up Alice's store directory; the live copy sends on.
    let backup = dir.path().join("alice-backup");
    copy_dir(&alice_home, &backup);
    let (alice, a_seen) = open_connected(&alice_home, "alice", &config).await;
    send_all(&alice, &a_seen, &["live1", "live2", "live3"]).await;
    pairs = {
        let mut all = pairs;
        all.extend(carried(&relay_dir, &alice_address));
        all
    };
    assert_eq!(pairs.len(), 5);
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::StoreRolledBack { .. })),
        0,
        "the live copy is not rolled back"
    );
    alice.shutdown().await;

    // 3. Put the old copy back and send again.
    std::fs::remove_dir_all(&alice_home).unwrap();
    copy_dir(&backup, &alice_home);
    let (alice, a_seen) = open_connected(&alice_home, "alice", &config).await;
    {
        let events = a_seen.events.lock().unwrap();
        let rolled = events
            .iter()
            .position(|e| matches!(e, ClientEvent::StoreRolledBack { .. }));
        let connected = events
            .iter()
            .position(|e| matches!(e, ClientEvent::Connected));
        assert!(rolled < connected, "detected before anything is sent");
        assert_eq!(
            rolled.map(|i| events[i].clone()),
            Some(ClientEvent::StoreRolledBack {
                local_sender_seq: 2,
                relay_sender_seq: 5,
            })
        );
    }
    send_all(&alice, &a_seen, &["restored1", "restored2", "restored3"]).await;
    let live_and_restored = carried(&relay_dir, &alice_address);
    assert_eq!(live_and_restored.len(), 6);
    pairs.extend(live_and_restored.into_iter().skip(3));
    let distinct: HashSet<_> = pairs.iter().collect();
    assert_eq!(
        distinct.len(),
        pairs.len(),
        "an envelope reused a (ratchet key, counter) pair: {pairs:?}"
    );

    // 4. Bob comes back: every message once, in order, and a reset instead of a warning.
    let (bob, b_seen) = open_connected(&bob_home, "bob", &config).await;
    b_seen
        .wait("everything alice sent", 30, |c| c.count() >= 6)
        .await;
    bob.send_text(&acct(ALICE), "b2").await.unwrap();
    a_seen.wait("b2", 30, |c| c.texts() == ["b2"]).await;
    // The last message is a barrier: the relay delivers one sender's envelopes in order,
    // so any duplicate of an earlier one would have been processed before it.
    send_all(&alice, &a_seen, &["restored4"]).await;
    b_seen
        .wait("restored4", 30, |c| {
            c.texts().last().map(String::as_str) == Some("restored4")
        })
        .await;
    assert_eq!(
        b_seen.texts(),
        [
            "live1",
            "live2",
            "live3",
            "restored1",
            "restored2",
            "restored3",
            "restored4"
        ]
    );
    assert_eq!(
        b_seen.count_events(
            |e| matches!(e, ClientEvent::SessionReset { peer } if *peer == alice_address)
        ),
        1
    );
    for seen in [&a_seen, &b_seen] {
        assert_eq!(
            seen.count_events(|e| matches!(
                e,
                ClientEvent::SafetyNumberChanged { .. } | ClientEvent::Undecryptable { .. }
            )),
            0
        );
    }
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::StoreRolledBack { .. })),
        1
    );
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::SessionReset { .. })),
        0,
        "Alice started the new session"
    );
    assert!(
        b_seen
            .messages
            .lock()
            .unwrap()
            .iter()
            .all(|m| m.from == alice_address)
    );
    assert_eq!(bob.address(), &bob_address);
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}
