//! The contents of business conversations beyond messages (spec/business.md 7.3, 8, 9):
//! the conversation route a business device sends its customer, the desk contents among a
//! business's own devices, and the customer's transcript confirmation.

use crate::content::MessageId;
use sealpost_crypto::Zeroizing;
use sealpost_wire::business::{
    ConversationState, DeskRef, HandoffEntryRef, RouteMessage, Side, TranscriptConfirmation,
};
use sealpost_wire::content::{
    CONTENT_DESK, CONTENT_OVERHEAD, CONTENT_ROUTE, CONTENT_TRANSCRIPT, CONTENT_VERSION,
};
use sealpost_wire::{AccountId, DecodeError, Writer};

/// One message of a handoff, owned (its content is secret and wiped when dropped).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HandoffEntry {
    pub(crate) side: Side,
    pub(crate) device: u32,
    pub(crate) timestamp: u64,
    pub(crate) content: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for HandoffEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffEntry")
            .field("side", &self.side)
            .field("device", &self.device)
            .field("timestamp", &self.timestamp)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// A change to a handoff's messages before they are sent (hazmat tests only: a device that
/// alters what it hands on).
pub(crate) type HandoffTamper = dyn Fn(&mut Vec<HandoffEntry>) + Send;

/// A desk content (spec/business.md 8.2), owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Desk {
    Assign {
        customer: AccountId,
        state: ConversationState,
        route: Box<RouteMessage>,
    },
    Handoff {
        customer: AccountId,
        route_version: u64,
        part: u16,
        parts: u16,
        note: String,
        entries: Vec<HandoffEntry>,
    },
    Note {
        customer: AccountId,
        text: String,
    },
}

impl Desk {
    pub(crate) fn from_ref(d: &DeskRef<'_>) -> Self {
        match d {
            DeskRef::Assign {
                customer,
                state,
                route,
            } => Self::Assign {
                customer: customer.clone(),
                state: *state,
                route: route.clone(),
            },
            DeskRef::Handoff {
                customer,
                route_version,
                part,
                parts,
                note,
                entries,
            } => Self::Handoff {
                customer: customer.clone(),
                route_version: *route_version,
                part: *part,
                parts: *parts,
                note: (*note).to_owned(),
                entries: entries
                    .iter()
                    .map(|e| HandoffEntry {
                        side: e.side,
                        device: e.device,
                        timestamp: e.timestamp,
                        content: Zeroizing::new(e.content.to_vec()),
                    })
                    .collect(),
            },
            DeskRef::Note { customer, text } => Self::Note {
                customer: customer.clone(),
                text: (*text).to_owned(),
            },
        }
    }

    pub(crate) fn customer(&self) -> &AccountId {
        match self {
            Self::Assign { customer, .. }
            | Self::Handoff { customer, .. }
            | Self::Note { customer, .. } => customer,
        }
    }

    /// The content (`version || 0x06 || id || body`), or why the body breaks a rule.
    pub(crate) fn encode(&self, id: &MessageId) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
        let desk = match self {
            Self::Assign {
                customer,
                state,
                route,
            } => DeskRef::Assign {
                customer: customer.clone(),
                state: *state,
                route: route.clone(),
            },
            Self::Handoff {
                customer,
                route_version,
                part,
                parts,
                note,
                entries,
            } => DeskRef::Handoff {
                customer: customer.clone(),
                route_version: *route_version,
                part: *part,
                parts: *parts,
                note,
                entries: entries
                    .iter()
                    .map(|e| HandoffEntryRef {
                        side: e.side,
                        device: e.device,
                        timestamp: e.timestamp,
                        content: &e.content,
                    })
                    .collect(),
            },
            Self::Note { customer, text } => DeskRef::Note {
                customer: customer.clone(),
                text,
            },
        };
        let body = Zeroizing::new(desk.encode()?);
        Ok(wrap(CONTENT_DESK, id, &body))
    }
}

fn wrap(kind: u8, id: &MessageId, body: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(CONTENT_OVERHEAD + body.len());
    w.u8(CONTENT_VERSION)
        .u8(kind)
        .bytes(id.as_bytes())
        .bytes(body);
    Zeroizing::new(w.into_bytes())
}

/// The route content (`version || 0x05 || id || var16(route) || var16(basis)`).
pub(crate) fn encode_route(
    id: &MessageId,
    route: &RouteMessage,
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    Ok(wrap(CONTENT_ROUTE, id, &route.encode()?))
}

/// The transcript confirmation content (`version || 0x07 || id || body`).
pub(crate) fn encode_transcript(
    id: &MessageId,
    confirmation: &TranscriptConfirmation,
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    Ok(wrap(CONTENT_TRANSCRIPT, id, &confirmation.encode()?))
}

/// Whether a content is a route, desk or transcript content (by its kind byte).
pub(crate) fn is_business_control(content: &[u8]) -> bool {
    matches!(
        content.get(1),
        Some(&CONTENT_ROUTE | &CONTENT_DESK | &CONTENT_TRANSCRIPT)
    )
}

/// The desk content's action and customer, read from an outbox entry's content (to choose
/// its devices); `None` for any other content.
pub(crate) fn desk_target(content: &[u8]) -> Option<(u8, AccountId)> {
    if content.get(1) != Some(&CONTENT_DESK) {
        return None;
    }
    let body = content.get(CONTENT_OVERHEAD..)?;
    let desk = DeskRef::decode(body).ok()?;
    let action = *body.first()?;
    Some((action, desk.customer().clone()))
}
