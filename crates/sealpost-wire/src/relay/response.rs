//! Responses and error codes (spec/relay.md sections 3 and 6).

use super::*;

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
    /// Reserved (19): earlier drafts reported the registration lock with this code; the lock is
    /// now the `RegistrationLocked` response. Never sent.
    RegistrationLocked,
    /// The guardian credential is expired, untrusted, badly signed or out of scope.
    CredentialInvalid,
    /// This relay is not a guardian, or not for this account.
    NotGuardian,
    /// No vault for the account, or another vault id.
    VaultNotFound,
    /// `VaultStore` with a record that does not decode or a share that does not match it.
    InvalidVault,
    /// The relay could not reach its storage; nothing was changed; retry later (with
    /// backoff, or after `retry_after` seconds if it is not 0).
    Unavailable,
    /// `VaultEvaluate` on a vault the guardian holds back because its database went back in
    /// time (restored from an older copy): its attempt count cannot be trusted. Nothing was
    /// counted; the vault serves again once its owner stores it again or confirms it.
    VaultRolledBack,
    /// `Provision` to a provisioning id that does not exist, expired or was used.
    ProvisioningNotFound,
    /// A device list that is not valid for the account, or breaks the relay's rules for
    /// publishing or linking (spec/relay.md 3.9, 3.10).
    InvalidDeviceList,
    /// A device list whose version is not above the stored one.
    StaleDeviceList,
    /// A device list over the relay's device cap for the account's kind.
    TooManyDevices,
    /// `Send` to an account whose key holder was just replaced by a recovery registration
    /// (spec/relay.md 3.2) and has not published its list yet: retry after `retry_after`.
    DevicesChanging,
    /// A business profile or verification statement that is not valid for the account
    /// (3.14).
    InvalidBusinessProfile,
    /// A business profile whose version is not above the stored one (3.14).
    StaleBusinessProfile,
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
            Self::CredentialInvalid => 20,
            Self::NotGuardian => 21,
            Self::VaultNotFound => 22,
            Self::InvalidVault => 23,
            Self::Unavailable => 24,
            Self::VaultRolledBack => 25,
            Self::ProvisioningNotFound => 26,
            Self::InvalidDeviceList => 27,
            Self::StaleDeviceList => 28,
            Self::TooManyDevices => 29,
            Self::DevicesChanging => 30,
            Self::InvalidBusinessProfile => 31,
            Self::StaleBusinessProfile => 32,
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
            20 => Self::CredentialInvalid,
            21 => Self::NotGuardian,
            22 => Self::VaultNotFound,
            23 => Self::InvalidVault,
            24 => Self::Unavailable,
            25 => Self::VaultRolledBack,
            26 => Self::ProvisioningNotFound,
            27 => Self::InvalidDeviceList,
            28 => Self::StaleDeviceList,
            29 => Self::TooManyDevices,
            30 => Self::DevicesChanging,
            31 => Self::InvalidBusinessProfile,
            32 => Self::StaleBusinessProfile,
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

/// Seconds in a UTC day: `DeviceActivity` reports last-seen times as multiples of this
/// (spec/relay.md 3.12).
pub const DAY_SECS: u64 = 86_400;

/// When a device of the caller's own account was last seen, to the day (spec/relay.md 3.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLastSeen {
    /// The device id.
    pub device_id: u32,
    /// Unix seconds of the start of the UTC day (a multiple of [`DAY_SECS`]) on which the
    /// device was last seen; 0 when the relay has no record of it.
    pub last_seen_day: u64,
}

