//! The SQLite [`Store`]: one database file in WAL mode, every durable write flushed to disk
//! before it is answered.
//!
//! **Writes** go through a single writer thread that owns the only writing connection and
//! commits in groups: it takes every job waiting in its queue (up to [`MAX_GROUP`]), runs
//! each inside its own `SAVEPOINT` within one `BEGIN IMMEDIATE` transaction (a job that
//! fails is rolled back to its savepoint without affecting the others) and commits once.
//! Envelopes are handed to the caller's `staged` callback ([`Store::enqueue_then`]) just
//! before the commit, so that delivery overlaps the flush.
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

use super::{
    CODE_MAC_LEN, CodeAttempt, ConfirmOutcome, EnqueueOutcome, MAX_SENDER_SEQ, NewMessage,
    NewPreKeys, PreKeyCounts, PreKeyLimits, PutVaultOutcome, QuotaCheck, QuotaOutcome,
    RegLockPolicy, RegLockState, RegisterOutcome, Reply, Staged, Store, StoredEnvelope,
    SweepCounts, TakenBundle, UploadOutcome, VAULT_ID_LEN, VERIFIER_LEN, VaultAttempt, VaultRow,
};
use crate::StoreError;
use crate::ratelimit::gcra;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sealpost_crypto::ct_eq;
use sealpost_wire::relay::{DeviceInfo, MESSAGE_ID_LEN, OutgoingEnvelope};
use sealpost_wire::{
    AccountId, DeviceAddress, DeviceId, IdentityBytes, KEM_PUBLIC_LEN, KemPreKeyKind,
    KemPreKeyPublic, PreKeyBundle, SignedPreKeyPublic,
};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use zeroize::Zeroizing;

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 4;

/// Most jobs committed in one group.
const MAX_GROUP: usize = 256;
/// Jobs that may wait for the writer before callers block (backpressure).
const QUEUE_BOUND: usize = 4096;
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
/// Most groups committed before their flush (see `writer_loop`).
const MAX_GROUPS_PER_FLUSH: usize = 4;
/// Longest a committed durable group waits for its flush while more jobs keep arriving.
const MAX_FLUSH_DELAY: Duration = Duration::from_millis(2);
/// Server ids reserved durably at a time ([`ServerIds`]). A crash skips at most this many.
const ID_BLOCK: u64 = 1 << 20;

const SCHEMA_V1: &str = "
CREATE TABLE codes (
    account     TEXT PRIMARY KEY NOT NULL,
    mac         BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL
);
CREATE TABLE accounts (
    account         TEXT PRIMARY KEY NOT NULL,
    next_device_id  INTEGER NOT NULL
);
CREATE TABLE devices (
    account        TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    identity       BLOB NOT NULL,
    registered_at  INTEGER NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
CREATE TABLE signed_prekeys (
    account     TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    public      BLOB NOT NULL,
    signature   BLOB NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
CREATE TABLE one_time_prekeys (
    account     TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    public      BLOB NOT NULL,
    PRIMARY KEY (account, device_id, id)
) WITHOUT ROWID;
CREATE TABLE kem_prekeys (
    account      TEXT NOT NULL,
    device_id    INTEGER NOT NULL,
    id           INTEGER NOT NULL,
    last_resort  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    public       BLOB NOT NULL,
    signature    BLOB NOT NULL,
    PRIMARY KEY (account, device_id, id)
) WITHOUT ROWID;
CREATE TABLE envelopes (
    server_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    account        TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    sender_account TEXT NOT NULL,
    sender_device  INTEGER NOT NULL,
    message_id     BLOB NOT NULL,
    timestamp      INTEGER NOT NULL,
    envelope       BLOB NOT NULL
);
CREATE INDEX envelopes_by_device ON envelopes (account, device_id, server_id);
CREATE INDEX envelopes_by_time ON envelopes (timestamp);
";

/// Version 2: the registration lock (per-account verifier, failure count, last time a device
/// was seen) and guardian vaults (spec/pin.md sections 9–10). Existing accounts get
/// `last_seen` = their newest device's registration time.
const MIGRATE_V2: &str = "
ALTER TABLE accounts ADD COLUMN reglock_verifier BLOB;
ALTER TABLE accounts ADD COLUMN reglock_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET last_seen = COALESCE(
    (SELECT MAX(registered_at) FROM devices WHERE devices.account = accounts.account), 0);
CREATE TABLE vaults (
    account           TEXT PRIMARY KEY NOT NULL,
    vault_id          BLOB NOT NULL,
    share             BLOB NOT NULL,
    success_verifier  BLOB NOT NULL,
    record            BLOB NOT NULL,
    attempts_used     INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
";

/// Version 3: each device's highest accepted `sender_seq` (spec/relay.md section 3.7), the
/// value a client's rollback check compares with. Existing devices start at 0, which is what
/// a device whose client never sent a sequence number has.
const MIGRATE_V3_SENDER_SEQ: &str = "
ALTER TABLE devices ADD COLUMN max_sender_seq INTEGER NOT NULL DEFAULT 0;
";

/// Version 4 (persisted quotas, spec/relay.md section 7.1): one row per `(kind,
/// subject)` with the GCRA's theoretical arrival time (`ratelimit::gcra`); a row whose `tat`
/// is not after now is a full quota and is deleted by the sweep.
const MIGRATE_V4_QUOTAS: &str = "
CREATE TABLE quotas (
    kind     INTEGER NOT NULL,
    subject  TEXT NOT NULL,
    tat      INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
) WITHOUT ROWID;
CREATE INDEX quotas_by_tat ON quotas (tat);
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

type JobResult = Result<(), StoreError>;

/// A unit of work for the writer thread: `run` executes inside a savepoint of the group's
/// transaction; `staged` is called for every job whose savepoint was released, after all
/// jobs ran and before the commit; `finish` is called once the group's commit has
/// succeeded or failed.
trait Job: Send {
    fn run(&mut self, conn: &Connection, ids: &mut ServerIds) -> JobResult;
    fn finish(self: Box<Self>, commit: JobResult);
    /// Whether the job's commit must be flushed to disk before it is answered. Only
    /// acknowledgement deletes are not (see [`Flush`]).
    fn flush(&self) -> Flush;
    /// Server ids `run` may take.
    fn ids_needed(&self) -> u64 {
        0
    }
    /// The job's changes are written; the commit follows.
    fn staged(&mut self) {}
}

/// The writer's server-id allocator (see the module documentation): ids `next..=reserved`
/// are reserved durably and not yet handed out.
struct ServerIds {
    next: u64,
    reserved: u64,
}

impl ServerIds {
    /// Continues above every id reserved by earlier runs (nothing is reserved yet).
    fn load(conn: &Connection) -> Result<Self, StoreError> {
        let seq: Option<i64> = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'envelopes'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let seq = u64::try_from(seq.unwrap_or(0)).map_err(|_| StoreError::Corrupt("server id"))?;
        Ok(Self {
            next: seq.checked_add(1).ok_or(StoreError::Corrupt("server id"))?,
            reserved: seq,
        })
    }

    /// Makes sure `need` ids are reserved, durably (its own transaction, flushed before the
    /// group's begins), reserving at least [`ID_BLOCK`] at a time.
    fn reserve(&mut self, w: &mut Writer, need: u64) -> Result<(), StoreError> {
        let available = (self.reserved + 1).saturating_sub(self.next);
        if available >= need {
            return Ok(());
        }
        let reserved = self
            .next
            .checked_add(need.max(ID_BLOCK))
            .filter(|r| i64::try_from(*r).is_ok())
            .ok_or(StoreError::Backend("server ids exhausted".into()))?
            - 1;
        let conn = &w.conn;
        let write = || -> rusqlite::Result<()> {
            exec_cached(conn, "BEGIN IMMEDIATE")?;
            let n = conn
                .prepare_cached("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'envelopes'")?
                .execute([to_i64(reserved)])?;
            if n == 0 {
                conn.prepare_cached(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('envelopes', ?1)",
                )?
                .execute([to_i64(reserved)])?;
            }
            exec_cached(conn, "COMMIT")
        };
        if let Err(e) = write() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(backend(e));
        }
        w.flush()?;
        self.reserved = reserved;
        Ok(())
    }

    /// The next reserved id.
    fn take(&mut self) -> Result<u64, StoreError> {
        if self.next > self.reserved {
            return Err(StoreError::Backend("no server id reserved".into()));
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

/// How a job's commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// The WAL is flushed before the job is answered.
    Durable,
    /// Answered once committed (atomic, consistent, visible), before the group's flush if
    /// it has one; on disk with the next flush or checkpoint. Used for `Ack` deletes:
    /// losing one in a crash only redelivers an acknowledged envelope, which clients
    /// deduplicate (spec/relay.md section 4); it never loses one.
    Lazy,
}

/// What the writer thread owns: the writing connection and the WAL file, to flush it.
struct Writer {
    conn: Connection,
    wal: File,
    /// Set when a flush failed: from then on every write fails (fail-stop: what was written
    /// since the last flush may or may not be on disk, and the kernel may have dropped it).
    failed: bool,
    /// Flushes done (shared with [`SqliteStore::flushes`]).
    flushes: Arc<AtomicU64>,
}

impl Writer {
    /// `fdatasync`s the WAL.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.failed {
            return Err(flush_failed());
        }
        match self.wal.sync_data() {
            Ok(()) => {
                self.flushes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                tracing::error!(error = %e, "flushing the database WAL failed; refusing further writes");
                Err(flush_failed())
            }
        }
    }
}

fn flush_failed() -> StoreError {
    StoreError::Backend("a database flush failed; restart the relay".into())
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: Option<Reply<T>>,
    flush: Flush,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection, _ids: &mut ServerIds) -> JobResult {
        let r = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Closed),
        };
        record(&mut self.result, r)
    }

    fn flush(&self) -> Flush {
        self.flush
    }

    fn finish(self: Box<Self>, commit: JobResult) {
        answer(commit, self.result, self.reply);
    }
}

