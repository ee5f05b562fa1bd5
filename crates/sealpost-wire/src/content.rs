//! The end-to-end message content (spec/client-store.md section 6): what a session
//! message's plaintext holds. Decoding checks structure only and borrows from its input:
//! nothing of the (secret) plaintext is copied here, so the caller decides how it is kept
//! and wiped. The client SDK encodes, and turns what this decodes into its own types.

use crate::business::{DeskRef, RouteMessage, TranscriptConfirmation};
use crate::devices::HistoryPart;
use crate::relay::MESSAGE_ID_LEN;
use crate::{AccountId, DecodeError, MAX_PLAINTEXT_LEN, Reader};

/// Version byte of the content encoding.
pub const CONTENT_VERSION: u8 = 1;
/// Content kind: UTF-8 text.
pub const CONTENT_TEXT: u8 = 1;
/// Content kind: opaque application bytes.
pub const CONTENT_BYTES: u8 = 2;
/// Content kind: a sent copy, a message another device of this account sent
/// (spec/client-store.md section 6.1).
pub const CONTENT_SENT_COPY: u8 = 3;
/// Content kind: a sync message, read state and deletions another device of this account
/// made (spec/client-store.md section 6.3).
pub const CONTENT_SYNC: u8 = 4;
/// Content kind: a conversation route, from a business's device to its customer
/// (spec/business.md 7.3).
pub const CONTENT_ROUTE: u8 = 5;
/// Content kind: a desk content among a business's own devices: assign, handoff, note
/// (spec/business.md 8.2).
pub const CONTENT_DESK: u8 = 6;
/// Content kind: a transcript confirmation, from a customer's device to a business
/// (spec/business.md 9.2).
pub const CONTENT_TRANSCRIPT: u8 = 7;
/// Content kind: one part of a history bundle (spec/client-store.md section 6.2).
pub const CONTENT_HISTORY_PART: u8 = 0x10;
/// Sync item tag: the conversation was read up to and including a message.
pub const SYNC_READ_UP_TO: u8 = 1;
/// Sync item tag: messages of a conversation were deleted.
pub const SYNC_DELETE_MESSAGES: u8 = 2;
/// Sync item tag: a whole conversation was deleted.
pub const SYNC_DELETE_CONVERSATION: u8 = 3;
/// Most items one sync content carries (spec/client-store.md section 6.3).
pub const MAX_SYNC_ITEMS: usize = 32;
/// Most message ids one `DeleteMessages` item carries (spec/client-store.md section 6.3).
pub const MAX_SYNC_DELETE_IDS: usize = 256;
/// Bytes the content encoding adds to a body: version, kind, message id.
pub const CONTENT_OVERHEAD: usize = 2 + MESSAGE_ID_LEN;
/// Largest body one message carries.
pub const MAX_BODY_LEN: usize = MAX_PLAINTEXT_LEN - CONTENT_OVERHEAD;

/// A decoded content: its message id and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content<'a> {
    /// The sender's message id (the one its `Send` carried).
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// What the content carries.
    pub body: ContentBody<'a>,
}

/// What a content carries, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentBody<'a> {
    /// Kind `0x01` or `0x02`: a message for the app.
    Message(MessageRef<'a>),
    /// Kind `0x03`: a message another device of this account sent.
    SentCopy(SentCopyRef<'a>),
    /// Kind `0x04`: read state and deletions from another device of this account, 1 ..=
    /// [`MAX_SYNC_ITEMS`] items in the order they were encoded.
    Sync(Vec<SyncItemRef<'a>>),
    /// Kind `0x10` with a body: a history part (structure checked, spec/devices.md 6.4).
    HistoryPart(Box<HistoryPart>),
    /// Kind `0x10` with an empty body: a history part's placeholder.
    HistoryPlaceholder,
    /// Kind `0x05`: a conversation route and its basis (their structure; verified by the
    /// receiver).
    Route(Box<RouteMessage>),
    /// Kind `0x06`: a desk content among a business's own devices.
    Desk(DeskRef<'a>),
    /// Kind `0x07`: a transcript confirmation.
    Transcript(TranscriptConfirmation),
}

/// A message body, borrowed from the content.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// Kind `0x01`: UTF-8 text.
    Text(&'a str),
    /// Kind `0x02`: opaque application bytes.
    Bytes(&'a [u8]),
}

impl MessageRef<'_> {
    /// The content kind of this body.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Text(_) => CONTENT_TEXT,
            Self::Bytes(_) => CONTENT_BYTES,
        }
    }

    /// The body's bytes (UTF-8 for text).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Bytes(b) => b,
        }
    }
}

