//! Encoding tests of business profiles, statements and routes.

use super::*;

fn body() -> BusinessProfileBody {
    BusinessProfileBody {
        account: AccountId::new("+15550100300").unwrap(),
        account_key: [7; 32],
        profile_version: 3,
        issued_at: 1_767_225_600_000,
        fields: BusinessProfileFields {
            name: "Velo Lina".into(),
            category: "Bicycle shop".into(),
            description: "Repairs\nand rentals".into(),
            address: "1 Main St\nSpringfield".into(),
            website: "https://velo.example".into(),
            hours: "Mon-Fri 9-18".into(),
            reply_within: 3600,
        },
    }
}

fn longest() -> SignedBusinessProfile {
    let mut b = body();
    b.account = AccountId::new(format!("+{}", "1".repeat(63))).unwrap();
    b.fields = BusinessProfileFields {
        name: "n".repeat(MAX_BUSINESS_NAME_LEN),
        category: "c".repeat(MAX_CATEGORY_LEN),
        description: "d".repeat(MAX_DESCRIPTION_LEN),
        address: "a".repeat(MAX_ADDRESS_LEN),
        website: format!("https://{}", "w".repeat(MAX_WEBSITE_LEN - 8)),
        hours: "h".repeat(MAX_HOURS_LEN),
        reply_within: u32::MAX,
    };
    SignedBusinessProfile {
        body: b,
        signature: [1; 64],
    }
}

#[test]
fn profile_round_trips_and_the_longest_is_the_limit() {
    let p = SignedBusinessProfile {
        body: body(),
        signature: [9; 64],
    };
    let bytes = p.encode().unwrap();
    assert_eq!(SignedBusinessProfile::decode(&bytes).unwrap(), p);
    let long = longest().encode().unwrap();
    assert_eq!(long.len(), MAX_BUSINESS_PROFILE_LEN);
    assert_eq!(MAX_BUSINESS_PROFILE_LEN, 2312);
    assert_eq!(SignedBusinessProfile::decode(&long).unwrap(), longest());
    let mut too_long = long.clone();
    too_long.push(0);
    assert!(matches!(
        SignedBusinessProfile::decode(&too_long),
        Err(DecodeError::TooLong {
            what: "business profile",
            ..
        })
    ));
}

#[test]
fn profile_fields_are_checked_both_ways() {
    type Change = fn(&mut BusinessProfileFields);
    let cases: [(Change, DecodeError); 7] = [
        (
            |f| f.name.clear(),
            DecodeError::TooShort {
                what: "business name",
                len: 0,
                min: 1,
            },
        ),
        (
            |f| f.name = "a\tb".into(),
            DecodeError::InvalidValue("business name"),
        ),
        (
            |f| f.category = "a\nb".into(),
            DecodeError::InvalidValue("category"),
        ),
        (
            |f| f.description = "a\rb".into(),
            DecodeError::InvalidValue("description"),
        ),
        (
            |f| f.website = "http://velo.example".into(),
            DecodeError::InvalidValue("website"),
        ),
        (
            |f| f.website = "https://".into(),
            DecodeError::InvalidValue("website"),
        ),
        (
            |f| f.hours = "h".repeat(MAX_HOURS_LEN + 1),
            DecodeError::TooLong {
                what: "hours",
                len: MAX_HOURS_LEN + 1,
                max: MAX_HOURS_LEN,
            },
        ),
    ];
    for (change, expected) in cases {
        let mut b = body();
        change(&mut b.fields);
        assert_eq!(b.encode().unwrap_err(), expected);
        // The decoder refuses the same bytes: encode by hand with the checks skipped.
        let bytes = forge(&b);
        assert_eq!(SignedBusinessProfile::decode(&bytes).unwrap_err(), expected);
    }
}

/// Encodes `b` without the encoder's checks (what a broken or hostile peer sends).
fn forge(b: &BusinessProfileBody) -> Vec<u8> {
    let f = &b.fields;
    let mut w = Writer::new();
    w.u8(1).u8(TYPE_BUSINESS_PROFILE);
    b.account.encode_into(&mut w);
    w.bytes(&b.account_key)
        .u64(b.profile_version)
        .u64(b.issued_at)
        .var_bytes8(f.name.as_bytes())
        .var_bytes8(f.category.as_bytes())
        .var_bytes16(f.description.as_bytes())
        .var_bytes16(f.address.as_bytes())
        .var_bytes8(f.website.as_bytes())
        .var_bytes16(f.hours.as_bytes())
        .u32(f.reply_within)
        .bytes(&[0; 64]);
    w.into_bytes()
}

#[test]
fn profile_header_version_and_trailing_bytes() {
    let p = SignedBusinessProfile {
        body: body(),
        signature: [9; 64],
    };
    let bytes = p.encode().unwrap();
    let mut v = bytes.clone();
    v[0] = 2;
    assert_eq!(
        SignedBusinessProfile::decode(&v).unwrap_err(),
        DecodeError::UnsupportedVersion(2)
    );
    let mut t = bytes.clone();
    t[1] = TYPE_BUSINESS_VERIFICATION;
    assert_eq!(
        SignedBusinessProfile::decode(&t).unwrap_err(),
        DecodeError::UnknownType {
            what: "business profile",
            value: TYPE_BUSINESS_VERIFICATION
        }
    );
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(
        SignedBusinessProfile::decode(&extra).unwrap_err(),
        DecodeError::TrailingBytes(1)
    );
    let mut zero = body();
    zero.profile_version = 0;
    assert_eq!(
        SignedBusinessProfile::decode(&forge(&zero)).unwrap_err(),
        DecodeError::InvalidValue("profile version")
    );
    for cut in 0..bytes.len() {
        assert!(SignedBusinessProfile::decode(&bytes[..cut]).is_err());
    }
}

