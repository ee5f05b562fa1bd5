//! The writes a commit group makes together: the envelopes of its accepted `Send`s in
//! multi-row `INSERT`s, each sending device's `max_sender_seq` raised once (to the largest
//! value of the group's accepted sends), and an `Ack`'s deletes in a few `IN (...)`
//! statements. A performance trick (fewer statements per message for the writer thread),
//! kept here with its own tests; `writer.rs` says when these writes are made.
//!
//! A job that defers writes ([`Job::deferred`]) has done its checks in `run` and wrote
//! nothing; the writer applies the deferred writes of consecutive jobs with [`apply`] after
//! them, before any job that does not commute with them ([`Job::commutes`]) and before the
//! commit, inside the group's transaction (spec/relay.md 3.7: the sequence number is
//! recorded in the same transaction as the envelopes). A job whose `run` failed or refused
//! the request defers nothing, so it contributes neither envelopes nor its `sender_seq`. If
//! [`apply`] fails, the writer rolls back and fails the whole group.

use super::*;
use crate::store::StoredEnvelope;
use std::sync::OnceLock;
use writer::Job;

/// Rows per multi-row statement, largest first: a batch of `n` rows is cut greedily into
/// these sizes, so each size is one cached statement and a batch takes at most a few.
const CHUNKS: [usize; 3] = [16, 4, 1];

/// The writes a job left for [`apply`].
pub(super) struct Deferred<'a> {
    /// The recipient account of `envelopes`.
    pub(super) recipient: &'a AccountId,
    /// `(device id, envelope)` rows to insert, in server-id order.
    pub(super) envelopes: &'a [(u32, StoredEnvelope)],
    /// The sending device and the `sender_seq` to record for it (0: none).
    pub(super) sender: &'a DeviceAddress,
    pub(super) sender_seq: u64,
}

/// The jobs of the running group whose deferred writes are not applied yet, as a job's
/// `run` sees them (for the mailbox bound: envelopes queued before it in the group count).
pub(super) struct Pending<'a> {
    pub(super) jobs: &'a [Box<dyn Job>],
    /// Envelope rows the `jobs` deferred.
    pub(super) rows: usize,
}

impl Pending<'_> {
    /// Envelopes deferred for `device` of `account`.
    pub(super) fn queued_for(&self, account: &AccountId, device: u32) -> u32 {
        let mut n = 0u32;
        for d in self.jobs.iter().filter_map(|j| j.deferred()) {
            if d.recipient == account {
                let k = d.envelopes.iter().filter(|(id, _)| *id == device).count();
                n = n.saturating_add(u32::try_from(k).unwrap_or(u32::MAX));
            }
        }
        n
    }
}

/// `n` as the greedy sequence of [`CHUNKS`] sizes.
fn chunks(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = CHUNKS.iter().copied().find(|&c| c <= n)?;
        n -= size;
        Some(size)
    })
}

/// `INSERT INTO envelopes ... VALUES (8 parameters), ...` for `rows` rows, one of [`CHUNKS`].
fn insert_sql(rows: usize) -> Result<&'static str, StoreError> {
    static SQL: OnceLock<[String; CHUNKS.len()]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNKS.map(|k| {
            let row = "(?,?,?,?,?,?,?,?)";
            format!(
                "INSERT INTO envelopes (server_id, account, device_id, sender_account, \
                 sender_device, message_id, timestamp, envelope) VALUES {}",
                vec![row; k].join(",")
            )
        })
    });
    sized(all, rows)
}

/// `DELETE FROM envelopes WHERE account = ? AND device_id = ? AND server_id IN (...)` with
/// `ids` ids, one of [`CHUNKS`].
fn delete_sql(ids: usize) -> Result<&'static str, StoreError> {
    static SQL: OnceLock<[String; CHUNKS.len()]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNKS.map(|k| {
            format!(
                "DELETE FROM envelopes WHERE account = ?1 AND device_id = ?2 AND server_id IN ({})",
                vec!["?"; k].join(",")
            )
        })
    });
    sized(all, ids)
}

