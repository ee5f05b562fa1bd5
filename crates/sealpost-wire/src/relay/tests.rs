use super::*;
use crate::DeviceId;

fn body(frame: &[u8]) -> &[u8] {
    let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
    assert_eq!(len, frame.len() - 4);
    &frame[4..]
}

fn acct() -> AccountId {
    AccountId::new("+15550001111").unwrap()
}

fn backup() -> crate::devices::AccountKeyBackup {
    crate::devices::AccountKeyBackup {
        account_key: [0xA1; 32],
        nonce: [0xA2; 12],
        sealed: [0xA3; 48],
    }
}

fn published(verifications: usize) -> crate::business::PublishedProfile {
    use crate::business::*;
    let account = AccountId::new("+15550100300").unwrap();
    PublishedProfile {
        profile: SignedBusinessProfile {
            body: BusinessProfileBody {
                account: account.clone(),
                account_key: [0xB1; 32],
                profile_version: 2,
                issued_at: 5,
                fields: BusinessProfileFields {
                    name: "Velo Lina".into(),
                    website: "https://velo.example".into(),
                    reply_within: 600,
                    ..BusinessProfileFields::default()
                },
            },
            signature: [0xB2; 64],
        },
        route: (verifications % 2 == 1).then(|| SignedRoute {
            body: RouteBody {
                account: account.clone(),
                account_key: [0xB1; 32],
                customer: None,
                route_version: 1,
                issued_at: 5,
                devices: vec![1, 3],
                signer: RouteSigner::AccountKey,
            },
            signature: [0xB4; 64],
        }),
        verifications: (0..verifications)
            .map(|i| BusinessVerification {
                body: BusinessVerificationBody {
                    verifier_key: [u8::try_from(i).unwrap(); 32],
                    account: account.clone(),
                    account_key: [0xB1; 32],
                    business_name: "Velo Lina".into(),
                    issued_at: 1,
                    expires_at: 2,
                },
                signature: [0xB3; 64],
            })
            .collect(),
    }
}

/// spec/relay.md 3.14: at most four statements; a fifth is refused before it is read.
#[test]
fn business_profile_requests() {
    let frame = Request::PublishBusinessProfile(Box::new(published(4))).encode();
    assert_eq!(
        Request::decode(body(&frame)).unwrap(),
        Request::PublishBusinessProfile(Box::new(published(4)))
    );
    published(5).encode_into(&mut Writer::new()).unwrap_err();
    // Forge a count of 5 after a valid profile and route: drop the one statement
    // (`var16`) and raise the count byte before it.
    let one = published(1);
    let mut w = Writer::new();
    one.encode_into(&mut w).unwrap();
    let statement_len = 2 + one.verifications[0].encode().unwrap().len();
    let five = &w.as_slice()[..w.as_slice().len() - statement_len];
    let mut bytes = vec![1, 0x17];
    bytes.extend_from_slice(five);
    *bytes.last_mut().unwrap() = 5;
    assert_eq!(
        Request::decode(&bytes).unwrap_err(),
        DecodeError::TooMany {
            what: "verifications",
            count: 5,
            max: 4
        }
    );
}

