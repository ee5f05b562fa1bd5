//! A customer links a desktop to the account of their phone, the desktop receives the
//! phone's history, the customer talks to a shop from both; then the phone unlinks the
//! desktop (spec/devices.md).
//!
//! Run with `cargo run -p sealpost-examples --example phone_and_desktop`.
//!
//! A relay runs in-process (QUIC on 127.0.0.1, a temporary data directory, verification
//! codes captured instead of sent). The customer registers on a phone, which makes the
//! account key and publishes the account's signed device list. A new desktop shows an
//! invitation (the text of a QR code); the phone links it by signing the next list; the
//! desktop joins and receives the phone's history bundle (the earlier conversation with the
//! shop). The shop's message then reaches both devices, the desktop answers, the phone shows
//! that answer as sent by the desktop (a sent copy), and the shop is told that the customer
//! added a device (an event, not a safety-number warning: safety numbers are over account
//! keys). Finally the phone unlinks the desktop: the relay logs it out, and the shop's next
//! message reaches the phone alone.
// Example code: printing is its purpose, and its test unwraps.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use anyhow::{Result, bail};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientEvent, DeviceAddress, EventReceiver, Store, StoreKey,
    StoreSecret,
};
use sealpost_examples::Phones;
use sealpost_relay::{Relay, RelayConfig};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CUSTOMER: &str = "+15550100999";
const SHOP: &str = "+15550100200";
/// How long to wait for any one step (generous: this also runs as a test on slow CI).
const WAIT: Duration = Duration::from_secs(30);

/// A device: its client and its events.
struct Device {
    name: &'static str,
    client: Client,
    events: EventReceiver,
}

impl Device {
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
        let (client, events) = Client::register(store, config.clone(), account, &code).await?;
        Ok(Self {
            name,
            client,
            events,
        })
    }

    /// Waits for an event that `pick` takes, printing the device-list events on the way.
    async fn wait_for<T>(
        &mut self,
        out: &mut impl Write,
        what: &str,
        mut pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Result<T> {
        loop {
            let event = match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => bail!(
                    "the {}'s client stopped while waiting for {what}",
                    self.name
                ),
                Err(_) => bail!(
                    "the {} waited {} s for {what} in vain",
                    self.name,
                    WAIT.as_secs()
                ),
            };
            if let ClientEvent::DevicesChanged {
                account,
                added,
                removed,
                ..
            } = &event
            {
                for d in added {
                    writeln!(
                        out,
                        "    {} is told: {} added a device: {} (device {})",
                        self.name,
                        account.as_str(),
                        d.name,
                        d.id.0
                    )?;
                }
                for d in removed {
                    writeln!(
                        out,
                        "    {} is told: {} removed a device: {} (device {})",
                        self.name,
                        account.as_str(),
                        d.name,
                        d.id.0
                    )?;
                }
            }
            if let ClientEvent::SafetyNumberChanged { .. } = &event {
                bail!("the {} saw a safety-number change", self.name);
            }
            if let Some(t) = pick(&event) {
                return Ok(t);
            }
        }
    }

    /// Waits for the next message and prints it.
    async fn read(&mut self, out: &mut impl Write) -> Result<(DeviceAddress, String)> {
        let (from, text) = self
            .wait_for(out, "a message", |ev| match ev {
                ClientEvent::Message { from, body, .. } => {
                    Some((from.clone(), body.as_text().unwrap_or_default().to_owned()))
                }
                _ => None,
            })
            .await?;
        writeln!(
            out,
            "    {} received from {} (device {}): {text}",
            self.name,
            from.account.as_str(),
            from.device.0
        )?;
        Ok((from, text))
    }

    /// Sends `text` and waits until the relay accepted it.
    async fn say(&mut self, out: &mut impl Write, to: &AccountId, text: &str) -> Result<()> {
        writeln!(out, "{} writes: {text}", self.name)?;
        let id = self.client.send_text(to, text).await?;
        self.wait_for(out, "the relay's acceptance", |ev| match ev {
            ClientEvent::Delivered { message_id, .. } if *message_id == id => Some(()),
            _ => None,
        })
        .await
    }
}

async fn open_store(dir: &Path, name: &str) -> Result<Store> {
    // The key would live in the platform keystore.
    Ok(Store::open_sqlite(dir.join(name), StoreSecret::Key(StoreKey::generate())).await?)
}

async fn devices(out: &mut impl Write, who: &Device) -> Result<()> {
    let listed = who.client.own_devices().await?;
    writeln!(
        out,
        "    the customer's signed device list, seen from the {}:",
        who.name
    )?;
    for d in listed {
        writeln!(out, "      device {}: {} ({:?})", d.id.0, d.name, d.role)?;
    }
    Ok(())
}

