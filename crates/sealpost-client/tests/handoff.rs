//! Assignment and handoff with verifiable history, end to end over real QUIC with real
//! SQLite stores (spec/business.md sections 8 and 9): a bot answers first and hands the
//! conversation to an agent with the history; the customer's client confirms its transcript
//! to the new route and the agent's check passes; internal notes stay among the business's
//! devices; a second transfer at the end of a shift checks again; a removed agent gets
//! nothing new. A handoff that was altered, cut short or padded with an invented message is
//! detected by the new agent. A conversation too long for one content is handed over in
//! parts and checked once the last arrives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::hazmat::{HandoffMessage, text_content, transfer_tampered};
use sealpost_client::{
    AccountId, AccountKind, BusinessProfileFields, Client, ClientError, ClientEvent, DeviceRole,
    HandoffCheck, MessageId, Side,
};
use std::sync::Arc;
use std::time::Duration;

const SHOP: &str = "+15550007001";

fn fields() -> BusinessProfileFields {
    BusinessProfileFields {
        name: "Velo Lina".into(),
        category: "Bicycle shop".into(),
        description: "Repairs while you wait.".into(),
        address: "12 Harbour Street".into(),
        website: "https://velo-lina.example".into(),
        hours: "Mon-Fri 09:00-18:30".into(),
        reply_within: 900,
    }
}

/// The shop: its owner, a bot and two agents, new conversations routed to the bot.
struct Shop {
    owner: Client,
    owner_seen: Collector,
    bot: Client,
    bot_seen: Collector,
    lina: Client,
    lina_seen: Collector,
    omar: Client,
    omar_seen: Collector,
}

async fn shop(
    dir: &std::path::Path,
    config: &sealpost_client::ClientConfig,
    codes: &Codes,
) -> Shop {
    let shop_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Owner");
    let (owner, rx) = register(&shop_config, codes, SHOP, open_store(dir, "owner")).await;
    let owner_seen = Collector::default();
    owner_seen.spawn(rx);
    let device_config = config.clone().with_device_list_refresh(Duration::ZERO);
    let (bot, bot_seen) = link_as(
        dir,
        "bot",
        &device_config,
        &owner,
        "Order bot",
        DeviceRole::Bot,
    )
    .await;
    let (lina, lina_seen) = link_as(
        dir,
        "lina",
        &device_config,
        &owner,
        "Lina, support",
        DeviceRole::Agent,
    )
    .await;
    let (omar, omar_seen) = link_as(
        dir,
        "omar",
        &device_config,
        &owner,
        "Omar, support",
        DeviceRole::Agent,
    )
    .await;
    owner.publish_business_profile(fields()).await.unwrap();
    owner
        .set_default_route(&[bot.address().device])
        .await
        .unwrap();
    Shop {
        owner,
        owner_seen,
        bot,
        bot_seen,
        lina,
        lina_seen,
        omar,
        omar_seen,
    }
}

/// The checks `seen` reported for the conversation with `customer`.
fn checks(seen: &Collector, customer: &AccountId) -> Vec<HandoffCheck> {
    seen.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::HandoffChecked { customer: c, check } if c == customer => Some(*check),
            _ => None,
        })
        .collect()
}

async fn first_check(seen: &Collector, customer: &AccountId) -> HandoffCheck {
    seen.wait("handoff check", 30, |c| !checks(c, customer).is_empty())
        .await;
    checks(seen, customer)[0]
}

