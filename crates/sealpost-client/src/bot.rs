//! A business bot in a few lines: [`BusinessBot`] reads the customer messages routed to
//! this business device from the durable history, in order, and answers, hands over or
//! notes through the desk (spec/business.md 7-9).
//!
//! The bot keeps a *cursor*, a position in this device's history: everything at or below
//! it has been yielded. Events only wake the bot up, so a [`ClientEvent::Lagged`](crate::ClientEvent::Lagged) (a bot
//! that reads slower than customers write) loses nothing, and a bot re-created with the
//! cursor it saved ([`BusinessBot::cursor`], [`BusinessBot::with_cursor`]) goes on where
//! it stopped. Each message says whether its conversation is still this device's
//! ([`BotMessage::mine`]), and [`BusinessBot::reply`] refuses to answer a conversation an
//! agent has taken.

use crate::content::{MessageBody, MessageId};
use crate::error::ClientError;
use crate::event::EventReceiver;
use crate::store::{Direction, HistoryEntry};
use crate::{Client, DeviceRole};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
use std::collections::VecDeque;

/// History entries read per store call while looking for the next customer message.
pub const BOT_READ_BATCH: usize = 64;

/// Why a bot action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BotError {
    /// The conversation is no longer this device's (an agent claimed it, or it was handed
    /// on): the bot must not answer it.
    #[error("the conversation is no longer routed to this device")]
    NotMine,
    /// No other device of the business has the requested role.
    #[error("no device of the business has the role {0:?}")]
    NoDeviceWithRole(DeviceRole),
    /// The client refused or failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A customer message routed to this device, as [`BusinessBot::next`] yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotMessage {
    /// The customer's account (where replies go).
    pub customer: AccountId,
    /// The customer's device that sent it.
    pub from: DeviceAddress,
    /// The content.
    pub body: MessageBody,
    /// The customer's message id.
    pub message_id: MessageId,
    /// When the relay accepted it (Unix ms, relay clock).
    pub timestamp: u64,
    /// Its position in this device's history (the cursor after it).
    pub position: u64,
    /// Whether the conversation was this device's when the message was read: its route
    /// names this device, or it has no route of its own and the business's default route
    /// names it (or there is no default route: every device receives).
    pub mine: bool,
    /// Whether no author was recorded for it: a message that reached this device in a
    /// handoff rather than from the customer (or one from an account without a device
    /// list). A bot that takes a conversation back may leave these unanswered.
    pub handed_over: bool,
}

impl BotMessage {
    /// The text, for a text message.
    pub fn text(&self) -> Option<&str> {
        self.body.as_text()
    }
}

/// A business device run as a bot: yields each customer message routed to it exactly
/// once, in history order, from the durable history (events only wake it up, so
/// [`ClientEvent::Lagged`](crate::ClientEvent::Lagged) loses nothing), and answers, hands over and notes through
/// [`Client`]'s desk. It keeps a cursor, a position in the history: save
/// [`BusinessBot::cursor`] after handling a message and re-create the bot with
/// [`BusinessBot::with_cursor`] to go on where it stopped. Each message says whether its
/// conversation is still this device's ([`BotMessage::mine`]); [`BusinessBot::reply`]
/// refuses one an agent has taken.
///
/// ```no_run
/// use sealpost_client::{BusinessBot, Client, DeviceRole, EventReceiver};
///
/// # async fn bot(client: Client, events: EventReceiver) -> Result<(), Box<dyn std::error::Error>> {
/// let mut bot = BusinessBot::new(client, events);
/// while let Some(msg) = bot.next().await? {
///     if !msg.mine {
///         continue; // an agent has this conversation now
///     }
///     match msg.text() {
///         Some(t) if t.contains("person") => {
///             bot.reply(&msg, "A colleague will answer here.").await?;
///             bot.hand_over_to_role(&msg.customer, DeviceRole::Agent, "asked for a person")
///                 .await?;
///         }
///         _ => {
///             bot.reply(&msg, "Ask me where your order is.").await?;
///         }
///     }
///     // Saved after handling: a bot restarted from it answers nothing twice.
///     let _save = bot.cursor();
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct BusinessBot {
    client: Client,
    events: EventReceiver,
    /// Everything at or below it has been yielded or skipped.
    cursor: u64,
    /// The position the history has been read to.
    scanned: u64,
    pending: VecDeque<HistoryEntry>,
    /// The business's default route as last fetched.
    default_route: Option<Vec<DeviceId>>,
}

impl BusinessBot {
    /// A bot on `client` (a device of a business account) reading its history from the
    /// start; `events` is the client's receiver, used only to wake up.
    pub fn new(client: Client, events: EventReceiver) -> Self {
        Self::with_cursor(client, events, 0)
    }

