//! Provisioning over real QUIC (spec/relay.md 3.11): a new device opens a provisioning id,
//! the key holder leaves one sealed message for it, and the relay pushes it to the opener
//! once; also across two relay nodes on one PostgreSQL (when `SEALPOST_TEST_POSTGRES` is set).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Codes, Device, TestRelay, config};
use sealpost_devices::{AccountKeyPair, DeviceRole, LinkRequest, seal_provisioning};
use sealpost_relay::{Relay, RelayHandle};
use sealpost_session::IdentityKeyPair;
use sealpost_wire::devices::{DeviceName, ProvisioningEnvelope};
use sealpost_wire::relay::{ErrorCode, Push, Request, Response};
use std::sync::Arc;
use std::time::Duration;

/// The new device's side: its identity and a freshly opened provisioning id.
struct NewDevice {
    identity: IdentityKeyPair,
    request: LinkRequest,
    client: Client,
}

async fn open(relay: &RelayHandle) -> NewDevice {
    let client = Client::for_relay(relay).await;
    let r = client.request(&Request::OpenProvisioning).await;
    let Response::ProvisioningOpened {
        provisioning_id,
        expires_in,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(expires_in, 600);
    let identity = IdentityKeyPair::generate(&mut rand::rng());
    let request = LinkRequest::new(
        &mut rand::rng(),
        provisioning_id,
        identity.public().to_wire(),
    );
    NewDevice {
        identity,
        request,
        client,
    }
}

/// What the key holder `phone` sends to link `new`: its account's first list, extended.
fn provision_for(phone: &Device, new: &NewDevice) -> Request {
    let ak = AccountKeyPair::generate(&mut rand::rng());
    let list = ak
        .first_list(
            &phone.address.account,
            phone.address.device.0,
            phone.id.public().to_wire(),
            DeviceRole::Primary,
            DeviceName::new("Phone").unwrap(),
            1,
            |m| phone.id.sign(m),
        )
        .unwrap();
    let invitation = new.request.invitation();
    let body = ak
        .link_device(
            &list,
            invitation.identity,
            DeviceRole::Linked,
            DeviceName::new("Desktop").unwrap(),
            2,
        )
        .unwrap();
    let sealed = seal_provisioning(&mut rand::rng(), invitation, &body).unwrap();
    Request::Provision {
        provisioning_id: invitation.provisioning_id,
        envelope: ProvisioningEnvelope::decode(&sealed).unwrap(),
    }
}

/// The new device receives the push and completes the list from it.
async fn receive(new: &mut NewDevice) {
    let push = new.client.next_push().await;
    let Push::Provisioning {
        provisioning_id,
        envelope,
    } = push
    else {
        panic!("expected a provisioning push, got {push:?}")
    };
    assert_eq!(provisioning_id, new.request.invitation().provisioning_id);
    let link = new.request.open(&envelope.encode()).unwrap();
    let list = link.complete(|m| new.identity.sign(m)).unwrap();
    assert_eq!(list.list_version(), 2);
    assert_eq!(
        list.device(list.next_device_id() - 1).unwrap().identity,
        new.identity.public().to_wire()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioning_message_reaches_the_new_device_once() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut desktop = open(&relay).await;
    let phone = Device::register(&relay, &codes, "+15550030001").await;
    let provision = provision_for(&phone, &desktop);

    // Only an authenticated device may provision.
    let stranger = Client::for_relay(&relay).await;
    let r = stranger.request(&provision).await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::Unauthenticated,
                ..
            }
        ),
        "{r:?}"
    );

    assert_eq!(
        phone.client.request(&provision).await,
        Response::Provisioned
    );
    receive(&mut desktop).await;
    // Single use: the id is gone, and so is any other id the relay never gave out.
    let r = phone.client.request(&provision).await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::ProvisioningNotFound,
                ..
            }
        ),
        "{r:?}"
    );
    let Request::Provision { envelope, .. } = provision else {
        unreachable!()
    };
    let r = phone
        .client
        .request(&Request::Provision {
            provisioning_id: [0x5A; 16],
            envelope,
        })
        .await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::ProvisioningNotFound,
                ..
            }
        ),
        "{r:?}"
    );
    // Nothing else is pushed to the new device.
    assert_eq!(
        desktop.client.try_push(Duration::from_millis(300)).await,
        None
    );

    // Five opens per connection per 10 minutes (one used above), then RateLimited.
    for _ in 0..4 {
        let r = desktop.client.request(&Request::OpenProvisioning).await;
        assert!(matches!(r, Response::ProvisioningOpened { .. }), "{r:?}");
    }
    let r = desktop.client.request(&Request::OpenProvisioning).await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::RateLimited,
                ..
            }
        ),
        "{r:?}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_closed_connection_is_stored_and_never_pushed_elsewhere() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let desktop = open(&relay).await;
    let mut phone = Device::register(&relay, &codes, "+15550030002").await;
    let provision = provision_for(&phone, &desktop);
    desktop.client.close().await;
    // The id is still open (it expires unused); the message is accepted once.
    assert_eq!(
        phone.client.request(&provision).await,
        Response::Provisioned
    );
    let r = phone.client.request(&provision).await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::ProvisioningNotFound,
                ..
            }
        ),
        "{r:?}"
    );
    // The key holder's own connection gets no provisioning push.
    loop {
        match phone.client.try_push(Duration::from_millis(500)).await {
            None => break,
            Some(Push::QueueDrained | Push::PreKeysLow { .. }) => {}
            Some(other) => panic!("unexpected push {other:?}"),
        }
    }
    relay.shutdown().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holder_on_another_node_reaches_the_new_device() {
    use sealpost_relay::config::StoreBackend;
    let Some(server) = common::servers::postgres("PostgreSQL provisioning across nodes") else {
        return;
    };
    let schema = common::pg::Schema::create(&server, "sealpost_provisioning").await;
    let codes = Arc::new(Codes::default());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        let mut c = config(dir, &codes);
        c.store = StoreBackend::Postgres(zeroize::Zeroizing::new(schema.url.clone()));
        Relay::start(c)
    };
    let node_a = start(dir_a.path()).await.unwrap();
    let node_b = start(dir_b.path()).await.unwrap();
    let mut desktop = open(&node_a).await;
    let phone = Device::register(&node_b, &codes, "+15550030003").await;
    let started = std::time::Instant::now();
    assert_eq!(
        phone.client.request(&provision_for(&phone, &desktop)).await,
        Response::Provisioned
    );
    receive(&mut desktop).await;
    // No bus between the nodes: node A finds it in the store on its next look.
    let waited = started.elapsed();
    eprintln!("provisioning across nodes took {waited:?}");
    assert!(
        waited < sealpost_relay::PROVISIONING_POLL * 5,
        "took {waited:?}"
    );
    node_a.shutdown().await;
    node_b.shutdown().await;
    schema.drop_now().await;
}
