//! Business conversations (spec/business.md 7.3, 8 and 9). This module holds what both
//! sides share (whom a message of a business conversation goes to, the route a new route is
//! checked after, queueing control contents); the customer's side (conversation routes, the
//! transcript it keeps and confirms) is in `customer`; the business's actions (claim,
//! transfer, resolve, notes) in `actions`; what a business device receives (assignments,
//! handoffs, notes, confirmations, and the views it answers with) in `inbound`.

mod actions;
mod customer;
mod inbound;

use super::*;
use crate::desk::{Desk, HandoffEntry, HandoffTamper, encode_route, encode_transcript};
use crate::event::DeviceInfo;
use crate::store::{DeskRecord, StoredConfirmation, StoredHandoff, StoredNote};
use sealpost_devices::{
    HandoffCheck, RouteError, TranscriptLog, VerifiedDeviceList, VerifiedRoute, route_targets,
    sign_route_as_device,
};
use sealpost_wire::business::{
    ConversationState, DESK_ASSIGN, RouteBody, RouteMessage, RouteSigner, Side, SignedRoute,
    TranscriptConfirmation,
};
use sealpost_wire::devices::RoleFamily;

/// A customer conversation as a business's device sees it (spec/business.md 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeskConversation {
    /// The customer.
    pub customer: AccountId,
    /// Whether it is resolved.
    pub resolved: bool,
    /// The devices its conversation route names that the list names; empty when it has
    /// none (it follows the default route: unassigned).
    pub assigned_to: Vec<DeviceId>,
    /// Whether this device is one of them.
    pub mine: bool,
    /// Internal notes, oldest first.
    pub notes: Vec<DeskNote>,
    /// The last handoff this device received, and its check.
    pub handoff: Option<HandoffInfo>,
}

/// An internal note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeskNote {
    /// The device that wrote it.
    pub from: DeviceId,
    /// When (Unix ms).
    pub at: u64,
    /// The note.
    pub text: String,
}

/// A handoff this device received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffInfo {
    /// The device that handed the conversation on.
    pub from: DeviceId,
    /// Its note.
    pub note: String,
    /// How many messages it held (so far, while parts are missing).
    pub messages: usize,
    /// Whether every part of it arrived (spec/business.md 8.2); it is checked only then.
    pub complete: bool,
    /// The check against the customer's confirmation; `None` while none has arrived.
    pub check: Option<HandoffCheck>,
}

impl Engine {
    /// Whether `account` has a pinned list of the business family.
    fn business_list(
        &self,
        account: &AccountId,
    ) -> Result<Option<VerifiedDeviceList>, ClientError> {
        Ok(self
            .pinned_list(account)?
            .filter(|l| l.family() == RoleFamily::Business))
    }

    /// Whether this device's own account is a business.
    pub(crate) fn own_business_list(&self) -> Result<Option<VerifiedDeviceList>, ClientError> {
        Ok(self
            .own_devices()?
            .map(|o| o.list)
            .filter(|l| l.family() == RoleFamily::Business))
    }

    /// Section 7.3: the devices of the business `list` a message in the conversation with
    /// `customer` goes to (the conversation's route if it holds one, else the default
    /// route, plus the key holder). On a customer, `customer` is this account; on the
    /// business's own device, the customer of the conversation (`None`: the default route
    /// only).
    pub(crate) fn business_targets(
        &self,
        list: &VerifiedDeviceList,
        customer: Option<&AccountId>,
    ) -> Result<Vec<DeviceId>, ClientError> {
        let record = self.store.business_record(list.account())?;
        let default = record
            .default_route
            .as_ref()
            .and_then(|r| VerifiedRoute::verify(r, list, None, None).ok());
        let conversation = self.conversation_route(list, customer)?;
        Ok(route_targets(list, conversation.as_ref(), default.as_ref())
            .into_iter()
            .map(DeviceId)
            .collect())
    }

