//! Business profiles (spec/relay.md 3.14): `PublishBusinessProfile` in the spec's order of
//! checks, and `FetchBusinessProfile` for any authenticated device.

use super::*;
use sealpost_devices::{
    AccountKeyPair, LinkRequest, VerifiedDeviceList, seal_provisioning, sign_business_verification,
};
use sealpost_wire::business::{
    BusinessProfileFields, BusinessVerification, PublishedProfile, SignedBusinessProfile,
};
use sealpost_wire::devices::{DeviceName, DeviceRole};

const SHOP: &str = "+15550003333";
const CUSTOMER: &str = "+15550004444";
const CONSUMER: &str = "+15550005555";

fn fields(name: &str) -> BusinessProfileFields {
    BusinessProfileFields {
        name: name.into(),
        category: "Bicycle shop".into(),
        description: "Repairs while you wait.".into(),
        address: "1 Main St".into(),
        website: "https://shop.example".into(),
        hours: "Mon-Fri 9-18".into(),
        reply_within: 3600,
    }
}

/// A profile of `account` signed by `ak`.
fn profile(
    ak: &AccountKeyPair,
    account: &AccountId,
    version: u64,
    name: &str,
) -> SignedBusinessProfile {
    ak.sign_business_profile(account, version, T0, fields(name))
        .unwrap()
}

/// A statement by `verifier` about `account` under `key` and `name`.
fn statement(
    verifier: &SigningKey,
    account: &AccountId,
    key: &sealpost_devices::AccountKey,
    name: &str,
) -> BusinessVerification {
    sign_business_verification(verifier, account, key, name, T0, T0 + 365 * DAY_MS).unwrap()
}

fn verifier(b: u8) -> SigningKey {
    SigningKey::from_seed(&[b; 32])
}

fn publish(p: &SignedBusinessProfile, statements: Vec<BusinessVerification>) -> Request {
    Request::PublishBusinessProfile(Box::new(PublishedProfile {
        profile: p.clone(),
        route: None,
        verifications: statements,
    }))
}

fn fetch(account: &str) -> Request {
    Request::FetchBusinessProfile {
        account: acct(account),
    }
}

/// A business account: its owner (device 1), registered, authenticated, with the first list
/// (the owner alone) published.
struct Business {
    owner: Dev,
    ak: AccountKeyPair,
    list: VerifiedDeviceList,
}

impl Env {
    fn business(&self, account: &str, role: DeviceRole, conn_id: u64) -> Business {
        let mut owner = self.device(account, conn_id, T0);
        let ak = AccountKeyPair::generate(&mut rand::rng());
        let list = ak
            .first_list(
                &owner.address.account,
                owner.address.device.0,
                owner.id.public().to_wire(),
                role,
                DeviceName::new("Owner").unwrap(),
                T0,
                |m| owner.id.sign(m),
            )
            .unwrap();
        let r = self.req(
            &mut owner.conn,
            owner.exporter,
            Request::PublishDeviceList {
                list: list.signed().clone(),
            },
            T0,
        );
        assert_eq!(r, Response::DeviceListStored { list_version: 1 });
        Business { owner, ak, list }
    }

    /// Links an agent to `b` (LinkDevice, then Authenticate on its own connection).
    fn link_agent(&self, b: &mut Business, conn_id: u64) -> Dev {
        self.link_as(b, conn_id, DeviceRole::Agent)
    }

    /// Links a device with `role` to `b` (LinkDevice, then Authenticate on its own
    /// connection).
    fn link_as(&self, b: &mut Business, conn_id: u64, role: DeviceRole) -> Dev {
        let mut rng = rand::rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let request = LinkRequest::new(&mut rng, [7; 16], id.public().to_wire());
        let body =
            b.ak.link_device(
                &b.list,
                id.public().to_wire(),
                role,
                DeviceName::new("Agent").unwrap(),
                T0,
            )
            .unwrap();
        let sealed = seal_provisioning(&mut rng, request.invitation(), &body).unwrap();
        let provisioned = request.open(&sealed).unwrap();
        let device_id = provisioned.device_id();
        let list = provisioned.complete(|m| id.sign(m)).unwrap();
        let exporter = [conn_id as u8; 32];
        let mut conn = self.h.new_connection(conn_id, T0);
        let signed = link_device_signed_bytes(&exporter, device_id, list.as_bytes());
        let r = self.req(
            &mut conn,
            exporter,
            Request::LinkDevice {
                list: list.signed().clone(),
                device_id,
                signature: id.sign(&signed).to_bytes(),
            },
            T0,
        );
        assert_eq!(r, Response::Registered { device_id });
        b.list = list;
        let mut agent = Dev {
            id,
            keys: PreKeyStore::new(),
            address: DeviceAddress::new(b.owner.address.account.clone(), DeviceId(device_id)),
            conn,
            exporter,
        };
        assert!(matches!(
            self.authenticate(&mut agent, T0),
            Response::Authenticated { .. }
        ));
        agent
    }
}