/// Queues work through `queue` with a reply that this thread then waits for.
fn wait_for<T: Send + 'static>(queue: impl FnOnce(Reply<T>)) -> Result<T, StoreError> {
    let (tx, answer) = mpsc::sync_channel(1);
    queue(Box::new(move |r| {
        // The caller may have gone away; nothing to do then.
        let _ = tx.send(r);
    }));
    answer.recv().map_err(|_| StoreError::Closed)?
}

/// Keeps a job's result for [`answer`]; returns whether it succeeded.
fn record<T>(slot: &mut Option<Result<T, StoreError>>, r: Result<T, StoreError>) -> JobResult {
    let outcome = r.as_ref().map(|_| ()).map_err(Clone::clone);
    *slot = Some(r);
    outcome
}

/// Answers a job: its own result if the commit (and flush) succeeded, else the commit's error.
fn answer<T>(commit: JobResult, result: Option<Result<T, StoreError>>, reply: Option<Reply<T>>) {
    let answer = match (commit, result) {
        (Ok(()), Some(r)) => r,
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(StoreError::Closed),
    };
    if let Some(reply) = reply {
        reply(answer);
    }
}

enum Msg {
    Job(Box<dyn Job>),
    Shutdown,
}

/// The SQLite store. See the module documentation.
pub struct SqliteStore {
    flushes: Arc<AtomicU64>,
    path: PathBuf,
    jobs: Mutex<Option<SyncSender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
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

/// Runs one parameterless statement through the connection's statement cache (the
/// per-job savepoint statements run several times per group commit).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    configure(&conn)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "could not enable WAL (journal_mode is {mode})"
        )));
    }
    // Commits write the WAL without flushing it; the writer flushes (module documentation).
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(backend)?;
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this relay's {SCHEMA_VERSION}"
        )));
    }
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 2 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V2} PRAGMA user_version = 2; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 3 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V3_SENDER_SEQ} PRAGMA user_version = 3; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 4 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V4_QUOTAS} PRAGMA user_version = 4; COMMIT;"
        ))
        .map_err(backend)?;
    }
    Ok(())
}

/// The writer thread. A durable group's flush is put off while more jobs are waiting, so
/// that they are written (and their envelopes staged for delivery) without waiting for it
/// and one flush covers several groups: the writer flushes when its queue is empty, after
/// [`MAX_GROUPS_PER_FLUSH`] groups, or once the oldest unflushed commit is
/// [`MAX_FLUSH_DELAY`] old, and only then answers the durable jobs.
fn writer_loop(mut w: Writer, mut ids: ServerIds, rx: Receiver<Msg>) {
    let mut open = true;
    // Committed durable jobs waiting for the flush, the groups they came from, and when
    // the first of them committed.
    let mut unflushed: Vec<Box<dyn Job>> = Vec::new();
    let mut groups = 0usize;
    let mut since = std::time::Instant::now();
    while open {
        let first = if unflushed.is_empty() {
            rx.recv().ok()
        } else {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(mpsc::TryRecvError::Empty) => {
                    flush_and_answer(&mut w, &mut unflushed, &mut groups);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => None,
            }
        };
        let first = match first {
            Some(Msg::Job(j)) => j,
            Some(Msg::Shutdown) | None => break,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => group.push(j),
                Ok(Msg::Shutdown) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let durable = run_group(&mut w, &mut ids, group);
        if !durable.is_empty() {
            if unflushed.is_empty() {
                since = std::time::Instant::now();
            }
            unflushed.extend(durable);
            groups += 1;
        }
        if groups >= MAX_GROUPS_PER_FLUSH || (groups > 0 && since.elapsed() >= MAX_FLUSH_DELAY) {
            flush_and_answer(&mut w, &mut unflushed, &mut groups);
        }
    }
    flush_and_answer(&mut w, &mut unflushed, &mut groups);
    // Answer anything still queued (senders raced with shutdown), then checkpoint the WAL
    // into the main file so the database is self-contained after a clean shutdown.
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Job(j) = msg {
            let durable = run_group(&mut w, &mut ids, vec![j]);
            unflushed.extend(durable);
            flush_and_answer(&mut w, &mut unflushed, &mut groups);
        }
    }
    let Writer { conn, wal, .. } = w;
    drop(wal);
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the database failed");
    }
}

/// Flushes the WAL and answers the committed durable jobs waiting for it.
fn flush_and_answer(w: &mut Writer, unflushed: &mut Vec<Box<dyn Job>>, groups: &mut usize) {
    *groups = 0;
    if unflushed.is_empty() {
        return;
    }
    let flushed = w.flush();
    for job in unflushed.drain(..) {
        job.finish(flushed.clone());
    }
}

