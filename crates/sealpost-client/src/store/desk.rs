//! Business conversations in the store (spec/client-store.md 5.13 and 5.14): the transcript
//! chains a device keeps of each conversation with a business, and, on a business's device,
//! each customer conversation's route, state, notes, handoff and confirmations.

use super::records::{malformed, start};
use super::{Batch, Store, Table};
use crate::error::StoreError;
use sealpost_crypto::Zeroizing;
use sealpost_devices::{Transcript, TranscriptLog};
use sealpost_wire::business::{
    CHAIN_HEAD_LEN, ConversationState, MAX_HANDOFF_PARTS, MAX_NOTE_LEN, MAX_ROUTE_LEN,
    MAX_TRANSCRIPT_CHAINS, Side, SignedRoute, TranscriptConfirmation, decode_chains, encode_chains,
};
use sealpost_wire::{AccountId, DecodeError, Reader, Writer};

/// Most notes a desk record keeps (the oldest go first).
pub const MAX_DESK_NOTES: usize = 64;
/// Most confirmations a desk record keeps, one per customer device (the oldest go first).
pub const MAX_DESK_CONFIRMATIONS: usize = 8;
/// Longest confirmation body: route version, count, chains.
const MAX_CONFIRMATION_LEN: usize =
    9 + MAX_TRANSCRIPT_CHAINS * sealpost_wire::business::CHAIN_HEAD_ENCODED_LEN;

/// An internal note as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredNote {
    pub(crate) device: u32,
    pub(crate) at: u64,
    pub(crate) text: String,
}

/// The last handoff a business device received for a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredHandoff {
    /// The device that handed the conversation on.
    pub(crate) from: u32,
    /// The route it goes with.
    pub(crate) route_version: u64,
    /// How many parts it has (spec/business.md 8.2).
    pub(crate) parts: u16,
    /// How many of them arrived (parts 1 ..= `received`, in order).
    pub(crate) received: u16,
    /// When its first part arrived (relay time).
    pub(crate) at: u64,
    /// Its note.
    pub(crate) note: String,
    /// Its messages as chains of heads.
    pub(crate) log: TranscriptLog,
}

impl StoredHandoff {
    /// Whether every part arrived.
    pub(crate) fn complete(&self) -> bool {
        self.received == self.parts
    }
}

/// A customer device's confirmation as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredConfirmation {
    pub(crate) device: u32,
    pub(crate) at: u64,
    pub(crate) confirmation: TranscriptConfirmation,
}

/// One customer conversation on a business's device (spec/client-store.md 5.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeskRecord {
    pub(crate) customer: AccountId,
    pub(crate) state: ConversationState,
    /// The conversation route as last accepted (verified again before every use).
    pub(crate) route: Option<SignedRoute>,
    pub(crate) notes: Vec<StoredNote>,
    pub(crate) handoff: Option<StoredHandoff>,
    pub(crate) confirmations: Vec<StoredConfirmation>,
}

