//! Conformance cases for stored device lists (spec/relay.md 3.9–3.10):
//! [`Store::device_list_state`] and [`Store::replace_device_list`]. The store does not verify
//! lists (the handler does), so the list bytes here are placeholders.

use super::*;

/// A list of `devices` to store, as the handler hands it over.
pub(super) struct List {
    key: [u8; 32],
    version: u64,
    next: u32,
    devices: Vec<(u32, IdentityBytes)>,
    bytes: Vec<u8>,
}

impl List {
    pub(super) fn new(version: u64, next: u32, devices: &[(u32, u8)]) -> Self {
        Self {
            key: [0xAA; 32],
            version,
            next,
            devices: devices.iter().map(|&(id, b)| (id, ident(b))).collect(),
            bytes: devices
                .iter()
                .flat_map(|&(id, b)| [id as u8, b])
                .chain([version as u8])
                .collect(),
        }
    }

    fn as_new(&self) -> NewDeviceList<'_> {
        NewDeviceList {
            account_key: &self.key,
            list_version: self.version,
            next_device_id: self.next,
            devices: &self.devices,
            bytes: &self.bytes,
        }
    }

    fn stored(&self) -> StoredDeviceList {
        StoredDeviceList {
            account_key: self.key,
            list_version: self.version,
            next_device_id: self.next,
            bytes: self.bytes.clone(),
        }
    }
}

pub(super) async fn replace<S: Store + ?Sized>(
    s: &S,
    a: &AccountId,
    list: &List,
    expected: Option<u64>,
    new_device: Option<u32>,
) -> ReplaceListOutcome {
    s.replace_device_list(a, &list.as_new(), expected, new_device, NOW)
        .await
        .unwrap()
}

pub(super) fn stored(removed: &[u32]) -> ReplaceListOutcome {
    ReplaceListOutcome::Stored {
        removed: removed.to_vec(),
    }
}

async fn device_ids<S: Store + ?Sized>(s: &S, a: &AccountId) -> Vec<u32> {
    let state = s.device_list_state(a).await.unwrap();
    state.devices.iter().map(|d| d.device_id).collect()
}

