use super::*;

fn identity(n: u8) -> IdentityBytes {
    IdentityBytes {
        signing: [n; 32],
        dh: [n.wrapping_add(1); 32],
    }
}

fn entry(device_id: u32, role: DeviceRole, name: &str) -> DeviceEntry {
    DeviceEntry {
        device_id,
        identity: identity(u8::try_from(device_id).unwrap()),
        role,
        added_at: 1_700_000_000_000 + u64::from(device_id),
        name: DeviceName::new(name).unwrap(),
    }
}

fn list() -> SignedDeviceList {
    SignedDeviceList {
        body: DeviceListBody {
            account: AccountId::new("+15551230001").unwrap(),
            account_key: [0xAA; 32],
            list_version: 3,
            issued_at: 1_700_000_100_000,
            next_device_id: 5,
            entries: vec![
                entry(1, DeviceRole::Primary, "Phone"),
                entry(4, DeviceRole::Linked, "Desktop ✓"),
            ],
        },
        signature: [0x55; 64],
        bindings: vec![[1; 64], [4; 64]],
    }
}

#[test]
fn a_list_round_trips_with_the_documented_layout() {
    let l = list();
    let bytes = l.encode().unwrap();
    let name2 = "Desktop ✓".len();
    assert_eq!(
        bytes.len(),
        2 + 13 + 32 + 8 + 8 + 4 + 1 + (78 + 5) + (78 + name2) + 64 + 128
    );
    assert_eq!(&bytes[..2], &[0x01, 0x10]);
    assert_eq!(SignedDeviceList::decode(&bytes).unwrap(), l);
    // The signed body is a prefix of the encoding, followed by the signature.
    let body = l.body.encode().unwrap();
    assert_eq!(&bytes[..body.len()], &body[..]);
    assert_eq!(&bytes[body.len()..body.len() + 64], &[0x55; 64]);
}

#[test]
fn the_largest_list_is_exactly_the_limit() {
    let mut l = list();
    l.body.account = AccountId::new("a".repeat(64)).unwrap();
    l.body.next_device_id = 100;
    l.body.entries = (1..=64)
        .map(|i| {
            let role = if i == 1 {
                DeviceRole::Owner
            } else {
                DeviceRole::Agent
            };
            entry(i, role, &"n".repeat(64))
        })
        .collect();
    l.bindings = vec![[0; 64]; 64];
    let bytes = l.encode().unwrap();
    assert_eq!(bytes.len(), MAX_DEVICE_LIST_LEN);
    assert_eq!(MAX_DEVICE_LIST_LEN, 13_368);
    assert_eq!(SignedDeviceList::decode(&bytes).unwrap(), l);
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        SignedDeviceList::decode(&longer),
        Err(DecodeError::TooLong {
            what: "device list",
            len: MAX_DEVICE_LIST_LEN + 1,
            max: MAX_DEVICE_LIST_LEN
        })
    );
}

#[test]
fn every_structural_rule_is_refused_by_the_decoder_and_the_encoder() {
    let good = list().encode().unwrap();
    // Offsets: header 2, account 13, key 32, list version at 47, issued at 55, next id at
    // 63, count at 67, first entry at 68: device id, identity at 72, role at 136, added at
    // 137, name length at 145, name at 146.
    let cases: Vec<(usize, u8, DecodeError)> = vec![
        (0, 2, DecodeError::UnsupportedVersion(2)),
        (
            1,
            0x11,
            DecodeError::UnknownType {
                what: "device list",
                value: 0x11,
            },
        ),
        (
            67,
            0,
            DecodeError::TooShort {
                what: "device list",
                len: 0,
                min: 1,
            },
        ),
        (
            67,
            65,
            DecodeError::TooLong {
                what: "device list",
                len: 65,
                max: 64,
            },
        ),
        (71, 0, DecodeError::InvalidValue("device id")),
        (136, 0x03, DecodeError::InvalidValue("device role")),
        (
            145,
            0,
            DecodeError::TooShort {
                what: "device name",
                len: 0,
                min: 1,
            },
        ),
        (
            145,
            65,
            DecodeError::TooLong {
                what: "device name",
                len: 65,
                max: 64,
            },
        ),
        (146, 0x07, DecodeError::InvalidValue("device name")),
        (146, 0xFF, DecodeError::InvalidValue("device name")),
    ];
    for (offset, value, want) in cases {
        let mut b = good.clone();
        b[offset] = value;
        assert_eq!(
            SignedDeviceList::decode(&b),
            Err(want),
            "byte {offset} = {value}"
        );
    }
    let mut zero_version = good.clone();
    zero_version[47..55].copy_from_slice(&[0; 8]);
    assert_eq!(
        SignedDeviceList::decode(&zero_version),
        Err(DecodeError::InvalidValue("list version"))
    );
    let mut low_next = good.clone();
    low_next[63..67].copy_from_slice(&4u32.to_be_bytes());
    assert_eq!(
        SignedDeviceList::decode(&low_next),
        Err(DecodeError::InvalidValue("next device id"))
    );
    assert_eq!(
        SignedDeviceList::decode(&good[..good.len() - 1]),
        Err(DecodeError::Truncated {
            offset: good.len() - 64,
            needed: 64
        })
    );
    let mut trailing = good.clone();
    trailing.push(9);
    assert_eq!(
        SignedDeviceList::decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );

    // The encoder refuses what the decoder refuses.
    let mut l = list();
    l.body.entries.swap(0, 1);
    assert_eq!(l.encode(), Err(DecodeError::InvalidValue("device order")));
    let mut l = list();
    l.body.next_device_id = 4;
    assert_eq!(l.encode(), Err(DecodeError::InvalidValue("next device id")));
    let mut l = list();
    l.body.list_version = 0;
    assert_eq!(l.encode(), Err(DecodeError::InvalidValue("list version")));
    let mut l = list();
    l.bindings.pop();
    assert_eq!(l.encode(), Err(DecodeError::InvalidValue("binding count")));
    let mut l = list();
    l.body.entries.clear();
    l.bindings.clear();
    assert!(matches!(l.encode(), Err(DecodeError::TooShort { .. })));
    assert!(DeviceName::new("").is_err());
    assert!(DeviceName::new("a\nb").is_err());
    assert!(DeviceName::new("x".repeat(65)).is_err());
    assert!(DeviceName::new("x".repeat(64)).is_ok());
}

