//! Conversations on the business's side (`spec/business.md` sections 8 and 9): the desk
//! contents a business's devices exchange (assign, handoff, note) and the transcript
//! confirmation a customer's client sends. Structure only: `sealpost-devices` computes and
//! checks transcripts, the client SDK signs routes and applies what these carry.

use super::SignedRoute;
use crate::content::{Content, ContentBody};
use crate::{AccountId, DecodeError, Reader, Writer};

/// Desk action: the conversation has a new route (a claim, a transfer or a resolve).
pub const DESK_ASSIGN: u8 = 0x01;
/// Desk action: the conversation so far, for the devices of its new route.
pub const DESK_HANDOFF: u8 = 0x02;
/// Desk action: an internal note between the business's devices.
pub const DESK_NOTE: u8 = 0x03;
/// Longest note, in bytes of UTF-8 (a handoff's note may be empty, a note's text not).
pub const MAX_NOTE_LEN: usize = 4096;
/// Most entries one handoff part carries.
pub const MAX_HANDOFF_ENTRIES: usize = 65_535;
/// Most parts one handoff is sent in (each a content of at most `MAX_PLAINTEXT_LEN`
/// bytes: a handoff carries up to 16 MiB of messages).
pub const MAX_HANDOFF_PARTS: u16 = 64;
/// Bytes of a handoff part before its note and entries: action, route version, part,
/// parts, the note's and the count's lengths (the customer's `AccountId` comes on top).
pub const HANDOFF_PART_OVERHEAD: usize = 1 + 8 + 2 + 2 + 2 + 4;
/// Bytes one handoff entry adds besides its content: side, device, timestamp, the
/// content's length.
pub const HANDOFF_ENTRY_OVERHEAD: usize = 1 + 4 + 8 + 4;
/// Most chains one transcript (and one confirmation) holds.
pub const MAX_TRANSCRIPT_CHAINS: usize = 128;
/// Length of a transcript chain head (SHA-256).
pub const CHAIN_HEAD_LEN: usize = 32;
/// Bytes of one encoded chain head: side, device, length, head.
pub const CHAIN_HEAD_ENCODED_LEN: usize = 1 + 4 + 4 + CHAIN_HEAD_LEN;
/// Fewest bytes one handoff entry takes: side, device, timestamp, the content's length and
/// the smallest message content (version, kind, message id).
const MIN_HANDOFF_ENTRY_LEN: usize = HANDOFF_ENTRY_OVERHEAD + crate::content::CONTENT_OVERHEAD;

/// Which account of a conversation sent a message: its transcript chains are kept per
/// sending device of either side (`spec/business.md` 9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// `0x00`: the customer's account.
    Customer,
    /// `0x01`: the business's account.
    Business,
}

impl Side {
    /// The side's byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Customer => 0,
            Self::Business => 1,
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Self::Customer),
            1 => Ok(Self::Business),
            _ => Err(DecodeError::InvalidValue("side")),
        }
    }
}

/// One chain of a transcript: the messages one device of one side sent in the
/// conversation, as `length` and the head after the last of them (9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The sending account's side.
    pub side: Side,
    /// The sending device's id (≥ 1).
    pub device: u32,
    /// How many messages the chain holds (≥ 1).
    pub length: u32,
    /// The head after the last of them.
    pub head: [u8; CHAIN_HEAD_LEN],
}

impl ChainHead {
    /// The chain's key: side, then device.
    pub fn key(&self) -> (Side, u32) {
        (self.side, self.device)
    }

    fn encode_into(&self, w: &mut Writer) {
        w.u8(self.side.to_u8())
            .u32(self.device)
            .u32(self.length)
            .bytes(&self.head);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let side = Side::decode_from(r)?;
        let device = r.u32()?;
        if device == 0 {
            return Err(DecodeError::InvalidValue("device id"));
        }
        let length = r.u32()?;
        if length == 0 {
            return Err(DecodeError::InvalidValue("chain length"));
        }
        Ok(Self {
            side,
            device,
            length,
            head: r.array()?,
        })
    }
}

