//! History bundles (spec/devices.md 8.7 and 8.9, spec/client-store.md 6.2): what the key
//! holder's builder takes from its store, in which order and within which bounds; what the
//! queued parts hold; and how a part is applied (nothing known replaced, invalid records
//! skipped and counted, de-duplication by processed tag).

use super::*;
use crate::content::{CONTENT_HISTORY_PART, decode_any, decode_content};
use crate::store::ListPin;
use sealpost_devices::{AccountKeyPair, DeviceRole, VerifiedDeviceList};
use sealpost_wire::devices::{
    ContactDevices, DeviceName, HistoryContact, HistoryDirection, HistoryMessage, HistoryPart,
    HistoryRecord, HistoryStatus, HistoryVerification,
};
use std::time::Duration;

const DAY: u64 = 86_400_000;
const NOW: u64 = 1_000 * DAY;
const SHOP: &str = "+15550007001";
const FRIEND: &str = "+15550007002";

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// `e`'s first list (version 1, `e` as primary) under a fresh account key.
fn list_of(e: &Engine) -> VerifiedDeviceList {
    AccountKeyPair::generate(&mut rand::rng())
        .first_list(
            &e.address.account,
            e.address.device.0,
            e.identity.public().to_wire(),
            DeviceRole::Primary,
            DeviceName::new("Shop").unwrap(),
            1,
            |m| e.identity.sign(m),
        )
        .unwrap()
}

fn text(id: MessageId, t: &str) -> Zeroizing<Vec<u8>> {
    encode_content(&id, &MessageBody::Text(t.into()))
}

/// A key holder's store: the shop pinned (verified) with a list, a friend without a list
/// (device 1 verified, device 3 unverified), and six history entries of several ages and
/// states. Returns the message ids in history order.
fn key_holder_with_history(phone: &Engine, shop: &Engine) -> Vec<MessageId> {
    let mut b = Batch::new();
    phone.store.put_list_pin(
        &mut b,
        &ListPin {
            list: list_of(shop),
            verification: Verification::Verified,
        },
    );
    // A contact record of a listed account is not sent on its own (the list says it).
    phone.store.put_contact(
        &mut b,
        &Contact {
            address: shop.address.clone(),
            identity: shop.identity.public(),
            first_seen: 1,
            changed_at: 1,
            verification: Verification::Verified,
        },
    );
    for (device, verification) in [(3, Verification::Unverified), (1, Verification::Verified)] {
        phone.store.put_contact(
            &mut b,
            &Contact {
                address: DeviceAddress::new(acct(FRIEND), DeviceId(device)),
                identity: IdentityKeyPair::generate(&mut rand::rng()).public(),
                first_seen: 1,
                changed_at: 1,
                verification,
            },
        );
    }
    let shop_device = shop.address.clone();
    let shop_account = DeviceAddress::new(acct(SHOP), DeviceId(0));
    let mut ids = Vec::new();
    for (direction, peer, at, status, body) in [
        // Older than 90 days: left out.
        (
            Direction::Incoming,
            &shop_device,
            NOW - 91 * DAY,
            MessageStatus::Received,
            "too old",
        ),
        (
            Direction::Outgoing,
            &shop_account,
            NOW - 10 * DAY,
            MessageStatus::Delivered {
                at: NOW - 10 * DAY + 5,
            },
            "hello shop",
        ),
        (
            Direction::Incoming,
            &shop_device,
            NOW - 9 * DAY,
            MessageStatus::Received,
            "welcome",
        ),
        (
            Direction::Outgoing,
            &shop_account,
            NOW - 8 * DAY,
            MessageStatus::Failed {
                at: NOW - 8 * DAY + 9,
            },
            "lost",
        ),
        // Still queued: never in a bundle (it reaches the device as a sent copy).
        (
            Direction::Outgoing,
            &shop_account,
            NOW - DAY,
            MessageStatus::Queued,
            "queued",
        ),
        (
            Direction::Incoming,
            &shop_device,
            NOW - 1,
            MessageStatus::Received,
            "newest",
        ),
    ] {
        let id = MessageId::random();
        phone
            .store
            .append_history(&mut b, direction, peer, at, status, &text(id, body))
            .unwrap();
        ids.push(id);
    }
    phone.store.commit(b).unwrap();
    ids
}

fn message_ids(records: &[HistoryRecord]) -> Vec<MessageId> {
    records
        .iter()
        .filter_map(|r| match r {
            HistoryRecord::Message(m) => Some(decode_content(&m.content).unwrap().0),
            HistoryRecord::Contact(_) => None,
        })
        .collect()
}

