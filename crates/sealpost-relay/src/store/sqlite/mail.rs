//! Mailboxes: the enqueue and acknowledgement writer jobs, mailbox reads, `sender_seq`.

use super::batch::{self, Deferred, Pending};
use super::*;
use crate::store::{Addressing, MailPublisher, Written, mail_feed};

pub(super) fn device_queue_depth(conn: &Connection, d: &DeviceAddress) -> Result<u32, StoreError> {
    count_where(
        conn,
        "SELECT COUNT(*) FROM envelopes WHERE account = ?1 AND device_id = ?2",
        d,
    )
}

/// An account's devices with the number of envelopes queued for each, in device order: one
/// statement for what every `Send` checks.
pub(super) fn device_queues(
    conn: &Connection,
    account: &str,
) -> Result<Vec<(u32, u32)>, StoreError> {
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

/// Whether `envelopes` address every one of `devices` (sorted by device id, as
/// [`device_queues`] returns them) except `exclude`, each exactly once, and nothing else.
/// Without allocating for accounts of up to 128 devices (every `Send` checks this).
fn addresses_exactly(
    devices: &[(u32, u32)],
    exclude: Option<u32>,
    envelopes: &[OutgoingEnvelope],
) -> bool {
    let excluded = exclude.is_some_and(|x| devices.iter().any(|(id, _)| *id == x));
    if envelopes.len() != devices.len() - usize::from(excluded) {
        return false;
    }
    if devices.len() > 128 {
        let expected: BTreeSet<u32> = devices
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| Some(*id) != exclude)
            .collect();
        let given: BTreeSet<u32> = envelopes.iter().map(|e| e.device_id).collect();
        return given.len() == envelopes.len() && given == expected;
    }
    // As many envelopes as expected devices, each for a distinct one of them: the same set.
    let mut seen = 0u128;
    for e in envelopes {
        if Some(e.device_id) == exclude {
            return false;
        }
        let Ok(i) = devices.binary_search_by_key(&e.device_id, |(id, _)| *id) else {
            return false;
        };
        let bit = 1u128 << i;
        if seen & bit != 0 {
            return false;
        }
        seen |= bit;
    }
    true
}

/// The writer job of [`Store::enqueue`]: the checks, on owned copies of the message; its
/// envelopes and `sender_seq` are written by the writer together with those of the group's
/// other sends (`batch.rs`), and handed to the mail feed before the commit.
pub(super) struct EnqueueJob {
    sender: DeviceAddress,
    recipient: AccountId,
    exclude: Option<u32>,
    addressing: Addressing,
    message_id: [u8; MESSAGE_ID_LEN],
    sender_seq: u64,
    timestamp: u64,
    /// Taken by `run`.
    envelopes: Vec<OutgoingEnvelope>,
    max_queued: u32,
    result: Option<Result<EnqueueOutcome, StoreError>>,
    /// Whether `run` accepted the message (its writes are deferred).
    accepted: bool,
    /// The envelopes accepted by `run`, to write and then for the mail feed.
    written: Vec<(u32, StoredEnvelope)>,
    reply: Option<Reply<EnqueueOutcome>>,
}

impl EnqueueJob {
    pub(super) fn new(m: &NewMessage<'_>, reply: Reply<EnqueueOutcome>) -> Self {
        Self {
            sender: m.sender.clone(),
            recipient: m.recipient.clone(),
            exclude: m.exclude_device,
            addressing: m.addressing,
            message_id: *m.message_id,
            sender_seq: m.sender_seq,
            timestamp: m.timestamp,
            envelopes: m.envelopes.to_vec(),
            max_queued: m.max_queued,
            result: None,
            accepted: false,
            written: Vec::new(),
            reply: Some(reply),
        }
    }

