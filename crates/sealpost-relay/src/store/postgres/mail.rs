//! Mailboxes: sends, reads, acknowledgements, the sweep.
//!
//! A send is one `messages` row (sender, message id, acceptance time: what its envelopes
//! share) and one `deliveries` row per recipient device (server id and envelope bytes: each
//! device's envelope is encrypted under its own session, so the bytes differ per device).
//! `messages.pending` counts the message's deliveries; whatever deletes deliveries (ack,
//! re-registration) calls [`release_messages`] in the same transaction, which deletes the
//! messages left without any.

use super::{
    Commit, PgStore, TxError, execute, get_array, get_u32, get_u64, in_tx, query, query_one, to_i64,
};
use crate::StoreError;
use crate::store::{StoredEnvelope, SweepCounts};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId};
use std::collections::BTreeMap;

/// Takes one delivery per entry of `refs` (message refs, repeated once per deleted delivery)
/// off its message's `pending`, and deletes the messages left without deliveries. Locks the
/// messages in key order, so that concurrent releases cannot deadlock.
pub(super) async fn release_messages(
    tx: &deadpool_postgres::Transaction<'_>,
    refs: Vec<i64>,
) -> Result<(), TxError> {
    if refs.is_empty() {
        return Ok(());
    }
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for r in refs {
        *counts.entry(r).or_default() += 1;
    }
    let (ids, taken): (Vec<i64>, Vec<i64>) = counts.into_iter().unzip();
    query(
        tx,
        "SELECT 1 FROM messages WHERE message_ref = ANY($1) ORDER BY message_ref FOR UPDATE",
        &[&ids],
    )
    .await?;
    execute(
        tx,
        "UPDATE messages m SET pending = m.pending - c.taken
         FROM unnest($1::BIGINT[], $2::BIGINT[]) AS c (message_ref, taken)
         WHERE m.message_ref = c.message_ref",
        &[&ids, &taken],
    )
    .await?;
    execute(
        tx,
        "DELETE FROM messages WHERE message_ref = ANY($1) AND pending <= 0",
        &[&ids],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// [`crate::Store::mailbox`]: one index range scan of `deliveries_by_device`.
    pub async fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let c = self.client().await?;
        async {
            let rows = query(
                &c,
                "SELECT d.server_id, m.sender_account, m.sender_device, m.message_id,
                        m.accepted_at, d.envelope
                 FROM deliveries d JOIN messages m ON m.message_ref = d.message_ref
                 WHERE d.account = $1 AND d.device_id = $2 AND d.server_id > $3
                 ORDER BY d.server_id LIMIT $4",
                &[
                    &device.account.as_str(),
                    &i64::from(device.device.0),
                    &to_i64(after),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    let account = AccountId::new(r.try_get::<_, String>(1)?)
                        .map_err(|_| StoreError::Corrupt("sender account"))?;
                    Ok(StoredEnvelope {
                        server_id: get_u64(r, 0, "server id")?,
                        sender: DeviceAddress::new(
                            account,
                            DeviceId(get_u32(r, 2, "sender device")?),
                        ),
                        message_id: get_array(r, 3, "message id")?,
                        timestamp: get_u64(r, 4, "acceptance time")?,
                        envelope: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, TxError>>()
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::ack`]. Committed with `synchronous_commit = off`: answered once
    /// committed, on disk with the server's next WAL flush (spec/relay.md section 3.8).
    pub async fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError> {
        // Ids above i64::MAX were never handed out.
        let ids: Vec<i64> = server_ids
            .iter()
            .filter_map(|id| i64::try_from(*id).ok())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        in_tx!(self, Commit::Lazy, |tx| {
            let refs: Vec<i64> = query(
                &tx,
                "DELETE FROM deliveries
                 WHERE account = $1 AND device_id = $2 AND server_id = ANY($3)
                 RETURNING message_ref",
                &[&device.account.as_str(), &i64::from(device.device.0), &ids],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
            let removed = u32::try_from(refs.len()).unwrap_or(u32::MAX);
            release_messages(&tx, refs).await?;
            Ok(removed)
        })
    }

    /// [`crate::Store::sender_seq`].
    pub async fn sender_seq(&self, device: &DeviceAddress) -> Result<u64, StoreError> {
        let c = self.client().await?;
        async {
            match super::query_opt(
                &c,
                "SELECT max_sender_seq FROM devices WHERE account = $1 AND device_id = $2",
                &[&device.account.as_str(), &i64::from(device.device.0)],
            )
            .await?
            {
                Some(row) => get_u64(&row, 0, "sender seq"),
                None => Ok(0),
            }
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::queue_depth`].
    pub async fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError> {
        let c = self.client().await?;
        async {
            let n = get_u64(
                &query_one(
                    &c,
                    "SELECT COUNT(*) FROM deliveries WHERE account = $1 AND device_id = $2",
                    &[&device.account.as_str(), &i64::from(device.device.0)],
                )
                .await?,
                0,
                "count",
            )?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::total_queued`].
    pub async fn total_queued(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        async {
            get_u64(
                &query_one(&c, "SELECT COUNT(*) FROM deliveries", &[]).await?,
                0,
                "count",
            )
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::sweep`].
    pub async fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError> {
        let now_i = to_i64(now);
        // timestamp + ttl <= now, without overflow: nothing is that old while now < ttl.
        let cutoff = now.checked_sub(mailbox_ttl).map(to_i64);
        in_tx!(self, Commit::Durable, |tx| {
            execute(&tx, "DELETE FROM quotas WHERE tat <= $1", &[&now_i]).await?;
            let codes = execute(&tx, "DELETE FROM codes WHERE expires_at <= $1", &[&now_i]).await?;
            execute(
                &tx,
                "DELETE FROM provisioning WHERE expires_at <= $1",
                &[&now_i],
            )
            .await?;
            let mut envelopes = 0;
            if let Some(cutoff) = cutoff {
                envelopes = execute(
                    &tx,
                    "DELETE FROM deliveries WHERE message_ref IN
                     (SELECT message_ref FROM messages WHERE accepted_at <= $1)",
                    &[&cutoff],
                )
                .await?;
                // A message accepted with an old time after the statement above began keeps
                // its deliveries (and so its row) until the next sweep.
                execute(
                    &tx,
                    "DELETE FROM messages m WHERE accepted_at <= $1 AND NOT EXISTS
                     (SELECT 1 FROM deliveries d WHERE d.message_ref = m.message_ref)",
                    &[&cutoff],
                )
                .await?;
            }
            Ok(SweepCounts { codes, envelopes })
        })
    }
}