#[test]
fn verification_round_trips_and_checks_expiry() {
    let v = BusinessVerification {
        body: BusinessVerificationBody {
            verifier_key: [3; 32],
            account: AccountId::new(format!("+{}", "1".repeat(63))).unwrap(),
            account_key: [7; 32],
            business_name: "n".repeat(MAX_BUSINESS_NAME_LEN),
            issued_at: 10,
            expires_at: 11,
        },
        signature: [4; 64],
    };
    let bytes = v.encode().unwrap();
    assert_eq!(bytes.len(), MAX_BUSINESS_VERIFICATION_LEN);
    assert_eq!(MAX_BUSINESS_VERIFICATION_LEN, 276);
    assert_eq!(BusinessVerification::decode(&bytes).unwrap(), v);
    let mut same = v.clone();
    same.body.expires_at = 10;
    assert_eq!(
        same.encode().unwrap_err(),
        DecodeError::InvalidValue("verification expiry")
    );
    // expires_at sits right before the signature.
    let mut forged = bytes.clone();
    let at = forged.len() - 64 - 8;
    forged[at..at + 8].copy_from_slice(&5u64.to_be_bytes());
    assert_eq!(
        BusinessVerification::decode(&forged).unwrap_err(),
        DecodeError::InvalidValue("verification expiry")
    );
    let mut extra = bytes;
    extra.push(0);
    assert!(matches!(
        BusinessVerification::decode(&extra),
        Err(DecodeError::TooLong { .. })
    ));
}

fn route(customer: Option<&str>, devices: Vec<u32>) -> SignedRoute {
    SignedRoute {
        body: RouteBody {
            account: AccountId::new("+15550100300").unwrap(),
            account_key: [7; 32],
            customer: customer.map(|c| AccountId::new(c).unwrap()),
            route_version: 4,
            issued_at: 9,
            devices,
            signer: RouteSigner::Device(3),
        },
        signature: [5; 64],
    }
}

#[test]
fn route_round_trips_and_the_longest_is_the_limit() {
    for r in [
        route(None, vec![1]),
        route(Some("+15550100777"), vec![1, 2, 9]),
    ] {
        let bytes = r.encode().unwrap();
        assert_eq!(SignedRoute::decode(&bytes).unwrap(), r);
    }
    let long_account = format!("+{}", "1".repeat(63));
    let mut longest = route(Some(&long_account), (1..=64).collect());
    longest.body.account = AccountId::new(long_account.clone()).unwrap();
    longest.body.signer = RouteSigner::AccountKey;
    let bytes = longest.encode().unwrap();
    assert_eq!(bytes.len(), MAX_ROUTE_LEN);
    assert_eq!(MAX_ROUTE_LEN, 506);
    assert_eq!(SignedRoute::decode(&bytes).unwrap(), longest);
    let mut extra = bytes;
    extra.push(0);
    assert!(matches!(
        SignedRoute::decode(&extra),
        Err(DecodeError::TooLong { what: "route", .. })
    ));
}

#[test]
fn route_devices_version_and_flags_are_checked_both_ways() {
    for (devices, expected) in [
        (
            vec![],
            DecodeError::TooShort {
                what: "route",
                len: 0,
                min: 1,
            },
        ),
        (vec![0, 1], DecodeError::InvalidValue("device id")),
        (vec![2, 2], DecodeError::InvalidValue("device order")),
        (vec![3, 1], DecodeError::InvalidValue("device order")),
    ] {
        let r = route(None, devices.clone());
        assert_eq!(r.encode().unwrap_err(), expected);
        // The same body written without the encoder's checks.
        let mut w = Writer::new();
        w.u8(1).u8(TYPE_ROUTE);
        r.body.account.encode_into(&mut w);
        w.bytes(&[7; 32]).flag(false).u64(4).u64(9);
        w.u8(u8::try_from(devices.len()).unwrap());
        for d in &devices {
            w.u32(*d);
        }
        w.u32(3).bytes(&[5; 64]);
        assert_eq!(SignedRoute::decode(w.as_slice()).unwrap_err(), expected);
    }
    let good = route(None, vec![1, 2]).encode().unwrap();
    // The has_customer flag sits right after the account key.
    let flag_at = 2 + 13 + 32;
    let mut bad_flag = good.clone();
    bad_flag[flag_at] = 2;
    assert_eq!(
        SignedRoute::decode(&bad_flag).unwrap_err(),
        DecodeError::InvalidValue("has_customer")
    );
    let mut zero = route(None, vec![1]);
    zero.body.route_version = 0;
    assert_eq!(
        zero.encode().unwrap_err(),
        DecodeError::InvalidValue("route version")
    );
    let mut t = good.clone();
    t[1] = TYPE_BUSINESS_PROFILE;
    assert_eq!(
        SignedRoute::decode(&t).unwrap_err(),
        DecodeError::UnknownType {
            what: "route",
            value: TYPE_BUSINESS_PROFILE
        }
    );
    for cut in 0..good.len() {
        assert!(SignedRoute::decode(&good[..cut]).is_err());
    }
}
