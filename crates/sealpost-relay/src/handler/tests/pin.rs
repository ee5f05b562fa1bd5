//! The registration lock and the guardian role (spec/pin.md sections 7, 9, 10).

use super::*;

#[test]
fn locked_registration_gets_a_typed_answer_and_keeps_the_code() {
    let e = env_with(loose_limits());
    let a = acct(ALICE);
    let mut owner = e.device(ALICE, 1, T0);
    let token = [0x5A; 32];
    assert_eq!(
        e.req(
            &mut owner.conn,
            owner.exporter,
            Request::SetRegistrationLock { token },
            T0
        ),
        Response::RegistrationLockSet
    );
    // A day later a new phone registers with the right code but no token.
    let t1 = T0 + DAY_MS + 500;
    let mut c = e.h.new_connection(9, t1);
    let code = e.new_code(&mut c, &a, t1);
    let new_id = IdentityKeyPair::generate(&mut rand::rng());
    let r = e.register_with(&mut c, &a, code, &new_id, None, t1);
    let Response::RegistrationLocked {
        lapses_in,
        attempts_remaining,
        credential,
    } = r
    else {
        panic!("{r:?}")
    };
    // last_seen is T0 (registration and authentication): 6 days left, rounded up.
    assert_eq!(
        u64::from(lapses_in),
        (7 * DAY_MS - DAY_MS - 500).div_ceil(1000)
    );
    assert_eq!(attempts_remaining, 10);
    assert_eq!(credential.scope, CredentialScope::Recovery);
    assert_eq!(credential.account, a);
    assert_eq!(credential.expires_at, t1 / 1000 + 3600);
    verify_credential(&credential, e.h.issuer_public());
    // The owner's device is untouched and the same code registers with the token.
    assert_eq!(ready(e.store.list_devices(&a)).unwrap().len(), 1);
    let r = e.register_with(&mut c, &a, code, &new_id, Some(token), t1);
    assert_eq!(r, Response::Registered { device_id: 2 });
    // The verifier is kept for the new device (it knows the PIN).
    let state = ready(e.store.registration_lock(&a)).unwrap().unwrap();
    assert!(state.verifier.is_some());
    assert_eq!((state.failures, state.last_seen), (0, t1));
    // The relay keeps the verifier, never the token.
    assert_ne!(state.verifier, Some(token));
}

#[test]
fn wrong_tokens_are_limited_and_the_lock_lapses_after_seven_quiet_days() {
    let e = env_with(loose_limits());
    let a = acct(ALICE);
    let mut owner = e.device(ALICE, 1, T0);
    let right = [1; 32];
    e.req(
        &mut owner.conn,
        owner.exporter,
        Request::SetRegistrationLock { token: right },
        T0,
    );
    let mut c = e.h.new_connection(9, T0);
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let mut code = e.new_code(&mut c, &a, T0);
    for i in 1..=10u16 {
        if i % 4 == 0 {
            // Codes expire and have their own attempt limit: fresh ones keep the test honest.
            code = e.new_code(&mut c, &a, T0);
        }
        match e.register_with(&mut c, &a, code, &id, Some([i as u8 + 1; 32]), T0) {
            Response::RegistrationLocked {
                attempts_remaining, ..
            } => assert_eq!(attempts_remaining, 10 - i),
            other => panic!("{other:?}"),
        }
    }
    // Used up: even the right token is refused, unchecked.
    match e.register_with(&mut c, &a, code, &id, Some(right), T0) {
        Response::RegistrationLocked {
            attempts_remaining, ..
        } => assert_eq!(attempts_remaining, 0),
        other => panic!("{other:?}"),
    }
    // The owner keeps using the account: authentication on day 3 moves the lapse.
    let mut again = e.h.new_connection(2, T0 + 3 * DAY_MS);
    std::mem::swap(&mut owner.conn, &mut again);
    assert!(matches!(
        e.authenticate(&mut owner, T0 + 3 * DAY_MS),
        Response::Authenticated { .. }
    ));
    // ... and so does the close of that connection on day 4.
    ready(e.h.connection_closed(&owner.conn, T0 + 4 * DAY_MS)).unwrap();
    let t = T0 + 4 * DAY_MS + 7 * DAY_MS - 1;
    let code = e.new_code(&mut c, &a, t);
    match e.register_with(&mut c, &a, code, &id, None, t) {
        Response::RegistrationLocked { lapses_in, .. } => assert_eq!(lapses_in, 1),
        other => panic!("{other:?}"),
    }
    // Seven days after the device was last seen the code alone registers and clears the lock.
    let t = T0 + 11 * DAY_MS;
    assert_eq!(
        e.register_with(&mut c, &a, code, &id, None, t),
        Response::Registered { device_id: 2 }
    );
    let state = ready(e.store.registration_lock(&a)).unwrap().unwrap();
    assert_eq!((state.verifier, state.failures), (None, 0));
}

