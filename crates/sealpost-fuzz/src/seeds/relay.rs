//! Seeds of the relay targets: request frames and the handler.

use super::{Seed, seed};
use crate::fixture::fixture;
use crate::input::rng_from;
use crate::relay::RelayOp;
use rand::RngExt;
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};

pub(super) fn relay_frames() -> Vec<Seed> {
    use sealpost_wire::relay::{
        DAY_SECS, Delivery, DeviceInfo, DeviceLastSeen, ErrorCode, OutgoingEnvelope, PreKeyUpload,
        Push, Request, Response,
    };
    let f = fixture();
    let t = "relay_frames";
    let acct = AccountId::new("+15550000001").expect("seed account");
    let addr = DeviceAddress::new(acct.clone(), DeviceId(1));
    let p = &f.published;
    let body = |frame: Vec<u8>| frame[4..].to_vec();
    let business = crate::business::business_fixture();
    let published = sealpost_wire::business::PublishedProfile {
        route: None,
        profile: business.profile.signed().clone(),
        verifications: vec![
            sealpost_wire::business::BusinessVerification::decode(&business.statement)
                .expect("seed statement"),
        ],
    };
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
        ("req-device-activity", Request::DeviceActivity),
        (
            "req-store-key-backup",
            Request::StoreAccountKeyBackup {
                backup: sealpost_wire::devices::AccountKeyBackup {
                    account_key: [0x55; 32],
                    nonce: [0x66; 12],
                    sealed: [0x77; 48],
                },
            },
        ),
        ("req-fetch-key-backup", Request::FetchAccountKeyBackup),
        (
            "req-publish-business-profile",
            Request::PublishBusinessProfile(Box::new(published.clone())),
        ),
        (
            "req-fetch-business-profile",
            Request::FetchBusinessProfile {
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
            "resp-activity",
            Response::Activity(vec![
                DeviceLastSeen {
                    device_id: 1,
                    last_seen_day: 0,
                },
                DeviceLastSeen {
                    device_id: 4,
                    last_seen_day: 19_675 * DAY_SECS,
                },
            ]),
        ),
        (
            "resp-error",
            Response::Error {
                code: ErrorCode::RateLimited,
                retry_after: 30,
                detail: "slow".into(),
            },
        ),
        (
            "resp-devices-changing",
            Response::Error {
                code: ErrorCode::DevicesChanging,
                retry_after: 2,
                detail: "changing".into(),
            },
        ),
        ("resp-key-backup-stored", Response::AccountKeyBackupStored),
        (
            "resp-key-backup",
            Response::AccountKeyBackup(Some(sealpost_wire::devices::AccountKeyBackup {
                account_key: [0x55; 32],
                nonce: [0x66; 12],
                sealed: [0x77; 48],
            })),
        ),
        (
            "resp-business-profile-stored",
            Response::BusinessProfileStored { profile_version: 3 },
        ),
        (
            "resp-business-profile",
            Response::BusinessProfile(Some(Box::new(published))),
        ),
        ("resp-no-business-profile", Response::BusinessProfile(None)),
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

pub(super) fn relay_handler() -> Vec<Seed> {
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
    // DeviceActivity before authentication is refused.
    let mut happy = vec![Activity { conn: 2 }];
    happy.extend(onboard(0));
    happy.extend(onboard(1));
    happy.extend([
        Activity { conn: 0 },
        Wait { seconds: 255 },
        Activity { conn: 1 },
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
