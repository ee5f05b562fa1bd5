//! The seed corpora committed in `fuzz/corpus/<target>/`, generated deterministically.
//!
//! `cargo run -p sealpost-fuzz --bin gen_seeds` writes them; `tests/replay_corpora.rs`
//! checks that the committed files still contain every seed generated here (so a change
//! of an encoding is noticed) and replays all of them through their targets.

use crate::fixture::{
    BOB_DEVICE, MAX_SKIP, bob_store, config, fixture, identity, pickle_key, safety, to_bob,
};
use crate::input::rng_from;
use crate::relay::RelayOp;
use crate::stateful::Op;
use rand::RngExt;
use sealpost_session::hazmat;
use sealpost_session::{Session, SessionMessage, VerifiedBundle, initiate};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, RatchetMessage, Writer};

/// One seed file: `fuzz/corpus/<target>/<name>`.
#[derive(Clone, Debug)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        target,
        name: format!("seed-{}", name.into()),
        bytes: bytes.into(),
    }
}

/// All seeds of all targets.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(session_messages());
    out.extend(bundles());
    out.extend(addresses());
    out.extend(scanned());
    out.extend(decrypt());
    out.extend(stateful());
    out.extend(pickles());
    out.extend(handshakes());
    out.extend(relay_frames());
    out.extend(relay_handler());
    out.extend(pin_vault_records());
    out.extend(pin_recovery());
    out.extend(pin_local_verifiers());
    out.extend(pin_frames());
    out.extend(device_lists());
    out.extend(provisioning());
    out
}

