//! A delivered envelope: decrypt, de-duplicate and commit it with everything it changed
//! (spec/client-store.md section 7).

use super::*;
use crate::event::DeviceInfo;

impl Engine {
    /// Decrypts a delivered envelope and commits session, prekeys, contact, history and the
    /// processed id in one batch (spec/client-store.md section 7).
    pub(crate) fn process_delivery(
        &self,
        d: &Delivery,
        now_ms: u64,
    ) -> Result<Processed, ClientError> {
        let _g = self.lock()?;
        let message_id = MessageId::from_bytes(d.message_id);
        if self.store.is_processed(&d.sender, &message_id)? {
            return Ok(Processed::Duplicate);
        }
        // An account with a signed list sends only from its listed devices, each with its
        // listed identity (spec/devices.md 8.2).
        // Its entry there is the message's author (name and role signed by the account key).
        let (listed_identity, key_holder, author) = match self.pinned_list(&d.sender.account)? {
            Some(list) => match list.device(d.sender.device.0) {
                Some(entry) => (
                    Some(entry.identity),
                    entry.role.holds_account_key(),
                    Some(DeviceInfo::of(entry)),
                ),
                None => return Ok(Processed::Unlisted),
            },
            None => (None, false, None),
        };
        let Ok(msg) = SessionMessage::decode(&d.envelope) else {
            return Ok(Processed::Rejected("envelope is not a session message"));
        };
        let mut sessions = self.store.sessions(&d.sender)?;
        let mut rng = rand::rng();
        let mut batch = Batch::new();
        // A session only ever receives from the address it is bound to (the handshake
        // authenticated it): a relay-claimed sender that differs is rejected, never
        // re-attributed. Sessions are stored per address, so this only trips on a store
        // that disagrees with its sessions.
        let bound_to_sender = |s: &Session| s.remote_address() == Some(&d.sender);
        // The existing session that decrypted (its index), or a new one from a handshake.
        let mut new_session: Option<Session> = None;
        // (index into `sessions`, or None for `new_session`; the plaintext)
        let found = match &msg {
            SessionMessage::PreKey(p) => {
                // Routing compares the exact base-key bytes (Session::matches); a re-encoded
                // base key finds no session and its handshake fails authentication.
                if let Some(i) = sessions.iter().position(|(_, s)| s.matches(p)) {
                    let Some((_, s)) = sessions.get_mut(i) else {
                        return Err(ClientError::Internal(
                            crate::error::InternalError::SessionIndex,
                        ));
                    };
                    if !bound_to_sender(s) {
                        return Ok(Processed::Rejected(
                            "claimed sender differs from the session's bound address",
                        ));
                    }
                    // Decryption is transactional: on failure the session is unchanged.
                    match s.decrypt(&mut rng, &msg) {
                        Ok(pt) => Some((Some(i), Zeroizing::new(pt))),
                        Err(_) => None,
                    }
                } else {
                    let Some(mut state) = self.store.prekeys()? else {
                        return Ok(Processed::Rejected("no prekeys to answer a handshake"));
                    };
                    // The relay-claimed sender is the expected sender: the handshake fails
                    // unless the initiator bound exactly this address.
                    let addresses = SessionAddresses::new(self.address.clone(), d.sender.clone());
                    match respond(
                        &mut rng,
                        &self.identity,
                        &addresses,
                        &mut state.keys,
                        p,
                        self.session_config,
                    ) {
                        Ok((s, pt)) => {
                            self.store.put_prekeys(&mut batch, &state);
                            new_session = Some(s);
                            Some((None, Zeroizing::new(pt)))
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "prekey message rejected");
                            None
                        }
                    }
                }
            }
            SessionMessage::Ratchet(_) => sessions
                .iter_mut()
                .enumerate()
                .filter(|(_, (_, s))| bound_to_sender(s))
                .find_map(|(i, (_, s))| {
                    s.decrypt(&mut rng, &msg)
                        .ok()
                        .map(|pt| (Some(i), Zeroizing::new(pt)))
                }),
        };
        let Some((index, plaintext)) = found else {
            return Ok(Processed::Rejected("no session decrypts the message"));
        };
        let session = match (index, &new_session) {
            (Some(i), _) => sessions.get(i).map(|(_, s)| s),
            (None, Some(s)) => Some(s),
            (None, None) => None,
        };
        let Some(session) = session else {
            return Err(ClientError::Internal(
                crate::error::InternalError::SessionIndex,
            ));
        };
        let Ok((inner_id, content)) = decode_any(&plaintext) else {
            return Ok(Processed::Rejected("content does not decode"));
        };
        if inner_id != message_id {
            return Ok(Processed::Rejected("message id does not match the content"));
        }
        // A sent copy or a sync content is accepted only from another device on this
        // account's own list (spec/client-store.md sections 6.1 and 6.3); the list check
        // above made `listed_identity`.
        if matches!(content, Content::SentCopy(_) | Content::Sync(_))
            && (d.sender.account != self.address.account || listed_identity.is_none())
        {
            return Ok(Processed::Rejected(
                "sent copy or sync from a device not on this account's own list",
            ));
        }
        // A history part (or its placeholder) is accepted only from this account's key
        // holder, as its own list names it (spec/client-store.md section 6.2).
        if matches!(
            content,
            Content::HistoryPart(_) | Content::HistoryPlaceholder
        ) && (d.sender.account != self.address.account || !key_holder)
        {
            return Ok(Processed::Rejected(
                "history part not from this account's key holder",
            ));
        }
        // A desk content only from another listed device of this account; a route only from
        // a listed device of another account; a transcript confirmation only from another
        // account (spec/business.md 7.3, 8.2, 9.2).
        let own = d.sender.account == self.address.account;
        let misplaced = match &content {
            Content::Desk(_) => !own || listed_identity.is_none(),
            Content::Route(_) => own || listed_identity.is_none(),
            Content::Transcript(_) => own,
            _ => false,
        };
        if misplaced {
            return Ok(Processed::Rejected(
                "business control content from a device that may not send it",
            ));
        }
        let identity = *session.remote_identity();
        if listed_identity.is_some_and(|l| l != identity.to_wire()) {
            return Ok(Processed::Rejected(
                "the sender's identity is not the one on its device list",
            ));
        }
        let mut events = Vec::new();
        if listed_identity.is_some() {
            // A device on the sender's pinned signed list, with its listed identity: the
            // account key authorised it and the list update reported it, so no identity
            // event (spec/devices.md 8.9), as when sending to it.
            match self.store.contact(&d.sender)? {
                Some(c) if c.identity == identity => {}
                known => self.store.put_contact(
                    &mut batch,
                    &Contact {
                        address: d.sender.clone(),
                        identity,
                        first_seen: known.map_or(now_ms, |c| c.first_seen),
                        changed_at: now_ms,
                        verification: Verification::Unverified,
                    },
                ),
            }
        } else {
            let known = self.store.contacts(&d.sender.account)?;
            if let Some(ev) =
                self.note_identity(&mut batch, &d.sender, &identity, &known, now_ms)?
            {
                events.push(ev);
            }
        }
        // A known device (same identity) replaced an established session: it lost or rolled
        // back its state (spec/client-store.md section 9).
        if index.is_none()
            && sessions
                .iter()
                .any(|(_, s)| !s.awaiting_reply() && s.remote_identity() == &identity)
        {
            events.push(ClientEvent::SessionReset {
                peer: d.sender.clone(),
            });
        }
        // The session that decrypted becomes (or stays) the newest, so replies use it; a
        // session set aside for sending by a rollback keeps its place (it must not send).
        let seq = match index.and_then(|i| sessions.get(i).map(|(seq, _)| (i, *seq))) {
            Some((0, seq)) => Some(seq),
            Some((_, seq)) if seq < self.store.sender_state()?.sendable_from => Some(seq),
            _ => None,
        };
        self.store
            .put_session(&mut batch, &d.sender, seq, session)?;
        if index.is_none() {
            self.store.prune_sessions(
                &mut batch,
                &d.sender,
                &sessions,
                MAX_SESSIONS_PER_DEVICE.saturating_sub(1),
            );
        }
        match content {
            Content::Message(body) => {
                self.store.append_incoming(
                    &mut batch,
                    &d.sender,
                    d.timestamp,
                    &plaintext,
                    author.as_ref(),
                )?;
                self.note_transcript(
                    &mut batch,
                    &d.sender.account,
                    sealpost_wire::business::Side::Business,
                    d.sender.device,
                    &plaintext,
                )?;
                events.push(ClientEvent::Message {
                    from: d.sender.clone(),
                    author,
                    identity,
                    body,
                    message_id,
                    timestamp: d.timestamp,
                });
            }
            Content::SentCopy(copy) => {
                if let Some(ev) = self.apply_sent_copy(&mut batch, d, copy)? {
                    events.push(ev);
                }
            }
            Content::HistoryPart(mut part) => {
                let event = self.apply_history_part(&mut batch, &part, d.timestamp, now_ms);
                super::history::wipe(&mut part.records);
                events.push(event?);
            }
            // The envelope of a part meant for another own device: nothing to apply.
            Content::HistoryPlaceholder => {}
            Content::Sync(items) => {
                events.extend(self.apply_sync(&mut batch, d.sender.device, items)?);
            }
            Content::Route(route) => {
                match self.accept_route(&mut batch, &d.sender, &route, now_ms)? {
                    Ok(evs) => events.extend(evs),
                    Err(reason) => return Ok(Processed::Rejected(reason)),
                }
            }
            Content::Desk(desk) => {
                match self.accept_desk(&mut batch, d.sender.device, desk, d.timestamp)? {
                    Ok(evs) => events.extend(evs),
                    Err(reason) => return Ok(Processed::Rejected(reason)),
                }
            }
            Content::Transcript(confirmation) => {
                match self.accept_confirmation(&mut batch, &d.sender, confirmation, d.timestamp)? {
                    Ok(evs) => events.extend(evs),
                    Err(reason) => return Ok(Processed::Rejected(reason)),
                }
            }
        }
        self.store
            .mark_processed(&mut batch, &d.sender, &message_id, d.timestamp);
        self.store.commit(batch)?;
        Ok(Processed::Accepted(events))
    }

    /// Adds an accepted sent copy to `batch`: an outgoing history entry with the
    /// recipient account (device 0), the original's times and content, status delivered,
    /// and the processed tag of `(recipient, device 0, original message id)` that keeps a
    /// second copy of the same message out (spec/client-store.md section 6.1). Returns the
    /// event, or `None` for a message already in the history.
    fn apply_sent_copy(
        &self,
        batch: &mut Batch,
        d: &Delivery,
        copy: SentCopy,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let peer = DeviceAddress::new(copy.recipient.clone(), DeviceId(0));
        if self.store.is_processed(&peer, &copy.message_id)? {
            return Ok(None);
        }
        // On a business, which of its devices answered (spec/business.md 8.3).
        let sender = self.own_business_list()?.map(|_| d.sender.device);
        self.store.append_history_from(
            batch,
            Direction::Outgoing,
            &peer,
            copy.queued_at,
            MessageStatus::Delivered {
                at: copy.delivered_at,
            },
            &copy.inner,
            sender,
        )?;
        self.note_transcript(
            batch,
            &copy.recipient,
            sealpost_wire::business::Side::Customer,
            d.sender.device,
            &copy.inner,
        )?;
        self.store
            .mark_processed(batch, &peer, &copy.message_id, d.timestamp);
        Ok(Some(ClientEvent::SentByOtherDevice {
            device: d.sender.device,
            to: copy.recipient,
            message_id: copy.message_id,
            body: copy.body,
            timestamp: copy.delivered_at,
        }))
    }

    // ---------------------------------------------------------------- sending
}
