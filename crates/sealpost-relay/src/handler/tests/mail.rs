//! Mail (spec/relay.md 3.7–3.8): sends, acks, undecodable frames, expiry.

use super::*;

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