use sealpost_wire::relay::link_device_signed_bytes;

/// The owner publishes; any authenticated device of any account fetches it, byte for byte;
/// the version rule (above; equal with the same profile replaces the statements; equal with
/// another profile or below is stale); an account without a profile, an unknown account, an
/// unauthenticated connection.
#[test]
fn owner_publishes_and_anyone_fetches() {
    let e = env();
    let mut b = e.business(SHOP, DeviceRole::Owner, 1);
    let mut customer = e.device(CUSTOMER, 2, T0);
    let shop = acct(SHOP);
    let key = b.ak.public();
    let p1 = profile(&b.ak, &shop, 1, "Bike Shop");
    let s1 = statement(&verifier(1), &shop, &key, "Bike Shop");
    let s2 = statement(&verifier(2), &shop, &key, "Bike Shop");

    // Nothing stored yet.
    assert_eq!(
        e.req(&mut customer.conn, customer.exporter, fetch(SHOP), T0),
        Response::BusinessProfile(None)
    );
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&p1, vec![s1.clone()]),
        T0,
    );
    assert_eq!(r, Response::BusinessProfileStored { profile_version: 1 });
    let served = |e: &Env, d: &mut Dev| e.req(&mut d.conn, d.exporter, fetch(SHOP), T0);
    let expected = |p: &SignedBusinessProfile, s: Vec<BusinessVerification>| {
        Response::BusinessProfile(Some(Box::new(PublishedProfile {
            profile: p.clone(),
            route: None,
            verifications: s,
        })))
    };
    assert_eq!(served(&e, &mut customer), expected(&p1, vec![s1.clone()]));
    // Byte for byte: the response's payload is the published one.
    let Request::PublishBusinessProfile(published) = publish(&p1, vec![s1.clone()]) else {
        unreachable!()
    };
    let mut w = Writer::new();
    published.encode_into(&mut w).unwrap();
    let stored = ready(e.store.business_profile(&shop)).unwrap().unwrap();
    assert_eq!(stored.payload, w.as_slice());
    assert_eq!(stored.profile_version, 1);

    // The same profile with a statement more replaces the statements, in their order.
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&p1, vec![s2.clone(), s1.clone()]),
        T0,
    );
    assert_eq!(r, Response::BusinessProfileStored { profile_version: 1 });
    assert_eq!(
        served(&e, &mut customer),
        expected(&p1, vec![s2.clone(), s1.clone()])
    );
    // Another profile with the same version, or a lower one: stale, nothing changes.
    let other_v1 = profile(&b.ak, &shop, 1, "Bike Shop & Café");
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&other_v1, Vec::new()),
        T0,
    );
    assert_eq!(err(&r), ErrorCode::StaleBusinessProfile);
    let p2 = profile(&b.ak, &shop, 2, "Bike Shop");
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&p2, Vec::new()),
        T0,
    );
    assert_eq!(r, Response::BusinessProfileStored { profile_version: 2 });
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&p1, vec![s1.clone()]),
        T0,
    );
    assert_eq!(err(&r), ErrorCode::StaleBusinessProfile);
    assert_eq!(served(&e, &mut customer), expected(&p2, Vec::new()));
    // The owner's own account, read by the owner, too.
    assert_eq!(served(&e, &mut b.owner), expected(&p2, Vec::new()));

    // An account with devices but no profile; an account without devices.
    assert_eq!(
        e.req(&mut b.owner.conn, b.owner.exporter, fetch(CUSTOMER), T0),
        Response::BusinessProfile(None)
    );
    assert_eq!(
        err(&e.req(
            &mut customer.conn,
            customer.exporter,
            fetch("+15550009999"),
            T0
        )),
        ErrorCode::UnknownAccount
    );
    // Both requests need an authenticated connection.
    let mut anon = e.h.new_connection(9, T0);
    assert_eq!(
        err(&e.req(&mut anon, X1, fetch(SHOP), T0)),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        err(&e.req(&mut anon, X1, publish(&p2, Vec::new()), T0)),
        ErrorCode::Unauthenticated
    );
}