/// Runs and commits one group. Answers its lazy jobs, and every job if the group failed;
/// returns the committed durable jobs, to be answered after the flush.
#[must_use]
fn run_group(
    w: &mut Writer,
    ids: &mut ServerIds,
    mut group: Vec<Box<dyn Job>>,
) -> Vec<Box<dyn Job>> {
    let need = group.iter().map(|j| j.ids_needed()).sum();
    let ready = if w.failed {
        Err(flush_failed())
    } else {
        ids.reserve(w, need)
    };
    if let Err(err) = ready {
        for job in group {
            job.finish(Err(err.clone()));
        }
        return Vec::new();
    }
    let conn = &w.conn;
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        let err = backend(e);
        for job in group {
            job.finish(Err(err.clone()));
        }
        return Vec::new();
    }
    for job in &mut group {
        let ok = exec_cached(conn, "SAVEPOINT job").is_ok()
            && match job.run(conn, ids) {
                Ok(()) => exec_cached(conn, "RELEASE job").is_ok(),
                Err(_) => {
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    true
                }
            };
        if !ok {
            // The savepoint machinery itself failed: abandon the whole group.
            let _ = conn.execute_batch("ROLLBACK");
            let err = StoreError::Backend("savepoint failed".into());
            for job in group {
                job.finish(Err(err.clone()));
            }
            return Vec::new();
        }
    }
    for job in &mut group {
        job.staged();
    }
    let commit = exec_cached(conn, "COMMIT").map_err(backend);
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        for job in group {
            job.finish(commit.clone());
        }
        return Vec::new();
    }
    // Lazy jobs are answered now; durable ones once the flush is done.
    let (lazy, durable): (Vec<_>, Vec<_>) =
        group.into_iter().partition(|j| j.flush() == Flush::Lazy);
    for job in lazy {
        job.finish(Ok(()));
    }
    durable
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema and starts
    /// the writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_writer(&path)?;
        let ids = ServerIds::load(&conn)?;
        // WAL mode created the `-wal` file when the connection first read the database.
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let wal = File::open(&wal_path)
            .map_err(|e| StoreError::Backend(format!("cannot open the WAL file: {e}")))?;
        let flushes = Arc::new(AtomicU64::new(0));
        let mut w = Writer {
            conn,
            wal,
            failed: false,
            flushes: Arc::clone(&flushes),
        };
        // Whatever opening wrote (schema, migrations) is on disk before the first answer.
        w.flush()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_BOUND);
        let writer = std::thread::Builder::new()
            .name("sealpost-sqlite-writer".into())
            .spawn(move || writer_loop(w, ids, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            flushes,
            path,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
        })
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
    }

    /// Runs `work` in the writer's next group and waits for the commit.
    fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        wait_for(|reply| self.submit(work, reply))
    }

    /// Queues `work` for the writer's next group without waiting; `reply` gets the outcome
    /// on the writer thread once the group has committed (or failed), or at once if the
    /// store is closed. Blocks only while the queue is full (`QUEUE_BOUND` jobs waiting).
    fn submit<T, F>(&self, work: F, reply: Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit_with(work, reply, Flush::Durable);
    }

    /// [`Self::submit`] with a chosen [`Flush`].
    fn submit_with<T, F>(&self, work: F, reply: Reply<T>, flush: Flush)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.send_job(Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply: Some(reply),
            flush,
        }));
    }

    /// Queues `job` for the writer's next group, or finishes it with
    /// [`StoreError::Closed`].
    fn send_job(&self, job: Box<dyn Job>) {
        let tx = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else {
            job.finish(Err(StoreError::Closed));
            return;
        };
        if let Err(mpsc::SendError(Msg::Job(job))) = tx.send(Msg::Job(job)) {
            job.finish(Err(StoreError::Closed));
        }
    }

    fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return Err(StoreError::Closed);
        }
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
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
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        r
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

fn read_vault(conn: &Connection, account: &str) -> Result<Option<VaultRow>, StoreError> {
    let row = conn
        .query_row(
            "SELECT vault_id, share, success_verifier, record, attempts_used FROM vaults
             WHERE account = ?1",
            params![account],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    Zeroizing::new(r.get::<_, Vec<u8>>(1)?),
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    get_u32(r, 4)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    let Some((vault_id, share, success_verifier, record, attempts_used)) = row else {
        return Ok(None);
    };
    Ok(Some(VaultRow {
        vault_id: array(&vault_id, "vault id")?,
        share: Zeroizing::new(array(&share, "vault share")?),
        success_verifier: array(&success_verifier, "success verifier")?,
        record,
        attempts_used,
    }))
}

fn count_where(conn: &Connection, sql: &str, d: &DeviceAddress) -> Result<u32, StoreError> {
    let n: i64 = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params![d.account.as_str(), d.device.0], |r| r.get(0)))
        .map_err(backend)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn counts(conn: &Connection, d: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
    Ok(PreKeyCounts {
        one_time_prekeys: count_where(
            conn,
            "SELECT COUNT(*) FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2",
            d,
        )?,
        kem_prekeys: count_where(
            conn,
            "SELECT COUNT(*) FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND last_resort = 0",
            d,
        )?,
    })
}

fn queue_depth(conn: &Connection, d: &DeviceAddress) -> Result<u32, StoreError> {
    count_where(
        conn,
        "SELECT COUNT(*) FROM envelopes WHERE account = ?1 AND device_id = ?2",
        d,
    )
}

/// An account's devices with the number of envelopes queued for each, in device order: one
/// statement for what every `Send` checks.
fn device_queues(conn: &Connection, account: &str) -> Result<Vec<(u32, u32)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.device_id,
                    (SELECT COUNT(*) FROM envelopes e
                     WHERE e.account = d.account AND e.device_id = d.device_id)
             FROM devices d WHERE d.account = ?1 ORDER BY d.device_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![account], |r| {
            let depth: i64 = r.get(1)?;
            Ok((get_u32(r, 0)?, u32::try_from(depth).unwrap_or(u32::MAX)))
        })
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

fn device_ids(conn: &Connection, account: &str) -> Result<Vec<u32>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT device_id FROM devices WHERE account = ?1 ORDER BY device_id")
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![account], |r| get_u32(r, 0))
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

/// `(id, last_resort, created_at, public, signature)` as read from `kem_prekeys`.
type KemRow = (u32, bool, u64, Vec<u8>, Vec<u8>);

