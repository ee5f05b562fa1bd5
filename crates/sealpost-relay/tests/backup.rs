//! Backup and restore (spec/operations.md, "Backup and restore") over real QUIC on 127.0.0.1
//! with real SQLite files: a backup of a running relay, restored into a new data directory,
//! delivers the message that was queued for an offline device; a guardian restored from an
//! older copy refuses the vaults whose attempt counters went backwards until their owner
//! stores them again, and an honest restart refuses nothing.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Client, Codes, Device, config};
use sealpost_pin::normalize::normalize;
use sealpost_pin::stretch::Argon2Params;
use sealpost_pin::vault::{Enrollment, MasterSecret, Recovery, enroll};
use sealpost_relay::backup::{BackupError, MANIFEST_FILE, backup, restore};
use sealpost_relay::{Limits, Relay, RelayConfig, RelayError, RelayHandle};
use sealpost_wire::DeviceAddress;
use sealpost_wire::relay::{
    ErrorCode, GuardianCredential, OutgoingEnvelope, Push, Request, Response,
};
use std::path::Path;
use std::sync::Arc;

const ALICE: &str = "+15550004444";
const BOB: &str = "+15550005555";

/// The permission bits of a file.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn run_backup(config: &RelayConfig, to: &Path) -> sealpost_relay::backup::BackupReport {
    let (config, to) = (config.clone(), to.to_path_buf());
    tokio::task::spawn_blocking(move || backup(&config, &to))
        .await
        .unwrap()
        .unwrap()
}

async fn run_restore(config: &RelayConfig, from: &Path) -> sealpost_relay::backup::RestoreReport {
    let (config, from) = (config.clone(), from.to_path_buf());
    tokio::task::spawn_blocking(move || restore(&config, &from))
        .await
        .unwrap()
        .unwrap()
}

async fn send(from: &Device, to: &DeviceAddress, envelope: &[u8], n: u8) {
    let r = from
        .client
        .request(&Request::Send {
            message_id: [n; 16],
            sender_seq: u64::from(n),
            recipient: to.account.clone(),
            envelopes: vec![OutgoingEnvelope {
                device_id: to.device.0,
                envelope: envelope.to_vec(),
            }],
        })
        .await;
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
}

