//! Bad input and limits: malformed frames, rate limits, connections and streams, start-up
//! refusals, persisted code quotas.

use super::*;

/// Scenario 4: malformed frames, oversized lengths, unknown kinds, trailing bytes and
/// client-opened unidirectional streams affect only themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_isolated() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let c = Client::for_relay(&relay).await;
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![0xff, 0xff, 0xff, 0xff], ErrorCode::TooLarge),
        ([0u8, 0x30, 0, 1].to_vec(), ErrorCode::TooLarge),
        (vec![0, 0, 0, 1, 1], ErrorCode::Malformed),
        (vec![0, 0, 0, 2, 1, 0x3e], ErrorCode::UnknownRequest),
        (vec![0, 0, 0, 2, 9, 0x03], ErrorCode::UnsupportedVersion),
        (vec![0, 0, 0, 3, 1, 0x03, 0], ErrorCode::Malformed),
        (vec![0, 0], ErrorCode::Malformed),
        (vec![0, 0, 0, 9, 1, 0x03], ErrorCode::Malformed),
    ];
    for (bytes, code) in cases {
        match c.raw(&bytes).await {
            Raw::Response(r) => assert_eq!(err(&r), code, "{bytes:?}"),
            Raw::Reset => panic!("{bytes:?}: reset instead of an error response"),
        }
    }
    // A valid frame followed by more bytes on the same stream.
    let mut trailing = Request::Challenge.encode();
    trailing.extend_from_slice(&Request::Challenge.encode());
    match c.raw(&trailing).await {
        Raw::Response(r) => assert_eq!(err(&r), ErrorCode::Malformed),
        Raw::Reset => panic!("reset"),
    }
    // A stream the client resets halfway.
    let (mut send, _recv) = c.conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 1, 0, 1]).await.unwrap();
    send.reset(7u32.into()).unwrap();
    // A unidirectional stream: the relay grants none (its transport parameters, and no
    // MAX_STREAMS frame since, in the answers above), so it can never be opened.
    assert!(
        now(c.conn.open_uni()).is_none(),
        "the relay must not grant unidirectional streams"
    );
    // The same connection, and others, keep working.
    assert!(matches!(
        c.request(&Request::Challenge).await,
        Response::ChallengeIssued { .. }
    ));
    let r = alice
        .client
        .request(&Request::ListDevices {
            account: alice.address.account.clone(),
        })
        .await;
    assert!(matches!(r, Response::Devices(_)));
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    // A client without the sealpost/1 ALPN is refused.
    let r = common::connect_with(
        relay.local_addr(),
        relay.cert_fingerprint(),
        vec![b"h3".to_vec()],
    )
    .await;
    assert!(r.is_err(), "connected without ALPN sealpost/1");
    // A client pinning another fingerprint refuses the relay.
    let r = common::connect_with(relay.local_addr(), [0; 32], vec![b"sealpost/1".to_vec()]).await;
    assert!(r.is_err());
    relay.shutdown().await;
}

