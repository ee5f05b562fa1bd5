//! Storage behind a trait: accounts and devices, verification codes, prekeys, mailboxes,
//! the registration lock and guardian vaults (spec/pin.md sections 9–10).
//!
//! # The contract
//!
//! Every [`Store`] method is `async` and is **one transaction**: it either applies all of its
//! changes or none, and concurrent calls behave as if run one after the other. A method that
//! says *durably* resolves only once its changes survive a crash (SQLite: the WAL is flushed;
//! PostgreSQL: the commit returned with `synchronous_commit = on`). Times are Unix
//! milliseconds supplied by the caller; stores never read a clock. The futures are `Send`
//! (the relay runs requests on a multi-threaded runtime); a store may need to be polled
//! inside a tokio runtime (SQLite runs its reads on tokio's blocking pool).
//!
//! # Delivery: commit notices, early delivery, wake-ups
//!
//! The relay delivers a device's mailbox by reading it ([`Store::mailbox`], oldest first,
//! after the last server id it pushed) whenever it learns that something may have arrived.
//! It learns that in one of three ways, and a backend only has to provide the first:
//!
//! 1. **Commit notices.** [`Store::enqueue`] resolves once the envelopes are committed; the
//!    relay then wakes the recipients' deliveries, which read their mailboxes. Nothing more
//!    is needed for a correct backend.
//! 2. **Early delivery** (optional, SQLite). A store may publish the envelopes it writes on a
//!    [`MailFeed`] ([`Store::subscribe`]) *before* their commit is durable, so delivery
//!    overlaps the flush. The feed's contract: per device, envelopes appear in increasing
//!    `server_id` order; an envelope that appears is either committed afterwards or never
//!    stored (its commit failed; its id is never used again); and once
//!    [`Store::settled`] resolves, every envelope published before it was called is
//!    committed (visible to [`Store::mailbox`]), so a reader that registers for a device,
//!    then awaits `settled`, then reads the mailbox misses nothing: each envelope is in the
//!    read or reaches it through the feed.
//! 3. **Wake-ups from elsewhere** (several relay nodes on one database): a hint "mail up to
//!    server id X is committed for device D" from a message bus is handled exactly like a
//!    local commit notice (the delivery reads the mailbox); a lost hint delays, never loses,
//!    an envelope, because the mailbox is the truth.
//!
//! # Backends
//!
//! [`MemoryStore`] (tests, fuzzing) and, with the `server` feature, [`SqliteStore`]
//! (production, with early delivery). The relay holds its store as an [`AnyStore`], an
//! enum of the backends that implements [`Store`] by delegation: the trait's `async`
//! methods make it not dyn-compatible, and an enum keeps the handler and the server
//! non-generic (compiled once, not once per backend) while each call still dispatches
//! statically within its arm. A new backend is a new variant (one line in the delegation
//! macro). One conformance suite (`store::conformance::run`, test-only) takes a store
//! factory and runs against every backend.

mod addressing;
mod any;
mod business;
mod device_lists;
#[cfg(feature = "server")]
mod feed;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "server")]
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

pub use addressing::Addressing;
pub use any::AnyStore;
pub use business::{
    NewBusinessProfile, PutProfileOutcome, StoredBusinessProfile, business_owner_identity,
    profile_may_replace,
};
pub use device_lists::{
    DeviceListState, NewDeviceList, ReplaceListOutcome, StoredDeviceList, kept_on_recovery,
};
#[cfg(feature = "server")]
pub use feed::{MailFeed, MailPublisher, Written, mail_feed};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{
    DEFAULT_POOL_SIZE, MAX_TX_ATTEMPTS, PG_SCHEMA_VERSION, PgStore, PgStoreBuilder, SEND_BATCH_MAX,
    SEND_BATCH_MAX_BYTES, SEND_LANES,
};
pub use sealpost_wire::devices::AccountKeyBackup;
#[cfg(feature = "server")]
pub use sqlite::{LEDGER_FILE, RollbackReason, SCHEMA_VERSION, SqliteStore, VaultRollback};

use crate::StoreError;
use crate::ratelimit::Rate;
use sealpost_wire::relay::{DeviceInfo, MESSAGE_ID_LEN, OutgoingEnvelope, PROVISIONING_ID_LEN};
use sealpost_wire::{
    AccountId, DeviceAddress, IdentityBytes, KemPreKeyPublic, PreKeyBundle, SignedPreKeyPublic,
};

