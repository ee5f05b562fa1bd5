//! The bridge over HTTP, against a real relay (QUIC on 127.0.0.1) and real SQLite stores: a
//! customer writes to a business; the business's bot (this test, acting as the HTTP
//! consumer) sees the message with its conversation and author, answers through the API,
//! and the customer sees the answer from the bot by its role and name. Requests without the
//! token or with a wrong one are refused and change nothing; bad input gets typed errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{DeviceId, DeviceInfo, DeviceRole, PRIMARY_DEVICE_NAME};
use std::sync::Arc;

const CUSTOMER: &str = "+15550004101";

/// A request (method, URL, body) and the status and error code it must get.
type Case = (&'static str, String, Option<Vec<u8>>, u16, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_answers_a_customer_through_the_http_api() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let (customer, c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    let token = shop.token();
    let base = shop.base.clone();

    // Health needs no token.
    let health = http("GET", &format!("{base}/v1/health"), None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
    assert!(health.json["connected"].is_boolean());

    let question = "Where is my order 1042?";
    let id = customer.send_text(&acct(SHOP), question).await.unwrap();
    let (events, cursor) = poll(&base, &token, 0, 60).await;
    let incoming: Vec<_> = events.iter().filter(|e| e["kind"] == "incoming").collect();
    assert_eq!(incoming.len(), 1, "{events:?}");
    let event = incoming[0];
    assert_eq!(event["conversation"], CUSTOMER);
    assert_eq!(event["text"], question);
    assert_eq!(event["message_id"], hex::encode(id.as_bytes()));
    assert_eq!(event["sender_device"], 1);
    assert_eq!(
        event["author"],
        serde_json::json!({"device": 1, "role": "primary", "name": PRIMARY_DEVICE_NAME})
    );
    assert!(event["timestamp"].as_u64().unwrap() > 0);

    let answer = "Order 1042 has shipped.";
    let reply_id = reply(&base, &token, CUSTOMER, answer).await;
    c_seen
        .wait("the bot's answer", 60, |c| {
            c.received().iter().any(|(t, _)| t == answer)
        })
        .await;
    let author = c_seen
        .received()
        .into_iter()
        .find(|(t, _)| t == answer)
        .unwrap()
        .1;
    assert_eq!(author, Some(bot_info()));

    // The answer is in the feed as sent by this bridge; one from the owner device as sent
    // by another device.
    let (events, cursor) = poll(&base, &token, cursor, 30).await;
    assert_eq!(events[0]["kind"], "sent");
    assert_eq!(events[0]["sender_device"], 2);
    assert_eq!(events[0]["message_id"], reply_id);
    assert_eq!(events[0]["text"], answer);
    assert_eq!(events[0]["conversation"], CUSTOMER);
    assert!(events[0].get("author").is_none());
    shop.owner
        .send_text(&acct(CUSTOMER), "The owner, here.")
        .await
        .unwrap();
    let (events, _) = poll(&base, &token, cursor, 60).await;
    assert_eq!(events[0]["kind"], "sent_by_other_device", "{events:?}");
    assert_eq!(events[0]["sender_device"], 1);
    assert_eq!(events[0]["text"], "The owner, here.");

    // The conversation list and the conversation's messages.
    let list = http(
        "GET",
        &format!("{base}/v1/conversations"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["conversations"][0]["account"], CUSTOMER);
    let messages = http(
        "GET",
        &format!("{base}/v1/conversations/%2B15550004101/messages?limit=10"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(messages.status, 200);
    let texts: Vec<_> = messages.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, [question, answer, "The owner, here."]);

    // The customer saw the owner as the owner, and the bot as the bot.
    c_seen
        .wait("the owner's message", 60, |c| c.received().len() == 2)
        .await;
    assert_eq!(
        c_seen.received()[0].1,
        Some(DeviceInfo {
            id: DeviceId(2),
            name: BOT_NAME.to_owned(),
            role: DeviceRole::Bot
        })
    );
    customer.shutdown().await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let (customer, _c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    customer.send_text(&acct(SHOP), "Hello?").await.unwrap();
    let token = shop.token();
    let base = shop.base.clone();
    // The message is there for the right token.
    poll(&base, &token, 0, 60).await;

    let send_url = format!("{base}/v1/conversations/%2B15550004101/messages");
    let body = br#"{"text":"forged"}"#.to_vec();
    let mut wrong = token.clone();
    wrong.replace_range(0..1, if token.starts_with('0') { "1" } else { "0" });
    // The right token in a lowercase scheme is accepted.
    let lower = tokio::task::spawn_blocking({
        let url = format!("{base}/v1/conversations");
        let token = token.clone();
        move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            agent
                .get(&url)
                .header("Authorization", &format!("bearer {token}"))
                .call()
                .unwrap()
                .status()
                .as_u16()
        }
    })
    .await
    .unwrap();
    assert_eq!(lower, 200);
    for presented in [None, Some(wrong.as_str()), Some(""), Some(&token[1..])] {
        for (method, url) in [
            ("GET", format!("{base}/v1/events")),
            ("GET", format!("{base}/v1/conversations")),
            ("GET", send_url.clone()),
            ("POST", send_url.clone()),
        ] {
            let answer = http(method, &url, presented, Some(body.clone())).await;
            assert_eq!(answer.status, 401, "{method} {url} with {presented:?}");
            assert_eq!(answer.www_authenticate.as_deref(), Some("Bearer"));
            assert_eq!(answer.json["error"]["code"], "unauthorized");
        }
    }
    // Nothing was sent or queued: the bridge's history with the customer holds the one
    // incoming message, its outbox is empty.
    let history = shop
        .bridge()
        .client()
        .history(&acct(CUSTOMER), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(shop.bridge().client().outbox_len().await.unwrap(), 0);
    // Another scheme, or the token in another header, is refused too.
    let answer = tokio::task::spawn_blocking({
        let url = format!("{base}/v1/events");
        let token = token.clone();
        move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let basic = agent
                .get(&url)
                .header("Authorization", &format!("Basic {token}"))
                .call()
                .unwrap()
                .status()
                .as_u16();
            let lower = agent
                .get(&url)
                .header("Authorization", &format!("bearer{token}"))
                .call()
                .unwrap()
                .status()
                .as_u16();
            (basic, lower)
        }
    })
    .await
    .unwrap();
    assert_eq!(answer, (401, 401));
    customer.shutdown().await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_every_served_route_exists() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let token = shop.token();
    let base = shop.base.clone();
    let t = Some(token.as_str());
    let send = |account: &str| format!("{base}/v1/conversations/{account}/messages");
    let cases: Vec<Case> = vec![
        (
            "GET",
            format!("{base}/v1/events?limit=501"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{base}/v1/events?limit=0"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{base}/v1/events?wait=31"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{base}/v1/events?after=-1"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{base}/v1/events?after=x"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{base}/v1/events?bogus=1"),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("{base}/v1/conversations?limit=100000"),
            None,
            400,
            "bad_request",
        ),
        ("GET", format!("{base}/v1/nothing"), None, 404, "not_found"),
        (
            "GET",
            format!("{base}/v1/conversations/%2B1/unknown"),
            None,
            404,
            "not_found",
        ),
        ("GET", send(&"1".repeat(65)), None, 400, "bad_request"),
        (
            "POST",
            send("%01"),
            Some(br#"{"text":"x"}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%20%2B1555"),
            Some(br#"{"text":"x"}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(b"{not json".to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(br#"{"text":"a","bytes_base64":"YQ=="}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(br#"{}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(br#"{"text":""}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(br#"{"text":1}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(br#"{"bytes_base64":"*"}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(br#"{"txt":"x"}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(
                serde_json::json!({"text": "a".repeat(sealpost_client::MAX_BODY_LEN + 1)})
                    .to_string()
                    .into_bytes(),
            ),
            413,
            "too_large",
        ),
        (
            "POST",
            send("%2B15550004101"),
            Some(
                serde_json::json!({"text": "a".repeat(sealpost_bridge::api::MAX_REQUEST_BODY)})
                    .to_string()
                    .into_bytes(),
            ),
            413,
            "too_large",
        ),
    ];
    for (method, url, body, status, code) in cases {
        let answer = http(method, &url, t, body).await;
        assert_eq!(answer.status, status, "{method} {url}: {:?}", answer.json);
        assert_eq!(answer.json["error"]["code"], code, "{method} {url}");
    }
    // Nothing of that was queued.
    assert_eq!(shop.bridge().client().outbox_len().await.unwrap(), 0);
    // The largest message fits, as text and as bytes.
    let max = sealpost_client::MAX_BODY_LEN;
    let answer = http(
        "POST",
        &send("%2B15550004101"),
        t,
        Some(
            serde_json::json!({"text": "a".repeat(max)})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.encode(vec![7u8; max]);
    let answer = http(
        "POST",
        &send("%2B15550004101"),
        t,
        Some(
            serde_json::json!({"bytes_base64": bytes})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);

    // Every route the router serves exists (not 404), and /openapi.json is served
    // without a token and lists them.
    let doc = http("GET", &format!("{base}/openapi.json"), None, None).await;
    assert_eq!(doc.status, 200);
    for (method, path) in sealpost_bridge::api::served_routes() {
        assert!(
            doc.json["paths"][path][method].is_object(),
            "{method} {path}"
        );
        let url = format!("{base}{}", path.replace("{account}", "%2B15550004101"));
        let body = Some(br#"{"text":"route check"}"#.to_vec());
        let answer = http(&method.to_uppercase(), &url, t, body).await;
        // Served: never "no such route" or "method not allowed". (The desk actions refuse
        // this body or this device with typed errors; tests/desk.rs drives them.)
        assert!(
            ![404, 405].contains(&answer.status) && answer.json["error"]["code"] != "not_found",
            "{method} {path}: {} {:?}",
            answer.status,
            answer.json
        );
    }
    shop.shutdown().await;
}

/// At most 64 long polls at once: the 65th is refused with 429 while they wait, and a
/// new message wakes all of them at once with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_bounded_and_all_wake_on_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let (customer, _c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    let token = shop.token();
    let base = shop.base.clone();
    // The feed is empty: every poll waits.
    let now = http("GET", &format!("{base}/v1/events"), Some(&token), None).await;
    assert_eq!(now.json["events"], serde_json::json!([]), "{:?}", now.json);
    let url = format!("{base}/v1/events?after=0&wait=30");
    // A waiting poll refused because the probe below held a permit for a moment tries
    // again.
    let waiting: Vec<_> = (0..sealpost_bridge::api::MAX_POLLERS)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move {
                loop {
                    let answer = http("GET", &url, Some(&token), None).await;
                    if answer.status != 429 {
                        return answer;
                    }
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let probe = http("GET", &format!("{base}/v1/events"), Some(&token), None).await;
        if probe.status == 429 {
            assert_eq!(probe.json["error"]["code"], "too_many_pollers");
            break;
        }
        assert_eq!(probe.status, 200);
        assert!(std::time::Instant::now() < deadline, "never refused");
    }
    let id = customer.send_text(&acct(SHOP), "Anyone?").await.unwrap();
    for poll in waiting {
        let answer = poll.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.json["events"][0]["message_id"],
            hex::encode(id.as_bytes())
        );
    }
    // Their permits are back.
    let again = http("GET", &format!("{base}/v1/events"), Some(&token), None).await;
    assert_eq!(again.status, 200);
    customer.shutdown().await;
    shop.shutdown().await;
}
