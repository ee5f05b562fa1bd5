//! The Prometheus exporter (a separate test binary: it installs the process-wide recorder,
//! so the counts below are exact).
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Codes, Device, config};
use sealpost_relay::Relay;
use sealpost_wire::relay::{ErrorCode, OutgoingEnvelope, Request, Response};
use std::sync::Arc;

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn send_req(to: &sealpost_wire::AccountId, devices: &[u32], body: &[u8], msg: u8) -> Request {
    Request::Send {
        message_id: [msg; 16],
        sender_seq: 0,
        recipient: to.clone(),
        envelopes: devices
            .iter()
            .map(|d| OutgoingEnvelope {
                device_id: *d,
                envelope: body.to_vec(),
            })
            .collect(),
    }
}

/// The Prometheus exporter serves the relay's metrics when `metrics_listen` is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_exporter_serves_relay_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut cfg = config(dir.path(), &codes);
    // Port 0: the relay binds, the handle says where (no port to race for).
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let relay = Relay::start(cfg).await.unwrap();
    let metrics_addr = relay.metrics_addr().unwrap();
    assert_ne!(metrics_addr.port(), 0);
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    let b = bob.address.account.clone();
    let r = alice.client.request(&send_req(&b, &[1], b"m", 1)).await;
    assert!(matches!(r, Response::Accepted { .. }));
    let _ = alice.client.next_push().await;
    // A bad signature counts as an authentication failure.
    let c = Client::for_relay(&relay).await;
    c.request(&Request::Challenge).await;
    let r = c
        .request(&Request::Authenticate {
            address: bob.address.clone(),
            signature: [0; 64],
        })
        .await;
    assert_eq!(err(&r), ErrorCode::AuthFailed);
    let body = tokio::task::spawn_blocking(move || {
        // Only /metrics is served.
        assert!(matches!(
            ureq::get(format!("http://{metrics_addr}/other")).call(),
            Err(ureq::Error::StatusCode(404))
        ));
        ureq::get(format!("http://{metrics_addr}/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    for needle in [
        "sealpost_connections",
        "sealpost_frames_total{kind=\"send\"} 1",
        "sealpost_frames_total{kind=\"register\"} 2",
        "sealpost_messages_queued_total 1",
        "sealpost_auth_failures_total 1",
        "sealpost_request_duration_seconds_count{kind=\"send\"} 1",
        "sealpost_request_duration_seconds_count{kind=\"register\"} 2",
        "sealpost_store_commit_seconds_count{store=\"sqlite\"}",
        "sealpost_store_fsync_seconds_count",
    ] {
        assert!(body.contains(needle), "{needle} missing from:\n{body}");
    }
    // No account numbers in metrics.
    assert!(!body.contains("5550000001"));
    relay.shutdown().await;
}
