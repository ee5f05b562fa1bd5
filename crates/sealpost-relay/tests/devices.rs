//! Signed device lists, linking and business profiles over real QUIC on 127.0.0.1
//! (spec/relay.md 3.9, 3.10, 3.14): lists and profiles made with `sealpost-devices` exactly
//! as clients make them.

#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Device, TestRelay, acct};
use sealpost_devices::{
    AccountKeyPair, DeviceRole, LinkRequest, VerifiedDeviceList, seal_provisioning,
};
use sealpost_relay::RelayHandle;
use sealpost_session::{IdentityKeyPair, PreKeyStore};
use sealpost_wire::devices::DeviceName;
use sealpost_wire::relay::{
    ErrorCode, OutgoingEnvelope, Push, Request, Response, link_device_signed_bytes,
};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};

const NOW: u64 = 1_700_000_000_000;

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn name(s: &str) -> DeviceName {
    DeviceName::new(s).unwrap()
}

/// The key holder's first list: the registered device alone, as primary.
fn first_list(ak: &AccountKeyPair, primary: &Device) -> VerifiedDeviceList {
    ak.first_list(
        &primary.address.account,
        primary.address.device.0,
        primary.id.public().to_wire(),
        DeviceRole::Primary,
        name("Phone"),
        NOW,
        |m| primary.id.sign(m),
    )
    .unwrap()
}

fn publish(list: &VerifiedDeviceList) -> Request {
    Request::PublishDeviceList {
        list: list.signed().clone(),
    }
}

/// A new device on a fresh connection with the list the key holder made for it, completed
/// through the sealed provisioning message (spec/devices.md 6), not yet sent.
struct Linking {
    client: Client,
    id: IdentityKeyPair,
    device_id: u32,
    list: VerifiedDeviceList,
}

impl Linking {
    async fn new(relay: &RelayHandle, ak: &AccountKeyPair, current: &VerifiedDeviceList) -> Self {
        let mut rng = rand::rng();
        let client = Client::for_relay(relay).await;
        let id = IdentityKeyPair::generate(&mut rng);
        let request = LinkRequest::new(&mut rng, [7; 16], id.public().to_wire());
        let body = ak
            .link_device(
                current,
                id.public().to_wire(),
                DeviceRole::Linked,
                name("Desktop"),
                NOW + 1,
            )
            .unwrap();
        let sealed = seal_provisioning(&mut rng, request.invitation(), &body).unwrap();
        let provisioned = request.open(&sealed).unwrap();
        let device_id = provisioned.device_id();
        let list = provisioned.complete(|m| id.sign(m)).unwrap();
        Self {
            client,
            id,
            device_id,
            list,
        }
    }

    /// `LinkDevice` with a signature by `signer` over `exporter`.
    fn request_signed(&self, signer: &IdentityKeyPair, exporter: &[u8; 32]) -> Request {
        let signed = link_device_signed_bytes(exporter, self.device_id, self.list.as_bytes());
        Request::LinkDevice {
            list: self.list.signed().clone(),
            device_id: self.device_id,
            signature: signer.sign(&signed).to_bytes(),
        }
    }

    fn request(&self) -> Request {
        self.request_signed(&self.id, &self.client.exporter)
    }

    async fn link(self) -> Response {
        self.client.request(&self.request()).await
    }

    /// Links, then authenticates the new device on the same connection.
    async fn linked(self) -> Device {
        let r = self.client.request(&self.request()).await;
        assert_eq!(
            r,
            Response::Registered {
                device_id: self.device_id
            }
        );
        let mut device = Device {
            id: self.id,
            keys: PreKeyStore::new(),
            address: DeviceAddress::new(self.list.account().clone(), DeviceId(self.device_id)),
            client: self.client,
        };
        let r = device.authenticate().await;
        assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
        device
    }
}

fn send(to: &AccountId, devices: &[u32], msg: u8) -> Request {
    Request::Send {
        message_id: [msg; 16],
        sender_seq: 0,
        recipient: to.clone(),
        envelopes: devices
            .iter()
            .map(|d| OutgoingEnvelope {
                device_id: *d,
                envelope: vec![msg; 32],
            })
            .collect(),
    }
}

async fn closed_with(conn: &quinn::Connection) -> u32 {
    match tokio::time::timeout(common::TIMEOUT, conn.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            u32::try_from(c.error_code.into_inner()).unwrap()
        }
        other => panic!("{other:?}"),
    }
}