/// Messages from `account` that `seen` got.
fn from(seen: &Collector, account: &AccountId) -> Vec<String> {
    seen.messages
        .lock()
        .unwrap()
        .iter()
        .filter(|m| &m.from.account == account)
        .map(|m| m.text.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_hands_over_to_an_agent_who_checks_the_history_then_the_next_shift_takes_over() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let s = shop(dir.path(), &config, &codes).await;
    let (cust, cust_seen) = customer(dir.path(), &config, &codes, "+15550007101").await;
    let me = cust.address().account.clone();
    let (bot_id, lina_id, omar_id) = (
        s.bot.address().device,
        s.lina.address().device,
        s.omar.address().device,
    );

    // The bot answers first.
    for text in ["Where is order 1042?", "It was due Monday"] {
        let id = cust.send_text(&acct(SHOP), text).await.unwrap();
        delivered(&cust_seen, id).await;
    }
    s.bot_seen
        .wait("bot", 30, |c| from(c, &me).len() == 2)
        .await;
    s.bot
        .send_text(&me, "Let me find a person for you")
        .await
        .unwrap();
    cust_seen.wait("bot's answer", 30, |c| c.count() == 1).await;

    // Only the bot (and the owner) may route it now; an agent outside the route may not.
    assert!(matches!(
        s.lina.claim(&me).await,
        Err(ClientError::RouteRefused(
            sealpost_devices::RouteError::Unauthorized
        ))
    ));
    // The bot escalates to Lina, with a note the customer never sees.
    assert_eq!(
        s.bot
            .transfer(&me, &[lina_id], "asks about a late order")
            .await
            .unwrap(),
        1
    );
    cust_seen
        .wait("route change", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::RouteChanged { .. })) == 1
        })
        .await;
    let routed: Vec<(u32, String)> = cust_seen
        .events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            ClientEvent::RouteChanged { routed_to, .. } => {
                Some(routed_to.iter().map(|d| (d.id.0, d.name.clone())).collect())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(routed, vec![(lina_id.0, "Lina, support".to_owned())]);
    // Lina got the conversation so far and it checks against the customer's transcript:
    // two messages of the customer, one of the bot.
    assert_eq!(
        first_check(&s.lina_seen, &me).await,
        HandoffCheck::Verified {
            confirmed: 3,
            unconfirmed: 0
        }
    );
    let handed = s.lina.history(&me, 100).await.unwrap();
    assert_eq!(handed.len(), 3);
    assert_eq!(
        handed
            .iter()
            .map(|h| h.body.as_text().unwrap())
            .collect::<Vec<_>>(),
        vec![
            "Where is order 1042?",
            "It was due Monday",
            "Let me find a person for you"
        ]
    );
    assert_eq!(handed[2].sender_device, Some(bot_id));
    let lina_view = s.lina.conversation(&me).await.unwrap();
    assert!(lina_view.mine && !lina_view.resolved);
    assert_eq!(lina_view.assigned_to, vec![lina_id]);
    let handoff = lina_view.handoff.unwrap();
    assert_eq!(
        (handoff.from, handoff.note.as_str(), handoff.messages),
        (bot_id, "asks about a late order", 3)
    );
    // Omar learns that Lina has it, but not the conversation.
    s.omar_seen
        .wait("Omar's assignment", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::ConversationAssigned { .. })) == 1
        })
        .await;
    let omar_view = s.omar.conversation(&me).await.unwrap();
    assert_eq!(
        (omar_view.assigned_to, omar_view.mine),
        (vec![lina_id], false)
    );
    assert!(omar_view.handoff.is_none());
    assert!(s.omar.history(&me, 100).await.unwrap().is_empty());

    // Lina answers as herself; the customer's next message reaches her, not the bot.
    s.lina.send_text(&me, "Hi, Lina here").await.unwrap();
    cust_seen
        .wait("Lina's answer", 30, |c| c.count() == 2)
        .await;
    let authors: Vec<String> = cust_seen
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message { author, .. } => author.as_ref().map(|a| a.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(authors, vec!["Order bot", "Lina, support"]);
    let id = cust.send_text(&acct(SHOP), "Thanks Lina").await.unwrap();
    delivered(&cust_seen, id).await;
    s.lina_seen
        .wait("Lina", 30, |c| from(c, &me) == vec!["Thanks Lina"])
        .await;
    s.owner_seen
        .wait("owner", 30, |c| from(c, &me).len() == 3)
        .await;
    // The bot got the first two only (its mailbox would have delivered the third before
    // anything the owner gets later).
    assert_eq!(from(&s.bot_seen, &me).len(), 2);

    // An internal note reaches the owner (and the route), never the customer.
    s.lina.add_note(&me, "refund approved").await.unwrap();
    s.owner_seen
        .wait("note", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::InternalNote { text, from, .. }
                    if text == "refund approved" && *from == lina_id)
            }) == 1
        })
        .await;
    assert!(matches!(
        s.lina.add_note(&me, "").await,
        Err(ClientError::NoteRefused)
    ));

    // Lina's shift ends: Omar takes over and checks the whole conversation again.
    assert_eq!(
        s.lina
            .transfer(&me, &[omar_id], "refund approved, tell them")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        first_check(&s.omar_seen, &me).await,
        HandoffCheck::Verified {
            confirmed: 5,
            unconfirmed: 0
        }
    );
    assert_eq!(s.omar.history(&me, 100).await.unwrap().len(), 5);

    // Lina leaves the company: the customer's next message is not encrypted to her.
    s.owner.remove_device(lina_id).await.unwrap();
    let lina_had = s.lina_seen.count();
    let id = cust.send_text(&acct(SHOP), "Any news?").await.unwrap();
    delivered(&cust_seen, id).await;
    s.omar_seen
        .wait("Omar", 30, |c| from(c, &me) == vec!["Any news?"])
        .await;
    s.owner_seen
        .wait("owner", 30, |c| from(c, &me).len() == 4)
        .await;
    assert_eq!(s.lina_seen.count(), lina_had);

    // Resolved: back on the default route (the bot), with the history.
    s.omar.resolve(&me).await.unwrap();
    let bot_check = first_check(&s.bot_seen, &me).await;
    assert!(
        matches!(bot_check, HandoffCheck::Verified { confirmed: 6, .. }),
        "{bot_check:?}"
    );
    let resolved = s.bot.conversation(&me).await.unwrap();
    assert!(resolved.resolved && resolved.mine);
    // The customer saw only messages: no note, no handoff.
    assert_eq!(cust_seen.count(), 2);
    assert!(cust_seen.count_events(|e| matches!(e, ClientEvent::InternalNote { .. })) == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_truncated_or_invented_handoff_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let s = shop(dir.path(), &config, &codes).await;
    let lina_id = s.lina.address().device;

    type Tamper = fn(&mut Vec<HandoffMessage>);
    let cases: [(&str, Tamper); 5] = [
        ("honest", |_| {}),
        ("altered", |m| {
            let last = m[1].content.len() - 1;
            m[1].content[last] ^= 1;
        }),
        ("reordered", |m| m.swap(0, 1)),
        ("truncated", |m| {
            m.remove(1);
        }),
        ("invented", |m| {
            let mut forged = m[1].clone();
            forged.content = text_content(MessageId::from_bytes([9; 16]), "I never said this");
            m.insert(1, forged);
        }),
    ];
    let mut customers = Vec::new();
    for (i, (name, _)) in cases.iter().enumerate() {
        let phone = format!("+155500072{i:02}");
        let (c, seen) = customer(dir.path(), &config, &codes, &phone).await;
        for text in [format!("{name} one"), format!("{name} two")] {
            let id = c.send_text(&acct(SHOP), &text).await.unwrap();
            delivered(&seen, id).await;
        }
        customers.push((c, seen));
    }
    for (c, _) in &customers {
        let me = c.address().account.clone();
        s.bot_seen
            .wait("bot", 30, |seen| from(seen, &me).len() == 2)
            .await;
    }
    for ((c, _), (name, tamper)) in customers.iter().zip(cases) {
        let me = c.address().account.clone();
        transfer_tampered(&s.bot, &me, &[lina_id], name, tamper)
            .await
            .unwrap();
    }
    let mut results = Vec::new();
    for (c, _) in &customers {
        results.push(first_check(&s.lina_seen, &c.address().account).await);
    }
    let customer_device = customers[0].0.address().device.0;
    assert_eq!(
        results[0],
        HandoffCheck::Verified {
            confirmed: 2,
            unconfirmed: 0
        }
    );
    for (i, name) in ["altered", "reordered", "invented"].iter().enumerate() {
        let r = results[[1, 2, 4][i]];
        assert_eq!(
            r,
            HandoffCheck::Mismatch {
                side: Side::Customer,
                device: customer_device
            },
            "{name}"
        );
    }
    assert_eq!(
        results[3],
        HandoffCheck::Incomplete {
            missing: 1,
            confirmed: 0
        }
    );
    // The owner, on every route, checks the same handoffs the same way.
    for ((c, _), lina_saw) in customers.iter().zip(&results) {
        assert_eq!(
            first_check(&s.owner_seen, &c.address().account).await,
            *lina_saw
        );
    }
}

