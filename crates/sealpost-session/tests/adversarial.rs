//! Every bad input returns a typed error and leaves the session exactly as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Device, NOW, addrs, assert_noop, established, established_between};
use sealpost_session::{
    DecryptError, HandshakeError, KemPreKeyKind, PickleError, PickleKey, PreKeyBundle, Session,
    SessionConfig, SessionMessage, VerifiedBundle, hazmat, initiate, respond,
};
use sealpost_wire::{DecodeError, RatchetMessage};

fn ratchet(msg: SessionMessage) -> RatchetMessage {
    match msg {
        SessionMessage::Ratchet(m) => m,
        SessionMessage::PreKey(m) => m.message,
    }
}

#[test]
fn long_conversation_both_directions() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    for round in 0..50u32 {
        // Alternate bursts of different lengths in both directions.
        for i in 0..(round % 4) + 1 {
            let text = format!("a->b {round}/{i}");
            let m = a.encrypt(text.as_bytes()).unwrap();
            assert_eq!(
                b.decrypt_bytes(&mut rng, &m.encode()).unwrap(),
                text.as_bytes()
            );
        }
        for i in 0..(round % 3) + 1 {
            let text = format!("b->a {round}/{i}");
            let m = b.encrypt(text.as_bytes()).unwrap();
            assert_eq!(
                a.decrypt_bytes(&mut rng, &m.encode()).unwrap(),
                text.as_bytes()
            );
        }
    }
    assert_eq!(a.skipped_key_count(), 0);
    assert_eq!(b.skipped_key_count(), 0);
}

#[test]
fn tampered_ciphertext_header_and_tag_are_noops() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let good = a.encrypt(b"order #77").unwrap().encode();
    // Flip every single bit position in a sample of bytes across header, body and tag.
    for pos in (0..good.len()).step_by(3) {
        for bit in [0u8, 3, 7] {
            let mut bad = good.clone();
            bad[pos] ^= 1 << bit;
            let err = assert_noop(&mut b, |s| s.decrypt_bytes(&mut rng, &bad));
            assert!(
                matches!(
                    err,
                    DecryptError::Authentication
                        | DecryptError::Decode(_)
                        | DecryptError::TooManySkipped { .. }
                        | DecryptError::NonContributory
                ),
                "pos {pos} bit {bit}: {err:?}"
            );
        }
    }
    // The genuine message still decrypts afterwards.
    assert_eq!(b.decrypt_bytes(&mut rng, &good).unwrap(), b"order #77");
}

#[test]
fn tampered_header_fields_fail_authentication() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let m = ratchet(a.encrypt(b"x").unwrap());
    let mut pn = m.clone();
    pn.previous_chain_length += 1;
    let mut n = m.clone();
    n.message_number += 1;
    for bad in [pn, n] {
        let err = assert_noop(&mut b, |s| {
            s.decrypt(&mut rng, &SessionMessage::Ratchet(bad.clone()))
        });
        assert_eq!(err, DecryptError::Authentication);
    }
    // The skipped key for message 0 was not stored by the failed attempt.
    assert_eq!(b.skipped_key_count(), 0);
    assert_eq!(
        b.decrypt(&mut rng, &SessionMessage::Ratchet(m)).unwrap(),
        b"x"
    );
}

#[test]
fn replay_and_duplicates_are_rejected() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let m1 = a.encrypt(b"one").unwrap();
    let m2 = a.encrypt(b"two").unwrap();
    b.decrypt(&mut rng, &m2).unwrap(); // m1 becomes a skipped key
    b.decrypt(&mut rng, &m1).unwrap();
    for m in [&m1, &m2] {
        let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, m));
        assert!(matches!(err, DecryptError::Duplicate { .. }), "{err:?}");
    }
    // Replays of a previous chain after a DH ratchet step are also duplicates.
    let r = b.encrypt(b"reply").unwrap();
    a.decrypt(&mut rng, &r).unwrap();
    let m3 = a.encrypt(b"three").unwrap();
    b.decrypt(&mut rng, &m3).unwrap();
    let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, &m1));
    assert!(matches!(err, DecryptError::Duplicate { .. }), "{err:?}");
}