/// Publish a first list, fetch it byte for byte, link a desktop end to end, deliver to it,
/// unlink it (its connection closes with code 5, it can no longer authenticate), and
/// re-register (the list is deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_link_deliver_unlink() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let (addr, fp) = (relay.local_addr(), relay.cert_fingerprint());
    let mut phone = Device::register(&relay, &codes, "+15550001001").await;
    assert_eq!(phone.client.next_push().await, Push::QueueDrained);
    let a = phone.address.account.clone();
    let fetch = Request::FetchDeviceList { account: a.clone() };

    // A version-1 account has devices and no list; an account without devices is unknown.
    assert_eq!(
        phone.client.request(&fetch).await,
        Response::DeviceList(None)
    );
    let nobody = Request::FetchDeviceList {
        account: acct("+15550001999"),
    };
    assert_eq!(
        err(&phone.client.request(&nobody).await),
        ErrorCode::UnknownAccount
    );
    // Fetching needs an authenticated connection.
    let anonymous = Client::for_relay(&relay).await;
    assert_eq!(
        err(&anonymous.request(&fetch).await),
        ErrorCode::Unauthenticated
    );

    // The first list is stored and served byte for byte.
    let ak = AccountKeyPair::generate(&mut rand::rng());
    let v1 = first_list(&ak, &phone);
    assert_eq!(
        phone.client.request(&publish(&v1)).await,
        Response::DeviceListStored { list_version: 1 }
    );
    let Response::DeviceList(Some(served)) = phone.client.request(&fetch).await else {
        panic!("no list served")
    };
    assert_eq!(served.encode().unwrap(), v1.as_bytes());

    // The desktop links before authenticating, then authenticates as device 2.
    let linking = Linking::new(&relay, &ak, &v1).await;
    assert_eq!(linking.device_id, 2);
    let v2 = linking.list.clone();
    let mut desktop = linking.linked().await;
    assert_eq!(desktop.client.next_push().await, Push::QueueDrained);
    let Response::DeviceList(Some(served)) = phone.client.request(&fetch).await else {
        panic!("no list served")
    };
    assert_eq!(served.encode().unwrap(), v2.as_bytes());

    // A sender must address both devices; the desktop receives its envelope.
    let mut bob = Device::register(&relay, &codes, "+15550001002").await;
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    assert_eq!(
        err(&bob.client.request(&send(&a, &[1], 1)).await),
        ErrorCode::MismatchedDevices
    );
    assert!(matches!(
        bob.client.request(&send(&a, &[1, 2], 2)).await,
        Response::Accepted { .. }
    ));
    match desktop.client.next_push().await {
        Push::Deliver(d) => {
            assert_eq!(d.message_id, [2; 16]);
            assert_eq!(d.envelope, vec![2; 32]);
        }
        other => panic!("{other:?}"),
    }
    // A second envelope stays unacknowledged in the desktop's mailbox.
    assert!(matches!(
        bob.client.request(&send(&a, &[1, 2], 3)).await,
        Response::Accepted { .. }
    ));

    // Unlinking: the desktop's connection closes with code 5 and it cannot come back.
    let v3 = ak.remove_device(&v2, 2, NOW + 2).unwrap();
    let desktop_conn = desktop.client.conn.clone();
    assert_eq!(
        phone.client.request(&publish(&v3)).await,
        Response::DeviceListStored { list_version: 3 }
    );
    assert_eq!(closed_with(&desktop_conn).await, 5);
    let r = desktop.reconnect(addr, fp).await;
    assert_eq!(err(&r), ErrorCode::AuthFailed);
    assert_eq!(
        err(&bob.client.request(&send(&a, &[1, 2], 4)).await),
        ErrorCode::MismatchedDevices
    );
    assert!(matches!(
        bob.client.request(&send(&a, &[1], 5)).await,
        Response::Accepted { .. }
    ));
    // The phone is untouched by all this.
    assert!(matches!(
        phone.client.request(&fetch).await,
        Response::DeviceList(Some(_))
    ));

    // A new registration of the number deletes the list.
    let phone2 = Device::register(&relay, &codes, "+15550001001").await;
    assert_eq!(phone2.address.device.0, 3, "ids are never reused");
    assert_eq!(closed_with(&phone.client.conn).await, 1);
    assert_eq!(
        phone2.client.request(&fetch).await,
        Response::DeviceList(None)
    );
    relay.shutdown().await;
}

