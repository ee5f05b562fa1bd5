//! Two relay nodes (two `Relay`s, each with its own data directory) on one real PostgreSQL
//! database: registration, prekeys, mailboxes and acknowledgements made through one node are
//! what the other node serves. The server is `SEALPOST_TEST_POSTGRES` (`.ci/postgres.sh
//! start` prints one); without it the test says so loudly and returns, unless
//! `SEALPOST_REQUIRE_POSTGRES=1`, which makes it fail.
#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::pg::Schema;
use common::{Client, Codes, Device, config};
use sealpost_relay::config::StoreBackend;
use sealpost_relay::{Relay, RelayHandle};
use sealpost_wire::relay::{OutgoingEnvelope, Push, Request, Response};
use sealpost_wire::{AccountId, DeviceAddress};
use std::sync::Arc;
use zeroize::Zeroizing;

fn send(to: &AccountId, device: u32, body: &[u8], msg: u8) -> Request {
    Request::Send {
        message_id: [msg; 16],
        sender_seq: u64::from(msg),
        recipient: to.clone(),
        envelopes: vec![OutgoingEnvelope {
            device_id: device,
            envelope: body.to_vec(),
        }],
    }
}

/// A fresh authenticated connection of `device` to `node`.
async fn connect(device: &mut Device, node: &RelayHandle) {
    let r = device
        .reconnect(node.local_addr(), node.cert_fingerprint())
        .await;
    assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
}

async fn next_deliver(c: &mut Client) -> (Vec<u8>, DeviceAddress, u64) {
    match c.next_push().await {
        Push::Deliver(d) => (d.envelope, d.sender, d.server_id),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_accounts_prekeys_and_mailboxes() {
    let Some(server) = common::servers::postgres("PostgreSQL multi-node tests") else {
        return;
    };
    let schema = Schema::create(&server, "sealpost_nodes").await;
    let codes = Arc::new(Codes::default());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        let mut c = config(dir, &codes);
        c.store = StoreBackend::Postgres(Zeroizing::new(schema.url.clone()));
        Relay::start(c)
    };
    let node_a = start(dir_a.path()).await.unwrap();
    let node_b = start(dir_b.path()).await.unwrap();

    // Bob registers and uploads through B; Alice registers through A.
    let mut bob = Device::register(&node_b, &codes, "+15550000002").await;
    let r = bob.upload(3, 2).await;
    assert!(matches!(r, Response::PreKeysStored { .. }), "{r:?}");
    let alice = Device::register(&node_a, &codes, "+15550000001").await;
    let b = bob.address.account.clone();

    // A serves Bob's device list and bundle, uploaded through B.
    let r = alice
        .client
        .request(&Request::ListDevices { account: b.clone() })
        .await;
    assert!(
        matches!(r, Response::Devices(ref d) if d.len() == 1 && d[0].device_id == bob.address.device.0),
        "{r:?}"
    );
    let r = alice
        .client
        .request(&Request::FetchBundles { account: b.clone() })
        .await;
    let Response::Bundles(bundles) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0].identity, bob.id.public().to_wire());

    // Accepted by A, delivered by B to Bob's next connection there.
    let r = alice
        .client
        .request(&send(&b, bob.address.device.0, b"first", 1))
        .await;
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    connect(&mut bob, &node_b).await;
    let (body, sender, first_id) = next_deliver(&mut bob.client).await;
    assert_eq!((body.as_slice(), &sender), (&b"first"[..], &alice.address));
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let r = bob
        .client
        .request(&Request::Ack {
            server_ids: vec![first_id],
        })
        .await;
    assert_eq!(r, Response::Acked { removed: 1 });

    // The ack through B is what A sees: Bob's first push on A is the second message (sent
    // through A while Bob is on B), not a redelivery of the first.
    let carol = Device::register(&node_a, &codes, "+15550000003").await;
    let r = carol
        .client
        .request(&send(&b, bob.address.device.0, b"second", 2))
        .await;
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    connect(&mut bob, &node_a).await;
    let (body, sender, _) = next_deliver(&mut bob.client).await;
    assert_eq!((body.as_slice(), &sender), (&b"second"[..], &carol.address));
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);

    node_a.shutdown().await;
    node_b.shutdown().await;
    schema.drop_now().await;
}