#[test]
fn skip_beyond_max_skip_is_rejected_then_within_bound_accepted() {
    let mut rng = rand::rng();
    let config = SessionConfig::new(10, 20).unwrap();
    let (mut a, mut b) = established(config);
    let msgs: Vec<_> = (0..12)
        .map(|i| a.encrypt(format!("m{i}").as_bytes()).unwrap())
        .collect();
    let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, &msgs[11]));
    assert_eq!(
        err,
        DecryptError::TooManySkipped {
            skipped: 11,
            max_skip: 10
        }
    );
    assert_eq!(b.decrypt(&mut rng, &msgs[10]).unwrap(), b"m10");
    assert_eq!(b.skipped_key_count(), 10);
    for i in [3usize, 0, 9, 11, 5] {
        assert_eq!(
            b.decrypt(&mut rng, &msgs[i]).unwrap(),
            format!("m{i}").as_bytes()
        );
    }
    assert_eq!(b.skipped_key_count(), 6);
}

#[test]
fn skip_across_a_dh_ratchet_respects_bounds_and_total_cap_evicts_oldest() {
    let mut rng = rand::rng();
    let config = SessionConfig::new(5, 6).unwrap();
    let (mut a, mut b) = established(config);
    // Chain 1: a sends 5, b receives only the last => 4 skipped.
    let c1: Vec<_> = (0..5)
        .map(|i| a.encrypt(format!("c1-{i}").as_bytes()).unwrap())
        .collect();
    b.decrypt(&mut rng, &c1[4]).unwrap();
    assert_eq!(b.skipped_key_count(), 4);
    // b replies, a ratchets; a's next chain: b receives message 3 => 3 more skipped; the
    // total cap of 6 evicts the oldest one (c1-0).
    let r = b.encrypt(b"r").unwrap();
    a.decrypt(&mut rng, &r).unwrap();
    let c2: Vec<_> = (0..4)
        .map(|i| a.encrypt(format!("c2-{i}").as_bytes()).unwrap())
        .collect();
    b.decrypt(&mut rng, &c2[3]).unwrap();
    assert_eq!(b.skipped_key_count(), 6);
    let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, &c1[0]));
    assert!(matches!(err, DecryptError::Duplicate { .. }), "{err:?}");
    for (m, t) in [
        (&c1[1], "c1-1"),
        (&c2[0], "c2-0"),
        (&c1[3], "c1-3"),
        (&c2[2], "c2-2"),
    ] {
        assert_eq!(b.decrypt(&mut rng, m).unwrap(), t.as_bytes());
    }
    // A new chain whose PN claims more skipped messages on the old chain than allowed.
    let (mut a, mut b) = established(config);
    let old: Vec<_> = (0..7).map(|_| a.encrypt(b"o").unwrap()).collect();
    let r = b.encrypt(b"r").unwrap();
    a.decrypt(&mut rng, &r).unwrap();
    let new = a.encrypt(b"n").unwrap();
    let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, &new));
    assert!(
        matches!(
            err,
            DecryptError::TooManySkipped {
                skipped: 7,
                max_skip: 5
            }
        ),
        "{err:?}"
    );
    drop(old);
}

#[test]
fn truncated_and_overlong_messages_are_noops() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let good = a.encrypt(b"truncate me").unwrap().encode();
    for cut in 0..good.len() {
        let err = assert_noop(&mut b, |s| s.decrypt_bytes(&mut rng, &good[..cut]));
        assert!(
            matches!(err, DecryptError::Decode(_) | DecryptError::Authentication),
            "cut {cut}: {err:?}"
        );
    }
    let mut long = good.clone();
    long.extend_from_slice(&[0u8; 7]);
    assert_eq!(
        assert_noop(&mut b, |s| s.decrypt_bytes(&mut rng, &long)),
        DecryptError::Authentication
    );
    let huge = vec![0u8; sealpost_wire::MAX_SESSION_MESSAGE_LEN + 1];
    assert!(matches!(
        assert_noop(&mut b, |s| s.decrypt_bytes(&mut rng, &huge)),
        DecryptError::Decode(DecodeError::TooLong { .. })
    ));
    assert_eq!(b.decrypt_bytes(&mut rng, &good).unwrap(), b"truncate me");
}