/// Length of a verification-code MAC (HMAC-SHA256).
pub const CODE_MAC_LEN: usize = 32;
/// Length of a registration-lock or success verifier (SHA-256).
pub const VERIFIER_LEN: usize = 32;
/// Length of a guardian's stored key share (`index || k_i`).
pub const SHARE_LEN: usize = 33;
/// Length of a vault id.
pub const VAULT_ID_LEN: usize = 16;
/// Largest `sender_seq` a store records (2^63 - 1, SQLite's largest integer); larger values
/// are recorded as this (spec/relay.md section 3.7).
pub const MAX_SENDER_SEQ: u64 = i64::MAX as u64;

/// The registration-lock rule [`Store::register_device`] applies (spec/pin.md section 10).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RegLockPolicy {
    /// `SHA-256("Sealpost_RegLock_Verifier_v1" || reglock_token)` of the token presented with
    /// the registration, if any.
    pub presented: Option<[u8; VERIFIER_LEN]>,
    /// Wrong tokens after which the store stops checking (`REGLOCK_MAX_ATTEMPTS`).
    pub max_failures: u32,
    /// The lock lapses `lapse` milliseconds after `last_seen` (`REGLOCK_LAPSE`).
    pub lapse: u64,
}

impl std::fmt::Debug for RegLockPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegLockPolicy")
            .field("presented", &self.presented.map(|_| "<redacted>"))
            .field("max_failures", &self.max_failures)
            .field("lapse", &self.lapse)
            .finish()
    }
}

/// An account's registration-lock state, as [`Store::registration_lock`] reports it.
#[derive(Clone, PartialEq, Eq)]
pub struct RegLockState {
    /// The stored verifier, if a lock is set.
    pub verifier: Option<[u8; VERIFIER_LEN]>,
    /// Wrong tokens since the last successful registration or `SetRegistrationLock`.
    pub failures: u32,
    /// Last time a device of the account was seen (ms): registration, authentication,
    /// close of an authenticated connection, `SetRegistrationLock`.
    pub last_seen: u64,
}

impl std::fmt::Debug for RegLockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegLockState")
            .field("verifier", &self.verifier.map(|_| "<set>"))
            .field("failures", &self.failures)
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

/// When one device was last seen, as [`Store::device_activity`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSeen {
    /// The device id.
    pub device_id: u32,
    /// Unix ms of its creation, its last successful `Authenticate` or the close of its last
    /// authenticated connection, whichever is latest; 0 when never recorded (a device
    /// created before schema version 8 that has not been seen since).
    pub last_seen: u64,
}

/// A guardian's vault row for one account (spec/pin.md section 9). `Debug` prints neither
/// the share nor the verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultRow {
    /// The record's vault id.
    pub vault_id: [u8; VAULT_ID_LEN],
    /// The guardian's key share `index || k_i` (secret).
    pub share: zeroize::Zeroizing<[u8; SHARE_LEN]>,
    /// `SHA-256("Sealpost_PIN_SuccessVerifier_v1" || token_i)`.
    pub success_verifier: [u8; VERIFIER_LEN],
    /// The encoded vault record.
    pub record: Vec<u8>,
    /// Evaluations since the vault was stored or last confirmed.
    pub attempts_used: u32,
}

impl VaultRow {
    /// The share's index (its first byte).
    pub fn index(&self) -> u8 {
        let [index, ..] = *self.share;
        index
    }
}

impl std::fmt::Debug for VaultRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultRow")
            .field("vault_id", &self.vault_id)
            .field("index", &self.index())
            .field("record_len", &self.record.len())
            .field("attempts_used", &self.attempts_used)
            .finish_non_exhaustive()
    }
}

/// Result of [`Store::put_vault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutVaultOutcome {
    /// Stored (replacing the account's earlier vault, if any).
    Stored,
    /// The store already holds `max_vaults` vaults of other accounts. Nothing changed.
    Full,
}

