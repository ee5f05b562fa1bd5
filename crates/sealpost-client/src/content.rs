//! The end-to-end message content: what a session message's plaintext holds
//! (spec/client-store.md section 6).

use sealpost_crypto::Zeroizing;
use sealpost_wire::content::{Content as WireContent, ContentBody, MessageRef, SyncItemRef};
use sealpost_wire::devices::HistoryPart;
use sealpost_wire::relay::MESSAGE_ID_LEN;
use sealpost_wire::{AccountId, DecodeError, MAX_PLAINTEXT_LEN, Writer};
use std::fmt;

pub use sealpost_wire::content::{
    CONTENT_BYTES, CONTENT_HISTORY_PART, CONTENT_OVERHEAD, CONTENT_SENT_COPY, CONTENT_SYNC,
    CONTENT_TEXT, CONTENT_VERSION, MAX_BODY_LEN, MAX_SYNC_DELETE_IDS, MAX_SYNC_ITEMS,
};
use sealpost_wire::content::{SYNC_DELETE_CONVERSATION, SYNC_DELETE_MESSAGES, SYNC_READ_UP_TO};

/// A message id: 16 random bytes chosen by the sender, echoed by the relay and authenticated
/// inside the encrypted content. Unique per sender; the receiver de-duplicates by
/// `(sender device, message id)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; MESSAGE_ID_LEN]);

impl MessageId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(*sealpost_crypto::random_array::<MESSAGE_ID_LEN, _>(
            &mut rand::rng(),
        ))
    }

    /// Wraps 16 bytes.
    pub const fn from_bytes(bytes: [u8; MESSAGE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; MESSAGE_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// A message body. `Debug` shows the kind and length only, never the content.
#[derive(Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// UTF-8 text.
    Text(String),
    /// Opaque application bytes (e.g. a structured business message).
    Bytes(Vec<u8>),
}

impl MessageBody {
    /// The text, if this is a text body.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Bytes(_) => None,
        }
    }

    /// The raw bytes (UTF-8 for text).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Bytes(b) => b,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Self::Text(_) => CONTENT_TEXT,
            Self::Bytes(_) => CONTENT_BYTES,
        }
    }

    fn from_ref(m: MessageRef<'_>) -> Self {
        match m {
            MessageRef::Text(t) => Self::Text(t.to_owned()),
            MessageRef::Bytes(b) => Self::Bytes(b.to_vec()),
        }
    }
}

impl fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => write!(f, "Text(len={})", t.len()),
            Self::Bytes(b) => write!(f, "Bytes(len={})", b.len()),
        }
    }
}

/// `version(1) = 0x01 || kind(1) || message_id(16) || body`.
pub(crate) fn encode_content(id: &MessageId, body: &MessageBody) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(CONTENT_OVERHEAD + body.as_bytes().len());
    w.u8(CONTENT_VERSION)
        .u8(body.kind())
        .bytes(id.as_bytes())
        .bytes(body.as_bytes());
    Zeroizing::new(w.into_bytes())
}

/// What a content encoding holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// A message to this device's account (kind text or bytes).
    Message(MessageBody),
    /// A message another device of this account sent (kind sent copy).
    SentCopy(SentCopy),
    /// A part of a history bundle from this account's key holder (kind history part).
    HistoryPart(Box<HistoryPart>),
    /// A history part's placeholder (kind history part, empty body): the envelope for an
    /// own device the part is not for (spec/client-store.md section 6.2).
    HistoryPlaceholder,
    /// Read state and deletions from another device of this account (kind sync,
    /// spec/client-store.md section 6.3).
    Sync(Vec<SyncItem>),
    /// A conversation route from a business's device (kind route, spec/business.md 7.3).
    Route(Box<sealpost_wire::business::RouteMessage>),
    /// A desk content from another device of this business (kind desk, spec/business.md 8).
    Desk(crate::desk::Desk),
    /// A customer's transcript confirmation (kind transcript, spec/business.md 9.2).
    Transcript(sealpost_wire::business::TranscriptConfirmation),
}

