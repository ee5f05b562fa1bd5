//! Plaintext layouts of the sealed records (spec/client-store.md section 5).

use crate::content::{MessageBody, MessageId, decode_content};
use crate::error::StoreError;
use crate::event::DeviceInfo;
use sealpost_crypto::Zeroizing;
use sealpost_devices::DeviceRole;
use sealpost_session::{IdentityKey, IdentityKeyPair, PreKeyStore};
use sealpost_wire::devices::{DeviceName, MAX_DEVICE_NAME_LEN};
use sealpost_wire::relay::{MAX_DEVICES_PER_ACCOUNT, MAX_ENVELOPE_LEN};
use sealpost_wire::relay::{OutgoingEnvelope, PreKeyUpload, Request};
use sealpost_wire::{
    AccountId, DecodeError, DeviceAddress, DeviceId, IdentityBytes, Reader, Writer,
};

/// Version byte that starts every record plaintext.
pub const RECORD_PLAINTEXT_VERSION: u8 = 1;

/// Version byte of outbox entries that carry a `sender_seq` (spec/client-store.md 5.6);
/// entries of version [`RECORD_PLAINTEXT_VERSION`] (written before) load with `sender_seq` 0.
pub const OUTBOX_RECORD_VERSION: u8 = 2;

/// Version byte of outbox entries addressed to one own device (spec/client-store.md 5.6,
/// a history part): version 2 with `target_device` after `created_at`. Entries without a
/// target keep being written as version 2.
pub const OUTBOX_TARGETED_RECORD_VERSION: u8 = 3;

/// Version byte of history entries that name their author (spec/client-store.md 5.5): the
/// version 1 layout followed by the author's device id, role and name. Entries without an
/// author keep being written as version 1.
pub const HISTORY_AUTHOR_RECORD_VERSION: u8 = 2;
/// Version byte of an outgoing history entry of a business account's device that records
/// which of the account's devices sent it (spec/client-store.md 5.5).
pub const HISTORY_SENDER_RECORD_VERSION: u8 = 3;

/// Most retired prekeys remembered for later deletion.
pub(crate) const MAX_RETIRED: usize = 32;

pub(super) fn malformed(table: &'static str) -> impl Fn(DecodeError) -> StoreError {
    move |error| StoreError::Malformed { table, error }
}

pub(super) fn start(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let v = r.u8()?;
    if v != RECORD_PLAINTEXT_VERSION {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    Ok(())
}

/// The device's own identity and registration.
#[derive(Clone, Debug)]
pub(crate) struct AccountRecord {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) account: AccountId,
    /// `None` while registration has not completed.
    pub(crate) device: Option<DeviceId>,
    pub(crate) registered_at: u64,
}

impl AccountRecord {
    pub(crate) const TABLE: &'static str = "account";

    /// `0x01 || identity_secret(64) || account || device_id(u32, 0 = pending) || registered_at(u64)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(160);
        w.u8(RECORD_PLAINTEXT_VERSION)
            .bytes(self.identity.to_secret_bytes().as_slice());
        self.account.encode_into(&mut w);
        w.u32(self.device.map_or(0, |d| d.0))
            .u64(self.registered_at);
        Zeroizing::new(w.into_bytes())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let seed = Zeroizing::new(r.array::<32>().map_err(&m)?);
        let dh = Zeroizing::new(r.array::<32>().map_err(&m)?);
        let identity = IdentityKeyPair::from_secret_bytes(&seed, *dh);
        let account = AccountId::decode_from(&mut r).map_err(&m)?;
        let device = r.u32().map_err(&m)?;
        let registered_at = r.u64().map_err(&m)?;
        r.finish().map_err(&m)?;
        Ok(Self {
            identity,
            account,
            device: (device != 0).then_some(DeviceId(device)),
            registered_at,
        })
    }
}

/// What kind of prekey a retired entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetiredKind {
    Signed,
    Kem,
}

/// A rotated-out prekey, kept until handshakes that may use it are over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetiredKey {
    pub(crate) kind: RetiredKind,
    pub(crate) id: u32,
    pub(crate) retired_at: u64,
}

