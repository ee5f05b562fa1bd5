//! Conformance cases for business accounts: routed sends (spec/relay.md 3.7) and stored
//! business profiles (spec/relay.md 3.14), on the device lists of `devices.rs`.

use super::devices::{List, backup, list_with_roles, real_list, replace, stored};
use super::*;

/// Routed sends to a business account (spec/relay.md 3.7, spec/business.md 7.3): with
/// [`Addressing::Subset`], distinct registered devices including the required one are
/// queued, and only to them; anything else is `MismatchedDevices` and changes nothing.
pub(crate) async fn routed_sends<S: Store>(s: &S) {
    let (shop, customer) = (acct(1), acct(2));
    assert_eq!(register(s, &shop, 1).await, 1);
    let customer1 = dev(&customer, register(s, &customer, 9).await);
    assert_eq!(
        replace(s, &shop, &List::new(1, 2, &[(1, 1)]), None, None).await,
        stored(&[])
    );
    let two = List::new(2, 3, &[(1, 1), (2, 2)]);
    assert_eq!(replace(s, &shop, &two, Some(1), Some(2)).await, stored(&[]));
    let three = List::new(3, 4, &[(1, 1), (2, 2), (3, 3)]);
    assert_eq!(
        replace(s, &shop, &three, Some(2), Some(3)).await,
        stored(&[])
    );
    let send = |envelopes: Vec<OutgoingEnvelope>, addressing: Addressing| {
        let customer1 = customer1.clone();
        let shop = shop.clone();
        async move {
            s.enqueue(&NewMessage {
                sender: &customer1,
                recipient: &shop,
                exclude_device: None,
                addressing,
                message_id: &[4; 16],
                sender_seq: 0,
                timestamp: NOW,
                envelopes: &envelopes,
                max_queued: 10,
            })
            .await
            .unwrap()
        }
    };
    let routed = Addressing::Subset { required: Some(1) };
    // Exact addressing still wants every device.
    assert_eq!(
        send(vec![env(1, 1), env(3, 1)], Addressing::Exact).await,
        EnqueueOutcome::MismatchedDevices
    );
    for bad in [
        vec![env(3, 1)],                       // without the required device
        vec![env(1, 1), env(4, 1)],            // a device that is not registered
        vec![env(1, 1), env(3, 1), env(3, 1)], // twice
        vec![],
    ] {
        assert_eq!(send(bad, routed).await, EnqueueOutcome::MismatchedDevices);
    }
    let EnqueueOutcome::Queued(ids) = send(vec![env(1, 1), env(3, 1)], routed).await else {
        panic!("a routed send was refused");
    };
    assert_eq!(ids.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![1, 3]);
    for (device, expected) in [(1, 1), (2, 0), (3, 1)] {
        let mail = s.mailbox(&dev(&shop, device), 0, 10).await.unwrap();
        assert_eq!(mail.len(), expected, "device {device}");
    }
    // Without a required device (the key holder sending to its own account): any non-empty
    // set of distinct registered devices but the excluded one.
    let owner = dev(&shop, 1);
    let own = |envelopes: Vec<OutgoingEnvelope>| {
        let (owner, shop) = (owner.clone(), shop.clone());
        async move {
            s.enqueue(&NewMessage {
                sender: &owner,
                recipient: &shop,
                exclude_device: Some(1),
                addressing: Addressing::Subset { required: None },
                message_id: &[5; 16],
                sender_seq: 0,
                timestamp: NOW,
                envelopes: &envelopes,
                max_queued: 10,
            })
            .await
            .unwrap()
        }
    };
    for bad in [vec![], vec![env(1, 2)], vec![env(2, 2), env(2, 2)]] {
        assert_eq!(own(bad).await, EnqueueOutcome::MismatchedDevices);
    }
    assert!(matches!(
        own(vec![env(3, 2)]).await,
        EnqueueOutcome::Queued(ids) if ids.len() == 1 && ids[0].0 == 3
    ));
    assert_eq!(s.mailbox(&dev(&shop, 2), 0, 10).await.unwrap().len(), 0);
    assert_eq!(s.mailbox(&dev(&shop, 3), 0, 10).await.unwrap().len(), 2);
}

