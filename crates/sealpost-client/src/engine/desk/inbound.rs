//! What a business device receives about its conversations (spec/business.md 8.2, 8.3,
//! 9.3): assignments, handoffs, notes and customers' confirmations, and the views of the
//! conversations it answers with.

use super::*;

impl Engine {
    /// A desk content from another device of this business (8.2). `Err(reason)` rejects it.
    pub(in crate::engine) fn accept_desk(
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
                part,
                parts,
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
                // Part 1 starts the handoff (replacing any earlier one); each later part
                // continues the one in progress from the same device for the same route,
                // in order (8.2 "Receiving").
                let mut handoff = if part == 1 {
                    StoredHandoff {
                        from: sender.0,
                        route_version,
                        parts,
                        received: 0,
                        at: timestamp,
                        note,
                        log: TranscriptLog::new(),
                    }
                } else {
                    match record.handoff.take() {
                        Some(h)
                            if h.from == sender.0
                                && h.route_version == route_version
                                && h.parts == parts
                                && h.received.checked_add(1) == Some(part) =>
                        {
                            h
                        }
                        _ => return Ok(Err("handoff part out of order")),
                    }
                };
                for e in &entries {
                    if handoff.log.push(e.side, e.device, &e.content).is_err() {
                        return Ok(Err("handoff with too many transcript chains"));
                    }
                }
                for e in &entries {
                    self.import_entry(batch, &customer, e)?;
                }
                handoff.received = part;
                let complete = handoff.complete();
                let (note, messages) = (handoff.note.clone(), handoff.log.len());
                record.handoff = Some(handoff);
                if complete {
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
    pub(in crate::engine) fn accept_confirmation(
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
                complete: h.complete(),
                check: check_record(record),
            }),
        }
    }
}

/// The check of the record's handoff against the confirmations of its route's version: the
/// worst of them (a mismatch, then an incomplete handoff, then verified); `None` without a
/// handoff whose every part arrived, or without such a confirmation.
fn check_record(record: &DeskRecord) -> Option<HandoffCheck> {
    let handoff = record.handoff.as_ref().filter(|h| h.complete())?;
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
