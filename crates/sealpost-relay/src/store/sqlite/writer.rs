//! The group-commit writer thread: jobs, server-id reservation, the WAL flush and the
//! queue through which [`SqliteStore`] hands it work (see the module documentation of
//! `store::sqlite`).

use super::batch::{self, Deferred, Pending};
use super::*;
use crate::store::{MailPublisher, Written};
use tokio::sync::oneshot;

/// Most jobs committed in one group.
pub(super) const MAX_GROUP: usize = 256;
/// Jobs that may wait for the writer before callers block (backpressure).
pub(super) const QUEUE_BOUND: usize = 4096;
/// Most groups committed before their flush (see `writer_loop`).
pub(super) const MAX_GROUPS_PER_FLUSH: usize = 4;
/// Longest a committed durable group waits for its flush while more jobs keep arriving.
pub(super) const MAX_FLUSH_DELAY: Duration = Duration::from_millis(2);
/// Server ids reserved durably at a time ([`ServerIds`]). A crash skips at most this many.
pub(super) const ID_BLOCK: u64 = 1 << 20;

pub(super) type JobResult = Result<(), StoreError>;

/// Where a job's outcome goes: the caller's future ([`SqliteStore::write`]) awaits it.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A unit of work for the writer thread: `run` executes inside a savepoint of the group's
/// transaction (unless the job is not [`Job::guarded`]); `written` is asked of every job whose savepoint was released, after all
/// jobs ran and before the commit (what it returns is published on the mail feed);
/// `finish` is called once the group's commit has succeeded or failed.
pub(super) trait Job: Send {
    /// `pending`: the group's jobs before this one whose deferred writes are not made yet.
    fn run(&mut self, conn: &Connection, ids: &mut ServerIds, pending: &Pending<'_>) -> JobResult;
    fn finish(self: Box<Self>, commit: JobResult);
    /// Whether the job's commit must be flushed to disk before it is answered. Only
    /// acknowledgement deletes are not (see [`Flush`]).
    fn flush(&self) -> Flush;
    /// Server ids `run` may take.
    fn ids_needed(&self) -> u64 {
        0
    }
    /// Whether `run` needs a savepoint of its own, so that its failure can be rolled back
    /// without the group's other jobs. A job may say `false` when it writes only after its
    /// checks, so that a failed `run` has usually written nothing (the writer verifies it:
    /// if the connection counted changes, or lost its transaction, the whole group fails
    /// with the job's error and nothing of it is committed). Saves two statements per job.
    fn guarded(&self) -> bool {
        true
    }
    /// The job's changes are written and the commit follows: the envelopes it wrote, for
    /// the mail feed.
    fn written(&mut self) -> Option<Written> {
        None
    }
    /// Writes the job leaves to the writer, which makes them together with those of the
    /// group's other jobs after them (`batch.rs`). `None` unless the last `run` succeeded
    /// and the request was accepted: a failed or refused job contributes nothing.
    fn deferred(&self) -> Option<Deferred<'_>> {
        None
    }
    /// Whether `run` may come before the deferred writes of the jobs before it are made
    /// (it neither reads nor writes what they write). If not, the writer makes them first.
    fn commutes(&self) -> bool {
        false
    }
    /// A subscription to install before the group's envelopes are published
    /// ([`SqliteStore::subscribe`]).
    fn subscribe(&mut self) -> Option<MailPublisher> {
        None
    }
}

/// The writer's server-id allocator (see the module documentation): ids `next..=reserved`
/// are reserved durably and not yet handed out.
pub(super) struct ServerIds {
    next: u64,
    reserved: u64,
}

