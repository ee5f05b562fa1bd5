//! The relay's public-key pin (spec/relay.md section 1.1) as the binary prints it: at start,
//! and with `--print-pin` for a configured certificate without starting.
#![cfg(feature = "server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rcgen::PublicKeyData as _;
use sealpost_crypto::spki::SpkiPin;
use sealpost_relay::{Relay, RelayConfig};
use std::io::BufRead as _;
use std::process::{Command, Stdio};

const PIN_LINE: &str = "public-key pin (clients pin this): ";

fn relay_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sealpost-relay"));
    c.env("RUST_LOG", "warn").stderr(Stdio::null());
    c
}

fn print_pin(args: &[&std::ffi::OsStr]) -> String {
    let out = relay_bin().arg("--print-pin").args(args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `--print-pin` prints the pin of an operator certificate (the key's SPKI hash, the same
/// for a renewed certificate) and exits without starting a relay.
#[test]
fn print_pin_of_operator_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let expected = SpkiPin::of_spki_der(&key.subject_public_key_info());
    for (i, name) in ["a.example", "b.example"].into_iter().enumerate() {
        let cert = rcgen::CertificateParams::new(vec![name.into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join(format!("cert{i}.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let printed = print_pin(&[
            "--cert".as_ref(),
            cert_path.as_os_str(),
            "--key".as_ref(),
            key_path.as_os_str(),
            "--data-dir".as_ref(),
            dir.path().join("data").as_os_str(),
        ]);
        assert_eq!(printed, format!("{expected}\n"));
    }
    // Nothing was started or created in the data directory.
    assert!(!dir.path().join("data").exists());
    // A file that holds no certificate is an error, not a pin.
    let out = relay_bin()
        .args(["--print-pin", "--cert"])
        .arg(&key_path)
        .arg("--key")
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

/// Without an operator certificate, `--print-pin` prints the pin of the data directory's
/// self-signed certificate, which the relay then serves, and the running binary prints the
/// same pin as its last start-up line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_pins_are_the_served_key() {
    let dir = tempfile::tempdir().unwrap();
    let printed = print_pin(&["--data-dir".as_ref(), dir.path().as_os_str()]);
    let pin: SpkiPin = printed.trim_end().parse().unwrap();
    let config = RelayConfig {
        dev_log_codes: true,
        ..RelayConfig::for_tests(dir.path())
    };
    let relay = Relay::start(config).await.unwrap();
    assert_eq!(relay.spki_pin(), pin);
    relay.shutdown().await;

    let mut child = relay_bin()
        .args(["--dev-log-codes", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            .find_map(|l| l.strip_prefix(PIN_LINE).map(str::to_owned))
    })
    .await
    .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(line.as_deref(), Some(printed.trim_end()));
}
