//! Sync messages (spec/client-store.md section 6.3): the local changes and what they queue,
//! how a received sync content is applied (in order, idempotently, a read marker never
//! moving back, deleted messages staying out), and who it is accepted from.

use super::*;
use crate::content::{CONTENT_SYNC, SyncItem, encode_sync};
use crate::store::OwnDevices;
use sealpost_devices::{AccountKeyPair, DeviceRole, LinkRequest, seal_provisioning};
use sealpost_wire::devices::{
    DeviceName, HistoryDirection, HistoryMessage, HistoryPart, HistoryRecord, HistoryStatus,
};

const OWN: &str = "+15550008000";
const SHOP: &str = "+15550008001";

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// Phone (device 1, key holder) and desktop (device 2) of one account, each with the
/// account's two-device list as its own list.
fn phone_and_desktop() -> (Engine, Engine) {
    let phone = engine(OWN, 1);
    let desktop = engine(OWN, 2);
    let mut rng = rand::rng();
    let key = AccountKeyPair::generate(&mut rng);
    let first = key
        .first_list(
            &acct(OWN),
            1,
            phone.identity.public().to_wire(),
            DeviceRole::Primary,
            DeviceName::new("Phone").unwrap(),
            1,
            |m| phone.identity.sign(m),
        )
        .unwrap();
    let request = LinkRequest::new(&mut rng, [7; 16], desktop.identity.public().to_wire());
    let body = key
        .link_device(
            &first,
            desktop.identity.public().to_wire(),
            DeviceRole::Linked,
            DeviceName::new("Desktop").unwrap(),
            2,
        )
        .unwrap();
    let sealed = seal_provisioning(&mut rng, request.invitation(), &body).unwrap();
    let list = request
        .open(&sealed)
        .unwrap()
        .complete(|m| desktop.identity.sign(m))
        .unwrap();
    for (e, account_key) in [(&phone, Some(key)), (&desktop, None)] {
        let mut b = Batch::new();
        e.store.put_own_devices(
            &mut b,
            &OwnDevices {
                account_key,
                list: list.clone(),
                published: true,
            },
        );
        e.store.commit(b).unwrap();
    }
    (phone, desktop)
}

/// Appends an incoming text from the shop's device 1 (with its processed tag, as a live
/// delivery commits it) and returns its id.
fn receive(e: &Engine, text: &str, at: u64) -> MessageId {
    let id = MessageId::random();
    let from = DeviceAddress::new(acct(SHOP), DeviceId(1));
    let mut b = Batch::new();
    e.store
        .append_history(
            &mut b,
            Direction::Incoming,
            &from,
            at,
            MessageStatus::Received,
            &encode_content(&id, &MessageBody::Text(text.into())),
        )
        .unwrap();
    e.store.mark_processed(&mut b, &from, &id, at);
    e.store.commit(b).unwrap();
    id
}

fn ids_of(e: &Engine) -> Vec<MessageId> {
    e.store
        .history(&acct(SHOP), 100)
        .unwrap()
        .into_iter()
        .map(|h| h.message_id)
        .collect()
}

/// Applies `items` as a sync from device 1 and commits.
fn apply(e: &Engine, items: Vec<SyncItem>) -> Vec<ClientEvent> {
    let mut b = Batch::new();
    let events = e.apply_sync(&mut b, DeviceId(1), items).unwrap();
    e.store.commit(b).unwrap();
    events
}

/// The only outbox entry, which must be a sync content to the own account; its items.
fn queued_sync(e: &Engine) -> Vec<SyncItem> {
    let entries = e.store.outbox_head(10).unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.recipient, e.address.account);
    assert_eq!((entry.history_seq, entry.target), (0, None));
    assert_eq!(entry.content[1], CONTENT_SYNC);
    let (id, Content::Sync(items)) = decode_any(&entry.content).unwrap() else {
        panic!("not a sync content");
    };
    assert_eq!(id, entry.message_id);
    let mut b = Batch::new();
    e.store.delete_outbox(&mut b, entry.seq);
    e.store.commit(b).unwrap();
    items
}

