//! Several relay nodes on one database: each node is a [`PgStore`] with a pool of its own,
//! and the calls run concurrently on tokio tasks spread over the nodes.

use super::{Fresh, with_schema};
use crate::store::postgres::PgStore;
use crate::store::*;
use sealpost_wire::relay::OutgoingEnvelope;
use sealpost_wire::{
    AccountId, DeviceAddress, DeviceId, IdentityBytes, KEM_PUBLIC_LEN, KemPreKeyKind,
    KemPreKeyPublic, SignedPreKeyPublic,
};
use std::collections::BTreeSet;

const NODES: usize = 4;
const NOW: u64 = 1_700_000_000_000;
const MAC: [u8; 32] = [7; 32];

async fn nodes(db: &Fresh) -> Vec<PgStore> {
    let mut out = Vec::with_capacity(NODES);
    for _ in 0..NODES {
        out.push(db.store().await);
    }
    out
}

fn acct(n: u32) -> AccountId {
    AccountId::new(format!("+1555000{n:04}")).unwrap()
}

fn ident(b: u8) -> IdentityBytes {
    IdentityBytes {
        signing: [b; 32],
        dh: [b.wrapping_add(1); 32],
    }
}

fn policy(presented: Option<[u8; 32]>) -> RegLockPolicy {
    RegLockPolicy {
        presented,
        max_failures: 10,
        lapse: 7 * 24 * 3600 * 1000,
    }
}

async fn register(s: &PgStore, a: &AccountId, b: u8) -> DeviceAddress {
    s.put_code(a, &MAC, NOW + 600_000).await.unwrap();
    match s
        .register_device(a, &ident(b), &MAC, &policy(None), NOW)
        .await
        .unwrap()
    {
        RegisterOutcome::Registered { device_id, .. } => {
            DeviceAddress::new(a.clone(), DeviceId(device_id))
        }
        other => panic!("{other:?}"),
    }
}

/// Runs `calls` tasks, task `i` on node `i % NODES`, all at once; their results in task order.
async fn spread<T, F, Fut>(nodes: &[PgStore], calls: usize, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(PgStore, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(calls));
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let fut = call(nodes[i % nodes.len()].clone(), i);
            let start = std::sync::Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(calls);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// One-time prekeys are served once under concurrent fetches from several nodes: 160 fetches
/// of a device holding 100 one-time X25519 and 40 one-time KEM keys get each key exactly
/// once, and the last-resort key for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_served_once_across_nodes() {
    with_schema(|db| async move {
        let nodes = nodes(&db).await;
        let a = acct(1);
        let d = register(&nodes[0], &a, 1).await;
        let kem = |id, kind| KemPreKeyPublic {
            id,
            kind,
            created_at: 2,
            public: Box::new([id as u8; KEM_PUBLIC_LEN]),
            signature: [8; 64],
        };
        let upload = NewPreKeys {
            signed: Some(SignedPreKeyPublic {
                id: 1,
                created_at: 1,
                public: [1; 32],
                signature: [9; 64],
            }),
            one_time: (1..=100).map(|i| (i, [i as u8; 32])).collect(),
            kem_one_time: (1..=40).map(|i| kem(i, KemPreKeyKind::OneTime)).collect(),
            kem_last_resort: Some(kem(500, KemPreKeyKind::LastResort)),
        };
        let limits = PreKeyLimits {
            max_one_time: 1000,
            max_kem_one_time: 200,
        };
        assert!(matches!(
            nodes[1].store_prekeys(&d, &upload, &limits).await.unwrap(),
            UploadOutcome::Stored(_)
        ));
        let bundles = spread(&nodes, 160, |s, _| {
            let a = a.clone();
            async move { s.take_bundles(&a).await.unwrap().unwrap().remove(0).bundle }
        })
        .await;
        let otk: Vec<u32> = bundles
            .iter()
            .filter_map(|b| b.one_time_prekey.map(|k| k.0))
            .collect();
        assert_eq!(otk.len(), 100, "every one-time key served");
        assert_eq!(
            otk.iter().collect::<BTreeSet<_>>().len(),
            100,
            "no one-time key served twice"
        );
        let kem_ids: Vec<u32> = bundles
            .iter()
            .filter(|b| b.kem_prekey.kind == KemPreKeyKind::OneTime)
            .map(|b| b.kem_prekey.id)
            .collect();
        assert_eq!(kem_ids.len(), 40);
        assert_eq!(kem_ids.iter().collect::<BTreeSet<_>>().len(), 40);
        assert!(
            bundles
                .iter()
                .filter(|b| b.kem_prekey.kind == KemPreKeyKind::LastResort)
                .all(|b| b.kem_prekey.id == 500)
        );
        assert_eq!(
            nodes[2].prekey_counts(&d).await.unwrap(),
            PreKeyCounts::default()
        );
    })
    .await;
}