/// Every refusal of spec/relay.md 3.14, in its rule's error; refusals store nothing and
/// cost no publish quota (the quota shared with `PublishDeviceList` is charged only by the
/// one profile that passes, and then refuses the next).
#[test]
fn refusals_store_nothing_and_cost_no_quota() {
    let e = env_with(Limits {
        device_list_publishes_per_hour: 3,
        ..Limits::default()
    });
    // Rule 1: no stored list; a consumer list (its primary holds the key).
    let mut bare = e.device("+15550005555", 5, T0);
    let bare_acct = bare.address.account.clone();
    let ak = AccountKeyPair::generate(&mut rand::rng());
    let p = profile(&ak, &bare_acct, 1, "Bike Shop");
    assert_eq!(
        err(&e.req(&mut bare.conn, bare.exporter, publish(&p, Vec::new()), T0)),
        ErrorCode::InvalidDeviceList
    );
    let mut consumer = e.business("+15550006666", DeviceRole::Primary, 6);
    let consumer_acct = consumer.owner.address.account.clone();
    let p = profile(&consumer.ak, &consumer_acct, 1, "Bike Shop");
    assert_eq!(
        err(&e.req(
            &mut consumer.owner.conn,
            consumer.owner.exporter,
            publish(&p, Vec::new()),
            T0
        )),
        ErrorCode::InvalidDeviceList
    );

    // The business: owner (list publish 1 of 3) and an agent (a link, another quota).
    let mut b = e.business(SHOP, DeviceRole::Owner, 1);
    let mut agent = e.link_agent(&mut b, 2);
    let shop = acct(SHOP);
    let key = b.ak.public();
    let good = profile(&b.ak, &shop, 1, "Bike Shop");
    // Rule 2: not the key holder.
    assert_eq!(
        err(&e.req(
            &mut agent.conn,
            agent.exporter,
            publish(&good, Vec::new()),
            T0
        )),
        ErrorCode::InvalidDeviceList
    );
    // Rule 3: another account key, another account, a broken signature.
    let other_ak = AccountKeyPair::generate(&mut rand::rng());
    let mut tampered = good.clone();
    tampered.signature[0] ^= 1;
    for bad in [
        profile(&other_ak, &shop, 1, "Bike Shop"),
        profile(&b.ak, &acct(CUSTOMER), 1, "Bike Shop"),
        tampered,
    ] {
        assert_eq!(
            err(&e.req(
                &mut b.owner.conn,
                b.owner.exporter,
                publish(&bad, Vec::new()),
                T0
            )),
            ErrorCode::InvalidBusinessProfile
        );
    }
    // Rule 4: a statement naming another business name, account key or account, with a
    // broken signature, or a second statement by the same verifier.
    let v = verifier(1);
    let mut bad_signature = statement(&v, &shop, &key, "Bike Shop");
    bad_signature.signature[5] ^= 1;
    let good_statement = statement(&v, &shop, &key, "Bike Shop");
    for statements in [
        vec![statement(&v, &shop, &key, "Other Shop")],
        vec![statement(&v, &shop, &other_ak.public(), "Bike Shop")],
        vec![statement(&v, &acct(CUSTOMER), &key, "Bike Shop")],
        vec![good_statement.clone(), bad_signature],
        vec![
            good_statement.clone(),
            statement(&verifier(2), &shop, &key, "Bike Shop"),
            statement(&v, &shop, &key, "Bike Shop"),
        ],
    ] {
        assert_eq!(
            err(&e.req(
                &mut b.owner.conn,
                b.owner.exporter,
                publish(&good, statements),
                T0
            )),
            ErrorCode::InvalidBusinessProfile
        );
    }
    assert_eq!(ready(e.store.business_profile(&shop)).unwrap(), None);

    // More than 4 statements does not decode: TooLarge (spec/relay.md section 2).
    let mut body = vec![0x01, 0x17];
    let encoded = good.encode().unwrap();
    body.extend(u16::try_from(encoded.len()).unwrap().to_be_bytes());
    body.extend(&encoded);
    body.push(0); // no route
    body.push(5);
    let (r, _) = ready(e.h.handle_frame(&mut b.owner.conn, b.owner.exporter, &body, T0));
    assert_eq!(err(&r), ErrorCode::TooLarge);

    // None of that was charged: two publishes pass (2 and 3 of 3), the next is limited.
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&good, vec![good_statement.clone()]),
        T0,
    );
    assert_eq!(r, Response::BusinessProfileStored { profile_version: 1 });
    let p2 = profile(&b.ak, &shop, 2, "Bike Shop");
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&p2, Vec::new()),
        T0,
    );
    assert_eq!(r, Response::BusinessProfileStored { profile_version: 2 });
    let p3 = profile(&b.ak, &shop, 3, "Bike Shop");
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&p3, Vec::new()),
        T0,
    );
    assert_eq!(limited_by(&r).1, "rate limited (list_publish)");
    // A stale profile is refused before the quota (rule 5 before rule 6).
    let r = e.req(
        &mut b.owner.conn,
        b.owner.exporter,
        publish(&good, Vec::new()),
        T0,
    );
    assert_eq!(err(&r), ErrorCode::StaleBusinessProfile);
    assert_eq!(
        ready(e.store.business_profile(&shop))
            .unwrap()
            .map(|p| p.profile_version),
        Some(2)
    );
}

