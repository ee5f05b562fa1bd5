//! A device alone on its account makes no `Send` for its read state and deletions
//! (spec/client-store.md section 6.3): counted at the relay, so this file holds one test
//! (the metrics recorder is global to the process, see `common::sends`).
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

const PHONE: &str = "+15550005001";
const SHOP: &str = "+15550005002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_alone_on_its_account_sends_no_sync() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay_with_metrics(&dir.path().join("relay"), &codes).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (phone, p_rx) = register(&config, &codes, PHONE, open_store(dir.path(), "phone")).await;
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (p_seen, s_seen) = (Collector::default(), Collector::default());
    p_seen.spawn(p_rx);
    s_seen.spawn(s_rx);
    for text in ["one", "two"] {
        let id = shop.send_text(&acct(PHONE), text).await.unwrap();
        delivered(&s_seen, id).await;
    }
    p_seen
        .wait("two at the phone", 30, |c| c.count() == 2)
        .await;
    let m: Vec<_> = p_seen
        .messages
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();

    let before = sends(&relay);
    assert!(phone.mark_read(&acct(SHOP), m[0]).await.unwrap());
    assert_eq!(
        phone.delete_messages(&acct(SHOP), &[m[1]]).await.unwrap(),
        1
    );
    phone.delete_conversation(&acct(SHOP)).await.unwrap();
    assert_eq!(phone.outbox_len().await.unwrap(), 0);
    // A message sent afterwards is the phone's next Send: once it is delivered, any sync
    // queued before it would have been sent (one ordered outbox).
    let after = phone.send_text(&acct(SHOP), "after").await.unwrap();
    delivered(&p_seen, after).await;
    s_seen
        .wait("after at the shop", 30, |c| c.count() == 1)
        .await;
    assert_eq!(sends(&relay) - before, 1, "only the message");
    assert_eq!(phone.history(&acct(SHOP), 10).await.unwrap().len(), 1);
    assert_eq!(
        p_seen.count_events(|e| matches!(e, ClientEvent::SendFailed { .. })),
        0
    );

    for c in [phone, shop] {
        c.shutdown().await;
    }
    relay.shutdown().await;
}
