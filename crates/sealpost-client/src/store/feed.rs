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
