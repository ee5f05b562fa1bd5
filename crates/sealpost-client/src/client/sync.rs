//! Read state and deletions, synchronised across this account's own devices
//! (spec/client-store.md section 6.3, spec/devices.md 8.8).

use super::*;

impl Client {
    /// Marks the conversation with `peer` read up to and including `up_to` (a message of
    /// its history on this device, incoming or outgoing) and tells this account's other
    /// devices: the read marker moves at once, and one sync content is queued for the other
    /// devices of the account's own list, which move their markers too and report
    /// [`ClientEvent::ReadOnOtherDevice`]. A marker never moves back: marking a message at
    /// or before the current marker changes nothing and sends nothing. A device alone on
    /// its account makes no `Send` (offline, it may queue a sync that is dropped once the
    /// account's list shows no other device). Returns whether the marker moved.
    ///
    /// Errors: [`ClientError::UnknownMessage`] if the conversation has no message `up_to`
    /// on this device (nothing changes); store failures.
    ///
    /// ```no_run
    /// # use sealpost_client::{Client, ClientEvent, EventReceiver};
    /// # async fn app(client: Client, mut events: EventReceiver) -> Result<(), sealpost_client::ClientError> {
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         // The user opened the conversation and saw the message.
    ///         ClientEvent::Message { from, message_id, .. } => {
    ///             client.mark_read(&from.account, message_id).await?;
    ///         }
    ///         // The user read it on another of their devices: update the badge.
    ///         ClientEvent::ReadOnOtherDevice { peer, .. } => {
    ///             let unread = client.unread_count(&peer).await?;
    ///             println!("{}: {unread} unread", peer.as_str());
    ///         }
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn mark_read(&self, peer: &AccountId, up_to: MessageId) -> Result<bool, ClientError> {
        let (shared, current) = self.sync_shared().await?;
        let engine = shared.engine.clone();
        let peer = peer.clone();
        let moved = blocking(move || engine.mark_read(&peer, up_to, current, now_ms())).await?;
        shared.outbox_wake.notify_one();
        Ok(moved)
    }

    /// Deletes messages of the conversation with `peer` from this device's history and
    /// from the history of this account's other devices (one sync content; they report
    /// [`ClientEvent::DeletedOnOtherDevice`]). Ids this device does not have are passed on
    /// (another device may have them) and otherwise ignored. A deleted message does not
    /// come back from a sent copy or a history bundle. Deleting a message still queued
    /// does not stop its delivery to `peer`; its sent copy is not made. Returns how many
    /// messages were deleted here; an empty `ids` does nothing.
    ///
    /// Errors: [`ClientError::TooManyMessageIds`] for more than
    /// [`crate::MAX_SYNC_DELETE_IDS`] ids (nothing changes: split the call); store failures.
    pub async fn delete_messages(
        &self,
        peer: &AccountId,
        ids: &[MessageId],
    ) -> Result<usize, ClientError> {
        let (shared, current) = self.sync_shared().await?;
        let engine = shared.engine.clone();
        let peer = peer.clone();
        let ids = ids.to_vec();
        let deleted =
            blocking(move || engine.delete_messages(&peer, &ids, current, now_ms())).await?;
        shared.outbox_wake.notify_one();
        Ok(deleted)
    }

    /// Deletes the whole conversation with `peer` (every history entry and its read marker)
    /// on this device and on this account's other devices (one sync content; they report
    /// [`ClientEvent::ConversationDeletedOnOtherDevice`]). Messages that arrive later start
    /// the conversation again. Queued messages to `peer` are still delivered.
    pub async fn delete_conversation(&self, peer: &AccountId) -> Result<(), ClientError> {
        let (shared, current) = self.sync_shared().await?;
        let engine = shared.engine.clone();
        let peer = peer.clone();
        blocking(move || engine.delete_conversation(&peer, current, now_ms())).await?;
        shared.outbox_wake.notify_one();
        Ok(())
    }

    /// The newest message of the conversation with `peer` that the user has read, on this
    /// device or on another device of the account whose sync arrived; `None` if none was
    /// marked read (or the conversation was deleted since). Every entry of
    /// [`Client::history`] up to and including it counts as read.
    pub async fn read_up_to(&self, peer: &AccountId) -> Result<Option<MessageId>, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let peer = peer.clone();
        blocking(move || engine.read_up_to(&peer)).await
    }

    /// How many incoming messages of the conversation with `peer` come after its read
    /// marker ([`Client::read_up_to`]; all of them if there is none).
    pub async fn unread_count(&self, peer: &AccountId) -> Result<usize, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let peer = peer.clone();
        blocking(move || engine.unread_count(&peer)).await
    }

    /// The shared state for a change that queues a sync content, and whether this
    /// account's own list is current: when connected, it is brought up to date first
    /// (unless fetched within `device_list_refresh`), so that the sync is queued exactly
    /// when the list names another device. Offline, or when the fetch failed, the list may
    /// be out of date, and the sync is queued for the send loop to decide
    /// (spec/client-store.md 6.3).
    async fn sync_shared(&self) -> Result<(Arc<Shared>, bool), ClientError> {
        let shared = self.shared()?;
        if shared.is_shutting_down() {
            return Err(ClientError::ShutDown);
        }
        if let Ok(conn) = shared.connection() {
            own_list_current(&shared, &conn).await;
        }
        let current = shared.list_fresh(&shared.engine.address.account);
        Ok((shared, current))
    }
}
