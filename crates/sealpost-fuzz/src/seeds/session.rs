//! Seeds of the session targets: messages, bundles, addresses, scanned safety numbers,
//! decryption, the stateful pair, pickles and handshakes.

use super::{Seed, seed};
use crate::fixture::{
    BOB_DEVICE, MAX_SKIP, bob_store, config, fixture, identity, pickle_key, safety, to_bob,
};
use crate::input::rng_from;
use crate::stateful::Op;
use rand::RngExt;
use sealpost_session::hazmat;
use sealpost_session::{Session, SessionMessage, VerifiedBundle, initiate};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, RatchetMessage, Writer};

pub(super) fn session_messages() -> Vec<Seed> {
    let f = fixture();
    let t = "decode_session_message";
    let mut v = vec![seed(t, "m0-prekey", f.m0.bytes.clone())];
    for (i, g) in f.to_b.iter().enumerate() {
        v.push(seed(t, format!("to-bob-{i}"), g.bytes.clone()));
    }
    for (i, g) in f.to_a.iter().enumerate() {
        v.push(seed(t, format!("to-alice-{i}"), g.bytes.clone()));
    }
    let shortest = RatchetMessage {
        ratchet_key: [9; 32],
        previous_chain_length: 1,
        message_number: 2,
        nonce: [3; 12],
        ciphertext: vec![0; 16],
    };
    v.push(seed(t, "ratchet-shortest", shortest.encode()));
    v
}

pub(super) fn bundles() -> Vec<Seed> {
    let f = fixture();
    let t = "decode_bundle";
    let p = &f.published;
    let mut small_order_opk = p.bundle(&f.bob, Some(0), 0);
    small_order_opk.one_time_prekey = Some((1, [0; 32]));
    let (_, alice_published) = bob_store(&f.alice);
    vec![
        seed(t, "opk1-kem1", p.bundle(&f.bob, Some(0), 0).encode()),
        seed(t, "opk2-kem2", p.bundle(&f.bob, Some(1), 1).encode()),
        seed(t, "no-opk-last-resort", p.bundle(&f.bob, None, 2).encode()),
        seed(t, "small-order-opk", small_order_opk.encode()),
        seed(
            t,
            "own-identity",
            alice_published.bundle(&f.alice, None, 2).encode(),
        ),
    ]
}

pub(super) fn addresses() -> Vec<Seed> {
    let t = "decode_address";
    let enc = |list: &[(&str, u32)]| {
        let mut w = Writer::new();
        for (acct, dev) in list {
            let acct = AccountId::new(*acct).expect("seed account");
            DeviceAddress::new(acct, DeviceId(*dev)).encode_into(&mut w);
        }
        w.into_bytes()
    };
    let long = "9".repeat(64);
    let umlauts = "ü".repeat(32);
    vec![
        seed(t, "phone", enc(&[("+15551234567", 1)])),
        seed(t, "username", enc(&[("alice.example", 2)])),
        seed(t, "max-len", enc(&[(long.as_str(), u32::MAX)])),
        seed(t, "utf8", enc(&[(umlauts.as_str(), 3)])),
        seed(
            t,
            "list",
            enc(&[("+15550000001", 1), ("+15550000002", 2), ("b", 0)]),
        ),
    ]
}

pub(super) fn scanned() -> Vec<Seed> {
    let s = safety();
    let t = "verify_scanned";
    let alice = s.alice_side.qr_payload();
    let mut wrong_version = alice;
    wrong_version[0] = 2;
    vec![
        seed(t, "alice-payload", alice.to_vec()),
        seed(t, "bob-payload", s.bob_side.qr_payload().to_vec()),
        seed(t, "wrong-version", wrong_version.to_vec()),
        seed(t, "truncated", alice[..64].to_vec()),
    ]
}

