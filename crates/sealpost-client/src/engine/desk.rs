//! Business conversations (spec/business.md 7.3, 8 and 9): on a customer, conversation
//! routes and the transcript it keeps and confirms; on a business's device, claiming,
//! transferring and resolving conversations, internal notes, handoffs and their check.

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
    /// How many messages it held.
    pub messages: usize,
    /// The check against the customer's confirmation; `None` while none has arrived.
    pub check: Option<HandoffCheck>,
}

impl Engine {
    // ------------------------------------------------------------ both sides

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

    // ------------------------------------------------------------ the customer

    /// Adds a message of the conversation with the business `business` to its transcript
    /// (9.1), when `business` is a business; a transcript that cannot take it (too many
    /// chains) is left as it is (logged: the messages of that device stay unconfirmed).
    pub(super) fn note_transcript(
        &self,
        batch: &mut Batch,
        business: &AccountId,
        side: Side,
        device: DeviceId,
        content: &[u8],
    ) -> Result<(), ClientError> {
        if business == &self.address.account || self.business_list(business)?.is_none() {
            return Ok(());
        }
        let mut t = self.store.transcript(business)?;
        if let Err(e) = t.append(side, device.0, content) {
            tracing::warn!(error = %e, "transcript chain not extended");
            return Ok(());
        }
        self.store.put_transcript(batch, business, &t)?;
        Ok(())
    }

    /// A route content from a device of a business (section 7.3): valid for this
    /// conversation after the route held, it replaces it and this device confirms its
    /// transcript to the new route (9.2). `Err(reason)` rejects the content.
    pub(super) fn accept_route(
        &self,
        batch: &mut Batch,
        sender: &DeviceAddress,
        message: &RouteMessage,
        now_ms: u64,
    ) -> Result<Result<Vec<ClientEvent>, &'static str>, ClientError> {
        let route = &message.route;
        let Some(list) = self.business_list(&sender.account)? else {
            return Ok(Err("route from an account that is not a business"));
        };
        if list.device(sender.device.0).is_none() {
            return Ok(Err("route from a device not on the business's list"));
        }
        let me = self.address.account.clone();
        let current = self.current_route(&list, &me, message.basis.as_ref())?;
        let Ok(offered) = VerifiedRoute::verify(route, &list, Some(&me), current.as_ref()) else {
            return Ok(Err("route not valid for this conversation"));
        };
        let held = self.conversation_route(&list, Some(&me))?;
        match offered.replaces(held.as_ref()) {
            Ok(true) => {}
            Ok(false) | Err(RouteError::RolledBack { .. }) => return Ok(Ok(Vec::new())),
            Err(_) => return Ok(Err("route refused by the version rule")),
        }
        let mut record = self.store.business_record(&sender.account)?;
        record.conversation_route = Some(route.clone());
        self.store
            .put_business_record(batch, &sender.account, &record);
        let transcript = self.store.transcript(&sender.account)?;
        let confirmation = TranscriptConfirmation {
            route_version: offered.route_version(),
            chains: transcript.heads(),
        };
        let id = MessageId::random();
        let content = encode_transcript(&id, &confirmation)
            .map_err(|_| ClientError::Internal(crate::error::InternalError::Encoding))?;
        self.queue_control(batch, &sender.account, id, content, now_ms)?;
        let routed_to = offered
            .devices()
            .iter()
            .filter_map(|d| list.device(*d))
            .map(DeviceInfo::of)
            .collect();
        Ok(Ok(vec![ClientEvent::RouteChanged {
            business: sender.account.clone(),
            routed_to,
        }]))
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