/// Result of [`Store::begin_vault_evaluation`].
#[derive(Clone, PartialEq, Eq)]
pub enum VaultAttempt {
    /// No vault for the account, or another vault id. Nothing changed.
    NotFound,
    /// The vault is held back: the store found at open that its database went back in time
    /// (restored from an older copy), so the vault's attempt count may be lower than the
    /// attempts really made (spec/relay-store.md section 2.1). Nothing changed; the vault
    /// serves again once its owner stores it again or confirms it
    /// ([`Store::confirm_vault`]). Only stores that can tell return it (SQLite).
    RolledBack,
    /// The attempt is counted and committed; evaluate with `share`.
    Counted {
        /// The key share (secret).
        share: zeroize::Zeroizing<[u8; SHARE_LEN]>,
        /// Attempts used, this one included.
        attempts_used: u32,
        /// This was the last permitted attempt: the vault is deleted.
        deleted: bool,
    },
}

impl std::fmt::Debug for VaultAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("NotFound"),
            Self::RolledBack => f.write_str("RolledBack"),
            Self::Counted {
                attempts_used,
                deleted,
                ..
            } => f
                .debug_struct("Counted")
                .field("attempts_used", attempts_used)
                .field("deleted", deleted)
                .finish_non_exhaustive(),
        }
    }
}

/// Result of [`Store::confirm_vault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The verifier matched: the count is reset to zero.
    Confirmed,
    /// The verifier differs. Nothing changed.
    Mismatch,
    /// No vault for the account, or another vault id. Nothing changed.
    NotFound,
}

/// Result of [`Store::begin_code_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeAttempt {
    /// No code is stored for the account.
    Missing,
    /// The stored code has expired (it has been deleted).
    Expired,
    /// `max_attempts` attempts were already made (the code has been deleted).
    Exhausted,
    /// The attempt was counted; compare the presented code's MAC against `mac`.
    Check {
        /// The stored MAC.
        mac: [u8; CODE_MAC_LEN],
        /// Attempts made so far, this one included (1-based).
        attempt: u32,
    },
}

/// Result of [`Store::register_device`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The device was registered with this id; earlier devices were removed.
    Registered {
        /// The new device id.
        device_id: u32,
        /// Ids of the devices that were removed (their prekeys and mail are gone).
        removed: Vec<u32>,
    },
    /// The code (with this MAC) is no longer stored: it was used, replaced or expired
    /// concurrently. Nothing changed.
    CodeGone,
    /// The account's registration lock is active and the presented token is missing, wrong
    /// (counted) or no longer checked. The code stays stored and this attempt is not counted
    /// against it; nothing else changed.
    Locked {
        /// When the lock lapses (ms) unless a device of the account is seen before.
        lapses_at: u64,
        /// Wrong tokens still checked.
        attempts_remaining: u32,
    },
    /// The account has used up the device id space (2^32 - 1 ids). Nothing changed.
    DeviceIdsExhausted,
}

/// One-time and KEM prekey counts of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreKeyCounts {
    /// Stored one-time X25519 prekeys.
    pub one_time_prekeys: u32,
    /// Stored one-time ML-KEM prekeys (the last-resort key is not counted).
    pub kem_prekeys: u32,
}

/// Prekeys to store for a device, already verified by the caller (signatures, KEM key
/// validity, no duplicate ids within the upload, at most one last-resort key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewPreKeys {
    /// Replaces the stored signed prekey.
    pub signed: Option<SignedPreKeyPublic>,
    /// One-time X25519 prekeys to add.
    pub one_time: Vec<(u32, [u8; 32])>,
    /// One-time ML-KEM prekeys to add.
    pub kem_one_time: Vec<KemPreKeyPublic>,
    /// Replaces the stored last-resort ML-KEM prekey.
    pub kem_last_resort: Option<KemPreKeyPublic>,
}

/// Per-device storage bounds for prekeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreKeyLimits {
    /// Most one-time X25519 prekeys stored per device.
    pub max_one_time: u32,
    /// Most one-time ML-KEM prekeys stored per device.
    pub max_kem_one_time: u32,
}

/// Result of [`Store::store_prekeys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Stored; the device's counts afterwards.
    Stored(PreKeyCounts),
    /// The device does not exist (any more). Nothing changed.
    UnknownDevice,
    /// A one-time X25519 id, or a KEM id, is already stored for the device. Nothing changed.
    IdConflict,
    /// Storing would exceed [`PreKeyLimits`]. Nothing changed.
    TooMany,
}

