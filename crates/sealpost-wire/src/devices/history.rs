//! The history bundle a key holder sends a newly linked device (`spec/devices.md` section
//! 6.4): contacts with their verification state and recent messages, in self-contained
//! parts. Structure only: the receiver verifies lists and message contents as it applies
//! them.

use super::{DEVICES_VERSION, MAX_DEVICE_LIST_LEN, MAX_LISTED_DEVICES, SignedDeviceList};
use crate::{AccountId, DecodeError, DeviceAddress, DeviceId, IdentityBytes, Reader, Writer};
use core::fmt;

/// Type byte of a [`HistoryPart`].
pub const TYPE_HISTORY_PART: u8 = 0x14;
/// Longest [`HistoryPart`] encoding: the most a message content's body carries
/// (`spec/client-store.md` section 6: 262,144 − 18 bytes).
pub const MAX_HISTORY_PART_LEN: usize = 262_126;
/// Length of a bundle id.
pub const HISTORY_BUNDLE_ID_LEN: usize = 16;
/// Encoded length of a part without records: version, type, bundle id, index, flags, count.
const PART_HEADER_LEN: usize = 2 + HISTORY_BUNDLE_ID_LEN + 2 + 1 + 2;
const FLAG_LAST: u8 = 0x01;
const TAG_CONTACT: u8 = 0x01;
const TAG_MESSAGE: u8 = 0x02;

/// A contact's (or an account's) verification state (`spec/client-store.md` section 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryVerification {
    /// Trust on first use.
    Unverified,
    /// The user compared the safety number.
    Verified,
    /// Verified once; the identity changed since.
    ChangedSinceVerified,
}

impl HistoryVerification {
    fn to_byte(self) -> u8 {
        match self {
            Self::Unverified => 0x00,
            Self::Verified => 0x01,
            Self::ChangedSinceVerified => 0x02,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x00 => Self::Unverified,
            0x01 => Self::Verified,
            0x02 => Self::ChangedSinceVerified,
            _ => return Err(DecodeError::InvalidValue("verification")),
        })
    }
}

/// One device of a contact without a device list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryDevice {
    /// The device id (≥ 1).
    pub device_id: DeviceId,
    /// Its identity as the key holder knows it.
    pub identity: IdentityBytes,
    /// Its verification state.
    pub verification: HistoryVerification,
}

/// What the key holder knows of a contact's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactDevices {
    /// An account without a list: its devices, 1..=64, in increasing id order.
    Devices(Vec<HistoryDevice>),
    /// An account with a list: the account's verification state and the pinned list.
    List {
        /// The account's verification state (over its account key).
        verification: HistoryVerification,
        /// The list the key holder pinned.
        list: SignedDeviceList,
    },
}

/// A contact record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryContact {
    /// The contact's account.
    pub account: AccountId,
    /// Its devices or its list.
    pub devices: ContactDevices,
}

/// Whether a history message was received or sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryDirection {
    /// Received from `peer` (a device).
    Incoming,
    /// Sent to `peer` (an account, device 0).
    Outgoing,
}

/// A message's state. Queued messages are never in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryStatus {
    /// Incoming.
    Received,
    /// Outgoing, accepted by the relay.
    Delivered,
    /// Outgoing, given up.
    Failed,
}

/// A message record: one history entry of the key holder.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryMessage {
    /// Received or sent.
    pub direction: HistoryDirection,
    /// Incoming: the sending device; outgoing: the recipient account with device 0.
    pub peer: DeviceAddress,
    /// Unix ms, as in the history entry.
    pub timestamp: u64,
    /// Received, delivered or failed (matching `direction`).
    pub status: HistoryStatus,
    /// Unix ms, as in the history entry.
    pub status_at: u64,
    /// The message content (`spec/client-store.md` section 6), not empty.
    pub content: Vec<u8>,
}

