//! Sealpost session benchmarks, each next to the bare primitive operations it performs and,
//! where a counterpart exists, next to vodozemac's Olm (v1, the version Matrix deploys).
//!
//! Everything runs in one binary so that the ratios between benchmarks are meaningful.
//! Run with `cargo bench -p sealpost-benches` (add e.g. `-- --measurement-time 3 --warm-up-time 1`
//! to keep it short, or a filter such as `-- ping_pong`). The workspace's
//! `--cfg poly1305_backend="soft"` (.cargo/config.toml) applies to Sealpost, the baselines and
//! vodozemac alike.
//!
//! | bench                            | one iteration                                               |
//! |----------------------------------|-------------------------------------------------------------|
//! | `handshake/initiate`             | `VerifiedBundle::verify` + `initiate` (no first encrypt)    |
//! | `handshake/primitives_initiator` | exactly the primitive calls of the above                    |
//! | `handshake/respond`              | `respond` to a decoded prekey message (fresh store each)    |
//! | `handshake/primitives_responder` | exactly the primitive calls of the above                    |
//! | `message_*/sealpost`             | encrypt + encode + decode + decrypt, one chain, no DH step  |
//! | `message_*/primitives`           | 6 HMAC-SHA256 (KDF_CK x2) + 2 nonce HMACs + ChaCha20-Poly1305 seal + open |
//! | `message_*/primitives_shared_hmac_key` | the same, KDF_CK keying HMAC once per chain step (as Sealpost does) |
//! | `message_*/vodozemac`            | Olm encrypt + to_parts + from_parts + decrypt, one chain    |
//! | `ping_pong/*`                    | one message, directions alternate: every one is a DH step   |
//! | `pickle/*`                       | pickle + unpickle of a session that exchanged a few messages|
//! | `primitive/*`                    | single primitive operations, for reading the above          |
//!
//! With `SEALPOST_BENCH_INTERLEAVED=1`, the `message_100B` and `ping_pong` ratios (Sealpost
//! over its primitives) are also measured by interleaving, after the criterion groups: 101
//! short rounds (a batch of about 10 ms of each, back to back, alternating which goes first),
//! the median per-round ratio printed with its min and max. This host's speed drifts between
//! criterion's sequential benches by more than the few percent being compared.

// This is a benchmark harness, not library code: a broken setup should panic loudly, and
// criterion's macros generate undocumented public items.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use chacha20poly1305::aead::{AeadInOut, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use criterion::{BatchSize, Criterion, criterion_group};
use hmac::Mac;
use libcrux_ml_kem::mlkem1024;
use rand::Rng as _;
use rand::rngs::ThreadRng;
use sealpost_session::{
    AccountId, DeviceAddress, DeviceId, IdentityKeyPair, KemPreKeyKind, PickleKey, PreKeyBundle,
    PreKeyMessage, PreKeyStore, Session, SessionAddresses, SessionConfig, SessionMessage,
    VerifiedBundle, initiate, respond,
};
use sealpost_wire::{KemPreKeyPublic, SignedPreKeyPublic};
use std::hint::black_box;
use x25519_dalek::{PublicKey, StaticSecret};

const NOW: u64 = 1_700_000_000;
/// The account ids of the benchmark's two devices (12 bytes each, like an E.164 number).
const ALICE: &str = "+15550000001";
const BOB: &str = "+15550000002";
/// Session AD (two 64-byte identities, two 17-byte addresses) + the 54-byte ratchet header.
const MESSAGE_AD_LEN: usize = 128 + 2 * (1 + 12 + 4) + 54;
/// The ratchet header fields the synthetic nonce covers: ratchet key, PN, N.
const HEADER_FIELDS_LEN: usize = 40;
const SMALL: usize = 100;
const LARGE: usize = 64 * 1024;

// The KDF constants of spec/session.md, restated for the primitive baselines.
const HANDSHAKE_INFO: &[u8] = sealpost_session::HANDSHAKE_INFO;
const KDF_RK_INFO: &[u8] = sealpost_session::KDF_RK_INFO;
const MK_BYTE: u8 = sealpost_session::MESSAGE_KEY_CONSTANT;
const CK_BYTE: u8 = sealpost_session::CHAIN_KEY_CONSTANT;
const NK_BYTE: u8 = sealpost_session::NONCE_KEY_CONSTANT;

fn address(account: &str) -> DeviceAddress {
    DeviceAddress::new(AccountId::new(account).unwrap(), DeviceId(1))
}

