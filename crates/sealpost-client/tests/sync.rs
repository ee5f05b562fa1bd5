//! Sync messages over real QUIC (spec/client-store.md section 6.3, spec/devices.md 8.8):
//! read state and deletions made on one device of an account reach its other devices; a
//! deleted message does not come back; a sync from another account is rejected; a device
//! alone on its account queues none.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::hazmat::{self, SyncAction};
use sealpost_client::{Client, ClientEvent, DeviceId, MessageBody, MessageId};
use std::sync::Arc;

const PHONE: &str = "+15550004001";
const SHOP: &str = "+15550004002";

/// The message ids of `client`'s history with `account`, in history order.
async fn ids(client: &Client, account: &str) -> Vec<MessageId> {
    client
        .history(&acct(account), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.message_id)
        .collect()
}

/// The ids of the messages `seen` reported, in order.
fn message_ids(seen: &Collector) -> Vec<MessageId> {
    seen.messages.lock().unwrap().iter().map(|m| m.id).collect()
}

/// Waits until the outbox of `client` is empty (its syncs and copies have left).
async fn drained(client: &Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.outbox_len().await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A phone and its linked desktop. The shop writes; the phone marks read, the desktop moves
/// its marker; the desktop deletes, the phone's history loses the messages and a copy of
/// one does not bring it back; the phone deletes the conversation, the desktop's goes too;
/// a later message starts it again on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_state_and_deletions_reach_the_other_device() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (phone, p_rx) = register(&config, &codes, PHONE, open_store(dir.path(), "phone")).await;
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (p_seen, s_seen) = (Collector::default(), Collector::default());
    p_seen.spawn(p_rx);
    s_seen.spawn(s_rx);
    let (desktop, d_seen) = link(dir.path(), "desktop", &config, &phone, "Desktop").await;
    d_seen
        .wait("history bundle", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::HistoryImported { last: true, .. })) == 1
        })
        .await;

    // The shop writes three messages; both devices get them. The phone answers once (the
    // desktop gets its sent copy).
    for text in ["one", "two", "three"] {
        shop.send_text(&acct(PHONE), text).await.unwrap();
    }
    p_seen
        .wait("three at the phone", 30, |c| c.count() == 3)
        .await;
    d_seen
        .wait("three at the desktop", 30, |c| c.count() == 3)
        .await;
    let m = message_ids(&p_seen);
    assert_eq!(message_ids(&d_seen), m);
    let answer = phone.send_text(&acct(SHOP), "thanks").await.unwrap();
    d_seen
        .wait("copy of the answer", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { message_id, .. } if *message_id == answer)) == 1
        })
        .await;
    for c in [&phone, &desktop] {
        assert_eq!(c.unread_count(&acct(SHOP)).await.unwrap(), 3);
        assert_eq!(c.read_up_to(&acct(SHOP)).await.unwrap(), None);
    }

    // The phone reads up to the second message: the desktop's marker follows.
    assert!(phone.mark_read(&acct(SHOP), m[1]).await.unwrap());
    assert_eq!(phone.read_up_to(&acct(SHOP)).await.unwrap(), Some(m[1]));
    assert_eq!(phone.unread_count(&acct(SHOP)).await.unwrap(), 1);
    d_seen
        .wait("read on the phone", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::ReadOnOtherDevice { .. })) == 1
        })
        .await;
    assert_eq!(
        d_seen.count_events(|e| *e
            == ClientEvent::ReadOnOtherDevice {
                device: DeviceId(1),
                peer: acct(SHOP),
                up_to: m[1],
            }),
        1
    );
    assert_eq!(desktop.read_up_to(&acct(SHOP)).await.unwrap(), Some(m[1]));
    assert_eq!(desktop.unread_count(&acct(SHOP)).await.unwrap(), 1);
    // Marking an earlier message read moves nothing and queues nothing (once the first
    // sync has left: the relay may push it to the desktop before the phone records the
    // acceptance).
    drained(&phone).await;
    assert!(!phone.mark_read(&acct(SHOP), m[0]).await.unwrap());
    assert_eq!(phone.outbox_len().await.unwrap(), 0);
    // A sync is bookkeeping: no message, no delivery event, no history entry.
    assert_eq!(d_seen.count(), 3);
    assert_eq!(ids(&desktop, SHOP).await, vec![m[0], m[1], m[2], answer]);

    // The desktop deletes the first message and the phone's answer: gone on the phone too.
    assert_eq!(
        desktop
            .delete_messages(&acct(SHOP), &[m[0], answer])
            .await
            .unwrap(),
        2
    );
    assert_eq!(ids(&desktop, SHOP).await, vec![m[1], m[2]]);
    p_seen
        .wait("deleted on the desktop", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::DeletedOnOtherDevice { .. })) == 1
        })
        .await;
    assert_eq!(
        p_seen.count_events(|e| *e
            == ClientEvent::DeletedOnOtherDevice {
                device: desktop.address().device,
                peer: acct(SHOP),
                message_ids: vec![m[0], answer],
            }),
        1
    );
    assert_eq!(ids(&phone, SHOP).await, vec![m[1], m[2]]);

    // A sent copy of the deleted answer arrives at the phone again (an own device sending
    // it twice): it does not come back. A copy of a new message, sent after it over the
    // same ordered queue, marks that the first was processed.
    let marker = MessageId::random();
    for id in [answer, marker] {
        hazmat::send_sent_copy(
            &desktop,
            &acct(PHONE),
            &acct(SHOP),
            id,
            &MessageBody::Text("copy".into()),
        )
        .await
        .unwrap();
    }
    p_seen
        .wait("copy of the marker", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { message_id, .. } if *message_id == marker)) == 1
        })
        .await;
    assert_eq!(
        p_seen.count_events(|e| matches!(e, ClientEvent::SentByOtherDevice { message_id, .. } if *message_id == answer)),
        0
    );
    assert_eq!(ids(&phone, SHOP).await, vec![m[1], m[2], marker]);

    // The phone deletes the whole conversation: the desktop's goes, with its read marker.
    phone.delete_conversation(&acct(SHOP)).await.unwrap();
    assert!(ids(&phone, SHOP).await.is_empty());
    d_seen
        .wait("conversation deleted on the phone", 30, |c| {
            c.count_events(|e| {
                *e == ClientEvent::ConversationDeletedOnOtherDevice {
                    device: DeviceId(1),
                    peer: acct(SHOP),
                }
            }) == 1
        })
        .await;
    assert!(ids(&desktop, SHOP).await.is_empty());
    assert_eq!(desktop.read_up_to(&acct(SHOP)).await.unwrap(), None);
    assert_eq!(desktop.unread_count(&acct(SHOP)).await.unwrap(), 0);

    // A later message starts the conversation again on both devices, unread.
    let again = shop.send_text(&acct(PHONE), "still there?").await.unwrap();
    p_seen
        .wait("again at the phone", 30, |c| c.count() == 4)
        .await;
    d_seen
        .wait("again at the desktop", 30, |c| c.count() == 4)
        .await;
    for c in [&phone, &desktop] {
        assert_eq!(ids(c, SHOP).await, vec![again]);
        assert_eq!(c.unread_count(&acct(SHOP)).await.unwrap(), 1);
    }
    drained(&phone).await;
    drained(&desktop).await;
    assert_eq!(s_seen.count(), 1);

    for c in [phone, desktop, shop] {
        c.shutdown().await;
    }
    relay.shutdown().await;
}