/// The prekey store and what the client knows about its publication.
#[derive(Debug, Default)]
pub(crate) struct PreKeyState {
    pub(crate) keys: PreKeyStore,
    /// The current signed prekey `(id, created_at)`.
    pub(crate) signed: Option<(u32, u64)>,
    /// The current last-resort KEM prekey `(id, created_at)`.
    pub(crate) last_resort: Option<(u32, u64)>,
    pub(crate) retired: Vec<RetiredKey>,
    /// An upload generated and persisted but not yet confirmed by the relay.
    pub(crate) pending: Option<PreKeyUpload>,
}

impl PreKeyState {
    pub(crate) const TABLE: &'static str = "prekeys";

    /// `0x01 || var32(PreKeyStore::to_bytes) || signed_id(u32) || signed_at(u64) ||
    /// last_resort_id(u32) || last_resort_at(u64) || retired_count(u8) ||
    /// retired × (kind(u8) || id(u32) || retired_at(u64)) || has_pending(flag) ||
    /// [var32(UploadPreKeys request frame body)]`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let keys = self.keys.to_bytes();
        let mut w = Writer::with_capacity(keys.len() + 64);
        w.u8(RECORD_PLAINTEXT_VERSION).var_bytes32(&keys);
        let (sid, sat) = self.signed.unwrap_or((0, 0));
        let (lid, lat) = self.last_resort.unwrap_or((0, 0));
        w.u32(sid).u64(sat).u32(lid).u64(lat);
        let retired = self.retired.get(..MAX_RETIRED).unwrap_or(&self.retired);
        w.u8(u8::try_from(retired.len()).unwrap_or(u8::MAX));
        for k in retired {
            w.u8(match k.kind {
                RetiredKind::Signed => 0,
                RetiredKind::Kem => 1,
            })
            .u32(k.id)
            .u64(k.retired_at);
        }
        w.flag(self.pending.is_some());
        if let Some(p) = &self.pending {
            let frame = Request::UploadPreKeys(p.clone()).encode();
            w.var_bytes32(frame.get(4..).unwrap_or_default());
        }
        Zeroizing::new(w.into_bytes())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let keys = r.var_bytes32("prekey store", usize::MAX).map_err(&m)?;
        let keys = PreKeyStore::from_bytes(keys).map_err(StoreError::State)?;
        let opt = |id: u32, at: u64| (id != 0).then_some((id, at));
        let signed = opt(r.u32().map_err(&m)?, r.u64().map_err(&m)?);
        let last_resort = opt(r.u32().map_err(&m)?, r.u64().map_err(&m)?);
        let n = usize::from(r.u8().map_err(&m)?);
        if n > MAX_RETIRED {
            return Err(m(DecodeError::TooLong {
                what: "retired prekeys",
                len: n,
                max: MAX_RETIRED,
            }));
        }
        let mut retired = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = match r.u8().map_err(&m)? {
                0 => RetiredKind::Signed,
                1 => RetiredKind::Kem,
                value => {
                    return Err(m(DecodeError::UnknownType {
                        what: "retired prekey kind",
                        value,
                    }));
                }
            };
            retired.push(RetiredKey {
                kind,
                id: r.u32().map_err(&m)?,
                retired_at: r.u64().map_err(&m)?,
            });
        }
        let pending = if r.flag("has_pending").map_err(&m)? {
            let body = r
                .var_bytes32("pending upload", sealpost_wire::relay::MAX_FRAME_LEN)
                .map_err(&m)?;
            match Request::decode(body).map_err(&m)? {
                Request::UploadPreKeys(u) => Some(u),
                _ => return Err(m(DecodeError::InvalidValue("pending upload"))),
            }
        } else {
            None
        };
        r.finish().map_err(&m)?;
        Ok(Self {
            keys,
            signed,
            last_resort,
            retired,
            pending,
        })
    }
}

/// Version byte of contact records written now (spec/client-store.md section 5.3): version
/// 2 added the verification state. Version 1 records still load, as unverified.
pub const CONTACT_RECORD_VERSION: u8 = 2;