impl fmt::Debug for HistoryMessage {
    // Message content is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryMessage")
            .field("direction", &self.direction)
            .field("peer", &self.peer)
            .field("timestamp", &self.timestamp)
            .field("status", &self.status)
            .field("status_at", &self.status_at)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// One record of a part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryRecord {
    /// A contact.
    Contact(HistoryContact),
    /// A message.
    Message(HistoryMessage),
}

/// One part of a history bundle (`spec/devices.md` section 6.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPart {
    /// The same in every part of one bundle.
    pub bundle_id: [u8; HISTORY_BUNDLE_ID_LEN],
    /// The part's position, from 0.
    pub index: u16,
    /// Whether this is the bundle's last part.
    pub last: bool,
    /// The records, each applicable on its own.
    pub records: Vec<HistoryRecord>,
}

impl HistoryRecord {
    /// Appends the record; fails when it breaks a structural rule of section 6.4.
    fn encode_into(&self, w: &mut Writer) -> Result<(), DecodeError> {
        match self {
            Self::Contact(c) => {
                w.u8(TAG_CONTACT);
                c.account.encode_into(w);
                match &c.devices {
                    ContactDevices::Devices(devices) => {
                        check_devices(devices)?;
                        w.u8(0x00).u8(u8::try_from(devices.len()).map_err(|_| {
                            DecodeError::TooLong {
                                what: "contact devices",
                                len: devices.len(),
                                max: MAX_LISTED_DEVICES,
                            }
                        })?);
                        for d in devices {
                            w.u32(d.device_id.0)
                                .bytes(&d.identity.to_bytes())
                                .u8(d.verification.to_byte());
                        }
                    }
                    ContactDevices::List { verification, list } => {
                        w.u8(0x01).u8(verification.to_byte());
                        w.var_bytes32(&list.encode()?);
                    }
                }
            }
            Self::Message(m) => {
                check_message(m.direction, &m.peer, m.status)?;
                if m.content.is_empty() {
                    return Err(DecodeError::TooShort {
                        what: "history content",
                        len: 0,
                        min: 1,
                    });
                }
                if m.content.len() > MAX_HISTORY_PART_LEN {
                    return Err(DecodeError::TooLong {
                        what: "history content",
                        len: m.content.len(),
                        max: MAX_HISTORY_PART_LEN,
                    });
                }
                w.u8(TAG_MESSAGE).u8(match m.direction {
                    HistoryDirection::Incoming => 0x00,
                    HistoryDirection::Outgoing => 0x01,
                });
                m.peer.encode_into(w);
                w.u64(m.timestamp)
                    .u8(match m.status {
                        HistoryStatus::Received => 0x00,
                        HistoryStatus::Delivered => 0x02,
                        HistoryStatus::Failed => 0x03,
                    })
                    .u64(m.status_at)
                    .var_bytes32(&m.content);
            }
        }
        Ok(())
    }

