//! Persisted quotas (spec/relay.md section 7.1) and the expiry sweep.

use super::*;

pub(super) async fn take_quotas(
    s: &SqliteStore,
    checks: &[QuotaCheck],
    now: u64,
) -> Result<QuotaOutcome, StoreError> {
    let checks = checks.to_vec();
    s.write(move |c| {
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
    .await
}

pub(super) async fn sweep(
    s: &SqliteStore,
    now: u64,
    mailbox_ttl: u64,
) -> Result<SweepCounts, StoreError> {
    s.write(move |c| {
        c.execute("DELETE FROM quotas WHERE tat <= ?1", params![to_i64(now)])
            .map_err(backend)?;
        c.execute(
            "DELETE FROM provisioning WHERE expires_at <= ?1",
            params![to_i64(now)],
        )
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
    .await
}
