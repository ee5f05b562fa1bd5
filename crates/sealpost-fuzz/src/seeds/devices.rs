//! Seeds of the linked-devices targets: device lists and provisioning.

use super::{Seed, seed};
use sealpost_wire::devices::{
    ContactDevices, HistoryContact, HistoryDevice, HistoryDirection, HistoryMessage, HistoryPart,
    HistoryRecord, HistoryStatus, HistoryVerification, SignedDeviceList,
};
use sealpost_wire::{DeviceAddress, DeviceId};

pub(super) fn device_lists() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "device_list";
    let mut v = vec![
        seed(t, "v1", f.v1.as_bytes()),
        seed(t, "v2", f.v2.as_bytes()),
    ];
    // A flipped bit in the signature, and in the last binding.
    let mut bad_signature = f.v2.as_bytes().to_vec();
    let at = bad_signature.len() - 3 * 64;
    bad_signature[at] ^= 1;
    v.push(seed(t, "v2-bad-signature", bad_signature));
    let mut bad_binding = f.v2.as_bytes().to_vec();
    let last = bad_binding.len() - 1;
    bad_binding[last] ^= 1;
    v.push(seed(t, "v2-bad-binding", bad_binding));
    v
}

pub(super) fn provisioning() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "provisioning_open";
    let mut tampered = f.envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    vec![
        seed(t, "genuine", f.envelope.clone()),
        seed(t, "tampered", tampered),
        seed(t, "truncated", f.envelope[..40].to_vec()),
        seed(
            t,
            "invitation-text",
            f.request.invitation_text().into_bytes(),
        ),
    ]
}

pub(super) fn history_parts() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "history_part";
    let friend = sealpost_wire::AccountId::new("+15551230002").unwrap();
    let content = |text: &str| {
        let mut c = vec![0x01, 0x01];
        c.extend_from_slice(&[0x33; 16]);
        c.extend_from_slice(text.as_bytes());
        c
    };
    let records = vec![
        HistoryRecord::Contact(HistoryContact {
            account: friend.clone(),
            devices: ContactDevices::Devices(vec![HistoryDevice {
                device_id: DeviceId(1),
                identity: f.v1.entries()[0].identity,
                verification: HistoryVerification::Verified,
            }]),
        }),
        HistoryRecord::Contact(HistoryContact {
            account: f.account.clone(),
            devices: ContactDevices::List {
                verification: HistoryVerification::Unverified,
                list: SignedDeviceList::decode(f.v2.as_bytes()).unwrap(),
            },
        }),
        HistoryRecord::Message(HistoryMessage {
            direction: HistoryDirection::Incoming,
            peer: DeviceAddress::new(friend.clone(), DeviceId(1)),
            timestamp: 1,
            status: HistoryStatus::Received,
            status_at: 0,
            content: content("hello"),
        }),
        HistoryRecord::Message(HistoryMessage {
            direction: HistoryDirection::Outgoing,
            peer: DeviceAddress::new(friend, DeviceId(0)),
            timestamp: 2,
            status: HistoryStatus::Failed,
            status_at: 3,
            content: content("hi"),
        }),
    ];
    let part = HistoryPart {
        bundle_id: [0x71; 16],
        index: 0,
        last: true,
        records,
    };
    let full = part.encode().unwrap();
    let empty = HistoryPart {
        records: Vec::new(),
        ..part
    }
    .encode()
    .unwrap();
    // A flag bit the spec does not define (the flags byte follows the id and the index).
    let mut bad_flags = full.clone();
    bad_flags[2 + 16 + 2] = 0x02;
    vec![
        seed(t, "four-records", full.clone()),
        seed(t, "unknown-flag", bad_flags),
        seed(t, "empty-last", empty),
        seed(t, "truncated", full[..full.len() / 2].to_vec()),
    ]
}

