//! Events the client reports to the application.

use crate::content::{MessageBody, MessageId};
use crate::error::ClientError;
use sealpost_session::IdentityKey;
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};

/// Something the application should know about. Received from the channel returned by
/// `Client::register` / `Client::open`.
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
        /// The sender's identity as authenticated by the session.
        identity: IdentityKey,
        /// The content.
        body: MessageBody,
        /// The sender's message id.
        message_id: MessageId,
        /// When the relay accepted it (Unix ms, relay clock).
        timestamp: u64,
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
    /// The relay no longer knows this device (`AuthFailed`, e.g. after the account was
    /// registered on another device). The client stops reconnecting.
    Deregistered,
    /// The relay closed this connection because the same device authenticated on another
    /// connection (application close code 3, spec/relay.md section 3.4): another copy of this
    /// device's store is running somewhere. The client stops reconnecting, so that the two
    /// copies do not keep replacing each other.
    ReplacedByAnotherConnection,
}
