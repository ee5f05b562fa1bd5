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

/// What a `Send` refused as `MismatchedDevices` turned out to be.
enum Mismatch {
    /// The recipient's key holder is being replaced: retry later.
    DevicesChanging,
    /// A routed send to a business account: queue it addressing these devices.
    Routed {
        /// The key holder, which every routed send addresses (`None`: it is the sender).
        key_holder: Option<u32>,
    },
    /// A sender with an outdated view of the devices.
    Refused,
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
                let mut message =
                    self.new_message(me, &message_id, sender_seq, &recipient, &envelopes, now);
                let mut outcome = self.store.enqueue(&message).await;
                if matches!(outcome, Ok(EnqueueOutcome::MismatchedDevices)) {
                    match self
                        .mismatch(&recipient, &envelopes, message.exclude_device)
                        .await
                    {
                        Mismatch::DevicesChanging => {
                            return Response::Error {
                                code: ErrorCode::DevicesChanging,
                                retry_after: DEVICES_CHANGING_RETRY_SECS,
                                detail: "the account's key holder is being replaced; retry later"
                                    .into(),
                            };
                        }
                        Mismatch::Routed { key_holder } => {
                            message.addressing = Addressing::Subset {
                                required: key_holder,
                            };
                            outcome = self.store.enqueue(&message).await;
                        }
                        Mismatch::Refused => {}
                    }
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

    /// What a `Send` refused as `MismatchedDevices` (addressing other devices than exactly
    /// the registered ones) is, by the recipient's stored list; read only on this refusal
    /// path, so ordinary sends cost nothing more:
    /// - in the window after a recovery registration (spec/relay.md 3.2: the account has a
    ///   `rekey_device`) until the new key holder publishes its list, a send addressing
    ///   exactly the stored list's devices (but `exclude`, the sending device) is told to
    ///   wait (`DevicesChanging`);
    /// - to a business list, distinct listed devices including the key holder are a routed
    ///   send (spec/business.md 7.3), tried again with [`Addressing::Subset`]: the store
    ///   checks in its transaction that they are still registered.
    async fn mismatch(
        &self,
        recipient: &AccountId,
        envelopes: &[OutgoingEnvelope],
        exclude: Option<u32>,
    ) -> Mismatch {
        let Ok(state) = self.store.device_list_state(recipient).await else {
            return Mismatch::Refused;
        };
        let Some(stored) = state.list else {
            return Mismatch::Refused;
        };
        let Ok(list) = sealpost_wire::devices::SignedDeviceList::decode(&stored.bytes) else {
            return Mismatch::Refused;
        };
        let listed: std::collections::BTreeSet<u32> = list
            .body
            .entries
            .iter()
            .map(|e| e.device_id)
            .filter(|id| Some(*id) != exclude)
            .collect();
        let addressed: std::collections::BTreeSet<u32> =
            envelopes.iter().map(|e| e.device_id).collect();
        if state.rekey_device.is_some() {
            return if addressed == listed {
                Mismatch::DevicesChanging
            } else {
                Mismatch::Refused
            };
        }
        let holder = list
            .body
            .entries
            .iter()
            .find(|e| e.role.holds_account_key());
        match holder {
            Some(h)
                if h.role.family() == sealpost_wire::devices::RoleFamily::Business
                    && !addressed.is_empty()
                    && addressed.len() == envelopes.len()
                    && addressed.is_subset(&listed)
                    && (Some(h.device_id) == exclude || addressed.contains(&h.device_id)) =>
            {
                Mismatch::Routed {
                    // The key holder sending to its own account addresses the others only.
                    key_holder: (Some(h.device_id) != exclude).then_some(h.device_id),
                }
            }
            _ => Mismatch::Refused,
        }
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
            addressing: Addressing::Exact,
            max_queued: self.limits.max_queued_per_device,
        }
    }
}
