//! The relay's resources and answers under abuse (spec/relay.md sections 1, 2, 5 and 7), over
//! real QUIC on 127.0.0.1 with real SQLite files in temporary directories.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Codes, Device, Raw, TestRelay, acct, config};
use sealpost_relay::{Relay, RelayError};
use sealpost_wire::relay::{
    ErrorCode, MAX_PRE_AUTH_FRAME, OutgoingEnvelope, PreKeyUpload, Push, Request, Response,
    register_signed_bytes,
};
use std::sync::Arc;
use std::time::Duration;

/// spec/relay.md section 5: one relay per data directory. A second one fails at once with a
/// typed error naming the directory; once the first has stopped, the directory is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_on_the_same_data_directory_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let first = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let second = Relay::start(config(dir.path(), &codes)).await.unwrap_err();
    assert!(
        matches!(&second, RelayError::DataDirInUse { dir: d } if d == dir.path()),
        "{second:?}"
    );
    assert_eq!(
        second.to_string(),
        format!("another sealpost-relay is using {}", dir.path().display())
    );
    first.shutdown().await;
    let again = Relay::start(config(dir.path(), &codes)).await.unwrap();
    again.shutdown().await;
}

/// The same across processes: the binary exits with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_process_on_the_same_data_directory_exits() {
    let dir = tempfile::tempdir().unwrap();
    let _first = common::RelayProcess::start(dir.path()).await;
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sealpost-relay"))
            .args(["--dev-log-codes", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&path)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("another sealpost-relay is using {}", dir.path().display());
    assert!(stderr.contains(&expected), "{stderr}");
}

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Writes a frame prefix declaring `len` body bytes and `sent` bytes of that body on a new
/// request stream, and neither finishes nor resets it (as long as the caller keeps the
/// send stream: dropping it finishes it).
async fn start_body(
    conn: &quinn::Connection,
    len: usize,
    sent: usize,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let mut bytes = u32::try_from(len).unwrap().to_be_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(0x01, sent));
    send.write_all(&bytes).await.unwrap();
    (send, recv)
}

/// spec/relay.md section 2: before authentication a frame is at most MAX_PRE_AUTH_FRAME
/// bytes, refused at its length prefix (the relay answers before any of the body arrives);
/// after authentication the usual limit applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_before_authentication_are_small() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let anon = Client::for_relay(&relay).await;
    let (send, mut recv) = start_body(&anon.conn, MAX_PRE_AUTH_FRAME + 1, 0).await;
    let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
        .await
        .expect("answered at the prefix, without the body")
        .unwrap();
    drop(send);
    let r = Response::decode(&frame[4..]).unwrap();
    assert_eq!(err(&r), ErrorCode::TooLarge, "{r:?}");
    // A frame of exactly MAX_PRE_AUTH_FRAME is read (and found malformed, not too large).
    let mut big = u32::try_from(MAX_PRE_AUTH_FRAME)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    big.extend_from_slice(&[1, 0x03]);
    big.resize(4 + MAX_PRE_AUTH_FRAME, 0);
    match anon.raw(&big).await {
        Raw::Response(r) => assert_eq!(err(&r), ErrorCode::Malformed, "{r:?}"),
        Raw::Reset => panic!("reset"),
    }
    // Once authenticated, larger requests are fine: 20 KEM prekeys are about 34 KiB.
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let r = alice.upload(10, 20).await;
    assert!(matches!(r, Response::PreKeysStored { .. }), "{r:?}");
    relay.shutdown().await;
}

