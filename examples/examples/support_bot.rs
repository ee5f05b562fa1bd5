//! A shop's support bot answers order-status questions, end-to-end encrypted.
//!
//! Run with `cargo run -p sealpost-examples --example support_bot`.
//!
//! Many shops answer a customer's first messages automatically. Here the shop's business
//! account is run by a bot: an ordinary Sealpost client that decrypts each question on the
//! shop's own device, looks the order up in a (small, in-memory) order table and answers,
//! or hands the conversation to a human agent when asked to. The relay in between (started
//! in-process on 127.0.0.1) only ever carries ciphertext.
// Example code: printing is its purpose, and its test unwraps and indexes.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::indexing_slicing)]

use anyhow::{Context as _, Result, bail};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientEvent, EventReceiver, Store, StoreKey,
};
use sealpost_examples::Phones;
use sealpost_relay::{Relay, RelayConfig};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const SHOP: &str = "+15550100300";
const CUSTOMER: &str = "+15550100777";
/// How long the customer waits for an answer (generous: this also runs as a test on CI).
const WAIT: Duration = Duration::from_secs(30);

/// Where an order is.
#[derive(Clone, Debug)]
enum OrderStatus {
    Packing {
        ships_by: &'static str,
    },
    Shipped {
        on: &'static str,
        carrier: &'static str,
        tracking: &'static str,
    },
    Delivered {
        on: &'static str,
    },
}

/// The shop's order table (a database in real life).
fn orders() -> BTreeMap<u32, OrderStatus> {
    BTreeMap::from([
        (
            1042,
            OrderStatus::Shipped {
                on: "12 January 2026",
                carrier: "DHL",
                tracking: "JD014600003828",
            },
        ),
        (
            1043,
            OrderStatus::Packing {
                ships_by: "14 January 2026",
            },
        ),
        (
            1044,
            OrderStatus::Delivered {
                on: "9 January 2026",
            },
        ),
    ])
}

/// What the bot answers, and whether it hands the conversation to a person.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    text: String,
    hand_off: bool,
}

/// The first number of three or more digits in `text` (order numbers look like "#1042").
fn order_number(text: &str) -> Option<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|digits| digits.len() >= 3)
        .and_then(|digits| digits.parse().ok())
}

/// The bot's whole brain: a pure function of the question, the orders and whether this
/// is the customer's first message.
fn answer(orders: &BTreeMap<u32, OrderStatus>, question: &str, first_contact: bool) -> Reply {
    let greeting = if first_contact {
        "Hi, I'm the Harbour Books assistant. "
    } else {
        ""
    };
    let lower = question.to_lowercase();
    if ["agent", "human", "person"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return Reply {
            text: format!(
                "{greeting}Of course: I'm handing you over to our team. A colleague will answer in this chat within one business hour."
            ),
            hand_off: true,
        };
    }
    let text = match order_number(question) {
        Some(n) => match orders.get(&n) {
            Some(OrderStatus::Shipped {
                on,
                carrier,
                tracking,
            }) => format!("Order {n} shipped on {on} with {carrier} (tracking {tracking})."),
            Some(OrderStatus::Packing { ships_by }) => {
                format!("Order {n} is being packed and will ship by {ships_by}.")
            }
            Some(OrderStatus::Delivered { on }) => format!("Order {n} was delivered on {on}."),
            None => format!(
                "Sorry, I couldn't find order {n}. Please check the number in your confirmation email, or write \"agent\" to talk to a person."
            ),
        },
        None => "I can tell you where an order is: ask e.g. \"where is order 1042?\", or write \"agent\" to talk to a person.".to_owned(),
    };
    Reply {
        text: format!("{greeting}{text}"),
        hand_off: false,
    }
}

/// The bot: answers every message until stopped. Conversations handed off are left to the
/// human agents: their messages go to the agents' queue instead.
async fn run_bot(
    client: Client,
    mut events: EventReceiver,
    agents: mpsc::Sender<(AccountId, String)>,
    mut stop: oneshot::Receiver<()>,
) -> Result<()> {
    let orders = orders();
    let mut seen: HashSet<AccountId> = HashSet::new();
    let mut handed_off: HashSet<AccountId> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let ClientEvent::Message { from, body, .. } = event else {
            continue;
        };
        let question = body.as_text().unwrap_or_default().to_owned();
        let customer = from.account;
        if handed_off.contains(&customer) {
            agents.send((customer, question)).await?; // a person answers from here on
            continue;
        }
        let first_contact = seen.insert(customer.clone());
        let reply = answer(&orders, &question, first_contact);
        client.send_text(&customer, &reply.text).await?;
        if reply.hand_off {
            handed_off.insert(customer.clone());
            agents.send((customer, question)).await?;
        }
    }
    client.shutdown().await;
    Ok(())
}