#[test]
fn small_order_and_zero_ratchet_keys_are_rejected() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let m = ratchet(a.encrypt(b"x").unwrap());
    let mut one = [0u8; 32];
    one[0] = 1;
    for key in [[0u8; 32], one] {
        let mut bad = m.clone();
        bad.ratchet_key = key;
        let err = assert_noop(&mut b, |s| {
            s.decrypt(&mut rng, &SessionMessage::Ratchet(bad))
        });
        assert_eq!(err, DecryptError::NonContributory);
    }
}

#[test]
fn reflected_message_is_rejected() {
    let mut rng = rand::rng();
    let (mut a, _b) = established(SessionConfig::default());
    let own = a.encrypt(b"to myself").unwrap();
    let err = assert_noop(&mut a, |s| s.decrypt(&mut rng, &own));
    assert_eq!(err, DecryptError::Reflected);
}

#[test]
fn message_from_an_older_session_is_rejected() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    let (mut a_old, mut b_old) =
        established_between(&mut rng, &alice, &mut bob, SessionConfig::default());
    let old_msg = a_old.encrypt(b"old").unwrap();
    let (_a_new, mut b_new) =
        established_between(&mut rng, &alice, &mut bob, SessionConfig::default());
    let err = assert_noop(&mut b_new, |s| s.decrypt(&mut rng, &old_msg));
    assert_eq!(err, DecryptError::Authentication);
    // The old session itself still works.
    assert_eq!(b_old.decrypt(&mut rng, &old_msg).unwrap(), b"old");
}

#[test]
fn wrong_identity_in_ad_fails() {
    // A session between other identities (different AD) cannot decrypt.
    let mut rng = rand::rng();
    let (mut a, _b) = established(SessionConfig::default());
    let (_c, mut d) = established(SessionConfig::default());
    let m = a.encrypt(b"for b only").unwrap();
    let err = assert_noop(&mut d, |s| s.decrypt(&mut rng, &m));
    assert!(matches!(err, DecryptError::Authentication), "{err:?}");
}