/// spec/relay.md section 2: request bodies are buffered within a relay-wide budget; under
/// pressure a stalled body is abandoned long before REQUEST_TIMEOUT. 24 unauthenticated
/// connections each start the largest body allowed and never finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_stay_within_the_buffer_and_are_abandoned_under_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut cfg = config(dir.path(), &codes);
    let budget = 8 * MAX_PRE_AUTH_FRAME;
    cfg.limits.request_buffer_bytes = budget as u64;
    cfg.limits.request_buffer_per_connection = MAX_PRE_AUTH_FRAME as u64;
    cfg.limits.request_stall_timeout_ms = 300;
    let relay = Arc::new(Relay::start(cfg).await.unwrap());
    let mut clients = Vec::new();
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let c = Client::for_relay(&relay).await;
        let (send, mut recv) = start_body(&c.conn, MAX_PRE_AUTH_FRAME, 4096).await;
        streams.spawn(async move {
            let r = recv.read_to_end(1024).await;
            drop(send);
            r
        });
        clients.push(c);
    }
    // Under pressure (more than half of the buffer reserved) stalled bodies go, far sooner
    // than REQUEST_TIMEOUT (30 s): rounds of 8 bodies, each stalled 300 ms, until at most
    // half of the buffer is reserved (then the rest wait for REQUEST_TIMEOUT).
    let abandoned = async {
        while streams.len() > 4 {
            match streams.join_next().await.unwrap().unwrap() {
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                    assert_eq!(code, quinn::VarInt::from_u32(1));
                }
                other => panic!("expected a reset stream, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), abandoned)
        .await
        .expect("stalled bodies abandoned under pressure");
    assert!(relay.buffered_request_bytes() <= budget / 2);
    // Every reservation counts in the peak: never more than the budget.
    let peak = relay.peak_buffered_request_bytes();
    assert!(
        peak <= budget,
        "buffered {peak} bytes, more than the budget"
    );
    // The relay still serves.
    let fresh = Client::for_relay(&relay).await;
    let r = fresh.request(&Request::Challenge).await;
    assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
    fresh.close().await;
    // Connections that go release what they reserved.
    streams.abort_all();
    for c in clients {
        c.close().await;
    }
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while relay.buffered_request_bytes() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "buffer not released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Arc::into_inner(relay).unwrap().shutdown().await;
}

/// spec/relay.md section 3.4: one connection per device; the newest authentication wins
/// and the older connection is closed with application code 3. Mail goes to the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_authenticating_again_replaces_its_older_connection() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    let old = std::mem::replace(&mut alice.client, Client::for_relay(&relay).await);
    let r = alice.authenticate().await;
    assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
    match tokio::time::timeout(common::TIMEOUT, old.conn.closed())
        .await
        .expect("the older connection is closed")
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    let r = bob
        .client
        .request(&Request::Send {
            message_id: [7; 16],
            sender_seq: 1,
            recipient: alice.address.account.clone(),
            envelopes: vec![OutgoingEnvelope {
                device_id: alice.address.device.0,
                envelope: b"hi".to_vec(),
            }],
        })
        .await;
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    match alice.client.next_push().await {
        Push::Deliver(d) => assert_eq!(d.envelope, b"hi"),
        other => panic!("{other:?}"),
    }
    relay.shutdown().await;
}

/// spec/relay.md sections 3.5, 3.8 and 6: counts over the per-request limits, and empty acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_limits_answer_their_spec_errors() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let alice = Device::register(&relay, &codes, "+15550000001").await;
    let one_time = PreKeyUpload {
        one_time: (0..=200).map(|i| (i, [9; 32])).collect(),
        ..PreKeyUpload::default()
    };
    match alice
        .client
        .request(&Request::UploadPreKeys(one_time))
        .await
    {
        Response::Error { code, detail, .. } => {
            assert_eq!(code, ErrorCode::TooManyPreKeys);
            assert_eq!(detail, "201 one-time prekeys, limit 200");
        }
        other => panic!("{other:?}"),
    }
    // 51 KEM prekeys: the count is checked before any key is read.
    let mut kem = Request::UploadPreKeys(PreKeyUpload::default()).encode();
    kem.truncate(kem.len() - 2);
    kem.extend_from_slice(&51u16.to_be_bytes());
    let len = u32::try_from(kem.len() - 4).unwrap();
    kem[..4].copy_from_slice(&len.to_be_bytes());
    match alice.client.raw(&kem).await {
        Raw::Response(r) => assert_eq!(err(&r), ErrorCode::TooManyPreKeys, "{r:?}"),
        Raw::Reset => panic!("reset"),
    }
    let acks = Request::Ack {
        server_ids: vec![1; 1001],
    };
    assert_eq!(err(&alice.client.request(&acks).await), ErrorCode::TooLarge);
    let empty = Request::Ack { server_ids: vec![] };
    assert_eq!(
        alice.client.request(&empty).await,
        Response::Acked { removed: 0 }
    );
    relay.shutdown().await;
}

/// spec/relay.md section 4: a `server_id` is a random id valid on the connection that
/// received the envelope; it says nothing about the relay's traffic, and an id from an
/// earlier connection acknowledges nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ids_are_opaque_and_per_connection() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let (addr, fp) = (relay.local_addr(), relay.cert_fingerprint());
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    for n in 0..3u8 {
        let r = bob
            .client
            .request(&Request::Send {
                message_id: [n; 16],
                sender_seq: u64::from(n) + 1,
                recipient: alice.address.account.clone(),
                envelopes: vec![OutgoingEnvelope {
                    device_id: alice.address.device.0,
                    envelope: vec![n],
                }],
            })
            .await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    let mut first = Vec::new();
    for _ in 0..3 {
        match alice.client.next_push().await {
            Push::Deliver(d) => first.push(d.server_id),
            other => panic!("{other:?}"),
        }
    }
    // Not a relay-wide sequence (which gave 1, 2, 3 here).
    assert!(
        !first.windows(2).all(|w| w[1] == w[0] + 1),
        "sequential server ids: {first:?}"
    );
    // On a new connection the same envelopes come with other ids; the old ones are void.
    let r = alice.reconnect(addr, fp).await;
    assert!(
        matches!(r, Response::Authenticated { queued: 3, .. }),
        "{r:?}"
    );
    let mut second = Vec::new();
    for _ in 0..3 {
        match alice.client.next_push().await {
            Push::Deliver(d) => second.push(d.server_id),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "{first:?} {second:?}"
    );
    let r = alice
        .client
        .request(&Request::Ack {
            server_ids: first.clone(),
        })
        .await;
    assert_eq!(r, Response::Acked { removed: 0 });
    let r = alice
        .client
        .request(&Request::Ack { server_ids: second })
        .await;
    assert_eq!(r, Response::Acked { removed: 3 });
    relay.shutdown().await;
}

/// spec/relay.md section 1: with `retry_threshold` 0 every unvalidated peer gets a QUIC
/// Retry; quinn clients follow it and connect. Per-address slots count validated
/// connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_relays_validate_addresses_with_retry() {
    let TestRelay {
        dir: _dir,
        codes: _,
        relay,
    } = TestRelay::start_with(|cfg| {
        cfg.limits.retry_threshold = 0;
        cfg.limits.max_connections_per_ip = 2;
    })
    .await;
    assert_eq!(relay.retries_sent(), 0);
    let a = Client::for_relay(&relay).await;
    let r = a.request(&Request::Challenge).await;
    assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
    assert_eq!(relay.retries_sent(), 1);
    let b = Client::for_relay(&relay).await;
    assert_eq!(relay.retries_sent(), 2);
    // A third connection from 127.0.0.1 is refused once its address is validated.
    let alpn = vec![sealpost_wire::relay::ALPN.to_vec()];
    let third = common::connect_with(relay.local_addr(), relay.cert_fingerprint(), alpn).await;
    assert!(third.is_err(), "over the per-address limit");
    assert_eq!(relay.retries_sent(), 3);
    drop((a, b));
    relay.shutdown().await;
}

