//! The update rule (`spec/devices.md` section 5).

use crate::{DeviceEntry, UpdateError, VerifiedDeviceList};

/// What an accepted list changed, compared with the pinned one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceListChange {
    /// Devices on the new list only.
    pub added: Vec<DeviceEntry>,
    /// Devices on the pinned list only.
    pub removed: Vec<DeviceEntry>,
    /// Devices on both whose role or name changed: `(before, after)`.
    pub changed: Vec<(DeviceEntry, DeviceEntry)>,
}

/// The outcome of a list that passed the update rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// The same list as the pinned one.
    Unchanged,
    /// A newer list; the pin now holds it.
    Advanced(DeviceListChange),
}

/// The last list a client accepted for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListPin {
    current: VerifiedDeviceList,
}

impl DeviceListPin {
    /// Pins a first list (first use: any valid list).
    pub fn new(list: VerifiedDeviceList) -> Self {
        Self { current: list }
    }

    /// The pinned list.
    pub fn current(&self) -> &VerifiedDeviceList {
        &self.current
    }

    /// Applies the update rule to `offered` without changing the pin.
    pub fn check(&self, offered: &VerifiedDeviceList) -> Result<Update, UpdateError> {
        let pinned = &self.current;
        if offered.account_key() != pinned.account_key() {
            return Err(UpdateError::AccountKeyChanged);
        }
        let (p, o) = (pinned.list_version(), offered.list_version());
        if o < p {
            return Err(UpdateError::RolledBack {
                pinned: p,
                offered: o,
            });
        }
        if o == p {
            return if offered.as_bytes() == pinned.as_bytes() {
                Ok(Update::Unchanged)
            } else {
                Err(UpdateError::Equivocation { version: o })
            };
        }
        if offered.next_device_id() < pinned.next_device_id() {
            return Err(UpdateError::DeviceIdReused {
                device_id: offered.next_device_id(),
            });
        }
        let mut change = DeviceListChange::default();
        for new in offered.entries() {
            match pinned.device(new.device_id) {
                Some(old) if old.identity != new.identity => {
                    return Err(UpdateError::IdentityChanged {
                        device_id: new.device_id,
                    });
                }
                Some(old) => {
                    if old.role != new.role || old.name != new.name {
                        change.changed.push((old.clone(), new.clone()));
                    }
                }
                None if new.device_id < pinned.next_device_id() => {
                    return Err(UpdateError::DeviceIdReused {
                        device_id: new.device_id,
                    });
                }
                None => change.added.push(new.clone()),
            }
        }
        change.removed = pinned
            .entries()
            .iter()
            .filter(|old| offered.device(old.device_id).is_none())
            .cloned()
            .collect();
        Ok(Update::Advanced(change))
    }

    /// [`Self::check`], then pins `offered` when it is newer.
    pub fn accept(&mut self, offered: &VerifiedDeviceList) -> Result<Update, UpdateError> {
        let update = self.check(offered)?;
        if matches!(update, Update::Advanced(_)) {
            self.current = offered.clone();
        }
        Ok(update)
    }
}
