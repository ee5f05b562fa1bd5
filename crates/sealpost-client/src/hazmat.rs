//! Test-only entry points, behind the non-default `hazmat` feature: they make stores that a
//! real client never makes, to test what other clients do with them. Never enable it in an
//! application.

use crate::content::{
    MessageBody, MessageId, SyncItem, encode_content, encode_history_part, encode_sent_copy,
    encode_sync,
};
use crate::error::ClientError;
use crate::event::EventReceiver;
use crate::store::{AccountRecord, Batch, Store};
use crate::{Client, ClientConfig};
use sealpost_session::IdentityKeyPair;
use sealpost_wire::devices::{HistoryRecord, pack_history};
use sealpost_wire::{AccountId, DeviceId};

/// Registers like [`Client::register`], as a client from before linked devices did: no
/// account key, no device list published (a version-1 account, spec/devices.md 8.5). The
/// store upgrades when it is next opened with [`Client::open`].
pub async fn register_version1(
    store: Store,
    config: ClientConfig,
    account: AccountId,
    code: &str,
) -> Result<(Client, EventReceiver), ClientError> {
    Client::register_inner(store, config, account, code, None, false).await
}

/// Writes a registered device's account record into an empty store: `identity` as device
/// `device` of `account`, whatever the relay or the account's list say (a device the relay
/// added on its own, for tests of the ghost-device attack).
pub fn install_device(
    store: &Store,
    account: AccountId,
    device: DeviceId,
    identity: IdentityKeyPair,
) -> Result<(), ClientError> {
    let mut batch = Batch::new();
    store.put_account(
        &mut batch,
        &AccountRecord {
            identity,
            account,
            device: Some(device),
            registered_at: 1,
        },
    );
    Ok(store.commit(batch)?)
}

/// Sends `to` a sent copy (spec/client-store.md section 6.1) claiming that `client`'s
/// account sent `body` with the message id `message_id` to `claimed_recipient`, whoever
/// `client` is: a forger outside `to`'s own devices, or an own device sending the same
/// copy twice. Returns the copy's own message id. A receiver must reject it unless
/// `client` is a device on `to`'s own list.
pub async fn send_sent_copy(
    client: &Client,
    to: &AccountId,
    claimed_recipient: &AccountId,
    message_id: MessageId,
    body: &MessageBody,
) -> Result<MessageId, ClientError> {
    let inner = encode_content(&message_id, body);
    let copy_id = MessageId::random();
    let content = encode_sent_copy(&copy_id, claimed_recipient, 1, 2, &inner).ok_or(
        ClientError::MessageTooLong {
            len: inner.len(),
            max: sealpost_wire::MAX_PLAINTEXT_LEN,
        },
    )?;
    client.send_raw(to, copy_id, content).await?;
    Ok(copy_id)
}

/// One item of a sync content (spec/client-store.md section 6.3) about the conversation
/// with some account, for [`send_sync`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Read up to and including this message.
    ReadUpTo(MessageId),
    /// These messages were deleted (1 ..= [`crate::MAX_SYNC_DELETE_IDS`]).
    DeleteMessages(Vec<MessageId>),
    /// The whole conversation was deleted.
    DeleteConversation,
}

/// Sends every device of `to` a sync content with one item, `action` on the conversation
/// with `peer`, as `client`, whoever `client` is: a forger outside `to`'s own devices.
/// Returns the sync's message id. A receiver must reject it unless `client` is a device on
/// `to`'s own list; with `to` the own account it is what the SDK sends, to the own other
/// devices.
pub async fn send_sync(
    client: &Client,
    to: &AccountId,
    peer: &AccountId,
    action: SyncAction,
) -> Result<MessageId, ClientError> {
    let peer = peer.clone();
    let count = match &action {
        SyncAction::DeleteMessages(ids) => ids.len(),
        _ => 0,
    };
    let item = match action {
        SyncAction::ReadUpTo(up_to) => SyncItem::ReadUpTo { peer, up_to },
        SyncAction::DeleteMessages(ids) => SyncItem::DeleteMessages { peer, ids },
        SyncAction::DeleteConversation => SyncItem::DeleteConversation { peer },
    };
    let message_id = MessageId::random();
    // Only a deletion can break a bound (no ids, or too many).
    let content = encode_sync(&message_id, &[item]).ok_or(ClientError::TooManyMessageIds {
        count,
        max: crate::MAX_SYNC_DELETE_IDS,
    })?;
    client.send_raw(to, message_id, content).await?;
    Ok(message_id)
}

/// Queues, on the key holder `client`, the history bundle it would queue for device
/// `target` when linking it ([`Client::link_device`]), now, from its store as it is: a
/// second bundle to a device that already has one (every record it already knows must be
/// skipped). Returns the number of parts.
pub async fn send_history_bundle(client: &Client, target: DeviceId) -> Result<usize, ClientError> {
    client.queue_history(target).await
}

/// Sends every device of `to` one history part (content kind `0x10`) holding `records`, as
/// `client`, whoever `client` is: a forger outside `to`'s key holder. Returns the part's
/// message id. A receiver must reject it unless `client` is the key holder on `to`'s own
/// list.
pub async fn send_history_part(
    client: &Client,
    to: &AccountId,
    records: Vec<HistoryRecord>,
) -> Result<MessageId, ClientError> {
    let bundle_id = *sealpost_crypto::random_array::<16, _>(&mut rand::rng());
    let packed = pack_history(bundle_id, records)?;
    let part = packed
        .parts
        .first()
        .ok_or(ClientError::NoDevices)?
        .encode()?;
    let message_id = MessageId::random();
    let content = encode_history_part(&message_id, &part);
    client.send_raw(to, message_id, content).await?;
    Ok(message_id)
}

/// One message of a handoff as a tampering test sees it (spec/business.md 8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffMessage {
    /// The sending account's side.
    pub side: sealpost_wire::business::Side,
    /// The sending device.
    pub device: u32,
    /// When the relay accepted it.
    pub timestamp: u64,
    /// Its content encoding (version, kind, message id, body).
    pub content: Vec<u8>,
}

/// [`Client::transfer`] on a business device that alters the conversation it hands on:
/// `tamper` gets the messages it would send and may change, drop, reorder or add any.
/// The new devices must detect it against the customer's confirmation.
pub async fn transfer_tampered(
    client: &Client,
    customer: &AccountId,
    to: &[DeviceId],
    note: &str,
    tamper: impl Fn(&mut Vec<HandoffMessage>) + Send + 'static,
) -> Result<u64, ClientError> {
    use crate::desk::HandoffEntry;
    use sealpost_crypto::Zeroizing;
    let hook = move |entries: &mut Vec<HandoffEntry>| {
        let mut open: Vec<HandoffMessage> = entries
            .iter()
            .map(|e| HandoffMessage {
                side: e.side,
                device: e.device,
                timestamp: e.timestamp,
                content: e.content.to_vec(),
            })
            .collect();
        tamper(&mut open);
        *entries = open
            .into_iter()
            .map(|m| HandoffEntry {
                side: m.side,
                device: m.device,
                timestamp: m.timestamp,
                content: Zeroizing::new(m.content),
            })
            .collect();
    };
    client
        .transfer_tampered(customer, to, note, Box::new(hook))
        .await
}

/// The content encoding of a text message with id `id` (for a tampering test's invented
/// message).
pub fn text_content(id: MessageId, text: &str) -> Vec<u8> {
    encode_content(&id, &MessageBody::Text(text.to_owned())).to_vec()
}