/// Whether the user has verified a contact device's safety number (spec/client-store.md
/// section 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Never verified (trust on first use): identity changes are reported with
    /// `SafetyNumberChanged` and sending goes on.
    Unverified,
    /// The user compared the safety number of this identity.
    Verified,
    /// The account was verified and this device's identity is new or changed since:
    /// sending to the account is held until the user approves it
    /// (`Client::approve_identity`) or verifies the new safety number.
    ChangedSinceVerified,
}

impl Verification {
    pub(super) fn code(self) -> u8 {
        match self {
            Self::Unverified => 0,
            Self::Verified => 1,
            Self::ChangedSinceVerified => 2,
        }
    }

    pub(super) fn from_code(value: u8) -> Result<Self, DecodeError> {
        match value {
            0 => Ok(Self::Unverified),
            1 => Ok(Self::Verified),
            2 => Ok(Self::ChangedSinceVerified),
            value => Err(DecodeError::UnknownType {
                what: "verification",
                value,
            }),
        }
    }
}

/// A remote device whose identity this device has seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The device.
    pub address: DeviceAddress,
    /// Its identity as last seen.
    pub identity: IdentityKey,
    /// When the device was first seen (Unix ms).
    pub first_seen: u64,
    /// When its identity last changed (Unix ms; equal to `first_seen` if never).
    pub changed_at: u64,
    /// Whether the user verified it.
    pub verification: Verification,
}

impl Contact {
    pub(crate) const TABLE: &'static str = "contacts";

    /// `0x02 || address || identity(64) || first_seen(u64) || changed_at(u64) ||
    /// verification(u8)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(160);
        w.u8(CONTACT_RECORD_VERSION);
        self.address.encode_into(&mut w);
        w.bytes(&self.identity.to_bytes())
            .u64(self.first_seen)
            .u64(self.changed_at)
            .u8(self.verification.code());
        Zeroizing::new(w.into_bytes())
    }

    /// Decodes version 2, and version 1 (`0x01 || address || identity(64) ||
    /// first_seen(u64) || changed_at(u64)`, unverified).
    #[cfg(test)]
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        Self::decode_with(bytes, |b| {
            IdentityKey::from_wire(b).map_err(|_| DecodeError::InvalidValue("identity key"))
        })
    }

    /// Decodes the record; `identity` validates the identity key's bytes.
    pub(crate) fn decode_with(
        bytes: &[u8],
        identity: impl FnOnce(&IdentityBytes) -> Result<IdentityKey, DecodeError>,
    ) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        let version = r.u8().map_err(&m)?;
        if version != RECORD_PLAINTEXT_VERSION && version != CONTACT_RECORD_VERSION {
            return Err(m(DecodeError::UnsupportedVersion(version)));
        }
        let address = DeviceAddress::decode_from(&mut r).map_err(&m)?;
        let identity = identity(&IdentityBytes::decode_from(&mut r).map_err(&m)?).map_err(&m)?;
        let first_seen = r.u64().map_err(&m)?;
        let changed_at = r.u64().map_err(&m)?;
        let verification = if version == CONTACT_RECORD_VERSION {
            Verification::from_code(r.u8().map_err(&m)?).map_err(&m)?
        } else {
            Verification::Unverified
        };
        r.finish().map_err(&m)?;
        Ok(Self {
            address,
            identity,
            first_seen,
            changed_at,
            verification,
        })
    }
}

/// `0x01 || address || var32(pickle)`.
pub(crate) fn encode_session(address: &DeviceAddress, pickle: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(pickle.len() + 80);
    w.u8(RECORD_PLAINTEXT_VERSION);
    address.encode_into(&mut w);
    w.var_bytes32(pickle);
    Zeroizing::new(w.into_bytes())
}

pub(crate) fn decode_session(bytes: &[u8]) -> Result<(DeviceAddress, Vec<u8>), StoreError> {
    let m = malformed("sessions");
    let mut r = Reader::new(bytes);
    start(&mut r).map_err(&m)?;
    let address = DeviceAddress::decode_from(&mut r).map_err(&m)?;
    let pickle = r.var_bytes32("pickle", usize::MAX).map_err(&m)?.to_vec();
    r.finish().map_err(&m)?;
    Ok((address, pickle))
}

