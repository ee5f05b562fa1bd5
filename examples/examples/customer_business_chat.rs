//! A customer and a shop talk through a real Sealpost relay, end-to-end encrypted.
//!
//! Run with `cargo run -p sealpost-examples --example customer_business_chat`.
//!
//! The example starts a relay in-process (QUIC on 127.0.0.1 with an ephemeral port, a
//! temporary data directory, verification codes captured instead of sent by SMS), registers
//! a customer and a shop with the client SDK, and lets them talk. Halfway through, the shop
//! goes offline; the relay queues the customer's next message, and the example opens the
//! relay's own database to show that what it stores is ciphertext. Both sides then compare
//! safety numbers, and everything shuts down cleanly.
// Example code: printing is its purpose, and its test unwraps.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use anyhow::{Context as _, Result, bail};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientEvent, DeviceAddress, DeviceId, EventReceiver,
    MessageId, Store, StoreKey, StoreSecret,
};
use sealpost_examples::Phones;
use sealpost_relay::backup::backup;
use sealpost_relay::server::DB_FILE;
use sealpost_relay::{Relay, RelayConfig, SqliteStore, Store as _};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CUSTOMER: &str = "+15550100999";
const SHOP: &str = "+15550100200";
/// How long to wait for any one step (generous: this also runs as a test on slow CI).
const WAIT: Duration = Duration::from_secs(30);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One side of the conversation: a client, its events, and messages read ahead.
struct Party {
    name: &'static str,
    account: AccountId,
    client: Client,
    events: EventReceiver,
    unread: VecDeque<(DeviceAddress, String)>,
}

impl Party {
    /// Requests a code, "reads the SMS", registers and publishes prekeys.
    async fn register(
        name: &'static str,
        phone: &str,
        config: &ClientConfig,
        phones: &Phones,
        store: Store,
    ) -> Result<Self> {
        let account = AccountId::new(phone)?;
        Client::request_code(config, &account).await?;
        let code = phones.read_code(phone)?;
        let (client, events) = Client::register(store, config.clone(), account.clone(), &code)
            .await
            .with_context(|| format!("registering the {name}"))?;
        Ok(Self {
            name,
            account,
            client,
            events,
            unread: VecDeque::new(),
        })
    }

    async fn next_event(&mut self) -> Result<ClientEvent> {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => bail!("the {}'s client stopped", self.name),
            Err(_) => bail!("the {} waited {} s in vain", self.name, WAIT.as_secs()),
        }
    }

    /// Sends `text` to `to` and returns at once (the message waits in the durable outbox).
    async fn say(&self, out: &mut impl Write, to: &AccountId, text: &str) -> Result<MessageId> {
        writeln!(out, "{} writes: {text}", self.name)?;
        Ok(self.client.send_text(to, text).await?)
    }

    /// Waits until the relay has accepted message `id`.
    async fn wait_delivered(&mut self, id: MessageId) -> Result<()> {
        loop {
            match self.next_event().await? {
                ClientEvent::Delivered { message_id, .. } if message_id == id => return Ok(()),
                ClientEvent::SendFailed { error, .. } => bail!("sending failed: {error}"),
                ClientEvent::Message { from, body, .. } => self
                    .unread
                    .push_back((from, body.as_text().unwrap_or_default().to_owned())),
                _ => {}
            }
        }
    }

    /// Waits for the next message and prints it.
    async fn read(&mut self, out: &mut impl Write) -> Result<String> {
        let (from, text) = loop {
            if let Some(m) = self.unread.pop_front() {
                break m;
            }
            match self.next_event().await? {
                ClientEvent::Message { from, body, .. } => {
                    break (from, body.as_text().unwrap_or_default().to_owned());
                }
                ClientEvent::SafetyNumberChanged { account, .. } => writeln!(
                    out,
                    "{}: WARNING, the safety number with {} changed",
                    self.name,
                    account.as_str()
                )?,
                _ => {}
            }
        };
        writeln!(
            out,
            "    {} received from {} (device {}): {text}",
            self.name,
            from.account.as_str(),
            from.device.0
        )?;
        Ok(text)
    }
}

/// Shows what the running relay holds for the shop's device: a snapshot of its database
/// (`sealpost-relay backup`, which never takes the running relay's lock) is opened in a
/// scratch directory. Opening the live database next to the relay would be a second writer,
/// and the store refuses it (`StoreError::InUse`).
async fn show_relay_view(
    out: &mut impl Write,
    relay: &RelayConfig,
    scratch: &Path,
    shop: &AccountId,
    secret: &str,
) -> Result<()> {
    let (config, to) = (relay.clone(), scratch.to_path_buf());
    tokio::task::spawn_blocking(move || backup(&config, &to)).await??;
    let db = SqliteStore::open(scratch.join(DB_FILE))?;
    let queued = db
        .mailbox(&DeviceAddress::new(shop.clone(), DeviceId(1)), 0, 16)
        .await;
    db.close();
    let queued = queued?;
    if queued.is_empty() {
        bail!("the relay holds nothing for the shop");
    }
    for e in &queued {
        let visible = e
            .envelope
            .windows(secret.len())
            .any(|w| w == secret.as_bytes());
        writeln!(
            out,
            "    the relay stores for the shop: an envelope from {} of {} bytes: {}… (plaintext visible: {})",
            e.sender.account.as_str(),
            e.envelope.len(),
            hex(e.envelope.get(..24).unwrap_or(&e.envelope)),
            if visible { "YES" } else { "no, ciphertext" }
        )?;
        if visible {
            bail!("the relay could read the message");
        }
    }
    writeln!(
        out,
        "    (the relay sees who writes to whom and when, never what)"
    )?;
    Ok(())
}

