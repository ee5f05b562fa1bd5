//! An in-memory [`Store`] for tests and fuzzing: one mutex around plain maps, so every
//! method is trivially atomic. Nothing survives the process.

use super::{
    AccountKeyBackup, DeviceListState, DeviceSeen, NewBusinessProfile, NewDeviceList,
    PutProfileOutcome, ReplaceListOutcome, StoredBusinessProfile, StoredDeviceList,
    business_owner_identity, kept_on_recovery, profile_may_replace,
};
use super::{
    CODE_MAC_LEN, CodeAttempt, ConfirmOutcome, EnqueueOutcome, MAX_SENDER_SEQ, NewMessage,
    NewPreKeys, PreKeyCounts, PreKeyLimits, PutVaultOutcome, QuotaCheck, QuotaKind, QuotaOutcome,
    RegLockPolicy, RegLockState, RegisterOutcome, Store, StoredEnvelope, SweepCounts, TakenBundle,
    UploadOutcome, VAULT_ID_LEN, VERIFIER_LEN, VaultAttempt, VaultRow,
};
use crate::StoreError;
use crate::ratelimit::gcra;
use sealpost_crypto::ct_eq;
use sealpost_wire::relay::{DeviceInfo, PROVISIONING_ID_LEN};
use sealpost_wire::{
    AccountId, DeviceAddress, DeviceId, IdentityBytes, KemPreKeyPublic, PreKeyBundle,
    SignedPreKeyPublic,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

#[derive(Clone)]
struct CodeRow {
    mac: [u8; CODE_MAC_LEN],
    expires_at: u64,
    attempts: u32,
}

#[derive(Default)]
struct DeviceRow {
    identity: Option<IdentityBytes>,
    signed: Option<SignedPreKeyPublic>,
    one_time: BTreeMap<u32, [u8; 32]>,
    kem_one_time: BTreeMap<u32, KemPreKeyPublic>,
    last_resort: Option<KemPreKeyPublic>,
    mailbox: BTreeMap<u64, StoredEnvelope>,
    /// Highest `sender_seq` queued from this device (spec/relay.md section 3.7).
    max_sender_seq: u64,
    /// Last time the device was seen (ms; [`Store::device_activity`]).
    last_seen: u64,
}

impl DeviceRow {
    fn counts(&self) -> PreKeyCounts {
        PreKeyCounts {
            one_time_prekeys: count(self.one_time.len()),
            kem_prekeys: count(self.kem_one_time.len()),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct AccountRow {
    next_device_id: u32,
    devices: BTreeMap<u32, DeviceRow>,
    reglock_verifier: Option<[u8; VERIFIER_LEN]>,
    reglock_failures: u32,
    last_seen: u64,
    /// The stored device list (spec/relay.md 3.9).
    device_list: Option<StoredDeviceList>,
    /// The account-key backup (spec/relay.md 3.13).
    key_backup: Option<AccountKeyBackup>,
    /// The business profile (spec/relay.md 3.14).
    business_profile: Option<StoredBusinessProfile>,
    /// The device a recovery registration added, until the next list is stored.
    rekey_device: Option<u32>,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<AccountId, CodeRow>,
    accounts: HashMap<AccountId, AccountRow>,
    vaults: HashMap<AccountId, VaultRow>,
    next_server_id: u64,
    /// Quotas by `(kind, subject)`: the GCRA's theoretical arrival time.
    quotas: HashMap<(QuotaKind, String), u64>,
    /// Provisioning ids: expiry and the envelope left for them.
    provisioning: HashMap<[u8; PROVISIONING_ID_LEN], (u64, Option<Vec<u8>>)>,
}

impl Inner {
    fn device(&self, d: &DeviceAddress) -> Option<&DeviceRow> {
        self.accounts.get(&d.account)?.devices.get(&d.device.0)
    }

    fn device_mut(&mut self, d: &DeviceAddress) -> Option<&mut DeviceRow> {
        self.accounts
            .get_mut(&d.account)?
            .devices
            .get_mut(&d.device.0)
    }
}

/// An in-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change behind (every
        // method computes before it mutates), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    async fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        self.lock().codes.insert(
            account.clone(),
            CodeRow {
                mac: *mac,
                expires_at,
                attempts: 0,
            },
        );
        Ok(())
    }

    async fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> Result<CodeAttempt, StoreError> {
        let mut inner = self.lock();
        let Some(row) = inner.codes.get_mut(account) else {
            return Ok(CodeAttempt::Missing);
        };
        if row.expires_at <= now {
            inner.codes.remove(account);
            return Ok(CodeAttempt::Expired);
        }
        if row.attempts >= max_attempts {
            inner.codes.remove(account);
            return Ok(CodeAttempt::Exhausted);
        }
        row.attempts += 1;
        Ok(CodeAttempt::Check {
            mac: row.mac,
            attempt: row.attempts,
        })
    }

    async fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        match inner.codes.get(account) {
            Some(row) if row.mac == *code_mac => {}
            _ => return Ok(RegisterOutcome::CodeGone),
        }
        let mut keep_verifier = false;
        if let Some(a) = inner.accounts.get_mut(account)
            && let Some(stored) = a.reglock_verifier
        {
            let lapses_at = a.last_seen.saturating_add(reglock.lapse);
            if now < lapses_at {
                let refused = if a.reglock_failures >= reglock.max_failures {
                    true
                } else {
                    match &reglock.presented {
                        None => true,
                        Some(v) if ct_eq(v, &stored) => false,
                        Some(_) => {
                            a.reglock_failures += 1;
                            true
                        }
                    }
                };
                if refused {
                    let attempts_remaining =
                        reglock.max_failures.saturating_sub(a.reglock_failures);
                    if let Some(code) = inner.codes.get_mut(account) {
                        code.attempts = code.attempts.saturating_sub(1);
                    }
                    return Ok(RegisterOutcome::Locked {
                        lapses_at,
                        attempts_remaining,
                    });
                }
                keep_verifier = true;
            }
        }
        let next = inner.accounts.get(account).map_or(1, |a| a.next_device_id);
        let Some(after) = next.checked_add(1) else {
            return Ok(RegisterOutcome::DeviceIdsExhausted);
        };
        inner.codes.remove(account);
        let acct = inner
            .accounts
            .entry(account.clone())
            .or_insert_with(|| AccountRow {
                next_device_id: 1,
                devices: BTreeMap::new(),
                reglock_verifier: None,
                reglock_failures: 0,
                last_seen: now,
                device_list: None,
                key_backup: None,
                business_profile: None,
                rekey_device: None,
            });
        if !keep_verifier {
            acct.reglock_verifier = None;
        }
        acct.reglock_failures = 0;
        acct.last_seen = now;
        // A recovery registration keeps the stored list, the backup and the devices that do
        // not hold the account key (spec/relay.md 3.2).
        let keep = match (&acct.device_list, &acct.key_backup) {
            (Some(list), Some(_)) if keep_verifier => {
                acct.rekey_device = Some(next);
                kept_on_recovery(&list.bytes)?
            }
            _ => {
                acct.device_list = None;
                acct.key_backup = None;
                acct.business_profile = None;
                acct.rekey_device = None;
                Vec::new()
            }
        };
        let removed: Vec<u32> = acct
            .devices
            .iter()
            .filter(|(id, d)| {
                !d.identity
                    .is_some_and(|identity| keep.contains(&(**id, identity)))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &removed {
            acct.devices.remove(id);
        }
        acct.devices.insert(
            next,
            DeviceRow {
                identity: Some(*identity),
                last_seen: now,
                ..DeviceRow::default()
            },
        );
        acct.next_device_id = after;
        Ok(RegisterOutcome::Registered {
            device_id: next,
            removed,
        })
    }

    async fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(a) = inner.accounts.get_mut(account) else {
            return Ok(false);
        };
        a.reglock_verifier = verifier.copied();
        a.reglock_failures = 0;
        a.last_seen = a.last_seen.max(now);
        if verifier.is_none() {
            a.key_backup = None;
        }
        Ok(true)
    }

    async fn touch_device(&self, device: &DeviceAddress, now: u64) -> Result<(), StoreError> {
        if let Some(a) = self.lock().accounts.get_mut(&device.account) {
            a.last_seen = a.last_seen.max(now);
            if let Some(d) = a.devices.get_mut(&device.device.0) {
                d.last_seen = d.last_seen.max(now);
            }
        }
        Ok(())
    }

    async fn device_activity(&self, account: &AccountId) -> Result<Vec<DeviceSeen>, StoreError> {
        Ok(self
            .lock()
            .accounts
            .get(account)
            .map(|a| {
                a.devices
                    .iter()
                    .filter(|(_, d)| d.identity.is_some())
                    .map(|(id, d)| DeviceSeen {
                        device_id: *id,
                        last_seen: d.last_seen,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn registration_lock(
        &self,
        account: &AccountId,
    ) -> Result<Option<RegLockState>, StoreError> {
        Ok(self.lock().accounts.get(account).map(|a| RegLockState {
            verifier: a.reglock_verifier,
            failures: a.reglock_failures,
            last_seen: a.last_seen,
        }))
    }

    async fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        _now: u64,
    ) -> Result<PutVaultOutcome, StoreError> {
        let mut inner = self.lock();
        if !inner.vaults.contains_key(account) && inner.vaults.len() as u64 >= max_vaults {
            return Ok(PutVaultOutcome::Full);
        }
        let mut row = vault.clone();
        row.attempts_used = 0;
        inner.vaults.insert(account.clone(), row);
        Ok(PutVaultOutcome::Stored)
    }

    async fn vault(&self, account: &AccountId) -> Result<Option<VaultRow>, StoreError> {
        Ok(self.lock().vaults.get(account).cloned())
    }

    async fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        _now: u64,
    ) -> Result<VaultAttempt, StoreError> {
        let mut inner = self.lock();
        let Some(v) = inner.vaults.get_mut(account) else {
            return Ok(VaultAttempt::NotFound);
        };
        if v.vault_id != *vault_id {
            return Ok(VaultAttempt::NotFound);
        }
        if v.attempts_used >= max_attempts {
            inner.vaults.remove(account);
            return Ok(VaultAttempt::NotFound);
        }
        v.attempts_used += 1;
        let attempts_used = v.attempts_used;
        let share = v.share.clone();
        let deleted = attempts_used >= max_attempts;
        if deleted {
            inner.vaults.remove(account);
        }
        Ok(VaultAttempt::Counted {
            share,
            attempts_used,
            deleted,
        })
    }

    async fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        _now: u64,
    ) -> Result<ConfirmOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(v) = inner
            .vaults
            .get_mut(account)
            .filter(|v| v.vault_id == *vault_id)
        else {
            return Ok(ConfirmOutcome::NotFound);
        };
        if !ct_eq(verifier, &v.success_verifier) {
            return Ok(ConfirmOutcome::Mismatch);
        }
        v.attempts_used = 0;
        Ok(ConfirmOutcome::Confirmed)
    }

    async fn delete_vault(&self, account: &AccountId) -> Result<bool, StoreError> {
        Ok(self.lock().vaults.remove(account).is_some())
    }

    async fn device_identity(
        &self,
        device: &DeviceAddress,
    ) -> Result<Option<IdentityBytes>, StoreError> {
        Ok(self.lock().device(device).and_then(|d| d.identity))
    }

    async fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .accounts
            .get(account)
            .map(|a| {
                a.devices
                    .iter()
                    .filter_map(|(id, d)| {
                        d.identity.map(|identity| DeviceInfo {
                            device_id: *id,
                            identity,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> Result<UploadOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(row) = inner.device_mut(device) else {
            return Ok(UploadOutcome::UnknownDevice);
        };
        let otk_conflict = keys
            .one_time
            .iter()
            .any(|(id, _)| row.one_time.contains_key(id));
        let last_resort_id = row.last_resort.as_ref().map(|k| k.id);
        let kem_conflict = keys
            .kem_one_time
            .iter()
            .any(|k| row.kem_one_time.contains_key(&k.id) || Some(k.id) == last_resort_id)
            || keys
                .kem_last_resort
                .as_ref()
                .is_some_and(|k| row.kem_one_time.contains_key(&k.id));
        if otk_conflict || kem_conflict {
            return Ok(UploadOutcome::IdConflict);
        }
        if row.one_time.len() + keys.one_time.len() > limits.max_one_time as usize
            || row.kem_one_time.len() + keys.kem_one_time.len() > limits.max_kem_one_time as usize
        {
            return Ok(UploadOutcome::TooMany);
        }
        if let Some(s) = &keys.signed {
            row.signed = Some(s.clone());
        }
        if let Some(k) = &keys.kem_last_resort {
            row.last_resort = Some(k.clone());
        }
        row.one_time.extend(keys.one_time.iter().copied());
        row.kem_one_time
            .extend(keys.kem_one_time.iter().map(|k| (k.id, k.clone())));
        Ok(UploadOutcome::Stored(row.counts()))
    }

    async fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        Ok(self
            .lock()
            .device(device)
            .map(DeviceRow::counts)
            .unwrap_or_default())
    }

    async fn take_bundles(
        &self,
        account: &AccountId,
    ) -> Result<Option<Vec<TakenBundle>>, StoreError> {
        let mut inner = self.lock();
        let Some(acct) = inner.accounts.get_mut(account) else {
            return Ok(None);
        };
        if acct.devices.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (id, d) in &mut acct.devices {
            let (Some(identity), Some(signed)) = (d.identity, d.signed.clone()) else {
                continue;
            };
            if d.kem_one_time.is_empty() && d.last_resort.is_none() {
                continue;
            }
            let kem_prekey = match d.kem_one_time.pop_first() {
                Some((_, k)) => k,
                None => match d.last_resort.clone() {
                    Some(k) => k,
                    None => continue,
                },
            };
            let one_time_prekey = d.one_time.pop_first();
            out.push(TakenBundle {
                bundle: PreKeyBundle {
                    device_id: *id,
                    identity,
                    signed_prekey: signed,
                    one_time_prekey,
                    kem_prekey,
                },
                remaining: d.counts(),
            });
        }
        Ok(Some(out))
    }

    async fn enqueue(&self, m: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(acct) = inner.accounts.get(m.recipient) else {
            return Ok(EnqueueOutcome::UnknownAccount);
        };
        if acct.devices.is_empty() {
            return Ok(EnqueueOutcome::UnknownAccount);
        }
        if !m.addressing.accepts(
            acct.devices.keys().copied(),
            m.exclude_device,
            m.envelopes.iter().map(|e| e.device_id),
        ) {
            return Ok(EnqueueOutcome::MismatchedDevices);
        }
        for e in m.envelopes {
            let depth = acct
                .devices
                .get(&e.device_id)
                .map_or(0, |d| d.mailbox.len());
            if depth >= m.max_queued as usize {
                return Ok(EnqueueOutcome::QueueFull {
                    device_id: e.device_id,
                });
            }
        }
        let mut ids = Vec::with_capacity(m.envelopes.len());
        for e in m.envelopes {
            inner.next_server_id += 1;
            let server_id = inner.next_server_id;
            let stored = StoredEnvelope {
                server_id,
                sender: m.sender.clone(),
                message_id: *m.message_id,
                timestamp: m.timestamp,
                envelope: e.envelope.clone(),
            };
            let addr = DeviceAddress::new(m.recipient.clone(), DeviceId(e.device_id));
            if let Some(d) = inner.device_mut(&addr) {
                d.mailbox.insert(server_id, stored);
            }
            ids.push((e.device_id, server_id));
        }
        if let Some(d) = inner.device_mut(m.sender) {
            d.max_sender_seq = d.max_sender_seq.max(m.sender_seq.min(MAX_SENDER_SEQ));
        }
        Ok(EnqueueOutcome::Queued(ids))
    }

    async fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .device(device)
            .map(|d| {
                d.mailbox
                    .range(after.saturating_add(1)..)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError> {
        let mut inner = self.lock();
        let Some(d) = inner.device_mut(device) else {
            return Ok(0);
        };
        let removed = server_ids
            .iter()
            .filter(|id| d.mailbox.remove(id).is_some())
            .count();
        Ok(count(removed))
    }

    async fn sender_seq(&self, device: &DeviceAddress) -> Result<u64, StoreError> {
        Ok(self.lock().device(device).map_or(0, |d| d.max_sender_seq))
    }

    async fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError> {
        Ok(self
            .lock()
            .device(device)
            .map_or(0, |d| count(d.mailbox.len())))
    }

    async fn total_queued(&self) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner
            .accounts
            .values()
            .flat_map(|a| a.devices.values())
            .map(|d| d.mailbox.len() as u64)
            .sum())
    }

    async fn device_list_state(&self, account: &AccountId) -> Result<DeviceListState, StoreError> {
        let inner = self.lock();
        Ok(match inner.accounts.get(account) {
            None => DeviceListState {
                devices: Vec::new(),
                next_device_id: 1,
                list: None,
                rekey_device: None,
            },
            Some(a) => DeviceListState {
                devices: a
                    .devices
                    .iter()
                    .filter_map(|(id, d)| {
                        d.identity.map(|identity| DeviceInfo {
                            device_id: *id,
                            identity,
                        })
                    })
                    .collect(),
                next_device_id: a.next_device_id,
                list: a.device_list.clone(),
                rekey_device: a.rekey_device,
            },
        })
    }

    async fn replace_device_list(
        &self,
        account: &AccountId,
        list: &NewDeviceList<'_>,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
    ) -> Result<ReplaceListOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(acct) = inner.accounts.get_mut(account) else {
            return Ok(ReplaceListOutcome::DevicesChanged);
        };
        if acct.device_list.as_ref().map(|l| l.list_version) != expected_version {
            return Ok(ReplaceListOutcome::VersionChanged);
        }
        if acct.devices.is_empty() {
            return Ok(ReplaceListOutcome::DevicesChanged);
        }
        let mut new_identity = None;
        for (id, identity) in list.devices {
            if Some(*id) == new_device {
                new_identity = Some(*identity);
            } else if acct.devices.get(id).and_then(|d| d.identity) != Some(*identity) {
                return Ok(ReplaceListOutcome::DevicesChanged);
            }
        }
        let mut next = acct.next_device_id.max(list.next_device_id);
        if let Some(id) = new_device {
            let Some(identity) = new_identity else {
                return Ok(ReplaceListOutcome::DevicesChanged);
            };
            if id < acct.next_device_id {
                return Ok(ReplaceListOutcome::DevicesChanged);
            }
            next = next.max(id.saturating_add(1));
            acct.devices.insert(
                id,
                DeviceRow {
                    identity: Some(identity),
                    last_seen: now,
                    ..DeviceRow::default()
                },
            );
        }
        let listed: BTreeSet<u32> = list.devices.iter().map(|(id, _)| *id).collect();
        let removed: Vec<u32> = acct
            .devices
            .keys()
            .copied()
            .filter(|id| !listed.contains(id))
            .collect();
        for id in &removed {
            acct.devices.remove(id);
        }
        acct.next_device_id = next;
        acct.rekey_device = None;
        if acct
            .key_backup
            .as_ref()
            .is_some_and(|b| b.account_key != *list.account_key)
        {
            acct.key_backup = None;
        }
        if acct
            .business_profile
            .as_ref()
            .is_some_and(|p| p.account_key != *list.account_key)
        {
            acct.business_profile = None;
        }
        acct.device_list = Some(StoredDeviceList {
            account_key: *list.account_key,
            list_version: list.list_version,
            next_device_id: list.next_device_id,
            bytes: list.bytes.to_vec(),
        });
        Ok(ReplaceListOutcome::Stored { removed })
    }

    async fn put_account_key_backup(
        &self,
        device: &DeviceAddress,
        backup: &AccountKeyBackup,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(a) = inner.accounts.get_mut(&device.account) else {
            return Ok(false);
        };
        let registered = a
            .devices
            .get(&device.device.0)
            .is_some_and(|d| d.identity.is_some());
        let same_key = a
            .device_list
            .as_ref()
            .is_some_and(|l| l.account_key == backup.account_key);
        if !(registered && same_key) {
            return Ok(false);
        }
        a.key_backup = Some(backup.clone());
        Ok(true)
    }

    async fn account_key_backup(
        &self,
        account: &AccountId,
    ) -> Result<Option<AccountKeyBackup>, StoreError> {
        Ok(self
            .lock()
            .accounts
            .get(account)
            .and_then(|a| a.key_backup.clone()))
    }

    async fn put_business_profile(
        &self,
        device: &DeviceAddress,
        profile: &NewBusinessProfile<'_>,
    ) -> Result<PutProfileOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(a) = inner.accounts.get_mut(&device.account) else {
            return Ok(PutProfileOutcome::ListChanged);
        };
        let Some(identity) = a.devices.get(&device.device.0).and_then(|d| d.identity) else {
            return Ok(PutProfileOutcome::ListChanged);
        };
        let Some(list) = a
            .device_list
            .as_ref()
            .filter(|l| l.account_key == *profile.account_key)
        else {
            return Ok(PutProfileOutcome::ListChanged);
        };
        if business_owner_identity(&list.bytes, device.device.0)? != Some(identity) {
            return Ok(PutProfileOutcome::ListChanged);
        }
        if !profile_may_replace(a.business_profile.as_ref(), profile) {
            return Ok(PutProfileOutcome::Stale);
        }
        a.business_profile = Some(StoredBusinessProfile {
            account_key: *profile.account_key,
            profile_version: profile.profile_version,
            profile: profile.profile.to_vec(),
            route_version: profile.route_version,
            payload: profile.payload.to_vec(),
        });
        Ok(PutProfileOutcome::Stored)
    }

    async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<StoredBusinessProfile>, StoreError> {
        Ok(self
            .lock()
            .accounts
            .get(account)
            .and_then(|a| a.business_profile.clone()))
    }

    async fn take_quotas(
        &self,
        checks: &[QuotaCheck],
        now: u64,
    ) -> Result<QuotaOutcome, StoreError> {
        let mut inner = self.lock();
        let mut next = Vec::with_capacity(checks.len());
        for (index, q) in checks.iter().enumerate() {
            let key = (q.kind, q.subject.clone());
            let tat = inner.quotas.get(&key).copied();
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
        inner.quotas.extend(next);
        Ok(QuotaOutcome::Taken)
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn open_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.provisioning.contains_key(id) {
            return Err(StoreError::backend_msg("provisioning id exists"));
        }
        inner.provisioning.insert(*id, (expires_at, None));
        Ok(())
    }

    async fn put_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.provisioning.get_mut(id) {
            Some((expires_at, slot @ None)) if *expires_at > now => {
                *slot = Some(envelope.to_vec());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn take_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        now: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut inner = self.lock();
        match inner.provisioning.get(id) {
            Some((expires_at, Some(_))) if *expires_at > now => Ok(inner
                .provisioning
                .remove(id)
                .and_then(|(_, envelope)| envelope)),
            _ => Ok(None),
        }
    }

    async fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError> {
        let mut inner = self.lock();
        let before = inner.codes.len();
        inner.codes.retain(|_, c| c.expires_at > now);
        let codes = (before - inner.codes.len()) as u64;
        let mut envelopes = 0u64;
        for d in inner
            .accounts
            .values_mut()
            .flat_map(|a| a.devices.values_mut())
        {
            let before = d.mailbox.len();
            d.mailbox
                .retain(|_, e| e.timestamp.saturating_add(mailbox_ttl) > now);
            envelopes += (before - d.mailbox.len()) as u64;
        }
        inner.quotas.retain(|_, tat| *tat > now);
        inner
            .provisioning
            .retain(|_, (expires_at, _)| *expires_at > now);
        Ok(SweepCounts { codes, envelopes })
    }
}
