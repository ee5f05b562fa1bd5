//! Requests: what a device asks of the relay (spec/relay.md section 3).

use super::*;

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
///
/// `Debug` prints no secret bytes: registration-lock tokens, shares, success verifiers and
/// success tokens appear as `<redacted N bytes>`.
#[derive(Clone, PartialEq, Eq)]
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
        /// The registration-lock token, when the account may be locked (spec/pin.md
        /// sections 6.1 and 10). Secret.
        reglock: Option<[u8; PIN_TOKEN_LEN]>,
    },
    /// Ask for an authentication nonce.
    Challenge,
    /// Join an account as a new device, with the account's next device list (spec/relay.md
    /// 3.10; unauthenticated).
    LinkDevice {
        /// The list naming the new device, with every binding.
        list: SignedDeviceList,
        /// The new device's id on it.
        device_id: u32,
        /// Ed25519 signature by the new device's identity over [`link_device_signed_bytes`].
        signature: [u8; SIGNATURE_LEN],
    },
    /// Open a single-use provisioning address for linking (spec/relay.md 3.11;
    /// unauthenticated).
    OpenProvisioning,
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
    /// Store the account's next device list (spec/relay.md 3.9).
    PublishDeviceList {
        /// The list.
        list: SignedDeviceList,
    },
    /// Fetch an account's device list (spec/relay.md 3.9).
    FetchDeviceList {
        /// The account.
        account: AccountId,
    },
    /// Ask when each device of the connection's own account was last seen, to the day
    /// (spec/relay.md 3.12; authenticated; empty body).
    DeviceActivity,
    /// Leave a provisioning message for a new device (spec/relay.md 3.11).
    Provision {
        /// The new device's provisioning id.
        provisioning_id: [u8; PROVISIONING_ID_LEN],
        /// The sealed message.
        envelope: ProvisioningEnvelope,
    },
    /// Send one envelope to each device of an account.
    Send {
        /// Random id echoed to the recipient for de-duplication.
        message_id: [u8; MESSAGE_ID_LEN],
        /// The sending device's sequence number of this Send, assigned when its envelopes
        /// were encrypted (spec/relay.md section 3.7); 0 for none. Never checked by the relay.
        sender_seq: u64,
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
    /// Set the account's registration lock (authenticated; spec/pin.md section 10).
    SetRegistrationLock {
        /// The registration-lock token; the relay stores only its verifier. Secret.
        token: [u8; PIN_TOKEN_LEN],
    },
    /// Remove the account's registration lock (authenticated); also deletes its
    /// account-key backup.
    ClearRegistrationLock,
    /// Store (replace) the account's account-key backup (authenticated, the key holder;
    /// spec/relay.md 3.13).
    StoreAccountKeyBackup {
        /// The sealed account key.
        backup: crate::devices::AccountKeyBackup,
    },
    /// Fetch the connection's own account's account-key backup (authenticated).
    FetchAccountKeyBackup,
    /// Store the account's business profile with its verification statements
    /// (authenticated, the owner; spec/relay.md 3.14).
    PublishBusinessProfile(Box<crate::business::PublishedProfile>),
    /// Fetch an account's business profile (authenticated).
    FetchBusinessProfile {
        /// The business's account.
        account: AccountId,
    },
    /// Ask for an `Owner` guardian credential for the connection's account (authenticated).
    GetGuardianCredential,
    /// Store (replace) the account's vault at a guardian (`Owner` scope).
    VaultStore {
        /// Authorisation.
        credential: GuardianCredential,
        /// This guardian's key share `index || k_i`. Secret.
        share: [u8; VAULT_SHARE_LEN],
        /// `SHA-256("Sealpost_PIN_SuccessVerifier_v1" || token_i)`. Secret.
        success_verifier: [u8; PIN_TOKEN_LEN],
        /// The encoded vault record (spec/pin.md 6.3), at most [`MAX_VAULT_RECORD_LEN`].
        record: Vec<u8>,
    },
    /// Fetch the account's vault record (does not count as an attempt).
    VaultFetch {
        /// Authorisation.
        credential: GuardianCredential,
    },
    /// Evaluate the OPRF on a blinded element (counts as an attempt).
    VaultEvaluate {
        /// Authorisation.
        credential: GuardianCredential,
        /// The vault the client recovers from.
        vault_id: [u8; VAULT_ID_LEN],
        /// The blinded element `B` (ristretto255).
        blinded: [u8; 32],
    },
    /// Prove a successful recovery and reset the attempt count.
    VaultConfirm {
        /// Authorisation.
        credential: GuardianCredential,
        /// The vault recovered from.
        vault_id: [u8; VAULT_ID_LEN],
        /// The guardian's success token `token_i`. Secret.
        token: [u8; PIN_TOKEN_LEN],
    },
    /// Delete the account's vault (`Owner` scope; idempotent).
    VaultDelete {
        /// Authorisation.
        credential: GuardianCredential,
    },
}

