//! Events the client reports to the application.

use crate::content::{MessageBody, MessageId};
use crate::error::{ClientError, DeviceListRefusal};
use sealpost_devices::DeviceRole;
use sealpost_session::IdentityKey;
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
use tokio::sync::broadcast;

/// Something the application should know about. Received from the [`EventReceiver`]
/// returned by `Client::register` / `Client::open`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
// `Message` is by far the most frequent event; boxing it would add an allocation per
// message to save a few hundred bytes per queued event.
#[allow(clippy::large_enum_variant)]
pub enum ClientEvent {
    /// Connected and authenticated to the relay.
    Connected,
    /// The connection to the relay ended; the client reconnects with backoff.
    Disconnected,
    /// A message, already committed to the store. Each message is reported exactly once,
    /// in the order its sender's relay accepted it (per sending device).
    Message {
        /// The sending device.
        from: DeviceAddress,
        /// The sending device as its account's signed device list names it (id, display
        /// name, role: e.g. "Lina, support", `agent`), from the list pinned for the
        /// sender's account when the envelope was accepted (verified, and the envelope's
        /// session identity checked against the entry): a business's customer always knows
        /// who answered. `None` for an account without a list (a version-1 account).
        /// Nothing in the message content can set it (spec/devices.md 8.9).
        author: Option<DeviceInfo>,
        /// The sender's identity as authenticated by the session.
        identity: IdentityKey,
        /// The content.
        body: MessageBody,
        /// The sender's message id.
        message_id: MessageId,
        /// When the relay accepted it (Unix ms, relay clock).
        timestamp: u64,
    },
    /// Another device of this account sent a message (its sent copy arrived, spec/client-store.md
    /// section 6.1), already committed to the history as an outgoing, delivered message to
    /// `to`. Reported once per message, however many copies arrive.
    SentByOtherDevice {
        /// The device of this account that sent it (on the account's own list).
        device: DeviceId,
        /// The account it was sent to.
        to: AccountId,
        /// The original message id (the one the recipient sees).
        message_id: MessageId,
        /// The content.
        body: MessageBody,
        /// When the relay accepted the original (Unix ms, relay clock).
        timestamp: u64,
    },
    /// Another device of this account marked the conversation with `peer` read up to and
    /// including `up_to` (its sync content arrived, spec/client-store.md section 6.3); this
    /// device's read marker moved there ([`crate::Client::read_up_to`]). Reported only when
    /// the marker moved forward: a marker never moves back, and a message not in this
    /// device's history moves nothing.
    ReadOnOtherDevice {
        /// The device of this account that read it (on the account's own list).
        device: DeviceId,
        /// The other account of the conversation.
        peer: AccountId,
        /// The newest message read.
        up_to: MessageId,
    },
    /// Another device of this account deleted messages of the conversation with `peer`
    /// (spec/client-store.md section 6.3): `message_ids` were in this device's history and
    /// have been deleted from it (ids this device did not have are left out; none: no
    /// event). They do not come back from a sent copy or a history bundle.
    DeletedOnOtherDevice {
        /// The device of this account that deleted them (on the account's own list).
        device: DeviceId,
        /// The other account of the conversation.
        peer: AccountId,
        /// The messages deleted here, in history order.
        message_ids: Vec<MessageId>,
    },
    /// Another device of this account deleted the whole conversation with `peer`
    /// (spec/client-store.md section 6.3): this device's history with `peer` and its read
    /// marker have been deleted. Not reported when there was nothing to delete.
    ConversationDeletedOnOtherDevice {
        /// The device of this account that deleted it (on the account's own list).
        device: DeviceId,
        /// The other account of the conversation.
        peer: AccountId,
    },
    /// A part of the history bundle that this account's key holder sends a newly linked
    /// device (spec/devices.md 8.7, spec/client-store.md section 6.2) was applied, in one
    /// commit: `contacts` contact records added something this device did not know (a
    /// pinned list, or at least one device), `messages` messages became history entries
    /// (no [`ClientEvent::Message`] is reported for them), `invalid` records were skipped
    /// because they did not verify or decode. Records of things this device already knew
    /// are neither imported nor counted. One event per part; `last` is set on the bundle's
    /// last part (parts may arrive in any order, so it does not mean every part arrived).
    HistoryImported {
        /// Contact records imported.
        contacts: u32,
        /// Messages imported.
        messages: u32,
        /// Records skipped as invalid.
        invalid: u32,
        /// Whether this is the bundle's last part.
        last: bool,
    },
    /// A device of `account` presented an identity this device has not seen for that
    /// account before (a reinstalled app, a new phone, a new device — or an attack):
    /// show the user the new safety number (`Client::safety_number`).
    SafetyNumberChanged {
        /// The account.
        account: AccountId,
        /// The device with the new identity.
        device: DeviceId,
    },
    /// A device of an account whose safety number the user **verified** presented a new
    /// identity (or a new device appeared). Sending to the account is held — messages stay
    /// queued — until the user compares the new safety number and calls
    /// `Client::mark_verified`, or accepts it with `Client::approve_identity`.
    VerifiedIdentityChanged {
        /// The account.
        account: AccountId,
        /// The device with the new identity.
        device: DeviceId,
    },
    /// The relay accepted an outgoing message for delivery (durably queued for every
    /// recipient device) and it has left the outbox.
    Delivered {
        /// The message id returned by `send_text`/`send_bytes`.
        message_id: MessageId,
        /// Relay acceptance time (Unix ms, relay clock).
        timestamp: u64,
    },
    /// An outgoing message was given up for good and removed from the outbox: a permanent
    /// error (e.g. unknown recipient, no reachable device, a stored record of the recipient
    /// that does not open; [`ClientError::is_permanent`]) or
    /// [`ClientError::SendAttemptsExhausted`] after transient ones.
    SendFailed {
        /// The message id.
        message_id: MessageId,
        /// Why.
        error: ClientError,
    },
    /// An outbox entry did not open or decode (modified on disk, or written by another
    /// key): it was deleted, since neither its message nor its recipient can be known. Its
    /// history entry, if any, stays queued.
    UnreadableOutboxEntry {
        /// Why it did not open.
        error: crate::error::StoreError,
    },
    /// A delivered envelope could not be decrypted or was malformed; it was dropped.
    Undecryptable {
        /// The sending device as stated by the relay.
        from: DeviceAddress,
        /// The message id as stated by the relay.
        message_id: MessageId,
    },
    /// The store was restored from an older copy of itself (a backup, a copied app
    /// directory): the relay has accepted sends from this device that the store does not know
    /// it made (spec/client-store.md section 9). Before anything was sent on this connection,
    /// every existing session was set aside for sending (kept for decrypting); the next
    /// message to each device starts a new session, and those peers see
    /// [`ClientEvent::SessionReset`]. Messages this device received or sent between the
    /// backup and the restore are not in its history; tell the user.
    StoreRolledBack {
        /// The highest `sender_seq` this store had allocated.
        local_sender_seq: u64,
        /// The highest `sender_seq` the relay has accepted from this device.
        relay_sender_seq: u64,
    },
    /// A device with the identity already known for it started a new session while an
    /// established one existed (it restored an older copy of its store, or lost its session
    /// state). Not an identity change: the safety number is the same. Messages it sent on the
    /// old session after its state was lost may be missing.
    SessionReset {
        /// The device.
        peer: DeviceAddress,
    },
    /// The relay no longer knows this device (`AuthFailed`, or the relay closed the
    /// connection because the account was registered on another device or the key holder
    /// unlinked this one). The client stops reconnecting.
    Deregistered,
    /// The relay closed this connection because the same device authenticated on another
    /// connection (application close code 3, spec/relay.md section 3.4): another copy of this
    /// device's store is running somewhere. The client stops reconnecting, so that the two
    /// copies do not keep replacing each other.
    ReplacedByAnotherConnection,
    /// A contact account's signed device list changed (spec/devices.md section 5): devices
    /// were linked, unlinked, renamed or given another role. Not a safety-number change:
    /// safety numbers of accounts with lists are over the account key, which is unchanged.
    DevicesChanged {
        /// The account.
        account: AccountId,
        /// Devices on the new list only.
        added: Vec<DeviceInfo>,
        /// Devices that are no longer listed: nothing is encrypted to them any more.
        removed: Vec<DeviceInfo>,
        /// Devices listed before and now whose name or role changed (as they are now).
        changed: Vec<DeviceInfo>,
    },
    /// A contact known as a version-1 account (one device, no account key) published its
    /// first signed device list, which lists the device identity already known for it
    /// (spec/devices.md 8.5): same sessions, a verified contact stays verified (the
    /// verification moves to the account key). Shown once, instead of a safety-number
    /// change.
    SwitchedToLinkedDevices {
        /// The account.
        account: AccountId,
        /// Its devices on the first list.
        devices: Vec<DeviceInfo>,
    },
    /// A device list served for `account` was refused (spec/devices.md section 5: a
    /// rollback, two lists with one version, a reused device id or identity, a list that
    /// does not verify, or no list for an account that had one): the relay, or whoever
    /// serves it, is lying. Nothing was encrypted to it; the message that needed it is
    /// given up ([`ClientEvent::SendFailed`] with [`ClientError::DeviceListRefused`]).
    DeviceListRefused {
        /// The account.
        account: AccountId,
        /// Why.
        reason: DeviceListRefusal,
    },
    /// An envelope came from a device that is not on its account's signed device list, even
    /// after the list was fetched again: dropped (acknowledged, not in the history).
    RejectedUnlistedDevice {
        /// The claimed sender.
        from: DeviceAddress,
        /// The message id as stated by the relay.
        message_id: MessageId,
    },
    /// The app read its events too slowly: the event buffer
    /// ([`crate::ClientConfig::event_capacity`]) overflowed and the oldest `missed` events
    /// were dropped. Processing did not wait: every message is in the store's history
    /// ([`crate::Client::history`]), the state of every sent message in its history entry
    /// ([`crate::MessageStatus`]), the connection in [`crate::Client::connection_state`].
    /// Reload what the app shows from there, then go on reading.
    Lagged {
        /// Events dropped.
        missed: u64,
    },
    /// On a business's customer: the business moved this conversation to other devices (a
    /// conversation route, spec/business.md 7.3): this client now encrypts to `routed_to`
    /// (and the business's owner), and confirmed the transcript it holds to them (9.2).
    RouteChanged {
        /// The business.
        business: AccountId,
        /// The routed devices as the business's signed list names them.
        routed_to: Vec<DeviceInfo>,
    },
    /// On a business's device: a device of the business assigned the conversation with
    /// `customer` (a claim, a transfer or a resolve, spec/business.md 8).
    ConversationAssigned {
        /// The customer.
        customer: AccountId,
        /// The device that assigned it.
        by: DeviceId,
        /// The devices of the new route that the business's list names.
        assigned_to: Vec<DeviceId>,
        /// Whether it was resolved (back on the default route's devices).
        resolved: bool,
    },
    /// On a business's device: the conversation with `customer` so far was handed to this
    /// device (spec/business.md 8.3); its messages are in the history. Whether it is the
    /// conversation the customer had is reported by [`ClientEvent::HandoffChecked`].
    HandoffReceived {
        /// The customer.
        customer: AccountId,
        /// The device that handed it on.
        from: DeviceId,
        /// Its note.
        note: String,
        /// The messages it held.
        messages: usize,
    },
    /// On a business's device: a handoff was checked against the customer's transcript
    /// confirmation (spec/business.md 9.3).
    HandoffChecked {
        /// The customer.
        customer: AccountId,
        /// The result (the worst over the customer's devices that confirmed).
        check: sealpost_devices::HandoffCheck,
    },
    /// On a business's device: an internal note about the conversation with `customer` from
    /// another device of the business (never sent to the customer).
    InternalNote {
        /// The customer.
        customer: AccountId,
        /// The device that wrote it.
        from: DeviceId,
        /// The note.
        text: String,
    },
}

