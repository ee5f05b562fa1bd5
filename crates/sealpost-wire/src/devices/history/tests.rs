use super::*;
use crate::devices::{DeviceEntry, DeviceListBody, DeviceName, DeviceRole};

fn account(n: u8) -> AccountId {
    AccountId::new(format!("+1555000{n:04}")).unwrap()
}

fn identity(n: u8) -> IdentityBytes {
    IdentityBytes {
        signing: [n; 32],
        dh: [n.wrapping_add(1); 32],
    }
}

fn list() -> SignedDeviceList {
    SignedDeviceList {
        body: DeviceListBody {
            account: account(9),
            account_key: [0xAA; 32],
            list_version: 2,
            issued_at: 1_700_000_100_000,
            next_device_id: 3,
            entries: vec![DeviceEntry {
                device_id: 2,
                identity: identity(2),
                role: DeviceRole::Owner,
                added_at: 1_700_000_000_000,
                name: DeviceName::new("Shop till").unwrap(),
            }],
        },
        signature: [0x55; 64],
        bindings: vec![[2; 64]],
    }
}

fn contact_devices() -> HistoryRecord {
    HistoryRecord::Contact(HistoryContact {
        account: account(1),
        devices: ContactDevices::Devices(vec![
            HistoryDevice {
                device_id: DeviceId(1),
                identity: identity(1),
                verification: HistoryVerification::Verified,
            },
            HistoryDevice {
                device_id: DeviceId(4),
                identity: identity(4),
                verification: HistoryVerification::ChangedSinceVerified,
            },
        ]),
    })
}

fn contact_list() -> HistoryRecord {
    HistoryRecord::Contact(HistoryContact {
        account: account(9),
        devices: ContactDevices::List {
            verification: HistoryVerification::Unverified,
            list: list(),
        },
    })
}

fn message(direction: HistoryDirection, body_len: usize) -> HistoryRecord {
    let (device, status) = match direction {
        HistoryDirection::Incoming => (DeviceId(2), HistoryStatus::Received),
        HistoryDirection::Outgoing => (DeviceId(0), HistoryStatus::Delivered),
    };
    HistoryRecord::Message(HistoryMessage {
        direction,
        peer: DeviceAddress::new(account(9), device),
        timestamp: 1_700_000_200_000,
        status,
        status_at: 1_700_000_200_500,
        content: vec![0x42; body_len],
    })
}

fn part(records: Vec<HistoryRecord>) -> HistoryPart {
    HistoryPart {
        bundle_id: [7; 16],
        index: 3,
        last: true,
        records,
    }
}

#[test]
fn a_part_round_trips_with_the_documented_layout() {
    let p = part(vec![
        contact_devices(),
        contact_list(),
        message(HistoryDirection::Incoming, 10),
        message(HistoryDirection::Outgoing, 1),
    ]);
    let bytes = p.encode().unwrap();
    let list_len = list().encode().unwrap().len();
    let contact1 = 1 + 13 + 1 + 1 + 2 * (4 + 64 + 1);
    let contact2 = 1 + 13 + 1 + 1 + 4 + list_len;
    let message = |n: usize| 1 + 1 + 13 + 4 + 8 + 1 + 8 + 4 + n;
    assert_eq!(
        bytes.len(),
        PART_HEADER_LEN + contact1 + contact2 + message(10) + message(1)
    );
    assert_eq!(&bytes[..2], &[0x01, 0x14]);
    assert_eq!(&bytes[2..18], &[7; 16]);
    assert_eq!(&bytes[18..23], &[0, 3, FLAG_LAST, 0, 4]);
    assert_eq!(HistoryPart::decode(&bytes).unwrap(), p);
    // An empty last part is valid.
    let empty = part(vec![]);
    assert_eq!(
        HistoryPart::decode(&empty.encode().unwrap()).unwrap(),
        empty
    );
}

