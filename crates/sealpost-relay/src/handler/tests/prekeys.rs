//! Prekeys (spec/relay.md 3.5–3.6): uploads, bundles served once, fetch quotas.

use super::*;

#[test]
fn prekey_upload_checks_signatures_keys_and_limits() {
    let e = env_with(Limits {
        max_stored_one_time: 6,
        ..Limits::default()
    });
    let mut d = e.device("+15550001111", 1, T0);
    let mut rng = rand::rng();
    let good_spk = d.keys.generate_signed_prekey(&mut rng, &d.id, 1);
    let good_kem = d
        .keys
        .generate_kem_prekeys(&mut rng, &d.id, KemPreKeyKind::OneTime, 1, 1)
        .remove(0);
    let mut upload =
        |u: PreKeyUpload| e.req(&mut d.conn, d.exporter, Request::UploadPreKeys(u), T0);

    let mut bad_spk = good_spk.clone();
    bad_spk.signature[0] ^= 1;
    let mut bad_kem_sig = good_kem.clone();
    bad_kem_sig.created_at += 1;
    // A KEM key failing the modulus check, correctly signed.
    let other = IdentityKeyPair::generate(&mut rng);
    let junk = Box::new([0xff; KEM_PUBLIC_LEN]);
    let msg = KemPreKeyPublic::signed_bytes(
        &d.id.public().to_wire().dh,
        50,
        KemPreKeyKind::OneTime,
        1,
        &junk,
    );
    let invalid_kem = KemPreKeyPublic {
        id: 50,
        kind: KemPreKeyKind::OneTime,
        created_at: 1,
        public: junk,
        signature: d.id.sign(&msg).to_bytes(),
    };
    // A prekey signed by another identity.
    let foreign_spk = PreKeyStore::new().generate_signed_prekey(&mut rng, &other, 1);
    let cases = [
        PreKeyUpload {
            signed_prekey: Some(bad_spk),
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            signed_prekey: Some(foreign_spk),
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            kem: vec![bad_kem_sig],
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            kem: vec![invalid_kem],
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            one_time: vec![(1, [1; 32]), (1, [2; 32])],
            ..PreKeyUpload::default()
        },
        PreKeyUpload {
            kem: vec![good_kem.clone(), good_kem.clone()],
            ..PreKeyUpload::default()
        },
    ];
    for (i, u) in cases.into_iter().enumerate() {
        // Valid parts alongside the invalid one are not stored either.
        let mut u = u;
        u.one_time.push((100 + i as u32, [3; 32]));
        assert_eq!(err(&upload(u)), ErrorCode::InvalidPreKey, "case {i}");
    }
    assert_eq!(
        ready(e.store.prekey_counts(&d.address)).unwrap(),
        crate::store::PreKeyCounts::default()
    );
    let ok = PreKeyUpload {
        signed_prekey: Some(good_spk),
        one_time: vec![(1, [1; 32]), (2, [2; 32])],
        kem: vec![good_kem],
    };
    assert_eq!(
        upload(ok.clone()),
        Response::PreKeysStored {
            one_time_prekeys: 2,
            kem_prekeys: 1
        }
    );
    // The same ids again.
    assert_eq!(err(&upload(ok)), ErrorCode::InvalidPreKey);
    // Over the stored limit (2 + 5 > 6).
    let five = PreKeyUpload {
        one_time: (10..15).map(|i| (i, [i as u8; 32])).collect(),
        ..PreKeyUpload::default()
    };
    assert_eq!(err(&upload(five)), ErrorCode::TooManyPreKeys);
}

