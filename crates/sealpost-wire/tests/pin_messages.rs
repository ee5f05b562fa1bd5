//! Checks spec/vectors/pin_messages.json (spec/pin.md sections 7–8): a guardian credential
//! signed by a fixed issuer key, and the frame bytes of every registration-lock and vault
//! request and response.
//!
//! * `cargo test -p sealpost-wire --test pin_messages` recomputes every value and compares it
//!   with the committed file, and decodes every committed frame back to the message it
//!   names.
//! * `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-wire --test pin_messages` regenerates
//!   it. The issuer seed is `SHA-256("sealpost-vector-" || "guardian-issuer")`; every other
//!   field is a fixed filler byte (this layer does not interpret shares, records or group
//!   elements; `spec/vectors/pin_vault.json` has real ones).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sealpost_crypto::ed25519::{Signature, SigningKey, VerifyingKey};
use sealpost_wire::relay::{
    CredentialScope, ErrorCode, GuardianCredential, Request, Response, frame_len,
};
use sealpost_wire::{AccountId, IdentityBytes};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const FILE: &str = "pin_messages.json";
/// Written out from spec/pin.md section 7, independently of the library's constant.
const SPEC_CREDENTIAL_LABEL: &[u8] = b"Sealpost_GuardianCredential_v1";

fn vectors_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .join("spec")
        .join("vectors")
}

fn write_mode() -> bool {
    std::env::var("SEALPOST_WRITE_VECTORS").is_ok_and(|v| v == "1")
}

fn seed(label: &str) -> [u8; 32] {
    Sha256::digest(format!("sealpost-vector-{label}").as_bytes()).into()
}

fn account() -> AccountId {
    AccountId::new("+15550001234").unwrap()
}

fn credential(key: &SigningKey, scope: CredentialScope) -> GuardianCredential {
    let issuer = key.verifying_key().to_bytes();
    let expires_at: u64 = 1_767_229_200; // 2026-01-01T01:00:00Z
    // The layout of spec/pin.md section 7, built by hand.
    let mut signed = SPEC_CREDENTIAL_LABEL.to_vec();
    signed.push(12);
    signed.extend_from_slice(b"+15550001234");
    signed.push(scope.to_u8());
    signed.extend_from_slice(&expires_at.to_be_bytes());
    signed.extend_from_slice(&issuer);
    let c = GuardianCredential {
        account: account(),
        scope,
        expires_at,
        issuer,
        signature: key.sign(&signed).to_bytes(),
    };
    assert_eq!(
        c.signed_bytes(),
        signed,
        "library signed bytes differ from the spec"
    );
    c
}

fn requests(
    owner: &GuardianCredential,
    recovery: &GuardianCredential,
) -> Vec<(&'static str, Request)> {
    vec![
        (
            "Register (with reglock_token)",
            Request::Register {
                account: account(),
                code: *b"123456",
                identity: IdentityBytes {
                    signing: [0x01; 32],
                    dh: [0x02; 32],
                },
                signature: [0x03; 64],
                reglock: Some([0x04; 32]),
            },
        ),
        (
            "Register (without reglock_token)",
            Request::Register {
                account: account(),
                code: *b"123456",
                identity: IdentityBytes {
                    signing: [0x01; 32],
                    dh: [0x02; 32],
                },
                signature: [0x03; 64],
                reglock: None,
            },
        ),
        (
            "SetRegistrationLock",
            Request::SetRegistrationLock { token: [0x04; 32] },
        ),
        ("ClearRegistrationLock", Request::ClearRegistrationLock),
        ("GetGuardianCredential", Request::GetGuardianCredential),
        (
            "VaultStore",
            Request::VaultStore {
                credential: owner.clone(),
                share: [0x05; 33],
                success_verifier: [0x06; 32],
                record: vec![0x07; 128],
            },
        ),
        (
            "VaultFetch",
            Request::VaultFetch {
                credential: recovery.clone(),
            },
        ),
        (
            "VaultEvaluate",
            Request::VaultEvaluate {
                credential: recovery.clone(),
                vault_id: [0x08; 16],
                blinded: [0x09; 32],
            },
        ),
        (
            "VaultConfirm",
            Request::VaultConfirm {
                credential: recovery.clone(),
                vault_id: [0x08; 16],
                token: [0x0A; 32],
            },
        ),
        (
            "VaultDelete",
            Request::VaultDelete {
                credential: owner.clone(),
            },
        ),
    ]
}

fn responses(
    owner: &GuardianCredential,
    recovery: &GuardianCredential,
) -> Vec<(&'static str, Response)> {
    let err = |code| Response::Error {
        code,
        retry_after: 0,
        detail: String::new(),
    };
    vec![
        ("RegistrationLockSet", Response::RegistrationLockSet),
        ("RegistrationLockCleared", Response::RegistrationLockCleared),
        ("Credential", Response::Credential(owner.clone())),
        ("VaultStored", Response::VaultStored),
        (
            "Vault",
            Response::Vault {
                index: 2,
                attempts_remaining: 10,
                record: vec![0x07; 128],
            },
        ),
        (
            "VaultEvaluated",
            Response::VaultEvaluated {
                index: 2,
                evaluated: [0x0B; 32],
                proof: [0x0C; 64],
                attempts_remaining: 9,
            },
        ),
        (
            "VaultConfirmed",
            Response::VaultConfirmed {
                attempts_remaining: 10,
            },
        ),
        ("VaultDeleted", Response::VaultDeleted),
        (
            "RegistrationLocked",
            Response::RegistrationLocked {
                lapses_in: 518_400,
                attempts_remaining: 7,
                credential: recovery.clone(),
            },
        ),
        ("Error CredentialInvalid", err(ErrorCode::CredentialInvalid)),
        ("Error NotGuardian", err(ErrorCode::NotGuardian)),
        ("Error VaultNotFound", err(ErrorCode::VaultNotFound)),
        ("Error InvalidVault", err(ErrorCode::InvalidVault)),
    ]
}