async fn conversation(out: &mut impl Write) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay_dir = dir.path().join("relay");
    let phones = Arc::new(Phones::default());
    let mut config = RelayConfig::for_tests(&relay_dir);
    config.listen = "127.0.0.1:0".parse()?;
    config.code_sender = Some(phones.clone());
    config.shutdown_grace_secs = 2;
    let relay = Relay::start(config.clone()).await?;
    writeln!(out, "relay listening on {}", relay.local_addr())?;
    writeln!(
        out,
        "relay public-key pin (clients pin it): {}",
        relay.spki_pin()
    )?;
    let client_config = ClientConfig::new(relay.local_addr(), relay.spki_pin());

    // Each device keeps an encrypted SQLite store; the key would live in the platform keystore.
    let shop_key = StoreKey::generate();
    let open_shop_store = || {
        Store::open_sqlite(
            dir.path().join("shop.db"),
            StoreSecret::Key(shop_key.clone()),
        )
    };
    let customer_store = Store::open_sqlite(
        dir.path().join("customer.db"),
        StoreSecret::Key(StoreKey::generate()),
    )
    .await?;
    let mut customer = Party::register(
        "customer",
        CUSTOMER,
        &client_config,
        &phones,
        customer_store,
    )
    .await?;
    let mut shop = Party::register(
        "shop",
        SHOP,
        &client_config,
        &phones,
        open_shop_store().await?,
    )
    .await?;
    for p in [&customer, &shop] {
        writeln!(
            out,
            "{} registered {} as device {}",
            p.name,
            p.account.as_str(),
            p.client.address().device.0
        )?;
    }
    let (c, s) = (customer.account.clone(), shop.account.clone());

    customer
        .say(
            out,
            &s,
            "Hi! Where is my order #4471? It was due yesterday.",
        )
        .await?;
    shop.read(out).await?;
    shop.say(
        out,
        &c,
        "Sorry for the wait! It left our warehouse this morning, tracking number 1Z999AA10123456784.",
    )
    .await?;
    customer.read(out).await?;
    customer
        .say(out, &s, "Great. Can I still change the delivery address?")
        .await?;
    shop.read(out).await?;
    shop.say(
        out,
        &c,
        "Yes, until it reaches the local depot tomorrow. What is the new address?",
    )
    .await?;
    customer.read(out).await?;

    // The shop's device goes offline; the relay keeps the next message for it.
    writeln!(out, "shop goes offline")?;
    let Party {
        client: shop_client,
        ..
    } = shop;
    shop_client.shutdown().await;
    let secret = "12 Harbour Street, Springfield";
    let id = customer
        .say(out, &s, &format!("{secret}. Thank you!"))
        .await?;
    customer.wait_delivered(id).await?;
    show_relay_view(out, &config, &dir.path().join("relay-view"), &s, secret).await?;

    writeln!(out, "shop comes back online")?;
    let (client, events) = Client::open(open_shop_store().await?, client_config.clone()).await?;
    let mut shop = Party {
        name: "shop",
        account: s.clone(),
        client,
        events,
        unread: VecDeque::new(),
    };
    shop.read(out).await?;
    shop.say(out, &c, "Done: the parcel will go to Harbour Street.")
        .await?;
    customer.read(out).await?;

    // Both screens show the same 60 digits; scanning the other's QR code checks them too.
    let on_customer = customer.client.safety_number(&s, DeviceId(1)).await?;
    let on_shop = shop.client.safety_number(&c, DeviceId(1)).await?;
    if on_customer.digits() != on_shop.digits() {
        bail!("safety numbers differ");
    }
    on_customer.verify_scanned(&on_shop.qr_payload())?;
    writeln!(
        out,
        "safety number on both screens: {}",
        on_customer.display_groups().join(" ")
    )?;
    writeln!(
        out,
        "the customer scanned the shop's QR code: identities verified"
    )?;

    customer.client.shutdown().await;
    shop.client.shutdown().await;
    relay.shutdown().await;
    writeln!(out, "clients and relay shut down cleanly")?;
    Ok(())
}

/// The whole example, writing its narration to `out`.
pub fn run(out: &mut impl Write) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(conversation(out))
}

fn main() -> Result<()> {
    run(&mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_customer_and_the_shop_talk() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            "relay public-key pin (clients pin it): sha256/",
            "shop received from +15550100999 (device 1): Hi! Where is my order #4471?",
            "customer received from +15550100200 (device 1): Sorry for the wait!",
            "shop received from +15550100999 (device 1): Great. Can I still change",
            "plaintext visible: no, ciphertext",
            "shop received from +15550100999 (device 1): 12 Harbour Street, Springfield.",
            "customer received from +15550100200 (device 1): Done:",
            "identities verified",
            "shut down cleanly",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // The relay's view never contains the plaintext.
        for line in text.lines().filter(|l| l.contains("the relay stores")) {
            assert!(!line.contains("Harbour"), "{line}");
        }
        let groups = text
            .lines()
            .find_map(|l| l.strip_prefix("safety number on both screens: "))
            .unwrap();
        assert_eq!(groups.split(' ').count(), 12);
    }
}