#[test]
fn prekey_message_for_another_session_is_wrong_session() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    let bundle =
        VerifiedBundle::verify(&bob.store.bundle(&bob.identity, 1, true).unwrap()).unwrap();
    let mut a1 = initiate(
        &mut rng,
        &alice.identity,
        &addrs(&alice, &bob),
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();
    let mut a2 = initiate(
        &mut rng,
        &alice.identity,
        &addrs(&alice, &bob),
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();
    let SessionMessage::PreKey(first) = a1.encrypt(b"1").unwrap() else {
        panic!()
    };
    let (mut b1, _) = respond(
        &mut rng,
        &bob.identity,
        &addrs(&bob, &alice),
        &mut bob.store,
        &first,
        SessionConfig::default(),
    )
    .unwrap();
    // A second prekey message of the same session is routed by base key and decrypts.
    let again = a1.encrypt(b"1b").unwrap();
    assert!(matches!(again, SessionMessage::PreKey(_)));
    assert_eq!(b1.decrypt(&mut rng, &again).unwrap(), b"1b");
    // One from a different handshake is refused by this session.
    let other = a2.encrypt(b"2").unwrap();
    assert_eq!(
        assert_noop(&mut b1, |s| s.decrypt(&mut rng, &other)),
        DecryptError::WrongSession
    );
}

/// Runs `respond` on a message that must be refused, returning the error.
fn reject(bob: &mut Device, from: &Device, m: &sealpost_session::PreKeyMessage) -> HandshakeError {
    let mut rng = rand::rng();
    let addresses = addrs(bob, from);
    respond(
        &mut rng,
        &bob.identity,
        &addresses,
        &mut bob.store,
        m,
        SessionConfig::default(),
    )
    .unwrap_err()
}

fn fresh_bundle(bob: &Device) -> PreKeyBundle {
    bob.store.bundle(&bob.identity, 1, true).unwrap()
}

#[test]
fn bad_bundle_signatures_and_substituted_identity_are_rejected() {
    let mut rng = rand::rng();
    let bob = Device::new(&mut rng);
    let mallory = Device::new(&mut rng);
    let good = fresh_bundle(&bob);
    VerifiedBundle::verify(&good).unwrap();

    let mut bad = good.clone();
    bad.signed_prekey.signature[0] ^= 1;
    assert_eq!(
        VerifiedBundle::verify(&bad).unwrap_err(),
        HandshakeError::BadSignedPreKeySignature(good.signed_prekey.id)
    );
    let mut bad = good.clone();
    bad.signed_prekey.public[5] ^= 1;
    assert!(matches!(
        VerifiedBundle::verify(&bad),
        Err(HandshakeError::BadSignedPreKeySignature(_))
    ));
    let mut bad = good.clone();
    bad.kem_prekey.public[100] ^= 1;
    assert!(matches!(
        VerifiedBundle::verify(&bad),
        Err(HandshakeError::BadKemPreKeySignature(_))
    ));
    let mut bad = good.clone();
    bad.kem_prekey.kind = KemPreKeyKind::LastResort;
    assert!(matches!(
        VerifiedBundle::verify(&bad),
        Err(HandshakeError::BadKemPreKeySignature(_))
    ));
    // A relay substituting another identity (wrong identity) breaks both signatures.
    let mut bad = good.clone();
    bad.identity = mallory.identity.public().to_wire();
    assert!(matches!(
        VerifiedBundle::verify(&bad),
        Err(HandshakeError::BadSignedPreKeySignature(_))
    ));
    // Swapping only the X25519 identity key is caught too: it is inside the signed layout.
    let mut bad = good.clone();
    bad.identity.dh = mallory.identity.public().to_wire().dh;
    assert!(matches!(
        VerifiedBundle::verify(&bad),
        Err(HandshakeError::BadSignedPreKeySignature(_))
    ));
    // A small-order Ed25519 identity.
    let mut bad = good;
    let mut ident = [0u8; 32];
    ident[0] = 1;
    bad.identity.signing = ident;
    assert_eq!(
        VerifiedBundle::verify(&bad).unwrap_err(),
        HandshakeError::InvalidIdentityKey
    );
}

#[test]
fn responder_rejects_unknown_and_reused_prekeys_without_consuming() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    let bundle = VerifiedBundle::verify(&fresh_bundle(&bob)).unwrap();
    let mut a = initiate(
        &mut rng,
        &alice.identity,
        &addrs(&alice, &bob),
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();
    let SessionMessage::PreKey(first) = a.encrypt(b"hi").unwrap() else {
        panic!()
    };
    let counts = |d: &Device| (d.store.one_time_count(), d.store.kem_count());
    let before = counts(&bob);

    let mut m = first.clone();
    m.signed_prekey_id = 999;
    assert_eq!(
        reject(&mut bob, &alice, &m),
        HandshakeError::UnknownSignedPreKey(999)
    );
    let mut m = first.clone();
    m.one_time_prekey_id = Some(4242);
    assert_eq!(
        reject(&mut bob, &alice, &m),
        HandshakeError::UnknownOneTimePreKey(4242)
    );
    let mut m = first.clone();
    m.kem_prekey_id = 777;
    assert_eq!(
        reject(&mut bob, &alice, &m),
        HandshakeError::UnknownKemPreKey(777)
    );
    // Tampered KEM ciphertext: implicit rejection, then the first message fails to authenticate.
    let mut m = first.clone();
    m.kem_ciphertext[0] ^= 1;
    assert_eq!(
        reject(&mut bob, &alice, &m),
        HandshakeError::FirstMessage(DecryptError::Authentication)
    );
    // Tampered base key / initiator identity: other keys, authentication fails.
    let mut m = first.clone();
    m.base_key[3] ^= 1;
    assert!(matches!(
        reject(&mut bob, &alice, &m),
        HandshakeError::FirstMessage(DecryptError::Authentication)
            | HandshakeError::NonContributory
    ));
    let mut m = first.clone();
    m.base_key = [0u8; 32];
    assert_eq!(
        reject(&mut bob, &alice, &m),
        HandshakeError::NonContributory
    );
    let mut m = first.clone();
    m.identity = bob.identity.public().to_wire();
    assert_eq!(reject(&mut bob, &alice, &m), HandshakeError::OwnIdentity);
    assert_eq!(
        counts(&bob),
        before,
        "failed handshakes must not consume prekeys"
    );

    // The genuine message succeeds once and consumes exactly one OTPK and one KEM one-time key.
    respond(
        &mut rng,
        &bob.identity,
        &addrs(&bob, &alice),
        &mut bob.store,
        &first,
        SessionConfig::default(),
    )
    .unwrap();
    assert_eq!(counts(&bob), (before.0 - 1, before.1 - 1));
    let otpk = first.one_time_prekey_id.unwrap();
    assert_eq!(
        reject(&mut bob, &alice, &first),
        HandshakeError::OneTimePreKeyReused(otpk)
    );
    let mut m = first.clone();
    m.one_time_prekey_id = None;
    assert_eq!(
        reject(&mut bob, &alice, &m),
        HandshakeError::KemPreKeyReused(first.kem_prekey_id)
    );
}

#[test]
fn last_resort_kem_key_and_no_one_time_prekey_still_work() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    // Drain the one-time KEM keys and don't use an X25519 one-time key.
    for _ in 0..3 {
        let bundle = bob.store.bundle(&bob.identity, 1, false).unwrap();
        let bundle = VerifiedBundle::verify(&bundle).unwrap();
        let mut a = initiate(
            &mut rng,
            &alice.identity,
            &addrs(&alice, &bob),
            &bundle,
            SessionConfig::default(),
        )
        .unwrap();
        let SessionMessage::PreKey(first) = a.encrypt(b"no opk").unwrap() else {
            panic!()
        };
        assert_eq!(first.one_time_prekey_id, None);
        let (_b, pt) = respond(
            &mut rng,
            &bob.identity,
            &addrs(&bob, &alice),
            &mut bob.store,
            &first,
            SessionConfig::default(),
        )
        .unwrap();
        assert_eq!(pt, b"no opk");
    }
    assert_eq!(
        bob.store.kem_count(),
        1,
        "only the last-resort key is left and kept"
    );
}

