//! The client SDK's quick start (the crate documentation of `sealpost-client`) as a program:
//! "register (or open the account on later runs), send a message to a shop, print the
//! replies", run against a relay started in-process.
//!
//! Run with `cargo run -p sealpost-examples --example quick_start`.
//!
//! [`app`] is the quick start's code; only what the quick start leaves to the app is a
//! parameter: the relay (here `localhost` and the in-process relay's port and pin), the
//! store's path, how the user types the verification code in (here the captured SMS), and
//! when to stop (here after the shop's replies). The example runs it twice on the same
//! store: the first run registers, the second finds the account and opens it. A shop, an
//! ordinary client, answers every message with two replies.
// Example code: printing is its purpose, and its test unwraps.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use anyhow::{Context as _, Result, bail};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientEvent, EventReceiver, Store, StoreKey, StoreSecret,
};
use sealpost_examples::Phones;
use sealpost_relay::{Relay, RelayConfig};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ME: &str = "+15550001111";
const SHOP: &str = "+4915112345678";
/// How long to wait for any one step (generous: this also runs as a test on slow CI).
const WAIT: Duration = Duration::from_secs(60);

/// What the app gets from its surroundings.
struct Setup<'a> {
    relay_host: &'a str,
    relay_port: u16,
    relay_pin: String,
    store: &'a Path,
    /// The user typing in the code the relay sent by SMS.
    read_code_from_user: &'a dyn Fn() -> Result<String>,
    question: &'a str,
    /// Replies to print before the app ends.
    replies: usize,
}

/// The quick start, line for line (its endless event loop ends after `replies` replies).
async fn app(setup: &Setup<'_>, out: &Mutex<Vec<String>>) -> Result<()> {
    let say = |line: String| out.lock().unwrap().push(line);
    // The relay: host name, port and public-key pin (the relay prints its pin at start).
    let config = ClientConfig::builder()
        .relay(setup.relay_host, setup.relay_port)
        .pin(&setup.relay_pin)
        .build()?;
    // The encrypted store (the passphrase is stretched off the async runtime).
    let store =
        Store::open_sqlite(setup.store, StoreSecret::passphrase("a long passphrase")).await?;

    let (client, mut events) = if store.has_account().await? {
        say("the store holds an account: opening it".into());
        Client::open(store, config).await?
    } else {
        // First run: the relay texts a 6-digit code to the number; the user types it in.
        say("first run: registering".into());
        let me = AccountId::new(ME)?;
        Client::request_code(&config, &me).await?;
        Client::register(store, config, me, &(setup.read_code_from_user)()?).await?
    };

    let shop = AccountId::new(SHOP)?;
    client.send_text(&shop, setup.question).await?;
    say(format!("asked the shop: {}", setup.question));

    // Optional: show "offline" or "the relay's certificate does not match".
    let mut state = client.connection_state();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            eprintln!("connection: {:?}", *state.borrow_and_update());
        }
    });

    let mut replies = 0;
    while let Some(event) = tokio::time::timeout(WAIT, events.recv())
        .await
        .context("no reply from the shop")?
    {
        match event {
            ClientEvent::Message { from, body, .. } if from.account == shop => {
                say(format!(
                    "the shop replied: {}",
                    body.as_text().unwrap_or("(bytes)")
                ));
                replies += 1;
                if replies == setup.replies {
                    break;
                }
            }
            // Read too slowly: nothing is lost, the messages are in `client.history(..)`.
            ClientEvent::Lagged { .. } => {}
            _ => {}
        }
    }
    client.shutdown().await;
    Ok(())
}

/// The shop: answers every question with two replies until its events end.
async fn shop(client: Client, mut events: EventReceiver) -> Result<()> {
    while let Some(event) = events.recv().await {
        if let ClientEvent::Message { from, body, .. } = event {
            let question = body.as_text().unwrap_or_default().to_owned();
            client
                .send_text(&from.account, &format!("Thanks for asking: {question:?}"))
                .await?;
            client
                .send_text(
                    &from.account,
                    "Order #1234 left our warehouse this morning.",
                )
                .await?;
        }
    }
    Ok(())
}

async fn quick_start(out: &Mutex<Vec<String>>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let phones = Arc::new(Phones::default());
    let mut config = RelayConfig::for_tests(dir.path().join("relay"));
    config.listen = "127.0.0.1:0".parse()?;
    config.code_sender = Some(phones.clone());
    config.shutdown_grace_secs = 2;
    let relay = Relay::start(config).await?;

    let shop_config = ClientConfig::new(relay.local_addr(), relay.spki_pin());
    let shop_account = AccountId::new(SHOP)?;
    Client::request_code(&shop_config, &shop_account).await?;
    let (shop_client, shop_events) = Client::register(
        Store::in_memory(StoreKey::generate())?,
        shop_config,
        shop_account,
        &phones.read_code(SHOP)?,
    )
    .await?;
    let shop_task = tokio::spawn(shop(shop_client.clone(), shop_events));

    let store = dir.path().join("app.db");
    let read_code = || phones.read_code(ME);
    for question in ["Is order #1234 on its way?", "When will it arrive?"] {
        let setup = Setup {
            relay_host: "localhost",
            relay_port: relay.local_addr().port(),
            relay_pin: relay.spki_pin().to_string(),
            store: &store,
            read_code_from_user: &read_code,
            question,
            replies: 2,
        };
        app(&setup, out).await?;
    }

    shop_client.shutdown().await;
    shop_task.await??;
    relay.shutdown().await;
    Ok(())
}

/// The whole example, writing its narration to `out`.
pub fn run(out: &mut impl Write) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lines = Mutex::new(Vec::new());
    let result = runtime.block_on(quick_start(&lines));
    for line in lines.into_inner().unwrap_or_default() {
        writeln!(out, "{line}")?;
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e:#}"),
    }
}

fn main() -> Result<()> {
    run(&mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_quick_start_registers_then_opens_and_prints_the_replies() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "first run: registering",
                "asked the shop: Is order #1234 on its way?",
                "the shop replied: Thanks for asking: \"Is order #1234 on its way?\"",
                "the shop replied: Order #1234 left our warehouse this morning.",
                "the store holds an account: opening it",
                "asked the shop: When will it arrive?",
                "the shop replied: Thanks for asking: \"When will it arrive?\"",
                "the shop replied: Order #1234 left our warehouse this morning.",
            ],
            "{text}"
        );
    }
}