async fn story(out: &mut impl Write) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let phones = Arc::new(Phones::default());
    let mut relay_config = RelayConfig::for_tests(dir.path().join("relay"));
    relay_config.listen = "127.0.0.1:0".parse()?;
    relay_config.code_sender = Some(phones.clone());
    relay_config.shutdown_grace_secs = 2;
    let relay = Relay::start(relay_config).await?;
    writeln!(out, "relay listening on {}", relay.local_addr())?;
    let config = ClientConfig::new(relay.local_addr(), relay.spki_pin());
    let (customer, shop_account) = (AccountId::new(CUSTOMER)?, AccountId::new(SHOP)?);

    let mut phone = Device::register(
        "phone",
        CUSTOMER,
        &config,
        &phones,
        open_store(dir.path(), "phone.db").await?,
    )
    .await?;
    let mut shop = Device::register(
        "shop",
        SHOP,
        &config,
        &phones,
        open_store(dir.path(), "shop.db").await?,
    )
    .await?;
    writeln!(out, "the customer registered a phone, the shop its till")?;
    phone
        .say(out, &shop_account, "Hi! Did my order #4471 ship?")
        .await?;
    shop.read(out).await?;

    // The desktop: a provisioning address at the relay, and the invitation it shows.
    let pending = Client::link(open_store(dir.path(), "desktop.db").await?, config.clone()).await?;
    let invitation = pending.invitation_text();
    writeln!(
        out,
        "the desktop shows a QR code: {}…",
        invitation.get(..30).unwrap_or(&invitation)
    )?;
    // The phone scans it and signs the next device list with the desktop on it.
    let id = phone.client.link_device(&invitation, "Desktop").await?;
    writeln!(out, "the phone linked the desktop as device {}", id.0)?;
    let (client, events) = pending.complete().await?;
    let mut desktop = Device {
        name: "desktop",
        client,
        events,
    };
    writeln!(
        out,
        "the desktop joined {} as device {}",
        desktop.client.address().account.as_str(),
        desktop.client.address().device.0
    )?;
    devices(out, &desktop).await?;
    // Right after linking, the phone sent the desktop its recent history (contacts with
    // their verification state, and messages) through their new session: the earlier
    // conversation with the shop shows on the desktop too.
    let (contacts, messages) = desktop
        .wait_for(out, "the history bundle", |ev| match ev {
            ClientEvent::HistoryImported {
                contacts,
                messages,
                last: true,
                ..
            } => Some((*contacts, *messages)),
            _ => None,
        })
        .await?;
    writeln!(
        out,
        "the desktop imported the phone's history: {contacts} contact(s), {messages} message(s)"
    )?;
    for entry in desktop.client.history(&shop_account, 10).await? {
        writeln!(
            out,
            "    desktop history with the shop: {:?}: {}",
            entry.direction,
            entry.body.as_text().unwrap_or_default()
        )?;
    }

    // The shop's answer reaches both devices (the shop learns the new list first: the
    // relay refuses a send to the old device set, the SDK fetches the list and retries).
    shop.say(out, &customer, "Yes, it left our warehouse this morning.")
        .await?;
    phone.read(out).await?;
    desktop.read(out).await?;
    desktop
        .say(out, &shop_account, "Great, thanks! (typed on my desktop)")
        .await?;
    let (from, _) = shop.read(out).await?;
    if from.device != id {
        bail!(
            "the shop got the desktop's message from device {}",
            from.device.0
        );
    }
    // The desktop copied what it sent to the phone, so both show the whole conversation.
    let (device, text) = phone
        .wait_for(out, "the copy of the desktop's message", |ev| match ev {
            ClientEvent::SentByOtherDevice { device, body, .. } => {
                Some((device.0, body.as_text().unwrap_or_default().to_owned()))
            }
            _ => None,
        })
        .await?;
    writeln!(out, "    phone shows what device {device} sent: {text}")?;
    let phone_number = phone
        .client
        .safety_number(&shop_account, sealpost_client::DeviceId(1))
        .await?;
    let desktop_number = desktop
        .client
        .safety_number(&shop_account, sealpost_client::DeviceId(1))
        .await?;
    writeln!(
        out,
        "safety number with the shop, on the phone and on the desktop: {}",
        if phone_number.digits() == desktop_number.digits() {
            "the same (it is over the account keys)"
        } else {
            "DIFFERENT"
        }
    )?;

    // The phone unlinks the desktop: the relay logs it out at once.
    phone.client.remove_device(id).await?;
    writeln!(out, "the phone unlinked the desktop")?;
    desktop
        .wait_for(out, "being logged out", |ev| {
            matches!(ev, ClientEvent::Deregistered).then_some(())
        })
        .await?;
    writeln!(out, "    the desktop is logged out")?;
    shop.say(out, &customer, "It arrives on Thursday.").await?;
    phone.read(out).await?;
    devices(out, &phone).await?;

    for d in [phone, desktop, shop] {
        d.client.shutdown().await;
    }
    relay.shutdown().await;
    Ok(())
}

/// Runs the story, printing to `out`.
pub fn run(out: &mut impl Write) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(story(out))
}

fn main() -> Result<()> {
    run(&mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_desktop_is_linked_used_and_unlinked() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            "the phone linked the desktop as device 2",
            "the desktop joined +15550100999 as device 2",
            "device 2: Desktop (Linked)",
            "the desktop imported the phone's history: 1 contact(s), 1 message(s)",
            "desktop history with the shop: Outgoing: Hi! Did my order #4471 ship?",
            "shop is told: +15550100999 added a device: Desktop (device 2)",
            "phone received from +15550100200 (device 1): Yes, it left our warehouse",
            "desktop received from +15550100200 (device 1): Yes, it left our warehouse",
            "shop received from +15550100999 (device 2): Great, thanks!",
            "phone shows what device 2 sent: Great, thanks! (typed on my desktop)",
            "the same (it is over the account keys)",
            "the desktop is logged out",
            "phone received from +15550100200 (device 1): It arrives on Thursday.",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // After the unlink the phone's list names the phone alone.
        let last_list = text.rsplit("signed device list").next().unwrap();
        assert!(!last_list.contains("Desktop"), "{text}");
    }
}
