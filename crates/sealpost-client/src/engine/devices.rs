//! Signed device lists (spec/devices.md section 8): this account's own list and account
//! key, and the list pinned for each contact account with its update rule and events.

use super::*;
use crate::error::DeviceListRefusal;
use crate::event::DeviceInfo;
use crate::store::{ListPin, OwnDevices};
use sealpost_devices::{AccountKeyPair, DeviceListPin, Update, UpdateError, VerifiedDeviceList};
use sealpost_wire::devices::{DeviceName, SignedDeviceList};

/// The display name of a personal account's key holder on a list it signs, unless
/// [`crate::ClientConfig::device_name`] gives one.
pub const PRIMARY_DEVICE_NAME: &str = "Primary";
/// The display name of a business account's key holder (its `owner`) on a list it signs,
/// unless [`crate::ClientConfig::device_name`] gives one.
pub const OWNER_DEVICE_NAME: &str = "Owner";

/// What a fetched list (or its absence) means for sending to an account.
#[derive(Debug)]
pub(crate) enum ListedDevices {
    /// The account has no list (a version-1 account): the relay's `ListDevices` decides.
    Unlisted,
    /// The accepted (pinned) list: encrypt to exactly these devices.
    Listed(Box<VerifiedDeviceList>),
}

impl Engine {
    /// This account's own devices record.
    pub(crate) fn own_devices(&self) -> Result<Option<OwnDevices>, ClientError> {
        Ok(self.store.own_devices(&self.address.account)?)
    }

    /// The list this device publishes on start (spec/devices.md 8.5): a store without an
    /// own-devices record (a new account, or a version-1 store) generates the account key
    /// and list version 1 with this device as the key holder of `kind` (`primary` or
    /// `owner`) named `name`, and commits both **before** publishing, so that a crash in
    /// between publishes the same list on the next start and never makes a second key.
    /// Returns the list while the relay has not confirmed it.
    pub(crate) fn list_to_publish(
        &self,
        now_ms: u64,
        kind: crate::AccountKind,
        name: DeviceName,
    ) -> Result<Option<SignedDeviceList>, ClientError> {
        let _g = self.lock()?;
        match self.own_devices()? {
            Some(own) if own.published || own.account_key.is_none() => Ok(None),
            Some(own) => Ok(Some(own.list.signed().clone())),
            None => {
                let key = AccountKeyPair::generate(&mut rand::rng());
                let list = key
                    .first_list(
                        &self.address.account,
                        self.address.device.0,
                        self.identity.public().to_wire(),
                        kind.key_holder_role(),
                        name,
                        now_ms,
                        |m| self.identity.sign(m),
                    )
                    .map_err(|e| ClientError::Link(crate::error::LinkFailure::of(e)))?;
                let signed = list.signed().clone();
                let mut batch = Batch::new();
                self.store.put_own_devices(
                    &mut batch,
                    &OwnDevices {
                        account_key: Some(key),
                        list,
                        published: false,
                    },
                );
                self.store.commit(batch)?;
                tracing::info!(
                    ?kind,
                    "account key generated; publishing device list version 1"
                );
                Ok(Some(signed))
            }
        }
    }

    /// Takes over the account key restored from its backup (spec/devices.md 8.6 with the
    /// PIN): signs the next version of `current` (the relay's stored list, under `key`)
    /// with this device as the key holder in place of the old one, and commits key and list
    /// with `published = 0`, as [`Self::list_to_publish`] does for a new key, so that a
    /// crash before the publish publishes the same list on the next start. The new key
    /// holder's role is of `current`'s family (an owner replaces an owner), named `name`.
    /// Does nothing (`false`) when an own-devices record exists already.
    pub(crate) fn restore_account_key(
        &self,
        key: AccountKeyPair,
        current: &VerifiedDeviceList,
        name: DeviceName,
        now_ms: u64,
    ) -> Result<bool, ClientError> {
        let _g = self.lock()?;
        if self.own_devices()?.is_some() {
            return Ok(false);
        }
        let list = key
            .replace_key_holder(
                current,
                self.address.device.0,
                self.identity.public().to_wire(),
                name,
                now_ms,
                |m| self.identity.sign(m),
            )
            .map_err(|e| ClientError::Link(crate::error::LinkFailure::of(e)))?;
        let version = list.list_version();
        let mut batch = Batch::new();
        self.store.put_own_devices(
            &mut batch,
            &OwnDevices {
                account_key: Some(key),
                list,
                published: false,
            },
        );
        self.store.commit(batch)?;
        tracing::info!(
            version,
            "account key restored from its backup; publishing this device as key holder"
        );
        Ok(true)
    }

