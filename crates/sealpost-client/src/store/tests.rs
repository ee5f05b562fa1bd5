//! Store tests: encryption at rest, wrong keys, row swaps, outbox persistence.

use super::*;
use crate::content::{MessageBody, encode_content};
use sealpost_session::{
    IdentityKeyPair, KemPreKeyKind, PreKeyStore, SessionAddresses, SessionConfig, SessionMessage,
    VerifiedBundle, initiate, respond,
};
use sealpost_wire::DeviceId;

const SECRET_TEXT: &str = "ZEBRA-PINEAPPLE-4242 where is my order";
const PHONE: &str = "+15550001111";
const PEER_PHONE: &str = "+4915112345678";

fn fast_params() -> StoreArgon2Params {
    StoreArgon2Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    }
}

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// A responder session and an initiator session between two fresh identities.
fn session_pair() -> (Session, Session) {
    let mut rng = rand::rng();
    let bob = IdentityKeyPair::generate(&mut rng);
    let mut store = PreKeyStore::new();
    store.generate_signed_prekey(&mut rng, &bob, 1);
    store.generate_one_time_prekeys(&mut rng, 1);
    store.generate_kem_prekeys(&mut rng, &bob, KemPreKeyKind::LastResort, 1, 1);
    let bundle = VerifiedBundle::verify(&store.bundle(&bob, 1, true).unwrap()).unwrap();
    let alice = IdentityKeyPair::generate(&mut rng);
    let alice_address = DeviceAddress::new(acct(PHONE), DeviceId(1));
    let bob_address = DeviceAddress::new(acct(PEER_PHONE), DeviceId(1));
    let to_bob = SessionAddresses::new(alice_address.clone(), bob_address.clone());
    let mut a = initiate(&mut rng, &alice, &to_bob, &bundle, SessionConfig::default()).unwrap();
    let first = a.encrypt(b"hi").unwrap();
    let SessionMessage::PreKey(p) = first else {
        panic!()
    };
    let from_alice = SessionAddresses::new(bob_address, alice_address);
    let (b, _) = respond(
        &mut rng,
        &bob,
        &from_alice,
        &mut store,
        &p,
        SessionConfig::default(),
    )
    .unwrap();
    (a, b)
}

/// Fills a store with one of everything; returns the secrets to look for.
fn fill(store: &Store) -> (IdentityKeyPair, Session) {
    let identity = IdentityKeyPair::generate(&mut rand::rng());
    let peer = DeviceAddress::new(acct(PEER_PHONE), DeviceId(3));
    let (session, _) = session_pair();
    let mut batch = Batch::new();
    store.put_account(
        &mut batch,
        &AccountRecord {
            identity: identity.clone(),
            account: acct(PHONE),
            device: Some(DeviceId(1)),
            registered_at: 5,
        },
    );
    store.put_contact(
        &mut batch,
        &Contact {
            address: peer.clone(),
            identity: *session.remote_identity(),
            first_seen: 1,
            changed_at: 1,
            verification: Verification::Unverified,
        },
    );
    store
        .put_session(&mut batch, &peer, None, &session)
        .unwrap();
    let id = MessageId::from_bytes([7; 16]);
    let content = encode_content(&id, &MessageBody::Text(SECRET_TEXT.into()));
    store
        .append_history(
            &mut batch,
            Direction::Incoming,
            &peer,
            99,
            MessageStatus::Received,
            &content,
        )
        .unwrap();
    let seq = store.new_outbox_seq().unwrap();
    store.put_outbox(
        &mut batch,
        &OutboxEntry {
            seq,
            message_id: id,
            recipient: acct(PEER_PHONE),
            history_seq: 1,
            created_at: 2,
            content,
            envelopes: None,
            sender_seq: 0,
            target: None,
        },
    );
    store.mark_processed(&mut batch, &peer, &id, 99);
    let mut prekeys = PreKeyState::default();
    prekeys
        .keys
        .generate_signed_prekey(&mut rand::rng(), &identity, 1);
    store.put_prekeys(&mut batch, &prekeys);
    store.commit(batch).unwrap();
    (identity, session)
}

fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        out.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn nothing_secret_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.db");
    let key = StoreKey::from_bytes([42; 32]);
    let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(key.clone())).unwrap();
    let (identity, session) = fill(&store);
    let state = sealpost_session::hazmat::to_state_bytes(&session);
    // The responder state's ratchet part starts at offset 171 (spec/session.md 8.1):
    // our ratchet secret, then the peer's ratchet key, then the root key.
    let ratchet_secret = &state[171..203];
    let root_key = &state[236..268];
    let disk = all_bytes(dir.path());
    assert!(disk.len() > 10_000, "database files were written");
    for (what, needle) in [
        ("plaintext", SECRET_TEXT.as_bytes()),
        ("plaintext prefix", &SECRET_TEXT.as_bytes()[..12]),
        ("identity secret", &identity.to_secret_bytes()[..32]),
        ("identity dh secret", &identity.to_secret_bytes()[32..]),
        ("session ratchet secret", ratchet_secret),
        ("session root key", root_key),
        ("own phone number", PHONE.as_bytes()),
        ("peer phone number", PEER_PHONE.as_bytes()),
        ("peer identity", &session.remote_identity().to_bytes()[..]),
    ] {
        assert!(!contains(&disk, needle), "{what} found on disk");
    }
    drop(store);
    // Reopening with the key gives everything back.
    let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(key)).unwrap();
    let h = store.history(&acct(PEER_PHONE), 10).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].body, MessageBody::Text(SECRET_TEXT.into()));
    let peer = DeviceAddress::new(acct(PEER_PHONE), DeviceId(3));
    let sessions = store.sessions(&peer).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        *sealpost_session::hazmat::to_state_bytes(&sessions[0].1),
        *state
    );
    assert_eq!(
        store.account().unwrap().unwrap().identity.to_secret_bytes(),
        identity.to_secret_bytes()
    );
    assert!(
        store
            .is_processed(&peer, &MessageId::from_bytes([7; 16]))
            .unwrap()
    );
    assert!(
        !store
            .is_processed(&peer, &MessageId::from_bytes([8; 16]))
            .unwrap()
    );
}

#[test]
fn wrong_key_or_passphrase_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(StoreKey::from_bytes([1; 32])))
        .unwrap();
    fill(&store);
    drop(store);
    assert_eq!(
        Store::open_sqlite_blocking(&path, StoreSecret::Key(StoreKey::from_bytes([2; 32]))).err(),
        Some(StoreError::WrongKey)
    );
    let pw = |p: &str| StoreSecret::Passphrase {
        passphrase: Zeroizing::new(p.into()),
        params: fast_params(),
    };
    assert_eq!(
        Store::open_sqlite_blocking(&path, pw("correct horse")).err(),
        Some(StoreError::WrongKey)
    );

    let path = dir.path().join("p.db");
    let store = Store::open_sqlite_blocking(&path, pw("correct horse")).unwrap();
    fill(&store);
    drop(store);
    assert_eq!(
        Store::open_sqlite_blocking(&path, pw("battery staple")).err(),
        Some(StoreError::WrongKey)
    );
    assert_eq!(
        Store::open_sqlite_blocking(&path, StoreSecret::Key(StoreKey::from_bytes([1; 32]))).err(),
        Some(StoreError::WrongKey)
    );
    // The stored parameters are used, not the ones passed for creation.
    let other_params = StoreSecret::Passphrase {
        passphrase: Zeroizing::new("correct horse".into()),
        params: StoreArgon2Params::default(),
    };
    let store = Store::open_sqlite_blocking(&path, other_params).unwrap();
    assert_eq!(store.history(&acct(PEER_PHONE), 5).unwrap().len(), 1);
}

