//! Guardian vaults (spec/pin.md section 9).

use super::{
    Commit, PgStore, TxError, execute, get_array, get_u32, in_tx, query_one, query_opt, to_i64,
};
use crate::StoreError;
use crate::store::{
    ConfirmOutcome, PutVaultOutcome, SHARE_LEN, VAULT_ID_LEN, VERIFIER_LEN, VaultAttempt, VaultRow,
};
use sealpost_crypto::ct_eq;
use sealpost_wire::AccountId;
use zeroize::Zeroizing;

/// Key of the advisory lock that makes "count the vaults, then add one" atomic across nodes
/// (ASCII "SPVAULTS").
const VAULT_COUNT_LOCK: i64 = 0x5350_5641_554c_5453;

const VAULT_COLUMNS: &str = "vault_id, share, success_verifier, record, attempts_used";

fn vault_at(row: &tokio_postgres::Row) -> Result<VaultRow, TxError> {
    let share: &[u8] = row.try_get(1)?;
    let share: [u8; SHARE_LEN] = share
        .try_into()
        .map_err(|_| StoreError::Corrupt("vault share"))?;
    Ok(VaultRow {
        vault_id: get_array(row, 0, "vault id")?,
        share: Zeroizing::new(share),
        success_verifier: get_array(row, 2, "success verifier")?,
        record: row.try_get(3)?,
        attempts_used: get_u32(row, 4, "vault attempts")?,
    })
}

/// The account's vault, locked until the end of the transaction.
async fn locked_vault(
    tx: &deadpool_postgres::Transaction<'_>,
    account: &AccountId,
) -> Result<Option<VaultRow>, TxError> {
    let sql = format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE account = $1 FOR UPDATE");
    query_opt(tx, &sql, &[&account.as_str()])
        .await?
        .map(|r| vault_at(&r))
        .transpose()
}

impl PgStore {
    /// [`crate::Store::put_vault`].
    pub async fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        now: u64,
    ) -> Result<PutVaultOutcome, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            if locked_vault(&tx, account).await?.is_none() {
                execute(
                    &tx,
                    "SELECT pg_advisory_xact_lock($1)",
                    &[&VAULT_COUNT_LOCK],
                )
                .await?;
                let n: i64 = query_one(&tx, "SELECT COUNT(*) FROM vaults", &[])
                    .await?
                    .try_get(0)?;
                if u64::try_from(n).unwrap_or(0) >= max_vaults {
                    return Ok(PutVaultOutcome::Full);
                }
            }
            execute(
                &tx,
                "INSERT INTO vaults
                 (account, vault_id, share, success_verifier, record, attempts_used, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 0, $6)
                 ON CONFLICT (account) DO UPDATE SET vault_id = EXCLUDED.vault_id,
                    share = EXCLUDED.share, success_verifier = EXCLUDED.success_verifier,
                    record = EXCLUDED.record, attempts_used = 0, updated_at = EXCLUDED.updated_at",
                &[
                    &account.as_str(),
                    &&vault.vault_id[..],
                    &&vault.share[..],
                    &&vault.success_verifier[..],
                    &vault.record,
                    &to_i64(now),
                ],
            )
            .await?;
            Ok(PutVaultOutcome::Stored)
        })
    }

    /// [`crate::Store::vault`].
    pub async fn vault(&self, account: &AccountId) -> Result<Option<VaultRow>, StoreError> {
        let c = self.client().await?;
        async {
            let sql = format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE account = $1");
            query_opt(&c, &sql, &[&account.as_str()])
                .await?
                .map(|r| vault_at(&r))
                .transpose()
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::begin_vault_evaluation`]: the vault row is locked, so concurrent
    /// evaluations on any number of nodes are counted one after the other.
    pub async fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        now: u64,
    ) -> Result<VaultAttempt, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let Some(v) = locked_vault(&tx, account)
                .await?
                .filter(|v| v.vault_id == *vault_id)
            else {
                return Ok(VaultAttempt::NotFound);
            };
            let acct = account.as_str();
            if v.attempts_used >= max_attempts {
                execute(&tx, "DELETE FROM vaults WHERE account = $1", &[&acct]).await?;
                return Ok(VaultAttempt::NotFound);
            }
            let attempts_used = v.attempts_used + 1;
            let deleted = attempts_used >= max_attempts;
            if deleted {
                execute(&tx, "DELETE FROM vaults WHERE account = $1", &[&acct]).await?;
            } else {
                execute(
                    &tx,
                    "UPDATE vaults SET attempts_used = $2, updated_at = $3 WHERE account = $1",
                    &[&acct, &i64::from(attempts_used), &to_i64(now)],
                )
                .await?;
            }
            Ok(VaultAttempt::Counted {
                share: v.share.clone(),
                attempts_used,
                deleted,
            })
        })
    }

    /// [`crate::Store::confirm_vault`].
    pub async fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        now: u64,
    ) -> Result<ConfirmOutcome, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let Some(v) = locked_vault(&tx, account)
                .await?
                .filter(|v| v.vault_id == *vault_id)
            else {
                return Ok(ConfirmOutcome::NotFound);
            };
            if !ct_eq(verifier, &v.success_verifier) {
                return Ok(ConfirmOutcome::Mismatch);
            }
            execute(
                &tx,
                "UPDATE vaults SET attempts_used = 0, updated_at = $2 WHERE account = $1",
                &[&account.as_str(), &to_i64(now)],
            )
            .await?;
            Ok(ConfirmOutcome::Confirmed)
        })
    }

    /// [`crate::Store::delete_vault`].
    pub async fn delete_vault(&self, account: &AccountId) -> Result<bool, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let n = execute(
                &tx,
                "DELETE FROM vaults WHERE account = $1",
                &[&account.as_str()],
            )
            .await?;
            Ok(n > 0)
        })
    }
}