#[test]
fn registration_lock_requests_need_authentication_and_clear_works() {
    let e = env();
    let mut c = e.h.new_connection(5, T0);
    for r in [
        Request::SetRegistrationLock { token: [1; 32] },
        Request::ClearRegistrationLock,
        Request::GetGuardianCredential,
    ] {
        assert_eq!(err(&e.req(&mut c, X1, r, T0)), ErrorCode::Unauthenticated);
    }
    let mut d = e.device(ALICE, 1, T0);
    e.req(
        &mut d.conn,
        d.exporter,
        Request::SetRegistrationLock { token: [1; 32] },
        T0,
    );
    assert_eq!(
        e.req(&mut d.conn, d.exporter, Request::ClearRegistrationLock, T0),
        Response::RegistrationLockCleared
    );
    assert_eq!(
        ready(e.store.registration_lock(&acct(ALICE)))
            .unwrap()
            .unwrap()
            .verifier,
        None
    );
    let cred = e.owner_credential(&mut d, T0);
    assert_eq!(cred.scope, CredentialScope::Owner);
    verify_credential(&cred, e.h.issuer_public());
}

fn enrol(account: &str, t: usize, n: usize) -> (MasterSecret, Enrollment) {
    let mut rng = rand::rng();
    let ms = MasterSecret::generate(&mut rng);
    let pin = normalize("246810").unwrap();
    let en = enroll(&pin, account, &ms, t, n, &Argon2Params::testing(), &mut rng).unwrap();
    (ms, en)
}

fn store_req(c: &GuardianCredential, en: &Enrollment, i: usize) -> Request {
    let g = &en.guardians[i];
    Request::VaultStore {
        credential: c.clone(),
        share: *g.share.to_bytes(),
        success_verifier: g.success_verifier,
        record: en.record.encode(),
    }
}

/// A credential signed by `key` (any issuer), for the negative cases.
fn forge(
    key: &SigningKey,
    account: &AccountId,
    scope: CredentialScope,
    expires_at: u64,
) -> GuardianCredential {
    let issuer = key.verifying_key().to_bytes();
    GuardianCredential {
        account: account.clone(),
        scope,
        expires_at,
        issuer,
        signature: key
            .sign(&credential_signed_bytes(
                account, scope, expires_at, &issuer,
            ))
            .to_bytes(),
    }
}

