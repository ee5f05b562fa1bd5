//! Conversation transcripts (`spec/business.md` section 9): the hash chains a customer's
//! client keeps of a conversation with a business, and the check a business device makes
//! of a handoff against the customer's confirmation.

use sealpost_wire::business::{
    CHAIN_HEAD_LEN, ChainHead, MAX_TRANSCRIPT_CHAINS, Side, TranscriptConfirmation,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label before every chain step's input.
pub const TRANSCRIPT_LABEL: &[u8] = b"Sealpost_Transcript_v1";

/// A chain's head before its first message.
pub const EMPTY_CHAIN_HEAD: [u8; CHAIN_HEAD_LEN] = [0; CHAIN_HEAD_LEN];

/// Section 9.1: the head after `content` (a message's whole content encoding) follows
/// `head`: `SHA-256("Sealpost_Transcript_v1" || head || content)`.
pub fn chain_step(head: &[u8; CHAIN_HEAD_LEN], content: &[u8]) -> [u8; CHAIN_HEAD_LEN] {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_LABEL);
    h.update(head);
    h.update(content);
    h.finalize().into()
}

/// Why a message could not be added to a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscriptError {
    /// A new chain would be one more than [`MAX_TRANSCRIPT_CHAINS`].
    #[error("too many transcript chains")]
    TooManyChains,
    /// A chain already holds `u32::MAX` messages.
    #[error("transcript chain full")]
    ChainFull,
    /// Device 0 does not send.
    #[error("device id 0 in a transcript")]
    DeviceZero,
}

/// The heads of a conversation's chains, as a customer's client keeps them (9.1): per
/// sending device of either side, how many of its messages this device has seen and the
/// head after the last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    chains: BTreeMap<(Side, u32), (u32, [u8; CHAIN_HEAD_LEN])>,
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    /// The transcript these heads describe (they decoded: in order, within bounds).
    pub fn from_heads(heads: &[ChainHead]) -> Self {
        Self {
            chains: heads
                .iter()
                .map(|c| (c.key(), (c.length, c.head)))
                .collect(),
        }
    }

    /// Adds the message `content` sent by `device` of `side` after the chain's last one.
    /// A transcript that refuses it is unchanged.
    pub fn append(
        &mut self,
        side: Side,
        device: u32,
        content: &[u8],
    ) -> Result<(), TranscriptError> {
        if device == 0 {
            return Err(TranscriptError::DeviceZero);
        }
        if !self.chains.contains_key(&(side, device)) && self.chains.len() >= MAX_TRANSCRIPT_CHAINS
        {
            return Err(TranscriptError::TooManyChains);
        }
        let (length, head) = self
            .chains
            .entry((side, device))
            .or_insert((0, EMPTY_CHAIN_HEAD));
        let next = length.checked_add(1).ok_or(TranscriptError::ChainFull)?;
        *head = chain_step(head, content);
        *length = next;
        Ok(())
    }

    /// The chains, strictly increasing by side and device (what a confirmation carries).
    pub fn heads(&self) -> Vec<ChainHead> {
        self.chains
            .iter()
            .map(|(&(side, device), &(length, head))| ChainHead {
                side,
                device,
                length,
                head,
            })
            .collect()
    }
}

/// What a business device received in a handoff, as chains of heads (9.3): for each
/// sending device, the head after each of its messages, in the handoff's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TranscriptLog {
    chains: BTreeMap<(Side, u32), Vec<[u8; CHAIN_HEAD_LEN]>>,
}

