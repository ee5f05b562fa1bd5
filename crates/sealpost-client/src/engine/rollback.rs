//! Rollback detection and session renewal (spec/client-store.md section 9): the parts of the
//! engine that compare the relay's `sender_seq` with the store's and start new sessions in
//! place of the ones a rolled-back store set aside.

use super::Engine;
use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::store::{Batch, MAX_SESSIONS_PER_DEVICE, OutboxEntry, SenderState};
use sealpost_session::{SessionAddresses, VerifiedBundle, initiate};
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, PreKeyBundle};

impl Engine {
    /// Compares the relay's `sender_seq` for this device with the store's (at every
    /// authentication, before anything is sent). If the relay has accepted a sequence number
    /// this store never allocated, the store is an older copy of itself: in one batch, skip
    /// past the relay's value and set every existing session aside for sending. Returns the
    /// event to report (spec/client-store.md section 9).
    pub(crate) fn check_rollback(
        &self,
        relay_sender_seq: u64,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let _g = self.lock()?;
        let state = self.store.sender_state()?;
        if relay_sender_seq < state.next_sender_seq {
            return Ok(None);
        }
        let updated = SenderState {
            next_sender_seq: relay_sender_seq.saturating_add(1),
            sendable_from: self.store.new_session_seq()?,
        };
        let mut batch = Batch::new();
        self.store.put_sender_state(&mut batch, &updated);
        self.store.commit(batch)?;
        tracing::warn!(
            local = state.next_sender_seq - 1,
            relay = relay_sender_seq,
            "the store was restored from an older copy; sessions will be renewed"
        );
        Ok(Some(ClientEvent::StoreRolledBack {
            local_sender_seq: state.next_sender_seq - 1,
            relay_sender_seq,
        }))
    }

    /// Of `devices` of `account`, those whose newest session was set aside by a rollback and
    /// that `entry` still has to encrypt for: they need a new session first.
    pub(crate) fn sessions_to_renew(
        &self,
        entry: &OutboxEntry,
        devices: &[DeviceId],
    ) -> Result<Vec<DeviceId>, ClientError> {
        let sendable_from = self.store.sender_state()?.sendable_from;
        let mut out = Vec::new();
        if sendable_from == 0 {
            // No rollback was ever detected: nothing is set aside.
            return Ok(out);
        }
        for device in devices {
            let done = entry
                .envelopes
                .iter()
                .flatten()
                .any(|e| e.device_id == device.0);
            if done {
                continue;
            }
            let address = DeviceAddress::new(entry.recipient.clone(), *device);
            let newest = self.store.sessions(&address)?.first().map(|(seq, _)| *seq);
            if newest.is_some_and(|seq| seq < sendable_from) {
                out.push(*device);
            }
        }
        Ok(out)
    }

    /// Starts a new session with each device of `renew` from its bundle, when the bundle's
    /// identity is the one stored for the device (an identity change goes through the
    /// device refresh and its `SafetyNumberChanged` instead). Older sessions are kept for
    /// decrypting, within [`MAX_SESSIONS_PER_DEVICE`]. One batch. Returns the devices of
    /// `renew` that got no new session (no bundle, or another identity).
    pub(crate) fn renew_sessions(
        &self,
        account: &AccountId,
        renew: &[DeviceId],
        bundles: &[PreKeyBundle],
    ) -> Result<Vec<DeviceId>, ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let mut rng = rand::rng();
        let mut left = renew.to_vec();
        for bundle in bundles {
            let device = DeviceId(bundle.device_id);
            if !renew.contains(&device) || self.is_self(account, device) {
                continue;
            }
            let address = DeviceAddress::new(account.clone(), device);
            let same_identity = self
                .store
                .contact(&address)?
                .is_some_and(|c| c.identity.to_wire() == bundle.identity);
            if !same_identity {
                continue;
            }
            let addresses = SessionAddresses::new(self.address.clone(), address.clone());
            let session = match VerifiedBundle::verify(bundle)
                .map_err(ClientError::from)
                .and_then(|v| {
                    Ok(initiate(
                        &mut rng,
                        &self.identity,
                        &addresses,
                        &v,
                        self.session_config,
                    )?)
                }) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(device = bundle.device_id, error = %e, "cannot renew a session; skipped");
                    continue;
                }
            };
            let old = self.store.sessions(&address)?;
            self.store
                .prune_sessions(&mut batch, &address, &old, MAX_SESSIONS_PER_DEVICE - 1);
            self.store
                .put_session(&mut batch, &address, None, &session)?;
            left.retain(|d| *d != device);
        }
        self.store.commit(batch)?;
        Ok(left)
    }
}
