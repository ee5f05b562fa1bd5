//! The JSON form of a history entry: one element of `/v1/events`, of
//! `/v1/conversations/{account}/messages`, and the body of a webhook delivery (the same
//! object everywhere; README.md and `openapi.json` describe it).

use base64::Engine as _;
use sealpost_client::{DeviceId, DeviceRole, Direction, HistoryEntry, MessageBody, MessageStatus};
use serde::Serialize;

/// Where a message came from or went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A message a customer (or any other account) sent to this account.
    Incoming,
    /// A message this bridge sent.
    Sent,
    /// A message another device of this account sent (its sent copy reached the bridge).
    SentByOtherDevice,
}

/// The author of an incoming message as the sender's signed device list names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Author {
    /// Device id.
    pub device: u32,
    /// Role word: `primary`, `linked`, `owner`, `admin`, `agent`, `bot`.
    pub role: &'static str,
    /// Display name.
    pub name: String,
}

/// One message of the history, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The history position: pass it as `after` to read what follows.
    pub cursor: u64,
    /// Incoming, sent by this bridge, or sent by another device of the account.
    pub kind: EventKind,
    /// The other account of the conversation (the customer).
    pub conversation: String,
    /// The sending device's id: incoming, the other account's device; outgoing, the
    /// business's device that sent it, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_device: Option<u32>,
    /// Incoming: the sending device as its account's signed list names it, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
    /// The message id, 32 hex digits.
    pub message_id: String,
    /// Incoming: relay acceptance time; outgoing: when it was queued (Unix ms).
    pub timestamp: u64,
    /// Outgoing: `queued`, `delivered` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// The text, for a text message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes (standard base64 with padding), for a binary message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_base64: Option<String>,
}

/// The API's word for a role.
pub fn role_word(role: DeviceRole) -> &'static str {
    match role {
        DeviceRole::Primary => "primary",
        DeviceRole::Linked => "linked",
        DeviceRole::Owner => "owner",
        DeviceRole::Admin => "admin",
        DeviceRole::Agent => "agent",
        DeviceRole::Bot => "bot",
        _ => "other",
    }
}

impl Event {
    /// The event of `entry` on the device `own`. An outgoing entry names the business's
    /// device that sent it (`HistoryEntry::sender_device`); for one that does not (stored
    /// before devices were recorded), `in_journal` tells whether this bridge sent it.
    pub fn from_entry(entry: &HistoryEntry, own: DeviceId, in_journal: bool) -> Self {
        let (kind, sender_device, status) = match entry.direction {
            Direction::Incoming => (EventKind::Incoming, Some(entry.peer.device.0), None),
            Direction::Outgoing => {
                let status = match entry.status {
                    MessageStatus::Queued => "queued",
                    MessageStatus::Failed { .. } => "failed",
                    _ => "delivered",
                };
                let here = match entry.sender_device {
                    Some(device) => device == own,
                    None => in_journal,
                };
                let kind = if here {
                    EventKind::Sent
                } else {
                    EventKind::SentByOtherDevice
                };
                (kind, entry.sender_device.map(|d| d.0), Some(status))
            }
        };
        let (text, bytes_base64) = match &entry.body {
            MessageBody::Text(t) => (Some(t.clone()), None),
            other => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(other.as_bytes())),
            ),
        };
        Self {
            cursor: entry.seq,
            kind,
            conversation: entry.peer.account.as_str().to_owned(),
            sender_device,
            author: entry.author.as_ref().map(|a| Author {
                device: a.id.0,
                role: role_word(a.role),
                name: a.name.clone(),
            }),
            message_id: hex::encode(entry.message_id.as_bytes()),
            timestamp: entry.timestamp,
            status,
            text,
            bytes_base64,
        }
    }
}
