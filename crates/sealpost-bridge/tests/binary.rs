//! The `sealpost-bridge` binary end to end: `link` prints an invitation that the business's
//! owner accepts as a `bot`, `run` serves the API (on a port it reports), a customer's
//! question is answered over HTTP, and SIGTERM stops it cleanly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{AccountKind, DeviceRole};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

const CUSTOMER: &str = "+15550008001";

/// Spawns the binary and forwards its stderr lines to a channel.
fn spawn(args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealpost-bridge"))
        .args(args)
        .env("SEALPOST_PASSPHRASE", "correct horse battery staple")
        .env_remove("SEALPOST_BRIDGE_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The first stderr line containing `needle` (within 60 s).
async fn line_with(rx: mpsc::Receiver<String>, needle: &str) -> (String, mpsc::Receiver<String>) {
    let needle = needle.to_owned();
    tokio::task::spawn_blocking(move || {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("no line with {needle:?}: {e}"));
            if line.contains(&needle) {
                return (line, rx);
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_links_as_a_bot_serves_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let config = client_config(&relay);
    let owner_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Shop owner");
    let (owner, _rx) = register(&owner_config, &codes, SHOP, open_store(dir.path(), "owner")).await;
    let store = dir.path().join("bridge");
    let store_arg = store.to_str().unwrap().to_owned();
    let relay_addr = relay.local_addr().to_string();
    let pin = relay.spki_pin().to_string();

    let (mut link, rx) = spawn(&[
        "link",
        "--store",
        &store_arg,
        "--relay",
        &relay_addr,
        "--relay-pin",
        &pin,
        "--name",
        BOT_NAME,
        "--role",
        "bot",
    ]);
    let (line, _rx) = line_with(rx, "sealpost devices link sealpost-link:").await;
    assert!(line.contains("--role bot"), "{line}");
    let invitation = line
        .split_whitespace()
        .find(|w| w.starts_with("sealpost-link:"))
        .unwrap();
    owner
        .link_device_as(invitation, BOT_NAME, DeviceRole::Bot)
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || link.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert!(store.join("bridge.toml").is_file());

    // A non-loopback address is refused without --allow-remote.
    let (mut refused, rx) = spawn(&["run", "--store", &store_arg, "--listen", "0.0.0.0:0"]);
    let (line, _rx) = line_with(rx, "not a loopback address").await;
    assert!(line.contains("refusing"), "{line}");
    assert!(!refused.wait().unwrap().success());

    let (run, rx) = spawn(&["run", "--store", &store_arg, "--listen", "127.0.0.1:0"]);
    let (line, _rx) = line_with(rx, "serving on http://").await;
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let token = std::fs::read_to_string(store.join(sealpost_bridge::files::TOKEN_FILE)).unwrap();
    // The token never appears in what the bridge printed.
    assert!(!line.contains(&token));

    let (customer, c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    customer
        .send_text(&acct(SHOP), "Where is my order 1042?")
        .await
        .unwrap();
    let (events, _) = poll(&base, &token, 0, 60).await;
    let question = events.iter().find(|e| e["kind"] == "incoming").unwrap();
    assert_eq!(question["conversation"], CUSTOMER);
    reply(&base, &token, CUSTOMER, "It has shipped.").await;
    c_seen
        .wait("the answer", 60, |c| !c.received().is_empty())
        .await;
    assert_eq!(
        c_seen.received()[0],
        ("It has shipped.".to_owned(), Some(bot_info()))
    );

    // SIGTERM stops it cleanly.
    let pid = run.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut run = run;
    let status = tokio::task::spawn_blocking(move || run.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    customer.shutdown().await;
    owner.shutdown().await;
}