/// A device on a signed device list, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its device id.
    pub id: DeviceId,
    /// Its display name, signed by the account key.
    pub name: String,
    /// Its role (primary or linked; owner, admin, agent or bot for businesses).
    pub role: DeviceRole,
}

impl DeviceInfo {
    pub(crate) fn of(entry: &sealpost_devices::DeviceEntry) -> Self {
        Self {
            id: DeviceId(entry.device_id),
            name: entry.name.as_str().to_owned(),
            role: entry.role,
        }
    }
}

/// When the relay last saw a device of this account, to the day (spec/relay.md 3.12), as
/// [`crate::Client::device_activity`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceActivity {
    /// The device id.
    pub id: DeviceId,
    /// The start (00:00 UTC) of the day on which the relay last saw the device: its
    /// registration or link, its latest authentication, or the end of its latest connection.
    /// `None` when the relay has no record (a device not seen since its relay began keeping
    /// per-device times). The relay gives out only the day; show it as a date.
    pub last_seen_day: Option<std::time::SystemTime>,
}

impl DeviceActivity {
    pub(crate) fn of(d: &sealpost_wire::relay::DeviceLastSeen) -> Self {
        Self {
            id: DeviceId(d.device_id),
            last_seen_day: (d.last_seen_day != 0)
                .then(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.last_seen_day)),
        }
    }
}

