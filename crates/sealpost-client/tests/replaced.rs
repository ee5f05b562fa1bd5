//! Two copies of one device's store (spec/relay.md section 3.4): when the second copy
//! authenticates, the relay closes the first copy's connection with application code 3. The
//! replaced client tells the app and does not reconnect, so the two copies do not keep
//! replacing each other; the second copy goes on receiving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::ClientEvent;
use std::sync::Arc;

const ALICE: &str = "+15550008001";
const BOB: &str = "+15550008002";

fn replaced(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::ReplacedByAnotherConnection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_connection_is_reported_and_not_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &dir.path().join("relay"),
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        bulk_limits(),
    )
    .await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let first_home = dir.path().join("first");
    let second_home = dir.path().join("second");
    let bob_home = dir.path().join("bob");
    for d in [&first_home, &bob_home] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (alice, rx) = register(&config, &codes, ALICE, open_store(&first_home, "alice")).await;
    drop(rx);
    alice.shutdown().await;
    copy_dir(&first_home, &second_home);
    let (bob, rx) = register(&config, &codes, BOB, open_store(&bob_home, "bob")).await;
    let bob_seen = Collector::default();
    bob_seen.spawn(rx);

    let (_first, first_seen) = open_connected(&first_home, "alice", &config).await;
    let (_second, second_seen) = open_connected(&second_home, "alice", &config).await;
    first_seen
        .wait("the first copy is replaced", 30, |c| {
            c.count_events(replaced) == 1
        })
        .await;

    // Two messages reach the second copy, one after the other; had the first copy come back
    // in between, the relay would have replaced the second copy's connection.
    for (n, text) in ["one", "two"].into_iter().enumerate() {
        bob.send_text(&acct(ALICE), text).await.unwrap();
        second_seen
            .wait(text, 30, |c| c.texts().len() == n + 1)
            .await;
    }
    assert_eq!(second_seen.texts(), ["one", "two"]);
    assert_eq!(second_seen.count_events(replaced), 0);
    assert_eq!(
        first_seen.count_events(|e| matches!(e, ClientEvent::Connected)),
        1,
        "the replaced copy did not connect again"
    );
    assert!(first_seen.texts().is_empty());
}