#[test]
fn the_bundle_holds_contacts_first_then_recent_messages_oldest_first() {
    let phone = engine("+15550007000", 1);
    let shop = engine(SHOP, 1);
    let ids = key_holder_with_history(&phone, &shop);
    let limits = BundleLimits::new(HISTORY_BUNDLE_MAX_MESSAGES, HISTORY_BUNDLE_MAX_AGE, NOW);
    let records = phone.history_records(limits).unwrap();
    assert_eq!(records.len(), 2 + 4, "{records:?}");
    // Contacts, by account id: the shop's pinned list with the account's state, then the
    // friend's two devices by device id with theirs.
    let HistoryRecord::Contact(HistoryContact {
        account,
        devices: ContactDevices::List { verification, list },
    }) = &records[0]
    else {
        panic!("{:?}", records[0]);
    };
    assert_eq!(account, &acct(SHOP));
    assert_eq!(*verification, HistoryVerification::Verified);
    assert_eq!(list, list_of_pin(&phone, SHOP).signed());
    let HistoryRecord::Contact(HistoryContact {
        account,
        devices: ContactDevices::Devices(devices),
    }) = &records[1]
    else {
        panic!("{:?}", records[1]);
    };
    assert_eq!(account, &acct(FRIEND));
    let got: Vec<_> = devices
        .iter()
        .map(|d| (d.device_id, d.verification))
        .collect();
    assert_eq!(
        got,
        vec![
            (DeviceId(1), HistoryVerification::Verified),
            (DeviceId(3), HistoryVerification::Unverified)
        ]
    );
    // Messages: not too old, not queued, oldest first, with their states and times.
    assert_eq!(message_ids(&records), vec![ids[1], ids[2], ids[3], ids[5]]);
    let HistoryRecord::Message(m) = &records[2] else {
        panic!()
    };
    assert_eq!(
        (m.direction, m.status, m.timestamp, m.status_at),
        (
            HistoryDirection::Outgoing,
            HistoryStatus::Delivered,
            NOW - 10 * DAY,
            NOW - 10 * DAY + 5
        )
    );
    assert_eq!(m.peer, DeviceAddress::new(acct(SHOP), DeviceId(0)));
    let HistoryRecord::Message(m) = &records[4] else {
        panic!()
    };
    assert_eq!(
        (m.status, m.status_at),
        (HistoryStatus::Failed, NOW - 8 * DAY + 9)
    );
    let HistoryRecord::Message(m) = &records[5] else {
        panic!()
    };
    assert_eq!(
        (m.direction, m.status, &m.peer),
        (
            HistoryDirection::Incoming,
            HistoryStatus::Received,
            &shop.address
        )
    );
}

fn list_of_pin(e: &Engine, account: &str) -> VerifiedDeviceList {
    e.store.list_pin(&acct(account)).unwrap().unwrap().list
}

#[test]
fn count_and_age_bounds_keep_the_newest_messages() {
    let phone = engine("+15550007000", 1);
    let shop = engine(SHOP, 1);
    let ids = key_holder_with_history(&phone, &shop);
    let records = |max: usize, age: Duration| {
        message_ids(
            &phone
                .history_records(BundleLimits::new(max, age, NOW))
                .unwrap(),
        )
    };
    let all = HISTORY_BUNDLE_MAX_AGE;
    // The count keeps the newest (queued and too-old entries do not count).
    assert_eq!(records(2, all), vec![ids[3], ids[5]]);
    assert_eq!(records(1, all), vec![ids[5]]);
    assert_eq!(records(0, all), Vec::<MessageId>::new());
    // The age: a message exactly at the bound is in, one older is out.
    assert_eq!(
        records(100, Duration::from_millis(9 * DAY)),
        vec![ids[2], ids[3], ids[5]]
    );
    assert_eq!(
        records(100, Duration::from_millis(9 * DAY - 1)),
        vec![ids[3], ids[5]]
    );
    assert_eq!(
        records(100, Duration::from_secs(365 * 24 * 3600)),
        vec![ids[0], ids[1], ids[2], ids[3], ids[5]]
    );
    // Both: the newest within the age.
    assert_eq!(records(1, Duration::from_millis(9 * DAY)), vec![ids[5]]);
    // Contacts are sent whatever the bounds.
    let contacts = phone
        .history_records(BundleLimits::new(0, Duration::ZERO, NOW))
        .unwrap();
    assert_eq!(contacts.len(), 2);
    // Defaults as documented.
    assert_eq!(HISTORY_BUNDLE_MAX_MESSAGES, 1_000);
    assert_eq!(HISTORY_BUNDLE_MAX_AGE, Duration::from_secs(90 * 86_400));
}