/// Two devices; Bob goes offline and Alice queues a message for him; the running relay is
/// backed up; a second message is queued after the backup; the relay stops and a relay on a
/// new data directory restored from the backup, with the same pin, delivers the first
/// message to Bob, who acknowledges it. The second one, sent after the backup, is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_relay_is_restored_into_a_new_directory_and_delivers_the_queued_message() {
    let (live_dir, backup_root, new_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let codes = Arc::new(Codes::default());
    let live_config = config(live_dir.path(), &codes);
    let relay = Relay::start(live_config.clone()).await.unwrap();
    let alice = Device::register(&relay, &codes, ALICE).await;
    let bob = Device::register(&relay, &codes, BOB).await;
    let Device {
        id: bob_id,
        keys: bob_keys,
        address: bob_address,
        client: bob_client,
    } = bob;
    bob_client.close().await;
    send(&alice, &bob_address, b"queued before the backup", 1).await;

    // The backup runs while the relay serves and holds its lock.
    let to = backup_root.path().join("relay-backup");
    let report = run_backup(&live_config, &to).await;
    assert_eq!(
        report.manifest.files,
        [
            "relay.db",
            "tls/cert.pem",
            "tls/key.pem",
            "code-hmac.key",
            "issuer.key",
            "stateless-reset.key"
        ]
    );
    assert!(report.unknown.is_empty(), "{report:?}");
    assert!(to.join(MANIFEST_FILE).is_file());
    for file in &report.manifest.files {
        assert_eq!(
            mode(&to.join(file)),
            mode(&live_dir.path().join(file)),
            "{file}"
        );
    }
    assert_eq!(mode(&to.join("tls/key.pem")), 0o600);
    assert_eq!(mode(&to.join("issuer.key")), 0o600);
    // Neither the lock nor the vault ledger is copied.
    assert!(!to.join("relay.lock").exists());
    assert!(!to.join("vault-ledger").exists());
    // The relay still serves, and still holds its lock: a second relay is refused.
    send(&alice, &bob_address, b"queued after the backup", 2).await;
    let second = Relay::start(live_config.clone()).await.unwrap_err();
    assert!(
        matches!(second, RelayError::DataDirInUse { .. }),
        "{second}"
    );
    // A backup never overwrites anything.
    let again = {
        let (c, t) = (live_config.clone(), to.clone());
        tokio::task::spawn_blocking(move || backup(&c, &t))
            .await
            .unwrap()
    };
    assert!(
        matches!(again, Err(BackupError::DestinationNotEmpty { .. })),
        "{again:?}"
    );
    let (pin, issuer, fingerprint) = (
        relay.spki_pin(),
        relay.issuer_public(),
        relay.cert_fingerprint(),
    );
    alice.client.close().await;
    relay.shutdown().await;

    // Restore into a new data directory and start there.
    let new_config = config(new_dir.path(), &codes);
    let restored = run_restore(&new_config, &to).await;
    assert!(!restored.ledger_kept);
    let relay = Relay::start(new_config).await.unwrap();
    assert_eq!(relay.spki_pin(), pin);
    assert_eq!(relay.issuer_public(), issuer);
    assert_eq!(relay.cert_fingerprint(), fingerprint);
    let mut bob = Device {
        id: bob_id,
        keys: bob_keys,
        address: bob_address,
        client: Client::connect(relay.local_addr(), fingerprint).await,
    };
    let r = bob.authenticate().await;
    assert!(matches!(r, Response::Authenticated { .. }), "{r:?}");
    let delivery = loop {
        match bob.client.next_push().await {
            Push::Deliver(d) => break d,
            Push::PreKeysLow { .. } | Push::Provisioning { .. } => {}
            Push::QueueDrained => panic!("the queued message was not restored"),
        }
    };
    assert_eq!(delivery.envelope, b"queued before the backup");
    assert_eq!(delivery.message_id, [1; 16]);
    assert_eq!(
        bob.client
            .request(&Request::Ack {
                server_ids: vec![delivery.server_id]
            })
            .await,
        Response::Acked { removed: 1 }
    );
    // Then the mailbox is drained: the message sent after the backup is not in the copy.
    loop {
        match bob.client.next_push().await {
            Push::QueueDrained => break,
            Push::PreKeysLow { .. } | Push::Provisioning { .. } => {}
            Push::Deliver(d) => panic!("unexpected delivery {d:?}"),
        }
    }
    bob.client.close().await;
    relay.shutdown().await;
}

fn limits() -> Limits {
    Limits {
        vault_requests_per_account: 1000,
        ..Limits::default()
    }
}

async fn start(config: &RelayConfig) -> RelayHandle {
    let mut c = config.clone();
    c.limits = limits();
    Relay::start(c).await.unwrap()
}

async fn owner_credential(d: &Device) -> GuardianCredential {
    match d.client.request(&Request::GetGuardianCredential).await {
        Response::Credential(c) => c,
        other => panic!("{other:?}"),
    }
}

fn store_req(c: &GuardianCredential, en: &Enrollment) -> Request {
    let g = &en.guardians[0];
    Request::VaultStore {
        credential: c.clone(),
        share: *g.share.to_bytes(),
        success_verifier: g.success_verifier,
        record: en.record.encode(),
    }
}

