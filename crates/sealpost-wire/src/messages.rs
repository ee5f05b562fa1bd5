//! Session messages and prekey bundles (spec/wire.md).

use crate::{
    DecodeError, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KEY_LEN, MAX_PLAINTEXT_LEN, PROTOCOL_VERSION,
    Reader, SIGNATURE_LEN, TAG_LEN, Writer,
};

/// Type byte of a [`RatchetMessage`].
pub const TYPE_RATCHET: u8 = 0x01;
/// Type byte of a [`PreKeyMessage`].
pub const TYPE_PREKEY: u8 = 0x02;
/// Type byte of a [`PreKeyBundle`].
pub const TYPE_BUNDLE: u8 = 0x03;

/// Version byte of [`RatchetMessage`] and [`PreKeyMessage`] (session protocol version 2,
/// spec/wire.md). Version-1 session messages are rejected with
/// [`DecodeError::UnsupportedVersion`]. Bundles keep [`PROTOCOL_VERSION`].
pub const SESSION_MESSAGE_VERSION: u8 = 2;

/// Length of a ratchet message's synthetic nonce (spec/session.md, "Message encryption").
pub const MESSAGE_NONCE_LEN: usize = 12;

/// Length of the header fields the synthetic nonce is computed over: ratchet key, PN, N.
pub const RATCHET_HEADER_FIELDS_LEN: usize = KEY_LEN + 4 + 4;

/// Length of a ratchet message header: version, type, ratchet key, PN, N, nonce.
pub const RATCHET_HEADER_LEN: usize = 1 + 1 + RATCHET_HEADER_FIELDS_LEN + MESSAGE_NONCE_LEN;

/// Length of a prekey message without its embedded ratchet message and the latter's length
/// prefix (version, type, identity, base key, ids, flag, KEM ciphertext, length prefix).
pub const PREKEY_MESSAGE_FIXED_LEN: usize =
    1 + 1 + 2 * KEY_LEN + KEY_LEN + 4 + 1 + 4 + 4 + KEM_CIPHERTEXT_LEN + 4;

fn expect_header(
    r: &mut Reader<'_>,
    expected_version: u8,
    ty: u8,
    what: &'static str,
) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != expected_version {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let t = r.u8()?;
    if t != ty {
        return Err(DecodeError::UnknownType { what, value: t });
    }
    Ok(())
}