#[test]
fn local_changes_apply_at_once_and_queue_one_sync_for_the_other_devices() {
    let (phone, _desktop) = phone_and_desktop();
    let shop = acct(SHOP);
    let ids: Vec<_> = (0..4)
        .map(|i| receive(&phone, &format!("m{i}"), i))
        .collect();
    assert_eq!(phone.unread_count(&shop).unwrap(), 4);

    assert!(phone.mark_read(&shop, ids[1], true, 10).unwrap());
    assert_eq!(phone.read_up_to(&shop).unwrap(), Some(ids[1]));
    assert_eq!(phone.unread_count(&shop).unwrap(), 2);
    assert_eq!(
        queued_sync(&phone),
        vec![SyncItem::ReadUpTo {
            peer: shop.clone(),
            up_to: ids[1]
        }]
    );
    // Never backwards, and the same marker again: nothing changes, nothing is queued.
    for id in [ids[0], ids[1]] {
        assert!(!phone.mark_read(&shop, id, true, 11).unwrap());
    }
    assert_eq!(phone.read_up_to(&shop).unwrap(), Some(ids[1]));
    assert_eq!(phone.store.outbox_len().unwrap(), 0);
    // A message not in the conversation is an error and changes nothing.
    let unknown = MessageId::random();
    assert_eq!(
        phone.mark_read(&shop, unknown, true, 12),
        Err(ClientError::UnknownMessage {
            message_id: unknown
        })
    );
    assert_eq!(phone.store.outbox_len().unwrap(), 0);

    // Deleting: the entries go here; the sync names every id given.
    assert_eq!(
        phone
            .delete_messages(&shop, &[ids[2], unknown], true, 13)
            .unwrap(),
        1
    );
    assert_eq!(ids_of(&phone), vec![ids[0], ids[1], ids[3]]);
    assert_eq!(
        queued_sync(&phone),
        vec![SyncItem::DeleteMessages {
            peer: shop.clone(),
            ids: vec![ids[2], unknown]
        }]
    );
    assert_eq!(phone.delete_messages(&shop, &[], true, 14).unwrap(), 0);
    assert_eq!(phone.store.outbox_len().unwrap(), 0);
    let too_many = vec![unknown; crate::MAX_SYNC_DELETE_IDS + 1];
    assert_eq!(
        phone.delete_messages(&shop, &too_many, true, 14),
        Err(ClientError::TooManyMessageIds {
            count: crate::MAX_SYNC_DELETE_IDS + 1,
            max: crate::MAX_SYNC_DELETE_IDS
        })
    );
    assert_eq!(phone.store.outbox_len().unwrap(), 0);

    phone.delete_conversation(&shop, true, 15).unwrap();
    assert!(ids_of(&phone).is_empty());
    assert_eq!(phone.read_up_to(&shop).unwrap(), None);
    assert_eq!(
        queued_sync(&phone),
        vec![SyncItem::DeleteConversation { peer: shop }]
    );
}

#[test]
fn a_device_alone_on_its_account_queues_nothing_while_its_list_is_current() {
    let shop = acct(SHOP);
    // Without an own list (a version-1 store) and with a list naming only this device.
    let unlisted = engine(OWN, 1);
    let alone = {
        let e = engine(OWN, 1);
        let key = AccountKeyPair::generate(&mut rand::rng());
        let list = key
            .first_list(
                &acct(OWN),
                1,
                e.identity.public().to_wire(),
                DeviceRole::Primary,
                DeviceName::new("Phone").unwrap(),
                1,
                |m| e.identity.sign(m),
            )
            .unwrap();
        let mut b = Batch::new();
        e.store.put_own_devices(
            &mut b,
            &OwnDevices {
                account_key: Some(key),
                list,
                published: true,
            },
        );
        e.store.commit(b).unwrap();
        e
    };
    for e in [&unlisted, &alone] {
        let a = receive(e, "a", 1);
        let b = receive(e, "b", 2);
        assert!(e.mark_read(&shop, a, true, 3).unwrap());
        assert_eq!(e.delete_messages(&shop, &[b], true, 4).unwrap(), 1);
        e.delete_conversation(&shop, true, 5).unwrap();
        assert!(ids_of(e).is_empty());
        assert_eq!(e.store.outbox_len().unwrap(), 0);
    }
    // With a list that may be out of date (offline: a device may have been linked since),
    // the sync is queued; the send loop decides with the fetched list.
    let c = receive(&alone, "c", 6);
    assert!(alone.mark_read(&shop, c, false, 7).unwrap());
    assert_eq!(
        queued_sync(&alone),
        vec![SyncItem::ReadUpTo {
            peer: shop,
            up_to: c
        }]
    );
}

