//! Engine tests of rollback detection and session renewal (spec/client-store.md section 9).

use super::*;
use crate::store::{StoreKey, StoreSecret};

/// A bundle of already published prekeys (as the relay would serve it later).
fn published(e: &Engine) -> PreKeyBundle {
    let state = e.prekey_state().unwrap().unwrap();
    state
        .keys
        .bundle(&e.identity, e.address.device.0, true)
        .unwrap()
}

fn events_of(p: Processed) -> Vec<ClientEvent> {
    match p {
        Processed::Accepted(evs) => evs,
        other => panic!("{other:?}"),
    }
}

/// Rollback detection at the engine level: only a relay count at or above the store's
/// next `sender_seq` detects; sessions are set aside (no sending, no promotion back),
/// renewed from a bundle, and the peer sees one `SessionReset` (none at first contact).
#[test]
fn rollback_sets_sessions_aside_until_renewed() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    let b_account = bob.address.account.clone();
    let bob_1 = DeviceAddress::new(b_account.clone(), DeviceId(1));
    alice
        .apply_refresh(&b_account, None, &[bundle(&bob)], 1, false)
        .unwrap();
    let mut sid = 0;
    let d = send(&alice, &bob, "hi", &mut sid);
    let first = events_of(bob.process_delivery(&d[0], 10).unwrap());
    assert_eq!(first.len(), 1, "first contact: only the message, {first:?}");
    let r = send(&bob, &alice, "yo", &mut sid);
    assert_eq!(text_of(alice.process_delivery(&r[0], 10).unwrap()), "yo");

    // One Send prepared: next_sender_seq is 2.
    assert_eq!(alice.store.sender_state().unwrap().next_sender_seq, 2);
    assert_eq!(alice.check_rollback(0).unwrap(), None);
    assert_eq!(alice.check_rollback(1).unwrap(), None);
    assert_eq!(
        alice.check_rollback(4).unwrap(),
        Some(ClientEvent::StoreRolledBack {
            local_sender_seq: 1,
            relay_sender_seq: 4,
        })
    );
    assert_eq!(alice.check_rollback(4).unwrap(), None, "reported once");

    // The old session does not send.
    alice
        .enqueue(&b_account, &MessageBody::Text("after".into()), 20)
        .unwrap();
    let entry = alice.outbox_head().unwrap().unwrap();
    let devices = [DeviceId(1)];
    assert_eq!(
        alice.prepare(entry.clone(), &devices).unwrap_err(),
        ClientError::SessionRenewalPending {
            device: DeviceId(1)
        }
    );
    assert_eq!(
        alice.sessions_to_renew(&entry, &devices).unwrap(),
        devices.to_vec()
    );
    // A bundle of another device, or none, renews nothing.
    assert_eq!(
        alice.renew_sessions(&b_account, &devices, &[]).unwrap(),
        devices.to_vec()
    );
    assert_eq!(
        alice
            .renew_sessions(&b_account, &devices, &[published(&bob)])
            .unwrap(),
        Vec::<DeviceId>::new()
    );
    assert!(
        alice
            .sessions_to_renew(&entry, &devices)
            .unwrap()
            .is_empty()
    );
    assert_eq!(alice.store.sessions(&bob_1).unwrap().len(), 2, "old kept");
    // Bob, unaware, still sends on the old session: Alice decrypts it with the old
    // (not newest) session, which is not promoted back to sending.
    let old = send(&bob, &alice, "old chain", &mut sid);
    assert_eq!(
        text_of(alice.process_delivery(&old[0], 21).unwrap()),
        "old chain"
    );
    assert!(
        alice
            .sessions_to_renew(&entry, &devices)
            .unwrap()
            .is_empty()
    );
    let entry = alice.prepare(entry, &devices).unwrap();
    assert_eq!(entry.sender_seq, 5, "above the relay's count");
    let env = &entry.envelopes.as_ref().unwrap()[0].envelope;
    assert!(matches!(
        SessionMessage::decode(env).unwrap(),
        SessionMessage::PreKey(_)
    ));
    alice.complete(&entry, 30).unwrap();
    let delivery = Delivery {
        server_id: 99,
        sender: alice.address.clone(),
        message_id: *entry.message_id.as_bytes(),
        timestamp: 30,
        envelope: env.clone(),
    };
    let evs = events_of(bob.process_delivery(&delivery, 31).unwrap());
    assert_eq!(
        evs[0],
        ClientEvent::SessionReset {
            peer: alice.address.clone()
        }
    );
    assert!(
        matches!(&evs[1], ClientEvent::Message { body, .. } if body.as_text() == Some("after"))
    );
    assert_eq!(evs.len(), 2);
    // Bob replies on the new session; Alice reads it and keeps using it.
    let reply = send(&bob, &alice, "welcome back", &mut sid);
    assert_eq!(
        text_of(alice.process_delivery(&reply[0], 40).unwrap()),
        "welcome back"
    );
    let next = send(&alice, &bob, "again", &mut sid);
    assert_eq!(
        text_of(bob.process_delivery(&next[0], 41).unwrap()),
        "again"
    );
}