/// A bundle taken by [`Store::take_bundles`], with what the device has left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenBundle {
    /// The bundle (its one-time keys are removed from the store).
    pub bundle: PreKeyBundle,
    /// The device's counts after the take.
    pub remaining: PreKeyCounts,
}

/// A message to queue: one envelope per recipient device.
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    /// The sending device.
    pub sender: &'a DeviceAddress,
    /// The recipient account.
    pub recipient: &'a AccountId,
    /// A device of the recipient account that must not be addressed (the sender itself,
    /// when sending to its own account).
    pub exclude_device: Option<u32>,
    /// Which of the recipient's devices the envelopes must address.
    pub addressing: Addressing,
    /// The sender's message id.
    pub message_id: &'a [u8; MESSAGE_ID_LEN],
    /// The sender's `sender_seq` (spec/relay.md section 3.7): the store raises the sending
    /// device's [`Store::sender_seq`] to it when the message is queued. Never checked.
    pub sender_seq: u64,
    /// Relay acceptance time (Unix ms).
    pub timestamp: u64,
    /// One envelope per device.
    pub envelopes: &'a [OutgoingEnvelope],
    /// Mailbox bound per device.
    pub max_queued: u32,
}

/// Result of [`Store::enqueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Every envelope is committed: `(device_id, server_id)` in request order.
    Queued(Vec<(u32, u64)>),
    /// The recipient account has no devices. Nothing changed.
    UnknownAccount,
    /// The device ids are not exactly the recipient's devices (minus the excluded one),
    /// each once. Nothing changed.
    MismatchedDevices,
    /// This device's mailbox would exceed the bound. Nothing changed.
    QueueFull {
        /// The full device.
        device_id: u32,
    },
}

/// A queued envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Store-wide unique id, increasing in commit order per recipient device
    /// ([`Store::enqueue`]).
    pub server_id: u64,
    /// The sending device.
    pub sender: DeviceAddress,
    /// The sender's message id.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// Acceptance time (Unix ms).
    pub timestamp: u64,
    /// The opaque envelope.
    pub envelope: Vec<u8>,
}

/// What [`Store::sweep`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCounts {
    /// Expired verification codes.
    pub codes: u64,
    /// Envelopes older than the mailbox TTL.
    pub envelopes: u64,
}

/// What a persisted quota counts (spec/relay.md section 7.1). The store keys a quota by
/// `(kind, subject)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum QuotaKind {
    /// `RequestCode`s per source address (subject: the address, IPv6 as its /64).
    CodeSource,
    /// `RequestCode`s per number (subject: the E.164 number).
    CodeNumber,
    /// `RequestCode`s per country calling code (subject: `+` and the code's digits).
    CodeCountry,
    /// `RequestCode`s relay-wide (subject: empty).
    CodeGlobal,
    /// `FetchBundles` per requesting account and target account (subject:
    /// `requester " " target`).
    FetchPair,
    /// `FetchBundles` per target account (subject: the target).
    FetchTarget,
    /// `PublishDeviceList` per account (subject: the account).
    ListPublish,
    /// `LinkDevice` per account (subject: the account).
    LinkAccount,
}

impl QuotaKind {
    /// The stored (and metric) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CodeSource => "code_source",
            Self::CodeNumber => "code_number",
            Self::CodeCountry => "code_country",
            Self::CodeGlobal => "code_global",
            Self::FetchPair => "fetch_pair",
            Self::FetchTarget => "fetch_target",
            Self::ListPublish => "list_publish",
            Self::LinkAccount => "link_account",
        }
    }

    /// The stored number of the kind (never reused).
    pub fn code(self) -> u8 {
        match self {
            Self::CodeSource => 1,
            Self::CodeNumber => 2,
            Self::CodeCountry => 3,
            Self::CodeGlobal => 4,
            Self::FetchPair => 5,
            Self::FetchTarget => 6,
            Self::ListPublish => 7,
            Self::LinkAccount => 8,
        }
    }
}

/// One quota [`Store::take_quotas`] checks and charges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaCheck {
    /// What is counted.
    pub kind: QuotaKind,
    /// Whose (see [`QuotaKind`]).
    pub subject: String,
    /// The allowance ([`crate::ratelimit::gcra`]).
    pub rate: Rate,
}