/// Encodes `count (u8) || chains`, checking the bound and the strictly increasing order.
pub fn encode_chains(w: &mut Writer, chains: &[ChainHead]) -> Result<(), DecodeError> {
    let count = u8::try_from(chains.len())
        .ok()
        .filter(|c| usize::from(*c) <= MAX_TRANSCRIPT_CHAINS)
        .ok_or(DecodeError::TooMany {
            what: "transcript chains",
            count: chains.len(),
            max: MAX_TRANSCRIPT_CHAINS,
        })?;
    check_chain_order(chains)?;
    w.u8(count);
    for c in chains {
        if c.device == 0 {
            return Err(DecodeError::InvalidValue("device id"));
        }
        if c.length == 0 {
            return Err(DecodeError::InvalidValue("chain length"));
        }
        c.encode_into(w);
    }
    Ok(())
}

/// Decodes what [`encode_chains`] writes.
pub fn decode_chains(r: &mut Reader<'_>) -> Result<Vec<ChainHead>, DecodeError> {
    let count = usize::from(r.u8()?);
    if count > MAX_TRANSCRIPT_CHAINS {
        return Err(DecodeError::TooMany {
            what: "transcript chains",
            count,
            max: MAX_TRANSCRIPT_CHAINS,
        });
    }
    let mut chains = Vec::with_capacity(count.min(r.remaining() / CHAIN_HEAD_ENCODED_LEN));
    for _ in 0..count {
        chains.push(ChainHead::decode_from(r)?);
    }
    check_chain_order(&chains)?;
    Ok(chains)
}

fn check_chain_order(chains: &[ChainHead]) -> Result<(), DecodeError> {
    if chains.windows(2).any(|w| match w {
        [a, b] => a.key() >= b.key(),
        _ => false,
    }) {
        return Err(DecodeError::InvalidValue("chain order"));
    }
    Ok(())
}

/// The body of a transcript confirmation (content kind `0x07`, `spec/business.md` 9.2):
/// what a customer's device had seen of the conversation when it accepted the conversation
/// route of `route_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriptConfirmation {
    /// The version of the conversation route whose acceptance it answers.
    pub route_version: u64,
    /// The chains, strictly increasing by side and device, 0 ..= [`MAX_TRANSCRIPT_CHAINS`].
    pub chains: Vec<ChainHead>,
}

impl TranscriptConfirmation {
    /// `route_version (u64) || count (u8) || count × chain`.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut w = Writer::with_capacity(9 + self.chains.len() * CHAIN_HEAD_ENCODED_LEN);
        w.u64(self.route_version);
        encode_chains(&mut w, &self.chains)?;
        Ok(w.into_bytes())
    }

    /// Decodes a whole body: `route_version` ≥ 1, the chains (each device ≥ 1, length ≥ 1,
    /// strictly increasing), nothing after them.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let route_version = r.u64()?;
        if route_version == 0 {
            return Err(DecodeError::InvalidValue("route version"));
        }
        let chains = decode_chains(&mut r)?;
        r.finish()?;
        Ok(Self {
            route_version,
            chains,
        })
    }
}

/// A conversation route as it travels in a route content (kind `0x05`) or an assignment:
/// the new route and its **basis**, the route under which its signer may route the
/// conversation (`spec/business.md` 7.2 rule 3, 8.2): the conversation's previous route or
/// the business's default route, so that a reader that does not hold that route yet can
/// still check the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMessage {
    /// The new conversation route.
    pub route: SignedRoute,
    /// The route its signer held the conversation under; `None` when the account key or an
    /// owner or admin signed it.
    pub basis: Option<SignedRoute>,
}

impl RouteMessage {
    /// `var16(route) || var16(basis)` (an empty `basis`: none).
    pub fn encode_into(&self, w: &mut Writer) -> Result<(), DecodeError> {
        w.var_bytes16(&self.route.encode()?);
        match &self.basis {
            Some(b) => w.var_bytes16(&b.encode()?),
            None => w.u16(0),
        };
        Ok(())
    }

    /// The encoding.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut w = Writer::new();
        self.encode_into(&mut w)?;
        Ok(w.into_bytes())
    }

    /// Decodes what [`Self::encode_into`] writes: a conversation route, and a basis that is
    /// a route of the same business (default, or a conversation route for the same
    /// customer) with a lower version when it is a conversation route.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let route = SignedRoute::decode(r.var_bytes16("route", super::MAX_ROUTE_LEN)?)?;
        if route.body.customer.is_none() {
            return Err(DecodeError::InvalidValue("route customer"));
        }
        let basis = match r.var_bytes16("route", super::MAX_ROUTE_LEN)? {
            [] => None,
            b => Some(SignedRoute::decode(b)?),
        };
        if let Some(b) = &basis {
            let same_business = b.body.account == route.body.account;
            let fits = match &b.body.customer {
                None => true,
                Some(c) => {
                    Some(c) == route.body.customer.as_ref()
                        && b.body.route_version < route.body.route_version
                }
            };
            if !same_business || !fits {
                return Err(DecodeError::InvalidValue("route basis"));
            }
        }
        Ok(Self { route, basis })
    }

    /// Decodes a whole input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let m = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(m)
    }
}

