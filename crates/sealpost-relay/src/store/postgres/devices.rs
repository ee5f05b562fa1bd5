//! Device lists (spec/relay.md 3.9–3.10): the stored list, and replacing it together with
//! the registered devices it names.

use super::accounts::identity_at;
use super::{
    Commit, PgStore, TxError, execute, get_array, get_u32, get_u64, in_tx, query, query_opt, to_i64,
};
use crate::StoreError;
use crate::store::{
    AccountKeyBackup, DeviceListState, NewBusinessProfile, NewDeviceList, PutProfileOutcome,
    ReplaceListOutcome, StoredBusinessProfile, StoredDeviceList, business_owner_identity,
    profile_may_replace,
};
use deadpool_postgres::GenericClient;
use sealpost_wire::relay::DeviceInfo;
use sealpost_wire::{AccountId, DeviceAddress};

pub(super) async fn devices<C: GenericClient + Sync>(
    c: &C,
    acct: &str,
) -> Result<Vec<DeviceInfo>, TxError> {
    query(
        c,
        "SELECT device_id, identity FROM devices WHERE account = $1 ORDER BY device_id",
        &[&acct],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DeviceInfo {
            device_id: get_u32(r, 0, "device id")?,
            identity: identity_at(r, 1)?,
        })
    })
    .collect()
}

async fn stored_list<C: GenericClient + Sync>(
    c: &C,
    acct: &str,
) -> Result<Option<StoredDeviceList>, TxError> {
    let row = query_opt(
        c,
        "SELECT account_key, list_version, next_device_id, list FROM device_lists
         WHERE account = $1",
        &[&acct],
    )
    .await?;
    row.map(|r| {
        Ok(StoredDeviceList {
            account_key: get_array(&r, 0, "account key")?,
            list_version: get_u64(&r, 1, "list version")?,
            next_device_id: get_u32(&r, 2, "list next device id")?,
            bytes: r.try_get::<_, Vec<u8>>(3)?,
        })
    })
    .transpose()
}