/// `FetchBusinessProfile` shares the connection's `FetchBundles` bucket.
#[test]
fn fetch_is_rate_limited_per_connection() {
    let e = env_with(Limits {
        bundle_fetches_per_minute: 2,
        ..Limits::default()
    });
    let mut customer = e.device(CUSTOMER, 2, T0);
    for _ in 0..2 {
        assert_eq!(
            e.req(&mut customer.conn, customer.exporter, fetch(CUSTOMER), T0),
            Response::BusinessProfile(None)
        );
    }
    let r = e.req(&mut customer.conn, customer.exporter, fetch(CUSTOMER), T0);
    assert_eq!(limited_by(&r).1, "rate limited (bundles)");
}

/// A default route (spec/relay.md 3.14 rule 4a, spec/business.md 7): published with the
/// profile when the account key signs it and it names listed devices only; it only moves
/// forward. A customer's routed send (relay.md 3.7) to listed devices including the owner
/// is queued for exactly those; without the owner, to a consumer account, or to an
/// unlisted device it is `MismatchedDevices`.
#[test]
fn default_routes_and_routed_sends() {
    use sealpost_devices::sign_route_as_device;
    use sealpost_wire::business::{RouteBody, RouteSigner};
    let e = env();
    let mut b = e.business(SHOP, DeviceRole::Owner, 1);
    let mut agent1 = e.link_agent(&mut b, 3);
    let _agent2 = e.link_agent(&mut b, 4);
    let mut customer = e.device(CUSTOMER, 2, T0);
    let shop = acct(SHOP);
    let p1 = profile(&b.ak, &shop, 1, "Bike Shop");
    let body = |version: u64, devices: Vec<u32>| RouteBody {
        account: shop.clone(),
        account_key: b.ak.public().to_bytes(),
        customer: None,
        route_version: version,
        issued_at: T0,
        devices,
        signer: RouteSigner::AccountKey,
    };
    let with_route = |route: Option<sealpost_wire::business::SignedRoute>| {
        Request::PublishBusinessProfile(Box::new(PublishedProfile {
            profile: p1.clone(),
            route,
            verifications: Vec::new(),
        }))
    };
    let owner = &mut b.owner;
    // Refused: a device's signature (even the owner's identity), an unlisted device, a
    // route for one customer.
    let by_device = sign_route_as_device(
        RouteBody {
            signer: RouteSigner::Device(1),
            ..body(1, vec![2])
        },
        |m| owner.id.sign(m),
    )
    .unwrap();
    let unlisted = b.ak.sign_route(body(1, vec![2, 9])).unwrap();
    let for_customer =
        b.ak.sign_route(RouteBody {
            customer: Some(acct(CUSTOMER)),
            ..body(1, vec![2])
        })
        .unwrap();
    for route in [by_device, unlisted, for_customer] {
        assert_eq!(
            err(&e.req(&mut owner.conn, owner.exporter, with_route(Some(route)), T0)),
            ErrorCode::InvalidBusinessProfile
        );
    }
    let v2 = b.ak.sign_route(body(2, vec![2])).unwrap();
    assert_eq!(
        e.req(
            &mut owner.conn,
            owner.exporter,
            with_route(Some(v2.clone())),
            T0
        ),
        Response::BusinessProfileStored { profile_version: 1 }
    );
    // Not back to version 1, and not dropped by a payload without it.
    let v1 = b.ak.sign_route(body(1, vec![3])).unwrap();
    for older in [Some(v1), None] {
        assert_eq!(
            err(&e.req(&mut owner.conn, owner.exporter, with_route(older), T0)),
            ErrorCode::StaleBusinessProfile
        );
    }
    let served = e.req(
        &mut customer.conn,
        customer.exporter,
        Request::FetchBusinessProfile {
            account: shop.clone(),
        },
        T0,
    );
    let Response::BusinessProfile(Some(p)) = served else {
        panic!("{served:?}")
    };
    assert_eq!(p.route, Some(v2));

    // Routed sends: devices 1 (owner), 2 and 3 (agents).
    for refused in [vec![2], vec![1, 2, 9], vec![1, 1, 2]] {
        let (r, _) = e.send(&mut customer, &shop, &refused, T0);
        assert_eq!(err(&r), ErrorCode::MismatchedDevices, "{refused:?}");
    }
    let (r, effects) = e.send(&mut customer, &shop, &[1, 2], T0);
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    let woken: Vec<u32> = effects
        .iter()
        .filter_map(|x| match x {
            Effect::MailArrived { device, .. } => Some(device.device.0),
            _ => None,
        })
        .collect();
    assert_eq!(woken, vec![1, 2]);
    // All devices still works; a consumer account still wants all of its devices.
    let (r, _) = e.send(&mut customer, &shop, &[1, 2, 3], T0);
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
    let mut consumer = e.business(CONSUMER, DeviceRole::Primary, 5);
    let _laptop = e.link_as(&mut consumer, 6, DeviceRole::Linked);
    let (r, _) = e.send(&mut agent1, &acct(CONSUMER), &[1], T0);
    assert_eq!(err(&r), ErrorCode::MismatchedDevices);
    let (r, _) = e.send(&mut agent1, &acct(CONSUMER), &[1, 2], T0);
    assert!(matches!(r, Response::Accepted { .. }), "{r:?}");
}

