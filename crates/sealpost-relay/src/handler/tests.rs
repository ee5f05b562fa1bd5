use super::*;
use crate::store::MemoryStore;
use rand::SeedableRng;
use sealpost_session::{IdentityKeyPair, PreKeyStore, VerifiedBundle};
use sealpost_wire::KEM_PUBLIC_LEN;

const T0: u64 = 1_700_000_000_000;
const X1: [u8; 32] = [0x11; 32];
const X2: [u8; 32] = [0x22; 32];

#[derive(Default)]
struct Capture(Mutex<Vec<(AccountId, String)>>);

impl CodeSender for Capture {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .push((account.clone(), code.as_str().to_owned()));
    }
}

impl Capture {
    fn last(&self, account: &AccountId) -> [u8; 6] {
        let v = self.0.lock().unwrap();
        let (_, c) = v.iter().rev().find(|(a, _)| a == account).unwrap();
        c.as_bytes().try_into().unwrap()
    }
}

struct Env {
    h: Handler,
    codes: Arc<Capture>,
    store: Arc<MemoryStore>,
}

fn env_with(limits: Limits) -> Env {
    let store = Arc::new(MemoryStore::new());
    let codes = Arc::new(Capture::default());
    let h = Handler::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&codes) as Arc<dyn CodeSender>,
        [5; 32],
        limits,
        StdRng::seed_from_u64(7),
    );
    Env { h, codes, store }
}

fn env() -> Env {
    env_with(Limits::default())
}

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

struct Dev {
    id: IdentityKeyPair,
    keys: PreKeyStore,
    address: DeviceAddress,
    conn: ConnectionState,
    exporter: [u8; 32],
}

impl Env {
    fn req(&self, c: &mut ConnectionState, x: [u8; 32], r: Request, now: u64) -> Response {
        self.h.handle(c, x, r, now).0
    }

    fn request_code(&self, c: &mut ConnectionState, a: &AccountId, now: u64) -> Response {
        self.req(c, X1, Request::RequestCode { account: a.clone() }, now)
    }

    fn register_req(
        &self,
        c: &mut ConnectionState,
        x: [u8; 32],
        a: &AccountId,
        code: [u8; 6],
        id: &IdentityKeyPair,
        now: u64,
    ) -> (Response, Vec<Effect>) {
        let identity = id.public().to_wire();
        let signature = id.sign(&register_signed_bytes(&x, a, &identity)).to_bytes();
        self.h.handle(
            c,
            x,
            Request::Register {
                account: a.clone(),
                code,
                identity,
                signature,
                reglock: None,
            },
            now,
        )
    }

    fn authenticate(&self, d: &mut Dev, now: u64) -> Response {
        let Response::ChallengeIssued { nonce } =
            self.req(&mut d.conn, d.exporter, Request::Challenge, now)
        else {
            panic!("no challenge");
        };
        let signature =
            d.id.sign(&auth_signed_bytes(&d.exporter, &nonce, &d.address))
                .to_bytes();
        self.req(
            &mut d.conn,
            d.exporter,
            Request::Authenticate {
                address: d.address.clone(),
                signature,
            },
            now,
        )
    }

    /// Registers and authenticates a fresh device of `account`.
    fn device(&self, account: &str, conn_id: u64, now: u64) -> Dev {
        let a = acct(account);
        let mut rng = rand::rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let exporter = [conn_id as u8; 32];
        let mut conn = self.h.new_connection(conn_id, now);
        assert_eq!(
            self.request_code(&mut conn, &a, now),
            Response::CodeSent { expires_in: 600 }
        );
        let code = self.codes.last(&a);
        let (r, _) = self.register_req(&mut conn, exporter, &a, code, &id, now);
        let Response::Registered { device_id } = r else {
            panic!("{r:?}")
        };
        let mut d = Dev {
            id,
            keys: PreKeyStore::new(),
            address: DeviceAddress::new(a, DeviceId(device_id)),
            conn,
            exporter,
        };
        assert!(matches!(
            self.authenticate(&mut d, now),
            Response::Authenticated { .. }
        ));
        d
    }

