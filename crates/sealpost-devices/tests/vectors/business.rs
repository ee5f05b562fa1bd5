//! `spec/vectors/business.json`: a business profile and a verification statement
//! (`spec/business.md` sections 3 and 4), computed through the API and by a model that
//! writes the signed bytes exactly as the spec's tables do.

use super::{secret, write_or_check};
use sealpost_crypto::ed25519::SigningKey;
use sealpost_devices::{
    AccountKeyPair, ProfileError, TrustedVerifier, VerificationError, VerifiedBusinessProfile,
    check_verification, sign_business_verification,
};
use sealpost_wire::business::{BusinessProfileFields, BusinessVerification, SignedBusinessProfile};
use sealpost_wire::{AccountId, DecodeError};
use serde_json::json;

const BUSINESS: &str = "+15550100300";
const SPEC_PROFILE_LABEL: &[u8] = b"Sealpost_BusinessProfile_v1";
const SPEC_VERIFICATION_LABEL: &[u8] = b"Sealpost_BusinessVerification_v1";
const ISSUED_AT: u64 = 1_765_000_000_000;

fn fields() -> BusinessProfileFields {
    BusinessProfileFields {
        name: "Velo Lina".into(),
        category: "Bicycle shop".into(),
        description: "Repairs, rentals and\nsecond-hand bicycles.".into(),
        address: "12 Harbour Street\n4051 Basel".into(),
        website: "https://velo-lina.example".into(),
        hours: "Mon-Fri 09:00-18:30\nSat 10:00-16:00".into(),
        reply_within: 900,
    }
}

/// `var8`/`var16` text the way section 3.1's table writes it.
fn text8(s: &str) -> Vec<u8> {
    [&[u8::try_from(s.len()).unwrap()][..], s.as_bytes()].concat()
}

fn text16(s: &str) -> Vec<u8> {
    [
        &u16::try_from(s.len()).unwrap().to_be_bytes()[..],
        s.as_bytes(),
    ]
    .concat()
}

fn model_profile(ak: &SigningKey, version: u64, f: &BusinessProfileFields) -> Vec<u8> {
    let body = [
        &[0x01, 0x16][..],
        &text8(BUSINESS),
        &ak.verifying_key().to_bytes(),
        &version.to_be_bytes(),
        &ISSUED_AT.to_be_bytes(),
        &text8(&f.name),
        &text8(&f.category),
        &text16(&f.description),
        &text16(&f.address),
        &text8(&f.website),
        &text16(&f.hours),
        &f.reply_within.to_be_bytes(),
    ]
    .concat();
    let signature = ak.sign(&[SPEC_PROFILE_LABEL, &body].concat());
    [body, signature.to_bytes().to_vec()].concat()
}

#[test]
fn business_vectors() {
    let account = AccountId::new(BUSINESS).unwrap();
    let seed = secret("business.account-key");
    let ak = AccountKeyPair::from_seed(&seed);
    let model_ak = SigningKey::from_seed(&seed);
    let profile = ak
        .sign_business_profile(&account, 1, ISSUED_AT, fields())
        .unwrap();
    let bytes = profile.encode().unwrap();
    assert_eq!(bytes, model_profile(&model_ak, 1, &fields()));
    let verified = VerifiedBusinessProfile::verify_bytes(&bytes, &account, &ak.public()).unwrap();

    let verifier_seed = secret("business.verifier");
    let verifier = SigningKey::from_seed(&verifier_seed);
    let (issued, expires) = (ISSUED_AT, ISSUED_AT + 365 * 86_400_000);
    let statement = sign_business_verification(
        &verifier,
        &account,
        &ak.public(),
        "Velo Lina",
        issued,
        expires,
    )
    .unwrap();
    let statement_bytes = statement.encode().unwrap();
    let model_statement_body = [
        &[0x01, 0x17][..],
        &verifier.verifying_key().to_bytes(),
        &text8(BUSINESS),
        &ak.public().to_bytes(),
        &text8("Velo Lina"),
        &issued.to_be_bytes(),
        &expires.to_be_bytes(),
    ]
    .concat();
    let model_signature = verifier.sign(&[SPEC_VERIFICATION_LABEL, &model_statement_body].concat());
    assert_eq!(
        statement_bytes,
        [model_statement_body, model_signature.to_bytes().to_vec()].concat()
    );
    let trusted = [TrustedVerifier {
        name: "Basel Business Registry".into(),
        key: verifier.verifying_key().to_bytes(),
    }];
    let decoded = BusinessVerification::decode(&statement_bytes).unwrap();
    assert_eq!(
        check_verification(&decoded, &verified, &trusted, issued).map(|t| t.name.as_str()),
        Ok("Basel Business Registry")
    );

    // What must be refused.
    let renamed = ak
        .sign_business_profile(
            &account,
            2,
            ISSUED_AT,
            BusinessProfileFields {
                name: "Velo Lina GmbH".into(),
                ..fields()
            },
        )
        .unwrap();
    let renamed_verified =
        VerifiedBusinessProfile::verify(&renamed, &account, &ak.public()).unwrap();
    assert_eq!(
        check_verification(&decoded, &renamed_verified, &trusted, issued),
        Err(VerificationError::WrongName)
    );
    let new_key = AccountKeyPair::from_seed(&secret("business.new-account-key"));
    assert_eq!(
        VerifiedBusinessProfile::verify_bytes(&bytes, &account, &new_key.public()),
        Err(ProfileError::WrongAccountKey)
    );
    let mut http = bytes.clone();
    let at = http.windows(8).position(|w| w == b"https://").unwrap();
    http.splice(at..at + 8, b"http://x".iter().copied());
    assert_eq!(
        SignedBusinessProfile::decode(&http).unwrap_err(),
        DecodeError::InvalidValue("website")
    );
    let mut tampered = bytes.clone();
    let last_text = tampered.len() - 64 - 4 - 1;
    tampered[last_text] ^= 0x01;
    assert_eq!(
        VerifiedBusinessProfile::verify_bytes(&tampered, &account, &ak.public()),
        Err(ProfileError::BadSignature)
    );

    let computed = json!({
        "account": BUSINESS,
        "account_key_seed": hex::encode(seed),
        "account_key": hex::encode(ak.public().to_bytes()),
        "profile": {
            "profile_version": 1,
            "issued_at": ISSUED_AT,
            "name": fields().name,
            "category": fields().category,
            "description": fields().description,
            "address": fields().address,
            "website": fields().website,
            "hours": fields().hours,
            "reply_within": fields().reply_within,
            "encoded": hex::encode(&bytes),
        },
        "verification": {
            "verifier_seed": hex::encode(verifier_seed),
            "verifier_key": hex::encode(verifier.verifying_key().to_bytes()),
            "business_name": "Velo Lina",
            "issued_at": issued,
            "expires_at": expires,
            "encoded": hex::encode(&statement_bytes),
        },
        "refused": {
            "profile_http_website": { "encoded": hex::encode(&http), "error": "InvalidValue(\"website\")" },
            "profile_tampered_hours": { "encoded": hex::encode(&tampered), "error": "BadSignature" },
            "statement_for_renamed_profile": {
                "profile": hex::encode(renamed.encode().unwrap()),
                "statement": hex::encode(&statement_bytes),
                "error": "WrongName",
            },
        },
    });
    write_or_check("business.json", &computed);
}