#[test]
fn received_items_apply_in_order_idempotently_and_never_move_the_marker_back() {
    let (_phone, desktop) = phone_and_desktop();
    let shop = acct(SHOP);
    let ids: Vec<_> = (0..4)
        .map(|i| receive(&desktop, &format!("m{i}"), i))
        .collect();
    let read = |up_to| SyncItem::ReadUpTo {
        peer: shop.clone(),
        up_to,
    };
    let read_event = |up_to| ClientEvent::ReadOnOtherDevice {
        device: DeviceId(1),
        peer: shop.clone(),
        up_to,
    };
    assert_eq!(
        apply(&desktop, vec![read(ids[2])]),
        vec![read_event(ids[2])]
    );
    assert_eq!(desktop.unread_count(&shop).unwrap(), 1);
    // Again, further back, or a message this device does not have: no event, no change.
    for id in [ids[2], ids[0], MessageId::random()] {
        assert!(apply(&desktop, vec![read(id)]).is_empty());
    }
    assert_eq!(desktop.read_up_to(&shop).unwrap(), Some(ids[2]));

    // Deleting: only the ids this device has are reported; unknown ids are no-ops.
    let unknown = MessageId::random();
    let delete = |ids: Vec<MessageId>| SyncItem::DeleteMessages {
        peer: shop.clone(),
        ids,
    };
    assert_eq!(
        apply(&desktop, vec![delete(vec![unknown, ids[3], ids[1]])]),
        vec![ClientEvent::DeletedOnOtherDevice {
            device: DeviceId(1),
            peer: shop.clone(),
            message_ids: vec![ids[1], ids[3]],
        }]
    );
    assert!(apply(&desktop, vec![delete(vec![ids[1], unknown])]).is_empty());
    assert_eq!(ids_of(&desktop), vec![ids[0], ids[2]]);
    // The marker keeps its position when its message is deleted; a later message moves it.
    assert_eq!(apply(&desktop, vec![delete(vec![ids[2]])]).len(), 1);
    assert_eq!(desktop.read_up_to(&shop).unwrap(), Some(ids[2]));
    let later = receive(&desktop, "later", 9);
    assert_eq!(desktop.unread_count(&shop).unwrap(), 1);

    // Items of one content see the items before them: a read of a message deleted by an
    // earlier item, or of a conversation deleted by one, changes nothing.
    let events = apply(
        &desktop,
        vec![
            delete(vec![later]),
            read(later),
            SyncItem::DeleteConversation { peer: shop.clone() },
            read(ids[0]),
        ],
    );
    assert_eq!(
        events,
        vec![
            ClientEvent::DeletedOnOtherDevice {
                device: DeviceId(1),
                peer: shop.clone(),
                message_ids: vec![later],
            },
            ClientEvent::ConversationDeletedOnOtherDevice {
                device: DeviceId(1),
                peer: shop.clone(),
            },
        ]
    );
    assert!(ids_of(&desktop).is_empty());
    assert_eq!(desktop.store.read_marker(&shop).unwrap(), None);
    // Deleting a conversation that is not here: no event.
    assert!(apply(&desktop, vec![SyncItem::DeleteConversation { peer: shop }]).is_empty());
}

#[test]
fn a_deleted_message_does_not_come_back_from_a_history_bundle() {
    let (_phone, desktop) = phone_and_desktop();
    let shop = acct(SHOP);
    let gone = receive(&desktop, "gone", 1);
    let kept = receive(&desktop, "kept", 2);
    assert_eq!(
        apply(
            &desktop,
            vec![SyncItem::DeleteMessages {
                peer: shop.clone(),
                ids: vec![gone]
            }]
        )
        .len(),
        1
    );
    let record = HistoryRecord::Message(HistoryMessage {
        direction: HistoryDirection::Incoming,
        peer: DeviceAddress::new(shop.clone(), DeviceId(1)),
        timestamp: 1,
        status: HistoryStatus::Received,
        status_at: 0,
        content: encode_content(&gone, &MessageBody::Text("gone".into())).to_vec(),
    });
    let part: HistoryPart = sealpost_wire::devices::pack_history([3; 16], vec![record])
        .unwrap()
        .parts
        .remove(0);
    let mut b = Batch::new();
    let event = desktop.apply_history_part(&mut b, &part, 5, 5).unwrap();
    desktop.store.commit(b).unwrap();
    assert!(matches!(
        event,
        ClientEvent::HistoryImported { messages: 0, .. }
    ));
    assert_eq!(ids_of(&desktop), vec![kept]);
}

/// Encrypts `content` from `from` to every device of `to`'s account it has a session with
/// and returns the deliveries.
fn deliveries(from: &Engine, to: &AccountId, content: Zeroizing<Vec<u8>>) -> Vec<Delivery> {
    let message_id = MessageId::from_bytes(content[2..18].try_into().unwrap());
    let entry = OutboxEntry {
        seq: from.store.new_outbox_seq().unwrap(),
        message_id,
        recipient: to.clone(),
        history_seq: 0,
        created_at: 1,
        content,
        envelopes: None,
        sender_seq: 0,
        target: None,
    };
    let devices = from.recipient_devices(to).unwrap();
    let entry = from.prepare(entry, &devices).unwrap();
    from.complete(&entry, 50).unwrap();
    entry
        .envelopes
        .unwrap()
        .into_iter()
        .map(|e| Delivery {
            server_id: 1,
            sender: from.address.clone(),
            message_id: *message_id.as_bytes(),
            timestamp: 50,
            envelope: e.envelope,
        })
        .collect()
}