    /// The record's encoding on its own (what it adds to a part).
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut w = Writer::new();
        self.encode_into(&mut w)?;
        Ok(w.into_bytes())
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            TAG_CONTACT => {
                let account = AccountId::decode_from(r)?;
                let devices = match r.u8()? {
                    0x00 => {
                        let count = usize::from(r.u8()?);
                        if count == 0 {
                            return Err(DecodeError::TooShort {
                                what: "contact devices",
                                len: 0,
                                min: 1,
                            });
                        }
                        if count > MAX_LISTED_DEVICES {
                            return Err(DecodeError::TooLong {
                                what: "contact devices",
                                len: count,
                                max: MAX_LISTED_DEVICES,
                            });
                        }
                        let mut devices: Vec<HistoryDevice> = Vec::with_capacity(count);
                        for _ in 0..count {
                            let device_id = DeviceId(r.u32()?);
                            if device_id.0 == 0 {
                                return Err(DecodeError::InvalidValue("device id"));
                            }
                            if devices.last().is_some_and(|p| p.device_id.0 >= device_id.0) {
                                return Err(DecodeError::InvalidValue("device order"));
                            }
                            let identity = IdentityBytes::decode_from(r)?;
                            let verification = HistoryVerification::from_byte(r.u8()?)?;
                            devices.push(HistoryDevice {
                                device_id,
                                identity,
                                verification,
                            });
                        }
                        ContactDevices::Devices(devices)
                    }
                    0x01 => {
                        let verification = HistoryVerification::from_byte(r.u8()?)?;
                        let bytes = r.var_bytes32("device list", MAX_DEVICE_LIST_LEN)?;
                        if bytes.is_empty() {
                            return Err(DecodeError::TooShort {
                                what: "device list",
                                len: 0,
                                min: 1,
                            });
                        }
                        ContactDevices::List {
                            verification,
                            list: SignedDeviceList::decode(bytes)?,
                        }
                    }
                    _ => return Err(DecodeError::InvalidValue("contact kind")),
                };
                Ok(Self::Contact(HistoryContact { account, devices }))
            }
            TAG_MESSAGE => {
                let direction = match r.u8()? {
                    0x00 => HistoryDirection::Incoming,
                    0x01 => HistoryDirection::Outgoing,
                    _ => return Err(DecodeError::InvalidValue("direction")),
                };
                let peer = DeviceAddress::decode_from(r)?;
                let timestamp = r.u64()?;
                let status = match r.u8()? {
                    0x00 => HistoryStatus::Received,
                    0x02 => HistoryStatus::Delivered,
                    0x03 => HistoryStatus::Failed,
                    _ => return Err(DecodeError::InvalidValue("history message")),
                };
                check_message(direction, &peer, status)?;
                let status_at = r.u64()?;
                let content = r.var_bytes32("history content", MAX_HISTORY_PART_LEN)?;
                if content.is_empty() {
                    return Err(DecodeError::TooShort {
                        what: "history content",
                        len: 0,
                        min: 1,
                    });
                }
                Ok(Self::Message(HistoryMessage {
                    direction,
                    peer,
                    timestamp,
                    status,
                    status_at,
                    content: content.to_vec(),
                }))
            }
            _ => Err(DecodeError::InvalidValue("history record")),
        }
    }
}

/// A contact's devices: 1..=64, ids ≥ 1 and strictly increasing.
fn check_devices(devices: &[HistoryDevice]) -> Result<(), DecodeError> {
    if devices.is_empty() {
        return Err(DecodeError::TooShort {
            what: "contact devices",
            len: 0,
            min: 1,
        });
    }
    if devices.len() > MAX_LISTED_DEVICES {
        return Err(DecodeError::TooLong {
            what: "contact devices",
            len: devices.len(),
            max: MAX_LISTED_DEVICES,
        });
    }
    let mut previous = 0;
    for d in devices {
        if d.device_id.0 == 0 {
            return Err(DecodeError::InvalidValue("device id"));
        }
        if d.device_id.0 <= previous {
            return Err(DecodeError::InvalidValue("device order"));
        }
        previous = d.device_id.0;
    }
    Ok(())
}

/// Incoming ⇔ received, from a device (id ≥ 1); outgoing: delivered or failed, to device 0.
fn check_message(
    direction: HistoryDirection,
    peer: &DeviceAddress,
    status: HistoryStatus,
) -> Result<(), DecodeError> {
    let ok = match direction {
        HistoryDirection::Incoming => status == HistoryStatus::Received && peer.device.0 >= 1,
        HistoryDirection::Outgoing => status != HistoryStatus::Received && peer.device.0 == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidValue("history message"))
    }
}