    /// The checks, and the server ids; writes nothing.
    fn check(
        &mut self,
        c: &Connection,
        ids: &mut ServerIds,
        pending: &Pending<'_>,
    ) -> Result<EnqueueOutcome, StoreError> {
        let devices = device_queues(c, self.recipient.as_str())?;
        if devices.is_empty() {
            return Ok(EnqueueOutcome::UnknownAccount);
        }
        let addressed = match self.addressing {
            Addressing::Exact => addresses_exactly(&devices, self.exclude, &self.envelopes),
            routed => routed.accepts(
                devices.iter().map(|(id, _)| *id),
                self.exclude,
                self.envelopes.iter().map(|e| e.device_id),
            ),
        };
        if !addressed {
            return Ok(EnqueueOutcome::MismatchedDevices);
        }
        for e in &self.envelopes {
            let depth = devices
                .iter()
                .find_map(|(id, depth)| (*id == e.device_id).then_some(*depth));
            // The envelopes the group queued before this send count too (looked up only
            // when they could matter).
            let depth = depth.map(|d| {
                let could_be = u32::try_from(pending.rows).unwrap_or(u32::MAX);
                if d.saturating_add(could_be) >= self.max_queued {
                    d.saturating_add(pending.queued_for(&self.recipient, e.device_id))
                } else {
                    d
                }
            });
            if depth.is_some_and(|d| d >= self.max_queued) {
                return Ok(EnqueueOutcome::QueueFull {
                    device_id: e.device_id,
                });
            }
        }
        let mut queued = Vec::with_capacity(self.envelopes.len());
        let mut written = Vec::with_capacity(self.envelopes.len());
        for e in std::mem::take(&mut self.envelopes) {
            let server_id = ids.take()?;
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
        self.written = written;
        self.accepted = true;
        Ok(EnqueueOutcome::Queued(queued))
    }
}

impl Job for EnqueueJob {
    fn run(&mut self, conn: &Connection, ids: &mut ServerIds, pending: &Pending<'_>) -> JobResult {
        let r = self.check(conn, ids, pending);
        if r.is_err() {
            self.accepted = false;
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

    /// It writes nothing itself.
    fn guarded(&self) -> bool {
        false
    }

    /// Its envelopes and the sender's high-water mark (spec/relay.md 3.7), written by the
    /// writer in the group's transaction.
    fn deferred(&self) -> Option<Deferred<'_>> {
        self.accepted.then_some(Deferred {
            recipient: &self.recipient,
            envelopes: &self.written,
            sender: &self.sender,
            sender_seq: self.sender_seq,
        })
    }

    /// Its checks read only the recipient's devices and counts, which `pending` completes.
    fn commutes(&self) -> bool {
        true
    }

    fn written(&mut self) -> Option<Written> {
        (!self.written.is_empty()).then(|| Written {
            recipient: self.recipient.clone(),
            envelopes: std::mem::take(&mut self.written),
        })
    }

    fn finish(self: Box<Self>, commit: JobResult) {
        answer(commit, self.result, self.reply);
    }
}

/// A device's mailbox after a server id, oldest first (read lazily, see `mailbox`).
pub(super) const MAILBOX_SQL: &str =
    "SELECT server_id, sender_account, sender_device, message_id, timestamp,
    envelope FROM envelopes WHERE account = ?1 AND device_id = ?2 AND server_id > ?3
    ORDER BY server_id";

/// The writer job of [`Store::ack`]: its deletes (`batch::delete_acked`) are its only
/// statements, so it needs no savepoint, and they commute with the deferred inserts of the
/// group's sends (those envelopes' server ids are not published before the commit, and a
/// delete of an id that is not there yet removes nothing, as it would after).
struct AckJob {
    device: DeviceAddress,
    server_ids: Vec<u64>,
    result: Option<Result<u32, StoreError>>,
    reply: Option<Reply<u32>>,
}

impl Job for AckJob {
    fn run(&mut self, conn: &Connection, _ids: &mut ServerIds, _: &Pending<'_>) -> JobResult {
        let r = batch::delete_acked(conn, &self.device, &self.server_ids);
        record(&mut self.result, r)
    }

    fn flush(&self) -> Flush {
        Flush::Lazy
    }

    fn guarded(&self) -> bool {
        false
    }

    fn commutes(&self) -> bool {
        true
    }

    fn finish(self: Box<Self>, commit: JobResult) {
        answer(commit, self.result, self.reply);
    }
}

pub(super) async fn enqueue(
    s: &SqliteStore,
    m: &NewMessage<'_>,
) -> Result<EnqueueOutcome, StoreError> {
    s.run_job(|reply| Box::new(EnqueueJob::new(m, reply))).await
}

/// The job of [`Store::subscribe`]: installs the publisher in the writer, which publishes
/// from its next group on; answered once the writes queued before it are committed.
struct SubscribeJob {
    publisher: Option<MailPublisher>,
    reply: Option<Reply<()>>,
}

impl Job for SubscribeJob {
    fn run(&mut self, _conn: &Connection, _ids: &mut ServerIds, _: &Pending<'_>) -> JobResult {
        Ok(())
    }

