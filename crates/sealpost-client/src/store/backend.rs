//! The storage backend interface: an ordered, grouped key-value store of sealed records with
//! atomic batches. Backends see only ciphertext, blind index tags and sequence numbers
//! (spec/client-store.md section 4); encryption happens above them, in [`crate::Store`].

use crate::error::StoreError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The logical tables of a client store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// The device's identity and registration (one row).
    Account,
    /// The prekey store and publication state (one row).
    PreKeys,
    /// Known identities of remote devices.
    Contacts,
    /// Session pickles, several per remote device.
    Sessions,
    /// Message history.
    History,
    /// Messages not yet accepted by the relay.
    Outbox,
    /// Tags of processed incoming messages (de-duplication).
    Processed,
    /// The two-step PIN: master secret, local verifier, reminder state (one row).
    Pin,
    /// The pinned device list of each contact account (spec/client-store.md 5.10).
    Devices,
    /// The read marker of each conversation (spec/client-store.md 5.11).
    Reads,
    /// The pinned business profile of each business account (spec/client-store.md 5.12).
    Profiles,
    /// The transcript chains of each conversation with a business (spec/client-store.md
    /// 5.13).
    Transcripts,
    /// On a business's device: each customer conversation's route, state, notes, handoff
    /// and the customer's confirmations (spec/client-store.md 5.14).
    Desk,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 13] = [
        Table::Account,
        Table::PreKeys,
        Table::Contacts,
        Table::Sessions,
        Table::History,
        Table::Outbox,
        Table::Processed,
        Table::Pin,
        Table::Devices,
        Table::Reads,
        Table::Profiles,
        Table::Transcripts,
        Table::Desk,
    ];

    /// The table's name, bound into every record's associated data.
    pub fn name(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::PreKeys => "prekeys",
            Self::Contacts => "contacts",
            Self::Sessions => "sessions",
            Self::History => "history",
            Self::Outbox => "outbox",
            Self::Processed => "processed",
            Self::Pin => "pin",
            Self::Devices => "devices",
            Self::Reads => "reads",
            Self::Profiles => "profiles",
            Self::Transcripts => "transcripts",
            Self::Desk => "desk",
        }
    }

    /// The table's number in backends that keep all records in one physical table.
    pub fn id(self) -> u8 {
        match self {
            Self::Account => 1,
            Self::PreKeys => 2,
            Self::Contacts => 3,
            Self::Sessions => 4,
            Self::History => 5,
            Self::Outbox => 6,
            Self::Processed => 7,
            Self::Pin => 8,
            Self::Devices => 9,
            Self::Reads => 10,
            Self::Profiles => 11,
            Self::Transcripts => 12,
            Self::Desk => 13,
        }
    }
}

/// One stored row: a primary key, an optional group (secondary index), a sequence number
/// (order within the table or group) and the sealed value. Keys and groups are opaque byte
/// strings (blind tags or big-endian sequence numbers), never plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Primary key, unique within the table.
    pub key: Vec<u8>,
    /// Group tag; empty if the table has no groups.
    pub group: Vec<u8>,
    /// Order within the table and group; `< 2^63`.
    pub seq: u64,
    /// The sealed record (or empty for tables without content).
    pub value: Vec<u8>,
}

/// One change in an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert the row, or replace the row with the same key.
    Put {
        /// The table.
        table: Table,
        /// The row.
        row: Row,
    },
    /// Delete the row with this key, if any.
    Delete {
        /// The table.
        table: Table,
        /// The primary key.
        key: Vec<u8>,
    },
    /// Delete every row of a group.
    DeleteGroup {
        /// The table.
        table: Table,
        /// The group tag.
        group: Vec<u8>,
    },
    /// Delete every row whose sequence number is below `seq`.
    DeleteSeqBelow {
        /// The table.
        table: Table,
        /// The bound (exclusive).
        seq: u64,
    },
}

