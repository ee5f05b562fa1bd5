//! The update rule as the engine applies it (spec/devices.md 8.9).

use super::*;
use crate::error::DeviceListRefusal;
use sealpost_devices::{AccountKeyPair, DeviceRole, VerifiedDeviceList};
use sealpost_wire::devices::DeviceName;

fn first(key: &AccountKeyPair, e: &Engine) -> VerifiedDeviceList {
    key.first_list(
        &e.address.account,
        e.address.device.0,
        e.identity.public().to_wire(),
        DeviceRole::Primary,
        DeviceName::new("Phone").unwrap(),
        1,
        |m| e.identity.sign(m),
    )
    .unwrap()
}

#[test]
fn account_key_changes_missing_and_invalid_lists() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    let b = &bob.address.account;
    let key = AccountKeyPair::generate(&mut rand::rng());
    let v1 = first(&key, &bob);
    // First use: pinned silently.
    let (_, events) = alice
        .apply_fetched_list(b, Some(v1.signed().clone()))
        .unwrap();
    assert!(events.is_empty());
    // The relay stops serving a list: refused, nothing changes.
    assert_eq!(
        alice.apply_fetched_list(b, None).unwrap_err(),
        ClientError::DeviceListRefused(DeviceListRefusal::Missing)
    );
    // A list under another account key (unverified): accepted, safety number changed.
    let other = AccountKeyPair::generate(&mut rand::rng());
    let k2 = first(&other, &bob);
    let (_, events) = alice
        .apply_fetched_list(b, Some(k2.signed().clone()))
        .unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::SafetyNumberChanged {
            account: b.clone(),
            device: DeviceId(1)
        }]
    );
    assert!(!alice.held(b).unwrap());
    // Verified, then another key: held until approved.
    let mut pin = alice.store.list_pin(b).unwrap().unwrap();
    pin.verification = Verification::Verified;
    let mut batch = Batch::new();
    alice.store.put_list_pin(&mut batch, &pin);
    alice.store.commit(batch).unwrap();
    let (_, events) = alice
        .apply_fetched_list(b, Some(v1.signed().clone()))
        .unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::VerifiedIdentityChanged {
            account: b.clone(),
            device: DeviceId(1)
        }]
    );
    assert_eq!(
        alice.check_sendable(b).unwrap_err(),
        ClientError::UnapprovedIdentity
    );
    assert_eq!(alice.approve_identity(b).unwrap(), 1);
    assert!(!alice.held(b).unwrap());
    // A list whose signature does not verify: refused.
    let garbage = {
        let mut l = v1.signed().clone();
        l.signature[0] ^= 1;
        l
    };
    assert_eq!(
        alice.apply_fetched_list(b, Some(garbage)).unwrap_err(),
        ClientError::DeviceListRefused(DeviceListRefusal::Invalid)
    );
}