/// Result of [`Store::take_quotas`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// Every quota had room and each was charged one request.
    Taken,
    /// The quota at `index` (the first, in the caller's order, without room) is used up;
    /// nothing was charged. One request fits again after `retry_after_ms`.
    Exceeded {
        /// Index into the checks.
        index: usize,
        /// Milliseconds until that quota has room for one request.
        retry_after_ms: u64,
    },
}

/// Relay storage. See the module documentation for the transaction, durability, time and
/// delivery conventions: a backend can be written from this trait and those documents.
pub trait Store: Send + Sync {
    /// Stores the MAC of a fresh verification code for `account`, expiring at `expires_at`,
    /// with zero attempts; replaces any earlier code of the account.
    fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts one verification attempt, atomically and durably: a missing code gives
    /// `Missing`; a code with `expires_at <= now` is deleted (`Expired`); a code that has
    /// had `max_attempts` attempts is deleted (`Exhausted`); otherwise the attempt counter
    /// is incremented and committed **before** the MAC is returned (`Check`), so concurrent
    /// or crashing attempts never exceed `max_attempts` comparisons per code.
    fn begin_code_attempt(
        &self,
        account: &AccountId,
        now: u64,
        max_attempts: u32,
    ) -> impl Future<Output = Result<CodeAttempt, StoreError>> + Send;