/// A conversation's state on the business's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationState {
    /// `0x01`: open.
    Open,
    /// `0x02`: resolved (back on the default route's devices until someone claims it).
    Resolved,
}

impl ConversationState {
    /// The state's byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Open => 1,
            Self::Resolved => 2,
        }
    }

    /// The state of a byte.
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(Self::Open),
            2 => Ok(Self::Resolved),
            _ => Err(DecodeError::InvalidValue("conversation state")),
        }
    }
}

/// One message of a handoff: who sent it, when, and its whole content encoding (kind text
/// or bytes), borrowed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HandoffEntryRef<'a> {
    /// The sending account's side.
    pub side: Side,
    /// The sending device's id (≥ 1).
    pub device: u32,
    /// When the relay accepted it (Unix ms; informative, not in the transcript).
    pub timestamp: u64,
    /// The message's content encoding (version, kind `0x01` or `0x02`, message id, body).
    pub content: &'a [u8],
}

/// Shows who and when, never the content.
impl core::fmt::Debug for HandoffEntryRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandoffEntryRef")
            .field("side", &self.side)
            .field("device", &self.device)
            .field("timestamp", &self.timestamp)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// The body of a desk content (content kind `0x06`, `spec/business.md` 8.2), borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeskRef<'a> {
    /// `0x01`: the conversation with `customer` now has `route`, in `state`.
    Assign {
        /// The conversation's customer.
        customer: AccountId,
        /// Open, or resolved.
        state: ConversationState,
        /// The new conversation route (for `customer`) and its basis.
        route: Box<RouteMessage>,
    },
    /// `0x02`: one part of the conversation so far, for the devices of the route of
    /// `route_version` (a handoff too long for one content is sent in several, in order).
    Handoff {
        /// The conversation's customer.
        customer: AccountId,
        /// The version of the route this handoff goes with.
        route_version: u64,
        /// This part's number, 1 ..= `parts`.
        part: u16,
        /// How many parts the handoff has, 1 ..= [`MAX_HANDOFF_PARTS`].
        parts: u16,
        /// A note for the new devices (may be empty; always empty after part 1).
        note: &'a str,
        /// This part's messages, continuing the previous part's, in the handoff's order.
        entries: Vec<HandoffEntryRef<'a>>,
    },
    /// `0x03`: an internal note.
    Note {
        /// The conversation's customer.
        customer: AccountId,
        /// The note (1 ..= [`MAX_NOTE_LEN`] bytes).
        text: &'a str,
    },
}

impl<'a> DeskRef<'a> {
    /// The conversation's customer.
    pub fn customer(&self) -> &AccountId {
        match self {
            Self::Assign { customer, .. }
            | Self::Handoff { customer, .. }
            | Self::Note { customer, .. } => customer,
        }
    }

