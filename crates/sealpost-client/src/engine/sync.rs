//! Sync messages (spec/client-store.md section 6.3): read state and deletions that the user
//! makes on one device, applied there at once and repeated on the account's other devices.

use super::*;
use crate::content::{MAX_SYNC_DELETE_IDS, SyncItem, encode_sync};
use crate::store::ReadMarker;
use std::collections::{HashMap, HashSet};

/// What one sync item changed in this store.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// Nothing: the read marker was already there or further, the messages or the
    /// conversation were not here.
    Nothing,
    /// The read marker of the conversation moved to the message.
    Read,
    /// These messages were deleted.
    Deleted(Vec<MessageId>),
    /// The conversation (its entries and its read marker) was deleted.
    ConversationDeleted,
    /// `ReadUpTo` names a message this store does not have in the conversation.
    UnknownMessage,
}

/// The changes of one batch that the store does not show yet: the items of one sync
/// content apply in order, each seeing what the items before it did.
#[derive(Default)]
struct Pending {
    /// History positions deleted.
    deleted: HashSet<u64>,
    /// Conversations deleted as a whole.
    cleared: HashSet<AccountId>,
    /// Read markers written (`None`: deleted).
    markers: HashMap<AccountId, Option<ReadMarker>>,
}

impl Engine {
    /// The user read the conversation with `peer` up to and including `up_to` on this
    /// device: moves the read marker forward (never back) and, if it moved, queues one sync
    /// content for the other own devices ([`Engine::queue_sync`]), in one batch. Returns
    /// whether the marker moved. [`ClientError::UnknownMessage`] if the conversation has no
    /// such message here.
    pub(crate) fn mark_read(
        &self,
        peer: &AccountId,
        up_to: MessageId,
        list_current: bool,
        now_ms: u64,
    ) -> Result<bool, ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let item = SyncItem::ReadUpTo {
            peer: peer.clone(),
            up_to,
        };
        let moved = match self.apply_item(&mut batch, &mut Pending::default(), &item)? {
            Applied::Read => true,
            Applied::UnknownMessage => {
                return Err(ClientError::UnknownMessage { message_id: up_to });
            }
            _ => false,
        };
        if moved {
            self.queue_sync(&mut batch, item, list_current, now_ms)?;
        }
        self.store.commit(batch)?;
        Ok(moved)
    }

    /// The user deleted messages of the conversation with `peer` on this device: deletes
    /// their history entries and queues one sync content naming every id given for the
    /// account's other devices (they may hold messages this device does not), in one
    /// batch. Returns how many entries were deleted here. No ids: nothing happens. More than
    /// [`MAX_SYNC_DELETE_IDS`]: [`ClientError::TooManyMessageIds`], nothing changes.
    pub(crate) fn delete_messages(
        &self,
        peer: &AccountId,
        ids: &[MessageId],
        list_current: bool,
        now_ms: u64,
    ) -> Result<usize, ClientError> {
        if ids.len() > MAX_SYNC_DELETE_IDS {
            return Err(ClientError::TooManyMessageIds {
                count: ids.len(),
                max: MAX_SYNC_DELETE_IDS,
            });
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let item = SyncItem::DeleteMessages {
            peer: peer.clone(),
            ids: ids.to_vec(),
        };
        let deleted = match self.apply_item(&mut batch, &mut Pending::default(), &item)? {
            Applied::Deleted(d) => d.len(),
            _ => 0,
        };
        self.queue_sync(&mut batch, item, list_current, now_ms)?;
        self.store.commit(batch)?;
        Ok(deleted)
    }

    /// The user deleted the whole conversation with `peer` on this device: deletes its
    /// history entries and read marker and queues one sync content for the account's other
    /// devices, in one batch.
    pub(crate) fn delete_conversation(
        &self,
        peer: &AccountId,
        list_current: bool,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let mut batch = Batch::new();
        let item = SyncItem::DeleteConversation { peer: peer.clone() };
        self.apply_item(&mut batch, &mut Pending::default(), &item)?;
        self.queue_sync(&mut batch, item, list_current, now_ms)?;
        self.store.commit(batch)?;
        Ok(())
    }

    /// The newest message of the conversation with `peer` the user has read (on any of the
    /// account's devices, as far as their syncs arrived), if any.
    pub(crate) fn read_up_to(&self, peer: &AccountId) -> Result<Option<MessageId>, ClientError> {
        Ok(self.store.read_marker(peer)?.map(|m| m.up_to))
    }

    /// How many incoming messages of the conversation with `peer` come after its read
    /// marker (all of them without one): an incoming entry is read when its position is at
    /// or before the marker's (spec/client-store.md 5.11); outgoing entries always are.
    pub(crate) fn unread_count(&self, peer: &AccountId) -> Result<usize, ClientError> {
        let read_to = self.store.read_marker(peer)?.map(|m| m.position);
        Ok(self
            .store
            .conversation_ids(peer)?
            .iter()
            .filter(|(seq, direction, _)| {
                *direction == Direction::Incoming && read_to.is_none_or(|p| *seq > p)
            })
            .count())
    }

    /// Applies an accepted sync content from the own device `device` to `batch`, item by
    /// item in order (spec/client-store.md section 6.3), and returns the events: one per
    /// item that changed something here. Items that change nothing (a marker already
    /// further, unknown messages, a conversation not here) are no-ops.
    pub(super) fn apply_sync(
        &self,
        batch: &mut Batch,
        device: DeviceId,
        items: Vec<SyncItem>,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        let mut pending = Pending::default();
        let mut events = Vec::new();
        for item in items {
            let applied = self.apply_item(batch, &mut pending, &item)?;
            let event = match (item, applied) {
                (SyncItem::ReadUpTo { peer, up_to }, Applied::Read) => {
                    ClientEvent::ReadOnOtherDevice {
                        device,
                        peer,
                        up_to,
                    }
                }
                (SyncItem::DeleteMessages { peer, .. }, Applied::Deleted(message_ids)) => {
                    ClientEvent::DeletedOnOtherDevice {
                        device,
                        peer,
                        message_ids,
                    }
                }
                (SyncItem::DeleteConversation { peer }, Applied::ConversationDeleted) => {
                    ClientEvent::ConversationDeletedOnOtherDevice { device, peer }
                }
                (_, applied) => {
                    tracing::debug!(?applied, "sync item changed nothing here");
                    continue;
                }
            };
            events.push(event);
        }
        Ok(events)
    }

    /// Applies one sync item to `batch`, on top of what `pending` holds.
    fn apply_item(
        &self,
        batch: &mut Batch,
        pending: &mut Pending,
        item: &SyncItem,
    ) -> Result<Applied, ClientError> {
        match item {
            SyncItem::ReadUpTo { peer, up_to } => {
                let Some(position) = self
                    .live_history(pending, peer, |id| id == up_to)?
                    .last()
                    .map(|(seq, _)| *seq)
                else {
                    return Ok(Applied::UnknownMessage);
                };
                let current = match pending.markers.get(peer) {
                    Some(m) => m.clone(),
                    None => self.store.read_marker(peer)?,
                };
                if current.is_some_and(|m| m.position >= position) {
                    return Ok(Applied::Nothing);
                }
                let marker = ReadMarker {
                    peer: peer.clone(),
                    up_to: *up_to,
                    position,
                };
                self.store.put_read_marker(batch, &marker);
                pending.markers.insert(peer.clone(), Some(marker));
                Ok(Applied::Read)
            }
            SyncItem::DeleteMessages { peer, ids } => {
                let found = self.live_history(pending, peer, |id| ids.contains(id))?;
                if found.is_empty() {
                    return Ok(Applied::Nothing);
                }
                let mut deleted = Vec::with_capacity(found.len());
                for (seq, id) in found {
                    // The processed tag of the message stays: a sent copy or a history
                    // bundle carrying it again does not bring it back (section 6.3).
                    self.store.delete_history(batch, seq);
                    pending.deleted.insert(seq);
                    deleted.push(id);
                }
                Ok(Applied::Deleted(deleted))
            }
            SyncItem::DeleteConversation { peer } => {
                let had_entries = !self.live_history(pending, peer, |_| true)?.is_empty();
                let had_marker = match pending.markers.get(peer) {
                    Some(m) => m.is_some(),
                    None => self.store.read_marker(peer)?.is_some(),
                };
                self.store.delete_conversation(batch, peer);
                self.store.delete_read_marker(batch, peer);
                pending.cleared.insert(peer.clone());
                pending.markers.insert(peer.clone(), None);
                Ok(if had_entries || had_marker {
                    Applied::ConversationDeleted
                } else {
                    Applied::Nothing
                })
            }
        }
    }

    /// The entries of the conversation with `peer` that `wanted` accepts, as the store
    /// holds them less what `pending` deleted.
    fn live_history(
        &self,
        pending: &Pending,
        peer: &AccountId,
        wanted: impl Fn(&MessageId) -> bool,
    ) -> Result<Vec<(u64, MessageId)>, ClientError> {
        if pending.cleared.contains(peer) {
            return Ok(Vec::new());
        }
        let mut found = self.store.find_history(peer, wanted)?;
        found.retain(|(seq, _)| !pending.deleted.contains(seq));
        Ok(found)
    }

    /// Whether this account's own list names a device other than this one (a sent copy or a
    /// sync content has somewhere to go).
    pub(super) fn has_other_own_devices(&self) -> Result<bool, ClientError> {
        Ok(self.own_devices()?.is_some_and(|o| {
            o.list
                .entries()
                .iter()
                .any(|e| e.device_id != self.address.device.0)
        }))
    }

    /// Adds to `batch` the outbox entry of a sync content carrying `item`, addressed to
    /// this account (spec/client-store.md 6.3): no history entry (`history_seq` 0), no
    /// target. Queued when the stored own list names another device, or when it may be out
    /// of date (`list_current` off: offline, or its fetch failed; a device may have been
    /// linked since): the send loop fetches the list before preparing and drops the entry
    /// without a `Send` if it names no other device. Returns whether one was queued.
    fn queue_sync(
        &self,
        batch: &mut Batch,
        item: SyncItem,
        list_current: bool,
        now_ms: u64,
    ) -> Result<bool, ClientError> {
        if list_current && !self.has_other_own_devices()? {
            return Ok(false);
        }
        let message_id = MessageId::random();
        let content = encode_sync(&message_id, std::slice::from_ref(&item)).ok_or(
            ClientError::Internal(crate::error::InternalError::SyncEncoding),
        )?;
        let entry = OutboxEntry {
            seq: self.store.new_outbox_seq()?,
            message_id,
            recipient: self.address.account.clone(),
            history_seq: 0,
            created_at: now_ms,
            content,
            envelopes: None,
            sender_seq: 0,
            target: None,
        };
        self.store.put_outbox(batch, &entry);
        Ok(true)
    }
}
