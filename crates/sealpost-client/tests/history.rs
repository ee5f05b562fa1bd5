//! History bundles over real QUIC (spec/devices.md 8.7 and 8.9, spec/client-store.md 6.2):
//! the key holder sends a newly linked device its contacts with their verification state
//! and its recent messages; the bundle survives a restart of the key holder; nothing is
//! imported twice; a part from anyone but the key holder is rejected; the account's other
//! devices get a placeholder and show nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    Client, ClientEvent, DeviceAddress, DeviceId, Direction, HistoryEntry, MessageBody, MessageId,
    MessageStatus, Verification, hazmat,
};
use sealpost_wire::devices::{
    ContactDevices, HistoryContact, HistoryDevice, HistoryDirection, HistoryMessage, HistoryRecord,
    HistoryStatus, HistoryVerification,
};
use std::sync::Arc;

const PHONE: &str = "+15550004001";
const SHOP: &str = "+15550004002";
const STRANGER: &str = "+15550004003";

/// `(contacts, messages, invalid, last)` of every `HistoryImported` event, in order.
fn imports(seen: &Collector) -> Vec<(u32, u32, u32, bool)> {
    seen.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::HistoryImported {
                contacts,
                messages,
                invalid,
                last,
            } => Some((*contacts, *messages, *invalid, *last)),
            _ => None,
        })
        .collect()
}

async fn wait_delivered(seen: &Collector, id: MessageId) {
    seen.wait("delivered", 30, |c| {
        c.count_events(
            |e| matches!(e, ClientEvent::Delivered { message_id, .. } if *message_id == id),
        ) == 1
    })
    .await;
}

/// Everything the app sees of a history entry but its position.
type Shown = (
    Direction,
    DeviceAddress,
    MessageId,
    u64,
    MessageStatus,
    MessageBody,
);

async fn shown(client: &Client, account: &str) -> Vec<Shown> {
    let h: Vec<HistoryEntry> = client.history(&acct(account), 100).await.unwrap();
    h.into_iter()
        .map(|e| {
            (
                e.direction,
                e.peer,
                e.message_id,
                e.timestamp,
                e.status,
                e.body,
            )
        })
        .collect()
}

/// Identity and safety-number warnings: none may follow a history import.
fn warnings(seen: &Collector) -> usize {
    seen.count_events(|e| {
        matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. }
                | ClientEvent::VerifiedIdentityChanged { .. }
                | ClientEvent::DeviceListRefused { .. }
                | ClientEvent::Undecryptable { .. }
        )
    })
}