/// Who sent a history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received from `peer`.
    Incoming,
    /// Sent by this device to `peer`'s account.
    Outgoing,
}

/// The state of a history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    /// An incoming message.
    Received,
    /// Outgoing, waiting in the outbox.
    Queued,
    /// Outgoing, accepted by the relay at this relay time (Unix ms).
    Delivered {
        /// Relay acceptance time, Unix milliseconds.
        at: u64,
    },
    /// Outgoing, given up (see the `SendFailed` event), at this local time (Unix ms).
    Failed {
        /// Local time, Unix milliseconds.
        at: u64,
    },
}

/// One message of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the history (increasing).
    pub seq: u64,
    /// Incoming or outgoing.
    pub direction: Direction,
    /// Incoming: the sending device. Outgoing: the recipient account, device 0.
    pub peer: DeviceAddress,
    /// The message id.
    pub message_id: MessageId,
    /// Incoming: relay acceptance time. Outgoing: local time it was queued (Unix ms).
    pub timestamp: u64,
    /// Delivery state.
    pub status: MessageStatus,
    /// The content.
    pub body: MessageBody,
    /// Incoming: the sending device as its account's signed list named it when the message
    /// was accepted (as [`crate::ClientEvent::Message`]'s `author`). `None` for outgoing
    /// messages, messages from accounts without a list, and messages imported from a
    /// history bundle or stored before authors were recorded.
    pub author: Option<DeviceInfo>,
    /// Outgoing, on a business account's device: which of the account's devices sent it
    /// (this one, another device whose sent copy arrived, or as a handoff said:
    /// spec/business.md 8.3). `None` otherwise.
    pub sender_device: Option<DeviceId>,
}

/// `0x01 || direction(u8) || peer || timestamp(u64) || status(u8) || status_at(u64) ||
/// var32(content)`; with an author, version `0x02` and `device_id(u32) || role(u8) ||
/// var8(name)` after the content.
pub(crate) fn encode_history(
    direction: Direction,
    peer: &DeviceAddress,
    timestamp: u64,
    status: MessageStatus,
    content: &[u8],
    author: Option<&DeviceInfo>,
    sender: Option<DeviceId>,
) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(content.len() + 96);
    let version = match (author, sender) {
        (Some(_), _) => HISTORY_AUTHOR_RECORD_VERSION,
        (None, Some(_)) => HISTORY_SENDER_RECORD_VERSION,
        (None, None) => RECORD_PLAINTEXT_VERSION,
    };
    w.u8(version).u8(match direction {
        Direction::Incoming => 0,
        Direction::Outgoing => 1,
    });
    peer.encode_into(&mut w);
    let (code, at) = match status {
        MessageStatus::Received => (0, 0),
        MessageStatus::Queued => (1, 0),
        MessageStatus::Delivered { at } => (2, at),
        MessageStatus::Failed { at } => (3, at),
    };
    w.u64(timestamp).u8(code).u64(at).var_bytes32(content);
    if let Some(a) = author {
        w.u32(a.id.0)
            .u8(a.role.to_byte())
            .var_bytes8(a.name.as_bytes());
    } else if let Some(d) = sender {
        w.u32(d.0);
    }
    Zeroizing::new(w.into_bytes())
}

/// Decodes a history record; also returns the raw content for re-encoding.
pub(crate) fn decode_history(
    seq: u64,
    bytes: &[u8],
) -> Result<(HistoryEntry, Zeroizing<Vec<u8>>), StoreError> {
    let (direction, peer, timestamp, status, content, author, sender_device) =
        decode_history_fields(bytes)?;
    let (message_id, body) = decode_content(&content).map_err(malformed("history"))?;
    Ok((
        HistoryEntry {
            seq,
            direction,
            peer,
            message_id,
            timestamp,
            status,
            body,
            author,
            sender_device,
        },
        content,
    ))
}

