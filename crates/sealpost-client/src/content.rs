//! The end-to-end message content: what a session message's plaintext holds
//! (spec/client-store.md section 6).

use sealpost_crypto::Zeroizing;
use sealpost_wire::relay::MESSAGE_ID_LEN;
use sealpost_wire::{DecodeError, MAX_PLAINTEXT_LEN, Reader, Writer};
use std::fmt;

/// Version byte of the content encoding.
pub const CONTENT_VERSION: u8 = 1;
/// Content kind: UTF-8 text.
pub const CONTENT_TEXT: u8 = 1;
/// Content kind: opaque application bytes.
pub const CONTENT_BYTES: u8 = 2;
/// Bytes the content encoding adds to a body: version, kind, message id.
pub const CONTENT_OVERHEAD: usize = 2 + MESSAGE_ID_LEN;
/// Largest body one message carries.
pub const MAX_BODY_LEN: usize = MAX_PLAINTEXT_LEN - CONTENT_OVERHEAD;

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

/// Parses [`encode_content`]; unknown versions and kinds and non-UTF-8 text are errors.
pub(crate) fn decode_content(bytes: &[u8]) -> Result<(MessageId, MessageBody), DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != CONTENT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = r.u8()?;
    let id = MessageId(r.array()?);
    let body = r.rest();
    let body = match kind {
        CONTENT_TEXT => MessageBody::Text(
            std::str::from_utf8(body)
                .map_err(|_| DecodeError::InvalidValue("text body"))?
                .to_owned(),
        ),
        CONTENT_BYTES => MessageBody::Bytes(body.to_vec()),
        value => {
            return Err(DecodeError::UnknownType {
                what: "content kind",
                value,
            });
        }
    };
    Ok((id, body))
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
}
