//! Frames of the relay protocol (spec/relay.md): requests, responses and pushes between a
//! device and a relay. Parsing and serialization only.

use crate::{
    AccountId, DecodeError, DeviceAddress, IdentityBytes, KEM_PUBLIC_LEN, KemPreKeyKind,
    KemPreKeyPublic, PROTOCOL_VERSION, PreKeyBundle, Reader, SIGNATURE_LEN, SignedPreKeyPublic,
    Writer,
};

/// ALPN protocol id of relay connections.
pub const ALPN: &[u8] = b"sealpost/1";
/// Largest frame body.
pub const MAX_FRAME_LEN: usize = 3 * 1024 * 1024;
/// Largest envelope (one recipient device's opaque payload).
pub const MAX_ENVELOPE_LEN: usize = 320 * 1024;
/// Most devices an account may have.
pub const MAX_DEVICES_PER_ACCOUNT: usize = 8;
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
/// Prefix of the authentication signature input.
pub const AUTH_SIG_LABEL: &[u8] = b"Sealpost_RelayAuth_v1";

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

/// Reads the 4-byte frame length prefix and checks it (spec/relay.md section 2).
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len < 2 {
        return Err(DecodeError::TooShort {
            what: "frame",
            len,
            min: 2,
        });
    }
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong {
            what: "frame",
            len,
            max: MAX_FRAME_LEN,
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

/// A prekey upload (spec/relay.md 3.5).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PreKeyUpload {
    /// A new signed prekey, replacing the stored one.
    pub signed_prekey: Option<SignedPreKeyPublic>,
    /// One-time X25519 prekeys `(id, public)`.
    pub one_time: Vec<(u32, [u8; 32])>,
    /// KEM prekeys (one-time, or a last-resort key replacing the stored one).
    pub kem: Vec<KemPreKeyPublic>,
}

/// One envelope of a `Send` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    /// The recipient device.
    pub device_id: u32,
    /// The opaque payload (an encoded session message).
    pub envelope: Vec<u8>,
}

/// A request from a device (client-initiated bidirectional stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Ask for a verification code.
    RequestCode {
        /// The account (E.164 phone number).
        account: AccountId,
    },
    /// Register a device with a verification code.
    Register {
        /// The account.
        account: AccountId,
        /// Six ASCII digits.
        code: [u8; CODE_LEN],
        /// The device's public identity.
        identity: IdentityBytes,
        /// Ed25519 signature over [`register_signed_bytes`].
        signature: [u8; SIGNATURE_LEN],
    },
    /// Ask for an authentication nonce.
    Challenge,
    /// Authenticate the connection as a device.
    Authenticate {
        /// The device.
        address: DeviceAddress,
        /// Ed25519 signature over [`auth_signed_bytes`].
        signature: [u8; SIGNATURE_LEN],
    },
    /// Upload prekeys.
    UploadPreKeys(PreKeyUpload),
    /// Fetch one bundle per device of an account.
    FetchBundles {
        /// The account.
        account: AccountId,
    },
    /// List an account's devices.
    ListDevices {
        /// The account.
        account: AccountId,
    },
    /// Send one envelope to each device of an account.
    Send {
        /// Random id echoed to the recipient for de-duplication.
        message_id: [u8; MESSAGE_ID_LEN],
        /// The recipient account.
        recipient: AccountId,
        /// One envelope per recipient device.
        envelopes: Vec<OutgoingEnvelope>,
    },
    /// Acknowledge persisted envelopes.
    Ack {
        /// Server ids of the envelopes.
        server_ids: Vec<u64>,
    },
}