/// The actions of a busy desk, back to back: each device answers and hands the conversation
/// on at once, without waiting for anything to be delivered (the messages still queued go
/// with the handoff, and the customer confirms after it has them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_answers_notes_and_transfers_still_check() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let s = shop(dir.path(), &config, &codes).await;
    let (cust, cust_seen) = customer(dir.path(), &config, &codes, "+15550007301").await;
    let me = cust.address().account.clone();
    let (lina_id, omar_id) = (s.lina.address().device, s.omar.address().device);

    cust.send_text(&acct(SHOP), "Where is order 1042?")
        .await
        .unwrap();
    s.bot_seen
        .wait("bot", 30, |c| from(c, &me).len() == 1)
        .await;
    s.bot.send_text(&me, "Shipped on Monday").await.unwrap();
    s.bot
        .transfer(&me, &[lina_id], "lost parcel")
        .await
        .unwrap();
    assert!(matches!(
        first_check(&s.lina_seen, &me).await,
        HandoffCheck::Verified { confirmed: 2, .. }
    ));
    s.lina.send_text(&me, "Lina here").await.unwrap();
    s.lina.add_note(&me, "trace started").await.unwrap();
    s.lina
        .transfer(&me, &[omar_id], "check tomorrow")
        .await
        .unwrap();
    assert_eq!(
        first_check(&s.omar_seen, &me).await,
        HandoffCheck::Verified {
            confirmed: 3,
            unconfirmed: 0
        }
    );
    cust_seen.wait("answers", 30, |c| c.count() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_too_long_for_one_content_is_handed_over_in_parts() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let s = shop(dir.path(), &config, &codes).await;
    let (cust, cust_seen) = customer(dir.path(), &config, &codes, "+15550007401").await;
    let me = cust.address().account.clone();
    let lina_id = s.lina.address().device;

    // Three photos of 120 kB each: 360 kB of messages, over one content's 256 KiB, so the
    // handoff needs two parts (spec/business.md 8.2).
    let photos: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 120_000]).collect();
    for p in &photos {
        cust.send_bytes(&acct(SHOP), p).await.unwrap();
    }
    s.bot_seen
        .wait("the photos at the bot", 30, |c| from(c, &me).len() == 3)
        .await;
    s.bot
        .send_text(&me, "Thanks, passing you on")
        .await
        .unwrap();
    cust_seen
        .wait("the bot's answer", 30, |c| c.count() == 1)
        .await;
    s.bot
        .transfer(&me, &[lina_id], "damaged frame, photos attached")
        .await
        .unwrap();
    assert_eq!(
        first_check(&s.lina_seen, &me).await,
        HandoffCheck::Verified {
            confirmed: 4,
            unconfirmed: 0
        }
    );
    let received: Vec<(String, usize)> = s
        .lina_seen
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::HandoffReceived {
                customer,
                note,
                messages,
                ..
            } if customer == &me => Some((note.clone(), *messages)),
            _ => None,
        })
        .collect();
    // Reported once, when the last part arrived, with the note of part 1.
    assert_eq!(
        received,
        vec![("damaged frame, photos attached".to_owned(), 4)]
    );
    let desk = s.lina.conversation(&me).await.unwrap();
    let handoff = desk.handoff.unwrap();
    assert!(handoff.complete);
    assert_eq!(handoff.messages, 4);
    // Every photo reached Lina's history whole.
    let history = s.lina.history(&me, 10).await.unwrap();
    for p in &photos {
        assert!(
            history.iter().any(|h| h.body.as_bytes() == p.as_slice()),
            "a photo of {} bytes is missing from the new agent's history",
            p.len()
        );
    }
}
