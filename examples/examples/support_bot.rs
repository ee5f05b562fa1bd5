//! A shop's support bot answers order-status questions and hands over to a person, end to
//! end encrypted.
//!
//! Run with `cargo run -p sealpost-examples --example support_bot`.
//!
//! The shop "Harbour Books" is a business account with three devices: the owner's, the
//! "Order bot" (role bot) and Lina's (role agent). New conversations go to the bot (the
//! business's default route). The bot is a [`BusinessBot`]: it reads each customer message
//! routed to it from its device's history, in order, looks the order up in a (small,
//! in-memory) order table and answers. Asked for a person, or unsure twice (an unknown
//! order, a question it cannot read), it hands the conversation to the shop's agents with
//! the conversation so far. Lina's device checks that history against the transcript the
//! customer's client confirms (spec/business.md section 9) and she answers; the customer's
//! next message goes to her, not to the bot. The customer sees each answer with its
//! author's name and role from the shop's signed device list. The relay in between
//! (started in-process on 127.0.0.1) only ever carries ciphertext.
// Example code: printing is its purpose, and its test unwraps and indexes.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::indexing_slicing)]

use anyhow::{Context as _, Result, bail};
use sealpost_client::{
    AccountId, AccountKind, BusinessBot, BusinessProfileFields, ClientConfig, ClientEvent,
    DeviceRole, EventReceiver, HandoffCheck,
};
use sealpost_examples::Phones;
use sealpost_examples::business::{link, next, register, role};
use sealpost_relay::{Relay, RelayConfig};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const SHOP: &str = "+15550100300";
const CUSTOMER: &str = "+15550100777";

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
    /// The bot did not know the answer (an unknown order, a question it cannot read).
    unsure: bool,
}

/// The first number of three or more digits in `text` (order numbers look like "#1042").
fn order_number(text: &str) -> Option<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|digits| digits.len() >= 3)
        .and_then(|digits| digits.parse().ok())
}

/// The bot's whole brain: a pure function of the question, the orders, whether this is
/// the customer's first message and how often the bot was unsure in this conversation
/// before. Asked for a person, or unsure a second time, it hands over.
fn answer(
    orders: &BTreeMap<u32, OrderStatus>,
    question: &str,
    first_contact: bool,
    unsure_before: u32,
) -> Reply {
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
            unsure: false,
        };
    }
    let mut unsure = true;
    let text = match order_number(question) {
        Some(n) => match orders.get(&n) {
            Some(status) => {
                unsure = false;
                match status {
                    OrderStatus::Shipped {
                        on,
                        carrier,
                        tracking,
                    } => format!("Order {n} shipped on {on} with {carrier} (tracking {tracking})."),
                    OrderStatus::Packing { ships_by } => {
                        format!("Order {n} is being packed and will ship by {ships_by}.")
                    }
                    OrderStatus::Delivered { on } => format!("Order {n} was delivered on {on}."),
                }
            }
            None => format!(
                "Sorry, I couldn't find order {n}. Please check the number in your confirmation email, or write \"agent\" to talk to a person."
            ),
        },
        None => "I can tell you where an order is: ask e.g. \"where is order 1042?\", or write \"agent\" to talk to a person.".to_owned(),
    };
    if unsure && unsure_before > 0 {
        return Reply {
            text: format!(
                "{greeting}I'm not getting this right, sorry: I'm handing you over to our team. A colleague will answer in this chat within one business hour."
            ),
            hand_off: true,
            unsure,
        };
    }
    Reply {
        text: format!("{greeting}{text}"),
        hand_off: false,
        unsure,
    }
}