/// One item of a sync content (spec/client-store.md section 6.3): something the user did
/// to a conversation on one device that the account's other devices repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncItem {
    /// The conversation with `peer` was read up to and including `up_to`.
    ReadUpTo {
        /// The other account of the conversation.
        peer: AccountId,
        /// The newest message read.
        up_to: MessageId,
    },
    /// These messages of the conversation with `peer` were deleted (1 ..=
    /// [`MAX_SYNC_DELETE_IDS`]).
    DeleteMessages {
        /// The other account of the conversation.
        peer: AccountId,
        /// The deleted messages.
        ids: Vec<MessageId>,
    },
    /// The whole conversation with `peer` was deleted.
    DeleteConversation {
        /// The other account of the conversation.
        peer: AccountId,
    },
}

impl SyncItem {
    fn from_ref(item: &SyncItemRef<'_>) -> Self {
        match item {
            SyncItemRef::ReadUpTo { peer, up_to } => Self::ReadUpTo {
                peer: peer.clone(),
                up_to: MessageId(*up_to),
            },
            SyncItemRef::DeleteMessages { peer, ids } => Self::DeleteMessages {
                peer: peer.clone(),
                ids: ids.iter().map(MessageId).collect(),
            },
            SyncItemRef::DeleteConversation { peer } => {
                Self::DeleteConversation { peer: peer.clone() }
            }
        }
    }
}

/// The sync content carrying `items` under the new message id `id` (`version || 0x04 ||
/// id || count(u8) || items`, spec/client-store.md section 6.3). `None` when `items` is
/// empty or breaks a bound ([`MAX_SYNC_ITEMS`] items, 1 ..= [`MAX_SYNC_DELETE_IDS`] ids
/// per deletion): the decoder would refuse it, so it is never made.
pub(crate) fn encode_sync(id: &MessageId, items: &[SyncItem]) -> Option<Zeroizing<Vec<u8>>> {
    let count = u8::try_from(items.len())
        .ok()
        .filter(|n| (1..=MAX_SYNC_ITEMS).contains(&usize::from(*n)))?;
    let mut w = Writer::with_capacity(CONTENT_OVERHEAD + 1 + items.len() * 80);
    w.u8(CONTENT_VERSION)
        .u8(CONTENT_SYNC)
        .bytes(id.as_bytes())
        .u8(count);
    for item in items {
        match item {
            SyncItem::ReadUpTo { peer, up_to } => {
                w.u8(SYNC_READ_UP_TO);
                peer.encode_into(&mut w);
                w.bytes(up_to.as_bytes());
            }
            SyncItem::DeleteMessages { peer, ids } => {
                let n = u16::try_from(ids.len())
                    .ok()
                    .filter(|n| (1..=MAX_SYNC_DELETE_IDS).contains(&usize::from(*n)))?;
                w.u8(SYNC_DELETE_MESSAGES);
                peer.encode_into(&mut w);
                w.u16(n);
                for id in ids {
                    w.bytes(id.as_bytes());
                }
            }
            SyncItem::DeleteConversation { peer } => {
                w.u8(SYNC_DELETE_CONVERSATION);
                peer.encode_into(&mut w);
            }
        }
    }
    Some(Zeroizing::new(w.into_bytes()))
}

/// Whether a content encoding is a sync content (by its kind byte; nothing else is checked).
pub(crate) fn is_sync(content: &[u8]) -> bool {
    content.get(1) == Some(&CONTENT_SYNC)
}

