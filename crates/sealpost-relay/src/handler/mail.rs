//! Mail: `Send` and `Ack`.

use super::*;

/// `retry_after` of `DevicesChanging` (spec/relay.md 3.7): a new key holder publishes its
/// list within a few round trips of its registration.
pub(super) const DEVICES_CHANGING_RETRY_SECS: u32 = 2;

/// The response to a `Send` that the store answered with `outcome`.
pub(super) fn send_response(
    recipient: &AccountId,
    now: u64,
    outcome: Result<EnqueueOutcome, StoreError>,
    effects: &mut Vec<Effect>,
) -> Response {
    match outcome {
        Ok(EnqueueOutcome::Queued(ids)) => {
            metrics::queued(ids.len() as u64);
            for &(device_id, server_id) in &ids {
                effects.push(Effect::MailArrived {
                    device: DeviceAddress::new(recipient.clone(), DeviceId(device_id)),
                    up_to: server_id,
                });
            }
            Response::Accepted { timestamp: now }
        }
        Ok(EnqueueOutcome::UnknownAccount) => {
            Response::error(ErrorCode::UnknownAccount, "recipient has no devices")
        }
        Ok(EnqueueOutcome::MismatchedDevices) => Response::error(
            ErrorCode::MismatchedDevices,
            "envelopes do not address exactly the recipient's devices",
        ),
        Ok(EnqueueOutcome::QueueFull { device_id }) => Response::error(
            ErrorCode::QueueFull,
            format!("mailbox of device {device_id} is full"),
        ),
        Err(e) => internal(&e),
    }
}

/// The response to an `Ack` of `server_ids` by `device` that the store answered with `outcome`.
pub(super) fn ack_response(
    device: DeviceAddress,
    server_ids: Vec<u64>,
    outcome: Result<u32, StoreError>,
    effects: &mut Vec<Effect>,
) -> Response {
    match outcome {
        Ok(removed) => {
            metrics::delivered(u64::from(removed));
            effects.push(Effect::Acked { device, server_ids });
            Response::Acked {
                removed: sat_u16(removed),
            }
        }
        Err(e) => internal(&e),
    }
}

impl Handler {
    pub(super) async fn send_or_ack(
        &self,
        me: &AuthenticatedDevice,
        request: Request,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match request {
            Request::Send {
                message_id,
                sender_seq,
                recipient,
                envelopes,
            } => {
                if let Err(s) = self.send_limiter.try_take(&me.address, now) {
                    return rate_limited("sends", s);
                }
                let message =
                    self.new_message(me, &message_id, sender_seq, &recipient, &envelopes, now);
                let outcome = self.store.enqueue(&message).await;
                if matches!(outcome, Ok(EnqueueOutcome::MismatchedDevices))
                    && self
                        .devices_changing(&recipient, &envelopes, message.exclude_device)
                        .await
                {
                    return Response::Error {
                        code: ErrorCode::DevicesChanging,
                        retry_after: DEVICES_CHANGING_RETRY_SECS,
                        detail: "the account's key holder is being replaced; retry later".into(),
                    };
                }
                send_response(&recipient, now, outcome, effects)
            }
            Request::Ack { server_ids } => {
                let outcome = self.store.ack(&me.address, &server_ids).await;
                ack_response(me.address.clone(), server_ids, outcome, effects)
            }
            _ => Response::error(ErrorCode::Internal, "not a send or ack"),
        }
    }

    /// Whether a `Send` refused as `MismatchedDevices` addressed exactly the stored list's
    /// devices (but `exclude`, the sending device) in the window after a recovery
    /// registration (spec/relay.md 3.2: the account has a `rekey_device`) until the new key
    /// holder publishes its list. Read only on this refusal path.
    async fn devices_changing(
        &self,
        recipient: &AccountId,
        envelopes: &[OutgoingEnvelope],
        exclude: Option<u32>,
    ) -> bool {
        let Ok(state) = self.store.device_list_state(recipient).await else {
            return false;
        };
        let (Some(stored), Some(_)) = (state.list, state.rekey_device) else {
            return false;
        };
        let Ok(list) = sealpost_wire::devices::SignedDeviceList::decode(&stored.bytes) else {
            return false;
        };
        let listed: std::collections::BTreeSet<u32> =
            list.body.entries.iter().map(|e| e.device_id).collect();
        let addressed: std::collections::BTreeSet<u32> =
            envelopes.iter().map(|e| e.device_id).collect();
        let expected: std::collections::BTreeSet<u32> = listed
            .into_iter()
            .filter(|id| Some(*id) != exclude)
            .collect();
        addressed == expected
    }

    pub(super) fn new_message<'a>(
        &self,
        me: &'a AuthenticatedDevice,
        message_id: &'a [u8; 16],
        sender_seq: u64,
        recipient: &'a AccountId,
        envelopes: &'a [OutgoingEnvelope],
        now: u64,
    ) -> NewMessage<'a> {
        let exclude_device = (recipient == &me.address.account).then_some(me.address.device.0);
        NewMessage {
            sender: &me.address,
            recipient,
            exclude_device,
            message_id,
            sender_seq,
            timestamp: now,
            envelopes,
            max_queued: self.limits.max_queued_per_device,
        }
    }
}
