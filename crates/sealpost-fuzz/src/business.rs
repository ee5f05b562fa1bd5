//! Business-account target (`spec/business.md` sections 3 and 4): profiles, verification
//! statements and the payload that carries them.

use sealpost_crypto::ed25519::SigningKey;
use sealpost_devices::{
    AccountKeyPair, DeviceRole, TrustedVerifier, VerifiedBusinessProfile, VerifiedDeviceList,
    VerifiedRoute, check_verification, route_targets, sign_business_verification, verified_by,
};
use sealpost_wire::business::{
    BusinessProfileFields, BusinessVerification, PublishedProfile, RouteBody, RouteSigner,
    SignedBusinessProfile, SignedRoute,
};
use sealpost_wire::devices::DeviceName;
use sealpost_wire::{AccountId, IdentityBytes, Reader, Writer};
use std::sync::OnceLock;

/// A business, its profile version 1, and one statement by a trusted verifier.
pub struct BusinessFixture {
    /// The business's account.
    pub account: AccountId,
    /// Its account key.
    pub account_key: AccountKeyPair,
    /// The signed profile.
    pub profile: VerifiedBusinessProfile,
    /// The statement's encoding.
    pub statement: Vec<u8>,
    /// The one trusted verifier.
    pub trusted: Vec<TrustedVerifier>,
    /// The business's list: the owner (device 1) alone.
    pub list: VerifiedDeviceList,
    /// Its default route (devices 1 and 2), signed by the account key.
    pub route: Vec<u8>,
}

/// The clock of the target: inside the statement's validity.
pub const NOW_MS: u64 = 1_500;

/// Built once.
pub fn business_fixture() -> &'static BusinessFixture {
    static F: OnceLock<BusinessFixture> = OnceLock::new();
    F.get_or_init(|| {
        let account = AccountId::new("+15550100300").unwrap();
        let account_key = AccountKeyPair::from_seed(&[0x42; 32]);
        let signed = account_key
            .sign_business_profile(
                &account,
                1,
                1_000,
                BusinessProfileFields {
                    name: "Velo Lina".into(),
                    website: "https://velo.example".into(),
                    hours: "Mon-Fri 9-18".into(),
                    ..BusinessProfileFields::default()
                },
            )
            .unwrap();
        let profile =
            VerifiedBusinessProfile::verify(&signed, &account, &account_key.public()).unwrap();
        let verifier = SigningKey::from_seed(&[0x43; 32]);
        let statement = sign_business_verification(
            &verifier,
            &account,
            &account_key.public(),
            "Velo Lina",
            1_000,
            2_000,
        )
        .unwrap()
        .encode()
        .unwrap();
        let trusted = vec![TrustedVerifier {
            name: "Registry".into(),
            key: verifier.verifying_key().to_bytes(),
        }];
        let owner = SigningKey::from_seed(&[0x44; 32]);
        let identity = IdentityBytes {
            signing: owner.verifying_key().to_bytes(),
            dh: [0x45; 32],
        };
        let list = account_key
            .first_list(
                &account,
                1,
                identity,
                DeviceRole::Owner,
                DeviceName::new("Owner").unwrap(),
                1_000,
                |m| owner.sign(m),
            )
            .unwrap();
        let route = account_key
            .sign_route(RouteBody {
                account: account.clone(),
                account_key: account_key.public().to_bytes(),
                customer: None,
                route_version: 1,
                issued_at: 1_000,
                devices: vec![1, 2],
                signer: RouteSigner::AccountKey,
            })
            .unwrap()
            .encode()
            .unwrap();
        BusinessFixture {
            account,
            account_key,
            profile,
            statement,
            trusted,
            list,
            route,
        }
    })
}

/// Arbitrary bytes as a profile, a statement, a route and a published payload:
///
/// - never panics; each decoder is canonical (`Ok` values re-encode to the input);
/// - only the fixture's own profile verifies under the fixture's account key, and only the
///   fixture's own statement passes the client's check (nobody else holds those keys);
/// - only the fixture's own route verifies against the fixture's list (the owner alone may
///   sign besides the account key, and nobody else holds either key), and the devices a
///   customer encrypts to are always listed, in order, with the owner;
/// - `verified_by` names the trusted verifier only when the payload carries that statement.
pub fn business(data: &[u8]) {
    let f = business_fixture();
    if let Ok(p) = SignedBusinessProfile::decode(data) {
        let _ = format!("{p:?}");
        assert_eq!(p.encode().unwrap(), data, "profile is not canonical");
    }
    if VerifiedBusinessProfile::verify_bytes(data, &f.account, &f.account_key.public()).is_ok() {
        assert_eq!(data, f.profile.encoded(), "a forged profile verified");
    }
    if let Ok(s) = BusinessVerification::decode(data) {
        assert_eq!(s.encode().unwrap(), data, "statement is not canonical");
        if check_verification(&s, &f.profile, &f.trusted, NOW_MS).is_ok() {
            assert_eq!(data, &f.statement[..], "a forged statement was trusted");
        }
    }
    if let Ok(route) = SignedRoute::decode(data) {
        assert_eq!(route.encode().unwrap(), data, "route is not canonical");
        for customer in [None, Some(&f.account)] {
            if let Ok(v) = VerifiedRoute::verify(&route, &f.list, customer, None) {
                assert_eq!(data, &f.route[..], "a forged route verified");
                let targets = route_targets(&f.list, None, Some(&v));
                assert_eq!(targets, vec![1], "only the owner is listed");
            }
        }
    }
    let mut r = Reader::new(data);
    if let Ok(p) = PublishedProfile::decode_from(&mut r)
        && r.finish().is_ok()
    {
        let mut w = Writer::new();
        p.encode_into(&mut w).unwrap();
        assert_eq!(w.as_slice(), data, "published profile is not canonical");
        let by = verified_by(&p.verifications, &f.profile, &f.trusted, NOW_MS);
        let carries = p
            .verifications
            .iter()
            .any(|v| v.encode().unwrap() == f.statement);
        assert_eq!(by.len(), usize::from(carries));
    }
}
