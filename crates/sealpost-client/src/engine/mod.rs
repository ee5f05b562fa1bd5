//! The synchronous core of the client: every state change (sessions, prekeys, contacts,
//! history, outbox, processed ids) is computed here and committed to the store in one
//! atomic batch. No network I/O; the async layer in `client/` calls these functions from
//! blocking threads and does the talking.
//!
//! All functions that read-modify-write state hold `lock`, so the receive path, the send
//! path and prekey maintenance never interleave on the same records.

use crate::content::{
    Content, MessageBody, MessageId, SentCopy, decode_any, encode_content, encode_sent_copy,
    is_internal,
};
use crate::error::ClientError;
use crate::error::StoreError;
use crate::event::ClientEvent;
use crate::store::{
    AccountRecord, Batch, Contact, Direction, MAX_SESSIONS_PER_DEVICE, MessageStatus, OutboxEntry,
    OutboxRow, RetiredKey, RetiredKind, Store, Verification,
};
use sealpost_crypto::Zeroizing;
use sealpost_session::{
    IdentityKey, IdentityKeyPair, KemPreKeyKind, SafetyNumber, Session, SessionAddresses,
    SessionConfig, SessionMessage, VerifiedBundle, initiate, respond,
};
use sealpost_wire::relay::{
    Delivery, DeviceInfo, MAX_KEM_PER_UPLOAD, MAX_ONE_TIME_PER_UPLOAD, OutgoingEnvelope,
    PreKeyUpload,
};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, PreKeyBundle};
use std::sync::{Mutex, MutexGuard};

mod rollback;

pub use business::BusinessProfile;
pub use desk::{DeskConversation, DeskNote, HandoffInfo};
pub(crate) use devices::{ListedDevices, listed_infos};
pub use devices::{OWNER_DEVICE_NAME, PRIMARY_DEVICE_NAME};
pub(crate) use history::BundleLimits;
pub use history::{HISTORY_BUNDLE_MAX_AGE, HISTORY_BUNDLE_MAX_MESSAGES, HISTORY_PART_LINK_WAIT};

/// One-time X25519 prekeys the client keeps published.
pub const ONE_TIME_PREKEY_TARGET: u32 = 100;
/// One-time ML-KEM prekeys the client keeps published.
pub const KEM_PREKEY_TARGET: u32 = 20;
/// Below this many one-time X25519 prekeys on the relay, the client tops up
/// (the relay's `PREKEY_LOW_WATERMARK`).
pub const ONE_TIME_PREKEY_LOW: u32 = 20;
/// Below this many one-time KEM prekeys on the relay, the client tops up.
pub const KEM_PREKEY_LOW: u32 = 5;
/// The signed prekey and the last-resort KEM prekey are replaced after this long (seconds).
pub const PREKEY_ROTATION_SECS: u64 = 7 * 24 * 3600;
/// A replaced signed or last-resort prekey is deleted this long after its replacement
/// (seconds): the relay's mailbox TTL (30 days) plus a day, so every handshake that may
/// still be queued can complete.
pub const RETIRED_PREKEY_RETENTION_SECS: u64 = 31 * 24 * 3600;
/// Most retired prekeys kept; beyond this the oldest are deleted early.
pub const MAX_RETIRED_PREKEYS: usize = 32;

/// What happened to one delivered envelope.
#[derive(Debug)]
pub(crate) enum Processed {
    /// Already processed earlier (at-least-once redelivery): acknowledge only.
    Duplicate,
    /// Decrypted and committed; emit these events, then acknowledge.
    Accepted(Vec<ClientEvent>),
    /// Cannot be decrypted or is malformed: acknowledge and report.
    Rejected(&'static str),
    /// From a device that is not on its account's pinned list: fetch the list again, then
    /// process again or drop it (spec/devices.md 8.2). Nothing was changed.
    Unlisted,
}

pub(crate) struct Engine {
    pub(crate) store: Store,
    pub(crate) identity: IdentityKeyPair,
    pub(crate) address: DeviceAddress,
    session_config: SessionConfig,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        store: Store,
        account: &AccountRecord,
        session_config: SessionConfig,
    ) -> Result<Self, ClientError> {
        let device = account.device.ok_or(ClientError::NotRegistered)?;
        Ok(Self {
            store,
            identity: account.identity.clone(),
            address: DeviceAddress::new(account.account.clone(), device),
            session_config,
            lock: Mutex::new(()),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, ()>, ClientError> {
        self.lock
            .lock()
            .map_err(|_| ClientError::Internal(crate::error::InternalError::LockPoisoned))
    }
}

mod business;
mod desk;
mod devices;
mod history;
mod outbox;
mod prekeys;
mod receiving;
mod sync;
mod trust;

#[cfg(test)]
mod tests;
