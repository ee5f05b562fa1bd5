//! Two-step verification end to end through real relays on 127.0.0.1 (spec/pin.md): the
//! registration lock, recovery with the PIN through 1-of-1 and 2-of-3 guardians, wrong PINs
//! counted across a relay restart, the lockout that deletes the vault, a guardian answering
//! garbage, local reminders, disabling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    Client, ClientConfig, ClientError, Guardian, Guardians, PinArgon2Params, PinCheck, Store,
};
use sealpost_relay::{GuardianConfig, Limits, RelayHandle};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PIN: &str = "482915";

fn limits() -> Limits {
    Limits {
        vault_requests_per_account: 1000,
        ..bulk_limits()
    }
}

async fn start_guardian(
    dir: &Path,
    listen: SocketAddr,
    codes: &Arc<Codes>,
    guardian: GuardianConfig,
) -> RelayHandle {
    start_relay_with(dir, listen, codes, limits(), guardian).await
}

fn pin_config(relay: &RelayHandle) -> ClientConfig {
    client_config(relay.local_addr(), relay.spki_pin())
        .with_pin_params(PinArgon2Params::testing())
        .with_request_timeout(Duration::from_secs(3))
}

async fn code(config: &ClientConfig, codes: &Codes, phone: &str) -> String {
    Client::request_code(config, &acct(phone)).await.unwrap();
    codes.take(phone)
}

async fn with_pin(
    config: &ClientConfig,
    codes: &Codes,
    phone: &str,
    store: Store,
    pin: &str,
) -> Result<Client, ClientError> {
    let code = code(config, codes, phone).await;
    Client::register_with_pin(store, config.clone(), acct(phone), &code, pin)
        .await
        .map(|(c, _events)| c)
}

