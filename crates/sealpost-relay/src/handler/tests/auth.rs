//! Authentication (spec/relay.md 3.3–3.4): bound to the exporter and the nonce; what
//! `Authenticated` reports.

use super::*;

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