/// PIN vault evaluations are counted exactly under 100 concurrent evaluations spread over
/// the nodes: every count from 1 to 100 is handed out once; and with a limit of 10, exactly
/// ten shares are handed out, the tenth deletes the vault, the other 90 find nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_attempts_are_counted_exactly_across_nodes() {
    with_schema(|db| async move {
        let nodes = nodes(&db).await;
        let vault = |id: u8| VaultRow {
            vault_id: [id; 16],
            share: zeroize::Zeroizing::new([id; 33]),
            success_verifier: [id; 32],
            record: vec![id; 100],
            attempts_used: 0,
        };
        let (a, b) = (acct(1), acct(2));
        nodes[0].put_vault(&a, &vault(1), 10, NOW).await.unwrap();
        nodes[1].put_vault(&b, &vault(2), 10, NOW).await.unwrap();
        let counted = |r: &VaultAttempt| match r {
            VaultAttempt::Counted {
                attempts_used,
                deleted,
                ..
            } => Some((*attempts_used, *deleted)),
            VaultAttempt::NotFound => None,
            VaultAttempt::RolledBack => panic!("PostgreSQL never holds a vault back"),
        };
        // A limit above the number of evaluations: each count exactly once.
        let results = spread(&nodes, 100, |s, _| {
            let a = a.clone();
            async move {
                s.begin_vault_evaluation(&a, &[1; 16], 1000, NOW)
                    .await
                    .unwrap()
            }
        })
        .await;
        let mut used: Vec<u32> = results.iter().filter_map(counted).map(|c| c.0).collect();
        used.sort_unstable();
        assert_eq!(used, (1..=100).collect::<Vec<_>>());
        assert_eq!(
            nodes[3].vault(&a).await.unwrap().unwrap().attempts_used,
            100
        );
        // The limit: ten shares, one deletion.
        let results = spread(&nodes, 100, |s, _| {
            let b = b.clone();
            async move {
                s.begin_vault_evaluation(&b, &[2; 16], 10, NOW)
                    .await
                    .unwrap()
            }
        })
        .await;
        let mut counts: Vec<(u32, bool)> = results.iter().filter_map(counted).collect();
        counts.sort_unstable();
        let expected: Vec<(u32, bool)> = (1..=10).map(|n| (n, n == 10)).collect();
        assert_eq!(counts, expected);
        assert_eq!(nodes[0].vault(&b).await.unwrap(), None);
    })
    .await;
}

/// Registration-lock tokens are counted exactly under 100 concurrent registrations with
/// wrong tokens spread over the nodes: ten are counted (answers 9 down to 0, each once), the
/// other 90 are refused unchecked, and the account keeps its device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reglock_attempts_are_counted_exactly_across_nodes() {
    with_schema(|db| async move {
        let nodes = nodes(&db).await;
        let a = acct(1);
        register(&nodes[0], &a, 1).await;
        assert!(
            nodes[1]
                .set_registration_lock(&a, Some(&[1; 32]), NOW)
                .await
                .unwrap()
        );
        nodes[2].put_code(&a, &MAC, NOW + 600_000).await.unwrap();
        let mut remaining = spread(&nodes, 100, |s, i| {
            let a = a.clone();
            async move {
                // Every token is wrong; the right one is tried by nobody.
                let token = [u8::try_from(i % 200).unwrap() + 2; 32];
                match s
                    .register_device(&a, &ident(2), &MAC, &policy(Some(token)), NOW + 1)
                    .await
                    .unwrap()
                {
                    RegisterOutcome::Locked {
                        attempts_remaining, ..
                    } => attempts_remaining,
                    other => panic!("{other:?}"),
                }
            }
        })
        .await;
        remaining.sort_unstable();
        assert_eq!(remaining.iter().filter(|r| **r == 0).count(), 91);
        assert_eq!(&remaining[91..], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let lock = nodes[3].registration_lock(&a).await.unwrap().unwrap();
        assert_eq!(lock.failures, 10);
        assert_eq!(nodes[0].list_devices(&a).await.unwrap().len(), 1);
        // Locked attempts gave their code attempt back: the code still has all five.
        assert!(matches!(
            nodes[1].begin_code_attempt(&a, NOW, 5).await.unwrap(),
            CodeAttempt::Check { attempt: 1, .. }
        ));
    })
    .await;
}