/// The queued parts: one outbox entry per part, to this account, for the new device only,
/// with no history entry; their contents decode back to the records.
#[test]
fn queued_parts_are_targeted_outbox_entries_carrying_the_records() {
    let phone = engine("+15550007000", 1);
    let shop = engine(SHOP, 1);
    key_holder_with_history(&phone, &shop);
    // Large messages: three of them do not fit one part.
    let mut b = Batch::new();
    for _ in 0..3 {
        let id = MessageId::random();
        let body = MessageBody::Bytes(vec![7; 100_000]);
        phone
            .store
            .append_history(
                &mut b,
                Direction::Incoming,
                &shop.address,
                NOW - 2,
                MessageStatus::Received,
                &encode_content(&id, &body),
            )
            .unwrap();
    }
    phone.store.commit(b).unwrap();
    let limits = BundleLimits::new(HISTORY_BUNDLE_MAX_MESSAGES, HISTORY_BUNDLE_MAX_AGE, NOW);
    let expected = phone.history_records(limits).unwrap();
    let history_before = phone.store.history(&acct(SHOP), 100).unwrap();
    let parts = phone
        .queue_history_bundle(DeviceId(4), limits, NOW)
        .unwrap();
    assert_eq!(parts, 2);
    assert_eq!(phone.store.outbox_len().unwrap(), 2);
    assert_eq!(
        phone.store.history(&acct(SHOP), 100).unwrap(),
        history_before
    );
    let mut records = Vec::new();
    let mut bundle = None;
    for (i, entry) in phone.store.outbox_head(10).unwrap().into_iter().enumerate() {
        assert_eq!(entry.recipient, phone.address.account);
        assert_eq!(entry.target, Some(DeviceId(4)));
        assert_eq!((entry.history_seq, entry.created_at), (0, NOW));
        assert_eq!(entry.content[1], CONTENT_HISTORY_PART);
        let (id, Content::HistoryPart(part)) = decode_any(&entry.content).unwrap() else {
            panic!("not a history part");
        };
        assert_eq!(id, entry.message_id);
        assert_eq!(usize::from(part.index), i);
        assert_eq!(part.last, i == 1);
        assert_eq!(*bundle.get_or_insert(part.bundle_id), part.bundle_id);
        records.extend(part.records);
    }
    assert_eq!(records, expected);
}

/// A part with `records`, as the key holder packs it.
fn part(records: Vec<HistoryRecord>) -> HistoryPart {
    let mut packed = sealpost_wire::devices::pack_history([9; 16], records).unwrap();
    packed.parts.remove(0)
}