/// spec/relay.md section 3.2: the code is six ASCII digits; other bytes never match and
/// count as a wrong code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_with_a_non_digit_is_a_wrong_code() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let c = Client::for_relay(&relay).await;
    let a = acct("+15550000001");
    let r = c
        .request(&Request::RequestCode { account: a.clone() })
        .await;
    assert!(matches!(r, Response::CodeSent { .. }), "{r:?}");
    let id = sealpost_session::IdentityKeyPair::generate(&mut rand::rng());
    let identity = id.public().to_wire();
    let signature = id
        .sign(&register_signed_bytes(&c.exporter, &a, &identity))
        .to_bytes();
    let register = |code| Request::Register {
        account: a.clone(),
        code,
        identity,
        signature,
        reglock: None,
    };
    let mut letter = codes.last(&a);
    letter[5] = b'a';
    for _ in 0..5 {
        assert_eq!(
            err(&c.request(&register(letter)).await),
            ErrorCode::CodeInvalid
        );
    }
    assert_eq!(
        err(&c.request(&register(codes.last(&a))).await),
        ErrorCode::CodeAttemptsExceeded
    );
    relay.shutdown().await;
}

/// spec/relay.md section 1: a client without ALPN `sealpost/1` is refused by the TLS
/// handshake (alert no_application_protocol, QUIC CRYPTO_ERROR 0x178), not by code 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_alpn_is_refused_by_tls() {
    let TestRelay {
        dir: _dir,
        codes: _,
        relay,
    } = TestRelay::start().await;
    let r = common::connect_with(
        relay.local_addr(),
        relay.cert_fingerprint(),
        vec![b"h3".to_vec()],
    )
    .await;
    let e = r.expect_err("connected without ALPN sealpost/1");
    assert!(e.contains("120"), "{e}");
    relay.shutdown().await;
}

/// spec/relay.md section 2.1: one authenticated connection cannot reserve more than its own
/// buffer, however many bodies it starts (it once held +94 MiB with 32 stalled streams).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_stays_within_its_own_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut cfg = config(dir.path(), &codes);
    let own = 64 * 1024;
    cfg.limits.request_buffer_per_connection = own as u64;
    let relay = Arc::new(Relay::start(cfg).await.unwrap());
    let alice = Device::register(&relay, &codes, "+15550000001").await;
    let until = |n: usize| {
        let relay = Arc::clone(&relay);
        async move {
            let deadline = tokio::time::Instant::now() + common::TIMEOUT;
            while relay.buffered_request_bytes() != n {
                assert!(tokio::time::Instant::now() < deadline, "never {n} bytes");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let len = 40 * 1024;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(start_body(&alice.client.conn, len, 1024).await);
    }
    // One body fits, the others wait for it; finishing bodies lets the next one in.
    until(len).await;
    let mut recvs = Vec::new();
    for (mut send, recv) in bodies {
        send.write_all(&vec![0; len - 1024]).await.unwrap();
        send.finish().unwrap();
        recvs.push(recv);
    }
    for mut recv in recvs {
        let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
            .await
            .expect("answered")
            .unwrap();
        let r = Response::decode(&frame[4..]).unwrap();
        assert_eq!(err(&r), ErrorCode::Malformed, "{r:?}");
    }
    until(0).await;
    // Every reservation counts in the peak: one body at a time, never two.
    assert_eq!(relay.peak_buffered_request_bytes(), len);
    drop(alice);
    Arc::into_inner(relay).unwrap().shutdown().await;
}
