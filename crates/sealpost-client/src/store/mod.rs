//! The client's local store: typed, encrypted records over a [`ClientStore`] backend.
//!
//! Every record that holds a secret or content is sealed with ChaCha20-Poly1305 under a
//! key derived from the store key, with associated data that binds it to its table and row
//! (spec/client-store.md). Lookups use blind index tags (HMAC-SHA256 under a derived key),
//! so backends never see account ids, phone numbers, keys or message content.

mod backend;
mod crypt;
mod desk;
pub(crate) use desk::{DeskRecord, StoredConfirmation, StoredHandoff, StoredNote};
pub use desk::{MAX_DESK_CONFIRMATIONS, MAX_DESK_NOTES};
mod devices;
pub mod feed;
mod open;
mod profiles;
pub(crate) use profiles::BusinessRecord;
mod reads;
mod records;
mod sqlite;

pub use backend::{ClientStore, MemoryClientStore, Row, Table, WriteOp};
pub use crypt::{
    ARGON2_SALT_LEN, DB_SALT_LEN, INDEX_KEY_INFO, KEY_CHECK_PLAINTEXT, PICKLE_KEY_INFO,
    RECORD_AD_LABEL, RECORD_KEY_INFO, RECORD_OVERHEAD, RECORD_VERSION, StoreArgon2Params, StoreKey,
};
pub use open::StoreSecret;
pub use records::{
    CONTACT_RECORD_VERSION, Contact, Direction, HISTORY_AUTHOR_RECORD_VERSION,
    HISTORY_SENDER_RECORD_VERSION, HistoryEntry, MAX_SENDER_SEQ, MessageStatus,
    OUTBOX_RECORD_VERSION, OUTBOX_TARGETED_RECORD_VERSION, RECORD_PLAINTEXT_VERSION, Verification,
};
pub use sqlite::{LOCK_FILE_SUFFIX, SQLITE_SCHEMA_VERSION, SqliteClientStore};

pub(crate) use devices::{ListPin, OwnDevices};
pub(crate) use reads::ReadMarker;
pub(crate) use records::{
    AccountRecord, OutboxEntry, PinRecord, PreKeyState, RetiredKey, RetiredKind, SenderState,
    decode_history, decode_session, encode_history, encode_session,
};