/// The first list, a link, a publish that removes a device (with its prekeys and mailbox),
/// every refusal leaving the store unchanged, the id counter raised and kept, and a
/// registration deleting the list.
pub(crate) async fn device_lists<S: Store>(s: &S) {
    let a = acct(1);
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(
        state,
        DeviceListState {
            devices: Vec::new(),
            next_device_id: 1,
            list: None,
            rekey_device: None,
        }
    );
    // No account: nothing to store a list for.
    let v1 = List::new(1, 5, &[(1, 1)]);
    assert_eq!(
        replace(s, &a, &v1, None, None).await,
        ReplaceListOutcome::DevicesChanged
    );
    assert_eq!(register(s, &a, 1).await, 1);
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(state.next_device_id, 2);
    assert_eq!(state.list, None);
    assert_eq!(
        state.devices,
        vec![DeviceInfo {
            device_id: 1,
            identity: ident(1)
        }]
    );

    // Refusals change nothing.
    assert_eq!(
        replace(s, &a, &v1, Some(1), None).await,
        ReplaceListOutcome::VersionChanged
    );
    let wrong_identity = List::new(1, 5, &[(1, 2)]);
    assert_eq!(
        replace(s, &a, &wrong_identity, None, None).await,
        ReplaceListOutcome::DevicesChanged
    );
    assert_eq!(s.device_list_state(&a).await.unwrap(), state);

    // The first list raises the id counter to its next_device_id.
    assert_eq!(replace(s, &a, &v1, None, None).await, stored(&[]));
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(state.list, Some(v1.stored()));
    assert_eq!(state.next_device_id, 5);
    assert_eq!(
        replace(s, &a, &v1, None, None).await,
        ReplaceListOutcome::VersionChanged
    );

    // A link registers the new device with its identity.
    let v2 = List::new(2, 6, &[(1, 1), (5, 5)]);
    let below_counter = List::new(2, 6, &[(1, 1), (4, 4)]);
    assert_eq!(
        replace(s, &a, &below_counter, Some(1), Some(4)).await,
        ReplaceListOutcome::DevicesChanged
    );
    assert_eq!(
        replace(s, &a, &v2, Some(2), Some(5)).await,
        ReplaceListOutcome::VersionChanged
    );
    assert_eq!(device_ids(s, &a).await, [1]);
    assert_eq!(replace(s, &a, &v2, Some(1), Some(5)).await, stored(&[]));
    let d5 = dev(&a, 5);
    assert_eq!(s.device_identity(&d5).await.unwrap(), Some(ident(5)));
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(device_ids(s, &a).await, [1, 5]);
    assert_eq!(state.next_device_id, 6);
    assert_eq!(state.list, Some(v2.stored()));
    assert_eq!(s.sender_seq(&d5).await.unwrap(), 0);

    // The linked device gets prekeys and mail like any device.
    s.store_prekeys(&d5, &full_upload(1..4, 1..3, Some(9)), &LIMITS)
        .await
        .unwrap();
    let b = acct(2);
    let sender = dev(&b, register(s, &b, 9).await);
    assert!(matches!(
        enqueue(s, &sender, &a, &[env(1, 1), env(5, 5)], 10).await,
        EnqueueOutcome::Queued(_)
    ));
    assert_eq!(s.queue_depth(&d5).await.unwrap(), 1);
    // The old device set no longer matches.
    assert_eq!(
        enqueue(s, &sender, &a, &[env(1, 1)], 10).await,
        EnqueueOutcome::MismatchedDevices
    );

    // A publish that no longer names device 5 removes it, its prekeys and its mailbox.
    let v3 = List::new(3, 6, &[(1, 1)]);
    assert_eq!(replace(s, &a, &v3, Some(2), None).await, stored(&[5]));
    assert_eq!(s.device_identity(&d5).await.unwrap(), None);
    assert_eq!(s.queue_depth(&d5).await.unwrap(), 0);
    assert!(s.mailbox(&d5, 0, 10).await.unwrap().is_empty());
    assert_eq!(s.prekey_counts(&d5).await.unwrap(), PreKeyCounts::default());
    assert_eq!(s.queue_depth(&dev(&a, 1)).await.unwrap(), 1);
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(device_ids(s, &a).await, [1]);
    assert_eq!(state.next_device_id, 6);
    assert_eq!(state.list, Some(v3.stored()));
    // A list naming a device that is not registered (5 is gone) is refused.
    assert_eq!(
        replace(s, &a, &List::new(4, 6, &[(1, 1), (5, 5)]), Some(3), None).await,
        ReplaceListOutcome::DevicesChanged
    );
    // An id below the counter is never given again, by a link or by a registration.
    assert_eq!(
        replace(s, &a, &List::new(4, 6, &[(1, 1), (5, 7)]), Some(3), Some(5)).await,
        ReplaceListOutcome::DevicesChanged
    );

    // A registration deletes the list and continues above every id given.
    assert_eq!(register(s, &a, 3).await, 6);
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(state.list, None);
    assert_eq!(device_ids(s, &a).await, [6]);
    assert_eq!(state.next_device_id, 7);
    // Another account's list is its own.
    assert_eq!(s.device_list_state(&b).await.unwrap().list, None);
}

/// Two links (or a link and a publish) checked against the same stored version: exactly one
/// is stored, whatever the interleaving, and the registered devices are exactly its list.
pub(crate) async fn concurrent_links<S: Store + 'static>(s: Arc<S>) {
    let a = acct(1);
    assert_eq!(register(&*s, &a, 1).await, 1);
    assert_eq!(
        replace(&*s, &a, &List::new(1, 2, &[(1, 1)]), None, None).await,
        stored(&[])
    );
    let mut version = 1;
    for round in 0..8u8 {
        let next = s.device_list_state(&a).await.unwrap().next_device_id;
        // Two new devices competing for the same id, or a link against a publish.
        let first = List::new(version + 1, next + 1, &[(1, 1), (next, 10 + round)]);
        let second = if round % 2 == 0 {
            (
                List::new(version + 1, next + 1, &[(1, 1), (next, 100 + round)]),
                Some(next),
            )
        } else {
            (List::new(version + 1, next, &[(1, 1)]), None)
        };
        let tasks = [(first, Some(next)), second].map(|(list, new_device)| {
            let s = Arc::clone(&s);
            let a = a.clone();
            tokio::spawn(async move {
                let outcome = replace(&*s, &a, &list, Some(version), new_device).await;
                (outcome, list)
            })
        });
        let mut winners = Vec::new();
        for t in tasks {
            let (outcome, list) = t.await.unwrap();
            match outcome {
                ReplaceListOutcome::Stored { removed } => {
                    assert!(removed.is_empty());
                    winners.push(list);
                }
                ReplaceListOutcome::VersionChanged => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one list is stored"
        );
        let won = winners.remove(0);
        let state = s.device_list_state(&a).await.unwrap();
        assert_eq!(state.list, Some(won.stored()));
        let registered: Vec<(u32, IdentityBytes)> = state
            .devices
            .iter()
            .map(|d| (d.device_id, d.identity))
            .collect();
        assert_eq!(registered, won.devices);
        version += 1;
        // Back to the primary alone, above every id given.
        let next = state.next_device_id;
        let expected = if won.devices.len() > 1 {
            vec![won.devices[1].0]
        } else {
            vec![]
        };
        assert_eq!(
            replace(
                &*s,
                &a,
                &List::new(version + 1, next, &[(1, 1)]),
                Some(version),
                None
            )
            .await,
            stored(&expected)
        );
        version += 1;
    }
}