/// Every decoding error of spec/devices.md section 6.4, in its order.
#[test]
fn malformed_parts_are_refused_with_typed_errors() {
    let good = part(vec![
        contact_devices(),
        message(HistoryDirection::Incoming, 3),
    ])
    .encode()
    .unwrap();
    let with = |at: usize, byte: u8| {
        let mut b = good.clone();
        b[at] = byte;
        HistoryPart::decode(&b)
    };
    assert_eq!(with(0, 2), Err(DecodeError::UnsupportedVersion(2)));
    assert_eq!(
        with(1, 0x13),
        Err(DecodeError::UnknownType {
            what: "history part",
            value: 0x13
        })
    );
    assert_eq!(
        with(20, 0x03),
        Err(DecodeError::InvalidValue("history flags"))
    );
    // The first record starts at 23: its tag, then the account (1 + 12), the kind, the count.
    assert_eq!(
        with(23, 0x03),
        Err(DecodeError::InvalidValue("history record"))
    );
    assert_eq!(
        with(37, 0x02),
        Err(DecodeError::InvalidValue("contact kind"))
    );
    assert_eq!(
        with(38, 0),
        Err(DecodeError::TooShort {
            what: "contact devices",
            len: 0,
            min: 1
        })
    );
    assert_eq!(
        with(38, 65),
        Err(DecodeError::TooLong {
            what: "contact devices",
            len: 65,
            max: 64
        })
    );
    // First device: id at 39..43, identity, verification at 107; second id at 108..112.
    assert_eq!(with(42, 0), Err(DecodeError::InvalidValue("device id")));
    assert_eq!(with(111, 1), Err(DecodeError::InvalidValue("device order")));
    assert_eq!(with(107, 3), Err(DecodeError::InvalidValue("verification")));
    // The message record starts at 39 + 2 * 69 = 177: tag, direction, peer (13 + 4),
    // timestamp (8), status at 204.
    assert_eq!(with(178, 2), Err(DecodeError::InvalidValue("direction")));
    assert_eq!(
        with(204, 0x01),
        Err(DecodeError::InvalidValue("history message"))
    );
    assert_eq!(
        with(204, 0x02),
        Err(DecodeError::InvalidValue("history message"))
    );
    // An incoming message from device 0.
    assert_eq!(
        with(195, 0),
        Err(DecodeError::InvalidValue("history message"))
    );
    // An empty content (its length at 213..217, the last field).
    let mut empty = good.clone();
    empty.truncate(213);
    empty.extend_from_slice(&[0; 4]);
    assert_eq!(
        HistoryPart::decode(&empty),
        Err(DecodeError::TooShort {
            what: "history content",
            len: 0,
            min: 1
        })
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        HistoryPart::decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
    let mut short = good.clone();
    short.pop();
    assert!(matches!(
        HistoryPart::decode(&short),
        Err(DecodeError::Truncated { .. })
    ));
    assert_eq!(
        HistoryPart::decode(&vec![0; MAX_HISTORY_PART_LEN + 1]),
        Err(DecodeError::TooLong {
            what: "history part",
            len: MAX_HISTORY_PART_LEN + 1,
            max: MAX_HISTORY_PART_LEN
        })
    );
}

/// A list record's list must decode as a `SignedDeviceList` and not be empty.
#[test]
fn a_contact_list_is_checked_for_structure() {
    let good = part(vec![contact_list()]).encode().unwrap();
    // The list's length is at 23 + 1 + 13 + 1 + 1 = 39..43; the list's version byte at 43.
    let mut bad = good.clone();
    bad[43] = 0x02;
    assert_eq!(
        HistoryPart::decode(&bad),
        Err(DecodeError::UnsupportedVersion(2))
    );
    let mut empty = good[..39].to_vec();
    empty.extend_from_slice(&[0; 4]);
    assert_eq!(
        HistoryPart::decode(&empty),
        Err(DecodeError::TooShort {
            what: "device list",
            len: 0,
            min: 1
        })
    );
}

/// Encoding refuses what decoding would refuse.
#[test]
fn encoding_refuses_broken_records() {
    let mut m = message(HistoryDirection::Outgoing, 5);
    if let HistoryRecord::Message(m) = &mut m {
        m.peer.device = DeviceId(3);
    }
    assert_eq!(
        part(vec![m]).encode(),
        Err(DecodeError::InvalidValue("history message"))
    );
    let unordered = HistoryRecord::Contact(HistoryContact {
        account: account(1),
        devices: ContactDevices::Devices(vec![
            HistoryDevice {
                device_id: DeviceId(4),
                identity: identity(4),
                verification: HistoryVerification::Unverified,
            },
            HistoryDevice {
                device_id: DeviceId(4),
                identity: identity(5),
                verification: HistoryVerification::Unverified,
            },
        ]),
    });
    assert_eq!(
        part(vec![unordered]).encode(),
        Err(DecodeError::InvalidValue("device order"))
    );
    assert_eq!(
        part(vec![message(HistoryDirection::Incoming, 0)]).encode(),
        Err(DecodeError::TooShort {
            what: "history content",
            len: 0,
            min: 1
        })
    );
}

/// Packing fills parts in order up to the limit, flags only the last, and leaves out what
/// cannot fit in an empty part; every part it makes encodes within the limit.
#[test]
fn packing_fills_parts_in_order_and_leaves_out_what_never_fits() {
    let big = 100_000;
    let records = vec![
        contact_devices(),
        message(HistoryDirection::Incoming, big),
        message(HistoryDirection::Outgoing, big),
        message(HistoryDirection::Incoming, MAX_HISTORY_PART_LEN),
        message(HistoryDirection::Incoming, big),
        contact_list(),
    ];
    let packed = pack_history([9; 16], records.clone()).unwrap();
    assert_eq!(packed.left_out, vec![3]);
    let sizes: Vec<usize> = packed.parts.iter().map(|p| p.records.len()).collect();
    assert_eq!(sizes, vec![3, 2]);
    for (i, p) in packed.parts.iter().enumerate() {
        assert_eq!(usize::from(p.index), i);
        assert_eq!(p.last, i == packed.parts.len() - 1);
        assert_eq!(p.bundle_id, [9; 16]);
        let bytes = p.encode().unwrap();
        assert!(bytes.len() <= MAX_HISTORY_PART_LEN);
        assert_eq!(&HistoryPart::decode(&bytes).unwrap(), p);
    }
    let kept: Vec<HistoryRecord> = packed.parts.into_iter().flat_map(|p| p.records).collect();
    let mut expected = records;
    expected.remove(3);
    assert_eq!(kept, expected);
    // Nothing to send: one empty last part.
    let empty = pack_history([1; 16], Vec::new()).unwrap();
    assert_eq!(
        empty.parts,
        vec![HistoryPart {
            bundle_id: [1; 16],
            index: 0,
            last: true,
            records: vec![],
        }]
    );
}

#[test]
fn debug_never_shows_message_content() {
    let HistoryRecord::Message(mut m) = message(HistoryDirection::Incoming, 4) else {
        unreachable!()
    };
    m.content = b"secret order 1234".to_vec();
    let shown = format!("{m:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("content_len: 17"), "{shown}");
}
