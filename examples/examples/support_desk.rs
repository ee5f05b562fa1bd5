//! A support desk, end to end encrypted: a bot answers first, agents take over with the
//! history, the customer always sees who answered, and the relay holds ciphertext only.
//!
//! Run with `cargo run -p sealpost-examples --example support_desk`.
//!
//! The shop "Harbour Books" is a business account with four devices: the owner's, an order
//! bot and two agents, Lina and Omar. New conversations go to the bot (the default route).
//! A customer asks about an order; the bot answers from the order table, and when the
//! customer asks for a person it hands the conversation to Lina, with the conversation so
//! far. Lina's device checks that history against the transcript hash the customer's client
//! confirms (spec/business.md section 9) before she answers. At the end of her shift Lina
//! hands over to Omar, whose device checks the whole conversation again. Lina leaves the
//! company: the owner removes her device, and the customer's next message is not encrypted
//! to it. Finally the customer's screen shows who answered each message, and every file of
//! the relay is searched for the conversation's words: none is there.
// Example code: printing is its purpose, and its test unwraps and indexes.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::indexing_slicing)]

use anyhow::{Context as _, Result, bail};
use sealpost_client::{
    AccountId, AccountKind, BusinessProfileFields, ClientConfig, ClientEvent, DeviceRole,
    EventReceiver, HandoffCheck,
};
use sealpost_examples::Phones;
use sealpost_examples::business::{link, next, register, role};
use sealpost_relay::{Relay, RelayConfig};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SHOP: &str = "+15550100400";
const CUSTOMER: &str = "+15550100888";

/// Everything the customer writes and the shop answers: none of it may be on the relay.
const SECRETS: [&str; 8] = [
    "Where is my order 1042?",
    "Order 1042 shipped on 12 January with DHL.",
    "The parcel never arrived, can I talk to a person?",
    "Of course, I'm handing you over to a colleague.",
    "Hi, Lina here. I have started a trace with DHL.",
    "Hi, Omar here. DHL found your parcel: it arrives tomorrow.",
    "Great, thank you!",
    "parcel lost, trace started",
];

async fn next_text(events: &mut EventReceiver, what: &str) -> Result<String> {
    next(events, what, |ev| match ev {
        ClientEvent::Message { body, .. } => body.as_text().map(str::to_owned),
        _ => None,
    })
    .await
}

async fn next_check(events: &mut EventReceiver) -> Result<HandoffCheck> {
    next(events, "handoff check", |ev| match ev {
        ClientEvent::HandoffChecked { check, .. } => Some(check),
        _ => None,
    })
    .await
}

fn describe(check: HandoffCheck) -> String {
    match check {
        HandoffCheck::Verified {
            confirmed,
            unconfirmed,
        } => format!(
            "history verified by the customer's client ({confirmed} messages, {unconfirmed} not yet seen by them)"
        ),
        HandoffCheck::Incomplete { missing, .. } => {
            format!("history INCOMPLETE: {missing} messages the customer confirmed are missing")
        }
        HandoffCheck::Mismatch { .. } => "history DOES NOT MATCH what the customer saw".into(),
        _ => "history check: unknown result".into(),
    }
}

/// Every file under `dir` (the relay's data directory), concatenated.
fn all_bytes(dir: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(all_bytes(&path)?);
        } else {
            out.extend(std::fs::read(&path)?);
        }
    }
    Ok(out)
}