impl DeviceLastSeen {
    /// The entry for a device last seen at Unix time `last_seen_ms` (milliseconds, 0 for
    /// never): the time rounded down to the start of its UTC day.
    pub fn from_unix_ms(device_id: u32, last_seen_ms: u64) -> Self {
        let secs = last_seen_ms / 1000;
        Self {
            device_id,
            last_seen_day: secs - secs % DAY_SECS,
        }
    }
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
        /// The highest `sender_seq` of a `Send` the relay has accepted from this device, 0 if
        /// none (spec/relay.md section 3.4; the client's rollback check).
        sender_seq: u64,
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
    /// `DeviceActivity` succeeded: one entry per device of the own account, in increasing
    /// device order.
    Activity(Vec<DeviceLastSeen>),
    /// `OpenProvisioning` succeeded.
    ProvisioningOpened {
        /// The single-use provisioning id.
        provisioning_id: [u8; PROVISIONING_ID_LEN],
        /// Seconds until it expires.
        expires_in: u32,
    },
    /// `PublishDeviceList` succeeded.
    DeviceListStored {
        /// The stored list's version.
        list_version: u64,
    },
    /// `FetchDeviceList` succeeded: the stored list, or none for an account that has not
    /// published one (a version-1 account).
    DeviceList(Option<SignedDeviceList>),
    /// `Provision` succeeded: the message waits for the new device.
    Provisioned,
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
    /// `SetRegistrationLock` succeeded.
    RegistrationLockSet,
    /// `ClearRegistrationLock` succeeded.
    RegistrationLockCleared,
    /// `StoreAccountKeyBackup` succeeded.
    AccountKeyBackupStored,
    /// `FetchAccountKeyBackup` succeeded: the stored backup, if any.
    AccountKeyBackup(Option<crate::devices::AccountKeyBackup>),
    /// `PublishBusinessProfile` succeeded: the stored profile version.
    BusinessProfileStored {
        /// The stored `profile_version`.
        profile_version: u64,
    },
    /// `FetchBusinessProfile` succeeded: the stored profile and statements, if any.
    BusinessProfile(Option<Box<crate::business::PublishedProfile>>),
    /// `GetGuardianCredential` succeeded: an `Owner` credential.
    Credential(GuardianCredential),
    /// `VaultStore` succeeded.
    VaultStored,
    /// `VaultFetch` succeeded.
    Vault {
        /// The guardian's share index in the record.
        index: u8,
        /// Evaluations left before the guardian deletes the vault.
        attempts_remaining: u16,
        /// The encoded vault record.
        record: Vec<u8>,
    },
    /// `VaultEvaluate` succeeded (the attempt is already counted).
    VaultEvaluated {
        /// The guardian's share index.
        index: u8,
        /// `Z_i = k_i·B`.
        evaluated: [u8; 32],
        /// DLEQ proof `c || s` that `Z_i` and `K_i` share the discrete log `k_i`.
        proof: [u8; 64],
        /// Evaluations left after this one (0: the vault is deleted).
        attempts_remaining: u16,
    },
    /// `VaultConfirm` succeeded: the count is reset.
    VaultConfirmed {
        /// Evaluations left (the guardian's `max_attempts`).
        attempts_remaining: u16,
    },
    /// `VaultDelete` succeeded.
    VaultDeleted,
    /// `Register` refused because the account's registration lock is active (spec/pin.md
    /// section 10). The verification code is not consumed.
    RegistrationLocked {
        /// Seconds until the lock lapses if no device of the account is seen.
        lapses_in: u32,
        /// Wrong tokens the relay still checks.
        attempts_remaining: u16,
        /// A `Recovery` credential for the account's guardians.
        credential: GuardianCredential,
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
            Self::ProvisioningOpened {
                provisioning_id,
                expires_in,
            } => frame(0x46, |w| {
                w.bytes(provisioning_id).u32(*expires_in);
            }),
            Self::DeviceListStored { list_version } => frame(0x53, |w| {
                w.u64(*list_version);
            }),
            Self::DeviceList(list) => frame(0x54, |w| {
                w.flag(list.is_some());
                if let Some(list) = list {
                    put_device_list(w, list);
                }
            }),
            Self::Provisioned => frame(0x55, |_| {}),
            Self::Authenticated {
                one_time_prekeys,
                kem_prekeys,
                queued,
                sender_seq,
            } => frame(0x44, |w| {
                w.u32(*one_time_prekeys)
                    .u32(*kem_prekeys)
                    .u32(*queued)
                    .u64(*sender_seq);
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
            Self::Activity(d) => frame(0x56, |w| {
                w.u8(u8::try_from(d.len()).unwrap_or(u8::MAX));
                for dev in d.iter().take(usize::from(u8::MAX)) {
                    w.u32(dev.device_id).u64(dev.last_seen_day);
                }
            }),
            Self::Accepted { timestamp } => frame(0x60, |w| {
                w.u64(*timestamp);
            }),
            Self::Acked { removed } => frame(0x61, |w| {
                w.u16(*removed);
            }),
            Self::RegistrationLockSet => frame(0x70, |_| {}),
            Self::RegistrationLockCleared => frame(0x71, |_| {}),
            Self::AccountKeyBackupStored => frame(0x73, |_| {}),
            Self::AccountKeyBackup(b) => frame(0x74, |w| {
                w.flag(b.is_some());
                if let Some(b) = b {
                    w.bytes(&b.encode());
                }
            }),
            Self::BusinessProfileStored { profile_version } => frame(0x57, |w| {
                w.u64(*profile_version);
            }),
            // Stored profiles were checked when published, so they encode; one that does
            // not is answered as absent rather than as a broken payload.
            Self::BusinessProfile(p) => frame(0x58, |w| {
                let mut inner = Writer::new();
                match p.as_ref().map(|p| p.encode_into(&mut inner)) {
                    Some(Ok(())) => {
                        w.flag(true).bytes(inner.as_slice());
                    }
                    _ => {
                        w.flag(false);
                    }
                }
            }),
            Self::Credential(c) => frame(0x72, |w| c.encode_into(w)),
            Self::VaultStored => frame(0x78, |_| {}),
            Self::Vault {
                index,
                attempts_remaining,
                record,
            } => frame(0x79, |w| {
                w.u8(*index).u16(*attempts_remaining).var_bytes16(record);
            }),
            Self::VaultEvaluated {
                index,
                evaluated,
                proof,
                attempts_remaining,
            } => frame(0x7A, |w| {
                w.u8(*index)
                    .bytes(evaluated)
                    .bytes(proof)
                    .u16(*attempts_remaining);
            }),
            Self::VaultConfirmed { attempts_remaining } => frame(0x7B, |w| {
                w.u16(*attempts_remaining);
            }),
            Self::VaultDeleted => frame(0x7C, |_| {}),
            Self::RegistrationLocked {
                lapses_in,
                attempts_remaining,
                credential,
            } => frame(0x7D, |w| {
                w.u32(*lapses_in).u16(*attempts_remaining);
                credential.encode_into(w);
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
            0x46 => Self::ProvisioningOpened {
                provisioning_id: r.array()?,
                expires_in: r.u32()?,
            },
            0x53 => Self::DeviceListStored {
                list_version: r.u64()?,
            },
            0x54 => Self::DeviceList(if r.flag("has_list")? {
                Some(device_list(&mut r)?)
            } else {
                None
            }),
            0x55 => Self::Provisioned,
            0x44 => Self::Authenticated {
                one_time_prekeys: r.u32()?,
                kem_prekeys: r.u32()?,
                queued: r.u32()?,
                sender_seq: r.u64()?,
            },
            0x50 => Self::PreKeysStored {
                one_time_prekeys: r.u32()?,
                kem_prekeys: r.u32()?,
            },
            0x51 => {
                let n = usize::from(r.u8()?);
                if n > MAX_DEVICES_PER_ACCOUNT {
                    return Err(DecodeError::TooMany {
                        what: "bundles",
                        count: n,
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
                    return Err(DecodeError::TooMany {
                        what: "devices",
                        count: n,
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
            0x56 => {
                let n = usize::from(r.u8()?);
                if n > MAX_DEVICES_PER_ACCOUNT {
                    return Err(DecodeError::TooMany {
                        what: "devices",
                        count: n,
                        max: MAX_DEVICES_PER_ACCOUNT,
                    });
                }
                let mut v: Vec<DeviceLastSeen> = Vec::with_capacity(n);
                for _ in 0..n {
                    let device_id = r.u32()?;
                    let last_seen_day = r.u64()?;
                    if v.last().is_some_and(|p| p.device_id >= device_id) {
                        return Err(DecodeError::InvalidValue("device order"));
                    }
                    if last_seen_day % DAY_SECS != 0 {
                        return Err(DecodeError::InvalidValue("last seen day"));
                    }
                    v.push(DeviceLastSeen {
                        device_id,
                        last_seen_day,
                    });
                }
                Self::Activity(v)
            }
            0x60 => Self::Accepted {
                timestamp: r.u64()?,
            },
            0x61 => Self::Acked { removed: r.u16()? },
            0x70 => Self::RegistrationLockSet,
            0x71 => Self::RegistrationLockCleared,
            0x73 => Self::AccountKeyBackupStored,
            0x74 => Self::AccountKeyBackup(if r.flag("has_backup")? {
                Some(crate::devices::AccountKeyBackup::decode_from(&mut r)?)
            } else {
                None
            }),
            0x57 => Self::BusinessProfileStored {
                profile_version: r.u64()?,
            },
            0x58 => Self::BusinessProfile(if r.flag("has_profile")? {
                Some(Box::new(crate::business::PublishedProfile::decode_from(
                    &mut r,
                )?))
            } else {
                None
            }),
            0x72 => Self::Credential(GuardianCredential::decode_from(&mut r)?),
            0x78 => Self::VaultStored,
            0x79 => Self::Vault {
                index: r.u8()?,
                attempts_remaining: r.u16()?,
                record: vault_record(&mut r)?.to_vec(),
            },
            0x7A => Self::VaultEvaluated {
                index: r.u8()?,
                evaluated: r.array()?,
                proof: r.array()?,
                attempts_remaining: r.u16()?,
            },
            0x7B => Self::VaultConfirmed {
                attempts_remaining: r.u16()?,
            },
            0x7C => Self::VaultDeleted,
            0x7D => Self::RegistrationLocked {
                lapses_in: r.u32()?,
                attempts_remaining: r.u16()?,
                credential: GuardianCredential::decode_from(&mut r)?,
            },
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
