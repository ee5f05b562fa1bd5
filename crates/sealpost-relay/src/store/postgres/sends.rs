//! Group commit of sends (spec/relay-store.md section 3.4, "Queue").
//!
//! A send locks its recipient's `devices` rows, so sends to one account commit one after the
//! other; committed one transaction each, every one of them would wait for its own WAL flush.
//! Instead each node routes every [`PgStore::enqueue`] to one of [`SEND_LANES`] lanes (by a
//! keyed hash of the recipient account), and each lane is a task that commits what it has
//! collected in **one** transaction: the first send it receives, plus every send that
//! arrived while the previous transaction was in flight, at most [`SEND_BATCH_MAX`] sends and
//! [`SEND_BATCH_MAX_BYTES`] envelope bytes. There is no timer: an idle lane commits a lone
//! send at once, a busy one commits whatever queued up meanwhile. Sends to one recipient
//! always take the same lane, so within a node they never wait on each other's row locks,
//! and they are committed in the order they reached the store.
//!
//! Each send of a batch is decided as if run alone, one after the other in arrival order
//! (a refused send changes nothing; the mailbox bounds count the envelopes queued by the
//! sends before it in the batch), and the batch's transaction commits them all at once. A
//! call returns only once that commit has returned (`synchronous_commit = on`), so
//! `Accepted` still means durable. A failure of the transaction fails every send of the
//! batch (none of them is stored).
//!
//! The transaction takes two round trips (statements are pipelined, which the server runs
//! in order): `BEGIN`, the ordered row locks, the mailbox depths and the server ids and
//! message refs drawn after the locks; then the inserts, the senders' `max_sender_seq` and
//! `COMMIT`.

use super::{MAX_TX_ATTEMPTS, TxError, get_u32, get_u64, pooled, to_i64};
use crate::StoreError;
use crate::store::{EnqueueOutcome, MAX_SENDER_SEQ, NewMessage};
use deadpool_postgres::{Object, Pool};
use futures_util::future::{join, join5};
use sealpost_wire::relay::{MESSAGE_ID_LEN, OutgoingEnvelope};
use sealpost_wire::{AccountId, DeviceAddress};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use tokio::sync::{mpsc, oneshot};

/// Lanes (group-commit tasks) of a node. Sends to different recipients in different lanes
/// commit concurrently; each lane has at most one transaction in flight.
pub const SEND_LANES: usize = 4;

/// Most sends one group commit takes.
pub const SEND_BATCH_MAX: usize = 256;

/// Most envelope bytes one group commit takes (a larger single send goes alone).
pub const SEND_BATCH_MAX_BYTES: usize = 4 << 20;

/// Sends waiting for a lane beyond which [`PgStore::enqueue`] waits for room.
const LANE_QUEUE: usize = 1024;

/// A send handed to a lane: the message, owned, and where its outcome goes.
struct Job {
    sender: DeviceAddress,
    recipient: AccountId,
    exclude_device: Option<u32>,
    addressing: crate::store::Addressing,
    message_id: [u8; MESSAGE_ID_LEN],
    sender_seq: u64,
    timestamp: u64,
    envelopes: Vec<OutgoingEnvelope>,
    max_queued: u32,
    reply: oneshot::Sender<Result<EnqueueOutcome, StoreError>>,
}

impl Job {
    fn bytes(&self) -> usize {
        self.envelopes.iter().map(|e| e.envelope.len()).sum()
    }
}

/// The sending ends of a node's lanes. The lane tasks end once every clone of the store
/// (which hold these) is dropped.
pub(super) struct Lanes {
    lanes: Vec<mpsc::Sender<Job>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Lanes {
    /// Spawns the lane tasks (on the current tokio runtime) over `pool`.
    pub(super) fn spawn(pool: &Pool) -> Self {
        let lanes = (0..SEND_LANES)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                tokio::spawn(lane(pool.clone(), rx));
                tx
            })
            .collect();
        Self {
            lanes,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// [`crate::Store::enqueue`] through the recipient's lane.
    pub(super) async fn enqueue(&self, m: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            sender: m.sender.clone(),
            recipient: m.recipient.clone(),
            exclude_device: m.exclude_device,
            addressing: m.addressing,
            message_id: *m.message_id,
            sender_seq: m.sender_seq,
            timestamp: m.timestamp,
            envelopes: m.envelopes.to_vec(),
            max_queued: m.max_queued,
            reply,
        };
        let index = usize::try_from(self.hasher.hash_one(m.recipient.as_str()) % SEND_LANES as u64)
            .unwrap_or(0);
        let lane = self.lanes.get(index).ok_or(StoreError::Closed)?;
        lane.send(job).await.map_err(|_| StoreError::Closed)?;
        outcome.await.unwrap_or(Err(StoreError::Closed))
    }
}