impl TranscriptLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next message of `device` of `side`. A log that refuses it is unchanged.
    pub fn push(&mut self, side: Side, device: u32, content: &[u8]) -> Result<(), TranscriptError> {
        if device == 0 {
            return Err(TranscriptError::DeviceZero);
        }
        if !self.chains.contains_key(&(side, device)) && self.chains.len() >= MAX_TRANSCRIPT_CHAINS
        {
            return Err(TranscriptError::TooManyChains);
        }
        let heads = self.chains.entry((side, device)).or_default();
        if u32::try_from(heads.len()).is_ok_and(|n| n == u32::MAX) {
            return Err(TranscriptError::ChainFull);
        }
        let last = heads.last().copied().unwrap_or(EMPTY_CHAIN_HEAD);
        heads.push(chain_step(&last, content));
        Ok(())
    }

    /// Rebuilds a log from stored chains (each: side, device, heads in order).
    pub fn from_chains(
        chains: impl IntoIterator<Item = (Side, u32, Vec<[u8; CHAIN_HEAD_LEN]>)>,
    ) -> Result<Self, TranscriptError> {
        let mut log = Self::new();
        for (side, device, heads) in chains {
            if device == 0 {
                return Err(TranscriptError::DeviceZero);
            }
            if log.chains.len() >= MAX_TRANSCRIPT_CHAINS {
                return Err(TranscriptError::TooManyChains);
            }
            log.chains.insert((side, device), heads);
        }
        Ok(log)
    }

    /// The chains: side, device, the heads after each message.
    pub fn chains(&self) -> impl Iterator<Item = (Side, u32, &[[u8; CHAIN_HEAD_LEN]])> {
        self.chains
            .iter()
            .map(|(&(side, device), heads)| (side, device, heads.as_slice()))
    }

    /// How many messages the log holds.
    pub fn len(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Section 9.3: checks this log (a handoff) against `confirmation`, which the customer's
    /// device `confirming_device` sent when it accepted the route the handoff goes with.
    pub fn check(
        &self,
        confirmation: &TranscriptConfirmation,
        confirming_device: u32,
    ) -> HandoffCheck {
        let mut confirmed = 0usize;
        let mut missing = 0usize;
        let mut unconfirmed = 0usize;
        for c in &confirmation.chains {
            let heads = self.chains.get(&c.key()).map_or(&[][..], Vec::as_slice);
            let k = usize::try_from(c.length).unwrap_or(usize::MAX);
            match k.checked_sub(1).and_then(|i| heads.get(i)) {
                // The customer has seen more of this chain than the handoff holds: its
                // messages here cannot be checked.
                None => missing = missing.saturating_add(k.saturating_sub(heads.len())),
                Some(h) if h != &c.head => {
                    return HandoffCheck::Mismatch {
                        side: c.side,
                        device: c.device,
                    };
                }
                Some(_) => {
                    confirmed = confirmed.saturating_add(k);
                    unconfirmed = unconfirmed.saturating_add(heads.len() - k);
                }
            }
            if c.side == Side::Customer && c.device == confirming_device && heads.len() > k {
                // The confirming device sent no more than it counted before the route
                // (and so the handoff) existed: the rest was invented.
                return HandoffCheck::Mismatch {
                    side: c.side,
                    device: c.device,
                };
            }
        }
        for (&(side, device), heads) in &self.chains {
            if confirmation
                .chains
                .iter()
                .any(|c| c.key() == (side, device))
            {
                continue;
            }
            if side == Side::Customer && device == confirming_device && !heads.is_empty() {
                return HandoffCheck::Mismatch { side, device };
            }
            unconfirmed = unconfirmed.saturating_add(heads.len());
        }
        if missing > 0 {
            HandoffCheck::Incomplete { missing, confirmed }
        } else {
            HandoffCheck::Verified {
                confirmed,
                unconfirmed,
            }
        }
    }
}

/// The result of checking a handoff against the customer's confirmation (section 9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandoffCheck {
    /// Every message the customer confirmed is in the handoff, unaltered, in order, with
    /// nothing between them left out or added; `unconfirmed` more (from the business's
    /// devices or the customer's other devices) had not reached the confirming device yet.
    Verified {
        /// Messages the confirmation covers.
        confirmed: usize,
        /// Messages after what the customer had seen.
        unconfirmed: usize,
    },
    /// The handoff ends before `missing` messages the customer confirmed (sent while the
    /// conversation was moving, or left out at the end); the chains it holds completely
    /// (`confirmed` messages) match.
    Incomplete {
        /// Messages the customer confirmed that the handoff lacks.
        missing: usize,
        /// Messages of complete chains that match.
        confirmed: usize,
    },
    /// The chain of `device` of `side` differs from what the customer saw: a message was
    /// altered, reordered, left out in the middle or invented.
    Mismatch {
        /// The chain's side.
        side: Side,
        /// The chain's device.
        device: u32,
    },
}
