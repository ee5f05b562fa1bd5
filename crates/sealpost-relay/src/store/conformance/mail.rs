//! Conformance cases: Mailboxes: enqueue and ack, sender sequence numbers, the mail feed, concurrent sends.

use super::*;

/// A device's `sender_seq` is the highest value of the messages queued from it: raised with
/// the message, never lowered by an older or missing value or by acks, unchanged by a
/// refused message, and 0 for a new registration (spec/relay.md sections 3.4 and 3.7).
pub(crate) async fn sender_seqs<S: Store>(s: &S) {
    let (a, b) = (acct(1), acct(2));
    register(s, &a, 1).await;
    register(s, &b, 2).await;
    let (a1, b1) = (dev(&a, 1), dev(&b, 1));
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 0);
    assert_eq!(
        s.sender_seq(&dev(&a, 7)).await.unwrap(),
        0,
        "unknown device"
    );
    let queued = |o: EnqueueOutcome| assert!(matches!(o, EnqueueOutcome::Queued(_)), "{o:?}");
    queued(enqueue_seq(s, &a1, &b, &[env(1, 1)], 10, 5).await);
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 5);
    // Out of order (several recipients' queues) is accepted and lowers nothing.
    queued(enqueue_seq(s, &a1, &b, &[env(1, 2)], 10, 3).await);
    queued(enqueue_seq(s, &a1, &b, &[env(1, 3)], 10, 0).await);
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 5);
    assert_eq!(
        s.sender_seq(&b1).await.unwrap(),
        0,
        "the recipient is not the sender"
    );
    // Refused messages change nothing.
    assert_eq!(
        enqueue_seq(s, &a1, &b, &[env(2, 4)], 10, 9).await,
        EnqueueOutcome::MismatchedDevices
    );
    assert_eq!(
        enqueue_seq(s, &a1, &b, &[env(1, 4)], 3, 9).await,
        EnqueueOutcome::QueueFull { device_id: 1 }
    );
    assert_eq!(
        enqueue_seq(s, &a1, &acct(3), &[env(1, 4)], 10, 9).await,
        EnqueueOutcome::UnknownAccount
    );
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 5);
    // Acknowledging (emptying the mailbox) keeps the high-water mark.
    let ids: Vec<u64> = s
        .mailbox(&b1, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.server_id)
        .collect();
    assert_eq!(s.ack(&b1, &ids).await.unwrap(), 3);
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 5);
    queued(enqueue_seq(s, &a1, &b, &[env(1, 5)], 10, u64::MAX).await);
    assert_eq!(s.sender_seq(&a1).await.unwrap(), MAX_SENDER_SEQ);
    // A new registration is a new device: it starts at 0; the old one is gone.
    let a2 = dev(&a, register(s, &a, 3).await);
    assert_eq!(s.sender_seq(&a2).await.unwrap(), 0);
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 0);
    queued(enqueue_seq(s, &a2, &b, &[env(1, 6)], 10, 2).await);
    assert_eq!(s.sender_seq(&a2).await.unwrap(), 2);
}

pub(crate) async fn mailboxes<S: Store>(s: &S) {
    let a = acct(1);
    let b = acct(2);
    let a1 = dev(&a, register(s, &a, 1).await);
    let b1 = dev(&b, register(s, &b, 2).await);
    assert_eq!(
        enqueue(s, &a1, &acct(9), &[env(1, 0)], 10).await,
        EnqueueOutcome::UnknownAccount
    );
    // Exactly the recipient's devices, each once.
    for bad in [
        vec![env(2, 0)],
        vec![env(1, 0), env(1, 0)],
        vec![env(1, 0), env(2, 0)],
    ] {
        assert_eq!(
            enqueue(s, &a1, &b, &bad, 10).await,
            EnqueueOutcome::MismatchedDevices
        );
    }
    // To one's own account the sending device is excluded: nothing left to address.
    assert_eq!(
        enqueue(s, &a1, &a, &[env(1, 0)], 10).await,
        EnqueueOutcome::MismatchedDevices
    );
    let mut ids = Vec::new();
    for i in 0..3u8 {
        match enqueue(s, &a1, &b, &[env(1, i)], 3).await {
            EnqueueOutcome::Queued(v) => {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].0, 1);
                ids.push(v[0].1);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "server ids increase: {ids:?}"
    );
    assert_eq!(
        enqueue(s, &a1, &b, &[env(1, 9)], 3).await,
        EnqueueOutcome::QueueFull { device_id: 1 }
    );
    assert_eq!(s.queue_depth(&b1).await.unwrap(), 3);
    assert_eq!(s.total_queued().await.unwrap(), 3);
    let all = s.mailbox(&b1, 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.server_id).collect::<Vec<_>>(), ids);
    assert_eq!(all[1].envelope, vec![1; 10]);
    assert_eq!(all[1].sender, a1);
    assert_eq!(all[1].message_id, [3; 16]);
    assert_eq!(all[1].timestamp, NOW);
    assert_eq!(
        s.mailbox(&b1, ids[0], 1).await.unwrap()[0].server_id,
        ids[1]
    );
    assert!(s.mailbox(&b1, ids[2], 10).await.unwrap().is_empty());
    assert!(s.mailbox(&a1, 0, 10).await.unwrap().is_empty());
    // Acks: only this device's ids count.
    assert_eq!(s.ack(&a1, &ids).await.unwrap(), 0);
    assert_eq!(s.ack(&b1, &[ids[0], ids[0], 999_999]).await.unwrap(), 1);
    assert_eq!(s.ack(&b1, &[ids[0]]).await.unwrap(), 0);
    assert_eq!(s.queue_depth(&b1).await.unwrap(), 2);
    // Sweep: codes and envelopes past their time.
    s.put_code(&acct(3), &MAC, NOW + 10).await.unwrap();
    assert_eq!(
        s.sweep(NOW + 5, 1000).await.unwrap(),
        SweepCounts::default()
    );
    assert_eq!(
        s.sweep(NOW + 1000, 1000).await.unwrap(),
        SweepCounts {
            codes: 1,
            envelopes: 2
        }
    );
    assert_eq!(s.total_queued().await.unwrap(), 0);
    assert_eq!(s.sweep(0, 1000).await.unwrap(), SweepCounts::default());
}

