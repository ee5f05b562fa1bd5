//! Accounts and devices: verification codes, registration (with the registration lock),
//! `last_seen`, identities and device lists.

use super::*;

pub(super) fn device_ids(conn: &Connection, account: &str) -> Result<Vec<u32>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT device_id FROM devices WHERE account = ?1 ORDER BY device_id")
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![account], |r| get_u32(r, 0))
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

pub(super) async fn put_code(
    s: &SqliteStore,
    account: &AccountId,
    mac: &[u8; CODE_MAC_LEN],
    expires_at: u64,
) -> Result<(), StoreError> {
    let account = account.as_str().to_owned();
    let mac = *mac;
    s.write(move |c| {
        c.execute(
            "INSERT OR REPLACE INTO codes (account, mac, expires_at, attempts)
             VALUES (?1, ?2, ?3, 0)",
            params![account, &mac[..], to_i64(expires_at)],
        )
        .map_err(backend)?;
        Ok(())
    })
    .await
}

pub(super) async fn begin_code_attempt(
    s: &SqliteStore,
    account: &AccountId,
    now: u64,
    max_attempts: u32,
) -> Result<CodeAttempt, StoreError> {
    let account = account.as_str().to_owned();
    s.write(move |c| {
        let row = c
            .query_row(
                "SELECT mac, expires_at, attempts FROM codes WHERE account = ?1",
                params![account],
                |r| Ok((r.get::<_, Vec<u8>>(0)?, get_u64(r, 1)?, get_u32(r, 2)?)),
            )
            .optional()
            .map_err(backend)?;
        let Some((mac, expires_at, attempts)) = row else {
            return Ok(CodeAttempt::Missing);
        };
        let delete = |c: &Connection| {
            c.execute("DELETE FROM codes WHERE account = ?1", params![account])
                .map_err(backend)
        };
        if expires_at <= now {
            delete(c)?;
            return Ok(CodeAttempt::Expired);
        }
        if attempts >= max_attempts {
            delete(c)?;
            return Ok(CodeAttempt::Exhausted);
        }
        c.execute(
            "UPDATE codes SET attempts = attempts + 1 WHERE account = ?1",
            params![account],
        )
        .map_err(backend)?;
        Ok(CodeAttempt::Check {
            mac: array(&mac, "code MAC")?,
            attempt: attempts + 1,
        })
    })
    .await
}

pub(super) async fn register_device(
    s: &SqliteStore,
    account: &AccountId,
    identity: &IdentityBytes,
    code_mac: &[u8; CODE_MAC_LEN],
    reglock: &RegLockPolicy,
    now: u64,
) -> Result<RegisterOutcome, StoreError> {
    let account = account.as_str().to_owned();
    let identity = identity.to_bytes();
    let code_mac = *code_mac;
    let reglock = *reglock;
    s.write(move |c| {
        let stored: Option<Vec<u8>> = c
            .query_row(
                "SELECT mac FROM codes WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if stored.as_deref() != Some(&code_mac[..]) {
            return Ok(RegisterOutcome::CodeGone);
        }
        let lock = c
            .query_row(
                "SELECT reglock_verifier, reglock_failures, last_seen FROM accounts
                 WHERE account = ?1",
                params![account],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?,
                        get_u32(r, 1)?,
                        get_u64(r, 2)?,
                    ))
                },
            )
            .optional()
            .map_err(backend)?;
        let mut keep_verifier = false;
        if let Some((Some(stored), failures, last_seen)) = lock {
            let lapses_at = last_seen.saturating_add(reglock.lapse);
            if now < lapses_at {
                let mut failures = failures;
                let refused = if failures >= reglock.max_failures {
                    true
                } else {
                    match &reglock.presented {
                        None => true,
                        Some(v) if ct_eq(v, &stored) => false,
                        Some(_) => {
                            failures += 1;
                            c.execute(
                                "UPDATE accounts SET reglock_failures = ?2 WHERE account = ?1",
                                params![account, failures],
                            )
                            .map_err(backend)?;
                            true
                        }
                    }
                };
                if refused {
                    // The correct code is not used up by a locked attempt.
                    c.execute(
                        "UPDATE codes SET attempts = MAX(attempts - 1, 0) WHERE account = ?1",
                        params![account],
                    )
                    .map_err(backend)?;
                    return Ok(RegisterOutcome::Locked {
                        lapses_at,
                        attempts_remaining: reglock.max_failures.saturating_sub(failures),
                    });
                }
                keep_verifier = true;
            }
        }
        let next: u32 = c
            .query_row(
                "SELECT next_device_id FROM accounts WHERE account = ?1",
                params![account],
                |r| get_u32(r, 0),
            )
            .optional()
            .map_err(backend)?
            .unwrap_or(1);
        let Some(after) = next.checked_add(1) else {
            return Ok(RegisterOutcome::DeviceIdsExhausted);
        };
        // A recovery registration keeps the stored list, the backup and the devices that do
        // not hold the account key (spec/relay.md 3.2).
        let keep = if keep_verifier {
            recovery_keep(c, &account)?
        } else {
            None
        };
        let removed = match &keep {
            Some(keep) => {
                let mut removed = Vec::new();
                for d in super::devices::registered(c, &account)? {
                    if !keep.contains(&(d.device_id, d.identity)) {
                        super::devices::remove_device(c, &account, d.device_id)?;
                        removed.push(d.device_id);
                    }
                }
                c.execute("DELETE FROM codes WHERE account = ?1", params![account])
                    .map_err(backend)?;
                removed
            }
            None => {
                let removed = device_ids(c, &account)?;
                for sql in [
                    "DELETE FROM codes WHERE account = ?1",
                    "DELETE FROM devices WHERE account = ?1",
                    "DELETE FROM signed_prekeys WHERE account = ?1",
                    "DELETE FROM one_time_prekeys WHERE account = ?1",
                    "DELETE FROM kem_prekeys WHERE account = ?1",
                    "DELETE FROM envelopes WHERE account = ?1",
                    "DELETE FROM device_lists WHERE account = ?1",
                    "DELETE FROM account_key_backups WHERE account = ?1",
                    "DELETE FROM business_profiles WHERE account = ?1",
                ] {
                    c.execute(sql, params![account]).map_err(backend)?;
                }
                removed
            }
        };
        c.execute(
            "INSERT INTO devices (account, device_id, identity, registered_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![account, next, &identity[..], to_i64(now)],
        )
        .map_err(backend)?;
        c.execute(
            "INSERT INTO accounts
             (account, next_device_id, reglock_verifier, reglock_failures, last_seen)
             VALUES (?1, ?2, NULL, 0, ?3)
             ON CONFLICT (account) DO UPDATE SET next_device_id = excluded.next_device_id,
                reglock_failures = 0, last_seen = excluded.last_seen,
                reglock_verifier = CASE WHEN ?4 THEN reglock_verifier ELSE NULL END,
                rekey_device = ?5",
            params![
                account,
                after,
                to_i64(now),
                keep_verifier,
                keep.is_some().then_some(next)
            ],
        )
        .map_err(backend)?;
        Ok(RegisterOutcome::Registered {
            device_id: next,
            removed,
        })
    })
    .await
}