/// The fields of a history record, with its content encoding left undecoded.
type HistoryFields = (
    Direction,
    DeviceAddress,
    u64,
    MessageStatus,
    Zeroizing<Vec<u8>>,
    Option<DeviceInfo>,
    Option<DeviceId>,
);

/// A history record's direction, peer and message id, without decoding (or copying) the
/// message body: for scans that only match ids (spec/client-store.md 6.3). The content must
/// still be a message encoding of version `0x01` (its id is bytes 2..18).
pub(crate) fn decode_history_id(
    bytes: &[u8],
) -> Result<(Direction, DeviceAddress, MessageId), StoreError> {
    let m = malformed("history");
    let (direction, peer, _, _, content, _, _) = decode_history_fields(bytes)?;
    let mut r = Reader::new(&content);
    let version = r.u8().map_err(&m)?;
    if version != crate::content::CONTENT_VERSION {
        return Err(m(DecodeError::UnsupportedVersion(version)));
    }
    let kind = r.u8().map_err(&m)?;
    if kind != crate::content::CONTENT_TEXT && kind != crate::content::CONTENT_BYTES {
        return Err(m(DecodeError::UnknownType {
            what: "content kind",
            value: kind,
        }));
    }
    let id = MessageId::from_bytes(r.array().map_err(&m)?);
    Ok((direction, peer, id))
}

fn decode_history_fields(bytes: &[u8]) -> Result<HistoryFields, StoreError> {
    let m = malformed("history");
    let mut r = Reader::new(bytes);
    let version = r.u8().map_err(&m)?;
    if version != RECORD_PLAINTEXT_VERSION
        && version != HISTORY_AUTHOR_RECORD_VERSION
        && version != HISTORY_SENDER_RECORD_VERSION
    {
        return Err(m(DecodeError::UnsupportedVersion(version)));
    }
    let direction = match r.u8().map_err(&m)? {
        0 => Direction::Incoming,
        1 => Direction::Outgoing,
        value => {
            return Err(m(DecodeError::UnknownType {
                what: "direction",
                value,
            }));
        }
    };
    let peer = DeviceAddress::decode_from(&mut r).map_err(&m)?;
    let timestamp = r.u64().map_err(&m)?;
    let code = r.u8().map_err(&m)?;
    let at = r.u64().map_err(&m)?;
    let status = match code {
        0 => MessageStatus::Received,
        1 => MessageStatus::Queued,
        2 => MessageStatus::Delivered { at },
        3 => MessageStatus::Failed { at },
        value => {
            return Err(m(DecodeError::UnknownType {
                what: "message status",
                value,
            }));
        }
    };
    let content = Zeroizing::new(r.var_bytes32("content", usize::MAX).map_err(&m)?.to_vec());
    let author = if version == HISTORY_AUTHOR_RECORD_VERSION {
        let id = DeviceId(r.u32().map_err(&m)?);
        let role = DeviceRole::from_byte(r.u8().map_err(&m)?).map_err(&m)?;
        let name = r
            .var_bytes8("device name", MAX_DEVICE_NAME_LEN)
            .map_err(&m)?;
        let name = DeviceName::new(
            String::from_utf8(name.to_vec())
                .map_err(|_| m(DecodeError::InvalidValue("device name")))?,
        )
        .map_err(&m)?;
        Some(DeviceInfo {
            id,
            name: name.as_str().to_owned(),
            role,
        })
    } else {
        None
    };
    let sender = if version == HISTORY_SENDER_RECORD_VERSION {
        if direction != Direction::Outgoing {
            return Err(m(DecodeError::InvalidValue("sender device")));
        }
        match r.u32().map_err(&m)? {
            0 => return Err(m(DecodeError::InvalidValue("sender device"))),
            d => Some(DeviceId(d)),
        }
    } else {
        None
    };
    r.finish().map_err(&m)?;
    Ok((direction, peer, timestamp, status, content, author, sender))
}