impl Request {
    /// Serializes as a complete frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::RequestCode { account } => frame(0x01, |w| account.encode_into(w)),
            Self::Register {
                account,
                code,
                identity,
                signature,
            } => frame(0x02, |w| {
                account.encode_into(w);
                w.bytes(code).bytes(&identity.to_bytes()).bytes(signature);
            }),
            Self::Challenge => frame(0x03, |_| {}),
            Self::Authenticate { address, signature } => frame(0x04, |w| {
                address.encode_into(w);
                w.bytes(signature);
            }),
            Self::UploadPreKeys(u) => frame(0x10, |w| {
                w.flag(u.signed_prekey.is_some());
                if let Some(s) = &u.signed_prekey {
                    w.u32(s.id)
                        .u64(s.created_at)
                        .bytes(&s.public)
                        .bytes(&s.signature);
                }
                w.u16(u16::try_from(u.one_time.len()).unwrap_or(u16::MAX));
                for (id, k) in u.one_time.iter().take(usize::from(u16::MAX)) {
                    w.u32(*id).bytes(k);
                }
                w.u16(u16::try_from(u.kem.len()).unwrap_or(u16::MAX));
                for k in u.kem.iter().take(usize::from(u16::MAX)) {
                    w.u32(k.id)
                        .u8(k.kind.to_u8())
                        .u64(k.created_at)
                        .bytes(k.public.as_slice())
                        .bytes(&k.signature);
                }
            }),
            Self::FetchBundles { account } => frame(0x11, |w| account.encode_into(w)),
            Self::ListDevices { account } => frame(0x12, |w| account.encode_into(w)),
            Self::Send {
                message_id,
                recipient,
                envelopes,
            } => frame(0x20, |w| {
                w.bytes(message_id);
                recipient.encode_into(w);
                w.u8(u8::try_from(envelopes.len()).unwrap_or(u8::MAX));
                for e in envelopes.iter().take(usize::from(u8::MAX)) {
                    w.u32(e.device_id).var_bytes32(&e.envelope);
                }
            }),
            Self::Ack { server_ids } => frame(0x21, |w| {
                w.u16(u16::try_from(server_ids.len()).unwrap_or(u16::MAX));
                for id in server_ids.iter().take(usize::from(u16::MAX)) {
                    w.u64(*id);
                }
            }),
        }
    }

    /// Parses a frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let (kind, mut r) = body_header(body)?;
        let req = match kind {
            0x01 => Self::RequestCode {
                account: AccountId::decode_from(&mut r)?,
            },
            0x02 => Self::Register {
                account: AccountId::decode_from(&mut r)?,
                code: r.array()?,
                identity: IdentityBytes::decode_from(&mut r)?,
                signature: r.array()?,
            },
            0x03 => Self::Challenge,
            0x04 => Self::Authenticate {
                address: DeviceAddress::decode_from(&mut r)?,
                signature: r.array()?,
            },
            0x10 => {
                let signed_prekey = if r.flag("has_signed_prekey")? {
                    Some(SignedPreKeyPublic {
                        id: r.u32()?,
                        created_at: r.u64()?,
                        public: r.array()?,
                        signature: r.array()?,
                    })
                } else {
                    None
                };
                let n = usize::from(r.u16()?);
                if n > MAX_ONE_TIME_PER_UPLOAD {
                    return Err(DecodeError::TooLong {
                        what: "one-time prekeys",
                        len: n,
                        max: MAX_ONE_TIME_PER_UPLOAD,
                    });
                }
                let mut one_time = Vec::with_capacity(n);
                for _ in 0..n {
                    one_time.push((r.u32()?, r.array()?));
                }
                let n = usize::from(r.u16()?);
                if n > MAX_KEM_PER_UPLOAD {
                    return Err(DecodeError::TooLong {
                        what: "KEM prekeys",
                        len: n,
                        max: MAX_KEM_PER_UPLOAD,
                    });
                }
                let mut kem = Vec::with_capacity(n);
                for _ in 0..n {
                    kem.push(KemPreKeyPublic {
                        id: r.u32()?,
                        kind: KemPreKeyKind::from_u8(r.u8()?)?,
                        created_at: r.u64()?,
                        public: Box::new(r.array::<KEM_PUBLIC_LEN>()?),
                        signature: r.array()?,
                    });
                }
                Self::UploadPreKeys(PreKeyUpload {
                    signed_prekey,
                    one_time,
                    kem,
                })
            }
            0x11 => Self::FetchBundles {
                account: AccountId::decode_from(&mut r)?,
            },
            0x12 => Self::ListDevices {
                account: AccountId::decode_from(&mut r)?,
            },
            0x20 => {
                let message_id = r.array()?;
                let recipient = AccountId::decode_from(&mut r)?;
                let n = usize::from(r.u8()?);
                if n == 0 || n > MAX_DEVICES_PER_ACCOUNT {
                    return Err(DecodeError::InvalidValue("envelope count"));
                }
                let mut envelopes = Vec::with_capacity(n);
                for _ in 0..n {
                    let device_id = r.u32()?;
                    envelopes.push(OutgoingEnvelope {
                        device_id,
                        envelope: envelope(&mut r)?.to_vec(),
                    });
                }
                Self::Send {
                    message_id,
                    recipient,
                    envelopes,
                }
            }
            0x21 => {
                let n = usize::from(r.u16()?);
                if n > MAX_ACKS_PER_REQUEST {
                    return Err(DecodeError::TooLong {
                        what: "acks",
                        len: n,
                        max: MAX_ACKS_PER_REQUEST,
                    });
                }
                let mut server_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    server_ids.push(r.u64()?);
                }
                Self::Ack { server_ids }
            }
            value => {
                return Err(DecodeError::UnknownType {
                    what: "request",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(req)
    }
}

/// Error codes of the `Error` response (spec/relay.md section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or payload does not decode.
    Malformed,
    /// Frame version other than 0x01.
    UnsupportedVersion,
    /// A length exceeds its limit.
    TooLarge,
    /// The request needs an authenticated connection.
    Unauthenticated,
    /// A second `Authenticate`.
    AlreadyAuthenticated,
    /// Try again after `retry_after` seconds.
    RateLimited,
    /// The account id is not an E.164 number.
    InvalidAccount,
    /// No code, expired code, or wrong code.
    CodeInvalid,
    /// Too many wrong codes.
    CodeAttemptsExceeded,
    /// The registration signature does not verify.
    InvalidSignature,
    /// Device authentication failed.
    AuthFailed,
    /// No such account, or it has no devices.
    UnknownAccount,
    /// The envelopes do not address exactly the recipient's devices.
    MismatchedDevices,
    /// The recipient device's mailbox is full.
    QueueFull,
    /// A prekey signature or key is invalid, or an id is already stored.
    InvalidPreKey,
    /// Upload over a limit.
    TooManyPreKeys,
    /// Unknown request kind.
    UnknownRequest,
    /// The relay failed; nothing was changed.
    Internal,
    /// Registration lock (two-step PIN).
    RegistrationLocked,
    /// A code this implementation does not know.
    Other(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Malformed => 1,
            Self::UnsupportedVersion => 2,
            Self::TooLarge => 3,
            Self::Unauthenticated => 4,
            Self::AlreadyAuthenticated => 5,
            Self::RateLimited => 6,
            Self::InvalidAccount => 7,
            Self::CodeInvalid => 8,
            Self::CodeAttemptsExceeded => 9,
            Self::InvalidSignature => 10,
            Self::AuthFailed => 11,
            Self::UnknownAccount => 12,
            Self::MismatchedDevices => 13,
            Self::QueueFull => 14,
            Self::InvalidPreKey => 15,
            Self::TooManyPreKeys => 16,
            Self::UnknownRequest => 17,
            Self::Internal => 18,
            Self::RegistrationLocked => 19,
            Self::Other(v) => v,
        }
    }

    /// Parses a wire value; unknown values are kept as [`ErrorCode::Other`].
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::Malformed,
            2 => Self::UnsupportedVersion,
            3 => Self::TooLarge,
            4 => Self::Unauthenticated,
            5 => Self::AlreadyAuthenticated,
            6 => Self::RateLimited,
            7 => Self::InvalidAccount,
            8 => Self::CodeInvalid,
            9 => Self::CodeAttemptsExceeded,
            10 => Self::InvalidSignature,
            11 => Self::AuthFailed,
            12 => Self::UnknownAccount,
            13 => Self::MismatchedDevices,
            14 => Self::QueueFull,
            15 => Self::InvalidPreKey,
            16 => Self::TooManyPreKeys,
            17 => Self::UnknownRequest,
            18 => Self::Internal,
            19 => Self::RegistrationLocked,
            other => Self::Other(other),
        }
    }
}