    /// A bot that goes on after `cursor` (a value of [`BusinessBot::cursor`] saved earlier).
    pub fn with_cursor(client: Client, events: EventReceiver, cursor: u64) -> Self {
        Self {
            client,
            events,
            cursor,
            scanned: cursor,
            pending: VecDeque::new(),
            default_route: None,
        }
    }

    /// The position to save: every message at or below it has been yielded. Save it after
    /// handling a message; a bot re-created from it yields the next message.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The client (for anything the bot API does not cover).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The next customer message routed to this device, oldest first; waits for one.
    /// Skips this device's own sends, other devices' sends and traffic among the
    /// business's devices. `None` once the client has stopped and the history holds
    /// nothing more.
    pub async fn next(&mut self) -> Result<Option<BotMessage>, ClientError> {
        let own = self.client.address().account.clone();
        loop {
            if let Some(customer) = self.pending.front().map(|e| e.peer.account.clone()) {
                // Looked up before the entry is taken, so that a cancelled call loses nothing.
                let mine = self.is_mine(&customer).await?;
                let Some(entry) = self.pending.pop_front() else {
                    continue;
                };
                self.cursor = if self.pending.is_empty() {
                    self.scanned
                } else {
                    entry.seq
                };
                return Ok(Some(BotMessage {
                    customer,
                    handed_over: entry.author.is_none(),
                    from: entry.peer,
                    body: entry.body,
                    message_id: entry.message_id,
                    timestamp: entry.timestamp,
                    position: entry.seq,
                    mine,
                }));
            }
            let page = self
                .client
                .history_after(self.scanned, BOT_READ_BATCH)
                .await?;
            let advanced = page.next > self.scanned;
            self.scanned = page.next;
            self.pending.extend(
                page.entries
                    .into_iter()
                    .filter(|e| e.direction == Direction::Incoming && e.peer.account != own),
            );
            if self.pending.is_empty() {
                self.cursor = self.scanned;
            }
            if advanced || !self.pending.is_empty() {
                continue;
            }
            // Nothing new: wait for any event (a message, a handoff, a lag signal). An
            // entry committed after the read above has its event queued after it.
            if self.events.recv().await.is_none() {
                let page = self.client.history_after(self.scanned, 1).await;
                match page {
                    Ok(p) if p.next > self.scanned => continue,
                    _ => return Ok(None),
                }
            }
        }
    }

    /// Whether the conversation with `customer` is this device's now (see
    /// [`BotMessage::mine`]).
    pub async fn is_mine(&mut self, customer: &AccountId) -> Result<bool, ClientError> {
        let me = self.client.address().device;
        let conversation = self.client.conversation(customer).await?;
        if !conversation.assigned_to.is_empty() {
            return Ok(conversation.mine);
        }
        let own = self.client.address().account.clone();
        // The default route as the relay serves it; offline, as last fetched.
        if let Ok(Some(profile)) = self.client.business_profile(&own).await {
            self.default_route = Some(profile.routed_to);
        }
        Ok(match &self.default_route {
            Some(devices) => devices.is_empty() || devices.contains(&me),
            None => true,
        })
    }

    /// Answers `msg`'s customer with `text`, unless the conversation is no longer this
    /// device's ([`BotError::NotMine`]). Returns the reply's message id.
    pub async fn reply(&mut self, msg: &BotMessage, text: &str) -> Result<MessageId, BotError> {
        if !self.is_mine(&msg.customer).await? {
            return Err(BotError::NotMine);
        }
        Ok(self.client.send_text(&msg.customer, text).await?)
    }

    /// Hands the conversation with `customer` to `to` with the conversation so far and
    /// `note` (never shown to the customer): [`Client::transfer`]. Returns the route
    /// version.
    pub async fn hand_over(
        &self,
        customer: &AccountId,
        to: &[DeviceId],
        note: &str,
    ) -> Result<u64, BotError> {
        Ok(self.client.transfer(customer, to, note).await?)
    }

    /// [`BusinessBot::hand_over`] to every other device of the business with `role` (for
    /// example [`DeviceRole::Agent`]), from the account's signed device list.
    pub async fn hand_over_to_role(
        &self,
        customer: &AccountId,
        role: DeviceRole,
        note: &str,
    ) -> Result<u64, BotError> {
        let me = self.client.address().device;
        let to: Vec<DeviceId> = self
            .client
            .own_devices()
            .await?
            .into_iter()
            .filter(|d| d.role == role && d.id != me)
            .map(|d| d.id)
            .collect();
        if to.is_empty() {
            return Err(BotError::NoDeviceWithRole(role));
        }
        self.hand_over(customer, &to, note).await
    }

    /// An internal note about the conversation with `customer` ([`Client::add_note`]).
    pub async fn note(&self, customer: &AccountId, text: &str) -> Result<(), BotError> {
        Ok(self.client.add_note(customer, text).await?)
    }
}