impl ServerIds {
    /// Continues above every id reserved by earlier runs (nothing is reserved yet).
    pub(super) fn load(conn: &Connection) -> Result<Self, StoreError> {
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
    pub(super) fn reserve(&mut self, w: &mut Writer, need: u64) -> Result<(), StoreError> {
        let available = (self.reserved + 1).saturating_sub(self.next);
        if available >= need {
            return Ok(());
        }
        let reserved = self
            .next
            .checked_add(need.max(ID_BLOCK))
            .filter(|r| i64::try_from(*r).is_ok())
            .ok_or(StoreError::backend_msg("server ids exhausted"))?
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
    pub(super) fn take(&mut self) -> Result<u64, StoreError> {
        if self.next > self.reserved {
            return Err(StoreError::backend_msg("no server id reserved"));
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

/// How a job's commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flush {
    /// The WAL is flushed before the job is answered.
    Durable,
    /// Answered once committed (atomic, consistent, visible), before the group's flush if
    /// it has one; on disk with the next flush or checkpoint. Used for `Ack` deletes:
    /// losing one in a crash only redelivers an acknowledged envelope, which clients
    /// deduplicate (spec/relay.md section 4); it never loses one.
    Lazy,
}

/// What the writer thread owns: the writing connection and the WAL file, to flush it.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) wal: File,
    /// Set when a flush failed: from then on every write fails (fail-stop: what was written
    /// since the last flush may or may not be on disk, and the kernel may have dropped it).
    pub(super) failed: bool,
    /// Flushes done (shared with [`SqliteStore::flushes`]).
    pub(super) flushes: Arc<AtomicU64>,
    /// The mail feed's publisher, once subscribed.
    pub(super) feed: Option<MailPublisher>,
    /// Shared with [`SqliteStore::health`]: what the last write group found wrong with the
    /// storage, if anything.
    pub(super) health: Arc<Mutex<Option<Unavailable>>>,
    /// The writer's copy of `health` (the shared one is locked only when it changes).
    pub(super) unavailable: Option<Unavailable>,
}

impl Writer {
    /// `fdatasync`s the WAL.
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        if self.failed {
            return Err(flush_failed());
        }
        let started = std::time::Instant::now();
        let synced = self.wal.sync_data();
        crate::metrics::store_fsync(started.elapsed());
        match synced {
            Ok(()) => {
                self.flushes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                self.note(Some(Unavailable::FlushFailed));
                tracing::error!(error = %e, "flushing the database WAL failed; refusing further writes");
                Err(flush_failed())
            }
        }
    }

    /// Records what a write group found about the storage: `Some` when it failed on the
    /// storage, `None` when a durable write committed. A failed flush is final.
    pub(super) fn note(&mut self, found: Option<Unavailable>) {
        let found = if self.failed {
            Some(Unavailable::FlushFailed)
        } else {
            found
        };
        if found != self.unavailable {
            self.unavailable = found;
            *self.health.lock().unwrap_or_else(PoisonError::into_inner) = found;
        }
    }
}

pub(super) fn flush_failed() -> StoreError {
    StoreError::Unavailable(Unavailable::FlushFailed)
}

/// The storage failure in `r`, if it is one.
fn storage_failure<T>(r: &Result<T, StoreError>) -> Option<Unavailable> {
    match r {
        Err(StoreError::Unavailable(why)) => Some(*why),
        _ => None,
    }
}

pub(super) struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: Option<Reply<T>>,
    flush: Flush,
    guarded: bool,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection, _ids: &mut ServerIds, _: &Pending<'_>) -> JobResult {
        let r = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Closed),
        };
        record(&mut self.result, r)
    }

    fn flush(&self) -> Flush {
        self.flush
    }

    fn guarded(&self) -> bool {
        self.guarded
    }

    fn finish(self: Box<Self>, commit: JobResult) {
        answer(commit, self.result, self.reply);
    }
}

/// Keeps a job's result for [`answer`]; returns whether it succeeded.
pub(super) fn record<T>(
    slot: &mut Option<Result<T, StoreError>>,
    r: Result<T, StoreError>,
) -> JobResult {
    let outcome = r.as_ref().map(|_| ()).map_err(Clone::clone);
    *slot = Some(r);
    outcome
}

