//! Device lists (spec/relay.md 3.9–3.10): the stored list, and replacing it together with
//! the registered devices it names.

use super::accounts::device_ids;
use super::*;
use crate::store::{
    AccountKeyBackup, DeviceListState, NewBusinessProfile, NewDeviceList, PutProfileOutcome,
    ReplaceListOutcome, StoredBusinessProfile, StoredDeviceList, business_owner_identity,
    profile_may_replace,
};

/// Removes one device with its prekeys and mailbox (as a registration removes every device).
pub(super) fn remove_device(
    c: &Connection,
    account: &str,
    device_id: u32,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM devices WHERE account = ?1 AND device_id = ?2",
        "DELETE FROM signed_prekeys WHERE account = ?1 AND device_id = ?2",
        "DELETE FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2",
        "DELETE FROM kem_prekeys WHERE account = ?1 AND device_id = ?2",
        "DELETE FROM envelopes WHERE account = ?1 AND device_id = ?2",
    ] {
        c.execute(sql, params![account, device_id])
            .map_err(backend)?;
    }
    Ok(())
}

fn stored_list(c: &Connection, account: &str) -> Result<Option<StoredDeviceList>, StoreError> {
    let row = c
        .query_row(
            "SELECT account_key, list_version, next_device_id, list FROM device_lists
             WHERE account = ?1",
            params![account],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    get_u64(r, 1)?,
                    get_u32(r, 2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    row.map(|(key, list_version, next_device_id, bytes)| {
        Ok(StoredDeviceList {
            account_key: array(&key, "account key")?,
            list_version,
            next_device_id,
            bytes,
        })
    })
    .transpose()
}

fn device_counter(c: &Connection, account: &str) -> Result<Option<u32>, StoreError> {
    c.query_row(
        "SELECT next_device_id FROM accounts WHERE account = ?1",
        params![account],
        |r| get_u32(r, 0),
    )
    .optional()
    .map_err(backend)
}

/// The account's `rekey_device` (spec/relay.md 3.2), if set.
fn rekey_device(c: &Connection, account: &str) -> Result<Option<u32>, StoreError> {
    let v: Option<Option<i64>> = c
        .query_row(
            "SELECT rekey_device FROM accounts WHERE account = ?1",
            params![account],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    v.flatten()
        .map(|id| u32::try_from(id).map_err(|_| StoreError::Corrupt("rekey device")))
        .transpose()
}

/// The account's registered devices and identities, by id.
pub(super) fn registered(c: &Connection, account: &str) -> Result<Vec<DeviceInfo>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT device_id, identity FROM devices WHERE account = ?1 ORDER BY device_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![account], |r| {
            Ok((get_u32(r, 0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (device_id, identity) = row.map_err(backend)?;
        out.push(DeviceInfo {
            device_id,
            identity: identity_from(&identity)?,
        });
    }
    Ok(out)
}

pub(super) async fn device_list_state(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<DeviceListState, StoreError> {
    let account = account.as_str().to_owned();
    s.read(move |c| {
        // One read transaction: the three reads see the same commit.
        let tx = c.unchecked_transaction().map_err(backend)?;
        let state = DeviceListState {
            devices: registered(&tx, &account)?,
            next_device_id: device_counter(&tx, &account)?.unwrap_or(1),
            list: stored_list(&tx, &account)?,
            rekey_device: rekey_device(&tx, &account)?,
        };
        tx.finish().map_err(backend)?;
        Ok(state)
    })
    .await
}

pub(super) async fn replace_device_list(
    s: &SqliteStore,
    account: &AccountId,
    list: &NewDeviceList<'_>,
    expected_version: Option<u64>,
    new_device: Option<u32>,
    now: u64,
) -> Result<ReplaceListOutcome, StoreError> {
    let account = account.as_str().to_owned();
    let account_key = *list.account_key;
    let list_version = list.list_version;
    let list_next = list.next_device_id;
    let listed = list.devices.to_vec();
    let bytes = list.bytes.to_vec();
    s.write(move |c| {
        let stored = stored_list(c, &account)?.map(|l| l.list_version);
        if stored != expected_version {
            return Ok(ReplaceListOutcome::VersionChanged);
        }
        let Some(counter) = device_counter(c, &account)? else {
            return Ok(ReplaceListOutcome::DevicesChanged);
        };
        let registered = registered(c, &account)?;
        if registered.is_empty() {
            return Ok(ReplaceListOutcome::DevicesChanged);
        }
        let mut new_identity = None;
        for (id, identity) in &listed {
            if Some(*id) == new_device {
                new_identity = Some(*identity);
            } else if !registered
                .iter()
                .any(|d| d.device_id == *id && d.identity == *identity)
            {
                return Ok(ReplaceListOutcome::DevicesChanged);
            }
        }
        let mut next = counter.max(list_next);
        if let Some(id) = new_device {
            let Some(identity) = new_identity else {
                return Ok(ReplaceListOutcome::DevicesChanged);
            };
            if id < counter {
                return Ok(ReplaceListOutcome::DevicesChanged);
            }
            next = next.max(id.saturating_add(1));
            c.execute(
                "INSERT INTO devices (account, device_id, identity, registered_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![account, id, &identity.to_bytes()[..], to_i64(now)],
            )
            .map_err(backend)?;
        }
        let mut removed = Vec::new();
        for id in device_ids(c, &account)? {
            if !listed.iter().any(|(l, _)| *l == id) {
                remove_device(c, &account, id)?;
                removed.push(id);
            }
        }
        c.execute(
            "UPDATE accounts SET next_device_id = ?2, rekey_device = NULL WHERE account = ?1",
            params![account, next],
        )
        .map_err(backend)?;
        c.execute(
            "INSERT INTO device_lists
             (account, account_key, list_version, next_device_id, list, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (account) DO UPDATE SET account_key = excluded.account_key,
                list_version = excluded.list_version, next_device_id = excluded.next_device_id,
                list = excluded.list, updated_at = excluded.updated_at",
            params![
                account,
                &account_key[..],
                to_i64(list_version),
                list_next,
                bytes,
                to_i64(now)
            ],
        )
        .map_err(backend)?;
        for sql in [
            "DELETE FROM account_key_backups WHERE account = ?1 AND account_key != ?2",
            "DELETE FROM business_profiles WHERE account = ?1 AND account_key != ?2",
        ] {
            c.execute(sql, params![account, &account_key[..]])
                .map_err(backend)?;
        }
        Ok(ReplaceListOutcome::Stored { removed })
    })
    .await
}

pub(super) async fn put_account_key_backup(
    s: &SqliteStore,
    device: &DeviceAddress,
    backup: &AccountKeyBackup,
) -> Result<bool, StoreError> {
    let account = device.account.as_str().to_owned();
    let device_id = device.device.0;
    let key = backup.account_key;
    let bytes = backup.encode();
    s.write(move |c| {
        let n = c
            .execute(
                "INSERT INTO account_key_backups (account, account_key, backup)
                 SELECT ?1, ?2, ?3
                 WHERE EXISTS (SELECT 1 FROM devices WHERE account = ?1 AND device_id = ?4)
                   AND EXISTS (SELECT 1 FROM device_lists WHERE account = ?1 AND account_key = ?2)
                 ON CONFLICT (account) DO UPDATE SET account_key = excluded.account_key,
                    backup = excluded.backup",
                params![account, &key[..], bytes, device_id],
            )
            .map_err(backend)?;
        Ok(n > 0)
    })
    .await
}

pub(super) async fn account_key_backup(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Option<AccountKeyBackup>, StoreError> {
    let account = account.as_str().to_owned();
    s.read(move |c| {
        let row: Option<Vec<u8>> = c
            .query_row(
                "SELECT backup FROM account_key_backups WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        row.map(|b| {
            AccountKeyBackup::decode(&b).map_err(|_| StoreError::Corrupt("account key backup"))
        })
        .transpose()
    })
    .await
}

/// The stored business profile of `account`, read on `c`.
fn stored_profile(
    c: &Connection,
    account: &str,
) -> Result<Option<StoredBusinessProfile>, StoreError> {
    type Row = (Vec<u8>, i64, Vec<u8>, Vec<u8>, i64);
    let row: Option<Row> = c
        .query_row(
            "SELECT account_key, profile_version, profile, payload, route_version
             FROM business_profiles WHERE account = ?1",
            params![account],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(backend)?;
    row.map(|(key, version, profile, payload, route_version)| {
        Ok(StoredBusinessProfile {
            account_key: key
                .try_into()
                .map_err(|_| StoreError::Corrupt("business profile account key"))?,
            profile_version: u64::try_from(version)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or(StoreError::Corrupt("business profile version"))?,
            profile,
            route_version: u64::try_from(route_version)
                .map_err(|_| StoreError::Corrupt("business route version"))?,
            payload,
        })
    })
    .transpose()
}

pub(super) async fn put_business_profile(
    s: &SqliteStore,
    device: &DeviceAddress,
    profile: &NewBusinessProfile<'_>,
) -> Result<PutProfileOutcome, StoreError> {
    let account = device.account.as_str().to_owned();
    let device_id = device.device.0;
    let key = *profile.account_key;
    let version = profile.profile_version;
    let bytes = profile.profile.to_vec();
    let route_version = profile.route_version;
    let payload = profile.payload.to_vec();
    s.write(move |c| {
        // Rules 1 and 2 of spec/relay.md 3.14 again: registered, and named as the owner
        // with that identity by the stored list under this account key.
        let Some(identity) = registered(c, &account)?
            .into_iter()
            .find(|d| d.device_id == device_id)
            .map(|d| d.identity)
        else {
            return Ok(PutProfileOutcome::ListChanged);
        };
        let Some(list) = stored_list(c, &account)?.filter(|l| l.account_key == key) else {
            return Ok(PutProfileOutcome::ListChanged);
        };
        if business_owner_identity(&list.bytes, device_id)? != Some(identity) {
            return Ok(PutProfileOutcome::ListChanged);
        }
        // Rule 5: the version rule against the stored profile.
        let stored = stored_profile(c, &account)?;
        let new = NewBusinessProfile {
            account_key: &key,
            profile_version: version,
            profile: &bytes,
            route_version,
            payload: &payload,
        };
        if !profile_may_replace(stored.as_ref(), &new) {
            return Ok(PutProfileOutcome::Stale);
        }
        c.execute(
            "INSERT INTO business_profiles
             (account, account_key, profile_version, profile, route_version, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (account) DO UPDATE SET account_key = excluded.account_key,
                profile_version = excluded.profile_version, profile = excluded.profile,
                route_version = excluded.route_version, payload = excluded.payload",
            params![
                account,
                &key[..],
                to_i64(version),
                bytes,
                to_i64(route_version),
                payload
            ],
        )
        .map_err(backend)?;
        Ok(PutProfileOutcome::Stored)
    })
    .await
}

pub(super) async fn business_profile(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Option<StoredBusinessProfile>, StoreError> {
    let account = account.as_str().to_owned();
    s.read(move |c| stored_profile(c, &account)).await
}