/// A phone with a verified shop and a conversation links a desktop, and is restarted before
/// the desktop has joined: the bundle was committed with the link, so the restarted phone
/// sends it. The desktop shows the same history and verification state as the phone, gets
/// no `Message` events for it, and messages the shop without any warning. The phone gets
/// no `Delivered` event for the parts. A message the desktop received live and then again
/// in a (second) bundle is shown once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_desktop_gets_the_phones_history_once() {
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
    let (phone, p_rx) = register(&config, &codes, PHONE, open_store(dir.path(), "phone")).await;
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (p_seen, s_seen) = (Collector::default(), Collector::default());
    p_seen.spawn(p_rx);
    s_seen.spawn(s_rx);

    // A conversation both ways, and the shop's safety number verified on the phone.
    let hello = phone.send_text(&acct(SHOP), "hello shop").await.unwrap();
    wait_delivered(&p_seen, hello).await;
    s_seen.wait("hello", 30, |c| c.count() == 1).await;
    shop.send_text(&acct(PHONE), "welcome").await.unwrap();
    p_seen.wait("welcome", 30, |c| c.count() == 1).await;
    let order = phone.send_text(&acct(SHOP), "order #1").await.unwrap();
    wait_delivered(&p_seen, order).await;
    let number = phone.safety_number(&acct(SHOP), DeviceId(1)).await.unwrap();
    phone
        .mark_verified(&acct(SHOP), DeviceId(1), &number.digits())
        .await
        .unwrap();
    assert_eq!(
        phone.verification(&acct(SHOP), DeviceId(1)).await.unwrap(),
        Verification::Verified
    );
    let at_phone = shown(&phone, SHOP).await;
    assert_eq!(at_phone.len(), 3);

    // The phone links a desktop, then stops before the desktop has joined: the parts
    // cannot have left (the list does not name the desktop yet), they are in the store.
    let pending = Client::link(open_store(dir.path(), "desktop"), config.clone())
        .await
        .unwrap();
    let desktop_id = phone
        .link_device(&pending.invitation_text(), "Desktop")
        .await
        .unwrap();
    assert!(
        phone.outbox_len().await.unwrap() >= 1,
        "the bundle is queued"
    );
    phone.shutdown().await;
    drop(phone);
    let (desktop, d_rx) = pending.complete().await.unwrap();
    assert_eq!(desktop.address().device, desktop_id);
    let d_seen = Collector::default();
    d_seen.spawn(d_rx);

    // The restarted phone sends the bundle; the desktop applies it in one part.
    let (phone, p_seen) = open_connected(dir.path(), "phone", &config).await;
    d_seen
        .wait("history imported", 30, |c| !imports(c).is_empty())
        .await;
    assert_eq!(imports(&d_seen), vec![(1, 3, 0, true)]);
    assert_eq!(d_seen.count(), 0, "no Message event for imported messages");
    assert_eq!(shown(&desktop, SHOP).await, at_phone);
    let h = desktop.history(&acct(SHOP), 10).await.unwrap();
    assert_eq!(
        h.iter().map(|e| e.direction).collect::<Vec<_>>(),
        vec![
            Direction::Outgoing,
            Direction::Incoming,
            Direction::Outgoing
        ]
    );
    assert!(matches!(h[0].status, MessageStatus::Delivered { .. }));
    assert_eq!(h[1].peer, DeviceAddress::new(acct(SHOP), DeviceId(1)));
    // The verification state came with the shop's list: same safety number, verified.
    assert_eq!(
        desktop
            .verification(&acct(SHOP), DeviceId(1))
            .await
            .unwrap(),
        Verification::Verified
    );
    assert_eq!(
        desktop
            .safety_number(&acct(SHOP), DeviceId(1))
            .await
            .unwrap()
            .digits(),
        number.digits()
    );
    // The parts gave the phone no event: once a later message is delivered (the outbox
    // runs in order, the parts had left before it), only that one was reported.
    let after = phone.send_text(&acct(SHOP), "after link").await.unwrap();
    wait_delivered(&p_seen, after).await;
    assert_eq!(p_seen.delivered(), 1);
    assert_eq!(
        p_seen.count_events(|e| matches!(e, ClientEvent::SendFailed { .. })),
        0
    );
    assert_eq!(phone.outbox_len().await.unwrap(), 0);

    // The desktop messages the verified shop: no warning, no hold.
    let from_desktop = desktop
        .send_text(&acct(SHOP), "from the desktop")
        .await
        .unwrap();
    wait_delivered(&d_seen, from_desktop).await;
    s_seen
        .wait("from the desktop", 30, |c| {
            c.texts().contains(&"from the desktop".to_owned())
        })
        .await;
    assert_eq!(warnings(&d_seen), 0);

    // A message received live by both devices, then a second bundle from the phone that
    // holds it (and every earlier message, and the desktop's own): nothing is imported
    // again.
    let live = shop.send_text(&acct(PHONE), "live").await.unwrap();
    for seen in [&p_seen, &d_seen] {
        seen.wait("live", 30, |c| {
            c.messages.lock().unwrap().iter().any(|m| m.id == live)
        })
        .await;
    }
    p_seen
        .wait("copy of the desktop's message", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { .. })) == 1
        })
        .await;
    let before = shown(&desktop, SHOP).await;
    assert_eq!(before.len(), 6);
    assert_eq!(
        hazmat::send_history_bundle(&phone, desktop_id)
            .await
            .unwrap(),
        1
    );
    d_seen
        .wait("second import", 30, |c| imports(c).len() == 2)
        .await;
    assert_eq!(imports(&d_seen)[1], (0, 0, 0, true));
    assert_eq!(shown(&desktop, SHOP).await, before);
    assert_eq!(
        before.iter().filter(|m| m.2 == live).count(),
        1,
        "the live message is shown once"
    );
    assert_eq!(
        d_seen.count(),
        1,
        "only the live message was a Message event"
    );
    assert_eq!(warnings(&d_seen), 0);

    for c in [phone, desktop, shop] {
        c.shutdown().await;
    }
    relay.shutdown().await;
}