/// A device of an account as listed by the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id.
    pub device_id: u32,
    /// Its registered identity.
    pub identity: IdentityBytes,
}

/// A relay's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `RequestCode` succeeded.
    CodeSent {
        /// Seconds until the code expires.
        expires_in: u32,
    },
    /// `Register` succeeded.
    Registered {
        /// The new device's id.
        device_id: u32,
    },
    /// `Challenge` succeeded.
    ChallengeIssued {
        /// The nonce to sign.
        nonce: [u8; 32],
    },
    /// `Authenticate` succeeded.
    Authenticated {
        /// One-time X25519 prekeys stored for the device.
        one_time_prekeys: u32,
        /// One-time KEM prekeys stored for the device.
        kem_prekeys: u32,
        /// Envelopes queued for the device.
        queued: u32,
    },
    /// `UploadPreKeys` succeeded.
    PreKeysStored {
        /// One-time X25519 prekeys now stored.
        one_time_prekeys: u32,
        /// One-time KEM prekeys now stored.
        kem_prekeys: u32,
    },
    /// `FetchBundles` succeeded.
    Bundles(Vec<PreKeyBundle>),
    /// `ListDevices` succeeded.
    Devices(Vec<DeviceInfo>),
    /// `Send` succeeded: every envelope is durably queued.
    Accepted {
        /// Relay time of acceptance, Unix milliseconds.
        timestamp: u64,
    },
    /// `Ack` succeeded.
    Acked {
        /// Envelopes deleted.
        removed: u16,
    },
    /// The request failed.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Seconds to wait before retrying (0 if not applicable).
        retry_after: u32,
        /// Human-readable detail; never secret material.
        detail: String,
    },
}

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Error {
            code,
            retry_after: 0,
            detail: detail.into(),
        }
    }

    /// Serializes as a complete frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::CodeSent { expires_in } => frame(0x41, |w| {
                w.u32(*expires_in);
            }),
            Self::Registered { device_id } => frame(0x42, |w| {
                w.u32(*device_id);
            }),
            Self::ChallengeIssued { nonce } => frame(0x43, |w| {
                w.bytes(nonce);
            }),
            Self::Authenticated {
                one_time_prekeys,
                kem_prekeys,
                queued,
            } => frame(0x44, |w| {
                w.u32(*one_time_prekeys).u32(*kem_prekeys).u32(*queued);
            }),
            Self::PreKeysStored {
                one_time_prekeys,
                kem_prekeys,
            } => frame(0x50, |w| {
                w.u32(*one_time_prekeys).u32(*kem_prekeys);
            }),
            Self::Bundles(b) => frame(0x51, |w| {
                w.u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
                for bundle in b.iter().take(usize::from(u8::MAX)) {
                    w.var_bytes32(&bundle.encode());
                }
            }),
            Self::Devices(d) => frame(0x52, |w| {
                w.u8(u8::try_from(d.len()).unwrap_or(u8::MAX));
                for dev in d.iter().take(usize::from(u8::MAX)) {
                    w.u32(dev.device_id).bytes(&dev.identity.to_bytes());
                }
            }),
            Self::Accepted { timestamp } => frame(0x60, |w| {
                w.u64(*timestamp);
            }),
            Self::Acked { removed } => frame(0x61, |w| {
                w.u16(*removed);
            }),
            Self::Error {
                code,
                retry_after,
                detail,
            } => frame(0x7F, |w| {
                let mut d = detail.as_str();
                while d.len() > 255 {
                    let mut cut = 255;
                    while !d.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    d = d.get(..cut).unwrap_or_default();
                }
                w.u16(code.to_u16())
                    .u32(*retry_after)
                    .var_bytes8(d.as_bytes());
            }),
        }
    }

    /// Parses a frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let (kind, mut r) = body_header(body)?;
        let resp = match kind {
            0x41 => Self::CodeSent {
                expires_in: r.u32()?,
            },
            0x42 => Self::Registered {
                device_id: r.u32()?,
            },
            0x43 => Self::ChallengeIssued { nonce: r.array()? },
            0x44 => Self::Authenticated {
                one_time_prekeys: r.u32()?,
                kem_prekeys: r.u32()?,
                queued: r.u32()?,
            },
            0x50 => Self::PreKeysStored {
                one_time_prekeys: r.u32()?,
                kem_prekeys: r.u32()?,
            },
            0x51 => {
                let n = usize::from(r.u8()?);
                if n > MAX_DEVICES_PER_ACCOUNT {
                    return Err(DecodeError::TooLong {
                        what: "bundles",
                        len: n,
                        max: MAX_DEVICES_PER_ACCOUNT,
                    });
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(PreKeyBundle::decode(r.var_bytes32("bundle", 4096)?)?);
                }
                Self::Bundles(v)
            }
            0x52 => {
                let n = usize::from(r.u8()?);
                if n > MAX_DEVICES_PER_ACCOUNT {
                    return Err(DecodeError::TooLong {
                        what: "devices",
                        len: n,
                        max: MAX_DEVICES_PER_ACCOUNT,
                    });
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(DeviceInfo {
                        device_id: r.u32()?,
                        identity: IdentityBytes::decode_from(&mut r)?,
                    });
                }
                Self::Devices(v)
            }
            0x60 => Self::Accepted {
                timestamp: r.u64()?,
            },
            0x61 => Self::Acked { removed: r.u16()? },
            0x7F => {
                let code = ErrorCode::from_u16(r.u16()?);
                let retry_after = r.u32()?;
                let d = r.var_bytes8("error detail", 255)?;
                let detail = core::str::from_utf8(d)
                    .map_err(|_| DecodeError::InvalidValue("error detail"))?;
                Self::Error {
                    code,
                    retry_after,
                    detail: detail.to_owned(),
                }
            }
            value => {
                return Err(DecodeError::UnknownType {
                    what: "response",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(resp)
    }
}

/// A delivered envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The relay's id, to acknowledge.
    pub server_id: u64,
    /// The sending device.
    pub sender: DeviceAddress,
    /// The sender's message id.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// Relay acceptance time, Unix milliseconds.
    pub timestamp: u64,
    /// The opaque payload.
    pub envelope: Vec<u8>,
}

/// A push from the relay (server-initiated unidirectional stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// An envelope for this device.
    Deliver(Delivery),
    /// The device's one-time prekeys are running low.
    PreKeysLow {
        /// One-time X25519 prekeys left.
        one_time_prekeys: u32,
        /// One-time KEM prekeys left.
        kem_prekeys: u32,
    },
    /// Everything queued at authentication time has been delivered.
    QueueDrained,
}

