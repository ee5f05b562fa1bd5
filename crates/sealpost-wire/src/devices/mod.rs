//! Linked devices: the signed device list, the link invitation and the provisioning
//! messages (`spec/devices.md` sections 3 and 6). Structure only: keys and signatures are
//! checked by `sealpost-devices`.

use crate::{AccountId, DecodeError, IdentityBytes, KEY_LEN, Reader, SIGNATURE_LEN, Writer};

mod backup;
mod history;
pub use backup::{ACCOUNT_KEY_BACKUP_LEN, AccountKeyBackup, BACKUP_NONCE_LEN, BACKUP_SEALED_LEN};
pub use history::{
    ContactDevices, HISTORY_BUNDLE_ID_LEN, HistoryContact, HistoryDevice, HistoryDirection,
    HistoryMessage, HistoryPart, HistoryRecord, HistoryStatus, HistoryVerification,
    MAX_HISTORY_PART_LEN, PackedHistory, TYPE_HISTORY_PART, pack_history,
};

/// Version byte of every encoding in this module.
pub const DEVICES_VERSION: u8 = 0x01;
/// Type byte of a [`SignedDeviceList`].
pub const TYPE_DEVICE_LIST: u8 = 0x10;
/// Type byte of a [`LinkInvitation`].
pub const TYPE_LINK_INVITATION: u8 = 0x11;
/// Type byte of a [`ProvisioningEnvelope`].
pub const TYPE_PROVISIONING_ENVELOPE: u8 = 0x12;
/// Type byte of a [`ProvisioningBody`].
pub const TYPE_PROVISIONING_BODY: u8 = 0x13;
/// Type byte of an [`AccountKeyBackup`].
pub const TYPE_ACCOUNT_KEY_BACKUP: u8 = 0x15;

/// Most devices one list may name.
pub const MAX_LISTED_DEVICES: usize = 64;
/// Longest device name, in bytes of UTF-8.
pub const MAX_DEVICE_NAME_LEN: usize = 64;
/// Encoded length of one [`DeviceEntry`] without its name.
const ENTRY_FIXED_LEN: usize = 4 + IdentityBytes::LEN + 1 + 8 + 1;
/// Longest encoded [`SignedDeviceList`]: a 64-byte account id and 64 entries with 64-byte
/// names (13,368 bytes).
pub const MAX_DEVICE_LIST_LEN: usize = 2
    + 1
    + crate::MAX_ACCOUNT_ID_LEN
    + KEY_LEN
    + 8
    + 8
    + 4
    + 1
    + MAX_LISTED_DEVICES * (ENTRY_FIXED_LEN + MAX_DEVICE_NAME_LEN)
    + SIGNATURE_LEN
    + MAX_LISTED_DEVICES * SIGNATURE_LEN;
/// Encoded length of a [`LinkInvitation`].
pub const LINK_INVITATION_LEN: usize = 2 + PROVISIONING_ID_LEN + KEY_LEN + IdentityBytes::LEN;
/// Length of a provisioning id.
pub const PROVISIONING_ID_LEN: usize = 16;
/// Longest [`ProvisioningBody`] encoding (the plaintext of a provisioning envelope).
pub const MAX_PROVISIONING_PLAINTEXT: usize = 2 + 4 + 4 + MAX_DEVICE_LIST_LEN;
/// Length of the AEAD tag that ends a provisioning envelope.
pub const PROVISIONING_TAG_LEN: usize = 16;
/// Longest [`ProvisioningEnvelope`] encoding.
pub const MAX_PROVISIONING_ENVELOPE_LEN: usize =
    2 + KEY_LEN + MAX_PROVISIONING_PLAINTEXT + PROVISIONING_TAG_LEN;

/// A device's role on its account's list (`spec/devices.md` section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceRole {
    /// A consumer account's key holder.
    Primary,
    /// A consumer account's other devices.
    Linked,
    /// A business account's key holder.
    Owner,
    /// A business account's administrators.
    Admin,
    /// A business account's human agents.
    Agent,
    /// A business account's automated responders.
    Bot,
}

