//! The outbox: queueing, preparing (encrypting) and settling messages, and refreshing a
//! recipient's devices (spec/client-store.md sections 7 and 10).

use super::*;

impl Engine {
    /// Puts a message into the outbox (and the history, as queued, with the processed tag
    /// of `(recipient, device 0, message id)`) in one batch.
    pub(crate) fn enqueue(
        &self,
        recipient: &AccountId,
        body: &MessageBody,
        now_ms: u64,
    ) -> Result<MessageId, ClientError> {
        let _g = self.lock()?;
        let message_id = MessageId::random();
        let content = encode_content(&message_id, body);
        let mut batch = Batch::new();
        let peer = DeviceAddress::new(recipient.clone(), DeviceId(0));
        // On a business, which of its devices answered (spec/business.md 8.3).
        let sender = self.own_business_list()?.map(|_| self.address.device);
        let history_seq = self.store.append_history_from(
            &mut batch,
            Direction::Outgoing,
            &peer,
            now_ms,
            MessageStatus::Queued,
            &content,
            sender,
        )?;
        // The tag a sent copy or a history bundle carrying this message would find: this
        // device's own message never comes back as a second history entry
        // (spec/client-store.md sections 6.1 and 6.2).
        self.store
            .mark_processed(&mut batch, &peer, &message_id, now_ms);
        let entry = OutboxEntry {
            seq: self.store.new_outbox_seq()?,
            message_id,
            recipient: recipient.clone(),
            history_seq,
            created_at: now_ms,
            content,
            envelopes: None,
            sender_seq: 0,
            target: None,
        };
        self.store.put_outbox(&mut batch, &entry);
        self.store.commit(batch)?;
        Ok(message_id)
    }

    /// Puts content as it is into the outbox, without a history entry (for tests that need
    /// content the SDK never sends on its own, e.g. a forged sent copy).
    #[cfg(feature = "hazmat")]
    pub(crate) fn enqueue_raw(
        &self,
        recipient: &AccountId,
        message_id: MessageId,
        content: Zeroizing<Vec<u8>>,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
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
        self.store.put_outbox(&mut batch, &entry);
        self.store.commit(batch)?;
        Ok(())
    }

    /// For tests: the first outbox entry.
    #[cfg(test)]
    pub(crate) fn outbox_head(&self) -> Result<Option<OutboxEntry>, ClientError> {
        Ok(self.store.outbox_head(1)?.into_iter().next())
    }

    /// The first `limit` outbox rows, decoded or with why they do not decode.
    pub(crate) fn outbox_scan(&self, limit: usize) -> Result<Vec<OutboxRow>, ClientError> {
        Ok(self.store.outbox_scan(limit)?)
    }

    /// Deletes an outbox row that does not open or decode (its message and history entry
    /// cannot be known).
    pub(crate) fn drop_outbox_row(&self, seq: u64) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        self.store.delete_outbox(&mut batch, seq);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Sets the status of an outgoing message's history entry in `batch`. A history entry
    /// that does not open or decode is left as it is: it must not keep the message in the
    /// outbox.
    pub(super) fn set_status(
        &self,
        batch: &mut Batch,
        entry: &OutboxEntry,
        status: MessageStatus,
    ) -> Result<(), ClientError> {
        match self
            .store
            .set_history_status(batch, entry.history_seq, &entry.message_id, status)
        {
            Err(e) if e.is_permanent() => {
                tracing::warn!(error = %e, "history entry of an outgoing message unreadable; status not updated");
                Ok(())
            }
            r => Ok(r?),
        }
    }

    pub(super) fn is_self(&self, account: &AccountId, device: DeviceId) -> bool {
        account == &self.address.account && device == self.address.device
    }

    /// Whether this device has a session it can send on with `address`. A legacy session
    /// (loaded from version-1 state) does not count: it cannot encrypt, so the device is
    /// treated as having no session and gets a new (version 2) handshake; its contact record
    /// and identity stay, so no safety-number change is reported.
    pub(super) fn has_usable_session(&self, address: &DeviceAddress) -> Result<bool, ClientError> {
        Ok(self
            .store
            .sessions(address)?
            .iter()
            .any(|(_, s)| !s.is_legacy()))
    }

    /// The devices of `account` this device has usable sessions with (never itself).
    pub(crate) fn recipient_devices(
        &self,
        account: &AccountId,
    ) -> Result<Vec<DeviceId>, ClientError> {
        let mut out = Vec::new();
        for c in self.store.contacts(account)? {
            if !self.is_self(account, c.address.device) && self.has_usable_session(&c.address)? {
                out.push(c.address.device);
            }
        }
        Ok(out)
    }

