//! Conformance cases: Registration codes, registration, and the registration lock.

use super::*;

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
    s.touch_device(&dev(&a, 2), t1 + 100).await.unwrap();
    s.touch_device(&dev(&a, 2), t1 + 50).await.unwrap();
    s.touch_device(&dev(&acct(99), 1), t1).await.unwrap();
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
