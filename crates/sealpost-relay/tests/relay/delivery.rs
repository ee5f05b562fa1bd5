//! Delivery: register to ack, the delivery window, delivery tasks, packing responses.

use super::*;

/// Scenario 1: register, authenticate, upload, fetch, send; live push and ack; queued
/// delivery in order then QueueDrained; redelivery of unacked envelopes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_upload_fetch_send_deliver_ack_redeliver() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let (addr, fp) = (relay.local_addr(), relay.cert_fingerprint());

    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    // Both had empty mailboxes: delivery says so right away.
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    assert_eq!(
        alice.upload(25, 5).await,
        Response::PreKeysStored {
            one_time_prekeys: 25,
            kem_prekeys: 5
        }
    );
    bob.upload(25, 6).await;

    // Bob fetches Alice's bundle; it verifies under her identity.
    let a = alice.address.account.clone();
    let r = bob
        .client
        .request(&Request::FetchBundles { account: a.clone() })
        .await;
    let Response::Bundles(bundles) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bundles.len(), 1);
    let v = VerifiedBundle::verify(&bundles[0]).unwrap();
    assert_eq!(v.identity(), &alice.id.public());
    // 24 and 4 left: 4 is below the KEM watermark (5), so Alice is told.
    assert_eq!(
        alice.client.next_push().await,
        Push::PreKeysLow {
            one_time_prekeys: 24,
            kem_prekeys: 4
        }
    );
    let r = bob
        .client
        .request(&Request::ListDevices { account: a.clone() })
        .await;
    assert!(matches!(r, Response::Devices(ref d) if d.len() == 1 && d[0].device_id == 1));

    // Alice is online: live push, then ack.
    let r = bob.client.request(&send_req(&a, &[1], b"live", 1)).await;
    let Response::Accepted { timestamp } = r else {
        panic!("{r:?}")
    };
    let d = expect_deliver(&mut alice.client).await;
    assert_eq!(d.envelope, b"live");
    assert_eq!(d.sender, bob.address);
    assert_eq!(d.message_id, [1; 16]);
    assert_eq!(d.timestamp, timestamp);
    let r = alice
        .client
        .request(&Request::Ack {
            server_ids: vec![d.server_id],
        })
        .await;
    assert_eq!(r, Response::Acked { removed: 1 });

    // Alice goes offline; Bob sends three.
    let old = std::mem::replace(&mut alice.client, Client::connect(addr, fp).await);
    old.close().await;
    for i in 0..3u8 {
        let r = bob
            .client
            .request(&send_req(&a, &[1], &[b'q', i], 10 + i))
            .await;
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    let r = alice.authenticate().await;
    assert_eq!(
        r,
        Response::Authenticated {
            one_time_prekeys: 24,
            kem_prekeys: 4,
            queued: 3,
            sender_seq: 0,
        }
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(expect_deliver(&mut alice.client).await);
    }
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.envelope.as_slice()).collect();
    assert_eq!(bodies, vec![b"q\0" as &[u8], b"q\x01", b"q\x02"]);
    let ids: BTreeSet<u64> = got.iter().map(|d| d.server_id).collect();
    assert_eq!(ids.len(), 3, "server ids are distinct on a connection");
    // Ack only the first, then reconnect: the other two come again, the first does not.
    alice
        .client
        .request(&Request::Ack {
            server_ids: vec![got[0].server_id],
        })
        .await;
    let r = alice.reconnect(addr, fp).await;
    assert!(
        matches!(r, Response::Authenticated { queued: 2, .. }),
        "{r:?}"
    );
    let again = [
        expect_deliver(&mut alice.client).await,
        expect_deliver(&mut alice.client).await,
    ];
    let bodies: Vec<&[u8]> = again.iter().map(|d| d.envelope.as_slice()).collect();
    assert_eq!(bodies, vec![b"q\x01" as &[u8], b"q\x02"]);
    let again: Vec<u64> = again.iter().map(|d| d.server_id).collect();
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    alice
        .client
        .request(&Request::Ack {
            server_ids: again.clone(),
        })
        .await;
    let r = alice.reconnect(addr, fp).await;
    assert!(
        matches!(r, Response::Authenticated { queued: 0, .. }),
        "{r:?}"
    );
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);

    // Errors over the wire: mismatched devices, unauthenticated requests.
    let r = bob.client.request(&send_req(&a, &[1, 2], b"x", 9)).await;
    assert_eq!(err(&r), ErrorCode::MismatchedDevices);
    let anon = Client::connect(addr, fp).await;
    let r = anon
        .request(&Request::FetchBundles { account: a.clone() })
        .await;
    assert_eq!(err(&r), ErrorCode::Unauthenticated);
    relay.shutdown().await;
}

/// Delivery window: with more than 64 queued, at most 64 are pushed before acks arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_window_waits_for_acks() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let old = std::mem::replace(&mut bob.client, Client::for_relay(&relay).await);
    old.close().await;
    let b = bob.address.account.clone();
    for i in 0..70u8 {
        let r = alice.client.request(&send_req(&b, &[1], &[i], i)).await;
        assert!(matches!(r, Response::Accepted { .. }));
    }
    let before = relay.pushes_sent();
    bob.authenticate().await;
    let mut ids = Vec::new();
    for _ in 0..64 {
        ids.push(expect_deliver(&mut bob.client).await.server_id);
    }
    // Waiting for acks keeps no task: the ack starts the next run. The ended run pushed
    // the window and nothing more.
    until_no_delivery_task(&relay).await;
    assert_eq!(relay.pushes_sent() - before, 64, "pushed past the window");
    bob.client
        .request(&Request::Ack {
            server_ids: ids[..10].to_vec(),
        })
        .await;
    for i in 64..70u8 {
        assert_eq!(expect_deliver(&mut bob.client).await.envelope, [i]);
    }
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    relay.shutdown().await;
}

