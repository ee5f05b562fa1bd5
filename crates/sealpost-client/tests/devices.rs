//! Linked devices over real QUIC (spec/devices.md section 8): lists published by upgraded
//! accounts, losing the primary without the PIN, last-seen days, and a relay that adds a
//! device or serves an older list on its own (it is stopped and its SQLite
//! store written through the relay's store API, bypassing every check).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    Client, ClientError, ClientEvent, ConnectionState, DeviceId, DeviceListRefusal, DeviceRole,
    ErrorCode, PRIMARY_DEVICE_NAME, Verification, hazmat,
};
use sealpost_relay::store::NewDeviceList;
use sealpost_relay::{Limits, RelayHandle, SqliteStore, Store as _};
use sealpost_session::IdentityKeyPair;
use sealpost_wire::{DeviceAddress, IdentityBytes};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ALICE: &str = "+15550002001";
const BOB: &str = "+15550002002";

async fn wait_connected(client: &Client) {
    let mut state = client.connection_state();
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .expect("connected in time")
    .unwrap();
}

/// A version-1 account (registered without a list) upgrades in place when opened by this
/// version: it publishes list version 1; a contact that had verified it sees one
/// "switched to linked devices" event, no safety-number change, and stays verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_account_upgrades_and_its_contact_sees_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &dir.path().join("relay"),
        any_port(),
        &codes,
        Limits::default(),
    )
    .await;
    // Alice fetches Bob's list for every message, so she sees the upgrade at once.
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let a_config = config.clone().with_device_list_refresh(Duration::ZERO);
    let (alice, a_rx) = register(&a_config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    Client::request_code(&config, &acct(BOB)).await.unwrap();
    let (bob, b_rx) = hazmat::register_version1(
        open_store(dir.path(), "bob"),
        config.clone(),
        acct(BOB),
        &codes.take(BOB),
    )
    .await
    .unwrap();
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    assert!(bob.own_devices().await.unwrap().is_empty(), "no list yet");

    alice.send_text(&acct(BOB), "one").await.unwrap();
    b_seen.wait("one", 30, |c| c.count() == 1).await;
    // Alice verifies Bob's device (version 0: Bob has no list).
    let number = alice.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    assert_eq!(
        number.digits(),
        bob.safety_number(&acct(ALICE), DeviceId(1))
            .await
            .unwrap()
            .digits()
    );
    alice
        .mark_verified(&acct(BOB), DeviceId(1), &number.digits())
        .await
        .unwrap();

    // Bob's app is updated: opening the store upgrades it.
    let bob_identity = bob.identity();
    bob.shutdown().await;
    let (bob, b_seen) = open_connected(dir.path(), "bob", &config).await;
    assert_eq!(bob.identity(), bob_identity, "same device, same identity");
    assert_eq!(
        bob.own_devices().await.unwrap(),
        vec![info(1, PRIMARY_DEVICE_NAME, DeviceRole::Primary)]
    );

    let id = alice.send_text(&acct(BOB), "two").await.unwrap();
    b_seen.wait("two", 30, |c| c.count() == 1).await;
    a_seen
        .wait("delivered", 30, |c| {
            c.count_events(
                |e| matches!(e, ClientEvent::Delivered { message_id, .. } if *message_id == id),
            ) == 1
        })
        .await;
    alice.send_text(&acct(BOB), "three").await.unwrap();
    b_seen.wait("three", 30, |c| c.count() == 2).await;
    assert_eq!(
        a_seen.count_events(|e| matches!(e, ClientEvent::SwitchedToLinkedDevices { account, devices }
            if *account == acct(BOB) && *devices == vec![info(1, PRIMARY_DEVICE_NAME, DeviceRole::Primary)])),
        1
    );
    assert_eq!(
        a_seen.count_events(|e| matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. }
                | ClientEvent::VerifiedIdentityChanged { .. }
                | ClientEvent::SessionReset { .. }
        )),
        0
    );
    // Still verified; the number is now over both account keys (version 1).
    assert_eq!(
        alice.verification(&acct(BOB), DeviceId(1)).await.unwrap(),
        Verification::Verified
    );
    let now = alice.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    assert_ne!(now.digits(), number.digits());
    assert_eq!(
        now.digits(),
        bob.safety_number(&acct(ALICE), DeviceId(1))
            .await
            .unwrap()
            .digits()
    );

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// Stops `relay`, runs `f` on its SQLite store, and starts it again on the same address
/// and data directory.
async fn with_relay_store<F>(
    relay: RelayHandle,
    data: &Path,
    codes: &Arc<Codes>,
    f: F,
) -> RelayHandle
where
    F: AsyncFnOnce(&SqliteStore),
{
    let addr = relay.local_addr();
    relay.shutdown().await;
    {
        let store = SqliteStore::open(data.join("relay.db")).unwrap();
        f(&store).await;
    }
    start_relay(data, addr, codes, Limits::default()).await
}

