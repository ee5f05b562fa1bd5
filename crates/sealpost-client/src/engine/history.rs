//! History bundles (spec/devices.md 8.7 and 8.9, spec/client-store.md section 6.2): on the
//! key holder, building one from the store and queueing its parts for a newly linked
//! device; on the new device, applying a part.

use super::*;
use crate::content::{decode_content, encode_history_part};
use crate::store::{HistoryEntry, ListPin};
use sealpost_devices::VerifiedDeviceList;
use sealpost_wire::devices::{
    ContactDevices, HISTORY_BUNDLE_ID_LEN, HistoryContact, HistoryDevice, HistoryDirection,
    HistoryMessage, HistoryPart, HistoryRecord, HistoryStatus, HistoryVerification,
    MAX_LISTED_DEVICES, pack_history,
};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use zeroize::Zeroize;

/// Default of [`crate::ClientConfig::history_bundle_max_messages`]: the newest 1,000
/// messages go into a history bundle.
pub const HISTORY_BUNDLE_MAX_MESSAGES: usize = 1_000;
/// Default of [`crate::ClientConfig::history_bundle_max_age`]: messages of the last 90 days
/// go into a history bundle.
pub const HISTORY_BUNDLE_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long a queued history part waits for its device to appear on the own list: the
/// lifetime of the provisioning id the invitation named (spec/relay.md 3.11), after which
/// the link can no longer complete. A part still waiting then is dropped.
pub const HISTORY_PART_LINK_WAIT: Duration = Duration::from_secs(10 * 60);

/// What the bundle builder reads from the store, bounded as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BundleLimits {
    /// The most messages (the newest).
    pub(crate) max_messages: usize,
    /// The oldest history timestamp (Unix ms) a message may have.
    pub(crate) since_ms: u64,
}

impl BundleLimits {
    pub(crate) fn new(max_messages: usize, max_age: Duration, now_ms: u64) -> Self {
        let age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        Self {
            max_messages,
            since_ms: now_ms.saturating_sub(age_ms),
        }
    }
}

fn to_history_verification(v: Verification) -> HistoryVerification {
    match v {
        Verification::Unverified => HistoryVerification::Unverified,
        Verification::Verified => HistoryVerification::Verified,
        Verification::ChangedSinceVerified => HistoryVerification::ChangedSinceVerified,
    }
}

fn from_history_verification(v: HistoryVerification) -> Verification {
    match v {
        HistoryVerification::Unverified => Verification::Unverified,
        HistoryVerification::Verified => Verification::Verified,
        HistoryVerification::ChangedSinceVerified => Verification::ChangedSinceVerified,
    }
}

/// A history entry as a message record; `None` for a queued message (never in a bundle).
fn message_record(entry: &HistoryEntry, content: &[u8]) -> Option<HistoryRecord> {
    let (direction, status, status_at) = match (entry.direction, entry.status) {
        (Direction::Incoming, MessageStatus::Received) => {
            (HistoryDirection::Incoming, HistoryStatus::Received, 0)
        }
        (Direction::Outgoing, MessageStatus::Delivered { at }) => {
            (HistoryDirection::Outgoing, HistoryStatus::Delivered, at)
        }
        (Direction::Outgoing, MessageStatus::Failed { at }) => {
            (HistoryDirection::Outgoing, HistoryStatus::Failed, at)
        }
        _ => return None,
    };
    Some(HistoryRecord::Message(HistoryMessage {
        direction,
        peer: entry.peer.clone(),
        timestamp: entry.timestamp,
        status,
        status_at,
        content: content.to_vec(),
    }))
}

/// Wipes the message contents of records (plaintext) before they are dropped.
pub(super) fn wipe(records: &mut [HistoryRecord]) {
    for r in records {
        if let HistoryRecord::Message(m) = r {
            m.content.zeroize();
        }
    }
}

/// Why a record of a part was skipped as invalid (logged, counted; never an error).
type Invalid = &'static str;

/// What one part applied, for the event.
#[derive(Default)]
struct Applied {
    contacts: u32,
    messages: u32,
    invalid: u32,
    /// Accounts pinned and devices added by earlier records of the same part.
    pinned: HashSet<AccountId>,
    added: HashSet<DeviceAddress>,
    /// Messages imported by earlier records of the same part (`(peer, message id)`).
    imported: HashSet<(DeviceAddress, MessageId)>,
}