/// Which kind of account a role belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleFamily {
    /// Consumer accounts: `primary` and `linked`.
    Consumer,
    /// Business accounts: `owner`, `admin`, `agent`, `bot`.
    Business,
}

impl DeviceRole {
    /// The role's byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Primary => 0x01,
            Self::Linked => 0x02,
            Self::Owner => 0x10,
            Self::Admin => 0x11,
            Self::Agent => 0x12,
            Self::Bot => 0x13,
        }
    }

    /// The role a byte stands for.
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x01 => Self::Primary,
            0x02 => Self::Linked,
            0x10 => Self::Owner,
            0x11 => Self::Admin,
            0x12 => Self::Agent,
            0x13 => Self::Bot,
            _ => return Err(DecodeError::InvalidValue("device role")),
        })
    }

    /// Whether a device with this role holds the account key.
    pub fn holds_account_key(self) -> bool {
        matches!(self, Self::Primary | Self::Owner)
    }

    /// The kind of account the role belongs to.
    pub fn family(self) -> RoleFamily {
        match self {
            Self::Primary | Self::Linked => RoleFamily::Consumer,
            Self::Owner | Self::Admin | Self::Agent | Self::Bot => RoleFamily::Business,
        }
    }
}

/// A device's display name: 1..=64 bytes of UTF-8 without control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceName(String);

impl DeviceName {
    /// Checks and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<Self, DecodeError> {
        let name = name.into();
        if name.is_empty() {
            return Err(DecodeError::TooShort {
                what: "device name",
                len: 0,
                min: 1,
            });
        }
        if name.len() > MAX_DEVICE_NAME_LEN {
            return Err(DecodeError::TooLong {
                what: "device name",
                len: name.len(),
                max: MAX_DEVICE_NAME_LEN,
            });
        }
        if name.chars().any(char::is_control) {
            return Err(DecodeError::InvalidValue("device name"));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = usize::from(r.u8()?);
        if len == 0 {
            return Err(DecodeError::TooShort {
                what: "device name",
                len,
                min: 1,
            });
        }
        if len > MAX_DEVICE_NAME_LEN {
            return Err(DecodeError::TooLong {
                what: "device name",
                len,
                max: MAX_DEVICE_NAME_LEN,
            });
        }
        let b = r.bytes(len)?;
        let s = core::str::from_utf8(b).map_err(|_| DecodeError::InvalidValue("device name"))?;
        Self::new(s)
    }
}

/// One device on a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device's id (≥ 1).
    pub device_id: u32,
    /// The device's identity key.
    pub identity: IdentityBytes,
    /// Its role.
    pub role: DeviceRole,
    /// Unix ms when it was linked (informative).
    pub added_at: u64,
    /// Its display name.
    pub name: DeviceName,
}

/// The part of a device list that the account key signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListBody {
    /// The account.
    pub account: AccountId,
    /// The account key (Ed25519 public key).
    pub account_key: [u8; KEY_LEN],
    /// The list's version (≥ 1), strictly increasing.
    pub list_version: u64,
    /// Unix ms when it was signed (informative).
    pub issued_at: u64,
    /// Every device id of the account ever listed is below this.
    pub next_device_id: u32,
    /// The devices, in strictly increasing id order.
    pub entries: Vec<DeviceEntry>,
}