#[test]
fn guardian_serves_a_whole_recovery() {
    let e = env_guardian(
        loose_limits(),
        GuardianConfig {
            max_attempts: 3,
            ..GuardianConfig::default()
        },
    );
    let a = acct(ALICE);
    let mut d = e.device(ALICE, 1, T0);
    let owner = e.owner_credential(&mut d, T0);
    let (ms, en) = enrol(ALICE, 1, 1);
    let mut anon = e.h.new_connection(7, T0);
    assert_eq!(
        e.req(&mut anon, X1, store_req(&owner, &en, 0), T0),
        Response::VaultStored
    );
    // A new phone: locked registration, Recovery credential.
    e.req(
        &mut d.conn,
        d.exporter,
        Request::SetRegistrationLock {
            token: *ms.reglock_token().as_bytes(),
        },
        T0,
    );
    let code = e.new_code(&mut anon, &a, T0);
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let Response::RegistrationLocked { credential, .. } =
        e.register_with(&mut anon, &a, code, &id, None, T0)
    else {
        panic!()
    };
    // The Recovery scope cannot store or delete.
    for r in [
        store_req(&credential, &en, 0),
        Request::VaultDelete {
            credential: credential.clone(),
        },
    ] {
        assert_eq!(
            err(&e.req(&mut anon, X1, r, T0)),
            ErrorCode::CredentialInvalid
        );
    }
    let Response::Vault {
        index,
        attempts_remaining,
        record,
    } = e.req(
        &mut anon,
        X1,
        Request::VaultFetch {
            credential: credential.clone(),
        },
        T0,
    )
    else {
        panic!()
    };
    assert_eq!((index, attempts_remaining), (1, 3));
    let record = sealpost_pin::vault::VaultRecord::decode(&record).unwrap();
    let vault_id = *record.vault_id();
    // A wrong PIN first: counted.
    let wrong = normalize("135790").unwrap();
    let (_, blinded) = Recovery::start(&wrong, ALICE, record.clone(), &mut rand::rng()).unwrap();
    let r = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id,
            blinded: blinded.to_bytes(),
        },
        T0,
    );
    assert!(matches!(
        r,
        Response::VaultEvaluated {
            attempts_remaining: 2,
            ..
        }
    ));
    // An invalid element is refused and not counted.
    let r = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id,
            blinded: [0; 32],
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::Malformed);
    // Another vault id is VaultNotFound, not counted.
    let r = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id: [0xEE; 16],
            blinded: blinded.to_bytes(),
        },
        T0,
    );
    assert_eq!(err(&r), ErrorCode::VaultNotFound);
    // The right PIN recovers the master secret.
    let pin = normalize("246810").unwrap();
    let (rec, blinded) = Recovery::start(&pin, ALICE, record, &mut rand::rng()).unwrap();
    let Response::VaultEvaluated {
        index,
        evaluated,
        proof,
        attempts_remaining,
    } = e.req(
        &mut anon,
        X1,
        Request::VaultEvaluate {
            credential: credential.clone(),
            vault_id,
            blinded: blinded.to_bytes(),
        },
        T0,
    )
    else {
        panic!()
    };
    assert_eq!(attempts_remaining, 1);
    let recovered = rec
        .finish(&[GuardianResponse {
            index,
            evaluated: sealpost_pin::oprf::EvaluatedElement::from_slice(&evaluated).unwrap(),
            proof: sealpost_pin::oprf::Proof::from_slice(&proof).unwrap(),
        }])
        .unwrap();
    assert!(recovered.master.ct_eq(&ms));
    let token = *recovered.token_for(1).unwrap().as_bytes();
    // A wrong success token is refused and changes nothing; the right one resets.
    let confirm = |token| Request::VaultConfirm {
        credential: credential.clone(),
        vault_id,
        token,
    };
    assert_eq!(
        err(&e.req(&mut anon, X1, confirm([9; 32]), T0)),
        ErrorCode::CredentialInvalid
    );
    assert_eq!(ready(e.store.vault(&a)).unwrap().unwrap().attempts_used, 2);
    assert_eq!(
        e.req(&mut anon, X1, confirm(token), T0),
        Response::VaultConfirmed {
            attempts_remaining: 3
        }
    );
    assert_eq!(ready(e.store.vault(&a)).unwrap().unwrap().attempts_used, 0);
    // The new phone registers with the recovered token.
    assert_eq!(
        e.register_with(
            &mut anon,
            &a,
            code,
            &id,
            Some(*recovered.master.reglock_token().as_bytes()),
            T0
        ),
        Response::Registered { device_id: 2 }
    );
}

