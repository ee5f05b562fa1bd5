//! Shared set-up for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealpost_session::{
    AccountId, DeviceAddress, DeviceId, IdentityKeyPair, KemPreKeyKind, PreKeyStore, Session,
    SessionAddresses, SessionConfig, SessionMessage, VerifiedBundle, hazmat, initiate, respond,
};
use std::sync::atomic::{AtomicU32, Ordering};

pub const NOW: u64 = 1_767_225_600;

pub struct Device {
    pub identity: IdentityKeyPair,
    pub store: PreKeyStore,
    pub address: DeviceAddress,
}

/// A distinct account number per device created in this test binary.
static NEXT_ACCOUNT: AtomicU32 = AtomicU32::new(1);

pub fn address(account: &str, device: u32) -> DeviceAddress {
    DeviceAddress::new(AccountId::new(account).unwrap(), DeviceId(device))
}

/// `a` initiating with (or sending to) `b`.
pub fn addrs(a: &Device, b: &Device) -> SessionAddresses {
    SessionAddresses::new(a.address.clone(), b.address.clone())
}

impl Device {
    pub fn new(rng: &mut rand::rngs::ThreadRng) -> Self {
        let n = NEXT_ACCOUNT.fetch_add(1, Ordering::Relaxed);
        Self::with_address(rng, address(&format!("+1555{n:07}"), 1))
    }

    pub fn with_address(rng: &mut rand::rngs::ThreadRng, address: DeviceAddress) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let mut store = PreKeyStore::new();
        store.generate_signed_prekey(rng, &identity, NOW);
        store.generate_one_time_prekeys(rng, 5);
        store.generate_kem_prekeys(rng, &identity, KemPreKeyKind::OneTime, 2, NOW);
        store.generate_kem_prekeys(rng, &identity, KemPreKeyKind::LastResort, 1, NOW);
        Self {
            identity,
            store,
            address,
        }
    }
}

/// A session pair where the responder has accepted the first message and the initiator
/// has decrypted one reply (both sides have sending and receiving chains).
pub fn established(config: SessionConfig) -> (Session, Session) {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    established_between(&mut rng, &alice, &mut bob, config)
}

pub fn established_between(
    rng: &mut rand::rngs::ThreadRng,
    alice: &Device,
    bob: &mut Device,
    config: SessionConfig,
) -> (Session, Session) {
    let bundle = bob
        .store
        .bundle(&bob.identity, bob.address.device.0, true)
        .unwrap();
    let bundle = VerifiedBundle::verify(&bundle).unwrap();
    let mut a = initiate(rng, &alice.identity, &addrs(alice, bob), &bundle, config).unwrap();
    let SessionMessage::PreKey(first) = a.encrypt(b"hello").unwrap() else {
        panic!("first message must be a prekey message")
    };
    let from_alice = addrs(bob, alice);
    let (mut b, pt) = respond(
        rng,
        &bob.identity,
        &from_alice,
        &mut bob.store,
        &first,
        config,
    )
    .unwrap();
    assert_eq!(pt, b"hello");
    let reply = b.encrypt(b"hi").unwrap();
    assert_eq!(a.decrypt(rng, &reply).unwrap(), b"hi");
    assert!(!a.awaiting_reply());
    (a, b)
}

/// Asserts that `f` fails and leaves the session's serialized state unchanged.
pub fn assert_noop<T: std::fmt::Debug, E: std::fmt::Debug>(
    s: &mut Session,
    f: impl FnOnce(&mut Session) -> Result<T, E>,
) -> E {
    let before = hazmat::to_state_bytes(s);
    let err = f(s).expect_err("operation must fail");
    assert_eq!(
        *before,
        *hazmat::to_state_bytes(s),
        "failed operation changed the session"
    );
    err
}

/// A copy of a session through its pickle (sessions are not `Clone`).
pub fn copy(s: &Session) -> Session {
    let key = sealpost_session::PickleKey::new([9; 32]);
    Session::unpickle(&s.pickle(&mut rand::rng(), &key), &key).unwrap()
}