impl Push {
    /// Serializes as a complete frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Deliver(d) => frame(0x80, |w| {
                w.u64(d.server_id);
                d.sender.encode_into(w);
                w.bytes(&d.message_id)
                    .u64(d.timestamp)
                    .var_bytes32(&d.envelope);
            }),
            Self::PreKeysLow {
                one_time_prekeys,
                kem_prekeys,
            } => frame(0x81, |w| {
                w.u32(*one_time_prekeys).u32(*kem_prekeys);
            }),
            Self::QueueDrained => frame(0x82, |_| {}),
        }
    }

    /// Parses a frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let (kind, mut r) = body_header(body)?;
        let push = match kind {
            0x80 => Self::Deliver(Delivery {
                server_id: r.u64()?,
                sender: DeviceAddress::decode_from(&mut r)?,
                message_id: r.array()?,
                timestamp: r.u64()?,
                envelope: envelope(&mut r)?.to_vec(),
            }),
            0x81 => Self::PreKeysLow {
                one_time_prekeys: r.u32()?,
                kem_prekeys: r.u32()?,
            },
            0x82 => Self::QueueDrained,
            value => {
                return Err(DecodeError::UnknownType {
                    what: "push",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(push)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceId;

    fn body(frame: &[u8]) -> &[u8] {
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    fn acct() -> AccountId {
        AccountId::new("+15550001111").unwrap()
    }

    #[test]
    fn requests_roundtrip_and_reject_truncation() {
        let reqs = vec![
            Request::RequestCode { account: acct() },
            Request::Register {
                account: acct(),
                code: *b"123456",
                identity: IdentityBytes {
                    signing: [1; 32],
                    dh: [2; 32],
                },
                signature: [3; 64],
            },
            Request::Challenge,
            Request::Authenticate {
                address: DeviceAddress::new(acct(), DeviceId(2)),
                signature: [4; 64],
            },
            Request::UploadPreKeys(PreKeyUpload {
                signed_prekey: Some(SignedPreKeyPublic {
                    id: 1,
                    created_at: 2,
                    public: [5; 32],
                    signature: [6; 64],
                }),
                one_time: vec![(1, [7; 32]), (2, [8; 32])],
                kem: vec![KemPreKeyPublic {
                    id: 3,
                    kind: KemPreKeyKind::LastResort,
                    created_at: 4,
                    public: Box::new([9; KEM_PUBLIC_LEN]),
                    signature: [10; 64],
                }],
            }),
            Request::FetchBundles { account: acct() },
            Request::ListDevices { account: acct() },
            Request::Send {
                message_id: [11; 16],
                recipient: acct(),
                envelopes: vec![OutgoingEnvelope {
                    device_id: 1,
                    envelope: vec![1, 2, 3],
                }],
            },
            Request::Ack {
                server_ids: vec![1, 2, 3],
            },
        ];
        for req in reqs {
            let f = req.encode();
            let b = body(&f);
            assert_eq!(Request::decode(b).unwrap(), req);
            for cut in 0..b.len() {
                assert!(Request::decode(&b[..cut]).is_err(), "{req:?} cut {cut}");
            }
            let mut long = b.to_vec();
            long.push(0);
            assert_eq!(Request::decode(&long), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn responses_and_pushes_roundtrip() {
        let resps = vec![
            Response::CodeSent { expires_in: 600 },
            Response::Registered { device_id: 1 },
            Response::ChallengeIssued { nonce: [1; 32] },
            Response::Authenticated {
                one_time_prekeys: 1,
                kem_prekeys: 2,
                queued: 3,
            },
            Response::PreKeysStored {
                one_time_prekeys: 4,
                kem_prekeys: 5,
            },
            Response::Bundles(vec![]),
            Response::Devices(vec![DeviceInfo {
                device_id: 1,
                identity: IdentityBytes {
                    signing: [1; 32],
                    dh: [2; 32],
                },
            }]),
            Response::Accepted { timestamp: 99 },
            Response::Acked { removed: 2 },
            Response::Error {
                code: ErrorCode::RateLimited,
                retry_after: 5,
                detail: "slow down".into(),
            },
            Response::Error {
                code: ErrorCode::Other(999),
                retry_after: 0,
                detail: String::new(),
            },
        ];
        for resp in resps {
            let f = resp.encode();
            assert_eq!(Response::decode(body(&f)).unwrap(), resp);
        }
        let pushes = vec![
            Push::Deliver(Delivery {
                server_id: 7,
                sender: DeviceAddress::new(acct(), DeviceId(1)),
                message_id: [2; 16],
                timestamp: 3,
                envelope: vec![4; 10],
            }),
            Push::PreKeysLow {
                one_time_prekeys: 1,
                kem_prekeys: 0,
            },
            Push::QueueDrained,
        ];
        for p in pushes {
            let f = p.encode();
            assert_eq!(Push::decode(body(&f)).unwrap(), p);
        }
    }

    #[test]
    fn limits_are_enforced() {
        assert!(frame_len([0, 0, 0, 1]).is_err());
        assert!(frame_len(((MAX_FRAME_LEN + 1) as u32).to_be_bytes()).is_err());
        let long = Response::error(ErrorCode::Internal, "é".repeat(300));
        match Response::decode(body(&long.encode())).unwrap() {
            Response::Error { detail, .. } => assert!(detail.len() <= 255),
            other => panic!("{other:?}"),
        }
        let send = Request::Send {
            message_id: [0; 16],
            recipient: acct(),
            envelopes: vec![OutgoingEnvelope {
                device_id: 1,
                envelope: vec![0; MAX_ENVELOPE_LEN + 1],
            }],
        };
        assert!(matches!(
            Request::decode(body(&send.encode())),
            Err(DecodeError::TooLong { .. })
        ));
        let empty = Request::Send {
            message_id: [0; 16],
            recipient: acct(),
            envelopes: vec![OutgoingEnvelope {
                device_id: 1,
                envelope: vec![],
            }],
        };
        assert!(matches!(
            Request::decode(body(&empty.encode())),
            Err(DecodeError::TooShort { .. })
        ));
        assert_eq!(
            Request::decode(&[1, 0x3e]),
            Err(DecodeError::UnknownType {
                what: "request",
                value: 0x3e
            })
        );
    }
}