/// The statement of `all` (one per [`CHUNKS`] size) for `size`.
fn sized(all: &'static [String; CHUNKS.len()], size: usize) -> Result<&'static str, StoreError> {
    CHUNKS
        .iter()
        .zip(all)
        .find(|(c, _)| **c == size)
        .map(|(_, sql)| sql.as_str())
        .ok_or(StoreError::backend_msg("no statement for this batch size"))
}

/// Makes the deferred writes of `jobs`, in job order (which is server-id order): their
/// envelopes, then each sending device's largest `sender_seq` among them.
pub(super) fn apply(conn: &Connection, jobs: &[Box<dyn Job>]) -> Result<(), StoreError> {
    let deferred: Vec<Deferred<'_>> = jobs.iter().filter_map(|j| j.deferred()).collect();
    if deferred.is_empty() {
        return Ok(());
    }
    let mut rows = deferred.iter().flat_map(|d| {
        d.envelopes
            .iter()
            .map(move |(device, e)| (d.recipient, *device, e))
    });
    let total: usize = deferred.iter().map(|d| d.envelopes.len()).sum();
    for size in chunks(total) {
        let mut stmt = conn.prepare_cached(insert_sql(size)?).map_err(backend)?;
        for i in 0..size {
            let Some((recipient, device, e)) = rows.next() else {
                return Err(StoreError::backend_msg("deferred rows miscounted"));
            };
            let at = i * 8;
            let bind = |stmt: &mut rusqlite::CachedStatement<'_>| -> rusqlite::Result<()> {
                stmt.raw_bind_parameter(at + 1, to_i64(e.server_id))?;
                stmt.raw_bind_parameter(at + 2, recipient.as_str())?;
                stmt.raw_bind_parameter(at + 3, device)?;
                stmt.raw_bind_parameter(at + 4, e.sender.account.as_str())?;
                stmt.raw_bind_parameter(at + 5, e.sender.device.0)?;
                stmt.raw_bind_parameter(at + 6, &e.message_id[..])?;
                stmt.raw_bind_parameter(at + 7, to_i64(e.timestamp))?;
                stmt.raw_bind_parameter(at + 8, &e.envelope[..])
            };
            bind(&mut stmt).map_err(backend)?;
        }
        stmt.raw_execute().map_err(backend)?;
    }
    // Each sending device once, with its largest value (devices in first-seen order).
    let mut marks: Vec<(&DeviceAddress, u64)> = Vec::new();
    for d in deferred.iter().filter(|d| d.sender_seq > 0) {
        match marks.iter_mut().find(|(s, _)| *s == d.sender) {
            Some((_, seq)) => *seq = (*seq).max(d.sender_seq),
            None => marks.push((d.sender, d.sender_seq)),
        }
    }
    if !marks.is_empty() {
        // Only a value above the stored one writes the row.
        let mut stmt = conn
            .prepare_cached(
                "UPDATE devices SET max_sender_seq = ?3
                 WHERE account = ?1 AND device_id = ?2 AND max_sender_seq < ?3",
            )
            .map_err(backend)?;
        for (sender, seq) in marks {
            stmt.execute(params![
                sender.account.as_str(),
                sender.device.0,
                to_i64(seq.min(MAX_SENDER_SEQ))
            ])
            .map_err(backend)?;
        }
    }
    Ok(())
}