/// A part from another account, or from a device of the own account that is not the key
/// holder, is rejected (`Undecryptable`) and changes nothing. A third device's bundle goes
/// to it alone: the desktop gets the placeholder and reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_come_only_from_the_key_holder_and_only_to_the_new_device() {
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
    let (phone, p_rx) = register(&config, &codes, PHONE, open_store(dir.path(), "phone")).await;
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (p_seen, s_seen) = (Collector::default(), Collector::default());
    p_seen.spawn(p_rx);
    s_seen.spawn(s_rx);
    let hello = phone.send_text(&acct(SHOP), "hello shop").await.unwrap();
    wait_delivered(&p_seen, hello).await;

    let pending = Client::link(open_store(dir.path(), "desktop"), config.clone())
        .await
        .unwrap();
    let desktop_id = phone
        .link_device(&pending.invitation_text(), "Desktop")
        .await
        .unwrap();
    let (desktop, d_rx) = pending.complete().await.unwrap();
    let d_seen = Collector::default();
    d_seen.spawn(d_rx);
    d_seen
        .wait("history imported", 30, |c| !imports(c).is_empty())
        .await;
    assert_eq!(imports(&d_seen), vec![(1, 1, 0, true)]);
    let desktop_history = shown(&desktop, SHOP).await;

    // Records a forger would like the desktop to believe: a contact the phone never had,
    // and a message the shop never sent.
    let (stranger, _stranger_rx) =
        register(&config, &codes, STRANGER, open_store(dir.path(), "x")).await;
    let forged_records = || {
        vec![
            HistoryRecord::Contact(HistoryContact {
                account: acct(STRANGER),
                devices: ContactDevices::Devices(vec![HistoryDevice {
                    device_id: DeviceId(1),
                    identity: stranger.identity().to_wire(),
                    verification: HistoryVerification::Verified,
                }]),
            }),
            HistoryRecord::Message(HistoryMessage {
                direction: HistoryDirection::Incoming,
                peer: DeviceAddress::new(acct(SHOP), DeviceId(1)),
                timestamp: 5,
                status: HistoryStatus::Received,
                status_at: 0,
                content: {
                    // The content layout of spec/client-store.md section 6: text.
                    let mut c = vec![1, 1];
                    c.extend_from_slice(MessageId::random().as_bytes());
                    c.extend_from_slice(b"refund approved");
                    c
                },
            }),
        ]
    };
    let rejected = |seen: &Collector, id: MessageId| {
        seen.count_events(
            |e| matches!(e, ClientEvent::Undecryptable { message_id, .. } if *message_id == id),
        )
    };

    // From another account: both devices reject it.
    let forged = hazmat::send_history_part(&shop, &acct(PHONE), forged_records())
        .await
        .unwrap();
    for seen in [&p_seen, &d_seen] {
        seen.wait("forged part rejected", 30, |c| rejected(c, forged) == 1)
            .await;
    }
    // From the desktop (listed, but not the key holder): the phone rejects it.
    let from_desktop = hazmat::send_history_part(&desktop, &acct(PHONE), forged_records())
        .await
        .unwrap();
    p_seen
        .wait("desktop's part rejected", 30, |c| {
            rejected(c, from_desktop) == 1
        })
        .await;
    // Nothing changed: no import, no contact, the same history.
    assert!(imports(&p_seen).is_empty());
    assert_eq!(imports(&d_seen).len(), 1);
    assert_eq!(shown(&desktop, SHOP).await, desktop_history);
    assert_eq!(shown(&phone, SHOP).await.len(), 1);
    for c in [&phone, &desktop] {
        assert!(c.verification(&acct(STRANGER), DeviceId(1)).await.is_err());
        assert!(shown(c, STRANGER).await.is_empty());
    }

    // A third device: its bundle reaches it; the desktop gets only the placeholder, which
    // it applies silently. The phone's next sent copy follows the part to both devices,
    // so once the desktop has the copy it has processed the placeholder.
    let pending = Client::link(open_store(dir.path(), "laptop"), config.clone())
        .await
        .unwrap();
    let laptop_id = phone
        .link_device(&pending.invitation_text(), "Laptop")
        .await
        .unwrap();
    assert_ne!(laptop_id, desktop_id);
    let (laptop, l_rx) = pending.complete().await.unwrap();
    let l_seen = Collector::default();
    l_seen.spawn(l_rx);
    l_seen
        .wait("laptop history imported", 30, |c| !imports(c).is_empty())
        .await;
    assert_eq!(imports(&l_seen), vec![(1, 1, 0, true)]);
    assert_eq!(shown(&laptop, SHOP).await, shown(&phone, SHOP).await);
    let next = phone.send_text(&acct(SHOP), "next").await.unwrap();
    for seen in [&d_seen, &l_seen] {
        seen.wait("copy of next", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::SentByOtherDevice { message_id, .. } if *message_id == next)
            }) == 1
        })
        .await;
    }
    assert_eq!(
        imports(&d_seen).len(),
        1,
        "the desktop imported nothing new"
    );
    assert_eq!(warnings(&d_seen), 1, "only the forged part was reported");
    assert_eq!(warnings(&l_seen), 0);
    assert_eq!(d_seen.count() + l_seen.count(), 0);

    for c in [phone, desktop, laptop, shop, stranger] {
        c.shutdown().await;
    }
    relay.shutdown().await;
}
