//! The business's actions on a conversation (spec/business.md 8.1, 8.3): assigning it (a
//! claim, a transfer, a resolve) with its handoff, and internal notes.

use super::*;
use sealpost_wire::business::{
    HANDOFF_ENTRY_OVERHEAD, HANDOFF_PART_OVERHEAD, MAX_HANDOFF_ENTRIES, MAX_HANDOFF_PARTS,
    MAX_NOTE_LEN,
};
use sealpost_wire::content::MAX_BODY_LEN;

/// A content ready to queue: its message id and its encoding.
type Prepared = (MessageId, Zeroizing<Vec<u8>>);

impl Engine {
    /// Assigns the conversation with `customer` (spec/business.md 8.1): signs the next
    /// conversation route naming `devices` (as the account key on the key holder, else as
    /// this device, which must be an owner or admin or on the current route), and queues,
    /// in one batch, the route to the customer, the assignment to every own device and,
    /// with `handoff`, the conversation so far to the new route's devices. Returns the
    /// route version.
    pub(crate) fn assign(
        &self,
        customer: &AccountId,
        devices: &[DeviceId],
        state: ConversationState,
        handoff: Option<&str>,
        tamper: Option<&HandoffTamper>,
        now_ms: u64,
    ) -> Result<u64, ClientError> {
        let _g = self.lock()?;
        let own = self.own_devices()?.ok_or(ClientError::NotBusiness)?;
        let list = &own.list;
        if list.family() != RoleFamily::Business {
            return Err(ClientError::NotBusiness);
        }
        if customer == &self.address.account {
            return Err(ClientError::NotBusiness);
        }
        let mut ids: Vec<u32> = devices.iter().map(|d| d.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(ClientError::NoDevices);
        }
        if let Some(missing) = ids.iter().find(|id| list.device(**id).is_none()) {
            return Err(ClientError::UnknownDevice(DeviceId(*missing)));
        }
        let mut record = self
            .store
            .desk_record(customer)?
            .unwrap_or_else(|| DeskRecord::new(customer.clone()));
        let held = record
            .route
            .as_ref()
            .and_then(|r| VerifiedRoute::verify_held(r, list, Some(customer)).ok());
        let version = held
            .as_ref()
            .map_or(Some(1), |r| r.route_version().checked_add(1))
            .ok_or(ClientError::RouteRefused(RouteError::Exhausted))?;
        let current = self.current_route(list, customer, None)?;
        let mut body = RouteBody {
            account: self.address.account.clone(),
            account_key: list.account_key().to_bytes(),
            customer: Some(customer.clone()),
            route_version: version,
            issued_at: now_ms,
            devices: ids.clone(),
            signer: RouteSigner::AccountKey,
        };
        let (route, basis) = match &own.account_key {
            Some(key) => (
                key.sign_route(body).map_err(ClientError::RouteRefused)?,
                None,
            ),
            None => {
                body.signer = RouteSigner::Device(self.address.device.0);
                let route = sign_route_as_device(body, |m| self.identity.sign(m))
                    .map_err(ClientError::RouteRefused)?;
                (route, current.as_ref().map(|c| c.signed().clone()))
            }
        };
        // The same check every reader makes (7.2 rule 3).
        VerifiedRoute::verify(&route, list, Some(customer), current.as_ref())
            .map_err(ClientError::RouteRefused)?;
        let mut batch = Batch::new();
        // The handoff is built before the route changes what this device holds.
        let handoff_content = match handoff {
            Some(note) => Some(self.build_handoff(customer, version, note, tamper)?),
            None => None,
        };
        record.route = Some(route.clone());
        record.state = state;
        self.store.put_desk_record(&mut batch, &record)?;
        let message = RouteMessage { route, basis };
        let id = MessageId::random();
        let content = encode_route(&id, &message)
            .map_err(|_| ClientError::Internal(crate::error::InternalError::Encoding))?;
        self.queue_control(&mut batch, customer, id, content, now_ms)?;
        let id = MessageId::random();
        let assign = Desk::Assign {
            customer: customer.clone(),
            state,
            route: Box::new(message),
        }
        .encode(&id)
        .map_err(|_| ClientError::Internal(crate::error::InternalError::Encoding))?;
        let own_account = self.address.account.clone();
        self.queue_control(&mut batch, &own_account, id, assign, now_ms)?;
        // The parts in order, one after another (8.2 "Receiving").
        for (id, content) in handoff_content.into_iter().flatten() {
            self.queue_control(&mut batch, &own_account, id, content, now_ms)?;
        }
        self.store.commit(batch)?;
        Ok(version)
    }