/// Shows the kind and the length, never the content.
impl core::fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Text(t) => write!(f, "Text(len={})", t.len()),
            Self::Bytes(b) => write!(f, "Bytes(len={})", b.len()),
        }
    }
}

/// A sent copy (spec/client-store.md section 6.1), borrowed from the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCopyRef<'a> {
    /// The account the original message went to.
    pub recipient: AccountId,
    /// When the sending device queued the original (Unix ms, its clock).
    pub queued_at: u64,
    /// When the relay accepted the original (Unix ms, relay clock).
    pub delivered_at: u64,
    /// The original's message id.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// The original's body.
    pub message: MessageRef<'a>,
    /// The original's whole content encoding.
    pub inner: &'a [u8],
}

/// One item of a sync content (spec/client-store.md section 6.3). Account ids and message
/// ids are metadata, not message content; the ids of a deletion are borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncItemRef<'a> {
    /// Tag `0x01`: the conversation with `peer` was read up to and including `up_to`.
    ReadUpTo {
        /// The other account of the conversation.
        peer: AccountId,
        /// The newest message read.
        up_to: [u8; MESSAGE_ID_LEN],
    },
    /// Tag `0x02`: these messages of the conversation with `peer` were deleted.
    DeleteMessages {
        /// The other account of the conversation.
        peer: AccountId,
        /// The deleted messages' ids, 1 ..= [`MAX_SYNC_DELETE_IDS`].
        ids: MessageIdsRef<'a>,
    },
    /// Tag `0x03`: the whole conversation with `peer` was deleted.
    DeleteConversation {
        /// The other account of the conversation.
        peer: AccountId,
    },
}

impl SyncItemRef<'_> {
    /// The item's tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            Self::ReadUpTo { .. } => SYNC_READ_UP_TO,
            Self::DeleteMessages { .. } => SYNC_DELETE_MESSAGES,
            Self::DeleteConversation { .. } => SYNC_DELETE_CONVERSATION,
        }
    }

    /// The conversation the item is about.
    pub fn peer(&self) -> &AccountId {
        match self {
            Self::ReadUpTo { peer, .. }
            | Self::DeleteMessages { peer, .. }
            | Self::DeleteConversation { peer } => peer,
        }
    }
}

/// A non-empty run of 16-byte message ids, borrowed from a sync content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageIdsRef<'a>(&'a [u8]);

impl<'a> MessageIdsRef<'a> {
    /// How many ids.
    pub fn len(&self) -> usize {
        self.0.len() / MESSAGE_ID_LEN
    }

    /// Whether there are none (never, for a decoded item).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids, in the order they were encoded.
    pub fn iter(&self) -> impl Iterator<Item = [u8; MESSAGE_ID_LEN]> + 'a {
        self.0.chunks_exact(MESSAGE_ID_LEN).map(|c| {
            let mut id = [0; MESSAGE_ID_LEN];
            id.copy_from_slice(c);
            id
        })
    }

    /// The ids' bytes, concatenated.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// Decodes the body of a sync content: `count (u8, 1 ..= MAX_SYNC_ITEMS) || count × item`,
