//! The front door as an app sees it, over real QUIC on 127.0.0.1 against the in-process
//! relay: the connection state (connected, a pin mismatch, an unreachable relay), a slow
//! event reader, and shutting a shared client down from one of its clones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    Backoff, Client, ClientError, ClientEvent, ConnectFailure, ConnectionState, Direction, SpkiPin,
    StopReason,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const ALICE: &str = "+15550009001";
const BOB: &str = "+15550009002";

/// A port on 127.0.0.1 where nothing listens (the socket is closed again).
fn dead_port() -> std::net::SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_reports_connected_then_a_pin_mismatch() {
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
    let (alice, _rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let mut state = alice.connection_state();
    let connected = state.wait_for(|s| s.is_connected()).await.unwrap().clone();
    assert_eq!(
        connected,
        ConnectionState::Connected {
            relay: relay.local_addr()
        }
    );
    alice.shutdown().await;
    assert_eq!(
        *state.borrow(),
        ConnectionState::Stopped(StopReason::ShutDown)
    );

    // The same device with a configuration that pins another key: the relay's certificate
    // does not match, attempt after attempt.
    let wrong = SpkiPin::of_spki_der(b"not the relay's public key");
    let config = client_config(relay.local_addr(), wrong);
    let (alice, _rx) = Client::open(open_store(dir.path(), "alice"), config)
        .await
        .unwrap();
    let mut state = alice.connection_state();
    for attempt in 1..=2u32 {
        let seen = state
            .wait_for(|s| matches!(s, ConnectionState::BackingOff { failures, .. } if *failures >= attempt))
            .await
            .unwrap()
            .clone();
        let ConnectionState::BackingOff { failure, .. } = seen else {
            unreachable!()
        };
        assert_eq!(failure, ConnectFailure::PinMismatch { pinned: 1 });
        assert!(!alice.is_connected());
    }
    alice.shutdown().await;
    relay.shutdown().await;
}

/// A relay that does not answer is reported as unreachable, and the client keeps to its
/// backoff: on tokio's paused clock, the next attempt starts exactly at the announced time,
/// not before.
#[tokio::test]
async fn an_unreachable_relay_is_reported_and_retried_at_the_announced_time() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &dir.path().join("relay"),
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        bulk_limits(),
    )
    .await;
    let pin = relay.spki_pin();
    let config = client_config(relay.local_addr(), pin);
    let (alice, _rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    alice.shutdown().await;
    relay.shutdown().await;

    // From here on, only virtual time passes: nothing answers at the dead port, so every
    // wait ends at a timer.
    tokio::time::pause();
    let config = client_config(dead_port(), pin)
        .with_connect_timeout(Duration::from_millis(500))
        .with_reconnect(Backoff {
            initial: Duration::from_secs(20),
            max: Duration::from_secs(20),
        });
    let opened_at = Instant::now();
    let (alice, _rx) = Client::open(open_store(dir.path(), "alice"), config)
        .await
        .unwrap();
    let mut state = alice.connection_state();
    let seen = state
        .wait_for(|s| matches!(s, ConnectionState::BackingOff { .. }))
        .await
        .unwrap()
        .clone();
    let failed_at = Instant::now();
    let ConnectionState::BackingOff {
        failure,
        failures,
        next_attempt,
    } = seen
    else {
        unreachable!()
    };
    assert_eq!(failure, ConnectFailure::Unreachable);
    assert_eq!(failures, 1);
    // The attempt gave up after the connect timeout.
    assert!(failed_at - opened_at >= Duration::from_millis(500));
    // Backoff with jitter: between half and all of 20 s.
    let wait = next_attempt - failed_at;
    assert!(
        wait >= Duration::from_secs(10) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    // The next change is the next attempt, and it comes no earlier than announced.
    state.changed().await.unwrap();
    assert_eq!(*state.borrow_and_update(), ConnectionState::Connecting);
    assert!(Instant::now() >= next_attempt);
    let seen = state
        .wait_for(|s| matches!(s, ConnectionState::BackingOff { .. }))
        .await
        .unwrap()
        .clone();
    assert!(matches!(
        seen,
        ConnectionState::BackingOff {
            failure: ConnectFailure::Unreachable,
            failures: 2,
            ..
        }
    ));
    alice.shutdown().await;
}

/// An app that never reads its events does not hold up the client: every message is
/// processed and stored, and the reader learns how many events it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_misses_events_not_messages() {
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
    let (alice, mut alice_events) = register(
        &config.clone().with_event_capacity(4),
        &codes,
        ALICE,
        open_store(dir.path(), "alice"),
    )
    .await;
    let (bob, bob_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let bob_seen = Collector::default();
    bob_seen.spawn(bob_rx);
    const SENT: usize = 20;
    for n in 0..SENT {
        bob.send_text(&acct(ALICE), &format!("message {n}"))
            .await
            .unwrap();
    }
    // Alice's app reads nothing meanwhile; her client processes everything anyway.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let received = alice
            .history(&acct(BOB), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.direction == Direction::Incoming)
            .count();
        if received == SENT {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {received} of {SENT} messages processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(ClientEvent::Lagged { missed }) = alice_events.recv().await else {
        panic!("the first event read is the lag signal")
    };
    // Each message's event follows its commit, so at least 19 message events were sent
    // (the 20th may still be on its way); 4 are kept.
    assert!(missed >= SENT as u64 - 1 - 4, "missed {missed}");
    // Then the kept events and the ones still coming, up to the newest message.
    let mut kept = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), alice_events.recv())
            .await
            .expect("the newest message's event arrives")
            .unwrap();
        assert!(!matches!(ev, ClientEvent::Lagged { .. }), "{ev:?}");
        let last = matches!(&ev, ClientEvent::Message { body, .. } if body.as_text() == Some("message 19"));
        kept.push(ev);
        if last {
            break;
        }
    }
    assert!(kept.len() <= 5, "{kept:?}");
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// Any clone shuts the client down for all of them, at once or twice, and the store is
/// released although the handles live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_shuts_the_shared_client_down() {
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
    let (alice, mut events) =
        register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let other = alice.clone();
    assert_eq!(other.address(), alice.address());
    let worker = tokio::spawn(async move {
        other.shutdown().await;
        other
    });
    alice.shutdown().await;
    let other = worker.await.unwrap();
    other.shutdown().await;
    for client in [&alice, &other] {
        assert_eq!(
            client.send_text(&acct(BOB), "late").await,
            Err(ClientError::ShutDown)
        );
        assert!(matches!(
            client.history(&acct(BOB), 10).await,
            Err(ClientError::ShutDown)
        ));
        assert!(!client.is_connected());
        assert_eq!(
            *client.connection_state().borrow(),
            ConnectionState::Stopped(StopReason::ShutDown)
        );
    }
    // The events queued before the end can still be read; then the receiver ends.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = events.recv().await {
            assert!(!matches!(ev, ClientEvent::Lagged { .. }), "{ev:?}");
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the event receiver ends after the shutdown"
    );
    // Nothing holds the store any more, although both handles live on: it opens again.
    let store = open_store(dir.path(), "alice");
    assert!(store.has_account().await.unwrap());
    drop((alice, other));
    relay.shutdown().await;
}