/// One lane: takes the next send, every send queued behind it (within the bounds), commits
/// them in one transaction and answers each.
async fn lane(pool: Pool, mut rx: mpsc::Receiver<Job>) {
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < SEND_BATCH_MAX {
            let Ok(job) = rx.try_recv() else { break };
            let b = job.bytes();
            if bytes.saturating_add(b) > SEND_BATCH_MAX_BYTES {
                next = Some(job);
                break;
            }
            bytes += b;
            batch.push(job);
        }
        // A caller that stopped waiting before its send was committed gets no answer: its
        // send is not stored (the client sends it again).
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        match commit(&pool, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Commits `batch`, running it again when the server rolled it back as retryable.
async fn commit(pool: &Pool, batch: &[Job]) -> Result<Vec<EnqueueOutcome>, StoreError> {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let client = pooled(pool).await?;
        let outcome = run(&client, batch).await;
        let e = match outcome {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        // The transaction may still be open (a statement failed): end it, or do not let the
        // connection back into the pool.
        if client.batch_execute("ROLLBACK").await.is_err() {
            let _ = Object::take(client);
        }
        if !(e.retryable() && attempt < MAX_TX_ATTEMPTS) {
            return Err(e.into_store());
        }
        tracing::debug!(
            attempt,
            "PostgreSQL send batch rolled back by the server; retrying"
        );
    }
}

/// Locks the devices rows: every device of the accounts whose `device_id` is `-1`, the one
/// device otherwise; in key order, so that transactions of any node cannot deadlock.
const LOCK_SQL: &str = "SELECT d.account, d.device_id
     FROM unnest($1::TEXT[], $2::BIGINT[]) AS k (account, device_id)
     JOIN devices d ON d.account = k.account AND (k.device_id < 0 OR d.device_id = k.device_id)
     ORDER BY d.account, d.device_id FOR NO KEY UPDATE OF d";

const DEPTH_SQL: &str = "SELECT account, device_id, COUNT(*) FROM deliveries
     WHERE account = ANY($1::TEXT[]) GROUP BY account, device_id";

const SERVER_IDS_SQL: &str = "SELECT nextval('server_ids') FROM generate_series(1, $1::BIGINT)";

const MESSAGE_REFS_SQL: &str = "SELECT nextval(pg_get_serial_sequence('messages', 'message_ref'))
     FROM generate_series(1, $1::BIGINT)";

const INSERT_MESSAGES_SQL: &str = "INSERT INTO messages
     (message_ref, sender_account, sender_device, message_id, accepted_at, pending)
     OVERRIDING SYSTEM VALUE
     SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BYTEA[], $5::BIGINT[],
                          $6::BIGINT[])";

const INSERT_DELIVERIES_SQL: &str = "INSERT INTO deliveries
     (server_id, account, device_id, message_ref, envelope)
     SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BYTEA[])";

const SENDER_SEQ_SQL: &str = "UPDATE devices d SET max_sender_seq = s.seq
     FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS s (account, device_id, seq)
     WHERE d.account = s.account AND d.device_id = s.device_id AND d.max_sender_seq < s.seq";

/// The rows a batch writes, column by column.
#[derive(Default)]
struct Writes<'a> {
    msg_refs: Vec<i64>,
    msg_senders: Vec<&'a str>,
    msg_sender_devices: Vec<i64>,
    msg_ids: Vec<&'a [u8]>,
    msg_times: Vec<i64>,
    msg_pending: Vec<i64>,
    server_ids: Vec<i64>,
    accounts: Vec<&'a str>,
    device_ids: Vec<i64>,
    refs: Vec<i64>,
    envelopes: Vec<&'a [u8]>,
    /// Raised `max_sender_seq` per sending device.
    sender_seqs: BTreeMap<(&'a str, i64), i64>,
}

