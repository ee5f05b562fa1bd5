//! Registration (spec/relay.md 3.1–3.2, 7.1): codes, their expiry and attempts, quotas,
//! re-registration.

use super::*;

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
