//! The types of the stored device list (spec/relay.md 3.9–3.10): what
//! [`Store::device_list_state`](super::Store::device_list_state) reads and
//! [`Store::replace_device_list`](super::Store::replace_device_list) writes.

use sealpost_wire::IdentityBytes;
use sealpost_wire::relay::DeviceInfo;

/// An account's stored device list, with the values the relay checks the next one against.
/// The relay verified `bytes` when it stored them (spec/devices.md section 4); the other
/// fields are taken from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeviceList {
    /// The list's account key `AK`.
    pub account_key: [u8; 32],
    /// The list's `list_version` (≥ 1).
    pub list_version: u64,
    /// The list's `next_device_id`.
    pub next_device_id: u32,
    /// The `SignedDeviceList` encoding, served byte for byte.
    pub bytes: Vec<u8>,
}

/// What [`Store::device_list_state`](super::Store::device_list_state) reads in one
/// transaction: an account's registered devices, its device-id counter and its stored list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListState {
    /// The registered devices, ordered by id (empty: no such account, or no devices).
    pub devices: Vec<DeviceInfo>,
    /// The id the relay gives the account's next registered device: every id it ever gave
    /// the account is below it (1 for an account never registered).
    pub next_device_id: u32,
    /// The stored list, if any.
    pub list: Option<StoredDeviceList>,
    /// The device a recovery registration added (spec/relay.md 3.2), until the next list
    /// is stored: the one device that may publish a list that does not name it yet (3.9
    /// rule 5a). `None` otherwise.
    pub rekey_device: Option<u32>,
}

/// A verified list to store with
/// [`Store::replace_device_list`](super::Store::replace_device_list).
#[derive(Clone, Copy, Debug)]
pub struct NewDeviceList<'a> {
    /// The list's account key.
    pub account_key: &'a [u8; 32],
    /// The list's version.
    pub list_version: u64,
    /// The list's `next_device_id`.
    pub next_device_id: u32,
    /// The listed devices (id and identity), ordered by id.
    pub devices: &'a [(u32, IdentityBytes)],
    /// The encoding to store.
    pub bytes: &'a [u8],
}

/// Result of [`Store::replace_device_list`](super::Store::replace_device_list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceListOutcome {
    /// The list is stored; these registered devices were not on it and were removed with
    /// their prekeys and mailboxes.
    Stored {
        /// Ids of the removed devices.
        removed: Vec<u32>,
    },
    /// The stored list's version is not the expected one (a concurrent publish or link
    /// stored another list first, or a registration deleted it). Nothing changed.
    VersionChanged,
    /// The registered devices changed since the caller checked them: a listed device (other
    /// than the new one) is not registered with its listed identity, or the new device's id
    /// is below the account's device-id counter (already given) or the account has no
    /// devices. Nothing changed.
    DevicesChanged,
}

/// The devices a recovery registration keeps (spec/relay.md 3.2): the entries of the stored
/// list `bytes` whose role does not hold the account key, as `(id, identity)`.
pub fn kept_on_recovery(bytes: &[u8]) -> Result<Vec<(u32, IdentityBytes)>, crate::StoreError> {
    let list = sealpost_wire::devices::SignedDeviceList::decode(bytes)
        .map_err(|_| crate::StoreError::Corrupt("stored device list"))?;
    Ok(list
        .body
        .entries
        .iter()
        .filter(|e| !e.role.holds_account_key())
        .map(|e| (e.device_id, e.identity))
        .collect())
}