/// Every refusal of `PublishDeviceList` and `LinkDevice` with its code, in the spec's order
/// (the rate limits are charged last, so refused requests cost nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start_with(|cfg| {
        cfg.limits.device_cap_consumer = 3;
        cfg.limits.links_per_account_per_hour = 2;
        cfg.limits.device_list_publishes_per_hour = 2;
    })
    .await;
    let phone = Device::register(&relay, &codes, "+15550002001").await;
    let other = Device::register(&relay, &codes, "+15550002002").await;
    let ak = AccountKeyPair::generate(&mut rand::rng());
    let v1 = first_list(&ak, &phone);

    // Linking to an account without a list.
    let early = Linking::new(&relay, &ak, &v1).await;
    assert_eq!(err(&early.link().await), ErrorCode::InvalidDeviceList);
    // A list for another account, or not naming the publishing device.
    assert_eq!(
        err(&other.client.request(&publish(&v1)).await),
        ErrorCode::InvalidDeviceList
    );
    assert_eq!(
        phone.client.request(&publish(&v1)).await,
        Response::DeviceListStored { list_version: 1 }
    );
    // Another account key.
    let ak2 = AccountKeyPair::generate(&mut rand::rng());
    let v1_other_key = first_list(&ak2, &phone);
    assert_eq!(
        err(&phone.client.request(&publish(&v1_other_key)).await),
        ErrorCode::InvalidDeviceList
    );
    // Not newer.
    assert_eq!(
        err(&phone.client.request(&publish(&v1)).await),
        ErrorCode::StaleDeviceList
    );
    // A new device through PublishDeviceList.
    let sneaking = Linking::new(&relay, &ak, &v1).await;
    assert_eq!(
        err(&phone.client.request(&publish(&sneaking.list)).await),
        ErrorCode::InvalidDeviceList
    );
    // LinkDevice under another account key.
    let foreign = Linking::new(&relay, &ak2, &v1_other_key).await;
    assert_eq!(err(&foreign.link().await), ErrorCode::InvalidDeviceList);

    // A LinkDevice signed by another key, or over another connection's exporter.
    let d2 = Linking::new(&relay, &ak, &v1).await;
    let stranger = IdentityKeyPair::generate(&mut rand::rng());
    let r = d2
        .client
        .request(&d2.request_signed(&stranger, &d2.client.exporter))
        .await;
    assert_eq!(err(&r), ErrorCode::InvalidSignature);
    let r = d2
        .client
        .request(&d2.request_signed(&d2.id, &phone.client.exporter))
        .await;
    assert_eq!(err(&r), ErrorCode::InvalidSignature);
    // Now properly (link 1 of 2).
    let v2 = d2.list.clone();
    let d2 = d2.linked().await;
    // A second link made from the old list is stale.
    let stale = Linking::new(&relay, &ak, &v1).await;
    assert_eq!(err(&stale.link().await), ErrorCode::StaleDeviceList);
    // Link 2 of 2: three devices, the cap.
    let d3 = Linking::new(&relay, &ak, &v2).await;
    let v3 = d3.list.clone();
    let d3 = d3.linked().await;
    let over = Linking::new(&relay, &ak, &v3).await;
    assert_eq!(err(&over.link().await), ErrorCode::TooManyDevices);
    // Publish 2 of 2: remove device 3.
    let v4 = ak.remove_device(&v3, d3.address.device.0, NOW + 5).unwrap();
    assert_eq!(
        phone.client.request(&publish(&v4)).await,
        Response::DeviceListStored { list_version: 4 }
    );
    assert_eq!(closed_with(&d3.client.conn).await, 5);
    // Both per-account rates are used up.
    let third = Linking::new(&relay, &ak, &v4).await;
    let r = third.link().await;
    assert_eq!(err(&r), ErrorCode::RateLimited);
    let Response::Error { retry_after, .. } = r else {
        unreachable!()
    };
    assert!(retry_after > 0 && retry_after <= 1800, "{retry_after}");
    let v5 = ak.remove_device(&v4, d2.address.device.0, NOW + 6).unwrap();
    assert_eq!(
        err(&phone.client.request(&publish(&v5)).await),
        ErrorCode::RateLimited
    );
    relay.shutdown().await;
}

