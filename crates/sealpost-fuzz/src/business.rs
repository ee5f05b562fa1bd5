//! Business-account target (`spec/business.md` sections 3 and 4): profiles, verification
//! statements and the payload that carries them.

use sealpost_crypto::ed25519::SigningKey;
use sealpost_devices::{
    AccountKeyPair, TrustedVerifier, VerifiedBusinessProfile, check_verification,
    sign_business_verification, verified_by,
};
use sealpost_wire::business::{
    BusinessProfileFields, BusinessVerification, PublishedProfile, SignedBusinessProfile,
};
use sealpost_wire::{AccountId, Reader, Writer};
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
        BusinessFixture {
            account,
            account_key,
            profile,
            statement,
            trusted,
        }
    })
}

/// Arbitrary bytes as a profile, a statement and a published payload:
///
/// - never panics; each decoder is canonical (`Ok` values re-encode to the input);
/// - only the fixture's own profile verifies under the fixture's account key, and only the
///   fixture's own statement passes the client's check (nobody else holds those keys);
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