/// spec/relay.md 3.13: the backup is 94 bytes after `0x01 0x15`; another version or type
/// byte, a short or a long body is refused.
#[test]
fn account_key_backup_requests() {
    let frame = Request::StoreAccountKeyBackup { backup: backup() }.encode();
    let b = body(&frame);
    assert_eq!(b.len(), 2 + 94);
    assert_eq!(&b[..4], &[1, 0x33, 1, 0x15]);
    for (at, v) in [(2usize, 2u8), (3, 0x14)] {
        let mut bad = b.to_vec();
        bad[at] = v;
        assert!(Request::decode(&bad).is_err());
    }
    assert!(matches!(
        Request::decode(&b[..b.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut long = b.to_vec();
    long.push(0);
    assert!(matches!(
        Request::decode(&long),
        Err(DecodeError::TrailingBytes(1))
    ));
    let frame = Response::AccountKeyBackup(None).encode();
    assert_eq!(body(&frame), &[1, 0x74, 0]);
    assert!(matches!(
        Response::decode(&[1, 0x74, 2]),
        Err(DecodeError::InvalidValue(_))
    ));
}

fn dlist() -> SignedDeviceList {
    use crate::devices::{DeviceEntry, DeviceListBody, DeviceName, DeviceRole};
    SignedDeviceList {
        body: DeviceListBody {
            account: acct(),
            account_key: [0xAB; 32],
            list_version: 2,
            issued_at: 5,
            next_device_id: 3,
            entries: vec![DeviceEntry {
                device_id: 2,
                identity: IdentityBytes {
                    signing: [1; 32],
                    dh: [2; 32],
                },
                role: DeviceRole::Primary,
                added_at: 4,
                name: DeviceName::new("Phone").unwrap(),
            }],
        },
        signature: [0xCD; 64],
        bindings: vec![[0xEF; 64]],
    }
}

fn penvelope() -> ProvisioningEnvelope {
    ProvisioningEnvelope {
        sender_ephemeral: [0x31; 32],
        sealed: vec![0x32; 48],
    }
}

fn cred(scope: CredentialScope) -> GuardianCredential {
    GuardianCredential {
        account: acct(),
        scope,
        expires_at: 1_700_003_600,
        issuer: [0xAA; 32],
        signature: [0xBB; 64],
    }
}

#[test]
fn credential_layout_and_rejections() {
    let c = cred(CredentialScope::Recovery);
    let enc = c.encode();
    assert_eq!(enc.len(), credential_len(12));
    assert_eq!(GuardianCredential::decode(&enc).unwrap(), c);
    // account || scope || expires_at || issuer, then the signature.
    let signed = c.signed_bytes();
    assert_eq!(&signed[..30], b"Sealpost_GuardianCredential_v1");
    assert_eq!(&signed[30..], &enc[..enc.len() - 64]);
    assert_eq!(
        signed,
        credential_signed_bytes(&c.account, c.scope, c.expires_at, &c.issuer)
    );
    for scope in [0u8, 3, 0xFF] {
        let mut bad = enc.clone();
        bad[13] = scope;
        assert_eq!(
            GuardianCredential::decode(&bad),
            Err(DecodeError::UnknownType {
                what: "credential scope",
                value: scope
            })
        );
    }
    for cut in 0..enc.len() {
        assert!(GuardianCredential::decode(&enc[..cut]).is_err());
    }
    let mut long = enc.clone();
    long.push(0);
    assert_eq!(
        GuardianCredential::decode(&long),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn pin_messages_reject_bad_fields() {
    // Register's reglock flag must be 0 or 1.
    let reg = Request::Register {
        account: acct(),
        code: *b"123456",
        identity: IdentityBytes {
            signing: [1; 32],
            dh: [2; 32],
        },
        signature: [3; 64],
        reglock: None,
    }
    .encode();
    let mut bad = body(&reg).to_vec();
    *bad.last_mut().unwrap() = 2;
    assert_eq!(
        Request::decode(&bad),
        Err(DecodeError::InvalidValue("has_reglock"))
    );
    // A record over MAX_VAULT_RECORD_LEN is refused before it is read, in both
    // directions.
    let store = Request::VaultStore {
        credential: cred(CredentialScope::Owner),
        share: [1; 33],
        success_verifier: [2; 32],
        record: vec![0; MAX_VAULT_RECORD_LEN + 1],
    };
    assert_eq!(
        Request::decode(body(&store.encode())),
        Err(DecodeError::TooLong {
            what: "vault record",
            len: MAX_VAULT_RECORD_LEN + 1,
            max: MAX_VAULT_RECORD_LEN
        })
    );
    let vault = Response::Vault {
        index: 1,
        attempts_remaining: 1,
        record: vec![0; MAX_VAULT_RECORD_LEN + 1],
    };
    assert!(matches!(
        Response::decode(body(&vault.encode())),
        Err(DecodeError::TooLong { .. })
    ));
    // Unknown kinds inside the new ranges.
    for kind in [0x35u8, 0x37, 0x3D] {
        assert!(matches!(
            Request::decode(&[1, kind]),
            Err(DecodeError::UnknownType { .. })
        ));
    }
    for kind in [0x75u8, 0x77, 0x7E] {
        assert!(matches!(
            Response::decode(&[1, kind]),
            Err(DecodeError::UnknownType { .. })
        ));
    }
    for (code, v) in [
        (ErrorCode::CredentialInvalid, 20),
        (ErrorCode::NotGuardian, 21),
        (ErrorCode::VaultNotFound, 22),
        (ErrorCode::InvalidVault, 23),
        (ErrorCode::RegistrationLocked, 19),
        (ErrorCode::Unavailable, 24),
        (ErrorCode::VaultRolledBack, 25),
        (ErrorCode::ProvisioningNotFound, 26),
        (ErrorCode::InvalidDeviceList, 27),
        (ErrorCode::StaleDeviceList, 28),
        (ErrorCode::TooManyDevices, 29),
        (ErrorCode::DevicesChanging, 30),
        (ErrorCode::InvalidBusinessProfile, 31),
        (ErrorCode::StaleBusinessProfile, 32),
    ] {
        assert_eq!(code.to_u16(), v);
        assert_eq!(ErrorCode::from_u16(v), code);
    }
}

#[test]
fn debug_prints_no_secret_bytes() {
    let secret = |b: u8| format!("{b:02x}{b:02x}{b:02x}");
    let reqs = [
        (
            Request::Register {
                account: acct(),
                code: *b"987654",
                identity: IdentityBytes {
                    signing: [1; 32],
                    dh: [2; 32],
                },
                signature: [3; 64],
                reglock: Some([0xC1; 32]),
            },
            vec![0xC1],
        ),
        (
            Request::SetRegistrationLock { token: [0xC2; 32] },
            vec![0xC2],
        ),
        (
            Request::VaultStore {
                credential: cred(CredentialScope::Owner),
                share: [0xC3; 33],
                success_verifier: [0xC4; 32],
                record: vec![0xC5; 10],
            },
            vec![0xC3, 0xC4],
        ),
        (
            Request::VaultConfirm {
                credential: cred(CredentialScope::Recovery),
                vault_id: [1; 16],
                token: [0xC6; 32],
            },
            vec![0xC6],
        ),
    ];
    for (req, secrets) in reqs {
        let dbg = format!("{req:?}");
        assert!(dbg.contains("redacted"), "{dbg}");
        assert!(!dbg.contains("987654"), "{dbg}");
        assert!(!dbg.contains("198, 198"), "{dbg}");
        for b in secrets {
            assert!(!dbg.contains(&secret(b)), "{dbg}");
            assert!(!dbg.contains(&format!("{b}, {b}")), "{dbg}");
        }
    }
}

#[test]
fn requests_roundtrip_and_reject_truncation() {
    let reqs = vec![
        Request::RequestCode { account: acct() },
        Request::Register {
            account: acct(),
            code: *b"123456",
            identity: IdentityBytes {
                signing: [1; 32],
                dh: [2; 32],
            },
            signature: [3; 64],
            reglock: None,
        },
        Request::Register {
            account: acct(),
            code: *b"123456",
            identity: IdentityBytes {
                signing: [1; 32],
                dh: [2; 32],
            },
            signature: [3; 64],
            reglock: Some([4; 32]),
        },
        Request::Challenge,
        Request::Authenticate {
            address: DeviceAddress::new(acct(), DeviceId(2)),
            signature: [4; 64],
        },
        Request::UploadPreKeys(PreKeyUpload {
            signed_prekey: Some(SignedPreKeyPublic {
                id: 1,
                created_at: 2,
                public: [5; 32],
                signature: [6; 64],
            }),
            one_time: vec![(1, [7; 32]), (2, [8; 32])],
            kem: vec![KemPreKeyPublic {
                id: 3,
                kind: KemPreKeyKind::LastResort,
                created_at: 4,
                public: Box::new([9; KEM_PUBLIC_LEN]),
                signature: [10; 64],
            }],
        }),
        Request::FetchBundles { account: acct() },
        Request::ListDevices { account: acct() },
        Request::PublishDeviceList { list: dlist() },
        Request::FetchDeviceList { account: acct() },
        Request::Provision {
            provisioning_id: [0x21; 16],
            envelope: penvelope(),
        },
        Request::LinkDevice {
            list: dlist(),
            device_id: 2,
            signature: [0x22; 64],
        },
        Request::OpenProvisioning,
        Request::DeviceActivity,
        Request::Send {
            message_id: [11; 16],
            sender_seq: 0x0102_0304_0506_0708,
            recipient: acct(),
            envelopes: vec![OutgoingEnvelope {
                device_id: 1,
                envelope: vec![1, 2, 3],
            }],
        },
        Request::Ack {
            server_ids: vec![1, 2, 3],
        },
        Request::SetRegistrationLock { token: [12; 32] },
        Request::ClearRegistrationLock,
        Request::StoreAccountKeyBackup { backup: backup() },
        Request::FetchAccountKeyBackup,
        Request::PublishBusinessProfile(Box::new(published(0))),
        Request::PublishBusinessProfile(Box::new(published(2))),
        Request::FetchBusinessProfile { account: acct() },
        Request::GetGuardianCredential,
        Request::VaultStore {
            credential: cred(CredentialScope::Owner),
            share: [13; 33],
            success_verifier: [14; 32],
            record: vec![15; 200],
        },
        Request::VaultStore {
            credential: cred(CredentialScope::Owner),
            share: [13; 33],
            success_verifier: [14; 32],
            record: vec![16; MAX_VAULT_RECORD_LEN],
        },
        Request::VaultFetch {
            credential: cred(CredentialScope::Recovery),
        },
        Request::VaultEvaluate {
            credential: cred(CredentialScope::Recovery),
            vault_id: [17; 16],
            blinded: [18; 32],
        },
        Request::VaultConfirm {
            credential: cred(CredentialScope::Recovery),
            vault_id: [17; 16],
            token: [19; 32],
        },
        Request::VaultDelete {
            credential: cred(CredentialScope::Owner),
        },
    ];
    for req in reqs {
        let f = req.encode();
        let b = body(&f);
        assert_eq!(Request::decode(b).unwrap(), req);
        for cut in 0..b.len() {
            assert!(Request::decode(&b[..cut]).is_err(), "{req:?} cut {cut}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(Request::decode(&long), Err(DecodeError::TrailingBytes(1)));
    }
}

#[test]
fn responses_and_pushes_roundtrip() {
    let resps = vec![
        Response::CodeSent { expires_in: 600 },
        Response::Registered { device_id: 1 },
        Response::ChallengeIssued { nonce: [1; 32] },
        Response::Authenticated {
            one_time_prekeys: 1,
            kem_prekeys: 2,
            queued: 3,
            sender_seq: u64::MAX,
        },
        Response::PreKeysStored {
            one_time_prekeys: 4,
            kem_prekeys: 5,
        },
        Response::Bundles(vec![]),
        Response::Devices(vec![DeviceInfo {
            device_id: 1,
            identity: IdentityBytes {
                signing: [1; 32],
                dh: [2; 32],
            },
        }]),
        Response::Activity(vec![]),
        Response::Activity(vec![
            DeviceLastSeen {
                device_id: 1,
                last_seen_day: 0,
            },
            DeviceLastSeen {
                device_id: 3,
                last_seen_day: 20_000 * DAY_SECS,
            },
        ]),
        Response::ProvisioningOpened {
            provisioning_id: [0x23; 16],
            expires_in: 600,
        },
        Response::DeviceListStored { list_version: 7 },
        Response::DeviceList(None),
        Response::DeviceList(Some(dlist())),
        Response::Provisioned,
        Response::Accepted { timestamp: 99 },
        Response::Acked { removed: 2 },
        Response::RegistrationLockSet,
        Response::RegistrationLockCleared,
        Response::AccountKeyBackupStored,
        Response::AccountKeyBackup(None),
        Response::AccountKeyBackup(Some(backup())),
        Response::BusinessProfileStored { profile_version: 3 },
        Response::BusinessProfile(None),
        Response::BusinessProfile(Some(Box::new(published(1)))),
        Response::Credential(cred(CredentialScope::Owner)),
        Response::VaultStored,
        Response::Vault {
            index: 2,
            attempts_remaining: 9,
            record: vec![1; 95],
        },
        Response::VaultEvaluated {
            index: 3,
            evaluated: [4; 32],
            proof: [5; 64],
            attempts_remaining: 0,
        },
        Response::VaultConfirmed {
            attempts_remaining: 10,
        },
        Response::VaultDeleted,
        Response::RegistrationLocked {
            lapses_in: 604_800,
            attempts_remaining: 10,
            credential: cred(CredentialScope::Recovery),
        },
        Response::Error {
            code: ErrorCode::VaultNotFound,
            retry_after: 0,
            detail: "no vault".into(),
        },
        Response::Error {
            code: ErrorCode::RateLimited,
            retry_after: 5,
            detail: "slow down".into(),
        },
        Response::Error {
            code: ErrorCode::Other(999),
            retry_after: 0,
            detail: String::new(),
        },
    ];
    for resp in resps {
        let f = resp.encode();
        let b = body(&f);
        assert_eq!(Response::decode(b).unwrap(), resp);
        for cut in 0..b.len() {
            assert!(Response::decode(&b[..cut]).is_err(), "{resp:?} cut {cut}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(Response::decode(&long), Err(DecodeError::TrailingBytes(1)));
    }
    let pushes = vec![
        Push::Deliver(Delivery {
            server_id: 7,
            sender: DeviceAddress::new(acct(), DeviceId(1)),
            message_id: [2; 16],
            timestamp: 3,
            envelope: vec![4; 10],
        }),
        Push::PreKeysLow {
            one_time_prekeys: 1,
            kem_prekeys: 0,
        },
        Push::QueueDrained,
        Push::Provisioning {
            provisioning_id: [0x24; 16],
            envelope: penvelope(),
        },
    ];
    for p in &pushes {
        let f = p.encode();
        assert_eq!(&Push::decode(body(&f)).unwrap(), p);
        assert_eq!(Push::decode_stream(&f).unwrap(), vec![p.clone()]);
    }
    // A push stream: frames back to back; any cut short of a frame boundary fails.
    let stream = Push::encode_stream(&pushes);
    assert_eq!(Push::decode_stream(&stream).unwrap(), pushes);
    let mut boundaries = vec![0];
    for p in &pushes {
        boundaries.push(boundaries.last().unwrap() + p.encode().len());
    }
    let first = boundaries[1];
    for cut in 0..stream.len() {
        let r = Push::decode_stream(&stream[..cut]);
        match boundaries.iter().position(|&b| b == cut) {
            Some(n) if n > 0 => assert_eq!(r.unwrap(), pushes[..n]),
            _ => assert!(r.is_err(), "cut {cut}"),
        }
    }
    let mut bad = stream.clone();
    bad[first + 4] = 0x7f;
    assert!(
        Push::decode_stream(&bad).is_err(),
        "a bad frame fails the stream"
    );
    assert!(matches!(
        Push::decode_stream(&vec![0; MAX_PUSH_STREAM_LEN + 1]),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn limits_are_enforced() {
    assert!(frame_len([0, 0, 0, 1]).is_err());
    assert!(frame_len(((MAX_FRAME_LEN + 1) as u32).to_be_bytes()).is_err());
    // Before authentication (spec/relay.md section 2).
    let pre = |n: usize| frame_len_within((n as u32).to_be_bytes(), MAX_PRE_AUTH_FRAME);
    assert_eq!(pre(MAX_PRE_AUTH_FRAME), Ok(MAX_PRE_AUTH_FRAME));
    assert_eq!(
        pre(MAX_PRE_AUTH_FRAME + 1),
        Err(DecodeError::TooLong {
            what: "frame",
            len: MAX_PRE_AUTH_FRAME + 1,
            max: MAX_PRE_AUTH_FRAME
        })
    );
    // Counts over their limits say how many (not "bytes").
    let acks = Request::Ack {
        server_ids: vec![0; MAX_ACKS_PER_REQUEST + 1],
    };
    assert_eq!(
        Request::decode(body(&acks.encode())),
        Err(DecodeError::TooMany {
            what: "acks",
            count: MAX_ACKS_PER_REQUEST + 1,
            max: MAX_ACKS_PER_REQUEST
        })
    );
    let long = Response::error(ErrorCode::Internal, "é".repeat(300));
    match Response::decode(body(&long.encode())).unwrap() {
        Response::Error { detail, .. } => assert!(detail.len() <= 255),
        other => panic!("{other:?}"),
    }
    let send = Request::Send {
        message_id: [0; 16],
        sender_seq: 1,
        recipient: acct(),
        envelopes: vec![OutgoingEnvelope {
            device_id: 1,
            envelope: vec![0; MAX_ENVELOPE_LEN + 1],
        }],
    };
    assert!(matches!(
        Request::decode(body(&send.encode())),
        Err(DecodeError::TooLong { .. })
    ));
    let empty = Request::Send {
        message_id: [0; 16],
        sender_seq: 1,
        recipient: acct(),
        envelopes: vec![OutgoingEnvelope {
            device_id: 1,
            envelope: vec![],
        }],
    };
    assert!(matches!(
        Request::decode(body(&empty.encode())),
        Err(DecodeError::TooShort { .. })
    ));
    assert_eq!(
        Request::decode(&[1, 0x3e]),
        Err(DecodeError::UnknownType {
            what: "request",
            value: 0x3e
        })
    );
}

/// spec/relay.md 3.12: `DeviceActivity` has an empty body; `Activity` lists strictly
/// increasing device ids with whole days, and anything else is refused with a typed error.
#[test]
fn device_activity_is_canonical() {
    assert_eq!(Request::DeviceActivity.encode(), vec![0, 0, 0, 2, 1, 0x16]);
    assert_eq!(
        Request::decode(&[1, 0x16, 0]),
        Err(DecodeError::TrailingBytes(1))
    );
    let entry = |id: u32, day: u64| {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(&day.to_be_bytes());
        v
    };
    let body = |entries: &[Vec<u8>]| {
        let mut v = vec![1, 0x56, u8::try_from(entries.len()).unwrap()];
        for e in entries {
            v.extend_from_slice(e);
        }
        v
    };
    let ok = body(&[entry(1, 0), entry(2, DAY_SECS)]);
    assert_eq!(
        Response::decode(&ok),
        Ok(Response::Activity(vec![
            DeviceLastSeen::from_unix_ms(1, 0),
            DeviceLastSeen::from_unix_ms(2, DAY_SECS * 1000 + 86_399_999),
        ]))
    );
    assert_eq!(
        Response::decode(&body(&[entry(2, 0), entry(2, 0)])),
        Err(DecodeError::InvalidValue("device order"))
    );
    assert_eq!(
        Response::decode(&body(&[entry(3, 0), entry(2, 0)])),
        Err(DecodeError::InvalidValue("device order"))
    );
    assert_eq!(
        Response::decode(&body(&[entry(1, DAY_SECS + 1)])),
        Err(DecodeError::InvalidValue("last seen day"))
    );
    let mut too_many = vec![1, 0x56, 65];
    too_many.extend((0..65u32).flat_map(|i| entry(i + 1, 0)));
    assert!(matches!(
        Response::decode(&too_many),
        Err(DecodeError::TooMany {
            what: "devices",
            count: 65,
            ..
        })
    ));
    assert!(matches!(
        Response::decode(&[1, 0x56, 1, 0, 0, 0, 1]),
        Err(DecodeError::Truncated { .. })
    ));
}