impl PgStore {
    /// [`crate::Store::device_list_state`]: one `REPEATABLE READ` transaction, so the three
    /// reads see one snapshot.
    pub async fn device_list_state(
        &self,
        account: &AccountId,
    ) -> Result<DeviceListState, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let acct = account.as_str();
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let (next_device_id, rekey_device) = match query_opt(
                &tx,
                "SELECT next_device_id, rekey_device FROM accounts WHERE account = $1",
                &[&acct],
            )
            .await?
            {
                Some(r) => {
                    let rekey: Option<i64> = r.try_get(1)?;
                    let rekey = rekey
                        .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt("rekey device")))
                        .transpose()?;
                    (get_u32(&r, 0, "next device id")?, rekey)
                }
                None => (1, None),
            };
            Ok(DeviceListState {
                devices: devices(&tx, acct).await?,
                next_device_id,
                list: stored_list(&tx, acct).await?,
                rekey_device,
            })
        })
    }

    /// [`crate::Store::replace_device_list`]. The account row is locked first
    /// (`FOR UPDATE`), so replacements and registrations of one account run one after the
    /// other and each sees the list the previous one stored.
    pub async fn replace_device_list(
        &self,
        account: &AccountId,
        list: &NewDeviceList<'_>,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
    ) -> Result<ReplaceListOutcome, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let acct = account.as_str();
            let Some(row) = query_opt(
                &tx,
                "SELECT next_device_id FROM accounts WHERE account = $1 FOR UPDATE",
                &[&acct],
            )
            .await?
            else {
                return Ok(ReplaceListOutcome::DevicesChanged);
            };
            let counter = get_u32(&row, 0, "next device id")?;
            let stored = stored_list(&tx, acct).await?.map(|l| l.list_version);
            if stored != expected_version {
                return Ok(ReplaceListOutcome::VersionChanged);
            }
            let registered = devices(&tx, acct).await?;
            if registered.is_empty() {
                return Ok(ReplaceListOutcome::DevicesChanged);
            }
            let mut new_identity = None;
            for (id, identity) in list.devices {
                if Some(*id) == new_device {
                    new_identity = Some(*identity);
                } else if !registered
                    .iter()
                    .any(|d| d.device_id == *id && d.identity == *identity)
                {
                    return Ok(ReplaceListOutcome::DevicesChanged);
                }
            }
            let mut next = counter.max(list.next_device_id);
            if let Some(id) = new_device {
                let Some(identity) = new_identity else {
                    return Ok(ReplaceListOutcome::DevicesChanged);
                };
                if id < counter {
                    return Ok(ReplaceListOutcome::DevicesChanged);
                }
                next = next.max(id.saturating_add(1));
                let identity = identity.to_bytes();
                execute(
                    &tx,
                    "INSERT INTO devices (account, device_id, identity, registered_at,
                        max_sender_seq, last_seen) VALUES ($1, $2, $3, $4, 0, $4)",
                    &[&acct, &i64::from(id), &&identity[..], &to_i64(now)],
                )
                .await?;
            }
            let removed: Vec<u32> = registered
                .iter()
                .map(|d| d.device_id)
                .filter(|id| !list.devices.iter().any(|(l, _)| l == id))
                .collect();
            remove_devices(&tx, acct, &removed).await?;
            execute(
                &tx,
                "UPDATE accounts SET next_device_id = $2, rekey_device = NULL WHERE account = $1",
                &[&acct, &i64::from(next)],
            )
            .await?;
            execute(
                &tx,
                "INSERT INTO device_lists
                 (account, account_key, list_version, next_device_id, list, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account) DO UPDATE SET account_key = EXCLUDED.account_key,
                    list_version = EXCLUDED.list_version,
                    next_device_id = EXCLUDED.next_device_id,
                    list = EXCLUDED.list, updated_at = EXCLUDED.updated_at",
                &[
                    &acct,
                    &&list.account_key[..],
                    &to_i64(list.list_version),
                    &i64::from(list.next_device_id),
                    &list.bytes,
                    &to_i64(now),
                ],
            )
            .await?;
            for sql in [
                "DELETE FROM account_key_backups WHERE account = $1 AND account_key <> $2",
                "DELETE FROM business_profiles WHERE account = $1 AND account_key <> $2",
            ] {
                execute(&tx, sql, &[&acct, &&list.account_key[..]]).await?;
            }
            Ok(ReplaceListOutcome::Stored { removed })
        })
    }

    /// [`crate::Store::put_account_key_backup`].
    pub async fn put_account_key_backup(
        &self,
        device: &DeviceAddress,
        backup: &AccountKeyBackup,
    ) -> Result<bool, StoreError> {
        let acct = device.account.as_str();
        let device_id = i64::from(device.device.0);
        let key = backup.account_key;
        let bytes = backup.encode();
        in_tx!(self, Commit::Durable, |tx| {
            let n = execute(
                &tx,
                "INSERT INTO account_key_backups (account, account_key, backup)
                 SELECT $1, $2, $3
                 WHERE EXISTS (SELECT 1 FROM devices WHERE account = $1 AND device_id = $4)
                   AND EXISTS (SELECT 1 FROM device_lists WHERE account = $1 AND account_key = $2)
                 ON CONFLICT (account) DO UPDATE SET account_key = EXCLUDED.account_key,
                    backup = EXCLUDED.backup",
                &[&acct, &&key[..], &bytes, &device_id],
            )
            .await?;
            Ok(n > 0)
        })
    }

    /// [`crate::Store::put_business_profile`]. The account row is locked first
    /// (`FOR UPDATE`), as by a list replacement or a registration, so the device, the stored
    /// list and the stored profile checked here stay as read until the commit.
    pub async fn put_business_profile(
        &self,
        device: &DeviceAddress,
        profile: &NewBusinessProfile<'_>,
    ) -> Result<PutProfileOutcome, StoreError> {
        let acct = device.account.as_str();
        let device_id = device.device.0;
        let key = *profile.account_key;
        let version = profile.profile_version;
        let route_version = profile.route_version;
        let bytes = profile.profile;
        let payload = profile.payload;
        let new = *profile;
        in_tx!(self, Commit::Durable, |tx| {
            if query_opt(
                &tx,
                "SELECT 1 FROM accounts WHERE account = $1 FOR UPDATE",
                &[&acct],
            )
            .await?
            .is_none()
            {
                return Ok(PutProfileOutcome::ListChanged);
            }
            // Rules 1 and 2 of spec/relay.md 3.14 again: registered, and named as the owner
            // with that identity by the stored list under this account key.
            let Some(identity) = devices(&tx, acct)
                .await?
                .into_iter()
                .find(|d| d.device_id == device_id)
                .map(|d| d.identity)
            else {
                return Ok(PutProfileOutcome::ListChanged);
            };
            let Some(list) = stored_list(&tx, acct)
                .await?
                .filter(|l| l.account_key == key)
            else {
                return Ok(PutProfileOutcome::ListChanged);
            };
            if business_owner_identity(&list.bytes, device_id)? != Some(identity) {
                return Ok(PutProfileOutcome::ListChanged);
            }
            // Rule 5: the version rule against the stored profile.
            let stored = stored_profile(&tx, acct).await?;
            if !profile_may_replace(stored.as_ref(), &new) {
                return Ok(PutProfileOutcome::Stale);
            }
            execute(
                &tx,
                "INSERT INTO business_profiles
                 (account, account_key, profile_version, profile, route_version, payload)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account) DO UPDATE SET account_key = EXCLUDED.account_key,
                    profile_version = EXCLUDED.profile_version, profile = EXCLUDED.profile,
                    route_version = EXCLUDED.route_version, payload = EXCLUDED.payload",
                &[
                    &acct,
                    &&key[..],
                    &to_i64(version),
                    &bytes,
                    &to_i64(route_version),
                    &payload,
                ],
            )
            .await?;
            Ok(PutProfileOutcome::Stored)
        })
    }

    /// [`crate::Store::business_profile`].
    pub async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<StoredBusinessProfile>, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            stored_profile(&tx, account.as_str()).await
        })
    }

    /// [`crate::Store::account_key_backup`].
    pub async fn account_key_backup(
        &self,
        account: &AccountId,
    ) -> Result<Option<AccountKeyBackup>, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let row = query_opt(
                &tx,
                "SELECT backup FROM account_key_backups WHERE account = $1",
                &[&account.as_str()],
            )
            .await?;
            Ok(match row {
                Some(r) => Some(
                    AccountKeyBackup::decode(r.try_get::<_, &[u8]>(0)?)
                        .map_err(|_| StoreError::Corrupt("account key backup"))?,
                ),
                None => None,
            })
        })
    }
}

