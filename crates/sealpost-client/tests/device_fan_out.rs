//! Fan-out to linked devices over real QUIC (spec/devices.md section 8), with the relay's
//! `Send` requests counted: a stale device set costs exactly one refused `Send` and one
//! retry. The count comes from the relay's metrics, which are global to the process, so
//! this test is alone in its file (see `common::sends`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{ClientEvent, DeviceId, DeviceRole, PRIMARY_DEVICE_NAME, Verification};
use sealpost_wire::DeviceAddress;
use std::sync::Arc;

const ALICE: &str = "+15550002101";
const BOB: &str = "+15550002102";

/// A new account publishes list version 1; a second device links end to end; a message to
/// the account reaches each device exactly once; a sender whose cached list is stale is
/// corrected by the relay's `MismatchedDevices` with exactly one retry (two `Send`s); unlinking
/// closes the removed device's connection and senders stop encrypting to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_fan_out_stale_set_and_unlink() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay_with_metrics(&dir.path().join("relay"), &codes).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);

    // Registration published list version 1 with the one device as primary.
    assert_eq!(
        alice.own_devices().await.unwrap(),
        vec![info(1, PRIMARY_DEVICE_NAME, DeviceRole::Primary)]
    );

    // Bob pins Alice's first list.
    bob.send_text(&acct(ALICE), "hello").await.unwrap();
    a_seen.wait("hello", 30, |c| c.count() == 1).await;

    // Alice links a laptop.
    let (laptop, l_seen) = link(dir.path(), "alice-laptop", &config, &alice, "Laptop").await;
    assert_eq!(laptop.address().device, DeviceId(2));
    assert_eq!(
        alice.own_devices().await.unwrap(),
        vec![
            info(1, PRIMARY_DEVICE_NAME, DeviceRole::Primary),
            info(2, "Laptop", DeviceRole::Linked)
        ]
    );

    // The phone's history bundle for the laptop is a Send of its own: let it land before
    // Bob's Sends are counted.
    l_seen
        .wait("history bundle", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::HistoryImported { last: true, .. })) == 1
        })
        .await;
    // Bob's cached list names only the phone: the relay answers MismatchedDevices, Bob
    // fetches the list, accepts version 2 and retries exactly once.
    let before = sends(&relay);
    let id = bob.send_text(&acct(ALICE), "to both").await.unwrap();
    delivered(&b_seen, id).await;
    assert_eq!(sends(&relay) - before, 2, "one refused Send, one retry");
    a_seen.wait("phone copy", 30, |c| c.count() == 2).await;
    l_seen.wait("laptop copy", 30, |c| c.count() == 1).await;
    assert_eq!(l_seen.texts(), vec!["to both"]);
    assert_eq!(
        b_seen.count_events(
            |e| matches!(e, ClientEvent::DevicesChanged { account, added, removed, changed }
            if *account == acct(ALICE) && *added == vec![info(2, "Laptop", DeviceRole::Linked)]
                && removed.is_empty() && changed.is_empty())
        ),
        1
    );
    // No safety-number warning: the account key did not change.
    assert_eq!(
        b_seen.count_events(|e| matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. } | ClientEvent::VerifiedIdentityChanged { .. }
        )),
        0
    );

    // The laptop answers; Bob sees it from device 2.
    laptop
        .send_text(&acct(BOB), "from the laptop")
        .await
        .unwrap();
    b_seen.wait("laptop's reply", 30, |c| c.count() == 1).await;
    // ... and the laptop's sent copy to the phone is another Send: let it land too.
    a_seen
        .wait("sent copy", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { .. })) == 1
        })
        .await;
    assert_eq!(
        b_seen.messages.lock().unwrap()[0].from,
        DeviceAddress::new(acct(ALICE), DeviceId(2))
    );

    // Safety numbers are over account keys: the same from both of Alice's devices.
    let from_phone = alice.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    let from_laptop = laptop.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    let at_bob = bob.safety_number(&acct(ALICE), DeviceId(2)).await.unwrap();
    assert_eq!(from_phone.digits(), from_laptop.digits());
    assert_eq!(from_phone.digits(), at_bob.digits());
    bob.mark_verified(&acct(ALICE), DeviceId(1), &at_bob.digits())
        .await
        .unwrap();
    assert_eq!(
        bob.verification(&acct(ALICE), DeviceId(2)).await.unwrap(),
        Verification::Verified
    );

    // Unlinking: the laptop's connection is closed and it learns it was removed.
    alice.remove_device(DeviceId(2)).await.unwrap();
    l_seen
        .wait("laptop removed", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::Deregistered)) == 1
        })
        .await;
    assert_eq!(
        alice.own_devices().await.unwrap(),
        vec![info(1, PRIMARY_DEVICE_NAME, DeviceRole::Primary)]
    );
    // Bob's next message goes to the phone only: refused for the stale device set, the list
    // fetched again (the DevicesChanged event below), sent again.
    let before = sends(&relay);
    let id = bob.send_text(&acct(ALICE), "phone only").await.unwrap();
    delivered(&b_seen, id).await;
    assert_eq!(sends(&relay) - before, 2, "one refused Send, one retry");
    a_seen.wait("phone only", 30, |c| c.count() == 3).await;
    assert_eq!(
        b_seen.count_events(|e| matches!(e, ClientEvent::DevicesChanged { removed, .. }
            if *removed == vec![info(2, "Laptop", DeviceRole::Linked)])),
        1
    );
    // Verified stays verified: removing a device is not an identity change.
    assert_eq!(
        bob.verification(&acct(ALICE), DeviceId(1)).await.unwrap(),
        Verification::Verified
    );
    assert_eq!(l_seen.count(), 1);

    laptop.shutdown().await;
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}