fn body(frame: &[u8]) -> &[u8] {
    let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
    assert_eq!(len, frame.len() - 4);
    &frame[4..]
}

fn cred_json(c: &GuardianCredential) -> Value {
    json!({
        "account": c.account.as_str(),
        "scope": c.scope.to_u8(),
        "expires_at": c.expires_at,
        "issuer": hex::encode(c.issuer),
        "signed_bytes": hex::encode(c.signed_bytes()),
        "signature": hex::encode(c.signature),
        "encoding": hex::encode(c.encode()),
    })
}

fn frame_json(name: &str, frame: &[u8]) -> Value {
    json!({ "name": name, "kind": format!("0x{:02X}", frame[5]), "frame": hex::encode(frame) })
}

fn compute() -> Value {
    let issuer_seed = seed("guardian-issuer");
    let key = SigningKey::from_seed(&issuer_seed);
    let owner = credential(&key, CredentialScope::Owner);
    let recovery = credential(&key, CredentialScope::Recovery);
    // Both verify strictly under the issuer key; a flipped bit does not.
    let vk = VerifyingKey::from_bytes(&owner.issuer).unwrap();
    for c in [&owner, &recovery] {
        vk.verify(&c.signed_bytes(), &Signature::from_bytes(c.signature))
            .unwrap();
        let mut forged = c.clone();
        forged.expires_at += 1;
        assert!(
            vk.verify(&forged.signed_bytes(), &Signature::from_bytes(c.signature))
                .is_err()
        );
    }
    json!({
        "description": "spec/pin.md sections 7-8: guardian credentials signed by a fixed issuer \
            key (seed = SHA-256(\"sealpost-vector-guardian-issuer\")), and the complete frames \
            (u32 length || version || kind || payload) of every registration-lock and vault \
            message. Shares, records, tokens and group elements are filler bytes: this layer \
            does not interpret them.",
        "issuer_seed": hex::encode(issuer_seed),
        "issuer_public": hex::encode(owner.issuer),
        "credentials": { "owner": cred_json(&owner), "recovery": cred_json(&recovery) },
        "requests": requests(&owner, &recovery)
            .iter()
            .map(|(n, r)| frame_json(n, &r.encode()))
            .collect::<Vec<_>>(),
        "responses": responses(&owner, &recovery)
            .iter()
            .map(|(n, r)| frame_json(n, &r.encode()))
            .collect::<Vec<_>>(),
    })
}

#[test]
fn pin_message_vectors() {
    let path = vectors_dir().join(FILE);
    let computed = compute();
    if write_mode() {
        let mut text = serde_json::to_string_pretty(&computed).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}); generate it with \
             `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-wire --test pin_messages`",
            path.display()
        )
    });
    let recorded: Value = serde_json::from_str(&text).unwrap();
    for key in ["issuer_seed", "issuer_public", "credentials"] {
        assert_eq!(recorded[key], computed[key], "{FILE}: `{key}` differs");
    }
    // The committed credentials decode and verify.
    for scope in ["owner", "recovery"] {
        let c = &recorded["credentials"][scope];
        let enc = hex::decode(c["encoding"].as_str().unwrap()).unwrap();
        let cred = GuardianCredential::decode(&enc).unwrap();
        let vk = VerifyingKey::from_bytes(&cred.issuer).unwrap();
        vk.verify(&cred.signed_bytes(), &Signature::from_bytes(cred.signature))
            .unwrap();
    }
    let key = SigningKey::from_seed(&seed("guardian-issuer"));
    let owner = credential(&key, CredentialScope::Owner);
    let recovery = credential(&key, CredentialScope::Recovery);
    let reqs = requests(&owner, &recovery);
    let rec_reqs = recorded["requests"].as_array().unwrap();
    assert_eq!(rec_reqs.len(), reqs.len(), "{FILE}: request count");
    for ((name, req), rec) in reqs.iter().zip(rec_reqs) {
        assert_eq!(
            rec,
            &frame_json(name, &req.encode()),
            "{FILE}: request {name}"
        );
        let frame = hex::decode(rec["frame"].as_str().unwrap()).unwrap();
        assert_eq!(&Request::decode(body(&frame)).unwrap(), req, "{name}");
    }
    let resps = responses(&owner, &recovery);
    let rec_resps = recorded["responses"].as_array().unwrap();
    assert_eq!(rec_resps.len(), resps.len(), "{FILE}: response count");
    for ((name, resp), rec) in resps.iter().zip(rec_resps) {
        assert_eq!(
            rec,
            &frame_json(name, &resp.encode()),
            "{FILE}: response {name}"
        );
        let frame = hex::decode(rec["frame"].as_str().unwrap()).unwrap();
        assert_eq!(&Response::decode(body(&frame)).unwrap(), resp, "{name}");
    }
    assert_eq!(recorded, computed);
}
