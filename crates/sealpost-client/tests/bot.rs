//! The business bot API ([`BusinessBot`]) end to end over real QUIC with real SQLite
//! stores: every customer message routed to the bot is yielded exactly once and in order,
//! also when the bot's events were dropped (`Lagged`) and when the bot restarts from a
//! saved cursor; a conversation an agent has claimed is not answered; a handover to the
//! agents carries the history and the agents' check verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    AccountId, AccountKind, BotError, BotMessage, BusinessBot, BusinessProfileFields, Client,
    ClientConfig, ClientEvent, DeviceId, DeviceRole, Direction, EventReceiver, HandoffCheck,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHOP: &str = "+15550008001";

/// The shop's owner, with the profile published.
async fn owner(dir: &std::path::Path, config: &ClientConfig, codes: &Codes) -> (Client, Collector) {
    let shop_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Owner");
    let (owner, rx) = register(&shop_config, codes, SHOP, open_store(dir, "owner")).await;
    let seen = Collector::default();
    seen.spawn(rx);
    (owner, seen)
}

async fn publish(owner: &Client, route: &[DeviceId]) {
    owner
        .publish_business_profile(BusinessProfileFields {
            name: "Harbour Books".into(),
            ..BusinessProfileFields::default()
        })
        .await
        .unwrap();
    owner.set_default_route(route).await.unwrap();
}

/// Links the bot (store "bot"), keeping its event receiver for the bot API.
async fn link_bot(
    dir: &std::path::Path,
    config: &ClientConfig,
    owner: &Client,
) -> (Client, EventReceiver) {
    let pending = Client::link(open_store(dir, "bot"), config.clone())
        .await
        .unwrap();
    owner
        .link_device_as(&pending.invitation_text(), "Order bot", DeviceRole::Bot)
        .await
        .unwrap();
    pending.complete().await.unwrap()
}