/// Idle connected devices keep no delivery task: a run reads the mailbox after
/// authentication, another pushes each new message, and each ends once its device is up to
/// date. Mail sent to an idle device is still pushed live, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_tasks_run_only_while_there_is_something_to_push() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    assert_eq!(bob.client.next_push().await, Push::QueueDrained);
    let before = relay.pushes_sent();
    let a = alice.address.account.clone();
    for round in 0..3u8 {
        until_no_delivery_task(&relay).await;
        let mut ids = Vec::new();
        for i in 0..4u8 {
            let msg = round * 4 + i;
            let r = bob.client.request(&send_req(&a, &[1], &[msg], msg)).await;
            assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
        }
        for i in 0..4u8 {
            let d = expect_deliver(&mut alice.client).await;
            assert_eq!(d.envelope, [round * 4 + i]);
            ids.push(d.server_id);
        }
        let r = alice
            .client
            .request(&Request::Ack { server_ids: ids })
            .await;
        assert_eq!(r, Response::Acked { removed: 4 });
    }
    // Each message was pushed once, and nothing else: the runs that ended pushed nothing
    // more (no redelivery of acknowledged mail, no second QueueDrained).
    until_no_delivery_task(&relay).await;
    assert_eq!(relay.pushes_sent() - before, 12);
    relay.shutdown().await;
}

/// Pipelined `Send`s that one group commit answers get their `Accepted` responses in one
/// flight, not one packet each (`server/responder.rs`): 16 requests sent in one flight
/// come back in a few datagrams (in the best of three rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_ready_together_share_packets() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let bob = Device::register(&relay, &codes, "+15550000002").await;
    assert_eq!(alice.client.next_push().await, Push::QueueDrained);
    let b = bob.address.account.clone();
    let conn = alice.client.conn.clone();
    // Four requests at once earn the connection its full request-stream allowance.
    let warm: Vec<_> = (0..4u8)
        .map(|i| {
            let (conn, req) = (conn.clone(), send_req(&b, &[1], &[i], i));
            tokio::spawn(async move { common::request_on(&conn, &req).await })
        })
        .collect();
    for w in warm {
        assert!(matches!(w.await.unwrap(), Response::Accepted { .. }));
    }
    let mut fewest = u64::MAX;
    for round in 0..3u8 {
        let before = conn.stats().udp_rx.datagrams;
        // All 16 written before the client's connection sends anything: one flight.
        let mut streams = Vec::new();
        for i in 0..16u8 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            let msg = 16 * (round + 1) + i;
            send.write_all(&send_req(&b, &[1], &[msg], msg).encode())
                .await
                .unwrap();
            send.finish().unwrap();
            streams.push(recv);
        }
        for mut recv in streams {
            let frame = tokio::time::timeout(common::TIMEOUT, recv.read_to_end(1024))
                .await
                .unwrap()
                .unwrap();
            let r = Response::decode(&frame[4..]).unwrap();
            assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
        }
        fewest = fewest.min(conn.stats().udp_rx.datagrams - before);
    }
    // One flight per group commit that answered them (usually one or two) and the relay's
    // acknowledgements of the requests: 4 to 6 here; one packet per response (each
    // request's task writing its own) took 16 to 18. The best of three rounds, so that a
    // busy machine splitting one round's group commits does not fail the test.
    assert!(fewest < 10, "16 responses took {fewest} datagrams");
    relay.shutdown().await;
}

/// A connection's ready responses are written together (`server/responder.rs`); a client
/// whose stream window is smaller than a response gets the first bytes from there and the
/// rest from a task of their own, intact and exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_larger_than_the_stream_window_arrive_whole() {
    let TestRelay {
        dir: _dir,
        codes,
        relay,
    } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550000001").await;
    let mut bob = Device::register(&relay, &codes, "+15550000002").await;
    for d in [&mut alice, &mut bob] {
        // 5 bytes at a time: less than any response frame (a 4-byte length prefix, then at
        // least a type byte and a field).
        let narrow =
            Client::connect_windowed(relay.local_addr(), relay.cert_fingerprint(), Some(5)).await;
        let old = std::mem::replace(&mut d.client, narrow);
        old.close().await;
        assert!(matches!(
            d.authenticate().await,
            Response::Authenticated { .. }
        ));
    }
    let b = bob.address.account.clone();
    let mut sends = Vec::new();
    for i in 0..20u8 {
        let req = send_req(&b, &[1], &[i; 40], i);
        let conn = alice.client.conn.clone();
        sends.push(tokio::spawn(async move {
            common::request_on(&conn, &req).await
        }));
    }
    for s in sends {
        let r = s.await.unwrap();
        assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    }
    let mut delivered = BTreeSet::new();
    let mut messages = BTreeSet::new();
    while delivered.len() < 20 {
        match bob.client.next_push().await {
            Push::Deliver(d) => {
                assert_eq!(d.envelope, [d.message_id[0]; 40]);
                assert!(delivered.insert(d.server_id), "pushed twice");
                messages.insert(d.message_id[0]);
            }
            Push::QueueDrained => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(messages, (0..20).collect());
    let r = bob
        .client
        .request(&Request::Ack {
            server_ids: delivered.into_iter().collect(),
        })
        .await;
    assert_eq!(r, Response::Acked { removed: 20 });
    relay.shutdown().await;
}