fn swap_values(path: &std::path::Path, table: Table, a: &[u8], b: &[u8]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let get = |k: &[u8]| -> Vec<u8> {
        conn.query_row(
            "SELECT value FROM records WHERE tbl = ?1 AND key = ?2",
            rusqlite::params![table.id(), k],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (va, vb) = (get(a), get(b));
    for (k, v) in [(a, &vb), (b, &va)] {
        conn.execute(
            "UPDATE records SET value = ?1 WHERE tbl = ?2 AND key = ?3",
            rusqlite::params![v, table.id(), k],
        )
        .unwrap();
    }
}

#[test]
fn swapped_rows_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let key = StoreKey::from_bytes([3; 32]);
    let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(key.clone())).unwrap();
    let (s1, _) = session_pair();
    let (s2, _) = session_pair();
    let d1 = DeviceAddress::new(acct(PEER_PHONE), DeviceId(1));
    let d2 = DeviceAddress::new(acct(PEER_PHONE), DeviceId(2));
    let mut batch = Batch::new();
    for (d, s) in [(&d1, &s1), (&d2, &s2)] {
        store.put_contact(
            &mut batch,
            &Contact {
                address: d.clone(),
                identity: *s.remote_identity(),
                first_seen: 0,
                changed_at: 0,
                verification: Verification::Unverified,
            },
        );
        store.put_session(&mut batch, d, None, s).unwrap();
    }
    for text in ["first", "second"] {
        let c = encode_content(&MessageId::random(), &MessageBody::Text(text.into()));
        store
            .append_history(
                &mut batch,
                Direction::Incoming,
                &d1,
                1,
                MessageStatus::Received,
                &c,
            )
            .unwrap();
    }
    store.commit(batch).unwrap();
    let (t1, t2) = (store.device_tag(&d1), store.device_tag(&d2));
    let sessions = store
        .backend()
        .group(Table::Sessions, &t1, 10, true)
        .unwrap();
    let k1 = sessions[0].key.clone();
    let k2 = store
        .backend()
        .group(Table::Sessions, &t2, 10, true)
        .unwrap()[0]
        .key
        .clone();
    let history = store.backend().first(Table::History, 10).unwrap();
    let (h1, h2) = (history[0].key.clone(), history[1].key.clone());
    drop(store);

    swap_values(&path, Table::Contacts, &t1, &t2);
    swap_values(&path, Table::Sessions, &k1, &k2);
    swap_values(&path, Table::History, &h1, &h2);
    let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(key)).unwrap();
    assert_eq!(
        store.contact(&d1).err(),
        Some(StoreError::Authentication { table: "contacts" })
    );
    assert_eq!(
        store.sessions(&d2).err(),
        Some(StoreError::Authentication { table: "sessions" })
    );
    assert_eq!(
        store.history(&acct(PEER_PHONE), 10).err(),
        Some(StoreError::Authentication { table: "history" })
    );

    // Moving a row's sequence number (reordering) is detected too.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE records SET seq = seq + 100 WHERE tbl = ?1",
        [Table::Sessions.id()],
    )
    .unwrap();
    assert!(store.sessions(&d1).is_err());
}

#[test]
fn outbox_survives_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let key = StoreKey::from_bytes([4; 32]);
    let ids: Vec<MessageId> = {
        let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(key.clone())).unwrap();
        (0..3)
            .map(|i| {
                let id = MessageId::random();
                let content = encode_content(&id, &MessageBody::Text(format!("m{i}")));
                let mut batch = Batch::new();
                let seq = store.new_outbox_seq().unwrap();
                store.put_outbox(
                    &mut batch,
                    &OutboxEntry {
                        seq,
                        message_id: id,
                        recipient: acct(PEER_PHONE),
                        history_seq: 0,
                        created_at: i,
                        content,
                        envelopes: (i == 1).then(|| {
                            vec![sealpost_wire::relay::OutgoingEnvelope {
                                device_id: 2,
                                envelope: vec![9; 40],
                            }]
                        }),
                        sender_seq: if i == 1 { 7 } else { 0 },
                        target: None,
                    },
                );
                store.commit(batch).unwrap();
                id
            })
            .collect()
    };
    let store = Store::open_sqlite_blocking(&path, StoreSecret::Key(key)).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 3);
    let head = store.outbox_head(10).unwrap();
    assert_eq!(head.iter().map(|e| e.message_id).collect::<Vec<_>>(), ids);
    assert_eq!(
        records::body_of(&head[2].content),
        Some(MessageBody::Text("m2".into()))
    );
    assert_eq!(head[1].envelopes.as_ref().unwrap()[0].envelope, vec![9; 40]);
    // New entries go after the old ones.
    let next = store.new_outbox_seq().unwrap();
    assert!(next > head[2].seq);
    let mut batch = Batch::new();
    store.delete_outbox(&mut batch, head[0].seq);
    store.commit(batch).unwrap();
    assert_eq!(store.outbox_head(1).unwrap()[0].message_id, ids[1]);
}

