//! Guardian vaults (spec/pin.md section 9): store, fetch, counted evaluations, confirm, delete.
//! Every change to `vaults` is counted in the vault ledger (`ledger.rs`) in its transaction,
//! and the ledger file records the count before the caller is answered.

use super::ledger::{count_vault_write, held_back};
use super::*;

impl SqliteStore {
    /// Runs a vault change in the writer; `work` returns its outcome and, if it changed
    /// `vaults`, the ledger count of the change ([`count_vault_write`]), which the ledger
    /// file records once the commit is durable. If that record fails the change stays
    /// committed and the caller gets the error: for an evaluation that errs towards the limit
    /// (counted, not answered); the other changes are idempotent when repeated.
    async fn write_vault<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Option<u64>), StoreError> + Send + 'static,
    {
        let (outcome, seq) = self.write(work).await?;
        if let Some(seq) = seq {
            let ledger = Arc::clone(&self.ledger);
            tokio::task::spawn_blocking(move || ledger.record(seq))
                .await
                .map_err(|e| StoreError::backend("a vault ledger task", e))??;
        }
        Ok(outcome)
    }
}

/// The write count of the account's vault, if it has one.
fn write_seq(conn: &Connection, account: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT write_seq FROM vaults WHERE account = ?1")
        .and_then(|mut s| s.query_row(params![account], |r| get_u64(r, 0)))
        .map_err(backend)
}

pub(super) fn read_vault(conn: &Connection, account: &str) -> Result<Option<VaultRow>, StoreError> {
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

pub(super) async fn put_vault(
    s: &SqliteStore,
    account: &AccountId,
    vault: &VaultRow,
    max_vaults: u64,
    now: u64,
) -> Result<PutVaultOutcome, StoreError> {
    let account = account.as_str().to_owned();
    let vault = vault.clone();
    s.write_vault(move |c| {
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
                return Ok((PutVaultOutcome::Full, None));
            }
        }
        let seq = count_vault_write(c)?;
        c.execute(
            "INSERT OR REPLACE INTO vaults
             (account, vault_id, share, success_verifier, record, attempts_used, updated_at,
              write_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
            params![
                account,
                &vault.vault_id[..],
                &vault.share[..],
                &vault.success_verifier[..],
                vault.record,
                to_i64(now),
                to_i64(seq)
            ],
        )
        .map_err(backend)?;
        Ok((PutVaultOutcome::Stored, Some(seq)))
    })
    .await
}

pub(super) async fn vault(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Option<VaultRow>, StoreError> {
    let account = account.clone();
    s.read(move |c| read_vault(c, account.as_str())).await
}

pub(super) async fn begin_vault_evaluation(
    s: &SqliteStore,
    account: &AccountId,
    vault_id: &[u8; VAULT_ID_LEN],
    max_attempts: u32,
    now: u64,
) -> Result<VaultAttempt, StoreError> {
    let account = account.as_str().to_owned();
    let vault_id = *vault_id;
    s.write_vault(move |c| {
        let Some(v) = read_vault(c, &account)?.filter(|v| v.vault_id == vault_id) else {
            return Ok((VaultAttempt::NotFound, None));
        };
        if held_back(c, write_seq(c, &account)?)? {
            return Ok((VaultAttempt::RolledBack, None));
        }
        let seq = count_vault_write(c)?;
        if v.attempts_used >= max_attempts {
            c.execute("DELETE FROM vaults WHERE account = ?1", params![account])
                .map_err(backend)?;
            return Ok((VaultAttempt::NotFound, Some(seq)));
        }
        let attempts_used = v.attempts_used + 1;
        let deleted = attempts_used >= max_attempts;
        if deleted {
            c.execute("DELETE FROM vaults WHERE account = ?1", params![account])
                .map_err(backend)?;
        } else {
            c.execute(
                "UPDATE vaults SET attempts_used = ?2, updated_at = ?3, write_seq = ?4
                 WHERE account = ?1",
                params![account, attempts_used, to_i64(now), to_i64(seq)],
            )
            .map_err(backend)?;
        }
        let counted = VaultAttempt::Counted {
            share: v.share.clone(),
            attempts_used,
            deleted,
        };
        Ok((counted, Some(seq)))
    })
    .await
}

pub(super) async fn confirm_vault(
    s: &SqliteStore,
    account: &AccountId,
    vault_id: &[u8; VAULT_ID_LEN],
    verifier: &[u8; VERIFIER_LEN],
    now: u64,
) -> Result<ConfirmOutcome, StoreError> {
    let account = account.as_str().to_owned();
    let vault_id = *vault_id;
    let verifier = *verifier;
    s.write_vault(move |c| {
        let Some(v) = read_vault(c, &account)?.filter(|v| v.vault_id == vault_id) else {
            return Ok((ConfirmOutcome::NotFound, None));
        };
        if !ct_eq(&verifier, &v.success_verifier) {
            return Ok((ConfirmOutcome::Mismatch, None));
        }
        // A new write count also serves a held-back vault again (ledger.rs).
        let seq = count_vault_write(c)?;
        c.execute(
            "UPDATE vaults SET attempts_used = 0, updated_at = ?2, write_seq = ?3
             WHERE account = ?1",
            params![account, to_i64(now), to_i64(seq)],
        )
        .map_err(backend)?;
        Ok((ConfirmOutcome::Confirmed, Some(seq)))
    })
    .await
}

pub(super) async fn delete_vault(s: &SqliteStore, account: &AccountId) -> Result<bool, StoreError> {
    let account = account.as_str().to_owned();
    s.write_vault(move |c| {
        let n = c
            .execute("DELETE FROM vaults WHERE account = ?1", params![account])
            .map_err(backend)?;
        if n == 0 {
            return Ok((false, None));
        }
        Ok((true, Some(count_vault_write(c)?)))
    })
    .await
}