impl DeviceListBody {
    /// The signed bytes: `version || type || account || … || entries` (without the
    /// signature's label). Fails when the body breaks a structural rule (section 3.4).
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.check()?;
        let mut w = Writer::with_capacity(128 + self.entries.len() * (ENTRY_FIXED_LEN + 16));
        w.u8(DEVICES_VERSION).u8(TYPE_DEVICE_LIST);
        self.account.encode_into(&mut w);
        w.bytes(&self.account_key)
            .u64(self.list_version)
            .u64(self.issued_at)
            .u32(self.next_device_id);
        w.u8(u8::try_from(self.entries.len()).unwrap_or(u8::MAX));
        for e in &self.entries {
            w.u32(e.device_id)
                .bytes(&e.identity.to_bytes())
                .u8(e.role.to_byte())
                .u64(e.added_at)
                .var_bytes8(e.name.0.as_bytes());
        }
        Ok(w.into_bytes())
    }

    /// The structural rules an encoder must keep (the same a decoder checks).
    fn check(&self) -> Result<(), DecodeError> {
        if self.list_version == 0 {
            return Err(DecodeError::InvalidValue("list version"));
        }
        check_count(self.entries.len())?;
        let mut previous = 0u32;
        for e in &self.entries {
            check_device_id(e.device_id, previous, self.next_device_id)?;
            previous = e.device_id;
        }
        Ok(())
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != DEVICES_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        if kind != TYPE_DEVICE_LIST {
            return Err(DecodeError::UnknownType {
                what: "device list",
                value: kind,
            });
        }
        let account = AccountId::decode_from(r)?;
        let account_key = r.array()?;
        let list_version = r.u64()?;
        if list_version == 0 {
            return Err(DecodeError::InvalidValue("list version"));
        }
        let issued_at = r.u64()?;
        let next_device_id = r.u32()?;
        let count = usize::from(r.u8()?);
        check_count(count)?;
        let mut entries = Vec::with_capacity(count);
        let mut previous = 0u32;
        for _ in 0..count {
            let device_id = r.u32()?;
            check_device_id(device_id, previous, next_device_id)?;
            previous = device_id;
            let identity = IdentityBytes::decode_from(r)?;
            let role = DeviceRole::from_byte(r.u8()?)?;
            let added_at = r.u64()?;
            let name = DeviceName::decode_from(r)?;
            entries.push(DeviceEntry {
                device_id,
                identity,
                role,
                added_at,
                name,
            });
        }
        Ok(Self {
            account,
            account_key,
            list_version,
            issued_at,
            next_device_id,
            entries,
        })
    }
}

fn check_count(count: usize) -> Result<(), DecodeError> {
    if count == 0 {
        return Err(DecodeError::TooShort {
            what: "device list",
            len: 0,
            min: 1,
        });
    }
    if count > MAX_LISTED_DEVICES {
        return Err(DecodeError::TooLong {
            what: "device list",
            len: count,
            max: MAX_LISTED_DEVICES,
        });
    }
    Ok(())
}

fn check_device_id(id: u32, previous: u32, next_device_id: u32) -> Result<(), DecodeError> {
    if id == 0 {
        return Err(DecodeError::InvalidValue("device id"));
    }
    if id <= previous {
        return Err(DecodeError::InvalidValue("device order"));
    }
    if id >= next_device_id {
        return Err(DecodeError::InvalidValue("next device id"));
    }
    Ok(())
}

/// A device list as it travels: the body, the account key's signature over it, and one
/// binding per entry (`spec/devices.md` section 3.1). Decoding checks structure only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDeviceList {
    /// What the account key signed.
    pub body: DeviceListBody,
    /// The account key's signature.
    pub signature: [u8; SIGNATURE_LEN],
    /// Entry `i`'s binding, in entry order (as many as entries).
    pub bindings: Vec<[u8; SIGNATURE_LEN]>,
}

impl SignedDeviceList {
    /// The canonical encoding. Fails when the body breaks a structural rule or the number
    /// of bindings differs from the number of entries.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        if self.bindings.len() != self.body.entries.len() {
            return Err(DecodeError::InvalidValue("binding count"));
        }
        let mut out = self.body.encode()?;
        out.extend_from_slice(&self.signature);
        for b in &self.bindings {
            out.extend_from_slice(b);
        }
        Ok(out)
    }

    /// Decodes a whole input (section 3.4).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DEVICE_LIST_LEN {
            return Err(DecodeError::TooLong {
                what: "device list",
                len: bytes.len(),
                max: MAX_DEVICE_LIST_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let body = DeviceListBody::decode_from(&mut r)?;
        let signature = r.array()?;
        let mut bindings = Vec::with_capacity(body.entries.len());
        for _ in 0..body.entries.len() {
            bindings.push(r.array()?);
        }
        r.finish()?;
        Ok(Self {
            body,
            signature,
            bindings,
        })
    }
}