/// Deletes `device`'s envelopes with the given server ids (an `Ack`); returns how many
/// there were. Ids listed twice count once.
pub(super) fn delete_acked(
    conn: &Connection,
    device: &DeviceAddress,
    server_ids: &[u64],
) -> Result<u32, StoreError> {
    let mut removed = 0usize;
    let mut rest = server_ids;
    for size in chunks(server_ids.len()) {
        let (now, later) = rest.split_at(size);
        rest = later;
        let mut stmt = conn.prepare_cached(delete_sql(size)?).map_err(backend)?;
        let bind = |stmt: &mut rusqlite::CachedStatement<'_>| -> rusqlite::Result<()> {
            stmt.raw_bind_parameter(1, device.account.as_str())?;
            stmt.raw_bind_parameter(2, device.device.0)?;
            for (i, id) in now.iter().enumerate() {
                stmt.raw_bind_parameter(i + 3, to_i64(*id))?;
            }
            Ok(())
        };
        bind(&mut stmt).map_err(backend)?;
        removed += stmt.raw_execute().map_err(backend)?;
    }
    // An id listed in two chunks is deleted by the first only.
    Ok(u32::try_from(removed).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::super::mail::EnqueueJob;
    use super::super::writer::{Flush, ServerIds, Writer, flush_and_answer, run_group, typed_job};
    use super::*;
    use crate::store::conformance::{acct, register};
    use crate::store::{EnqueueOutcome, NewMessage};
    use tokio::sync::oneshot;

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    /// A database with a recipient (one device) and two senders, and a writer on it
    /// that the test drives group by group.
    async fn setup(dir: &Path) -> (Writer, ServerIds, AccountId, DeviceAddress, DeviceAddress) {
        let path = dir.join("r.db");
        let s = SqliteStore::open(&path).unwrap();
        let (r, a, b) = (acct(1), acct(2), acct(3));
        for (i, x) in [&r, &a, &b].into_iter().enumerate() {
            assert_eq!(register(&s, x, u8::try_from(i).unwrap()).await, 1);
        }
        s.close();
        let (conn, _) = open_writer(&path).unwrap();
        let ids = ServerIds::load(&conn).unwrap();
        let wal = File::open(dir.join("r.db-wal")).unwrap();
        let w = Writer {
            conn,
            wal,
            failed: false,
            flushes: Arc::default(),
            feed: None,
            health: Arc::default(),
            unavailable: None,
        };
        let dev = |x: AccountId| DeviceAddress::new(x, DeviceId(1));
        (w, ids, r, dev(a), dev(b))
    }

    /// A `Send` from `from` to device `device` of `to`, its envelope the 8 bytes of `seq`.
    fn send(
        from: &DeviceAddress,
        to: &AccountId,
        device: u32,
        seq: u64,
        max_queued: u32,
    ) -> (Box<dyn Job>, Answer<EnqueueOutcome>) {
        let env = [OutgoingEnvelope {
            device_id: device,
            envelope: seq.to_be_bytes().to_vec(),
        }];
        let m = NewMessage {
            sender: from,
            recipient: to,
            exclude_device: None,
            addressing: crate::store::Addressing::Exact,
            message_id: &[0; 16],
            sender_seq: seq,
            timestamp: 5,
            envelopes: &env,
            max_queued,
        };
        let (reply, answer) = oneshot::channel();
        (Box::new(EnqueueJob::new(&m, reply)), answer)
    }

    /// Runs `jobs` as one group, commits and flushes it.
    fn commit(w: &mut Writer, ids: &mut ServerIds, jobs: Vec<Box<dyn Job>>) {
        let mut durable = run_group(w, ids, jobs);
        flush_and_answer(w, &mut durable, &mut 1);
    }

    fn answer<T>(mut a: Answer<T>) -> Result<T, StoreError> {
        a.try_recv().expect("answered")
    }

    fn queued(a: Answer<EnqueueOutcome>) -> bool {
        matches!(answer(a), Ok(EnqueueOutcome::Queued(ids)) if ids.len() == 1)
    }

    fn seq(w: &Writer, d: &DeviceAddress) -> u64 {
        w.conn
            .query_row(
                "SELECT max_sender_seq FROM devices WHERE account = ?1 AND device_id = ?2",
                params![d.account.as_str(), d.device.0],
                |r| get_u64(r, 0),
            )
            .unwrap()
    }

    /// The envelopes queued for `r`, in server-id order, as the `seq` each carries.
    fn mailbox(w: &Writer, r: &AccountId) -> Vec<u64> {
        let mut st = w
            .conn
            .prepare("SELECT envelope FROM envelopes WHERE account = ?1 ORDER BY server_id")
            .unwrap();
        let rows = st
            .query_map([r.as_str()], |row| row.get::<_, Vec<u8>>(0))
            .unwrap();
        rows.map(|e| u64::from_be_bytes(e.unwrap().try_into().unwrap()))
            .collect()
    }

    /// One group: each sending device's largest accepted `sender_seq` is recorded, a
    /// refused send records nothing, a stored value is never lowered, and the envelopes
    /// are stored in the group's order.
    #[tokio::test]
    async fn a_group_records_each_senders_largest_accepted_seq() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut ids, r, a, b) = setup(dir.path()).await;
        w.conn
            .execute_batch(&format!(
                "UPDATE devices SET max_sender_seq = 8 WHERE account = '{}';
                 UPDATE devices SET max_sender_seq = 50 WHERE account = '{}';",
                a.account.as_str(),
                b.account.as_str()
            ))
            .unwrap();
        let jobs = [
            send(&a, &r, 1, 5, 100),
            send(&a, &r, 1, 9, 100),
            send(&a, &r, 7, 1000, 100), // no device 7: refused
            send(&b, &r, 1, 3, 100),
            send(&a, &r, 1, 7, 100),
        ];
        let (jobs, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        commit(&mut w, &mut ids, jobs);
        let outcomes: Vec<_> = answers.into_iter().map(answer).collect();
        assert!(matches!(outcomes[2], Ok(EnqueueOutcome::MismatchedDevices)));
        let mut server_ids = Vec::new();
        for (i, o) in outcomes.iter().enumerate().filter(|(i, _)| *i != 2) {
            let Ok(EnqueueOutcome::Queued(q)) = o else {
                panic!("{i}: {o:?}")
            };
            server_ids.push(q[0].1);
        }
        assert!(server_ids.windows(2).all(|p| p[0] < p[1]), "{server_ids:?}");
        assert_eq!(mailbox(&w, &r), [5, 9, 3, 7]);
        assert_eq!(seq(&w, &a), 9);
        assert_eq!(seq(&w, &b), 50, "never lowered");
    }

    /// The mailbox bound counts the envelopes queued before a send in its own group.
    #[tokio::test]
    async fn the_mailbox_bound_counts_the_groups_earlier_sends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut ids, r, a, _) = setup(dir.path()).await;
        let (job, first) = send(&a, &r, 1, 1, 3);
        commit(&mut w, &mut ids, vec![job]);
        assert!(queued(first));
        let (jobs, answers): (Vec<_>, Vec<_>) = (2..=5).map(|i| send(&a, &r, 1, i, 3)).unzip();
        commit(&mut w, &mut ids, jobs);
        let outcomes: Vec<_> = answers.into_iter().map(answer).collect();
        assert!(
            outcomes[..2]
                .iter()
                .all(|o| matches!(o, Ok(EnqueueOutcome::Queued(_))))
        );
        for o in &outcomes[2..] {
            assert_eq!(o, &Ok(EnqueueOutcome::QueueFull { device_id: 1 }));
        }
        assert_eq!(mailbox(&w, &r), [1, 2, 3]);
        assert_eq!(seq(&w, &a), 3, "the refused sends' values are not recorded");
    }

    /// A job that does not commute with the deferred writes sees them made before it runs.
    #[tokio::test]
    async fn a_job_that_reads_the_mailbox_sees_the_sends_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut ids, r, a, _) = setup(dir.path()).await;
        let account = r.as_str().to_owned();
        let (count, counted) = typed_job(
            move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM envelopes WHERE account = ?1",
                    [account],
                    |row| get_u64(row, 0),
                )
                .map_err(backend)
            },
            Flush::Durable,
            true,
        );
        let (s1, a1) = send(&a, &r, 1, 1, 100);
        let (s2, a2) = send(&a, &r, 1, 2, 100);
        commit(&mut w, &mut ids, vec![s1, count, s2]);
        assert_eq!(answer(counted), Ok(1));
        assert!(queued(a1) && queued(a2));
        assert_eq!(mailbox(&w, &r), [1, 2]);
    }

    /// When the deferred writes fail, the whole group fails and nothing of it is stored,
    /// not even the jobs that succeeded before them.
    #[tokio::test]
    async fn failed_deferred_writes_fail_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut ids, r, a, _) = setup(dir.path()).await;
        // The next server id is taken already: the group's insert fails.
        let next: i64 = w
            .conn
            .query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'envelopes'), 0) + 1",
                [],
                |row| row.get(0),
            )
            .unwrap();
        w.conn
            .execute(
                "INSERT INTO envelopes VALUES (?1, 'x', 1, 'y', 1, x'00', 1, x'00')",
                [next],
            )
            .unwrap();
        let (code, coded) = typed_job(
            |c| {
                c.execute("INSERT INTO codes VALUES ('z', x'00', 1, 0)", [])
                    .map_err(backend)
            },
            Flush::Durable,
            true,
        );
        let (s1, a1) = send(&a, &r, 1, 4, 100);
        commit(&mut w, &mut ids, vec![code, s1]);
        assert!(answer(coded).is_err());
        assert!(answer(a1).is_err());
        assert_eq!(mailbox(&w, &r), Vec::<u64>::new());
        assert_eq!(seq(&w, &a), 0);
        let codes: i64 = w
            .conn
            .query_row("SELECT COUNT(*) FROM codes", [], |row| row.get(0))
            .unwrap();
        assert_eq!(codes, 0);
    }

    /// An `Ack`'s deletes in chunks: only the device's own envelopes, each counted once.
    #[tokio::test]
    async fn acks_delete_in_chunks_and_count_each_envelope_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut ids, r, a, b) = setup(dir.path()).await;
        let (jobs, answers): (Vec<_>, Vec<_>) = (1..=23).map(|i| send(&a, &r, 1, i, 100)).unzip();
        commit(&mut w, &mut ids, jobs);
        let mut server_ids = Vec::new();
        for o in answers.into_iter().map(answer) {
            let Ok(EnqueueOutcome::Queued(q)) = o else {
                panic!("{o:?}")
            };
            server_ids.push(q[0].1);
        }
        // One queued for another account, acked by the recipient's device: not removed.
        let (other, other_answer) = send(&a, &b.account, 1, 24, 100);
        commit(&mut w, &mut ids, vec![other]);
        let Ok(EnqueueOutcome::Queued(q)) = answer(other_answer) else {
            panic!()
        };
        let me = DeviceAddress::new(r.clone(), DeviceId(1));
        // 21 of the 23 (one of them twice), the other account's, and one never issued.
        let mut acked: Vec<u64> = server_ids[..21].to_vec();
        acked.extend([server_ids[3], q[0].1, u64::MAX >> 2]);
        assert_eq!(acked.len(), 24);
        let removed = delete_acked(&w.conn, &me, &acked).unwrap();
        assert_eq!(removed, 21);
        assert_eq!(mailbox(&w, &r), [22, 23]);
        assert_eq!(mailbox(&w, &b.account), [24]);
        assert_eq!(delete_acked(&w.conn, &me, &[]).unwrap(), 0);
    }

    #[test]
    fn batches_are_cut_into_the_chunk_sizes() {
        for n in 0..100 {
            let cut: Vec<usize> = chunks(n).collect();
            assert_eq!(cut.iter().sum::<usize>(), n);
            assert!(cut.iter().all(|c| CHUNKS.contains(c)), "{n}: {cut:?}");
            assert!(cut.windows(2).all(|w| w[0] >= w[1]), "{n}: {cut:?}");
        }
        assert_eq!(chunks(23).collect::<Vec<_>>(), [16, 4, 1, 1, 1]);
    }

    #[test]
    fn statements_have_one_parameter_group_per_row() {
        for k in CHUNKS {
            assert_eq!(insert_sql(k).unwrap().matches('?').count(), 8 * k);
            assert_eq!(delete_sql(k).unwrap().matches('?').count(), 2 + k);
        }
        for k in [0, 2, 3, 5, 17] {
            assert!(insert_sql(k).is_err() && delete_sql(k).is_err());
        }
    }
}