pub(super) fn decrypt() -> Vec<Seed> {
    let f = fixture();
    let t = "decrypt_arbitrary";
    let mut v = Vec::new();
    // Genuine messages: the raw-input path accepts them; the choice path reads them as
    // (side, message, mutation count, mutations…).
    for (i, g) in f.to_b.iter().enumerate() {
        v.push(seed(t, format!("genuine-to-bob-{i}"), g.bytes.clone()));
    }
    for (i, g) in f.to_a.iter().enumerate() {
        v.push(seed(t, format!("genuine-to-alice-{i}"), g.bytes.clone()));
    }
    // Choice programs: side (0 Alice, 1 Bob), message, count-1, then (op, pos u16, arg).
    // Appends nothing (the input is exhausted): the genuine message, delivered intact.
    v.push(seed(t, "no-op", vec![0, 0, 0, 3, 0, 0]));
    v.push(seed(t, "flip-header-bit", vec![0, 1, 0, 6, 0, 36, 3]));
    v.push(seed(t, "flip-tag-bit", vec![0, 2, 0, 7, 0, 5, 7]));
    v.push(seed(t, "truncate", vec![1, 0, 0, 2, 0, 0, 0x40]));
    v.push(seed(t, "extend", vec![0, 0, 0, 3, 0, 0, 4, 1, 2, 3, 4, 5]));
    // Overwrites a byte of m2's ML-KEM ciphertext: Bob ignores it (same content).
    v.push(seed(
        t,
        "prekey-kem-byte",
        vec![1, 1, 0, 1, 0x01, 0xf4, 0x42],
    ));
    // Overwrites a byte of m1's identity: the prekey message names another session.
    v.push(seed(
        t,
        "prekey-identity-byte",
        vec![1, 0, 0, 1, 0, 10, 0x42],
    ));
    v.push(seed(
        t,
        "four-mutations",
        vec![1, 2, 3, 0, 0, 50, 1, 5, 0, 7, 2, 4, 0, 1, 9, 0, 3, 1, 0, 2],
    ));
    v
}

pub(super) fn stateful() -> Vec<Seed> {
    use Op::*;
    let t = "ratchet_stateful";
    let a = 0;
    let b = 1;
    let mut v = Vec::new();
    let mut ping_pong = Vec::new();
    for i in 0..6 {
        ping_pong.extend([
            Send { from: a, len: i },
            DeliverNext,
            Send { from: b, len: 3 },
            DeliverNext,
        ]);
    }
    v.push(seed(t, "ping-pong", Op::program(&ping_pong)));
    v.push(seed(
        t,
        "out-of-order",
        Op::program(&[
            Burst { from: a, count: 5 },
            Deliver { index: 3 },
            Deliver { index: 0 },
            DeliverLast,
            Burst { from: b, count: 3 },
            Reorder { i: 0, j: 3 },
            DeliverNext,
            Send { from: a, len: 1 },
            DeliverLast,
        ]),
    ));
    // MAX_SKIP + 3 messages from Bob, the last delivered first: TooManySkipped.
    v.push(seed(
        t,
        "too-many-skipped",
        Op::program(&[
            Burst {
                from: b,
                count: MAX_SKIP as u8 + 2,
            },
            DeliverLast,
            DeliverNext,
        ]),
    ));
    // 3 x 17 skipped keys: the oldest are evicted, their messages become duplicates.
    v.push(seed(
        t,
        "evict-skipped",
        Op::program(&[
            Burst { from: a, count: 16 },
            DeliverLast,
            Burst { from: a, count: 16 },
            DeliverLast,
            Burst { from: a, count: 16 },
            DeliverLast,
        ]),
    ));
    v.push(seed(
        t,
        "duplicates-tamper-reflect",
        Op::program(&[
            Send { from: a, len: 0 },
            DeliverNext,
            Duplicate { index: 1 },
            Send { from: b, len: 8 },
            Tamper {
                index: 2,
                mutation: [0, 0, 20, 1],
            },
            Tamper {
                index: 2,
                mutation: [7, 0, 0, 0],
            },
            Reflect { index: 0 },
            DeliverNext,
            Duplicate { index: 0 },
            Send { from: a, len: 2 },
            Tamper {
                index: 3,
                mutation: [6, 0, 3, 2],
            },
            // A byte of m0's ML-KEM ciphertext: Bob's session ignores it (same content).
            Tamper {
                index: 0,
                mutation: [1, 1, 244, 0x42],
            },
        ]),
    ));
    v.push(seed(
        t,
        "pickle-midway",
        Op::program(&[
            Burst { from: b, count: 4 },
            Deliver { index: 2 },
            Pickle { party: a },
            Deliver { index: 0 },
            Pickle { party: b },
            Send { from: a, len: 4 },
            Drop { index: 0 },
            DeliverLast,
        ]),
    ));
    // Random programs, weighted towards sends and deliveries.
    for i in 0..20u8 {
        let mut rng = rng_from(b"seeds/stateful", &[i]);
        let len = 8 + rng.random_range(0..80);
        let ops: Vec<Op> = (0..len)
            .map(|_| {
                let x: u8 = rng.random();
                match rng.random_range(0..20) {
                    0..=4 => Send {
                        from: x & 1,
                        len: x >> 3,
                    },
                    5 => Burst {
                        from: x & 1,
                        count: x % 20,
                    },
                    6..=8 => DeliverNext,
                    9 | 10 => Deliver { index: x },
                    11 => DeliverLast,
                    12 => Drop { index: x },
                    13 => Duplicate { index: x },
                    14 => Tamper {
                        index: x,
                        mutation: rng.random(),
                    },
                    15 => Reorder {
                        i: x,
                        j: rng.random(),
                    },
                    16 => Reflect { index: x },
                    17 => Pickle { party: x },
                    _ => Send {
                        from: x & 1,
                        len: 0,
                    },
                }
            })
            .collect();
        v.push(seed(t, format!("random-{i:02}"), Op::program(&ops)));
    }
    v
}