    /// The conversation route held for `customer` with the business of `list`, verified
    /// again against `list`.
    fn conversation_route(
        &self,
        list: &VerifiedDeviceList,
        customer: Option<&AccountId>,
    ) -> Result<Option<VerifiedRoute>, ClientError> {
        let Some(customer) = customer else {
            return Ok(None);
        };
        let held = if list.account() == &self.address.account {
            self.store.desk_record(customer)?.and_then(|r| r.route)
        } else {
            self.store
                .business_record(list.account())?
                .conversation_route
        };
        Ok(held.and_then(|r| VerifiedRoute::verify_held(&r, list, Some(customer)).ok()))
    }

    /// The route a new conversation route must be valid after (7.2 rule 3, 8.2): the
    /// conversation's own route, or the default route, or the `basis` the new route came
    /// with when it is newer than what this device holds (a reader that missed a route, or
    /// holds an older default route, can still check the new one; a basis older than the
    /// route held is not used).
    fn current_route(
        &self,
        list: &VerifiedDeviceList,
        customer: &AccountId,
        basis: Option<&SignedRoute>,
    ) -> Result<Option<VerifiedRoute>, ClientError> {
        let held = self.conversation_route(list, Some(customer))?;
        let default = self
            .store
            .business_record(list.account())?
            .default_route
            .and_then(|r| VerifiedRoute::verify(&r, list, None, None).ok());
        let basis = basis.and_then(|b| match &b.body.customer {
            None => VerifiedRoute::verify(b, list, None, None).ok(),
            Some(c) if c == customer => VerifiedRoute::verify_held(b, list, Some(customer)).ok(),
            Some(_) => None,
        });
        let Some(basis) = basis else {
            return Ok(held.or(default));
        };
        let newer = |over: Option<&VerifiedRoute>| basis.replaces(over).is_ok();
        Ok(match (basis.signed().body.customer.is_some(), held) {
            (true, held) if newer(held.as_ref()) => Some(basis),
            (true, held) => held.or(default),
            (false, Some(held)) => Some(held),
            (false, None) if newer(default.as_ref()) => Some(basis),
            (false, None) => default,
        })
    }

    /// Queues a control content (route, desk, transcript) to `recipient` in `batch`: no
    /// history entry, no event on delivery.
    fn queue_control(
        &self,
        batch: &mut Batch,
        recipient: &AccountId,
        message_id: MessageId,
        content: Zeroizing<Vec<u8>>,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let entry = OutboxEntry {
            seq: self.store.new_outbox_seq()?,
            message_id,
            recipient: recipient.clone(),
            history_seq: 0,
            created_at: now_ms,
            content,
            envelopes: None,
            sender_seq: 0,
            target: None,
        };
        self.store.put_outbox(batch, &entry);
        Ok(())
    }

    /// The devices a desk content or a sent copy from this business device goes to (8.2,
    /// 7.4): an assignment to every other listed device; a handoff or a note, and a sent
    /// copy, to the conversation's devices and the key holder; `None` for other contents.
    pub(crate) fn own_control_targets(
        &self,
        list: &VerifiedDeviceList,
        content: &[u8],
    ) -> Result<Option<Vec<DeviceId>>, ClientError> {
        let customer = if let Some((action, customer)) = crate::desk::desk_target(content) {
            if action == DESK_ASSIGN {
                return Ok(Some(
                    list.entries()
                        .iter()
                        .map(|e| DeviceId(e.device_id))
                        .filter(|d| *d != self.address.device)
                        .collect(),
                ));
            }
            customer
        } else if let Ok((_, Content::SentCopy(copy))) = crate::content::decode_any(content) {
            copy.recipient
        } else {
            return Ok(None);
        };
        let mut targets = self.business_targets(list, Some(&customer))?;
        targets.retain(|d| *d != self.address.device);
        Ok(Some(targets))
    }
}

fn listed(list: &VerifiedDeviceList, devices: &[u32]) -> Vec<DeviceId> {
    devices
        .iter()
        .filter(|d| list.device(**d).is_some())
        .map(|d| DeviceId(*d))
        .collect()
}

fn push_note(record: &mut DeskRecord, note: StoredNote) {
    if record.notes.len() >= crate::store::MAX_DESK_NOTES {
        record.notes.remove(0);
    }
    record.notes.push(note);
}
