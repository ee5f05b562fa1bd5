//! Webhook mode against a small receiver on 127.0.0.1: every event arrives in order, signed
//! with HMAC-SHA256 under the webhook secret, once confirmed; a receiver that fails twice
//! still gets every event, and a restart of the bridge resumes after the last confirmed
//! event (the cursor file) without repeating or losing one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use sealpost_bridge::WebhookConfig;
use sealpost_bridge::files::{WEBHOOK_CURSOR_FILE, WEBHOOK_SECRET_FILE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CUSTOMER: &str = "+15550006001";

/// What the receiver saw.
#[derive(Default)]
struct Receiver {
    /// Requests to refuse with 500 before accepting.
    fail_first: AtomicUsize,
    /// Every request: (signature header, cursor header, body).
    requests: Mutex<Vec<(String, String, Vec<u8>)>>,
    /// Bodies answered 200, in order.
    accepted: Mutex<Vec<serde_json::Value>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    r.requests.lock().unwrap().push((
        header("x-sealpost-signature"),
        header("x-sealpost-cursor"),
        body.to_vec(),
    ));
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.accepted
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

async fn start_receiver(r: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

async fn wait_accepted(r: &Receiver, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while r.accepted.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} events delivered",
            r.accepted.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_ordered_retried_and_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(2, Ordering::SeqCst);
    let url = start_receiver(receiver.clone()).await;
    let hook = {
        let url = url.clone();
        move |c: sealpost_bridge::BridgeConfig| {
            let mut w = WebhookConfig::new(url.clone());
            w.retry_initial = Duration::from_millis(50);
            w.retry_max = Duration::from_millis(200);
            c.with_webhook(w)
        }
    };
    let mut shop = Shop::start(dir.path(), &relay, &codes, &hook).await;
    let (customer, _c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    let mut ids = Vec::new();
    for j in 0..5 {
        ids.push(
            customer
                .send_text(&acct(SHOP), &format!("message {j}"))
                .await
                .unwrap(),
        );
    }
    wait_accepted(&receiver, 5).await;

    let secret = std::fs::read_to_string(shop.bridge_dir.join(WEBHOOK_SECRET_FILE)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(shop.bridge_dir.join(WEBHOOK_SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Every request is signed over its exact body; two were refused, then each event came
    // once: the first event three times in all.
    let requests = receiver.requests.lock().unwrap().clone();
    for (signature, cursor, body) in &requests {
        let mac = sealpost_crypto::kdf::hmac_sha256(secret.as_bytes(), body);
        assert_eq!(signature, &format!("sha256={}", hex::encode(mac)));
        let event: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(cursor, &event["cursor"].to_string());
        // A signature under another key does not match.
        let other = sealpost_crypto::kdf::hmac_sha256(b"another secret", body);
        assert_ne!(signature, &format!("sha256={}", hex::encode(other)));
    }
    assert_eq!(requests.len(), 7);
    assert_eq!(requests[0].2, requests[1].2);
    assert_eq!(requests[1].2, requests[2].2);
    let accepted = receiver.accepted.lock().unwrap().clone();
    let texts: Vec<_> = accepted.iter().map(|e| e["text"].clone()).collect();
    assert_eq!(
        texts,
        (0..5)
            .map(|j| serde_json::json!(format!("message {j}")))
            .collect::<Vec<_>>()
    );
    for (event, id) in accepted.iter().zip(&ids) {
        assert_eq!(event["kind"], "incoming");
        assert_eq!(event["conversation"], CUSTOMER);
        assert_eq!(event["message_id"], hex::encode(id.as_bytes()));
    }
    let cursors: Vec<u64> = accepted
        .iter()
        .map(|e| e["cursor"].as_u64().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));

    // The delivered cursor is on disk; after a restart, new events follow without a repeat.
    shop.restart(&hook).await;
    let on_disk: u64 = std::fs::read_to_string(shop.bridge_dir.join(WEBHOOK_CURSOR_FILE))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(on_disk, cursors[4]);
    customer
        .send_text(&acct(SHOP), "after the restart")
        .await
        .unwrap();
    wait_accepted(&receiver, 6).await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 6, "no event delivered twice");
    assert_eq!(accepted[5]["text"], "after the restart");
    assert!(accepted[5]["cursor"].as_u64().unwrap() > cursors[4]);
    customer.shutdown().await;
    shop.shutdown().await;
}