    /// The handoff of the conversation with `customer` (8.3): every message of this device's
    /// history with a known sender that was not given up, in the handoff's order, as the
    /// contents of its parts (8.2), in order.
    fn build_handoff(
        &self,
        customer: &AccountId,
        route_version: u64,
        note: &str,
        tamper: Option<&HandoffTamper>,
    ) -> Result<Vec<Prepared>, ClientError> {
        // (queued, relay acceptance time, the entry): see the sort below.
        let mut entries: Vec<(bool, u64, HandoffEntry)> = Vec::new();
        for e in self.store.history(customer, usize::MAX)? {
            // A message still queued is in the outbox ahead of the route (both go to the
            // customer in queue order), so the customer will have it before it confirms.
            let (side, device) = match (e.direction, e.status, e.sender_device) {
                (Direction::Incoming, _, _) => (Side::Customer, e.peer.device.0),
                (
                    Direction::Outgoing,
                    MessageStatus::Delivered { .. } | MessageStatus::Queued,
                    Some(d),
                ) => (Side::Business, d.0),
                _ => continue,
            };
            let queued = e.status == MessageStatus::Queued;
            let timestamp = match e.status {
                MessageStatus::Delivered { at } => at,
                _ => e.timestamp,
            };
            entries.push((
                queued,
                timestamp,
                HandoffEntry {
                    side,
                    device,
                    timestamp,
                    content: encode_content(&e.message_id, &e.body),
                },
            ));
        }
        // Each chain in its sender's order (business.md 8.3): the relay accepts one device's
        // messages to the conversation one after the other, so by the relay's acceptance time
        // (a history may hold them in another order: a sent copy that arrived before the
        // handoff that brought the messages before it); messages still queued after them, in
        // queue order. The sort is stable: equal times keep the history's order.
        entries.sort_by_key(|(queued, at, _)| (*queued, *at));
        let mut entries: Vec<HandoffEntry> = entries.into_iter().map(|(_, _, e)| e).collect();
        // Only the hazmat feature's tests pass one: a device that alters what it hands on.
        if let Some(tamper) = tamper {
            tamper(&mut entries);
        }
        if note.len() > MAX_NOTE_LEN {
            return Err(ClientError::NoteRefused);
        }
        let chunks = handoff_parts(customer, note, entries)?;
        let parts = u16::try_from(chunks.len()).map_err(|_| ClientError::HandoffTooLarge)?;
        let mut contents = Vec::with_capacity(chunks.len());
        for (part, entries) in (1..=parts).zip(chunks) {
            let id = MessageId::random();
            let content = Desk::Handoff {
                customer: customer.clone(),
                route_version,
                part,
                parts,
                note: if part == 1 {
                    note.to_owned()
                } else {
                    String::new()
                },
                entries,
            }
            .encode(&id)
            .map_err(|e| match e {
                sealpost_wire::DecodeError::TooLong { .. }
                | sealpost_wire::DecodeError::TooMany { .. } => ClientError::HandoffTooLarge,
                _ => ClientError::NoteRefused,
            })?;
            contents.push((id, content));
        }
        Ok(contents)
    }

    /// An internal note about the conversation with `customer`, kept here and queued to the
    /// conversation's devices (8.2).
    pub(crate) fn add_note(
        &self,
        customer: &AccountId,
        text: &str,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let _g = self.lock()?;
        if self.own_business_list()?.is_none() {
            return Err(ClientError::NotBusiness);
        }
        let id = MessageId::random();
        let content = Desk::Note {
            customer: customer.clone(),
            text: text.to_owned(),
        }
        .encode(&id)
        .map_err(|_| ClientError::NoteRefused)?;
        let mut record = self
            .store
            .desk_record(customer)?
            .unwrap_or_else(|| DeskRecord::new(customer.clone()));
        push_note(
            &mut record,
            StoredNote {
                device: self.address.device.0,
                at: now_ms,
                text: text.to_owned(),
            },
        );
        let mut batch = Batch::new();
        self.store.put_desk_record(&mut batch, &record)?;
        let own_account = self.address.account.clone();
        self.queue_control(&mut batch, &own_account, id, content, now_ms)?;
        self.store.commit(batch)?;
        Ok(())
    }
}

/// Splits a handoff's entries, in order, into the fewest parts whose contents each fit
/// `MAX_BODY_LEN` (8.2): part 1 also carries the note. At least one part (an empty
/// conversation is one empty part); [`ClientError::HandoffTooLarge`] for a message that
/// does not fit a part on its own, or for more than `MAX_HANDOFF_PARTS` parts.
fn handoff_parts(
    customer: &AccountId,
    note: &str,
    entries: Vec<HandoffEntry>,
) -> Result<Vec<Vec<HandoffEntry>>, ClientError> {
    let mut w = sealpost_wire::Writer::new();
    customer.encode_into(&mut w);
    let base = HANDOFF_PART_OVERHEAD + w.into_bytes().len();
    let mut parts: Vec<Vec<HandoffEntry>> = vec![Vec::new()];
    let mut used = base + note.len();
    for e in entries {
        let size = HANDOFF_ENTRY_OVERHEAD + e.content.len();
        let full = parts.last().is_some_and(|p| {
            !p.is_empty() && (used + size > MAX_BODY_LEN || p.len() >= MAX_HANDOFF_ENTRIES)
        });
        if full {
            parts.push(Vec::new());
            used = base;
        }
        if used + size > MAX_BODY_LEN {
            return Err(ClientError::HandoffTooLarge);
        }
        used += size;
        if let Some(p) = parts.last_mut() {
            p.push(e);
        }
    }
    if parts.len() > usize::from(MAX_HANDOFF_PARTS) {
        return Err(ClientError::HandoffTooLarge);
    }
    Ok(parts)
}