fn wrong_pin(r: Result<Client, ClientError>) -> u16 {
    match r {
        Err(ClientError::WrongPin { attempts_remaining }) => attempts_remaining,
        Err(e) => panic!("expected WrongPin, got {e}"),
        Ok(_) => panic!("a wrong PIN registered"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_one_lock_recovery_reminders_and_disable() {
    const PHONE: &str = "+15550004001";
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_guardian(
        &dir.path().join("relay"),
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        GuardianConfig::default(),
    )
    .await;
    let config = pin_config(&relay);
    let (phone, _rx) = register(&config, &codes, PHONE, open_store(dir.path(), "a")).await;
    assert!(!phone.pin_status().await.unwrap().enabled);
    assert!(matches!(
        phone.set_pin("12345").await,
        Err(ClientError::InvalidPin(_))
    ));
    assert!(matches!(
        phone.check_pin(PIN).await,
        Err(ClientError::PinNotSet)
    ));
    // Full-width digits normalise to the ASCII PIN (spec/pin.md section 1).
    phone.set_pin("４８２９１５").await.unwrap();
    let status = phone.pin_status().await.unwrap();
    assert!(status.enabled && !status.reminder_due);
    let backup = phone.backup_key().await.unwrap().unwrap();

    // Reminders: local checks, rate-limited after three wrong answers in a row.
    assert_eq!(phone.check_pin(PIN).await.unwrap(), PinCheck::Correct);
    for _ in 0..3 {
        assert_eq!(phone.check_pin("000000").await.unwrap(), PinCheck::Wrong);
    }
    match phone.check_pin(PIN).await.unwrap() {
        PinCheck::RateLimited { retry_in } => {
            assert!(retry_in > Duration::ZERO && retry_in <= Duration::from_secs(30));
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    phone.shutdown().await;

    // A new phone with the SMS code alone: refused, with the lapse time.
    let c = code(&config, &codes, PHONE).await;
    match Client::register(open_store(dir.path(), "b"), config.clone(), acct(PHONE), &c).await {
        Err(ClientError::RegistrationLocked(lock)) => {
            assert!(lock.lapses_in > Duration::from_secs(6 * 86_400));
            assert!(lock.lapses_in <= Duration::from_secs(7 * 86_400));
            assert_eq!(lock.attempts_remaining, 10);
        }
        Err(e) => panic!("expected the registration lock, got {e}"),
        Ok(_) => panic!("registered without the PIN"),
    }
    // A wrong PIN counts; the right one recovers the same account key.
    let r = with_pin(
        &config,
        &codes,
        PHONE,
        open_store(dir.path(), "b"),
        "111111",
    )
    .await;
    assert_eq!(wrong_pin(r), 9);
    let phone2 = with_pin(&config, &codes, PHONE, open_store(dir.path(), "b"), PIN)
        .await
        .unwrap();
    assert_eq!(*phone2.backup_key().await.unwrap().unwrap(), *backup);
    assert!(phone2.pin_status().await.unwrap().enabled);
    assert_eq!(phone2.check_pin(PIN).await.unwrap(), PinCheck::Correct);
    // The success proof reset the count: the next wrong PIN leaves 9 again.
    let r = with_pin(
        &config,
        &codes,
        PHONE,
        open_store(dir.path(), "c"),
        "222222",
    )
    .await;
    assert_eq!(wrong_pin(r), 9);

    // Disabling removes the lock: the code alone registers again.
    phone2.disable_pin().await.unwrap();
    assert!(!phone2.pin_status().await.unwrap().enabled);
    phone2.shutdown().await;
    let c = code(&config, &codes, PHONE).await;
    let (phone3, _rx) =
        Client::register(open_store(dir.path(), "d"), config.clone(), acct(PHONE), &c)
            .await
            .unwrap();
    assert_eq!(phone3.backup_key().await.unwrap(), None);
    phone3.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_survive_a_restart_and_the_limit_deletes_the_vault() {
    const PHONE: &str = "+15550004002";
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let codes = Arc::new(Codes::default());
    let guardian = GuardianConfig {
        max_attempts: 3,
        ..GuardianConfig::default()
    };
    let relay = start_guardian(
        &relay_dir,
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        guardian.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let config = pin_config(&relay);
    let (phone, _rx) = register(&config, &codes, PHONE, open_store(dir.path(), "a")).await;
    phone.set_pin(PIN).await.unwrap();
    phone.shutdown().await;

    let r = with_pin(
        &config,
        &codes,
        PHONE,
        open_store(dir.path(), "b"),
        "999999",
    )
    .await;
    assert_eq!(wrong_pin(r), 2);
    relay.shutdown().await;
    let relay = start_guardian(&relay_dir, addr, &codes, guardian).await;
    let r = with_pin(
        &config,
        &codes,
        PHONE,
        open_store(dir.path(), "b"),
        "999998",
    )
    .await;
    assert_eq!(wrong_pin(r), 1, "the restart must keep the count");
    let r = with_pin(
        &config,
        &codes,
        PHONE,
        open_store(dir.path(), "b"),
        "999997",
    )
    .await;
    assert_eq!(wrong_pin(r), 0);
    // The share is gone: even the right PIN cannot recover the vault.
    match with_pin(&config, &codes, PHONE, open_store(dir.path(), "b"), PIN).await {
        Err(ClientError::VaultUnavailable(_)) => {}
        Err(e) => panic!("expected VaultUnavailable, got {e}"),
        Ok(_) => panic!("the vault survived the limit"),
    }
    relay.shutdown().await;
    let db = rusqlite::Connection::open(relay_dir.join("relay.db")).unwrap();
    let vaults: i64 = db
        .query_row("SELECT COUNT(*) FROM vaults", [], |r| r.get(0))
        .unwrap();
    assert_eq!(vaults, 0, "the guardian must delete the share at the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_guardians_detect_garbage_and_need_two() {
    const PHONE: &str = "+15550004003";
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let any = "127.0.0.1:0".parse().unwrap();
    let home = start_guardian(
        &dir.path().join("g1"),
        any,
        &codes,
        GuardianConfig::default(),
    )
    .await;
    let others = GuardianConfig {
        trusted_issuers: vec![hex::encode(home.issuer_public())],
        ..GuardianConfig::default()
    };
    let g2_dir = dir.path().join("g2");
    let g2 = start_guardian(&g2_dir, any, &codes, others.clone()).await;
    let g3 = start_guardian(&dir.path().join("g3"), any, &codes, others.clone()).await;
    let guardians = Guardians::new(
        [&home, &g2, &g3]
            .iter()
            .map(|r| Guardian::new(r.local_addr(), r.spki_pin()))
            .collect(),
        2,
    )
    .unwrap();
    let config = pin_config(&home).with_guardians(guardians);
    let (phone, _rx) = register(&config, &codes, PHONE, open_store(dir.path(), "a")).await;
    phone.set_pin(PIN).await.unwrap();
    let backup = phone.backup_key().await.unwrap().unwrap();
    phone.shutdown().await;

    // Guardian 2's share is replaced by another key (a corrupted or lying guardian): its
    // answers carry valid proofs for the wrong key, which the client rejects; guardians 1
    // and 3 recover.
    let g2_addr = g2.local_addr();
    g2.shutdown().await;
    {
        let db = rusqlite::Connection::open(g2_dir.join("relay.db")).unwrap();
        let mut bad = vec![2u8];
        bad.extend_from_slice(&[0x11; 31]);
        bad.push(0x01); // little-endian scalar well below the group order
        let n = db
            .execute("UPDATE vaults SET share = ?1", rusqlite::params![bad])
            .unwrap();
        assert_eq!(n, 1);
    }
    let g2 = start_guardian(&g2_dir, g2_addr, &codes, others).await;
    let phone2 = with_pin(&config, &codes, PHONE, open_store(dir.path(), "b"), PIN)
        .await
        .unwrap();
    assert_eq!(*phone2.backup_key().await.unwrap().unwrap(), *backup);
    phone2.shutdown().await;

    // Without guardian 3, only guardian 2's garbage could complete the threshold: it must be
    // rejected (a trusted garbage answer would surface as a wrong PIN instead).
    g3.shutdown().await;
    match with_pin(&config, &codes, PHONE, open_store(dir.path(), "c"), PIN).await {
        Err(ClientError::VaultUnavailable(why)) => {
            assert_eq!(
                why,
                sealpost_client::VaultUnavailable::TooFewEvaluations {
                    valid: 1,
                    needed: 2
                }
            );
        }
        Err(e) => panic!("expected VaultUnavailable, got {e}"),
        Ok(_) => panic!("recovered with a garbage guardian"),
    }

    // With two guardians down, one (t - 1) cannot recover.
    g2.shutdown().await;
    match with_pin(&config, &codes, PHONE, open_store(dir.path(), "c"), PIN).await {
        Err(ClientError::VaultUnavailable(_)) => {}
        Err(e) => panic!("expected VaultUnavailable, got {e}"),
        Ok(_) => panic!("one guardian recovered a 2-of-3 vault"),
    }
    home.shutdown().await;
}