#[test]
fn processed_ids_are_pruned_by_day() {
    let store = Store::in_memory(StoreKey::generate()).unwrap();
    let peer = DeviceAddress::new(acct(PEER_PHONE), DeviceId(1));
    let (old, new) = (
        MessageId::from_bytes([1; 16]),
        MessageId::from_bytes([2; 16]),
    );
    let mut batch = Batch::new();
    store.mark_processed(&mut batch, &peer, &old, DAY_MS);
    store.mark_processed(&mut batch, &peer, &new, 40 * DAY_MS);
    store.commit(batch).unwrap();
    store.prune_processed(10 * DAY_MS).unwrap();
    assert!(!store.is_processed(&peer, &old).unwrap());
    assert!(store.is_processed(&peer, &new).unwrap());
}

#[test]
fn record_layouts_roundtrip() {
    let (_, mut prekeys) = (0, PreKeyState::default());
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let mut rng = rand::rng();
    let spk = prekeys.keys.generate_signed_prekey(&mut rng, &id, 3);
    prekeys.signed = Some((spk.id, 3));
    prekeys.retired.push(RetiredKey {
        kind: RetiredKind::Kem,
        id: 9,
        retired_at: 4,
    });
    prekeys.pending = Some(sealpost_wire::relay::PreKeyUpload {
        signed_prekey: Some(spk),
        one_time: prekeys.keys.generate_one_time_prekeys(&mut rng, 2),
        kem: prekeys
            .keys
            .generate_kem_prekeys(&mut rng, &id, KemPreKeyKind::OneTime, 1, 3),
    });
    let back = PreKeyState::decode(&prekeys.encode()).unwrap();
    assert_eq!(back.signed, prekeys.signed);
    assert_eq!(back.retired, prekeys.retired);
    assert_eq!(back.pending, prekeys.pending);
    assert_eq!(*back.keys.to_bytes(), *prekeys.keys.to_bytes());
    let enc = prekeys.encode();
    for cut in [0, 1, 5, enc.len() - 1] {
        assert!(PreKeyState::decode(&enc[..cut]).is_err());
    }
}

#[test]
fn debug_output_hides_secrets() {
    let key = StoreSecret::Key(StoreKey::from_bytes([0xab; 32]));
    assert!(!format!("{key:?}").contains("171")); // 0xab = 171
    let pw = StoreSecret::passphrase("hunter2-passphrase");
    assert!(!format!("{pw:?}").contains("hunter2"));
    let id = MessageId::random();
    let e = OutboxEntry {
        seq: 1,
        message_id: id,
        recipient: acct(PEER_PHONE),
        history_seq: 1,
        created_at: 1,
        content: encode_content(&id, &MessageBody::Text(SECRET_TEXT.into())),
        envelopes: None,
        sender_seq: 0,
        target: None,
    };
    let dbg = format!("{e:?}");
    assert!(!dbg.contains("ZEBRA") && !dbg.contains("90, 69, 66"));
    let store = Store::in_memory(StoreKey::generate()).unwrap();
    assert_eq!(format!("{store:?}"), "Store(..)");
}

