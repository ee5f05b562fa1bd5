//! Shared set-up for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealpost_session::{
    IdentityKeyPair, KemPreKeyKind, PreKeyStore, Session, SessionConfig, SessionMessage,
    VerifiedBundle, initiate, respond,
};

pub const NOW: u64 = 1_767_225_600;

pub struct Device {
    pub identity: IdentityKeyPair,
    pub store: PreKeyStore,
}

impl Device {
    pub fn new(rng: &mut rand::rngs::ThreadRng) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let mut store = PreKeyStore::new();
        store.generate_signed_prekey(rng, &identity, NOW);
        store.generate_one_time_prekeys(rng, 5);
        store.generate_kem_prekeys(rng, &identity, KemPreKeyKind::OneTime, 2, NOW);
        store.generate_kem_prekeys(rng, &identity, KemPreKeyKind::LastResort, 1, NOW);
        Self { identity, store }
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
    let bundle = bob.store.bundle(&bob.identity, 1, true).unwrap();
    let bundle = VerifiedBundle::verify(&bundle).unwrap();
    let mut a = initiate(rng, &alice.identity, &bundle, config).unwrap();
    let SessionMessage::PreKey(first) = a.encrypt(b"hello").unwrap() else {
        panic!("first message must be a prekey message")
    };
    let (mut b, pt) = respond(rng, &bob.identity, &mut bob.store, &first, config).unwrap();
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
    let before = s.to_state_bytes();
    let err = f(s).expect_err("operation must fail");
    assert_eq!(
        *before,
        *s.to_state_bytes(),
        "failed operation changed the session"
    );
    err
}
