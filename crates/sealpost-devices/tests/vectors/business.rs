//! `spec/vectors/business.json` and `business_routes.json`: a business profile, a
//! verification statement and routes (`spec/business.md` sections 3, 4 and 7), computed through the API and by a model that
//! writes the signed bytes exactly as the spec's tables do.

use super::{secret, write_or_check};
use sealpost_crypto::ed25519::SigningKey;
use sealpost_devices::{
    AccountKeyPair, ProfileError, RouteError, TrustedVerifier, VerificationError,
    VerifiedBusinessProfile, VerifiedRoute, check_verification, route_targets,
    sign_business_verification, sign_route_as_device,
};
use sealpost_wire::business::{
    BusinessProfileFields, BusinessVerification, RouteBody, RouteSigner, SignedBusinessProfile,
};
use sealpost_wire::{AccountId, DecodeError};
use serde_json::json;

mod desk;

const BUSINESS: &str = "+15550100300";
const SPEC_PROFILE_LABEL: &[u8] = b"Sealpost_BusinessProfile_v1";
const SPEC_VERIFICATION_LABEL: &[u8] = b"Sealpost_BusinessVerification_v1";
const SPEC_ROUTE_LABEL: &[u8] = b"Sealpost_Route_v1";
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

/// A business list: owner 1, admin 2, agent 3, bot 4, each linked as section 6 does it
/// (the key holder signs, the new device adds its binding).
fn business_list(
    ak: &AccountKeyPair,
) -> (sealpost_devices::VerifiedDeviceList, Vec<super::Device>) {
    use sealpost_devices::{DeviceRole, VerifiedDeviceList};
    use sealpost_wire::devices::DeviceName;
    let account = AccountId::new(BUSINESS).unwrap();
    let devices: Vec<super::Device> = ["owner", "admin", "agent", "bot"]
        .iter()
        .map(|l| super::device(&format!("business.{l}")))
        .collect();
    let mut list = ak
        .first_list(
            &account,
            1,
            devices[0].identity,
            DeviceRole::Owner,
            DeviceName::new("Owner").unwrap(),
            ISSUED_AT,
            |m| devices[0].signing.sign(m),
        )
        .unwrap();
    for (i, (role, name)) in [
        (DeviceRole::Admin, "Mara, admin"),
        (DeviceRole::Agent, "Lina, support"),
        (DeviceRole::Bot, "Order bot"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = &devices[i + 1];
        let body = ak
            .link_device(
                &list,
                d.identity,
                role,
                DeviceName::new(name).unwrap(),
                ISSUED_AT,
            )
            .unwrap();
        let mut signed = body.list.clone();
        let at = signed.bindings.len() - 1;
        let message = sealpost_devices::binding_message(&account, &ak.public(), &d.identity);
        signed.bindings[at] = d.signing.sign(&message).to_bytes();
        list = VerifiedDeviceList::verify(&signed.encode().unwrap(), &account).unwrap();
    }
    (list, devices)
}

fn route_body(
    customer: Option<&str>,
    version: u64,
    devices: Vec<u32>,
    signer: RouteSigner,
) -> RouteBody {
    RouteBody {
        account: AccountId::new(BUSINESS).unwrap(),
        account_key: AccountKeyPair::from_seed(&secret("business.account-key"))
            .public()
            .to_bytes(),
        customer: customer.map(|c| AccountId::new(c).unwrap()),
        route_version: version,
        issued_at: ISSUED_AT,
        devices,
        signer,
    }
}

const CUSTOMER: &str = "+15550100777";

/// spec/business.md 7: the default route (bot and agent) signed by the account key, the
/// bot's escalation to the agent, and the routes a client refuses.
#[test]
fn route_vectors_and_rules() {
    let ak = AccountKeyPair::from_seed(&secret("business.account-key"));
    let (list, devices) = business_list(&ak);
    let customer = AccountId::new(CUSTOMER).unwrap();
    let default = ak
        .sign_route(route_body(None, 1, vec![3, 4], RouteSigner::AccountKey))
        .unwrap();
    let default = VerifiedRoute::verify(&default, &list, None, None).unwrap();
    // The model: label || body, Ed25519 under AK.
    let model_body = [
        &[0x01, 0x18][..],
        &text8(BUSINESS),
        &ak.public().to_bytes(),
        &[0x00],
        &1u64.to_be_bytes(),
        &ISSUED_AT.to_be_bytes(),
        &[2],
        &3u32.to_be_bytes(),
        &4u32.to_be_bytes(),
        &0u32.to_be_bytes(),
    ]
    .concat();
    let model_sig = SigningKey::from_seed(&secret("business.account-key"))
        .sign(&[SPEC_ROUTE_LABEL, &model_body].concat());
    assert_eq!(
        default.encoded(),
        [model_body, model_sig.to_bytes().to_vec()].concat()
    );
    // Whom the customer encrypts to: the routed devices and the owner, not the admin.
    assert_eq!(route_targets(&list, None, Some(&default)), vec![1, 3, 4]);
    assert_eq!(route_targets(&list, None, None), vec![1, 2, 3, 4]);

    // The bot (routed by the default route) hands the conversation to the agent.
    let escalation = sign_route_as_device(
        route_body(Some(CUSTOMER), 1, vec![3], RouteSigner::Device(4)),
        |m| devices[3].signing.sign(m),
    )
    .unwrap();
    let escalation =
        VerifiedRoute::verify(&escalation, &list, Some(&customer), Some(&default)).unwrap();
    assert_eq!(
        route_targets(&list, Some(&escalation), Some(&default)),
        vec![1, 3]
    );
    // Once the agent has it, the bot may not take it back; the admin may.
    let take_back = sign_route_as_device(
        route_body(Some(CUSTOMER), 2, vec![4], RouteSigner::Device(4)),
        |m| devices[3].signing.sign(m),
    )
    .unwrap();
    assert_eq!(
        VerifiedRoute::verify(&take_back, &list, Some(&customer), Some(&escalation)),
        Err(RouteError::Unauthorized)
    );
    let by_admin = sign_route_as_device(
        route_body(Some(CUSTOMER), 2, vec![4], RouteSigner::Device(2)),
        |m| devices[1].signing.sign(m),
    )
    .unwrap();
    let by_admin =
        VerifiedRoute::verify(&by_admin, &list, Some(&customer), Some(&escalation)).unwrap();
    assert_eq!(by_admin.replaces(Some(&escalation)), Ok(true));
    assert_eq!(
        escalation.replaces(Some(&by_admin)),
        Err(RouteError::RolledBack {
            held: 2,
            offered: 1
        })
    );
    // A default route signed by a device that is not owner or admin; a route for
    // another customer; a forged signature; a route under another key.
    let by_agent =
        sign_route_as_device(route_body(None, 2, vec![3], RouteSigner::Device(3)), |m| {
            devices[2].signing.sign(m)
        })
        .unwrap();
    assert_eq!(
        VerifiedRoute::verify(&by_agent, &list, None, Some(&default)),
        Err(RouteError::Unauthorized)
    );
    let other = AccountId::new("+15550100778").unwrap();
    assert_eq!(
        VerifiedRoute::verify(escalation.signed(), &list, Some(&other), Some(&default)),
        Err(RouteError::WrongCustomer)
    );
    let mut forged = default.signed().clone();
    forged.body.devices = vec![2, 3, 4];
    assert_eq!(
        VerifiedRoute::verify(&forged, &list, None, None),
        Err(RouteError::BadSignature)
    );
    let stranger = AccountKeyPair::from_seed(&secret("business.new-account-key"));
    let mut foreign = route_body(None, 1, vec![3], RouteSigner::AccountKey);
    foreign.account_key = stranger.public().to_bytes();
    let foreign = stranger.sign_route(foreign).unwrap();
    assert_eq!(
        VerifiedRoute::verify(&foreign, &list, None, None),
        Err(RouteError::WrongAccountKey)
    );
    // A route naming only a removed device falls back (7.3 rule 1).
    let gone = ak
        .sign_route(route_body(None, 3, vec![7], RouteSigner::AccountKey))
        .unwrap();
    let gone = VerifiedRoute::verify(&gone, &list, None, None).unwrap();
    assert_eq!(route_targets(&list, None, Some(&gone)), vec![1, 2, 3, 4]);

    let seeds = |what: &str| {
        ["owner", "admin", "agent", "bot"]
            .iter()
            .map(|l| hex::encode(secret(&format!("business.{l}.{what}"))))
            .collect::<Vec<_>>()
    };
    let computed = json!({
        "account": BUSINESS,
        "account_key_seed": hex::encode(secret("business.account-key")),
        "list": hex::encode(list.as_bytes()),
        "device_identity_ed25519_seeds": seeds("identity-ed25519"),
        "device_identity_x25519_secrets": seeds("identity-x25519"),
        "customer": CUSTOMER,
        "default_route": {
            "encoded": hex::encode(default.encoded()),
            "targets": [1, 3, 4],
        },
        "escalation_by_bot": {
            "encoded": hex::encode(escalation.encoded()),
            "current_route": "default_route",
            "targets": [1, 3],
        },
        "refused": {
            "bot_takes_back_after_escalation": {
                "encoded": hex::encode(take_back.encode().unwrap()),
                "current_route": "escalation_by_bot",
                "error": "Unauthorized",
            },
            "default_route_by_agent": {
                "encoded": hex::encode(by_agent.encode().unwrap()),
                "error": "Unauthorized",
            },
            "default_route_altered": {
                "encoded": hex::encode(forged.encode().unwrap()),
                "error": "BadSignature",
            },
        },
    });
    write_or_check("business_routes.json", &computed);
}