/// A Double Ratchet message (spec/wire.md, "RatchetMessage").
///
/// ```text
/// version(1)=0x02 || type(1)=0x01 || ratchet_key(32) || pn(u32) || n(u32) || nonce(12)
///   || ciphertext
/// ```
/// The first 54 bytes are the *encoded header*, which enters the AEAD's associated data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatchetMessage {
    /// The sender's current ratchet public key (X25519).
    pub ratchet_key: [u8; KEY_LEN],
    /// Number of messages in the sender's previous sending chain (PN).
    pub previous_chain_length: u32,
    /// Message number in the current sending chain (N).
    pub message_number: u32,
    /// The synthetic ChaCha20-Poly1305 nonce (spec/session.md, "Message encryption").
    pub nonce: [u8; MESSAGE_NONCE_LEN],
    /// ChaCha20-Poly1305 ciphertext with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl RatchetMessage {
    /// The 40 header fields `ratchet_key(32) || pn(u32) || n(u32)` that the synthetic nonce
    /// is computed over (without version, type and nonce).
    pub fn encode_header_fields(
        ratchet_key: &[u8; KEY_LEN],
        previous_chain_length: u32,
        message_number: u32,
    ) -> [u8; RATCHET_HEADER_FIELDS_LEN] {
        let mut h = [0u8; RATCHET_HEADER_FIELDS_LEN];
        let (key, rest) = h.split_at_mut(KEY_LEN);
        key.copy_from_slice(ratchet_key);
        let (pn, n) = rest.split_at_mut(4);
        pn.copy_from_slice(&previous_chain_length.to_be_bytes());
        n.copy_from_slice(&message_number.to_be_bytes());
        h
    }

    /// The 54-byte encoded header: `0x02 || 0x01 || fields(40) || nonce(12)`.
    pub fn encode_header(
        fields: &[u8; RATCHET_HEADER_FIELDS_LEN],
        nonce: &[u8; MESSAGE_NONCE_LEN],
    ) -> [u8; RATCHET_HEADER_LEN] {
        let mut h = [0u8; RATCHET_HEADER_LEN];
        let (prefix, rest) = h.split_at_mut(2);
        prefix.copy_from_slice(&[SESSION_MESSAGE_VERSION, TYPE_RATCHET]);
        let (f, n) = rest.split_at_mut(RATCHET_HEADER_FIELDS_LEN);
        f.copy_from_slice(fields);
        n.copy_from_slice(nonce);
        h
    }

    /// This message's header fields (see [`RatchetMessage::encode_header_fields`]).
    pub fn header_fields(&self) -> [u8; RATCHET_HEADER_FIELDS_LEN] {
        Self::encode_header_fields(
            &self.ratchet_key,
            self.previous_chain_length,
            self.message_number,
        )
    }

    /// This message's encoded header.
    pub fn header(&self) -> [u8; RATCHET_HEADER_LEN] {
        Self::encode_header(&self.header_fields(), &self.nonce)
    }

    /// Serializes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RATCHET_HEADER_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses a message; the ciphertext must be 16..=256 KiB + 16 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        expect_header(
            &mut r,
            SESSION_MESSAGE_VERSION,
            TYPE_RATCHET,
            "session message",
        )?;
        Self::decode_body(&mut r)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ratchet_key = r.array()?;
        let previous_chain_length = r.u32()?;
        let message_number = r.u32()?;
        let nonce = r.array()?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(DecodeError::TooShort {
                what: "ciphertext",
                len: ciphertext.len(),
                min: TAG_LEN,
            });
        }
        if ciphertext.len() > MAX_PLAINTEXT_LEN + TAG_LEN {
            return Err(DecodeError::TooLong {
                what: "ciphertext",
                len: ciphertext.len(),
                max: MAX_PLAINTEXT_LEN + TAG_LEN,
            });
        }
        Ok(Self {
            ratchet_key,
            previous_chain_length,
            message_number,
            nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// A public identity: the Ed25519 signing key and the X25519 identity DH key of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdentityBytes {
    /// Ed25519 public key.
    pub signing: [u8; KEY_LEN],
    /// X25519 public key.
    pub dh: [u8; KEY_LEN],
}

impl IdentityBytes {
    /// Encoded length: 64 bytes.
    pub const LEN: usize = 2 * KEY_LEN;

    /// `signing(32) || dh(32)`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (a, b) = out.split_at_mut(KEY_LEN);
        a.copy_from_slice(&self.signing);
        b.copy_from_slice(&self.dh);
        out
    }

    /// Reads `signing(32) || dh(32)`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            signing: r.array()?,
            dh: r.array()?,
        })
    }
}

/// The first message(s) of a session, sent by the initiator until it receives a reply
/// (spec/wire.md, "PreKeyMessage").
///
/// ```text
/// version(1) || type(1)=0x02 || identity(64) || base_key(32) || signed_prekey_id(u32)
///   || has_one_time(1) || one_time_prekey_id(u32) || kem_prekey_id(u32)
///   || kem_ciphertext(1568) || len(u32) || ratchet_message(len)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyMessage {
    /// The initiator's identity.
    pub identity: IdentityBytes,
    /// The initiator's ephemeral X25519 key (EK_A).
    pub base_key: [u8; KEY_LEN],
    /// Id of the responder's signed prekey used.
    pub signed_prekey_id: u32,
    /// Id of the responder's one-time prekey used, if the bundle had one.
    pub one_time_prekey_id: Option<u32>,
    /// Id of the responder's ML-KEM prekey used.
    pub kem_prekey_id: u32,
    /// ML-KEM-1024 ciphertext to that prekey.
    pub kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
    /// The embedded first ratchet message.
    pub message: RatchetMessage,
}

impl PreKeyMessage {
    /// Serializes the message.
    pub fn encode(&self) -> Vec<u8> {
        let inner = self.message.encode();
        let mut w = Writer::with_capacity(PREKEY_MESSAGE_FIXED_LEN + inner.len());
        w.u8(SESSION_MESSAGE_VERSION)
            .u8(TYPE_PREKEY)
            .bytes(&self.identity.to_bytes())
            .bytes(&self.base_key)
            .u32(self.signed_prekey_id)
            .flag(self.one_time_prekey_id.is_some())
            .u32(self.one_time_prekey_id.unwrap_or(0))
            .u32(self.kem_prekey_id)
            .bytes(self.kem_ciphertext.as_slice())
            .var_bytes32(&inner);
        w.into_bytes()
    }