#[test]
fn pickle_roundtrip_continues_and_rejects_wrong_key_or_tamper() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let m1 = a.encrypt(b"before pickle").unwrap();
    let m2 = a.encrypt(b"skipped across pickle").unwrap();
    b.decrypt(&mut rng, &m2).unwrap();
    let key = PickleKey::new([7; 32]);
    let pickle = b.pickle(&mut rng, &key);
    assert_ne!(pickle, b.pickle(&mut rng, &key), "fresh salt per pickle");
    let mut restored = Session::unpickle(&pickle, &key).unwrap();
    assert_eq!(
        *hazmat::to_state_bytes(&restored),
        *hazmat::to_state_bytes(&b)
    );
    assert_eq!(restored.decrypt(&mut rng, &m1).unwrap(), b"before pickle");
    let reply = restored.encrypt(b"after").unwrap();
    assert_eq!(a.decrypt(&mut rng, &reply).unwrap(), b"after");

    assert_eq!(
        Session::unpickle(&pickle, &PickleKey::new([8; 32])).unwrap_err(),
        PickleError::Authentication
    );
    for pos in [0usize, 1, 40, pickle.len() - 1] {
        let mut bad = pickle.clone();
        bad[pos] ^= 1;
        assert!(Session::unpickle(&bad, &key).is_err(), "pos {pos}");
    }
    assert!(Session::unpickle(&pickle[..20], &key).is_err());
}

