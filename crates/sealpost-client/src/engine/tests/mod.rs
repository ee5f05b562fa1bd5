use super::*;
use crate::store::{Batch, StoreKey};
use sealpost_wire::relay::Delivery;

/// Device lists: the update rule as the engine applies it.
mod devices;
/// History bundles: building, packing, queueing and applying (spec/client-store.md 6.2).
mod history;
/// Rollback detection and session renewal (spec/client-store.md section 9).
mod rollback;
/// Sync messages: read state and deletions (spec/client-store.md 6.3).
mod sync;

fn engine(phone: &str, device: u32) -> Engine {
    let store = Store::in_memory(StoreKey::generate()).unwrap();
    let record = AccountRecord {
        identity: IdentityKeyPair::generate(&mut rand::rng()),
        account: AccountId::new(phone).unwrap(),
        device: Some(DeviceId(device)),
        registered_at: 1,
    };
    let mut b = Batch::new();
    store.put_account(&mut b, &record);
    store.commit(b).unwrap();
    Engine::new(store, &record, SessionConfig::default()).unwrap()
}

/// Publishes prekeys and returns the bundle a relay would serve.
fn bundle(e: &Engine) -> PreKeyBundle {
    let upload = e.plan_prekeys(None, 1000).unwrap().unwrap();
    assert!(upload.signed_prekey.is_some());
    assert_eq!(upload.one_time.len(), ONE_TIME_PREKEY_TARGET as usize);
    assert_eq!(upload.kem.len(), 1 + KEM_PREKEY_TARGET as usize);
    e.prekeys_uploaded(&upload).unwrap();
    let state = e.prekey_state().unwrap().unwrap();
    state
        .keys
        .bundle(&e.identity, e.address.device.0, true)
        .unwrap()
}

/// Sends `text` from `a` to `b`'s account and returns the deliveries.
fn send(a: &Engine, to: &Engine, text: &str, server_id: &mut u64) -> Vec<Delivery> {
    a.enqueue(&to.address.account, &MessageBody::Text(text.into()), 5)
        .unwrap();
    let entry = a.outbox_head().unwrap().unwrap();
    let devices = a.recipient_devices(&to.address.account).unwrap();
    let entry = a.prepare(entry, &devices).unwrap();
    a.complete(&entry, 77).unwrap();
    entry
        .envelopes
        .unwrap()
        .into_iter()
        .map(|e| {
            *server_id += 1;
            Delivery {
                server_id: *server_id,
                sender: a.address.clone(),
                message_id: *entry.message_id.as_bytes(),
                timestamp: *server_id,
                envelope: e.envelope,
            }
        })
        .collect()
}