/// The account-key backup and the recovery registration (spec/relay.md 3.2, 3.9 rule 5a,
/// 3.13): only the key holder stores a backup of the list's key; a registration with the
/// PIN's token keeps the linked desktop and the list; until the new phone publishes,
/// senders addressing the stored list get `DevicesChanging`; the new phone may publish only
/// itself as the new key holder beside devices of the stored list; then mail flows to the
/// new phone and the desktop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_key_backup_and_recovery_registration() {
    use sealpost_devices::seal_account_key_backup;
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut rng = rand::rng();
    let mut phone = Device::register(&relay, &codes, "+15550001301").await;
    assert_eq!(phone.client.next_push().await, Push::QueueDrained);
    let a = phone.address.account.clone();
    let ak = AccountKeyPair::generate(&mut rng);
    let backup_key = [0x42; 32];
    let backup = seal_account_key_backup(&mut rng, &ak, &a, &backup_key).unwrap();
    let store = |b| Request::StoreAccountKeyBackup { backup: b };

    // No list yet: no backup.
    assert_eq!(
        err(&phone.client.request(&store(backup.clone())).await),
        ErrorCode::InvalidDeviceList
    );
    let v1 = first_list(&ak, &phone);
    assert_eq!(
        phone.client.request(&publish(&v1)).await,
        Response::DeviceListStored { list_version: 1 }
    );
    let mut desktop = Linking::new(&relay, &ak, &v1).await.linked().await;
    assert_eq!(desktop.client.next_push().await, Push::QueueDrained);
    let Response::DeviceList(Some(v2)) = phone
        .client
        .request(&Request::FetchDeviceList { account: a.clone() })
        .await
    else {
        panic!("no list")
    };
    let v2 = VerifiedDeviceList::verify(&v2.encode().unwrap(), &a).unwrap();

    // The linked desktop is not the key holder; another key is not the list's.
    assert_eq!(
        err(&desktop.client.request(&store(backup.clone())).await),
        ErrorCode::InvalidDeviceList
    );
    let other_key = AccountKeyPair::generate(&mut rng);
    let other = seal_account_key_backup(&mut rng, &other_key, &a, &backup_key).unwrap();
    assert_eq!(
        err(&phone.client.request(&store(other)).await),
        ErrorCode::InvalidDeviceList
    );
    assert_eq!(
        desktop
            .client
            .request(&Request::FetchAccountKeyBackup)
            .await,
        Response::AccountKeyBackup(None)
    );
    assert_eq!(
        phone.client.request(&store(backup.clone())).await,
        Response::AccountKeyBackupStored
    );
    assert_eq!(
        desktop
            .client
            .request(&Request::FetchAccountKeyBackup)
            .await,
        Response::AccountKeyBackup(Some(backup.clone()))
    );
    let token = [0x17; 32];
    assert_eq!(
        phone
            .client
            .request(&Request::SetRegistrationLock { token })
            .await,
        Response::RegistrationLockSet
    );

    // The phone is lost; a new phone registers with the PIN's token: the desktop stays.
    let mut new_phone = Device::register_with(&relay, &codes, "+15550001301", Some(token)).await;
    assert_eq!(new_phone.address.device.0, 3);
    assert_eq!(new_phone.client.next_push().await, Push::QueueDrained);
    assert_eq!(closed_with(&phone.client.conn).await, 1);
    assert_eq!(
        new_phone
            .client
            .request(&Request::FetchAccountKeyBackup)
            .await,
        Response::AccountKeyBackup(Some(backup.clone()))
    );

    // Until the new phone publishes, a sender that follows the stored list is told to wait.
    let mut bob = Device::register(&relay, &codes, "+15550001302").await;
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    match bob.client.request(&send(&a, &[1, 2], 1)).await {
        Response::Error {
            code: ErrorCode::DevicesChanging,
            retry_after,
            ..
        } => assert!(retry_after > 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err(&bob.client.request(&send(&a, &[2], 2)).await),
        ErrorCode::MismatchedDevices
    );

    // Rule 5a refusals: the new phone as a linked device (beside the lost phone); a new key
    // beside the desktop.
    let new_identity = new_phone.id.public().to_wire();
    let mut as_linked = ak
        .link_device(&v2, new_identity, DeviceRole::Linked, name("New"), NOW + 5)
        .unwrap()
        .list;
    let binding = sealpost_devices::binding_message(&a, &ak.public(), &new_identity);
    *as_linked.bindings.last_mut().unwrap() = new_phone.id.sign(&binding).to_bytes();
    assert!(VerifiedDeviceList::verify(&as_linked.encode().unwrap(), &a).is_ok());
    assert_eq!(
        err(&new_phone
            .client
            .request(&Request::PublishDeviceList { list: as_linked })
            .await),
        ErrorCode::InvalidDeviceList
    );
    let ak2 = AccountKeyPair::generate(&mut rng);
    let with_desktop = ak2
        .link_device(
            &ak2.first_list(
                &a,
                3,
                new_identity,
                DeviceRole::Primary,
                name("New"),
                NOW,
                |m| new_phone.id.sign(m),
            )
            .unwrap(),
            desktop.id.public().to_wire(),
            DeviceRole::Linked,
            name("Desktop"),
            NOW + 7,
        )
        .unwrap();
    let mut with_desktop = with_desktop.list;
    let desktop_identity = desktop.id.public().to_wire();
    let binding = sealpost_devices::binding_message(&a, &ak2.public(), &desktop_identity);
    *with_desktop.bindings.last_mut().unwrap() = desktop.id.sign(&binding).to_bytes();
    assert!(VerifiedDeviceList::verify(&with_desktop.encode().unwrap(), &a).is_ok());
    assert_eq!(
        err(&new_phone
            .client
            .request(&Request::PublishDeviceList { list: with_desktop })
            .await),
        ErrorCode::InvalidDeviceList
    );
    let takeover = ak
        .replace_key_holder(&v2, 3, new_identity, name("New"), NOW + 8, |m| {
            new_phone.id.sign(m)
        })
        .unwrap();

    // The valid take-over: same key, the desktop kept, the new phone as primary.
    assert_eq!(
        new_phone.client.request(&publish(&takeover)).await,
        Response::DeviceListStored { list_version: 3 }
    );
    assert!(matches!(
        bob.client.request(&send(&a, &[2, 3], 3)).await,
        Response::Accepted { .. }
    ));
    match desktop.client.next_push().await {
        Push::Deliver(d) => assert_eq!(d.message_id, [3; 16]),
        other => panic!("{other:?}"),
    }
    match new_phone.client.next_push().await {
        Push::Deliver(d) => assert_eq!(d.message_id, [3; 16]),
        other => panic!("{other:?}"),
    }
    // The new key holder may store the backup again; the desktop still may not.
    assert_eq!(
        new_phone.client.request(&store(backup.clone())).await,
        Response::AccountKeyBackupStored
    );
    assert_eq!(
        err(&desktop.client.request(&store(backup)).await),
        ErrorCode::InvalidDeviceList
    );
    relay.shutdown().await;
}