impl DeskRecord {
    pub(crate) fn new(customer: AccountId) -> Self {
        Self {
            customer,
            state: ConversationState::Open,
            route: None,
            notes: Vec::new(),
            handoff: None,
            confirmations: Vec::new(),
        }
    }

    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
        let mut w = Writer::with_capacity(1024);
        w.u8(DESK_RECORD_VERSION);
        self.customer.encode_into(&mut w);
        w.u8(self.state.to_u8());
        w.flag(self.route.is_some());
        if let Some(r) = &self.route {
            w.var_bytes16(&r.encode()?);
        }
        w.u8(u8::try_from(self.notes.len().min(MAX_DESK_NOTES)).unwrap_or(0));
        for n in self.notes.iter().take(MAX_DESK_NOTES) {
            w.u32(n.device).u64(n.at).var_bytes16(n.text.as_bytes());
        }
        w.flag(self.handoff.is_some());
        if let Some(h) = &self.handoff {
            w.u32(h.from)
                .u64(h.route_version)
                .u16(h.parts)
                .u16(h.received)
                .u64(h.at)
                .var_bytes16(h.note.as_bytes());
            let chains: Vec<_> = h.log.chains().collect();
            w.u8(u8::try_from(chains.len()).map_err(|_| DecodeError::InvalidValue("chains"))?);
            for (side, device, heads) in chains {
                w.u8(side.to_u8())
                    .u32(device)
                    .u32(u32::try_from(heads.len()).unwrap_or(u32::MAX));
                for h in heads {
                    w.bytes(h);
                }
            }
        }
        w.u8(u8::try_from(self.confirmations.len().min(MAX_DESK_CONFIRMATIONS)).unwrap_or(0));
        for c in self.confirmations.iter().take(MAX_DESK_CONFIRMATIONS) {
            w.u32(c.device)
                .u64(c.at)
                .var_bytes16(&c.confirmation.encode()?);
        }
        Ok(Zeroizing::new(w.into_bytes()))
    }

    fn decode(bytes: &[u8], customer: &AccountId) -> Result<Self, StoreError> {
        let m = malformed("desk");
        let mut r = Reader::new(bytes);
        let version = desk_version(&mut r).map_err(&m)?;
        let named = AccountId::decode_from(&mut r).map_err(&m)?;
        if &named != customer {
            return Err(StoreError::Inconsistent("desk record account"));
        }
        let state = ConversationState::from_u8(r.u8().map_err(&m)?).map_err(&m)?;
        let route = if r.flag("has_route").map_err(&m)? {
            let b = r.var_bytes16("route", MAX_ROUTE_LEN).map_err(&m)?;
            Some(SignedRoute::decode(b).map_err(&m)?)
        } else {
            None
        };
        let count = usize::from(r.u8().map_err(&m)?);
        if count > MAX_DESK_NOTES {
            return Err(m(DecodeError::TooMany {
                what: "notes",
                count,
                max: MAX_DESK_NOTES,
            }));
        }
        let mut notes = Vec::with_capacity(count);
        for _ in 0..count {
            let device = r.u32().map_err(&m)?;
            let at = r.u64().map_err(&m)?;
            let text = note(r.var_bytes16("note", MAX_NOTE_LEN).map_err(&m)?).map_err(&m)?;
            notes.push(StoredNote { device, at, text });
        }
        let handoff = if r.flag("has_handoff").map_err(&m)? {
            let from = r.u32().map_err(&m)?;
            let route_version = r.u64().map_err(&m)?;
            // Version 0x01 (before handoffs had parts): one part, received.
            let (parts, received) = if version == DESK_RECORD_VERSION {
                (r.u16().map_err(&m)?, r.u16().map_err(&m)?)
            } else {
                (1, 1)
            };
            if parts == 0 || parts > MAX_HANDOFF_PARTS || received == 0 || received > parts {
                return Err(m(DecodeError::InvalidValue("handoff parts")));
            }
            let at = r.u64().map_err(&m)?;
            let text = note(r.var_bytes16("note", MAX_NOTE_LEN).map_err(&m)?).map_err(&m)?;
            let n = usize::from(r.u8().map_err(&m)?);
            let mut chains = Vec::with_capacity(n.min(MAX_TRANSCRIPT_CHAINS));
            for _ in 0..n {
                let side = match r.u8().map_err(&m)? {
                    0 => Side::Customer,
                    1 => Side::Business,
                    _ => return Err(m(DecodeError::InvalidValue("side"))),
                };
                let device = r.u32().map_err(&m)?;
                let len = usize::try_from(r.u32().map_err(&m)?).unwrap_or(usize::MAX);
                if len > r.remaining() / CHAIN_HEAD_LEN {
                    return Err(m(DecodeError::InvalidValue("chain length")));
                }
                let mut heads = Vec::with_capacity(len);
                for _ in 0..len {
                    heads.push(r.array().map_err(&m)?);
                }
                chains.push((side, device, heads));
            }
            let log = TranscriptLog::from_chains(chains)
                .map_err(|_| StoreError::Inconsistent("desk record chains"))?;
            Some(StoredHandoff {
                from,
                route_version,
                parts,
                received,
                at,
                note: text,
                log,
            })
        } else {
            None
        };
        let count = usize::from(r.u8().map_err(&m)?);
        if count > MAX_DESK_CONFIRMATIONS {
            return Err(m(DecodeError::TooMany {
                what: "confirmations",
                count,
                max: MAX_DESK_CONFIRMATIONS,
            }));
        }
        let mut confirmations = Vec::with_capacity(count);
        for _ in 0..count {
            let device = r.u32().map_err(&m)?;
            let at = r.u64().map_err(&m)?;
            let body = r
                .var_bytes16("confirmation", MAX_CONFIRMATION_LEN)
                .map_err(&m)?;
            confirmations.push(StoredConfirmation {
                device,
                at,
                confirmation: TranscriptConfirmation::decode(body).map_err(&m)?,
            });
        }
        r.finish().map_err(&m)?;
        Ok(Self {
            customer: named,
            state,
            route,
            notes,
            handoff,
            confirmations,
        })
    }
}

/// The desk record's version (client-store.md 5.14): `0x02`, or `0x01` from before
/// handoffs had parts (read, never written).
const DESK_RECORD_VERSION: u8 = 0x02;

fn desk_version(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0x01 | DESK_RECORD_VERSION) => Ok(v),
        v => Err(DecodeError::UnsupportedVersion(v)),
    }
}

fn note(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidValue("note"))
}

/// `0x01 || account || count (u8) || chains` (client-store.md 5.13).
fn encode_transcript(
    account: &AccountId,
    t: &Transcript,
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let mut w = Writer::with_capacity(64 + 41 * 8);
    w.u8(super::RECORD_PLAINTEXT_VERSION);
    account.encode_into(&mut w);
    encode_chains(&mut w, &t.heads())?;
    Ok(Zeroizing::new(w.into_bytes()))
}