/// The receiving end of a client's events: one per client (not `Clone`; every
/// [`crate::Client`] handle shares it).
///
/// The buffer is bounded ([`crate::ClientConfig::event_capacity`]) and never holds up the
/// client: message processing, acknowledgements and sending go on whether or not the app
/// reads. When the app falls behind by more than the capacity, the oldest events are
/// dropped and [`EventReceiver::recv`] returns [`ClientEvent::Lagged`] with how many,
/// then the events that are left, in order. Nothing durable is lost: messages are in the
/// store before they are reported.
///
/// Events queued when the client stops can still be read; then `recv` returns `None`.
#[derive(Debug)]
pub struct EventReceiver {
    rx: broadcast::Receiver<ClientEvent>,
}

impl EventReceiver {
    /// The next event; [`ClientEvent::Lagged`] if events were dropped since the last read;
    /// `None` once the client has stopped (shut down, or every handle dropped) and every
    /// queued event has been read.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(ClientEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is queued (or [`ClientEvent::Lagged`]), without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Some(ClientEvent::Lagged { missed })
            }
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                None
            }
        }
    }
}

/// The sending end: never waits; the oldest events go when the buffer is full.
#[derive(Debug)]
pub(crate) struct EventSender {
    tx: broadcast::Sender<ClientEvent>,
}

