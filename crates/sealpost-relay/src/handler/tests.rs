use super::*;
use crate::store::{AnyStore, MemoryStore};
use rand::SeedableRng;
use sealpost_session::{IdentityKeyPair, PreKeyStore, VerifiedBundle};
use sealpost_wire::KEM_PUBLIC_LEN;

const T0: u64 = 1_700_000_000_000;

/// The output of a handler or store future over the memory store, which is ready at once
/// (its methods never wait): one poll. Panics if the future is pending.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a memory-store future was pending"),
    }
}
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
    store: Arc<AnyStore>,
}

fn env_with(limits: Limits) -> Env {
    let store = Arc::new(AnyStore::from(MemoryStore::new()));
    let codes = Arc::new(Capture::default());
    let h = Handler::new(
        Arc::clone(&store),
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
        ready(self.h.handle(c, x, r, now)).0
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
        ready(self.h.handle(
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
        ))
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
        ready(self.h.handle(
            &mut d.conn,
            d.exporter,
            Request::Send {
                message_id: [1; 16],
                sender_seq: 0,
                recipient: to.clone(),
                envelopes,
            },
            now,
        ))
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
            sender_seq: 0,
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
    assert_eq!(ready(e.store.queue_depth(&old.address)).unwrap(), 0);
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
            queued: 1,
            sender_seq: 0,
        }
    );
}

