//! Device lists and linking (spec/relay.md 3.9 `PublishDeviceList` / `FetchDeviceList`,
//! 3.10 `LinkDevice`): every list is verified as clients verify it (spec/devices.md section
//! 4), checked against the stored one in the spec's order, and stored with
//! [`Store::replace_device_list`], which repeats the checks a concurrent request may have
//! invalidated inside its transaction.

use super::*;
use crate::store::{DeviceListState, NewDeviceList, ReplaceListOutcome, StoredDeviceList};
use sealpost_devices::VerifiedDeviceList;
use sealpost_wire::devices::{RoleFamily, SignedDeviceList};
use sealpost_wire::relay::{DeviceLastSeen, link_device_signed_bytes};

const PUBLISH: &str = "publish";
const LINK: &str = "link";

/// A refusal of `request`, counted under `outcome`.
fn refuse(request: &'static str, outcome: &'static str, code: ErrorCode, detail: &str) -> Response {
    metrics::device_list(request, outcome);
    Response::error(code, detail)
}

fn invalid(request: &'static str, detail: &str) -> Response {
    refuse(request, "invalid", ErrorCode::InvalidDeviceList, detail)
}

/// The list's encoding, verified for `account` (spec/devices.md section 4). The request
/// decoded canonically (spec/devices.md 3.4), so its encoding is the bytes received.
fn verify(
    request: &'static str,
    list: &SignedDeviceList,
    account: &AccountId,
) -> Result<VerifiedDeviceList, Box<Response>> {
    let bytes = list
        .encode()
        .map_err(|e| Box::new(invalid(request, &e.to_string())))?;
    VerifiedDeviceList::verify(&bytes, account)
        .map_err(|e| Box::new(invalid(request, &e.to_string())))
}

/// The stored list's devices, `(id, identity)` (it was verified when stored).
/// The checks a list must pass to follow the stored one, in the spec's order (relay.md 3.9
/// step 5, 3.10): the same account key, a higher version, `next_device_id` not lower.
fn successor(
    request: &'static str,
    list: &VerifiedDeviceList,
    stored: &StoredDeviceList,
) -> Result<(), Box<Response>> {
    if list.account_key().to_bytes() != stored.account_key {
        return Err(Box::new(invalid(request, "another account key")));
    }
    if list.list_version() <= stored.list_version {
        return Err(Box::new(refuse(
            request,
            "stale",
            ErrorCode::StaleDeviceList,
            &format!(
                "list version {} is not above the stored {}",
                list.list_version(),
                stored.list_version
            ),
        )));
    }
    if list.next_device_id() < stored.next_device_id {
        return Err(Box::new(invalid(request, "next device id went back")));
    }
    Ok(())
}

fn stored_entries(stored: &StoredDeviceList) -> Result<Vec<(u32, IdentityBytes)>, StoreError> {
    let list = SignedDeviceList::decode(&stored.bytes)
        .map_err(|_| StoreError::Corrupt("stored device list"))?;
    Ok(list
        .body
        .entries
        .iter()
        .map(|e| (e.device_id, e.identity))
        .collect())
}

fn listed(list: &VerifiedDeviceList) -> Vec<(u32, IdentityBytes)> {
    list.entries()
        .iter()
        .map(|e| (e.device_id, e.identity))
        .collect()
}

/// Rule 5a of spec/relay.md 3.9: a list published by the device a recovery registration
/// added (3.2, the account's `rekey_device`), which the stored list does not name. Under the stored
/// account key it follows the stored list and names the device as its key holder with an id
/// never listed, and otherwise only devices of the stored list; under another account key
/// (the backup did not open) it names the device alone.
fn recovery_list(
    list: &VerifiedDeviceList,
    stored: &StoredDeviceList,
    before: &[(u32, IdentityBytes)],
    devices: &[(u32, IdentityBytes)],
    me: &AuthenticatedDevice,
    counter: u32,
) -> Result<(), Box<Response>> {
    let me_id = me.address.device.0;
    if list.account_key().to_bytes() != stored.account_key {
        if devices != [(me_id, me.identity)] {
            return Err(Box::new(invalid(
                PUBLISH,
                "a list under a new account key names this device alone",
            )));
        }
        if list.next_device_id() < counter {
            return Err(Box::new(invalid(
                PUBLISH,
                "next device id is not above every id given",
            )));
        }
        return Ok(());
    }
    successor(PUBLISH, list, stored)?;
    let holds_key = list
        .device(me_id)
        .is_some_and(|e| e.role.holds_account_key());
    if !holds_key || me_id < stored.next_device_id {
        return Err(Box::new(invalid(
            PUBLISH,
            "this device is not on the stored list and not its new key holder",
        )));
    }
    if devices.iter().any(|d| d.0 != me_id && !before.contains(d)) {
        return Err(Box::new(invalid(
            PUBLISH,
            "a device not on the stored list (devices join with LinkDevice)",
        )));
    }
    Ok(())
}