/// One run of the batch's transaction on `c`. On an error the transaction may be left open.
async fn run(c: &Object, batch: &[Job]) -> Result<Vec<EnqueueOutcome>, TxError> {
    let lock_st = c.prepare_cached(LOCK_SQL).await?;
    let depth_st = c.prepare_cached(DEPTH_SQL).await?;
    let ids_st = c.prepare_cached(SERVER_IDS_SQL).await?;
    let refs_st = c.prepare_cached(MESSAGE_REFS_SQL).await?;
    // Prepared before the pipelines: a statement still being prepared would reach the
    // server after the ones behind it (a write after the COMMIT, outside the transaction).
    let messages_st = c.prepare_cached(INSERT_MESSAGES_SQL).await?;
    let deliveries_st = c.prepare_cached(INSERT_DELIVERIES_SQL).await?;
    let senders_st = c.prepare_cached(SENDER_SEQ_SQL).await?;

    // What to lock: the recipients' devices, and each sender whose sequence number may rise
    // (unless its whole account is locked anyway).
    let recipients: BTreeSet<&str> = batch.iter().map(|j| j.recipient.as_str()).collect();
    let mut keys: BTreeSet<(&str, i64)> = recipients.iter().map(|a| (*a, -1)).collect();
    for j in batch.iter().filter(|j| j.sender_seq > 0) {
        let account = j.sender.account.as_str();
        if !recipients.contains(account) {
            keys.insert((account, i64::from(j.sender.device.0)));
        }
    }
    let (lock_accounts, lock_devices): (Vec<&str>, Vec<i64>) = keys.into_iter().unzip();
    let recipient_list: Vec<&str> = recipients.iter().copied().collect();
    let n_envelopes: i64 = batch
        .iter()
        .map(|j| i64::try_from(j.envelopes.len()).unwrap_or(i64::MAX))
        .fold(0, i64::saturating_add);
    let n_messages = i64::try_from(batch.len()).unwrap_or(i64::MAX);

    // Pipelined, run by the server in this order: the ids are drawn after the locks are
    // held, and the depths are counted after them (a new snapshot at READ COMMITTED).
    let (begun, locked, depths, ids, refs) = join5(
        c.batch_execute("BEGIN"),
        c.query(&lock_st, &[&lock_accounts, &lock_devices]),
        c.query(&depth_st, &[&recipient_list]),
        c.query(&ids_st, &[&n_envelopes]),
        c.query(&refs_st, &[&n_messages]),
    )
    .await;
    begun?;
    let (locked, depths, ids, refs) = (locked?, depths?, ids?, refs?);

    let mut devices: HashMap<&str, BTreeSet<u32>> = HashMap::new();
    for row in &locked {
        let account: &str = row.try_get(0)?;
        if let Some(account) = recipients.get(account) {
            devices
                .entry(account)
                .or_default()
                .insert(get_u32(row, 1, "device id")?);
        }
    }
    let mut depth: HashMap<(&str, u32), u64> = HashMap::new();
    for row in &depths {
        depth.insert(
            (row.try_get::<_, &str>(0)?, get_u32(row, 1, "device id")?),
            get_u64(row, 2, "count")?,
        );
    }
    let mut server_ids: Vec<i64> = ids.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
    server_ids.sort_unstable();
    let mut server_ids = server_ids.into_iter();
    let mut message_refs = refs
        .iter()
        .map(|r| r.try_get::<_, i64>(0))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();

    let mut w = Writes::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for j in batch {
        if let Some(refused) = decide(j, devices.get(j.recipient.as_str()), &depth) {
            outcomes.push(refused);
            continue;
        }
        let recipient = j.recipient.as_str();
        if j.sender_seq > 0 {
            let seq = w
                .sender_seqs
                .entry((j.sender.account.as_str(), i64::from(j.sender.device.0)))
                .or_insert(0);
            *seq = (*seq).max(to_i64(j.sender_seq.min(MAX_SENDER_SEQ)));
        }
        let mut queued = Vec::with_capacity(j.envelopes.len());
        if !j.envelopes.is_empty() {
            let message_ref = message_refs
                .next()
                .ok_or(StoreError::Corrupt("message ref"))?;
            w.msg_refs.push(message_ref);
            w.msg_senders.push(j.sender.account.as_str());
            w.msg_sender_devices.push(i64::from(j.sender.device.0));
            w.msg_ids.push(&j.message_id[..]);
            w.msg_times.push(to_i64(j.timestamp));
            w.msg_pending
                .push(i64::try_from(j.envelopes.len()).unwrap_or(i64::MAX));
            for e in &j.envelopes {
                let id = server_ids.next().ok_or(StoreError::Corrupt("server id"))?;
                *depth.entry((recipient, e.device_id)).or_insert(0) += 1;
                w.server_ids.push(id);
                w.accounts.push(recipient);
                w.device_ids.push(i64::from(e.device_id));
                w.refs.push(message_ref);
                w.envelopes.push(&e.envelope[..]);
                let id = u64::try_from(id).map_err(|_| StoreError::Corrupt("server id"))?;
                queued.push((e.device_id, id));
            }
        }
        outcomes.push(EnqueueOutcome::Queued(queued));
    }

    let wrote = !w.server_ids.is_empty() || !w.sender_seqs.is_empty();
    if !wrote {
        // Nothing to commit (every send refused or addressed to no device): ending the
        // transaction without a commit record saves the flush.
        c.batch_execute("ROLLBACK").await?;
    } else {
        let (seq_accounts, (seq_devices, seqs)): (Vec<&str>, (Vec<i64>, Vec<i64>)) = w
            .sender_seqs
            .iter()
            .map(|((a, d), s)| (*a, (*d, *s)))
            .unzip();
        let messages = async {
            if w.msg_refs.is_empty() {
                return Ok(0);
            }
            c.execute(
                &messages_st,
                &[
                    &w.msg_refs,
                    &w.msg_senders,
                    &w.msg_sender_devices,
                    &w.msg_ids,
                    &w.msg_times,
                    &w.msg_pending,
                ],
            )
            .await
        };
        let deliveries = async {
            if w.server_ids.is_empty() {
                return Ok(0);
            }
            c.execute(
                &deliveries_st,
                &[
                    &w.server_ids,
                    &w.accounts,
                    &w.device_ids,
                    &w.refs,
                    &w.envelopes,
                ],
            )
            .await
        };
        let senders = async {
            if seqs.is_empty() {
                return Ok(0);
            }
            c.execute(&senders_st, &[&seq_accounts, &seq_devices, &seqs])
                .await
        };
        // A statement that fails aborts the transaction, and the server answers the COMMIT
        // after it with a rollback, not an error: every result is checked.
        let started = std::time::Instant::now();
        let ((messages, deliveries), (senders, committed)) = join(
            join(messages, deliveries),
            join(senders, c.batch_execute("COMMIT")),
        )
        .await;
        crate::metrics::store_commit("postgres", started.elapsed());
        messages?;
        deliveries?;
        senders?;
        committed?;
    }
    Ok(outcomes)
}

/// The refusal of `j` (`None`: it is queued), given the recipient's locked devices and the
/// mailbox depths with the sends before it in the batch.
fn decide(
    j: &Job,
    devices: Option<&BTreeSet<u32>>,
    depth: &HashMap<(&str, u32), u64>,
) -> Option<EnqueueOutcome> {
    let Some(devices) = devices.filter(|d| !d.is_empty()) else {
        return Some(EnqueueOutcome::UnknownAccount);
    };
    if !j.addressing.accepts(
        devices.iter().copied(),
        j.exclude_device,
        j.envelopes.iter().map(|e| e.device_id),
    ) {
        return Some(EnqueueOutcome::MismatchedDevices);
    }
    for e in &j.envelopes {
        let queued = depth
            .get(&(j.recipient.as_str(), e.device_id))
            .copied()
            .unwrap_or(0);
        if queued >= u64::from(j.max_queued) {
            return Some(EnqueueOutcome::QueueFull {
                device_id: e.device_id,
            });
        }
    }
    None
}