    fn flush(&self) -> Flush {
        Flush::Lazy
    }

    fn subscribe(&mut self) -> Option<MailPublisher> {
        self.publisher.take()
    }

    fn finish(self: Box<Self>, commit: JobResult) {
        answer(commit, Some(Ok(())), self.reply);
    }
}

pub(super) async fn subscribe(s: &SqliteStore) -> Option<MailFeed> {
    if s.subscribed.swap(true, Ordering::AcqRel) {
        return None;
    }
    let (publisher, feed) = mail_feed();
    let installed = s
        .run_job(|reply| {
            Box::new(SubscribeJob {
                publisher: Some(publisher),
                reply: Some(reply),
            })
        })
        .await;
    installed.ok().map(|()| feed)
}

pub(super) async fn settled(s: &SqliteStore) -> Result<(), StoreError> {
    // A lazy no-op job: answered once every group queued before it has committed.
    s.write_with(|_: &Connection| Ok(()), Flush::Lazy).await
}

pub(super) async fn mailbox(
    s: &SqliteStore,
    device: &DeviceAddress,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEnvelope>, StoreError> {
    let device = device.clone();
    s.read(move |c| {
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
    .await
}

pub(super) async fn ack(
    s: &SqliteStore,
    device: &DeviceAddress,
    server_ids: &[u64],
) -> Result<u32, StoreError> {
    s.run_job(|reply| {
        Box::new(AckJob {
            device: device.clone(),
            server_ids: server_ids.to_vec(),
            result: None,
            reply: Some(reply),
        })
    })
    .await
}

pub(super) async fn sender_seq(s: &SqliteStore, device: &DeviceAddress) -> Result<u64, StoreError> {
    let device = device.clone();
    s.read(move |c| {
        c.prepare_cached("SELECT max_sender_seq FROM devices WHERE account = ?1 AND device_id = ?2")
            .and_then(|mut st| {
                st.query_row(params![device.account.as_str(), device.device.0], |r| {
                    get_u64(r, 0)
                })
                .optional()
            })
            .map(Option::unwrap_or_default)
            .map_err(backend)
    })
    .await
}

pub(super) async fn queue_depth(
    s: &SqliteStore,
    device: &DeviceAddress,
) -> Result<u32, StoreError> {
    let device = device.clone();
    s.read(move |c| device_queue_depth(c, &device)).await
}

pub(super) async fn total_queued(s: &SqliteStore) -> Result<u64, StoreError> {
    s.read(|c| {
        c.query_row("SELECT COUNT(*) FROM envelopes", [], |r| get_u64(r, 0))
            .map_err(backend)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(ids: &[u32]) -> Vec<OutgoingEnvelope> {
        ids.iter()
            .map(|&device_id| OutgoingEnvelope {
                device_id,
                envelope: vec![0],
            })
            .collect()
    }

    #[test]
    fn a_send_must_address_exactly_the_expected_devices() {
        let devices = [(1, 0), (3, 0), (4, 0)];
        assert!(addresses_exactly(&devices, None, &to(&[4, 1, 3])));
        assert!(addresses_exactly(&devices, Some(3), &to(&[1, 4])));
        assert!(addresses_exactly(&devices, Some(9), &to(&[1, 3, 4])));
        assert!(!addresses_exactly(&devices, Some(3), &to(&[1, 3])));
        assert!(!addresses_exactly(&devices, Some(3), &to(&[1, 3, 4])));
        assert!(!addresses_exactly(&devices, None, &to(&[1, 3])));
        assert!(!addresses_exactly(&devices, None, &to(&[1, 3, 3])));
        assert!(!addresses_exactly(&devices, None, &to(&[1, 3, 5])));
        assert!(!addresses_exactly(&devices, None, &to(&[1, 3, 4, 4])));
        assert!(!addresses_exactly(&[(1, 0)], Some(1), &to(&[1])));
        assert!(addresses_exactly(&[(1, 0)], Some(1), &to(&[])));
        // Beyond the bit mask: the same answers.
        let many: Vec<(u32, u32)> = (0..200).map(|i| (i * 2, 0)).collect();
        let all: Vec<u32> = (0..200).map(|i| i * 2).collect();
        assert!(addresses_exactly(&many, None, &to(&all)));
        assert!(addresses_exactly(&many, Some(0), &to(&all[1..])));
        let mut dup = all.clone();
        dup[5] = dup[4];
        assert!(!addresses_exactly(&many, None, &to(&dup)));
    }
}