impl Engine {
    /// The records of a history bundle (spec/devices.md 8.9), in the order they are
    /// packed: every contact account but this one, sorted by account id (a pinned list as
    /// a list record; devices without a list as one devices record, at most 64, by device
    /// id), then the newest `limits.max_messages` history entries not older than
    /// `limits.since_ms` and not queued, oldest first.
    pub(crate) fn history_records(
        &self,
        limits: BundleLimits,
    ) -> Result<Vec<HistoryRecord>, ClientError> {
        let own = &self.address.account;
        let mut pins: BTreeMap<AccountId, ListPin> = BTreeMap::new();
        for pin in self.store.all_list_pins()? {
            if pin.list.account() != own {
                pins.insert(pin.list.account().clone(), pin);
            }
        }
        let mut devices: BTreeMap<AccountId, Vec<Contact>> = BTreeMap::new();
        for c in self.store.all_contacts()? {
            if &c.address.account != own && !pins.contains_key(&c.address.account) {
                devices
                    .entry(c.address.account.clone())
                    .or_default()
                    .push(c);
            }
        }
        let mut records = Vec::with_capacity(pins.len() + devices.len());
        let mut contacts: BTreeMap<AccountId, HistoryRecord> = BTreeMap::new();
        for (account, pin) in pins {
            let record = HistoryRecord::Contact(HistoryContact {
                account: account.clone(),
                devices: ContactDevices::List {
                    verification: to_history_verification(pin.verification),
                    list: pin.list.signed().clone(),
                },
            });
            contacts.insert(account, record);
        }
        for (account, mut known) in devices {
            known.sort_by_key(|c| c.address.device);
            known.retain(|c| c.address.device.0 >= 1);
            if known.len() > MAX_LISTED_DEVICES {
                tracing::warn!(
                    devices = known.len(),
                    "contact with more devices than a bundle record holds; the first 64 are sent"
                );
                known.truncate(MAX_LISTED_DEVICES);
            }
            if known.is_empty() {
                continue;
            }
            let record = HistoryRecord::Contact(HistoryContact {
                account: account.clone(),
                devices: ContactDevices::Devices(
                    known
                        .iter()
                        .map(|c| HistoryDevice {
                            device_id: c.address.device,
                            identity: c.identity.to_wire(),
                            verification: to_history_verification(c.verification),
                        })
                        .collect(),
                ),
            });
            contacts.insert(account, record);
        }
        records.extend(contacts.into_values());
        for (entry, content) in self
            .store
            .recent_history(limits.max_messages, limits.since_ms)?
        {
            records.extend(message_record(&entry, &content));
        }
        Ok(records)
    }

    /// On the key holder, after it signed the list that links device `target`: builds the
    /// history bundle, packs it, and queues each part as an outbox entry of this account
    /// addressed to `target` (spec/client-store.md 6.2), all in one commit. Returns the
    /// number of parts queued.
    pub(crate) fn queue_history_bundle(
        &self,
        target: DeviceId,
        limits: BundleLimits,
        now_ms: u64,
    ) -> Result<usize, ClientError> {
        let _g = self.lock()?;
        let records = self.history_records(limits)?;
        let total = records.len();
        let bundle_id =
            *sealpost_crypto::random_array::<HISTORY_BUNDLE_ID_LEN, _>(&mut rand::rng());
        let mut packed = pack_history(bundle_id, records)?;
        if !packed.left_out.is_empty() {
            tracing::warn!(
                left_out = packed.left_out.len(),
                "history records too large for a part left out of the bundle"
            );
        }
        let mut batch = Batch::new();
        let mut queued = Ok(());
        for part in &packed.parts {
            let bytes = match part.encode() {
                Ok(b) => Zeroizing::new(b),
                Err(e) => {
                    queued = Err(e);
                    break;
                }
            };
            let message_id = MessageId::random();
            let entry = OutboxEntry {
                seq: self.store.new_outbox_seq()?,
                message_id,
                recipient: self.address.account.clone(),
                history_seq: 0,
                created_at: now_ms,
                content: encode_history_part(&message_id, &bytes),
                envelopes: None,
                sender_seq: 0,
                target: Some(target),
            };
            self.store.put_outbox(&mut batch, &entry);
        }
        let parts = packed.parts.len();
        for part in &mut packed.parts {
            wipe(&mut part.records);
        }
        queued?;
        self.store.commit(batch)?;
        tracing::info!(
            device = target.0,
            records = total,
            parts,
            "history bundle queued for a linked device"
        );
        Ok(parts)
    }