/// Answers a job: its own result if the commit (and flush) succeeded, else the commit's error.
pub(super) fn answer<T>(
    commit: JobResult,
    result: Option<Result<T, StoreError>>,
    reply: Option<Reply<T>>,
) {
    let answer = match (commit, result) {
        (Ok(()), Some(r)) => r,
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(StoreError::Closed),
    };
    if let Some(reply) = reply {
        // The caller may have gone away (its future was dropped); nothing to do then.
        let _ = reply.send(answer);
    }
}

pub(super) enum Msg {
    Job(Box<dyn Job>),
    Shutdown,
}

/// Runs one parameterless statement through the connection's statement cache (the
/// per-job savepoint statements run several times per group commit).
pub(super) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread. A durable group's flush is put off while more jobs are waiting, so
/// that they are written (and their envelopes staged for delivery) without waiting for it
/// and one flush covers several groups: the writer flushes when its queue is empty, after
/// [`MAX_GROUPS_PER_FLUSH`] groups, or once the oldest unflushed commit is
/// [`MAX_FLUSH_DELAY`] old, and only then answers the durable jobs.
pub(super) fn writer_loop(mut w: Writer, mut ids: ServerIds, rx: Receiver<Msg>) {
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
pub(super) fn flush_and_answer(
    w: &mut Writer,
    unflushed: &mut Vec<Box<dyn Job>>,
    groups: &mut usize,
) {
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
pub(super) fn run_group(
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
        w.note(storage_failure::<()>(&Err(err.clone())));
        for job in group {
            job.finish(Err(err.clone()));
        }
        return Vec::new();
    }
    let conn = &w.conn;
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        let err = backend(e);
        if let Some(why) = storage_failure::<()>(&Err(err.clone())) {
            w.note(Some(why));
        }
        for job in group {
            job.finish(Err(err.clone()));
        }
        return Vec::new();
    }
    // A job that failed on the storage (a full disk, an I/O error) rolled back alone.
    let mut failed_on_storage = None;
    // Jobs from `pending_from` on may have deferred writes not made yet (`batch.rs`), with
    // `pending_rows` envelopes among them.
    let (mut pending_from, mut pending_rows) = (0usize, 0usize);
    for i in 0..group.len() {
        let commutes = group.get(i).is_some_and(|j| j.commutes());
        if i > pending_from && !commutes {
            let jobs = group.get(pending_from..i).unwrap_or_default();
            if let Err(e) = batch::apply(conn, jobs) {
                abandon(w, group, e);
                return Vec::new();
            }
            (pending_from, pending_rows) = (i, 0);
        }
        let (before, rest) = group.split_at_mut(i);
        let Some(job) = rest.first_mut() else { break };
        let pending = Pending {
            jobs: before.get(pending_from..).unwrap_or_default(),
            rows: pending_rows,
        };
        if !job.guarded() {
            let changes = conn.total_changes();
            if let Err(e) = job.run(conn, ids, &pending) {
                failed_on_storage = failed_on_storage.or(storage_failure::<()>(&Err(e.clone())));
                if conn.total_changes() != changes || conn.is_autocommit() {
                    // Part of it may be written, and only the whole transaction can take
                    // that back.
                    if let Some(why) = failed_on_storage {
                        w.note(Some(why));
                    }
                    abandon(w, group, e);
                    return Vec::new();
                }
                // It failed before writing anything: the others go on.
            }
        } else {
            let ok = exec_cached(conn, "SAVEPOINT job").is_ok()
                && match job.run(conn, ids, &pending) {
                    Ok(()) => exec_cached(conn, "RELEASE job").is_ok(),
                    Err(e) => {
                        failed_on_storage = failed_on_storage.or(storage_failure::<()>(&Err(e)));
                        let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                        true
                    }
                };
            if !ok {
                // The savepoint machinery itself failed: abandon the whole group.
                abandon(w, group, StoreError::backend_msg("savepoint failed"));
                return Vec::new();
            }
        }
        pending_rows += job.deferred().map_or(0, |d| d.envelopes.len());
    }
    if let Err(e) = batch::apply(conn, group.get(pending_from..).unwrap_or_default()) {
        abandon(w, group, e);
        return Vec::new();
    }
    // Published before the commit, so that delivery overlaps the flush (the feed's
    // contract allows it: an envelope whose commit then fails is never stored, and its id
    // is never reused). In job order, which is server-id order.
    for job in &mut group {
        if let Some(p) = job.subscribe() {
            w.feed = Some(p);
        }
    }
    if let Some(feed) = &w.feed {
        let batch: Vec<Written> = group.iter_mut().filter_map(|j| j.written()).collect();
        if !feed.publish(batch) {
            w.feed = None;
        }
    }
    let started = std::time::Instant::now();
    let commit = exec_cached(conn, "COMMIT").map_err(backend);
    crate::metrics::store_commit("sqlite", started.elapsed());
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        if let Some(why) = storage_failure(&commit) {
            w.note(Some(why));
        }
        for job in group {
            job.finish(commit.clone());
        }
        return Vec::new();
    }
    // Lazy jobs are answered now; durable ones once the flush is done.
    let (lazy, durable): (Vec<_>, Vec<_>) =
        group.into_iter().partition(|j| j.flush() == Flush::Lazy);
    // Only a durable write that committed shows that the storage takes writes again (a
    // group of no-ops commits on a full disk too).
    if failed_on_storage.is_some() || !durable.is_empty() {
        w.note(failed_on_storage);
    }
    for job in lazy {
        job.finish(Ok(()));
    }
    durable
}