fn text_of(p: Processed) -> String {
    match p {
        Processed::Accepted(evs) => match evs.last() {
            Some(ClientEvent::Message { body, .. }) => body.as_text().unwrap().to_owned(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn conversation_dedupe_and_routing() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    let b_bundle = bundle(&bob);
    let a_bundle = bundle(&alice);
    let mut sid = 0;
    // First contact: no safety-number event (trust on first use).
    let evs = alice
        .apply_refresh(&bob.address.account, None, &[b_bundle], 1, false)
        .unwrap();
    assert!(evs.is_empty());
    let d = send(&alice, &bob, "hello bob", &mut sid);
    assert_eq!(d.len(), 1);
    // Bob simultaneously starts his own session with Alice.
    bob.apply_refresh(&alice.address.account, None, &[a_bundle], 1, false)
        .unwrap();
    let d2 = send(&bob, &alice, "hello alice", &mut sid);

    assert_eq!(
        text_of(bob.process_delivery(&d[0], 10).unwrap()),
        "hello bob"
    );
    // Redelivery is recognised.
    assert!(matches!(
        bob.process_delivery(&d[0], 10).unwrap(),
        Processed::Duplicate
    ));
    assert_eq!(
        text_of(alice.process_delivery(&d2[0], 10).unwrap()),
        "hello alice"
    );
    // Both sides now hold two sessions; conversations converge and keep working.
    for i in 0..5 {
        let x = send(&alice, &bob, &format!("a{i}"), &mut sid);
        assert_eq!(
            text_of(bob.process_delivery(&x[0], 10).unwrap()),
            format!("a{i}")
        );
        let y = send(&bob, &alice, &format!("b{i}"), &mut sid);
        assert_eq!(
            text_of(alice.process_delivery(&y[0], 10).unwrap()),
            format!("b{i}")
        );
    }
    let peer = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
    assert_eq!(alice.store.sessions(&peer).unwrap().len(), 2);
    let h = alice.store.history(&bob.address.account, 100).unwrap();
    assert_eq!(h.len(), 12);
    assert!(
        h.iter()
            .filter(|e| e.direction == Direction::Outgoing)
            .all(|e| e.status == MessageStatus::Delivered { at: 77 })
    );
    assert_eq!(alice.store.outbox_len().unwrap(), 0);

    // A forged envelope and a relay-altered message id are rejected without harm.
    let mut x = send(&alice, &bob, "z", &mut sid);
    let mut forged = x[0].clone();
    let last = forged.envelope.len() - 1;
    forged.envelope[last] ^= 1;
    assert!(matches!(
        bob.process_delivery(&forged, 10).unwrap(),
        Processed::Rejected(_)
    ));
    let mut relabeled = x[0].clone();
    relabeled.message_id = [0xee; 16];
    assert!(matches!(
        bob.process_delivery(&relabeled, 10).unwrap(),
        Processed::Rejected(_)
    ));
    assert_eq!(
        text_of(bob.process_delivery(&x.remove(0), 10).unwrap()),
        "z"
    );
}

/// Issue 11: a relay that relabels the sender of Alice's first message as Mallory (whom
/// Bob knows) gets nothing attributed to Mallory, no identity change and no
/// `SafetyNumberChanged`; the genuine delivery is still accepted afterwards.
#[test]
fn relabelled_sender_is_rejected_and_changes_no_identity() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    let mallory = engine("+15550000003", 1);
    let b_bundle = bundle(&bob);
    bob.apply_refresh(
        &mallory.address.account,
        None,
        &[bundle(&mallory)],
        1,
        false,
    )
    .unwrap();
    let mallory_identity = mallory.identity.public();
    let stored = |b: &Engine| b.store.contact(&mallory.address).unwrap().unwrap().identity;
    assert_eq!(stored(&bob), mallory_identity);
    alice
        .apply_refresh(&bob.address.account, None, &[b_bundle], 1, false)
        .unwrap();
    let mut sid = 0;
    let mut d = send(&alice, &bob, "pay 100 EUR", &mut sid);
    let genuine = d[0].clone();
    d[0].sender = mallory.address.clone();
    assert!(matches!(
        bob.process_delivery(&d[0], 10).unwrap(),
        Processed::Rejected(_)
    ));
    assert_eq!(stored(&bob), mallory_identity, "Mallory's identity changed");
    assert!(
        bob.store
            .history(&mallory.address.account, 10)
            .unwrap()
            .is_empty()
    );
    // The same envelope under its real sender is Alice's message.
    assert_eq!(
        text_of(bob.process_delivery(&genuine, 10).unwrap()),
        "pay 100 EUR"
    );
    // A later message relabelled as Mallory is rejected too.
    let mut later = send(&alice, &bob, "and again", &mut sid);
    later[0].sender = mallory.address.clone();
    assert!(matches!(
        bob.process_delivery(&later[0], 10).unwrap(),
        Processed::Rejected(_)
    ));
    assert_eq!(stored(&bob), mallory_identity);
}

/// The version-1 state encoding of a fresh version-2 initiator session (no skipped
/// keys): no addresses, no stored ratchet public key.
fn as_version_1(session: &Session) -> Vec<u8> {
    let v2 = sealpost_session::hazmat::to_state_bytes(session);
    assert_eq!(v2[0], 2);
    let local_len = 1 + usize::from(v2[137]) + 4;
    let remote_len = 1 + usize::from(v2[137 + local_len]) + 4;
    let b = 137 + local_len + remote_len;
    let pending = if v2[b + 33] == 1 { 1581 } else { 0 };
    let p = b + 34 + pending;
    assert_eq!(v2[v2.len() - 4..], [0, 0, 0, 0], "no skipped keys");
    let mut v1 = vec![1];
    v1.extend_from_slice(&v2[1..137]);
    v1.extend_from_slice(&v2[b..p + 32]);
    v1.extend_from_slice(&v2[p + 64..]);
    v1
}

/// A session loaded from version-1 state is never used to send: the device counts as
/// having no session, a new handshake replaces it, with no safety-number change.
#[test]
fn legacy_session_is_replaced_by_a_new_handshake() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    let b_bundle = bundle(&bob);
    alice
        .apply_refresh(
            &bob.address.account,
            None,
            std::slice::from_ref(&b_bundle),
            1,
            false,
        )
        .unwrap();
    let peer = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
    let (_, session) = alice.store.sessions(&peer).unwrap().remove(0);
    let legacy = sealpost_session::hazmat::from_state_bytes(&as_version_1(&session)).unwrap();
    assert!(legacy.is_legacy());
    let mut batch = Batch::new();
    alice.store.delete_sessions(&mut batch, &peer);
    alice
        .store
        .put_session(&mut batch, &peer, None, &legacy)
        .unwrap();
    alice.store.commit(batch).unwrap();

    assert!(
        alice
            .recipient_devices(&bob.address.account)
            .unwrap()
            .is_empty()
    );
    let listed = vec![DeviceInfo {
        device_id: 1,
        identity: bob.identity.public().to_wire(),
    }];
    assert_eq!(
        alice
            .missing_devices(&bob.address.account, &listed)
            .unwrap(),
        vec![1]
    );
    let events = alice
        .apply_refresh(&bob.address.account, Some(&listed), &[b_bundle], 2, false)
        .unwrap();
    assert!(events.is_empty(), "no safety-number change: {events:?}");
    assert_eq!(
        alice.recipient_devices(&bob.address.account).unwrap(),
        vec![DeviceId(1)]
    );
    let mut sid = 0;
    let d = send(&alice, &bob, "after the upgrade", &mut sid);
    assert_eq!(
        text_of(bob.process_delivery(&d[0], 3).unwrap()),
        "after the upgrade"
    );
}

#[test]
fn safety_number_change_on_reregistration() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    alice
        .apply_refresh(&bob.address.account, None, &[bundle(&bob)], 1, false)
        .unwrap();
    // Bob re-registers on a new phone: device 2 with a new identity; device 1 is gone.
    let bob2 = engine("+15550000002", 2);
    let b2 = bundle(&bob2);
    let listed = vec![DeviceInfo {
        device_id: 2,
        identity: bob2.identity.public().to_wire(),
    }];
    assert_eq!(
        alice
            .missing_devices(&bob.address.account, &listed)
            .unwrap(),
        vec![2]
    );
    let evs = alice
        .apply_refresh(&bob.address.account, Some(&listed), &[b2], 2, false)
        .unwrap();
    assert_eq!(
        evs,
        vec![ClientEvent::SafetyNumberChanged {
            account: bob.address.account.clone(),
            device: DeviceId(2),
        }]
    );
    assert_eq!(
        alice.recipient_devices(&bob.address.account).unwrap(),
        vec![DeviceId(2)]
    );
    let gone = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
    assert!(alice.store.sessions(&gone).unwrap().is_empty());
    let mut sid = 0;
    let d = send(&alice, &bob2, "still there?", &mut sid);
    assert_eq!(
        text_of(bob2.process_delivery(&d[0], 3).unwrap()),
        "still there?"
    );
}