fn seen(v: &[(u32, u64)]) -> Vec<DeviceSeen> {
    v.iter()
        .map(|&(device_id, last_seen)| DeviceSeen {
            device_id,
            last_seen,
        })
        .collect()
}

/// Per-device `last_seen` (spec/relay.md 3.12): set when a device is created (registration,
/// link), raised by [`Store::touch_device`] together with the account's `last_seen`, never
/// moved back, kept per account, and gone with its device.
pub(crate) async fn device_activity<S: Store>(s: &S) {
    let a = acct(1);
    let b = acct(2);
    assert_eq!(s.device_activity(&a).await.unwrap(), seen(&[]));
    // Touching an unknown account or device changes nothing and is not an error.
    s.touch_device(&dev(&a, 1), NOW + 1).await.unwrap();
    assert_eq!(s.device_activity(&a).await.unwrap(), seen(&[]));
    assert_eq!(s.registration_lock(&a).await.unwrap(), None);

    assert_eq!(register(s, &a, 1).await, 1);
    assert_eq!(register(s, &b, 9).await, 1);
    assert_eq!(s.device_activity(&a).await.unwrap(), seen(&[(1, NOW)]));

    // One call moves the device and its account forward, never back.
    s.touch_device(&dev(&a, 1), NOW + 100).await.unwrap();
    s.touch_device(&dev(&a, 1), NOW + 50).await.unwrap();
    assert_eq!(
        s.device_activity(&a).await.unwrap(),
        seen(&[(1, NOW + 100)])
    );
    assert_eq!(
        s.registration_lock(&a).await.unwrap().unwrap().last_seen,
        NOW + 100
    );
    // Another account is not touched.
    assert_eq!(s.device_activity(&b).await.unwrap(), seen(&[(1, NOW)]));
    assert_eq!(
        s.registration_lock(&b).await.unwrap().unwrap().last_seen,
        NOW
    );

    // A linked device is seen when it is created; the others keep their times.
    let v1 = List::new(1, 2, &[(1, 1)]);
    assert_eq!(replace(s, &a, &v1, None, None).await, stored(&[]));
    let v2 = List::new(2, 3, &[(1, 1), (2, 2)]);
    assert_eq!(
        s.replace_device_list(&a, &v2.as_new(), Some(1), Some(2), NOW + 200)
            .await
            .unwrap(),
        stored(&[])
    );
    assert_eq!(
        s.device_activity(&a).await.unwrap(),
        seen(&[(1, NOW + 100), (2, NOW + 200)])
    );
    // A device of the account that does not exist only touches the account.
    s.touch_device(&dev(&a, 7), NOW + 300).await.unwrap();
    assert_eq!(
        s.device_activity(&a).await.unwrap(),
        seen(&[(1, NOW + 100), (2, NOW + 200)])
    );
    assert_eq!(
        s.registration_lock(&a).await.unwrap().unwrap().last_seen,
        NOW + 300
    );
    s.touch_device(&dev(&a, 2), NOW + 400).await.unwrap();
    assert_eq!(
        s.device_activity(&a).await.unwrap(),
        seen(&[(1, NOW + 100), (2, NOW + 400)])
    );

    // A removed device is no longer listed; a re-registration starts over.
    let v3 = List::new(3, 3, &[(2, 2)]);
    assert_eq!(replace(s, &a, &v3, Some(2), None).await, stored(&[1]));
    assert_eq!(
        s.device_activity(&a).await.unwrap(),
        seen(&[(2, NOW + 400)])
    );
    assert_eq!(register(s, &a, 3).await, 3);
    assert_eq!(s.device_activity(&a).await.unwrap(), seen(&[(3, NOW)]));
}