/// Standard base64 (RFC 4648, with padding), to search Debug output for secrets in that form.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Asserts that no 8-byte window of `secret` appears in `dbg` as hex (either case), as a
/// decimal list (`{:?}` of a byte slice) or in base64 (at any of the three alignments).
fn assert_not_in_debug(dbg: &str, secret: &[u8]) {
    let lower = dbg.to_lowercase();
    for w in secret.windows(8) {
        assert!(!lower.contains(&hex::encode(w)), "hex of a secret in {dbg}");
        let decimal = w.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
        assert!(
            !dbg.contains(&decimal),
            "decimal bytes of a secret in {dbg}"
        );
        let plain: String = w.iter().map(u8::to_string).collect();
        assert!(!dbg.contains(&plain), "decimal digits of a secret in {dbg}");
    }
    for offset in 0..3 {
        let Some(tail) = secret.get(offset..) else {
            continue;
        };
        let b64 = base64(tail);
        // 8 characters of base64 carry 6 bytes; skip the final (padded) group.
        let body = b64.trim_end_matches('=');
        for start in (0..body.len().saturating_sub(8)).step_by(4) {
            let chunk = &body[start..start + 8];
            assert!(!dbg.contains(chunk), "base64 of a secret in {dbg}");
        }
    }
}

#[test]
fn debug_output_contains_no_secrets() {
    let mut rng = rand::rng();
    let (a, _b) = established(SessionConfig::default());
    let dbg = format!("{a:?}");
    // The serialized state holds every secret of the session.
    let state = hazmat::to_state_bytes(&a);
    assert_not_in_debug(&dbg, &state);
    let key_bytes = [0xAB; 32];
    let key = PickleKey::new(key_bytes);
    assert_eq!(format!("{key:?}"), "PickleKey(..)");
    let device = Device::new(&mut rng);
    let idbg = format!("{:?} {:?}", device.identity, device.store);
    let secret = device.identity.to_secret_bytes();
    assert_not_in_debug(&idbg, secret.as_slice());
    assert_not_in_debug(&idbg, &device.store.to_bytes());
    let _ = NOW;
}

#[test]
fn the_secret_search_finds_hex_decimal_and_base64() {
    // The Debug check above is only as good as its search: each form is found.
    let secret: Vec<u8> = (1..=40).map(|i| i * 5).collect();
    let forms = [
        hex::encode(&secret[3..20]),
        format!("{:?}", &secret[2..20]),
        base64(&secret[1..30]),
        base64(&secret[..30]),
        secret[5..15].iter().map(u8::to_string).collect::<String>(),
    ];
    for form in forms {
        let dbg = format!("Session {{ x: {form} }}");
        let caught = std::panic::catch_unwind(|| assert_not_in_debug(&dbg, &secret));
        assert!(caught.is_err(), "not found: {dbg}");
    }
}

/// Every other 32-byte encoding of the same X25519 public key, as far as the responder's
/// DH outputs are concerned: bit 255 set, and the key plus each non-trivial point of the
/// 8-torsion subgroup (clamped scalars are multiples of 8, so the DH results are equal).
fn base_key_re_encodings(base_key: &[u8; 32]) -> Vec<[u8; 32]> {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let mut out = Vec::new();
    let mut high = *base_key;
    high[31] |= 0x80;
    out.push(high);
    let point = MontgomeryPoint(*base_key).to_edwards(0).unwrap();
    for t in EIGHT_TORSION.iter().skip(1) {
        let v = (point + t).to_montgomery().to_bytes();
        if v != *base_key && !out.contains(&v) {
            out.push(v);
        }
    }
    assert!(
        out.len() >= 5,
        "expected several re-encodings, got {}",
        out.len()
    );
    out
}

