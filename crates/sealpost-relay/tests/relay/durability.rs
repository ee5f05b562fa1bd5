//! Durability: one-time prekeys served once, mail across a graceful restart and a killed
//! process.

use super::*;

/// Scenario 2: concurrent bundle fetches never serve a one-time prekey twice (SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_serve_each_one_time_prekey_once() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut bob = Device::register(&relay, &codes, "+15550000100").await;
    bob.upload(40, 15).await;
    let b = bob.address.account.clone();
    let mut fetchers = Vec::new();
    for i in 0..6 {
        fetchers.push(Device::register(&relay, &codes, &format!("+1555000020{i}")).await);
    }
    // 6 connections x 10 concurrent fetches each, all in flight at once.
    let mut set = tokio::task::JoinSet::new();
    for d in &fetchers {
        for _ in 0..10 {
            let conn = d.client.conn.clone();
            let b = b.clone();
            set.spawn(async move {
                common::request_on(&conn, &Request::FetchBundles { account: b }).await
            });
        }
    }
    let mut responses = Vec::new();
    while let Some(r) = set.join_next().await {
        responses.push(r.unwrap());
    }
    let mut one_time = Vec::new();
    let mut kem = Vec::new();
    assert_eq!(responses.len(), 60);
    for r in responses {
        let Response::Bundles(b) = r else {
            panic!("{r:?}")
        };
        let bundle = &b[0];
        if let Some((id, _)) = bundle.one_time_prekey {
            one_time.push(id);
        }
        if bundle.kem_prekey.kind == sealpost_wire::KemPreKeyKind::OneTime {
            kem.push(bundle.kem_prekey.id);
        }
    }
    assert_eq!(one_time.len(), 40, "all 40 one-time prekeys were served");
    assert_eq!(
        one_time.iter().collect::<BTreeSet<_>>().len(),
        40,
        "none twice"
    );
    assert_eq!(kem.len(), 15);
    assert_eq!(kem.iter().collect::<BTreeSet<_>>().len(), 15);
    relay.shutdown().await;
}

/// Scenario 3a: graceful shutdown loses nothing; the certificate is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_survives_graceful_restart() {
    let TestRelay { dir, codes, relay } = TestRelay::start().await;
    let fp = relay.cert_fingerprint();
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    let b = bob.address.account.clone();
    bob.client.close().await;
    for i in 0..5u8 {
        let r = alice.client.request(&send_req(&b, &[1], &[i; 3], i)).await;
        assert!(matches!(r, Response::Accepted { .. }));
    }
    let conn = alice.client.conn.clone();
    relay.shutdown().await;
    // Connections were closed with application code 0.
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(0));
        }
        other => panic!("{other:?}"),
    }

    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    assert_eq!(relay.cert_fingerprint(), fp, "certificate reused");
    let mut bob = Device {
        client: Client::for_relay(&relay).await,
        ..bob
    };
    let r = bob.authenticate().await;
    assert!(
        matches!(r, Response::Authenticated { queued: 5, .. }),
        "{r:?}"
    );
    for i in 0..5u8 {
        assert_eq!(expect_deliver(&mut bob.client).await.envelope, vec![i; 3]);
    }
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let _ = alice.client.try_push(Duration::ZERO).await;
    relay.shutdown().await;
}

/// Scenario 3b: the relay process is killed (SIGKILL) right after `Accepted`; a new relay on
/// the same data directory delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_survives_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    // Register both devices with an in-process relay (codes are captured there).
    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    let fp = relay.cert_fingerprint();
    alice.client.close().await;
    bob.client.close().await;
    relay.shutdown().await;

    // The real binary on the same data directory.
    let mut process = common::RelayProcess::start(dir.path()).await;
    let (addr, printed_fp) = (process.addr, process.fingerprint_hex.clone());
    assert_eq!(printed_fp, hex::encode(fp));
    let mut alice = Device {
        client: Client::connect(addr, fp).await,
        ..alice
    };
    assert!(matches!(
        alice.authenticate().await,
        Response::Authenticated { .. }
    ));
    let b = bob.address.account.clone();
    for i in 0..4u8 {
        let r = alice.client.request(&send_req(&b, &[1], &[i; 5], i)).await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    process.kill();

    let relay = Relay::start(config(dir.path(), &codes)).await.unwrap();
    let mut bob = Device {
        client: Client::for_relay(&relay).await,
        ..bob
    };
    let r = bob.authenticate().await;
    assert!(
        matches!(r, Response::Authenticated { queued: 4, .. }),
        "{r:?}"
    );
    for i in 0..4u8 {
        assert_eq!(expect_deliver(&mut bob.client).await.envelope, vec![i; 5]);
    }
    relay.shutdown().await;

    // SIGTERM: the binary shuts down gracefully (exit status 0) and checkpoints the WAL.
    let mut process = common::RelayProcess::start(dir.path()).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = process.child.wait().unwrap();
        drop(process);
        status
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
    let wal = dir.path().join("relay.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}
