//! The store conformance suite: [`run`] runs every case against stores from a factory; the
//! tests at the bottom run it against every backend.

use super::*;
use sealpost_wire::relay::OutgoingEnvelope;

mod provisioning;
pub(crate) use provisioning::{concurrent_provisioning, provisioning};
mod devices;
pub(crate) use devices::{concurrent_links, device_lists};
use sealpost_wire::{DeviceId, KEM_PUBLIC_LEN, KemPreKeyKind};
use std::collections::BTreeSet;
use std::sync::Arc;

pub(crate) fn acct(n: u32) -> AccountId {
    AccountId::new(format!("+1555000{n:04}")).unwrap()
}

fn ident(b: u8) -> IdentityBytes {
    IdentityBytes {
        signing: [b; 32],
        dh: [b.wrapping_add(1); 32],
    }
}

fn dev(a: &AccountId, id: u32) -> DeviceAddress {
    DeviceAddress::new(a.clone(), DeviceId(id))
}

const MAC: [u8; 32] = [7; 32];
const NOW: u64 = 1_700_000_000_000;
const LIMITS: PreKeyLimits = PreKeyLimits {
    max_one_time: 10,
    max_kem_one_time: 4,
};

/// The policy of a registration without a token.
pub(crate) const NO_LOCK: RegLockPolicy = RegLockPolicy {
    presented: None,
    max_failures: 10,
    lapse: LAPSE,
};
const LAPSE: u64 = 7 * 24 * 3600 * 1000;

fn with_token(v: [u8; 32]) -> RegLockPolicy {
    RegLockPolicy {
        presented: Some(v),
        ..NO_LOCK
    }
}

/// Registers a device through a code, as the handler does.
pub(crate) async fn register<S: Store + ?Sized>(s: &S, a: &AccountId, b: u8) -> u32 {
    s.put_code(a, &MAC, NOW + 600_000).await.unwrap();
    match s
        .register_device(a, &ident(b), &MAC, &NO_LOCK, NOW)
        .await
        .unwrap()
    {
        RegisterOutcome::Registered { device_id, .. } => device_id,
        other => panic!("{other:?}"),
    }
}

fn signed(id: u32) -> SignedPreKeyPublic {
    SignedPreKeyPublic {
        id,
        created_at: 1,
        public: [id as u8; 32],
        signature: [9; 64],
    }
}

fn kem(id: u32, kind: KemPreKeyKind) -> KemPreKeyPublic {
    KemPreKeyPublic {
        id,
        kind,
        created_at: 2,
        public: Box::new([id as u8; KEM_PUBLIC_LEN]),
        signature: [8; 64],
    }
}

fn full_upload(
    otk: std::ops::Range<u32>,
    kem_ids: std::ops::Range<u32>,
    lr: Option<u32>,
) -> NewPreKeys {
    NewPreKeys {
        signed: Some(signed(1)),
        one_time: otk.map(|i| (i, [i as u8; 32])).collect(),
        kem_one_time: kem_ids.map(|i| kem(i, KemPreKeyKind::OneTime)).collect(),
        kem_last_resort: lr.map(|i| kem(i, KemPreKeyKind::LastResort)),
    }
}

fn env(device_id: u32, b: u8) -> OutgoingEnvelope {
    OutgoingEnvelope {
        device_id,
        envelope: vec![b; 10],
    }
}

async fn enqueue<S: Store + ?Sized>(
    s: &S,
    from: &DeviceAddress,
    to: &AccountId,
    envs: &[OutgoingEnvelope],
    max: u32,
) -> EnqueueOutcome {
    s.enqueue(&NewMessage {
        sender: from,
        recipient: to,
        exclude_device: (to == &from.account).then_some(from.device.0),
        message_id: &[3; 16],
        sender_seq: 0,
        timestamp: NOW,
        envelopes: envs,
        max_queued: max,
    })
    .await
    .unwrap()
}

async fn enqueue_seq<S: Store + ?Sized>(
    s: &S,
    from: &DeviceAddress,
    to: &AccountId,
    envs: &[OutgoingEnvelope],
    max: u32,
    sender_seq: u64,
) -> EnqueueOutcome {
    s.enqueue(&NewMessage {
        sender: from,
        recipient: to,
        exclude_device: (to == &from.account).then_some(from.device.0),
        message_id: &[3; 16],
        sender_seq,
        timestamp: NOW,
        envelopes: envs,
        max_queued: max,
    })
    .await
    .unwrap()
}

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