/// A device the relay registers on its own (not on the signed list) gets no message from
/// any client and what it sends is rejected; a list the relay rolls back is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_added_devices_and_rolled_back_lists_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&data, any_port(), &codes, Limits::default()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    bob.send_text(&acct(ALICE), "hello").await.unwrap();
    a_seen.wait("hello", 30, |c| c.count() == 1).await;
    alice.send_text(&acct(BOB), "hi").await.unwrap();
    b_seen.wait("hi", 30, |c| c.count() == 1).await;

    // Keep list version 1 as the relay stored it, for the rollback below.
    let alice_wire: IdentityBytes = alice.identity().to_wire();
    let mut v1 = Vec::new();
    let relay = with_relay_store(relay, &data, &codes, async |store: &SqliteStore| {
        let list = store.device_list_state(&acct(ALICE)).await.unwrap().list;
        let list = list.expect("alice published a list");
        assert_eq!(list.list_version, 1);
        v1 = list.bytes;
    })
    .await;

    // Alice links a laptop (list version 2); Bob learns it.
    wait_connected(&alice).await;
    let (laptop, l_seen) = link(dir.path(), "alice-laptop", &config, &alice, "Laptop").await;
    let laptop_wire: IdentityBytes = laptop.identity().to_wire();
    bob.send_text(&acct(ALICE), "both").await.unwrap();
    l_seen.wait("laptop copy", 30, |c| c.count() == 1).await;
    a_seen.wait("phone copy", 30, |c| c.count() == 2).await;

    // The relay registers a ghost device 5 for Alice's account, keeping her signed list.
    let ghost = IdentityKeyPair::generate(&mut rand::rng());
    let ghost_wire = ghost.public().to_wire();
    let mut account_key = [0; 32];
    let relay = with_relay_store(relay, &data, &codes, async |store: &SqliteStore| {
        let list = store.device_list_state(&acct(ALICE)).await.unwrap().list;
        let list = list.unwrap();
        assert_eq!(list.list_version, 2);
        account_key = list.account_key;
        let devices = [(1, alice_wire), (2, laptop_wire), (5, ghost_wire)];
        store
            .replace_device_list(
                &acct(ALICE),
                &NewDeviceList {
                    account_key: &list.account_key,
                    list_version: list.list_version,
                    next_device_id: list.next_device_id,
                    devices: &devices,
                    bytes: &list.bytes,
                },
                Some(2),
                Some(5),
                1,
            )
            .await
            .unwrap();
    })
    .await;
    let ghost_store = open_store(dir.path(), "ghost");
    hazmat::install_device(&ghost_store, acct(ALICE), DeviceId(5), ghost).unwrap();
    let (ghost, g_rx) = Client::open(ghost_store, config.clone()).await.unwrap();
    let g_seen = Collector::default();
    g_seen.spawn(g_rx);
    g_seen
        .wait("ghost connected", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::Connected)) > 0
        })
        .await;

    // Bob encrypts to the listed devices only; the relay insists on its ghost: the message
    // is refused twice (once retried after fetching the unchanged list) and given up.
    let id = bob.send_text(&acct(ALICE), "secret").await.unwrap();
    b_seen
        .wait("send failed", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::SendFailed { message_id, error }
                if *message_id == id && error.relay_code() == Some(ErrorCode::MismatchedDevices))
            }) == 1
        })
        .await;

    // What the ghost sends is dropped by Bob, after fetching Alice's list again.
    let ghost_id = ghost.send_text(&acct(BOB), "I am Alice").await.unwrap();
    b_seen
        .wait("ghost rejected", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::RejectedUnlistedDevice { from, message_id }
                if from.device == DeviceId(5) && *message_id == ghost_id)
            }) == 1
        })
        .await;
    assert_eq!(b_seen.count(), 1, "only Alice's real message was shown");
    assert!(
        bob.history(&acct(ALICE), 10)
            .await
            .unwrap()
            .iter()
            .all(|h| h.message_id != ghost_id)
    );
    ghost.shutdown().await;
    assert_eq!(g_seen.count(), 0);

    // Nothing was ever queued for the ghost. Then the relay serves list version 1 again
    // (and drops the laptop and the ghost).
    let ghost_addr = DeviceAddress::new(acct(ALICE), DeviceId(5));
    let relay = with_relay_store(relay, &data, &codes, async |store: &SqliteStore| {
        assert_eq!(store.queue_depth(&ghost_addr).await.unwrap(), 0);
        let devices = [(1, alice_wire)];
        store
            .replace_device_list(
                &acct(ALICE),
                &NewDeviceList {
                    account_key: &account_key,
                    list_version: 1,
                    next_device_id: 2,
                    devices: &devices,
                    bytes: &v1,
                },
                Some(2),
                None,
                2,
            )
            .await
            .unwrap();
    })
    .await;
    // Bob restarts (nothing cached) and refuses the rolled-back list.
    bob.shutdown().await;
    let (bob, b_seen) = open_connected(dir.path(), "bob", &config).await;
    let id = bob.send_text(&acct(ALICE), "after rollback").await.unwrap();
    b_seen
        .wait("refused", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::SendFailed { message_id, error }
                if *message_id == id && *error == ClientError::DeviceListRefused(
                    DeviceListRefusal::RolledBack { pinned: 2, offered: 1 }))
            }) == 1
        })
        .await;
    assert_eq!(
        b_seen.count_events(|e| matches!(e, ClientEvent::DeviceListRefused { account, reason }
            if *account == acct(ALICE) && *reason == DeviceListRefusal::RolledBack { pinned: 2, offered: 1 })),
        1
    );

    laptop.shutdown().await;
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// Losing the key holder without the PIN (spec/devices.md 8.6): the account registers again
/// on a new phone, which generates a new account key and publishes list version 1 naming
/// only itself; the relay removes the linked laptop, which learns it was removed; a contact
/// sees one safety-number change (rule 5.1, the account key changed) and from then on
/// encrypts to the new phone only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_primary_without_the_pin_starts_a_new_account_key() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    let (laptop, l_seen) = link(dir.path(), "alice-laptop", &config, &alice, "Laptop").await;

    // Bob talks to both of Alice's devices and notes the safety number.
    bob.send_text(&acct(ALICE), "before").await.unwrap();
    a_seen
        .wait("before at the phone", 30, |c| c.count() == 1)
        .await;
    l_seen
        .wait("before at the laptop", 30, |c| c.count() == 1)
        .await;
    let before = bob.safety_number(&acct(ALICE), DeviceId(1)).await.unwrap();

    // The phone is lost: its client is gone for good, and Alice registers a new phone.
    alice.shutdown().await;
    let (phone, p_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice-new")).await;
    let p_seen = Collector::default();
    p_seen.spawn(p_rx);
    let me = phone.address().device;
    assert_eq!(
        phone.own_devices().await.unwrap(),
        vec![info(me.0, PRIMARY_DEVICE_NAME, DeviceRole::Primary)]
    );
    // The laptop was removed with the old registration and stops reconnecting.
    l_seen
        .wait("laptop removed", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::Deregistered)) == 1
        })
        .await;

    // Bob's next message: the list under a new account key is a safety-number change, and
    // the message reaches the new phone only.
    let id = bob.send_text(&acct(ALICE), "after").await.unwrap();
    delivered(&b_seen, id).await;
    p_seen
        .wait("after at the new phone", 30, |c| c.count() == 1)
        .await;
    assert_eq!(p_seen.texts(), vec!["after"]);
    assert_eq!(
        b_seen.count_events(
            |e| matches!(e, ClientEvent::SafetyNumberChanged { account, .. }
            if *account == acct(ALICE))
        ),
        1
    );
    let after = bob.safety_number(&acct(ALICE), me).await.unwrap();
    assert_ne!(before.digits(), after.digits());
    let at_phone = phone.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    assert_eq!(after.digits(), at_phone.digits());
    assert_eq!(l_seen.count(), 1, "the removed laptop got nothing more");

    laptop.shutdown().await;
    phone.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// Losing the primary **with** the PIN (spec/devices.md 8.6): the phone set a PIN, so its