/// A message waiting to be accepted by the relay.
#[derive(Clone)]
pub(crate) struct OutboxEntry {
    pub(crate) seq: u64,
    pub(crate) message_id: MessageId,
    pub(crate) recipient: AccountId,
    pub(crate) history_seq: u64,
    pub(crate) created_at: u64,
    /// The encoded content (section 6), the plaintext of every envelope.
    pub(crate) content: Zeroizing<Vec<u8>>,
    /// Envelopes already encrypted (and their session states persisted), per device.
    pub(crate) envelopes: Option<Vec<OutgoingEnvelope>>,
    /// The `sender_seq` allocated when the envelopes were last encrypted (spec/relay.md
    /// 3.7); 0 while not prepared, or for an entry prepared before sequence numbers.
    pub(crate) sender_seq: u64,
    /// The one own device the content is for (a history part, spec/client-store.md 6.2):
    /// the entry waits until the own list names it, and the account's other devices get a
    /// placeholder. `None` for every other entry.
    pub(crate) target: Option<DeviceId>,
}

impl std::fmt::Debug for OutboxEntry {
    // The content is plaintext: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .field("content_len", &self.content.len())
            .field("prepared", &self.envelopes.as_ref().map(Vec::len))
            .field("sender_seq", &self.sender_seq)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl OutboxEntry {
    pub(crate) const TABLE: &'static str = "outbox";

    /// `0x02 || message_id(16) || recipient || history_seq(u64) || created_at(u64) ||
    /// var32(content) || prepared(flag) || [sender_seq(u64) || count(u8) || count ×
    /// (device_id(u32) || var32(envelope))]`. Version `0x01` (read only) has no `sender_seq`;
    /// version `0x03` (an entry with a target) has `target_device(u32)` after `created_at`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let env_len: usize = self
            .envelopes
            .iter()
            .flatten()
            .map(|e| e.envelope.len() + 8)
            .sum();
        let mut w = Writer::with_capacity(self.content.len() + env_len + 128);
        w.u8(if self.target.is_some() {
            OUTBOX_TARGETED_RECORD_VERSION
        } else {
            OUTBOX_RECORD_VERSION
        })
        .bytes(self.message_id.as_bytes());
        self.recipient.encode_into(&mut w);
        w.u64(self.history_seq).u64(self.created_at);
        if let Some(target) = self.target {
            w.u32(target.0);
        }
        w.var_bytes32(&self.content).flag(self.envelopes.is_some());
        if let Some(envs) = &self.envelopes {
            w.u64(self.sender_seq);
            w.u8(u8::try_from(envs.len()).unwrap_or(u8::MAX));
            for e in envs.iter().take(usize::from(u8::MAX)) {
                w.u32(e.device_id).var_bytes32(&e.envelope);
            }
        }
        Zeroizing::new(w.into_bytes())
    }

    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        let version = r.u8().map_err(&m)?;
        if ![
            RECORD_PLAINTEXT_VERSION,
            OUTBOX_RECORD_VERSION,
            OUTBOX_TARGETED_RECORD_VERSION,
        ]
        .contains(&version)
        {
            return Err(m(DecodeError::UnsupportedVersion(version)));
        }
        let message_id = MessageId::from_bytes(r.array().map_err(&m)?);
        let recipient = AccountId::decode_from(&mut r).map_err(&m)?;
        let history_seq = r.u64().map_err(&m)?;
        let created_at = r.u64().map_err(&m)?;
        let target = if version == OUTBOX_TARGETED_RECORD_VERSION {
            match r.u32().map_err(&m)? {
                0 => return Err(m(DecodeError::InvalidValue("target device"))),
                d => Some(DeviceId(d)),
            }
        } else {
            None
        };
        let content = Zeroizing::new(r.var_bytes32("content", usize::MAX).map_err(&m)?.to_vec());
        let mut sender_seq = 0;
        let envelopes = if r.flag("prepared").map_err(&m)? {
            if version != RECORD_PLAINTEXT_VERSION {
                sender_seq = r.u64().map_err(&m)?;
            }
            let n = usize::from(r.u8().map_err(&m)?);
            if n > MAX_DEVICES_PER_ACCOUNT {
                return Err(m(DecodeError::TooLong {
                    what: "envelopes",
                    len: n,
                    max: MAX_DEVICES_PER_ACCOUNT,
                }));
            }
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let device_id = r.u32().map_err(&m)?;
                let envelope = r
                    .var_bytes32("envelope", MAX_ENVELOPE_LEN)
                    .map_err(&m)?
                    .to_vec();
                v.push(OutgoingEnvelope {
                    device_id,
                    envelope,
                });
            }
            Some(v)
        } else {
            None
        };
        r.finish().map_err(&m)?;
        Ok(Self {
            seq,
            message_id,
            recipient,
            history_seq,
            created_at,
            content,
            envelopes,
            sender_seq,
            target,
        })
    }
}

