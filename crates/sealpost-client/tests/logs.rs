//! No message content, key or phone number appears in the logs, at any level: a whole
//! conversation runs with every target at TRACE into a captured buffer, which is then
//! searched. (Its own test binary, because the subscriber is process-global.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_relay::Limits;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    const SECRET: &str = "OCELOT-TANGERINE-9917 my card ends in 4242";
    const SHOP: &str = "+15550003001";
    const CUSTOMER: &str = "+15550003002";
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &dir.path().join("relay"),
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        Limits::default(),
    )
    .await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (shop, s_rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (customer, c_rx) = register(
        &config,
        &codes,
        CUSTOMER,
        open_store(dir.path(), "customer"),
    )
    .await;
    let (s_seen, c_seen) = (Collector::default(), Collector::default());
    s_seen.spawn(s_rx);
    c_seen.spawn(c_rx);
    customer.send_text(&acct(SHOP), SECRET).await.unwrap();
    s_seen.wait("the message", 30, |c| c.count() == 1).await;
    shop.send_text(&acct(CUSTOMER), SECRET).await.unwrap();
    c_seen.wait("the reply", 30, |c| c.count() == 1).await;
    // An undecryptable and a failed send also go through the logging paths.
    shop.send_text(&acct("+15550003999"), SECRET).await.unwrap();
    s_seen
        .wait("a send failure", 30, |c| {
            c.count_events(|e| matches!(e, sealpost_client::ClientEvent::SendFailed { .. })) == 1
        })
        .await;
    let identity = customer.identity().to_bytes();
    shop.shutdown().await;

    // Two-step PIN: set it, then a new phone meets the lock, tries a wrong PIN and recovers
    // with the right one (spec/pin.md): neither PIN nor the recovered key may be logged.
    const PIN: &str = "Tangerine-730514";
    const WRONG_PIN: &str = "Ocelot-918273";
    let pin_config = config
        .clone()
        .with_pin_params(sealpost_client::PinArgon2Params::testing());
    customer.shutdown().await;
    let (customer, _rx) =
        sealpost_client::Client::open(open_store(dir.path(), "customer"), pin_config.clone())
            .await
            .unwrap();
    customer.set_pin(PIN).await.unwrap();
    let backup_key = customer.backup_key().await.unwrap().unwrap();
    customer.shutdown().await;
    for pin in [WRONG_PIN, PIN] {
        sealpost_client::Client::request_code(&pin_config, &acct(CUSTOMER))
            .await
            .unwrap();
        let code = codes.take(CUSTOMER);
        let r = sealpost_client::Client::register_with_pin(
            open_store(dir.path(), "customer-new"),
            pin_config.clone(),
            acct(CUSTOMER),
            &code,
            pin,
        )
        .await;
        match (pin, r) {
            (PIN, Ok((c, _rx))) => c.shutdown().await,
            (WRONG_PIN, Err(sealpost_client::ClientError::WrongPin { .. })) => {}
            (_, other) => panic!("unexpected outcome: {:?}", other.map(|_| ())),
        }
    }
    relay.shutdown().await;

    let logs = capture.0.lock().unwrap().clone();
    assert!(logs.len() > 1000, "logging was captured");
    let text = String::from_utf8_lossy(&logs);
    for (what, needle) in [
        ("message text", SECRET.as_bytes()),
        ("message text prefix", &SECRET.as_bytes()[..10]),
        ("shop phone number", SHOP.as_bytes()),
        ("customer phone number", CUSTOMER.as_bytes()),
        ("PIN", PIN.as_bytes()),
        ("wrong PIN", WRONG_PIN.as_bytes()),
        ("backup key", backup_key.as_slice()),
    ] {
        assert!(!contains(&logs, needle), "{what} found in the logs");
    }
    for (what, needle) in [
        ("identity (hex)", hex::encode(identity)),
        ("identity prefix (hex)", hex::encode(&identity[..8])),
        ("backup key (hex)", hex::encode(backup_key.as_slice())),
    ] {
        assert!(!text.contains(&needle), "{what} found in the logs");
    }
}