#[test]
fn a_verified_contacts_new_identity_holds_sending_until_approved() {
    let alice = engine("+15550000001", 1);
    let bob = engine("+15550000002", 1);
    alice
        .apply_refresh(&bob.address.account, None, &[bundle(&bob)], 1, false)
        .unwrap();
    let bob1 = DeviceAddress::new(bob.address.account.clone(), DeviceId(1));
    let (_, number) = alice.safety_number(&bob1).unwrap();
    assert_eq!(
        alice.mark_verified(&bob1, &"1".repeat(60)),
        Err(ClientError::SafetyNumberMismatch)
    );
    alice
        .mark_verified(&bob1, &number.display_groups().join(" "))
        .unwrap();
    assert_eq!(
        alice.store.contact(&bob1).unwrap().unwrap().verification,
        Verification::Verified
    );
    // Bob re-registers: the refresh reports the verified identity's change, not a plain
    // safety-number change, and sending to Bob is held.
    let bob2 = engine("+15550000002", 2);
    let listed = vec![DeviceInfo {
        device_id: 2,
        identity: bob2.identity.public().to_wire(),
    }];
    let evs = alice
        .apply_refresh(
            &bob.address.account,
            Some(&listed),
            &[bundle(&bob2)],
            2,
            false,
        )
        .unwrap();
    assert_eq!(
        evs,
        vec![ClientEvent::VerifiedIdentityChanged {
            account: bob.address.account.clone(),
            device: DeviceId(2),
        }]
    );
    alice
        .enqueue(&bob.address.account, &MessageBody::Text("held".into()), 5)
        .unwrap();
    let entry = alice.outbox_head().unwrap().unwrap();
    let devices = alice.recipient_devices(&bob.address.account).unwrap();
    assert_eq!(devices, vec![DeviceId(2)]);
    assert_eq!(
        alice.prepare(entry.clone(), &devices).err(),
        Some(ClientError::UnapprovedIdentity)
    );
    // Approving resumes sending; the contact is unverified now.
    assert_eq!(alice.approve_identity(&bob.address.account).unwrap(), 1);
    assert_eq!(alice.approve_identity(&bob.address.account).unwrap(), 0);
    let entry = alice.prepare(entry, &devices).unwrap();
    assert_eq!(entry.envelopes.unwrap().len(), 1);
    let bob2_addr = DeviceAddress::new(bob.address.account.clone(), DeviceId(2));
    assert_eq!(
        alice
            .store
            .contact(&bob2_addr)
            .unwrap()
            .unwrap()
            .verification,
        Verification::Unverified
    );
    // Unverified again: a later change is a plain safety-number change.
    let bob3 = engine("+15550000002", 3);
    let listed = vec![DeviceInfo {
        device_id: 3,
        identity: bob3.identity.public().to_wire(),
    }];
    let evs = alice
        .apply_refresh(
            &bob.address.account,
            Some(&listed),
            &[bundle(&bob3)],
            3,
            false,
        )
        .unwrap();
    assert_eq!(
        evs,
        vec![ClientEvent::SafetyNumberChanged {
            account: bob.address.account.clone(),
            device: DeviceId(3),
        }]
    );
}