    /// Parses a message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        expect_header(
            &mut r,
            SESSION_MESSAGE_VERSION,
            TYPE_PREKEY,
            "session message",
        )?;
        Self::decode_body(&mut r)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let identity = IdentityBytes::decode_from(r)?;
        let base_key = r.array()?;
        let signed_prekey_id = r.u32()?;
        let has_one_time = r.flag("has_one_time_prekey")?;
        let one_time_raw = r.u32()?;
        if !has_one_time && one_time_raw != 0 {
            return Err(DecodeError::InvalidValue("one_time_prekey_id"));
        }
        let kem_prekey_id = r.u32()?;
        let kem_ciphertext = Box::new(r.array::<KEM_CIPHERTEXT_LEN>()?);
        let inner = r.var_bytes32("embedded ratchet message", crate::MAX_RATCHET_MESSAGE_LEN)?;
        r.clone().finish()?;
        let message = RatchetMessage::decode(inner)?;
        Ok(Self {
            identity,
            base_key,
            signed_prekey_id,
            one_time_prekey_id: has_one_time.then_some(one_time_raw),
            kem_prekey_id,
            kem_ciphertext,
            message,
        })
    }
}

/// Any message exchanged inside a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionMessage {
    /// A message that also establishes the session.
    PreKey(PreKeyMessage),
    /// An ordinary ratchet message.
    Ratchet(RatchetMessage),
}

impl SessionMessage {
    /// Serializes the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::PreKey(m) => m.encode(),
            Self::Ratchet(m) => m.encode(),
        }
    }

    /// Parses a message of either type, dispatching on the type byte.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > crate::MAX_SESSION_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                what: "session message",
                len: bytes.len(),
                max: crate::MAX_SESSION_MESSAGE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SESSION_MESSAGE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        match r.u8()? {
            TYPE_RATCHET => RatchetMessage::decode_body(&mut r).map(Self::Ratchet),
            TYPE_PREKEY => PreKeyMessage::decode_body(&mut r).map(Self::PreKey),
            value => Err(DecodeError::UnknownType {
                what: "session message",
                value,
            }),
        }
    }
}

/// Kind of an ML-KEM prekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KemPreKeyKind {
    /// Used when no one-time KEM prekey is left; may be used by many initiators.
    LastResort,
    /// Consumed by the first handshake that uses it.
    OneTime,
}

impl KemPreKeyKind {
    /// Wire value: 0x00 last resort, 0x01 one-time.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::LastResort => 0,
            Self::OneTime => 1,
        }
    }

    /// Parses the wire value.
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Self::LastResort),
            1 => Ok(Self::OneTime),
            value => Err(DecodeError::UnknownType {
                what: "KEM prekey kind",
                value,
            }),
        }
    }
}

/// Domain-separation prefix of the signed X25519 prekey signature (24 ASCII bytes).
pub const SIGNED_PREKEY_SIG_LABEL: &[u8] = b"Sealpost_SignedPreKey_v1";
/// Domain-separation prefix of the ML-KEM prekey signature (21 ASCII bytes).
pub const KEM_PREKEY_SIG_LABEL: &[u8] = b"Sealpost_KemPreKey_v1";

/// A signed X25519 prekey as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// Identifier chosen by the owner.
    pub id: u32,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// X25519 public key.
    pub public: [u8; KEY_LEN],
    /// Ed25519 signature over [`SignedPreKeyPublic::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKeyPublic {
    /// The canonical byte string the owner's identity key signs:
    /// `"Sealpost_SignedPreKey_v1" || identity_dh(32) || id(u32) || created_at(u64) || public(32)`.
    pub fn signed_bytes(
        identity_dh: &[u8; KEY_LEN],
        id: u32,
        created_at: u64,
        public: &[u8; KEY_LEN],
    ) -> Vec<u8> {
        let mut w = Writer::with_capacity(SIGNED_PREKEY_SIG_LABEL.len() + 76);
        w.bytes(SIGNED_PREKEY_SIG_LABEL)
            .bytes(identity_dh)
            .u32(id)
            .u64(created_at)
            .bytes(public);
        w.into_bytes()
    }
}