/// account key is backed up at the relay under the PIN's backup key. A new phone registers
/// with the PIN: it restores the account key and publishes the next list version with itself
/// as primary in place of the lost phone; the linked laptop stays listed and connected; Bob
/// sees one device change, no safety-number change, and stays verified; messages reach the
/// new phone and the laptop, and the new phone's sent copy reaches the laptop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_primary_with_the_pin_keeps_the_account_key() {
    const PIN: &str = "482915";
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let limits = Limits {
        vault_requests_per_account: 1000,
        ..bulk_limits()
    };
    let relay = start_relay_with(
        &dir.path().join("relay"),
        any_port(),
        &codes,
        limits,
        sealpost_relay::GuardianConfig::default(),
    )
    .await;
    let config = client_config(relay.local_addr(), relay.spki_pin())
        .with_pin_params(sealpost_client::PinArgon2Params::testing());
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (a_seen, b_seen) = (Collector::default(), Collector::default());
    a_seen.spawn(a_rx);
    b_seen.spawn(b_rx);
    alice.set_pin(PIN).await.unwrap();
    let (laptop, l_seen) = link(dir.path(), "alice-laptop", &config, &alice, "Laptop").await;

    // Bob talks to both of Alice's devices and verifies Alice.
    bob.send_text(&acct(ALICE), "before").await.unwrap();
    a_seen
        .wait("before at the phone", 30, |c| c.count() == 1)
        .await;
    l_seen
        .wait("before at the laptop", 30, |c| c.count() == 1)
        .await;
    let before = bob.safety_number(&acct(ALICE), DeviceId(1)).await.unwrap();
    bob.mark_verified(&acct(ALICE), DeviceId(1), &before.digits())
        .await
        .unwrap();

    // The phone is lost; a new phone registers with the PIN.
    alice.shutdown().await;
    Client::request_code(&config, &acct(ALICE)).await.unwrap();
    let code = codes.take(ALICE);
    let (phone, p_rx) = Client::register_with_pin(
        open_store(dir.path(), "alice-new"),
        config.clone(),
        acct(ALICE),
        &code,
        PIN,
    )
    .await
    .unwrap();
    let p_seen = Collector::default();
    p_seen.spawn(p_rx);
    let me = phone.address().device;
    assert_eq!(me, DeviceId(3));
    assert_eq!(
        phone.own_devices().await.unwrap(),
        vec![
            info(2, "Laptop", DeviceRole::Linked),
            info(3, PRIMARY_DEVICE_NAME, DeviceRole::Primary)
        ]
    );

    // Bob's next message reaches the new phone and the laptop; the list moved on under the
    // same account key: one device change, the same safety number, still verified.
    let id = bob.send_text(&acct(ALICE), "after").await.unwrap();
    delivered(&b_seen, id).await;
    p_seen
        .wait("after at the new phone", 30, |c| c.count() == 1)
        .await;
    l_seen
        .wait("after at the laptop", 30, |c| c.count() == 2)
        .await;
    assert_eq!(p_seen.texts(), vec!["after"]);
    assert_eq!(l_seen.texts(), vec!["before", "after"]);
    assert_eq!(
        b_seen.count_events(
            |e| matches!(e, ClientEvent::DevicesChanged { account, added, removed, changed }
            if *account == acct(ALICE)
                && *added == vec![info(3, PRIMARY_DEVICE_NAME, DeviceRole::Primary)]
                && *removed == vec![info(1, PRIMARY_DEVICE_NAME, DeviceRole::Primary)]
                && changed.is_empty())
        ),
        1
    );
    assert_eq!(
        b_seen.count_events(|e| matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. } | ClientEvent::VerifiedIdentityChanged { .. }
        )),
        0
    );
    let after = bob.safety_number(&acct(ALICE), me).await.unwrap();
    assert_eq!(before.digits(), after.digits());
    assert_eq!(
        bob.verification(&acct(ALICE), me).await.unwrap(),
        Verification::Verified
    );
    let at_phone = phone.safety_number(&acct(BOB), DeviceId(1)).await.unwrap();
    assert_eq!(after.digits(), at_phone.digits());
    assert_eq!(
        l_seen.count_events(|e| matches!(e, ClientEvent::Deregistered)),
        0
    );

    // The new phone answers; Bob sees it from device 3, the laptop gets the sent copy.
    phone
        .send_text(&acct(BOB), "from the new phone")
        .await
        .unwrap();
    b_seen.wait("reply", 30, |c| c.count() == 1).await;
    assert_eq!(
        b_seen.messages.lock().unwrap()[0].from,
        DeviceAddress::new(acct(ALICE), me)
    );
    l_seen
        .wait("sent copy at the laptop", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { .. })) == 1
        })
        .await;

    laptop.shutdown().await;
    phone.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}