/// The shop forges syncs "from" the phone's account (a read, a deletion, a conversation
/// deletion): both devices reject each and nothing changes. The shop, alone on its
/// account, queues no sync for its own changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_from_another_account_is_rejected_and_a_lone_device_queues_none() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (phone, p_rx) = register(&config, &codes, PHONE, open_store(dir.path(), "phone")).await;
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (p_seen, s_seen) = (Collector::default(), Collector::default());
    p_seen.spawn(p_rx);
    s_seen.spawn(s_rx);
    let (desktop, d_seen) = link(dir.path(), "desktop", &config, &phone, "Desktop").await;

    let hello = shop.send_text(&acct(PHONE), "hello").await.unwrap();
    p_seen
        .wait("hello at the phone", 30, |c| c.count() == 1)
        .await;
    d_seen
        .wait("hello at the desktop", 30, |c| c.count() == 1)
        .await;
    phone.send_text(&acct(SHOP), "hi").await.unwrap();
    s_seen.wait("hi at the shop", 30, |c| c.count() == 1).await;

    let forged = [
        SyncAction::ReadUpTo(hello),
        SyncAction::DeleteMessages(vec![hello]),
        SyncAction::DeleteConversation,
    ];
    let mut forged_ids = Vec::new();
    for action in forged {
        forged_ids.push(
            hazmat::send_sync(&shop, &acct(PHONE), &acct(SHOP), action)
                .await
                .unwrap(),
        );
    }
    for seen in [&p_seen, &d_seen] {
        seen.wait("forged syncs rejected", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::Undecryptable { from, message_id }
                    if from.account == acct(SHOP) && forged_ids.contains(message_id))
            }) == forged_ids.len()
        })
        .await;
        assert_eq!(
            seen.count_events(|e| matches!(
                e,
                ClientEvent::ReadOnOtherDevice { .. }
                    | ClientEvent::DeletedOnOtherDevice { .. }
                    | ClientEvent::ConversationDeletedOnOtherDevice { .. }
            )),
            0
        );
    }
    for c in [&phone, &desktop] {
        assert!(ids(c, SHOP).await.contains(&hello));
        assert_eq!(c.read_up_to(&acct(SHOP)).await.unwrap(), None);
    }

    // The shop is alone on its account: its changes apply locally and queue nothing (the
    // sync would be committed with the change, before the call returns).
    // Its history with the phone: "hello" (sent), "hi" (received). Its outbox is empty
    // once its Sends were recorded as accepted.
    drained(&shop).await;
    let shop_history = ids(&shop, PHONE).await;
    assert_eq!(shop_history.len(), 2);
    assert_eq!(shop_history[0], hello);
    assert!(shop.mark_read(&acct(PHONE), shop_history[1]).await.unwrap());
    assert_eq!(shop.outbox_len().await.unwrap(), 0);
    assert_eq!(
        shop.delete_messages(&acct(PHONE), &shop_history)
            .await
            .unwrap(),
        2
    );
    assert_eq!(shop.outbox_len().await.unwrap(), 0);
    shop.delete_conversation(&acct(PHONE)).await.unwrap();
    assert_eq!(shop.outbox_len().await.unwrap(), 0);
    assert!(ids(&shop, PHONE).await.is_empty());

    for c in [phone, desktop, shop] {
        c.shutdown().await;
    }
    relay.shutdown().await;
}