    fn upload(&self, d: &mut Dev, one_time: usize, kem_one_time: usize, now: u64) -> Response {
        let mut rng = rand::rng();
        let upload = PreKeyUpload {
            signed_prekey: Some(d.keys.generate_signed_prekey(&mut rng, &d.id, 1)),
            one_time: d.keys.generate_one_time_prekeys(&mut rng, one_time),
            kem: {
                let mut k = d.keys.generate_kem_prekeys(
                    &mut rng,
                    &d.id,
                    KemPreKeyKind::OneTime,
                    kem_one_time,
                    1,
                );
                k.extend(d.keys.generate_kem_prekeys(
                    &mut rng,
                    &d.id,
                    KemPreKeyKind::LastResort,
                    1,
                    1,
                ));
                k
            },
        };
        self.req(&mut d.conn, d.exporter, Request::UploadPreKeys(upload), now)
    }

    fn send(
        &self,
        d: &mut Dev,
        to: &AccountId,
        devices: &[u32],
        now: u64,
    ) -> (Response, Vec<Effect>) {
        let envelopes = devices
            .iter()
            .map(|id| OutgoingEnvelope {
                device_id: *id,
                envelope: vec![0xee; 32],
            })
            .collect();
        self.h.handle(
            &mut d.conn,
            d.exporter,
            Request::Send {
                message_id: [1; 16],
                recipient: to.clone(),
                envelopes,
            },
            now,
        )
    }
}

#[test]
fn e164_validation() {
    for ok in [
        "+15551234567",
        "+4930123456",
        "+12345678",
        "+123456789012345",
    ] {
        assert!(is_e164(&acct(ok)), "{ok}");
    }
    for bad in [
        "15551234567",
        "+0555123456",
        "+1234567",
        "+1234567890123456",
        "+1555abc4567",
        "+",
    ] {
        assert!(!is_e164(&acct(bad)), "{bad}");
    }
}