/// Business profiles over QUIC (spec/relay.md 3.14): the owner of a business list publishes
/// a profile with the longest fields and four statements; a customer's device fetches it as
/// published; re-registering the number without the PIN deletes it with the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_profile_publish_fetch_and_reregistration() {
    use sealpost_crypto::ed25519::SigningKey;
    use sealpost_devices::sign_business_verification;
    use sealpost_wire::business::{BusinessProfileFields, PublishedProfile};
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut shop = Device::register(&relay, &codes, "+15550001501").await;
    assert_eq!(shop.client.next_push().await, Push::QueueDrained);
    let customer = Device::register(&relay, &codes, "+15550001502").await;
    let a = shop.address.account.clone();
    let fetch = Request::FetchBusinessProfile { account: a.clone() };
    assert_eq!(
        customer.client.request(&fetch).await,
        Response::BusinessProfile(None)
    );

    let ak = AccountKeyPair::generate(&mut rand::rng());
    let list = ak
        .first_list(
            &a,
            shop.address.device.0,
            shop.id.public().to_wire(),
            DeviceRole::Owner,
            name("Owner"),
            NOW,
            |m| shop.id.sign(m),
        )
        .unwrap();
    assert_eq!(
        shop.client.request(&publish(&list)).await,
        Response::DeviceListStored { list_version: 1 }
    );
    let business_name = "N".repeat(64);
    let fields = BusinessProfileFields {
        name: business_name.clone(),
        category: "c".repeat(64),
        description: "d".repeat(1024),
        address: "a".repeat(256),
        website: format!("https://{}", "w".repeat(192)),
        hours: "h".repeat(512),
        reply_within: 600,
    };
    let profile = ak.sign_business_profile(&a, 1, NOW, fields).unwrap();
    let verifications = (1..=4u8)
        .map(|b| {
            sign_business_verification(
                &SigningKey::from_seed(&[b; 32]),
                &a,
                &ak.public(),
                &business_name,
                NOW,
                NOW + 1000,
            )
            .unwrap()
        })
        .collect();
    let published = PublishedProfile {
        route: None,
        profile,
        verifications,
    };
    assert_eq!(
        shop.client
            .request(&Request::PublishBusinessProfile(Box::new(
                published.clone()
            )))
            .await,
        Response::BusinessProfileStored { profile_version: 1 }
    );
    assert_eq!(
        customer.client.request(&fetch).await,
        Response::BusinessProfile(Some(Box::new(published)))
    );

    // A registration that is not a recovery deletes the profile with the list.
    let _phone = Device::register(&relay, &codes, "+15550001501").await;
    assert_eq!(
        customer.client.request(&fetch).await,
        Response::BusinessProfile(None)
    );
}
