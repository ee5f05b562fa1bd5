//! Read markers and deletions of conversations (spec/client-store.md 5.11 and 6.3): how far
//! the user has read each conversation, and removing history entries.

use super::records::{decode_history_id, malformed, start};
use super::{Batch, Direction, Store, Table, WriteOp};
use crate::content::MessageId;
use crate::error::StoreError;
use sealpost_crypto::Zeroizing;
use sealpost_wire::relay::MESSAGE_ID_LEN;
use sealpost_wire::{AccountId, Reader, Writer};

/// How far the user has read the conversation with one account: every history entry of the
/// conversation at or before `position` counts as read (spec/client-store.md 5.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadMarker {
    /// The other account of the conversation.
    pub(crate) peer: AccountId,
    /// The newest message read.
    pub(crate) up_to: MessageId,
    /// The history position (`seq`) of `up_to` in this store when it was read.
    pub(crate) position: u64,
}

impl ReadMarker {
    pub(crate) const TABLE: &'static str = "reads";

    /// `0x01 || peer (AccountId) || up_to (16) || position (u64)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(96);
        w.u8(super::RECORD_PLAINTEXT_VERSION);
        self.peer.encode_into(&mut w);
        w.bytes(self.up_to.as_bytes()).u64(self.position);
        Zeroizing::new(w.into_bytes())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let peer = AccountId::decode_from(&mut r).map_err(&m)?;
        let up_to = MessageId::from_bytes(r.array::<MESSAGE_ID_LEN>().map_err(&m)?);
        let position = r.u64().map_err(&m)?;
        r.finish().map_err(&m)?;
        Ok(Self {
            peer,
            up_to,
            position,
        })
    }
}

impl Store {
    /// The read marker of the conversation with `peer`, if the user has read any of it.
    pub(crate) fn read_marker(&self, peer: &AccountId) -> Result<Option<ReadMarker>, StoreError> {
        let Some(row) = self.backend().get(Table::Reads, &self.account_tag(peer))? else {
            return Ok(None);
        };
        let marker = ReadMarker::decode(&self.open_row(Table::Reads, &row)?)?;
        if &marker.peer != peer {
            return Err(StoreError::Inconsistent("read marker account"));
        }
        Ok(Some(marker))
    }

    pub(crate) fn put_read_marker(&self, batch: &mut Batch, marker: &ReadMarker) {
        self.put(
            batch,
            Table::Reads,
            self.account_tag(&marker.peer).to_vec(),
            Vec::new(),
            0,
            &marker.encode(),
        );
    }

    pub(crate) fn delete_read_marker(&self, batch: &mut Batch, peer: &AccountId) {
        batch.ops.push(WriteOp::Delete {
            table: Table::Reads,
            key: self.account_tag(peer).to_vec(),
        });
    }

    /// The position, direction and message id of every entry of the conversation with
    /// `peer`, oldest first, without decoding message bodies. An entry that does not open or
    /// decode is skipped (logged): it cannot be matched, and it must not stop a sync from
    /// applying.
    pub(crate) fn conversation_ids(
        &self,
        peer: &AccountId,
    ) -> Result<Vec<(u64, Direction, MessageId)>, StoreError> {
        let group = self.account_tag(peer);
        let mut out = Vec::new();
        for row in self
            .backend()
            .group(Table::History, &group, usize::MAX, false)?
        {
            let decoded = self
                .open_row(Table::History, &row)
                .and_then(|plain| decode_history_id(&plain));
            match decoded {
                Ok((direction, address, id)) if &address.account == peer => {
                    out.push((row.seq, direction, id));
                }
                Ok(_) => tracing::warn!("history entry filed under another account; skipped"),
                Err(e) => tracing::warn!(error = %e, "unreadable history entry skipped"),
            }
        }
        Ok(out)
    }

    /// The history positions of the entries of the conversation with `peer` whose message
    /// id `wanted` accepts, oldest first ([`Store::conversation_ids`]).
    pub(crate) fn find_history(
        &self,
        peer: &AccountId,
        wanted: impl Fn(&MessageId) -> bool,
    ) -> Result<Vec<(u64, MessageId)>, StoreError> {
        Ok(self
            .conversation_ids(peer)?
            .into_iter()
            .filter(|(_, _, id)| wanted(id))
            .map(|(seq, _, id)| (seq, id))
            .collect())
    }

    /// Whether the history entry at position `seq` exists (an outgoing message the user
    /// deleted while it was queued has none).
    pub(crate) fn has_history(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self
            .backend()
            .get(Table::History, &seq.to_be_bytes())?
            .is_some())
    }

    /// Deletes the history entry at position `seq`.
    pub(crate) fn delete_history(&self, batch: &mut Batch, seq: u64) {
        batch.ops.push(WriteOp::Delete {
            table: Table::History,
            key: seq.to_be_bytes().to_vec(),
        });
    }

    /// Deletes every history entry of the conversation with `peer`.
    pub(crate) fn delete_conversation(&self, batch: &mut Batch, peer: &AccountId) {
        batch.ops.push(WriteOp::DeleteGroup {
            table: Table::History,
            group: self.account_tag(peer).to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn read_marker_roundtrip_and_malformed() {
        let marker = ReadMarker {
            peer: AccountId::new("+15550001111").unwrap(),
            up_to: MessageId::from_bytes([9; 16]),
            position: 42,
        };
        let bytes = marker.encode();
        assert_eq!(bytes.len(), 1 + 1 + 12 + 16 + 8);
        assert_eq!(ReadMarker::decode(&bytes).unwrap(), marker);
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(matches!(
            ReadMarker::decode(&trailing),
            Err(StoreError::Malformed { table: "reads", .. })
        ));
        assert!(ReadMarker::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut version = bytes.to_vec();
        version[0] = 2;
        assert!(ReadMarker::decode(&version).is_err());
    }
}
