//! A relay that relabels the sender of a first message (issue 11, section 1), over the real
//! relay on 127.0.0.1 with real SQLite: Alice's first message to Bob is rewritten in the
//! relay's database to come from Mallory, whom Bob already knows. Bob's client must not show
//! Alice's text under Mallory's address, must not replace Mallory's stored identity with
//! Alice's, and must not raise a safety-number change; the envelope is reported as
//! undecryptable (spec/session.md section 4: both addresses are in the associated data).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{ClientEvent, DeviceId};
use std::sync::Arc;

const ALICE: &str = "+15550009001";
const BOB: &str = "+15550009002";
const MALLORY: &str = "+15550009003";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relabelled_first_message_is_never_attributed_to_another_sender() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &relay_dir,
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        bulk_limits(),
    )
    .await;
    let addr = relay.local_addr();
    let config = client_config(addr, relay.spki_pin());
    let home = |n: &str| {
        let d = dir.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (alice_home, bob_home, mallory_home) = (home("alice"), home("bob"), home("mallory"));
    let (alice, rx) = register(&config, &codes, ALICE, open_store(&alice_home, "alice")).await;
    let alice_seen = Collector::default();
    alice_seen.spawn(rx);
    let (mallory, rx) = register(
        &config,
        &codes,
        MALLORY,
        open_store(&mallory_home, "mallory"),
    )
    .await;
    drop(rx);
    let (bob, rx) = register(&config, &codes, BOB, open_store(&bob_home, "bob")).await;
    let bob_seen = Collector::default();
    bob_seen.spawn(rx);

    // Bob knows Mallory.
    mallory
        .send_text(&acct(BOB), "hi from mallory")
        .await
        .unwrap();
    bob_seen
        .wait("mallory's first", 30, |c| c.count() == 1)
        .await;
    let mallory_number = bob
        .safety_number(&acct(MALLORY), DeviceId(1))
        .await
        .unwrap();
    bob.shutdown().await;

    // Alice's first message to Bob waits at the relay while Bob is offline.
    alice.send_text(&acct(BOB), "pay 100 EUR").await.unwrap();
    alice_seen
        .wait("accepted", 30, |c| c.delivered() == 1)
        .await;
    relay.shutdown().await;

    // The relay rewrites the sender column of that envelope to Mallory's address.
    let db = rusqlite::Connection::open(relay_dir.join("relay.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE envelopes SET sender_account = ?1, sender_device = 1 WHERE sender_account = ?2",
            rusqlite::params![MALLORY, ALICE],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let relay = start_relay(&relay_dir, addr, &codes, bulk_limits()).await;

    let (bob, bob_seen) = open_connected(&bob_home, "bob", &config).await;
    // An ordering barrier: Mallory's next message is queued after the relabelled one, and a
    // device's mailbox is delivered in order, so once it is shown the relabelled envelope has
    // been processed.
    mallory.send_text(&acct(BOB), "barrier").await.unwrap();
    bob_seen.wait("barrier", 30, |c| c.count() == 1).await;

    let messages = bob_seen.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].text, "barrier");
    assert_eq!(messages[0].from.account, acct(MALLORY));
    assert_eq!(
        bob_seen.count_events(|e| matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. } | ClientEvent::VerifiedIdentityChanged { .. }
        )),
        0
    );
    assert_eq!(
        bob_seen.count_events(|e| matches!(
            e,
            ClientEvent::Undecryptable { from, .. } if from.account == acct(MALLORY)
        )),
        1,
        "the relabelled envelope is reported as undecryptable"
    );
    assert_eq!(
        bob.safety_number(&acct(MALLORY), DeviceId(1))
            .await
            .unwrap(),
        mallory_number,
        "Mallory's stored identity is unchanged"
    );
    relay.shutdown().await;
}