use crate::content::MessageId;
use crate::error::StoreError;
use crate::event::DeviceInfo;
use crypt::{StoreKeys, TagKind};
use sealpost_crypto::Zeroizing;
use sealpost_session::{IdentityKey, Session};
use sealpost_wire::{AccountId, DecodeError, DeviceAddress, DeviceId, IdentityBytes, Writer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Version of the store format (metadata entry `format`).
pub const STORE_FORMAT_VERSION: u32 = 1;
/// Most sessions kept per remote device; older ones are deleted.
pub const MAX_SESSIONS_PER_DEVICE: usize = 4;
/// Milliseconds per day, the granularity of de-duplication timestamps.
pub const DAY_MS: u64 = 86_400_000;

/// An open, unlocked client store. Cheap to clone (shared).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn ClientStore>,
    keys: StoreKeys,
    seqs: Mutex<HashMap<Table, Arc<AtomicU64>>>,
    /// Identity keys validated when contacts were read, by their bytes.
    identity_keys: Mutex<HashMap<IdentityBytes, IdentityKey>>,
    /// Device lists verified when read, by account (`devices.rs`).
    verified_lists: Mutex<HashMap<AccountId, sealpost_devices::VerifiedDeviceList>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

/// A set of changes committed atomically by [`Store::commit`].
#[derive(Default, Debug)]
pub(crate) struct Batch {
    ops: Vec<WriteOp>,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

/// `u8(len(key)) || key || u8(len(group)) || group || u64(seq)`.
fn row_ad(key: &[u8], group: &[u8], seq: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(key.len() + group.len() + 10);
    w.var_bytes8(key).var_bytes8(group).u64(seq);
    w.into_bytes()
}

fn address_bytes(a: &DeviceAddress) -> Vec<u8> {
    let mut w = Writer::new();
    a.encode_into(&mut w);
    w.into_bytes()
}

fn account_bytes(a: &AccountId) -> Vec<u8> {
    let mut w = Writer::new();
    a.encode_into(&mut w);
    w.into_bytes()
}

const SINGLETON_KEY: &[u8] = &[1];

/// Most validated identity keys a store keeps in memory (`Store::decode_contact`).
const IDENTITY_KEY_CACHE: usize = 4096;
/// Row of the sender state in the `account` table (spec/client-store.md 4.3 and 5.8).
const SENDER_STATE_KEY: &[u8] = &[2];

/// A history entry with its content encoding (spec/client-store.md 5.5).
pub(crate) type HistoryWithContent = (HistoryEntry, Zeroizing<Vec<u8>>);

/// An outbox row as read: its sequence number, and the entry or why it does not open.
pub(crate) type OutboxRow = (u64, Result<OutboxEntry, StoreError>);

impl Store {
    fn seqs(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<Table, Arc<AtomicU64>>>, StoreError> {
        self.inner
            .seqs
            .lock()
            .map_err(|_| StoreError::Database(crate::error::DatabaseErrorKind::Poisoned.into()))
    }

    fn next_seq(&self, table: Table) -> Result<u64, StoreError> {
        let counter = self
            .seqs()?
            .get(&table)
            .cloned()
            .ok_or(StoreError::Inconsistent("no sequence for table"))?;
        Ok(counter.fetch_add(1, Ordering::SeqCst))
    }

    fn backend(&self) -> &dyn ClientStore {
        self.inner.backend.as_ref()
    }

    fn keys(&self) -> &StoreKeys {
        &self.inner.keys
    }

    fn put(
        &self,
        batch: &mut Batch,
        table: Table,
        key: Vec<u8>,
        group: Vec<u8>,
        seq: u64,
        plaintext: &[u8],
    ) {
        let value = self
            .keys()
            .seal(table.name(), &row_ad(&key, &group, seq), plaintext);
        batch.ops.push(WriteOp::Put {
            table,
            row: Row {
                key,
                group,
                seq,
                value,
            },
        });
    }

    fn open_row(&self, table: Table, row: &Row) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.keys().open(
            table.name(),
            &row_ad(&row.key, &row.group, row.seq),
            &row.value,
        )
    }

    pub(crate) fn device_tag(&self, a: &DeviceAddress) -> [u8; 32] {
        self.keys().tag(TagKind::Device, &address_bytes(a))
    }

    pub(crate) fn account_tag(&self, a: &AccountId) -> [u8; 32] {
        self.keys().tag(TagKind::Account, &account_bytes(a))
    }

    fn processed_tag(&self, sender: &DeviceAddress, id: &MessageId) -> [u8; 32] {
        let mut data = address_bytes(sender);
        data.extend_from_slice(id.as_bytes());
        self.keys().tag(TagKind::Processed, &data)
    }

    /// Applies a batch atomically and durably.
    pub(crate) fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.backend().commit(&batch.ops)
    }

    // ---- account ----

    pub(crate) fn account(&self) -> Result<Option<AccountRecord>, StoreError> {
        match self.backend().get(Table::Account, SINGLETON_KEY)? {
            None => Ok(None),
            Some(row) => Ok(Some(AccountRecord::decode(
                &self.open_row(Table::Account, &row)?,
            )?)),
        }
    }

    pub(crate) fn put_account(&self, batch: &mut Batch, a: &AccountRecord) {
        self.put(
            batch,
            Table::Account,
            SINGLETON_KEY.to_vec(),
            Vec::new(),
            0,
            &a.encode(),
        );
    }

    // ---- sender sequence (rollback detection) ----

    /// The sender state; the default one if the store has none yet.
    pub(crate) fn sender_state(&self) -> Result<SenderState, StoreError> {
        match self.backend().get(Table::Account, SENDER_STATE_KEY)? {
            None => Ok(SenderState::default()),
            Some(row) => SenderState::decode(&self.open_row(Table::Account, &row)?),
        }
    }

    pub(crate) fn put_sender_state(&self, batch: &mut Batch, s: &SenderState) {
        self.put(
            batch,
            Table::Account,
            SENDER_STATE_KEY.to_vec(),
            Vec::new(),
            0,
            &s.encode(),
        );
    }

    /// A session sequence number above every session stored so far.
    pub(crate) fn new_session_seq(&self) -> Result<u64, StoreError> {
        self.next_seq(Table::Sessions)
    }

    // ---- pin ----

    pub(crate) fn pin(&self) -> Result<Option<PinRecord>, StoreError> {
        match self.backend().get(Table::Pin, SINGLETON_KEY)? {
            None => Ok(None),
            Some(row) => Ok(Some(PinRecord::decode(&self.open_row(Table::Pin, &row)?)?)),
        }
    }

    pub(crate) fn put_pin(&self, batch: &mut Batch, p: &PinRecord) {
        self.put(
            batch,
            Table::Pin,
            SINGLETON_KEY.to_vec(),
            Vec::new(),
            0,
            &p.encode(),
        );
    }

    pub(crate) fn delete_pin(&self, batch: &mut Batch) {
        batch.ops.push(WriteOp::Delete {
            table: Table::Pin,
            key: SINGLETON_KEY.to_vec(),
        });
    }

    // ---- prekeys ----

    pub(crate) fn prekeys(&self) -> Result<Option<PreKeyState>, StoreError> {
        match self.backend().get(Table::PreKeys, SINGLETON_KEY)? {
            None => Ok(None),
            Some(row) => Ok(Some(PreKeyState::decode(
                &self.open_row(Table::PreKeys, &row)?,
            )?)),
        }
    }

    pub(crate) fn put_prekeys(&self, batch: &mut Batch, p: &PreKeyState) {
        self.put(
            batch,
            Table::PreKeys,
            SINGLETON_KEY.to_vec(),
            Vec::new(),
            0,
            &p.encode(),
        );
    }

    // ---- contacts ----

    /// The contact record of a device.
    pub fn contact(&self, address: &DeviceAddress) -> Result<Option<Contact>, StoreError> {
        let key = self.device_tag(address);
        match self.backend().get(Table::Contacts, &key)? {
            None => Ok(None),
            Some(row) => {
                let c = self.decode_contact(&self.open_row(Table::Contacts, &row)?)?;
                if &c.address != address {
                    return Err(StoreError::Inconsistent("contact address"));
                }
                Ok(Some(c))
            }
        }
    }

    /// [`Contact::decode_with`], reusing identity keys this store validated before:
    /// validating one decompresses its Ed25519 point, and a sender reads every contact of
    /// the recipient account several times per message. Only keys that passed
    /// [`IdentityKey::from_wire`] are kept, by their exact bytes.
    fn decode_contact(&self, bytes: &[u8]) -> Result<Contact, StoreError> {
        Contact::decode_with(bytes, |wire| {
            // A panic while the lock was held cannot leave an unvalidated key behind.
            let mut cache = self
                .inner
                .identity_keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(key) = cache.get(wire) {
                return Ok(*key);
            }
            let key = IdentityKey::from_wire(wire)
                .map_err(|_| DecodeError::InvalidValue("identity key"))?;
            if cache.len() >= IDENTITY_KEY_CACHE {
                cache.clear();
            }
            cache.insert(*wire, key);
            Ok(key)
        })
    }

    /// Every known device of an account, ordered by device id.
    pub fn contacts(&self, account: &AccountId) -> Result<Vec<Contact>, StoreError> {
        let group = self.account_tag(account);
        let mut out = Vec::new();
        for row in self
            .backend()
            .group(Table::Contacts, &group, usize::MAX, false)?
        {
            let c = self.decode_contact(&self.open_row(Table::Contacts, &row)?)?;
            if &c.address.account != account {
                return Err(StoreError::Inconsistent("contact account"));
            }
            out.push(c);
        }
        out.sort_by_key(|c| c.address.device);
        Ok(out)
    }

    /// Every contact record of every account (for a history bundle), in no particular order.
    pub(crate) fn all_contacts(&self) -> Result<Vec<Contact>, StoreError> {
        let mut out = Vec::new();
        for row in self.backend().first(Table::Contacts, usize::MAX)? {
            let c = self.decode_contact(&self.open_row(Table::Contacts, &row)?)?;
            if row.key != self.device_tag(&c.address) {
                return Err(StoreError::Inconsistent("contact address"));
            }
            out.push(c);
        }
        Ok(out)
    }

    pub(crate) fn put_contact(&self, batch: &mut Batch, c: &Contact) {
        let key = self.device_tag(&c.address).to_vec();
        let group = self.account_tag(&c.address.account).to_vec();
        self.put(batch, Table::Contacts, key, group, 0, &c.encode());
    }

    pub(crate) fn delete_contact(&self, batch: &mut Batch, a: &DeviceAddress) {
        batch.ops.push(WriteOp::Delete {
            table: Table::Contacts,
            key: self.device_tag(a).to_vec(),
        });
    }

    // ---- sessions ----

    /// Sessions with a device, newest first, each with its sequence number.
    pub(crate) fn sessions(
        &self,
        address: &DeviceAddress,
    ) -> Result<Vec<(u64, Session)>, StoreError> {
        let group = self.device_tag(address);
        let mut out = Vec::new();
        for row in self
            .backend()
            .group(Table::Sessions, &group, usize::MAX, true)?
        {
            let (addr, pickle) = decode_session(&self.open_row(Table::Sessions, &row)?)?;
            if &addr != address {
                return Err(StoreError::Inconsistent("session address"));
            }
            let s =
                Session::unpickle(&pickle, self.keys().pickle_key()).map_err(StoreError::State)?;
            out.push((row.seq, s));
        }
        Ok(out)
    }

    /// Stores a session. `seq` is `None` for a new session (it becomes the newest) or the
    /// sequence number it was loaded with.
    pub(crate) fn put_session(
        &self,
        batch: &mut Batch,
        address: &DeviceAddress,
        seq: Option<u64>,
        session: &Session,
    ) -> Result<u64, StoreError> {
        let seq = match seq {
            Some(s) => s,
            None => self.next_seq(Table::Sessions)?,
        };
        let device = self.device_tag(address);
        let mut key = device.to_vec();
        key.extend_from_slice(
            &self
                .keys()
                .tag(TagKind::Session, session.base_key().as_bytes()),
        );
        let pickle = session.pickle(&mut rand::rng(), self.keys().pickle_key());
        self.put(
            batch,
            Table::Sessions,
            key,
            device.to_vec(),
            seq,
            &encode_session(address, &pickle),
        );
        Ok(seq)
    }

    /// Deletes sessions of a device older than the `keep` newest (given as loaded, newest
    /// first).
    pub(crate) fn prune_sessions(
        &self,
        batch: &mut Batch,
        address: &DeviceAddress,
        sessions: &[(u64, Session)],
        keep: usize,
    ) {
        let device = self.device_tag(address);
        for (_, s) in sessions.iter().skip(keep) {
            let mut key = device.to_vec();
            key.extend_from_slice(&self.keys().tag(TagKind::Session, s.base_key().as_bytes()));
            batch.ops.push(WriteOp::Delete {
                table: Table::Sessions,
                key,
            });
        }
    }

    pub(crate) fn delete_sessions(&self, batch: &mut Batch, address: &DeviceAddress) {
        batch.ops.push(WriteOp::DeleteGroup {
            table: Table::Sessions,
            group: self.device_tag(address).to_vec(),
        });
    }

    // ---- history ----

    pub(crate) fn append_history(
        &self,
        batch: &mut Batch,
        direction: Direction,
        peer: &DeviceAddress,
        timestamp: u64,
        status: MessageStatus,
        content: &[u8],
    ) -> Result<u64, StoreError> {
        self.append_history_from(batch, direction, peer, timestamp, status, content, None)
    }

    /// [`Self::append_history`] with, for an outgoing message of a business account, the
    /// own device that sent it (spec/client-store.md 5.5, version `0x03`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_history_from(
        &self,
        batch: &mut Batch,
        direction: Direction,
        peer: &DeviceAddress,
        timestamp: u64,
        status: MessageStatus,
        content: &[u8],
        sender: Option<DeviceId>,
    ) -> Result<u64, StoreError> {
        let seq = self.next_seq(Table::History)?;
        self.put_history(
            batch, seq, direction, peer, timestamp, status, content, None, sender,
        );
        Ok(seq)
    }

    /// [`Self::append_history`] for an incoming message with its author as the sender's
    /// signed list names it (spec/client-store.md 5.5).
    pub(crate) fn append_incoming(
        &self,
        batch: &mut Batch,
        peer: &DeviceAddress,
        timestamp: u64,
        content: &[u8],
        author: Option<&DeviceInfo>,
    ) -> Result<u64, StoreError> {
        let seq = self.next_seq(Table::History)?;
        self.put_history(
            batch,
            seq,
            Direction::Incoming,
            peer,
            timestamp,
            MessageStatus::Received,
            content,
            author,
            None,
        );
        Ok(seq)
    }

    #[allow(clippy::too_many_arguments)]
    fn put_history(
        &self,
        batch: &mut Batch,
        seq: u64,
        direction: Direction,
        peer: &DeviceAddress,
        timestamp: u64,
        status: MessageStatus,
        content: &[u8],
        author: Option<&DeviceInfo>,
        sender: Option<DeviceId>,
    ) {
        let group = self.account_tag(&peer.account).to_vec();
        self.put(
            batch,
            Table::History,
            seq.to_be_bytes().to_vec(),
            group,
            seq,
            &encode_history(direction, peer, timestamp, status, content, author, sender),
        );
    }

    /// Updates the status of an outgoing history entry.
    pub(crate) fn set_history_status(
        &self,
        batch: &mut Batch,
        seq: u64,
        message_id: &MessageId,
        status: MessageStatus,
    ) -> Result<(), StoreError> {
        let Some(row) = self.backend().get(Table::History, &seq.to_be_bytes())? else {
            return Ok(());
        };
        let (entry, content) = decode_history(row.seq, &self.open_row(Table::History, &row)?)?;
        if &entry.message_id != message_id || row.seq != seq {
            return Err(StoreError::Inconsistent("history entry"));
        }
        self.put_history(
            batch,
            seq,
            entry.direction,
            &entry.peer,
            entry.timestamp,
            status,
            &content,
            entry.author.as_ref(),
            entry.sender_device,
        );
        Ok(())
    }

    /// The newest `limit` messages exchanged with `account` (any device), oldest first.
    pub fn history(
        &self,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let group = self.account_tag(account);
        let mut out = Vec::new();
        for row in self.backend().group(Table::History, &group, limit, true)? {
            let (entry, _) = decode_history(row.seq, &self.open_row(Table::History, &row)?)?;
            if &entry.peer.account != account {
                return Err(StoreError::Inconsistent("history account"));
            }
            out.push(entry);
        }
        out.reverse();
        Ok(out)
    }

    /// The newest `limit` history entries of any account (by history position) whose
    /// `timestamp` is at least `since_ms` and that are not queued, oldest first, each with
    /// its content encoding; for a history bundle (spec/devices.md 8.9). An entry that does
    /// not open or decode is skipped (logged).
    pub(crate) fn recent_history(
        &self,
        limit: usize,
        since_ms: u64,
    ) -> Result<Vec<HistoryWithContent>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Rows come oldest first; the newest are wanted, so walk them backwards.
        for row in self
            .backend()
            .first(Table::History, usize::MAX)?
            .iter()
            .rev()
        {
            let decoded = self
                .open_row(Table::History, row)
                .and_then(|plain| decode_history(row.seq, &plain));
            let (entry, content) = match decoded {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable history entry left out of a history bundle");
                    continue;
                }
            };
            if entry.status == MessageStatus::Queued || entry.timestamp < since_ms {
                continue;
            }
            out.push((entry, content));
            if out.len() == limit {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    // ---- outbox ----

    /// Number of messages waiting in the outbox.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.backend().count(Table::Outbox)
    }

    #[cfg(test)]
    pub(crate) fn outbox_head(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.backend()
            .first(Table::Outbox, limit)?
            .iter()
            .map(|row| OutboxEntry::decode(row.seq, &self.open_row(Table::Outbox, row)?))
            .collect()
    }

    /// The first `limit` outbox rows in order, each decoded or with the reason it does not
    /// open or decode (so that one bad row does not hide the others).
    pub(crate) fn outbox_scan(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self
            .backend()
            .first(Table::Outbox, limit)?
            .iter()
            .map(|row| {
                let entry = self
                    .open_row(Table::Outbox, row)
                    .and_then(|plain| OutboxEntry::decode(row.seq, &plain));
                (row.seq, entry)
            })
            .collect())
    }

    pub(crate) fn new_outbox_seq(&self) -> Result<u64, StoreError> {
        self.next_seq(Table::Outbox)
    }

    pub(crate) fn put_outbox(&self, batch: &mut Batch, e: &OutboxEntry) {
        self.put(
            batch,
            Table::Outbox,
            e.seq.to_be_bytes().to_vec(),
            Vec::new(),
            e.seq,
            &e.encode(),
        );
    }

    pub(crate) fn delete_outbox(&self, batch: &mut Batch, seq: u64) {
        batch.ops.push(WriteOp::Delete {
            table: Table::Outbox,
            key: seq.to_be_bytes().to_vec(),
        });
    }

    // ---- processed ids ----

    pub(crate) fn is_processed(
        &self,
        sender: &DeviceAddress,
        id: &MessageId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .backend()
            .get(Table::Processed, &self.processed_tag(sender, id))?
            .is_some())
    }

    pub(crate) fn mark_processed(
        &self,
        batch: &mut Batch,
        sender: &DeviceAddress,
        id: &MessageId,
        timestamp_ms: u64,
    ) {
        batch.ops.push(WriteOp::Put {
            table: Table::Processed,
            row: Row {
                key: self.processed_tag(sender, id).to_vec(),
                group: Vec::new(),
                seq: timestamp_ms / DAY_MS,
                value: Vec::new(),
            },
        });
    }

    /// Forgets processed ids from before `before_ms` (day granularity).
    pub(crate) fn prune_processed(&self, before_ms: u64) -> Result<(), StoreError> {
        self.backend().commit(&[WriteOp::DeleteSeqBelow {
            table: Table::Processed,
            seq: before_ms / DAY_MS,
        }])
    }
}

#[cfg(test)]
mod tests;
