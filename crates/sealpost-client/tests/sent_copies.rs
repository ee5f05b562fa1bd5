//! Sent copies over real QUIC (spec/client-store.md section 6.1, spec/devices.md 8.1): a
//! message one device of an account sends reaches the account's other devices as an
//! outgoing history entry, exactly once; a device alone on its account sends no copy; a
//! copy from another account is rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    Client, ClientEvent, DeviceId, Direction, MessageBody, MessageId, MessageStatus, hazmat,
};
use std::sync::Arc;

const PHONE: &str = "+15550003001";
const SHOP: &str = "+15550003002";

/// The `SentByOtherDevice` events `seen` got for `id`.
fn copies_of(seen: &Collector, id: MessageId) -> usize {
    seen.count_events(
        |e| matches!(e, ClientEvent::SentByOtherDevice { message_id, .. } if *message_id == id),
    )
}

/// `(direction, text, message id)` of the history with `account`.
async fn history(client: &Client, account: &str) -> Vec<(Direction, String, MessageId)> {
    client
        .history(&acct(account), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|h| {
            (
                h.direction,
                h.body.as_text().unwrap().to_owned(),
                h.message_id,
            )
        })
        .collect()
}

/// Phone alone: no copy at all. Phone + linked desktop: each device's message to the shop
/// reaches the shop once and the other device as one sent copy in its history, so both
/// devices show the whole conversation; a sent copy forged by the shop is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_copies_reach_the_other_devices_once() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay_with_metrics(&dir.path().join("relay"), &codes).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (phone, p_rx) = register(&config, &codes, PHONE, open_store(dir.path(), "phone")).await;
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (p_seen, s_seen) = (Collector::default(), Collector::default());
    p_seen.spawn(p_rx);
    s_seen.spawn(s_rx);

    // Alone on its account, the phone sends exactly one Send and queues no copy (the copy
    // would be committed together with the delivery, before the event).
    let before = sends(&relay);
    let alone = phone.send_text(&acct(SHOP), "alone").await.unwrap();
    delivered(&p_seen, alone).await;
    assert_eq!(sends(&relay) - before, 1);
    assert_eq!(phone.outbox_len().await.unwrap(), 0);
    s_seen.wait("alone", 30, |c| c.count() == 1).await;

    // A desktop joins the account.
    let pending = Client::link(open_store(dir.path(), "desktop"), config.clone())
        .await
        .unwrap();
    let id = phone
        .link_device(&pending.invitation_text(), "Desktop")
        .await
        .unwrap();
    let (desktop, d_rx) = pending.complete().await.unwrap();
    assert_eq!(desktop.address().device, id);
    let d_seen = Collector::default();
    d_seen.spawn(d_rx);
    // The phone's history bundle for the desktop (spec/client-store.md 6.2) is one more
    // Send: let it arrive before counting.
    d_seen
        .wait("history bundle", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::HistoryImported { last: true, .. })) == 1
        })
        .await;

    // The phone sends: the shop gets it once, the desktop gets one sent copy.
    let before = sends(&relay);
    let order = phone.send_text(&acct(SHOP), "order #1").await.unwrap();
    delivered(&p_seen, order).await;
    d_seen
        .wait("copy of order #1", 30, |c| copies_of(c, order) == 1)
        .await;
    s_seen.wait("order #1", 30, |c| c.count() == 2).await;
    assert_eq!(s_seen.texts(), vec!["alone", "order #1"]);
    assert_eq!(s_seen.messages.lock().unwrap()[1].id, order);
    assert_eq!(sends(&relay) - before, 2, "the message and its copy");
    assert_eq!(phone.outbox_len().await.unwrap(), 0);
    assert_eq!(
        d_seen.count_events(|e| matches!(e,
            ClientEvent::SentByOtherDevice { device, to, body, .. }
            if *device == DeviceId(1) && *to == acct(SHOP)
                && *body == MessageBody::Text("order #1".into()))),
        1
    );
    // The desktop's history with the shop: the message from before the link (from the
    // history bundle), then the phone's message, outgoing and delivered.
    let h = desktop.history(&acct(SHOP), 10).await.unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].message_id, alone);
    assert_eq!(h[1].direction, Direction::Outgoing);
    assert_eq!(h[1].message_id, order);
    assert_eq!(h[1].peer.account, acct(SHOP));
    assert_eq!(h[1].peer.device, DeviceId(0));
    assert!(matches!(h[1].status, MessageStatus::Delivered { .. }));
    // A copy is not a message: the desktop shows no incoming message for it.
    assert_eq!(d_seen.count(), 0);

    // The desktop sends: the phone gets the copy; the shop answers both devices.
    let from_desktop = desktop
        .send_text(&acct(SHOP), "from the desktop")
        .await
        .unwrap();
    p_seen
        .wait("copy from the desktop", 30, |c| {
            copies_of(c, from_desktop) == 1
        })
        .await;
    s_seen
        .wait("from the desktop", 30, |c| c.count() == 3)
        .await;
    let reply = shop.send_text(&acct(PHONE), "shipped").await.unwrap();
    p_seen
        .wait("reply at the phone", 30, |c| c.count() == 1)
        .await;
    d_seen
        .wait("reply at the desktop", 30, |c| c.count() == 1)
        .await;

    // Both devices show the whole conversation (the desktop has the phone's message from
    // before it was linked from the history bundle).
    let out = Direction::Outgoing;
    let conversation = vec![
        (out, "alone".to_owned(), alone),
        (out, "order #1".to_owned(), order),
        (out, "from the desktop".to_owned(), from_desktop),
        (Direction::Incoming, "shipped".to_owned(), reply),
    ];
    assert_eq!(history(&desktop, SHOP).await, conversation);
    assert_eq!(history(&phone, SHOP).await, conversation);
    assert_eq!(copies_of(&p_seen, from_desktop), 1);
    assert_eq!(copies_of(&d_seen, order), 1);

    // The shop forges a sent copy "from" the phone's account: both devices reject it.
    let forged = hazmat::send_sent_copy(
        &shop,
        &acct(PHONE),
        &acct(SHOP),
        MessageId::random(),
        &MessageBody::Text("forged".into()),
    )
    .await
    .unwrap();
    for seen in [&p_seen, &d_seen] {
        seen.wait("forged copy rejected", 30, |c| {
            c.count_events(|e| {
                matches!(e,
                ClientEvent::Undecryptable { from, message_id }
                if *message_id == forged && from.account == acct(SHOP))
            }) == 1
        })
        .await;
        assert_eq!(
            seen.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { .. })),
            1
        );
    }
    assert_eq!(history(&desktop, SHOP).await.len(), 4);
    assert_eq!(history(&phone, SHOP).await.len(), 4);

    // The same message copied twice by an own device is shown once. The copies leave the
    // desktop in order and arrive in order: once the copy of `last` is in, both copies of
    // `twice` were processed.
    let (twice, last) = (MessageId::random(), MessageId::random());
    for (id, text) in [(twice, "twice"), (twice, "twice"), (last, "last")] {
        hazmat::send_sent_copy(
            &desktop,
            &acct(PHONE),
            &acct(SHOP),
            id,
            &MessageBody::Text(text.into()),
        )
        .await
        .unwrap();
    }
    p_seen
        .wait("copy of last", 30, |c| copies_of(c, last) == 1)
        .await;
    assert_eq!(copies_of(&p_seen, twice), 1);
    let at_phone = history(&phone, SHOP).await;
    assert_eq!(at_phone.len(), 6);
    assert_eq!(at_phone[4], (out, "twice".to_owned(), twice));
    assert_eq!(at_phone[5], (out, "last".to_owned(), last));

    for c in [phone, desktop, shop] {
        c.shutdown().await;
    }
    relay.shutdown().await;
}