    /// Deletes the queued history parts for the own device `target` (a link whose
    /// `Provision` the relay refused: the device cannot join with the list that named it,
    /// and the next link gives its id to another device). Returns how many were deleted.
    pub(crate) fn drop_history_parts(&self, target: DeviceId) -> Result<usize, ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let mut dropped = 0;
        for (seq, entry) in self.store.outbox_scan(usize::MAX)? {
            if entry.is_ok_and(|e| e.target == Some(target)) {
                self.store.delete_outbox(&mut batch, seq);
                dropped += 1;
            }
        }
        self.store.commit(batch)?;
        Ok(dropped)
    }

    /// On a device of this account: applies a history part from the account's key holder
    /// (the caller checked the sender) into `batch` (spec/devices.md 8.7,
    /// spec/client-store.md 6.2). Nothing the device already knows is replaced; invalid
    /// records are skipped and counted. `delivered_at` dates the processed tags.
    pub(crate) fn apply_history_part(
        &self,
        batch: &mut Batch,
        part: &HistoryPart,
        delivered_at: u64,
        now_ms: u64,
    ) -> Result<ClientEvent, ClientError> {
        let mut applied = Applied::default();
        for record in &part.records {
            let outcome = match record {
                HistoryRecord::Contact(c) => self
                    .import_contact(batch, c, now_ms, &mut applied)
                    .map(|r| r.map(|added| (added, 0))),
                HistoryRecord::Message(m) => self
                    .import_message(batch, m, delivered_at, &mut applied)
                    .map(|r| r.map(|added| (0, u32::from(added)))),
            }?;
            match outcome {
                Ok((contacts, messages)) => {
                    applied.contacts += contacts;
                    applied.messages += messages;
                }
                Err(reason) => {
                    tracing::warn!(reason, "invalid history record skipped");
                    applied.invalid += 1;
                }
            }
        }
        tracing::info!(
            index = part.index,
            contacts = applied.contacts,
            messages = applied.messages,
            invalid = applied.invalid,
            "history part applied"
        );
        Ok(ClientEvent::HistoryImported {
            contacts: applied.contacts,
            messages: applied.messages,
            invalid: applied.invalid,
            last: part.last,
        })
    }

    /// A contact record: a list is verified (spec/devices.md section 4) and pinned unless a
    /// list of the account is pinned already; devices without a list become contact
    /// records unless the device is known (or the account has a pinned list). Returns 1
    /// when something was added.
    fn import_contact(
        &self,
        batch: &mut Batch,
        c: &HistoryContact,
        now_ms: u64,
        applied: &mut Applied,
    ) -> Result<Result<u32, Invalid>, ClientError> {
        if c.account == self.address.account {
            return Ok(Err("contact record of this account"));
        }
        let pinned =
            applied.pinned.contains(&c.account) || self.store.list_pin(&c.account)?.is_some();
        match &c.devices {
            ContactDevices::List { verification, list } => {
                let Ok(bytes) = list.encode() else {
                    return Ok(Err("contact list does not encode"));
                };
                let Ok(list) = VerifiedDeviceList::verify(&bytes, &c.account) else {
                    return Ok(Err("contact list does not verify"));
                };
                if pinned {
                    return Ok(Ok(0));
                }
                self.store.put_list_pin(
                    batch,
                    &ListPin {
                        list,
                        verification: from_history_verification(*verification),
                    },
                );
                applied.pinned.insert(c.account.clone());
                Ok(Ok(1))
            }
            ContactDevices::Devices(devices) => {
                let mut keys = Vec::with_capacity(devices.len());
                for d in devices {
                    let Ok(identity) = IdentityKey::from_wire(&d.identity) else {
                        return Ok(Err("contact device identity is not a valid key"));
                    };
                    keys.push((d, identity));
                }
                if pinned {
                    return Ok(Ok(0));
                }
                let mut added = false;
                for (d, identity) in keys {
                    let address = DeviceAddress::new(c.account.clone(), d.device_id);
                    if applied.added.contains(&address) || self.store.contact(&address)?.is_some() {
                        continue;
                    }
                    self.store.put_contact(
                        batch,
                        &Contact {
                            address: address.clone(),
                            identity,
                            first_seen: now_ms,
                            changed_at: now_ms,
                            verification: from_history_verification(d.verification),
                        },
                    );
                    applied.added.insert(address);
                    added = true;
                }
                Ok(Ok(u32::from(added)))
            }
        }
    }

    /// A message record: its content must decode as a message (spec/client-store.md
    /// section 6); it becomes a history entry, with the processed tag of `(peer, message
    /// id)`, unless that tag is present (received live, copied, or imported before).
    /// Returns whether it was imported.
    fn import_message(
        &self,
        batch: &mut Batch,
        m: &HistoryMessage,
        delivered_at: u64,
        applied: &mut Applied,
    ) -> Result<Result<bool, Invalid>, ClientError> {
        let Ok((message_id, _body)) = decode_content(&m.content) else {
            return Ok(Err("message content does not decode"));
        };
        let key = (m.peer.clone(), message_id);
        if applied.imported.contains(&key) || self.store.is_processed(&m.peer, &message_id)? {
            return Ok(Ok(false));
        }
        let (direction, status) = match (m.direction, m.status) {
            (HistoryDirection::Incoming, HistoryStatus::Received) => {
                (Direction::Incoming, MessageStatus::Received)
            }
            (HistoryDirection::Outgoing, HistoryStatus::Delivered) => (
                Direction::Outgoing,
                MessageStatus::Delivered { at: m.status_at },
            ),
            (HistoryDirection::Outgoing, HistoryStatus::Failed) => (
                Direction::Outgoing,
                MessageStatus::Failed { at: m.status_at },
            ),
            // The decoder refuses every other combination.
            _ => return Ok(Err("message status does not match its direction")),
        };
        self.store
            .append_history(batch, direction, &m.peer, m.timestamp, status, &m.content)?;
        self.store
            .mark_processed(batch, &m.peer, &message_id, delivered_at);
        applied.imported.insert(key);
        Ok(Ok(true))
    }
}