    /// The encoding (the content's body). Fails when a field breaks a rule of
    /// [`Self::decode`].
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut w = Writer::new();
        match self {
            Self::Assign {
                customer,
                state,
                route,
            } => {
                w.u8(DESK_ASSIGN);
                customer.encode_into(&mut w);
                w.u8(state.to_u8());
                route.encode_into(&mut w)?;
            }
            Self::Handoff {
                customer,
                route_version,
                part,
                parts,
                note,
                entries,
            } => {
                check_parts(*part, *parts, note)?;
                check_note(note, true)?;
                if entries.len() > MAX_HANDOFF_ENTRIES {
                    return Err(DecodeError::TooMany {
                        what: "handoff entries",
                        count: entries.len(),
                        max: MAX_HANDOFF_ENTRIES,
                    });
                }
                w.u8(DESK_HANDOFF);
                customer.encode_into(&mut w);
                w.u64(*route_version)
                    .u16(*part)
                    .u16(*parts)
                    .var_bytes16(note.as_bytes());
                w.u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
                for e in entries {
                    check_entry_content(e.content)?;
                    w.u8(e.side.to_u8())
                        .u32(e.device)
                        .u64(e.timestamp)
                        .var_bytes32(e.content);
                }
            }
            Self::Note { customer, text } => {
                check_note(text, false)?;
                w.u8(DESK_NOTE);
                customer.encode_into(&mut w);
                w.var_bytes16(text.as_bytes());
            }
        }
        let bytes = w.into_bytes();
        if bytes.len() > crate::content::MAX_BODY_LEN {
            return Err(DecodeError::TooLong {
                what: "desk content",
                len: bytes.len(),
                max: crate::content::MAX_BODY_LEN,
            });
        }
        Ok(bytes)
    }

    /// Decodes a whole body (`spec/business.md` 8.2): a known action, the customer's
    /// `AccountId`, the action's fields, nothing after them.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let action = r.u8()?;
        let customer = AccountId::decode_from(&mut r)?;
        let desk = match action {
            DESK_ASSIGN => {
                let state = ConversationState::from_u8(r.u8()?)?;
                let route = Box::new(RouteMessage::decode_from(&mut r)?);
                if route.route.body.customer.as_ref() != Some(&customer) {
                    return Err(DecodeError::InvalidValue("route customer"));
                }
                Self::Assign {
                    customer,
                    state,
                    route,
                }
            }
            DESK_HANDOFF => {
                let route_version = r.u64()?;
                if route_version == 0 {
                    return Err(DecodeError::InvalidValue("route version"));
                }
                let part = r.u16()?;
                let parts = r.u16()?;
                let note = utf8(r.var_bytes16("note", MAX_NOTE_LEN)?)?;
                check_parts(part, parts, note)?;
                let count = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
                if count > MAX_HANDOFF_ENTRIES {
                    return Err(DecodeError::TooMany {
                        what: "handoff entries",
                        count,
                        max: MAX_HANDOFF_ENTRIES,
                    });
                }
                let mut entries =
                    Vec::with_capacity(count.min(r.remaining() / MIN_HANDOFF_ENTRY_LEN));
                for _ in 0..count {
                    let side = Side::decode_from(&mut r)?;
                    let device = r.u32()?;
                    if device == 0 {
                        return Err(DecodeError::InvalidValue("device id"));
                    }
                    let timestamp = r.u64()?;
                    let content = r.var_bytes32("handoff entry", crate::content::MAX_BODY_LEN)?;
                    check_entry_content(content)?;
                    entries.push(HandoffEntryRef {
                        side,
                        device,
                        timestamp,
                        content,
                    });
                }
                Self::Handoff {
                    customer,
                    route_version,
                    part,
                    parts,
                    note,
                    entries,
                }
            }
            DESK_NOTE => {
                let text = utf8(r.var_bytes16("note", MAX_NOTE_LEN)?)?;
                check_note(text, false)?;
                Self::Note { customer, text }
            }
            value => {
                return Err(DecodeError::UnknownType {
                    what: "desk action",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(desk)
    }
}

fn utf8(b: &[u8]) -> Result<&str, DecodeError> {
    core::str::from_utf8(b).map_err(|_| DecodeError::InvalidValue("note"))
}

fn check_note(text: &str, may_be_empty: bool) -> Result<(), DecodeError> {
    if text.len() > MAX_NOTE_LEN {
        return Err(DecodeError::TooLong {
            what: "note",
            len: text.len(),
            max: MAX_NOTE_LEN,
        });
    }
    if text.is_empty() && !may_be_empty {
        return Err(DecodeError::InvalidValue("note"));
    }
    Ok(())
}

/// `1 ≤ part ≤ parts ≤ MAX_HANDOFF_PARTS`, and only part 1 carries a note.
fn check_parts(part: u16, parts: u16, note: &str) -> Result<(), DecodeError> {
    if parts == 0 || parts > MAX_HANDOFF_PARTS {
        return Err(DecodeError::InvalidValue("handoff parts"));
    }
    if part == 0 || part > parts {
        return Err(DecodeError::InvalidValue("handoff part"));
    }
    if part > 1 && !note.is_empty() {
        return Err(DecodeError::InvalidValue("note"));
    }
    Ok(())
}

/// A handoff entry's content must be a message content (kind text or bytes).
fn check_entry_content(content: &[u8]) -> Result<(), DecodeError> {
    match Content::decode(content)?.body {
        ContentBody::Message(_) => Ok(()),
        _ => Err(DecodeError::UnknownType {
            what: "content kind",
            value: content.get(1).copied().unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn customer() -> AccountId {
        AccountId::new("+15550001111").unwrap()
    }

    fn head(side: Side, device: u32) -> ChainHead {
        ChainHead {
            side,
            device,
            length: 1,
            head: [7; CHAIN_HEAD_LEN],
        }
    }

    #[test]
    fn notes_entries_and_chains_are_bounded() {
        let long = "n".repeat(MAX_NOTE_LEN + 1);
        let note = |text| DeskRef::Note {
            customer: customer(),
            text,
        };
        assert!(matches!(
            note(&long).encode(),
            Err(DecodeError::TooLong { what: "note", .. })
        ));
        assert_eq!(note("").encode(), Err(DecodeError::InvalidValue("note")));
        let max = "n".repeat(MAX_NOTE_LEN);
        let ok = note(&max).encode().unwrap();
        assert_eq!(DeskRef::decode(&ok).unwrap(), note(&max));
        // A declared entry count over the bound is refused before anything is read.
        let mut w = Writer::new();
        w.u8(DESK_HANDOFF);
        customer().encode_into(&mut w);
        w.u64(1)
            .u16(1)
            .u16(1)
            .var_bytes16(b"")
            .u32(u32::try_from(MAX_HANDOFF_ENTRIES + 1).unwrap());
        assert_eq!(
            DeskRef::decode(&w.into_bytes()),
            Err(DecodeError::TooMany {
                what: "handoff entries",
                count: MAX_HANDOFF_ENTRIES + 1,
                max: MAX_HANDOFF_ENTRIES
            })
        );
        // Parts: 1 ..= parts ..= 64, a note only in part 1; encoding checks the same.
        let handoff = |part, parts, note| DeskRef::Handoff {
            customer: customer(),
            route_version: 1,
            part,
            parts,
            note,
            entries: Vec::new(),
        };
        for (part, parts, note, refused) in [
            (0, 1, "", "handoff part"),
            (2, 1, "", "handoff part"),
            (1, 0, "", "handoff parts"),
            (1, MAX_HANDOFF_PARTS + 1, "", "handoff parts"),
            (2, 2, "late", "note"),
        ] {
            assert_eq!(
                handoff(part, parts, note).encode(),
                Err(DecodeError::InvalidValue(refused)),
                "part {part} of {parts}"
            );
        }
        for (part, parts, note) in [(1, 1, "x"), (1, MAX_HANDOFF_PARTS, ""), (64, 64, "")] {
            let bytes = handoff(part, parts, note).encode().unwrap();
            assert_eq!(DeskRef::decode(&bytes).unwrap(), handoff(part, parts, note));
        }
        // Chains: at most 128, strictly increasing, device and length at least 1.
        let chains: Vec<ChainHead> = (1..=129).map(|d| head(Side::Customer, d)).collect();
        let over = TranscriptConfirmation {
            route_version: 1,
            chains,
        };
        assert!(matches!(
            over.encode(),
            Err(DecodeError::TooMany {
                what: "transcript chains",
                ..
            })
        ));
        let mut fits = over.clone();
        fits.chains.truncate(MAX_TRANSCRIPT_CHAINS);
        let bytes = fits.encode().unwrap();
        assert_eq!(TranscriptConfirmation::decode(&bytes).unwrap(), fits);
        let twice = TranscriptConfirmation {
            route_version: 1,
            chains: vec![head(Side::Business, 2), head(Side::Business, 2)],
        };
        assert_eq!(
            twice.encode(),
            Err(DecodeError::InvalidValue("chain order"))
        );
        let mut zero = bytes.clone();
        zero[9 + 1..9 + 5].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            TranscriptConfirmation::decode(&zero),
            Err(DecodeError::InvalidValue("device id"))
        );
        let mut empty_chain = bytes.clone();
        empty_chain[9 + 5..9 + 9].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            TranscriptConfirmation::decode(&empty_chain),
            Err(DecodeError::InvalidValue("chain length"))
        );
        let mut side = bytes;
        side[9] = 2;
        assert_eq!(
            TranscriptConfirmation::decode(&side),
            Err(DecodeError::InvalidValue("side"))
        );
    }
}