/// A business list: device `owner` is the owner, the others agents.
fn business_list(
    a: &AccountId,
    key: [u8; 32],
    version: u64,
    next: u32,
    owner: u32,
    ids: &[(u32, u8)],
) -> List {
    use sealpost_wire::devices::DeviceRole;
    let roles: Vec<(u32, u8, DeviceRole)> = ids
        .iter()
        .map(|&(id, b)| {
            let role = if id == owner {
                DeviceRole::Owner
            } else {
                DeviceRole::Agent
            };
            (id, b, role)
        })
        .collect();
    list_with_roles(a, key, version, next, &roles)
}

/// A profile to store: placeholder bytes (the store does not decode them) of `version`,
/// told apart by `b`, with a payload told apart by `statements`.
struct Profile {
    key: [u8; 32],
    version: u64,
    profile: Vec<u8>,
    route: u64,
    payload: Vec<u8>,
}

impl Profile {
    fn new(key: [u8; 32], version: u64, b: u8, statements: u8) -> Self {
        let profile = vec![b; 40];
        let mut payload = profile.clone();
        payload.extend([statements; 8]);
        Self {
            key,
            version,
            profile,
            route: 0,
            payload,
        }
    }

    /// The same profile published with a default route of version `route` (the payload
    /// told apart by it).
    fn with_route(mut self, route: u64) -> Self {
        self.route = route;
        self.payload.push(route as u8);
        self
    }

    fn as_new(&self) -> NewBusinessProfile<'_> {
        NewBusinessProfile {
            account_key: &self.key,
            profile_version: self.version,
            profile: &self.profile,
            route_version: self.route,
            payload: &self.payload,
        }
    }

    fn stored(&self) -> StoredBusinessProfile {
        StoredBusinessProfile {
            account_key: self.key,
            profile_version: self.version,
            profile: self.profile.clone(),
            route_version: self.route,
            payload: self.payload.clone(),
        }
    }
}

async fn put_profile<S: Store + ?Sized>(
    s: &S,
    device: &DeviceAddress,
    p: &Profile,
) -> PutProfileOutcome {
    s.put_business_profile(device, &p.as_new()).await.unwrap()
}

