//! [`Store`] for [`PgStore`]: each method is the inherent method of the same name.

use super::PgStore;
use crate::StoreError;
use crate::store::*;
use sealpost_wire::relay::{DeviceInfo, PROVISIONING_ID_LEN};
use sealpost_wire::{AccountId, DeviceAddress, IdentityBytes};

/// No early delivery ([`Store::subscribe`] and [`Store::settled`] keep their defaults): a
/// send's commit is its only notice, on this node through [`Store::enqueue`] returning and
/// on the others through the deployment's wake-ups.
impl Store for PgStore {
    async fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        PgStore::put_code(self, account, mac, expires_at).await
    }

    async fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> Result<CodeAttempt, StoreError> {
        PgStore::begin_code_attempt(self, account, now, max_attempts).await
    }

    async fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        PgStore::register_device(self, account, identity, code_mac, reglock, now).await
    }

    async fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        PgStore::set_registration_lock(self, account, verifier, now).await
    }

    async fn touch_device(&self, device: &DeviceAddress, now: u64) -> Result<(), StoreError> {
        PgStore::touch_device(self, device, now).await
    }

    async fn device_activity(&self, account: &AccountId) -> Result<Vec<DeviceSeen>, StoreError> {
        PgStore::device_activity(self, account).await
    }

    async fn registration_lock(
        &self,
        account: &AccountId,
    ) -> Result<Option<RegLockState>, StoreError> {
        PgStore::registration_lock(self, account).await
    }

    async fn put_account_key_backup(
        &self,
        device: &DeviceAddress,
        backup: &AccountKeyBackup,
    ) -> Result<bool, StoreError> {
        PgStore::put_account_key_backup(self, device, backup).await
    }

    async fn account_key_backup(
        &self,
        account: &AccountId,
    ) -> Result<Option<AccountKeyBackup>, StoreError> {
        PgStore::account_key_backup(self, account).await
    }

    async fn put_business_profile(
        &self,
        device: &DeviceAddress,
        profile: &NewBusinessProfile<'_>,
    ) -> Result<PutProfileOutcome, StoreError> {
        PgStore::put_business_profile(self, device, profile).await
    }

    async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<StoredBusinessProfile>, StoreError> {
        PgStore::business_profile(self, account).await
    }

    async fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        now: u64,
    ) -> Result<PutVaultOutcome, StoreError> {
        PgStore::put_vault(self, account, vault, max_vaults, now).await
    }

    async fn vault(&self, account: &AccountId) -> Result<Option<VaultRow>, StoreError> {
        PgStore::vault(self, account).await
    }

    async fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        now: u64,
    ) -> Result<VaultAttempt, StoreError> {
        PgStore::begin_vault_evaluation(self, account, vault_id, max_attempts, now).await
    }

    async fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        now: u64,
    ) -> Result<ConfirmOutcome, StoreError> {
        PgStore::confirm_vault(self, account, vault_id, verifier, now).await
    }

    async fn delete_vault(&self, account: &AccountId) -> Result<bool, StoreError> {
        PgStore::delete_vault(self, account).await
    }

    async fn device_identity(
        &self,
        device: &DeviceAddress,
    ) -> Result<Option<IdentityBytes>, StoreError> {
        PgStore::device_identity(self, device).await
    }

    async fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError> {
        PgStore::list_devices(self, account).await
    }

    async fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> Result<UploadOutcome, StoreError> {
        PgStore::store_prekeys(self, device, keys, limits).await
    }

    async fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        PgStore::prekey_counts(self, device).await
    }

    async fn take_bundles(
        &self,
        account: &AccountId,
    ) -> Result<Option<Vec<TakenBundle>>, StoreError> {
        PgStore::take_bundles(self, account).await
    }

    async fn enqueue(&self, message: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        PgStore::enqueue(self, message).await
    }

    async fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        PgStore::mailbox(self, device, after, limit).await
    }

    async fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError> {
        PgStore::ack(self, device, server_ids).await
    }

    async fn sender_seq(&self, device: &DeviceAddress) -> Result<u64, StoreError> {
        PgStore::sender_seq(self, device).await
    }

    async fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError> {
        PgStore::queue_depth(self, device).await
    }

    async fn total_queued(&self) -> Result<u64, StoreError> {
        PgStore::total_queued(self).await
    }

    async fn device_list_state(&self, account: &AccountId) -> Result<DeviceListState, StoreError> {
        PgStore::device_list_state(self, account).await
    }

    async fn replace_device_list(
        &self,
        account: &AccountId,
        list: &NewDeviceList<'_>,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
    ) -> Result<ReplaceListOutcome, StoreError> {
        PgStore::replace_device_list(self, account, list, expected_version, new_device, now).await
    }

    async fn take_quotas(
        &self,
        checks: &[QuotaCheck],
        now: u64,
    ) -> Result<QuotaOutcome, StoreError> {
        PgStore::take_quotas(self, checks, now).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        PgStore::health(self).await
    }

    async fn open_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        PgStore::open_provisioning(self, id, expires_at).await
    }

    async fn put_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        PgStore::put_provisioning(self, id, envelope, now).await
    }

    async fn take_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        now: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        PgStore::take_provisioning(self, id, now).await
    }

    async fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError> {
        PgStore::sweep(self, now, mailbox_ttl).await
    }
}