/// A storage backend for [`crate::Store`].
///
/// Contract, for every implementation:
/// * [`ClientStore::commit`] applies a whole batch atomically and durably: when it returns
///   `Ok`, every change survives a crash or power loss; when it returns `Err` or the
///   process dies during it, none of them is visible afterwards. Client correctness
///   (persist-before-send, exactly-once delivery) rests on this.
/// * Reads see every batch committed before them.
/// * Deleted rows should not stay recoverable from the medium where that can be avoided
///   (SQLite: `secure_delete`), since old session states hold old keys.
/// * Methods may block (disk I/O); the client calls them from blocking threads.
pub trait ClientStore: Send + Sync + 'static {
    /// Reads a metadata entry.
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Atomically writes all `entries` if the store has no metadata entry named `first`
    /// yet. Returns whether they were written (false: the store was already initialized).
    fn init_meta(&self, first: &str, entries: &[(&str, Vec<u8>)]) -> Result<bool, StoreError>;

    /// The row with this primary key.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Row>, StoreError>;

    /// Up to `limit` rows of a group, by sequence number (descending if `newest_first`).
    fn group(
        &self,
        table: Table,
        group: &[u8],
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<Row>, StoreError>;

    /// Up to `limit` rows of the table with the lowest sequence numbers, ascending.
    fn first(&self, table: Table, limit: usize) -> Result<Vec<Row>, StoreError>;

    /// Number of rows in the table.
    fn count(&self, table: Table) -> Result<u64, StoreError>;

    /// The highest sequence number in the table (0 if it is empty).
    fn max_seq(&self, table: Table) -> Result<u64, StoreError>;

    /// Applies a batch atomically and durably (see the trait documentation).
    fn commit(&self, ops: &[WriteOp]) -> Result<(), StoreError>;
}

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Row>>;
type MemoryState = (BTreeMap<String, Vec<u8>>, Tables);

/// A volatile in-memory backend, for tests and for apps that keep nothing on disk. Data is
/// still sealed (the backend sees only what any backend sees) but is lost on drop.
#[derive(Default)]
pub struct MemoryClientStore {
    inner: Mutex<MemoryState>,
}

impl MemoryClientStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Database(crate::error::DatabaseErrorKind::Poisoned.into()))
    }
}

impl std::fmt::Debug for MemoryClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryClientStore(..)")
    }
}

impl ClientStore for MemoryClientStore {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.0.get(name).cloned())
    }

    fn init_meta(&self, first: &str, entries: &[(&str, Vec<u8>)]) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        if g.0.contains_key(first) {
            return Ok(false);
        }
        for (k, v) in entries {
            g.0.insert((*k).to_owned(), v.clone());
        }
        Ok(true)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Row>, StoreError> {
        Ok(self.lock()?.1.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn group(
        &self,
        table: Table,
        group: &[u8],
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let g = self.lock()?;
        let mut rows: Vec<Row> =
            g.1.get(&table)
                .map(|t| t.values().filter(|r| r.group == group).cloned().collect())
                .unwrap_or_default();
        rows.sort_by_key(|r| r.seq);
        if newest_first {
            rows.reverse();
        }
        rows.truncate(limit);
        Ok(rows)
    }

    fn first(&self, table: Table, limit: usize) -> Result<Vec<Row>, StoreError> {
        let g = self.lock()?;
        let mut rows: Vec<Row> =
            g.1.get(&table)
                .map(|t| t.values().cloned().collect())
                .unwrap_or_default();
        rows.sort_by_key(|r| r.seq);
        rows.truncate(limit);
        Ok(rows)
    }

    fn count(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self.lock()?.1.get(&table).map_or(0, |t| t.len() as u64))
    }

    fn max_seq(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self
            .lock()?
            .1
            .get(&table)
            .and_then(|t| t.values().map(|r| r.seq).max())
            .unwrap_or(0))
    }

    fn commit(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        // No operation can fail, so applying in place under the lock is all-or-nothing.
        let tables = &mut g.1;
        for op in ops {
            match op {
                WriteOp::Put { table, row } => {
                    tables
                        .entry(*table)
                        .or_default()
                        .insert(row.key.clone(), row.clone());
                }
                WriteOp::Delete { table, key } => {
                    if let Some(t) = tables.get_mut(table) {
                        t.remove(key);
                    }
                }
                WriteOp::DeleteGroup { table, group } => {
                    if let Some(t) = tables.get_mut(table) {
                        t.retain(|_, r| &r.group != group);
                    }
                }
                WriteOp::DeleteSeqBelow { table, seq } => {
                    if let Some(t) = tables.get_mut(table) {
                        t.retain(|_, r| r.seq >= *seq);
                    }
                }
            }
        }
        Ok(())
    }
}