fn kem_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KemRow> {
    Ok((
        get_u32(row, 0)?,
        row.get::<_, i64>(1)? != 0,
        get_u64(row, 2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn kem_key(raw: KemRow) -> Result<KemPreKeyPublic, StoreError> {
    let (id, last_resort, created_at, public, signature) = raw;
    Ok(KemPreKeyPublic {
        id,
        kind: if last_resort {
            KemPreKeyKind::LastResort
        } else {
            KemPreKeyKind::OneTime
        },
        created_at,
        public: Box::new(array::<KEM_PUBLIC_LEN>(&public, "KEM prekey")?),
        signature: array(&signature, "KEM prekey signature")?,
    })
}

fn take_bundle(
    conn: &Connection,
    account: &AccountId,
    device_id: u32,
    identity: IdentityBytes,
) -> Result<Option<TakenBundle>, StoreError> {
    let acct = account.as_str();
    let signed = conn
        .query_row(
            "SELECT id, created_at, public, signature FROM signed_prekeys
             WHERE account = ?1 AND device_id = ?2",
            params![acct, device_id],
            |r| {
                Ok((
                    get_u32(r, 0)?,
                    get_u64(r, 1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    let Some((id, created_at, public, signature)) = signed else {
        return Ok(None);
    };
    let signed_prekey = SignedPreKeyPublic {
        id,
        created_at,
        public: array(&public, "signed prekey")?,
        signature: array(&signature, "signed prekey signature")?,
    };
    // Lowest one-time KEM prekey first, else the last-resort one (last_resort sorts after).
    let kem = conn
        .query_row(
            "SELECT id, last_resort, created_at, public, signature FROM kem_prekeys
             WHERE account = ?1 AND device_id = ?2 ORDER BY last_resort, id LIMIT 1",
            params![acct, device_id],
            kem_from_row,
        )
        .optional()
        .map_err(backend)?;
    let Some(kem) = kem else {
        return Ok(None);
    };
    let kem_prekey = kem_key(kem)?;
    if kem_prekey.kind == KemPreKeyKind::OneTime {
        conn.execute(
            "DELETE FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
            params![acct, device_id, kem_prekey.id],
        )
        .map_err(backend)?;
    }
    let otk = conn
        .query_row(
            "SELECT id, public FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2
             ORDER BY id LIMIT 1",
            params![acct, device_id],
            |r| Ok((get_u32(r, 0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let one_time_prekey = match otk {
        Some((id, public)) => {
            conn.execute(
                "DELETE FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
                params![acct, device_id, id],
            )
            .map_err(backend)?;
            Some((id, array(&public, "one-time prekey")?))
        }
        None => None,
    };
    let addr = DeviceAddress::new(account.clone(), DeviceId(device_id));
    Ok(Some(TakenBundle {
        bundle: PreKeyBundle {
            device_id,
            identity,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        },
        remaining: counts(conn, &addr)?,
    }))
}

/// The writer job of [`Store::enqueue`] / [`Store::enqueue_then`]: the checks and inserts,
/// on owned copies of the message; hands the written envelopes to `staged` before the
/// commit.
struct EnqueueJob {
    sender: DeviceAddress,
    recipient: String,
    exclude: Option<u32>,
    message_id: [u8; MESSAGE_ID_LEN],
    sender_seq: u64,
    timestamp: u64,
    /// Taken by `run`.
    envelopes: Vec<OutgoingEnvelope>,
    max_queued: u32,
    result: Option<Result<EnqueueOutcome, StoreError>>,
    /// The envelopes written by `run`, for `staged`.
    written: Vec<(u32, StoredEnvelope)>,
    staged: Option<Staged>,
    reply: Option<Reply<EnqueueOutcome>>,
}

impl EnqueueJob {
    fn new(m: &NewMessage<'_>, staged: Option<Staged>, reply: Reply<EnqueueOutcome>) -> Self {
        Self {
            sender: m.sender.clone(),
            recipient: m.recipient.as_str().to_owned(),
            exclude: m.exclude_device,
            message_id: *m.message_id,
            sender_seq: m.sender_seq,
            timestamp: m.timestamp,
            envelopes: m.envelopes.to_vec(),
            max_queued: m.max_queued,
            result: None,
            written: Vec::new(),
            staged,
            reply: Some(reply),
        }
    }

    fn insert(
        &mut self,
        c: &Connection,
        ids: &mut ServerIds,
    ) -> Result<EnqueueOutcome, StoreError> {
        let devices = device_queues(c, &self.recipient)?;
        if devices.is_empty() {
            return Ok(EnqueueOutcome::UnknownAccount);
        }
        let expected: BTreeSet<u32> = devices
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| Some(*id) != self.exclude)
            .collect();
        let given: BTreeSet<u32> = self.envelopes.iter().map(|e| e.device_id).collect();
        if given.len() != self.envelopes.len() || given != expected {
            return Ok(EnqueueOutcome::MismatchedDevices);
        }
        for e in &self.envelopes {
            let depth = devices
                .iter()
                .find_map(|(id, depth)| (*id == e.device_id).then_some(*depth));
            if depth.is_some_and(|d| d >= self.max_queued) {
                return Ok(EnqueueOutcome::QueueFull {
                    device_id: e.device_id,
                });
            }
        }
        let mut ins = c
            .prepare_cached(
                "INSERT INTO envelopes
                 (server_id, account, device_id, sender_account, sender_device, message_id,
                  timestamp, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(backend)?;
        let mut queued = Vec::with_capacity(self.envelopes.len());
        let mut written = Vec::with_capacity(self.envelopes.len());
        for e in std::mem::take(&mut self.envelopes) {
            let server_id = ids.take()?;
            ins.execute(params![
                to_i64(server_id),
                self.recipient,
                e.device_id,
                self.sender.account.as_str(),
                self.sender.device.0,
                &self.message_id[..],
                to_i64(self.timestamp),
                e.envelope
            ])
            .map_err(backend)?;
            queued.push((e.device_id, server_id));
            written.push((
                e.device_id,
                StoredEnvelope {
                    server_id,
                    sender: self.sender.clone(),
                    message_id: self.message_id,
                    timestamp: self.timestamp,
                    envelope: e.envelope,
                },
            ));
        }
        // The sender's high-water mark, in the same transaction (spec/relay.md 3.7). Only
        // a value above the stored one writes the row.
        if self.sender_seq > 0 {
            c.prepare_cached(
                "UPDATE devices SET max_sender_seq = ?3
                 WHERE account = ?1 AND device_id = ?2 AND max_sender_seq < ?3",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.sender.account.as_str(),
                    self.sender.device.0,
                    to_i64(self.sender_seq.min(MAX_SENDER_SEQ))
                ])
            })
            .map_err(backend)?;
        }
        self.written = written;
        Ok(EnqueueOutcome::Queued(queued))
    }
}

impl Job for EnqueueJob {
    fn run(&mut self, conn: &Connection, ids: &mut ServerIds) -> JobResult {
        let r = self.insert(conn, ids);
        if r.is_err() {
            self.written.clear();
        }
        record(&mut self.result, r)
    }

    fn flush(&self) -> Flush {
        Flush::Durable
    }

    fn ids_needed(&self) -> u64 {
        self.envelopes.len() as u64
    }

    fn staged(&mut self) {
        if !self.written.is_empty()
            && let Some(staged) = self.staged.take()
        {
            staged(std::mem::take(&mut self.written));
        }
    }

    fn finish(self: Box<Self>, commit: JobResult) {
        answer(commit, self.result, self.reply);
    }
}

/// A device's mailbox after a server id, oldest first (read lazily, see `mailbox`).
const MAILBOX_SQL: &str = "SELECT server_id, sender_account, sender_device, message_id, timestamp,
    envelope FROM envelopes WHERE account = ?1 AND device_id = ?2 AND server_id > ?3
    ORDER BY server_id";

/// The writer job of [`Store::ack`].
fn ack_job(
    device: &DeviceAddress,
    server_ids: &[u64],
) -> impl FnOnce(&Connection) -> Result<u32, StoreError> + Send + 'static {
    let device = device.clone();
    let ids = server_ids.to_vec();
    move |c| {
        let mut stmt = c
            .prepare_cached(
                "DELETE FROM envelopes WHERE server_id = ?1 AND account = ?2 AND device_id = ?3",
            )
            .map_err(backend)?;
        let mut removed = 0u32;
        for id in ids {
            let n = stmt
                .execute(params![
                    to_i64(id),
                    device.account.as_str(),
                    device.device.0
                ])
                .map_err(backend)?;
            removed = removed.saturating_add(u32::try_from(n).unwrap_or(0));
        }
        Ok(removed)
    }
}

impl Store for SqliteStore {
    fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let account = account.as_str().to_owned();
        let mac = *mac;
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO codes (account, mac, expires_at, attempts)
                 VALUES (?1, ?2, ?3, 0)",
                params![account, &mac[..], to_i64(expires_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> Result<CodeAttempt, StoreError> {
        let account = account.as_str().to_owned();
        self.write(move |c| {
            let row = c
                .query_row(
                    "SELECT mac, expires_at, attempts FROM codes WHERE account = ?1",
                    params![account],
                    |r| Ok((r.get::<_, Vec<u8>>(0)?, get_u64(r, 1)?, get_u32(r, 2)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((mac, expires_at, attempts)) = row else {
                return Ok(CodeAttempt::Missing);
            };
            let delete = |c: &Connection| {
                c.execute("DELETE FROM codes WHERE account = ?1", params![account])
                    .map_err(backend)
            };
            if expires_at <= now {
                delete(c)?;
                return Ok(CodeAttempt::Expired);
            }
            if attempts >= max_attempts {
                delete(c)?;
                return Ok(CodeAttempt::Exhausted);
            }
            c.execute(
                "UPDATE codes SET attempts = attempts + 1 WHERE account = ?1",
                params![account],
            )
            .map_err(backend)?;
            Ok(CodeAttempt::Check {
                mac: array(&mac, "code MAC")?,
                attempt: attempts + 1,
            })
        })
    }

    fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        let account = account.as_str().to_owned();
        let identity = identity.to_bytes();
        let code_mac = *code_mac;
        let reglock = *reglock;
        self.write(move |c| {
            let stored: Option<Vec<u8>> = c
                .query_row(
                    "SELECT mac FROM codes WHERE account = ?1",
                    params![account],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if stored.as_deref() != Some(&code_mac[..]) {
                return Ok(RegisterOutcome::CodeGone);
            }
            let lock = c
                .query_row(
                    "SELECT reglock_verifier, reglock_failures, last_seen FROM accounts
                     WHERE account = ?1",
                    params![account],
                    |r| {
                        Ok((
                            r.get::<_, Option<Vec<u8>>>(0)?,
                            get_u32(r, 1)?,
                            get_u64(r, 2)?,
                        ))
                    },
                )
                .optional()
                .map_err(backend)?;
            let mut keep_verifier = false;
            if let Some((Some(stored), failures, last_seen)) = lock {
                let lapses_at = last_seen.saturating_add(reglock.lapse);
                if now < lapses_at {
                    let mut failures = failures;
                    let refused = if failures >= reglock.max_failures {
                        true
                    } else {
                        match &reglock.presented {
                            None => true,
                            Some(v) if ct_eq(v, &stored) => false,
                            Some(_) => {
                                failures += 1;
                                c.execute(
                                    "UPDATE accounts SET reglock_failures = ?2 WHERE account = ?1",
                                    params![account, failures],
                                )
                                .map_err(backend)?;
                                true
                            }
                        }
                    };
                    if refused {
                        // The correct code is not used up by a locked attempt.
                        c.execute(
                            "UPDATE codes SET attempts = MAX(attempts - 1, 0) WHERE account = ?1",
                            params![account],
                        )
                        .map_err(backend)?;
                        return Ok(RegisterOutcome::Locked {
                            lapses_at,
                            attempts_remaining: reglock.max_failures.saturating_sub(failures),
                        });
                    }
                    keep_verifier = true;
                }
            }
            let next: u32 = c
                .query_row(
                    "SELECT next_device_id FROM accounts WHERE account = ?1",
                    params![account],
                    |r| get_u32(r, 0),
                )
                .optional()
                .map_err(backend)?
                .unwrap_or(1);
            let Some(after) = next.checked_add(1) else {
                return Ok(RegisterOutcome::DeviceIdsExhausted);
            };
            let removed = device_ids(c, &account)?;
            for sql in [
                "DELETE FROM codes WHERE account = ?1",
                "DELETE FROM devices WHERE account = ?1",
                "DELETE FROM signed_prekeys WHERE account = ?1",
                "DELETE FROM one_time_prekeys WHERE account = ?1",
                "DELETE FROM kem_prekeys WHERE account = ?1",
                "DELETE FROM envelopes WHERE account = ?1",
            ] {
                c.execute(sql, params![account]).map_err(backend)?;
            }
            c.execute(
                "INSERT INTO devices (account, device_id, identity, registered_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![account, next, &identity[..], to_i64(now)],
            )
            .map_err(backend)?;
            c.execute(
                "INSERT INTO accounts
                 (account, next_device_id, reglock_verifier, reglock_failures, last_seen)
                 VALUES (?1, ?2, NULL, 0, ?3)
                 ON CONFLICT (account) DO UPDATE SET next_device_id = excluded.next_device_id,
                    reglock_failures = 0, last_seen = excluded.last_seen,
                    reglock_verifier = CASE WHEN ?4 THEN reglock_verifier ELSE NULL END",
                params![account, after, to_i64(now), keep_verifier],
            )
            .map_err(backend)?;
            Ok(RegisterOutcome::Registered {
                device_id: next,
                removed,
            })
        })
    }

    fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let account = account.as_str().to_owned();
        let verifier = verifier.copied();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE accounts SET reglock_verifier = ?2, reglock_failures = 0,
                     last_seen = MAX(last_seen, ?3) WHERE account = ?1",
                    params![account, verifier.as_ref().map(|v| &v[..]), to_i64(now)],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn touch_account(&self, account: &AccountId, now: u64) -> Result<(), StoreError> {
        let account = account.as_str().to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE accounts SET last_seen = MAX(last_seen, ?2) WHERE account = ?1",
                params![account, to_i64(now)],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn registration_lock(&self, account: &AccountId) -> Result<Option<RegLockState>, StoreError> {
        self.read(|c| {
            let row = c
                .query_row(
                    "SELECT reglock_verifier, reglock_failures, last_seen FROM accounts
                     WHERE account = ?1",
                    params![account.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, Option<Vec<u8>>>(0)?,
                            get_u32(r, 1)?,
                            get_u64(r, 2)?,
                        ))
                    },
                )
                .optional()
                .map_err(backend)?;
            row.map(|(v, failures, last_seen)| {
                Ok(RegLockState {
                    verifier: v.map(|v| array(&v, "reglock verifier")).transpose()?,
                    failures,
                    last_seen,
                })
            })
            .transpose()
        })
    }

    fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        now: u64,
    ) -> Result<PutVaultOutcome, StoreError> {
        let account = account.as_str().to_owned();
        let vault = vault.clone();
        self.write(move |c| {
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM vaults WHERE account = ?1)",
                    params![account],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if !exists {
                let n = c
                    .query_row("SELECT COUNT(*) FROM vaults", [], |r| get_u64(r, 0))
                    .map_err(backend)?;
                if n >= max_vaults {
                    return Ok(PutVaultOutcome::Full);
                }
            }
            c.execute(
                "INSERT OR REPLACE INTO vaults
                 (account, vault_id, share, success_verifier, record, attempts_used, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                params![
                    account,
                    &vault.vault_id[..],
                    &vault.share[..],
                    &vault.success_verifier[..],
                    vault.record,
                    to_i64(now)
                ],
            )
            .map_err(backend)?;
            Ok(PutVaultOutcome::Stored)
        })
    }

    fn vault(&self, account: &AccountId) -> Result<Option<VaultRow>, StoreError> {
        self.read(|c| read_vault(c, account.as_str()))
    }

    fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        now: u64,
    ) -> Result<VaultAttempt, StoreError> {
        let account = account.as_str().to_owned();
        let vault_id = *vault_id;
        self.write(move |c| {
            let Some(v) = read_vault(c, &account)?.filter(|v| v.vault_id == vault_id) else {
                return Ok(VaultAttempt::NotFound);
            };
            if v.attempts_used >= max_attempts {
                c.execute("DELETE FROM vaults WHERE account = ?1", params![account])
                    .map_err(backend)?;
                return Ok(VaultAttempt::NotFound);
            }
            let attempts_used = v.attempts_used + 1;
            let deleted = attempts_used >= max_attempts;
            if deleted {
                c.execute("DELETE FROM vaults WHERE account = ?1", params![account])
                    .map_err(backend)?;
            } else {
                c.execute(
                    "UPDATE vaults SET attempts_used = ?2, updated_at = ?3 WHERE account = ?1",
                    params![account, attempts_used, to_i64(now)],
                )
                .map_err(backend)?;
            }
            Ok(VaultAttempt::Counted {
                share: v.share.clone(),
                attempts_used,
                deleted,
            })
        })
    }

    fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        now: u64,
    ) -> Result<ConfirmOutcome, StoreError> {
        let account = account.as_str().to_owned();
        let vault_id = *vault_id;
        let verifier = *verifier;
        self.write(move |c| {
            let Some(v) = read_vault(c, &account)?.filter(|v| v.vault_id == vault_id) else {
                return Ok(ConfirmOutcome::NotFound);
            };
            if !ct_eq(&verifier, &v.success_verifier) {
                return Ok(ConfirmOutcome::Mismatch);
            }
            c.execute(
                "UPDATE vaults SET attempts_used = 0, updated_at = ?2 WHERE account = ?1",
                params![account, to_i64(now)],
            )
            .map_err(backend)?;
            Ok(ConfirmOutcome::Confirmed)
        })
    }

    fn delete_vault(&self, account: &AccountId) -> Result<bool, StoreError> {
        let account = account.as_str().to_owned();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM vaults WHERE account = ?1", params![account])
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn device_identity(&self, device: &DeviceAddress) -> Result<Option<IdentityBytes>, StoreError> {
        self.read(|c| {
            let v: Option<Vec<u8>> = c
                .query_row(
                    "SELECT identity FROM devices WHERE account = ?1 AND device_id = ?2",
                    params![device.account.as_str(), device.device.0],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            v.map(|v| identity_from(&v)).transpose()
        })
    }

    fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT device_id, identity FROM devices WHERE account = ?1 ORDER BY device_id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![account.as_str()], |r| {
                    Ok((get_u32(r, 0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (device_id, identity) = row.map_err(backend)?;
                out.push(DeviceInfo {
                    device_id,
                    identity: identity_from(&identity)?,
                });
            }
            Ok(out)
        })
    }

    fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> Result<UploadOutcome, StoreError> {
        let device = device.clone();
        let keys = keys.clone();
        let limits = *limits;
        self.write(move |c| {
            let acct = device.account.as_str();
            let dev = device.device.0;
            let exists: Option<i64> = c
                .query_row(
                    "SELECT 1 FROM devices WHERE account = ?1 AND device_id = ?2",
                    params![acct, dev],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if exists.is_none() {
                return Ok(UploadOutcome::UnknownDevice);
            }
            {
                let mut otk = c
                    .prepare_cached(
                        "SELECT 1 FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
                    )
                    .map_err(backend)?;
                for (id, _) in &keys.one_time {
                    if otk.exists(params![acct, dev, id]).map_err(backend)? {
                        return Ok(UploadOutcome::IdConflict);
                    }
                }
                let mut kem = c
                    .prepare_cached(
                        "SELECT last_resort FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
                    )
                    .map_err(backend)?;
                for k in &keys.kem_one_time {
                    if kem.exists(params![acct, dev, k.id]).map_err(backend)? {
                        return Ok(UploadOutcome::IdConflict);
                    }
                }
                if let Some(k) = &keys.kem_last_resort {
                    let lr: Option<i64> = kem
                        .query_row(params![acct, dev, k.id], |r| r.get(0))
                        .optional()
                        .map_err(backend)?;
                    if lr == Some(0) {
                        return Ok(UploadOutcome::IdConflict);
                    }
                }
            }
            let before = counts(c, &device)?;
            if u64::from(before.one_time_prekeys) + keys.one_time.len() as u64
                > u64::from(limits.max_one_time)
                || u64::from(before.kem_prekeys) + keys.kem_one_time.len() as u64
                    > u64::from(limits.max_kem_one_time)
            {
                return Ok(UploadOutcome::TooMany);
            }
            if let Some(s) = &keys.signed {
                c.execute(
                    "INSERT OR REPLACE INTO signed_prekeys
                     (account, device_id, id, created_at, public, signature)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![acct, dev, s.id, to_i64(s.created_at), &s.public[..], &s.signature[..]],
                )
                .map_err(backend)?;
            }
            {
                let mut ins = c
                    .prepare_cached(
                        "INSERT INTO one_time_prekeys (account, device_id, id, public)
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(backend)?;
                for (id, public) in &keys.one_time {
                    ins.execute(params![acct, dev, id, &public[..]])
                        .map_err(backend)?;
                }
            }
            if keys.kem_last_resort.is_some() {
                c.execute(
                    "DELETE FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND last_resort = 1",
                    params![acct, dev],
                )
                .map_err(backend)?;
            }
            {
                let mut ins = c
                    .prepare_cached(
                        "INSERT INTO kem_prekeys
                         (account, device_id, id, last_resort, created_at, public, signature)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(backend)?;
                for k in keys.kem_one_time.iter().chain(keys.kem_last_resort.iter()) {
                    let lr = i64::from(k.kind == KemPreKeyKind::LastResort);
                    ins.execute(params![
                        acct,
                        dev,
                        k.id,
                        lr,
                        to_i64(k.created_at),
                        k.public.as_slice(),
                        &k.signature[..]
                    ])
                    .map_err(backend)?;
                }
            }
            Ok(UploadOutcome::Stored(counts(c, &device)?))
        })
    }

    fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        self.read(|c| counts(c, device))
    }

    fn take_bundles(&self, account: &AccountId) -> Result<Option<Vec<TakenBundle>>, StoreError> {
        let account = account.clone();
        self.write(move |c| {
            let devices: Vec<(u32, Vec<u8>)> = {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT device_id, identity FROM devices WHERE account = ?1 ORDER BY device_id",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![account.as_str()], |r| Ok((get_u32(r, 0)?, r.get(1)?)))
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            if devices.is_empty() {
                return Ok(None);
            }
            let mut out = Vec::new();
            for (device_id, identity) in devices {
                if let Some(b) = take_bundle(c, &account, device_id, identity_from(&identity)?)? {
                    out.push(b);
                }
            }
            Ok(Some(out))
        })
    }

    fn enqueue(&self, m: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        wait_for(|reply| self.send_job(Box::new(EnqueueJob::new(m, None, reply))))
    }

    fn enqueue_then(&self, m: &NewMessage<'_>, staged: Staged, reply: Reply<EnqueueOutcome>) {
        self.send_job(Box::new(EnqueueJob::new(m, Some(staged), reply)));
    }

    fn after_queued_writes(&self, reply: Reply<()>) {
        self.submit_with(|_: &Connection| Ok(()), reply, Flush::Lazy);
    }

    fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.read(|c| {
            // No `LIMIT ?`: a bound LIMIT is part of the query plan, so every new value would
            // make SQLite re-prepare the statement. The index delivers rows in order, one step
            // at a time, so taking `limit` of them reads no more than a LIMIT would.
            let mut stmt = c.prepare_cached(MAILBOX_SQL).map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![device.account.as_str(), device.device.0, to_i64(after)],
                    |r| {
                        Ok((
                            get_u64(r, 0)?,
                            r.get::<_, String>(1)?,
                            get_u32(r, 2)?,
                            r.get::<_, Vec<u8>>(3)?,
                            get_u64(r, 4)?,
                            r.get::<_, Vec<u8>>(5)?,
                        ))
                    },
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows.take(limit) {
                let (server_id, sender_account, sender_device, message_id, timestamp, envelope) =
                    row.map_err(backend)?;
                let account = AccountId::new(sender_account)
                    .map_err(|_| StoreError::Corrupt("sender account"))?;
                out.push(StoredEnvelope {
                    server_id,
                    sender: DeviceAddress::new(account, DeviceId(sender_device)),
                    message_id: array(&message_id, "message id")?,
                    timestamp,
                    envelope,
                });
            }
            Ok(out)
        })
    }

    fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError> {
        wait_for(|reply| self.ack_then(device, server_ids, reply))
    }

    fn ack_then(&self, device: &DeviceAddress, server_ids: &[u64], reply: Reply<u32>) {
        self.submit_with(ack_job(device, server_ids), reply, Flush::Lazy);
    }

    fn sender_seq(&self, device: &DeviceAddress) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT max_sender_seq FROM devices WHERE account = ?1 AND device_id = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![device.account.as_str(), device.device.0], |r| {
                    get_u64(r, 0)
                })
                .optional()
            })
            .map(Option::unwrap_or_default)
            .map_err(backend)
        })
    }

    fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError> {
        self.read(|c| queue_depth(c, device))
    }

    fn total_queued(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM envelopes", [], |r| get_u64(r, 0))
                .map_err(backend)
        })
    }

    fn take_quotas(&self, checks: &[QuotaCheck], now: u64) -> Result<QuotaOutcome, StoreError> {
        let checks = checks.to_vec();
        self.write(move |c| {
            let mut next = Vec::with_capacity(checks.len());
            for (index, q) in checks.iter().enumerate() {
                let tat: Option<i64> = c
                    .prepare_cached("SELECT tat FROM quotas WHERE kind = ?1 AND subject = ?2")
                    .map_err(backend)?
                    .query_row(params![q.kind.code(), q.subject], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                let tat = tat
                    .map(|t| u64::try_from(t).map_err(|_| StoreError::Corrupt("quota tat")))
                    .transpose()?;
                match gcra(tat, q.rate, now) {
                    Ok(t) => next.push(t),
                    Err(retry_after_ms) => {
                        return Ok(QuotaOutcome::Exceeded {
                            index,
                            retry_after_ms,
                        });
                    }
                }
            }
            let mut stmt = c
                .prepare_cached(
                    "INSERT INTO quotas (kind, subject, tat) VALUES (?1, ?2, ?3)
                     ON CONFLICT (kind, subject) DO UPDATE SET tat = excluded.tat",
                )
                .map_err(backend)?;
            for (q, tat) in checks.iter().zip(next) {
                stmt.execute(params![q.kind.code(), q.subject, to_i64(tat)])
                    .map_err(backend)?;
            }
            Ok(QuotaOutcome::Taken)
        })
    }

    fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError> {
        self.write(move |c| {
            c.execute("DELETE FROM quotas WHERE tat <= ?1", params![to_i64(now)])
                .map_err(backend)?;
            let codes = c
                .execute(
                    "DELETE FROM codes WHERE expires_at <= ?1",
                    params![to_i64(now)],
                )
                .map_err(backend)?;
            // timestamp + ttl <= now, without overflow: nothing is that old while now < ttl.
            let envelopes = match now.checked_sub(mailbox_ttl) {
                Some(cutoff) => c
                    .execute(
                        "DELETE FROM envelopes WHERE timestamp <= ?1",
                        params![to_i64(cutoff)],
                    )
                    .map_err(backend)?,
                None => 0,
            };
            Ok(SweepCounts {
                codes: codes as u64,
                envelopes: envelopes as u64,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{acct, register};

    #[test]
    fn pragmas_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let s = SqliteStore::open(&path).unwrap();
        let (mode, sync, version) = s
            .write(|c| {
                let mode: String = c
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(backend)?;
                let sync: i64 = c
                    .query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .map_err(backend)?;
                let v: i64 = c
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(backend)?;
                Ok((mode, sync, v))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 1, "synchronous = NORMAL: the writer flushes");
        assert_eq!(version, SCHEMA_VERSION);
        s.close();
        assert_eq!(s.total_queued(), Err(StoreError::Closed));
        assert_eq!(s.put_code(&acct(1), &[0; 32], 1), Err(StoreError::Closed));
        // A database from a newer relay is refused.
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        assert!(SqliteStore::open(&path).is_err());
    }

    /// A durable job is answered only after a WAL flush that followed its commit; a lazy job
    /// (acknowledgement delete) is answered without one.
    #[test]
    fn durable_jobs_are_answered_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("r.db")).unwrap();
        let flushes_seen = |flush: Flush| {
            let (tx, rx) = mpsc::sync_channel(1);
            let before = s.flushes();
            s.submit_with(
                |c: &Connection| {
                    c.execute("INSERT INTO codes VALUES ('x', x'00', 1, 0)", [])
                        .and_then(|_| c.execute("DELETE FROM codes", []))
                        .map_err(backend)
                },
                Box::new(move |r| tx.send(r).unwrap()),
                flush,
            );
            rx.recv().unwrap().unwrap();
            s.flushes() - before
        };
        for _ in 0..3 {
            assert_eq!(flushes_seen(Flush::Lazy), 0, "an ack is not flushed");
            assert_eq!(flushes_seen(Flush::Durable), 1, "answered after its flush");
        }
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let a = acct(1);
        let b = acct(2);
        {
            let s = SqliteStore::open(&path).unwrap();
            register(&s, &a, 1);
            register(&s, &b, 2);
            queue_one(&s, &DeviceAddress::new(a.clone(), DeviceId(1)), &b);
            s.put_code(&a, &[4; 32], u64::MAX).unwrap();
            s.begin_code_attempt(&a, 0, 5).unwrap();
            s.begin_code_attempt(&a, 0, 5).unwrap();
            // Dropped without close(): Drop closes too.
        }
        let s = SqliteStore::open(&path).unwrap();
        let bd = DeviceAddress::new(b.clone(), DeviceId(1));
        assert_eq!(s.mailbox(&bd, 0, 10).unwrap()[0].envelope, vec![1, 2, 3]);
        // The attempt counter was durable: this is the third attempt.
        assert_eq!(
            s.begin_code_attempt(&a, 0, 5).unwrap(),
            CodeAttempt::Check {
                mac: [4; 32],
                attempt: 3
            }
        );
        // Device ids keep counting after a reopen.
        assert_eq!(register(&s, &a, 3), 2);
    }

    /// Queues `[1, 2, 3]` from `sender` to device 1 of `to`; returns its server id.
    fn queue_one(s: &SqliteStore, sender: &DeviceAddress, to: &AccountId) -> u64 {
        let env = [sealpost_wire::relay::OutgoingEnvelope {
            device_id: 1,
            envelope: vec![1, 2, 3],
        }];
        let m = NewMessage {
            sender,
            recipient: to,
            exclude_device: None,
            message_id: &[0; 16],
            sender_seq: 0,
            timestamp: 5,
            envelopes: &env,
            max_queued: 100,
        };
        match s.enqueue(&m).unwrap() {
            EnqueueOutcome::Queued(ids) => ids[0].1,
            other => panic!("{other:?}"),
        }
    }

    /// The mailbox read walks the per-device index in order (no sort, no table scan), so
    /// stopping after `limit` rows costs no more than a `LIMIT` would.
    #[test]
    fn mailbox_read_uses_the_device_index_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("r.db")).unwrap();
        let plan: Vec<String> = s
            .read(|c| {
                let mut stmt = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {MAILBOX_SQL}"))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params!["+15550001111", 1, 0], |r| r.get::<_, String>(3))
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .unwrap();
        let plan = plan.join(" | ");
        assert!(plan.contains("USING INDEX envelopes_by_device"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// Server ids handed out after the last durable state are not handed out again by a
    /// relay restarted from that state (a crash), nor after a clean reopen.
    #[test]
    fn server_ids_are_never_reused_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let crashed = dir.path().join("crashed");
        std::fs::create_dir(&crashed).unwrap();
        let (a, b) = (acct(1), acct(2));
        let sender = DeviceAddress::new(a.clone(), DeviceId(1));
        let send = |s: &SqliteStore| queue_one(s, &sender, &b);
        let s = SqliteStore::open(&path).unwrap();
        register(&s, &a, 1);
        register(&s, &b, 2);
        let first = send(&s);
        // The files as a crash right now would leave them (the writer is idle).
        for suffix in ["", "-wal"] {
            let from = format!("{}{suffix}", path.display());
            if std::path::Path::new(&from).exists() {
                std::fs::copy(&from, crashed.join(format!("r.db{suffix}"))).unwrap();
            }
        }
        // Ids the crashed relay handed out after that state (they may have been pushed).
        let later: Vec<u64> = (0..5).map(|_| send(&s)).collect();
        assert!(later.iter().all(|id| *id > first));
        s.close();
        let restarted = SqliteStore::open(crashed.join("r.db")).unwrap();
        let after_crash = send(&restarted);
        assert!(
            after_crash > *later.iter().max().unwrap(),
            "{after_crash} reuses an id handed out before the crash ({later:?})"
        );
        assert!(
            after_crash > first + ID_BLOCK - 1,
            "continues above the reservation"
        );
        restarted.close();
        let reopened = SqliteStore::open(&path).unwrap();
        assert!(send(&reopened) > *later.iter().max().unwrap());
    }

    #[test]
    fn quotas_survive_reopening() {
        use crate::ratelimit::Rate;
        use crate::store::{QuotaCheck, QuotaKind, QuotaOutcome};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let q = [QuotaCheck {
            kind: QuotaKind::CodeSource,
            subject: "192.0.2.1".into(),
            rate: Rate {
                capacity: 1,
                refill_ms: 3_600_000,
            },
        }];
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.take_quotas(&q, 1000).unwrap(), QuotaOutcome::Taken);
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.take_quotas(&q, 2000).unwrap(),
            QuotaOutcome::Exceeded {
                index: 0,
                retry_after_ms: 3_599_000
            }
        );
    }

    #[test]
    fn migrates_a_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "{SCHEMA_V1}
                 INSERT INTO accounts (account, next_device_id) VALUES ('+15550000001', 2);
                 INSERT INTO devices (account, device_id, identity, registered_at)
                 VALUES ('+15550000001', 1, zeroblob(64), 1234);
                 PRAGMA user_version = 1;"
            ))
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let version: i64 = s
            .read(|c| {
                c.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(backend)
            })
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            s.registration_lock(&acct(1)).unwrap(),
            Some(crate::store::RegLockState {
                verifier: None,
                failures: 0,
                last_seen: 1234
            })
        );
        assert_eq!(s.vault(&acct(1)).unwrap(), None);
        // The account keeps its devices and id counter.
        assert_eq!(s.list_devices(&acct(1)).unwrap().len(), 1);
        assert_eq!(register(&s, &acct(1), 3), 2);
    }

    /// Version 2 → 3: existing devices get `sender_seq` 0, which then rises with their sends
    /// and survives a reopen.
    #[test]
    fn migrates_a_version_2_database_to_sender_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "{SCHEMA_V1} {MIGRATE_V2}
                 INSERT INTO accounts (account, next_device_id) VALUES ('+15550000001', 2);
                 INSERT INTO devices (account, device_id, identity, registered_at)
                 VALUES ('+15550000001', 1, zeroblob(64), 1234);
                 PRAGMA user_version = 2;"
            ))
            .unwrap();
        }
        let a1 = DeviceAddress::new(acct(1), DeviceId(1));
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.sender_seq(&a1).unwrap(), 0);
            let b = acct(2);
            register(&s, &b, 2);
            let envs = [OutgoingEnvelope {
                device_id: 1,
                envelope: vec![1],
            }];
            let m = NewMessage {
                sender: &a1,
                recipient: &b,
                exclude_device: None,
                message_id: &[1; 16],
                sender_seq: 42,
                timestamp: 1,
                envelopes: &envs,
                max_queued: 10,
            };
            assert!(matches!(s.enqueue(&m).unwrap(), EnqueueOutcome::Queued(_)));
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.sender_seq(&a1).unwrap(), 42);
    }

    #[test]
    fn lock_and_vault_counts_survive_reopen() {
        use crate::store::conformance::vault_row;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let a = acct(1);
        {
            let s = SqliteStore::open(&path).unwrap();
            register(&s, &a, 1);
            s.set_registration_lock(&a, Some(&[1; 32]), 10).unwrap();
            s.put_code(&a, &[7; 32], u64::MAX).unwrap();
            let policy = RegLockPolicy {
                presented: Some([2; 32]),
                max_failures: 10,
                lapse: u64::MAX / 4,
            };
            for _ in 0..3 {
                let r = s
                    .register_device(
                        &a,
                        &IdentityBytes {
                            signing: [1; 32],
                            dh: [2; 32],
                        },
                        &[7; 32],
                        &policy,
                        20,
                    )
                    .unwrap();
                assert!(matches!(r, RegisterOutcome::Locked { .. }));
            }
            s.put_vault(&a, &vault_row(1), 10, 0).unwrap();
            for _ in 0..4 {
                s.begin_vault_evaluation(&a, &[1; 16], 10, 0).unwrap();
            }
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.registration_lock(&a).unwrap().unwrap().failures, 3);
        assert_eq!(s.vault(&a).unwrap().unwrap().attempts_used, 4);
    }

    #[test]
    fn group_commit_isolates_failing_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open(dir.path().join("r.db")).unwrap());
        let threads: Vec<_> = (0..16u32)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        s.put_code(&acct(i), &[1; 32], 10).map(|_| true)
                    } else {
                        // Writes, then fails: its savepoint is rolled back, the others commit.
                        s.write(move |c| {
                            c.execute(
                                "INSERT INTO codes (account, mac, expires_at, attempts) VALUES (?1, x'00', 1, 0)",
                                params![format!("bad{i}")],
                            )
                            .map_err(backend)?;
                            Err::<bool, _>(StoreError::Corrupt("test"))
                        })
                    }
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 8);
        let n: i64 = s
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM codes", [], |r| r.get(0))
                    .map_err(backend)
            })
            .unwrap();
        assert_eq!(n, 8);
    }
}
