//! The types of the stored business profile (spec/relay.md 3.14, spec/business.md 6): what
//! [`Store::put_business_profile`](super::Store::put_business_profile) writes and
//! [`Store::business_profile`](super::Store::business_profile) reads.

use sealpost_wire::IdentityBytes;
use sealpost_wire::devices::{DeviceRole, SignedDeviceList};

/// A verified business profile to store with
/// [`Store::put_business_profile`](super::Store::put_business_profile).
#[derive(Clone, Copy, Debug)]
pub struct NewBusinessProfile<'a> {
    /// The profile's account key (the stored list's, checked by the caller).
    pub account_key: &'a [u8; 32],
    /// The profile's `profile_version` (≥ 1).
    pub profile_version: u64,
    /// The `SignedBusinessProfile` encoding alone: what the version rule compares.
    pub profile: &'a [u8],
    /// The whole `PublishBusinessProfile` payload (`var16(profile) || count || count ×
    /// var16(statement)`), served byte for byte by `FetchBusinessProfile`.
    pub payload: &'a [u8],
}

/// An account's stored business profile, as
/// [`Store::business_profile`](super::Store::business_profile) reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBusinessProfile {
    /// The account key it was stored under.
    pub account_key: [u8; 32],
    /// Its `profile_version`.
    pub profile_version: u64,
    /// The `SignedBusinessProfile` encoding.
    pub profile: Vec<u8>,
    /// The payload it was published with (profile and statements), served byte for byte.
    pub payload: Vec<u8>,
}

/// Result of [`Store::put_business_profile`](super::Store::put_business_profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutProfileOutcome {
    /// The profile (with its statements) replaced the stored one.
    Stored,
    /// A profile under the same account key is stored whose version is above the new one,
    /// or equal with other profile bytes. Nothing changed.
    Stale,
    /// The device is no longer registered, or the stored list no longer has the account
    /// key, is no longer a business list or no longer names the device as its owner with
    /// its registered identity. Nothing changed.
    ListChanged,
}

/// Whether a profile of `profile_version` with the encoding `profile` may replace `stored`
/// under `account_key` (spec/relay.md 3.14 rule 5): always when nothing is stored or the
/// stored one is under another account key; otherwise when the version is above the stored
/// one, or equal with an identical profile encoding (which replaces the statements).
pub fn profile_may_replace(
    stored: Option<(&[u8; 32], u64, &[u8])>,
    account_key: &[u8; 32],
    profile_version: u64,
    profile: &[u8],
) -> bool {
    match stored {
        Some((key, version, bytes)) if key == account_key => {
            profile_version > version || (profile_version == version && bytes == profile)
        }
        _ => true,
    }
}

/// The identity with which the stored list `bytes` names `device_id` as the owner of a
/// business account (the business role that holds the account key, spec/business.md 2);
/// `None` when the list does not name the device, names it in another role, or is a
/// consumer list. A stored list that does not decode is corruption.
pub fn business_owner_identity(
    bytes: &[u8],
    device_id: u32,
) -> Result<Option<IdentityBytes>, crate::StoreError> {
    let list = SignedDeviceList::decode(bytes)
        .map_err(|_| crate::StoreError::Corrupt("stored device list"))?;
    Ok(list
        .body
        .entries
        .iter()
        .find(|e| e.device_id == device_id && e.role == DeviceRole::Owner)
        .map(|e| e.identity))
}