/// Verification-code attempts are counted exactly under concurrent attempts from several
/// nodes: five of 100 get the MAC (attempts 1 to 5, each once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_attempts_are_counted_exactly_across_nodes() {
    with_schema(|db| async move {
        let nodes = nodes(&db).await;
        let a = acct(1);
        nodes[0].put_code(&a, &MAC, NOW + 600_000).await.unwrap();
        let results = spread(&nodes, 100, |s, _| {
            let a = a.clone();
            async move { s.begin_code_attempt(&a, NOW, 5).await.unwrap() }
        })
        .await;
        let mut attempts: Vec<u32> = results
            .iter()
            .filter_map(|r| match r {
                CodeAttempt::Check { attempt, mac } => {
                    assert_eq!(mac, &MAC);
                    Some(*attempt)
                }
                CodeAttempt::Exhausted | CodeAttempt::Missing => None,
                CodeAttempt::Expired => panic!("not expired"),
            })
            .collect();
        attempts.sort_unstable();
        assert_eq!(attempts, vec![1, 2, 3, 4, 5]);
    })
    .await;
}

/// Sends to one device from several nodes at once: the mailbox bound holds exactly (150 of
/// 200 fit), and the mailbox reads back in increasing server-id order with nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_across_nodes_keep_the_bound() {
    with_schema(|db| async move {
        let nodes = nodes(&db).await;
        let (a, b) = (acct(1), acct(2));
        let a1 = register(&nodes[0], &a, 1).await;
        let b1 = register(&nodes[1], &b, 2).await;
        let results = spread(&nodes, 200, |s, i| {
            let (a1, b) = (a1.clone(), b.clone());
            async move {
                let envs = [OutgoingEnvelope {
                    device_id: 1,
                    envelope: vec![(i % 256) as u8; 10],
                }];
                s.enqueue(&NewMessage {
                    sender: &a1,
                    recipient: &b,
                    exclude_device: None,
                    addressing: crate::store::Addressing::Exact,
                    message_id: &[3; 16],
                    sender_seq: i as u64 + 1,
                    timestamp: NOW,
                    envelopes: &envs,
                    max_queued: 150,
                })
                .await
                .unwrap()
            }
        })
        .await;
        let queued = results
            .iter()
            .filter(|r| matches!(r, EnqueueOutcome::Queued(_)))
            .count();
        assert_eq!(queued, 150);
        assert!(results.iter().all(|r| matches!(
            r,
            EnqueueOutcome::Queued(_) | EnqueueOutcome::QueueFull { device_id: 1 }
        )));
        assert_eq!(nodes[2].queue_depth(&b1).await.unwrap(), 150);
        let ids: Vec<u64> = nodes[3]
            .mailbox(&b1, 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.server_id)
            .collect();
        assert_eq!(ids.len(), 150);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // The sender's high-water mark is the largest accepted sequence number.
        let best = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, EnqueueOutcome::Queued(_)))
            .map(|(i, _)| i as u64 + 1)
            .max()
            .unwrap();
        assert_eq!(nodes[0].sender_seq(&a1).await.unwrap(), best);
    })
    .await;
}