fn first_message(
    rng: &mut rand::rngs::ThreadRng,
    alice: &Device,
    bob: &Device,
    with_one_time: bool,
    text: &[u8],
) -> sealpost_session::PreKeyMessage {
    let bundle = bob
        .store
        .bundle(&bob.identity, bob.address.device.0, with_one_time)
        .unwrap();
    let bundle = VerifiedBundle::verify(&bundle).unwrap();
    let mut a = initiate(
        rng,
        &alice.identity,
        &addrs(alice, bob),
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();
    let SessionMessage::PreKey(first) = a.encrypt(text).unwrap() else {
        panic!()
    };
    first
}

#[test]
fn re_encoded_base_keys_fail_and_consume_nothing() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    let first = first_message(&mut rng, &alice, &bob, true, b"pay 100 EUR");
    assert!(first.one_time_prekey_id.is_some());
    let counts = |d: &Device| (d.store.one_time_count(), d.store.kem_count());
    let before = counts(&bob);
    let variants = base_key_re_encodings(&first.base_key);
    for v in &variants {
        let mut m = first.clone();
        m.base_key = *v;
        assert_eq!(
            reject(&mut bob, &alice, &m),
            HandshakeError::FirstMessage(DecryptError::Authentication),
            "re-encoded base key accepted"
        );
        assert_eq!(counts(&bob), before, "a re-encoding consumed a prekey");
    }
    // The genuine message still succeeds afterwards, once.
    let (_b, pt) = respond(
        &mut rng,
        &bob.identity,
        &addrs(&bob, &alice),
        &mut bob.store,
        &first,
        SessionConfig::default(),
    )
    .unwrap();
    assert_eq!(pt, b"pay 100 EUR");
    assert_eq!(counts(&bob), (before.0 - 1, before.1 - 1));
}

#[test]
fn re_encoded_copy_of_a_received_first_message_gives_no_second_session() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    // Use up the one-time KEM prekeys: with neither kind of one-time prekey, nothing is
    // consumed that could stop a second `respond`.
    for _ in 0..2 {
        let m = first_message(&mut rng, &alice, &bob, false, b"drain");
        respond(
            &mut rng,
            &bob.identity,
            &addrs(&bob, &alice),
            &mut bob.store,
            &m,
            SessionConfig::default(),
        )
        .unwrap();
    }
    assert_eq!(
        bob.store.kem_count(),
        1,
        "only the last-resort KEM key is left"
    );
    let first = first_message(&mut rng, &alice, &bob, false, b"pay 100 EUR");
    assert_eq!(first.one_time_prekey_id, None);
    let (b, pt) = respond(
        &mut rng,
        &bob.identity,
        &addrs(&bob, &alice),
        &mut bob.store,
        &first,
        SessionConfig::default(),
    )
    .unwrap();
    assert_eq!(pt, b"pay 100 EUR");
    let store_before = bob.store.to_bytes();
    for v in base_key_re_encodings(&first.base_key) {
        let mut m = first.clone();
        m.base_key = v;
        // Routing by exact base-key bytes does not find the existing session...
        assert!(!b.matches(&m));
        // ...and a new handshake from the copy fails: no second session, no plaintext.
        assert_eq!(
            reject(&mut bob, &alice, &m),
            HandshakeError::FirstMessage(DecryptError::Authentication)
        );
        assert_eq!(*bob.store.to_bytes(), *store_before);
    }
}

#[test]
fn relabelled_sender_or_recipient_fails_and_consumes_nothing() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let mut bob = Device::new(&mut rng);
    let mallory = Device::new(&mut rng);
    let first = first_message(&mut rng, &alice, &bob, true, b"from alice");
    let counts = |d: &Device| (d.store.one_time_count(), d.store.kem_count());
    let before = counts(&bob);
    // The relay claims Mallory sent it.
    assert_eq!(
        reject(&mut bob, &mallory, &first),
        HandshakeError::FirstMessage(DecryptError::Authentication)
    );
    // The relay claims it was sent by Alice's other device.
    let mut alice2 = Device::new(&mut rng);
    alice2.address = common::address(alice.address.account.as_str(), 2);
    assert_eq!(
        reject(&mut bob, &alice2, &first),
        HandshakeError::FirstMessage(DecryptError::Authentication)
    );
    // The relay delivers it to another device of Bob's account (same keys, other address).
    let bob_address = bob.address.clone();
    bob.address = common::address(bob_address.account.as_str(), 7);
    assert_eq!(
        reject(&mut bob, &alice, &first),
        HandshakeError::FirstMessage(DecryptError::Authentication)
    );
    bob.address = bob_address;
    assert_eq!(
        counts(&bob),
        before,
        "a relabelled message consumed a prekey"
    );
    let (b, pt) = respond(
        &mut rng,
        &bob.identity,
        &addrs(&bob, &alice),
        &mut bob.store,
        &first,
        SessionConfig::default(),
    )
    .unwrap();
    assert_eq!(pt, b"from alice");
    assert_eq!(b.remote_address(), Some(&alice.address));
    assert_eq!(b.local_address(), Some(&bob.address));
}