/// A job running `work`, and where its answer arrives (for tests that build groups).
#[cfg(test)]
pub(super) fn typed_job<T, F>(
    work: F,
    flush: Flush,
    guarded: bool,
) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = TypedJob {
        work: Some(work),
        result: None,
        reply: Some(reply),
        flush,
        guarded,
    };
    (Box::new(job), answer)
}

/// Rolls back the group's transaction (if it is still open) and answers every job of the
/// group with `err`: nothing of the group is stored.
fn abandon(w: &mut Writer, group: Vec<Box<dyn Job>>, err: StoreError) {
    if !w.conn.is_autocommit() {
        let _ = w.conn.execute_batch("ROLLBACK");
    }
    if let Some(why) = storage_failure::<()>(&Err(err.clone())) {
        w.note(Some(why));
    }
    for job in group {
        job.finish(Err(err.clone()));
    }
}

impl SqliteStore {
    /// Runs `work` in the writer's next group; resolves once the commit is durable.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(work, Flush::Durable).await
    }

    /// [`Self::write`] with a chosen [`Flush`]. Queuing blocks the calling thread only while
    /// the queue is full (`QUEUE_BOUND` jobs waiting: backpressure on the whole relay).
    pub(super) async fn write_with<T, F>(&self, work: F, flush: Flush) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_job(work, flush, true).await
    }

    /// [`Self::write_with`] for `work` that need not be [`Job::guarded`]: it writes only
    /// after its checks, and a failure after a write fails the whole group.
    #[cfg(test)]
    pub(super) async fn write_unguarded<T, F>(&self, work: F, flush: Flush) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_job(work, flush, false).await
    }

    async fn write_job<T, F>(&self, work: F, flush: Flush, guarded: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send_job(Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply: Some(reply),
            flush,
            guarded,
        }));
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `job` and awaits its answer.
    pub(super) async fn run_job<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Box<dyn Job>,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send_job(job(reply));
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `job` for the writer's next group, or finishes it with
    /// [`StoreError::Closed`].
    pub(super) fn send_job(&self, job: Box<dyn Job>) {
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
}
