//! Reads of the history in history order, for apps that consume it as a feed (the bridge's
//! `/v1/events`, spec/client-store.md 5.5): the entries after a position, and the accounts
//! with the newest entries. Only reads: nothing here changes the store.
//!
//! History rows are keyed by their position (`seq`, big-endian), so both reads walk
//! positions with point lookups instead of loading the table. A position without a row (a
//! deleted message, a batch that failed after taking its number) is skipped; each call
//! looks at a bounded number of positions ([`MAX_FEED_SCAN`]) so that a long run of
//! deleted rows costs bounded work per call.

use super::{Store, Table, decode_history};
use crate::error::StoreError;
use crate::store::HistoryEntry;
use sealpost_wire::AccountId;

/// Most history positions one [`Store::history_after`] or [`Store::recent_accounts`] call
/// looks at.
pub const MAX_FEED_SCAN: u64 = 4096;

/// One page of the history feed ([`Store::history_after`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedPage {
    /// Entries after the requested position, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// The position to ask for next: the last position looked at (at least the requested
    /// one). Entries at or below it will not be returned again by a call with it.
    pub next: u64,
    /// Entries that did not open or decode and were skipped (logged).
    pub skipped: usize,
}

impl Store {
    /// Up to `limit` history entries with a position above `after`, oldest first, looking at
    /// no more than [`MAX_FEED_SCAN`] positions. Entries are committed in position order
    /// (the engine takes a position and commits it under its lock), so a reader that
    /// resumes from [`FeedPage::next`] misses nothing committed later. An entry that
    /// does not open or decode is skipped and counted.
    pub fn history_after(&self, after: u64, limit: usize) -> Result<FeedPage, StoreError> {
        let max = self.backend().max_seq(Table::History)?;
        let mut page = FeedPage {
            entries: Vec::new(),
            next: after,
            skipped: 0,
        };
        if limit == 0 {
            return Ok(page);
        }
        let end = max.min(after.saturating_add(MAX_FEED_SCAN));
        let mut seq = after;
        while seq < end && page.entries.len() < limit {
            seq += 1;
            page.next = seq;
            let Some(row) = self.backend().get(Table::History, &seq.to_be_bytes())? else {
                continue;
            };
            match self
                .open_row(Table::History, &row)
                .and_then(|plain| decode_history(row.seq, &plain))
            {
                Ok((entry, _)) => page.entries.push(entry),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "unreadable history entry skipped in the feed");
                    page.skipped += 1;
                }
            }
        }
        Ok(page)
    }

    /// Accounts with history, the one with the newest entry first, each with the position
    /// of its newest entry; at most `limit` accounts, from the newest [`MAX_FEED_SCAN`]
    /// positions. Unreadable entries are skipped.
    pub fn recent_accounts(&self, limit: usize) -> Result<Vec<(AccountId, u64)>, StoreError> {
        let max = self.backend().max_seq(Table::History)?;
        let floor = max.saturating_sub(MAX_FEED_SCAN);
        let mut out: Vec<(AccountId, u64)> = Vec::new();
        let mut seq = max;
        while seq > floor && out.len() < limit {
            let at = seq;
            seq -= 1;
            let Some(row) = self.backend().get(Table::History, &at.to_be_bytes())? else {
                continue;
            };
            let Ok((entry, _)) = self
                .open_row(Table::History, &row)
                .and_then(|plain| decode_history(row.seq, &plain))
            else {
                continue;
            };
            if !out.iter().any(|(a, _)| *a == entry.peer.account) {
                out.push((entry.peer.account, at));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::content::{MessageBody, MessageId, encode_content};
    use crate::store::{
        Batch, Direction, MemoryClientStore, MessageStatus, Row, StoreKey, StoreSecret, WriteOp,
    };
    use sealpost_wire::{DeviceAddress, DeviceId};

    fn store() -> Store {
        Store::open_blocking(
            MemoryClientStore::new(),
            StoreSecret::Key(StoreKey::from_bytes([3; 32])),
        )
        .unwrap()
    }

    /// Appends an incoming text from `peer`; returns its position.
    fn append(store: &Store, peer: &str, text: &str) -> u64 {
        let mut batch = Batch::new();
        let from = DeviceAddress::new(AccountId::new(peer).unwrap(), DeviceId(1));
        let content = encode_content(&MessageId::random(), &MessageBody::Text(text.into()));
        let seq = store
            .append_history(
                &mut batch,
                Direction::Incoming,
                &from,
                1,
                MessageStatus::Received,
                &content,
            )
            .unwrap();
        store.commit(batch).unwrap();
        seq
    }

    fn texts(page: &FeedPage) -> Vec<&str> {
        page.entries
            .iter()
            .map(|e| e.body.as_text().unwrap())
            .collect()
    }

    #[test]
    fn the_feed_pages_in_order_and_passes_deleted_and_unreadable_entries() {
        let store = store();
        let empty = store.history_after(0, 10).unwrap();
        assert_eq!((empty.entries.len(), empty.next), (0, 0));
        let seqs: Vec<u64> = ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                append(
                    &store,
                    if i % 2 == 0 {
                        "+15550000001"
                    } else {
                        "+15550000002"
                    },
                    t,
                )
            })
            .collect();
        let first = store.history_after(0, 2).unwrap();
        assert_eq!(texts(&first), ["a", "b"]);
        assert_eq!(first.next, seqs[1]);
        assert_eq!(store.history_after(0, 0).unwrap().entries.len(), 0);

        // A deleted entry and one that does not open are passed (the latter counted).
        let mut batch = Batch::new();
        store.delete_history(&mut batch, seqs[2]);
        batch.ops.push(WriteOp::Put {
            table: Table::History,
            row: Row {
                key: seqs[3].to_be_bytes().to_vec(),
                group: Vec::new(),
                seq: seqs[3],
                value: vec![0; 40],
            },
        });
        store.commit(batch).unwrap();
        let rest = store.history_after(first.next, 10).unwrap();
        assert_eq!(texts(&rest), ["e"]);
        assert_eq!((rest.next, rest.skipped), (seqs[4], 1));
        // Nothing after the end; the cursor stays.
        let end = store.history_after(rest.next, 10).unwrap();
        assert_eq!((end.entries.len(), end.next), (0, seqs[4]));
        // A later entry follows.
        let f = append(&store, "+15550000001", "f");
        let later = store.history_after(end.next, 10).unwrap();
        assert_eq!((texts(&later), later.next), (vec!["f"], f));

        // Conversations, newest first, each once.
        let accounts = store.recent_accounts(10).unwrap();
        assert_eq!(
            accounts,
            vec![
                (AccountId::new("+15550000001").unwrap(), f),
                (AccountId::new("+15550000002").unwrap(), seqs[1]),
            ]
        );
        assert_eq!(store.recent_accounts(1).unwrap().len(), 1);
    }

    #[test]
    fn one_call_looks_at_a_bounded_number_of_positions() {
        let store = store();
        let total = usize::try_from(MAX_FEED_SCAN).unwrap() + 2;
        let seqs: Vec<u64> = (0..total)
            .map(|i| append(&store, "+15550000001", &i.to_string()))
            .collect();
        let mut batch = Batch::new();
        for seq in &seqs[..total - 1] {
            store.delete_history(&mut batch, *seq);
        }
        store.commit(batch).unwrap();
        let page = store.history_after(0, 10).unwrap();
        assert!(page.entries.is_empty());
        assert_eq!(page.next, MAX_FEED_SCAN);
        let page = store.history_after(page.next, 10).unwrap();
        assert_eq!(texts(&page), [(total - 1).to_string().as_str()]);
    }
}