/// Concurrent sends respect the mailbox bound, get increasing ids, and (with early delivery)
/// the feed brings every stored envelope, per device in increasing server-id order.
pub(crate) async fn concurrent_sends<S: Store + 'static>(s: Arc<S>) {
    let a = acct(1);
    let b = acct(2);
    let a1 = dev(&a, register(&*s, &a, 1).await);
    let b1 = dev(&b, register(&*s, &b, 2).await);
    #[cfg(feature = "server")]
    let feed = s.subscribe().await;
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let s = Arc::clone(&s);
            let (a1, b) = (a1.clone(), b.clone());
            tokio::spawn(async move {
                let mut queued = 0u32;
                for i in 0..25u8 {
                    match enqueue(&*s, &a1, &b, &[env(1, t * 25 + i)], 150).await {
                        EnqueueOutcome::Queued(_) => queued += 1,
                        EnqueueOutcome::QueueFull { .. } => {}
                        other => panic!("{other:?}"),
                    }
                }
                queued
            })
        })
        .collect();
    let mut queued = 0u32;
    for t in threads {
        queued += t.await.unwrap();
    }
    // The bound holds under concurrency: exactly 150 of 200 fit.
    assert_eq!(queued, 150);
    assert_eq!(s.queue_depth(&b1).await.unwrap(), 150);
    let ids: Vec<u64> = s
        .mailbox(&b1, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.server_id)
        .collect();
    assert_eq!(ids.len(), 150);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    #[cfg(feature = "server")]
    if let Some(mut feed) = feed {
        let mut fed = Vec::new();
        while fed.len() < ids.len() {
            for w in feed.recv().await.unwrap() {
                assert_eq!(w.recipient, b);
                fed.extend(w.envelopes.into_iter().map(|(d, e)| {
                    assert_eq!(d, 1);
                    e.server_id
                }));
            }
        }
        assert_eq!(
            fed, ids,
            "the feed brings every envelope, in server-id order"
        );
    }
}

/// What [`Store::enqueue`] and [`Store::ack`] return is in place when they resolve, and the
/// mail feed (for a store that has one) publishes exactly the written envelopes, with their
/// ids, before or by the time `enqueue` resolves; a refused message publishes nothing; a
/// second subscription gets nothing; after [`Store::settled`], the published envelopes are
/// readable.
pub(crate) async fn feed<S: Store>(s: &S) {
    let (a, b) = (acct(1), acct(2));
    register(s, &a, 1).await;
    register(s, &b, 2).await;
    let (a1, b1) = (dev(&a, 1), dev(&b, 1));
    #[cfg(feature = "server")]
    let mut feed = s.subscribe().await;
    #[cfg(feature = "server")]
    assert!(s.subscribe().await.is_none(), "one subscriber");
    let EnqueueOutcome::Queued(ids) = enqueue(s, &a1, &b, &[env(1, 9)], 10).await else {
        panic!("not queued")
    };
    assert_eq!(ids.len(), 1);
    let server_id = ids[0].1;
    assert_eq!(
        enqueue(s, &a1, &acct(3), &[env(1, 9)], 10).await,
        EnqueueOutcome::UnknownAccount
    );
    s.settled().await.unwrap();
    let stored = s.mailbox(&b1, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].server_id, server_id);
    #[cfg(feature = "server")]
    if let Some(feed) = &mut feed {
        let batch = feed.recv().await.unwrap();
        assert_eq!(
            batch,
            vec![Written {
                recipient: b.clone(),
                envelopes: vec![(1, stored[0].clone())],
            }]
        );
        // The refused message published nothing: the next batch is the next write.
        enqueue(s, &a1, &b, &[env(1, 10)], 10).await;
        let next = feed.recv().await.unwrap();
        assert_eq!(next.len(), 1);
        assert!(next[0].envelopes[0].1.server_id > server_id);
    }
    assert_eq!(s.ack(&b1, &[server_id, 12345]).await, Ok(1));
    assert!(
        s.mailbox(&b1, 0, 10)
            .await
            .unwrap()
            .iter()
            .all(|e| e.server_id != server_id)
    );
}