/// Waits until `client`'s history holds `n` incoming messages from customers.
async fn wait_incoming(client: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = client.history_after(0, 1000).await.unwrap();
        let got = page
            .entries
            .iter()
            .filter(|e| {
                e.direction == Direction::Incoming && e.peer.account != client.address().account
            })
            .count();
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{got} of {n} messages arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message, failing the test after 60 s.
async fn next(bot: &mut BusinessBot) -> BotMessage {
    tokio::time::timeout(Duration::from_secs(60), bot.next())
        .await
        .expect("no message within 60 s")
        .unwrap()
        .expect("the bot's client stopped")
}

fn yielded(m: &BotMessage) -> (AccountId, String) {
    (m.customer.clone(), m.text().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_routed_message_is_yielded_once_in_order_across_lags_and_restarts() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (owner, _owner_seen) = owner(dir.path(), &config, &codes).await;
    // The bot's event buffer holds 2 events: the flood below overflows it.
    let bot_config = config
        .clone()
        .with_device_list_refresh(Duration::ZERO)
        .with_event_capacity(2);
    let (bot, mut bot_events) = link_bot(dir.path(), &bot_config, &owner).await;
    publish(&owner, &[bot.address().device]).await;
    let (ann, ann_seen) = customer(dir.path(), &config, &codes, "+15550008101").await;
    let (ben, ben_seen) = customer(dir.path(), &config, &codes, "+15550008102").await;

    // Both customers write while the bot reads nothing.
    let mut expected = Vec::new();
    for n in 1..=6 {
        for (c, seen, name) in [(&ann, &ann_seen, "ann"), (&ben, &ben_seen, "ben")] {
            let text = format!("{name} {n}");
            let id = c.send_text(&acct(SHOP), &text).await.unwrap();
            delivered(seen, id).await;
            expected.push((c.address().account.clone(), text));
        }
    }
    wait_incoming(&bot, 12).await;
    assert!(
        matches!(bot_events.try_recv(), Some(ClientEvent::Lagged { .. })),
        "the bot's events were not dropped"
    );

    // The bot reads 5, saves its cursor and stops.
    let mut got = Vec::new();
    let mut b = BusinessBot::new(bot.clone(), bot_events);
    for _ in 0..5 {
        let m = next(&mut b).await;
        assert!(m.mine && !m.handed_over, "{m:?}");
        got.push(yielded(&m));
    }
    let cursor = b.cursor();
    assert!(cursor > 0);
    drop(b);
    bot.shutdown().await;

    // Restarted from the saved cursor: the other 7, then what arrives while it waits.
    let (bot, bot_events) = Client::open(open_store(dir.path(), "bot"), bot_config.clone())
        .await
        .unwrap();
    let mut b = BusinessBot::with_cursor(bot.clone(), bot_events, cursor);
    for _ in 0..7 {
        let m = next(&mut b).await;
        assert!(m.mine, "{m:?}");
        got.push(yielded(&m));
    }
    assert_eq!(got, expected);
    let waiting = tokio::spawn(async move {
        let m = next(&mut b).await;
        (b, m)
    });
    let id = ann.send_text(&acct(SHOP), "ann 7").await.unwrap();
    delivered(&ann_seen, id).await;
    let (mut b, m) = waiting.await.unwrap();
    assert_eq!(yielded(&m), (ann.address().account.clone(), "ann 7".into()));
    // Answered, and the answer reaches the customer under the bot's name.
    b.reply(&m, "Order 7 is on its way").await.unwrap();
    ann_seen
        .wait("the bot's answer", 30, |c| {
            c.texts() == vec!["Order 7 is on its way"]
        })
        .await;
    let author = ann_seen
        .events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            ClientEvent::Message { author, .. } => author.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (author.name.as_str(), author.role),
        ("Order bot", DeviceRole::Bot)
    );
    // The bot's own answer is not yielded: the next message is Ben's.
    let id = ben.send_text(&acct(SHOP), "ben 7").await.unwrap();
    delivered(&ben_seen, id).await;
    assert_eq!(
        yielded(&next(&mut b).await),
        (ben.address().account.clone(), "ben 7".into())
    );
    bot.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_conversation_is_not_answered_and_a_handover_verifies() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (owner, _owner_seen) = owner(dir.path(), &config, &codes).await;
    let device_config = config.clone().with_device_list_refresh(Duration::ZERO);
    let (bot, bot_events) = link_bot(dir.path(), &device_config, &owner).await;
    let (lina, lina_seen) = link_as(
        dir.path(),
        "lina",
        &device_config,
        &owner,
        "Lina, support",
        DeviceRole::Agent,
    )
    .await;
    let (omar, omar_seen) = link_as(
        dir.path(),
        "omar",
        &device_config,
        &owner,
        "Omar, support",
        DeviceRole::Agent,
    )
    .await;
    let (lina_id, omar_id) = (lina.address().device, omar.address().device);
    // New conversations go to the bot and Lina.
    publish(&owner, &[bot.address().device, lina_id]).await;
    let (ann, ann_seen) = customer(dir.path(), &config, &codes, "+15550008201").await;
    let (ben, ben_seen) = customer(dir.path(), &config, &codes, "+15550008202").await;
    let (ann_id, ben_id) = (ann.address().account.clone(), ben.address().account.clone());
    let mut b = BusinessBot::new(bot.clone(), bot_events);

    // Ann writes; Lina claims the conversation before the bot reads it.
    let id = ann.send_text(&acct(SHOP), "ann 1").await.unwrap();
    delivered(&ann_seen, id).await;
    wait_incoming(&bot, 1).await;
    lina_seen
        .wait("Ann's message", 30, |c| c.texts() == vec!["ann 1"])
        .await;
    lina.claim(&ann_id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bot.conversation(&ann_id).await.unwrap().assigned_to != vec![lina_id] {
        assert!(
            Instant::now() < deadline,
            "the bot never learnt of the claim"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = next(&mut b).await;
    assert_eq!(yielded(&m), (ann_id.clone(), "ann 1".into()));
    assert!(!m.mine);
    assert!(!b.is_mine(&ann_id).await.unwrap());
    assert_eq!(
        b.reply(&m, "too late").await.unwrap_err(),
        BotError::NotMine
    );
    // Ann's next message goes to Lina only; the bot's next message is Ben's.
    let id = ann.send_text(&acct(SHOP), "ann 2").await.unwrap();
    delivered(&ann_seen, id).await;
    lina_seen
        .wait("Ann's second message", 30, |c| {
            c.texts() == vec!["ann 1", "ann 2"]
        })
        .await;
    let id = ben.send_text(&acct(SHOP), "I want a person").await.unwrap();
    delivered(&ben_seen, id).await;
    let m = next(&mut b).await;
    assert_eq!(yielded(&m), (ben_id.clone(), "I want a person".into()));
    assert!(m.mine);
    assert_eq!(
        ann_seen.count(),
        0,
        "the bot answered a claimed conversation"
    );

    // The bot answers Ben and hands over to the agents (Lina and Omar) with the history.
    b.reply(&m, "A colleague will answer").await.unwrap();
    ben_seen
        .wait("the bot's answer", 30, |c| c.count() == 1)
        .await;
    b.hand_over_to_role(&ben_id, DeviceRole::Agent, "asked for a person")
        .await
        .unwrap();
    b.note(&ben_id, "regular customer").await.unwrap();
    for (seen, who) in [(&omar_seen, "Omar"), (&lina_seen, "Lina")] {
        seen.wait(who, 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::HandoffChecked { customer, .. } if *customer == ben_id)) > 0
        })
        .await;
        let check = seen
            .events
            .lock()
            .unwrap()
            .iter()
            .find_map(|e| match e {
                ClientEvent::HandoffChecked { customer, check } if *customer == ben_id => {
                    Some(*check)
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(
            check,
            HandoffCheck::Verified {
                confirmed: 2,
                unconfirmed: 0
            },
            "{who}"
        );
    }
    let omar_view = omar.conversation(&ben_id).await.unwrap();
    let mut assigned = omar_view.assigned_to.clone();
    assigned.sort_by_key(|d| d.0);
    let mut agents = vec![lina_id, omar_id];
    agents.sort_by_key(|d| d.0);
    assert_eq!(assigned, agents);
    assert_eq!(omar_view.handoff.unwrap().note, "asked for a person");
    let history: Vec<String> = omar
        .history(&ben_id, 100)
        .await
        .unwrap()
        .iter()
        .map(|h| h.body.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(history, vec!["I want a person", "A colleague will answer"]);
    omar_seen
        .wait("the bot's note", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::InternalNote { text, .. } if text == "regular customer")) == 1
        })
        .await;
    // Handed over: the bot no longer answers Ben.
    assert!(!b.is_mine(&ben_id).await.unwrap());
    assert_eq!(
        b.reply(&m, "me again").await.unwrap_err(),
        BotError::NotMine
    );
    relay.shutdown().await;
}
