//! Certificate renewal and key rotation of the relay (spec/relay.md section 1.1), over real
//! QUIC on 127.0.0.1 with the real relay restarted on the same port and data directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber};
use sealpost_client::{Client, ClientError, SpkiPin, SpkiPins};
use sealpost_relay::{Relay, RelayConfig, RelayHandle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALICE: &str = "+15550007001";
const BOB: &str = "+15550007002";

/// A certificate for `key` with its own serial number and validity, written as PEM files.
fn write_cert(dir: &Path, name: &str, key: &KeyPair, serial: u64, years: (i32, i32)) -> PathBuf {
    let mut params = CertificateParams::new(vec!["sealpost-relay".into()]).unwrap();
    params.serial_number = Some(SerialNumber::from(serial));
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let cert = params.self_signed(key).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, cert.pem()).unwrap();
    path
}

fn write_key(dir: &Path, name: &str, key: &KeyPair) -> PathBuf {
    let path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&path, key.serialize_pem()).unwrap();
    path
}

fn pin_of(key: &KeyPair) -> SpkiPin {
    SpkiPin::of_spki_der(&key.subject_public_key_info())
}

/// Starts the relay on `listen` (retrying while a just-stopped relay releases the port) with
/// the operator certificate `cert` and key `key`.
async fn start(
    data_dir: &Path,
    listen: SocketAddr,
    codes: &Arc<Codes>,
    cert: &Path,
    key: &Path,
) -> RelayHandle {
    init_logs();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut config = RelayConfig::for_tests(data_dir);
        config.listen = listen;
        config.shutdown_grace_secs = 2;
        config.code_sender = Some(codes.clone());
        config.cert_path = Some(cert.to_path_buf());
        config.key_path = Some(key.to_path_buf());
        match Relay::start(config).await {
            Ok(r) => return r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("relay start failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("relay did not start: {e:#}"),
        }
    }
}

/// Alice sends `text` to Bob and Bob's app receives it (both clients reconnect on their
/// own after a relay restart).
async fn exchange(alice: &Client, bob_seen: &Collector, text: &str) {
    alice.send_text(&acct(BOB), text).await.unwrap();
    bob_seen
        .wait(text, 60, |c| c.texts().iter().any(|t| t == text))
        .await;
}

/// The relay starts with a certificate for key K1; clients pin [K1, K2]. The relay restarts
/// with a new certificate for K1 (other serial and validity), then with a certificate for
/// K2: the same client instances keep working, with no re-registration. A client pinning
/// only K1 is refused by the K2 relay with a typed error, and no request reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_key_rotation_keep_pinned_clients_working() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (k1, k2) = (
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
    );
    let k1_key = write_key(&certs, "k1", &k1);
    let k2_key = write_key(&certs, "k2", &k2);
    let k1_first = write_cert(&certs, "k1-2025", &k1, 1, (2025, 2027));
    let k1_renewed = write_cert(&certs, "k1-2026", &k1, 2, (2026, 2028));
    let k2_cert = write_cert(&certs, "k2-2026", &k2, 3, (2026, 2028));
    let codes = Arc::new(Codes::default());

    // Key K1, first certificate.
    let relay = start(
        &relay_dir,
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        &k1_first,
        &k1_key,
    )
    .await;
    let addr = relay.local_addr();
    assert_eq!(relay.spki_pin(), pin_of(&k1));
    let first_cert = relay.cert_fingerprint();
    let both = SpkiPins::new([pin_of(&k1), pin_of(&k2)]).unwrap();
    let config = client_config(addr, both);
    let (alice, a_rx) = register(&config, &codes, ALICE, open_store(dir.path(), "alice")).await;
    let (bob, b_rx) = register(&config, &codes, BOB, open_store(dir.path(), "bob")).await;
    let (alice_address, bob_address) = (alice.address().clone(), bob.address().clone());
    drop(a_rx);
    let bob_seen = Collector::default();
    bob_seen.spawn(b_rx);
    exchange(&alice, &bob_seen, "before the renewal").await;

    // Renewal: a new certificate for the same key.
    relay.shutdown().await;
    let relay = start(&relay_dir, addr, &codes, &k1_renewed, &k1_key).await;
    assert_ne!(relay.cert_fingerprint(), first_cert, "a new certificate");
    assert_eq!(relay.spki_pin(), pin_of(&k1), "for the same key");
    exchange(&alice, &bob_seen, "after the renewal").await;
    // A client pinning only K1 accepts the renewed certificate too.
    let only_k1 = client_config(addr, pin_of(&k1));
    Client::request_code(&only_k1, &acct("+15550007003"))
        .await
        .unwrap();

    // Rotation to the announced next key.
    relay.shutdown().await;
    let relay = start(&relay_dir, addr, &codes, &k2_cert, &k2_key).await;
    assert_eq!(relay.spki_pin(), pin_of(&k2));
    exchange(&alice, &bob_seen, "after the rotation").await;
    assert_eq!(alice.address(), &alice_address, "no re-registration");
    assert_eq!(bob.address(), &bob_address, "no re-registration");
    assert_eq!(
        bob_seen.texts(),
        [
            "before the renewal",
            "after the renewal",
            "after the rotation"
        ]
    );

    // A client that pins only K1 refuses the K2 relay with a typed error; nothing reached it.
    codes.0.lock().unwrap().clear();
    let err = Client::request_code(&only_k1, &acct("+15550007004"))
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::PinMismatch { pinned: 1 });
    assert!(
        codes.0.lock().unwrap().is_empty(),
        "no request reached the relay"
    );

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
}
