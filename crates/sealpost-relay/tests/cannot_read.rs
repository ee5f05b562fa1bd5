//! "It cannot read": real end-to-end sessions (sealpost-session) through a real relay; the
//! plaintexts arrive decrypted at the other device, and no plaintext appears in the relay's
//! TRACE-level logs or in any file of its data directory. Also no full phone number and no
//! key in the logs. The two-step PIN flow at the relay (registration lock, a 1-of-1 vault,
//! a locked registration, an evaluation and a confirmation) leaves no PIN, master secret or
//! token in any file, and none of its values (also verifiers, shares, group elements) in the
//! logs. A separate test binary so that the global log capture sees only this.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Device, TestRelay};
use sealpost_pin::normalize::normalize;
use sealpost_pin::oprf::{EvaluatedElement, Proof};
use sealpost_pin::stretch::Argon2Params;
use sealpost_pin::threshold::GuardianResponse;
use sealpost_pin::vault::{MasterSecret, Recovery, enroll};
use sealpost_session::{
    SessionAddresses, SessionConfig, SessionMessage, VerifiedBundle, initiate, respond,
};
use sealpost_wire::relay::{Delivery, OutgoingEnvelope, Push, Request, Response};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

async fn send(from: &Device, to: &Device, envelope: Vec<u8>, n: u8) {
    let r = from
        .client
        .request(&Request::Send {
            message_id: [n; 16],
            sender_seq: 0,
            recipient: to.address.account.clone(),
            envelopes: vec![OutgoingEnvelope {
                device_id: to.address.device.0,
                envelope,
            }],
        })
        .await;
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
}

