//! Pushes: what the relay sends unasked, on its own streams (spec/relay.md section 4).

use super::*;

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
    /// A provisioning message for the provisioning id this connection opened
    /// (spec/relay.md 3.11).
    Provisioning {
        /// The provisioning id.
        provisioning_id: [u8; PROVISIONING_ID_LEN],
        /// The sealed message.
        envelope: ProvisioningEnvelope,
    },
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
            Self::Provisioning {
                provisioning_id,
                envelope,
            } => frame(0x83, |w| {
                w.bytes(provisioning_id).var_bytes32(&envelope.encode());
            }),
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
            0x83 => Self::Provisioning {
                provisioning_id: r.array()?,
                envelope: provisioning_envelope(&mut r)?,
            },
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
