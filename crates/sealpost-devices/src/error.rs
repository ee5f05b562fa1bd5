//! Typed errors. They carry device ids and versions, never keys or names.

use sealpost_wire::DecodeError;

/// Why a list is not valid for an account (`spec/devices.md` section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceListError {
    /// The bytes are not a device list.
    #[error("device list does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The list is for another account.
    #[error("device list names another account")]
    WrongAccount,
    /// The account key is not an acceptable Ed25519 key.
    #[error("device list's account key is not a valid Ed25519 key")]
    InvalidAccountKey,
    /// The account key's signature does not verify.
    #[error("device list signature does not verify")]
    BadSignature,
    /// Not exactly one key holder, or roles of both families.
    #[error("device list roles: not exactly one key holder, or roles of two account kinds")]
    Roles,
    /// Two entries share an identity, or an identity's Ed25519 key is the account key.
    #[error("device list repeats a key")]
    DuplicateKey,
    /// An entry's identity has an invalid Ed25519 key.
    #[error("device {device_id}'s identity key is not a valid Ed25519 key")]
    InvalidIdentityKey {
        /// The entry.
        device_id: u32,
    },
    /// An entry's binding does not verify.
    #[error("device {device_id}'s binding does not verify")]
    BadBinding {
        /// The entry.
        device_id: u32,
    },
}

/// Why a valid list does not replace the pinned one (`spec/devices.md` section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The list is signed by another account key: a re-registration without the account
    /// key, or a lying relay. Handled like a changed identity, never silently.
    #[error("the account key changed")]
    AccountKeyChanged,
    /// The list is older than the pinned one.
    #[error("device list rolled back from version {pinned} to {offered}")]
    RolledBack {
        /// The pinned version.
        pinned: u64,
        /// The offered version.
        offered: u64,
    },
    /// A different list with the pinned version.
    #[error("two different device lists with version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
    /// A device id that was used before, or a `next_device_id` that went down.
    #[error("device id {device_id} reused")]
    DeviceIdReused {
        /// The id (or the lowered `next_device_id`).
        device_id: u32,
    },
    /// A device kept its id but not its identity.
    #[error("device {device_id} changed its identity")]
    IdentityChanged {
        /// The device.
        device_id: u32,
    },
}

/// Why linking failed (`spec/devices.md` section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A link invitation, envelope or body does not decode.
    #[error("linking message does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The invitation's text form is not `sealpost-link:` and 152 base64url characters.
    #[error("not a link invitation")]
    InvalidInvitation,
    /// An ephemeral key of small order.
    #[error("provisioning key agreement is non-contributory")]
    NonContributory,
    /// The envelope does not open (wrong invitation, altered, or not for this device).
    #[error("provisioning message does not decrypt")]
    Decrypt,
    /// The list in the message, or the one being made, is not valid.
    #[error("device list: {0}")]
    List(#[from] DeviceListError),
    /// The list does not name this device (its identity) at the given id.
    #[error("the device list does not name this device")]
    NotListed,
    /// The new device would hold the account key, or the role is of the other family.
    #[error("the new device's role is not allowed")]
    Roles,
    /// The signer given does not belong to the identity it signs for, or the account key
    /// is not the one that signed the current list.
    #[error("signed with the wrong key")]
    WrongKey,
    /// The list is full (`MAX_LISTED_DEVICES`) or device ids are exhausted.
    #[error("no room for another device")]
    Full,
}

/// Why an account-key backup did not open (`spec/devices.md` section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The backup does not decode.
    #[error("account key backup does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The sealed seed does not open: another account, another master secret (the PIN
    /// was set again since), or altered bytes.
    #[error("account key backup does not decrypt")]
    Decrypt,
    /// The seed opened but is not the seed of the account key the backup names.
    #[error("account key backup holds another key")]
    KeyMismatch,
}