    /// Encrypts the entry's content for every device in `devices` that has no envelope yet,
    /// drops envelopes for devices not in `devices`, and commits the advanced sessions
    /// together with the envelopes **before** anything is sent (persist-before-send).
    pub(crate) fn prepare(
        &self,
        mut entry: OutboxEntry,
        devices: &[DeviceId],
    ) -> Result<OutboxEntry, ClientError> {
        let _g = self.lock()?;
        // Checked under the lock: a refresh may just have found a new identity.
        self.check_sendable(&entry.recipient)?;
        if let Some(fresh) = self.fresh_confirmation(&entry)? {
            entry.content = fresh;
        }
        let mut envelopes: Vec<OutgoingEnvelope> = entry
            .envelopes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| devices.contains(&DeviceId(e.device_id)))
            .collect();
        let mut batch = Batch::new();
        let mut sender = self.store.sender_state()?;
        let mut encrypted = false;
        for device in devices {
            if envelopes.iter().any(|e| e.device_id == device.0) {
                continue;
            }
            let address = DeviceAddress::new(entry.recipient.clone(), *device);
            // The newest session that can encrypt (legacy sessions cannot).
            let Some((seq, mut session)) = self
                .store
                .sessions(&address)?
                .into_iter()
                .find(|(_, s)| !s.is_legacy())
            else {
                return Err(ClientError::NoDevices);
            };
            if seq < sender.sendable_from {
                // Set aside by a rollback: `renew_sessions` must start a new one first.
                return Err(ClientError::SessionRenewalPending { device: *device });
            }
            encrypted = true;
            // A history part is for one device; the relay wants an envelope for every other
            // own device, and those get the placeholder (spec/client-store.md 6.2).
            let placeholder;
            let plaintext: &[u8] = match entry.target {
                Some(target) if target != *device => {
                    placeholder = crate::content::encode_history_part(&entry.message_id, &[]);
                    &placeholder
                }
                _ => &entry.content,
            };
            let message = session.encrypt(plaintext)?;
            self.store
                .put_session(&mut batch, &address, Some(seq), &session)?;
            envelopes.push(OutgoingEnvelope {
                device_id: device.0,
                envelope: message.encode(),
            });
        }
        envelopes.sort_by_key(|e| e.device_id);
        entry.envelopes = Some(envelopes);
        if encrypted {
            // Every Send whose envelopes were (re-)encrypted gets a new sequence number, in
            // the same batch as the sessions it advanced (spec/client-store.md section 9).
            entry.sender_seq = sender.allocate().ok_or(StoreError::Inconsistent(
                "sender sequence numbers exhausted",
            ))?;
            self.store.put_sender_state(&mut batch, &sender);
        }
        self.store.put_outbox(&mut batch, &entry);
        self.store.commit(batch)?;
        Ok(entry)
    }

    /// The relay accepted the entry: remove it from the outbox, mark it delivered and, when
    /// this account's own list names another device, queue the message's sent copy in the
    /// same batch (spec/client-store.md sections 6.1 and 10). A message whose history entry
    /// the user deleted while it was queued gets no copy (section 6.3). A sent copy, a sync
    /// content or a history part has no history entry: it only leaves the outbox. Returns
    /// whether a copy was queued.
    pub(crate) fn complete(&self, entry: &OutboxEntry, relay_ts: u64) -> Result<bool, ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        self.store.delete_outbox(&mut batch, entry.seq);
        let mut copied = false;
        if !is_internal(&entry.content) {
            self.set_status(&mut batch, entry, MessageStatus::Delivered { at: relay_ts })?;
            if self.store.has_history(entry.history_seq)? {
                copied = self.queue_sent_copy(&mut batch, entry, relay_ts)?;
            }
            // In the order the relay accepted them (spec/business.md 9.1).
            self.note_transcript(
                &mut batch,
                &entry.recipient,
                sealpost_wire::business::Side::Customer,
                self.address.device,
                &entry.content,
            )?;
        }
        self.store.commit(batch)?;
        Ok(copied)
    }

    /// Adds the sent copy of `entry` (delivered at `relay_ts`) to `batch`, addressed to this
    /// account, if the own list names a device other than this one, the recipient is another
    /// account and the copy fits the plaintext limit.
    fn queue_sent_copy(
        &self,
        batch: &mut Batch,
        entry: &OutboxEntry,
        relay_ts: u64,
    ) -> Result<bool, ClientError> {
        let own = &self.address.account;
        if &entry.recipient == own {
            return Ok(false);
        }
        if !self.has_other_own_devices()? {
            return Ok(false);
        }
        let copy_id = MessageId::random();
        let Some(content) = encode_sent_copy(
            &copy_id,
            &entry.recipient,
            entry.created_at,
            relay_ts,
            &entry.content,
        ) else {
            tracing::warn!(
                len = entry.content.len(),
                "message too large for a sent copy; other devices do not get it"
            );
            return Ok(false);
        };
        let copy = OutboxEntry {
            seq: self.store.new_outbox_seq()?,
            message_id: copy_id,
            recipient: own.clone(),
            history_seq: entry.history_seq,
            created_at: entry.created_at,
            content,
            envelopes: None,
            sender_seq: 0,
            target: None,
        };
        self.store.put_outbox(batch, &copy);
        Ok(true)
    }

    /// Gives up on the entry: remove it from the outbox, mark it failed (a sent copy, a sync
    /// content or a history part has no history entry of its own: it is only removed).
    pub(crate) fn fail(&self, entry: &OutboxEntry, now_ms: u64) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        self.store.delete_outbox(&mut batch, entry.seq);
        if !is_internal(&entry.content) {
            self.set_status(&mut batch, entry, MessageStatus::Failed { at: now_ms })?;
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// Devices of a `ListDevices` answer (minus this device) that have no contact with the
    /// same identity: these need a bundle.
    pub(crate) fn missing_devices(
        &self,
        account: &AccountId,
        listed: &[DeviceInfo],
    ) -> Result<Vec<u32>, ClientError> {
        let known = self.store.contacts(account)?;
        let mut missing = Vec::new();
        for d in listed {
            if self.is_self(account, DeviceId(d.device_id)) {
                continue;
            }
            let have = match known
                .iter()
                .find(|c| c.address.device.0 == d.device_id && c.identity.to_wire() == d.identity)
            {
                Some(c) => self.has_usable_session(&c.address)?,
                None => false,
            };
            if !have {
                missing.push(d.device_id);
            }
        }
        Ok(missing)
    }

    /// Applies what the relay said about an account's devices: with `listed`, forgets
    /// devices that are gone or whose identity changed; then starts a session from every
    /// bundle for a device without a session of the same identity. One batch. With
    /// `signed`, `listed` is the account's accepted signed list: its identities were
    /// authorised by the account key, so a new device gives no identity event (the list
    /// update reported it), and no bundle outside the list is used.
    pub(crate) fn apply_refresh(
        &self,
        account: &AccountId,
        listed: Option<&[DeviceInfo]>,
        bundles: &[PreKeyBundle],
        now_ms: u64,
        signed: bool,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        let _g = self.lock()?;
        let known = self.store.contacts(account)?;
        let mut batch = Batch::new();
        let mut remaining: Vec<&Contact> = known.iter().collect();
        if let Some(listed) = listed {
            remaining.retain(|c| {
                let keep = listed.iter().any(|d| {
                    d.device_id == c.address.device.0 && d.identity == c.identity.to_wire()
                });
                if !keep {
                    self.store.delete_contact(&mut batch, &c.address);
                    self.store.delete_sessions(&mut batch, &c.address);
                }
                keep
            });
        }
        let mut events = Vec::new();
        let mut rng = rand::rng();
        for bundle in bundles {
            let device = DeviceId(bundle.device_id);
            if self.is_self(account, device) {
                continue;
            }
            let address = DeviceAddress::new(account.clone(), device);
            if remaining
                .iter()
                .any(|c| c.address.device == device && c.identity.to_wire() == bundle.identity)
                && self.has_usable_session(&address)?
            {
                continue;
            }
            if let Some(listed) = listed
                && !listed
                    .iter()
                    .any(|d| d.device_id == bundle.device_id && d.identity == bundle.identity)
            {
                tracing::warn!(
                    device = bundle.device_id,
                    "bundle does not match the device list; skipped"
                );
                continue;
            }
            let verified = match VerifiedBundle::verify(bundle) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(device = bundle.device_id, error = %e, "invalid prekey bundle skipped");
                    continue;
                }
            };
            let addresses = SessionAddresses::new(self.address.clone(), address.clone());
            let session = match initiate(
                &mut rng,
                &self.identity,
                &addresses,
                &verified,
                self.session_config,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(device = bundle.device_id, error = %e, "cannot start a session; skipped");
                    continue;
                }
            };
            if signed {
                self.store.put_contact(
                    &mut batch,
                    &Contact {
                        address: address.clone(),
                        identity: *verified.identity(),
                        first_seen: now_ms,
                        changed_at: now_ms,
                        verification: Verification::Unverified,
                    },
                );
            } else if let Some(ev) =
                self.note_identity(&mut batch, &address, verified.identity(), &known, now_ms)?
            {
                events.push(ev);
            }
            self.store.delete_sessions(&mut batch, &address);
            self.store
                .put_session(&mut batch, &address, None, &session)?;
        }
        self.store.commit(batch)?;
        Ok(events)
    }

    // ---------------------------------------------------------------- prekeys
}