    /// A transcript confirmation about to be encrypted for the first time, with the chains
    /// as they are now (9.2): every message this device queued to the business before it
    /// has been accepted (the outbox sends in order per recipient), so its chain counts
    /// exactly them. `None` for any other entry, or one already encrypted.
    pub(super) fn fresh_confirmation(
        &self,
        entry: &OutboxEntry,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        if entry.envelopes.is_some() {
            return Ok(None);
        }
        let Ok((_, Content::Transcript(held))) = crate::content::decode_any(&entry.content) else {
            return Ok(None);
        };
        let confirmation = TranscriptConfirmation {
            route_version: held.route_version,
            chains: self.store.transcript(&entry.recipient)?.heads(),
        };
        Ok(Some(
            encode_transcript(&entry.message_id, &confirmation)
                .map_err(|_| ClientError::Internal(crate::error::InternalError::Encoding))?,
        ))
    }

    // ------------------------------------------------------------ the business

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
        if let Some((id, content)) = handoff_content {
            self.queue_control(&mut batch, &own_account, id, content, now_ms)?;
        }
        self.store.commit(batch)?;
        Ok(version)
    }

    /// The handoff content of the conversation with `customer` (8.3): every message of this
    /// device's history with a known sender that was not given up, oldest first.
    fn build_handoff(
        &self,
        customer: &AccountId,
        route_version: u64,
        note: &str,
        tamper: Option<&HandoffTamper>,
    ) -> Result<(MessageId, Zeroizing<Vec<u8>>), ClientError> {
        let mut entries = Vec::new();
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
            entries.push(HandoffEntry {
                side,
                device,
                timestamp: match e.status {
                    MessageStatus::Delivered { at } => at,
                    _ => e.timestamp,
                },
                content: encode_content(&e.message_id, &e.body),
            });
        }
        // Only the hazmat feature's tests pass one: a device that alters what it hands on.
        if let Some(tamper) = tamper {
            tamper(&mut entries);
        }
        let id = MessageId::random();
        let content = Desk::Handoff {
            customer: customer.clone(),
            route_version,
            note: note.to_owned(),
            entries,
        }
        .encode(&id)
        .map_err(|e| match e {
            sealpost_wire::DecodeError::TooLong { .. }
            | sealpost_wire::DecodeError::TooMany { .. } => ClientError::HandoffTooLarge,
            _ => ClientError::NoteRefused,
        })?;
        Ok((id, content))
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

    /// A desk content from another device of this business (8.2). `Err(reason)` rejects it.
    pub(super) fn accept_desk(
        &self,
        batch: &mut Batch,
        sender: DeviceId,
        desk: Desk,
        timestamp: u64,
    ) -> Result<Result<Vec<ClientEvent>, &'static str>, ClientError> {
        let Some(list) = self.own_business_list()? else {
            return Ok(Err("desk content on an account that is not a business"));
        };
        let customer = desk.customer().clone();
        if customer == self.address.account {
            return Ok(Err("desk content about this account"));
        }
        let mut record = self
            .store
            .desk_record(&customer)?
            .unwrap_or_else(|| DeskRecord::new(customer.clone()));
        let mut events = Vec::new();
        match desk {
            Desk::Assign {
                state,
                route: message,
                ..
            } => {
                let current = self.current_route(&list, &customer, message.basis.as_ref())?;
                let route = message.route;
                let Ok(offered) =
                    VerifiedRoute::verify(&route, &list, Some(&customer), current.as_ref())
                else {
                    return Ok(Err(
                        "assignment with a route not valid for the conversation",
                    ));
                };
                let held = record
                    .route
                    .as_ref()
                    .and_then(|r| VerifiedRoute::verify_held(r, &list, Some(&customer)).ok());
                match offered.replaces(held.as_ref()) {
                    Ok(true) => {}
                    Ok(false) | Err(RouteError::RolledBack { .. }) => return Ok(Ok(events)),
                    Err(_) => return Ok(Err("assignment refused by the version rule")),
                }
                record.route = Some(route);
                record.state = state;
                events.push(ClientEvent::ConversationAssigned {
                    customer: customer.clone(),
                    by: sender,
                    assigned_to: listed(&list, offered.devices()),
                    resolved: state == ConversationState::Resolved,
                });
            }
            Desk::Handoff {
                route_version,
                note,
                entries,
                ..
            } => {
                let Some(route) = record
                    .route
                    .as_ref()
                    .and_then(|r| VerifiedRoute::verify_held(r, &list, Some(&customer)).ok())
                    .filter(|r| r.route_version() == route_version)
                else {
                    return Ok(Err("handoff for a route this device does not hold"));
                };
                let by_signer = match route.signed().body.signer {
                    RouteSigner::Device(d) => d == sender.0,
                    RouteSigner::AccountKey => {
                        list.key_holder().is_some_and(|h| h.device_id == sender.0)
                    }
                };
                if !by_signer {
                    return Ok(Err("handoff from a device that did not sign the route"));
                }
                let mut log = TranscriptLog::new();
                for e in &entries {
                    if log.push(e.side, e.device, &e.content).is_err() {
                        return Ok(Err("handoff with too many transcript chains"));
                    }
                }
                for e in &entries {
                    self.import_entry(batch, &customer, e)?;
                }
                let messages = entries.len();
                record.handoff = Some(StoredHandoff {
                    from: sender.0,
                    route_version,
                    at: timestamp,
                    note: note.clone(),
                    log,
                });
                events.push(ClientEvent::HandoffReceived {
                    customer: customer.clone(),
                    from: sender,
                    note,
                    messages,
                });
                if let Some(check) = check_record(&record) {
                    events.push(ClientEvent::HandoffChecked {
                        customer: customer.clone(),
                        check,
                    });
                }
            }
            Desk::Note { text, .. } => {
                push_note(
                    &mut record,
                    StoredNote {
                        device: sender.0,
                        at: timestamp,
                        text: text.clone(),
                    },
                );
                events.push(ClientEvent::InternalNote {
                    customer: customer.clone(),
                    from: sender,
                    text,
                });
            }
        }
        self.store.put_desk_record(batch, &record)?;
        Ok(Ok(events))
    }

    /// Adds one handoff message to the history unless it is there already (its processed
    /// tag): a customer's message as incoming from its device, a business device's as
    /// outgoing and delivered, with that device as its sender.
    fn import_entry(
        &self,
        batch: &mut Batch,
        customer: &AccountId,
        e: &HandoffEntry,
    ) -> Result<(), ClientError> {
        let Ok((message_id, _)) = crate::content::decode_content(&e.content) else {
            return Ok(());
        };
        match e.side {
            Side::Customer => {
                let peer = DeviceAddress::new(customer.clone(), DeviceId(e.device));
                if self.store.is_processed(&peer, &message_id)? {
                    return Ok(());
                }
                self.store
                    .append_incoming(batch, &peer, e.timestamp, &e.content, None)?;
                self.store
                    .mark_processed(batch, &peer, &message_id, e.timestamp);
            }
            Side::Business => {
                let peer = DeviceAddress::new(customer.clone(), DeviceId(0));
                if self.store.is_processed(&peer, &message_id)? {
                    return Ok(());
                }
                self.store.append_history_from(
                    batch,
                    Direction::Outgoing,
                    &peer,
                    e.timestamp,
                    MessageStatus::Delivered { at: e.timestamp },
                    &e.content,
                    Some(DeviceId(e.device)),
                )?;
                self.store
                    .mark_processed(batch, &peer, &message_id, e.timestamp);
            }
        }
        Ok(())
    }

    /// A customer's transcript confirmation (9.2), on a business's device: kept (the newest
    /// per customer device) and checked against the handoff of the same route.
    pub(super) fn accept_confirmation(
        &self,
        batch: &mut Batch,
        sender: &DeviceAddress,
        confirmation: TranscriptConfirmation,
        timestamp: u64,
    ) -> Result<Result<Vec<ClientEvent>, &'static str>, ClientError> {
        if self.own_business_list()?.is_none() {
            return Ok(Err(
                "transcript confirmation on an account that is not a business",
            ));
        }
        if sender.account == self.address.account {
            return Ok(Err("transcript confirmation from this account"));
        }
        let mut record = self
            .store
            .desk_record(&sender.account)?
            .unwrap_or_else(|| DeskRecord::new(sender.account.clone()));
        record.confirmations.retain(|c| c.device != sender.device.0);
        if record.confirmations.len() >= crate::store::MAX_DESK_CONFIRMATIONS {
            record.confirmations.remove(0);
        }
        record.confirmations.push(StoredConfirmation {
            device: sender.device.0,
            at: timestamp,
            confirmation,
        });
        let mut events = Vec::new();
        if let Some(check) = check_record(&record) {
            events.push(ClientEvent::HandoffChecked {
                customer: sender.account.clone(),
                check,
            });
        }
        self.store.put_desk_record(batch, &record)?;
        Ok(Ok(events))
    }

    /// The conversations this business device knows, with their state: those it has a desk
    /// record of (routed, noted, handed off, confirmed), then the other accounts of its
    /// recent history (unassigned: they follow the default route), newest first.
    pub(crate) fn desk_conversations(&self) -> Result<Vec<DeskConversation>, ClientError> {
        let list = self.own_business_list()?.ok_or(ClientError::NotBusiness)?;
        let mut out = Vec::new();
        for record in self.store.desk_records()? {
            out.push(self.view(&list, &record));
        }
        for (account, _) in self.store.recent_accounts(usize::MAX)? {
            if account != self.address.account && !out.iter().any(|c| c.customer == account) {
                out.push(self.view(&list, &DeskRecord::new(account)));
            }
        }
        Ok(out)
    }

    /// One conversation's state on this business device (an empty one if unknown).
    pub(crate) fn desk_conversation(
        &self,
        customer: &AccountId,
    ) -> Result<DeskConversation, ClientError> {
        let list = self.own_business_list()?.ok_or(ClientError::NotBusiness)?;
        let record = self
            .store
            .desk_record(customer)?
            .unwrap_or_else(|| DeskRecord::new(customer.clone()));
        Ok(self.view(&list, &record))
    }

    fn view(&self, list: &VerifiedDeviceList, record: &DeskRecord) -> DeskConversation {
        let route = record
            .route
            .as_ref()
            .and_then(|r| VerifiedRoute::verify_held(r, list, Some(&record.customer)).ok());
        let assigned_to = route
            .as_ref()
            .map(|r| listed(list, r.devices()))
            .unwrap_or_default();
        DeskConversation {
            customer: record.customer.clone(),
            resolved: record.state == ConversationState::Resolved,
            mine: assigned_to.contains(&self.address.device),
            assigned_to,
            notes: record
                .notes
                .iter()
                .map(|n| DeskNote {
                    from: DeviceId(n.device),
                    at: n.at,
                    text: n.text.clone(),
                })
                .collect(),
            handoff: record.handoff.as_ref().map(|h| HandoffInfo {
                from: DeviceId(h.from),
                note: h.note.clone(),
                messages: h.log.len(),
                check: check_record(record),
            }),
        }
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

/// The check of the record's handoff against the confirmations of its route's version: the
/// worst of them (a mismatch, then an incomplete handoff, then verified); `None` without a
/// handoff or such a confirmation.
fn check_record(record: &DeskRecord) -> Option<HandoffCheck> {
    let handoff = record.handoff.as_ref()?;
    let mut worst: Option<HandoffCheck> = None;
    for c in &record.confirmations {
        if c.confirmation.route_version != handoff.route_version {
            continue;
        }
        let check = handoff.log.check(&c.confirmation, c.device);
        let rank = |c: &HandoffCheck| match c {
            HandoffCheck::Mismatch { .. } => 2,
            HandoffCheck::Incomplete { .. } => 1,
            _ => 0,
        };
        if worst.as_ref().is_none_or(|w| rank(&check) > rank(w)) {
            worst = Some(check);
        }
    }
    worst
}
