//! Provisioning ids for linking devices (spec/relay.md 3.11).

use super::{Commit, PgStore, execute, in_tx, query_opt, to_i64};
use crate::StoreError;
use sealpost_wire::relay::PROVISIONING_ID_LEN;

impl PgStore {
    /// [`crate::Store::open_provisioning`].
    pub async fn open_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            execute(
                &tx,
                "INSERT INTO provisioning (id, expires_at, envelope) VALUES ($1, $2, NULL)",
                &[&&id[..], &to_i64(expires_at)],
            )
            .await?;
            Ok(())
        })
    }

    /// [`crate::Store::put_provisioning`]: one conditional update, so concurrent calls on
    /// any number of nodes leave exactly one envelope.
    pub async fn put_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let n = execute(
                &tx,
                "UPDATE provisioning SET envelope = $2
                 WHERE id = $1 AND expires_at > $3 AND envelope IS NULL",
                &[&&id[..], &envelope, &to_i64(now)],
            )
            .await?;
            Ok(n == 1)
        })
    }

    /// [`crate::Store::take_provisioning`]: one conditional delete.
    pub async fn take_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        now: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let row = query_opt(
                &tx,
                "DELETE FROM provisioning
                 WHERE id = $1 AND expires_at > $2 AND envelope IS NOT NULL
                 RETURNING envelope",
                &[&&id[..], &to_i64(now)],
            )
            .await?;
            Ok(match row {
                Some(r) => Some(r.try_get::<_, Vec<u8>>(0)?),
                None => None,
            })
        })
    }
}
