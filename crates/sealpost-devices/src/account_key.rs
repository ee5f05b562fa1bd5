//! The account key (`spec/devices.md` section 2).

use crate::list::{self, VerifiedDeviceList};
use crate::{DeviceListError, LinkError};
use core::fmt;
use sealpost_crypto::CryptoRng;
use sealpost_crypto::ed25519::{Signature, SigningKey, VerifyingKey};
use sealpost_wire::devices::{
    DeviceEntry, DeviceListBody, DeviceName, DeviceRole, MAX_LISTED_DEVICES, ProvisioningBody,
    SignedDeviceList,
};
use sealpost_wire::{AccountId, IdentityBytes};

/// An account's public key, validated (canonical, not of small order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountKey(pub(crate) VerifyingKey);

impl AccountKey {
    /// Validates 32 bytes as an account key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, DeviceListError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| DeviceListError::InvalidAccountKey)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AccountKey").field(&self.0).finish()
    }
}

/// The account key pair, held by the account's key holder. The secret is zeroized on drop
/// and never printed; the type is not `Clone`, so one account key lives in one place.
pub struct AccountKeyPair(SigningKey);

impl AccountKeyPair {
    /// A new random account key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// Restores the key from its 32-byte seed (the local store, or the PIN vault).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_seed(seed))
    }

    /// The 32-byte seed, for an encrypted store. Secret.
    pub fn to_seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        self.0.to_seed()
    }

    /// The public account key.
    pub fn public(&self) -> AccountKey {
        AccountKey(self.0.verifying_key())
    }

    /// The first list of an account (version 1): the key holder alone. `sign_binding`
    /// signs with the key holder's identity key (its Ed25519 half); a signer that does not
    /// match `identity` is [`LinkError::WrongKey`].
    #[allow(clippy::too_many_arguments)]
    pub fn first_list(
        &self,
        account: &AccountId,
        device_id: u32,
        identity: IdentityBytes,
        role: DeviceRole,
        name: DeviceName,
        now_ms: u64,
        sign_binding: impl FnOnce(&[u8]) -> Signature,
    ) -> Result<VerifiedDeviceList, LinkError> {
        if !role.holds_account_key() {
            return Err(LinkError::Roles);
        }
        let next_device_id = device_id.checked_add(1).ok_or(LinkError::Full)?;
        let body = DeviceListBody {
            account: account.clone(),
            account_key: self.public().to_bytes(),
            list_version: 1,
            issued_at: now_ms,
            next_device_id,
            entries: vec![DeviceEntry {
                device_id,
                identity,
                role,
                added_at: now_ms,
                name,
            }],
        };
        let binding = list::sign_binding(account, &self.public(), &identity, sign_binding)?;
        let signature = self.sign_body(&body)?;
        let list = SignedDeviceList {
            body,
            signature,
            bindings: vec![binding],
        };
        Ok(VerifiedDeviceList::verify_decoded(list, account)?)
    }

    /// The next version of `current` with a new device, as the provisioning message's body
    /// (its binding still zero; the new device adds it). The new device gets
    /// `current.next_device_id()`.
    pub fn link_device(
        &self,
        current: &VerifiedDeviceList,
        identity: IdentityBytes,
        role: DeviceRole,
        name: DeviceName,
        now_ms: u64,
    ) -> Result<ProvisioningBody, LinkError> {
        self.check_holder(current)?;
        if role.holds_account_key() || role.family() != current.family() {
            return Err(LinkError::Roles);
        }
        if current.entries().len() >= MAX_LISTED_DEVICES {
            return Err(LinkError::Full);
        }
        let device_id = current.next_device_id();
        let mut body = current.signed().body.clone();
        body.list_version = next_version(current)?;
        body.issued_at = now_ms;
        body.next_device_id = device_id.checked_add(1).ok_or(LinkError::Full)?;
        body.entries.push(DeviceEntry {
            device_id,
            identity,
            role,
            added_at: now_ms,
            name,
        });
        let mut bindings = current.signed().bindings.clone();
        bindings.push([0; 64]);
        let signature = self.sign_body(&body)?;
        Ok(ProvisioningBody {
            device_id,
            list: SignedDeviceList {
                body,
                signature,
                bindings,
            },
        })
    }

    /// The next version of `current` without device `device_id` (unlinking). The key
    /// holder cannot remove itself ([`LinkError::Roles`]); an id not on the list is
    /// [`LinkError::NotListed`].
    pub fn remove_device(
        &self,
        current: &VerifiedDeviceList,
        device_id: u32,
        now_ms: u64,
    ) -> Result<VerifiedDeviceList, LinkError> {
        self.check_holder(current)?;
        let index = current
            .entries()
            .iter()
            .position(|e| e.device_id == device_id)
            .ok_or(LinkError::NotListed)?;
        let signed = current.signed();
        if signed
            .body
            .entries
            .get(index)
            .is_some_and(|e| e.role.holds_account_key())
        {
            return Err(LinkError::Roles);
        }
        let mut body = signed.body.clone();
        let mut bindings = signed.bindings.clone();
        body.entries.remove(index);
        bindings.remove(index);
        body.list_version = next_version(current)?;
        body.issued_at = now_ms;
        self.sign_list(body, bindings, current.account())
    }

    /// The next version of `current` with device `device_id`'s display name and role set
    /// to `name` and `role` (`spec/devices.md` 8.9): same id, identity, `added_at` and
    /// binding; every other entry unchanged. The key holder may be renamed but keeps its
    /// role; any other device may take any role of the list's family that does not hold the
    /// account key ([`LinkError::Roles`] otherwise). An id not on the list is
    /// [`LinkError::NotListed`].
    pub fn update_device(
        &self,
        current: &VerifiedDeviceList,
        device_id: u32,
        name: DeviceName,
        role: DeviceRole,
        now_ms: u64,
    ) -> Result<VerifiedDeviceList, LinkError> {
        self.check_holder(current)?;
        let signed = current.signed();
        let mut body = signed.body.clone();
        let entry = body
            .entries
            .iter_mut()
            .find(|e| e.device_id == device_id)
            .ok_or(LinkError::NotListed)?;
        let allowed = if entry.role.holds_account_key() {
            role == entry.role
        } else {
            !role.holds_account_key() && role.family() == current.family()
        };
        if !allowed {
            return Err(LinkError::Roles);
        }
        entry.name = name;
        entry.role = role;
        body.list_version = next_version(current)?;
        body.issued_at = now_ms;
        self.sign_list(body, signed.bindings.clone(), current.account())
    }

    /// Signs `body` and verifies the list it makes with `bindings`.
    fn sign_list(
        &self,
        body: DeviceListBody,
        bindings: Vec<[u8; 64]>,
        account: &AccountId,
    ) -> Result<VerifiedDeviceList, LinkError> {
        let signature = self.sign_body(&body)?;
        let list = SignedDeviceList {
            body,
            signature,
            bindings,
        };
        Ok(VerifiedDeviceList::verify_decoded(list, account)?)
    }

    /// The next version of `current` for a new key holder (`spec/devices.md` 8.6: the
    /// account key restored from its backup on a re-registered device): every device that
    /// holds the account key leaves the list, the device `device_id` with `identity` joins
    /// it as the key holder (`Primary` on a consumer list, `Owner` on a business list), and
    /// every other device stays with its binding. `device_id` must be at least
    /// `current.next_device_id()` ([`LinkError::Roles`] otherwise: ids are never reused);
    /// `sign_binding` signs with the new device's identity key.
    #[allow(clippy::too_many_arguments)]
    pub fn replace_key_holder(
        &self,
        current: &VerifiedDeviceList,
        device_id: u32,
        identity: IdentityBytes,
        name: DeviceName,
        now_ms: u64,
        sign_binding: impl FnOnce(&[u8]) -> Signature,
    ) -> Result<VerifiedDeviceList, LinkError> {
        self.check_holder(current)?;
        if device_id < current.next_device_id() {
            return Err(LinkError::Roles);
        }
        let role = match current.family() {
            crate::RoleFamily::Consumer => DeviceRole::Primary,
            crate::RoleFamily::Business => DeviceRole::Owner,
        };
        let signed = current.signed();
        let mut entries = Vec::with_capacity(signed.body.entries.len() + 1);
        let mut bindings = Vec::with_capacity(signed.bindings.len() + 1);
        for (entry, binding) in signed.body.entries.iter().zip(&signed.bindings) {
            if !entry.role.holds_account_key() {
                entries.push(entry.clone());
                bindings.push(*binding);
            }
        }
        if entries.len() >= MAX_LISTED_DEVICES {
            return Err(LinkError::Full);
        }
        entries.push(DeviceEntry {
            device_id,
            identity,
            role,
            added_at: now_ms,
            name,
        });
        bindings.push(list::sign_binding(
            current.account(),
            &self.public(),
            &identity,
            sign_binding,
        )?);
        let mut body = signed.body.clone();
        body.entries = entries;
        body.list_version = next_version(current)?;
        body.issued_at = now_ms;
        body.next_device_id = device_id.checked_add(1).ok_or(LinkError::Full)?;
        self.sign_list(body, bindings, current.account())
    }

    fn check_holder(&self, current: &VerifiedDeviceList) -> Result<(), LinkError> {
        if current.account_key() != self.public() {
            return Err(LinkError::WrongKey);
        }
        Ok(())
    }

    /// Signs `message` (an already labelled input of this crate).
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }

    fn sign_body(&self, body: &DeviceListBody) -> Result<[u8; 64], LinkError> {
        let message = list::list_message(body)?;
        Ok(self.0.sign(&message).to_bytes())
    }
}

fn next_version(current: &VerifiedDeviceList) -> Result<u64, LinkError> {
    current.list_version().checked_add(1).ok_or(LinkError::Full)
}

impl fmt::Debug for AccountKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKeyPair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}