/// A list whose encoding decodes (a recovery registration reads the roles from it): device
/// 1 is the primary, the others are linked. Signatures are placeholders; the store does
/// not verify.
pub(super) fn real_list(
    a: &AccountId,
    key: [u8; 32],
    version: u64,
    next: u32,
    ids: &[(u32, u8)],
) -> List {
    use sealpost_wire::devices::DeviceRole;
    let roles: Vec<(u32, u8, DeviceRole)> = ids
        .iter()
        .map(|&(id, b)| {
            let role = if id == 1 {
                DeviceRole::Primary
            } else {
                DeviceRole::Linked
            };
            (id, b, role)
        })
        .collect();
    list_with_roles(a, key, version, next, &roles)
}

/// A decodable list (placeholder signatures) naming `(id, identity byte, role)`.
pub(super) fn list_with_roles(
    a: &AccountId,
    key: [u8; 32],
    version: u64,
    next: u32,
    ids: &[(u32, u8, sealpost_wire::devices::DeviceRole)],
) -> List {
    use sealpost_wire::devices::{DeviceEntry, DeviceListBody, DeviceName, SignedDeviceList};
    let entries: Vec<DeviceEntry> = ids
        .iter()
        .map(|&(id, b, role)| DeviceEntry {
            device_id: id,
            identity: ident(b),
            role,
            added_at: NOW,
            name: DeviceName::new("d").unwrap(),
        })
        .collect();
    let signed = SignedDeviceList {
        body: DeviceListBody {
            account: a.clone(),
            account_key: key,
            list_version: version,
            issued_at: NOW,
            next_device_id: next,
            entries,
        },
        signature: [0; 64],
        bindings: vec![[0; 64]; ids.len()],
    };
    List {
        key,
        version,
        next,
        devices: ids.iter().map(|&(id, b, _)| (id, ident(b))).collect(),
        bytes: signed.encode().unwrap(),
    }
}

pub(super) fn backup(key: [u8; 32], b: u8) -> AccountKeyBackup {
    AccountKeyBackup {
        account_key: key,
        nonce: [b; 12],
        sealed: [b; 48],
    }
}