fn decode_transcript(bytes: &[u8], account: &AccountId) -> Result<Transcript, StoreError> {
    let m = malformed("transcripts");
    let mut r = Reader::new(bytes);
    start(&mut r).map_err(&m)?;
    let named = AccountId::decode_from(&mut r).map_err(&m)?;
    if &named != account {
        return Err(StoreError::Inconsistent("transcript account"));
    }
    let heads = decode_chains(&mut r).map_err(&m)?;
    r.finish().map_err(&m)?;
    Ok(Transcript::from_heads(&heads))
}

impl Store {
    /// The transcript chains of the conversation with the business `account` (empty if
    /// none).
    pub(crate) fn transcript(&self, account: &AccountId) -> Result<Transcript, StoreError> {
        match self
            .backend()
            .get(Table::Transcripts, &self.account_tag(account))?
        {
            None => Ok(Transcript::new()),
            Some(row) => decode_transcript(&self.open_row(Table::Transcripts, &row)?, account),
        }
    }

    /// Replaces the transcript chains of the conversation with `account`.
    pub(crate) fn put_transcript(
        &self,
        batch: &mut Batch,
        account: &AccountId,
        t: &Transcript,
    ) -> Result<(), StoreError> {
        let value = encode_transcript(account, t).map_err(malformed("transcripts"))?;
        let key = self.account_tag(account).to_vec();
        self.put(batch, Table::Transcripts, key, Vec::new(), 0, &value);
        Ok(())
    }

    /// The desk record of the conversation with `customer`, if any.
    pub(crate) fn desk_record(
        &self,
        customer: &AccountId,
    ) -> Result<Option<DeskRecord>, StoreError> {
        match self
            .backend()
            .get(Table::Desk, &self.account_tag(customer))?
        {
            None => Ok(None),
            Some(row) => DeskRecord::decode(&self.open_row(Table::Desk, &row)?, customer).map(Some),
        }
    }

    /// Every desk record (their accounts are inside the sealed records).
    pub(crate) fn desk_records(&self) -> Result<Vec<DeskRecord>, StoreError> {
        let mut out = Vec::new();
        for row in self.backend().first(Table::Desk, usize::MAX)? {
            let plain = self.open_row(Table::Desk, &row)?;
            let mut r = Reader::new(&plain);
            desk_version(&mut r).map_err(malformed("desk"))?;
            let customer = AccountId::decode_from(&mut r).map_err(malformed("desk"))?;
            if self.account_tag(&customer).as_slice() != row.key.as_slice() {
                return Err(StoreError::Inconsistent("desk record account"));
            }
            out.push(DeskRecord::decode(&plain, &customer)?);
        }
        Ok(out)
    }

    /// Replaces the desk record of its customer.
    pub(crate) fn put_desk_record(
        &self,
        batch: &mut Batch,
        record: &DeskRecord,
    ) -> Result<(), StoreError> {
        let value = record.encode().map_err(malformed("desk"))?;
        let key = self.account_tag(&record.customer).to_vec();
        self.put(batch, Table::Desk, key, Vec::new(), 0, &value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(parts: u16, received: u16) -> DeskRecord {
        let customer = AccountId::new("+15550007999").unwrap();
        let mut log = TranscriptLog::new();
        log.push(Side::Customer, 1, b"\x01\x01hello").unwrap();
        let mut r = DeskRecord::new(customer);
        r.handoff = Some(StoredHandoff {
            from: 3,
            route_version: 2,
            parts,
            received,
            at: 1_765_000_000_000,
            note: "shift ends".into(),
            log,
        });
        r
    }

    #[test]
    fn a_handoff_in_progress_round_trips() {
        let r = record(3, 2);
        let bytes = r.encode().unwrap();
        assert_eq!(bytes[0], DESK_RECORD_VERSION);
        let back = DeskRecord::decode(&bytes, &r.customer).unwrap();
        assert_eq!(back, r);
        assert!(!back.handoff.unwrap().complete());
    }

    #[test]
    fn a_version_1_record_reads_as_one_part_received() {
        let r = record(1, 1);
        let v2 = r.encode().unwrap();
        // Version 1 had no parts and received fields after the route version.
        let mut customer = Writer::new();
        r.customer.encode_into(&mut customer);
        // version, customer, state, has_route, notes count, has_handoff, from, route_version
        let at = 1 + customer.into_bytes().len() + 1 + 1 + 1 + 1 + 4 + 8;
        let mut v1 = v2.to_vec();
        v1.drain(at..at + 4);
        v1[0] = 0x01;
        assert_eq!(DeskRecord::decode(&v1, &r.customer).unwrap(), r);
    }

    #[test]
    fn more_parts_received_than_sent_is_malformed() {
        for (parts, received) in [(2, 3), (0, 0), (65, 1), (2, 0)] {
            let r = record(parts, received);
            let bytes = r.encode().unwrap();
            assert!(
                matches!(
                    DeskRecord::decode(&bytes, &r.customer),
                    Err(StoreError::Malformed { .. })
                ),
                "parts {parts}, received {received}"
            );
        }
    }
}