struct Redacted(usize);

impl core::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

struct Hex<'a>(&'a [u8]);

impl core::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::RequestCode { account } => f
                .debug_struct("RequestCode")
                .field("account", account)
                .finish(),
            Self::Register {
                account,
                code: _,
                identity,
                signature,
                reglock,
            } => f
                .debug_struct("Register")
                .field("account", account)
                .field("code", &Redacted(CODE_LEN))
                .field("identity", identity)
                .field("signature", &Hex(signature))
                .field("reglock", &reglock.as_ref().map(|t| Redacted(t.len())))
                .finish(),
            Self::Challenge => f.write_str("Challenge"),
            Self::LinkDevice {
                list,
                device_id,
                signature,
            } => f
                .debug_struct("LinkDevice")
                .field("account", &list.body.account)
                .field("list_version", &list.body.list_version)
                .field("device_id", device_id)
                .field("signature", &Hex(signature))
                .finish(),
            Self::OpenProvisioning => f.write_str("OpenProvisioning"),
            Self::DeviceActivity => f.write_str("DeviceActivity"),
            Self::PublishDeviceList { list } => f
                .debug_struct("PublishDeviceList")
                .field("account", &list.body.account)
                .field("list_version", &list.body.list_version)
                .finish(),
            Self::FetchDeviceList { account } => f
                .debug_struct("FetchDeviceList")
                .field("account", account)
                .finish(),
            Self::Provision {
                provisioning_id,
                envelope,
            } => f
                .debug_struct("Provision")
                .field("provisioning_id", &Hex(provisioning_id))
                .field("envelope", &Redacted(envelope.sealed.len()))
                .finish(),
            Self::Authenticate { address, signature } => f
                .debug_struct("Authenticate")
                .field("address", address)
                .field("signature", &Hex(signature))
                .finish(),
            Self::UploadPreKeys(u) => f.debug_tuple("UploadPreKeys").field(u).finish(),
            Self::FetchBundles { account } => f
                .debug_struct("FetchBundles")
                .field("account", account)
                .finish(),
            Self::ListDevices { account } => f
                .debug_struct("ListDevices")
                .field("account", account)
                .finish(),
            Self::Send {
                message_id,
                sender_seq,
                recipient,
                envelopes,
            } => f
                .debug_struct("Send")
                .field("message_id", &Hex(message_id))
                .field("sender_seq", sender_seq)
                .field("recipient", recipient)
                .field("envelopes", envelopes)
                .finish(),
            Self::Ack { server_ids } => f
                .debug_struct("Ack")
                .field("server_ids", server_ids)
                .finish(),
            Self::SetRegistrationLock { token } => f
                .debug_struct("SetRegistrationLock")
                .field("token", &Redacted(token.len()))
                .finish(),
            Self::ClearRegistrationLock => f.write_str("ClearRegistrationLock"),
            Self::StoreAccountKeyBackup { backup } => f
                .debug_struct("StoreAccountKeyBackup")
                .field("backup", backup)
                .finish(),
            Self::FetchAccountKeyBackup => f.write_str("FetchAccountKeyBackup"),
            Self::PublishBusinessProfile(p) => {
                f.debug_tuple("PublishBusinessProfile").field(p).finish()
            }
            Self::FetchBusinessProfile { account } => f
                .debug_struct("FetchBusinessProfile")
                .field("account", account)
                .finish(),
            Self::GetGuardianCredential => f.write_str("GetGuardianCredential"),
            Self::VaultStore {
                credential,
                share,
                success_verifier,
                record,
            } => f
                .debug_struct("VaultStore")
                .field("credential", credential)
                .field("share", &Redacted(share.len()))
                .field("success_verifier", &Redacted(success_verifier.len()))
                .field("record_len", &record.len())
                .finish(),
            Self::VaultFetch { credential } => f
                .debug_struct("VaultFetch")
                .field("credential", credential)
                .finish(),
            Self::VaultEvaluate {
                credential,
                vault_id,
                blinded,
            } => f
                .debug_struct("VaultEvaluate")
                .field("credential", credential)
                .field("vault_id", &Hex(vault_id))
                .field("blinded", &Redacted(blinded.len()))
                .finish(),
            Self::VaultConfirm {
                credential,
                vault_id,
                token,
            } => f
                .debug_struct("VaultConfirm")
                .field("credential", credential)
                .field("vault_id", &Hex(vault_id))
                .field("token", &Redacted(token.len()))
                .finish(),
            Self::VaultDelete { credential } => f
                .debug_struct("VaultDelete")
                .field("credential", credential)
                .finish(),
        }
    }
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
                reglock,
            } => frame(0x02, |w| {
                account.encode_into(w);
                w.bytes(code).bytes(&identity.to_bytes()).bytes(signature);
                w.flag(reglock.is_some());
                if let Some(t) = reglock {
                    w.bytes(t);
                }
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
            Self::PublishDeviceList { list } => frame(0x13, |w| put_device_list(w, list)),
            Self::FetchDeviceList { account } => frame(0x14, |w| account.encode_into(w)),
            Self::Provision {
                provisioning_id,
                envelope,
            } => frame(0x15, |w| {
                w.bytes(provisioning_id).var_bytes32(&envelope.encode());
            }),
            Self::LinkDevice {
                list,
                device_id,
                signature,
            } => frame(0x05, |w| {
                put_device_list(w, list);
                w.u32(*device_id).bytes(signature);
            }),
            Self::OpenProvisioning => frame(0x06, |_| {}),
            Self::DeviceActivity => frame(0x16, |_| {}),
            Self::Send {
                message_id,
                sender_seq,
                recipient,
                envelopes,
            } => frame(0x20, |w| {
                w.bytes(message_id).u64(*sender_seq);
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
            Self::SetRegistrationLock { token } => frame(0x30, |w| {
                w.bytes(token);
            }),
            Self::ClearRegistrationLock => frame(0x31, |_| {}),
            Self::StoreAccountKeyBackup { backup } => frame(0x33, |w| {
                w.bytes(&backup.encode());
            }),
            Self::FetchAccountKeyBackup => frame(0x34, |_| {}),
            // A decoded or checked profile encodes; a broken one leaves an empty payload,
            // which the relay refuses as `Malformed`.
            Self::PublishBusinessProfile(p) => frame(0x17, |w| {
                let mut inner = Writer::new();
                if p.encode_into(&mut inner).is_ok() {
                    w.bytes(inner.as_slice());
                }
            }),
            Self::FetchBusinessProfile { account } => frame(0x18, |w| account.encode_into(w)),
            Self::GetGuardianCredential => frame(0x32, |_| {}),
            Self::VaultStore {
                credential,
                share,
                success_verifier,
                record,
            } => frame(0x38, |w| {
                credential.encode_into(w);
                w.bytes(share).bytes(success_verifier).var_bytes16(record);
            }),
            Self::VaultFetch { credential } => frame(0x39, |w| credential.encode_into(w)),
            Self::VaultEvaluate {
                credential,
                vault_id,
                blinded,
            } => frame(0x3A, |w| {
                credential.encode_into(w);
                w.bytes(vault_id).bytes(blinded);
            }),
            Self::VaultConfirm {
                credential,
                vault_id,
                token,
            } => frame(0x3B, |w| {
                credential.encode_into(w);
                w.bytes(vault_id).bytes(token);
            }),
            Self::VaultDelete { credential } => frame(0x3C, |w| credential.encode_into(w)),
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
                reglock: if r.flag("has_reglock")? {
                    Some(r.array()?)
                } else {
                    None
                },
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
                    return Err(DecodeError::TooMany {
                        what: "one-time prekeys",
                        count: n,
                        max: MAX_ONE_TIME_PER_UPLOAD,
                    });
                }
                let mut one_time = Vec::with_capacity(n);
                for _ in 0..n {
                    one_time.push((r.u32()?, r.array()?));
                }
                let n = usize::from(r.u16()?);
                if n > MAX_KEM_PER_UPLOAD {
                    return Err(DecodeError::TooMany {
                        what: "KEM prekeys",
                        count: n,
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
            0x13 => Self::PublishDeviceList {
                list: device_list(&mut r)?,
            },
            0x14 => Self::FetchDeviceList {
                account: AccountId::decode_from(&mut r)?,
            },
            0x15 => Self::Provision {
                provisioning_id: r.array()?,
                envelope: provisioning_envelope(&mut r)?,
            },
            0x05 => Self::LinkDevice {
                list: device_list(&mut r)?,
                device_id: r.u32()?,
                signature: r.array()?,
            },
            0x06 => Self::OpenProvisioning,
            0x16 => Self::DeviceActivity,
            0x20 => {
                let message_id = r.array()?;
                let sender_seq = r.u64()?;
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
                    sender_seq,
                    recipient,
                    envelopes,
                }
            }
            0x21 => {
                let n = usize::from(r.u16()?);
                if n > MAX_ACKS_PER_REQUEST {
                    return Err(DecodeError::TooMany {
                        what: "acks",
                        count: n,
                        max: MAX_ACKS_PER_REQUEST,
                    });
                }
                let mut server_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    server_ids.push(r.u64()?);
                }
                Self::Ack { server_ids }
            }
            0x30 => Self::SetRegistrationLock { token: r.array()? },
            0x31 => Self::ClearRegistrationLock,
            0x33 => Self::StoreAccountKeyBackup {
                backup: crate::devices::AccountKeyBackup::decode_from(&mut r)?,
            },
            0x34 => Self::FetchAccountKeyBackup,
            0x17 => Self::PublishBusinessProfile(Box::new(
                crate::business::PublishedProfile::decode_from(&mut r)?,
            )),
            0x18 => Self::FetchBusinessProfile {
                account: AccountId::decode_from(&mut r)?,
            },
            0x32 => Self::GetGuardianCredential,
            0x38 => Self::VaultStore {
                credential: GuardianCredential::decode_from(&mut r)?,
                share: r.array()?,
                success_verifier: r.array()?,
                record: vault_record(&mut r)?.to_vec(),
            },
            0x39 => Self::VaultFetch {
                credential: GuardianCredential::decode_from(&mut r)?,
            },
            0x3A => Self::VaultEvaluate {
                credential: GuardianCredential::decode_from(&mut r)?,
                vault_id: r.array()?,
                blinded: r.array()?,
            },
            0x3B => Self::VaultConfirm {
                credential: GuardianCredential::decode_from(&mut r)?,
                vault_id: r.array()?,
                token: r.array()?,
            },
            0x3C => Self::VaultDelete {
                credential: GuardianCredential::decode_from(&mut r)?,
            },
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