/// Outbox entries carry their `sender_seq` (version 2); version-1 entries written before load
/// with 0. The sender state defaults to "detects nothing", round-trips and is bound to its row.
#[test]
fn sender_seq_records() {
    let id = MessageId::random();
    let mut e = OutboxEntry {
        seq: 3,
        message_id: id,
        recipient: acct(PEER_PHONE),
        history_seq: 1,
        created_at: 2,
        content: encode_content(&id, &MessageBody::Text("x".into())),
        envelopes: Some(vec![sealpost_wire::relay::OutgoingEnvelope {
            device_id: 2,
            envelope: vec![9; 40],
        }]),
        sender_seq: 0x0102_0304_0506_0708,
        target: None,
    };
    let enc = e.encode();
    assert_eq!(enc[0], crate::store::OUTBOX_RECORD_VERSION);
    let back = OutboxEntry::decode(3, &enc).unwrap();
    assert_eq!(back.sender_seq, e.sender_seq);
    assert_eq!(back.envelopes, e.envelopes);
    for cut in 0..enc.len() {
        assert!(OutboxEntry::decode(3, &enc[..cut]).is_err());
    }
    // The version-1 layout: no sender_seq between the flag and the count.
    let flag_at = enc.len() - (1 + 4 + 4 + 40) - 8 - 1;
    assert_eq!(enc[flag_at], 1, "prepared flag");
    let mut v1 = enc[..=flag_at].to_vec();
    v1[0] = RECORD_PLAINTEXT_VERSION;
    v1.extend_from_slice(&enc[flag_at + 9..]);
    let old = OutboxEntry::decode(3, &v1).unwrap();
    assert_eq!(old.sender_seq, 0);
    assert_eq!(old.envelopes, e.envelopes);
    let mut v4 = enc.to_vec();
    v4[0] = 4;
    assert!(OutboxEntry::decode(3, &v4).is_err());
    // An entry for one own device (a history part) is version 3 with its target.
    e.target = Some(DeviceId(7));
    let enc3 = e.encode();
    assert_eq!(enc3[0], crate::store::OUTBOX_TARGETED_RECORD_VERSION);
    assert_eq!(enc3.len(), enc.len() + 4);
    let back = OutboxEntry::decode(3, &enc3).unwrap();
    assert_eq!(
        (back.target, back.sender_seq),
        (Some(DeviceId(7)), e.sender_seq)
    );
    for cut in 0..enc3.len() {
        assert!(OutboxEntry::decode(3, &enc3[..cut]).is_err());
    }
    e.target = None;
    e.envelopes = None;
    assert_eq!(
        OutboxEntry::decode(3, &e.encode()).unwrap().sender_seq,
        0,
        "an unprepared entry has no sequence number"
    );

    let store = Store::in_memory(StoreKey::generate()).unwrap();
    let fresh = store.sender_state().unwrap();
    assert_eq!(fresh.next_sender_seq, 1);
    assert_eq!(fresh.sendable_from, 0);
    let mut s = fresh;
    assert_eq!(s.allocate(), Some(1));
    assert_eq!(s.allocate(), Some(2));
    s.sendable_from = 9;
    let mut batch = Batch::new();
    store.put_sender_state(&mut batch, &s);
    store.commit(batch).unwrap();
    assert_eq!(store.sender_state().unwrap(), s);
    assert!(SenderState::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    let mut last = SenderState {
        next_sender_seq: crate::store::MAX_SENDER_SEQ,
        sendable_from: 0,
    };
    assert_eq!(last.allocate(), Some(crate::store::MAX_SENDER_SEQ));
    assert_eq!(last.allocate(), None);
}

#[test]
fn a_store_is_open_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("once.db");
    let key = || StoreSecret::Key(StoreKey::from_bytes([9; 32]));
    let store = Store::open_sqlite_blocking(&path, key()).unwrap();
    // A second open in the same process (another open file description) is refused at
    // once, with any secret, and so is the bare backend.
    assert_eq!(
        Store::open_sqlite_blocking(&path, key()).err(),
        Some(StoreError::InUse { path: path.clone() })
    );
    assert_eq!(
        SqliteClientStore::open(&path).err(),
        Some(StoreError::InUse { path: path.clone() })
    );
    // A clone is the same open store, not a second open.
    let clone = store.clone();
    drop(store);
    assert_eq!(
        Store::open_sqlite_blocking(&path, key()).err(),
        Some(StoreError::InUse { path: path.clone() })
    );
    // Dropping the last handle releases the lock.
    drop(clone);
    let again = Store::open_sqlite_blocking(&path, key()).unwrap();
    drop(again);
    // Another store file has its own lock.
    let other = Store::open_sqlite_blocking(dir.path().join("other.db"), key()).unwrap();
    let _first = Store::open_sqlite_blocking(&path, key()).unwrap();
    drop(other);
}