/// The start of the UTC day of `t`, as the relay reports last-seen days (spec/relay.md 3.12).
fn day_of(t: std::time::SystemTime) -> std::time::SystemTime {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::time::UNIX_EPOCH + Duration::from_secs(secs - secs % 86_400)
}

/// `Client::device_activity` over real QUIC (spec/relay.md 3.12): a linked device is listed
/// with the day it was seen, on every device of the account, key holder or not; another
/// account sees only its own devices; and the close of a device's connection is recorded in
/// the relay's store (read after the relay stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_devices_report_their_last_seen_day() {
    use sealpost_client::DeviceActivity;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&data, any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let before = std::time::SystemTime::now();
    let (alice, _a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, _b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    wait_connected(&alice).await;
    wait_connected(&bob).await;
    assert_eq!(alice.device_activity().await.unwrap().len(), 1);

    let (laptop, _l_seen) = link(dir.path(), "alice-laptop", &config, &alice, "Laptop").await;
    wait_connected(&laptop).await;
    let after = std::time::SystemTime::now();
    // Registration, link and authentication all happened between `before` and `after`.
    let days = [day_of(before), day_of(after)];
    let from_phone = alice.device_activity().await.unwrap();
    assert_eq!(
        from_phone.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![DeviceId(1), DeviceId(2)]
    );
    for d in &from_phone {
        let day = d.last_seen_day.expect("seen");
        assert!(days.contains(&day), "{d:?} not on {days:?}");
    }
    // The linked device (not the key holder) gets the same answer.
    assert_eq!(laptop.device_activity().await.unwrap(), from_phone);
    // Bob sees only Bob's device.
    let from_bob: Vec<DeviceActivity> = bob.device_activity().await.unwrap();
    assert_eq!(from_bob.len(), 1);
    assert_eq!(from_bob[0].id, DeviceId(1));

    // The laptop disconnects; the close is recorded with a time after everything above.
    let mid_ms = now_ms();
    laptop.shutdown().await;
    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
    let store = SqliteStore::open(data.join("relay.db")).unwrap();
    let seen = store.device_activity(&acct(ALICE)).await.unwrap();
    assert_eq!(seen.len(), 2);
    for d in &seen {
        assert!(d.last_seen >= mid_ms, "{d:?} before {mid_ms}");
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}