/// The account-key backup (spec/relay.md 3.13) and the recovery registration (3.2): a
/// backup is stored only for a registered device under the stored list's key; a
/// registration with the PIN's token keeps the list, the backup and the linked device (with
/// its mailbox) and removes the primary; without a backup, or without the token, it removes
/// everything; clearing the lock and a list under another key delete the backup.
pub(crate) async fn account_key_backups<S: Store>(s: &S) {
    let a = acct(31);
    let key = [0xAB; 32];
    assert_eq!(register(s, &a, 1).await, 1);
    assert_eq!(
        replace(s, &a, &real_list(&a, key, 1, 2, &[(1, 1)]), None, None).await,
        stored(&[])
    );
    let v2 = real_list(&a, key, 2, 3, &[(1, 1), (2, 2)]);
    assert_eq!(replace(s, &a, &v2, Some(1), Some(2)).await, stored(&[]));
    // The linked device has mail waiting.
    let from = dev(&acct(32), 1);
    assert!(matches!(
        enqueue(s, &from, &a, &[env(1, 1), env(2, 2)], 100).await,
        EnqueueOutcome::Queued(_)
    ));

    assert_eq!(s.account_key_backup(&a).await.unwrap(), None);
    // Not a registered device, or not the list's key: nothing stored.
    assert!(
        !s.put_account_key_backup(&dev(&a, 9), &backup(key, 1))
            .await
            .unwrap()
    );
    assert!(
        !s.put_account_key_backup(&dev(&a, 1), &backup([0xCD; 32], 1))
            .await
            .unwrap()
    );
    assert_eq!(s.account_key_backup(&a).await.unwrap(), None);
    assert!(
        s.put_account_key_backup(&dev(&a, 1), &backup(key, 1))
            .await
            .unwrap()
    );
    assert!(
        s.put_account_key_backup(&dev(&a, 1), &backup(key, 2))
            .await
            .unwrap()
    );
    assert_eq!(
        s.account_key_backup(&a).await.unwrap(),
        Some(backup(key, 2))
    );

    // A recovery registration: the token passes, a list and a backup are stored.
    let verifier = [0x5A; 32];
    assert!(
        s.set_registration_lock(&a, Some(&verifier), NOW)
            .await
            .unwrap()
    );
    s.put_code(&a, &MAC, NOW + 600_000).await.unwrap();
    assert_eq!(
        s.register_device(&a, &ident(3), &MAC, &with_token(verifier), NOW + 1)
            .await
            .unwrap(),
        RegisterOutcome::Registered {
            device_id: 3,
            removed: vec![1],
        }
    );
    let state = s.device_list_state(&a).await.unwrap();
    assert_eq!(device_ids(s, &a).await, vec![2, 3]);
    assert_eq!(state.list, Some(v2.stored()));
    assert_eq!(state.next_device_id, 4);
    assert_eq!(state.rekey_device, Some(3));
    assert_eq!(
        s.account_key_backup(&a).await.unwrap(),
        Some(backup(key, 2))
    );
    assert_eq!(s.queue_depth(&dev(&a, 2)).await.unwrap(), 1);
    assert!(
        s.registration_lock(&a)
            .await
            .unwrap()
            .is_some_and(|l| l.verifier.is_some())
    );

    // The new key holder's list (the primary gone, device 3 in) replaces it; a list under
    // another key deletes the backup.
    let v3 = real_list(&a, key, 3, 4, &[(2, 2), (3, 3)]);
    assert_eq!(replace(s, &a, &v3, Some(2), None).await, stored(&[]));
    assert_eq!(s.device_list_state(&a).await.unwrap().rekey_device, None);
    assert_eq!(
        s.account_key_backup(&a).await.unwrap(),
        Some(backup(key, 2))
    );
    let other = real_list(&a, [0xEE; 32], 1, 4, &[(3, 3)]);
    assert_eq!(replace(s, &a, &other, Some(3), None).await, stored(&[2]));
    assert_eq!(s.account_key_backup(&a).await.unwrap(), None);

    // Clearing the lock deletes the backup; then a registration removes everything.
    let v2b = real_list(&a, [0xEE; 32], 2, 5, &[(3, 3)]);
    assert_eq!(replace(s, &a, &v2b, Some(1), None).await, stored(&[]));
    assert!(
        s.put_account_key_backup(&dev(&a, 3), &backup([0xEE; 32], 3))
            .await
            .unwrap()
    );
    assert!(s.set_registration_lock(&a, None, NOW + 2).await.unwrap());
    assert_eq!(s.account_key_backup(&a).await.unwrap(), None);
    s.put_code(&a, &MAC, NOW + 600_000).await.unwrap();
    assert!(matches!(
        s.register_device(&a, &ident(4), &MAC, &NO_LOCK, NOW + 3)
            .await
            .unwrap(),
        RegisterOutcome::Registered { device_id: 5, .. }
    ));
    assert_eq!(device_ids(s, &a).await, vec![5]);
    assert_eq!(s.device_list_state(&a).await.unwrap().list, None);

    // The token without a backup: a plain registration (list and devices gone).
    let b = acct(33);
    assert_eq!(register(s, &b, 1).await, 1);
    assert_eq!(
        replace(s, &b, &real_list(&b, key, 1, 2, &[(1, 1)]), None, None).await,
        stored(&[])
    );
    assert!(
        s.set_registration_lock(&b, Some(&verifier), NOW)
            .await
            .unwrap()
    );
    s.put_code(&b, &MAC, NOW + 600_000).await.unwrap();
    assert!(matches!(
        s.register_device(&b, &ident(3), &MAC, &with_token(verifier), NOW + 1)
            .await
            .unwrap(),
        RegisterOutcome::Registered { device_id: 2, .. }
    ));
    let state = s.device_list_state(&b).await.unwrap();
    assert_eq!((state.list, state.rekey_device), (None, None));
    // A registration with a backup stored but no token (the lock lapsed or never set)
    // deletes the backup too.
    let c = acct(34);
    assert_eq!(register(s, &c, 1).await, 1);
    assert_eq!(
        replace(s, &c, &real_list(&c, key, 1, 2, &[(1, 1)]), None, None).await,
        stored(&[])
    );
    assert!(
        s.put_account_key_backup(&dev(&c, 1), &backup(key, 1))
            .await
            .unwrap()
    );
    assert_eq!(register(s, &c, 2).await, 2);
    assert_eq!(s.account_key_backup(&c).await.unwrap(), None);
}
