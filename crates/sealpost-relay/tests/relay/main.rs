//! The relay over real QUIC on 127.0.0.1, with its real self-signed certificate (pinned) and
//! real SQLite files in temporary directories.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../common/mod.rs"]
mod common;

mod delivery;
mod durability;
mod limits;

use common::{Client, Codes, Device, Raw, TestRelay, acct, config};
use sealpost_relay::Relay;
use sealpost_session::VerifiedBundle;
use sealpost_wire::relay::{ErrorCode, OutgoingEnvelope, Push, Request, Response};
use sealpost_wire::{AccountId, DeviceAddress};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn send_req(to: &AccountId, devices: &[u32], body: &[u8], msg: u8) -> Request {
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

/// Waits until no delivery task runs (each idle connected device keeps none).
async fn until_no_delivery_task(relay: &sealpost_relay::RelayHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.delivery_tasks() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} delivery tasks still running",
            relay.delivery_tasks()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `open` once, without waiting: `Some` if the stream could be opened right now. A
/// client knows its stream credit from the relay's transport parameters and the
/// `MAX_STREAMS` frames received so far, so `None` means the relay has granted no more.
fn now<T>(open: impl std::future::Future<Output = Result<T, quinn::ConnectionError>>) -> Option<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(open).poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r.expect("connection alive")),
        std::task::Poll::Pending => None,
    }
}

async fn expect_deliver(c: &mut Client) -> sealpost_wire::relay::Delivery {
    match c.next_push().await {
        Push::Deliver(d) => d,
        other => panic!("expected Deliver, got {other:?}"),
    }
}
