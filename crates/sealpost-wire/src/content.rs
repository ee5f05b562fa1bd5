//! The end-to-end message content (spec/client-store.md section 6): what a session
//! message's plaintext holds. Decoding checks structure only and borrows from its input:
//! nothing of the (secret) plaintext is copied here, so the caller decides how it is kept
//! and wiped. The client SDK encodes, and turns what this decodes into its own types.

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
/// Content kind: one part of a history bundle (spec/client-store.md section 6.2).
pub const CONTENT_HISTORY_PART: u8 = 0x10;
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
    /// Kind `0x10` with a body: a history part (structure checked, spec/devices.md 6.4).
    HistoryPart(Box<HistoryPart>),
    /// Kind `0x10` with an empty body: a history part's placeholder.
    HistoryPlaceholder,
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

impl<'a> Content<'a> {
    /// Decodes a content: version `0x01`, a known kind, text that is UTF-8, a sent copy whose
    /// inner content is a message (text or bytes), a history part that decodes (or is
    /// empty). Errors (wire.md section 11.1): `UnsupportedVersion`, `TooShort`, `UnknownType {
    /// what: "content kind" }`, `InvalidValue("text body")`, and those of `AccountId` and
    /// `HistoryPart`. A content longer than `MAX_PLAINTEXT_LEN` is `TooLong`.
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
            CONTENT_HISTORY_PART => match r.rest() {
                [] => ContentBody::HistoryPlaceholder,
                part => ContentBody::HistoryPart(Box::new(HistoryPart::decode(part)?)),
            },
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