impl EventSender {
    pub(crate) fn send(&self, event: ClientEvent) {
        // No receiver means the app dropped it: state is in the store.
        let _ = self.tx.send(event);
    }
}

/// A bounded event channel of at least `capacity` (rounded up to a power of two).
pub(crate) fn channel(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = broadcast::channel(capacity.max(1));
    (EventSender { tx }, EventReceiver { rx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_reader_gets_a_lag_signal_then_the_newest_events() {
        let (tx, mut rx) = channel(4);
        for n in 0..10u64 {
            tx.send(ClientEvent::StoreRolledBack {
                local_sender_seq: n,
                relay_sender_seq: n,
            });
        }
        // Sending never waited; the 6 oldest are gone.
        assert_eq!(rx.recv().await, Some(ClientEvent::Lagged { missed: 6 }));
        for n in 6..10u64 {
            assert_eq!(
                rx.try_recv(),
                Some(ClientEvent::StoreRolledBack {
                    local_sender_seq: n,
                    relay_sender_seq: n,
                })
            );
        }
        assert_eq!(rx.try_recv(), None);
        tx.send(ClientEvent::Connected);
        drop(tx);
        // Queued events outlive the sender; then the channel reports its end.
        assert_eq!(rx.recv().await, Some(ClientEvent::Connected));
        assert_eq!(rx.recv().await, None);
    }
}