#[test]
fn initiate_checks_the_bundle_device_and_own_address() {
    let mut rng = rand::rng();
    let alice = Device::new(&mut rng);
    let bob = Device::new(&mut rng);
    let bundle =
        VerifiedBundle::verify(&bob.store.bundle(&bob.identity, 3, true).unwrap()).unwrap();
    assert_eq!(
        initiate(
            &mut rng,
            &alice.identity,
            &addrs(&alice, &bob),
            &bundle,
            SessionConfig::default()
        )
        .unwrap_err(),
        HandshakeError::DeviceMismatch {
            bundle: 3,
            address: 1
        }
    );
}

#[test]
fn a_rolled_back_session_never_reuses_key_and_nonce_for_different_plaintexts() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    // A backup of Alice's session, restored after she has sent.
    let mut old = common::copy(&a);
    let p1 = b"pay 100 EUR to Bob";
    let p2 = b"pay 900 EUR to Eve";
    let m1 = ratchet(a.encrypt(p1).unwrap());
    let m2 = ratchet(old.encrypt(p2).unwrap());
    // The same message key (same ratchet key and N)...
    assert_eq!(
        (m1.ratchet_key, m1.message_number),
        (m2.ratchet_key, m2.message_number)
    );
    // ...under different nonces, so the keystreams differ.
    assert_ne!(m1.nonce, m2.nonce);
    let xor_ct: Vec<u8> = m1.ciphertext[..p1.len()]
        .iter()
        .zip(&m2.ciphertext[..p2.len()])
        .map(|(x, y)| x ^ y)
        .collect();
    let xor_pt: Vec<u8> = p1.iter().zip(p2).map(|(x, y)| x ^ y).collect();
    assert_ne!(xor_ct, xor_pt);
    // Identical plaintext gives an identical message: equality is all that leaks.
    let mut old2 = common::copy(&a);
    let mut old3 = common::copy(&a);
    assert_eq!(
        old2.encrypt(b"same").unwrap(),
        old3.encrypt(b"same").unwrap()
    );
    // Bob accepts the first and drops the rolled-back one as a duplicate.
    assert_eq!(
        b.decrypt(&mut rng, &SessionMessage::Ratchet(m1)).unwrap(),
        p1
    );
    let err = assert_noop(&mut b, |s| {
        s.decrypt(&mut rng, &SessionMessage::Ratchet(m2.clone()))
    });
    assert!(matches!(err, DecryptError::Duplicate { .. }), "{err:?}");
}

#[test]
fn tampered_nonce_fails_and_changes_nothing() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let m = ratchet(a.encrypt(b"nonce").unwrap());
    for i in 0..12 {
        let mut bad = m.clone();
        bad.nonce[i] ^= 0x01;
        let err = assert_noop(&mut b, |s| {
            s.decrypt(&mut rng, &SessionMessage::Ratchet(bad))
        });
        assert_eq!(err, DecryptError::Authentication);
    }
    assert_eq!(
        b.decrypt(&mut rng, &SessionMessage::Ratchet(m)).unwrap(),
        b"nonce"
    );
}

#[test]
fn version_1_messages_are_rejected_with_the_typed_error() {
    let mut rng = rand::rng();
    let (mut a, mut b) = established(SessionConfig::default());
    let mut bytes = a.encrypt(b"v1?").unwrap().encode();
    bytes[0] = 1;
    let err = assert_noop(&mut b, |s| s.decrypt_bytes(&mut rng, &bytes));
    assert_eq!(
        err,
        DecryptError::Decode(DecodeError::UnsupportedVersion(1))
    );
}
