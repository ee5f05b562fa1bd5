//! The synchronous core of the client: every state change (sessions, prekeys, contacts,
//! history, outbox, processed ids) is computed here and committed to the store in one
//! atomic batch. No network I/O; the async layer in `client/` calls these functions from
//! blocking threads and does the talking.
//!
//! All functions that read-modify-write state hold `lock`, so the receive path, the send
//! path and prekey maintenance never interleave on the same records.

use crate::content::{MessageBody, MessageId, decode_content, encode_content};
use crate::error::ClientError;
use crate::error::StoreError;
use crate::event::ClientEvent;
use crate::store::{
    AccountRecord, Batch, Contact, Direction, MAX_SESSIONS_PER_DEVICE, MessageStatus, OutboxEntry,
    OutboxRow, RetiredKey, RetiredKind, Store, Verification,
};
use sealpost_crypto::Zeroizing;
use sealpost_session::{
    IdentityKey, IdentityKeyPair, KemPreKeyKind, SafetyNumber, Session, SessionAddresses,
    SessionConfig, SessionMessage, VerifiedBundle, initiate, respond,
};
use sealpost_wire::relay::{
    Delivery, DeviceInfo, MAX_KEM_PER_UPLOAD, MAX_ONE_TIME_PER_UPLOAD, OutgoingEnvelope,
    PreKeyUpload,
};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, PreKeyBundle};
use std::sync::{Mutex, MutexGuard};

mod rollback;

/// One-time X25519 prekeys the client keeps published.
pub const ONE_TIME_PREKEY_TARGET: u32 = 100;
/// One-time ML-KEM prekeys the client keeps published.
pub const KEM_PREKEY_TARGET: u32 = 20;
/// Below this many one-time X25519 prekeys on the relay, the client tops up
/// (the relay's `PREKEY_LOW_WATERMARK`).
pub const ONE_TIME_PREKEY_LOW: u32 = 20;
/// Below this many one-time KEM prekeys on the relay, the client tops up.
pub const KEM_PREKEY_LOW: u32 = 5;
/// The signed prekey and the last-resort KEM prekey are replaced after this long (seconds).
pub const PREKEY_ROTATION_SECS: u64 = 7 * 24 * 3600;
/// A replaced signed or last-resort prekey is deleted this long after its replacement
/// (seconds): the relay's mailbox TTL (30 days) plus a day, so every handshake that may
/// still be queued can complete.
pub const RETIRED_PREKEY_RETENTION_SECS: u64 = 31 * 24 * 3600;
/// Most retired prekeys kept; beyond this the oldest are deleted early.
pub const MAX_RETIRED_PREKEYS: usize = 32;