async fn next_delivery(d: &mut Device) -> Delivery {
    loop {
        match d.client.next_push().await {
            Push::Deliver(x) => {
                d.client
                    .request(&Request::Ack {
                        server_ids: vec![x.server_id],
                    })
                    .await;
                return x;
            }
            Push::QueueDrained | Push::PreKeysLow { .. } | Push::Provisioning { .. } => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_never_sees_plaintext() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let TestRelay { dir, codes, relay } = TestRelay::start().await;
    let mut alice = Device::register(&relay, &codes, "+15550001234").await;
    let mut bob = Device::register(&relay, &codes, "+15550005678").await;
    bob.upload(5, 2).await;

    let r = alice
        .client
        .request(&Request::FetchBundles {
            account: bob.address.account.clone(),
        })
        .await;
    let Response::Bundles(bundles) = r else {
        panic!("{r:?}")
    };
    let bundle = VerifiedBundle::verify(&bundles[0]).unwrap();
    let mut rng = rand::rng();
    let to_bob = SessionAddresses::new(alice.address.clone(), bob.address.clone());
    let mut a = initiate(
        &mut rng,
        &alice.id,
        &to_bob,
        &bundle,
        SessionConfig::default(),
    )
    .unwrap();

    let mut canaries = Vec::new();
    let mut envelopes = Vec::new();
    for n in 0..4u8 {
        let text = format!("PLAINTEXT-CANARY-{n}");
        let env = a.encrypt(text.as_bytes()).unwrap().encode();
        envelopes.push(env.clone());
        send(&alice, &bob, env, n).await;
        canaries.push(text);
    }
    // Bob decrypts all four (the first is a prekey message that creates his session).
    let first = next_delivery(&mut bob).await;
    let SessionMessage::PreKey(pkm) = SessionMessage::decode(&first.envelope).unwrap() else {
        panic!("first message is a prekey message")
    };
    // The relay-claimed sender is the sender Bob expects.
    let from_alice = SessionAddresses::new(bob.address.clone(), first.sender.clone());
    let (mut b, text) = respond(
        &mut rng,
        &bob.id,
        &from_alice,
        &mut bob.keys,
        &pkm,
        SessionConfig::default(),
    )
    .unwrap();
    let mut received = vec![String::from_utf8(text).unwrap()];
    for _ in 1..4 {
        let d = next_delivery(&mut bob).await;
        received.push(String::from_utf8(b.decrypt_bytes(&mut rng, &d.envelope).unwrap()).unwrap());
    }
    assert_eq!(received, canaries, "the canaries arrived, decrypted");
    // And back.
    for n in 0..2u8 {
        let text = format!("PLAINTEXT-CANARY-REPLY-{n}");
        let env = b.encrypt(text.as_bytes()).unwrap().encode();
        envelopes.push(env.clone());
        send(&bob, &alice, env, 100 + n).await;
        let d = next_delivery(&mut alice).await;
        assert_eq!(
            a.decrypt_bytes(&mut rng, &d.envelope).unwrap(),
            text.as_bytes()
        );
        canaries.push(text);
    }
    // One more left queued (undelivered) so it is certainly in the database.
    let text = "PLAINTEXT-CANARY-QUEUED".to_owned();
    bob.client.conn.close(0u32.into(), b"offline");
    let env = a.encrypt(text.as_bytes()).unwrap().encode();
    envelopes.push(env.clone());
    send(&alice, &bob, env.clone(), 200).await;
    canaries.push(text);

    // Two-step PIN: registration lock and a 1-of-1 vault at this relay, a recovery and a
    // confirmation. Allowed in the database: the reglock verifier, the share, the success
    // verifier and the record. Never anywhere (database or logs): the PIN, the master secret,
    // the reglock token, the success token; never in the logs: any of it.
    let pin_text = "PINCANARY7391";
    let pin = normalize(pin_text).unwrap();
    let ms = MasterSecret::generate(&mut rng);
    let token = *ms.reglock_token().as_bytes();
    assert_eq!(
        alice
            .client
            .request(&Request::SetRegistrationLock { token })
            .await,
        Response::RegistrationLockSet
    );
    let Response::Credential(owner) = alice.client.request(&Request::GetGuardianCredential).await
    else {
        panic!()
    };
    let en = enroll(
        &pin,
        alice.address.account.as_str(),
        &ms,
        1,
        1,
        &Argon2Params::testing(),
        &mut rng,
    )
    .unwrap();
    let g = &en.guardians[0];
    let share = *g.share.to_bytes();
    assert_eq!(
        alice
            .client
            .request(&Request::VaultStore {
                credential: owner.clone(),
                share,
                success_verifier: g.success_verifier,
                record: en.record.encode(),
            })
            .await,
        Response::VaultStored
    );
    // A locked registration attempt with a wrong token (logged as refused, token unseen).
    let wrong_token = [0x3C; 32];
    {
        let phone = common::Client::for_relay(&relay).await;
        phone
            .request(&Request::RequestCode {
                account: alice.address.account.clone(),
            })
            .await;
        let id = sealpost_session::IdentityKeyPair::generate(&mut rng);
        let identity = id.public().to_wire();
        let signature = id
            .sign(&sealpost_wire::relay::register_signed_bytes(
                &phone.exporter,
                &alice.address.account,
                &identity,
            ))
            .to_bytes();
        let r = phone
            .request(&Request::Register {
                account: alice.address.account.clone(),
                code: codes.last(&alice.address.account),
                identity,
                signature,
                reglock: Some(wrong_token),
            })
            .await;
        assert!(matches!(r, Response::RegistrationLocked { .. }), "{r:?}");
    }
    let (rec, blinded) = Recovery::start(
        &pin,
        alice.address.account.as_str(),
        en.record.clone(),
        &mut rng,
    )
    .unwrap();
    let vault_id = *en.record.vault_id();
    let Response::VaultEvaluated {
        index,
        evaluated,
        proof,
        ..
    } = alice
        .client
        .request(&Request::VaultEvaluate {
            credential: owner.clone(),
            vault_id,
            blinded: blinded.to_bytes(),
        })
        .await
    else {
        panic!()
    };
    let recovered = rec
        .finish(&[GuardianResponse {
            index,
            evaluated: EvaluatedElement::from_slice(&evaluated).unwrap(),
            proof: Proof::from_slice(&proof).unwrap(),
        }])
        .unwrap();
    let success = *recovered.token_for(1).unwrap().as_bytes();
    assert!(matches!(
        alice
            .client
            .request(&Request::VaultConfirm {
                credential: owner,
                vault_id,
                token: success,
            })
            .await,
        Response::VaultConfirmed { .. }
    ));
    let never_stored: Vec<(&str, Vec<u8>)> = vec![
        ("PIN", pin_text.as_bytes().to_vec()),
        ("master secret", ms.to_bytes().to_vec()),
        ("reglock token", token.to_vec()),
        ("wrong reglock token", wrong_token.to_vec()),
        ("success token", success.to_vec()),
    ];
    let verifier = ms.reglock_token().verifier();
    let mut never_logged = never_stored.clone();
    never_logged.extend([
        ("reglock verifier", verifier.to_vec()),
        ("share", share.to_vec()),
        ("share scalar", share[1..].to_vec()),
        ("success verifier", g.success_verifier.to_vec()),
        ("blinded element", blinded.to_bytes().to_vec()),
        ("evaluated element", evaluated.to_vec()),
        ("proof", proof.to_vec()),
    ]);
    let pin_files = |when: &str| {
        let all = files(dir.path());
        // Sanity: the verifier the relay is allowed to keep is there.
        assert!(
            all.iter().any(|(_, b)| contains(b, &verifier)),
            "{when}: reglock verifier should be stored"
        );
        for (path, bytes) in &all {
            for (what, secret) in &never_stored {
                assert!(!contains(bytes, secret), "{when}: {what} found in {path}");
            }
        }
    };
    pin_files("running");

    let check_files = |when: &str| {
        let all = files(dir.path());
        assert!(all.iter().any(|(p, _)| p.ends_with("relay.db")));
        // The queued envelope is stored (as ciphertext) somewhere in the database files...
        assert!(
            all.iter().any(|(_, bytes)| contains(bytes, &env)),
            "{when}: the queued ciphertext should be in the database files"
        );
        // ...but no plaintext is, anywhere.
        for (path, bytes) in &all {
            for c in &canaries {
                assert!(
                    !contains(bytes, c.as_bytes()),
                    "{when}: {c} found in {path}"
                );
            }
        }
    };
    check_files("running");
    relay.shutdown().await;
    check_files("after shutdown");
    pin_files("after shutdown");

    let logs = logs.0.lock().unwrap().clone();
    assert!(
        contains(&logs, b"device authenticated"),
        "the log capture works"
    );
    for c in &canaries {
        assert!(!contains(&logs, c.as_bytes()), "{c} found in the logs");
    }
    for number in ["+15550001234", "+15550005678", "15550001234", "15550005678"] {
        assert!(!contains(&logs, number.as_bytes()), "{number} in the logs");
    }
    // No key or envelope bytes, in hex or as a Debug byte list.
    let bob_identity = bob.id.public().to_wire();
    let mut needles = vec![
        hex::encode(bob_identity.signing),
        hex::encode(bob_identity.dh),
        hex::encode(alice.id.public().to_wire().signing),
    ];
    for e in &envelopes {
        needles.push(hex::encode(&e[10..26]));
        let dbg = format!("{:?}", &e[10..18]);
        needles.push(dbg.trim_matches(['[', ']']).to_owned());
    }
    for n in needles {
        assert!(!contains(&logs, n.as_bytes()), "{n} in the logs");
    }
    assert!(
        contains(&logs, b"registration refused: registration lock"),
        "the PIN flow was logged"
    );
    for (what, secret) in &never_logged {
        assert!(!contains(&logs, secret), "{what} (raw) in the logs");
        assert!(
            !contains(&logs, hex::encode(secret).as_bytes()),
            "{what} (hex) in the logs"
        );
        assert!(
            !contains(&logs, hex::encode_upper(secret).as_bytes()),
            "{what} (HEX) in the logs"
        );
        let dbg = format!("{:?}", &secret[..8]);
        assert!(
            !contains(&logs, dbg.trim_matches(['[', ']']).as_bytes()),
            "{what} (Debug) in the logs"
        );
    }
}