impl Handler {
    /// `StoreAccountKeyBackup` (spec/relay.md 3.13) from the authenticated device `me`.
    pub(super) async fn store_account_key_backup(
        &self,
        me: &AuthenticatedDevice,
        backup: &sealpost_wire::devices::AccountKeyBackup,
        now: u64,
    ) -> Response {
        const BACKUP: &str = "backup";
        let account = &me.address.account;
        let state = match self.list_state(BACKUP, account).await {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let Some(stored) = &state.list else {
            return invalid(BACKUP, "the account has no device list");
        };
        let holder = SignedDeviceList::decode(&stored.bytes)
            .ok()
            .and_then(|l| {
                l.body
                    .entries
                    .iter()
                    .find(|e| e.device_id == me.address.device.0)
                    .map(|e| e.role.holds_account_key() && e.identity == me.identity)
            })
            .unwrap_or(false);
        if !holder {
            return invalid(BACKUP, "only the key holder stores the account key backup");
        }
        if backup.account_key != stored.account_key {
            return invalid(BACKUP, "the backup is not of the list's account key");
        }
        if let Err(r) = self
            .take_list_quota(
                BACKUP,
                QuotaKind::ListPublish,
                account,
                self.limits.list_publish_rate(),
                now,
            )
            .await
        {
            return *r;
        }
        match self.store.put_account_key_backup(&me.address, backup).await {
            Ok(true) => {
                metrics::device_list(BACKUP, "stored");
                tracing::info!(account = ?account, "account key backup stored");
                Response::AccountKeyBackupStored
            }
            Ok(false) => invalid(BACKUP, "the account's device list changed meanwhile"),
            Err(e) => internal(&e),
        }
    }

    /// The device cap for a list of `family` (spec/relay.md 3.9, step 3).
    fn device_cap(&self, family: RoleFamily) -> u32 {
        match family {
            RoleFamily::Consumer => self.limits.device_cap_consumer,
            RoleFamily::Business => self.limits.device_cap_business,
        }
    }

    fn over_cap(&self, request: &'static str, list: &VerifiedDeviceList) -> Option<Response> {
        let cap = self.device_cap(list.family());
        let count = list.entries().len();
        (u32::try_from(count).unwrap_or(u32::MAX) > cap).then(|| {
            refuse(
                request,
                "too_many",
                ErrorCode::TooManyDevices,
                &format!("{count} devices, limit {cap}"),
            )
        })
    }

    /// Charges the account's persisted quota of `kind`.
    async fn take_list_quota(
        &self,
        request: &'static str,
        kind: QuotaKind,
        account: &AccountId,
        rate: crate::ratelimit::Rate,
        now: u64,
    ) -> Result<(), Box<Response>> {
        let quota = [QuotaCheck {
            kind,
            subject: account.as_str().to_owned(),
            rate,
        }];
        self.take_quotas(&quota, now).await.inspect_err(|_| {
            metrics::device_list(request, "rate_limited");
        })
    }

    /// Stores `list` against the state it was checked with; removed devices become an
    /// [`Effect::DevicesUnlisted`].
    async fn store_list(
        &self,
        request: &'static str,
        list: &VerifiedDeviceList,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Box<Response>> {
        let account = list.account();
        let devices = listed(list);
        let key = list.account_key().to_bytes();
        let new = NewDeviceList {
            account_key: &key,
            list_version: list.list_version(),
            next_device_id: list.next_device_id(),
            devices: &devices,
            bytes: list.as_bytes(),
        };
        match self
            .store
            .replace_device_list(account, &new, expected_version, new_device, now)
            .await
        {
            Ok(ReplaceListOutcome::Stored { removed }) => {
                metrics::device_list(request, "stored");
                tracing::info!(
                    account = ?account,
                    list_version = list.list_version(),
                    devices = devices.len(),
                    removed = removed.len(),
                    request,
                    "device list stored"
                );
                if !removed.is_empty() {
                    effects.push(Effect::DevicesUnlisted {
                        account: account.clone(),
                        devices: removed,
                    });
                }
                Ok(())
            }
            Ok(ReplaceListOutcome::VersionChanged) => Err(Box::new(refuse(
                request,
                "stale",
                ErrorCode::StaleDeviceList,
                "another device list was stored first",
            ))),
            Ok(ReplaceListOutcome::DevicesChanged) => Err(Box::new(invalid(
                request,
                "the account's devices changed meanwhile",
            ))),
            Err(e) => {
                metrics::device_list(request, "failed");
                Err(Box::new(internal(&e)))
            }
        }
    }

    async fn list_state(
        &self,
        request: &'static str,
        account: &AccountId,
    ) -> Result<DeviceListState, Box<Response>> {
        self.store.device_list_state(account).await.map_err(|e| {
            metrics::device_list(request, "failed");
            Box::new(internal(&e))
        })
    }

    /// `PublishDeviceList` (spec/relay.md 3.9) from the authenticated device `me`.
    pub(super) async fn publish_device_list(
        &self,
        me: &AuthenticatedDevice,
        list: &SignedDeviceList,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match self.try_publish(me, list, now, effects).await {
            Ok(list_version) => Response::DeviceListStored { list_version },
            Err(r) => *r,
        }
    }

    async fn try_publish(
        &self,
        me: &AuthenticatedDevice,
        list: &SignedDeviceList,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<u64, Box<Response>> {
        let account = &me.address.account;
        // 1. Valid for the connection's account.
        let list = verify(PUBLISH, list, account)?;
        // 2. Names the authenticated device with its registered identity.
        if list.device(me.address.device.0).map(|e| e.identity) != Some(me.identity) {
            return Err(Box::new(invalid(
                PUBLISH,
                "the list does not name this device with its identity",
            )));
        }
        // 3. The cap.
        if let Some(r) = self.over_cap(PUBLISH, &list) {
            return Err(Box::new(r));
        }
        let state = self.list_state(PUBLISH, account).await?;
        let devices = listed(&list);
        match &state.list {
            // 4. The first list: exactly the registered devices, ids never given again.
            None => {
                let registered: Vec<(u32, IdentityBytes)> = state
                    .devices
                    .iter()
                    .map(|d| (d.device_id, d.identity))
                    .collect();
                if devices != registered {
                    return Err(Box::new(invalid(
                        PUBLISH,
                        "a first list names exactly the registered devices",
                    )));
                }
                if list.next_device_id() < state.next_device_id {
                    return Err(Box::new(invalid(
                        PUBLISH,
                        "next device id is not above every id given",
                    )));
                }
            }
            Some(stored) => {
                let before = stored_entries(stored).map_err(|e| Box::new(internal(&e)))?;
                let me_id = me.address.device.0;
                if before.iter().any(|(id, _)| *id == me_id) {
                    // 5. A newer list under the same key, without new devices.
                    successor(PUBLISH, &list, stored)?;
                    if devices.iter().any(|d| !before.contains(d)) {
                        return Err(Box::new(invalid(
                            PUBLISH,
                            "a device not on the stored list (devices join with LinkDevice)",
                        )));
                    }
                } else if state.rekey_device == Some(me_id) {
                    // 5a. The device a recovery registration added (3.2) takes over.
                    recovery_list(&list, stored, &before, &devices, me, state.next_device_id)?;
                } else {
                    return Err(Box::new(invalid(
                        PUBLISH,
                        "this device is not on the stored list",
                    )));
                }
            }
        }
        self.take_list_quota(
            PUBLISH,
            QuotaKind::ListPublish,
            account,
            self.limits.list_publish_rate(),
            now,
        )
        .await?;
        let expected = state.list.as_ref().map(|l| l.list_version);
        self.store_list(PUBLISH, &list, expected, None, now, effects)
            .await?;
        Ok(list.list_version())
    }

    /// `FetchDeviceList` (spec/relay.md 3.9).
    pub(super) async fn fetch_device_list(
        &self,
        conn: &mut ConnectionState,
        account: &AccountId,
        now: u64,
    ) -> Response {
        if let Err(s) = conn.bundle_fetches.try_take(self.limits.bundle_rate(), now) {
            return rate_limited("bundles", s);
        }
        let state = match self.store.device_list_state(account).await {
            Ok(s) => s,
            Err(e) => return internal(&e),
        };
        if state.devices.is_empty() {
            return Response::error(ErrorCode::UnknownAccount, "no devices");
        }
        match state.list {
            None => Response::DeviceList(None),
            Some(stored) => match SignedDeviceList::decode(&stored.bytes) {
                Ok(list) => Response::DeviceList(Some(list)),
                Err(_) => internal(&StoreError::Corrupt("stored device list")),
            },
        }
    }

    /// `DeviceActivity` (spec/relay.md 3.12): when each device of the caller's own account
    /// was last seen, rounded down to the start of its UTC day. Only the caller's account can
    /// be asked about (the request names none), so no other account's activity leaks.
    pub(super) async fn device_activity(&self, me: &AuthenticatedDevice) -> Response {
        match self.store.device_activity(&me.address.account).await {
            Ok(seen) => Response::Activity(
                seen.into_iter()
                    .map(|d| DeviceLastSeen::from_unix_ms(d.device_id, d.last_seen))
                    .collect(),
            ),
            Err(e) => internal(&e),
        }
    }

    /// `LinkDevice` (spec/relay.md 3.10), on a connection whose TLS exporter is `exporter`.
    pub(super) async fn link_device(
        &self,
        exporter: &[u8; 32],
        list: &SignedDeviceList,
        device_id: u32,
        signature: &[u8; 64],
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match self
            .try_link(exporter, list, device_id, signature, now, effects)
            .await
        {
            Ok(()) => Response::Registered { device_id },
            Err(r) => *r,
        }
    }

    async fn try_link(
        &self,
        exporter: &[u8; 32],
        list: &SignedDeviceList,
        device_id: u32,
        signature: &[u8; 64],
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Box<Response>> {
        // Valid for its own account.
        let list = verify(LINK, list, &list.body.account)?;
        let account = list.account();
        // The account has a stored list, under the same account key.
        let state = self.list_state(LINK, account).await?;
        let Some(stored) = &state.list else {
            return Err(Box::new(invalid(LINK, "the account has no device list")));
        };
        successor(LINK, &list, stored)?;
        // Exactly one new device, `device_id`, with a new id and a role without the key;
        // every other device as stored.
        let before = stored_entries(stored).map_err(|e| Box::new(internal(&e)))?;
        let mut new = list
            .entries()
            .iter()
            .filter(|e| !before.contains(&(e.device_id, e.identity)));
        let entry = match (new.next(), new.next()) {
            (Some(e), None) if e.device_id == device_id => e,
            _ => {
                return Err(Box::new(invalid(
                    LINK,
                    "the list must add exactly the linking device",
                )));
            }
        };
        if entry.device_id < stored.next_device_id || before.iter().any(|(id, _)| *id == device_id)
        {
            return Err(Box::new(invalid(
                LINK,
                "the new device's id was given before",
            )));
        }
        if entry.role.holds_account_key() {
            return Err(Box::new(invalid(
                LINK,
                "a linked device cannot hold the account key",
            )));
        }
        // The cap.
        if let Some(r) = self.over_cap(LINK, &list) {
            return Err(Box::new(r));
        }
        // Possession of the new device's identity on this connection.
        let signed = link_device_signed_bytes(exporter, device_id, list.as_bytes());
        let valid = VerifyingKey::from_bytes(&entry.identity.signing)
            .and_then(|k| k.verify(&signed, &Signature::from_bytes(*signature)))
            .is_ok();
        if !valid {
            return Err(Box::new(refuse(
                LINK,
                "bad_signature",
                ErrorCode::InvalidSignature,
                "link signature does not verify",
            )));
        }
        // The account's link rate.
        self.take_list_quota(
            LINK,
            QuotaKind::LinkAccount,
            account,
            self.limits.link_rate(),
            now,
        )
        .await?;
        self.store_list(
            LINK,
            &list,
            Some(stored.list_version),
            Some(device_id),
            now,
            effects,
        )
        .await
    }
}