/// A sent copy (spec/client-store.md section 6.1): a message that another device of this
/// account sent to `recipient`, with the original's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentCopy {
    /// The account the original message went to.
    pub(crate) recipient: AccountId,
    /// When the sending device queued the original (Unix ms, its clock).
    pub(crate) queued_at: u64,
    /// When the relay accepted the original (Unix ms, relay clock).
    pub(crate) delivered_at: u64,
    /// The original's message id.
    pub(crate) message_id: MessageId,
    /// The original's body.
    pub(crate) body: MessageBody,
    /// The original's full content encoding (what the history stores).
    pub(crate) inner: Zeroizing<Vec<u8>>,
}

/// The sent copy, under the new message id `copy_id`, of the message whose content
/// encoding is `inner` (`version || 0x03 || copy_id || recipient || queued_at(u64) ||
/// delivered_at(u64) || inner`); `None` when it would exceed [`MAX_PLAINTEXT_LEN`] (the
/// original is then not copied, spec/client-store.md section 6.1).
pub(crate) fn encode_sent_copy(
    copy_id: &MessageId,
    recipient: &AccountId,
    queued_at: u64,
    delivered_at: u64,
    inner: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut w =
        Writer::with_capacity(CONTENT_OVERHEAD + 1 + recipient.as_str().len() + 16 + inner.len());
    w.u8(CONTENT_VERSION)
        .u8(CONTENT_SENT_COPY)
        .bytes(copy_id.as_bytes());
    recipient.encode_into(&mut w);
    w.u64(queued_at).u64(delivered_at).bytes(inner);
    let out = Zeroizing::new(w.into_bytes());
    (out.len() <= MAX_PLAINTEXT_LEN).then_some(out)
}

/// Whether a content encoding is a sent copy (by its kind byte; nothing else is checked).
pub(crate) fn is_sent_copy(content: &[u8]) -> bool {
    content.get(1) == Some(&CONTENT_SENT_COPY)
}

/// Whether a content encoding is a history part (by its kind byte; nothing else is checked).
pub(crate) fn is_history_part(content: &[u8]) -> bool {
    content.get(1) == Some(&CONTENT_HISTORY_PART)
}

/// Whether an outbox entry with this content is this account's own bookkeeping (a sent
/// copy, a sync content, a history part, or a route, desk or transcript content of a
/// business conversation): it has no history entry of its own and gives
/// the app no `Delivered` or `SendFailed` event.
pub(crate) fn is_internal(content: &[u8]) -> bool {
    is_sent_copy(content)
        || is_sync(content)
        || is_history_part(content)
        || crate::desk::is_business_control(content)
}

/// The content carrying one encoded history part (`version || 0x10 || message_id ||
/// part`), spec/client-store.md section 6.2. `part` is at most
/// `MAX_HISTORY_PART_LEN` = [`MAX_BODY_LEN`] bytes, so the content fits one message.
pub(crate) fn encode_history_part(id: &MessageId, part: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(CONTENT_OVERHEAD + part.len());
    w.u8(CONTENT_VERSION)
        .u8(CONTENT_HISTORY_PART)
        .bytes(id.as_bytes())
        .bytes(part);
    Zeroizing::new(w.into_bytes())
}

/// Parses a message content ([`encode_content`]): a sent copy, a sync content, a history
/// part, unknown
/// versions and kinds and non-UTF-8 text are errors.
pub(crate) fn decode_content(bytes: &[u8]) -> Result<(MessageId, MessageBody), DecodeError> {
    match decode_any(bytes)? {
        (id, Content::Message(body)) => Ok((id, body)),
        (_, Content::SentCopy(_)) => Err(DecodeError::UnknownType {
            what: "content kind",
            value: CONTENT_SENT_COPY,
        }),
        (_, Content::HistoryPart(_) | Content::HistoryPlaceholder) => {
            Err(DecodeError::UnknownType {
                what: "content kind",
                value: CONTENT_HISTORY_PART,
            })
        }
        (_, Content::Sync(_)) => Err(DecodeError::UnknownType {
            what: "content kind",
            value: CONTENT_SYNC,
        }),
        (_, Content::Route(_) | Content::Desk(_) | Content::Transcript(_)) => {
            Err(DecodeError::UnknownType {
                what: "content kind",
                value: bytes.get(1).copied().unwrap_or_default(),
            })
        }
    }
}