/// The bot: answers every customer message routed to it until stopped, and hands the
/// conversation to the shop's agents when asked to or when unsure twice. A conversation an
/// agent has taken is theirs: the bot leaves it alone.
async fn run_bot(mut bot: BusinessBot, mut stop: oneshot::Receiver<()>) -> Result<()> {
    let orders = orders();
    let mut unsure: HashMap<AccountId, u32> = HashMap::new();
    loop {
        let msg = tokio::select! {
            _ = &mut stop => break,
            msg = bot.next() => match msg? {
                Some(msg) => msg,
                None => break,
            },
        };
        if !msg.mine || msg.handed_over {
            continue;
        }
        let before = unsure.get(&msg.customer).copied();
        let reply = answer(
            &orders,
            msg.text().unwrap_or_default(),
            before.is_none(),
            before.unwrap_or(0),
        );
        let count = unsure.entry(msg.customer.clone()).or_insert(0);
        *count += u32::from(reply.unsure);
        bot.reply(&msg, &reply.text).await?;
        if reply.hand_off {
            let why = if reply.unsure {
                "the bot could not answer twice"
            } else {
                "the customer asked for a person"
            };
            bot.hand_over_to_role(&msg.customer, DeviceRole::Agent, why)
                .await?;
        }
        // A real bot saves `bot.cursor()` here and restarts with `BusinessBot::with_cursor`.
    }
    bot.client().shutdown().await;
    Ok(())
}

/// The next text message, as "author (role): text".
async fn next_text(events: &mut EventReceiver, what: &str) -> Result<String> {
    next(events, what, |ev| match ev {
        ClientEvent::Message { author, body, .. } => {
            let who = author.map_or("unlisted device".to_owned(), |a| {
                format!("{} ({})", a.name, role(a.role))
            });
            Some(format!("{who}: {}", body.as_text().unwrap_or("(bytes)")))
        }
        _ => None,
    })
    .await
}