/// An ML-KEM-1024 prekey as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KemPreKeyPublic {
    /// Identifier chosen by the owner (shared id space for both kinds).
    pub id: u32,
    /// Last-resort or one-time.
    pub kind: KemPreKeyKind,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Encapsulation key.
    pub public: Box<[u8; KEM_PUBLIC_LEN]>,
    /// Ed25519 signature over [`KemPreKeyPublic::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl KemPreKeyPublic {
    /// The canonical byte string the owner's identity key signs:
    /// `"Sealpost_KemPreKey_v1" || identity_dh(32) || id(u32) || kind(1) || created_at(u64) || public(1568)`.
    pub fn signed_bytes(
        identity_dh: &[u8; KEY_LEN],
        id: u32,
        kind: KemPreKeyKind,
        created_at: u64,
        public: &[u8; KEM_PUBLIC_LEN],
    ) -> Vec<u8> {
        let mut w = Writer::with_capacity(KEM_PREKEY_SIG_LABEL.len() + 45 + KEM_PUBLIC_LEN);
        w.bytes(KEM_PREKEY_SIG_LABEL)
            .bytes(identity_dh)
            .u32(id)
            .u8(kind.to_u8())
            .u64(created_at)
            .bytes(public.as_slice());
        w.into_bytes()
    }
}

/// Everything an initiator needs to start a session with one device
/// (spec/wire.md, "PreKeyBundle").
///
/// ```text
/// version(1) || type(1)=0x03 || device_id(u32) || identity(64)
///   || spk_id(u32) || spk_created(u64) || spk(32) || spk_sig(64)
///   || has_opk(1) [|| opk_id(u32) || opk(32)]
///   || kpk_id(u32) || kpk_kind(1) || kpk_created(u64) || kpk(1568) || kpk_sig(64)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The device this bundle belongs to.
    pub device_id: u32,
    /// The device's identity.
    pub identity: IdentityBytes,
    /// Its current signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// One one-time prekey `(id, public)`, if any were left.
    pub one_time_prekey: Option<(u32, [u8; KEY_LEN])>,
    /// One ML-KEM prekey (one-time if any were left, else the last-resort key).
    pub kem_prekey: KemPreKeyPublic,
}

