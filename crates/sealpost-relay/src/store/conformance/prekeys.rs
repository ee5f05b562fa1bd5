//! Conformance cases: Prekey uploads and bundle fetches, one at a time and concurrently.

use super::*;

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