#[test]
fn bundles_verify_are_consumed_once_and_signal_low_prekeys() {
    let e = env_with(Limits {
        bundle_fetches_per_minute: 3,
        ..Limits::default()
    });
    let mut bob = e.device("+15550001111", 1, T0);
    e.upload(&mut bob, 21, 6, T0);
    let mut alice = e.device("+15550002222", 2, T0);
    let b = bob.address.account.clone();
    let fetch = |alice: &mut Dev, now| {
        ready(e.h.handle(
            &mut alice.conn,
            alice.exporter,
            Request::FetchBundles { account: b.clone() },
            now,
        ))
    };
    let (r, effects) = fetch(&mut alice, T0);
    let Response::Bundles(bundles) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bundles.len(), 1);
    VerifiedBundle::verify(&bundles[0]).unwrap();
    let first_opk = bundles[0].one_time_prekey.unwrap().0;
    assert!(effects.is_empty(), "20 and 5 left: not low yet");
    let (r, effects) = fetch(&mut alice, T0);
    let Response::Bundles(bundles) = r else {
        panic!()
    };
    assert_ne!(bundles[0].one_time_prekey.unwrap().0, first_opk);
    assert_eq!(
        effects,
        vec![Effect::PreKeysLow {
            device: bob.address.clone(),
            one_time_prekeys: 19,
            kem_prekeys: 4
        }]
    );
    // Unknown accounts; then the per-connection rate limit.
    let r = ready(e.h.handle(
        &mut alice.conn,
        alice.exporter,
        Request::FetchBundles {
            account: acct("+15559999999"),
        },
        T0,
    ))
    .0;
    assert_eq!(err(&r), ErrorCode::UnknownAccount);
    assert_eq!(err(&fetch(&mut alice, T0).0), ErrorCode::RateLimited);
    assert!(matches!(
        fetch(&mut alice, T0 + 20_000).0,
        Response::Bundles(_)
    ));
    // ListDevices.
    let r = e.req(
        &mut alice.conn,
        alice.exporter,
        Request::ListDevices { account: b.clone() },
        T0,
    );
    let Response::Devices(d) = r else { panic!() };
    assert_eq!(d[0].device_id, 1);
    assert_eq!(d[0].identity, bob.id.public().to_wire());
    let r = e.req(
        &mut alice.conn,
        alice.exporter,
        Request::ListDevices {
            account: acct("+15559999999"),
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::UnknownAccount);
}

/// One account cannot empty another device's one-time prekeys: after the pair's burst its
/// fetches are refused with `RateLimited` (and take nothing) until the pair interval has
/// passed; the target's daily budget caps all requesters together, and the target is then
/// told with a `PreKeysLow` push (once per hour).
#[test]
fn fetch_bundles_is_limited_per_pair_and_per_target() {
    let e = env_with(Limits {
        bundle_fetches_per_pair_burst: 3,
        bundle_fetch_pair_interval_secs: 300,
        bundle_fetches_per_target_per_day: 6,
        ..loose_limits()
    });
    let mut bob = e.device("+15550000002", 2, T0);
    assert!(matches!(
        e.upload(&mut bob, 25, 6, T0),
        Response::PreKeysStored { .. }
    ));
    let mut mallory = e.device("+15550000666", 6, T0);
    let fetch = Request::FetchBundles {
        account: bob.address.account.clone(),
    };
    let counts = |e: &Env| ready(e.store.prekey_counts(&bob.address)).unwrap();
    for _ in 0..3 {
        let r = e.req(&mut mallory.conn, mallory.exporter, fetch.clone(), T0);
        assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    }
    for _ in 0..50 {
        let r = e.req(
            &mut mallory.conn,
            mallory.exporter,
            fetch.clone(),
            T0 + 1000,
        );
        assert_eq!(limited_by(&r), (299, "rate limited (fetch_pair)"));
    }
    assert_eq!(counts(&e).one_time_prekeys, 22, "only the burst was taken");
    assert_eq!(counts(&e).kem_prekeys, 3);
    // One more after the pair interval.
    let r = e.req(
        &mut mallory.conn,
        mallory.exporter,
        fetch.clone(),
        T0 + 300_000,
    );
    assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    assert_eq!(counts(&e).one_time_prekeys, 21);

    // Other requesters share the target's daily budget of 6 (4 used): two more fetches,
    // then refused, and Bob's device is told once.
    let mut others: Vec<Dev> = (0..4)
        .map(|i| e.device(&format!("+1555000100{i}"), 10 + i, T0))
        .collect();
    for o in others.iter_mut().take(2) {
        let r = e.req(&mut o.conn, o.exporter, fetch.clone(), T0 + 300_000);
        assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    }
    let o = &mut others[2];
    let (r, effects) = ready(e.h.handle(&mut o.conn, o.exporter, fetch.clone(), T0 + 300_000));
    assert_eq!(limited_by(&r).1, "rate limited (fetch_target)");
    assert_eq!(
        effects,
        vec![Effect::PreKeysLow {
            device: bob.address.clone(),
            one_time_prekeys: 19,
            kem_prekeys: 0,
        }]
    );
    let o = &mut others[3];
    let (r, effects) = ready(e.h.handle(&mut o.conn, o.exporter, fetch.clone(), T0 + 300_000));
    assert_eq!(limited_by(&r).1, "rate limited (fetch_target)");
    assert!(effects.is_empty(), "one notice per hour");
    assert_eq!(counts(&e).one_time_prekeys, 19);
}