#[test]
fn roles_have_their_bytes_and_families() {
    for (role, byte, family, holder) in [
        (DeviceRole::Primary, 0x01, RoleFamily::Consumer, true),
        (DeviceRole::Linked, 0x02, RoleFamily::Consumer, false),
        (DeviceRole::Owner, 0x10, RoleFamily::Business, true),
        (DeviceRole::Admin, 0x11, RoleFamily::Business, false),
        (DeviceRole::Agent, 0x12, RoleFamily::Business, false),
        (DeviceRole::Bot, 0x13, RoleFamily::Business, false),
    ] {
        assert_eq!(role.to_byte(), byte);
        assert_eq!(DeviceRole::from_byte(byte), Ok(role));
        assert_eq!(role.family(), family);
        assert_eq!(role.holds_account_key(), holder);
    }
    for b in (0..=255u8).filter(|b| ![1, 2, 0x10, 0x11, 0x12, 0x13].contains(b)) {
        assert_eq!(
            DeviceRole::from_byte(b),
            Err(DecodeError::InvalidValue("device role"))
        );
    }
}

#[test]
fn invitations_envelopes_and_bodies_round_trip() {
    let inv = LinkInvitation {
        provisioning_id: [3; 16],
        ephemeral: [4; 32],
        identity: identity(9),
    };
    let bytes = inv.encode();
    assert_eq!(bytes.len(), 114);
    assert_eq!(&bytes[..2], &[0x01, 0x11]);
    assert_eq!(LinkInvitation::decode(&bytes).unwrap(), inv);
    assert_eq!(
        LinkInvitation::decode(&bytes[..113]),
        Err(DecodeError::Truncated {
            offset: 82,
            needed: 32
        })
    );
    let mut wrong = bytes;
    wrong[1] = 0x12;
    assert_eq!(
        LinkInvitation::decode(&wrong),
        Err(DecodeError::UnknownType {
            what: "link invitation",
            value: 0x12
        })
    );

    let env = ProvisioningEnvelope {
        sender_ephemeral: [6; 32],
        sealed: vec![7; 40],
    };
    let bytes = env.encode();
    assert_eq!(ProvisioningEnvelope::decode(&bytes).unwrap(), env);
    assert_eq!(
        ProvisioningEnvelope::decode(&bytes[..34 + 15]),
        Err(DecodeError::TooShort {
            what: "provisioning ciphertext",
            len: 15,
            min: 16
        })
    );
    let too_long = vec![0u8; MAX_PROVISIONING_ENVELOPE_LEN + 1];
    assert!(matches!(
        ProvisioningEnvelope::decode(&too_long),
        Err(DecodeError::TooLong { .. })
    ));

    let body = ProvisioningBody {
        device_id: 4,
        list: list(),
    };
    let bytes = body.encode().unwrap();
    assert_eq!(&bytes[..6], &[0x01, 0x13, 0, 0, 0, 4]);
    assert_eq!(ProvisioningBody::decode(&bytes).unwrap(), body);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        ProvisioningBody::decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
}