pub(crate) async fn codes<S: Store>(s: &S) {
    let a = acct(1);
    assert_eq!(
        s.begin_code_attempt(&a, NOW, 5).await.unwrap(),
        CodeAttempt::Missing
    );
    s.put_code(&a, &MAC, NOW + 1000).await.unwrap();
    for i in 1..=5 {
        assert_eq!(
            s.begin_code_attempt(&a, NOW, 5).await.unwrap(),
            CodeAttempt::Check {
                mac: MAC,
                attempt: i
            }
        );
    }
    assert_eq!(
        s.begin_code_attempt(&a, NOW, 5).await.unwrap(),
        CodeAttempt::Exhausted
    );
    assert_eq!(
        s.begin_code_attempt(&a, NOW, 5).await.unwrap(),
        CodeAttempt::Missing
    );
    // A new code resets the counter; expiry is exclusive at expires_at.
    s.put_code(&a, &MAC, NOW + 1000).await.unwrap();
    s.begin_code_attempt(&a, NOW, 5).await.unwrap();
    s.put_code(&a, &[1; 32], NOW + 1000).await.unwrap();
    assert_eq!(
        s.begin_code_attempt(&a, NOW + 999, 5).await.unwrap(),
        CodeAttempt::Check {
            mac: [1; 32],
            attempt: 1
        }
    );
    assert_eq!(
        s.begin_code_attempt(&a, NOW + 1000, 5).await.unwrap(),
        CodeAttempt::Expired
    );
    assert_eq!(
        s.begin_code_attempt(&a, NOW, 5).await.unwrap(),
        CodeAttempt::Missing
    );
}

pub(crate) async fn registration<S: Store>(s: &S) {
    let a = acct(1);
    // No code, or another code: nothing happens.
    assert_eq!(
        s.register_device(&a, &ident(1), &MAC, &NO_LOCK, NOW)
            .await
            .unwrap(),
        RegisterOutcome::CodeGone
    );
    s.put_code(&a, &[1; 32], NOW + 1000).await.unwrap();
    assert_eq!(
        s.register_device(&a, &ident(1), &MAC, &NO_LOCK, NOW)
            .await
            .unwrap(),
        RegisterOutcome::CodeGone
    );
    assert!(s.list_devices(&a).await.unwrap().is_empty());
    assert_eq!(register(s, &a, 1).await, 1);
    // The code was consumed.
    assert_eq!(
        s.register_device(&a, &ident(1), &MAC, &NO_LOCK, NOW)
            .await
            .unwrap(),
        RegisterOutcome::CodeGone
    );
    let d1 = dev(&a, 1);
    assert_eq!(s.device_identity(&d1).await.unwrap(), Some(ident(1)));
    s.store_prekeys(&d1, &full_upload(1..4, 1..3, Some(9)), &LIMITS)
        .await
        .unwrap();
    let b = acct(2);
    let b1 = dev(&b, register(s, &b, 5).await);
    assert!(matches!(
        enqueue(s, &b1, &a, &[env(1, 1)], 10).await,
        EnqueueOutcome::Queued(_)
    ));
    assert_eq!(s.queue_depth(&d1).await.unwrap(), 1);
    // Re-registration replaces the device, its prekeys and its mail; ids are not reused.
    s.put_code(&a, &MAC, NOW + 1000).await.unwrap();
    assert_eq!(
        s.register_device(&a, &ident(2), &MAC, &NO_LOCK, NOW)
            .await
            .unwrap(),
        RegisterOutcome::Registered {
            device_id: 2,
            removed: vec![1]
        }
    );
    let d2 = dev(&a, 2);
    assert_eq!(s.device_identity(&d1).await.unwrap(), None);
    assert_eq!(s.device_identity(&d2).await.unwrap(), Some(ident(2)));
    assert_eq!(s.queue_depth(&d1).await.unwrap(), 0);
    assert_eq!(s.prekey_counts(&d1).await.unwrap(), PreKeyCounts::default());
    assert_eq!(s.total_queued().await.unwrap(), 0);
    let devices = s.list_devices(&a).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!((devices[0].device_id, devices[0].identity), (2, ident(2)));
    // The new device has no prekeys: no bundle.
    assert_eq!(s.take_bundles(&a).await.unwrap(), Some(vec![]));
    assert_eq!(s.take_bundles(&acct(99)).await.unwrap(), None);
}