/// The devices a recovery registration keeps, when the account has a stored list and an
/// account-key backup; `None` otherwise.
fn recovery_keep(
    c: &Connection,
    account: &str,
) -> Result<Option<Vec<(u32, IdentityBytes)>>, StoreError> {
    let has_backup = c
        .query_row(
            "SELECT 1 FROM account_key_backups WHERE account = ?1",
            params![account],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if !has_backup {
        return Ok(None);
    }
    let list: Option<Vec<u8>> = c
        .query_row(
            "SELECT list FROM device_lists WHERE account = ?1",
            params![account],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    list.map(|l| crate::store::kept_on_recovery(&l)).transpose()
}

pub(super) async fn set_registration_lock(
    s: &SqliteStore,
    account: &AccountId,
    verifier: Option<&[u8; VERIFIER_LEN]>,
    now: u64,
) -> Result<bool, StoreError> {
    let account = account.as_str().to_owned();
    let verifier = verifier.copied();
    s.write(move |c| {
        let n = c
            .execute(
                "UPDATE accounts SET reglock_verifier = ?2, reglock_failures = 0,
                 last_seen = MAX(last_seen, ?3) WHERE account = ?1",
                params![account, verifier.as_ref().map(|v| &v[..]), to_i64(now)],
            )
            .map_err(backend)?;
        if n > 0 && verifier.is_none() {
            c.execute(
                "DELETE FROM account_key_backups WHERE account = ?1",
                params![account],
            )
            .map_err(backend)?;
        }
        Ok(n > 0)
    })
    .await
}

pub(super) async fn touch_device(
    s: &SqliteStore,
    device: &DeviceAddress,
    now: u64,
) -> Result<(), StoreError> {
    let account = device.account.as_str().to_owned();
    let device_id = device.device.0;
    s.write(move |c| {
        c.execute(
            "UPDATE accounts SET last_seen = MAX(last_seen, ?2) WHERE account = ?1",
            params![account, to_i64(now)],
        )
        .map_err(backend)?;
        c.execute(
            "UPDATE devices SET last_seen = MAX(last_seen, ?3)
             WHERE account = ?1 AND device_id = ?2",
            params![account, device_id, to_i64(now)],
        )
        .map_err(backend)?;
        Ok(())
    })
    .await
}

pub(super) async fn device_activity(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Vec<DeviceSeen>, StoreError> {
    let account = account.as_str().to_owned();
    s.read(move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT device_id, last_seen FROM devices WHERE account = ?1 ORDER BY device_id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![account], |r| {
                Ok(DeviceSeen {
                    device_id: get_u32(r, 0)?,
                    last_seen: get_u64(r, 1)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    })
    .await
}

pub(super) async fn registration_lock(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Option<RegLockState>, StoreError> {
    let account = account.clone();
    s.read(move |c| {
        let row = c
            .query_row(
                "SELECT reglock_verifier, reglock_failures, last_seen FROM accounts
                 WHERE account = ?1",
                params![account.as_str()],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?,
                        get_u32(r, 1)?,
                        get_u64(r, 2)?,
                    ))
                },
            )
            .optional()
            .map_err(backend)?;
        row.map(|(v, failures, last_seen)| {
            Ok(RegLockState {
                verifier: v.map(|v| array(&v, "reglock verifier")).transpose()?,
                failures,
                last_seen,
            })
        })
        .transpose()
    })
    .await
}

pub(super) async fn device_identity(
    s: &SqliteStore,
    device: &DeviceAddress,
) -> Result<Option<IdentityBytes>, StoreError> {
    let device = device.clone();
    s.read(move |c| {
        let v: Option<Vec<u8>> = c
            .query_row(
                "SELECT identity FROM devices WHERE account = ?1 AND device_id = ?2",
                params![device.account.as_str(), device.device.0],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        v.map(|v| identity_from(&v)).transpose()
    })
    .await
}

pub(super) async fn list_devices(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Vec<DeviceInfo>, StoreError> {
    let account = account.clone();
    s.read(move |c| super::devices::registered(c, account.as_str()))
        .await
}
