//! Persisted quotas (spec/relay.md section 7.1).

use super::{Commit, PgStore, TxError, execute, in_tx, query_one, to_i64};
use crate::StoreError;
use crate::ratelimit::gcra;
use crate::store::{QuotaCheck, QuotaOutcome};
use std::collections::BTreeMap;

impl PgStore {
    /// [`crate::Store::take_quotas`]. Each quota row is created if missing (a `tat` of 0 is a
    /// full quota, as no row is) and locked, in key order so that concurrent calls cannot
    /// deadlock; then all are checked in the caller's order and charged only if all have room.
    pub async fn take_quotas(
        &self,
        checks: &[QuotaCheck],
        now: u64,
    ) -> Result<QuotaOutcome, StoreError> {
        let keys: BTreeMap<(i16, &str), ()> = checks
            .iter()
            .map(|q| ((i16::from(q.kind.code()), q.subject.as_str()), ()))
            .collect();
        in_tx!(self, Commit::Durable, |tx| {
            let mut tats: BTreeMap<(i16, &str), Option<u64>> = BTreeMap::new();
            for &(kind, subject) in keys.keys() {
                let tat: i64 = query_one(
                    &tx,
                    "INSERT INTO quotas (kind, subject, tat) VALUES ($1, $2, 0)
                     ON CONFLICT (kind, subject) DO UPDATE SET tat = quotas.tat
                     RETURNING tat",
                    &[&kind, &subject],
                )
                .await?
                .try_get(0)?;
                let tat = u64::try_from(tat).map_err(|_| StoreError::Corrupt("quota tat"))?;
                tats.insert((kind, subject), (tat > 0).then_some(tat));
            }
            let mut next = Vec::with_capacity(checks.len());
            for (index, q) in checks.iter().enumerate() {
                let key = (i16::from(q.kind.code()), q.subject.as_str());
                let tat = tats.get(&key).copied().flatten();
                match gcra(tat, q.rate, now) {
                    Ok(t) => next.push((key, t)),
                    Err(retry_after_ms) => {
                        return Ok(QuotaOutcome::Exceeded {
                            index,
                            retry_after_ms,
                        });
                    }
                }
            }
            for ((kind, subject), tat) in next {
                execute(
                    &tx,
                    "UPDATE quotas SET tat = $3 WHERE kind = $1 AND subject = $2",
                    &[&kind, &subject, &to_i64(tat)],
                )
                .await?;
            }
            Ok::<_, TxError>(QuotaOutcome::Taken)
        })
    }
}