/// Parses any content encoding this SDK accepts ([`sealpost_wire::content::Content::decode`]
/// checks the structure): a message, a sent copy whose inner content is a message (not
/// another copy), a sync content (spec/client-store.md 6.3), or a history part (its
/// structure only, spec/devices.md 6.4; an empty body is the placeholder).
pub(crate) fn decode_any(bytes: &[u8]) -> Result<(MessageId, Content), DecodeError> {
    let decoded = WireContent::decode(bytes)?;
    let content = match decoded.body {
        ContentBody::Message(m) => Content::Message(MessageBody::from_ref(m)),
        ContentBody::SentCopy(c) => Content::SentCopy(SentCopy {
            recipient: c.recipient,
            queued_at: c.queued_at,
            delivered_at: c.delivered_at,
            message_id: MessageId(c.message_id),
            body: MessageBody::from_ref(c.message),
            inner: Zeroizing::new(c.inner.to_vec()),
        }),
        ContentBody::HistoryPart(part) => Content::HistoryPart(part),
        ContentBody::HistoryPlaceholder => Content::HistoryPlaceholder,
        ContentBody::Sync(items) => Content::Sync(items.iter().map(SyncItem::from_ref).collect()),
        ContentBody::Route(route) => Content::Route(route),
        ContentBody::Desk(desk) => Content::Desk(crate::desk::Desk::from_ref(&desk)),
        ContentBody::Transcript(t) => Content::Transcript(t),
    };
    Ok((MessageId(decoded.message_id), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_roundtrip_and_debug() {
        let id = MessageId::from_bytes([3; 16]);
        for body in [
            MessageBody::Text("order #1234 shipped".into()),
            MessageBody::Bytes(vec![0, 1, 2]),
            MessageBody::Text(String::new()),
        ] {
            let enc = encode_content(&id, &body);
            assert_eq!(enc.len(), CONTENT_OVERHEAD + body.as_bytes().len());
            assert_eq!(decode_content(&enc).unwrap(), (id, body.clone()));
        }
        let dbg = format!("{:?}", MessageBody::Text("secret words".into()));
        assert!(!dbg.contains("secret"));
        assert!(decode_content(&[2, 1]).is_err());
        let mut bad = encode_content(&id, &MessageBody::Text("x".into())).to_vec();
        bad[1] = 9;
        assert!(decode_content(&bad).is_err());
        bad[1] = CONTENT_TEXT;
        bad.push(0xff);
        assert!(decode_content(&bad).is_err());
        assert_eq!(id.to_string(), "03".repeat(16));
    }

    #[test]
    fn sent_copy_roundtrip_limits_and_nesting() {
        let id = MessageId::from_bytes([3; 16]);
        let copy_id = MessageId::from_bytes([4; 16]);
        let to = AccountId::new("+15550001111").unwrap();
        let body = MessageBody::Text("order #1234 shipped".into());
        let inner = encode_content(&id, &body);
        let copy = encode_sent_copy(&copy_id, &to, 7, 9, &inner).unwrap();
        assert!(is_sent_copy(&copy));
        assert!(!is_sent_copy(&inner));
        assert_eq!(
            copy.len(),
            CONTENT_OVERHEAD + 1 + to.as_str().len() + 16 + inner.len()
        );
        let (got_id, Content::SentCopy(c)) = decode_any(&copy).unwrap() else {
            panic!("not a sent copy");
        };
        assert_eq!(got_id, copy_id);
        assert_eq!(
            (c.recipient, c.queued_at, c.delivered_at),
            (to.clone(), 7, 9)
        );
        assert_eq!((c.message_id, c.body), (id, body));
        assert_eq!(&c.inner[..], &inner[..]);
        // Not a message; a copy of a copy and a truncated copy do not decode.
        assert!(decode_content(&copy).is_err());
        let nested = encode_sent_copy(&copy_id, &to, 7, 9, &copy).unwrap();
        assert!(decode_any(&nested).is_err());
        assert!(decode_any(&copy[..CONTENT_OVERHEAD + 5]).is_err());
        // A copy that would exceed the plaintext limit is not made.
        let big = encode_content(&id, &MessageBody::Bytes(vec![0; MAX_BODY_LEN]));
        assert!(encode_sent_copy(&copy_id, &to, 7, 9, &big).is_none());
    }

    #[test]
    fn sync_roundtrip_bounds_and_not_a_message() {
        let id = MessageId::from_bytes([6; 16]);
        let peer = AccountId::new("+15550001111").unwrap();
        let items = vec![
            SyncItem::ReadUpTo {
                peer: peer.clone(),
                up_to: MessageId::from_bytes([1; 16]),
            },
            SyncItem::DeleteMessages {
                peer: peer.clone(),
                ids: vec![
                    MessageId::from_bytes([2; 16]),
                    MessageId::from_bytes([3; 16]),
                ],
            },
            SyncItem::DeleteConversation { peer: peer.clone() },
        ];
        let content = encode_sync(&id, &items).unwrap();
        assert!(is_sync(&content) && is_internal(&content));
        assert!(!is_sent_copy(&content) && !is_history_part(&content));
        assert_eq!(decode_any(&content).unwrap(), (id, Content::Sync(items)));
        // Not a message, so never a history entry.
        assert!(decode_content(&content).is_err());
        // Nothing the decoder would refuse is ever encoded.
        assert!(encode_sync(&id, &[]).is_none());
        let read = SyncItem::ReadUpTo {
            peer: peer.clone(),
            up_to: id,
        };
        assert!(encode_sync(&id, &vec![read.clone(); MAX_SYNC_ITEMS]).is_some());
        assert!(encode_sync(&id, &vec![read; MAX_SYNC_ITEMS + 1]).is_none());
        let delete = |n: usize| SyncItem::DeleteMessages {
            peer: peer.clone(),
            ids: vec![id; n],
        };
        assert!(encode_sync(&id, &[delete(0)]).is_none());
        assert!(encode_sync(&id, &[delete(MAX_SYNC_DELETE_IDS)]).is_some());
        assert!(encode_sync(&id, &[delete(MAX_SYNC_DELETE_IDS + 1)]).is_none());
    }

    #[test]
    fn history_part_content_roundtrip_placeholder_and_limits() {
        use sealpost_wire::devices::{MAX_HISTORY_PART_LEN, pack_history};
        let id = MessageId::from_bytes([5; 16]);
        let part = pack_history([1; 16], Vec::new()).unwrap().parts.remove(0);
        let bytes = part.encode().unwrap();
        let content = encode_history_part(&id, &bytes);
        assert!(is_history_part(&content) && is_internal(&content));
        assert!(!is_sent_copy(&content));
        assert_eq!(content.len(), CONTENT_OVERHEAD + bytes.len());
        let (got, Content::HistoryPart(p)) = decode_any(&content).unwrap() else {
            panic!("not a history part");
        };
        assert_eq!((got, *p), (id, part));
        // Not a message, so never a history entry.
        assert!(decode_content(&content).is_err());
        // The empty body is the placeholder; a body that is not a part does not decode.
        let placeholder = encode_history_part(&id, &[]);
        assert!(matches!(
            decode_any(&placeholder),
            Ok((_, Content::HistoryPlaceholder))
        ));
        assert!(decode_any(&encode_history_part(&id, &[1, 0x14, 0])).is_err());
        // The largest part fills exactly one message.
        assert_eq!(CONTENT_OVERHEAD + MAX_HISTORY_PART_LEN, MAX_PLAINTEXT_LEN);
        let message = encode_content(&id, &MessageBody::Text("x".into()));
        assert!(!is_internal(&message));
    }
}