async fn register(
    phone: &str,
    config: &ClientConfig,
    phones: &Phones,
) -> Result<(Client, EventReceiver)> {
    let account = AccountId::new(phone)?;
    Client::request_code(config, &account).await?;
    let code = phones.read_code(phone)?;
    // In-memory stores keep the example short; a real bot uses `Store::open_sqlite`.
    let store = Store::in_memory(StoreKey::generate())?;
    Ok(Client::register(store, config.clone(), account, &code).await?)
}

/// Waits for the next text message.
async fn next_message(events: &mut EventReceiver) -> Result<String> {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(ClientEvent::Message { body, .. })) => {
                return Ok(body.as_text().unwrap_or_default().to_owned());
            }
            Ok(Some(ClientEvent::SendFailed { error, .. })) => bail!("sending failed: {error}"),
            Ok(Some(_)) => {}
            Ok(None) => bail!("the client stopped"),
            Err(_) => bail!("no answer within {} s", WAIT.as_secs()),
        }
    }
}

async fn support(out: &mut impl Write) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let phones = Arc::new(Phones::default());
    let mut config = RelayConfig::for_tests(dir.path());
    config.listen = "127.0.0.1:0".parse()?;
    config.code_sender = Some(phones.clone());
    config.shutdown_grace_secs = 2;
    let relay = Relay::start(config).await?;
    writeln!(out, "relay listening on {}", relay.local_addr())?;
    let client_config = ClientConfig::new(relay.local_addr(), relay.spki_pin());

    let (bot_client, bot_events) = register(SHOP, &client_config, &phones).await?;
    writeln!(out, "support bot online for the shop's account {SHOP}")?;
    let (stop_bot, stop) = oneshot::channel();
    let (agents, mut agents_queue) = mpsc::channel(16);
    let bot = tokio::spawn(run_bot(bot_client, bot_events, agents, stop));

    let (customer, mut events) = register(CUSTOMER, &client_config, &phones).await?;
    let shop = AccountId::new(SHOP)?;
    for question in [
        "Hello, where is order 1042?",
        "And what about #1043?",
        "Where is order 9999?",
        "Hmm. Can I talk to an agent, please?",
    ] {
        writeln!(out, "customer: {question}")?;
        customer.send_text(&shop, question).await?;
        let reply = next_message(&mut events).await?;
        writeln!(out, "bot:      {reply}")?;
    }
    let follow_up = "It's about a gift card that doesn't work.";
    writeln!(out, "customer: {follow_up}")?;
    customer.send_text(&shop, follow_up).await?;
    // The bot stays quiet now; the agents' queue shows the conversation.
    for _ in 0..2 {
        let (from, text) = tokio::time::timeout(WAIT, agents_queue.recv())
            .await
            .context("the agents' queue stayed empty")?
            .context("the bot stopped")?;
        writeln!(out, "agents' queue: {} wrote {text:?}", from.as_str())?;
    }

    let _ = stop_bot.send(());
    bot.await.context("the bot task failed")??;
    customer.shutdown().await;
    relay.shutdown().await;
    writeln!(out, "bot, customer and relay shut down")?;
    Ok(())
}

/// The whole example, writing its narration to `out`.
pub fn run(out: &mut impl Write) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(support(out))
}

fn main() -> Result<()> {
    run(&mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_the_order_table() {
        let o = orders();
        let first = answer(&o, "where is order 1042?", true);
        assert!(
            first
                .text
                .starts_with("Hi, I'm the Harbour Books assistant.")
        );
        assert!(first.text.contains("Order 1042 shipped on 12 January 2026"));
        assert!(!first.hand_off);
        assert!(answer(&o, "#1043", false).text.contains("being packed"));
        assert!(
            answer(&o, "order 1044?", false)
                .text
                .contains("was delivered")
        );
        let unknown = answer(&o, "where is 9999", false);
        assert!(
            unknown
                .text
                .starts_with("Sorry, I couldn't find order 9999.")
        );
        assert!(
            answer(&o, "hello", false)
                .text
                .contains("where is order 1042?")
        );
        assert!(answer(&o, "An AGENT please", false).hand_off);
        assert_eq!(order_number("order #1042, 2 items"), Some(1042));
        assert_eq!(order_number("2 items"), None);
    }

    #[test]
    fn the_bot_answers_end_to_end() {
        let mut out = Vec::new();
        run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("bot:      "))
            .collect();
        assert_eq!(answers.len(), 4, "{text}");
        assert!(
            answers[0].starts_with("Hi, I'm the Harbour Books assistant. Order 1042 shipped on")
        );
        assert!(answers[1].starts_with("Order 1043 is being packed"));
        assert!(answers[2].starts_with("Sorry, I couldn't find order 9999."));
        assert!(answers[3].contains("handing you over"));
        assert!(
            text.contains(
                "agents' queue: +15550100777 wrote \"Hmm. Can I talk to an agent, please?\""
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "agents' queue: +15550100777 wrote \"It's about a gift card that doesn't work.\""
            ),
            "{text}"
        );
    }
}
