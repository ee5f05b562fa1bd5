//! The SQLite [`Store`]: one database file in WAL mode, every durable write flushed to disk
//! before it is answered.
//!
//! **Writes** go through a single writer thread that owns the only writing connection and
//! commits in groups: it takes every job waiting in its queue (up to [`MAX_GROUP`]), runs
//! each inside its own `SAVEPOINT` within one `BEGIN IMMEDIATE` transaction (a job that
//! fails is rolled back to its savepoint without affecting the others; `Send` and `Ack`,
//! which fail before they write, run without one) and commits once. The envelopes and
//! `max_sender_seq` of the group's accepted sends are written together after their checks
//! (`batch.rs`).
//! The envelopes a group wrote are published on the mail feed ([`Store::subscribe`]) just
//! before the commit, so that delivery overlaps the flush; callers are answered through
//! their futures (oneshot channels), and the writer never touches a connection.
//!
//! **Flushes**: the connection runs with `synchronous = NORMAL` (a commit writes the WAL
//! without fsyncing it) and the writer `fdatasync`s the WAL itself right after the commit,
//! which is what `synchronous = FULL` does, split in two so that the group's lazy jobs
//! (acknowledgement deletes, [`Flush::Lazy`]) are answered before the flush and only the
//! durable ones after it. So one fsync covers many concurrent sends, and a caller of a
//! durable write is answered only after its changes are on disk. A failed flush stops the
//! store: every later write fails (the relay must be restarted).
//!
//! **Server ids** are therefore handed out by the writer from memory, ahead of the commit:
//! an id may reach a recipient before (or without) its envelope ever being durable, so no id
//! may be handed out twice, not even after a crash. The writer reserves blocks of ids
//! durably, in `sqlite_sequence` (the `AUTOINCREMENT` high-water mark of `envelopes`, which
//! explicit ids below it leave unchanged), before handing any of them out; after a restart
//! it continues above the last reservation ([`ServerIds`]).
//!
//! **Reads** use a small pool of read-only connections; in WAL mode they never block the
//! writer and always see a committed state.
//!
//! The schema version is `PRAGMA user_version` ([`SCHEMA_VERSION`]); a database with a
//! newer version is refused, an older one is migrated step by step at open.
//!
//! # Layout
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`SqliteStore`]: open, close, the read pool, row helpers, the [`Store`] impl (one line per method) |
//! | `writer.rs` | the group-commit writer thread, [`ServerIds`], the WAL flush |
//! | `batch.rs` | the writes a group makes together: envelope inserts, `max_sender_seq`, an `Ack`'s deletes |
//! | `schema.rs` | the schema, [`SCHEMA_VERSION`] and the migrations |
//! | `accounts.rs` | codes, registration and the registration lock, devices |
//! | `devices.rs` | the stored device list, replaced together with the devices it names |
//! | `prekeys.rs` | prekey uploads, counts and bundle takes |
//! | `mail.rs` | enqueue, mailbox reads, acknowledgements, `sender_seq` |
//! | `vault.rs` | guardian vaults |
//! | `ledger.rs` | the vault ledger: a database whose vault counters went backwards is noticed at open |
//! | `quotas.rs` | persisted quotas and the expiry sweep |

mod accounts;
mod batch;
mod devices;
mod ledger;
mod mail;
mod prekeys;
mod provisioning;
mod quotas;
mod schema;
#[cfg(test)]
mod tests;
mod vault;
mod writer;

use super::{
    AccountKeyBackup, CODE_MAC_LEN, CodeAttempt, ConfirmOutcome, DeviceListState, DeviceSeen,
    EnqueueOutcome, MAX_SENDER_SEQ, MailFeed, NewBusinessProfile, NewDeviceList, NewMessage,
    NewPreKeys, PreKeyCounts, PreKeyLimits, PutProfileOutcome, PutVaultOutcome, QuotaCheck,
    QuotaOutcome, RegLockPolicy, RegLockState, RegisterOutcome, ReplaceListOutcome, Store,
    StoredBusinessProfile, StoredEnvelope, SweepCounts, TakenBundle, UploadOutcome, VAULT_ID_LEN,
    VERIFIER_LEN, VaultAttempt, VaultRow,
};
use crate::ratelimit::gcra;
use crate::{StoreError, Unavailable};
use ledger::Ledger;
pub use ledger::{LEDGER_FILE, RollbackReason, VaultRollback};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
pub use schema::SCHEMA_VERSION;
use schema::open_writer;
use sealpost_crypto::ct_eq;
use sealpost_wire::relay::{DeviceInfo, MESSAGE_ID_LEN, OutgoingEnvelope, PROVISIONING_ID_LEN};
use sealpost_wire::{
    AccountId, DeviceAddress, DeviceId, IdentityBytes, KEM_PUBLIC_LEN, KemPreKeyKind,
    KemPreKeyPublic, PreKeyBundle, SignedPreKeyPublic,
};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{
    Flush, Job, JobResult, Msg, QUEUE_BOUND, Reply, ServerIds, Writer, answer, record, writer_loop,
};
use zeroize::Zeroizing;