/// This device's sender sequence state (spec/client-store.md 5.8): the next `sender_seq` to
/// allocate and the session sequence number from which sessions may be used for sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SenderState {
    /// The next `sender_seq` to allocate (≥ 1).
    pub(crate) next_sender_seq: u64,
    /// Sessions whose `sessions` row sequence number is below this are kept for decrypting
    /// only: they were in the store when a rollback was detected.
    pub(crate) sendable_from: u64,
}

impl Default for SenderState {
    /// The state of a store without the record (created before it existed): detects nothing
    /// against a relay that has seen no sequence number, blocks no session.
    fn default() -> Self {
        Self {
            next_sender_seq: 1,
            sendable_from: 0,
        }
    }
}

/// Largest `sender_seq` a client allocates (2^63 - 1, the largest a relay records).
pub const MAX_SENDER_SEQ: u64 = i64::MAX as u64;

impl SenderState {
    pub(crate) const TABLE: &'static str = "account";

    /// Takes the next `sender_seq`; `None` once [`MAX_SENDER_SEQ`] has been used.
    pub(crate) fn allocate(&mut self) -> Option<u64> {
        let seq = self.next_sender_seq;
        if seq == 0 || seq > MAX_SENDER_SEQ {
            return None;
        }
        self.next_sender_seq = seq + 1;
        Some(seq)
    }

    /// `0x01 || next_sender_seq(u64) || sendable_from(u64)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(17);
        w.u8(RECORD_PLAINTEXT_VERSION)
            .u64(self.next_sender_seq)
            .u64(self.sendable_from);
        Zeroizing::new(w.into_bytes())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let next_sender_seq = r.u64().map_err(&m)?;
        let sendable_from = r.u64().map_err(&m)?;
        r.finish().map_err(&m)?;
        if next_sender_seq == 0 {
            return Err(m(DecodeError::InvalidValue("next_sender_seq")));
        }
        Ok(Self {
            next_sender_seq,
            sendable_from,
        })
    }
}

/// Whether two message bodies decode from the same content (used by tests).
#[cfg(test)]
pub(crate) fn body_of(content: &[u8]) -> Option<MessageBody> {
    decode_content(content).ok().map(|(_, b)| b)
}

/// The two-step PIN state of this device (spec/client-store.md section 5.7).
pub(crate) struct PinRecord {
    pub(crate) master: sealpost_pin::vault::MasterSecret,
    /// `LocalVerifier` encoding (spec/pin.md section 11).
    pub(crate) verifier: Zeroizing<Vec<u8>>,
    /// `ReminderState` encoding (spec/pin.md section 11).
    pub(crate) reminder: Vec<u8>,
}

impl PinRecord {
    pub(crate) const TABLE: &'static str = "pin";

    /// `0x01 || master_secret(32) || var16(verifier) || var16(reminder)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(256);
        w.u8(RECORD_PLAINTEXT_VERSION)
            .bytes(self.master.as_bytes())
            .var_bytes16(&self.verifier)
            .var_bytes16(&self.reminder);
        Zeroizing::new(w.into_bytes())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let master = Zeroizing::new(r.array::<32>().map_err(&m)?);
        let verifier = Zeroizing::new(r.var_bytes16("pin verifier", 1024).map_err(&m)?.to_vec());
        let reminder = r.var_bytes16("pin reminder", 1024).map_err(&m)?.to_vec();
        r.finish().map_err(&m)?;
        Ok(Self {
            master: sealpost_pin::vault::MasterSecret::from_bytes(*master),
            verifier,
            reminder,
        })
    }
}