/// each item `tag (u8) || AccountId || fields` (spec/client-store.md section 6.3), and
/// nothing after the last item.
fn decode_sync<'a>(r: &mut Reader<'a>) -> Result<Vec<SyncItemRef<'a>>, DecodeError> {
    let count = usize::from(r.u8()?);
    if count == 0 {
        return Err(DecodeError::InvalidValue("sync item count"));
    }
    if count > MAX_SYNC_ITEMS {
        return Err(DecodeError::TooMany {
            what: "sync items",
            count,
            max: MAX_SYNC_ITEMS,
        });
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = r.u8()?;
        let peer = AccountId::decode_from(r)?;
        let item = match tag {
            SYNC_READ_UP_TO => SyncItemRef::ReadUpTo {
                peer,
                up_to: r.array()?,
            },
            SYNC_DELETE_MESSAGES => {
                let n = usize::from(r.u16()?);
                if n == 0 {
                    return Err(DecodeError::InvalidValue("deleted message id count"));
                }
                if n > MAX_SYNC_DELETE_IDS {
                    return Err(DecodeError::TooMany {
                        what: "deleted message ids",
                        count: n,
                        max: MAX_SYNC_DELETE_IDS,
                    });
                }
                SyncItemRef::DeleteMessages {
                    peer,
                    ids: MessageIdsRef(r.bytes(n * MESSAGE_ID_LEN)?),
                }
            }
            SYNC_DELETE_CONVERSATION => SyncItemRef::DeleteConversation { peer },
            value => {
                return Err(DecodeError::UnknownType {
                    what: "sync item",
                    value,
                });
            }
        };
        items.push(item);
    }
    Ok(items)
}