/// Idle read connections kept open. Every connected device's delivery reads its mailbox
/// after each commit that concerns it; with fewer pooled connections than concurrent
/// readers, connections were opened (schema parsed) and closed hundreds of times a second.
const MAX_IDLE_READERS: usize = 32;
/// Page cache of each read connection, KiB (SQLite's default is 2000 KiB per connection;
/// the OS page cache holds the rest).
const READER_CACHE_KIB: i64 = 256;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// How long a connection waits on a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite error as a [`StoreError`]: the storage failing under the database (an I/O
/// error, a full disk, a read-only file or file system, a file that cannot be opened, a lock
/// held by another process past [`BUSY_TIMEOUT`]) is [`StoreError::Unavailable`]; anything
/// else (a constraint, a bad statement, a type mismatch, corruption) is
/// [`StoreError::Backend`].
fn backend(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let why = match e.sqlite_error_code() {
        Some(C::SystemIoFailure | C::CannotOpen) => Some(Unavailable::Io),
        Some(C::DiskFull) => Some(Unavailable::DiskFull),
        Some(C::ReadOnly) => Some(Unavailable::ReadOnly),
        Some(C::DatabaseBusy | C::DatabaseLocked) => Some(Unavailable::Busy),
        _ => None,
    };
    match why {
        Some(why) => StoreError::Unavailable(why),
        None => StoreError::backend("SQLite", e),
    }
}

/// The SQLite store. See the module documentation.
pub struct SqliteStore {
    flushes: Arc<AtomicU64>,
    path: PathBuf,
    jobs: Mutex<Option<SyncSender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Idle read connections (shared with the blocking tasks that read).
    readers: Arc<Mutex<Vec<Connection>>>,
    /// The mail feed was handed out ([`Store::subscribe`]).
    subscribed: AtomicBool,
    /// What the writer last found wrong with the storage ([`SqliteStore::health`]).
    health: Arc<Mutex<Option<Unavailable>>>,
    /// The vault ledger (`ledger.rs`).
    ledger: Arc<Ledger>,
    /// The exclusive lock on [`lock_path`] of the database, held until [`SqliteStore::close`]:
    /// one writer per database.
    lock: Mutex<Option<File>>,
}

