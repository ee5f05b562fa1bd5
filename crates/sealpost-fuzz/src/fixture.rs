//! Deterministic key material and sessions shared by the targets and the seed generator.
//!
//! Everything here is derived from fixed seeds, built once per process ([`fixture`]) and
//! copied (through the state encoding, [`dup`]) by the targets, so a target's behaviour depends only on its input.

use crate::input::rng_from;
use sealpost_session::{
    AccountId, DeviceAddress, DeviceId, IdentityKeyPair, KemPreKeyKind, PickleKey, PreKeyBundle,
    PreKeyStore, SafetyNumber, Session, SessionAddresses, SessionConfig, SessionMessage,
    VerifiedBundle, hazmat, initiate, respond,
};
use sealpost_wire::{KemPreKeyPublic, SignedPreKeyPublic};
use std::sync::OnceLock;

/// Fixed "now" for prekey timestamps.
pub const NOW: u64 = 1_700_000_000;
/// Small limits so that the fuzzer reaches them: MAX_SKIP 16, at most 32 skipped keys.
pub const MAX_SKIP: u32 = 16;
/// See [`MAX_SKIP`].
pub const MAX_SKIPPED_KEYS: u32 = 32;
/// Bob's device id in his bundles.
pub const BOB_DEVICE: u32 = 7;

/// Alice's device address (the sender every handshake seed and target assumes).
pub fn alice_address() -> DeviceAddress {
    DeviceAddress::new(
        AccountId::new("+15550000001").expect("account"),
        DeviceId(1),
    )
}

/// Bob's address for the device with id `device`.
pub fn bob_address(device: u32) -> DeviceAddress {
    DeviceAddress::new(
        AccountId::new("+15550000002").expect("account"),
        DeviceId(device),
    )
}

/// Alice's side of a session with Bob's device `device`.
pub fn to_bob(device: u32) -> SessionAddresses {
    SessionAddresses::new(alice_address(), bob_address(device))
}

/// Bob's side: himself (device [`BOB_DEVICE`]), expecting Alice as the sender.
pub fn from_alice() -> SessionAddresses {
    SessionAddresses::new(bob_address(BOB_DEVICE), alice_address())
}

/// A copy of a session through its state encoding (sessions are not `Clone`).
pub fn dup(s: &Session) -> Session {
    hazmat::from_state_bytes(&hazmat::to_state_bytes(s)).expect("state round-trips")
}

/// The limits every fixture session uses.
pub fn config() -> SessionConfig {
    SessionConfig::new(MAX_SKIP, MAX_SKIPPED_KEYS).expect("16 <= 32 <= hard limit")
}

/// The key pickles are sealed under in the `unpickle` target and its seeds.
pub fn pickle_key() -> PickleKey {
    PickleKey::new([0x5e; 32])
}

/// A key that must never open those pickles.
pub fn wrong_pickle_key() -> PickleKey {
    PickleKey::new([0xa7; 32])
}

/// A deterministic identity.
pub fn identity(label: &str) -> IdentityKeyPair {
    IdentityKeyPair::generate(&mut rng_from(b"identity", label.as_bytes()))
}

/// What Bob's store published: one signed prekey (id 1), two one-time X25519 prekeys
/// (ids 1, 2), two one-time ML-KEM prekeys (ids 1, 2) and a last-resort one (id 3).
#[derive(Clone, Debug)]
pub struct Published {
    pub signed: SignedPreKeyPublic,
    pub one_time: Vec<(u32, [u8; 32])>,
    pub kem: Vec<KemPreKeyPublic>,
}

impl Published {
    /// A bundle naming the given one-time prekey (by index into `one_time`, if any) and
    /// ML-KEM prekey (by index into `kem`). Relays assemble bundles from these parts too.
    pub fn bundle(&self, bob: &IdentityKeyPair, opk: Option<usize>, kem: usize) -> PreKeyBundle {
        PreKeyBundle {
            device_id: BOB_DEVICE,
            identity: bob.public().to_wire(),
            signed_prekey: self.signed.clone(),
            one_time_prekey: opk.map(|i| self.one_time[i]),
            kem_prekey: self.kem[kem].clone(),
        }
    }

    /// Whether `kem_id` names a one-time ML-KEM prekey.
    pub fn kem_is_one_time(&self, kem_id: u32) -> bool {
        self.kem
            .iter()
            .any(|k| k.id == kem_id && k.kind == KemPreKeyKind::OneTime)
    }
}