/// A device's server ids increase in commit order, so a reader that follows its mailbox with
/// a cursor ("after the last id I read", as delivery does) while sends from several nodes
/// commit misses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_cursor_misses_nothing_under_concurrent_sends() {
    with_schema(|db| async move {
        let nodes = nodes(&db).await;
        let (a, b) = (acct(1), acct(2));
        let a1 = register(&nodes[0], &a, 1).await;
        let b1 = register(&nodes[1], &b, 2).await;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (s, b1, done) = (nodes[3].clone(), b1.clone(), std::sync::Arc::clone(&done));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut after = 0;
                loop {
                    // Read the flag first: a read that starts after it was set sees every
                    // committed send.
                    let last = done.load(std::sync::atomic::Ordering::SeqCst);
                    for e in s.mailbox(&b1, after, 1000).await.unwrap() {
                        after = e.server_id;
                        seen.push(e.server_id);
                    }
                    if last {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let results = spread(&nodes[..3], 300, |s, i| {
            let (a1, b) = (a1.clone(), b.clone());
            async move {
                let envs = [OutgoingEnvelope {
                    device_id: 1,
                    envelope: vec![(i % 256) as u8; 10],
                }];
                s.enqueue(&NewMessage {
                    sender: &a1,
                    recipient: &b,
                    exclude_device: None,
                    addressing: crate::store::Addressing::Exact,
                    message_id: &[4; 16],
                    sender_seq: 0,
                    timestamp: NOW,
                    envelopes: &envs,
                    max_queued: 10_000,
                })
                .await
                .unwrap()
            }
        })
        .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen = reader.await.unwrap();
        let mut queued: Vec<u64> = results
            .iter()
            .map(|r| match r {
                EnqueueOutcome::Queued(ids) => ids[0].1,
                other => panic!("{other:?}"),
            })
            .collect();
        queued.sort_unstable();
        assert_eq!(seen.len(), 300, "the cursor missed envelopes");
        assert_eq!(seen, queued);
    })
    .await;
}

/// A node's sends that arrive while its send transaction is under way are committed together
/// and decided one after the other in arrival order: with the recipient's device row held by
/// another connection, the first send waits for it and 63 more queue up behind it. Once the
/// row is free all 64 are committed in at most two transactions (told apart by the `xmin` of
/// their rows), each queued send with a higher server id than the sends made before it, the
/// mismatched ones refused without effect, and the mailbox bound counting the sends queued
/// before in the same transaction.
#[tokio::test]
async fn sends_arriving_during_a_commit_are_committed_together() {
    with_schema(|db| async move {
        let s = db.store().await;
        let (a, b) = (acct(1), acct(2));
        let a1 = register(&s, &a, 1).await;
        let b1 = register(&s, &b, 2).await;
        let mut holder = db.sql().await;
        let held = holder.transaction().await.unwrap();
        held.execute(
            "SELECT 1 FROM devices WHERE account = $1 FOR UPDATE",
            &[&b.as_str()],
        )
        .await
        .unwrap();
        let holder_pid: i32 = held
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let sends: Vec<_> = (0..64u64)
            .map(|i| {
                let (s, a1, b) = (s.clone(), a1.clone(), b.clone());
                tokio::spawn(async move {
                    // Every tenth send addresses a device the recipient does not have.
                    let device_id = if i % 10 == 9 { 9 } else { 1 };
                    let envs = [OutgoingEnvelope {
                        device_id,
                        envelope: vec![i as u8; 10],
                    }];
                    s.enqueue(&NewMessage {
                        sender: &a1,
                        recipient: &b,
                        exclude_device: None,
                        addressing: crate::store::Addressing::Exact,
                        message_id: &[5; 16],
                        sender_seq: i + 1,
                        timestamp: NOW,
                        envelopes: &envs,
                        max_queued: 40,
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        // Until a send waits for the held row (the spawned sends have all been made by then:
        // each is queued at its first poll, and this task has given way since).
        let watcher = db.sql().await;
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    &[&holder_pid],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        held.rollback().await.unwrap();
        let mut results = Vec::new();
        for t in sends {
            results.push(t.await.unwrap());
        }
        let mut last = 0;
        let mut queued = 0;
        for (i, r) in results.iter().enumerate() {
            match r {
                EnqueueOutcome::MismatchedDevices => assert_eq!(i % 10, 9, "send {i}"),
                EnqueueOutcome::Queued(ids) => {
                    assert_eq!(ids.len(), 1);
                    assert!(
                        ids[0].1 > last,
                        "send {i} has a lower id than an earlier one"
                    );
                    last = ids[0].1;
                    queued += 1;
                }
                EnqueueOutcome::QueueFull { device_id: 1 } => {
                    assert_eq!(queued, 40, "send {i} refused before the mailbox was full");
                }
                other => panic!("send {i}: {other:?}"),
            }
        }
        assert_eq!(queued, 40);
        assert_eq!(s.queue_depth(&b1).await.unwrap(), 40);
        // The 40th queued send is send 43 (four mismatched before it): sender_seq 44.
        assert_eq!(s.sender_seq(&a1).await.unwrap(), 44);
        let transactions: i64 = watcher
            .query_one("SELECT COUNT(DISTINCT xmin::text) FROM deliveries", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            transactions <= 2,
            "{transactions} transactions for 40 sends"
        );
    })
    .await;
}