pub(super) fn pickles() -> Vec<Seed> {
    let f = fixture();
    let t = "unpickle";
    let salt = [0x11; 32];
    vec![
        seed(
            t,
            "state-alice-awaiting",
            hazmat::to_state_bytes(&f.a0).to_vec(),
        ),
        seed(t, "state-bob-fresh", hazmat::to_state_bytes(&f.b0).to_vec()),
        seed(
            t,
            "state-alice-skipped",
            hazmat::to_state_bytes(&f.a1).to_vec(),
        ),
        seed(t, "state-bob-sent", hazmat::to_state_bytes(&f.b1).to_vec()),
        seed(
            t,
            "pickle-alice-awaiting",
            hazmat::pickle_with_salt(&f.a0, &pickle_key(), &salt),
        ),
        seed(
            t,
            "pickle-alice-skipped",
            hazmat::pickle_with_salt(&f.a1, &pickle_key(), &salt),
        ),
        seed(
            t,
            "pickle-bob-sent",
            hazmat::pickle_with_salt(&f.b1, &pickle_key(), &salt),
        ),
    ]
}

pub(super) fn handshakes() -> Vec<Seed> {
    let f = fixture();
    let t = "handshake_respond";
    let carol = identity("carol");
    let p = &f.published;
    let cases = [
        ("alice-opk1-kem1", &f.alice, Some(0), 0),
        ("alice-opk2-kem2", &f.alice, Some(1), 1),
        ("alice-no-opk-last-resort", &f.alice, None, 2),
        ("alice-no-opk-kem1", &f.alice, None, 0),
        ("carol-opk1-last-resort", &carol, Some(0), 2),
    ];
    cases
        .into_iter()
        .map(|(name, who, opk, kem)| {
            let bundle = VerifiedBundle::verify(&p.bundle(&f.bob, opk, kem)).expect("bundle");
            let mut rng = rng_from(b"seeds/handshake", name.as_bytes());
            // Every initiator claims Alice's address, the sender the target expects.
            let mut s: Session =
                initiate(&mut rng, who, &to_bob(BOB_DEVICE), &bundle, config()).expect("initiate");
            let msg = s.encrypt(name.as_bytes()).expect("encrypt");
            assert!(matches!(msg, SessionMessage::PreKey(_)));
            seed(t, name, msg.encode())
        })
        .collect()
}