pub(crate) async fn prekeys<S: Store>(s: &S) {
    let a = acct(1);
    let d = dev(&a, register(s, &a, 1).await);
    assert_eq!(
        s.store_prekeys(&dev(&a, 7), &full_upload(1..2, 0..0, None), &LIMITS)
            .await
            .unwrap(),
        UploadOutcome::UnknownDevice
    );
    assert_eq!(
        s.store_prekeys(&d, &full_upload(1..4, 1..3, Some(10)), &LIMITS)
            .await
            .unwrap(),
        UploadOutcome::Stored(PreKeyCounts {
            one_time_prekeys: 3,
            kem_prekeys: 2
        })
    );
    // Conflicts: a stored one-time id, a stored one-time KEM id, a KEM id equal to the
    // last-resort id, a last-resort id equal to a one-time KEM id.
    for bad in [
        full_upload(3..5, 0..0, None),
        full_upload(10..11, 2..3, None),
        full_upload(10..11, 10..11, None),
        full_upload(10..11, 0..0, Some(1)),
    ] {
        assert_eq!(
            s.store_prekeys(&d, &bad, &LIMITS).await.unwrap(),
            UploadOutcome::IdConflict
        );
    }
    // Limits: 3 + 8 > 10 one-time; 2 + 3 > 4 KEM.
    assert_eq!(
        s.store_prekeys(&d, &full_upload(20..28, 0..0, None), &LIMITS)
            .await
            .unwrap(),
        UploadOutcome::TooMany
    );
    assert_eq!(
        s.store_prekeys(&d, &full_upload(20..21, 20..23, None), &LIMITS)
            .await
            .unwrap(),
        UploadOutcome::TooMany
    );
    assert_eq!(
        s.prekey_counts(&d).await.unwrap(),
        PreKeyCounts {
            one_time_prekeys: 3,
            kem_prekeys: 2
        }
    );
    // Replacing the last-resort key with the same id is allowed; so is a new signed prekey.
    let mut up = full_upload(0..0, 0..0, Some(10));
    up.signed = Some(signed(2));
    assert!(matches!(
        s.store_prekeys(&d, &up, &LIMITS).await.unwrap(),
        UploadOutcome::Stored(_)
    ));

    // Bundles: lowest ids first, then last resort, each one-time key once.
    let mut served_otk = Vec::new();
    let mut served_kem = Vec::new();
    for _ in 0..4 {
        let taken = s.take_bundles(&a).await.unwrap().unwrap();
        assert_eq!(taken.len(), 1);
        let b = &taken[0].bundle;
        assert_eq!(b.device_id, d.device.0);
        assert_eq!(b.identity, ident(1));
        assert_eq!(b.signed_prekey, signed(2));
        served_otk.push(b.one_time_prekey.map(|(id, _)| id));
        served_kem.push((b.kem_prekey.id, b.kem_prekey.kind));
        assert_eq!(taken[0].remaining, s.prekey_counts(&d).await.unwrap());
    }
    assert_eq!(served_otk, vec![Some(1), Some(2), Some(3), None]);
    assert_eq!(
        served_kem,
        vec![
            (1, KemPreKeyKind::OneTime),
            (2, KemPreKeyKind::OneTime),
            (10, KemPreKeyKind::LastResort),
            (10, KemPreKeyKind::LastResort)
        ]
    );
    assert_eq!(
        served_otk.iter().flatten().collect::<BTreeSet<_>>().len(),
        3
    );
    // After consumption the ids are no longer stored and may be uploaded again.
    assert!(matches!(
        s.store_prekeys(&d, &full_upload(1..2, 1..2, None), &LIMITS)
            .await
            .unwrap(),
        UploadOutcome::Stored(PreKeyCounts {
            one_time_prekeys: 1,
            kem_prekeys: 1
        })
    ));
    // A device without a signed prekey or without any KEM key is skipped.
    let b = acct(2);
    let bd = dev(&b, register(s, &b, 2).await);
    let no_kem = NewPreKeys {
        signed: Some(signed(1)),
        one_time: vec![(1, [1; 32])],
        ..NewPreKeys::default()
    };
    s.store_prekeys(&bd, &no_kem, &LIMITS).await.unwrap();
    assert_eq!(s.take_bundles(&b).await.unwrap(), Some(vec![]));
    assert_eq!(
        s.prekey_counts(&bd).await.unwrap().one_time_prekeys,
        1,
        "nothing taken"
    );
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

pub(crate) async fn concurrent_bundles<S: Store + 'static>(s: Arc<S>) {
    let a = acct(1);
    let d = dev(&a, register(&*s, &a, 1).await);
    let limits = PreKeyLimits {
        max_one_time: 1000,
        max_kem_one_time: 200,
    };
    s.store_prekeys(&d, &full_upload(1..101, 1..41, Some(500)), &limits)
        .await
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            let a = a.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..20 {
                    out.push(s.take_bundles(&a).await.unwrap().unwrap().remove(0).bundle);
                }
                out
            })
        })
        .collect();
    let mut bundles = Vec::new();
    for t in threads {
        bundles.extend(t.await.unwrap());
    }
    assert_eq!(bundles.len(), 160);
    let otk: Vec<u32> = bundles
        .iter()
        .filter_map(|b| b.one_time_prekey.map(|k| k.0))
        .collect();
    let unique: BTreeSet<u32> = otk.iter().copied().collect();
    assert_eq!(otk.len(), 100, "every one-time key served");
    assert_eq!(unique.len(), 100, "no one-time key served twice");
    let kem: Vec<u32> = bundles
        .iter()
        .filter(|b| b.kem_prekey.kind == KemPreKeyKind::OneTime)
        .map(|b| b.kem_prekey.id)
        .collect();
    assert_eq!(kem.len(), 40);
    assert_eq!(kem.iter().collect::<BTreeSet<_>>().len(), 40);
    assert_eq!(s.prekey_counts(&d).await.unwrap(), PreKeyCounts::default());
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

