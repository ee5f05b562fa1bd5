//! Devices with real identity keys for the tests.
#![allow(dead_code, clippy::unwrap_used)]

use sealpost_crypto::ed25519::{Signature, SigningKey};
use sealpost_crypto::x25519::X25519Secret;
use sealpost_devices::{AccountKeyPair, DeviceRole, VerifiedDeviceList};
use sealpost_wire::devices::DeviceName;
use sealpost_wire::{AccountId, IdentityBytes};

pub struct Device {
    pub signing: SigningKey,
    pub identity: IdentityBytes,
}

impl Device {
    pub fn new() -> Self {
        let mut rng = rand::rng();
        let signing = SigningKey::generate(&mut rng);
        let dh = X25519Secret::generate(&mut rng);
        let identity = IdentityBytes {
            signing: signing.verifying_key().to_bytes(),
            dh: dh.public_key().to_bytes(),
        };
        Self { signing, identity }
    }

    pub fn signer(&self) -> impl FnOnce(&[u8]) -> Signature + '_ {
        |m| self.signing.sign(m)
    }
}

pub fn account() -> AccountId {
    AccountId::new("+15551230001").unwrap()
}

pub fn name(s: &str) -> DeviceName {
    DeviceName::new(s).unwrap()
}

/// A consumer account: key, phone (device 1) and its first list.
pub fn consumer() -> (AccountKeyPair, Device, VerifiedDeviceList) {
    let ak = AccountKeyPair::generate(&mut rand::rng());
    let phone = Device::new();
    let list = ak
        .first_list(
            &account(),
            1,
            phone.identity,
            DeviceRole::Primary,
            name("Phone"),
            1_000,
            phone.signer(),
        )
        .unwrap();
    (ak, phone, list)
}
