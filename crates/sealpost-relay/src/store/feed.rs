//! The mail feed: how a store with early delivery hands the envelopes it writes to the relay
//! before their commit is durable (see the `store` module documentation for the contract).

use super::StoredEnvelope;
use sealpost_wire::AccountId;
use tokio::sync::mpsc;

/// The envelopes of one message as written: `(device_id, envelope)` for each recipient
/// device of `recipient`, in increasing `server_id` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The recipient account.
    pub recipient: AccountId,
    /// The envelopes, with the device each is for.
    pub envelopes: Vec<(u32, StoredEnvelope)>,
}

/// The receiving end of a store's feed ([`super::Store::subscribe`]). Batches arrive in the
/// order the store wrote them; within and across batches, the envelopes of one device are in
/// increasing `server_id` order.
#[derive(Debug)]
pub struct MailFeed {
    rx: mpsc::UnboundedReceiver<Vec<Written>>,
}

impl MailFeed {
    /// The next batch (the messages of one write group, in write order); `None` once the
    /// store is closed.
    pub async fn recv(&mut self) -> Option<Vec<Written>> {
        self.rx.recv().await
    }
}

/// The publishing end, kept by the store. Publishing never blocks (the feed is unbounded: the
/// relay's dispatcher only routes each batch to in-memory inboxes, so it keeps up with the
/// writer) and may be called from any thread.
#[derive(Clone, Debug)]
pub struct MailPublisher {
    tx: mpsc::UnboundedSender<Vec<Written>>,
}

impl MailPublisher {
    /// Publishes a batch; `false` if the subscriber is gone (then stop publishing).
    pub fn publish(&self, batch: Vec<Written>) -> bool {
        batch.is_empty() || self.tx.send(batch).is_ok()
    }
}

/// A connected publisher and feed.
pub fn mail_feed() -> (MailPublisher, MailFeed) {
    let (tx, rx) = mpsc::unbounded_channel();
    (MailPublisher { tx }, MailFeed { rx })
}