/// The lock file of the database at `path`: its name with `.lock` appended
/// (spec/relay-store.md section 2).
fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// Takes the exclusive advisory lock (`flock`) on the lock file of the database at `path`,
/// creating the file if needed; [`StoreError::InUse`] if another open store holds it. The OS
/// drops the lock when the process ends, so a crash never leaves the database locked.
fn lock_database(path: &Path) -> Result<File, StoreError> {
    let lock = lock_path(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                StoreError::Unavailable(Unavailable::ReadOnly)
            }
            _ => StoreError::Unavailable(Unavailable::Io),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::backend("locking the database", e)),
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    // Every statement the relay runs stays prepared (there are fewer than this many).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema and starts
    /// the writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        // Before anything reads or migrates the database: a second open is refused at once.
        let lock = lock_database(&path)?;
        let (conn, version_before) = open_writer(&path)?;
        let ids = ServerIds::load(&conn)?;
        let ledger = Arc::new(Ledger::open(&conn, &path, version_before)?);
        // WAL mode created the `-wal` file when the connection first read the database.
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let wal = File::open(&wal_path)
            .map_err(|e| StoreError::backend("cannot open the WAL file", e))?;
        let flushes = Arc::new(AtomicU64::new(0));
        let health = Arc::new(Mutex::new(None));
        let mut w = Writer {
            conn,
            wal,
            failed: false,
            flushes: Arc::clone(&flushes),
            feed: None,
            health: Arc::clone(&health),
            unavailable: None,
        };
        // Whatever opening wrote (schema, migrations, a rollback's hold) is on disk before
        // the first answer, and the ledger file is brought up to the database.
        w.flush()?;
        ledger.sync(&w.conn)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_BOUND);
        let writer = std::thread::Builder::new()
            .name("sealpost-sqlite-writer".into())
            .spawn(move || writer_loop(w, ids, rx))
            .map_err(|e| StoreError::backend("cannot start the writer thread", e))?;
        Ok(Self {
            flushes,
            path,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            subscribed: AtomicBool::new(false),
            health,
            ledger,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Whether opening found that the database's vault counters went backwards (restored
    /// from an older copy, spec/relay-store.md section 2.1), and how many vaults it held back.
    pub fn vault_rollback(&self) -> Option<VaultRollback> {
        self.ledger.rollback()
    }

    /// [`Store::health`]: the writer thread is running, no flush has failed, and the writer
    /// answers a job. While the last write group failed on the storage (an I/O error, a full
    /// disk, a read-only file), the job is a real durable write (the database header's
    /// `user_version`, rewritten unchanged) whose success clears that state; otherwise it is
    /// a no-op that only checks that the writer takes and commits groups.
    pub async fn health(&self) -> Result<(), StoreError> {
        let alive = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        if !alive {
            return Err(StoreError::Closed);
        }
        let last = *self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match last {
            Some(Unavailable::FlushFailed) => {
                Err(StoreError::Unavailable(Unavailable::FlushFailed))
            }
            Some(_) => {
                self.write(|c| {
                    let v: i64 = c
                        .pragma_query_value(None, "user_version", |r| r.get(0))
                        .map_err(backend)?;
                    c.pragma_update(None, "user_version", v).map_err(backend)
                })
                .await
            }
            None => self.write_with(|_| Ok(()), Flush::Lazy).await,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// WAL flushes (`fdatasync`) done since the store was opened.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Finishes every queued write, checkpoints the WAL and closes the database. Later calls
    /// fail with [`StoreError::Closed`]. Idempotent; also done on drop.
    pub fn close(&self) {
        let tx = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(Msg::Shutdown);
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("database writer thread panicked");
        }
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // Last: the database may be opened again once everything above is done.
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Runs `work` on a pooled read connection, on tokio's blocking pool (a read may wait
    /// for the disk; it must not hold an async worker).
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return Err(StoreError::Closed);
        }
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend)?;
                    configure(&c)?;
                    c.pragma_update(None, "cache_size", -READER_CACHE_KIB)
                        .map_err(backend)?;
                    c
                }
            };
            let r = work(&conn);
            let mut pool = readers.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::backend("a database read task failed", e))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn get_u64(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(i)?;
    Ok(u64::try_from(v).unwrap_or(0))
}