#[test]
fn registration_flow_and_unauthenticated_connection() {
    let e = env();
    let a = acct("+15550001111");
    let mut c = e.h.new_connection(1, T0);
    assert_eq!(
        err(&e.request_code(&mut c, &acct("not-a-number"), T0)),
        ErrorCode::InvalidAccount
    );
    assert_eq!(
        e.request_code(&mut c, &a, T0),
        Response::CodeSent { expires_in: 600 }
    );
    let code = e.codes.last(&a);
    assert!(code.iter().all(u8::is_ascii_digit));
    let id = IdentityKeyPair::generate(&mut rand::rng());
    // A signature bound to another connection's exporter does not verify.
    let identity = id.public().to_wire();
    let foreign = id
        .sign(&register_signed_bytes(&X2, &a, &identity))
        .to_bytes();
    let r = e.req(
        &mut c,
        X1,
        Request::Register {
            account: a.clone(),
            code,
            identity,
            signature: foreign,
            reglock: None,
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::InvalidSignature);
    let (r, effects) = e.register_req(&mut c, X1, &a, code, &id, T0 + 1);
    assert_eq!(r, Response::Registered { device_id: 1 });
    assert!(effects.is_empty());
    // Registered but not authenticated: only the pre-auth requests are allowed.
    assert!(c.authenticated().is_none());
    for req in [
        Request::UploadPreKeys(PreKeyUpload::default()),
        Request::FetchBundles { account: a.clone() },
        Request::ListDevices { account: a.clone() },
        Request::Send {
            message_id: [0; 16],
            recipient: a.clone(),
            envelopes: vec![OutgoingEnvelope {
                device_id: 1,
                envelope: vec![1],
            }],
        },
        Request::Ack {
            server_ids: vec![1],
        },
    ] {
        assert_eq!(err(&e.req(&mut c, X1, req, T0)), ErrorCode::Unauthenticated);
    }
    // The code was consumed.
    let (r, _) = e.register_req(&mut c, X1, &a, code, &id, T0 + 2);
    assert_eq!(err(&r), ErrorCode::CodeInvalid);
}

#[test]
fn code_expires_after_600_seconds() {
    let e = env();
    let a = acct("+15550001111");
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let mut c = e.h.new_connection(1, T0);
    e.request_code(&mut c, &a, T0);
    let code = e.codes.last(&a);
    let (r, _) = e.register_req(&mut c, X1, &a, code, &id, T0 + 600_000);
    assert_eq!(err(&r), ErrorCode::CodeInvalid);
    // A fresh code just inside its lifetime works.
    e.request_code(&mut c, &a, T0 + 700_000);
    let code = e.codes.last(&a);
    let (r, _) = e.register_req(&mut c, X1, &a, code, &id, T0 + 700_000 + 599_999);
    assert_eq!(r, Response::Registered { device_id: 1 });
}

#[test]
fn five_wrong_codes_exhaust_the_code() {
    let e = env();
    let a = acct("+15550001111");
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let mut c = e.h.new_connection(1, T0);
    e.request_code(&mut c, &a, T0);
    let code = e.codes.last(&a);
    let mut wrong = code;
    wrong[5] = if wrong[5] == b'9' { b'0' } else { wrong[5] + 1 };
    for _ in 0..5 {
        let (r, _) = e.register_req(&mut c, X1, &a, wrong, &id, T0);
        assert_eq!(err(&r), ErrorCode::CodeInvalid);
    }
    // Even the right code is refused now, and the code is gone.
    let (r, _) = e.register_req(&mut c, X1, &a, code, &id, T0);
    assert_eq!(err(&r), ErrorCode::CodeAttemptsExceeded);
    let (r, _) = e.register_req(&mut c, X1, &a, code, &id, T0);
    assert_eq!(err(&r), ErrorCode::CodeInvalid);
    // Non-digit codes are just wrong codes.
    e.request_code(&mut c, &a, T0);
    let (r, _) = e.register_req(&mut c, X1, &a, *b"abcdef", &id, T0);
    assert_eq!(err(&r), ErrorCode::CodeInvalid);
}

#[test]
fn code_macs_depend_on_account_and_key() {
    let e = env();
    let a = acct("+15550001111");
    let b = acct("+15550002222");
    assert_ne!(e.h.code_mac(&a, b"123456"), e.h.code_mac(&b, b"123456"));
    assert_ne!(e.h.code_mac(&a, b"123456"), e.h.code_mac(&a, b"123457"));
    let other = env_with(Limits::default());
    assert_eq!(e.h.code_mac(&a, b"123456"), other.h.code_mac(&a, b"123456"));
}

#[test]
fn reregistration_replaces_devices() {
    let e = env();
    let mut old = e.device("+15550001111", 1, T0);
    assert_eq!(
        e.upload(&mut old, 5, 2, T0),
        Response::PreKeysStored {
            one_time_prekeys: 5,
            kem_prekeys: 2
        }
    );
    let mut sender = e.device("+15550002222", 2, T0);
    let a = old.address.account.clone();
    assert_eq!(
        e.send(&mut sender, &a, &[1], T0).0,
        Response::Accepted { timestamp: T0 }
    );
    // The number moves to a new phone.
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let mut c = e.h.new_connection(3, T0);
    e.request_code(&mut c, &a, T0);
    let (r, effects) = e.register_req(&mut c, X1, &a, e.codes.last(&a), &id, T0);
    assert_eq!(r, Response::Registered { device_id: 2 });
    assert_eq!(
        effects,
        vec![Effect::DevicesRemoved {
            account: a.clone(),
            devices: vec![1]
        }]
    );
    assert_eq!(e.store.queue_depth(&old.address).unwrap(), 0);
    // The old device cannot authenticate any more; senders must address device 2.
    let mut again = Dev {
        conn: e.h.new_connection(4, T0),
        ..old
    };
    assert_eq!(err(&e.authenticate(&mut again, T0)), ErrorCode::AuthFailed);
    assert_eq!(
        err(&e.send(&mut sender, &a, &[1], T0).0),
        ErrorCode::MismatchedDevices
    );
    assert_eq!(
        e.send(&mut sender, &a, &[2], T0).0,
        Response::Accepted { timestamp: T0 }
    );
}

#[test]
fn authentication_is_bound_to_exporter_and_nonce() {
    let e = env();
    let mut d = e.device("+15550001111", 1, T0);
    let mut c = e.h.new_connection(9, T0);
    // No challenge.
    let sig =
        d.id.sign(&auth_signed_bytes(&X1, &[0; 32], &d.address))
            .to_bytes();
    let auth = |address: &DeviceAddress, signature| Request::Authenticate {
        address: address.clone(),
        signature,
    };
    assert_eq!(
        err(&e.req(&mut c, X1, auth(&d.address, sig), T0)),
        ErrorCode::AuthFailed
    );
    // Signed for another connection's exporter.
    let Response::ChallengeIssued { nonce } = e.req(&mut c, X1, Request::Challenge, T0) else {
        panic!()
    };
    let sig =
        d.id.sign(&auth_signed_bytes(&X2, &nonce, &d.address))
            .to_bytes();
    assert_eq!(
        err(&e.req(&mut c, X1, auth(&d.address, sig), T0)),
        ErrorCode::AuthFailed
    );
    // The nonce was consumed by that failure: the right signature over it fails too.
    let sig =
        d.id.sign(&auth_signed_bytes(&X1, &nonce, &d.address))
            .to_bytes();
    assert_eq!(
        err(&e.req(&mut c, X1, auth(&d.address, sig), T0)),
        ErrorCode::AuthFailed
    );
    // Unknown device.
    let Response::ChallengeIssued { nonce } = e.req(&mut c, X1, Request::Challenge, T0) else {
        panic!()
    };
    let ghost = DeviceAddress::new(d.address.account.clone(), DeviceId(7));
    let sig =
        d.id.sign(&auth_signed_bytes(&X1, &nonce, &ghost))
            .to_bytes();
    assert_eq!(
        err(&e.req(&mut c, X1, auth(&ghost, sig), T0)),
        ErrorCode::AuthFailed
    );
    // Four failures so far; the fifth is allowed, then the connection is rate limited.
    assert_eq!(
        err(&e.req(&mut c, X1, auth(&ghost, sig), T0)),
        ErrorCode::AuthFailed
    );
    let r = e.req(&mut c, X1, auth(&ghost, sig), T0);
    assert_eq!(err(&r), ErrorCode::RateLimited);
    assert!(matches!(r, Response::Error { retry_after, .. } if retry_after > 0));
    // Success on the device's own connection; a second Authenticate is refused.
    assert!(matches!(
        e.authenticate(&mut d, T0),
        Response::Error {
            code: ErrorCode::AlreadyAuthenticated,
            ..
        }
    ));
    assert_eq!(d.conn.authenticated(), Some(&d.address));
}

#[test]
fn authenticated_reports_counts() {
    let e = env();
    let mut d = e.device("+15550001111", 1, T0);
    e.upload(&mut d, 3, 2, T0);
    let mut s = e.device("+15550002222", 2, T0);
    e.send(&mut s, &d.address.account, &[1], T0);
    let mut again = Dev {
        conn: e.h.new_connection(5, T0),
        exporter: [5; 32],
        ..d
    };
    assert_eq!(
        e.authenticate(&mut again, T0),
        Response::Authenticated {
            one_time_prekeys: 3,
            kem_prekeys: 2,
            queued: 1
        }
    );
}

#[test]
fn prekey_upload_checks_signatures_keys_and_limits() {
    let e = env_with(Limits {
        max_stored_one_time: 6,
        ..Limits::default()
    });
    let mut d = e.device("+15550001111", 1, T0);
    let mut rng = rand::rng();
    let good_spk = d.keys.generate_signed_prekey(&mut rng, &d.id, 1);
    let good_kem = d
        .keys
        .generate_kem_prekeys(&mut rng, &d.id, KemPreKeyKind::OneTime, 1, 1)
        .remove(0);
    let mut upload =
        |u: PreKeyUpload| e.req(&mut d.conn, d.exporter, Request::UploadPreKeys(u), T0);

    let mut bad_spk = good_spk.clone();
    bad_spk.signature[0] ^= 1;
    let mut bad_kem_sig = good_kem.clone();
    bad_kem_sig.created_at += 1;
    // A KEM key failing the modulus check, correctly signed.
    let other = IdentityKeyPair::generate(&mut rng);
    let junk = Box::new([0xff; KEM_PUBLIC_LEN]);
    let msg = KemPreKeyPublic::signed_bytes(
        &d.id.public().to_wire().dh,
        50,
        KemPreKeyKind::OneTime,
        1,
        &junk,
    );
    let invalid_kem = KemPreKeyPublic {
        id: 50,
        kind: KemPreKeyKind::OneTime,
        created_at: 1,
        public: junk,
        signature: d.id.sign(&msg).to_bytes(),
    };
    // A prekey signed by another identity.
    let foreign_spk = PreKeyStore::new().generate_signed_prekey(&mut rng, &other, 1);
    let cases = [
        PreKeyUpload {
            signed_prekey: Some(bad_spk),
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            signed_prekey: Some(foreign_spk),
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            kem: vec![bad_kem_sig],
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            kem: vec![invalid_kem],
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            one_time: vec![(1, [1; 32]), (1, [2; 32])],
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            kem: vec![good_kem.clone(), good_kem.clone()],
            ..PreKeyUpload::default()
        },
    ];
    for (i, u) in cases.into_iter().enumerate() {
        // Valid parts alongside the invalid one are not stored either.
        let mut u = u;
        u.one_time.push((100 + i as u32, [3; 32]));
        assert_eq!(err(&upload(u)), ErrorCode::InvalidPreKey, "case {i}");
    }
    assert_eq!(
        e.store.prekey_counts(&d.address).unwrap(),
        crate::store::PreKeyCounts::default()
    );
    let ok = PreKeyUpload {
        signed_prekey: Some(good_spk),
        one_time: vec![(1, [1; 32]), (2, [2; 32])],
        kem: vec![good_kem],
    };
    assert_eq!(
        upload(ok.clone()),
        Response::PreKeysStored {
            one_time_prekeys: 2,
            kem_prekeys: 1
        }
    );
    // The same ids again.
    assert_eq!(err(&upload(ok)), ErrorCode::InvalidPreKey);
    // Over the stored limit (2 + 5 > 6).
    let five = PreKeyUpload {
        one_time: (10..15).map(|i| (i, [i as u8; 32])).collect(),
        ..PreKeyUpload::default()
    };
    assert_eq!(err(&upload(five)), ErrorCode::TooManyPreKeys);
}

#[test]
fn bundles_verify_are_consumed_once_and_signal_low_prekeys() {
    let e = env_with(Limits {
        bundle_fetches_per_minute: 3,
        ..Limits::default()
    });
    let mut bob = e.device("+15550001111", 1, T0);
    e.upload(&mut bob, 21, 6, T0);
    let mut alice = e.device("+15550002222", 2, T0);
    let b = bob.address.account.clone();
    let fetch = |alice: &mut Dev, now| {
        e.h.handle(
            &mut alice.conn,
            alice.exporter,
            Request::FetchBundles { account: b.clone() },
            now,
        )
    };
    let (r, effects) = fetch(&mut alice, T0);
    let Response::Bundles(bundles) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bundles.len(), 1);
    VerifiedBundle::verify(&bundles[0]).unwrap();
    let first_opk = bundles[0].one_time_prekey.unwrap().0;
    assert!(effects.is_empty(), "20 and 5 left: not low yet");
    let (r, effects) = fetch(&mut alice, T0);
    let Response::Bundles(bundles) = r else {
        panic!()
    };
    assert_ne!(bundles[0].one_time_prekey.unwrap().0, first_opk);
    assert_eq!(
        effects,
        vec![Effect::PreKeysLow {
            device: bob.address.clone(),
            one_time_prekeys: 19,
            kem_prekeys: 4
        }]
    );
    // Unknown accounts; then the per-connection rate limit.
    let r =
        e.h.handle(
            &mut alice.conn,
            alice.exporter,
            Request::FetchBundles {
                account: acct("+15559999999"),
            },
            T0,
        )
        .0;
    assert_eq!(err(&r), ErrorCode::UnknownAccount);
    assert_eq!(err(&fetch(&mut alice, T0).0), ErrorCode::RateLimited);
    assert!(matches!(
        fetch(&mut alice, T0 + 20_000).0,
        Response::Bundles(_)
    ));
    // ListDevices.
    let r = e.req(
        &mut alice.conn,
        alice.exporter,
        Request::ListDevices { account: b.clone() },
        T0,
    );
    let Response::Devices(d) = r else { panic!() };
    assert_eq!(d[0].device_id, 1);
    assert_eq!(d[0].identity, bob.id.public().to_wire());
    let r = e.req(
        &mut alice.conn,
        alice.exporter,
        Request::ListDevices {
            account: acct("+15559999999"),
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::UnknownAccount);
}

#[test]
fn send_checks_devices_queue_size_and_rate() {
    let e = env_with(Limits {
        max_queued_per_device: 2,
        send_burst: 4,
        sends_per_second: 1,
        ..Limits::default()
    });
    let mut alice = e.device("+15550001111", 1, T0);
    let bob = e.device("+15550002222", 2, T0);
    let b = bob.address.account.clone();
    assert_eq!(
        err(&e.send(&mut alice, &b, &[2], T0).0),
        ErrorCode::MismatchedDevices
    );
    let (r, effects) = e.send(&mut alice, &b, &[1], T0);
    assert_eq!(r, Response::Accepted { timestamp: T0 });
    assert_eq!(
        effects,
        vec![Effect::MailArrived {
            device: bob.address.clone()
        }]
    );
    assert_eq!(
        e.send(&mut alice, &b, &[1], T0).0,
        Response::Accepted { timestamp: T0 }
    );
    assert_eq!(
        err(&e.send(&mut alice, &b, &[1], T0).0),
        ErrorCode::QueueFull
    );
    // Four sends used the burst; the fifth is rate limited until a token refills.
    assert_eq!(
        err(&e.send(&mut alice, &b, &[1], T0).0),
        ErrorCode::RateLimited
    );
    assert_eq!(
        err(&e.send(&mut alice, &b, &[1], T0 + 1000).0),
        ErrorCode::QueueFull
    );
    assert_eq!(
        err(&e.send(&mut alice, &acct("+15559999999"), &[1], T0 + 5000).0),
        ErrorCode::UnknownAccount
    );
    // An oversized envelope never reaches the handler logic: the decoder refuses it.
    let big = Request::Send {
        message_id: [0; 16],
        recipient: b.clone(),
        envelopes: vec![OutgoingEnvelope {
            device_id: 1,
            envelope: vec![0; sealpost_wire::relay::MAX_ENVELOPE_LEN + 1],
        }],
    }
    .encode();
    let (r, _) =
        e.h.handle_frame(&mut alice.conn, alice.exporter, &big[4..], T0 + 9000);
    assert_eq!(err(&r), ErrorCode::TooLarge);
}

#[test]
fn ack_removes_only_own_envelopes() {
    let e = env();
    let mut alice = e.device("+15550001111", 1, T0);
    let mut bob = e.device("+15550002222", 2, T0);
    e.send(&mut alice, &bob.address.account, &[1], T0);
    e.send(&mut alice, &bob.address.account, &[1], T0);
    let ids: Vec<u64> = e
        .store
        .mailbox(&bob.address, 0, 10)
        .unwrap()
        .iter()
        .map(|m| m.server_id)
        .collect();
    let ack = |d: &mut Dev, ids: Vec<u64>| {
        e.h.handle(
            &mut d.conn,
            d.exporter,
            Request::Ack { server_ids: ids },
            T0,
        )
    };
    assert_eq!(
        ack(&mut alice, ids.clone()).0,
        Response::Acked { removed: 0 }
    );
    let (r, effects) = ack(&mut bob, vec![ids[0], 12345]);
    assert_eq!(r, Response::Acked { removed: 1 });
    assert_eq!(
        effects,
        vec![Effect::Acked {
            device: bob.address.clone(),
            server_ids: vec![ids[0], 12345]
        }]
    );
    assert_eq!(e.store.queue_depth(&bob.address).unwrap(), 1);
}

#[test]
fn sending_to_own_account_excludes_the_sender() {
    let e = env();
    let mut alice = e.device("+15550001111", 1, T0);
    let a = alice.address.account.clone();
    assert_eq!(
        err(&e.send(&mut alice, &a, &[1], T0).0),
        ErrorCode::MismatchedDevices
    );
}

#[test]
fn code_request_rate_limits() {
    let e = env();
    let a = acct("+15550001111");
    let mut c = e.h.new_connection(1, T0);
    for _ in 0..3 {
        assert!(matches!(
            e.request_code(&mut c, &a, T0),
            Response::CodeSent { .. }
        ));
    }
    // Per account: 3 per 10 minutes (one token per 200 s).
    let mut c2 = e.h.new_connection(2, T0);
    let r = e.request_code(&mut c2, &a, T0);
    assert_eq!(err(&r), ErrorCode::RateLimited);
    assert!(matches!(
        r,
        Response::Error {
            retry_after: 200,
            ..
        }
    ));
    assert!(matches!(
        e.request_code(&mut c2, &a, T0 + 200_000),
        Response::CodeSent { .. }
    ));
    // Per connection: 5 per 10 minutes, whatever the accounts. (c used 3 tokens, and the
    // refused request above consumed one of c2's.)
    for n in 0..2 {
        let other = acct(&format!("+1555000300{n}"));
        assert!(matches!(
            e.request_code(&mut c, &other, T0),
            Response::CodeSent { .. }
        ));
    }
    assert_eq!(
        err(&e.request_code(&mut c, &acct("+15550003009"), T0)),
        ErrorCode::RateLimited
    );
    assert_eq!(e.codes.0.lock().unwrap().len(), 6);
}

#[test]
fn undecodable_frames_get_typed_errors() {
    let e = env();
    let mut c = e.h.new_connection(1, T0);
    let cases: [(&[u8], ErrorCode); 6] = [
        (&[1, 0x3e], ErrorCode::UnknownRequest),
        (&[2, 0x03], ErrorCode::UnsupportedVersion),
        (&[1, 0x01, 5, b'+'], ErrorCode::Malformed),
        (&[1, 0x01, 200], ErrorCode::TooLarge),
        (&[1, 0x03, 0], ErrorCode::Malformed),
        (&[1], ErrorCode::Malformed),
    ];
    for (body, code) in cases {
        let (r, effects) = e.h.handle_frame(&mut c, X1, body, T0);
        assert_eq!(err(&r), code, "{body:?}");
        assert!(effects.is_empty());
    }
}

#[test]
fn sweep_expires_old_envelopes() {
    let e = env();
    let mut alice = e.device("+15550001111", 1, T0);
    let bob = e.device("+15550002222", 2, T0);
    e.send(&mut alice, &bob.address.account, &[1], T0);
    let ttl = Limits::default().mailbox_ttl_ms();
    assert_eq!(e.h.sweep(T0 + ttl - 1).unwrap().envelopes, 0);
    assert_eq!(e.h.sweep(T0 + ttl).unwrap().envelopes, 1);
    assert_eq!(e.store.queue_depth(&bob.address).unwrap(), 0);
}

#[test]
fn registering_on_an_authenticated_connection_drops_its_authentication() {
    let e = env();
    let mut d = e.device("+15550001111", 1, T0);
    let a = d.address.account.clone();
    e.request_code(&mut d.conn, &a, T0);
    let code = e.codes.last(&a);
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let (r, _) = e.register_req(&mut d.conn, d.exporter, &a, code, &id, T0);
    assert_eq!(r, Response::Registered { device_id: 2 });
    assert!(d.conn.authenticated().is_none());
}
