//! Frames of the relay protocol (spec/relay.md): requests, responses and pushes between a
//! device and a relay. Parsing and serialization only.

use crate::devices::{
    MAX_DEVICE_LIST_LEN, MAX_PROVISIONING_ENVELOPE_LEN, ProvisioningEnvelope, SignedDeviceList,
};
use crate::{
    AccountId, DecodeError, DeviceAddress, IdentityBytes, KEM_PUBLIC_LEN, KemPreKeyKind,
    KemPreKeyPublic, PROTOCOL_VERSION, PreKeyBundle, Reader, SIGNATURE_LEN, SignedPreKeyPublic,
    Writer,
};

mod push;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use push::{Delivery, Push};
pub use request::{OutgoingEnvelope, PreKeyUpload, Request};
pub use response::{DAY_SECS, DeviceInfo, DeviceLastSeen, ErrorCode, Response};

/// ALPN protocol id of relay connections.
pub const ALPN: &[u8] = b"sealpost/1";
/// Largest frame body.
pub const MAX_FRAME_LEN: usize = 3 * 1024 * 1024;
/// Largest frame body a relay reads on a connection that has not authenticated
/// (spec/relay.md sections 2 and 7): the largest request allowed before authentication
/// (a `LinkDevice` with the largest device list, 13,442 bytes) rounded up to 14 KiB.
pub const MAX_PRE_AUTH_FRAME: usize = 14 * 1024;
const _: () =
    assert!(2 + 4 + crate::devices::MAX_DEVICE_LIST_LEN + 4 + SIGNATURE_LEN <= MAX_PRE_AUTH_FRAME);
const _: () = assert!(
    2 + credential_len(crate::MAX_ACCOUNT_ID_LEN)
        + VAULT_SHARE_LEN
        + PIN_TOKEN_LEN
        + 2
        + MAX_VAULT_RECORD_LEN
        <= MAX_PRE_AUTH_FRAME
);
/// Most bytes on one push stream (its frames back to back): any single frame fits.
pub const MAX_PUSH_STREAM_LEN: usize = MAX_FRAME_LEN + 4;
/// Largest envelope (one recipient device's opaque payload).
pub const MAX_ENVELOPE_LEN: usize = 320 * 1024;
/// Most devices an account may have: as many as a device list may name
/// ([`crate::devices::MAX_LISTED_DEVICES`]); relays configure a lower cap.
pub const MAX_DEVICES_PER_ACCOUNT: usize = crate::devices::MAX_LISTED_DEVICES;
/// Most one-time X25519 prekeys per upload.
pub const MAX_ONE_TIME_PER_UPLOAD: usize = 200;
/// Most KEM prekeys per upload.
pub const MAX_KEM_PER_UPLOAD: usize = 50;
/// Most server ids per `Ack`.
pub const MAX_ACKS_PER_REQUEST: usize = 1000;
/// Length of a verification code.
pub const CODE_LEN: usize = 6;
/// Length of a client-chosen message id.
pub const MESSAGE_ID_LEN: usize = 16;
/// Label of the TLS exporter used in registration and authentication signatures.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Sealpost-Relay";
/// Prefix of the registration signature input.
pub const REGISTER_SIG_LABEL: &[u8] = b"Sealpost_Register_v1";
/// Prefix of the `LinkDevice` signature input (spec/relay.md section 3.10).
pub const LINK_DEVICE_SIG_LABEL: &[u8] = b"Sealpost_LinkDevice_v1";
/// Length of a provisioning id.
pub const PROVISIONING_ID_LEN: usize = crate::devices::PROVISIONING_ID_LEN;
/// Prefix of the authentication signature input.
pub const AUTH_SIG_LABEL: &[u8] = b"Sealpost_RelayAuth_v1";
/// Prefix of a guardian credential's signed bytes (spec/pin.md section 7).
pub const CREDENTIAL_SIG_LABEL: &[u8] = b"Sealpost_GuardianCredential_v1";
/// Lifetime of a guardian credential, seconds (spec/pin.md section 7).
pub const CREDENTIAL_TTL: u64 = 3600;
/// Clock skew a guardian tolerates on a credential's `expires_at`, seconds: it accepts
/// `now < expires_at <= now + CREDENTIAL_TTL + CREDENTIAL_MAX_SKEW` (spec/pin.md section 7).
pub const CREDENTIAL_MAX_SKEW: u64 = 300;
/// Encoded length of a [`GuardianCredential`] for an account id of `account_len` bytes.
pub const fn credential_len(account_len: usize) -> usize {
    1 + account_len + 1 + 8 + 32 + SIGNATURE_LEN
}
/// Largest vault record a guardian accepts: 95 + 255 × 33 bytes (spec/pin.md section 12).
pub const MAX_VAULT_RECORD_LEN: usize = 8510;
/// Length of a guardian's key share (`index: u8 || k_i: 32`).
pub const VAULT_SHARE_LEN: usize = 33;
/// Length of a vault id.
pub const VAULT_ID_LEN: usize = 16;
/// Length of the registration-lock token, success tokens and their verifiers.
pub const PIN_TOKEN_LEN: usize = 32;
/// Wrong registration-lock tokens accepted before the relay stops checking
/// (spec/pin.md section 10).
pub const REGLOCK_MAX_ATTEMPTS: u16 = 10;
/// Seconds without any device of the account seen after which the registration lock lapses
/// (spec/pin.md section 10).
pub const REGLOCK_LAPSE: u64 = 604_800;