/// `Authenticated` reports the highest `sender_seq` the relay accepted from the device, over
/// both request paths; an out-of-order (lower) value is accepted and lowers nothing.
#[test]
fn authenticated_reports_the_highest_sender_seq() {
    let e = env();
    let bob = e.device("+15550002222", 1, T0);
    let mut alice = e.device("+15550001111", 1, T0);
    let send = |seq: u64| Request::Send {
        message_id: [seq as u8; 16],
        sender_seq: seq,
        recipient: bob.address.account.clone(),
        envelopes: vec![OutgoingEnvelope {
            device_id: 1,
            envelope: vec![1],
        }],
    };
    let (r, _) = ready(e.h.handle(&mut alice.conn, alice.exporter, send(7), T0));
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    let (r, _) = ready(e.h.handle(&mut alice.conn, alice.exporter, send(3), T0));
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    let frame = send(9).encode();
    let (r, _) = ready(e.h.handle_send_or_ack(&alice.conn.snapshot(), &frame[4..], T0)).unwrap();
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    let seq_of = |d: Dev, id: u64| {
        let mut again = Dev {
            conn: e.h.new_connection(id, T0),
            exporter: [5; 32],
            ..d
        };
        match e.authenticate(&mut again, T0) {
            Response::Authenticated { sender_seq, .. } => sender_seq,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seq_of(alice, 40), 9);
    assert_eq!(seq_of(bob, 41), 0, "the recipient's own value is untouched");
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
        ready(e.store.prekey_counts(&d.address)).unwrap(),
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
        ready(e.h.handle(
            &mut alice.conn,
            alice.exporter,
            Request::FetchBundles { account: b.clone() },
            now,
        ))
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
    let r = ready(e.h.handle(
        &mut alice.conn,
        alice.exporter,
        Request::FetchBundles {
            account: acct("+15559999999"),
        },
        T0,
    ))
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
    let queued = ready(e.store.mailbox(&bob.address, 0, 10)).unwrap();
    assert_eq!(
        effects,
        vec![Effect::MailArrived {
            device: bob.address.clone(),
            up_to: queued[0].server_id,
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
        sender_seq: 0,
        recipient: b.clone(),
        envelopes: vec![OutgoingEnvelope {
            device_id: 1,
            envelope: vec![0; sealpost_wire::relay::MAX_ENVELOPE_LEN + 1],
        }],
    }
    .encode();
    let (r, _) = ready(e.h.handle_frame(&mut alice.conn, alice.exporter, &big[4..], T0 + 9000));
    assert_eq!(err(&r), ErrorCode::TooLarge);
}

/// `handle_send_or_ack` answers a `Send` once it is committed, with `MailArrived` naming the
/// committed id; a refused send has no effect; any other request is left to `handle_frame`.
#[test]
fn send_or_ack_from_a_snapshot() {
    let e = env();
    let alice = e.device("+15550001111", 1, T0);
    let bob = e.device("+15550002222", 2, T0);
    let body = |recipient: &AccountId| {
        Request::Send {
            message_id: [9; 16],
            sender_seq: 0,
            recipient: recipient.clone(),
            envelopes: vec![OutgoingEnvelope {
                device_id: 1,
                envelope: b"sent".to_vec(),
            }],
        }
        .encode()
    };
    let snap = alice.conn.snapshot();
    let got = ready(e.h.handle_send_or_ack(&snap, &body(&bob.address.account)[4..], T0));
    let stored = ready(e.store.mailbox(&bob.address, 0, 10)).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].envelope, b"sent");
    assert_eq!(
        got,
        Some((
            Response::Accepted { timestamp: T0 },
            vec![Effect::MailArrived {
                device: bob.address.clone(),
                up_to: stored[0].server_id,
            }]
        ))
    );
    let (r, effects) =
        ready(e.h.handle_send_or_ack(&snap, &body(&acct("+15559999999"))[4..], T0)).unwrap();
    assert_eq!(err(&r), ErrorCode::UnknownAccount);
    assert!(effects.is_empty());
    let challenge = Request::Challenge.encode();
    assert_eq!(
        ready(e.h.handle_send_or_ack(&snap, &challenge[4..], T0)),
        None
    );
}

#[test]
fn ack_removes_only_own_envelopes() {
    let e = env();
    let mut alice = e.device("+15550001111", 1, T0);
    let mut bob = e.device("+15550002222", 2, T0);
    e.send(&mut alice, &bob.address.account, &[1], T0);
    e.send(&mut alice, &bob.address.account, &[1], T0);
    let ids: Vec<u64> = ready(e.store.mailbox(&bob.address, 0, 10))
        .unwrap()
        .iter()
        .map(|m| m.server_id)
        .collect();
    let ack = |d: &mut Dev, ids: Vec<u64>| {
        ready(e.h.handle(
            &mut d.conn,
            d.exporter,
            Request::Ack { server_ids: ids },
            T0,
        ))
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
    assert_eq!(ready(e.store.queue_depth(&bob.address)).unwrap(), 1);
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
        let (r, effects) = ready(e.h.handle_frame(&mut c, X1, body, T0));
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
    assert_eq!(ready(e.h.sweep(T0 + ttl - 1)).unwrap().envelopes, 0);
    assert_eq!(ready(e.h.sweep(T0 + ttl)).unwrap().envelopes, 1);
    assert_eq!(ready(e.store.queue_depth(&bob.address)).unwrap(), 0);
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

// ---------------------------------------------------------------------------------------
// Registration lock and guardian role (spec/pin.md sections 7, 9, 10).
// ---------------------------------------------------------------------------------------

use sealpost_crypto::ed25519::SigningKey;
use sealpost_pin::normalize::normalize;
use sealpost_pin::stretch::Argon2Params;
use sealpost_pin::threshold::GuardianResponse;
use sealpost_pin::vault::{Enrollment, MasterSecret, Recovery, enroll};
use sealpost_wire::relay::{CredentialScope, GuardianCredential, credential_signed_bytes};

const DAY_MS: u64 = 24 * 3600 * 1000;
const ALICE: &str = "+15550001111";

fn env_guardian(limits: Limits, guardian: GuardianConfig) -> Env {
    let mut e = env_with(limits);
    let store = Arc::clone(&e.store);
    e.h = Handler::new(
        store,
        Arc::clone(&e.codes) as Arc<dyn CodeSender>,
        [5; 32],
        e.h.limits().clone(),
        StdRng::seed_from_u64(8),
    )
    .with_guardian(guardian)
    .unwrap();
    e
}

fn loose_limits() -> Limits {
    Limits {
        code_requests_per_account: 1000,
        code_requests_per_connection: 1000,
        code_requests_per_source_per_hour: 1_000_000,
        code_requests_per_country_per_hour: 1_000_000,
        code_requests_per_hour: 1_000_000,
        bundle_fetches_per_pair_burst: 1_000_000,
        bundle_fetches_per_target_per_day: 1_000_000,
        ..Limits::default()
    }
}

impl Env {
    fn register_with(
        &self,
        c: &mut ConnectionState,
        a: &AccountId,
        code: [u8; 6],
        id: &IdentityKeyPair,
        reglock: Option<[u8; 32]>,
        now: u64,
    ) -> Response {
        let identity = id.public().to_wire();
        let signature = id
            .sign(&register_signed_bytes(&X2, a, &identity))
            .to_bytes();
        self.req(
            c,
            X2,
            Request::Register {
                account: a.clone(),
                code,
                identity,
                signature,
                reglock,
            },
            now,
        )
    }

    fn new_code(&self, c: &mut ConnectionState, a: &AccountId, now: u64) -> [u8; 6] {
        assert!(matches!(
            self.request_code(c, a, now),
            Response::CodeSent { .. }
        ));
        self.codes.last(a)
    }

    fn owner_credential(&self, d: &mut Dev, now: u64) -> GuardianCredential {
        match self.req(&mut d.conn, d.exporter, Request::GetGuardianCredential, now) {
            Response::Credential(c) => c,
            other => panic!("{other:?}"),
        }
    }
}

fn verify_credential(c: &GuardianCredential, issuer: [u8; 32]) {
    assert_eq!(c.issuer, issuer);
    VerifyingKey::from_bytes(&issuer)
        .unwrap()
        .verify(&c.signed_bytes(), &Signature::from_bytes(c.signature))
        .unwrap();
}

#[test]
fn locked_registration_gets_a_typed_answer_and_keeps_the_code() {
    let e = env_with(loose_limits());
    let a = acct(ALICE);
    let mut owner = e.device(ALICE, 1, T0);
    let token = [0x5A; 32];
    assert_eq!(
        e.req(
            &mut owner.conn,
            owner.exporter,
            Request::SetRegistrationLock { token },
            T0
        ),
        Response::RegistrationLockSet
    );
    // A day later a new phone registers with the right code but no token.
    let t1 = T0 + DAY_MS + 500;
    let mut c = e.h.new_connection(9, t1);
    let code = e.new_code(&mut c, &a, t1);
    let new_id = IdentityKeyPair::generate(&mut rand::rng());
    let r = e.register_with(&mut c, &a, code, &new_id, None, t1);
    let Response::RegistrationLocked {
        lapses_in,
        attempts_remaining,
        credential,
    } = r
    else {
        panic!("{r:?}")
    };
    // last_seen is T0 (registration and authentication): 6 days left, rounded up.
    assert_eq!(
        u64::from(lapses_in),
        (7 * DAY_MS - DAY_MS - 500).div_ceil(1000)
    );
    assert_eq!(attempts_remaining, 10);
    assert_eq!(credential.scope, CredentialScope::Recovery);
    assert_eq!(credential.account, a);
    assert_eq!(credential.expires_at, t1 / 1000 + 3600);
    verify_credential(&credential, e.h.issuer_public());
    // The owner's device is untouched and the same code registers with the token.
    assert_eq!(ready(e.store.list_devices(&a)).unwrap().len(), 1);
    let r = e.register_with(&mut c, &a, code, &new_id, Some(token), t1);
    assert_eq!(r, Response::Registered { device_id: 2 });
    // The verifier is kept for the new device (it knows the PIN).
    let state = ready(e.store.registration_lock(&a)).unwrap().unwrap();
    assert!(state.verifier.is_some());
    assert_eq!((state.failures, state.last_seen), (0, t1));
    // The relay keeps the verifier, never the token.
    assert_ne!(state.verifier, Some(token));
}

#[test]
fn wrong_tokens_are_limited_and_the_lock_lapses_after_seven_quiet_days() {
    let e = env_with(loose_limits());
    let a = acct(ALICE);
    let mut owner = e.device(ALICE, 1, T0);
    let right = [1; 32];
    e.req(
        &mut owner.conn,
        owner.exporter,
        Request::SetRegistrationLock { token: right },
        T0,
    );
    let mut c = e.h.new_connection(9, T0);
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let mut code = e.new_code(&mut c, &a, T0);
    for i in 1..=10u16 {
        if i % 4 == 0 {
            // Codes expire and have their own attempt limit: fresh ones keep the test honest.
            code = e.new_code(&mut c, &a, T0);
        }
        match e.register_with(&mut c, &a, code, &id, Some([i as u8 + 1; 32]), T0) {
            Response::RegistrationLocked {
                attempts_remaining, ..
            } => assert_eq!(attempts_remaining, 10 - i),
            other => panic!("{other:?}"),
        }
    }
    // Used up: even the right token is refused, unchecked.
    match e.register_with(&mut c, &a, code, &id, Some(right), T0) {
        Response::RegistrationLocked {
            attempts_remaining, ..
        } => assert_eq!(attempts_remaining, 0),
        other => panic!("{other:?}"),
    }
    // The owner keeps using the account: authentication on day 3 moves the lapse.
    let mut again = e.h.new_connection(2, T0 + 3 * DAY_MS);
    std::mem::swap(&mut owner.conn, &mut again);
    assert!(matches!(
        e.authenticate(&mut owner, T0 + 3 * DAY_MS),
        Response::Authenticated { .. }
    ));
    // ... and so does the close of that connection on day 4.
    ready(e.h.connection_closed(&owner.conn, T0 + 4 * DAY_MS)).unwrap();
    let t = T0 + 4 * DAY_MS + 7 * DAY_MS - 1;
    let code = e.new_code(&mut c, &a, t);
    match e.register_with(&mut c, &a, code, &id, None, t) {
        Response::RegistrationLocked { lapses_in, .. } => assert_eq!(lapses_in, 1),
        other => panic!("{other:?}"),
    }
    // Seven days after the device was last seen the code alone registers and clears the lock.
    let t = T0 + 11 * DAY_MS;
    assert_eq!(
        e.register_with(&mut c, &a, code, &id, None, t),
        Response::Registered { device_id: 2 }
    );
    let state = ready(e.store.registration_lock(&a)).unwrap().unwrap();
    assert_eq!((state.verifier, state.failures), (None, 0));
}

#[test]
fn registration_lock_requests_need_authentication_and_clear_works() {
    let e = env();
    let mut c = e.h.new_connection(5, T0);
    for r in [
        Request::SetRegistrationLock { token: [1; 32] },
        Request::ClearRegistrationLock,
        Request::GetGuardianCredential,
    ] {
        assert_eq!(err(&e.req(&mut c, X1, r, T0)), ErrorCode::Unauthenticated);
    }
    let mut d = e.device(ALICE, 1, T0);
    e.req(
        &mut d.conn,
        d.exporter,
        Request::SetRegistrationLock { token: [1; 32] },
        T0,
    );
    assert_eq!(
        e.req(&mut d.conn, d.exporter, Request::ClearRegistrationLock, T0),
        Response::RegistrationLockCleared
    );
    assert_eq!(
        ready(e.store.registration_lock(&acct(ALICE)))
            .unwrap()
            .unwrap()
            .verifier,
        None
    );
    let cred = e.owner_credential(&mut d, T0);
    assert_eq!(cred.scope, CredentialScope::Owner);
    verify_credential(&cred, e.h.issuer_public());
}

fn enrol(account: &str, t: usize, n: usize) -> (MasterSecret, Enrollment) {
    let mut rng = rand::rng();
    let ms = MasterSecret::generate(&mut rng);
    let pin = normalize("246810").unwrap();
    let en = enroll(&pin, account, &ms, t, n, &Argon2Params::testing(), &mut rng).unwrap();
    (ms, en)
}

fn store_req(c: &GuardianCredential, en: &Enrollment, i: usize) -> Request {
    let g = &en.guardians[i];
    Request::VaultStore {
        credential: c.clone(),
        share: *g.share.to_bytes(),
        success_verifier: g.success_verifier,
        record: en.record.encode(),
    }
}

/// A credential signed by `key` (any issuer), for the negative cases.
fn forge(
    key: &SigningKey,
    account: &AccountId,
    scope: CredentialScope,
    expires_at: u64,
) -> GuardianCredential {
    let issuer = key.verifying_key().to_bytes();
    GuardianCredential {
        account: account.clone(),
        scope,
        expires_at,
        issuer,
        signature: key
            .sign(&credential_signed_bytes(
                account, scope, expires_at, &issuer,
            ))
            .to_bytes(),
    }
}

#[test]
fn guardian_serves_a_whole_recovery() {
    let e = env_guardian(
        loose_limits(),
        GuardianConfig {
            max_attempts: 3,
            ..GuardianConfig::default()
        },
    );
    let a = acct(ALICE);
    let mut d = e.device(ALICE, 1, T0);
    let owner = e.owner_credential(&mut d, T0);
    let (ms, en) = enrol(ALICE, 1, 1);
    let mut anon = e.h.new_connection(7, T0);
    assert_eq!(
        e.req(&mut anon, X1, store_req(&owner, &en, 0), T0),
        Response::VaultStored
    );
    // A new phone: locked registration, Recovery credential.
    e.req(
        &mut d.conn,
        d.exporter,
        Request::SetRegistrationLock {
            token: *ms.reglock_token().as_bytes(),
        },
        T0,
    );
    let code = e.new_code(&mut anon, &a, T0);
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let Response::RegistrationLocked { credential, .. } =
        e.register_with(&mut anon, &a, code, &id, None, T0)
    else {
        panic!()
    };
    // The Recovery scope cannot store or delete.
    for r in [
        store_req(&credential, &en, 0),
        Request::VaultDelete {
            credential: credential.clone(),
        },
    ] {
        assert_eq!(
            err(&e.req(&mut anon, X1, r, T0)),
            ErrorCode::CredentialInvalid
        );
    }
    let Response::Vault {
        index,
        attempts_remaining,
        record,
    } = e.req(
        &mut anon,
        X1,
        Request::VaultFetch {
            credential: credential.clone(),
        },
        T0,
    )
    else {
        panic!()
    };
    assert_eq!((index, attempts_remaining), (1, 3));
    let record = sealpost_pin::vault::VaultRecord::decode(&record).unwrap();
    let vault_id = *record.vault_id();
    // A wrong PIN first: counted.
    let wrong = normalize("135790").unwrap();
    let (_, blinded) = Recovery::start(&wrong, ALICE, record.clone(), &mut rand::rng()).unwrap();
    let r = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id,
            blinded: blinded.to_bytes(),
        },
        T0,
    );
    assert!(matches!(
        r,
        Response::VaultEvaluated {
            attempts_remaining: 2,
            ..
        }
    ));
    // An invalid element is refused and not counted.
    let r = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id,
            blinded: [0; 32],
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::Malformed);
    // Another vault id is VaultNotFound, not counted.
    let r = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id: [0xEE; 16],
            blinded: blinded.to_bytes(),
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::VaultNotFound);
    // The right PIN recovers the master secret.
    let pin = normalize("246810").unwrap();
    let (rec, blinded) = Recovery::start(&pin, ALICE, record, &mut rand::rng()).unwrap();
    let Response::VaultEvaluated {
        index,
        evaluated,
        proof,
        attempts_remaining,
    } = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id,
            blinded: blinded.to_bytes(),
        },
        T0,
    )
    else {
        panic!()
    };
    assert_eq!(attempts_remaining, 1);
    let recovered = rec
        .finish(&[GuardianResponse {
            index,
            evaluated: sealpost_pin::oprf::EvaluatedElement::from_slice(&evaluated).unwrap(),
            proof: sealpost_pin::oprf::Proof::from_slice(&proof).unwrap(),
        }])
        .unwrap();
    assert!(recovered.master.ct_eq(&ms));
    let token = *recovered.token_for(1).unwrap().as_bytes();
    // A wrong success token is refused and changes nothing; the right one resets.
    let confirm = |token| Request::VaultConfirm {
        credential: credential.clone(),
        vault_id,
        token,
    };
    assert_eq!(
        err(&e.req(&mut anon, X1, confirm([9; 32]), T0)),
        ErrorCode::CredentialInvalid
    );
    assert_eq!(ready(e.store.vault(&a)).unwrap().unwrap().attempts_used, 2);
    assert_eq!(
        e.req(&mut anon, X1, confirm(token), T0),
        Response::VaultConfirmed {
            attempts_remaining: 3
        }
    );
    assert_eq!(ready(e.store.vault(&a)).unwrap().unwrap().attempts_used, 0);
    // The new phone registers with the recovered token.
    assert_eq!(
        e.register_with(
            &mut anon,
            &a,
            code,
            &id,
            Some(*recovered.master.reglock_token().as_bytes()),
            T0
        ),
        Response::Registered { device_id: 2 }
    );
}

