//! The registration lock and the guardian role over real QUIC on 127.0.0.1 with real SQLite
//! files (spec/pin.md sections 7–10): a whole 2-of-3 recovery across three relays that trust
//! one issuer, concurrent evaluations against the attempt limit, and counts that survive a
//! restart of the relay on the same data directory.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Codes, Device, acct, config};
use sealpost_pin::normalize::normalize;
use sealpost_pin::oprf::{EvaluatedElement, Proof};
use sealpost_pin::stretch::Argon2Params;
use sealpost_pin::threshold::GuardianResponse;
use sealpost_pin::vault::{Enrollment, MasterSecret, Recovery, VaultRecord, enroll};
use sealpost_relay::{GuardianConfig, Limits, Relay, RelayHandle};
use sealpost_session::IdentityKeyPair;
use sealpost_wire::relay::{
    CredentialScope, ErrorCode, GuardianCredential, Request, Response, register_signed_bytes,
};
use std::sync::Arc;

const ALICE: &str = "+15550007777";
const PIN: &str = "482916";

fn err(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn limits() -> Limits {
    Limits {
        vault_requests_per_account: 1000,
        ..Limits::default()
    }
}

async fn start(dir: &std::path::Path, codes: &Arc<Codes>, guardian: GuardianConfig) -> RelayHandle {
    let mut c = config(dir, codes).with_guardian(guardian);
    c.limits = limits();
    Relay::start(c).await.unwrap()
}

async fn owner_credential(d: &Device) -> GuardianCredential {
    match d.client.request(&Request::GetGuardianCredential).await {
        Response::Credential(c) => c,
        other => panic!("{other:?}"),
    }
}

fn enrol(t: usize, n: usize) -> (MasterSecret, Enrollment) {
    let mut rng = rand::rng();
    let ms = MasterSecret::generate(&mut rng);
    let pin = normalize(PIN).unwrap();
    let en = enroll(&pin, ALICE, &ms, t, n, &Argon2Params::testing(), &mut rng).unwrap();
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

async fn register(
    client: &Client,
    id: &IdentityKeyPair,
    code: [u8; 6],
    reglock: Option<[u8; 32]>,
) -> Response {
    let a = acct(ALICE);
    let identity = id.public().to_wire();
    let signature = id
        .sign(&register_signed_bytes(&client.exporter, &a, &identity))
        .to_bytes();
    client
        .request(&Request::Register {
            account: a,
            code,
            identity,
            signature,
            reglock,
        })
        .await
}

/// Three relays on 127.0.0.1: A is the account's home relay and issuer; B and C are
/// guardians that trust A's issuer key. A 2-of-3 vault, a locked re-registration at A, a
/// recovery through B and C with A's Recovery credential, confirmation, and the final
/// registration with the recovered token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_recovery_across_three_relays() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let codes = Arc::new(Codes::default());
    let a = start(dirs[0].path(), &codes, GuardianConfig::default()).await;
    let trusting = GuardianConfig {
        trusted_issuers: vec![hex::encode(a.issuer_public())],
        ..GuardianConfig::default()
    };
    let b = start(dirs[1].path(), &codes, trusting.clone()).await;
    let c = start(dirs[2].path(), &codes, trusting).await;
    assert_ne!(a.issuer_public(), b.issuer_public());
    let clients = [
        Client::for_relay(&a).await,
        Client::for_relay(&b).await,
        Client::for_relay(&c).await,
    ];

    let owner_device = Device::register(&a, &codes, ALICE).await;
    let owner = owner_credential(&owner_device).await;
    assert_eq!(owner.scope, CredentialScope::Owner);
    assert_eq!(owner.issuer, a.issuer_public());
    let (ms, en) = enrol(2, 3);
    for (i, client) in clients.iter().enumerate() {
        assert_eq!(
            client.request(&store_req(&owner, &en, i)).await,
            Response::VaultStored,
            "guardian {i}"
        );
    }
    // A credential re-labelled with another issuer does not verify.
    let relabelled = GuardianCredential {
        issuer: b.issuer_public(),
        ..owner.clone()
    };
    assert_eq!(
        err(&clients[1]
            .request(&Request::VaultFetch {
                credential: relabelled
            })
            .await),
        ErrorCode::CredentialInvalid
    );
    // B's own (valid) credentials are not accepted by C, which trusts only A.
    let at_b = Device::register(&b, &codes, "+15550008888").await;
    let from_b = owner_credential(&at_b).await;
    assert_eq!(from_b.issuer, b.issuer_public());
    assert_eq!(
        err(&clients[2]
            .request(&Request::VaultFetch { credential: from_b })
            .await),
        ErrorCode::CredentialInvalid
    );
    drop(at_b);
    assert_eq!(
        owner_device
            .client
            .request(&Request::SetRegistrationLock {
                token: *ms.reglock_token().as_bytes()
            })
            .await,
        Response::RegistrationLockSet
    );

    // A new phone: the right code, but the account is locked.
    let phone = Client::for_relay(&a).await;
    phone
        .request(&Request::RequestCode {
            account: acct(ALICE),
        })
        .await;
    let code = codes.last(&acct(ALICE));
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let Response::RegistrationLocked {
        lapses_in,
        attempts_remaining,
        credential,
    } = register(&phone, &id, code, None).await
    else {
        panic!("expected RegistrationLocked")
    };
    assert!(lapses_in > 604_700 && lapses_in <= 604_800, "{lapses_in}");
    assert_eq!(attempts_remaining, 10);
    assert_eq!(credential.scope, CredentialScope::Recovery);

    // Recovery through B and C only (A could be down).
    let mut records = Vec::new();
    for client in &clients[1..] {
        match client
            .request(&Request::VaultFetch {
                credential: credential.clone(),
            })
            .await
        {
            Response::Vault {
                index,
                attempts_remaining,
                record,
            } => {
                assert_eq!(attempts_remaining, 10);
                records.push((index, record));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(records[0].1, records[1].1);
    assert_eq!((records[0].0, records[1].0), (2, 3));
    let record = VaultRecord::decode(&records[0].1).unwrap();
    let vault_id = *record.vault_id();
    let pin = normalize(PIN).unwrap();
    let (rec, blinded) = Recovery::start(&pin, ALICE, record, &mut rand::rng()).unwrap();
    let mut answers = Vec::new();
    for client in &clients[1..] {
        match client
            .request(&Request::VaultEvaluate {
                credential: credential.clone(),
                vault_id,
                blinded: blinded.to_bytes(),
            })
            .await
        {
            Response::VaultEvaluated {
                index,
                evaluated,
                proof,
                attempts_remaining,
            } => {
                assert_eq!(attempts_remaining, 9);
                answers.push(GuardianResponse {
                    index,
                    evaluated: EvaluatedElement::from_slice(&evaluated).unwrap(),
                    proof: Proof::from_slice(&proof).unwrap(),
                });
            }
            other => panic!("{other:?}"),
        }
    }
    let recovered = rec.finish(&answers).unwrap();
    assert!(recovered.master.ct_eq(&ms));
    for (client, index) in clients[1..].iter().zip([2u8, 3]) {
        assert_eq!(
            client
                .request(&Request::VaultConfirm {
                    credential: credential.clone(),
                    vault_id,
                    token: *recovered.token_for(index).unwrap().as_bytes(),
                })
                .await,
            Response::VaultConfirmed {
                attempts_remaining: 10
            }
        );
    }
    // The same code, now with the recovered token, registers.
    assert_eq!(
        register(
            &phone,
            &id,
            code,
            Some(*recovered.master.reglock_token().as_bytes())
        )
        .await,
        Response::Registered { device_id: 2 }
    );
    for r in [a, b, c] {
        r.shutdown().await;
    }
}

/// Forty evaluations at once on one vault with `max_attempts = 10` (spread over four
/// connections): exactly the remaining permitted ones are answered, the vault is then gone,
/// and the count had survived a restart of the relay on the same data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_evaluations_and_restart_keep_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start(dir.path(), &codes, GuardianConfig::default()).await;
    let issuer = relay.issuer_public();
    let d = Device::register(&relay, &codes, ALICE).await;
    let owner = owner_credential(&d).await;
    let (_, en) = enrol(1, 1);
    assert_eq!(
        d.client.request(&store_req(&owner, &en, 0)).await,
        Response::VaultStored
    );
    let vault_id = *en.record.vault_id();
    let wrong = normalize("000000").unwrap();
    let (_, blinded) = Recovery::start(&wrong, ALICE, en.record.clone(), &mut rand::rng()).unwrap();
    let eval = Request::VaultEvaluate {
        credential: owner.clone(),
        vault_id,
        blinded: blinded.to_bytes(),
    };
    for left in [9u16, 8, 7] {
        assert!(matches!(
            d.client.request(&eval).await,
            Response::VaultEvaluated { attempts_remaining, .. } if attempts_remaining == left
        ));
    }
    drop(d);
    relay.shutdown().await;

    // Restart on the same directory: same issuer key, same count.
    let relay = start(dir.path(), &codes, GuardianConfig::default()).await;
    assert_eq!(relay.issuer_public(), issuer);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("issuer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let clients = [
        Client::for_relay(&relay).await,
        Client::for_relay(&relay).await,
        Client::for_relay(&relay).await,
        Client::for_relay(&relay).await,
    ];
    match clients[0]
        .request(&Request::VaultFetch {
            credential: owner.clone(),
        })
        .await
    {
        Response::Vault {
            attempts_remaining, ..
        } => assert_eq!(attempts_remaining, 7),
        other => panic!("{other:?}"),
    }
    let clients: Vec<Arc<Client>> = clients.into_iter().map(Arc::new).collect();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let client = Arc::clone(&clients[i % 4]);
            let eval = eval.clone();
            tokio::spawn(async move { client.request(&eval).await })
        })
        .collect();
    let mut remaining = Vec::new();
    let mut not_found = 0;
    for t in tasks {
        match t.await.unwrap() {
            Response::VaultEvaluated {
                attempts_remaining, ..
            } => remaining.push(attempts_remaining),
            r if err(&r) == ErrorCode::VaultNotFound => not_found += 1,
            other => panic!("{other:?}"),
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(not_found, 33);
    assert_eq!(
        err(&clients[0]
            .request(&Request::VaultFetch { credential: owner })
            .await),
        ErrorCode::VaultNotFound
    );
    drop(clients);
    relay.shutdown().await;
}

/// Forty wrong registration-lock tokens at once over QUIC: exactly ten are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_tokens_never_exceed_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut c = config(dir.path(), &codes);
    c.limits = Limits {
        code_requests_per_account: 100,
        code_requests_per_connection: 100,
        ..limits()
    };
    let relay = Relay::start(c).await.unwrap();
    let d = Device::register(&relay, &codes, ALICE).await;
    d.client
        .request(&Request::SetRegistrationLock { token: [1; 32] })
        .await;
    let phones: Vec<Arc<Client>> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(Arc::new(Client::for_relay(&relay).await));
        }
        v
    };
    phones[0]
        .request(&Request::RequestCode {
            account: acct(ALICE),
        })
        .await;
    let code = codes.last(&acct(ALICE));
    let tasks: Vec<_> = (0..40u8)
        .map(|i| {
            let phone = Arc::clone(&phones[usize::from(i) % 4]);
            tokio::spawn(async move {
                let id = IdentityKeyPair::generate(&mut rand::rng());
                register(&phone, &id, code, Some([i + 2; 32])).await
            })
        })
        .collect();
    let mut remaining = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Response::RegistrationLocked {
                attempts_remaining, ..
            } => remaining.push(attempts_remaining),
            other => panic!("{other:?}"),
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining.iter().filter(|r| **r == 0).count(), 31);
    assert_eq!(&remaining[31..], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The right token no longer helps; the owner's device is still registered.
    let id = IdentityKeyPair::generate(&mut rand::rng());
    assert!(matches!(
        register(&phones[0], &id, code, Some([1; 32])).await,
        Response::RegistrationLocked {
            attempts_remaining: 0,
            ..
        }
    ));
    drop(phones);
    drop(d);
    relay.shutdown().await;
}