/// Alice's addresses (she initiates) or Bob's (he responds, expecting Alice).
fn addresses(alice_side: bool) -> SessionAddresses {
    if alice_side {
        SessionAddresses::new(address(ALICE), address(BOB))
    } else {
        SessionAddresses::new(address(BOB), address(ALICE))
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

// ---------------------------------------------------------------------------------------
// Sealpost set-up
// ---------------------------------------------------------------------------------------

/// A responder store with one signed prekey, one one-time X25519 prekey and one one-time
/// ML-KEM prekey, and the bundle a relay would hand out for it.
fn responder_store(rng: &mut ThreadRng, bob: &IdentityKeyPair) -> (PreKeyStore, PreKeyBundle) {
    let mut store = PreKeyStore::new();
    store.generate_signed_prekey(rng, bob, NOW);
    store.generate_one_time_prekeys(rng, 1);
    store.generate_kem_prekeys(rng, bob, KemPreKeyKind::OneTime, 1, NOW);
    let bundle = store.bundle(bob, 1, true).expect("complete store");
    (store, bundle)
}

/// Alice's session and the prekey message carrying her first (100-byte) message.
fn first_message(
    rng: &mut ThreadRng,
    alice: &IdentityKeyPair,
    bundle: &PreKeyBundle,
) -> (Session, PreKeyMessage) {
    let bundle = VerifiedBundle::verify(bundle).unwrap();
    let mut a = initiate(
        rng,
        alice,
        &addresses(true),
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();
    let SessionMessage::PreKey(pkm) = a.encrypt(&[0x61; SMALL]).unwrap() else {
        panic!("first message must be a prekey message");
    };
    (a, pkm)
}

/// One message from `from` to `to` through the wire encoding.
fn send(rng: &mut ThreadRng, from: &mut Session, to: &mut Session, pt: &[u8]) -> Vec<u8> {
    let bytes = from.encrypt(pt).unwrap().encode();
    let msg = SessionMessage::decode(&bytes).unwrap();
    to.decrypt(rng, &msg).unwrap()
}

/// An established pair: handshake, Bob's reply decrypted by Alice (so her messages are no
/// longer prekey messages), then one Alice -> Bob message so both sides sit on a current
/// chain: Alice sending, Bob receiving.
fn established_pair(rng: &mut ThreadRng) -> (Session, Session) {
    let alice = IdentityKeyPair::generate(rng);
    let bob = IdentityKeyPair::generate(rng);
    let (mut store, bundle) = responder_store(rng, &bob);
    let (mut a, pkm) = first_message(rng, &alice, &bundle);
    let (mut b, _) = respond(
        rng,
        &bob,
        &addresses(false),
        &mut store,
        &pkm,
        SessionConfig::default(),
    )
    .unwrap();
    send(rng, &mut b, &mut a, b"reply");
    assert!(!a.awaiting_reply());
    send(rng, &mut a, &mut b, b"steady");
    (a, b)
}

// ---------------------------------------------------------------------------------------
// vodozemac set-up
// ---------------------------------------------------------------------------------------

mod olm {
    pub use vodozemac::olm::{
        Account, InboundCreationResult, OlmMessage, Session, SessionConfig, SessionPickle,
    };

    /// An established Olm v1 pair in the same position as [`super::established_pair`].
    pub fn established_pair() -> (Session, Session) {
        let alice = Account::new();
        let mut bob = Account::new();
        bob.generate_one_time_keys(1);
        let otk = bob.one_time_keys().into_values().next().unwrap();
        bob.mark_keys_as_published();
        let mut a = alice
            .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
            .unwrap();
        let OlmMessage::PreKey(pkm) = a.encrypt([0x61; super::SMALL]).unwrap() else {
            panic!("first Olm message must be a prekey message");
        };
        let InboundCreationResult { session: mut b, .. } = bob
            .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &pkm)
            .unwrap();
        send(&mut b, &mut a, b"reply");
        send(&mut a, &mut b, b"steady");
        (a, b)
    }

    /// One message through the wire form (`to_parts` / `from_parts`).
    pub fn send(from: &mut Session, to: &mut Session, pt: &[u8]) -> Vec<u8> {
        let (ty, bytes) = from.encrypt(pt).unwrap().to_parts();
        let msg = OlmMessage::from_parts(ty, &bytes).unwrap();
        to.decrypt(&msg).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Primitive building blocks, called the way Sealpost calls them but with no framing,
// no allocation and no state management.
// ---------------------------------------------------------------------------------------

fn hmac_sha256(key: &[u8; 32], byte: u8) -> [u8; 32] {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key).unwrap();
    mac.update(&[byte]);
    mac.finalize().into_bytes().into()
}

/// KDF_CK v2 as three independent HMAC-SHA256 computations:
/// `(next chain key, message key, nonce key)`.
fn kdf_ck(ck: &[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    (
        hmac_sha256(ck, CK_BYTE),
        hmac_sha256(ck, MK_BYTE),
        hmac_sha256(ck, NK_BYTE),
    )
}

/// KDF_CK with the HMAC key schedule computed once and cloned (what
/// `sealpost_crypto::kdf::hmac_sha256_triple_into` does).
fn kdf_ck_shared_key_schedule(ck: &[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let keyed = <HmacSha256 as hmac::KeyInit>::new_from_slice(ck).unwrap();
    let run = |byte: u8| -> [u8; 32] {
        let mut mac = keyed.clone();
        mac.update(&[byte]);
        mac.finalize().into_bytes().into()
    };
    (run(CK_BYTE), run(MK_BYTE), run(NK_BYTE))
}

/// The synthetic nonce: HMAC-SHA256(nk, header fields || plaintext)[0..12].
fn siv(nk: &[u8; 32], fields: &[u8; HEADER_FIELDS_LEN], plaintext: &[u8]) -> [u8; 12] {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(nk).unwrap();
    mac.update(fields);
    mac.update(plaintext);
    let tag: [u8; 32] = mac.finalize().into_bytes().into();
    tag[..12].try_into().unwrap()
}

fn hkdf<const N: usize>(salt: &[u8; 32], ikm: &[u8], info: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .unwrap();
    out
}

/// KDF_RK: HKDF-SHA256(salt = rk, IKM = dh, L = 64) split into (root key, chain key).
fn kdf_rk(rk: &[u8; 32], dh: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let okm: [u8; 64] = hkdf(rk, dh, KDF_RK_INFO);
    let (a, b) = okm.split_at(32);
    (a.try_into().unwrap(), b.try_into().unwrap())
}

/// X25519 with the non-contributory check Sealpost applies.
fn dh(secret: &StaticSecret, public: &PublicKey) -> [u8; 32] {
    let shared = secret.diffie_hellman(public);
    assert!(shared.was_contributory());
    shared.to_bytes()
}

fn x25519_keygen(rng: &mut ThreadRng) -> (StaticSecret, PublicKey) {
    let secret = StaticSecret::random_from_rng(rng);
    let public = PublicKey::from(&secret);
    (secret, public)
}

fn seal(mk: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> Tag {
    ChaCha20Poly1305::new(&Key::from(*mk))
        .encrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into())
        .unwrap()
}

fn open(mk: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &Tag) {
    ChaCha20Poly1305::new(&Key::from(*mk))
        .decrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into(), tag)
        .unwrap();
}

/// A KDF_CK implementation: `ck -> (next chain key, message key, nonce key)`.
type KdfCk = fn(&[u8; 32]) -> ([u8; 32], [u8; 32], [u8; 32]);

/// One message's primitive work on the sending side: KDF_CK, the synthetic nonce over the
/// header fields and plaintext, the seal. Returns the tag and nonce.
fn send_primitives(
    kdf: KdfCk,
    ck: &mut [u8; 32],
    fields: &[u8; HEADER_FIELDS_LEN],
    ad: &[u8],
    buf: &mut [u8],
) -> (Tag, [u8; 12]) {
    let (next, mk, nk) = kdf(ck);
    *ck = next;
    let nonce = siv(&nk, fields, buf);
    (seal(&mk, &nonce, ad, buf), nonce)
}

/// The receiving side: KDF_CK, open, recompute and compare the synthetic nonce.
fn receive_primitives(
    kdf: KdfCk,
    ck: &mut [u8; 32],
    fields: &[u8; HEADER_FIELDS_LEN],
    ad: &[u8],
    buf: &mut [u8],
    tag: &Tag,
    nonce: &[u8; 12],
) {
    let (next, mk, nk) = kdf(ck);
    *ck = next;
    open(&mk, nonce, ad, buf, tag);
    assert!(bool::from(subtle::ConstantTimeEq::ct_eq(
        &siv(&nk, fields, buf)[..],
        &nonce[..]
    )));
}

/// SK = HKDF(salt = 0^32, IKM = 0xFF^32 || DH1..DH4 || SS (192 bytes), info || EK_A, 32).
fn derive_sk(dhs: [&[u8; 32]; 4], kem_ss: &[u8; 32], base_key: &[u8; 32]) -> [u8; 32] {
    let mut ikm = [0xFFu8; 192];
    for (chunk, part) in ikm
        .chunks_exact_mut(32)
        .skip(1)
        .zip(dhs.into_iter().chain([kem_ss]))
    {
        chunk.copy_from_slice(part);
    }
    let mut info = [0u8; 44 + 32];
    info[..44].copy_from_slice(HANDSHAKE_INFO);
    info[44..].copy_from_slice(base_key);
    hkdf(&[0u8; 32], &ikm, &info)
}

// ---------------------------------------------------------------------------------------
// 1. Handshake
// ---------------------------------------------------------------------------------------

fn handshake(c: &mut Criterion) {
    let mut rng = rand::rng();
    let mut setup_rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let (_store, bundle) = responder_store(&mut rng, &bob);
    let mut g = c.benchmark_group("handshake");

    g.bench_function("initiate", |b| {
        b.iter(|| {
            let verified = VerifiedBundle::verify(black_box(&bundle)).unwrap();
            initiate(
                &mut rng,
                &alice,
                &addresses(true),
                &verified,
                SessionConfig::default(),
            )
            .unwrap()
        });
    });

    // The initiator's primitive operations, counted from keys.rs (VerifiedBundle::verify),
    // handshake.rs (initiate_with_secrets, InitiatorSecrets::generate) and ratchet.rs
    // (RatchetState::init_initiator):
    //   Ed25519: decompress + weak-key check of the identity key, verify_strict x2
    //            (100-byte signed-prekey message, 1634-byte KEM-prekey message);
    //   ML-KEM-1024: public-key validation, encapsulation;
    //   X25519: 2 key generations (base key, first ratchet key), 5 DH (DH1..DH4 with a
    //           one-time prekey, + the root DH of init_initiator);
    //   HKDF-SHA256: SK (192-byte IKM, 32 out), KDF_RK (64 out); 96 bytes of randomness.
    {
        let spk = &bundle.signed_prekey;
        let kpk = &bundle.kem_prekey;
        let spk_msg = SignedPreKeyPublic::signed_bytes(
            &bundle.identity.dh,
            spk.id,
            spk.created_at,
            &spk.public,
        );
        let kpk_msg = KemPreKeyPublic::signed_bytes(
            &bundle.identity.dh,
            kpk.id,
            kpk.kind,
            kpk.created_at,
            &kpk.public,
        );
        assert_eq!((spk_msg.len(), kpk_msg.len()), (100, 1634));
        let spk_sig = ed25519_dalek::Signature::from_bytes(&spk.signature);
        let kpk_sig = ed25519_dalek::Signature::from_bytes(&kpk.signature);
        let ik_b_sign = bundle.identity.signing;
        let ik_b = PublicKey::from(bundle.identity.dh);
        let spk_b = PublicKey::from(spk.public);
        let opk_b = PublicKey::from(bundle.one_time_prekey.unwrap().1);
        let ik_a = ik_a_secret_for_baseline(&alice);
        let kem_pk_bytes: &[u8; 1568] = &kpk.public;

        g.bench_function("primitives_initiator", |b| {
            b.iter(|| {
                let vk = ed25519_dalek::VerifyingKey::from_bytes(black_box(&ik_b_sign)).unwrap();
                assert!(!vk.is_weak());
                vk.verify_strict(black_box(&spk_msg), &spk_sig).unwrap();
                vk.verify_strict(black_box(&kpk_msg), &kpk_sig).unwrap();
                let kem_pk = mlkem1024::MlKem1024PublicKey::from(black_box(kem_pk_bytes));
                assert!(mlkem1024::validate_public_key(&kem_pk));

                let (ek, ek_pub) = x25519_keygen(&mut rng);
                let (ratchet, ratchet_pub) = x25519_keygen(&mut rng);
                let mut m = [0u8; 32];
                rng.fill_bytes(&mut m);
                let dh1 = dh(&ik_a, &spk_b);
                let dh2 = dh(&ek, &ik_b);
                let dh3 = dh(&ek, &spk_b);
                let dh4 = dh(&ek, &opk_b);
                let (kem_ct, kem_ss) = mlkem1024::encapsulate(&kem_pk, m);
                let sk = derive_sk([&dh1, &dh2, &dh3, &dh4], &kem_ss, ek_pub.as_bytes());
                let (rk, cks) = kdf_rk(&sk, &dh(&ratchet, &spk_b));
                (ek_pub, ratchet_pub, kem_ct, rk, cks)
            });
        });
    }

    g.bench_function("respond", |b| {
        b.iter_batched_ref(
            || {
                let (store, bundle) = responder_store(&mut setup_rng, &bob);
                let (_, pkm) = first_message(&mut setup_rng, &alice, &bundle);
                (store, pkm)
            },
            |(store, pkm)| {
                respond(
                    &mut rng,
                    &bob,
                    &addresses(false),
                    store,
                    pkm,
                    SessionConfig::default(),
                )
                .unwrap()
            },
            BatchSize::SmallInput,
        );
    });

    // The responder's primitive operations (handshake.rs respond, then the DH-ratchet step
    // of ratchet.rs decrypt for the embedded 100-byte first message):
    //   Ed25519: decompress + weak-key check of the initiator's identity key;
    //   X25519: 4 DH (DH1..DH4), then the DH ratchet: 1 key generation + 2 DH;
    //   ML-KEM-1024: decapsulation;
    //   HKDF-SHA256: SK (192-byte IKM), KDF_RK x2 (64 out); KDF_CK (3 HMAC-SHA256);
    //   ChaCha20-Poly1305: open of 100 bytes (+16 tag) with a 216-byte AD; the synthetic
    //   nonce check (1 HMAC-SHA256 over 140 bytes).
    {
        let ik_a_sign = alice.public().signing_key().to_bytes();
        let ik_a = PublicKey::from(alice.public().dh_key().to_bytes());
        let ik_b = StaticSecret::random_from_rng(&mut rng);
        let spk_b = StaticSecret::random_from_rng(&mut rng);
        let opk_b = StaticSecret::random_from_rng(&mut rng);
        let (ek_a, ek_a_pub) = x25519_keygen(&mut rng);
        let (_, ratchet_a_pub) = x25519_keygen(&mut rng);
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let (kem_sk, kem_pk) = mlkem1024::generate_key_pair(seed).into_parts();
        let (kem_ct, kem_ss) = mlkem1024::encapsulate(&kem_pk, [7; 32]);
        // The initiator's view, to build a first message the baseline must really open.
        let sk = derive_sk(
            [
                &dh(&ik_a_secret_for_baseline(&alice), &PublicKey::from(&spk_b)),
                &dh(&ek_a, &PublicKey::from(&ik_b)),
                &dh(&ek_a, &PublicKey::from(&spk_b)),
                &dh(&ek_a, &PublicKey::from(&opk_b)),
            ],
            &kem_ss,
            ek_a_pub.as_bytes(),
        );
        let ad = [0x42u8; MESSAGE_AD_LEN];
        let fields = [0x24u8; HEADER_FIELDS_LEN];
        let mut first = [0x61u8; SMALL];
        let (first_tag, first_nonce) = {
            let (_, mut ckr) = kdf_rk(&sk, &dh(&spk_b, &ratchet_a_pub));
            send_primitives(kdf_ck, &mut ckr, &fields, &ad, &mut first)
        };

        g.bench_function("primitives_responder", |b| {
            b.iter(|| {
                let vk = ed25519_dalek::VerifyingKey::from_bytes(black_box(&ik_a_sign)).unwrap();
                assert!(!vk.is_weak());
                let dh1 = dh(&spk_b, &ik_a);
                let dh2 = dh(&ik_b, &ek_a_pub);
                let dh3 = dh(&spk_b, &ek_a_pub);
                let dh4 = dh(&opk_b, &ek_a_pub);
                let kem_ss = mlkem1024::decapsulate(&kem_sk, black_box(&kem_ct));
                let sk = derive_sk([&dh1, &dh2, &dh3, &dh4], &kem_ss, ek_a_pub.as_bytes());
                // DH ratchet on the first message.
                let (rk1, mut ckr) = kdf_rk(&sk, &dh(&spk_b, &ratchet_a_pub));
                let (new_dhs, new_pub) = x25519_keygen(&mut rng);
                let (rk2, cks) = kdf_rk(&rk1, &dh(&new_dhs, &ratchet_a_pub));
                let mut body = first;
                receive_primitives(
                    kdf_ck,
                    &mut ckr,
                    &fields,
                    &ad,
                    &mut body,
                    &first_tag,
                    &first_nonce,
                );
                (body, new_pub, rk2, cks, ckr)
            });
        });
    }
    g.finish();
}

/// Alice's X25519 identity secret, for the baselines' DH1.
fn ik_a_secret_for_baseline(alice: &IdentityKeyPair) -> StaticSecret {
    let secret = alice.to_secret_bytes();
    let (_, dh_secret) = secret.split_at(32);
    StaticSecret::from(<[u8; 32]>::try_from(dh_secret).unwrap())
}

// ---------------------------------------------------------------------------------------
// 2. and 4. One chain, no DH ratchet step
// ---------------------------------------------------------------------------------------

/// One iteration of `message_*/sealpost`: encrypt, encode, decode, decrypt.
fn sealpost_message(rng: &mut ThreadRng, a: &mut Session, b: &mut Session, pt: &[u8]) -> Vec<u8> {
    let bytes = a.encrypt(black_box(pt)).unwrap().encode();
    let msg = SessionMessage::decode(black_box(&bytes)).unwrap();
    b.decrypt(rng, &msg).unwrap()
}

/// Both ends of one chain built from the bare primitives.
struct RawChain {
    ad: [u8; MESSAGE_AD_LEN],
    fields: [u8; HEADER_FIELDS_LEN],
    buf: Vec<u8>,
    ck_send: [u8; 32],
    ck_recv: [u8; 32],
}

impl RawChain {
    fn new(len: usize) -> Self {
        Self {
            ad: [0x42; MESSAGE_AD_LEN],
            fields: [0x24; HEADER_FIELDS_LEN],
            buf: vec![0; len],
            ck_send: [0x11; 32],
            ck_recv: [0x11; 32],
        }
    }

    /// One iteration of `message_*/primitives*`: KDF_CK, synthetic nonce, seal; KDF_CK,
    /// open, synthetic nonce check.
    fn message(&mut self, kdf: KdfCk, pt: &[u8]) {
        self.buf.copy_from_slice(black_box(pt));
        let (tag, nonce) = send_primitives(
            kdf,
            &mut self.ck_send,
            &self.fields,
            &self.ad,
            &mut self.buf,
        );
        receive_primitives(
            kdf,
            &mut self.ck_recv,
            &self.fields,
            &self.ad,
            black_box(&mut self.buf),
            &tag,
            &nonce,
        );
    }
}

fn one_chain(c: &mut Criterion, group: &str, len: usize) {
    let mut rng = rand::rng();
    let pt = vec![0x61u8; len];
    let mut g = c.benchmark_group(group);

    {
        let (mut a, mut b) = established_pair(&mut rng);
        g.bench_function("sealpost", |bench| {
            bench.iter(|| sealpost_message(&mut rng, &mut a, &mut b, &pt));
        });
        assert_eq!(b.skipped_key_count(), 0);
    }

    {
        let mut raw = RawChain::new(len);
        g.bench_function("primitives", |bench| {
            bench.iter(|| raw.message(kdf_ck, &pt));
        });
        // Same, with KDF_CK sharing the HMAC key schedule as Sealpost's implementation does.
        g.bench_function("primitives_shared_hmac_key", |bench| {
            bench.iter(|| raw.message(kdf_ck_shared_key_schedule, &pt));
        });
    }

    {
        let (mut a, mut b) = olm::established_pair();
        g.bench_function("vodozemac", |bench| {
            bench.iter(|| {
                let (ty, bytes) = a.encrypt(black_box(&pt)).unwrap().to_parts();
                let msg = olm::OlmMessage::from_parts(ty, black_box(&bytes)).unwrap();
                b.decrypt(&msg).unwrap()
            });
        });
    }
    g.finish();
}

fn message_100b(c: &mut Criterion) {
    one_chain(c, "message_100B", SMALL);
}

fn message_64kib(c: &mut Criterion) {
    one_chain(c, "message_64KiB", LARGE);
}

// ---------------------------------------------------------------------------------------
// 3. Ping-pong: every message starts a new chain (one DH ratchet step per message)
// ---------------------------------------------------------------------------------------

/// One side of a minimal Double Ratchet built from the bare primitives.
struct RawSide {
    dhs: StaticSecret,
    dhs_pub: PublicKey,
    rk: [u8; 32],
    cks: [u8; 32],
}

/// One iteration of `ping_pong/sealpost`: the two sides take turns, so every message is a
/// DH ratchet step for its receiver.
fn sealpost_ping_pong(
    rng: &mut ThreadRng,
    sides: &mut [Session; 2],
    turn: &mut usize,
    pt: &[u8],
) -> Vec<u8> {
    let [a, b] = sides;
    let (from, to) = if *turn == 0 { (a, b) } else { (b, a) };
    *turn ^= 1;
    let bytes = from.encrypt(black_box(pt)).unwrap().encode();
    let msg = SessionMessage::decode(black_box(&bytes)).unwrap();
    to.decrypt(rng, &msg).unwrap()
}

/// Two parties of a real (if frameless) Double Ratchet built from the bare primitives, so
/// every open has to verify.
struct RawPingPong {
    sides: [RawSide; 2],
    turn: usize,
    ad: [u8; MESSAGE_AD_LEN],
    fields: [u8; HEADER_FIELDS_LEN],
    buf: [u8; SMALL],
}

impl RawPingPong {
    fn new(rng: &mut ThreadRng) -> Self {
        let (a_dhs, a_pub) = x25519_keygen(rng);
        let (b_dhs, b_pub) = x25519_keygen(rng);
        let sk = [0x33u8; 32];
        // RatchetInitAlice / RatchetInitBob.
        let (rk, cks) = kdf_rk(&sk, &dh(&a_dhs, &b_pub));
        Self {
            sides: [
                RawSide {
                    dhs: a_dhs,
                    dhs_pub: a_pub,
                    rk,
                    cks,
                },
                RawSide {
                    dhs: b_dhs,
                    dhs_pub: b_pub,
                    rk: sk,
                    cks: [0; 32],
                },
            ],
            turn: 0,
            ad: [0x42; MESSAGE_AD_LEN],
            fields: [0x24; HEADER_FIELDS_LEN],
            buf: [0; SMALL],
        }
    }

    /// One iteration of `ping_pong/primitives`: the sender's KDF_CK + synthetic nonce +
    /// seal; the receiver's DH ratchet (1 X25519 key generation, 2 DH, 2 KDF_RK) + KDF_CK +
    /// open + nonce check.
    fn step(&mut self, rng: &mut ThreadRng, pt: &[u8; SMALL]) {
        let [a, b] = &mut self.sides;
        let (from, to) = if self.turn == 0 { (a, b) } else { (b, a) };
        self.turn ^= 1;
        // Sender.
        self.buf.copy_from_slice(black_box(pt));
        let (tag, nonce) =
            send_primitives(kdf_ck, &mut from.cks, &self.fields, &self.ad, &mut self.buf);
        // Receiver: DH ratchet step, then KDF_CK, open and nonce check.
        let their = from.dhs_pub;
        let (rk1, mut ckr) = kdf_rk(&to.rk, &dh(&to.dhs, &their));
        let (new_dhs, new_pub) = x25519_keygen(rng);
        let (rk2, cks) = kdf_rk(&rk1, &dh(&new_dhs, &their));
        receive_primitives(
            kdf_ck,
            &mut ckr,
            &self.fields,
            &self.ad,
            black_box(&mut self.buf),
            &tag,
            &nonce,
        );
        to.dhs = new_dhs;
        to.dhs_pub = new_pub;
        to.rk = rk2;
        to.cks = cks;
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut rng = rand::rng();
    let pt = [0x61u8; SMALL];
    let mut g = c.benchmark_group("ping_pong");

    {
        let (a, b) = established_pair(&mut rng);
        let mut sides = [a, b];
        let mut turn = 0usize;
        g.bench_function("sealpost", |bench| {
            bench.iter(|| sealpost_ping_pong(&mut rng, &mut sides, &mut turn, &pt));
        });
        let [a, b] = &sides;
        assert_eq!(a.skipped_key_count() + b.skipped_key_count(), 0);
    }

    {
        let mut raw = RawPingPong::new(&mut rng);
        g.bench_function("primitives", |bench| {
            bench.iter(|| raw.step(&mut rng, &pt));
        });
    }

    {
        let (a, b) = olm::established_pair();
        let mut sides = [a, b];
        let mut turn = 0usize;
        g.bench_function("vodozemac", |bench| {
            bench.iter(|| {
                let [a, b] = &mut sides;
                let (from, to) = if turn == 0 { (a, b) } else { (b, a) };
                turn ^= 1;
                let (ty, bytes) = from.encrypt(black_box(&pt)).unwrap().to_parts();
                let msg = olm::OlmMessage::from_parts(ty, black_box(&bytes)).unwrap();
                to.decrypt(&msg).unwrap()
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// 5. Pickle
// ---------------------------------------------------------------------------------------

fn pickle(c: &mut Criterion) {
    let mut rng = rand::rng();
    let mut g = c.benchmark_group("pickle");

    {
        // A few messages both ways, then two one-way: no skipped keys, both chains live.
        let (mut a, mut b) = established_pair(&mut rng);
        for _ in 0..3 {
            send(&mut rng, &mut a, &mut b, b"ping");
            send(&mut rng, &mut b, &mut a, b"pong");
        }
        send(&mut rng, &mut a, &mut b, b"one");
        send(&mut rng, &mut a, &mut b, b"two");
        let key = PickleKey::new([0x55; 32]);
        let len = a.pickle(&mut rng, &key).len();
        g.bench_function("sealpost", |bench| {
            bench.iter(|| {
                let p = a.pickle(&mut rng, &key);
                Session::unpickle(black_box(&p), &key).unwrap()
            });
        });
        eprintln!("pickle/sealpost: pickle is {len} bytes");
    }

    {
        let (mut a, mut b) = olm::established_pair();
        for _ in 0..3 {
            olm::send(&mut a, &mut b, b"ping");
            olm::send(&mut b, &mut a, b"pong");
        }
        olm::send(&mut a, &mut b, b"one");
        olm::send(&mut a, &mut b, b"two");
        let key = [0x55u8; 32];
        let len = a.pickle().encrypt(&key).len();
        g.bench_function("vodozemac", |bench| {
            bench.iter(|| {
                let p = a.pickle().encrypt(&key);
                let restored = olm::SessionPickle::from_encrypted(black_box(&p), &key).unwrap();
                olm::Session::from_pickle(restored)
            });
        });
        eprintln!("pickle/vodozemac: pickle is {len} characters (base64)");
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// 6. Single primitive operations, to read the composite numbers against
// ---------------------------------------------------------------------------------------

fn single_primitives(c: &mut Criterion) {
    let mut rng = rand::rng();
    let mut g = c.benchmark_group("primitive");
    let (secret, public) = x25519_keygen(&mut rng);
    g.bench_function("x25519_dh", |b| b.iter(|| dh(&secret, black_box(&public))));
    g.bench_function("x25519_keygen", |b| b.iter(|| x25519_keygen(&mut rng).1));

    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let msg = [0x61u8; 100];
    let sig = ed25519_dalek::Signer::sign(&signing, &msg);
    let vk_bytes = signing.verifying_key().to_bytes();
    g.bench_function("ed25519_decompress_verify_strict_100B", |b| {
        b.iter(|| {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(black_box(&vk_bytes)).unwrap();
            vk.verify_strict(black_box(&msg), &sig).unwrap();
        });
    });

    let (kem_sk, kem_pk) = mlkem1024::generate_key_pair([9; 64]).into_parts();
    let (kem_ct, _) = mlkem1024::encapsulate(&kem_pk, [7; 32]);
    g.bench_function("mlkem1024_validate_encapsulate", |b| {
        b.iter(|| {
            assert!(mlkem1024::validate_public_key(black_box(&kem_pk)));
            mlkem1024::encapsulate(&kem_pk, [7; 32])
        });
    });
    g.bench_function("mlkem1024_decapsulate", |b| {
        b.iter(|| mlkem1024::decapsulate(&kem_sk, black_box(&kem_ct)));
    });

    let key = [0x11u8; 32];
    g.bench_function("hkdf_sha256_64B", |b| {
        b.iter(|| kdf_rk(black_box(&key), &key))
    });
    g.bench_function("hmac_sha256", |b| {
        b.iter(|| hmac_sha256(black_box(&key), 1))
    });
    let ad = [0x42u8; MESSAGE_AD_LEN];
    let mut buf = [0x61u8; SMALL];
    g.bench_function("chacha20poly1305_seal_100B", |b| {
        b.iter(|| seal(&key, &[0; 12], &ad, black_box(&mut buf)));
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// 7. Interleaved ratios (SEALPOST_BENCH_INTERLEAVED=1)
// ---------------------------------------------------------------------------------------

/// Rounds of the interleaved comparison.
const INTERLEAVED_ROUNDS: usize = 101;
/// Turns on the interleaved comparison after the criterion groups.
const INTERLEAVED_ENV: &str = "SEALPOST_BENCH_INTERLEAVED";

/// Mean time of one call of `f` over `iters` calls, in nanoseconds.
fn time_per_iter(iters: u32, f: &mut dyn FnMut()) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(iters)
}

/// Times `sealpost` and `baseline` in `INTERLEAVED_ROUNDS` rounds of `iters` calls each,
/// back to back, alternating which goes first, and prints the median of the per-round
/// ratios with their min and max.
fn interleaved(name: &str, iters: u32, sealpost: &mut dyn FnMut(), baseline: &mut dyn FnMut()) {
    // Warm-up, untimed.
    time_per_iter(iters / 10 + 1, sealpost);
    time_per_iter(iters / 10 + 1, baseline);
    let mut rounds = Vec::with_capacity(INTERLEAVED_ROUNDS);
    for round in 0..INTERLEAVED_ROUNDS {
        let (s, b) = if round % 2 == 0 {
            let s = time_per_iter(iters, sealpost);
            (s, time_per_iter(iters, baseline))
        } else {
            let b = time_per_iter(iters, baseline);
            (time_per_iter(iters, sealpost), b)
        };
        rounds.push((s / b, s, b));
    }
    rounds.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (median, s, b) = *rounds.get(rounds.len() / 2).unwrap();
    let (min, max) = (rounds.first().unwrap().0, rounds.last().unwrap().0);
    eprintln!(
        "interleaved {name}: sealpost/primitives {median:.3} median of {INTERLEAVED_ROUNDS} rounds \
         (min {min:.3}, max {max:.3}; median round {:.2} us / {:.2} us)",
        s / 1e3,
        b / 1e3
    );
}

/// The Sealpost/primitives ratios of `message_100B` (against the shared-HMAC-key baseline)
/// and `ping_pong`, measured by interleaving: criterion measures each bench for seconds, one
/// after the other, and this virtual machine's speed drifts between them by more than the
/// few percent being compared. Same iteration bodies as the criterion benches.
fn interleaved_ratios() {
    let mut rng = rand::rng();
    let pt = [0x61u8; SMALL];
    {
        let (mut a, mut b) = established_pair(&mut rng);
        let mut rng2 = rand::rng();
        let mut raw = RawChain::new(SMALL);
        interleaved(
            "message_100B",
            4_000,
            &mut || {
                black_box(sealpost_message(&mut rng2, &mut a, &mut b, &pt));
            },
            &mut || raw.message(kdf_ck_shared_key_schedule, &pt),
        );
    }
    {
        let (a, b) = established_pair(&mut rng);
        let mut sides = [a, b];
        let mut turn = 0usize;
        let mut rng2 = rand::rng();
        let mut raw = RawPingPong::new(&mut rng);
        interleaved(
            "ping_pong",
            80,
            &mut || {
                black_box(sealpost_ping_pong(&mut rng2, &mut sides, &mut turn, &pt));
            },
            &mut || raw.step(&mut rng, &pt),
        );
    }
}

criterion_group!(
    benches,
    handshake,
    message_100b,
    ping_pong,
    message_64kib,
    pickle,
    single_primitives
);

fn main() {
    benches();
    if std::env::var_os(INTERLEAVED_ENV).is_some() {
        interleaved_ratios();
    }
    Criterion::default().configure_from_args().final_summary();
}