#[test]
fn evaluations_are_counted_and_the_last_deletes_the_vault() {
    let e = env_guardian(
        loose_limits(),
        GuardianConfig {
            max_attempts: 3,
            ..GuardianConfig::default()
        },
    );
    let mut d = e.device(ALICE, 1, T0);
    let owner = e.owner_credential(&mut d, T0);
    let (_, en) = enrol(ALICE, 1, 1);
    e.req(&mut d.conn, X1, store_req(&owner, &en, 0), T0);
    let vault_id = *en.record.vault_id();
    let pin = normalize("000000").unwrap();
    let (_, blinded) = Recovery::start(&pin, ALICE, en.record.clone(), &mut rand::rng()).unwrap();
    let eval = Request::VaultEvaluate {
        credential: owner.clone(),
        vault_id,
        blinded: blinded.to_bytes(),
    };
    for left in [2u16, 1, 0] {
        match e.req(&mut d.conn, X1, eval.clone(), T0) {
            Response::VaultEvaluated {
                attempts_remaining, ..
            } => assert_eq!(attempts_remaining, left),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ready(e.store.vault(&acct(ALICE))).unwrap(), None);
    assert_eq!(
        err(&e.req(&mut d.conn, X1, eval, T0)),
        ErrorCode::VaultNotFound
    );
    // Store again, then delete (idempotent).
    e.req(&mut d.conn, X1, store_req(&owner, &en, 0), T0);
    for _ in 0..2 {
        assert_eq!(
            e.req(
                &mut d.conn,
                X1,
                Request::VaultDelete {
                    credential: owner.clone()
                },
                T0
            ),
            Response::VaultDeleted
        );
    }
    assert_eq!(ready(e.store.vault(&acct(ALICE))).unwrap(), None);
}

#[test]
fn credentials_are_checked_in_order() {
    let other = SigningKey::from_seed(&[0x77; 32]);
    let trusted = SigningKey::from_seed(&[0x78; 32]);
    let trusted_hex: String = trusted
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let e = env_guardian(
        loose_limits(),
        GuardianConfig {
            accounts: vec!["+1555".into()],
            trusted_issuers: vec![trusted_hex],
            ..GuardianConfig::default()
        },
    );
    let a = acct(ALICE);
    let now_s = T0 / 1000;
    let mut c = e.h.new_connection(3, T0);
    let fetch = |credential: GuardianCredential| Request::VaultFetch { credential };
    let mut d = e.device(ALICE, 1, T0);
    let own = e.owner_credential(&mut d, T0);
    // Own and trusted issuers pass (no vault yet).
    for cred in [
        own.clone(),
        forge(&trusted, &a, CredentialScope::Recovery, now_s + 3600),
    ] {
        assert_eq!(
            err(&e.req(&mut c, X1, fetch(cred), T0)),
            ErrorCode::VaultNotFound
        );
    }
    let mut bad_sig = own.clone();
    bad_sig.signature[5] ^= 1;
    let mut tampered = own.clone();
    tampered.expires_at += 1;
    let cases = [
        (
            forge(&other, &a, CredentialScope::Owner, now_s + 3600),
            ErrorCode::CredentialInvalid,
        ),
        (bad_sig, ErrorCode::CredentialInvalid),
        (tampered, ErrorCode::CredentialInvalid),
        (
            forge(&trusted, &a, CredentialScope::Owner, now_s),
            ErrorCode::CredentialInvalid,
        ),
        (
            forge(&trusted, &a, CredentialScope::Owner, now_s + 3600 + 301),
            ErrorCode::CredentialInvalid,
        ),
        (
            forge(
                &trusted,
                &acct("+4477009000000"),
                CredentialScope::Owner,
                now_s + 10,
            ),
            ErrorCode::NotGuardian,
        ),
    ];
    for (cred, code) in cases {
        assert_eq!(
            err(&e.req(&mut c, X1, fetch(cred.clone()), T0)),
            code,
            "{cred:?}"
        );
    }
    // The edge of the skew window is accepted.
    assert_eq!(
        err(&e.req(
            &mut c,
            X1,
            fetch(forge(
                &trusted,
                &a,
                CredentialScope::Owner,
                now_s + 3600 + 300
            )),
            T0
        )),
        ErrorCode::VaultNotFound
    );
    // An hour later the relay's own credential has expired.
    assert_eq!(
        err(&e.req(&mut c, X1, fetch(own), T0 + 3600 * 1000)),
        ErrorCode::CredentialInvalid
    );
    // A relay that is not a guardian says so first.
    let off = env_guardian(loose_limits(), GuardianConfig::disabled());
    let mut c = off.h.new_connection(1, T0);
    let cred = forge(&trusted, &a, CredentialScope::Owner, now_s + 3600);
    assert_eq!(
        err(&off.req(&mut c, X1, fetch(cred), T0)),
        ErrorCode::NotGuardian
    );
}

#[test]
fn vault_store_checks_record_and_share_and_rate_limits() {
    let e = env_guardian(
        Limits {
            vault_requests_per_account: 6,
            ..loose_limits()
        },
        GuardianConfig::default(),
    );
    let mut d = e.device(ALICE, 1, T0);
    let owner = e.owner_credential(&mut d, T0);
    let (_, en) = enrol(ALICE, 2, 3);
    let (_, other) = enrol(ALICE, 2, 3);
    let mut c = e.h.new_connection(3, T0);
    // Another enrolment's share 1: its commitment is not in this record.
    let mismatched = Request::VaultStore {
        credential: owner.clone(),
        share: *other.guardians[0].share.to_bytes(),
        success_verifier: en.guardians[0].success_verifier,
        record: en.record.encode(),
    };
    assert_eq!(
        err(&e.req(&mut c, X1, mismatched, T0)),
        ErrorCode::InvalidVault
    );
    let mut bad_record = en.record.encode();
    bad_record[0] = 2;
    let r = Request::VaultStore {
        credential: owner.clone(),
        share: *en.guardians[0].share.to_bytes(),
        success_verifier: en.guardians[0].success_verifier,
        record: bad_record,
    };
    assert_eq!(err(&e.req(&mut c, X1, r, T0)), ErrorCode::InvalidVault);
    let mut zero_share = *en.guardians[0].share.to_bytes();
    zero_share[1..].fill(0);
    let r = Request::VaultStore {
        credential: owner.clone(),
        share: zero_share,
        success_verifier: en.guardians[0].success_verifier,
        record: en.record.encode(),
    };
    assert_eq!(err(&e.req(&mut c, X1, r, T0)), ErrorCode::InvalidVault);
    assert_eq!(ready(e.store.vault(&acct(ALICE))).unwrap(), None);
    // Guardian 2's material stores.
    assert_eq!(
        e.req(&mut c, X1, store_req(&owner, &en, 1), T0),
        Response::VaultStored
    );
    let Response::Vault { index, .. } = e.req(
        &mut c,
        X1,
        Request::VaultFetch {
            credential: owner.clone(),
        },
        T0,
    ) else {
        panic!()
    };
    assert_eq!(index, 2);
    // Five requests so far; the sixth passes, the seventh is rate-limited.
    let fetch = Request::VaultFetch {
        credential: owner.clone(),
    };
    assert!(matches!(
        e.req(&mut c, X1, fetch.clone(), T0),
        Response::Vault { .. }
    ));
    match e.req(&mut c, X1, fetch, T0) {
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after,
            ..
        } => assert!(retry_after > 0),
        other => panic!("{other:?}"),
    }
}