/// What the new device shows in its QR code (`spec/devices.md` section 6.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInvitation {
    /// The relay's provisioning id.
    pub provisioning_id: [u8; PROVISIONING_ID_LEN],
    /// The new device's ephemeral X25519 public key.
    pub ephemeral: [u8; KEY_LEN],
    /// The new device's identity.
    pub identity: IdentityBytes,
}

impl LinkInvitation {
    /// The 114-byte encoding.
    pub fn encode(&self) -> [u8; LINK_INVITATION_LEN] {
        let mut w = Writer::with_capacity(LINK_INVITATION_LEN);
        w.u8(DEVICES_VERSION)
            .u8(TYPE_LINK_INVITATION)
            .bytes(&self.provisioning_id)
            .bytes(&self.ephemeral)
            .bytes(&self.identity.to_bytes());
        let mut out = [0u8; LINK_INVITATION_LEN];
        out.copy_from_slice(&w.into_bytes());
        out
    }

    /// Decodes exactly 114 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        header(&mut r, TYPE_LINK_INVITATION, "link invitation")?;
        let provisioning_id = r.array()?;
        let ephemeral = r.array()?;
        let identity = IdentityBytes::decode_from(&mut r)?;
        r.finish()?;
        Ok(Self {
            provisioning_id,
            ephemeral,
            identity,
        })
    }
}

/// A sealed provisioning message as the relay carries it (`spec/devices.md` section 6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningEnvelope {
    /// The key holder's ephemeral X25519 public key for this message.
    pub sender_ephemeral: [u8; KEY_LEN],
    /// Ciphertext and tag of a [`ProvisioningBody`].
    pub sealed: Vec<u8>,
}

impl ProvisioningEnvelope {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(2 + KEY_LEN + self.sealed.len());
        w.u8(DEVICES_VERSION)
            .u8(TYPE_PROVISIONING_ENVELOPE)
            .bytes(&self.sender_ephemeral)
            .bytes(&self.sealed);
        w.into_bytes()
    }

    /// Decodes a whole input; `sealed` is the rest, 16 ..= 13,394 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_PROVISIONING_ENVELOPE_LEN {
            return Err(DecodeError::TooLong {
                what: "provisioning envelope",
                len: bytes.len(),
                max: MAX_PROVISIONING_ENVELOPE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        header(&mut r, TYPE_PROVISIONING_ENVELOPE, "provisioning envelope")?;
        let sender_ephemeral = r.array()?;
        let sealed = r.rest();
        if sealed.len() < PROVISIONING_TAG_LEN {
            return Err(DecodeError::TooShort {
                what: "provisioning ciphertext",
                len: sealed.len(),
                min: PROVISIONING_TAG_LEN,
            });
        }
        Ok(Self {
            sender_ephemeral,
            sealed: sealed.to_vec(),
        })
    }
}

/// The plaintext of a provisioning envelope: the new device's id and the list that names
/// it, with its own binding still zero (`spec/devices.md` section 6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningBody {
    /// The new device's id on the list.
    pub device_id: u32,
    /// The list, with the new device's binding all zero.
    pub list: SignedDeviceList,
}

impl ProvisioningBody {
    /// The encoding.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let list = self.list.encode()?;
        let mut w = Writer::with_capacity(10 + list.len());
        w.u8(DEVICES_VERSION)
            .u8(TYPE_PROVISIONING_BODY)
            .u32(self.device_id)
            .var_bytes32(&list);
        Ok(w.into_bytes())
    }

    /// Decodes a whole input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_PROVISIONING_PLAINTEXT {
            return Err(DecodeError::TooLong {
                what: "provisioning body",
                len: bytes.len(),
                max: MAX_PROVISIONING_PLAINTEXT,
            });
        }
        let mut r = Reader::new(bytes);
        header(&mut r, TYPE_PROVISIONING_BODY, "provisioning body")?;
        let device_id = r.u32()?;
        let list = SignedDeviceList::decode(r.var_bytes32("device list", MAX_DEVICE_LIST_LEN)?)?;
        r.finish()?;
        Ok(Self { device_id, list })
    }
}

fn header(r: &mut Reader<'_>, kind: u8, what: &'static str) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != DEVICES_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let value = r.u8()?;
    if value != kind {
        return Err(DecodeError::UnknownType { what, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