/// Scenario 6: rate limits and the code attempt limit over the wire; a re-registration
/// closes the old device's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_code_attempts_and_reregistration() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start_with(|cfg| {
        cfg.limits.code_requests_per_account = 2;
    })
    .await;
    let c = Client::for_relay(&relay).await;
    let a = acct("+15550000001");
    let rc = Request::RequestCode { account: a.clone() };
    assert!(matches!(c.request(&rc).await, Response::CodeSent { .. }));
    assert!(matches!(c.request(&rc).await, Response::CodeSent { .. }));
    match c.request(&rc).await {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            ..
        } => assert!(retry_after > 0 && retry_after <= 300, "{retry_after}"),
        other => panic!("{other:?}"),
    }

    // Five wrong codes, then even the right one is refused.
    let id = sealpost_session::IdentityKeyPair::generate(&mut rand::rng());
    let identity = id.public().to_wire();
    let signature = id
        .sign(&sealpost_wire::relay::register_signed_bytes(
            &c.exporter,
            &a,
            &identity,
        ))
        .to_bytes();
    let right = codes.last(&a);
    let mut wrong = right;
    wrong[0] = if wrong[0] == b'9' { b'0' } else { wrong[0] + 1 };
    let register = |code| Request::Register {
        account: a.clone(),
        code,
        identity,
        signature,
        reglock: None,
    };
    for _ in 0..5 {
        assert_eq!(
            err(&c.request(&register(wrong)).await),
            ErrorCode::CodeInvalid
        );
    }
    assert_eq!(
        err(&c.request(&register(right)).await),
        ErrorCode::CodeAttemptsExceeded
    );

    // Re-registration: the old device's connection is closed with code 1.
    let old = Device::register(&relay, &codes, "+15550000009").await;
    let old_conn = old.client.conn.clone();
    let new = Device::register(&relay, &codes, "+15550000009").await;
    assert_eq!(new.address.device.0, 2);
    match tokio::time::timeout(common::TIMEOUT, old_conn.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(1));
        }
        other => panic!("{other:?}"),
    }
    let _: DeviceAddress = new.address;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_limited_and_released() {
    let TestRelay {
        dir: _dir,
        codes: _,
        relay,
    } = TestRelay::start_with(|cfg| {
        cfg.limits.max_connections_per_ip = 3;
    })
    .await;
    let (addr, fp) = (relay.local_addr(), relay.cert_fingerprint());
    let alpn = || vec![sealpost_wire::relay::ALPN.to_vec()];
    let mut held = Vec::new();
    for _ in 0..3 {
        let (ep, conn) = common::connect_with(addr, fp, alpn()).await.unwrap();
        // Each held connection works.
        let r = common::request_on(&conn, &Request::Challenge).await;
        assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
        held.push((ep, conn));
    }
    // The fourth from the same address is refused, and refused again while all are held.
    for _ in 0..2 {
        let refused = common::connect_with(addr, fp, alpn()).await;
        assert!(
            refused.is_err(),
            "a connection over the per-address limit was accepted"
        );
    }
    // Closing one frees its slot.
    let (ep, conn) = held.pop().unwrap();
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(c) = common::connect_with(addr, fp, alpn()).await {
            admitted = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_ep, conn) = admitted.expect("a slot is released when a connection closes");
    let r = common::request_on(&conn, &Request::Challenge).await;
    assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
    relay.shutdown().await;
}

/// spec/relay.md section 1: an unauthenticated connection may have 2 request streams open
/// at once, an authenticated one 4, and 32 once it has used all 4 at the same time (an idle
/// authenticated connection keeps 4). Whether a stream can be opened is checked without
/// waiting ([`now`]), after a barrier that every grant the relay made has reached the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_streams_are_limited_until_authenticated_and_busy() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let wait = Duration::from_secs(2);
    // Opens a stream (waiting for credit) and starts a request on it: a length prefix and
    // part of a 100-byte body, so the relay reserves the body and keeps the stream open.
    let start = |conn: quinn::Connection| async move {
        let (mut send, recv) = tokio::time::timeout(wait, conn.open_bi())
            .await
            .expect("stream credit")
            .unwrap();
        send.write_all(&[0, 0, 0, 100, 1]).await.unwrap();
        (send, recv)
    };
    // Waits until the relay has reserved `n` bytes of request bodies: it serves that many
    // 100-byte requests.
    let serving = |n: usize| {
        let relay = &relay;
        async move {
            let deadline = tokio::time::Instant::now() + common::TIMEOUT;
            while relay.buffered_request_bytes() != n {
                assert!(tokio::time::Instant::now() < deadline, "never {n} bytes");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };

    // Sequential requests before authentication (registration, guardians) never wait for
    // stream credit: the next stream's packet acknowledges the previous response, which
    // frees its stream, and the relay's grant precedes the next response.
    let anonymous = Client::for_relay(&relay).await;
    for round in 0..4 {
        let (mut send, mut recv) = now(anonymous.conn.open_bi())
            .unwrap_or_else(|| panic!("round {round}: a sequential request waits for credit"));
        send.write_all(&Request::Challenge.encode()).await.unwrap();
        send.finish().unwrap();
        let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
            .await
            .expect("answered")
            .unwrap();
        let r = Response::decode(&frame[4..]).unwrap();
        assert!(matches!(r, Response::ChallengeIssued { .. }), "{r:?}");
    }
    drop(anonymous);

    // A fresh unauthenticated connection: 2 at once, not 3, even when both are in use.
    let anonymous = Client::for_relay(&relay).await;
    let mut open = vec![start(anonymous.conn.clone()).await];
    open.push(start(anonymous.conn.clone()).await);
    assert!(
        now(anonymous.conn.open_bi()).is_none(),
        "a third stream before authentication"
    );
    // Both are served (a busy authenticated connection would now get more). Barrier: the
    // answer to the first, which the relay writes after any grant it made on seeing both.
    serving(200).await;
    let (mut send, mut recv) = open.remove(0);
    send.write_all(&[0; 99]).await.unwrap();
    send.finish().unwrap();
    let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
        .await
        .expect("answered")
        .unwrap();
    assert!(matches!(
        Response::decode(&frame[4..]),
        Ok(Response::Error { .. })
    ));
    // At most the finished stream's credit may be back (if the client's acknowledgement of
    // the answer has made the round trip already); a raised allowance would show as more.
    let mut extra = Vec::new();
    while let Some(s) = now(anonymous.conn.open_bi()) {
        extra.push(s);
        assert!(extra.len() <= 1, "busy but unauthenticated: more than 2");
    }
    drop((open, extra));
    anonymous.close().await;

    let alice = Device::register(&relay, &codes, "+15550000001").await;
    // Authenticated, never more than one request at a time: 4 (each open waits for the
    // credit of the registration's streams, so every grant so far has arrived).
    let mut open = Vec::new();
    for _ in 0..4 {
        let s = tokio::time::timeout(wait, alice.client.conn.open_bi()).await;
        open.push(s.expect("stream credit").unwrap());
    }
    assert!(
        now(alice.client.conn.open_bi()).is_none(),
        "an idle authenticated connection keeps 4"
    );
    drop(open);
    // Four requests at once: the full allowance.
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(start(alice.client.conn.clone()).await);
    }
    let mut open = Vec::new();
    for _ in 0..28 {
        let s = tokio::time::timeout(wait, alice.client.conn.open_bi()).await;
        open.push(s.expect("full allowance once 4 are in use").unwrap());
    }
    drop((busy, open));
    relay.shutdown().await;
}