/// An entry prepared before the backup is sent again unchanged (same bytes, same
/// `sender_seq`) by the restored copy, and the peer drops it as a duplicate; what the
/// restored copy encrypts afterwards goes to a new session. Real SQLite files, copied.
#[test]
fn entry_prepared_before_the_backup_is_resent_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate();
    let open = |name: &str| {
        Store::open_sqlite_blocking(dir.path().join(name), StoreSecret::Key(key.clone())).unwrap()
    };
    let record = AccountRecord {
        identity: IdentityKeyPair::generate(&mut rand::rng()),
        account: AccountId::new("+15550000001").unwrap(),
        device: Some(DeviceId(1)),
        registered_at: 1,
    };
    let live = {
        let store = open("live.db");
        let mut b = Batch::new();
        store.put_account(&mut b, &record);
        store.commit(b).unwrap();
        Engine::new(store, &record, SessionConfig::default()).unwrap()
    };
    let bob = engine("+15550000002", 1);
    let b_account = bob.address.account.clone();
    live.apply_refresh(&b_account, None, &[bundle(&bob)], 1, false)
        .unwrap();
    let mut sid = 0;
    let x = send(&live, &bob, "x", &mut sid);
    assert_eq!(text_of(bob.process_delivery(&x[0], 2).unwrap()), "x");
    live.enqueue(&b_account, &MessageBody::Text("p".into()), 3)
        .unwrap();
    let head = live.outbox_head().unwrap().unwrap();
    let prepared = live.prepare(head, &[DeviceId(1)]).unwrap();
    assert_eq!(prepared.sender_seq, 2);
    // The backup: the database and its write-ahead log, with nothing being written.
    for ext in ["", "-wal", "-shm"] {
        let from = dir.path().join(format!("live.db{ext}"));
        if from.exists() {
            std::fs::copy(&from, dir.path().join(format!("copy.db{ext}"))).unwrap();
        }
    }
    // The live copy sends "p" and one more.
    live.complete(&prepared, 4).unwrap();
    let p = Delivery {
        server_id: 50,
        sender: live.address.clone(),
        message_id: *prepared.message_id.as_bytes(),
        timestamp: 4,
        envelope: prepared.envelopes.clone().unwrap()[0].envelope.clone(),
    };
    assert_eq!(text_of(bob.process_delivery(&p, 5).unwrap()), "p");
    let q = send(&live, &bob, "q", &mut sid);
    assert_eq!(text_of(bob.process_delivery(&q[0], 6).unwrap()), "q");
    drop(live);

    let restored = Engine::new(open("copy.db"), &record, SessionConfig::default()).unwrap();
    assert!(matches!(
        restored.check_rollback(3).unwrap(),
        Some(ClientEvent::StoreRolledBack {
            local_sender_seq: 2,
            relay_sender_seq: 3
        })
    ));
    let again = restored.outbox_head().unwrap().unwrap();
    assert_eq!(again.sender_seq, prepared.sender_seq);
    assert_eq!(again.envelopes, prepared.envelopes, "the same bytes");
    // Already prepared: nothing to renew, nothing re-encrypted.
    assert!(
        restored
            .sessions_to_renew(&again, &[DeviceId(1)])
            .unwrap()
            .is_empty()
    );
    let again = restored.prepare(again, &[DeviceId(1)]).unwrap();
    assert_eq!(again.sender_seq, prepared.sender_seq);
    assert_eq!(again.envelopes, prepared.envelopes);
    restored.complete(&again, 7).unwrap();
    assert!(matches!(
        bob.process_delivery(&Delivery { server_id: 51, ..p }, 8)
            .unwrap(),
        Processed::Duplicate
    ));
    // New messages: a new session, a sequence number above the relay's.
    restored
        .enqueue(&b_account, &MessageBody::Text("r".into()), 9)
        .unwrap();
    let r = restored.outbox_head().unwrap().unwrap();
    assert_eq!(
        restored.sessions_to_renew(&r, &[DeviceId(1)]).unwrap(),
        vec![DeviceId(1)]
    );
    assert!(
        restored
            .renew_sessions(&b_account, &[DeviceId(1)], &[published(&bob)])
            .unwrap()
            .is_empty()
    );
    let r = restored.prepare(r, &[DeviceId(1)]).unwrap();
    assert_eq!(r.sender_seq, 4);
    let d = Delivery {
        server_id: 52,
        sender: restored.address.clone(),
        message_id: *r.message_id.as_bytes(),
        timestamp: 10,
        envelope: r.envelopes.clone().unwrap()[0].envelope.clone(),
    };
    let evs = events_of(bob.process_delivery(&d, 11).unwrap());
    assert!(
        matches!(&evs[..], [ClientEvent::SessionReset { .. }, ClientEvent::Message { body, .. }] if body.as_text() == Some("r"))
    );
}