async fn desk(out: &mut impl Write) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let phones = Arc::new(Phones::default());
    let mut config = RelayConfig::for_tests(dir.path().join("relay"));
    config.code_sender = Some(phones.clone());
    config.shutdown_grace_secs = 2;
    let relay = Relay::start(config).await?;
    writeln!(out, "relay listening on {}", relay.local_addr())?;
    let client_config = ClientConfig::new(relay.local_addr(), relay.spki_pin());
    let shop_config = client_config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Owner");
    // The shop's devices read their own list before every copy they send.
    let device_config = client_config
        .clone()
        .with_device_list_refresh(Duration::ZERO);

    // The shop: the owner, the bot and two agents; new conversations go to the bot.
    let (owner, _owner_events) = register(SHOP, &shop_config, &phones).await?;
    let (bot, mut bot_events) = link(&owner, &device_config, "Order bot", DeviceRole::Bot).await?;
    let (lina, mut lina_events) =
        link(&owner, &device_config, "Lina, support", DeviceRole::Agent).await?;
    let (omar, mut omar_events) =
        link(&owner, &device_config, "Omar, support", DeviceRole::Agent).await?;
    owner
        .publish_business_profile(BusinessProfileFields {
            name: "Harbour Books".into(),
            category: "Bookshop".into(),
            website: "https://harbour-books.example".into(),
            reply_within: 3600,
            ..BusinessProfileFields::default()
        })
        .await?;
    owner.set_default_route(&[bot.address().device]).await?;
    writeln!(
        out,
        "shop {SHOP}: owner, Order bot (bot), Lina and Omar (agents); new conversations go to the bot"
    )?;

    let customer_config = client_config
        .clone()
        .with_device_list_refresh(Duration::ZERO);
    let (customer, mut customer_events) = register(CUSTOMER, &customer_config, &phones).await?;
    let shop = AccountId::new(SHOP)?;
    let me = customer.address().account.clone();

    // The bot answers first, then hands over to Lina with the conversation so far.
    customer.send_text(&shop, SECRETS[0]).await?;
    let q = next_text(&mut bot_events, "the question").await?;
    writeln!(out, "customer -> shop: {q}")?;
    bot.send_text(&me, SECRETS[1]).await?;
    next_text(&mut customer_events, "the bot's answer").await?;
    customer.send_text(&shop, SECRETS[2]).await?;
    next_text(&mut bot_events, "the request for a person").await?;
    bot.send_text(&me, SECRETS[3]).await?;
    next_text(&mut customer_events, "the bot's handover").await?;
    bot.transfer(&me, &[lina.address().device], "parcel lost")
        .await?;
    writeln!(out, "Order bot hands the conversation to Lina")?;
    let check = next_check(&mut lina_events).await?;
    writeln!(out, "Lina's device: {}", describe(check))?;
    if !matches!(check, HandoffCheck::Verified { .. }) {
        bail!("Lina's handoff did not verify: {check:?}");
    }
    lina.send_text(&me, SECRETS[4]).await?;
    next_text(&mut customer_events, "Lina's answer").await?;
    lina.add_note(&me, SECRETS[7]).await?;

    // Lina's shift ends: Omar takes over and checks the history again.
    lina.transfer(
        &me,
        &[omar.address().device],
        "trace started, check tomorrow",
    )
    .await?;
    writeln!(out, "Lina's shift ends; she hands the conversation to Omar")?;
    let check = next_check(&mut omar_events).await?;
    writeln!(out, "Omar's device: {}", describe(check))?;
    if !matches!(check, HandoffCheck::Verified { .. }) {
        bail!("Omar's handoff did not verify: {check:?}");
    }
    omar.send_text(&me, SECRETS[5]).await?;
    next_text(&mut customer_events, "Omar's answer").await?;

    // Lina leaves the company: her device is removed, and gets nothing new.
    owner.remove_device(lina.address().device).await?;
    writeln!(out, "the owner removes Lina's device")?;
    customer.send_text(&shop, SECRETS[6]).await?;
    let thanks = next_text(&mut omar_events, "the customer's thanks").await?;
    writeln!(out, "Omar's device receives: {thanks}")?;
    let lina_history = lina.history(&me, 100).await?;
    let lina_has_it = lina_history
        .iter()
        .any(|h| h.body.as_text() == Some(SECRETS[6]));
    writeln!(
        out,
        "Lina's removed device holds the customer's last message: {lina_has_it}"
    )?;

    // The customer's screen: who answered each message.
    writeln!(out, "the customer's screen:")?;
    for entry in customer.history(&shop, 100).await? {
        let text = entry.body.as_text().unwrap_or_default();
        let who = match &entry.author {
            Some(a) => format!("{} · {}", a.name, role(a.role)),
            None => "me".to_owned(),
        };
        writeln!(out, "  [{who}] {text}")?;
    }

    for client in [&customer, &owner, &bot, &lina, &omar] {
        client.shutdown().await;
    }
    relay.shutdown().await;
    let stored = all_bytes(&dir.path().join("relay"))?;
    let found: Vec<&str> = SECRETS
        .iter()
        .copied()
        .filter(|s| stored.windows(s.len()).any(|w| w == s.as_bytes()))
        .collect();
    writeln!(
        out,
        "relay files searched ({} bytes): {} of {} phrases found in the clear",
        stored.len(),
        found.len(),
        SECRETS.len()
    )?;
    if !found.is_empty() {
        bail!("the relay stored plaintext: {found:?}");
    }
    Ok(())
}

/// The whole example, writing its narration to `out`.
pub fn run(out: &mut impl Write) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(desk(out)).context("support desk")
}

fn main() -> Result<()> {
    run(&mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desk_hands_over_with_verified_history_and_the_relay_sees_ciphertext_only() {
        let mut out = Vec::new();
        run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Lina's device: history verified by the customer's client (4 messages"),
            "{text}"
        );
        assert!(
            text.contains("Omar's device: history verified by the customer's client (5 messages"),
            "{text}"
        );
        assert!(
            text.contains("Lina's removed device holds the customer's last message: false"),
            "{text}"
        );
        let screen: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "the customer's screen:")
            .skip(1)
            .take_while(|l| l.starts_with("  ["))
            .collect();
        assert_eq!(
            screen,
            vec![
                format!("  [me] {}", SECRETS[0]),
                format!("  [Order bot · bot] {}", SECRETS[1]),
                format!("  [me] {}", SECRETS[2]),
                format!("  [Order bot · bot] {}", SECRETS[3]),
                format!("  [Lina, support · agent] {}", SECRETS[4]),
                format!("  [Omar, support · agent] {}", SECRETS[5]),
                format!("  [me] {}", SECRETS[6]),
            ],
            "{text}"
        );
        assert!(text.contains("0 of 8 phrases found in the clear"), "{text}");
    }
}
