//! Storage behind a trait: accounts and devices, verification codes, prekeys, mailboxes.
//!
//! Every method is synchronous and is **one transaction**: it either applies all of its
//! changes or none, and concurrent calls behave as if run one after the other. Callers in
//! async code run them on a blocking thread. Times are Unix milliseconds supplied by the
//! caller; stores never read a clock.
//!
//! Two implementations: [`MemoryStore`] (tests, fuzzing) and, with the `server` feature,
//! [`SqliteStore`] (production). One conformance suite (`store::conformance`, test-only)
//! runs against both.

mod memory;
#[cfg(feature = "server")]
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

pub use memory::MemoryStore;
#[cfg(feature = "server")]
pub use sqlite::{SCHEMA_VERSION, SqliteStore};

use crate::StoreError;
use sealpost_wire::relay::{DeviceInfo, MESSAGE_ID_LEN, OutgoingEnvelope};
use sealpost_wire::{
    AccountId, DeviceAddress, IdentityBytes, KemPreKeyPublic, PreKeyBundle, SignedPreKeyPublic,
};

/// Length of a verification-code MAC (HMAC-SHA256).
pub const CODE_MAC_LEN: usize = 32;

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

/// Receives the outcome of [`Store::enqueue_then`] / [`Store::ack_then`].
pub type Reply<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

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
    /// The sender's message id.
    pub message_id: &'a [u8; MESSAGE_ID_LEN],
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
    /// Relay-wide unique id, increasing in acceptance order.
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

/// Relay storage. See the module documentation for the transaction and time conventions.
pub trait Store: Send + Sync {
    /// Stores the MAC of a fresh verification code for `account`, expiring at `expires_at`,
    /// with zero attempts; replaces any earlier code of the account.
    fn put_code(
        &self,
        account: &AccountId,
        mac: &[u8; CODE_MAC_LEN],
        expires_at: u64,
    ) -> Result<(), StoreError>;

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
    ) -> Result<CodeAttempt, StoreError>;

    /// Registers a device, atomically: deletes the account's code if its MAC is still
    /// `code_mac` (else `CodeGone`, nothing changed), removes every existing device of the
    /// account with its prekeys and mailbox, and adds a device with the account's next id
    /// (ids start at 1 and are never reused within an account, even across removals).
    fn register_device(
        &self,
        account: &AccountId,
        identity: &IdentityBytes,
        code_mac: &[u8; CODE_MAC_LEN],
        now: u64,
    ) -> Result<RegisterOutcome, StoreError>;

    /// The registered identity of a device, if it exists.
    fn device_identity(&self, device: &DeviceAddress) -> Result<Option<IdentityBytes>, StoreError>;

    /// The devices of an account, ordered by id (empty if none).
    fn list_devices(&self, account: &AccountId) -> Result<Vec<DeviceInfo>, StoreError>;

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
    ) -> Result<UploadOutcome, StoreError>;

    /// The device's prekey counts (zero for an unknown device).
    fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError>;

    /// Takes one bundle per device of `account`, ordered by device id, atomically: for
    /// each device, removes and returns its lowest-id one-time X25519 prekey (if any) and
    /// its lowest-id one-time KEM prekey, else returns its last-resort KEM prekey. Devices
    /// without a signed prekey or without any KEM prekey are skipped (and nothing is taken
    /// from them). Each one-time prekey is returned by at most one call, ever, however
    /// calls interleave. `None` if the account has no devices.
    fn take_bundles(&self, account: &AccountId) -> Result<Option<Vec<TakenBundle>>, StoreError>;

    /// Queues one envelope per recipient device, atomically (all or none) and durably:
    /// when this returns `Queued`, the envelopes are committed. Checks, in order: the
    /// recipient has devices (`UnknownAccount`); the envelopes address exactly the
    /// recipient's devices except `exclude_device`, each once (`MismatchedDevices`); no
    /// mailbox would exceed `max_queued` (`QueueFull`). Server ids are unique across the
    /// store and increase in commit order.
    fn enqueue(&self, message: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError>;

    /// [`Store::enqueue`] with the outcome handed to `reply` instead of returned, so that a
    /// caller on an async runtime need not hold a thread while the commit is under way. A
    /// store with its own writer thread queues the work and calls `reply` from that thread
    /// once the outcome is durable (so `reply` must be quick and must not block); the
    /// default runs [`Store::enqueue`] and calls `reply` before returning. `reply` is called
    /// exactly once.
    fn enqueue_then(&self, message: &NewMessage<'_>, reply: Reply<EnqueueOutcome>) {
        reply(self.enqueue(message));
    }

    /// Up to `limit` envelopes queued for `device` with `server_id > after`, in increasing
    /// `server_id` order.
    fn mailbox(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError>;

    /// Deletes the listed envelopes from `device`'s mailbox, atomically; ids not queued for
    /// this device are ignored. Returns how many were deleted.
    fn ack(&self, device: &DeviceAddress, server_ids: &[u64]) -> Result<u32, StoreError>;

    /// [`Store::ack`] with the outcome handed to `reply`, on the terms of
    /// [`Store::enqueue_then`].
    fn ack_then(&self, device: &DeviceAddress, server_ids: &[u64], reply: Reply<u32>) {
        reply(self.ack(device, server_ids));
    }

    /// Envelopes queued for `device`.
    fn queue_depth(&self, device: &DeviceAddress) -> Result<u32, StoreError>;

    /// Envelopes queued for all devices.
    fn total_queued(&self) -> Result<u64, StoreError>;

    /// Deletes codes with `expires_at <= now` and envelopes with
    /// `timestamp + mailbox_ttl <= now`, atomically.
    fn sweep(&self, now: u64, mailbox_ttl: u64) -> Result<SweepCounts, StoreError>;
}