fn session_messages() -> Vec<Seed> {
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

fn bundles() -> Vec<Seed> {
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

fn addresses() -> Vec<Seed> {
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

fn scanned() -> Vec<Seed> {
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

fn decrypt() -> Vec<Seed> {
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

fn stateful() -> Vec<Seed> {
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

fn pickles() -> Vec<Seed> {
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

fn handshakes() -> Vec<Seed> {
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

fn relay_frames() -> Vec<Seed> {
    use sealpost_wire::relay::{
        Delivery, DeviceInfo, ErrorCode, OutgoingEnvelope, PreKeyUpload, Push, Request, Response,
    };
    let f = fixture();
    let t = "relay_frames";
    let acct = AccountId::new("+15550000001").expect("seed account");
    let addr = DeviceAddress::new(acct.clone(), DeviceId(1));
    let p = &f.published;
    let body = |frame: Vec<u8>| frame[4..].to_vec();
    let requests = [
        (
            "req-request-code",
            Request::RequestCode {
                account: acct.clone(),
            },
        ),
        (
            "req-register",
            Request::Register {
                account: acct.clone(),
                code: *b"123456",
                identity: f.bob.public().to_wire(),
                signature: [1; 64],
                reglock: None,
            },
        ),
        ("req-challenge", Request::Challenge),
        (
            "req-authenticate",
            Request::Authenticate {
                address: addr.clone(),
                signature: [2; 64],
            },
        ),
        (
            "req-upload",
            Request::UploadPreKeys(PreKeyUpload {
                signed_prekey: Some(p.signed.clone()),
                one_time: p.one_time.clone(),
                kem: p.kem.clone(),
            }),
        ),
        (
            "req-fetch",
            Request::FetchBundles {
                account: acct.clone(),
            },
        ),
        (
            "req-list",
            Request::ListDevices {
                account: acct.clone(),
            },
        ),
        (
            "req-send",
            Request::Send {
                message_id: [3; 16],
                sender_seq: 9,
                recipient: acct.clone(),
                envelopes: vec![
                    OutgoingEnvelope {
                        device_id: 1,
                        envelope: f.m0.bytes.clone(),
                    },
                    OutgoingEnvelope {
                        device_id: 2,
                        envelope: vec![4; 20],
                    },
                ],
            },
        ),
        (
            "req-ack",
            Request::Ack {
                server_ids: vec![1, 2, u64::MAX],
            },
        ),
    ];
    let responses = [
        ("resp-code-sent", Response::CodeSent { expires_in: 600 }),
        ("resp-registered", Response::Registered { device_id: 1 }),
        (
            "resp-challenge",
            Response::ChallengeIssued { nonce: [5; 32] },
        ),
        (
            "resp-authenticated",
            Response::Authenticated {
                one_time_prekeys: 1,
                kem_prekeys: 2,
                queued: 3,
                sender_seq: 4,
            },
        ),
        ("resp-bundles", Response::Bundles(vec![f.bundle.clone()])),
        (
            "resp-devices",
            Response::Devices(vec![DeviceInfo {
                device_id: 1,
                identity: f.alice.public().to_wire(),
            }]),
        ),
        (
            "resp-accepted",
            Response::Accepted {
                timestamp: 1_700_000_000_000,
            },
        ),
        ("resp-acked", Response::Acked { removed: 2 }),
        (
            "resp-error",
            Response::Error {
                code: ErrorCode::RateLimited,
                retry_after: 30,
                detail: "slow".into(),
            },
        ),
    ];
    let pushes = [
        (
            "push-deliver",
            Push::Deliver(Delivery {
                server_id: 9,
                sender: addr,
                message_id: [6; 16],
                timestamp: 7,
                envelope: f.to_b[0].bytes.clone(),
            }),
        ),
        (
            "push-prekeys-low",
            Push::PreKeysLow {
                one_time_prekeys: 3,
                kem_prekeys: 0,
            },
        ),
        ("push-queue-drained", Push::QueueDrained),
    ];
    let mut v: Vec<Seed> = requests
        .into_iter()
        .map(|(n, r)| seed(t, n, body(r.encode())))
        .collect();
    v.extend(
        responses
            .into_iter()
            .map(|(n, r)| seed(t, n, body(r.encode()))),
    );
    v.extend(
        pushes
            .into_iter()
            .map(|(n, r)| seed(t, n, body(r.encode()))),
    );
    // A complete frame (length prefix included), to reach frame_len.
    v.push(seed(t, "framed-challenge", Request::Challenge.encode()));
    v
}

fn relay_handler() -> Vec<Seed> {
    use RelayOp::*;
    let t = "relay_handler";
    // Registers, authenticates and uploads everything for party `p` on account `p`.
    let onboard = |p: u8| {
        vec![
            RequestCode {
                conn: p,
                account: p,
            },
            Register {
                conn: p,
                account: p,
                wrong_code: false,
                bad_sig: false,
            },
            Challenge { conn: p },
            Authenticate {
                conn: p,
                account: p,
                device: 1,
                bad_sig: false,
            },
            Upload {
                conn: p,
                one_time_mask: 0xff,
                kem_mask: 0x0f,
                flags: 3,
            },
        ]
    };
    let mut happy = onboard(0);
    happy.extend(onboard(1));
    happy.extend([
        Fetch {
            conn: 1,
            account: 0,
        },
        Fetch {
            conn: 1,
            account: 0,
        },
        Fetch {
            conn: 0,
            account: 1,
        },
        Send {
            conn: 1,
            account: 0,
            device_mask: 1,
            len: 5,
        },
        Send {
            conn: 0,
            account: 1,
            device_mask: 1,
            len: 7,
        },
        Send {
            conn: 0,
            account: 1,
            device_mask: 3,
            len: 7,
        },
        Ack { conn: 0, count: 2 },
        Ack { conn: 1, count: 2 },
        List {
            conn: 0,
            account: 1,
        },
        List {
            conn: 0,
            account: 2,
        },
        Sweep,
    ]);
    let mut v = vec![seed(t, "happy-path", RelayOp::program(&happy))];

    let mut wrong = vec![RequestCode {
        conn: 0,
        account: 0,
    }];
    wrong.extend((0..6).map(|_| Register {
        conn: 0,
        account: 0,
        wrong_code: true,
        bad_sig: false,
    }));
    wrong.push(Register {
        conn: 0,
        account: 0,
        wrong_code: false,
        bad_sig: false,
    });
    wrong.push(RequestCode {
        conn: 0,
        account: 3,
    });
    v.push(seed(t, "code-attempts", RelayOp::program(&wrong)));

    let mut exhaust = onboard(0);
    exhaust.extend(onboard(1));
    exhaust.extend((0..10).map(|_| Fetch {
        conn: 1,
        account: 0,
    }));
    exhaust.extend(onboard(2));
    // Party 2 takes over account 0 (new identity), then is fetched.
    exhaust.extend([
        RequestCode {
            conn: 2,
            account: 0,
        },
        Register {
            conn: 2,
            account: 0,
            wrong_code: false,
            bad_sig: false,
        },
        Fetch {
            conn: 1,
            account: 0,
        },
        Challenge { conn: 2 },
        Authenticate {
            conn: 2,
            account: 0,
            device: 2,
            bad_sig: false,
        },
        Upload {
            conn: 2,
            one_time_mask: 0x0f,
            kem_mask: 0x03,
            flags: 3,
        },
        Fetch {
            conn: 1,
            account: 0,
        },
        Send {
            conn: 1,
            account: 0,
            device_mask: 1,
            len: 1,
        },
        Send {
            conn: 1,
            account: 0,
            device_mask: 2,
            len: 1,
        },
    ]);
    v.push(seed(
        t,
        "exhaust-and-reregister",
        RelayOp::program(&exhaust),
    ));

    let mut bad = vec![
        RequestCode {
            conn: 0,
            account: 0,
        },
        Register {
            conn: 0,
            account: 0,
            wrong_code: false,
            bad_sig: true,
        },
        Register {
            conn: 0,
            account: 0,
            wrong_code: false,
            bad_sig: false,
        },
        Authenticate {
            conn: 0,
            account: 0,
            device: 1,
            bad_sig: false,
        },
        Challenge { conn: 0 },
        Authenticate {
            conn: 0,
            account: 0,
            device: 1,
            bad_sig: true,
        },
        Authenticate {
            conn: 0,
            account: 0,
            device: 1,
            bad_sig: false,
        },
        Challenge { conn: 0 },
        Authenticate {
            conn: 0,
            account: 0,
            device: 2,
            bad_sig: false,
        },
        Challenge { conn: 0 },
        Authenticate {
            conn: 0,
            account: 0,
            device: 1,
            bad_sig: false,
        },
        Upload {
            conn: 0,
            one_time_mask: 1,
            kem_mask: 0,
            flags: 4 | 1,
        },
        Upload {
            conn: 0,
            one_time_mask: 1,
            kem_mask: 0,
            flags: 8 | 1,
        },
        Upload {
            conn: 0,
            one_time_mask: 3,
            kem_mask: 1,
            flags: 1,
        },
        Upload {
            conn: 0,
            one_time_mask: 2,
            kem_mask: 0,
            flags: 0,
        },
        Fetch {
            conn: 0,
            account: 0,
        },
        Upload {
            conn: 0,
            one_time_mask: 1,
            kem_mask: 0,
            flags: 2,
        },
        Fetch {
            conn: 0,
            account: 3,
        },
        Send {
            conn: 0,
            account: 0,
            device_mask: 1,
            len: 0,
        },
        Send {
            conn: 0,
            account: 2,
            device_mask: 1,
            len: 0,
        },
        Send {
            conn: 1,
            account: 0,
            device_mask: 1,
            len: 0,
        },
        RequestCode {
            conn: 1,
            account: 3,
        },
    ];
    bad.extend((0..8).map(|i| Send {
        conn: 2,
        account: 0,
        device_mask: 1,
        len: i,
    }));
    v.push(seed(t, "bad-proofs", RelayOp::program(&bad)));

    let mut full = onboard(0);
    full.extend(onboard(1));
    full.extend((0..8).map(|i| Send {
        conn: 1,
        account: 0,
        device_mask: 1,
        len: i,
    }));
    full.extend([
        Ack { conn: 0, count: 3 },
        Send {
            conn: 1,
            account: 0,
            device_mask: 1,
            len: 9,
        },
        Wait { seconds: 255 },
        RequestCode {
            conn: 2,
            account: 2,
        },
        Wait { seconds: 255 },
        Register {
            conn: 2,
            account: 2,
            wrong_code: false,
            bad_sig: false,
        },
        Sweep,
    ]);
    v.push(seed(t, "queue-full-and-expiry", RelayOp::program(&full)));

    // Raw frames: a Challenge body, an unknown kind, a wrong version, garbage.
    let mut raw = Vec::new();
    for body in [
        &[1u8, 0x03][..],
        &[1, 0x3e],
        &[2, 0x03],
        &[1, 0x01, 200, 1, 2],
        &[],
    ] {
        raw.extend(
            RelayOp::Raw {
                conn: 0,
                len: body.len() as u8,
            }
            .encode(),
        );
        raw.extend_from_slice(body);
    }
    v.push(seed(t, "raw-frames", raw));

    for i in 0..8u8 {
        let mut rng = rng_from(b"seeds/relay_handler", &[i]);
        let mut ops = onboard(0);
        ops.extend(onboard(1));
        let len = 10 + rng.random_range(0..40);
        ops.extend((0..len).map(|_| {
            let b: [u8; 4] = rng.random();
            match rng.random_range(0..11) {
                0 => RequestCode {
                    conn: b[0],
                    account: b[1],
                },
                1 => Register {
                    conn: b[0],
                    account: b[1],
                    wrong_code: b[2] & 1 != 0,
                    bad_sig: b[3] & 1 != 0,
                },
                2 => Challenge { conn: b[0] },
                3 => Authenticate {
                    conn: b[0],
                    account: b[1],
                    device: b[2],
                    bad_sig: b[3] & 3 == 0,
                },
                4 => Upload {
                    conn: b[0],
                    one_time_mask: b[1],
                    kem_mask: b[2],
                    flags: b[3],
                },
                5 | 6 => Fetch {
                    conn: b[0],
                    account: b[1],
                },
                7 => List {
                    conn: b[0],
                    account: b[1],
                },
                8 => Send {
                    conn: b[0],
                    account: b[1],
                    device_mask: b[2],
                    len: b[3],
                },
                9 => Ack {
                    conn: b[0],
                    count: b[1],
                },
                _ => Sweep,
            }
        }));
        v.push(seed(t, format!("random-{i:02}"), RelayOp::program(&ops)));
    }
    v
}

fn pin_vault_records() -> Vec<Seed> {
    use sealpost_pin::{normalize::normalize, stretch::Argon2Params, vault};
    let t = "pin_vault_record";
    let f = crate::pin::pin_fixture();
    let good = f.record_bytes.clone();
    let enrol = |threshold: usize, n: usize| {
        let mut rng = rng_from(b"pin seed enrolment", &[threshold as u8, n as u8]);
        vault::enroll(
            &normalize("123456").expect("pin"),
            crate::pin::PIN_ACCOUNT,
            &vault::MasterSecret::generate(&mut rng),
            threshold,
            n,
            &Argon2Params::testing(),
            &mut rng,
        )
        .expect("seed enrolment")
        .record
        .encode()
    };
    let mut out = vec![
        seed(t, "2-of-3", good.clone()),
        seed(t, "1-of-1", enrol(1, 1)),
        seed(t, "3-of-5", enrol(3, 5)),
        seed(t, "1-of-255", enrol(1, 255)),
        seed(t, "truncated", good[..good.len() - 1].to_vec()),
        seed(t, "empty", Vec::new()),
    ];
    let mut v = good.clone();
    v[0] = 2;
    out.push(seed(t, "version-2", v));
    let mut v = good.clone();
    v[47 + 33] = 1; // second index equals the first
    out.push(seed(t, "unordered", v));
    let mut v = good.clone();
    v[48] ^= 1; // K_1 off the polynomial (or not a point)
    out.push(seed(t, "bad-commitment", v));
    let mut v = good;
    v[28] = 0; // p = 0
    out.push(seed(t, "bad-params", v));
    out
}

fn pin_recovery() -> Vec<Seed> {
    let t = "pin_recovery";
    // A syntactically valid raw response (index 2) that is not guardian 2's answer.
    let mut raw = vec![0u8, 1, 0, 2];
    raw.extend(crate::pin::seed_key(b"raw point").public_key().to_bytes());
    raw.extend(crate::pin::seed_key(b"raw c").to_bytes().as_slice());
    raw.extend(crate::pin::seed_key(b"raw s").to_bytes().as_slice());
    raw.extend([0, 0, 0, 2]);
    vec![
        seed(t, "two-honest", vec![0, 0, 0, 0, 1]),
        seed(t, "three-honest", vec![0, 0, 0, 0, 1, 0, 2]),
        seed(t, "wrong-pin", vec![1, 0, 0, 0, 1]),
        seed(t, "one-honest", vec![0, 0, 2]),
        seed(t, "other-blinded", vec![0, 4, 0, 0, 1, 0, 2]),
        seed(t, "bad-proof", vec![0, 3, 0, 5, 7, 32, 0, 1, 0, 2]),
        seed(t, "bad-point", vec![0, 3, 1, 0, 1, 3, 9, 0, 0]),
        seed(t, "relabelled", vec![0, 2, 0, 2, 0, 1, 0, 2]),
        seed(t, "unknown-index", vec![0, 2, 0, 9, 0, 1, 0, 2]),
        seed(t, "repeated", vec![0, 0, 1, 0, 1, 0, 2]),
        seed(t, "raw", raw),
        seed(
            t,
            "share-checks",
            vec![0, 5, 1, 3, 0x10, 5, 0, 0, 0, 5, 2, 33],
        ),
        seed(
            t,
            "token-checks",
            vec![1, 6, 0, 5, 1, 6, 1, 32, 0, 0, 0, 0, 2],
        ),
    ]
}

fn pin_local_verifiers() -> Vec<Seed> {
    use sealpost_pin::{normalize::normalize, reminder::ReminderState, stretch::Argon2Params};
    let t = "pin_local_verifier";
    let v = sealpost_pin::hazmat::local_verifier_with_salt(
        &normalize("123456").expect("pin"),
        &Argon2Params::testing(),
        [0x5a; 16],
    )
    .expect("verifier");
    let mut s = ReminderState::new(1_700_000_000);
    s.record_result(false, 1_700_000_100);
    let mut program = s.encode().to_vec();
    // Wrong answers a minute apart until the back-off caps, then correct ones a day apart.
    for _ in 0..10 {
        program.extend([0x02, 0x00, 0x1e]);
    }
    for _ in 0..5 {
        program.extend([0xff, 0x02, 0xa6]);
    }
    vec![
        seed(t, "local-verifier", v.to_bytes().to_vec()),
        seed(t, "reminder-new", ReminderState::new(0).encode().to_vec()),
        seed(t, "reminder-failed", s.encode().to_vec()),
        seed(t, "reminder-program", program),
        seed(t, "program-only", vec![0x03, 0x10, 0x00, 0x02, 0x00, 0x01]),
    ]
}

fn pin_frames() -> Vec<Seed> {
    use crate::pin::{PIN_REQUEST_KINDS, PIN_RESPONSE_KINDS, pin_fixture};
    use sealpost_wire::relay::{CredentialScope, GuardianCredential, Request, Response};
    let t = "pin_frames";
    let f = fixture();
    let pf = pin_fixture();
    let acct = AccountId::new(crate::pin::PIN_ACCOUNT).expect("seed account");
    let credential = |scope| GuardianCredential {
        account: acct.clone(),
        scope,
        expires_at: crate::fixture::NOW + 3600,
        issuer: [0x11; 32],
        signature: [0x22; 64],
    };
    let g = &pf.enrollment.guardians[0];
    let mut share = [0u8; 33];
    share.copy_from_slice(g.share.to_bytes().as_slice());
    let (z, proof) = g
        .share
        .key()
        .evaluate(pf.right.blinded(), &mut rng_from(b"seed", b""));
    let requests = [
        Request::Register {
            account: acct.clone(),
            code: *b"123456",
            identity: f.bob.public().to_wire(),
            signature: [0x33; 64],
            reglock: Some([0x44; 32]),
        },
        Request::SetRegistrationLock { token: [0x44; 32] },
        Request::ClearRegistrationLock,
        Request::GetGuardianCredential,
        Request::VaultStore {
            credential: credential(CredentialScope::Owner),
            share,
            success_verifier: g.success_verifier,
            record: pf.record_bytes.clone(),
        },
        Request::VaultFetch {
            credential: credential(CredentialScope::Recovery),
        },
        Request::VaultEvaluate {
            credential: credential(CredentialScope::Recovery),
            vault_id: *pf.enrollment.record.vault_id(),
            blinded: pf.right.blinded().to_bytes(),
        },
        Request::VaultConfirm {
            credential: credential(CredentialScope::Recovery),
            vault_id: *pf.enrollment.record.vault_id(),
            token: *pf.tokens[0].as_bytes(),
        },
        Request::VaultDelete {
            credential: credential(CredentialScope::Owner),
        },
    ];
    let responses = [
        Response::RegistrationLockSet,
        Response::RegistrationLockCleared,
        Response::Credential(credential(CredentialScope::Owner)),
        Response::VaultStored,
        Response::Vault {
            index: 1,
            attempts_remaining: 10,
            record: pf.record_bytes.clone(),
        },
        Response::VaultEvaluated {
            index: 1,
            evaluated: z.to_bytes(),
            proof: proof.to_bytes(),
            attempts_remaining: 9,
        },
        Response::VaultConfirmed {
            attempts_remaining: 10,
        },
        Response::VaultDeleted,
        Response::RegistrationLocked {
            lapses_in: 604_800,
            attempts_remaining: 10,
            credential: credential(CredentialScope::Recovery),
        },
    ];
    let mut out = Vec::new();
    let frames = requests
        .iter()
        .map(Request::encode)
        .chain(responses.iter().map(Response::encode));
    for (sel, frame) in frames.enumerate() {
        let body = &frame[4..];
        let kind = body[1];
        let table = if sel < PIN_REQUEST_KINDS.len() {
            PIN_REQUEST_KINDS[sel]
        } else {
            PIN_RESPONSE_KINDS[sel - PIN_REQUEST_KINDS.len()]
        };
        assert_eq!(kind, table, "seed order matches the kind table");
        let mut bytes = vec![sel as u8];
        bytes.extend_from_slice(&body[2..]);
        out.push(seed(t, format!("{kind:02x}"), bytes));
    }
    out
}

fn device_lists() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "device_list";
    let mut v = vec![
        seed(t, "v1", f.v1.as_bytes()),
        seed(t, "v2", f.v2.as_bytes()),
    ];
    // A flipped bit in the signature, and in the last binding.
    let mut bad_signature = f.v2.as_bytes().to_vec();
    let at = bad_signature.len() - 3 * 64;
    bad_signature[at] ^= 1;
    v.push(seed(t, "v2-bad-signature", bad_signature));
    let mut bad_binding = f.v2.as_bytes().to_vec();
    let last = bad_binding.len() - 1;
    bad_binding[last] ^= 1;
    v.push(seed(t, "v2-bad-binding", bad_binding));
    v
}

fn provisioning() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "provisioning_open";
    let mut tampered = f.envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    vec![
        seed(t, "genuine", f.envelope.clone()),
        seed(t, "tampered", tampered),
        seed(t, "truncated", f.envelope[..40].to_vec()),
        seed(
            t,
            "invitation-text",
            f.request.invitation_text().into_bytes(),
        ),
    ]
}
