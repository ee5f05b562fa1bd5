//! What the SDK benches share: a code sender that keeps registration codes in memory,
//! registering an account with an in-memory store, and an established session pair for the
//! one-encryption baseline. Each bench uses part of it.
#![allow(dead_code)]

use sealpost_client::{AccountId, Client, ClientConfig, DeviceId, EventReceiver, Store, StoreKey};
use sealpost_relay::{CodeSender, VerificationCode};
use sealpost_session::{
    DeviceAddress, IdentityKeyPair, KemPreKeyKind, PreKeyStore, Session, SessionAddresses,
    SessionConfig, SessionMessage, VerifiedBundle, initiate, respond,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// Registration codes the relay "sent", by phone number.
#[derive(Default)]
pub struct Codes(Mutex<HashMap<String, String>>);

impl CodeSender for Codes {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .insert(account.as_str().to_owned(), code.as_str().to_owned());
    }
}

impl Codes {
    /// The code sent to `phone` (once).
    pub fn take(&self, phone: &str) -> String {
        self.0.lock().unwrap().remove(phone).unwrap()
    }
}

/// Registers `phone` with an in-memory store.
pub async fn register(
    config: &ClientConfig,
    codes: &Codes,
    phone: &str,
) -> (Client, EventReceiver) {
    let account = AccountId::new(phone).unwrap();
    Client::request_code(config, &account).await.unwrap();
    let code = codes.take(phone);
    let store = Store::in_memory(StoreKey::generate()).unwrap();
    Client::register(store, config.clone(), account, &code)
        .await
        .unwrap()
}

/// Two sessions past the handshake between device 1 of `from` and device 1 of `to`, the
/// first sending on a current chain: the one-encryption baseline.
pub fn established_pair(from: &str, to: &str) -> (Session, Session) {
    let mut rng = rand::rng();
    let (alice, bob) = (
        IdentityKeyPair::generate(&mut rng),
        IdentityKeyPair::generate(&mut rng),
    );
    let at = |a: &str| DeviceAddress::new(AccountId::new(a).unwrap(), DeviceId(1));
    let mut store = PreKeyStore::new();
    store.generate_signed_prekey(&mut rng, &bob, 1_700_000_000);
    store.generate_one_time_prekeys(&mut rng, 1);
    store.generate_kem_prekeys(&mut rng, &bob, KemPreKeyKind::OneTime, 1, 1_700_000_000);
    let bundle = VerifiedBundle::verify(&store.bundle(&bob, 1, true).unwrap()).unwrap();
    let mut a = initiate(
        &mut rng,
        &alice,
        &SessionAddresses::new(at(from), at(to)),
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();
    let SessionMessage::PreKey(first) = a.encrypt(b"first").unwrap() else {
        panic!("a first message is a prekey message");
    };
    let (mut b, _) = respond(
        &mut rng,
        &bob,
        &SessionAddresses::new(at(to), at(from)),
        &mut store,
        &first,
        SessionConfig::default(),
    )
    .unwrap();
    let reply = b.encrypt(b"reply").unwrap();
    a.decrypt(&mut rng, &reply).unwrap();
    (a, b)
}