fn imported(e: &Engine, part: &HistoryPart) -> (u32, u32, u32) {
    let mut b = Batch::new();
    let ev = e.apply_history_part(&mut b, part, NOW, NOW).unwrap();
    e.store.commit(b).unwrap();
    match ev {
        ClientEvent::HistoryImported {
            contacts,
            messages,
            invalid,
            last,
        } => {
            assert!(last);
            (contacts, messages, invalid)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_part_is_applied_once_without_replacing_what_the_device_knows() {
    let phone = engine("+15550007000", 1);
    let shop = engine(SHOP, 1);
    let ids = key_holder_with_history(&phone, &shop);
    let limits = BundleLimits::new(HISTORY_BUNDLE_MAX_MESSAGES, HISTORY_BUNDLE_MAX_AGE, NOW);
    let records = phone.history_records(limits).unwrap();
    let desktop = engine("+15550007000", 2);
    // The desktop already knows friend device 3 (verified there) and got "welcome" live.
    let friend3 = DeviceAddress::new(acct(FRIEND), DeviceId(3));
    let own_identity = IdentityKeyPair::generate(&mut rand::rng()).public();
    let mut b = Batch::new();
    desktop.store.put_contact(
        &mut b,
        &Contact {
            address: friend3.clone(),
            identity: own_identity,
            first_seen: 5,
            changed_at: 5,
            verification: Verification::Verified,
        },
    );
    desktop
        .store
        .append_history(
            &mut b,
            Direction::Incoming,
            &shop.address,
            NOW - 9 * DAY,
            MessageStatus::Received,
            &text(ids[2], "welcome"),
        )
        .unwrap();
    desktop
        .store
        .mark_processed(&mut b, &shop.address, &ids[2], NOW);
    desktop.store.commit(b).unwrap();

    // Contacts: the shop's pin and the friend's device 1 are new; "welcome" is skipped.
    assert_eq!(imported(&desktop, &part(records.clone())), (2, 3, 0));
    let pin = desktop.store.list_pin(&acct(SHOP)).unwrap().unwrap();
    assert_eq!(pin.verification, Verification::Verified);
    assert_eq!(pin.list, list_of_pin(&phone, SHOP));
    let friend = desktop.store.contacts(&acct(FRIEND)).unwrap();
    assert_eq!(friend.len(), 2);
    assert_eq!(friend[0].verification, Verification::Verified);
    assert_eq!(
        (friend[1].identity, friend[1].first_seen),
        (own_identity, 5),
        "a known device is not replaced"
    );
    // The desktop's history now matches the phone's, apart from the order "welcome" came in.
    let strip = |h: Vec<crate::store::HistoryEntry>| {
        let mut v: Vec<_> = h
            .into_iter()
            .map(|e| {
                (
                    e.direction,
                    e.peer,
                    e.message_id,
                    e.timestamp,
                    e.status,
                    e.body,
                )
            })
            .collect();
        v.sort_by_key(|x| x.3);
        v
    };
    let at_phone: Vec<_> = strip(phone.store.history(&acct(SHOP), 100).unwrap())
        .into_iter()
        .filter(|x| x.2 != ids[0] && x.2 != ids[4])
        .collect();
    assert_eq!(
        strip(desktop.store.history(&acct(SHOP), 100).unwrap()),
        at_phone
    );

    // The same part again (or a second bundle) imports nothing.
    assert_eq!(imported(&desktop, &part(records)), (0, 0, 0));
    assert_eq!(desktop.store.history(&acct(SHOP), 100).unwrap().len(), 4);
}

#[test]
fn invalid_records_are_skipped_and_counted() {
    let shop = engine(SHOP, 1);
    let desktop = engine("+15550007000", 2);
    let good = MessageId::random();
    let message = |content: Vec<u8>| {
        HistoryRecord::Message(HistoryMessage {
            direction: HistoryDirection::Incoming,
            peer: shop.address.clone(),
            timestamp: 3,
            status: HistoryStatus::Received,
            status_at: 0,
            content,
        })
    };
    let copy_id = MessageId::random();
    let records = vec![
        // The shop's list claimed for another account: does not verify for it.
        HistoryRecord::Contact(HistoryContact {
            account: acct(FRIEND),
            devices: ContactDevices::List {
                verification: HistoryVerification::Verified,
                list: list_of(&shop).signed().clone(),
            },
        }),
        // A contact record of this very account.
        HistoryRecord::Contact(HistoryContact {
            account: desktop.address.account.clone(),
            devices: ContactDevices::List {
                verification: HistoryVerification::Verified,
                list: list_of(&desktop).signed().clone(),
            },
        }),
        // Content that is not a message: a sent copy, an unknown kind, non-UTF-8 text.
        message(
            encode_sent_copy(&copy_id, &acct(FRIEND), 1, 2, &text(good, "x"))
                .unwrap()
                .to_vec(),
        ),
        message(vec![
            1, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]),
        message({
            let mut c = text(MessageId::random(), "").to_vec();
            c.push(0xff);
            c
        }),
        // A good one.
        message(text(good, "fine").to_vec()),
    ];
    assert_eq!(imported(&desktop, &part(records)), (0, 1, 5));
    assert!(desktop.store.list_pin(&acct(FRIEND)).unwrap().is_none());
    let h = desktop.store.history(&acct(SHOP), 10).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].message_id, good);
    // A message this device sent itself is never imported again.
    let mine = desktop
        .enqueue(&acct(SHOP), &MessageBody::Text("mine".into()), 7)
        .unwrap();
    let entry = desktop.outbox_head().unwrap().unwrap();
    let own = HistoryRecord::Message(HistoryMessage {
        direction: HistoryDirection::Outgoing,
        peer: DeviceAddress::new(acct(SHOP), DeviceId(0)),
        timestamp: 7,
        status: HistoryStatus::Delivered,
        status_at: 8,
        content: entry.content.to_vec(),
    });
    assert_eq!(entry.message_id, mine);
    assert_eq!(imported(&desktop, &part(vec![own])), (0, 0, 0));
    assert_eq!(desktop.store.history(&acct(SHOP), 10).unwrap().len(), 2);
}