async fn support(out: &mut impl Write) -> Result<()> {
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

    // The shop: the owner, the bot and one agent; new conversations go to the bot.
    let (owner, _owner_events) = register(SHOP, &shop_config, &phones).await?;
    let (bot, bot_events) = link(&owner, &device_config, "Order bot", DeviceRole::Bot).await?;
    let (lina, mut lina_events) =
        link(&owner, &device_config, "Lina, support", DeviceRole::Agent).await?;
    owner
        .publish_business_profile(BusinessProfileFields {
            name: "Harbour Books".into(),
            category: "Bookshop".into(),
            reply_within: 3600,
            ..BusinessProfileFields::default()
        })
        .await?;
    owner.set_default_route(&[bot.address().device]).await?;
    writeln!(
        out,
        "shop {SHOP}: owner, Order bot (bot), Lina (agent); new conversations go to the bot"
    )?;
    let (stop_bot, stop) = oneshot::channel();
    let bot_task = tokio::spawn(run_bot(BusinessBot::new(bot, bot_events), stop));

    let customer_config = client_config
        .clone()
        .with_device_list_refresh(Duration::ZERO);
    let (customer, mut events) = register(CUSTOMER, &customer_config, &phones).await?;
    let shop = AccountId::new(SHOP)?;
    let me = customer.address().account.clone();
    for question in [
        "Hello, where is order 1042?",
        "And what about #1043?",
        "Where is order 9999?",
        "Hmm. Can I talk to a person, please?",
    ] {
        writeln!(out, "customer: {question}")?;
        customer.send_text(&shop, question).await?;
        let reply = next_text(&mut events, "the bot's answer").await?;
        writeln!(out, "{reply}")?;
    }

    // Lina's device receives the conversation so far and checks it.
    let (from, note, messages) = next(&mut lina_events, "the handoff", |ev| match ev {
        ClientEvent::HandoffReceived {
            from,
            note,
            messages,
            ..
        } => Some((from, note, messages)),
        _ => None,
    })
    .await?;
    writeln!(
        out,
        "Lina's device: handoff from device {} ({note:?}), {messages} messages",
        from.0
    )?;
    let check = next(&mut lina_events, "the handoff check", |ev| match ev {
        ClientEvent::HandoffChecked { check, .. } => Some(check),
        _ => None,
    })
    .await?;
    match check {
        HandoffCheck::Verified {
            confirmed,
            unconfirmed,
        } => writeln!(
            out,
            "Lina's device: history verified by the customer's client ({confirmed} messages, {unconfirmed} not yet seen by them)"
        )?,
        other => bail!("Lina's handoff did not verify: {other:?}"),
    }
    lina.send_text(&me, "Hi, Lina here. What can I do for you?")
        .await?;
    writeln!(out, "{}", next_text(&mut events, "Lina's answer").await?)?;
    let follow_up = "It's about a gift card that doesn't work.";
    writeln!(out, "customer: {follow_up}")?;
    customer.send_text(&shop, follow_up).await?;
    let got = next(&mut lina_events, "the follow-up", |ev| match ev {
        ClientEvent::Message { body, .. } => body.as_text().map(str::to_owned),
        _ => None,
    })
    .await?;
    writeln!(out, "Lina reads: {got}")?;
    lina.send_text(&me, "Sorry about that: I'm sending you a new one today.")
        .await?;
    writeln!(out, "{}", next_text(&mut events, "Lina's answer").await?)?;

    let _ = stop_bot.send(());
    bot_task.await.context("the bot task failed")??;
    for client in [customer, lina, owner] {
        client.shutdown().await;
    }
    relay.shutdown().await;
    writeln!(out, "shop, customer and relay shut down")?;
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
        let first = answer(&o, "where is order 1042?", true, 0);
        assert!(
            first
                .text
                .starts_with("Hi, I'm the Harbour Books assistant.")
        );
        assert!(first.text.contains("Order 1042 shipped on 12 January 2026"));
        assert!(!first.hand_off && !first.unsure);
        assert!(answer(&o, "#1043", false, 0).text.contains("being packed"));
        assert!(
            answer(&o, "order 1044?", false, 0)
                .text
                .contains("was delivered")
        );
        let unknown = answer(&o, "where is 9999", false, 0);
        assert!(
            unknown
                .text
                .starts_with("Sorry, I couldn't find order 9999.")
        );
        assert!(unknown.unsure && !unknown.hand_off);
        let hello = answer(&o, "hello", false, 0);
        assert!(hello.text.contains("where is order 1042?"));
        assert!(hello.unsure && !hello.hand_off);
        assert!(answer(&o, "An AGENT please", false, 0).hand_off);
        assert!(answer(&o, "a person, please", false, 0).hand_off);
        // Unsure a second time: hand over (an unknown order, or a question it cannot read).
        let again = answer(&o, "then 9998?", false, 1);
        assert!(again.hand_off && again.text.contains("handing you over"));
        assert!(answer(&o, "blue?", false, 1).hand_off);
        // A known order after an unsure answer is still answered.
        assert!(!answer(&o, "1042 then", false, 1).hand_off);
        assert_eq!(order_number("order #1042, 2 items"), Some(1042));
        assert_eq!(order_number("2 items"), None);
    }

    #[test]
    fn the_bot_answers_then_hands_over_to_the_agent() {
        let mut out = Vec::new();
        run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let bot: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Order bot (bot): "))
            .collect();
        assert_eq!(bot.len(), 4, "{text}");
        assert!(bot[0].starts_with("Hi, I'm the Harbour Books assistant. Order 1042 shipped on"));
        assert!(bot[1].starts_with("Order 1043 is being packed"));
        assert!(bot[2].starts_with("Sorry, I couldn't find order 9999."));
        assert!(bot[3].contains("handing you over"));
        // The handoff held the whole conversation (4 questions, 4 answers) and verified.
        assert!(
            text.contains("(\"the customer asked for a person\"), 8 messages"),
            "{text}"
        );
        assert!(
            text.contains("Lina's device: history verified by the customer's client ("),
            "{text}"
        );
        let lina: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Lina, support (agent): "))
            .collect();
        assert_eq!(
            lina,
            vec![
                "Hi, Lina here. What can I do for you?",
                "Sorry about that: I'm sending you a new one today."
            ],
            "{text}"
        );
        assert!(
            text.contains("Lina reads: It's about a gift card that doesn't work."),
            "{text}"
        );
        // Every answer the customer saw came from the bot or Lina, in this order.
        let authors: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                ["Order bot (bot): ", "Lina, support (agent): "]
                    .into_iter()
                    .find(|p| l.starts_with(p))
            })
            .collect();
        assert_eq!(authors.len(), 6, "{text}");
        assert!(authors[..4].iter().all(|a| a.starts_with("Order bot")));
        assert!(authors[4..].iter().all(|a| a.starts_with("Lina")));
    }
}