/// Without a code sender (no webhook, no `--dev-log-codes`, none set in-process) the relay
/// refuses to start, in-process and as the binary, and says why; with the development flag
/// it starts.
#[tokio::test]
async fn refuses_to_start_without_a_code_sender() {
    let dir = tempfile::tempdir().unwrap();
    let bare = sealpost_relay::RelayConfig::for_tests(dir.path());
    let e = Relay::start(bare.clone()).await.unwrap_err();
    assert!(
        matches!(
            &e,
            sealpost_relay::RelayError::Config(sealpost_relay::ConfigError::NoCodeSender)
        ),
        "{e:#}"
    );
    let relay = Relay::start(sealpost_relay::RelayConfig {
        dev_log_codes: true,
        ..bare
    })
    .await
    .unwrap();
    relay.shutdown().await;

    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sealpost-relay"))
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir)
                .env_remove("SEALPOST_RELAY_DEV_LOG_CODES")
                .env_remove("SEALPOST_RELAY_WEBHOOK_URL")
                .env_remove("SEALPOST_RELAY_CONFIG")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--dev-log-codes"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    // With the flag the binary starts (and prints its address).
    let process = common::RelayProcess::start(dir.path()).await;
    assert_ne!(process.addr.port(), 0);
}

/// Quotas against SMS pumping over QUIC: a source address that has used its hourly code
/// requests gets `RateLimited` with the seconds until the next one, and a restart of the
/// relay on the same data directory does not give it a fresh allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_quotas_answer_retry_after_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut cfg = config(dir.path(), &codes);
    cfg.limits.code_requests_per_source_per_hour = 2;
    let relay = Relay::start(cfg.clone()).await.unwrap();
    let c = Client::for_relay(&relay).await;
    for n in 0..2 {
        let rc = Request::RequestCode {
            account: acct(&format!("+1555000000{n}")),
        };
        assert!(matches!(c.request(&rc).await, Response::CodeSent { .. }));
    }
    // A third number from the same address: refused, with about half an hour to wait.
    let third = Request::RequestCode {
        account: acct("+15550000003"),
    };
    let retry = |r: Response| match r {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            detail,
        } => {
            assert_eq!(detail, "rate limited (code_source)");
            retry_after
        }
        other => panic!("{other:?}"),
    };
    let before = retry(c.request(&third).await);
    assert!((1700..=1800).contains(&before), "{before}");
    c.close().await;
    relay.shutdown().await;

    let relay = Relay::start(cfg).await.unwrap();
    let c = Client::for_relay(&relay).await;
    let after = retry(c.request(&third).await);
    assert!(
        after <= before && after >= before - 60,
        "{before} then {after}"
    );
    assert_eq!(codes.count(), 2, "no code for refused requests");
    c.close().await;
    relay.shutdown().await;
}