/// A business's devices start sessions with each other: each device has its own pair budget
/// for fetching its own account's bundles (spec/relay.md 3.6), so the owner, a bot and two
/// agents are not held up by one shared burst; another account's fetches keep one budget
/// for the whole account.
#[test]
fn own_account_fetches_are_budgeted_per_device() {
    let e = env_with(Limits {
        bundle_fetches_per_pair_burst: 3,
        bundle_fetch_pair_interval_secs: 300,
        ..loose_limits()
    });
    let mut b = e.business("+15550007777", DeviceRole::Owner, 1);
    let mut devices = [e.link_agent(&mut b, 2), e.link_agent(&mut b, 3)];
    for d in devices.iter_mut() {
        assert!(matches!(
            e.upload(d, 25, 6, T0),
            Response::PreKeysStored { .. }
        ));
    }
    let own = Request::FetchBundles {
        account: b.owner.address.account.clone(),
    };
    for d in devices.iter_mut() {
        for _ in 0..3 {
            let r = e.req(&mut d.conn, d.exporter, own.clone(), T0);
            assert!(matches!(r, Response::Bundles(_)), "{r:?}");
        }
        let r = e.req(&mut d.conn, d.exporter, own.clone(), T0 + 1000);
        assert_eq!(limited_by(&r), (299, "rate limited (fetch_pair)"));
    }
    // The owner's own budget is untouched by its agents'.
    let r = e.req(&mut b.owner.conn, b.owner.exporter, own.clone(), T0);
    assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    // Two devices of another account share one budget for fetching this one.
    let mut other = e.business("+15550008888", DeviceRole::Owner, 10);
    let mut second = e.link_agent(&mut other, 11);
    for _ in 0..3 {
        let r = e.req(&mut other.owner.conn, other.owner.exporter, own.clone(), T0);
        assert!(matches!(r, Response::Bundles(_)), "{r:?}");
    }
    let r = e.req(&mut second.conn, second.exporter, own.clone(), T0 + 1000);
    assert_eq!(limited_by(&r), (299, "rate limited (fetch_pair)"));
}