/// What happened to one delivered envelope.
#[derive(Debug)]
pub(crate) enum Processed {
    /// Already processed earlier (at-least-once redelivery): acknowledge only.
    Duplicate,
    /// Decrypted and committed; emit these events, then acknowledge.
    Accepted(Vec<ClientEvent>),
    /// Cannot be decrypted or is malformed: acknowledge and report.
    Rejected(&'static str),
}

pub(crate) struct Engine {
    pub(crate) store: Store,
    pub(crate) identity: IdentityKeyPair,
    pub(crate) address: DeviceAddress,
    session_config: SessionConfig,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        store: Store,
        account: &AccountRecord,
        session_config: SessionConfig,
    ) -> Result<Self, ClientError> {
        let device = account.device.ok_or(ClientError::NotRegistered)?;
        Ok(Self {
            store,
            identity: account.identity.clone(),
            address: DeviceAddress::new(account.account.clone(), device),
            session_config,
            lock: Mutex::new(()),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, ()>, ClientError> {
        self.lock
            .lock()
            .map_err(|_| ClientError::Internal(crate::error::InternalError::LockPoisoned))
    }

    /// Records the identity of a device; returns an event if it differs from the identity
    /// stored for that device, or if the device is new to an account whose other known
    /// identities (`known`, read before this batch) do not include it: `SafetyNumberChanged`
    /// for an unverified account, `VerifiedIdentityChanged` for a verified one (an account
    /// with a device in `known` that is verified or changed since verification), whose new
    /// identity then holds sending until approved (spec/client-store.md section 11).
    fn note_identity(
        &self,
        batch: &mut Batch,
        address: &DeviceAddress,
        identity: &IdentityKey,
        known: &[Contact],
        now_ms: u64,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let verified_account = known
            .iter()
            .any(|c| c.verification != Verification::Unverified);
        let (verification, event) = if verified_account {
            (
                Verification::ChangedSinceVerified,
                ClientEvent::VerifiedIdentityChanged {
                    account: address.account.clone(),
                    device: address.device,
                },
            )
        } else {
            (
                Verification::Unverified,
                ClientEvent::SafetyNumberChanged {
                    account: address.account.clone(),
                    device: address.device,
                },
            )
        };
        match self.store.contact(address)? {
            Some(c) if &c.identity == identity => Ok(None),
            Some(c) => {
                self.store.put_contact(
                    batch,
                    &Contact {
                        address: address.clone(),
                        identity: *identity,
                        first_seen: c.first_seen,
                        changed_at: now_ms,
                        verification,
                    },
                );
                Ok(Some(event))
            }
            None => {
                let new_to_known_account =
                    !known.is_empty() && !known.iter().any(|c| &c.identity == identity);
                // A device of a verified account with an identity the user verified
                // elsewhere (the same identity on another device id) stays verified.
                let verification = match known.iter().find(|c| &c.identity == identity) {
                    Some(c) => c.verification,
                    None => verification,
                };
                self.store.put_contact(
                    batch,
                    &Contact {
                        address: address.clone(),
                        identity: *identity,
                        first_seen: now_ms,
                        changed_at: now_ms,
                        verification,
                    },
                );
                Ok(new_to_known_account.then_some(event))
            }
        }
    }

    // ---------------------------------------------------------------- verification

    /// Whether sending to `account` is held: a device of the verified account has an
    /// identity the user has not approved.
    fn held(&self, account: &AccountId) -> Result<bool, ClientError> {
        Ok(self
            .store
            .contacts(account)?
            .iter()
            .any(|c| c.verification == Verification::ChangedSinceVerified))
    }

    /// Fails with [`ClientError::UnapprovedIdentity`] if sending to `account` is held.
    pub(crate) fn check_sendable(&self, account: &AccountId) -> Result<(), ClientError> {
        if self.held(account)? {
            return Err(ClientError::UnapprovedIdentity);
        }
        Ok(())
    }

    /// The safety number with a known device.
    pub(crate) fn safety_number(
        &self,
        address: &DeviceAddress,
    ) -> Result<(Contact, SafetyNumber), ClientError> {
        let contact = self
            .store
            .contact(address)?
            .ok_or(ClientError::UnknownContact)?;
        let number = SafetyNumber::new(
            &self.identity.public(),
            &self.address.account,
            &contact.identity,
            &address.account,
        );
        Ok((contact, number))
    }

    /// Marks a device verified if `digits` (the 60 digits, spaces allowed) is its current
    /// safety number. Verifying a changed identity also approves it.
    pub(crate) fn mark_verified(
        &self,
        address: &DeviceAddress,
        digits: &str,
    ) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let (mut contact, number) = self.safety_number(address)?;
        let given: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
        if given != number.digits() {
            return Err(ClientError::SafetyNumberMismatch);
        }
        contact.verification = Verification::Verified;
        let mut batch = Batch::new();
        self.store.put_contact(&mut batch, &contact);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Accepts the changed identities of a verified account without verifying them: they
    /// become unverified and sending resumes. Returns how many were approved.
    pub(crate) fn approve_identity(&self, account: &AccountId) -> Result<usize, ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let mut approved = 0;
        for mut c in self.store.contacts(account)? {
            if c.verification == Verification::ChangedSinceVerified {
                c.verification = Verification::Unverified;
                self.store.put_contact(&mut batch, &c);
                approved += 1;
            }
        }
        self.store.commit(batch)?;
        Ok(approved)
    }

    // ---------------------------------------------------------------- receiving

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
        let Ok((inner_id, body)) = decode_content(&plaintext) else {
            return Ok(Processed::Rejected("content does not decode"));
        };
        if inner_id != message_id {
            return Ok(Processed::Rejected("message id does not match the content"));
        }
        let identity = *session.remote_identity();
        let known = self.store.contacts(&d.sender.account)?;
        let mut events = Vec::new();
        if let Some(ev) = self.note_identity(&mut batch, &d.sender, &identity, &known, now_ms)? {
            events.push(ev);
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
        self.store.append_history(
            &mut batch,
            Direction::Incoming,
            &d.sender,
            d.timestamp,
            MessageStatus::Received,
            &plaintext,
        )?;
        self.store
            .mark_processed(&mut batch, &d.sender, &message_id, d.timestamp);
        self.store.commit(batch)?;
        events.push(ClientEvent::Message {
            from: d.sender.clone(),
            identity,
            body,
            message_id,
            timestamp: d.timestamp,
        });
        Ok(Processed::Accepted(events))
    }

    // ---------------------------------------------------------------- sending

    /// Puts a message into the outbox (and the history, as queued) in one batch.
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
        let history_seq = self.store.append_history(
            &mut batch,
            Direction::Outgoing,
            &DeviceAddress::new(recipient.clone(), DeviceId(0)),
            now_ms,
            MessageStatus::Queued,
            &content,
        )?;
        let entry = OutboxEntry {
            seq: self.store.new_outbox_seq()?,
            message_id,
            recipient: recipient.clone(),
            history_seq,
            created_at: now_ms,
            content,
            envelopes: None,
            sender_seq: 0,
        };
        self.store.put_outbox(&mut batch, &entry);
        self.store.commit(batch)?;
        Ok(message_id)
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
    fn set_status(
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

    fn is_self(&self, account: &AccountId, device: DeviceId) -> bool {
        account == &self.address.account && device == self.address.device
    }

    /// Whether this device has a session it can send on with `address`. A legacy session
    /// (loaded from version-1 state) does not count: it cannot encrypt, so the device is
    /// treated as having no session and gets a new (version 2) handshake; its contact record
    /// and identity stay, so no safety-number change is reported.
    fn has_usable_session(&self, address: &DeviceAddress) -> Result<bool, ClientError> {
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
            let message = session.encrypt(&entry.content)?;
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

    /// The relay accepted the entry: remove it from the outbox, mark it delivered.
    pub(crate) fn complete(&self, entry: &OutboxEntry, relay_ts: u64) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        self.store.delete_outbox(&mut batch, entry.seq);
        self.set_status(&mut batch, entry, MessageStatus::Delivered { at: relay_ts })?;
        self.store.commit(batch)?;
        Ok(())
    }

    /// Gives up on the entry: remove it from the outbox, mark it failed.
    pub(crate) fn fail(&self, entry: &OutboxEntry, now_ms: u64) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        self.store.delete_outbox(&mut batch, entry.seq);
        self.set_status(&mut batch, entry, MessageStatus::Failed { at: now_ms })?;
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
    /// bundle for a device without a session of the same identity. One batch.
    pub(crate) fn apply_refresh(
        &self,
        account: &AccountId,
        listed: Option<&[DeviceInfo]>,
        bundles: &[PreKeyBundle],
        now_ms: u64,
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
            if let Some(ev) =
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

    /// Decides what to upload: a pending (unconfirmed) upload first; otherwise a new signed
    /// prekey and last-resort KEM prekey when missing or due for rotation, and one-time keys
    /// when the relay's counts are below the low watermarks. The new keys and the upload are
    /// persisted before returning, so a crash cannot lose keys the relay may serve.
    pub(crate) fn plan_prekeys(
        &self,
        counts: Option<(u32, u32)>,
        now_s: u64,
    ) -> Result<Option<PreKeyUpload>, ClientError> {
        let _g = self.lock()?;
        let mut state = self.store.prekeys()?.unwrap_or_default();
        if let Some(p) = &state.pending {
            return Ok(Some(p.clone()));
        }
        let mut changed = false;
        // Delete retired keys whose grace period is over (and the oldest beyond the bound).
        state.retired.sort_by_key(|k| k.retired_at);
        let excess = state.retired.len().saturating_sub(MAX_RETIRED_PREKEYS);
        let mut kept = Vec::with_capacity(state.retired.len());
        for (i, k) in state.retired.iter().enumerate() {
            if i < excess || k.retired_at.saturating_add(RETIRED_PREKEY_RETENTION_SECS) <= now_s {
                match k.kind {
                    RetiredKind::Signed => state.keys.remove_signed_prekey(k.id),
                    RetiredKind::Kem => state.keys.remove_kem_prekey(k.id),
                };
                changed = true;
            } else {
                kept.push(*k);
            }
        }
        state.retired = kept;

        let mut upload = PreKeyUpload::default();
        let mut rng = rand::rng();
        let due = |k: Option<(u32, u64)>| {
            k.is_none_or(|(_, at)| at.saturating_add(PREKEY_ROTATION_SECS) <= now_s)
        };
        if due(state.signed) {
            let spk = state
                .keys
                .generate_signed_prekey(&mut rng, &self.identity, now_s);
            if let Some((old, _)) = state.signed {
                state.retired.push(RetiredKey {
                    kind: RetiredKind::Signed,
                    id: old,
                    retired_at: now_s,
                });
            }
            state.signed = Some((spk.id, now_s));
            upload.signed_prekey = Some(spk);
        }
        if due(state.last_resort) {
            let lr = state.keys.generate_kem_prekeys(
                &mut rng,
                &self.identity,
                KemPreKeyKind::LastResort,
                1,
                now_s,
            );
            if let Some(k) = lr.into_iter().next() {
                if let Some((old, _)) = state.last_resort {
                    state.retired.push(RetiredKey {
                        kind: RetiredKind::Kem,
                        id: old,
                        retired_at: now_s,
                    });
                }
                state.last_resort = Some((k.id, now_s));
                upload.kem.push(k);
            }
        }
        let (one_time, kem) = counts.unwrap_or((0, 0));
        if one_time < ONE_TIME_PREKEY_LOW {
            let n = ONE_TIME_PREKEY_TARGET.saturating_sub(one_time) as usize;
            upload.one_time = state
                .keys
                .generate_one_time_prekeys(&mut rng, n.min(MAX_ONE_TIME_PER_UPLOAD));
        }
        if kem < KEM_PREKEY_LOW {
            let n = (KEM_PREKEY_TARGET.saturating_sub(kem) as usize)
                .min(MAX_KEM_PER_UPLOAD.saturating_sub(upload.kem.len()));
            upload.kem.extend(state.keys.generate_kem_prekeys(
                &mut rng,
                &self.identity,
                KemPreKeyKind::OneTime,
                n,
                now_s,
            ));
        }
        let result = if upload.signed_prekey.is_none()
            && upload.one_time.is_empty()
            && upload.kem.is_empty()
        {
            None
        } else {
            state.pending = Some(upload.clone());
            changed = true;
            Some(upload)
        };
        if changed {
            let mut batch = Batch::new();
            self.store.put_prekeys(&mut batch, &state);
            self.store.commit(batch)?;
        }
        Ok(result)
    }

    /// The relay stored `upload` (or rejected it for good): forget it as pending.
    pub(crate) fn prekeys_uploaded(&self, upload: &PreKeyUpload) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let Some(mut state) = self.store.prekeys()? else {
            return Ok(());
        };
        if state.pending.as_ref() == Some(upload) {
            state.pending = None;
            let mut batch = Batch::new();
            self.store.put_prekeys(&mut batch, &state);
            self.store.commit(batch)?;
        }
        Ok(())
    }

    /// For tests: the prekey state.
    #[cfg(test)]
    pub(crate) fn prekey_state(&self) -> Result<Option<crate::store::PreKeyState>, ClientError> {
        Ok(self.store.prekeys()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, StoreKey};
    use sealpost_wire::relay::Delivery;

    /// Rollback detection and session renewal (spec/client-store.md section 9).
    mod rollback;

    fn engine(phone: &str, device: u32) -> Engine {
        let store = Store::in_memory(StoreKey::generate()).unwrap();
        let record = AccountRecord {
            identity: IdentityKeyPair::generate(&mut rand::rng()),
            account: AccountId::new(phone).unwrap(),
            device: Some(DeviceId(device)),
            registered_at: 1,
        };
        let mut b = Batch::new();
        store.put_account(&mut b, &record);
        store.commit(b).unwrap();
        Engine::new(store, &record, SessionConfig::default()).unwrap()
    }

    /// Publishes prekeys and returns the bundle a relay would serve.
    fn bundle(e: &Engine) -> PreKeyBundle {
        let upload = e.plan_prekeys(None, 1000).unwrap().unwrap();
        assert!(upload.signed_prekey.is_some());
        assert_eq!(upload.one_time.len(), ONE_TIME_PREKEY_TARGET as usize);
        assert_eq!(upload.kem.len(), 1 + KEM_PREKEY_TARGET as usize);
        e.prekeys_uploaded(&upload).unwrap();
        let state = e.prekey_state().unwrap().unwrap();
        state
            .keys
            .bundle(&e.identity, e.address.device.0, true)
            .unwrap()
    }

    /// Sends `text` from `a` to `b`'s account and returns the deliveries.
    fn send(a: &Engine, to: &Engine, text: &str, server_id: &mut u64) -> Vec<Delivery> {
        a.enqueue(&to.address.account, &MessageBody::Text(text.into()), 5)
            .unwrap();
        let entry = a.outbox_head().unwrap().unwrap();
        let devices = a.recipient_devices(&to.address.account).unwrap();
        let entry = a.prepare(entry, &devices).unwrap();
        a.complete(&entry, 77).unwrap();
        entry
            .envelopes
            .unwrap()
            .into_iter()
            .map(|e| {
                *server_id += 1;
                Delivery {
                    server_id: *server_id,
                    sender: a.address.clone(),
                    message_id: *entry.message_id.as_bytes(),
                    timestamp: *server_id,
                    envelope: e.envelope,
                }
            })
            .collect()
    }

    fn text_of(p: Processed) -> String {
        match p {
            Processed::Accepted(evs) => match evs.last() {
                Some(ClientEvent::Message { body, .. }) => body.as_text().unwrap().to_owned(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conversation_dedupe_and_routing() {
        let alice = engine("+15550000001", 1);
        let bob = engine("+15550000002", 1);
        let b_bundle = bundle(&bob);
        let a_bundle = bundle(&alice);
        let mut sid = 0;
        // First contact: no safety-number event (trust on first use).
        let evs = alice
            .apply_refresh(&bob.address.account, None, &[b_bundle], 1)
            .unwrap();
        assert!(evs.is_empty());
        let d = send(&alice, &bob, "hello bob", &mut sid);
        assert_eq!(d.len(), 1);
        // Bob simultaneously starts his own session with Alice.
        bob.apply_refresh(&alice.address.account, None, &[a_bundle], 1)
            .unwrap();
        let d2 = send(&bob, &alice, "hello alice", &mut sid);

        assert_eq!(
            text_of(bob.process_delivery(&d[0], 10).unwrap()),
            "hello bob"
        );
        // Redelivery is recognised.
        assert!(matches!(
            bob.process_delivery(&d[0], 10).unwrap(),
            Processed::Duplicate
        ));
        assert_eq!(
            text_of(alice.process_delivery(&d2[0], 10).unwrap()),
            "hello alice"
        );
        // Both sides now hold two sessions; conversations converge and keep working.
        for i in 0..5 {
            let x = send(&alice, &bob, &format!("a{i}"), &mut sid);
            assert_eq!(
                text_of(bob.process_delivery(&x[0], 10).unwrap()),
                format!("a{i}")
            );
            let y = send(&bob, &alice, &format!("b{i}"), &mut sid);
            assert_eq!(
                text_of(alice.process_delivery(&y[0], 10).unwrap()),
                format!("b{i}")
            );
        }
        let peer = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
        assert_eq!(alice.store.sessions(&peer).unwrap().len(), 2);
        let h = alice.store.history(&bob.address.account, 100).unwrap();
        assert_eq!(h.len(), 12);
        assert!(
            h.iter()
                .filter(|e| e.direction == Direction::Outgoing)
                .all(|e| e.status == MessageStatus::Delivered { at: 77 })
        );
        assert_eq!(alice.store.outbox_len().unwrap(), 0);

        // A forged envelope and a relay-altered message id are rejected without harm.
        let mut x = send(&alice, &bob, "z", &mut sid);
        let mut forged = x[0].clone();
        let last = forged.envelope.len() - 1;
        forged.envelope[last] ^= 1;
        assert!(matches!(
            bob.process_delivery(&forged, 10).unwrap(),
            Processed::Rejected(_)
        ));
        let mut relabeled = x[0].clone();
        relabeled.message_id = [0xee; 16];
        assert!(matches!(
            bob.process_delivery(&relabeled, 10).unwrap(),
            Processed::Rejected(_)
        ));
        assert_eq!(
            text_of(bob.process_delivery(&x.remove(0), 10).unwrap()),
            "z"
        );
    }

    /// Issue 11: a relay that relabels the sender of Alice's first message as Mallory (whom
    /// Bob knows) gets nothing attributed to Mallory, no identity change and no
    /// `SafetyNumberChanged`; the genuine delivery is still accepted afterwards.
    #[test]
    fn relabelled_sender_is_rejected_and_changes_no_identity() {
        let alice = engine("+15550000001", 1);
        let bob = engine("+15550000002", 1);
        let mallory = engine("+15550000003", 1);
        let b_bundle = bundle(&bob);
        bob.apply_refresh(&mallory.address.account, None, &[bundle(&mallory)], 1)
            .unwrap();
        let mallory_identity = mallory.identity.public();
        let stored = |b: &Engine| b.store.contact(&mallory.address).unwrap().unwrap().identity;
        assert_eq!(stored(&bob), mallory_identity);
        alice
            .apply_refresh(&bob.address.account, None, &[b_bundle], 1)
            .unwrap();
        let mut sid = 0;
        let mut d = send(&alice, &bob, "pay 100 EUR", &mut sid);
        let genuine = d[0].clone();
        d[0].sender = mallory.address.clone();
        assert!(matches!(
            bob.process_delivery(&d[0], 10).unwrap(),
            Processed::Rejected(_)
        ));
        assert_eq!(stored(&bob), mallory_identity, "Mallory's identity changed");
        assert!(
            bob.store
                .history(&mallory.address.account, 10)
                .unwrap()
                .is_empty()
        );
        // The same envelope under its real sender is Alice's message.
        assert_eq!(
            text_of(bob.process_delivery(&genuine, 10).unwrap()),
            "pay 100 EUR"
        );
        // A later message relabelled as Mallory is rejected too.
        let mut later = send(&alice, &bob, "and again", &mut sid);
        later[0].sender = mallory.address.clone();
        assert!(matches!(
            bob.process_delivery(&later[0], 10).unwrap(),
            Processed::Rejected(_)
        ));
        assert_eq!(stored(&bob), mallory_identity);
    }

    /// The version-1 state encoding of a fresh version-2 initiator session (no skipped
    /// keys): no addresses, no stored ratchet public key.
    fn as_version_1(session: &Session) -> Vec<u8> {
        let v2 = sealpost_session::hazmat::to_state_bytes(session);
        assert_eq!(v2[0], 2);
        let local_len = 1 + usize::from(v2[137]) + 4;
        let remote_len = 1 + usize::from(v2[137 + local_len]) + 4;
        let b = 137 + local_len + remote_len;
        let pending = if v2[b + 33] == 1 { 1581 } else { 0 };
        let p = b + 34 + pending;
        assert_eq!(v2[v2.len() - 4..], [0, 0, 0, 0], "no skipped keys");
        let mut v1 = vec![1];
        v1.extend_from_slice(&v2[1..137]);
        v1.extend_from_slice(&v2[b..p + 32]);
        v1.extend_from_slice(&v2[p + 64..]);
        v1
    }

    /// A session loaded from version-1 state is never used to send: the device counts as
    /// having no session, a new handshake replaces it, with no safety-number change.
    #[test]
    fn legacy_session_is_replaced_by_a_new_handshake() {
        let alice = engine("+15550000001", 1);
        let bob = engine("+15550000002", 1);
        let b_bundle = bundle(&bob);
        alice
            .apply_refresh(
                &bob.address.account,
                None,
                std::slice::from_ref(&b_bundle),
                1,
            )
            .unwrap();
        let peer = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
        let (_, session) = alice.store.sessions(&peer).unwrap().remove(0);
        let legacy = sealpost_session::hazmat::from_state_bytes(&as_version_1(&session)).unwrap();
        assert!(legacy.is_legacy());
        let mut batch = Batch::new();
        alice.store.delete_sessions(&mut batch, &peer);
        alice
            .store
            .put_session(&mut batch, &peer, None, &legacy)
            .unwrap();
        alice.store.commit(batch).unwrap();

        assert!(
            alice
                .recipient_devices(&bob.address.account)
                .unwrap()
                .is_empty()
        );
        let listed = vec![DeviceInfo {
            device_id: 1,
            identity: bob.identity.public().to_wire(),
        }];
        assert_eq!(
            alice
                .missing_devices(&bob.address.account, &listed)
                .unwrap(),
            vec![1]
        );
        let events = alice
            .apply_refresh(&bob.address.account, Some(&listed), &[b_bundle], 2)
            .unwrap();
        assert!(events.is_empty(), "no safety-number change: {events:?}");
        assert_eq!(
            alice.recipient_devices(&bob.address.account).unwrap(),
            vec![DeviceId(1)]
        );
        let mut sid = 0;
        let d = send(&alice, &bob, "after the upgrade", &mut sid);
        assert_eq!(
            text_of(bob.process_delivery(&d[0], 3).unwrap()),
            "after the upgrade"
        );
    }

    #[test]
    fn safety_number_change_on_reregistration() {
        let alice = engine("+15550000001", 1);
        let bob = engine("+15550000002", 1);
        alice
            .apply_refresh(&bob.address.account, None, &[bundle(&bob)], 1)
            .unwrap();
        // Bob re-registers on a new phone: device 2 with a new identity; device 1 is gone.
        let bob2 = engine("+15550000002", 2);
        let b2 = bundle(&bob2);
        let listed = vec![DeviceInfo {
            device_id: 2,
            identity: bob2.identity.public().to_wire(),
        }];
        assert_eq!(
            alice
                .missing_devices(&bob.address.account, &listed)
                .unwrap(),
            vec![2]
        );
        let evs = alice
            .apply_refresh(&bob.address.account, Some(&listed), &[b2], 2)
            .unwrap();
        assert_eq!(
            evs,
            vec![ClientEvent::SafetyNumberChanged {
                account: bob.address.account.clone(),
                device: DeviceId(2),
            }]
        );
        assert_eq!(
            alice.recipient_devices(&bob.address.account).unwrap(),
            vec![DeviceId(2)]
        );
        let gone = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
        assert!(alice.store.sessions(&gone).unwrap().is_empty());
        let mut sid = 0;
        let d = send(&alice, &bob2, "still there?", &mut sid);
        assert_eq!(
            text_of(bob2.process_delivery(&d[0], 3).unwrap()),
            "still there?"
        );
    }

    #[test]
    fn a_verified_contacts_new_identity_holds_sending_until_approved() {
        let alice = engine("+15550000001", 1);
        let bob = engine("+15550000002", 1);
        alice
            .apply_refresh(&bob.address.account, None, &[bundle(&bob)], 1)
            .unwrap();
        let bob1 = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
        let (_, number) = alice.safety_number(&bob1).unwrap();
        assert_eq!(
            alice.mark_verified(&bob1, &"1".repeat(60)),
            Err(ClientError::SafetyNumberMismatch)
        );
        alice
            .mark_verified(&bob1, &number.display_groups().join(" "))
            .unwrap();
        assert_eq!(
            alice.store.contact(&bob1).unwrap().unwrap().verification,
            Verification::Verified
        );
        // Bob re-registers: the refresh reports the verified identity's change, not a plain
        // safety-number change, and sending to Bob is held.
        let bob2 = engine("+15550000002", 2);
        let listed = vec![DeviceInfo {
            device_id: 2,
            identity: bob2.identity.public().to_wire(),
        }];
        let evs = alice
            .apply_refresh(&bob.address.account, Some(&listed), &[bundle(&bob2)], 2)
            .unwrap();
        assert_eq!(
            evs,
            vec![ClientEvent::VerifiedIdentityChanged {
                account: bob.address.account.clone(),
                device: DeviceId(2),
            }]
        );
        alice
            .enqueue(&bob.address.account, &MessageBody::Text("held".into()), 5)
            .unwrap();
        let entry = alice.outbox_head().unwrap().unwrap();
        let devices = alice.recipient_devices(&bob.address.account).unwrap();
        assert_eq!(devices, vec![DeviceId(2)]);
        assert_eq!(
            alice.prepare(entry.clone(), &devices).err(),
            Some(ClientError::UnapprovedIdentity)
        );
        // Approving resumes sending; the contact is unverified now.
        assert_eq!(alice.approve_identity(&bob.address.account).unwrap(), 1);
        assert_eq!(alice.approve_identity(&bob.address.account).unwrap(), 0);
        let entry = alice.prepare(entry, &devices).unwrap();
        assert_eq!(entry.envelopes.unwrap().len(), 1);
        let bob2_addr = DeviceAddress::new(bob.address.account.clone(), DeviceId(2));
        assert_eq!(
            alice
                .store
                .contact(&bob2_addr)
                .unwrap()
                .unwrap()
                .verification,
            Verification::Unverified
        );
        // Unverified again: a later change is a plain safety-number change.
        let bob3 = engine("+15550000002", 3);
        let listed = vec![DeviceInfo {
            device_id: 3,
            identity: bob3.identity.public().to_wire(),
        }];
        let evs = alice
            .apply_refresh(&bob.address.account, Some(&listed), &[bundle(&bob3)], 3)
            .unwrap();
        assert_eq!(
            evs,
            vec![ClientEvent::SafetyNumberChanged {
                account: bob.address.account.clone(),
                device: DeviceId(3),
            }]
        );
    }

    #[test]
    fn prekey_plans_are_persisted_until_confirmed() {
        let e = engine("+15550000003", 1);
        let first = e.plan_prekeys(None, 1000).unwrap().unwrap();
        // Not confirmed: the same upload again.
        assert_eq!(
            e.plan_prekeys(Some((100, 20)), 1001).unwrap(),
            Some(first.clone())
        );
        e.prekeys_uploaded(&first).unwrap();
        // Nothing due.
        assert_eq!(e.plan_prekeys(Some((100, 20)), 1002).unwrap(), None);
        // Low counts: top up to the targets, nothing else.
        let top = e.plan_prekeys(Some((19, 4)), 1003).unwrap().unwrap();
        assert!(top.signed_prekey.is_none());
        assert_eq!(top.one_time.len(), 81);
        assert_eq!(top.kem.len(), 16);
        e.prekeys_uploaded(&top).unwrap();
        // Rotation after a week; the old keys are retired, then deleted after retention.
        let later = 1000 + PREKEY_ROTATION_SECS;
        let rot = e.plan_prekeys(Some((100, 20)), later).unwrap().unwrap();
        assert!(rot.signed_prekey.is_some());
        assert_eq!(rot.kem.len(), 1);
        e.prekeys_uploaded(&rot).unwrap();
        let st = e.prekey_state().unwrap().unwrap();
        assert_eq!(st.retired.len(), 2);
        let kem_before = st.keys.kem_count();
        let much_later = later + RETIRED_PREKEY_RETENTION_SECS;
        let again = e
            .plan_prekeys(Some((100, 20)), much_later)
            .unwrap()
            .unwrap();
        e.prekeys_uploaded(&again).unwrap();
        let st = e.prekey_state().unwrap().unwrap();
        // Retired keys dropped; the rotation at `much_later` retired the newer pair.
        assert_eq!(st.retired.len(), 2);
        assert_eq!(st.keys.kem_count(), kem_before);
    }
}
