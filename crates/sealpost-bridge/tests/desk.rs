//! Moving a conversation through the bridge's HTTP API (spec/business.md 8 and 9), against a
//! real relay and real stores: the bot (the HTTP consumer) answers a customer, then hands the
//! conversation to an agent with `POST .../transfer`; the agent's device checks the history
//! against the customer's confirmation; the bot can no longer claim it (403); an internal note
//! reaches the agent and never the customer; `GET .../desk` shows who has it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{BusinessProfileFields, Client, ClientEvent, DeviceRole, HandoffCheck};
use std::sync::Arc;

const CUSTOMER: &str = "+15550004201";

fn url(base: &str, action: &str) -> String {
    format!(
        "{base}/v1/conversations/{}/{action}",
        CUSTOMER.replace('+', "%2B")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hands_a_conversation_to_an_agent_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let pending = Client::link(open_store(dir.path(), "agent"), shop.config.clone())
        .await
        .unwrap();
    let agent_id = shop
        .owner
        .link_device_as(
            &pending.invitation_text(),
            "Lina, support",
            DeviceRole::Agent,
        )
        .await
        .unwrap();
    let (agent, rx) = pending.complete().await.unwrap();
    let agent_seen = Collector::default();
    agent_seen.spawn(rx);
    shop.owner
        .publish_business_profile(BusinessProfileFields {
            name: "Velo Lina".into(),
            ..BusinessProfileFields::default()
        })
        .await
        .unwrap();
    shop.owner
        .set_default_route(&[bot_info().id])
        .await
        .unwrap();
    let (customer, c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    let (token, base) = (shop.token(), shop.base.clone());

    customer
        .send_text(&acct(SHOP), "My parcel is lost")
        .await
        .unwrap();
    let (events, _) = poll(&base, &token, 0, 60).await;
    assert!(
        events.iter().any(|e| e["text"] == "My parcel is lost"),
        "{events:?}"
    );
    reply(&base, &token, CUSTOMER, "Let me find a person").await;
    c_seen
        .wait("the bot's answer", 60, |c| c.received().len() == 1)
        .await;

    // Without the token nothing moves.
    let body = serde_json::json!({ "to": [agent_id.0], "note": "lost parcel" })
        .to_string()
        .into_bytes();
    let refused = http("POST", &url(&base, "transfer"), None, Some(body.clone())).await;
    assert_eq!(refused.status, 401);
    // Bad input is a typed error.
    let empty = serde_json::json!({ "to": [] }).to_string().into_bytes();
    let bad = http("POST", &url(&base, "transfer"), Some(&token), Some(empty)).await;
    assert_eq!(
        (bad.status, bad.json["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let unknown = serde_json::json!({ "to": [42] }).to_string().into_bytes();
    let bad = http("POST", &url(&base, "transfer"), Some(&token), Some(unknown)).await;
    assert_eq!(bad.status, 400, "{:?}", bad.json);

    let moved = http("POST", &url(&base, "transfer"), Some(&token), Some(body)).await;
    assert_eq!(moved.status, 200, "{:?}", moved.json);
    assert_eq!(moved.json["route_version"], 1);
    agent_seen
        .wait("the agent's check", 60, |c| {
            c.events.lock().unwrap().iter().any(|e| {
                matches!(
                    e,
                    ClientEvent::HandoffChecked {
                        check: HandoffCheck::Verified {
                            confirmed: 2,
                            unconfirmed: 0
                        },
                        ..
                    }
                )
            })
        })
        .await;
    let desk = http("GET", &url(&base, "desk"), Some(&token), None).await;
    assert_eq!(desk.status, 200);
    assert_eq!(desk.json["assigned_to"], serde_json::json!([agent_id.0]));
    assert_eq!(desk.json["mine"], false);
    // The bot is no longer on the conversation's route: it may not take it back.
    let claim = http("POST", &url(&base, "claim"), Some(&token), None).await;
    assert_eq!(
        (claim.status, claim.json["error"]["code"].as_str()),
        (403, Some("not_allowed"))
    );

    // An internal note reaches the agent, never the customer; the agent's view has it.
    let note = serde_json::json!({ "text": "customer is a regular" })
        .to_string()
        .into_bytes();
    let noted = http("POST", &url(&base, "notes"), Some(&token), Some(note)).await;
    assert_eq!(noted.status, 204);
    agent_seen
        .wait("the note", 60, |c| {
            c.events.lock().unwrap().iter().any(|e| {
                matches!(e, ClientEvent::InternalNote { text, .. } if text == "customer is a regular")
            })
        })
        .await;
    let view = agent.conversation(&acct(CUSTOMER)).await.unwrap();
    assert!(view.mine);
    assert_eq!(view.notes.len(), 1);
    // The agent answers; the customer saw two answers and no note.
    agent.send_text(&acct(CUSTOMER), "Lina here").await.unwrap();
    c_seen
        .wait("the agent's answer", 60, |c| c.received().len() == 2)
        .await;
    assert!(
        c_seen
            .received()
            .iter()
            .all(|(t, _)| t != "customer is a regular")
    );
    agent.shutdown().await;
    customer.shutdown().await;
    shop.shutdown().await;
}
