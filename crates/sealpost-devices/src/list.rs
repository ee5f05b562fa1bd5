//! Verifying a signed device list (`spec/devices.md` sections 3 and 4).

use crate::{AccountKey, DeviceListError, LinkError};
use sealpost_crypto::ed25519::{Signature, VerifyingKey};
use sealpost_wire::devices::{DeviceEntry, DeviceListBody, RoleFamily, SignedDeviceList};
use sealpost_wire::{AccountId, DecodeError, IdentityBytes, Writer};
use std::collections::HashSet;

/// Label before the list body in the account key's signature.
pub const DEVICE_LIST_LABEL: &[u8] = b"Sealpost_DeviceList_v1";
/// Label of a device's binding signature.
pub const BINDING_LABEL: &[u8] = b"Sealpost_DeviceBinding_v1";

/// The bytes a device signs to bind itself to an account and its account key:
/// `"Sealpost_DeviceBinding_v1" || account || account_key || identity` (section 3.3).
pub fn binding_message(
    account: &AccountId,
    account_key: &AccountKey,
    identity: &IdentityBytes,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(BINDING_LABEL.len() + 65 + 32 + 64);
    w.bytes(BINDING_LABEL);
    account.encode_into(&mut w);
    w.bytes(&account_key.to_bytes()).bytes(&identity.to_bytes());
    w.into_bytes()
}

/// Signs a binding with `sign` and checks that the signature is `identity`'s.
pub(crate) fn sign_binding(
    account: &AccountId,
    account_key: &AccountKey,
    identity: &IdentityBytes,
    sign: impl FnOnce(&[u8]) -> Signature,
) -> Result<[u8; 64], LinkError> {
    let message = binding_message(account, account_key, identity);
    let signature = sign(&message);
    let key = VerifyingKey::from_bytes(&identity.signing).map_err(|_| LinkError::WrongKey)?;
    key.verify(&message, &signature)
        .map_err(|_| LinkError::WrongKey)?;
    Ok(signature.to_bytes())
}

/// `"Sealpost_DeviceList_v1" || body`.
pub(crate) fn list_message(body: &DeviceListBody) -> Result<Vec<u8>, DecodeError> {
    let encoded = body.encode()?;
    let mut out = Vec::with_capacity(DEVICE_LIST_LABEL.len() + encoded.len());
    out.extend_from_slice(DEVICE_LIST_LABEL);
    out.extend_from_slice(&encoded);
    Ok(out)
}

/// A device list that is valid for its account (section 4): decoded, signed by its account
/// key, one key holder, no repeated key, every binding verified. Only this crate makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDeviceList {
    list: SignedDeviceList,
    encoded: Vec<u8>,
    account_key: AccountKey,
    family: RoleFamily,
}

impl VerifiedDeviceList {
    /// Decodes `bytes` and checks that they are a valid list for `account`.
    pub fn verify(bytes: &[u8], account: &AccountId) -> Result<Self, DeviceListError> {
        let list = SignedDeviceList::decode(bytes)?;
        Self::verify_decoded(list, account)
    }

    pub(crate) fn verify_decoded(
        list: SignedDeviceList,
        account: &AccountId,
    ) -> Result<Self, DeviceListError> {
        let (account_key, family) = check(&list, account, None)?;
        let encoded = list.encode()?;
        Ok(Self {
            list,
            encoded,
            account_key,
            family,
        })
    }

    /// The account.
    pub fn account(&self) -> &AccountId {
        &self.list.body.account
    }

    /// The account key that signed it.
    pub fn account_key(&self) -> AccountKey {
        self.account_key
    }

    /// Its version.
    pub fn list_version(&self) -> u64 {
        self.list.body.list_version
    }

    /// When it was signed (Unix ms; informative).
    pub fn issued_at(&self) -> u64 {
        self.list.body.issued_at
    }

    /// The id the next linked device gets.
    pub fn next_device_id(&self) -> u32 {
        self.list.body.next_device_id
    }

    /// Consumer or business.
    pub fn family(&self) -> RoleFamily {
        self.family
    }

    /// The devices, by increasing id.
    pub fn entries(&self) -> &[DeviceEntry] {
        &self.list.body.entries
    }

    /// The device with this id, if listed.
    pub fn device(&self, device_id: u32) -> Option<&DeviceEntry> {
        self.entries().iter().find(|e| e.device_id == device_id)
    }

    /// The device that holds the account key.
    pub fn key_holder(&self) -> Option<&DeviceEntry> {
        self.entries().iter().find(|e| e.role.holds_account_key())
    }

    /// The canonical encoding (what the relay stores and serves).
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The decoded list.
    pub fn signed(&self) -> &SignedDeviceList {
        &self.list
    }
}

/// Section 4, steps 2–6, on a decoded list. `skip` leaves out one entry's binding (a list
/// whose new device has not signed yet, section 6.3).
pub(crate) fn check(
    list: &SignedDeviceList,
    account: &AccountId,
    skip: Option<usize>,
) -> Result<(AccountKey, RoleFamily), DeviceListError> {
    let body = &list.body;
    if body.account != *account {
        return Err(DeviceListError::WrongAccount);
    }
    let account_key = AccountKey::from_bytes(&body.account_key)?;
    let message = list_message(body)?;
    account_key
        .0
        .verify(&message, &Signature::from_bytes(list.signature))
        .map_err(|_| DeviceListError::BadSignature)?;
    let mut holders = body.entries.iter().filter(|e| e.role.holds_account_key());
    let family = match (holders.next(), holders.next()) {
        (Some(holder), None) => holder.role.family(),
        _ => return Err(DeviceListError::Roles),
    };
    if body.entries.iter().any(|e| e.role.family() != family) {
        return Err(DeviceListError::Roles);
    }
    let mut seen = HashSet::with_capacity(body.entries.len());
    for e in &body.entries {
        if !seen.insert(e.identity.to_bytes()) || e.identity.signing == body.account_key {
            return Err(DeviceListError::DuplicateKey);
        }
    }
    if list.bindings.len() != body.entries.len() {
        return Err(DeviceListError::Decode(DecodeError::InvalidValue(
            "binding count",
        )));
    }
    for (i, (e, binding)) in body.entries.iter().zip(&list.bindings).enumerate() {
        let key = VerifyingKey::from_bytes(&e.identity.signing).map_err(|_| {
            DeviceListError::InvalidIdentityKey {
                device_id: e.device_id,
            }
        })?;
        if skip == Some(i) {
            continue;
        }
        key.verify(
            &binding_message(account, &account_key, &e.identity),
            &Signature::from_bytes(*binding),
        )
        .map_err(|_| DeviceListError::BadBinding {
            device_id: e.device_id,
        })?;
    }
    Ok((account_key, family))
}