/// The account's stored business profile.
async fn stored_profile<C: GenericClient + Sync>(
    c: &C,
    acct: &str,
) -> Result<Option<StoredBusinessProfile>, TxError> {
    let row = query_opt(
        c,
        "SELECT account_key, profile_version, profile, payload, route_version
         FROM business_profiles WHERE account = $1",
        &[&acct],
    )
    .await?;
    row.map(|r| {
        let profile_version = get_u64(&r, 1, "business profile version")?;
        if profile_version == 0 {
            return Err(StoreError::Corrupt("business profile version").into());
        }
        Ok(StoredBusinessProfile {
            account_key: get_array(&r, 0, "business profile account key")?,
            profile_version,
            profile: r.try_get::<_, Vec<u8>>(2)?,
            route_version: get_u64(&r, 4, "business route version")?,
            payload: r.try_get::<_, Vec<u8>>(3)?,
        })
    })
    .transpose()
}

/// Removes the account's devices `ids` with their prekeys and deliveries.
pub(super) async fn remove_devices(
    tx: &deadpool_postgres::Transaction<'_>,
    acct: &str,
    removed: &[u32],
) -> Result<(), TxError> {
    if removed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = removed.iter().map(|&id| i64::from(id)).collect();
    for sql in [
        "DELETE FROM devices WHERE account = $1 AND device_id = ANY($2)",
        "DELETE FROM signed_prekeys WHERE account = $1 AND device_id = ANY($2)",
        "DELETE FROM one_time_prekeys WHERE account = $1 AND device_id = ANY($2)",
        "DELETE FROM kem_prekeys WHERE account = $1 AND device_id = ANY($2)",
    ] {
        execute(tx, sql, &[&acct, &ids]).await?;
    }
    let refs: Vec<i64> = query(
        tx,
        "DELETE FROM deliveries WHERE account = $1 AND device_id = ANY($2)
         RETURNING message_ref",
        &[&acct, &ids],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    super::mail::release_messages(tx, refs).await
}

/// The devices a recovery registration keeps, when the account has a stored list and an
/// account-key backup; `None` otherwise.
pub(super) async fn recovery_keep<C: GenericClient + Sync>(
    tx: &C,
    acct: &str,
) -> Result<Option<Vec<(u32, sealpost_wire::IdentityBytes)>>, TxError> {
    if query_opt(
        tx,
        "SELECT 1 FROM account_key_backups WHERE account = $1",
        &[&acct],
    )
    .await?
    .is_none()
    {
        return Ok(None);
    }
    match stored_list(tx, acct).await? {
        Some(list) => Ok(Some(crate::store::kept_on_recovery(&list.bytes)?)),
        None => Ok(None),
    }
}