#[test]
fn version_1_contact_records_still_load_as_unverified() {
    let identity = IdentityKeyPair::generate(&mut rand::rng()).public();
    let address = DeviceAddress::new(acct(PEER_PHONE), DeviceId(3));
    // The version 1 layout (spec/client-store.md 5.3), written by hand.
    let mut w = Writer::new();
    w.u8(1);
    address.encode_into(&mut w);
    w.bytes(&identity.to_bytes()).u64(11).u64(12);
    let v1 = w.into_bytes();
    let c = Contact::decode(&v1).unwrap();
    assert_eq!(
        c,
        Contact {
            address: address.clone(),
            identity,
            first_seen: 11,
            changed_at: 12,
            verification: Verification::Unverified,
        }
    );
    // Written back as version 2 with the state; every state round-trips.
    for v in [
        Verification::Unverified,
        Verification::Verified,
        Verification::ChangedSinceVerified,
    ] {
        let c = Contact {
            verification: v,
            ..c.clone()
        };
        let bytes = c.encode();
        assert_eq!(bytes[0], CONTACT_RECORD_VERSION);
        assert_eq!(bytes.len(), v1.len() + 1);
        assert_eq!(Contact::decode(&bytes).unwrap(), c);
    }
    // A version 1 record with the new byte, an unknown state or version 3 is malformed.
    let mut long = v1.clone();
    long.push(1);
    assert!(matches!(
        Contact::decode(&long),
        Err(StoreError::Malformed { .. })
    ));
    let mut bad = c.encode().to_vec();
    *bad.last_mut().unwrap() = 3;
    assert!(matches!(
        Contact::decode(&bad),
        Err(StoreError::Malformed { .. })
    ));
    bad[0] = 3;
    assert!(matches!(
        Contact::decode(&bad),
        Err(StoreError::Malformed { .. })
    ));
}

/// The linked-devices records (spec/client-store.md 5.9, 5.10) round-trip through a store;
/// a store without them (written before linked devices) reads as having none; a stored
/// list is checked again when read.
#[test]
fn device_list_records() {
    use sealpost_devices::{AccountKeyPair, DeviceRole};
    use sealpost_wire::devices::DeviceName;
    let store = Store::in_memory(StoreKey::from_bytes([7; 32])).unwrap();
    let me = acct("+15550000001");
    assert!(store.own_devices(&me).unwrap().is_none());
    assert!(store.list_pin(&me).unwrap().is_none());
    let id = IdentityKeyPair::generate(&mut rand::rng());
    let key = AccountKeyPair::generate(&mut rand::rng());
    let list = key
        .first_list(
            &me,
            1,
            id.public().to_wire(),
            DeviceRole::Primary,
            DeviceName::new("Phone").unwrap(),
            7,
            |m| id.sign(m),
        )
        .unwrap();
    let public = key.public();
    let mut batch = Batch::new();
    store.put_own_devices(
        &mut batch,
        &OwnDevices {
            account_key: Some(key),
            list: list.clone(),
            published: false,
        },
    );
    store.put_list_pin(
        &mut batch,
        &ListPin {
            list: list.clone(),
            verification: Verification::Verified,
        },
    );
    store.commit(batch).unwrap();
    let own = store.own_devices(&me).unwrap().unwrap();
    assert_eq!(own.list, list);
    assert!(!own.published);
    assert_eq!(own.account_key.unwrap().public(), public);
    let pin = store.list_pin(&me).unwrap().unwrap();
    assert_eq!(pin.verification, Verification::Verified);
    assert_eq!(pin.list, list);
    // Read for another account: the stored list is not valid for it.
    assert!(store.own_devices(&acct("+15550000002")).is_err());
    // A truncated record is malformed.
    let enc = pin.encode();
    for cut in [0, 1, 10, enc.len() - 1] {
        assert!(ListPin::decode(&enc[..cut], &me).is_err());
    }
    // Debug of the own record prints no seed.
    let own = store.own_devices(&me).unwrap().unwrap();
    let seed = hex::encode(own.account_key.as_ref().unwrap().to_seed().as_slice());
    assert!(!format!("{own:?}").contains(&seed));
}