/// Bob's prekey store, rebuilt identically on every call.
pub fn bob_store(bob: &IdentityKeyPair) -> (PreKeyStore, Published) {
    let mut rng = rng_from(b"store", b"bob");
    let mut store = PreKeyStore::new();
    let signed = store.generate_signed_prekey(&mut rng, bob, NOW);
    let one_time = store.generate_one_time_prekeys(&mut rng, 2);
    let mut kem = store.generate_kem_prekeys(&mut rng, bob, KemPreKeyKind::OneTime, 2, NOW);
    kem.extend(store.generate_kem_prekeys(&mut rng, bob, KemPreKeyKind::LastResort, 1, NOW));
    (
        store,
        Published {
            signed,
            one_time,
            kem,
        },
    )
}

/// A genuine message and the plaintext it carries.
#[derive(Clone, Debug)]
pub struct Genuine {
    pub bytes: Vec<u8>,
    pub plaintext: Vec<u8>,
}

/// Sessions and messages the targets start from.
pub struct Fixture {
    pub alice: IdentityKeyPair,
    pub bob: IdentityKeyPair,
    pub published: Published,
    /// Bob's bundle with one-time prekey 1 and one-time ML-KEM prekey 1.
    pub bundle: PreKeyBundle,
    /// Alice right after the handshake: she sent `m0` and still awaits a reply.
    pub a0: Session,
    /// Bob right after accepting `m0`; he has sent nothing.
    pub b0: Session,
    /// The first message.
    pub m0: Genuine,
    /// Alice later: she sent `m1`, `m2` (prekey messages), then received Bob's `r2` (so
    /// she holds skipped keys for `r0` and `r1`) and sent `m3` on a new chain.
    pub a1: Session,
    /// Bob later: he sent `r0..=r3` and has received nothing since `m0`.
    pub b1: Session,
    /// Undelivered genuine messages to Bob: `m1`, `m2`, `m3`.
    pub to_b: Vec<Genuine>,
    /// Undelivered genuine messages to Alice: `r0`, `r1`, `r3`.
    pub to_a: Vec<Genuine>,
}

fn send(s: &mut Session, text: &str) -> Genuine {
    let msg = s.encrypt(text.as_bytes()).expect("encrypt");
    Genuine {
        bytes: msg.encode(),
        plaintext: text.as_bytes().to_vec(),
    }
}

fn build() -> Fixture {
    let alice = identity("alice");
    let bob = identity("bob");
    let (mut store, published) = bob_store(&bob);
    let bundle = published.bundle(&bob, Some(0), 0);
    let verified = VerifiedBundle::verify(&bundle).expect("fixture bundle verifies");
    let mut rng = rng_from(b"fixture", b"handshake");

    let mut a0 =
        initiate(&mut rng, &alice, &to_bob(BOB_DEVICE), &verified, config()).expect("initiate");
    let m0 = send(&mut a0, "m0: hello Bob");
    let SessionMessage::PreKey(pkm) = SessionMessage::decode(&m0.bytes).expect("decode m0") else {
        panic!("first message is not a prekey message");
    };
    let (b0, text) =
        respond(&mut rng, &bob, &from_alice(), &mut store, &pkm, config()).expect("respond");
    assert_eq!(text, m0.plaintext);

    let mut a1 = dup(&a0);
    let mut b1 = dup(&b0);
    let m1 = send(&mut a1, "m1: still a prekey message");
    let m2 = send(&mut a1, "m2: so is this");
    let r: Vec<Genuine> = (0..4)
        .map(|i| send(&mut b1, &format!("r{i}: from Bob")))
        .collect();
    let got = a1
        .decrypt_bytes(&mut rng, &r[2].bytes)
        .expect("a1 decrypts r2");
    assert_eq!(got, r[2].plaintext);
    assert_eq!(a1.skipped_key_count(), 2);
    let m3 = send(&mut a1, "m3: a new chain");

    Fixture {
        alice,
        bob,
        published,
        bundle,
        a0,
        b0,
        m0,
        a1,
        b1,
        to_b: vec![m1, m2, m3],
        to_a: vec![r[0].clone(), r[1].clone(), r[3].clone()],
    }
}

/// The process-wide fixture (built on first use, ~1 ms).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

/// Both sides' safety numbers for Alice and Bob (costly to compute: built once).
pub struct Safety {
    pub alice_side: SafetyNumber,
    pub bob_side: SafetyNumber,
}

/// The process-wide safety numbers.
pub fn safety() -> &'static Safety {
    static S: OnceLock<Safety> = OnceLock::new();
    S.get_or_init(|| {
        let f = fixture();
        let (a, b) = (f.alice.public(), f.bob.public());
        let a_acct = AccountId::new("+15550000001").expect("account");
        let b_acct = AccountId::new("+15550000002").expect("account");
        Safety {
            alice_side: SafetyNumber::new(&a, &a_acct, &b, &b_acct),
            bob_side: SafetyNumber::new(&b, &b_acct, &a, &a_acct),
        }
    })
}