#[test]
fn evaluations_are_counted_and_the_last_deletes_the_vault() {
    let e = env_guardian(
        loose_limits(),
        GuardianConfig {
            max_attempts: 3,
            ..GuardianConfig::default()
        },
    );
    let mut d = e.device(ALICE, 1, T0);
    let owner = e.owner_credential(&mut d, T0);
    let (_, en) = enrol(ALICE, 1, 1);
    e.req(&mut d.conn, X1, store_req(&owner, &en, 0), T0);
    let vault_id = *en.record.vault_id();
    let pin = normalize("000000").unwrap();
    let (_, blinded) = Recovery::start(&pin, ALICE, en.record.clone(), &mut rand::rng()).unwrap();
    let eval = Request::VaultEvaluate {
        credential: owner.clone(),
        vault_id,
        blinded: blinded.to_bytes(),
    };
    for left in [2u16, 1, 0] {
        match e.req(&mut d.conn, X1, eval.clone(), T0) {
            Response::VaultEvaluated {
                attempts_remaining, ..
            } => assert_eq!(attempts_remaining, left),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ready(e.store.vault(&acct(ALICE))).unwrap(), None);
    assert_eq!(
        err(&e.req(&mut d.conn, X1, eval, T0)),
        ErrorCode::VaultNotFound
    );
    // Store again, then delete (idempotent).
    e.req(&mut d.conn, X1, store_req(&owner, &en, 0), T0);
    for _ in 0..2 {
        assert_eq!(
            e.req(
                &mut d.conn,
                X1,
                Request::VaultDelete {
                    credential: owner.clone()
                },
                T0
            ),
            Response::VaultDeleted
        );
    }
    assert_eq!(ready(e.store.vault(&acct(ALICE))).unwrap(), None);
}

#[test]
fn credentials_are_checked_in_order() {
    let other = SigningKey::from_seed(&[0x77; 32]);
    let trusted = SigningKey::from_seed(&[0x78; 32]);
    let trusted_hex: String = trusted
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let e = env_guardian(
        loose_limits(),
        GuardianConfig {
            accounts: vec!["+1555".into()],
            trusted_issuers: vec![trusted_hex],
            ..GuardianConfig::default()
        },
    );
    let a = acct(ALICE);
    let now_s = T0 / 1000;
    let mut c = e.h.new_connection(3, T0);
    let fetch = |credential: GuardianCredential| Request::VaultFetch { credential };
    let mut d = e.device(ALICE, 1, T0);
    let own = e.owner_credential(&mut d, T0);
    // Own and trusted issuers pass (no vault yet).
    for cred in [
        own.clone(),
        forge(&trusted, &a, CredentialScope::Recovery, now_s + 3600),
    ] {
        assert_eq!(
            err(&e.req(&mut c, X1, fetch(cred), T0)),
            ErrorCode::VaultNotFound
        );
    }
    let mut bad_sig = own.clone();
    bad_sig.signature[5] ^= 1;
    let mut tampered = own.clone();
    tampered.expires_at += 1;
    let cases = [
        (
            forge(&other, &a, CredentialScope::Owner, now_s + 3600),
            ErrorCode::CredentialInvalid,
        ),
        (bad_sig, ErrorCode::CredentialInvalid),
        (tampered, ErrorCode::CredentialInvalid),
        (
            forge(&trusted, &a, CredentialScope::Owner, now_s),
            ErrorCode::CredentialInvalid,
        ),
        (
            forge(&trusted, &a, CredentialScope::Owner, now_s + 3600 + 301),
            ErrorCode::CredentialInvalid,
        ),
        (
            forge(
                &trusted,
                &acct("+4477009000000"),
                CredentialScope::Owner,
                now_s + 10,
            ),
            ErrorCode::NotGuardian,
        ),
    ];
    for (cred, code) in cases {
        assert_eq!(
            err(&e.req(&mut c, X1, fetch(cred.clone()), T0)),
            code,
            "{cred:?}"
        );
    }
    // The edge of the skew window is accepted.
    assert_eq!(
        err(&e.req(
            &mut c,
            X1,
            fetch(forge(
                &trusted,
                &a,
                CredentialScope::Owner,
                now_s + 3600 + 300
            )),
            T0
        )),
        ErrorCode::VaultNotFound
    );
    // An hour later the relay's own credential has expired.
    assert_eq!(
        err(&e.req(&mut c, X1, fetch(own), T0 + 3600 * 1000)),
        ErrorCode::CredentialInvalid
    );
    // A relay that is not a guardian says so first.
    let off = env_guardian(loose_limits(), GuardianConfig::disabled());
    let mut c = off.h.new_connection(1, T0);
    let cred = forge(&trusted, &a, CredentialScope::Owner, now_s + 3600);
    assert_eq!(
        err(&off.req(&mut c, X1, fetch(cred), T0)),
        ErrorCode::NotGuardian
    );
}

#[test]
fn vault_store_checks_record_and_share_and_rate_limits() {
    let e = env_guardian(
        Limits {
            vault_requests_per_account: 6,
            ..loose_limits()
        },
        GuardianConfig::default(),
    );
    let mut d = e.device(ALICE, 1, T0);
    let owner = e.owner_credential(&mut d, T0);
    let (_, en) = enrol(ALICE, 2, 3);
    let (_, other) = enrol(ALICE, 2, 3);
    let mut c = e.h.new_connection(3, T0);
    // Another enrolment's share 1: its commitment is not in this record.
    let mismatched = Request::VaultStore {
        credential: owner.clone(),
        share: *other.guardians[0].share.to_bytes(),
        success_verifier: en.guardians[0].success_verifier,
        record: en.record.encode(),
    };
    assert_eq!(
        err(&e.req(&mut c, X1, mismatched, T0)),
        ErrorCode::InvalidVault
    );
    let mut bad_record = en.record.encode();
    bad_record[0] = 2;
    let r = Request::VaultStore {
        credential: owner.clone(),
        share: *en.guardians[0].share.to_bytes(),
        success_verifier: en.guardians[0].success_verifier,
        record: bad_record,
    };
    assert_eq!(err(&e.req(&mut c, X1, r, T0)), ErrorCode::InvalidVault);
    let mut zero_share = *en.guardians[0].share.to_bytes();
    zero_share[1..].fill(0);
    let r = Request::VaultStore {
        credential: owner.clone(),
        share: zero_share,
        success_verifier: en.guardians[0].success_verifier,
        record: en.record.encode(),
    };
    assert_eq!(err(&e.req(&mut c, X1, r, T0)), ErrorCode::InvalidVault);
    assert_eq!(ready(e.store.vault(&acct(ALICE))).unwrap(), None);
    // Guardian 2's material stores.
    assert_eq!(
        e.req(&mut c, X1, store_req(&owner, &en, 1), T0),
        Response::VaultStored
    );
    let Response::Vault { index, .. } = e.req(
        &mut c,
        X1,
        Request::VaultFetch {
            credential: owner.clone(),
        },
        T0,
    ) else {
        panic!()
    };
    assert_eq!(index, 2);
    // Five requests so far; the sixth passes, the seventh is rate-limited.
    let fetch = Request::VaultFetch {
        credential: owner.clone(),
    };
    assert!(matches!(
        e.req(&mut c, X1, fetch.clone(), T0),
        Response::Vault { .. }
    ));
    match e.req(&mut c, X1, fetch, T0) {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            ..
        } => assert!(retry_after > 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn calling_codes_follow_the_itu_split() {
    for (number, code) in [
        ("+15551234567", "+1"),
        ("+12425551234", "+1"),
        ("+74951234567", "+7"),
        ("+447700900123", "+44"),
        ("+4915112345678", "+49"),
        ("+861012345678", "+86"),
        ("+35312345678", "+353"),
        ("+37061234567", "+370"),
        ("+2348012345678", "+234"),
        ("+88212345678", "+882"),
        ("+9715012345678", "+971"),
        ("+2125512345678", "+212"),
    ] {
        assert_eq!(calling_code(&acct(number)), code, "{number}");
    }
}

fn code_quota_limits() -> Limits {
    Limits {
        code_requests_per_account: 1000,
        code_requests_per_connection: 1000,
        code_requests_per_source_per_hour: 1000,
        code_requests_per_country_per_hour: 1000,
        code_requests_per_hour: 1000,
        ..Limits::default()
    }
}

fn limited_by(r: &Response) -> (u32, &str) {
    match r {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            detail,
        } => (*retry_after, detail.as_str()),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// SMS pumping: fresh numbers from one source, or many sources into one country, or
/// everything together, run into the source, country and global quotas, each answered
/// with `RateLimited` and the seconds until the quota has room.
#[test]
fn code_requests_are_limited_per_source_country_and_globally() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Per source: 2 per hour; a fresh number does not help, another source does.
    let e = env_with(Limits {
        code_requests_per_source_per_hour: 2,
        ..code_quota_limits()
    });
    let mut c = e.h.new_connection(1, T0).with_source(ip("192.0.2.1"));
    for n in 0..2 {
        let r = e.request_code(&mut c, &acct(&format!("+1555000000{n}")), T0);
        assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    }
    let r = e.request_code(&mut c, &acct("+15550000009"), T0 + 1000);
    assert_eq!(limited_by(&r), (1799, "rate limited (code_source)"));
    // A new connection from the same address (IPv4-mapped or not) shares the quota; an
    // address in the same IPv6 /64 too.
    let mut again =
        e.h.new_connection(2, T0)
            .with_source(ip("::ffff:192.0.2.1"));
    let r = e.request_code(&mut again, &acct("+15550000008"), T0);
    assert_eq!(limited_by(&r).1, "rate limited (code_source)");
    let mut other = e.h.new_connection(3, T0).with_source(ip("192.0.2.2"));
    let r = e.request_code(&mut other, &acct("+15550000008"), T0);
    assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    let mut v6 = e.h.new_connection(4, T0).with_source(ip("2001:db8:1:2::1"));
    let mut v6b =
        e.h.new_connection(5, T0)
            .with_source(ip("2001:db8:1:2:ffff::9"));
    for n in 0..2 {
        let r = e.request_code(&mut v6, &acct(&format!("+1555000010{n}")), T0);
        assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    }
    let r = e.request_code(&mut v6b, &acct("+15550000109"), T0);
    assert_eq!(limited_by(&r).1, "rate limited (code_source)");

    // Per country calling code: 2 per hour into +44; +1 is unaffected.
    let e = env_with(Limits {
        code_requests_per_country_per_hour: 2,
        ..code_quota_limits()
    });
    for n in 0..2u8 {
        let mut c =
            e.h.new_connection(10, T0)
                .with_source(ip(&format!("198.51.100.{n}")));
        let r = e.request_code(&mut c, &acct(&format!("+44770090012{n}")), T0);
        assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    }
    let mut c = e.h.new_connection(11, T0).with_source(ip("198.51.100.50"));
    let r = e.request_code(&mut c, &acct("+447700900129"), T0);
    assert_eq!(limited_by(&r), (1800, "rate limited (code_country)"));
    let r = e.request_code(&mut c, &acct("+15550000001"), T0);
    assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");

    // Globally: 3 per hour, whatever the number, source or country.
    let e = env_with(Limits {
        code_requests_per_hour: 3,
        ..code_quota_limits()
    });
    for (n, number) in ["+15550000001", "+447700900123", "+4915112345678"]
        .into_iter()
        .enumerate()
    {
        let mut c =
            e.h.new_connection(20, T0)
                .with_source(ip(&format!("203.0.113.{n}")));
        let r = e.request_code(&mut c, &acct(number), T0);
        assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    }
    let mut c = e.h.new_connection(21, T0).with_source(ip("203.0.113.77"));
    let r = e.request_code(&mut c, &acct("+33612345678"), T0);
    assert_eq!(limited_by(&r), (1200, "rate limited (code_global)"));
    // No code was stored or sent for a refused request.
    assert_eq!(e.codes.0.lock().unwrap().len(), 3);
    // An hour later there is room again (one per refill period).
    let r = e.request_code(&mut c, &acct("+33612345678"), T0 + 1_200_000);
    assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
}

/// One account cannot empty another device's one-time prekeys: after the pair's burst its
/// fetches are refused with `RateLimited` (and take nothing) until the pair interval has
/// passed; the target's daily budget caps all requesters together, and the target is then
/// told with a `PreKeysLow` push (once per hour).
#[test]
fn fetch_bundles_is_limited_per_pair_and_per_target() {
    let e = env_with(Limits {
        bundle_fetches_per_pair_burst: 3,
        bundle_fetch_pair_interval_secs: 300,
        bundle_fetches_per_target_per_day: 6,
        ..loose_limits()
    });
    let mut bob = e.device("+15550000002", 2, T0);
    assert!(matches!(
        e.upload(&mut bob, 25, 6, T0),
        Response::PreKeysStored { .. }
    ));
    let mut mallory = e.device("+15550000666", 6, T0);
    let fetch = Request::FetchBundles {
        account: bob.address.account.clone(),
    };
    let counts = |e: &Env| ready(e.store.prekey_counts(&bob.address)).unwrap();
    for _ in 0..3 {
        let r = e.req(&mut mallory.conn, mallory.exporter, fetch.clone(), T0);
        assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    }
    for _ in 0..50 {
        let r = e.req(
            &mut mallory.conn,
            mallory.exporter,
            fetch.clone(),
            T0 + 1000,
        );
        assert_eq!(limited_by(&r), (299, "rate limited (fetch_pair)"));
    }
    assert_eq!(counts(&e).one_time_prekeys, 22, "only the burst was taken");
    assert_eq!(counts(&e).kem_prekeys, 3);
    // One more after the pair interval.
    let r = e.req(
        &mut mallory.conn,
        mallory.exporter,
        fetch.clone(),
        T0 + 300_000,
    );
    assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    assert_eq!(counts(&e).one_time_prekeys, 21);

    // Other requesters share the target's daily budget of 6 (4 used): two more fetches,
    // then refused, and Bob's device is told once.
    let mut others: Vec<Dev> = (0..4)
        .map(|i| e.device(&format!("+1555000100{i}"), 10 + i, T0))
        .collect();
    for o in others.iter_mut().take(2) {
        let r = e.req(&mut o.conn, o.exporter, fetch.clone(), T0 + 300_000);
        assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    }
    let o = &mut others[2];
    let (r, effects) = ready(e.h.handle(&mut o.conn, o.exporter, fetch.clone(), T0 + 300_000));
    assert_eq!(limited_by(&r).1, "rate limited (fetch_target)");
    assert_eq!(
        effects,
        vec![Effect::PreKeysLow {
            device: bob.address.clone(),
            one_time_prekeys: 19,
            kem_prekeys: 0,
        }]
    );
    let o = &mut others[3];
    let (r, effects) = ready(e.h.handle(&mut o.conn, o.exporter, fetch.clone(), T0 + 300_000));
    assert_eq!(limited_by(&r).1, "rate limited (fetch_target)");
    assert!(effects.is_empty(), "one notice per hour");
    assert_eq!(counts(&e).one_time_prekeys, 19);
}

/// `DeviceActivity` (spec/relay.md 3.12): refused before authentication like every
/// authenticated-only request; lists only the caller's own account; each time is the device's
/// newest `Authenticate` or close of an authenticated connection, rounded down to its UTC day,
/// and never moves back.
#[test]
fn device_activity_is_own_account_only_rounded_and_monotonic() {
    use sealpost_wire::relay::{DAY_SECS, DeviceLastSeen};
    let e = env();
    let mut c = e.h.new_connection(9, T0);
    assert_eq!(
        err(&e.req(&mut c, X1, Request::DeviceActivity, T0)),
        ErrorCode::Unauthenticated
    );
    // T0 is 1_699_920_000 s (its day) + 80_000 s.
    let day0 = 1_699_920_000;
    assert_eq!(day0 % DAY_SECS, 0);
    assert_eq!(T0 / 1000 - day0, 80_000);
    let activity = |d: &mut Dev, now| e.req(&mut d.conn, d.exporter, Request::DeviceActivity, now);
    let one = |id, day| {
        Response::Activity(vec![DeviceLastSeen {
            device_id: id,
            last_seen_day: day,
        }])
    };

    let mut alice = e.device(ALICE, 1, T0);
    let mut bob = e.device("+15550002222", 2, T0 + 2 * DAY_MS);
    // Registration and authentication at T0: the day of T0, not T0 itself.
    assert_eq!(activity(&mut alice, T0), one(1, day0));
    assert_eq!(activity(&mut bob, T0), one(1, day0 + 2 * DAY_SECS));

    // The close of an authenticated connection counts; the request itself does not.
    let later = T0 + 6_399_999 + DAY_MS; // the last millisecond of the next day
    assert_eq!(activity(&mut alice, later), one(1, day0));
    ready(e.h.connection_closed(&alice.conn, later)).unwrap();
    let mut again = Dev {
        conn: e.h.new_connection(3, later),
        ..alice
    };
    assert_eq!(
        err(&activity(&mut again, later)),
        ErrorCode::Unauthenticated
    );
    assert!(matches!(
        e.authenticate(&mut again, T0),
        Response::Authenticated { .. }
    ));
    // An authentication with an older clock does not move last seen back.
    assert_eq!(activity(&mut again, T0), one(1, day0 + DAY_SECS));
    // The next millisecond is the next day.
    ready(e.h.connection_closed(&again.conn, later + 1)).unwrap();
    assert_eq!(
        ready(e.store.device_activity(&acct(ALICE))).unwrap()[0].last_seen,
        later + 1
    );
    let mut third = Dev {
        conn: e.h.new_connection(4, later + 1),
        ..again
    };
    assert!(matches!(
        e.authenticate(&mut third, later + 1),
        Response::Authenticated { .. }
    ));
    assert_eq!(activity(&mut third, later + 1), one(1, day0 + 2 * DAY_SECS));
    // Bob's answer is still only Bob's device, unchanged by Alice's activity.
    assert_eq!(activity(&mut bob, later + 1), one(1, day0 + 2 * DAY_SECS));
    // A closed connection that never authenticated counts for nobody.
    ready(e.h.connection_closed(&c, later + 10 * DAY_MS)).unwrap();
    assert_eq!(activity(&mut third, later + 1), one(1, day0 + 2 * DAY_SECS));
}
