//! [`AnyStore`]: the relay's store, one of the backends, implementing [`Store`] by delegation.

use super::*;

/// One of the store backends. The handler and the server hold this (not a generic `S:
/// Store`, not a `dyn Store`, which `async` trait methods rule out): they are compiled once,
/// and each call dispatches with one `match` to the backend's own future. A new backend is a
/// new variant here and one arm in `each!` below.
#[non_exhaustive]
pub enum AnyStore {
    /// In memory (tests, fuzzing).
    Memory(MemoryStore),
    /// SQLite, with early delivery.
    #[cfg(feature = "server")]
    Sqlite(SqliteStore),
    /// PostgreSQL, shared by any number of relay nodes.
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("AnyStore::Memory"),
            #[cfg(feature = "server")]
            Self::Sqlite(s) => f.debug_tuple("AnyStore::Sqlite").field(s).finish(),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => f.debug_tuple("AnyStore::Postgres").field(s).finish(),
        }
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(s: MemoryStore) -> Self {
        Self::Memory(s)
    }
}

#[cfg(feature = "server")]
impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> Self {
        Self::Sqlite(s)
    }
}

#[cfg(feature = "postgres")]
impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> Self {
        Self::Postgres(s)
    }
}

impl AnyStore {
    /// Finishes queued writes and closes the backend (SQLite: checkpoints the WAL and closes
    /// the database; blocks until the writer thread has stopped; PostgreSQL: closes the
    /// pool). Later calls fail with
    /// [`StoreError::Closed`]. Idempotent.
    pub fn close(&self) {
        match self {
            Self::Memory(_) => {}
            #[cfg(feature = "server")]
            Self::Sqlite(s) => s.close(),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.close(),
        }
    }
}

/// `each!(self, s => call)`: awaits `call` (a backend's store method, not yet awaited) with
/// `s` bound to the backend.
///
/// An `async fn` here is as large as the largest backend future it may hold, and every
/// request's task carries it: PostgreSQL's futures (tokio-postgres) are about a kilobyte
/// and more, so they are boxed, one allocation per call next to a network round trip, and
/// the in-process backends' calls do not pay for them (measured: benches/README.md).
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Memory($s) => $e.await,
            #[cfg(feature = "server")]
            AnyStore::Sqlite($s) => $e.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => Box::pin($e).await,
        }
    };
}

impl Store for AnyStore {
    async fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.put_code(account, mac, expires_at))
    }

    async fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> Result<CodeAttempt, StoreError> {
        each!(self, s => s.begin_code_attempt(account, now, max_attempts))
    }

    async fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        each!(self, s => s.register_device(account, identity, code_mac, reglock, now))
    }

    async fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.set_registration_lock(account, verifier, now))
    }

    async fn touch_device(&self, device: &DeviceAddress, now: u64) -> Result<(), StoreError> {
        each!(self, s => s.touch_device(device, now))
    }

    async fn device_activity(&self, account: &AccountId) -> Result<Vec<DeviceSeen>, StoreError> {
        each!(self, s => s.device_activity(account))
    }

    async fn registration_lock(
        &self,
        account: &AccountId,
    ) -> Result<Option<RegLockState>, StoreError> {
        each!(self, s => s.registration_lock(account))
    }

    async fn put_account_key_backup(
        &self,
        device: &DeviceAddress,
        backup: &AccountKeyBackup,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.put_account_key_backup(device, backup))
    }

    async fn account_key_backup(
        &self,
        account: &AccountId,
    ) -> Result<Option<AccountKeyBackup>, StoreError> {
        each!(self, s => s.account_key_backup(account))
    }

    async fn put_business_profile(
        &self,
        device: &DeviceAddress,
        profile: &NewBusinessProfile<'_>,
    ) -> Result<PutProfileOutcome, StoreError> {
        each!(self, s => s.put_business_profile(device, profile))
    }

    async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<StoredBusinessProfile>, StoreError> {
        each!(self, s => s.business_profile(account))
    }

    async fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        now: u64,
    ) -> Result<PutVaultOutcome, StoreError> {
        each!(self, s => s.put_vault(account, vault, max_vaults, now))
    }

    async fn vault(&self, account: &AccountId) -> Result<Option<VaultRow>, StoreError> {
        each!(self, s => s.vault(account))
    }

    async fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        now: u64,
    ) -> Result<VaultAttempt, StoreError> {
        each!(self, s => s.begin_vault_evaluation(account, vault_id, max_attempts, now))
    }

    async fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        now: u64,
    ) -> Result<ConfirmOutcome, StoreError> {
        each!(self, s => s.confirm_vault(account, vault_id, verifier, now))
    }

    async fn delete_vault(&self, account: &AccountId) -> Result<bool, StoreError> {
        each!(self, s => s.delete_vault(account))
    }

    async fn device_identity(
        &self,
        device: &DeviceAddress,
    ) -> Result<Option<IdentityBytes>, StoreError> {
        each!(self, s => s.device_identity(device))
    }

    async fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError> {
        each!(self, s => s.list_devices(account))
    }

    async fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> Result<UploadOutcome, StoreError> {
        each!(self, s => s.store_prekeys(device, keys, limits))
    }

    async fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        each!(self, s => s.prekey_counts(device))
    }

    async fn take_bundles(
        &self,
        account: &AccountId,
    ) -> Result<Option<Vec<TakenBundle>>, StoreError> {
        each!(self, s => s.take_bundles(account))
    }

    async fn enqueue(&self, message: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        each!(self, s => s.enqueue(message))
    }

    async fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        each!(self, s => s.mailbox(device, after, limit))
    }

    async fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError> {
        each!(self, s => s.ack(device, server_ids))
    }

    #[cfg(feature = "server")]
    async fn subscribe(&self) -> Option<MailFeed> {
        each!(self, s => s.subscribe())
    }

    async fn settled(&self) -> Result<(), StoreError> {
        each!(self, s => s.settled())
    }

    async fn sender_seq(&self, device: &DeviceAddress) -> Result<u64, StoreError> {
        each!(self, s => s.sender_seq(device))
    }

    async fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError> {
        each!(self, s => s.queue_depth(device))
    }

    async fn total_queued(&self) -> Result<u64, StoreError> {
        each!(self, s => s.total_queued())
    }

    async fn device_list_state(&self, account: &AccountId) -> Result<DeviceListState, StoreError> {
        each!(self, s => s.device_list_state(account))
    }

    async fn replace_device_list(
        &self,
        account: &AccountId,
        list: &NewDeviceList<'_>,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
    ) -> Result<ReplaceListOutcome, StoreError> {
        each!(self, s => s.replace_device_list(account, list, expected_version, new_device, now))
    }

    async fn take_quotas(
        &self,
        checks: &[QuotaCheck],
        now: u64,
    ) -> Result<QuotaOutcome, StoreError> {
        each!(self, s => s.take_quotas(checks, now))
    }

    async fn open_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.open_provisioning(id, expires_at))
    }

    async fn put_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.put_provisioning(id, envelope, now))
    }

    async fn take_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        now: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.take_provisioning(id, now))
    }

    async fn health(&self) -> Result<(), StoreError> {
        each!(self, s => s.health())
    }

    async fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError> {
        each!(self, s => s.sweep(now, mailbox_ttl))
    }
}