/// The registration signature input (spec/relay.md 3.2).
pub fn register_signed_bytes(
    exporter: &[u8; 32],
    account: &AccountId,
    identity: &IdentityBytes,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(REGISTER_SIG_LABEL.len() + 32 + 65 + 64);
    w.bytes(REGISTER_SIG_LABEL).bytes(exporter);
    account.encode_into(&mut w);
    w.bytes(&identity.to_bytes());
    w.into_bytes()
}

/// The `LinkDevice` signature input (spec/relay.md 3.10):
/// `"Sealpost_LinkDevice_v1" || exporter || device_id || list`.
pub fn link_device_signed_bytes(exporter: &[u8; 32], device_id: u32, list: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(LINK_DEVICE_SIG_LABEL.len() + 36 + list.len());
    w.bytes(LINK_DEVICE_SIG_LABEL)
        .bytes(exporter)
        .u32(device_id)
        .bytes(list);
    w.into_bytes()
}

/// Reads `var32(SignedDeviceList)`.
fn device_list(r: &mut Reader<'_>) -> Result<SignedDeviceList, DecodeError> {
    SignedDeviceList::decode(r.var_bytes32("device list", MAX_DEVICE_LIST_LEN)?)
}

/// Appends `var32(list)`.
fn put_device_list(w: &mut Writer, list: &SignedDeviceList) {
    // Lists in requests and responses were decoded or verified, so they encode.
    w.var_bytes32(&list.encode().unwrap_or_default());
}

/// Reads `var32(ProvisioningEnvelope)`.
fn provisioning_envelope(r: &mut Reader<'_>) -> Result<ProvisioningEnvelope, DecodeError> {
    ProvisioningEnvelope::decode(
        r.var_bytes32("provisioning envelope", MAX_PROVISIONING_ENVELOPE_LEN)?,
    )
}

/// The authentication signature input (spec/relay.md 3.4).
pub fn auth_signed_bytes(
    exporter: &[u8; 32],
    nonce: &[u8; 32],
    address: &DeviceAddress,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(AUTH_SIG_LABEL.len() + 64 + 69);
    w.bytes(AUTH_SIG_LABEL).bytes(exporter).bytes(nonce);
    address.encode_into(&mut w);
    w.into_bytes()
}

/// What a guardian credential permits (spec/pin.md section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialScope {
    /// Issued to an authenticated device of the account: every vault request.
    Owner,
    /// Issued in a `RegistrationLocked` response: `VaultFetch`, `VaultEvaluate`,
    /// `VaultConfirm`.
    Recovery,
}

impl CredentialScope {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Owner => 0x01,
            Self::Recovery => 0x02,
        }
    }

    /// Parses a wire value.
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0x01 => Ok(Self::Owner),
            0x02 => Ok(Self::Recovery),
            value => Err(DecodeError::UnknownType {
                what: "credential scope",
                value,
            }),
        }
    }
}