impl HistoryPart {
    /// The canonical encoding; fails when a record breaks a structural rule, there are more
    /// than 65,535 records, or the part is longer than [`MAX_HISTORY_PART_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let count = u16::try_from(self.records.len()).map_err(|_| DecodeError::TooLong {
            what: "history records",
            len: self.records.len(),
            max: usize::from(u16::MAX),
        })?;
        let mut w = Writer::new();
        w.u8(DEVICES_VERSION)
            .u8(TYPE_HISTORY_PART)
            .bytes(&self.bundle_id)
            .u16(self.index)
            .u8(if self.last { FLAG_LAST } else { 0 })
            .u16(count);
        for record in &self.records {
            record.encode_into(&mut w)?;
        }
        if w.len() > MAX_HISTORY_PART_LEN {
            return Err(DecodeError::TooLong {
                what: "history part",
                len: w.len(),
                max: MAX_HISTORY_PART_LEN,
            });
        }
        Ok(w.into_bytes())
    }

    /// Decodes a whole input (section 6.4).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_HISTORY_PART_LEN {
            return Err(DecodeError::TooLong {
                what: "history part",
                len: bytes.len(),
                max: MAX_HISTORY_PART_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != DEVICES_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let ty = r.u8()?;
        if ty != TYPE_HISTORY_PART {
            return Err(DecodeError::UnknownType {
                what: "history part",
                value: ty,
            });
        }
        let bundle_id = r.array()?;
        let index = r.u16()?;
        let flags = r.u8()?;
        if flags & !FLAG_LAST != 0 {
            return Err(DecodeError::InvalidValue("history flags"));
        }
        let count = r.u16()?;
        // Every record takes at least 8 bytes: allocate for what the input can hold.
        let mut records = Vec::with_capacity(usize::from(count).min(r.remaining() / 8));
        for _ in 0..count {
            records.push(HistoryRecord::decode_from(&mut r)?);
        }
        r.finish()?;
        Ok(Self {
            bundle_id,
            index,
            last: flags & FLAG_LAST != 0,
            records,
        })
    }
}

/// What [`pack_history`] made: the parts, and the positions (in the input) of the records
/// it left out because they do not fit in a part on their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedHistory {
    /// The parts, indexed from 0, the last one flagged (at least one part, possibly empty).
    pub parts: Vec<HistoryPart>,
    /// Input positions of the records left out.
    pub left_out: Vec<usize>,
}

/// Packs records into parts in order (section 6.4, "Packing"): a new part starts when the
/// next record would make the current one longer than [`MAX_HISTORY_PART_LEN`] (or hold
/// more than 65,535 records); a record longer than an empty part can hold is left out.
/// Fails only when a record breaks a structural rule.
pub fn pack_history(
    bundle_id: [u8; HISTORY_BUNDLE_ID_LEN],
    records: Vec<HistoryRecord>,
) -> Result<PackedHistory, DecodeError> {
    let room = MAX_HISTORY_PART_LEN - PART_HEADER_LEN;
    let mut parts: Vec<HistoryPart> = Vec::new();
    let mut left_out = Vec::new();
    let mut current: Vec<HistoryRecord> = Vec::new();
    let mut used = 0usize;
    for (i, record) in records.into_iter().enumerate() {
        let len = record.encode()?.len();
        if len > room {
            left_out.push(i);
            continue;
        }
        if used + len > room || current.len() == usize::from(u16::MAX) {
            parts.push(part(bundle_id, parts.len(), core::mem::take(&mut current))?);
            used = 0;
        }
        used += len;
        current.push(record);
    }
    parts.push(part(bundle_id, parts.len(), current)?);
    if let Some(last) = parts.last_mut() {
        last.last = true;
    }
    Ok(PackedHistory { parts, left_out })
}

fn part(
    bundle_id: [u8; HISTORY_BUNDLE_ID_LEN],
    index: usize,
    records: Vec<HistoryRecord>,
) -> Result<HistoryPart, DecodeError> {
    Ok(HistoryPart {
        bundle_id,
        index: u16::try_from(index).map_err(|_| DecodeError::TooLong {
            what: "history parts",
            len: index,
            max: usize::from(u16::MAX),
        })?,
        last: false,
        records,
    })
}

#[cfg(test)]
mod tests;
