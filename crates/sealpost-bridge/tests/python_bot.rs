//! The Python bot of `bot/bridge_bot.py` (standard library only) against a live bridge:
//! a customer asks where order 1042 is; the script answers through the HTTP API; the
//! customer gets the answer from the bot. Needs `python3` on PATH: without it this test
//! fails (it never passes silently); CI installs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::sync::Arc;

const CUSTOMER: &str = "+15550007001";

fn python3() -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("python3"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "python3 is not on PATH: this test runs the example bot bot/bridge_bot.py and cannot pass without it (install python3)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_bot_answers_an_order_question() {
    let python = python3();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), &codes).await;
    let shop = Shop::start(dir.path(), &relay, &codes, |c| c).await;
    let (customer, c_seen) = customer(dir.path(), &relay, &codes, CUSTOMER).await;
    customer
        .send_text(&acct(SHOP), "Hi, where is my order 1042?")
        .await
        .unwrap();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bot/bridge_bot.py");
    let cursor_file = dir.path().join("bot-cursor");
    let mut command = std::process::Command::new(python);
    command
        .arg(&script)
        .arg("--once")
        .arg("--timeout")
        .arg("60")
        .arg("--cursor-file")
        .arg(&cursor_file)
        .env("SEALPOST_BRIDGE_URL", &shop.base)
        .env(
            "SEALPOST_BRIDGE_TOKEN_FILE",
            shop.bridge_dir.join(sealpost_bridge::files::TOKEN_FILE),
        )
        .env_remove("SEALPOST_BRIDGE_TOKEN");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the bot failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    c_seen
        .wait("the bot's answer", 60, |c| !c.received().is_empty())
        .await;
    let (text, author) = c_seen.received().remove(0);
    assert_eq!(text, "Order 1042 has shipped and arrives on Friday.");
    assert_eq!(author, Some(bot_info()));
    // The bot kept its cursor: the question's position.
    let cursor: u64 = std::fs::read_to_string(&cursor_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(cursor > 0);
    customer.shutdown().await;
    shop.shutdown().await;
}