#[test]
fn a_sync_is_accepted_only_from_an_own_listed_device() {
    let (phone, desktop) = phone_and_desktop();
    let shop = acct(SHOP);
    let read_id = receive(&desktop, "hello", 1);
    let content = |peer: &AccountId| {
        encode_sync(
            &MessageId::random(),
            &[SyncItem::ReadUpTo {
                peer: peer.clone(),
                up_to: read_id,
            }],
        )
        .unwrap()
    };

    // A rejected handshake commits nothing, so the same bundle serves every sender here.
    let desktop_bundle = bundle(&desktop);
    // Another account (the shop itself) forges a sync: rejected, nothing changes.
    let forger = engine(SHOP, 1);
    forger
        .apply_refresh(
            &acct(OWN),
            None,
            std::slice::from_ref(&desktop_bundle),
            1,
            false,
        )
        .unwrap();
    let forged = deliveries(&forger, &acct(OWN), content(&shop));
    assert_eq!(forged.len(), 1);
    assert!(matches!(
        desktop.process_delivery(&forged[0], 60).unwrap(),
        Processed::Rejected(_)
    ));
    assert_eq!(desktop.read_up_to(&shop).unwrap(), None);

    // A device of this account that its own list does not name: fetched again, then
    // dropped (spec/devices.md 8.2); nothing changes.
    let ghost = engine(OWN, 5);
    ghost
        .apply_refresh(
            &acct(OWN),
            None,
            std::slice::from_ref(&desktop_bundle),
            1,
            false,
        )
        .unwrap();
    let ghostly = deliveries(&ghost, &acct(OWN), content(&shop));
    assert!(matches!(
        desktop.process_delivery(&ghostly[0], 60).unwrap(),
        Processed::Unlisted
    ));
    assert_eq!(desktop.read_up_to(&shop).unwrap(), None);

    // The phone, on the list: accepted, the marker moves, one event.
    phone
        .apply_refresh(&acct(OWN), None, &[desktop_bundle], 1, true)
        .unwrap();
    let genuine = deliveries(&phone, &acct(OWN), content(&shop));
    match desktop.process_delivery(&genuine[0], 60).unwrap() {
        Processed::Accepted(events) => assert_eq!(
            events,
            vec![ClientEvent::ReadOnOtherDevice {
                device: DeviceId(1),
                peer: shop.clone(),
                up_to: read_id
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        desktop.store.read_marker(&shop).unwrap().map(|m| m.up_to),
        Some(read_id)
    );
    // Delivered again: a duplicate.
    assert!(matches!(
        desktop.process_delivery(&genuine[0], 60).unwrap(),
        Processed::Duplicate
    ));
    // A sync is bookkeeping: no history entry on either side, nothing left queued.
    assert_eq!(ids_of(&desktop), vec![read_id]);
    assert_eq!(phone.store.outbox_len().unwrap(), 0);
}

#[test]
fn a_queued_message_deleted_before_delivery_gets_no_sent_copy() {
    let (phone, _desktop) = phone_and_desktop();
    let shop = acct(SHOP);
    let kept = phone
        .enqueue(&shop, &MessageBody::Text("kept".into()), 1)
        .unwrap();
    let gone = phone
        .enqueue(&shop, &MessageBody::Text("gone".into()), 2)
        .unwrap();
    assert_eq!(phone.delete_messages(&shop, &[gone], true, 3).unwrap(), 1);
    assert_eq!(ids_of(&phone), vec![kept]);
    // The two messages, then the sync of the deletion.
    let entries = phone.store.outbox_head(10).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!((entries[0].message_id, entries[1].message_id), (kept, gone));
    assert_eq!(entries[2].content[1], CONTENT_SYNC);
    // Delivered: the kept message gets its copy, the deleted one none (and no history
    // entry comes back for it).
    assert!(phone.complete(&entries[0], 10).unwrap());
    assert!(!phone.complete(&entries[1], 11).unwrap());
    assert_eq!(ids_of(&phone), vec![kept]);
    let copies = phone
        .store
        .outbox_head(10)
        .unwrap()
        .into_iter()
        .filter(|e| crate::content::is_sent_copy(&e.content))
        .count();
    assert_eq!(copies, 1);
}