impl PreKeyBundle {
    /// Serializes the bundle.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1900);
        w.u8(PROTOCOL_VERSION)
            .u8(TYPE_BUNDLE)
            .u32(self.device_id)
            .bytes(&self.identity.to_bytes())
            .u32(self.signed_prekey.id)
            .u64(self.signed_prekey.created_at)
            .bytes(&self.signed_prekey.public)
            .bytes(&self.signed_prekey.signature)
            .flag(self.one_time_prekey.is_some());
        if let Some((id, key)) = &self.one_time_prekey {
            w.u32(*id).bytes(key);
        }
        w.u32(self.kem_prekey.id)
            .u8(self.kem_prekey.kind.to_u8())
            .u64(self.kem_prekey.created_at)
            .bytes(self.kem_prekey.public.as_slice())
            .bytes(&self.kem_prekey.signature);
        w.into_bytes()
    }

    /// Parses a bundle.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        expect_header(&mut r, PROTOCOL_VERSION, TYPE_BUNDLE, "bundle")?;
        let device_id = r.u32()?;
        let identity = IdentityBytes::decode_from(&mut r)?;
        let signed_prekey = SignedPreKeyPublic {
            id: r.u32()?,
            created_at: r.u64()?,
            public: r.array()?,
            signature: r.array()?,
        };
        let one_time_prekey = if r.flag("has_one_time_prekey")? {
            Some((r.u32()?, r.array()?))
        } else {
            None
        };
        let kem_prekey = KemPreKeyPublic {
            id: r.u32()?,
            kind: KemPreKeyKind::from_u8(r.u8()?)?,
            created_at: r.u64()?,
            public: Box::new(r.array()?),
            signature: r.array()?,
        };
        r.finish()?;
        Ok(Self {
            device_id,
            identity,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_prekey_message(ct_len: usize, opk: Option<u32>) -> PreKeyMessage {
        PreKeyMessage {
            identity: IdentityBytes {
                signing: [1; 32],
                dh: [2; 32],
            },
            base_key: [3; 32],
            signed_prekey_id: 7,
            one_time_prekey_id: opk,
            kem_prekey_id: 9,
            kem_ciphertext: Box::new([4; KEM_CIPHERTEXT_LEN]),
            message: RatchetMessage {
                ratchet_key: [5; 32],
                previous_chain_length: 0,
                message_number: 0,
                nonce: [7; MESSAGE_NONCE_LEN],
                ciphertext: vec![6; ct_len],
            },
        }
    }

    #[test]
    fn prekey_message_roundtrip_and_every_truncation_fails() {
        let m = sample_prekey_message(40, Some(11));
        let bytes = m.encode();
        assert_eq!(
            bytes.len(),
            PREKEY_MESSAGE_FIXED_LEN + RATCHET_HEADER_LEN + 40
        );
        assert_eq!(
            SessionMessage::decode(&bytes).unwrap(),
            SessionMessage::PreKey(m)
        );
        for cut in 0..bytes.len() {
            assert!(
                SessionMessage::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            SessionMessage::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn version_and_type_are_checked() {
        let m = sample_prekey_message(16, None).encode();
        assert_eq!(m[0], SESSION_MESSAGE_VERSION);
        // Version 1 (the protocol before addresses and synthetic nonces) and 3 are rejected,
        // as prekey messages, embedded and stand-alone ratchet messages.
        for version in [1, 3] {
            let mut v = m.clone();
            v[0] = version;
            assert_eq!(
                SessionMessage::decode(&v),
                Err(DecodeError::UnsupportedVersion(version))
            );
            assert_eq!(
                PreKeyMessage::decode(&v),
                Err(DecodeError::UnsupportedVersion(version))
            );
            let mut inner = m.clone();
            inner[PREKEY_MESSAGE_FIXED_LEN] = version;
            assert_eq!(
                SessionMessage::decode(&inner),
                Err(DecodeError::UnsupportedVersion(version))
            );
            let mut rm = sample_prekey_message(16, None).message.encode();
            rm[0] = version;
            assert_eq!(
                SessionMessage::decode(&rm),
                Err(DecodeError::UnsupportedVersion(version))
            );
            assert_eq!(
                RatchetMessage::decode(&rm),
                Err(DecodeError::UnsupportedVersion(version))
            );
        }
        let mut t = m.clone();
        t[1] = 9;
        assert_eq!(
            SessionMessage::decode(&t),
            Err(DecodeError::UnknownType {
                what: "session message",
                value: 9
            })
        );
        // A non-canonical "absent" one-time id is rejected.
        let mut f = m;
        let off = 2 + 64 + 32 + 4 + 1;
        f[off + 3] = 1;
        assert_eq!(
            SessionMessage::decode(&f),
            Err(DecodeError::InvalidValue("one_time_prekey_id"))
        );
    }

    #[test]
    fn short_ciphertext_rejected() {
        let m = RatchetMessage {
            ratchet_key: [0; 32],
            previous_chain_length: 0,
            message_number: 0,
            nonce: [0; MESSAGE_NONCE_LEN],
            ciphertext: vec![0; 15],
        };
        assert!(matches!(
            RatchetMessage::decode(&m.encode()),
            Err(DecodeError::TooShort { .. })
        ));
    }

    #[test]
    fn bundle_roundtrip() {
        let b = PreKeyBundle {
            device_id: 3,
            identity: IdentityBytes {
                signing: [1; 32],
                dh: [2; 32],
            },
            signed_prekey: SignedPreKeyPublic {
                id: 1,
                created_at: 1_700_000_000,
                public: [3; 32],
                signature: [4; 64],
            },
            one_time_prekey: Some((5, [6; 32])),
            kem_prekey: KemPreKeyPublic {
                id: 7,
                kind: KemPreKeyKind::OneTime,
                created_at: 1_700_000_001,
                public: Box::new([8; KEM_PUBLIC_LEN]),
                signature: [9; 64],
            },
        };
        let bytes = b.encode();
        assert_eq!(PreKeyBundle::decode(&bytes).unwrap(), b);
        for cut in 0..bytes.len() {
            assert!(PreKeyBundle::decode(&bytes[..cut]).is_err());
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = SessionMessage::decode(&bytes);
            let _ = PreKeyBundle::decode(&bytes);
        }

        #[test]
        fn ratchet_roundtrip(key in any::<[u8; 32]>(), pn in any::<u32>(), n in any::<u32>(),
                             nonce in any::<[u8; 12]>(),
                             ct in proptest::collection::vec(any::<u8>(), 16..300)) {
            let m = RatchetMessage { ratchet_key: key, previous_chain_length: pn, message_number: n, nonce, ciphertext: ct };
            prop_assert_eq!(SessionMessage::decode(&m.encode()).unwrap(), SessionMessage::Ratchet(m));
        }
    }
}
