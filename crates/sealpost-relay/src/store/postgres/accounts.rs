//! Verification codes, registration, the registration lock and device lookups.

use super::{
    Commit, PgStore, TxError, execute, get_array, get_u32, get_u64, in_tx, query, query_opt, to_i64,
};
use crate::StoreError;
use crate::store::{
    CODE_MAC_LEN, CodeAttempt, DeviceSeen, RegLockPolicy, RegLockState, RegisterOutcome,
    VERIFIER_LEN,
};
use sealpost_crypto::ct_eq;
use sealpost_wire::relay::DeviceInfo;
use sealpost_wire::{AccountId, DeviceAddress, IdentityBytes};

/// A stored identity (`signing || dh`).
pub(super) fn identity_at(row: &tokio_postgres::Row, i: usize) -> Result<IdentityBytes, TxError> {
    let raw: [u8; IdentityBytes::LEN] = get_array(row, i, "identity")?;
    let (signing, dh) = raw.split_at(IdentityBytes::LEN / 2);
    Ok(IdentityBytes {
        signing: signing
            .try_into()
            .map_err(|_| StoreError::Corrupt("identity"))?,
        dh: dh.try_into().map_err(|_| StoreError::Corrupt("identity"))?,
    })
}

impl PgStore {
    /// [`crate::Store::put_code`].
    pub async fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            execute(
                &tx,
                "INSERT INTO codes (account, mac, expires_at, attempts) VALUES ($1, $2, $3, 0)
                 ON CONFLICT (account) DO UPDATE
                 SET mac = EXCLUDED.mac, expires_at = EXCLUDED.expires_at, attempts = 0",
                &[&account.as_str(), &&mac[..], &to_i64(expires_at)],
            )
            .await?;
            Ok(())
        })
    }

    /// [`crate::Store::begin_code_attempt`].
    pub async fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> Result<CodeAttempt, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let acct = account.as_str();
            let row = query_opt(
                &tx,
                "SELECT mac, expires_at, attempts FROM codes WHERE account = $1 FOR UPDATE",
                &[&acct],
            )
            .await?;
            match row {
                None => Ok(CodeAttempt::Missing),
                Some(row) => {
                    let mac: [u8; CODE_MAC_LEN] = get_array(&row, 0, "code MAC")?;
                    let expires_at = get_u64(&row, 1, "code expiry")?;
                    let attempts = get_u32(&row, 2, "code attempts")?;
                    if expires_at <= now || attempts >= max_attempts {
                        execute(&tx, "DELETE FROM codes WHERE account = $1", &[&acct]).await?;
                        Ok(if expires_at <= now {
                            CodeAttempt::Expired
                        } else {
                            CodeAttempt::Exhausted
                        })
                    } else {
                        execute(
                            &tx,
                            "UPDATE codes SET attempts = attempts + 1 WHERE account = $1",
                            &[&acct],
                        )
                        .await?;
                        Ok(CodeAttempt::Check {
                            mac,
                            attempt: attempts + 1,
                        })
                    }
                }
            }
        })
    }

    /// [`crate::Store::register_device`]. The code row is locked first, so registrations of
    /// one account (and their registration-lock checks) run one after the other.
    pub async fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let acct = account.as_str();
            let stored = query_opt(
                &tx,
                "SELECT mac FROM codes WHERE account = $1 FOR UPDATE",
                &[&acct],
            )
            .await?;
            let code_matches = match &stored {
                Some(row) => ct_eq(row.try_get::<_, &[u8]>(0)?, code_mac),
                None => false,
            };
            if !code_matches {
                return Ok(RegisterOutcome::CodeGone);
            }
            let lock = query_opt(
                &tx,
                "SELECT reglock_verifier, reglock_failures, last_seen, next_device_id
                 FROM accounts WHERE account = $1 FOR UPDATE",
                &[&acct],
            )
            .await?;
            let mut keep_verifier = false;
            let mut next = 1u32;
            if let Some(row) = &lock {
                next = get_u32(row, 3, "next device id")?;
                let verifier: Option<&[u8]> = row.try_get(0)?;
                let failures = get_u32(row, 1, "registration-lock failures")?;
                let lapses_at = get_u64(row, 2, "last seen")?.saturating_add(reglock.lapse);
                if let Some(stored) = verifier
                    && now < lapses_at
                {
                    let mut failures = failures;
                    let refused = if failures >= reglock.max_failures {
                        true
                    } else {
                        match &reglock.presented {
                            None => true,
                            Some(v) if ct_eq(v, stored) => false,
                            Some(_) => {
                                failures += 1;
                                execute(
                                    &tx,
                                    "UPDATE accounts SET reglock_failures = $2 WHERE account = $1",
                                    &[&acct, &i64::from(failures)],
                                )
                                .await?;
                                true
                            }
                        }
                    };
                    if refused {
                        // The correct code is not used up by a locked attempt.
                        execute(
                            &tx,
                            "UPDATE codes SET attempts = GREATEST(attempts - 1, 0)
                             WHERE account = $1",
                            &[&acct],
                        )
                        .await?;
                        return Ok(RegisterOutcome::Locked {
                            lapses_at,
                            attempts_remaining: reglock.max_failures.saturating_sub(failures),
                        });
                    }
                    keep_verifier = true;
                }
            }
            let Some(after) = next.checked_add(1) else {
                return Ok(RegisterOutcome::DeviceIdsExhausted);
            };
            // A recovery registration keeps the stored list, the backup and the devices that
            // do not hold the account key (spec/relay.md 3.2).
            let keep = if keep_verifier {
                super::devices::recovery_keep(&tx, acct).await?
            } else {
                None
            };
            let recovery = keep.is_some();
            let removed: Vec<u32> = if let Some(keep) = keep {
                let removed: Vec<u32> = super::devices::devices(&tx, acct)
                    .await?
                    .iter()
                    .filter(|d| !keep.contains(&(d.device_id, d.identity)))
                    .map(|d| d.device_id)
                    .collect();
                super::devices::remove_devices(&tx, acct, &removed).await?;
                execute(&tx, "DELETE FROM codes WHERE account = $1", &[&acct]).await?;
                removed
            } else {
                let removed = query(
                    &tx,
                    "DELETE FROM devices WHERE account = $1 RETURNING device_id",
                    &[&acct],
                )
                .await?
                .iter()
                .map(|r| get_u32(r, 0, "device id"))
                .collect::<Result<std::collections::BTreeSet<u32>, _>>()?
                .into_iter()
                .collect();
                for sql in [
                    "DELETE FROM codes WHERE account = $1",
                    "DELETE FROM signed_prekeys WHERE account = $1",
                    "DELETE FROM one_time_prekeys WHERE account = $1",
                    "DELETE FROM kem_prekeys WHERE account = $1",
                    "DELETE FROM device_lists WHERE account = $1",
                    "DELETE FROM account_key_backups WHERE account = $1",
                    "DELETE FROM business_profiles WHERE account = $1",
                ] {
                    execute(&tx, sql, &[&acct]).await?;
                }
                let refs: Vec<i64> = query(
                    &tx,
                    "DELETE FROM deliveries WHERE account = $1 RETURNING message_ref",
                    &[&acct],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
                super::mail::release_messages(&tx, refs).await?;
                removed
            };
            let identity = identity.to_bytes();
            execute(
                &tx,
                "INSERT INTO devices (account, device_id, identity, registered_at, max_sender_seq,
                    last_seen) VALUES ($1, $2, $3, $4, 0, $4)",
                &[&acct, &i64::from(next), &&identity[..], &to_i64(now)],
            )
            .await?;
            execute(
                &tx,
                "INSERT INTO accounts
                 (account, next_device_id, reglock_verifier, reglock_failures, last_seen)
                 VALUES ($1, $2, NULL, 0, $3)
                 ON CONFLICT (account) DO UPDATE SET next_device_id = EXCLUDED.next_device_id,
                    reglock_failures = 0, last_seen = EXCLUDED.last_seen,
                    reglock_verifier = CASE WHEN $4 THEN accounts.reglock_verifier ELSE NULL END,
                    rekey_device = $5",
                &[
                    &acct,
                    &i64::from(after),
                    &to_i64(now),
                    &keep_verifier,
                    &recovery.then_some(i64::from(next)),
                ],
            )
            .await?;
            Ok(RegisterOutcome::Registered {
                device_id: next,
                removed,
            })
        })
    }

    /// [`crate::Store::set_registration_lock`].
    pub async fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let verifier: Option<&[u8]> = verifier.map(|v| &v[..]);
        in_tx!(self, Commit::Durable, |tx| {
            let n = execute(
                &tx,
                "UPDATE accounts SET reglock_verifier = $2, reglock_failures = 0,
                 last_seen = GREATEST(last_seen, $3) WHERE account = $1",
                &[&account.as_str(), &verifier, &to_i64(now)],
            )
            .await?;
            if n > 0 && verifier.is_none() {
                execute(
                    &tx,
                    "DELETE FROM account_key_backups WHERE account = $1",
                    &[&account.as_str()],
                )
                .await?;
            }
            Ok(n > 0)
        })
    }

    /// [`crate::Store::touch_device`]: the account row first, then the device row (the
    /// lock order of every transaction that changes both).
    pub async fn touch_device(&self, device: &DeviceAddress, now: u64) -> Result<(), StoreError> {
        let acct = device.account.as_str();
        let device_id = i64::from(device.device.0);
        in_tx!(self, Commit::Durable, |tx| {
            execute(
                &tx,
                "UPDATE accounts SET last_seen = $2 WHERE account = $1 AND last_seen < $2",
                &[&acct, &to_i64(now)],
            )
            .await?;
            execute(
                &tx,
                "UPDATE devices SET last_seen = $3
                 WHERE account = $1 AND device_id = $2 AND last_seen < $3",
                &[&acct, &device_id, &to_i64(now)],
            )
            .await?;
            Ok(())
        })
    }

    /// [`crate::Store::device_activity`].
    pub async fn device_activity(
        &self,
        account: &AccountId,
    ) -> Result<Vec<DeviceSeen>, StoreError> {
        let c = self.client().await?;
        async {
            query(
                &c,
                "SELECT device_id, last_seen FROM devices WHERE account = $1 ORDER BY device_id",
                &[&account.as_str()],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(DeviceSeen {
                    device_id: get_u32(r, 0, "device id")?,
                    last_seen: get_u64(r, 1, "last seen")?,
                })
            })
            .collect::<Result<Vec<_>, TxError>>()
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::registration_lock`].
    pub async fn registration_lock(
        &self,
        account: &AccountId,
    ) -> Result<Option<RegLockState>, StoreError> {
        let c = self.client().await?;
        async {
            let Some(row) = query_opt(
                &c,
                "SELECT reglock_verifier, reglock_failures, last_seen FROM accounts
                 WHERE account = $1",
                &[&account.as_str()],
            )
            .await?
            else {
                return Ok(None);
            };
            let verifier = match row.try_get::<_, Option<&[u8]>>(0)? {
                Some(v) => Some(
                    v.try_into()
                        .map_err(|_| StoreError::Corrupt("reglock verifier"))?,
                ),
                None => None,
            };
            Ok(Some(RegLockState {
                verifier,
                failures: get_u32(&row, 1, "registration-lock failures")?,
                last_seen: get_u64(&row, 2, "last seen")?,
            }))
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::device_identity`].
    pub async fn device_identity(
        &self,
        device: &DeviceAddress,
    ) -> Result<Option<IdentityBytes>, StoreError> {
        let c = self.client().await?;
        async {
            let row = query_opt(
                &c,
                "SELECT identity FROM devices WHERE account = $1 AND device_id = $2",
                &[&device.account.as_str(), &i64::from(device.device.0)],
            )
            .await?;
            row.map(|r| identity_at(&r, 0)).transpose()
        }
        .await
        .map_err(TxError::into_store)
    }

    /// [`crate::Store::list_devices`].
    pub async fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError> {
        let c = self.client().await?;
        async {
            query(
                &c,
                "SELECT device_id, identity FROM devices WHERE account = $1 ORDER BY device_id",
                &[&account.as_str()],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(DeviceInfo {
                    device_id: get_u32(r, 0, "device id")?,
                    identity: identity_at(r, 1)?,
                })
            })
            .collect::<Result<Vec<_>, TxError>>()
        }
        .await
        .map_err(TxError::into_store)
    }
}