pub(crate) async fn registration_lock<S: Store>(s: &S) {
    let a = acct(1);
    let right = [0x11; 32];
    let wrong = [0x22; 32];
    assert_eq!(s.registration_lock(&a).await.unwrap(), None);
    assert!(
        !s.set_registration_lock(&a, Some(&right), NOW)
            .await
            .unwrap()
    );
    register(s, &a, 1).await;
    assert_eq!(
        s.registration_lock(&a).await.unwrap(),
        Some(RegLockState {
            verifier: None,
            failures: 0,
            last_seen: NOW
        })
    );
    let t1 = NOW + 1000;
    assert!(s.set_registration_lock(&a, Some(&right), t1).await.unwrap());
    s.put_code(&a, &MAC, t1 + 600_000).await.unwrap();
    // The handler counts a code attempt before calling register_device.
    let attempt = async |s: &S| match s.begin_code_attempt(&a, t1, 5).await.unwrap() {
        CodeAttempt::Check { attempt, .. } => attempt,
        other => panic!("{other:?}"),
    };
    let locked = RegisterOutcome::Locked {
        lapses_at: t1 + LAPSE,
        attempts_remaining: 10,
    };
    // No token: refused, not counted, the code attempt given back.
    assert_eq!(attempt(s).await, 1);
    assert_eq!(
        s.register_device(&a, &ident(2), &MAC, &NO_LOCK, t1)
            .await
            .unwrap(),
        locked
    );
    assert_eq!(attempt(s).await, 1);
    // Wrong tokens count, durably, down to zero; then even the right one is refused.
    for i in 1..=10u32 {
        assert_eq!(
            s.register_device(&a, &ident(2), &MAC, &with_token(wrong), t1)
                .await
                .unwrap(),
            RegisterOutcome::Locked {
                lapses_at: t1 + LAPSE,
                attempts_remaining: 10 - i
            }
        );
        assert_eq!(
            attempt(s).await,
            1,
            "a locked attempt never uses up the code"
        );
    }
    assert_eq!(s.registration_lock(&a).await.unwrap().unwrap().failures, 10);
    assert_eq!(
        s.register_device(&a, &ident(2), &MAC, &with_token(right), t1)
            .await
            .unwrap(),
        RegisterOutcome::Locked {
            lapses_at: t1 + LAPSE,
            attempts_remaining: 0
        }
    );
    assert_eq!(s.list_devices(&a).await.unwrap().len(), 1);
    // Setting the lock again (an authenticated device) resets the failures; the right
    // token then registers, keeps the verifier and resets the count.
    assert!(s.set_registration_lock(&a, Some(&right), t1).await.unwrap());
    s.register_device(&a, &ident(2), &MAC, &with_token(wrong), t1)
        .await
        .unwrap();
    match s
        .register_device(&a, &ident(2), &MAC, &with_token(right), t1 + 5)
        .await
        .unwrap()
    {
        RegisterOutcome::Registered { device_id, removed } => {
            assert_eq!((device_id, removed), (2, vec![1]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.registration_lock(&a).await.unwrap(),
        Some(RegLockState {
            verifier: Some(right),
            failures: 0,
            last_seen: t1 + 5
        })
    );
    // Seen devices push the lapse out; touch never moves last_seen back.
    s.touch_account(&a, t1 + 100).await.unwrap();
    s.touch_account(&a, t1 + 50).await.unwrap();
    s.touch_account(&acct(99), t1).await.unwrap();
    assert_eq!(
        s.registration_lock(&a).await.unwrap().unwrap().last_seen,
        t1 + 100
    );
    // One millisecond before the lapse the lock holds; at the lapse the code alone
    // registers and clears the verifier.
    let lapse_at = t1 + 100 + LAPSE;
    s.put_code(&a, &MAC, lapse_at + 600_000).await.unwrap();
    assert_eq!(
        s.register_device(&a, &ident(3), &MAC, &NO_LOCK, lapse_at - 1)
            .await
            .unwrap(),
        RegisterOutcome::Locked {
            lapses_at: lapse_at,
            attempts_remaining: 10
        }
    );
    assert!(matches!(
        s.register_device(&a, &ident(3), &MAC, &NO_LOCK, lapse_at)
            .await
            .unwrap(),
        RegisterOutcome::Registered { device_id: 3, .. }
    ));
    assert_eq!(
        s.registration_lock(&a).await.unwrap(),
        Some(RegLockState {
            verifier: None,
            failures: 0,
            last_seen: lapse_at
        })
    );
    // Clearing removes the verifier: the next registration needs the code alone.
    assert!(
        s.set_registration_lock(&a, Some(&right), lapse_at)
            .await
            .unwrap()
    );
    assert!(s.set_registration_lock(&a, None, lapse_at).await.unwrap());
    assert_eq!(
        s.registration_lock(&a).await.unwrap().unwrap().verifier,
        None
    );
    s.put_code(&a, &MAC, lapse_at + 600_000).await.unwrap();
    assert!(matches!(
        s.register_device(&a, &ident(4), &MAC, &NO_LOCK, lapse_at)
            .await
            .unwrap(),
        RegisterOutcome::Registered { .. }
    ));
}

pub(crate) async fn concurrent_reglock<S: Store + 'static>(s: Arc<S>) {
    let a = acct(1);
    register(&*s, &a, 1).await;
    s.set_registration_lock(&a, Some(&[1; 32]), NOW)
        .await
        .unwrap();
    s.put_code(&a, &MAC, NOW + 600_000).await.unwrap();
    let threads: Vec<_> = (0..40u8)
        .map(|i| {
            let s = Arc::clone(&s);
            let a = a.clone();
            tokio::spawn(async move {
                // Every token is wrong; the right one is tried by nobody.
                match s
                    .register_device(&a, &ident(2), &MAC, &with_token([i + 2; 32]), NOW + 1)
                    .await
                    .unwrap()
                {
                    RegisterOutcome::Locked {
                        attempts_remaining, ..
                    } => attempts_remaining,
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut remaining: Vec<u32> = Vec::new();
    for t in threads {
        remaining.push(t.await.unwrap());
    }
    remaining.sort_unstable();
    // Exactly ten were counted (answers 9..=0, each once); thirty were refused unchecked.
    assert_eq!(remaining.iter().filter(|r| **r == 0).count(), 31);
    assert_eq!(&remaining[31..], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(s.registration_lock(&a).await.unwrap().unwrap().failures, 10);
    assert_eq!(s.list_devices(&a).await.unwrap().len(), 1);
}

pub(crate) fn vault_row(id: u8) -> VaultRow {
    VaultRow {
        vault_id: [id; 16],
        share: zeroize::Zeroizing::new([id; 33]),
        success_verifier: [id.wrapping_add(1); 32],
        record: vec![id; 100],
        attempts_used: 0,
    }
}

pub(crate) async fn vaults<S: Store>(s: &S) {
    let a = acct(1);
    let b = acct(2);
    assert_eq!(s.vault(&a).await.unwrap(), None);
    let mut v1 = vault_row(1);
    v1.attempts_used = 7; // ignored
    assert_eq!(
        s.put_vault(&a, &v1, 1, NOW).await.unwrap(),
        PutVaultOutcome::Stored
    );
    let got = s.vault(&a).await.unwrap().unwrap();
    assert_eq!((got.attempts_used, got.index()), (0, 1));
    assert_eq!(got.record, v1.record);
    // max_vaults counts other accounts' vaults; replacing one's own is always allowed.
    assert_eq!(
        s.put_vault(&b, &vault_row(2), 1, NOW).await.unwrap(),
        PutVaultOutcome::Full
    );
    assert_eq!(s.vault(&b).await.unwrap(), None);
    // Counting: a wrong vault id counts nothing.
    assert_eq!(
        s.begin_vault_evaluation(&a, &[9; 16], 3, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    assert_eq!(
        s.begin_vault_evaluation(&b, &[1; 16], 3, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    for used in 1..=2 {
        assert_eq!(
            s.begin_vault_evaluation(&a, &[1; 16], 3, NOW)
                .await
                .unwrap(),
            VaultAttempt::Counted {
                share: zeroize::Zeroizing::new([1; 33]),
                attempts_used: used,
                deleted: false
            }
        );
    }
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 2);
    // Confirm: wrong verifier or vault id change nothing; the right one resets.
    assert_eq!(
        s.confirm_vault(&a, &[1; 16], &[0; 32], NOW).await.unwrap(),
        ConfirmOutcome::Mismatch
    );
    assert_eq!(
        s.confirm_vault(&a, &[2; 16], &[2; 32], NOW).await.unwrap(),
        ConfirmOutcome::NotFound
    );
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 2);
    assert_eq!(
        s.confirm_vault(&a, &[1; 16], &[2; 32], NOW).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 0);
    // A replacement resets the count too.
    s.begin_vault_evaluation(&a, &[1; 16], 3, NOW)
        .await
        .unwrap();
    s.put_vault(&a, &vault_row(3), 1, NOW).await.unwrap();
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 0);
    // The last permitted attempt deletes the vault in the same transaction.
    for used in 1..=3 {
        match s
            .begin_vault_evaluation(&a, &[3; 16], 3, NOW)
            .await
            .unwrap()
        {
            VaultAttempt::Counted {
                attempts_used,
                deleted,
                ..
            } => assert_eq!((attempts_used, deleted), (used, used == 3)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.vault(&a).await.unwrap(), None);
    assert_eq!(
        s.begin_vault_evaluation(&a, &[3; 16], 3, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    // A limit lowered below the count deletes without evaluating.
    s.put_vault(&a, &vault_row(4), 1, NOW).await.unwrap();
    s.begin_vault_evaluation(&a, &[4; 16], 10, NOW)
        .await
        .unwrap();
    s.begin_vault_evaluation(&a, &[4; 16], 10, NOW)
        .await
        .unwrap();
    assert_eq!(
        s.begin_vault_evaluation(&a, &[4; 16], 2, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    assert_eq!(s.vault(&a).await.unwrap(), None);
    // Delete is idempotent.
    s.put_vault(&a, &vault_row(5), 1, NOW).await.unwrap();
    assert!(s.delete_vault(&a).await.unwrap());
    assert!(!s.delete_vault(&a).await.unwrap());
    assert_eq!(s.vault(&a).await.unwrap(), None);
}

pub(crate) async fn concurrent_evaluations<S: Store + 'static>(s: Arc<S>) {
    let a = acct(1);
    s.put_vault(&a, &vault_row(1), 10, NOW).await.unwrap();
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let s = Arc::clone(&s);
            let a = a.clone();
            tokio::spawn(async move {
                s.begin_vault_evaluation(&a, &[1; 16], 10, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results: Vec<VaultAttempt> = Vec::new();
    for t in threads {
        results.push(t.await.unwrap());
    }
    let mut used: Vec<u32> = results
        .iter()
        .filter_map(|r| match r {
            VaultAttempt::Counted { attempts_used, .. } => Some(*attempts_used),
            VaultAttempt::NotFound => None,
            VaultAttempt::RolledBack => panic!("no rollback in this test"),
        })
        .collect();
    used.sort_unstable();
    assert_eq!(used, (1..=10).collect::<Vec<_>>());
    let deleted = results
        .iter()
        .filter(|r| matches!(r, VaultAttempt::Counted { deleted: true, .. }))
        .count();
    assert_eq!(deleted, 1);
    assert_eq!(s.vault(&a).await.unwrap(), None);
}

fn quota(kind: QuotaKind, subject: &str, capacity: u32, refill_ms: u64) -> QuotaCheck {
    QuotaCheck {
        kind,
        subject: subject.into(),
        rate: crate::ratelimit::Rate {
            capacity,
            refill_ms,
        },
    }
}

pub(crate) async fn quotas<S: Store>(s: &S) {
    let t = 1_000_000u64;
    let number = quota(QuotaKind::CodeNumber, "+15550000001", 2, 1000);
    let global = quota(QuotaKind::CodeGlobal, "", 3, 10_000);
    // A burst of `capacity`, then refused with the wait for one more.
    for _ in 0..2 {
        assert_eq!(
            s.take_quotas(&[number.clone(), global.clone()], t)
                .await
                .unwrap(),
            QuotaOutcome::Taken
        );
    }
    assert_eq!(
        s.take_quotas(&[number.clone(), global.clone()], t)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            index: 0,
            retry_after_ms: 1000
        }
    );
    // All or nothing: the refused request charged neither quota; another subject of the
    // same kind is independent; the global quota has one request left.
    let other = quota(QuotaKind::CodeNumber, "+15550000002", 2, 1000);
    assert_eq!(
        s.take_quotas(&[other.clone(), global.clone()], t)
            .await
            .unwrap(),
        QuotaOutcome::Taken
    );
    assert_eq!(
        s.take_quotas(&[other.clone(), global.clone()], t)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            index: 1,
            retry_after_ms: 10_000
        }
    );
    // Refused by the global quota, the number's quota was not charged.
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&other), t)
            .await
            .unwrap(),
        QuotaOutcome::Taken
    );
    // Kinds are separate even with the same subject.
    let pair = quota(QuotaKind::FetchTarget, "+15550000001", 1, 1000);
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&pair), t).await.unwrap(),
        QuotaOutcome::Taken
    );
    // Refills with time: one per refill period.
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&number), t + 999)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            index: 0,
            retry_after_ms: 1
        }
    );
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&number), t + 1000)
            .await
            .unwrap(),
        QuotaOutcome::Taken
    );
    // The sweep forgets only quotas that are full again (no decision changes).
    s.sweep(t + 1500, u64::MAX).await.unwrap();
    assert!(matches!(
        s.take_quotas(std::slice::from_ref(&number), t + 1500)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded { .. }
    ));
    s.sweep(t + 100_000, u64::MAX).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.take_quotas(std::slice::from_ref(&number), t + 100_000)
                .await
                .unwrap(),
            QuotaOutcome::Taken
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

/// Runs every case of the suite, each on a fresh store from `new_store`. Another backend's
/// tests call this with their own factory (inside a multi-threaded tokio runtime: the
/// concurrency cases spawn tasks).
pub(crate) async fn run<S, F>(mut new_store: F)
where
    S: Store + 'static,
    F: FnMut() -> S,
{
    eprintln!("conformance: codes");
    codes(&new_store()).await;
    eprintln!("conformance: registration");
    registration(&new_store()).await;
    eprintln!("conformance: prekeys");
    prekeys(&new_store()).await;
    eprintln!("conformance: mailboxes");
    mailboxes(&new_store()).await;
    eprintln!("conformance: sender_seqs");
    sender_seqs(&new_store()).await;
    eprintln!("conformance: feed");
    feed(&new_store()).await;
    eprintln!("conformance: registration_lock");
    registration_lock(&new_store()).await;
    eprintln!("conformance: vaults");
    vaults(&new_store()).await;
    eprintln!("conformance: quotas");
    quotas(&new_store()).await;
    eprintln!("conformance: provisioning");
    provisioning(&new_store()).await;
    eprintln!("conformance: concurrent_bundles");
    concurrent_bundles(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_sends");
    concurrent_sends(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_reglock");
    concurrent_reglock(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_evaluations");
    concurrent_evaluations(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_provisioning");
    concurrent_provisioning(Arc::new(new_store())).await;
    eprintln!("conformance: device_lists");
    device_lists(&new_store()).await;
    eprintln!("conformance: concurrent_links");
    concurrent_links(Arc::new(new_store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    run(MemoryStore::new).await;
}

#[cfg(feature = "server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    run(|| {
        n += 1;
        SqliteStore::open(dir.path().join(format!("{n}.db"))).unwrap()
    })
    .await;
}