/// Message contents (spec/client-store.md section 6; the values of
/// spec/vectors/content.json): text, bytes, a sent copy, sync contents of every item kind,
/// a history part, its placeholder, and contents a receiver rejects.
pub(super) fn contents() -> Vec<Seed> {
    let t = "content";
    let with = |kind: u8, body: &[u8]| {
        let mut c = vec![0x01, kind];
        c.extend_from_slice(&[0x5c; 16]);
        c.extend_from_slice(body);
        c
    };
    let text = with(0x01, b"Your order #1234 ships today.");
    let mut copy_body = vec![12];
    copy_body.extend_from_slice(b"+15551230001");
    copy_body.extend_from_slice(&1_765_000_200_000_u64.to_be_bytes());
    copy_body.extend_from_slice(&1_765_000_200_123_u64.to_be_bytes());
    let mut copy_of_copy = copy_body.clone();
    copy_body.extend_from_slice(&text);
    let copy = with(0x03, &copy_body);
    copy_of_copy.extend_from_slice(&copy);
    let part = history_parts()
        .into_iter()
        .find(|s| s.name == "seed-empty-last")
        .unwrap()
        .bytes;
    // Sync items (section 6.3): `tag || peer || fields`.
    let peer = |tag: u8| {
        let mut b = vec![tag, 12];
        b.extend_from_slice(b"+15551230002");
        b
    };
    let mut read = peer(0x01);
    read.extend_from_slice(&[0x3a; 16]);
    let mut delete = peer(0x02);
    delete.extend_from_slice(&2u16.to_be_bytes());
    delete.extend_from_slice(&[0x21; 16]);
    delete.extend_from_slice(&[0xe1; 16]);
    let clear = peer(0x03);
    let sync = |items: &[&[u8]]| {
        let mut b = vec![u8::try_from(items.len()).unwrap()];
        for i in items {
            b.extend_from_slice(i);
        }
        with(0x04, &b)
    };
    let all = sync(&[&delete, &read, &clear]);
    let mut unknown_item = read.clone();
    unknown_item[0] = 0x7f;
    // Business conversations (spec/business.md 8.2, 9.2): a conversation route with its
    // basis, an assignment, a handoff, a note, a transcript confirmation.
    let f = crate::business::business_fixture();
    let customer = sealpost_wire::AccountId::new("+15551230002").unwrap();
    let conversation = f
        .account_key
        .sign_route(sealpost_wire::business::RouteBody {
            customer: Some(customer.clone()),
            route_version: 2,
            devices: vec![2],
            ..sealpost_wire::business::SignedRoute::decode(&f.route)
                .unwrap()
                .body
        })
        .unwrap();
    let message = sealpost_wire::business::RouteMessage {
        route: conversation,
        basis: Some(sealpost_wire::business::SignedRoute::decode(&f.route).unwrap()),
    };
    let desk = |d: sealpost_wire::business::DeskRef<'_>| with(0x06, &d.encode().unwrap());
    use sealpost_wire::business::{DeskRef, HandoffEntryRef, Side};
    let assign = desk(DeskRef::Assign {
        customer: customer.clone(),
        state: sealpost_wire::business::ConversationState::Open,
        route: Box::new(message.clone()),
    });
    let handoff = desk(DeskRef::Handoff {
        customer: customer.clone(),
        route_version: 2,
        part: 1,
        parts: 1,
        note: "asks about a late order",
        entries: vec![
            HandoffEntryRef {
                side: Side::Customer,
                device: 1,
                timestamp: 1_765_000_200_000,
                content: &text,
            },
            HandoffEntryRef {
                side: Side::Business,
                device: 2,
                timestamp: 1_765_000_200_100,
                content: &text,
            },
        ],
    });
    let note = desk(DeskRef::Note {
        customer: customer.clone(),
        text: "refund approved",
    });
    let confirmation = sealpost_wire::business::TranscriptConfirmation {
        route_version: 2,
        chains: vec![
            sealpost_wire::business::ChainHead {
                side: Side::Customer,
                device: 1,
                length: 1,
                head: [0x11; 32],
            },
            sealpost_wire::business::ChainHead {
                side: Side::Business,
                device: 2,
                length: 1,
                head: [0x22; 32],
            },
        ],
    };
    let transcript = with(0x07, &confirmation.encode().unwrap());
    let mut trailing = sync(&[&read]);
    trailing.push(0);
    vec![
        seed(t, "sync-read", sync(&[&read])),
        seed(t, "sync-delete", sync(&[&delete])),
        seed(t, "sync-delete-conversation", sync(&[&clear])),
        seed(t, "sync-all", all.clone()),
        seed(t, "sync-unknown-item", sync(&[&unknown_item])),
        seed(t, "sync-too-many-items", sync(&vec![&clear[..]; 33])),
        seed(t, "sync-truncated", all[..all.len() - 3].to_vec()),
        seed(t, "sync-trailing", trailing),
        seed(t, "route", with(0x05, &message.encode().unwrap())),
        seed(t, "desk-assign", assign),
        seed(t, "desk-handoff", handoff.clone()),
        seed(
            t,
            "desk-handoff-truncated",
            handoff[..handoff.len() - 5].to_vec(),
        ),
        seed(t, "desk-note", note),
        seed(t, "transcript", transcript),
        seed(t, "text", text.clone()),
        seed(t, "bytes", with(0x02, &[0x7b, 0x7d, 0x00, 0xff])),
        seed(t, "sent-copy", copy.clone()),
        seed(t, "history-part", with(0x10, &part)),
        seed(t, "placeholder", with(0x10, &[])),
        seed(t, "not-utf8", with(0x01, &[0x61, 0xff])),
        seed(t, "unknown-kind", with(0x7f, b"x")),
        seed(t, "copy-of-copy", with(0x03, &copy_of_copy)),
        seed(
            t,
            "truncated-copy",
            copy[..copy.len() - text.len() - 4].to_vec(),
        ),
    ]
}

pub(super) fn business() -> Vec<Seed> {
    let f = crate::business::business_fixture();
    let t = "business";
    let published = |with_statement: bool| {
        let p = sealpost_wire::business::PublishedProfile {
            profile: f.profile.signed().clone(),
            route: None,
            verifications: if with_statement {
                vec![sealpost_wire::business::BusinessVerification::decode(&f.statement).unwrap()]
            } else {
                Vec::new()
            },
        };
        let mut w = sealpost_wire::Writer::new();
        p.encode_into(&mut w).unwrap();
        w.into_bytes()
    };
    let mut tampered = f.profile.encoded().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    vec![
        seed(t, "profile", f.profile.encoded()),
        seed(t, "profile-bad-signature", tampered),
        seed(t, "statement", f.statement.clone()),
        seed(t, "published", published(true)),
        seed(t, "published-bare", published(false)),
        seed(t, "route", f.route.clone()),
    ]
}
