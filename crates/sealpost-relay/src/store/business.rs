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
    /// The `route_version` of the default route published with it; 0 without a route.
    pub route_version: u64,
    /// The whole `PublishBusinessProfile` payload (`var16(profile) || has_route [||
    /// var16(route)] || count || count × var16(statement)`), served byte for byte by
    /// `FetchBusinessProfile`.
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
    /// The `route_version` of the default route stored with it; 0 without a route.
    pub route_version: u64,
    /// The payload it was published with (profile, route and statements), served byte for
    /// byte.
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

/// Whether `new` may replace `stored` (spec/relay.md 3.14 rule 5): always when nothing is
/// stored or the stored profile is under another account key; otherwise when its version
/// is above the stored one, or equal with an identical profile encoding (which replaces the
/// route and the statements), **and** its route version is not below the stored one (a
/// stored route is never rolled back or dropped).
pub fn profile_may_replace(
    stored: Option<&StoredBusinessProfile>,
    new: &NewBusinessProfile<'_>,
) -> bool {
    match stored {
        Some(s) if &s.account_key == new.account_key => {
            let profile = new.profile_version > s.profile_version
                || (new.profile_version == s.profile_version && s.profile == new.profile);
            profile && new.route_version >= s.route_version
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