fn get_u32(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u32> {
    let v: i64 = row.get(i)?;
    Ok(u32::try_from(v).unwrap_or(0))
}

fn array<const N: usize>(v: &[u8], what: &'static str) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

fn identity_from(v: &[u8]) -> Result<IdentityBytes, StoreError> {
    let raw: [u8; 64] = array(v, "identity")?;
    let (s, d) = raw.split_at(32);
    Ok(IdentityBytes {
        signing: array(s, "identity")?,
        dh: array(d, "identity")?,
    })
}

fn count_where(conn: &Connection, sql: &str, d: &DeviceAddress) -> Result<u32, StoreError> {
    let n: i64 = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params![d.account.as_str(), d.device.0], |r| r.get(0)))
        .map_err(backend)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

impl Store for SqliteStore {
    async fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        accounts::put_code(self, account, mac, expires_at).await
    }

    async fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> Result<CodeAttempt, StoreError> {
        accounts::begin_code_attempt(self, account, now, max_attempts).await
    }

    async fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        accounts::register_device(self, account, identity, code_mac, reglock, now).await
    }

    async fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        accounts::set_registration_lock(self, account, verifier, now).await
    }

    async fn touch_device(&self, device: &DeviceAddress, now: u64) -> Result<(), StoreError> {
        accounts::touch_device(self, device, now).await
    }

    async fn device_activity(&self, account: &AccountId) -> Result<Vec<DeviceSeen>, StoreError> {
        accounts::device_activity(self, account).await
    }

    async fn registration_lock(
        &self,
        account: &AccountId,
    ) -> Result<Option<RegLockState>, StoreError> {
        accounts::registration_lock(self, account).await
    }

    async fn put_account_key_backup(
        &self,
        device: &DeviceAddress,
        backup: &AccountKeyBackup,
    ) -> Result<bool, StoreError> {
        devices::put_account_key_backup(self, device, backup).await
    }

    async fn account_key_backup(
        &self,
        account: &AccountId,
    ) -> Result<Option<AccountKeyBackup>, StoreError> {
        devices::account_key_backup(self, account).await
    }

    async fn put_business_profile(
        &self,
        device: &DeviceAddress,
        profile: &NewBusinessProfile<'_>,
    ) -> Result<PutProfileOutcome, StoreError> {
        devices::put_business_profile(self, device, profile).await
    }

    async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<StoredBusinessProfile>, StoreError> {
        devices::business_profile(self, account).await
    }

    async fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        now: u64,
    ) -> Result<PutVaultOutcome, StoreError> {
        vault::put_vault(self, account, vault, max_vaults, now).await
    }

    async fn vault(&self, account: &AccountId) -> Result<Option<VaultRow>, StoreError> {
        vault::vault(self, account).await
    }

    async fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        now: u64,
    ) -> Result<VaultAttempt, StoreError> {
        vault::begin_vault_evaluation(self, account, vault_id, max_attempts, now).await
    }

    async fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        now: u64,
    ) -> Result<ConfirmOutcome, StoreError> {
        vault::confirm_vault(self, account, vault_id, verifier, now).await
    }

    async fn delete_vault(&self, account: &AccountId) -> Result<bool, StoreError> {
        vault::delete_vault(self, account).await
    }

    async fn device_identity(
        &self,
        device: &DeviceAddress,
    ) -> Result<Option<IdentityBytes>, StoreError> {
        accounts::device_identity(self, device).await
    }

    async fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError> {
        accounts::list_devices(self, account).await
    }

    async fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> Result<UploadOutcome, StoreError> {
        prekeys::store_prekeys(self, device, keys, limits).await
    }

    async fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        prekeys::prekey_counts(self, device).await
    }

    async fn take_bundles(
        &self,
        account: &AccountId,
    ) -> Result<Option<Vec<TakenBundle>>, StoreError> {
        prekeys::take_bundles(self, account).await
    }

    async fn enqueue(&self, m: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        mail::enqueue(self, m).await
    }

    async fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        mail::mailbox(self, device, after, limit).await
    }

    async fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError> {
        mail::ack(self, device, server_ids).await
    }

    async fn subscribe(&self) -> Option<MailFeed> {
        mail::subscribe(self).await
    }

    async fn settled(&self) -> Result<(), StoreError> {
        mail::settled(self).await
    }

    async fn sender_seq(&self, device: &DeviceAddress) -> Result<u64, StoreError> {
        mail::sender_seq(self, device).await
    }

    async fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError> {
        mail::queue_depth(self, device).await
    }

    async fn total_queued(&self) -> Result<u64, StoreError> {
        mail::total_queued(self).await
    }

    async fn device_list_state(&self, account: &AccountId) -> Result<DeviceListState, StoreError> {
        devices::device_list_state(self, account).await
    }

    async fn replace_device_list(
        &self,
        account: &AccountId,
        list: &NewDeviceList<'_>,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
    ) -> Result<ReplaceListOutcome, StoreError> {
        devices::replace_device_list(self, account, list, expected_version, new_device, now).await
    }

    async fn take_quotas(
        &self,
        checks: &[QuotaCheck],
        now: u64,
    ) -> Result<QuotaOutcome, StoreError> {
        quotas::take_quotas(self, checks, now).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        SqliteStore::health(self).await
    }

    async fn open_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        provisioning::open_provisioning(self, id, expires_at).await
    }

    async fn put_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        provisioning::put_provisioning(self, id, envelope, now).await
    }

    async fn take_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        now: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        provisioning::take_provisioning(self, id, now).await
    }

    async fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError> {
        quotas::sweep(self, now, mailbox_ttl).await
    }
}