#[test]
fn prekey_plans_are_persisted_until_confirmed() {
    let e = engine("+15550000003", 1);
    let first = e.plan_prekeys(None, 1000).unwrap().unwrap();
    // Not confirmed: the same upload again.
    assert_eq!(
        e.plan_prekeys(Some((100, 20)), 1001).unwrap(),
        Some(first.clone())
    );
    e.prekeys_uploaded(&first).unwrap();
    // Nothing due.
    assert_eq!(e.plan_prekeys(Some((100, 20)), 1002).unwrap(), None);
    // Low counts: top up to the targets, nothing else.
    let top = e.plan_prekeys(Some((19, 4)), 1003).unwrap().unwrap();
    assert!(top.signed_prekey.is_none());
    assert_eq!(top.one_time.len(), 81);
    assert_eq!(top.kem.len(), 16);
    e.prekeys_uploaded(&top).unwrap();
    // Rotation after a week; the old keys are retired, then deleted after retention.
    let later = 1000 + PREKEY_ROTATION_SECS;
    let rot = e.plan_prekeys(Some((100, 20)), later).unwrap().unwrap();
    assert!(rot.signed_prekey.is_some());
    assert_eq!(rot.kem.len(), 1);
    e.prekeys_uploaded(&rot).unwrap();
    let st = e.prekey_state().unwrap().unwrap();
    assert_eq!(st.retired.len(), 2);
    let kem_before = st.keys.kem_count();
    let much_later = later + RETIRED_PREKEY_RETENTION_SECS;
    let again = e
        .plan_prekeys(Some((100, 20)), much_later)
        .unwrap()
        .unwrap();
    e.prekeys_uploaded(&again).unwrap();
    let st = e.prekey_state().unwrap().unwrap();
    // Retired keys dropped; the rotation at `much_later` retired the newer pair.
    assert_eq!(st.retired.len(), 2);
    assert_eq!(st.keys.kem_count(), kem_before);
}