/// The business profile (spec/relay.md 3.14): stored only for the registered owner of a
/// business list under the list's key; the version rule (above, or equal with the same
/// profile bytes, which replaces the statements); kept by a recovery registration and a
/// list under the same key; deleted by a list under another key and by a registration.
pub(crate) async fn business_profiles<S: Store>(s: &S) {
    let a = acct(41);
    let key = [0xB1; 32];
    let p1 = Profile::new(key, 1, 1, 0);
    // No account, then no list: nothing is stored.
    assert_eq!(
        put_profile(s, &dev(&a, 1), &p1).await,
        PutProfileOutcome::ListChanged
    );
    assert_eq!(register(s, &a, 1).await, 1);
    assert_eq!(
        put_profile(s, &dev(&a, 1), &p1).await,
        PutProfileOutcome::ListChanged
    );
    // A consumer list: its primary holds the key but is no business owner.
    let c = acct(42);
    assert_eq!(register(s, &c, 1).await, 1);
    let consumer = real_list(&c, key, 1, 2, &[(1, 1)]);
    assert_eq!(replace(s, &c, &consumer, None, None).await, stored(&[]));
    assert_eq!(
        put_profile(s, &dev(&c, 1), &p1).await,
        PutProfileOutcome::ListChanged
    );
    assert_eq!(s.business_profile(&c).await.unwrap(), None);

    // The business list: owner 1, then agent 2 linked.
    let v1 = business_list(&a, key, 1, 2, 1, &[(1, 1)]);
    assert_eq!(replace(s, &a, &v1, None, None).await, stored(&[]));
    let v2 = business_list(&a, key, 2, 3, 1, &[(1, 1), (2, 2)]);
    assert_eq!(replace(s, &a, &v2, Some(1), Some(2)).await, stored(&[]));
    // Not the owner, not registered, another key: nothing stored.
    assert_eq!(
        put_profile(s, &dev(&a, 2), &p1).await,
        PutProfileOutcome::ListChanged
    );
    assert_eq!(
        put_profile(s, &dev(&a, 9), &p1).await,
        PutProfileOutcome::ListChanged
    );
    assert_eq!(
        put_profile(s, &dev(&a, 1), &Profile::new([0xC1; 32], 1, 1, 0)).await,
        PutProfileOutcome::ListChanged
    );
    assert_eq!(s.business_profile(&a).await.unwrap(), None);
    assert_eq!(
        put_profile(s, &dev(&a, 1), &p1).await,
        PutProfileOutcome::Stored
    );
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(p1.stored()));

    // The version rule: equal with other bytes is stale; equal with the same profile
    // bytes replaces the statements; above is stored; below is stale.
    assert_eq!(
        put_profile(s, &dev(&a, 1), &Profile::new(key, 1, 9, 0)).await,
        PutProfileOutcome::Stale
    );
    let p1b = Profile::new(key, 1, 1, 5);
    assert_eq!(
        put_profile(s, &dev(&a, 1), &p1b).await,
        PutProfileOutcome::Stored
    );
    // The default route only moves forward: published with the same profile at version
    // 2, it cannot be replaced by version 1 nor dropped, and is replaced by version 3.
    let routed = Profile::new(key, 1, 1, 5).with_route(2);
    assert_eq!(
        put_profile(s, &dev(&a, 1), &routed).await,
        PutProfileOutcome::Stored
    );
    for older in [
        Profile::new(key, 1, 1, 5).with_route(1),
        Profile::new(key, 1, 1, 6),
    ] {
        assert_eq!(
            put_profile(s, &dev(&a, 1), &older).await,
            PutProfileOutcome::Stale
        );
    }
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(routed.stored()));
    // (A store keeps the highest route version, so the profiles below carry route 3.)
    let p1b = Profile::new(key, 1, 1, 5).with_route(3);
    assert_eq!(
        put_profile(s, &dev(&a, 1), &p1b).await,
        PutProfileOutcome::Stored
    );
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(p1b.stored()));
    let p3 = Profile::new(key, 3, 3, 1).with_route(3);
    assert_eq!(
        put_profile(s, &dev(&a, 1), &p3).await,
        PutProfileOutcome::Stored
    );
    assert_eq!(
        put_profile(s, &dev(&a, 1), &Profile::new(key, 2, 2, 1)).await,
        PutProfileOutcome::Stale
    );
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(p3.stored()));

    // A recovery registration keeps the profile (the account key stays), and so does the
    // new owner's list under the same key; the new owner publishes the next profile.
    let verifier = [0x5B; 32];
    assert!(
        s.set_registration_lock(&a, Some(&verifier), NOW)
            .await
            .unwrap()
    );
    assert!(
        s.put_account_key_backup(&dev(&a, 1), &backup(key, 1))
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
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(p3.stored()));
    // The old owner is gone; the new device is not on the stored list yet.
    assert_eq!(
        put_profile(s, &dev(&a, 3), &Profile::new(key, 4, 4, 0)).await,
        PutProfileOutcome::ListChanged
    );
    let v3 = business_list(&a, key, 3, 4, 3, &[(2, 2), (3, 3)]);
    assert_eq!(replace(s, &a, &v3, Some(2), None).await, stored(&[]));
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(p3.stored()));
    let p4 = Profile::new(key, 4, 4, 0).with_route(3);
    assert_eq!(
        put_profile(s, &dev(&a, 3), &p4).await,
        PutProfileOutcome::Stored
    );

    // A list under another account key deletes it; a profile under the new key starts
    // its versions afresh.
    let other = [0xD1; 32];
    let v1_other = business_list(&a, other, 1, 4, 3, &[(3, 3)]);
    assert_eq!(replace(s, &a, &v1_other, Some(3), None).await, stored(&[2]));
    assert_eq!(s.business_profile(&a).await.unwrap(), None);
    assert_eq!(
        put_profile(s, &dev(&a, 3), &p4).await,
        PutProfileOutcome::ListChanged
    );
    let q1 = Profile::new(other, 1, 7, 0);
    assert_eq!(
        put_profile(s, &dev(&a, 3), &q1).await,
        PutProfileOutcome::Stored
    );
    assert_eq!(s.business_profile(&a).await.unwrap(), Some(q1.stored()));

    // A registration that is not a recovery deletes it with the list.
    assert!(s.set_registration_lock(&a, None, NOW + 2).await.unwrap());
    assert_eq!(register(s, &a, 5).await, 4);
    assert_eq!(s.device_list_state(&a).await.unwrap().list, None);
    assert_eq!(s.business_profile(&a).await.unwrap(), None);
    // Another account's profile is untouched by all of this.
    assert_eq!(s.business_profile(&c).await.unwrap(), None);
}
