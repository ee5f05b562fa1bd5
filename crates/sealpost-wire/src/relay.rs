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
/// Largest frame body a relay reads on a connection that has not authenticated
/// (spec/relay.md sections 2 and 7): the largest request allowed before authentication
/// (a `VaultStore` with the longest account id and vault record, 8749 bytes) rounded up to
/// 9 KiB.
pub const MAX_PRE_AUTH_FRAME: usize = 9 * 1024;
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
    /// Remove the account's registration lock (authenticated).
    ClearRegistrationLock,
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
            Self::Accepted { timestamp } => frame(0x60, |w| {
                w.u64(*timestamp);
            }),
            Self::Acked { removed } => frame(0x61, |w| {
                w.u16(*removed);
            }),
            Self::RegistrationLockSet => frame(0x70, |_| {}),
            Self::RegistrationLockCleared => frame(0x71, |_| {}),
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
            0x60 => Self::Accepted {
                timestamp: r.u64()?,
            },
            0x61 => Self::Acked { removed: r.u16()? },
            0x70 => Self::RegistrationLockSet,
            0x71 => Self::RegistrationLockCleared,
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

    /// Serializes pushes as one push stream: their frames back to back.
    pub fn encode_stream(pushes: &[Self]) -> Vec<u8> {
        pushes.iter().flat_map(Self::encode).collect()
    }

    /// Parses a push stream: one or more complete frames back to back, at most
    /// [`MAX_PUSH_STREAM_LEN`] bytes. Fails on the first frame that does not parse.
    pub fn decode_stream(stream: &[u8]) -> Result<Vec<Self>, DecodeError> {
        if stream.len() > MAX_PUSH_STREAM_LEN {
            return Err(DecodeError::TooLong {
                what: "push stream",
                len: stream.len(),
                max: MAX_PUSH_STREAM_LEN,
            });
        }
        if stream.is_empty() {
            return Err(DecodeError::Truncated {
                offset: 0,
                needed: 4,
            });
        }
        let mut pushes = Vec::new();
        let mut offset = 0;
        while let Some(rest) = stream.get(offset..).filter(|r| !r.is_empty()) {
            let (prefix, after) =
                rest.split_first_chunk::<4>()
                    .ok_or_else(|| DecodeError::Truncated {
                        offset,
                        needed: 4 - rest.len(),
                    })?;
            let len = frame_len(*prefix)?;
            let body = after.get(..len).ok_or_else(|| DecodeError::Truncated {
                offset: offset + 4,
                needed: len - after.len(),
            })?;
            pushes.push(Self::decode(body)?);
            offset += 4 + len;
        }
        Ok(pushes)
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

    fn cred(scope: CredentialScope) -> GuardianCredential {
        GuardianCredential {
            account: acct(),
            scope,
            expires_at: 1_700_003_600,
            issuer: [0xAA; 32],
            signature: [0xBB; 64],
        }
    }

    #[test]
    fn credential_layout_and_rejections() {
        let c = cred(CredentialScope::Recovery);
        let enc = c.encode();
        assert_eq!(enc.len(), credential_len(12));
        assert_eq!(GuardianCredential::decode(&enc).unwrap(), c);
        // account || scope || expires_at || issuer, then the signature.
        let signed = c.signed_bytes();
        assert_eq!(&signed[..30], b"Sealpost_GuardianCredential_v1");
        assert_eq!(&signed[30..], &enc[..enc.len() - 64]);
        assert_eq!(
            signed,
            credential_signed_bytes(&c.account, c.scope, c.expires_at, &c.issuer)
        );
        for scope in [0u8, 3, 0xFF] {
            let mut bad = enc.clone();
            bad[13] = scope;
            assert_eq!(
                GuardianCredential::decode(&bad),
                Err(DecodeError::UnknownType {
                    what: "credential scope",
                    value: scope
                })
            );
        }
        for cut in 0..enc.len() {
            assert!(GuardianCredential::decode(&enc[..cut]).is_err());
        }
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(
            GuardianCredential::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn pin_messages_reject_bad_fields() {
        // Register's reglock flag must be 0 or 1.
        let reg = Request::Register {
            account: acct(),
            code: *b"123456",
            identity: IdentityBytes {
                signing: [1; 32],
                dh: [2; 32],
            },
            signature: [3; 64],
            reglock: None,
        }
        .encode();
        let mut bad = body(&reg).to_vec();
        *bad.last_mut().unwrap() = 2;
        assert_eq!(
            Request::decode(&bad),
            Err(DecodeError::InvalidValue("has_reglock"))
        );
        // A record over MAX_VAULT_RECORD_LEN is refused before it is read, in both
        // directions.
        let store = Request::VaultStore {
            credential: cred(CredentialScope::Owner),
            share: [1; 33],
            success_verifier: [2; 32],
            record: vec![0; MAX_VAULT_RECORD_LEN + 1],
        };
        assert_eq!(
            Request::decode(body(&store.encode())),
            Err(DecodeError::TooLong {
                what: "vault record",
                len: MAX_VAULT_RECORD_LEN + 1,
                max: MAX_VAULT_RECORD_LEN
            })
        );
        let vault = Response::Vault {
            index: 1,
            attempts_remaining: 1,
            record: vec![0; MAX_VAULT_RECORD_LEN + 1],
        };
        assert!(matches!(
            Response::decode(body(&vault.encode())),
            Err(DecodeError::TooLong { .. })
        ));
        // Unknown kinds inside the new ranges.
        for kind in [0x33u8, 0x37, 0x3D] {
            assert!(matches!(
                Request::decode(&[1, kind]),
                Err(DecodeError::UnknownType { .. })
            ));
        }
        for kind in [0x73u8, 0x77, 0x7E] {
            assert!(matches!(
                Response::decode(&[1, kind]),
                Err(DecodeError::UnknownType { .. })
            ));
        }
        for (code, v) in [
            (ErrorCode::CredentialInvalid, 20),
            (ErrorCode::NotGuardian, 21),
            (ErrorCode::VaultNotFound, 22),
            (ErrorCode::InvalidVault, 23),
            (ErrorCode::RegistrationLocked, 19),
            (ErrorCode::Unavailable, 24),
        ] {
            assert_eq!(code.to_u16(), v);
            assert_eq!(ErrorCode::from_u16(v), code);
        }
    }

    #[test]
    fn debug_prints_no_secret_bytes() {
        let secret = |b: u8| format!("{b:02x}{b:02x}{b:02x}");
        let reqs = [
            (
                Request::Register {
                    account: acct(),
                    code: *b"987654",
                    identity: IdentityBytes {
                        signing: [1; 32],
                        dh: [2; 32],
                    },
                    signature: [3; 64],
                    reglock: Some([0xC1; 32]),
                },
                vec![0xC1],
            ),
            (
                Request::SetRegistrationLock { token: [0xC2; 32] },
                vec![0xC2],
            ),
            (
                Request::VaultStore {
                    credential: cred(CredentialScope::Owner),
                    share: [0xC3; 33],
                    success_verifier: [0xC4; 32],
                    record: vec![0xC5; 10],
                },
                vec![0xC3, 0xC4],
            ),
            (
                Request::VaultConfirm {
                    credential: cred(CredentialScope::Recovery),
                    vault_id: [1; 16],
                    token: [0xC6; 32],
                },
                vec![0xC6],
            ),
        ];
        for (req, secrets) in reqs {
            let dbg = format!("{req:?}");
            assert!(dbg.contains("redacted"), "{dbg}");
            assert!(!dbg.contains("987654"), "{dbg}");
            assert!(!dbg.contains("198, 198"), "{dbg}");
            for b in secrets {
                assert!(!dbg.contains(&secret(b)), "{dbg}");
                assert!(!dbg.contains(&format!("{b}, {b}")), "{dbg}");
            }
        }
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
                reglock: None,
            },
            Request::Register {
                account: acct(),
                code: *b"123456",
                identity: IdentityBytes {
                    signing: [1; 32],
                    dh: [2; 32],
                },
                signature: [3; 64],
                reglock: Some([4; 32]),
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
                sender_seq: 0x0102_0304_0506_0708,
                recipient: acct(),
                envelopes: vec![OutgoingEnvelope {
                    device_id: 1,
                    envelope: vec![1, 2, 3],
                }],
            },
            Request::Ack {
                server_ids: vec![1, 2, 3],
            },
            Request::SetRegistrationLock { token: [12; 32] },
            Request::ClearRegistrationLock,
            Request::GetGuardianCredential,
            Request::VaultStore {
                credential: cred(CredentialScope::Owner),
                share: [13; 33],
                success_verifier: [14; 32],
                record: vec![15; 200],
            },
            Request::VaultStore {
                credential: cred(CredentialScope::Owner),
                share: [13; 33],
                success_verifier: [14; 32],
                record: vec![16; MAX_VAULT_RECORD_LEN],
            },
            Request::VaultFetch {
                credential: cred(CredentialScope::Recovery),
            },
            Request::VaultEvaluate {
                credential: cred(CredentialScope::Recovery),
                vault_id: [17; 16],
                blinded: [18; 32],
            },
            Request::VaultConfirm {
                credential: cred(CredentialScope::Recovery),
                vault_id: [17; 16],
                token: [19; 32],
            },
            Request::VaultDelete {
                credential: cred(CredentialScope::Owner),
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
                sender_seq: u64::MAX,
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
            Response::RegistrationLockSet,
            Response::RegistrationLockCleared,
            Response::Credential(cred(CredentialScope::Owner)),
            Response::VaultStored,
            Response::Vault {
                index: 2,
                attempts_remaining: 9,
                record: vec![1; 95],
            },
            Response::VaultEvaluated {
                index: 3,
                evaluated: [4; 32],
                proof: [5; 64],
                attempts_remaining: 0,
            },
            Response::VaultConfirmed {
                attempts_remaining: 10,
            },
            Response::VaultDeleted,
            Response::RegistrationLocked {
                lapses_in: 604_800,
                attempts_remaining: 10,
                credential: cred(CredentialScope::Recovery),
            },
            Response::Error {
                code: ErrorCode::VaultNotFound,
                retry_after: 0,
                detail: "no vault".into(),
            },
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
            let b = body(&f);
            assert_eq!(Response::decode(b).unwrap(), resp);
            for cut in 0..b.len() {
                assert!(Response::decode(&b[..cut]).is_err(), "{resp:?} cut {cut}");
            }
            let mut long = b.to_vec();
            long.push(0);
            assert_eq!(Response::decode(&long), Err(DecodeError::TrailingBytes(1)));
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
        for p in &pushes {
            let f = p.encode();
            assert_eq!(&Push::decode(body(&f)).unwrap(), p);
            assert_eq!(Push::decode_stream(&f).unwrap(), vec![p.clone()]);
        }
        // A push stream: frames back to back; any cut short of a frame boundary fails.
        let stream = Push::encode_stream(&pushes);
        assert_eq!(Push::decode_stream(&stream).unwrap(), pushes);
        let first = pushes[0].encode().len();
        let second = first + pushes[1].encode().len();
        for cut in 0..stream.len() {
            let r = Push::decode_stream(&stream[..cut]);
            match cut {
                c if c == first => assert_eq!(r.unwrap(), pushes[..1]),
                c if c == second => assert_eq!(r.unwrap(), pushes[..2]),
                _ => assert!(r.is_err(), "cut {cut}"),
            }
        }
        let mut bad = stream.clone();
        bad[first + 4] = 0x7f;
        assert!(
            Push::decode_stream(&bad).is_err(),
            "a bad frame fails the stream"
        );
        assert!(matches!(
            Push::decode_stream(&vec![0; MAX_PUSH_STREAM_LEN + 1]),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        assert!(frame_len([0, 0, 0, 1]).is_err());
        assert!(frame_len(((MAX_FRAME_LEN + 1) as u32).to_be_bytes()).is_err());
        // Before authentication (spec/relay.md section 2).
        let pre = |n: usize| frame_len_within((n as u32).to_be_bytes(), MAX_PRE_AUTH_FRAME);
        assert_eq!(pre(MAX_PRE_AUTH_FRAME), Ok(MAX_PRE_AUTH_FRAME));
        assert_eq!(
            pre(MAX_PRE_AUTH_FRAME + 1),
            Err(DecodeError::TooLong {
                what: "frame",
                len: MAX_PRE_AUTH_FRAME + 1,
                max: MAX_PRE_AUTH_FRAME
            })
        );
        // Counts over their limits say how many (not "bytes").
        let acks = Request::Ack {
            server_ids: vec![0; MAX_ACKS_PER_REQUEST + 1],
        };
        assert_eq!(
            Request::decode(body(&acks.encode())),
            Err(DecodeError::TooMany {
                what: "acks",
                count: MAX_ACKS_PER_REQUEST + 1,
                max: MAX_ACKS_PER_REQUEST
            })
        );
        let long = Response::error(ErrorCode::Internal, "é".repeat(300));
        match Response::decode(body(&long.encode())).unwrap() {
            Response::Error { detail, .. } => assert!(detail.len() <= 255),
            other => panic!("{other:?}"),
        }
        let send = Request::Send {
            message_id: [0; 16],
            sender_seq: 1,
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
            sender_seq: 1,
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
