//! Signed device lists in the async client (spec/devices.md section 8): publishing this
//! account's list, fetching and pinning contacts' lists before encrypting, and the cache
//! that keeps a list from being fetched for every message.

use super::*;
use crate::engine::{ListedDevices, listed_infos};
use sealpost_devices::VerifiedDeviceList;

/// A contact's list is fetched again before sending to the account or processing an
/// envelope from it when it was last fetched longer ago than this (and at once on
/// `MismatchedDevices` or an envelope from an unlisted device);
/// the default of [`crate::ClientConfig::device_list_refresh`].
pub const DEVICE_LIST_REFRESH: Duration = Duration::from_secs(5 * 60);

/// Publishes this account's list if the relay has not confirmed it yet (spec/devices.md
/// 8.5: a new account, or a version-1 store upgrading). Retry-safe: the list (and account
/// key) is committed before the request, and a list the relay already holds byte for byte
/// counts as published.
pub(super) async fn publish_own_list(
    shared: &Arc<Shared>,
    conn: &Connection,
) -> Result<(), ClientError> {
    restore_account_key(shared, conn).await?;
    let engine = shared.engine.clone();
    let kind = shared.config.account_kind;
    let name = shared.config.key_holder_name(kind)?;
    let Some(list) = blocking(move || engine.list_to_publish(now_ms(), kind, name)).await? else {
        return Ok(());
    };
    let bytes = list.encode()?;
    match conn.publish_device_list(list).await {
        Ok(version) => {
            tracing::info!(version, "device list published");
        }
        Err(e)
            if matches!(
                e.relay_code(),
                Some(ErrorCode::StaleDeviceList | ErrorCode::InvalidDeviceList)
            ) =>
        {
            // Published before (the answer was lost)? Then the relay serves exactly it.
            let account = shared.engine.address.account.clone();
            let served = conn.fetch_device_list(&account).await?;
            if served.map(|l| l.encode()).transpose()?.as_deref() != Some(&bytes[..]) {
                tracing::error!(error = %e, "the relay refused this account's device list");
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    let engine = shared.engine.clone();
    blocking(move || engine.own_list_published(&bytes)).await?;
    if let Err(e) = back_up_account_key(shared, conn).await {
        // Retried the next time the PIN is set; without it a recovery makes a new key.
        tracing::warn!(error = %e, "could not store the account key backup");
    }
    Ok(())
}

/// Before a store without an own-devices record makes a new account key (spec/devices.md
/// 8.6): if it holds the PIN's master secret (a registration after a recovery) and the
/// relay holds an account-key backup that opens with it, under the account key of the
/// relay's stored list, and that list does not name this device yet, the key is restored
/// and this device signs the next version as its key holder. A backup that does not open
/// (the PIN was set again elsewhere since) or a missing list or backup leaves the new-key
/// path; a failed request is an error (retried on the next connection), so a passing
/// network failure never costs the account its key.
async fn restore_account_key(shared: &Arc<Shared>, conn: &Connection) -> Result<(), ClientError> {
    let engine = shared.engine.clone();
    let backup_key = blocking(move || {
        if engine.own_devices()?.is_some() {
            return Ok(None);
        }
        Ok(engine.store.pin()?.map(|p| p.master.backup_key()))
    })
    .await?;
    let Some(backup_key) = backup_key else {
        return Ok(());
    };
    let Some(backup) = conn.fetch_account_key_backup().await? else {
        tracing::info!("no account key backup at the relay; a new account key is made");
        return Ok(());
    };
    let account = shared.engine.address.account.clone();
    let Some(list) = conn.fetch_device_list(&account).await? else {
        return Ok(());
    };
    let list = VerifiedDeviceList::verify(&list.encode()?, &account)
        .map_err(|_| ClientError::DeviceListRefused(crate::error::DeviceListRefusal::Invalid))?;
    let key = match sealpost_devices::open_account_key_backup(&backup, &account, &backup_key) {
        Ok(k) if k.public() == list.account_key() => k,
        Ok(_) => {
            tracing::warn!(
                "the account key backup is not of the stored list's key; a new account key is made"
            );
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(error = %e, "the account key backup does not open; a new account key is made");
            return Ok(());
        }
    };
    if list.device(shared.engine.address.device.0).is_some() {
        return Ok(());
    }
    // The stored list's family decides the role (an owner replaces an owner); the name is
    // the configured one, or that family's default.
    let name = shared
        .config
        .key_holder_name(crate::AccountKind::of_family(list.family()))?;
    let engine = shared.engine.clone();
    blocking(move || engine.restore_account_key(key, &list, name, now_ms())).await?;
    Ok(())
}

/// Leaves the account key, sealed under the PIN's backup key, with the relay
/// (spec/devices.md 2.1), when this device holds the key, its list is published and a PIN
/// is set. Called after the own list is published and after the PIN is set.
pub(super) async fn back_up_account_key(
    shared: &Arc<Shared>,
    conn: &Connection,
) -> Result<(), ClientError> {
    let engine = shared.engine.clone();
    let account = engine.address.account.clone();
    let backup = blocking(move || {
        let Some(own) = engine.own_devices()? else {
            return Ok(None);
        };
        let (Some(key), true) = (own.account_key, own.published) else {
            return Ok(None);
        };
        let Some(pin) = engine.store.pin()? else {
            return Ok(None);
        };
        let backup = sealpost_devices::seal_account_key_backup(
            &mut rand::rng(),
            &key,
            &account,
            &pin.master.backup_key(),
        )
        .map_err(|_| ClientError::Link(crate::error::LinkFailure::List))?;
        Ok(Some(backup))
    })
    .await?;
    if let Some(backup) = backup {
        conn.store_account_key_backup(backup).await?;
        tracing::info!("account key backup stored at the relay");
    }
    Ok(())
}

impl Shared {
    /// Whether `account`'s list was fetched less than [`DEVICE_LIST_REFRESH`] ago.
    pub(super) fn list_fresh(&self, account: &AccountId) -> bool {
        self.list_checked.lock().is_ok_and(|m| {
            m.get(account)
                .is_some_and(|at| at.elapsed() < self.config.device_list_refresh)
        })
    }

    /// Makes `account`'s list count as not fetched: the next use fetches it again.
    pub(super) fn list_stale(&self, account: &AccountId) {
        if let Ok(mut m) = self.list_checked.lock() {
            m.remove(account);
        }
    }

    pub(super) fn list_fetched(&self, account: &AccountId) {
        if let Ok(mut m) = self.list_checked.lock() {
            m.insert(account.clone(), tokio::time::Instant::now());
        }
    }
}

/// `account`'s accepted list, fetched from the relay and checked against the pin
/// (spec/devices.md section 5) unless it was fetched recently and `force` is off; `None`
/// for an account without a list. Reports the events of an accepted update; a refused list
/// is reported as [`ClientEvent::DeviceListRefused`] and returned as the error.
pub(super) async fn current_list(
    shared: &Arc<Shared>,
    conn: &Connection,
    account: &AccountId,
    force: bool,
) -> Result<Option<VerifiedDeviceList>, ClientError> {
    if !force && shared.list_fresh(account) {
        let engine = shared.engine.clone();
        let a = account.clone();
        let pinned = blocking(move || Ok(engine.store.list_pin(&a)?)).await?;
        return Ok(pinned.map(|p| p.list));
    }
    let fetched = conn.fetch_device_list(account).await?;
    let engine = shared.engine.clone();
    let a = account.clone();
    match blocking(move || engine.apply_fetched_list(&a, fetched)).await {
        Ok((listed, events)) => {
            shared.list_fetched(account);
            for ev in events {
                shared.emit(ev);
            }
            Ok(match listed {
                ListedDevices::Listed(list) => {
                    // A business's profile and default route come with its list
                    // (spec/business.md 7.3).
                    super::business::refresh_business(shared, conn, &list).await;
                    Some(*list)
                }
                ListedDevices::Unlisted => None,
            })
        }
        Err(ClientError::DeviceListRefused(reason)) => {
            tracing::warn!(%reason, "device list refused");
            shared.emit(ClientEvent::DeviceListRefused {
                account: account.clone(),
                reason,
            });
            Err(ClientError::DeviceListRefused(reason))
        }
        Err(e) => Err(e),
    }
}

/// Starts sessions with the listed devices that have none with their listed identity
/// (bundles whose identity is not the listed one are not used), and forgets devices the
/// list does not name.
pub(super) async fn sync_listed(
    shared: &Arc<Shared>,
    conn: &Connection,
    list: &VerifiedDeviceList,
) -> Result<(), ClientError> {
    sync_listed_for(shared, conn, list, None).await
}

/// [`sync_listed`], starting sessions only with the listed devices in `only` when given
/// (a routed business, spec/business.md 7.3: no bundle, and no one-time prekey, is taken
/// for a device the message does not go to).
pub(super) async fn sync_listed_for(
    shared: &Arc<Shared>,
    conn: &Connection,
    list: &VerifiedDeviceList,
    only: Option<&[DeviceId]>,
) -> Result<(), ClientError> {
    let engine = shared.engine.clone();
    let l = list.clone();
    let mut missing = blocking(move || engine.missing_listed(&l)).await?;
    if let Some(only) = only {
        missing.retain(|d| only.contains(&DeviceId(*d)));
    }
    let account = list.account().clone();
    let bundles = if missing.is_empty() {
        Vec::new()
    } else {
        let mut b = conn.fetch_bundles(&account).await?;
        b.retain(|x| missing.contains(&x.device_id));
        b
    };
    let listed = listed_infos(list);
    let engine = shared.engine.clone();
    let events =
        blocking(move || engine.apply_refresh(&account, Some(&listed), &bundles, now_ms(), true))
            .await?;
    for ev in events {
        shared.emit(ev);
    }
    Ok(())
}
