//! A flood of customer messages is absorbed (issue 15): 20 customers write 10 messages each
//! at once; the HTTP consumer answers each message in order per conversation, sees every
//! message exactly once (by id), and the bridge restarts in the middle: the consumer's
//! cursor carries over, nothing is lost or repeated.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const CUSTOMERS: usize = 20;
const PER_CUSTOMER: usize = 10;

fn phone(i: usize) -> String {
    format!("+155500050{i:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_answered_in_order_once_each_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let mut shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        customers.push(customer(dir.path(), &relay, &codes, &phone(i)).await);
    }
    // Everyone writes at once; each customer's messages in order.
    let mut sent_ids = HashSet::new();
    let mut writers = Vec::new();
    for (i, (client, _)) in customers.iter().enumerate() {
        let client = client.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for j in 0..PER_CUSTOMER {
                ids.push(
                    client
                        .send_text(&acct(SHOP), &format!("c{i} question {j}"))
                        .await
                        .unwrap(),
                );
            }
            ids
        }));
    }
    for w in writers {
        for id in w.await.unwrap() {
            sent_ids.insert(hex::encode(id.as_bytes()));
        }
    }
    assert_eq!(sent_ids.len(), CUSTOMERS * PER_CUSTOMER);

    // The consumer: answers every incoming message, checking order per conversation and
    // that no id comes twice; the bridge restarts once half of them were answered.
    let mut token = shop.token();
    let mut cursor = 0;
    let mut seen = HashSet::new();
    let mut next_index: HashMap<String, usize> = HashMap::new();
    let mut restarted = false;
    while seen.len() < CUSTOMERS * PER_CUSTOMER {
        let (events, next) = poll(&shop.base, &token, cursor, 120).await;
        for event in events {
            let cursor_of = event["cursor"].as_u64().unwrap();
            assert!(cursor_of > cursor, "cursors increase");
            cursor = cursor_of;
            if event["kind"] != "incoming" {
                assert_eq!(event["kind"], "sent");
                continue;
            }
            let id = event["message_id"].as_str().unwrap().to_owned();
            assert!(sent_ids.contains(&id), "an id nobody sent");
            assert!(seen.insert(id), "a message seen twice");
            let conversation = event["conversation"].as_str().unwrap().to_owned();
            let text = event["text"].as_str().unwrap();
            let expected = next_index.entry(conversation.clone()).or_default();
            let i: usize = conversation[conversation.len() - 2..].parse().unwrap();
            assert_eq!(
                text,
                format!("c{i} question {expected}"),
                "order of {conversation}"
            );
            *expected += 1;
            reply(
                &shop.base,
                &token,
                &conversation,
                &format!("answer {}", *expected - 1),
            )
            .await;
        }
        cursor = cursor.max(next);
        if !restarted && seen.len() >= CUSTOMERS * PER_CUSTOMER / 2 {
            restarted = true;
            shop.restart(|c| c).await;
            // The token was kept; the old address no longer answers.
            assert_eq!(shop.token(), token);
            token = shop.token();
        }
    }
    assert!(restarted);
    assert_eq!(seen.len(), CUSTOMERS * PER_CUSTOMER);
    // After the last question, only our own answers can follow.
    let tail = http(
        "GET",
        &format!("{}/v1/events?after={cursor}", shop.base),
        Some(&token),
        None,
    )
    .await;
    for e in tail.json["events"].as_array().unwrap() {
        assert_eq!(e["kind"], "sent", "only our own answers can follow");
    }

    // Every customer gets its answers, in order, from the bot.
    for (i, (_, seen)) in customers.iter().enumerate() {
        seen.wait(&format!("answers of customer {i}"), 120, |c| {
            c.received().len() == PER_CUSTOMER
        })
        .await;
        let received = seen.received();
        for (j, (text, author)) in received.iter().enumerate() {
            assert_eq!(text, &format!("answer {j}"), "customer {i}");
            assert_eq!(author.as_ref(), Some(&bot_info()));
        }
    }
    for (client, _) in customers {
        client.shutdown().await;
    }
    shop.shutdown().await;
}