/// A history entry with an author is version 2 and keeps the author; one without stays
/// byte for byte the version 1 layout (spec/client-store.md 5.5); a bad author is
/// `Malformed`.
#[test]
fn history_records_carry_the_author_in_version_2_only() {
    let peer = DeviceAddress::new(acct(PEER_PHONE), DeviceId(2));
    let id = MessageId::from_bytes([7; 16]);
    let content = encode_content(&id, &MessageBody::Text("Hi, Lina here.".into()));
    let author = crate::event::DeviceInfo {
        id: DeviceId(2),
        name: "Lina, support".into(),
        role: sealpost_devices::DeviceRole::Agent,
    };
    let plain = |a: Option<&crate::event::DeviceInfo>| {
        encode_history(
            Direction::Incoming,
            &peer,
            1_000,
            MessageStatus::Received,
            &content,
            a,
            None,
        )
    };
    let without = plain(None);
    assert_eq!(without[0], RECORD_PLAINTEXT_VERSION);
    let with = plain(Some(&author));
    assert_eq!(with[0], HISTORY_AUTHOR_RECORD_VERSION);
    assert_eq!(&with[1..without.len()], &without[1..]);
    assert_eq!(
        &with[without.len()..],
        &[&[0, 0, 0, 2, 0x12, 13][..], b"Lina, support"].concat()[..]
    );
    let (entry, _) = decode_history(5, &with).unwrap();
    assert_eq!(entry.author, Some(author));
    assert_eq!(entry.seq, 5);
    assert_eq!(decode_history(5, &without).unwrap().0.author, None);
    // An unknown role, a control character in the name, a missing author, trailing bytes.
    let role_at = without.len() + 4;
    let mut bad_role = with.to_vec();
    bad_role[role_at] = 0x7f;
    let mut bad_name = with.to_vec();
    bad_name[role_at + 2] = b'\n';
    let mut v2_without = without.to_vec();
    v2_without[0] = HISTORY_AUTHOR_RECORD_VERSION;
    let mut trailing = with.to_vec();
    trailing.push(0);
    for bad in [bad_role, bad_name, v2_without, trailing] {
        assert!(
            matches!(
                decode_history(5, &bad),
                Err(StoreError::Malformed {
                    table: "history",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    // An outgoing entry of a business device records which device sent it (version 0x03);
    // an incoming one, device 0 and a missing sender are refused.
    let sent = |direction| {
        encode_history(
            direction,
            &peer,
            1_000,
            MessageStatus::Delivered { at: 1_001 },
            &content,
            None,
            Some(DeviceId(7)),
        )
    };
    let outgoing = sent(Direction::Outgoing);
    assert_eq!(outgoing[0], HISTORY_SENDER_RECORD_VERSION);
    assert_eq!(&outgoing[outgoing.len() - 4..], &[0, 0, 0, 7]);
    let entry = decode_history(6, &outgoing).unwrap().0;
    assert_eq!(
        (entry.sender_device, entry.author),
        (Some(DeviceId(7)), None)
    );
    assert_eq!(decode_history(5, &without).unwrap().0.sender_device, None);
    let mut zero = outgoing.to_vec();
    let at = zero.len() - 1;
    zero[at] = 0;
    let mut missing = outgoing.to_vec();
    missing.truncate(missing.len() - 4);
    for bad in [sent(Direction::Incoming).to_vec(), zero, missing] {
        assert!(
            matches!(
                decode_history(5, &bad),
                Err(StoreError::Malformed {
                    table: "history",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
}