    /// Registers a device, atomically and durably. Checks, in order: the account's code
    /// MAC is still `code_mac` (else `CodeGone`, nothing changed); then the registration lock
    /// (spec/pin.md section 10): it is active when a verifier is stored and
    /// `now < last_seen + reglock.lapse`; while active, with `failures >= max_failures` or no
    /// presented verifier the result is `Locked` without counting, and with a presented
    /// verifier that differs (compared in constant time) `failures` is incremented and
    /// committed and the result is `Locked`; `Locked` also gives back the code attempt
    /// counted by [`Store::begin_code_attempt`] (the code stays usable). Otherwise the device
    /// is registered: the code is deleted, every existing device of the account is removed
    /// with its prekeys and mailbox, a device with the account's next id is added (ids start
    /// at 1 and are never reused within an account, even across removals), `failures = 0`,
    /// `last_seen = now`, and the verifier is kept if the lock was active and passed, or
    /// cleared if it was absent or lapsed; the account's stored device list
    /// ([`Store::device_list_state`]), account-key backup and business profile
    /// ([`Store::put_business_profile`]) are deleted. Concurrent calls never count more than
    /// `max_failures` wrong tokens.
    ///
    /// **Recovery registration** (spec/relay.md 3.2): when the lock was active and passed
    /// (the PIN's token) and the account has both a stored list and an account-key backup
    /// ([`Store::put_account_key_backup`]), the registered devices that are on the stored
    /// list with their listed identity and a role that does not hold the account key
    /// ([`kept_on_recovery`]) stay registered with their prekeys and mailboxes, the stored
    /// list, the backup and the business profile stay, and the new device is recorded as the account's
    /// `rekey_device` ([`DeviceListState::rekey_device`]) until the next list is stored;
    /// every other device is removed as above. Any other registration clears
    /// `rekey_device`.
    fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        reglock: &RegLockPolicy,
        now: u64,
    ) -> impl Future<Output = Result<RegisterOutcome, StoreError>> + Send;

    /// Sets (`Some`) or clears (`None`) the account's registration-lock verifier, resets its
    /// failure count and sets `last_seen = max(last_seen, now)`; clearing also deletes the
    /// account-key backup. Returns `false` (nothing changed) if the account was never
    /// registered.
    fn set_registration_lock(
        &self,
        account: &AccountId,
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that `device` was seen, in one transaction: the account's
    /// `last_seen = max(last_seen, now)` (the registration lock's clock) and the device's
    /// `last_seen = max(last_seen, now)` (what [`Store::device_activity`] reports). Neither
    /// ever moves back. An unknown account or device is ignored (a removed device's
    /// connection may close after its removal; its account is still touched).
    fn touch_device(
        &self,
        device: &DeviceAddress,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When each device of `account` was last seen (Unix ms; 0 when never recorded, see
    /// spec/relay-store.md), ordered by device id; empty if the account has no devices. A
    /// device's `last_seen` is set when it is created ([`Store::register_device`],
    /// [`Store::replace_device_list`] with a new device) and raised by
    /// [`Store::touch_device`].
    fn device_activity(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Vec<DeviceSeen>, StoreError>> + Send;

    /// The account's registration-lock state; `None` if it was never registered.
    fn registration_lock(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Option<RegLockState>, StoreError>> + Send;

    /// Stores the account's vault, replacing any earlier one, with `attempts_used = 0`
    /// (`vault.attempts_used` is ignored). `Full` (nothing changed) when the account has no
    /// vault and `max_vaults` vaults are stored.
    fn put_vault(
        &self,
        account: &AccountId,
        vault: &VaultRow,
        max_vaults: u64,
        now: u64,
    ) -> impl Future<Output = Result<PutVaultOutcome, StoreError>> + Send;

    /// The account's vault, if any. Does not count.
    fn vault(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Option<VaultRow>, StoreError>> + Send;

    /// Counts one evaluation, in **one durable transaction** committed before this returns:
    /// `NotFound` if there is no vault or its id differs from `vault_id`; `RolledBack` (nothing
    /// counted) if the store holds the vault back after noticing a rollback of its database;
    /// a vault that already
    /// has `attempts_used >= max_attempts` (the limit was lowered) is deleted and `NotFound`;
    /// otherwise `attempts_used += 1`, and if it reaches `max_attempts` the vault is deleted
    /// in the same transaction. Concurrent calls never hand out more than `max_attempts`
    /// shares per vault between confirmations.
    fn begin_vault_evaluation(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        max_attempts: u32,
        now: u64,
    ) -> impl Future<Output = Result<VaultAttempt, StoreError>> + Send;

    /// Compares `verifier` with the stored success verifier in constant time; equal: resets
    /// `attempts_used` to 0 (`Confirmed`) and, in a store that held the vault back
    /// ([`VaultAttempt::RolledBack`]), serves it again: the token proves a recovery that
    /// succeeded elsewhere.
    fn confirm_vault(
        &self,
        account: &AccountId,
        vault_id: &[u8; VAULT_ID_LEN],
        verifier: &[u8; VERIFIER_LEN],
        now: u64,
    ) -> impl Future<Output = Result<ConfirmOutcome, StoreError>> + Send;

    /// Deletes the account's vault; `true` if there was one.
    fn delete_vault(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The registered identity of a device, if it exists.
    fn device_identity(
        &self,
        device: &DeviceAddress,
    ) -> impl Future<Output = Result<Option<IdentityBytes>, StoreError>> + Send;

    /// The devices of an account, ordered by id (empty if none).
    fn list_devices(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Vec<DeviceInfo>, StoreError>> + Send;

    /// Stores verified prekeys for an existing device, atomically: the signed prekey and
    /// the last-resort KEM prekey replace the stored ones; one-time keys are added. Fails
    /// without changes if the device is unknown, an id collides with a stored one (one-time
    /// X25519 ids among themselves; KEM ids across one-time and last-resort, except that a
    /// new last-resort key may reuse the id of the last-resort key it replaces), or the
    /// result would exceed `limits`.
    fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> impl Future<Output = Result<UploadOutcome, StoreError>> + Send;

    /// The device's prekey counts (zero for an unknown device).
    fn prekey_counts(
        &self,
        device: &DeviceAddress,
    ) -> impl Future<Output = Result<PreKeyCounts, StoreError>> + Send;

    /// Takes one bundle per device of `account`, ordered by device id, atomically: for
    /// each device, removes and returns its lowest-id one-time X25519 prekey (if any) and
    /// its lowest-id one-time KEM prekey, else returns its last-resort KEM prekey. Devices
    /// without a signed prekey or without any KEM prekey are skipped (and nothing is taken
    /// from them). Each one-time prekey is returned by at most one call, ever, however
    /// calls interleave. `None` if the account has no devices.
    fn take_bundles(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Option<Vec<TakenBundle>>, StoreError>> + Send;

    /// Queues one envelope per recipient device, atomically (all or none) and durably:
    /// when this returns `Queued`, the envelopes are committed. Checks, in order: the
    /// recipient has devices (`UnknownAccount`); the envelopes address the recipient's
    /// devices except `exclude_device` as [`NewMessage::addressing`] asks
    /// ([`Addressing::accepts`]; otherwise `MismatchedDevices`); no
    /// mailbox would exceed `max_queued` (`QueueFull`). Server ids are unique across the
    /// store and, **per recipient device**, increase in commit order (a delivery reads a
    /// device's mailbox after the last id it pushed, so a later commit must never carry a
    /// lower id for the same device; across devices no order is promised), and are **never
    /// reused**, not even the ids of
    /// envelopes whose commit failed or was cut short by a crash (an id may have reached a
    /// recipient through the [`MailFeed`] before the commit, and a later `Ack` of it must
    /// not delete another envelope). In the same transaction, when `Queued`,
    /// the sending device's [`Store::sender_seq`] becomes `max(stored, message.sender_seq)`
    /// (a sender that no longer exists is not recorded); a refused message changes nothing.
    fn enqueue(
        &self,
        message: &NewMessage<'_>,
    ) -> impl Future<Output = Result<EnqueueOutcome, StoreError>> + Send;

    /// Up to `limit` envelopes queued for `device` with `server_id > after`, in increasing
    /// `server_id` order.
    fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEnvelope>, StoreError>> + Send;

    /// Deletes the listed envelopes from `device`'s mailbox, atomically; ids not queued for
    /// this device are ignored. Returns how many were deleted.
    fn ack(
        &self,
        device: &DeviceAddress,
        server_ids: &[u64],
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Early delivery (see the module documentation): a feed of the envelopes this store
    /// writes, published possibly **before** they are durable, per device in increasing
    /// `server_id` order. Envelopes written by calls made after this returns are published;
    /// an envelope whose commit then fails is never stored and its id is never reused. One
    /// subscriber: the first call gets the feed, later calls `None`. The default (a store
    /// without early delivery, whose [`Store::enqueue`] commit is the only notice) is `None`.
    #[cfg(feature = "server")]
    fn subscribe(&self) -> impl Future<Output = Option<MailFeed>> + Send {
        std::future::ready(None)
    }

    /// Resolves once every envelope published on the [`MailFeed`] before this call is
    /// committed (visible to [`Store::mailbox`], not necessarily durable) or has failed. A
    /// delivery that starts awaits this before its first read, so that an envelope published
    /// before the delivery was registered is in that read. The default resolves at once,
    /// which is right for a store that publishes nothing.
    fn settled(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    /// The highest `sender_seq` of a message queued from `device` since it was registered
    /// (0 if none, or for an unknown device). A new registration is a new device and starts
    /// at 0; deleting envelopes (acks, TTL) never lowers it.
    fn sender_seq(
        &self,
        device: &DeviceAddress,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Envelopes queued for `device`.
    fn queue_depth(
        &self,
        device: &DeviceAddress,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Envelopes queued for all devices.
    fn total_queued(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// An account's registered devices, its device-id counter and its stored device list
    /// (spec/relay.md 3.9), read in one transaction.
    fn device_list_state(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<DeviceListState, StoreError>> + Send;

    /// Replaces the account's stored device list, atomically and durably (spec/relay.md 3.9,
    /// 3.10). The caller has verified `list` and checked it against the state it read with
    /// [`Store::device_list_state`]; this re-checks, inside the transaction, what a concurrent
    /// call may have changed since: the stored list's version is `expected_version` (`None`:
    /// no list is stored) else `VersionChanged`; the account has devices, every listed device
    /// other than `new_device` is registered with its listed identity, and `new_device`'s id
    /// is not below the account's device-id counter, else `DevicesChanged`. Then: the list is
    /// stored; every registered device it does not name is removed with its prekeys and
    /// mailbox; `new_device` (when `Some`, it must be on the list) is registered with its
    /// identity at `now`; and the account's device-id counter becomes at least
    /// `list.next_device_id` (and above `new_device`'s id), so ids are never reused; an
    /// account-key backup and a business profile under another account key than the list's
    /// are deleted, and the account's `rekey_device` is cleared. So two calls with the same
    /// `expected_version` never both succeed.
    fn replace_device_list(
        &self,
        account: &AccountId,
        list: &NewDeviceList<'_>,
        expected_version: Option<u64>,
        new_device: Option<u32>,
        now: u64,
    ) -> impl Future<Output = Result<ReplaceListOutcome, StoreError>> + Send;

    /// Stores (replaces) the account-key backup of `device`'s account (spec/relay.md 3.13),
    /// atomically and durably, if `device` is registered and the account's stored list has
    /// the backup's account key; otherwise `false` and nothing changes. (The caller checked
    /// that `device` holds the account key on the list it read.)
    fn put_account_key_backup(
        &self,
        device: &DeviceAddress,
        backup: &AccountKeyBackup,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The account's account-key backup, if one is stored.
    fn account_key_backup(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Option<AccountKeyBackup>, StoreError>> + Send;

    /// Stores (replaces) the business profile of `device`'s account with its statements
    /// (spec/relay.md 3.14), atomically and durably. The caller verified the profile under
    /// the stored list's account key and each statement, and checked the rules below against
    /// what it read; the transaction repeats them against the current state, in this order:
    ///
    /// 1. `device` is registered, the account has a stored list whose account key is
    ///    `profile.account_key`, and that list names `device` with its registered identity
    ///    in the role `owner` ([`business_owner_identity`]: so the list is a business list
    ///    and the device its key holder); otherwise [`PutProfileOutcome::ListChanged`];
    /// 2. the version rule ([`profile_may_replace`]): when a profile under the same account
    ///    key is stored, `profile.profile_version` is above its version, or equal with
    ///    `profile.profile` identical to its profile bytes (which replaces the statements);
    ///    otherwise [`PutProfileOutcome::Stale`]. A profile under another account key is
    ///    replaced.
    ///
    /// On a refusal nothing changes. The account's stored profile is deleted, in their
    /// transactions, by every registration that is not a recovery registration (with the
    /// stored list, [`Store::register_device`]) and by a [`Store::replace_device_list`]
    /// under another account key than the profile's; a recovery registration keeps it.
    fn put_business_profile(
        &self,
        device: &DeviceAddress,
        profile: &NewBusinessProfile<'_>,
    ) -> impl Future<Output = Result<PutProfileOutcome, StoreError>> + Send;

    /// The account's stored business profile, if any: its account key, version, profile
    /// bytes and the payload it was published with (served byte for byte).
    fn business_profile(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Option<StoredBusinessProfile>, StoreError>> + Send;

    /// Checks every quota of `checks` at `now` with [`crate::ratelimit::gcra`] and, only if
    /// all have room, charges each one request, atomically and durably (a restart does not
    /// reset a quota). A quota never charged, or charged so long ago that it is full
    /// again, has its whole allowance. Quotas are independent of every other table.
    fn take_quotas(
        &self,
        checks: &[QuotaCheck],
        now: u64,
    ) -> impl Future<Output = Result<QuotaOutcome, StoreError>> + Send;

    /// Opens provisioning id `id` (spec/relay.md 3.11), empty, expiring at `expires_at`.
    /// Ids are 16 random bytes drawn by the relay; an id that exists already is
    /// [`StoreError::Backend`] (it cannot happen by chance) and changes nothing.
    fn open_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        expires_at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Leaves `envelope` for provisioning id `id`, durably: `true` if the id exists, has
    /// `expires_at > now` and no envelope yet; otherwise `false` and nothing changes (an id
    /// takes exactly one envelope, also under concurrent calls from several nodes).
    fn put_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &[u8],
        now: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes the envelope left for `id`: returns it and deletes the id, if the id has an
    /// envelope and `expires_at > now`; otherwise `None` and nothing changes. Concurrent
    /// calls return an envelope at most once.
    fn take_provisioning(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        now: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The health probe behind the relay's readiness (`GET /readyz`, spec/relay.md section
    /// 5): `Ok` when the store can take a write now, else the reason, normally
    /// [`StoreError::Unavailable`]. It changes nothing and must be cheap (it runs at most about
    /// once a second); it should answer promptly, and the caller bounds it with a timeout (a
    /// probe that does not answer in time counts as unavailable). PostgreSQL: a trivial query
    /// on a pooled connection to a server not in recovery; SQLite: the writer thread is alive,
    /// no flush has failed, the last write group did not fail with an I/O error, and the
    /// writer answers a no-op job; memory: always `Ok`.
    fn health(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes codes and provisioning ids with `expires_at <= now`, envelopes with
    /// `timestamp + mailbox_ttl <= now` and quotas that are full again at `now` (forgetting
    /// them changes no decision), atomically.
    fn sweep(
        &self,
        now: u64,
        mailbox_ttl: u64,
    ) -> impl Future<Output = Result<SweepCounts, StoreError>> + Send;
}
