//! Runnable examples of Sealpost; see `examples/`. This library holds what they share.

use sealpost_relay::{CodeSender, VerificationCode};
use sealpost_wire::AccountId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Stands in for the SMS gateway: keeps the last verification code sent to each number.
#[derive(Debug, Default)]
pub struct Phones(Mutex<HashMap<String, String>>);

impl CodeSender for Phones {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        if let Ok(mut inbox) = self.0.lock() {
            inbox.insert(account.as_str().to_owned(), code.as_str().to_owned());
        }
    }
}

impl Phones {
    /// Takes the code last sent to `phone`.
    pub fn read_code(&self, phone: &str) -> anyhow::Result<String> {
        self.0
            .lock()
            .ok()
            .and_then(|mut inbox| inbox.remove(phone))
            .ok_or_else(|| anyhow::anyhow!("no verification code arrived"))
    }
}

/// What the business examples (`support_bot`, `support_desk`) share: registering and linking
/// devices with in-memory stores, and waiting for events.
pub mod business {
    use anyhow::{Result, bail};
    use sealpost_client::{
        AccountId, Client, ClientConfig, ClientEvent, DeviceRole, EventReceiver, Store, StoreKey,
    };
    use std::time::Duration;

    /// How long a step may take (generous: the examples also run as tests on CI).
    pub const WAIT: Duration = Duration::from_secs(30);

    /// Registers `phone` with the code `phones` received. In-memory stores keep the
    /// examples short; a real device uses `Store::open_sqlite`.
    pub async fn register(
        phone: &str,
        config: &ClientConfig,
        phones: &super::Phones,
    ) -> Result<(Client, EventReceiver)> {
        let account = AccountId::new(phone)?;
        Client::request_code(config, &account).await?;
        let code = phones.read_code(phone)?;
        let store = Store::in_memory(StoreKey::generate())?;
        Ok(Client::register(store, config.clone(), account, &code).await?)
    }

    /// Links a new device to `owner`'s account as `name` with `role`.
    pub async fn link(
        owner: &Client,
        config: &ClientConfig,
        name: &str,
        role: DeviceRole,
    ) -> Result<(Client, EventReceiver)> {
        let pending = Client::link(Store::in_memory(StoreKey::generate())?, config.clone()).await?;
        owner
            .link_device_as(&pending.invitation_text(), name, role)
            .await?;
        Ok(pending.complete().await?)
    }

    /// Waits for the first event `pick` takes (at most [`WAIT`]); a failed send ends the
    /// wait with its error.
    pub async fn next<T>(
        events: &mut EventReceiver,
        what: &str,
        pick: impl Fn(ClientEvent) -> Option<T>,
    ) -> Result<T> {
        loop {
            match tokio::time::timeout(WAIT, events.recv()).await {
                Ok(Some(ClientEvent::SendFailed { error, .. })) => {
                    bail!("sending failed: {error}")
                }
                Ok(Some(ev)) => {
                    if let Some(t) = pick(ev) {
                        return Ok(t);
                    }
                }
                Ok(None) => bail!("the client stopped while waiting for {what}"),
                Err(_) => bail!("no {what} within {} s", WAIT.as_secs()),
            }
        }
    }

    /// How a customer's app shows a business device's role: a bot as a bot, everyone else
    /// as a person with their role (spec/business.md section 5).
    pub fn role(r: DeviceRole) -> &'static str {
        match r {
            DeviceRole::Bot => "bot",
            DeviceRole::Agent => "agent",
            DeviceRole::Admin => "admin",
            DeviceRole::Owner => "owner",
            _ => "person",
        }
    }
}