fn error_code(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// What `VaultEvaluate` answers: the attempts remaining, or the error code.
async fn evaluate(client: &Client, eval: &Request) -> Result<u16, ErrorCode> {
    match client.request(eval).await {
        Response::VaultEvaluated {
            attempts_remaining, ..
        } => Ok(attempts_remaining),
        other => Err(error_code(&other)),
    }
}

async fn remaining(client: &Client, credential: &GuardianCredential) -> u16 {
    match client
        .request(&Request::VaultFetch {
            credential: credential.clone(),
        })
        .await
    {
        Response::Vault {
            attempts_remaining, ..
        } => attempts_remaining,
        other => panic!("{other:?}"),
    }
}

/// A 1-of-1 vault at a guardian: two wrong guesses, a backup of the running relay, five more
/// wrong guesses, then the backup is restored in place. The restored database says 8
/// attempts remain where 3 did: the guardian refuses evaluations with `VaultRolledBack` and
/// counts nothing, until the owner stores the vault again. A restart on the same directory
/// is not flagged; the same backup restored into a new directory (no ledger) is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardian_restored_from_an_older_copy_refuses_its_vaults_until_rearmed() {
    let (dir, backup_root, elsewhere) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let codes = Arc::new(Codes::default());
    let cfg = config(dir.path(), &codes);
    let relay = start(&cfg).await;
    let owner_device = Device::register(&relay, &codes, ALICE).await;
    let owner = owner_credential(&owner_device).await;
    let mut rng = rand::rng();
    let pin = normalize("482916").unwrap();
    let ms = MasterSecret::generate(&mut rng);
    let en = enroll(&pin, ALICE, &ms, 1, 1, &Argon2Params::testing(), &mut rng).unwrap();
    assert_eq!(
        owner_device.client.request(&store_req(&owner, &en)).await,
        Response::VaultStored
    );
    let wrong = normalize("000000").unwrap();
    let (_, blinded) = Recovery::start(&wrong, ALICE, en.record.clone(), &mut rng).unwrap();
    let eval = Request::VaultEvaluate {
        credential: owner.clone(),
        vault_id: *en.record.vault_id(),
        blinded: blinded.to_bytes(),
    };
    let guesser = Client::for_relay(&relay).await;
    for left in [9, 8] {
        assert_eq!(evaluate(&guesser, &eval).await, Ok(left));
    }
    let to = backup_root.path().join("b");
    let report = run_backup(&cfg, &to).await;
    assert_eq!(report.manifest.vault_writes, 3, "store and two evaluations");
    for left in [7, 6, 5, 4, 3] {
        assert_eq!(evaluate(&guesser, &eval).await, Ok(left));
    }
    guesser.close().await;
    owner_device.client.close().await;
    relay.shutdown().await;

    // Restored in place: the ledger stays, the database is behind it.
    assert!(run_restore(&cfg, &to).await.ledger_kept);
    let relay = start(&cfg).await;
    let client = Client::for_relay(&relay).await;
    assert_eq!(remaining(&client, &owner).await, 8, "the count went back");
    assert_eq!(
        evaluate(&client, &eval).await,
        Err(ErrorCode::VaultRolledBack)
    );
    assert_eq!(remaining(&client, &owner).await, 8, "nothing was counted");
    // The owner re-arms the vault by storing it again.
    assert_eq!(
        client.request(&store_req(&owner, &en)).await,
        Response::VaultStored
    );
    assert_eq!(evaluate(&client, &eval).await, Ok(9));
    client.close().await;
    relay.shutdown().await;

    // An honest restart on the same directory refuses nothing.
    let relay = start(&cfg).await;
    let client = Client::for_relay(&relay).await;
    assert_eq!(evaluate(&client, &eval).await, Ok(8));
    client.close().await;
    relay.shutdown().await;

    // The same backup restored into a new directory: no ledger vouches for it.
    let elsewhere_cfg = config(elsewhere.path(), &codes);
    assert!(!run_restore(&elsewhere_cfg, &to).await.ledger_kept);
    let relay = start(&elsewhere_cfg).await;
    let client = Client::for_relay(&relay).await;
    assert_eq!(
        evaluate(&client, &eval).await,
        Err(ErrorCode::VaultRolledBack)
    );
    client.close().await;
    relay.shutdown().await;
}

/// Restoring into the data directory of a running relay is refused; the relay serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_a_running_relay_is_refused() {
    let (dir, backup_root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let codes = Arc::new(Codes::default());
    let cfg = config(dir.path(), &codes);
    let relay = Relay::start(cfg.clone()).await.unwrap();
    let to = backup_root.path().join("b");
    run_backup(&cfg, &to).await;
    let refused = {
        let (c, t) = (cfg.clone(), to.clone());
        tokio::task::spawn_blocking(move || restore(&c, &t))
            .await
            .unwrap()
    };
    assert!(
        matches!(refused, Err(BackupError::DataDirInUse { .. })),
        "{refused:?}"
    );
    let d = Device::register(&relay, &codes, ALICE).await;
    d.client.close().await;
    relay.shutdown().await;
}