/// The bytes an issuer signs for a guardian credential (spec/pin.md section 7):
/// `"Sealpost_GuardianCredential_v1" || account || scope || expires_at || issuer`.
pub fn credential_signed_bytes(
    account: &AccountId,
    scope: CredentialScope,
    expires_at: u64,
    issuer: &[u8; 32],
) -> Vec<u8> {
    let mut w = Writer::with_capacity(CREDENTIAL_SIG_LABEL.len() + 65 + 1 + 8 + 32);
    w.bytes(CREDENTIAL_SIG_LABEL);
    account.encode_into(&mut w);
    w.u8(scope.to_u8()).u64(expires_at).bytes(issuer);
    w.into_bytes()
}

/// A relay-signed statement that lets its holder use an account's vault at a guardian
/// (spec/pin.md section 7). This type only carries the bytes; guardians check the signature
/// (`verify_strict`), issuer, expiry and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardianCredential {
    /// The account whose vault it opens.
    pub account: AccountId,
    /// What it permits.
    pub scope: CredentialScope,
    /// End of validity, Unix seconds.
    pub expires_at: u64,
    /// The issuing relay's Ed25519 public key.
    pub issuer: [u8; 32],
    /// Ed25519 signature by `issuer` over [`GuardianCredential::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl GuardianCredential {
    /// The signed bytes of this credential ([`credential_signed_bytes`]).
    pub fn signed_bytes(&self) -> Vec<u8> {
        credential_signed_bytes(&self.account, self.scope, self.expires_at, &self.issuer)
    }

    /// Appends the encoding.
    pub fn encode_into(&self, w: &mut Writer) {
        self.account.encode_into(w);
        w.u8(self.scope.to_u8())
            .u64(self.expires_at)
            .bytes(&self.issuer)
            .bytes(&self.signature);
    }

    /// Reads the encoding.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            account: AccountId::decode_from(r)?,
            scope: CredentialScope::from_u8(r.u8()?)?,
            expires_at: r.u64()?,
            issuer: r.array()?,
            signature: r.array()?,
        })
    }

    /// The encoding on its own.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(credential_len(self.account.as_str().len()));
        self.encode_into(&mut w);
        w.into_bytes()
    }

    /// Parses a complete encoding (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let c = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(c)
    }
}

fn vault_record<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    r.var_bytes16("vault record", MAX_VAULT_RECORD_LEN)
}

/// Reads the 4-byte frame length prefix and checks it (spec/relay.md section 2).
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    frame_len_within(prefix, MAX_FRAME_LEN)
}

/// Reads the 4-byte frame length prefix and checks it against `max` as well as the
/// protocol's bounds: a relay passes [`MAX_PRE_AUTH_FRAME`] before a connection has
/// authenticated (spec/relay.md section 2).
pub fn frame_len_within(prefix: [u8; 4], max: usize) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    let max = max.min(MAX_FRAME_LEN);
    if len < 2 {
        return Err(DecodeError::TooShort {
            what: "frame",
            len,
            min: 2,
        });
    }
    if len > max {
        return Err(DecodeError::TooLong {
            what: "frame",
            len,
            max,
        });
    }
    Ok(len)
}

fn frame(kind: u8, payload: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.u32(0).u8(PROTOCOL_VERSION).u8(kind);
    payload(&mut w);
    let mut out = w.into_bytes();
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    if let Some(prefix) = out.get_mut(..4) {
        prefix.copy_from_slice(&len.to_be_bytes());
    }
    out
}

fn body_header<'a>(body: &'a [u8]) -> Result<(u8, Reader<'a>), DecodeError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong {
            what: "frame",
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = r.u8()?;
    Ok((kind, r))
}

fn envelope<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let e = r.var_bytes32("envelope", MAX_ENVELOPE_LEN)?;
    if e.is_empty() {
        return Err(DecodeError::TooShort {
            what: "envelope",
            len: 0,
            min: 1,
        });
    }
    Ok(e)
}