    /// Records that the relay stores `list` (it answered `DeviceListStored`, or serves
    /// exactly these bytes).
    pub(crate) fn own_list_published(&self, list: &[u8]) -> Result<bool, ClientError> {
        let _g = self.lock()?;
        let Some(mut own) = self.own_devices()? else {
            return Ok(false);
        };
        if own.list.as_bytes() != list {
            return Ok(false);
        }
        own.published = true;
        let mut batch = Batch::new();
        self.store.put_own_devices(&mut batch, &own);
        self.store.commit(batch)?;
        Ok(true)
    }

    /// Replaces this account's own list (after the relay stored it), keeping the key.
    pub(crate) fn set_own_list(&self, list: VerifiedDeviceList) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let account_key = self
            .own_devices()?
            .and_then(|o| o.account_key)
            .filter(|k| k.public() == list.account_key());
        let mut batch = Batch::new();
        self.store.put_own_devices(
            &mut batch,
            &OwnDevices {
                account_key,
                list,
                published: true,
            },
        );
        self.store.commit(batch)?;
        Ok(())
    }

    /// The list pinned for `account` (for this account: its own list).
    pub(crate) fn pinned_list(
        &self,
        account: &AccountId,
    ) -> Result<Option<VerifiedDeviceList>, ClientError> {
        if let Some(pin) = self.store.list_pin(account)? {
            return Ok(Some(pin.list));
        }
        if account == &self.address.account {
            return Ok(self.own_devices()?.map(|o| o.list));
        }
        Ok(None)
    }

    /// Applies a list fetched for `account` (spec/devices.md sections 4, 5 and 8): verifies
    /// it, applies the update rule against the pin, commits the new pin and forgets the
    /// contacts and sessions of devices it does not list (or lists with another identity),
    /// and returns the events to report. A refused list changes nothing and is
    /// [`ClientError::DeviceListRefused`].
    pub(crate) fn apply_fetched_list(
        &self,
        account: &AccountId,
        fetched: Option<SignedDeviceList>,
    ) -> Result<(ListedDevices, Vec<ClientEvent>), ClientError> {
        let _g = self.lock()?;
        let pin = self.store.list_pin(account)?;
        let Some(fetched) = fetched else {
            return match pin {
                Some(_) => Err(ClientError::DeviceListRefused(DeviceListRefusal::Missing)),
                None => Ok((ListedDevices::Unlisted, Vec::new())),
            };
        };
        let list = fetched
            .encode()
            .ok()
            .and_then(|bytes| VerifiedDeviceList::verify(&bytes, account).ok())
            .ok_or(ClientError::DeviceListRefused(DeviceListRefusal::Invalid))?;
        let known = self.store.contacts(account)?;
        let mut events = Vec::new();
        let key_holder = list
            .key_holder()
            .map_or(DeviceId(0), |e| DeviceId(e.device_id));
        let verification = match pin {
            None => self.first_list(account, &list, &known, key_holder, &mut events),
            Some(pin) => match DeviceListPin::new(pin.list.clone()).check(&list) {
                Ok(Update::Unchanged) => {
                    return Ok((ListedDevices::Listed(Box::new(list)), events));
                }
                Ok(Update::Advanced(change)) => {
                    let info = |v: &[sealpost_devices::DeviceEntry]| {
                        v.iter().map(DeviceInfo::of).collect::<Vec<_>>()
                    };
                    let changed: Vec<DeviceInfo> = change
                        .changed
                        .iter()
                        .map(|(_, now)| DeviceInfo::of(now))
                        .collect();
                    if !(change.added.is_empty() && change.removed.is_empty() && changed.is_empty())
                    {
                        events.push(ClientEvent::DevicesChanged {
                            account: account.clone(),
                            added: info(&change.added),
                            removed: info(&change.removed),
                            changed,
                        });
                    }
                    pin.verification
                }
                Err(UpdateError::AccountKeyChanged) => {
                    changed_key(account, pin.verification, key_holder, &mut events)
                }
                Err(e) => {
                    let reason = DeviceListRefusal::of(e).unwrap_or(DeviceListRefusal::Invalid);
                    return Err(ClientError::DeviceListRefused(reason));
                }
            },
        };
        let mut batch = Batch::new();
        for c in &known {
            let listed = list.device(c.address.device.0);
            if listed.is_none_or(|e| e.identity != c.identity.to_wire()) {
                self.store.delete_contact(&mut batch, &c.address);
                self.store.delete_sessions(&mut batch, &c.address);
            }
        }
        self.store.put_list_pin(
            &mut batch,
            &ListPin {
                list: list.clone(),
                verification,
            },
        );
        self.store.commit(batch)?;
        Ok((ListedDevices::Listed(Box::new(list)), events))
    }

    /// The first list of `account` (first use): pinned. If the account was known without a
    /// list (a version-1 contact), a listed device with an identity already known makes it
    /// the same account ("switched to linked devices", its verification kept); a list of
    /// only unknown identities is a changed identity. Returns the pin's verification.
    fn first_list(
        &self,
        account: &AccountId,
        list: &VerifiedDeviceList,
        known: &[Contact],
        key_holder: DeviceId,
        events: &mut Vec<ClientEvent>,
    ) -> Verification {
        if known.is_empty() {
            return Verification::Unverified;
        }
        let account_state = if known
            .iter()
            .any(|c| c.verification == Verification::ChangedSinceVerified)
        {
            Verification::ChangedSinceVerified
        } else if known
            .iter()
            .any(|c| c.verification == Verification::Verified)
        {
            Verification::Verified
        } else {
            Verification::Unverified
        };
        let continues = list
            .entries()
            .iter()
            .any(|e| known.iter().any(|c| c.identity.to_wire() == e.identity));
        if continues {
            events.push(ClientEvent::SwitchedToLinkedDevices {
                account: account.clone(),
                devices: list.entries().iter().map(DeviceInfo::of).collect(),
            });
            account_state
        } else {
            changed_key(account, account_state, key_holder, events)
        }
    }

    /// The devices of `account`'s pinned list (never this device) that have no contact
    /// with the listed identity and a usable session: these need a bundle.
    pub(crate) fn missing_listed(
        &self,
        list: &VerifiedDeviceList,
    ) -> Result<Vec<u32>, ClientError> {
        self.missing_devices(list.account(), &listed_infos(list))
    }
}

/// The list's devices as `ListDevices` would give them.
pub(crate) fn listed_infos(list: &VerifiedDeviceList) -> Vec<sealpost_wire::relay::DeviceInfo> {
    list.entries()
        .iter()
        .map(|e| sealpost_wire::relay::DeviceInfo {
            device_id: e.device_id,
            identity: e.identity,
        })
        .collect()
}

/// A new account key (rule 5.1), treated as a changed identity (spec/client-store.md 11):
/// a verified account is held, an unverified one gets a safety-number change.
fn changed_key(
    account: &AccountId,
    verification: Verification,
    key_holder: DeviceId,
    events: &mut Vec<ClientEvent>,
) -> Verification {
    if verification == Verification::Unverified {
        events.push(ClientEvent::SafetyNumberChanged {
            account: account.clone(),
            device: key_holder,
        });
        Verification::Unverified
    } else {
        events.push(ClientEvent::VerifiedIdentityChanged {
            account: account.clone(),
            device: key_holder,
        });
        Verification::ChangedSinceVerified
    }
}