impl<'a> Content<'a> {
    /// Decodes a content: version `0x01`, a known kind, text that is UTF-8, a sent copy whose
    /// inner content is a message (text or bytes), a sync content of known items within
    /// their bounds, a history part that decodes (or is empty). Errors (wire.md section
    /// 11.1): `UnsupportedVersion`, `Truncated`, `UnknownType { what: "content kind" }`,
    /// `InvalidValue("text body")`; for a sync content `InvalidValue("sync item count")`,
    /// `TooMany { what: "sync items" }`, `UnknownType { what: "sync item" }`,
    /// `InvalidValue("deleted message id count")`, `TooMany { what: "deleted message ids" }`
    /// and `TrailingBytes`; and those of `AccountId` and `HistoryPart`. A content longer
    /// than `MAX_PLAINTEXT_LEN` is `TooLong`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_PLAINTEXT_LEN {
            return Err(DecodeError::TooLong {
                what: "content",
                len: bytes.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != CONTENT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        let message_id = r.array()?;
        let body = match kind {
            CONTENT_SENT_COPY => {
                let recipient = AccountId::decode_from(&mut r)?;
                let queued_at = r.u64()?;
                let delivered_at = r.u64()?;
                let inner = r.rest();
                let Content {
                    message_id: inner_id,
                    body,
                } = Content::decode(inner)?;
                let ContentBody::Message(message) = body else {
                    return Err(DecodeError::UnknownType {
                        what: "content kind",
                        value: inner.get(1).copied().unwrap_or_default(),
                    });
                };
                ContentBody::SentCopy(SentCopyRef {
                    recipient,
                    queued_at,
                    delivered_at,
                    message_id: inner_id,
                    message,
                    inner,
                })
            }
            CONTENT_SYNC => {
                let items = decode_sync(&mut r)?;
                r.finish()?;
                ContentBody::Sync(items)
            }
            CONTENT_HISTORY_PART => match r.rest() {
                [] => ContentBody::HistoryPlaceholder,
                part => ContentBody::HistoryPart(Box::new(HistoryPart::decode(part)?)),
            },
            CONTENT_ROUTE => ContentBody::Route(Box::new(RouteMessage::decode(r.rest())?)),
            CONTENT_DESK => ContentBody::Desk(DeskRef::decode(r.rest())?),
            CONTENT_TRANSCRIPT => {
                ContentBody::Transcript(TranscriptConfirmation::decode(r.rest())?)
            }
            CONTENT_TEXT => ContentBody::Message(MessageRef::Text(
                core::str::from_utf8(r.rest())
                    .map_err(|_| DecodeError::InvalidValue("text body"))?,
            )),
            CONTENT_BYTES => ContentBody::Message(MessageRef::Bytes(r.rest())),
            value => {
                return Err(DecodeError::UnknownType {
                    what: "content kind",
                    value,
                });
            }
        };
        Ok(Self { message_id, body })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::Writer;

    fn sync(count: u8, items: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(CONTENT_VERSION)
            .u8(CONTENT_SYNC)
            .bytes(&[7; 16])
            .u8(count)
            .bytes(items);
        w.into_bytes()
    }

    fn item(tag: u8, peer: &str, rest: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(tag);
        AccountId::new(peer).unwrap().encode_into(&mut w);
        w.bytes(rest);
        w.into_bytes()
    }

    fn ids(n: u16) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(n);
        for i in 0..n {
            w.bytes(&[u8::try_from(i % 251).unwrap(); 16]);
        }
        w.into_bytes()
    }

    #[test]
    fn sync_items_decode_in_order() {
        let mut items = item(SYNC_READ_UP_TO, "+15550001", &[1; 16]);
        items.extend(item(SYNC_DELETE_MESSAGES, "+15550002", &ids(2)));
        items.extend(item(SYNC_DELETE_CONVERSATION, "+15550003", &[]));
        let bytes = sync(3, &items);
        let c = Content::decode(&bytes).unwrap();
        assert_eq!(c.message_id, [7; 16]);
        let ContentBody::Sync(got) = c.body else {
            panic!("not a sync content")
        };
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            SyncItemRef::ReadUpTo {
                peer: AccountId::new("+15550001").unwrap(),
                up_to: [1; 16]
            }
        );
        let SyncItemRef::DeleteMessages { peer, ids } = &got[1] else {
            panic!("not a deletion")
        };
        assert_eq!(peer.as_str(), "+15550002");
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![[0; 16], [1; 16]]);
        assert_eq!((ids.len(), ids.is_empty()), (2, false));
        assert_eq!(got[2].tag(), SYNC_DELETE_CONVERSATION);
        assert_eq!(got[2].peer().as_str(), "+15550003");
    }

    #[test]
    fn sync_bounds_and_malformed_items_are_typed_errors() {
        let read = item(SYNC_READ_UP_TO, "+15550001", &[1; 16]);
        let err = |b: &[u8]| Content::decode(b).unwrap_err();
        assert_eq!(
            err(&sync(0, &[])),
            DecodeError::InvalidValue("sync item count")
        );
        let too_many = u8::try_from(MAX_SYNC_ITEMS + 1).unwrap();
        assert_eq!(
            err(&sync(too_many, &read.repeat(MAX_SYNC_ITEMS + 1))),
            DecodeError::TooMany {
                what: "sync items",
                count: MAX_SYNC_ITEMS + 1,
                max: MAX_SYNC_ITEMS
            }
        );
        // The most items, each with the most ids and the longest account id, fit one
        // message.
        let longest = "+".repeat(crate::MAX_ACCOUNT_ID_LEN);
        let max_ids = u16::try_from(MAX_SYNC_DELETE_IDS).unwrap();
        let big = item(SYNC_DELETE_MESSAGES, &longest, &ids(max_ids));
        let largest = sync(
            u8::try_from(MAX_SYNC_ITEMS).unwrap(),
            &big.repeat(MAX_SYNC_ITEMS),
        );
        assert!(largest.len() <= MAX_PLAINTEXT_LEN);
        assert!(Content::decode(&largest).is_ok());
        assert_eq!(
            err(&sync(
                1,
                &item(SYNC_DELETE_MESSAGES, "+1", &ids(max_ids + 1))
            )),
            DecodeError::TooMany {
                what: "deleted message ids",
                count: MAX_SYNC_DELETE_IDS + 1,
                max: MAX_SYNC_DELETE_IDS
            }
        );
        assert_eq!(
            err(&sync(1, &item(SYNC_DELETE_MESSAGES, "+1", &ids(0)))),
            DecodeError::InvalidValue("deleted message id count")
        );
        assert_eq!(
            err(&sync(1, &item(0x7f, "+1", &[]))),
            DecodeError::UnknownType {
                what: "sync item",
                value: 0x7f
            }
        );
        let mut trailing = sync(1, &read);
        trailing.push(0);
        assert_eq!(err(&trailing), DecodeError::TrailingBytes(1));
        let whole = sync(1, &read);
        for cut in CONTENT_OVERHEAD..whole.len() {
            assert!(
                matches!(err(&whole[..cut]), DecodeError::Truncated { .. }),
                "cut at {cut}"
            );
        }
        // Fewer items than the count says.
        assert!(matches!(
            err(&sync(2, &read)),
            DecodeError::Truncated { .. }
        ));
    }
}
