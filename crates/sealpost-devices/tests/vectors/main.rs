//! Test vectors for linked devices (`spec/vectors/device_list.json`,
//! `spec/vectors/provisioning.json`, `spec/vectors/history_bundle.json`,
//! `spec/vectors/account_key_backup.json`) and business accounts (`spec/vectors/business.json`,
//! in `business.rs`).
//!
//! Every output is computed twice: through the public `sealpost-devices` API, and by a small
//! model in this file that assembles the signed bytes, the binding inputs and the
//! provisioning key exactly as `spec/devices.md` writes them, with `sealpost-crypto`
//! primitives. Both must agree with each other and with the committed JSON.
//!
//! * `cargo test -p sealpost-devices --test vectors` checks the committed files.
//! * `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-devices --test vectors` regenerates
//!   them. Every secret is `SHA-256("sealpost-vector-" || label)`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sealpost_crypto::ed25519::{Signature, SigningKey, VerifyingKey};
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_crypto::{aead, kdf};
use sealpost_devices::hazmat::{
    link_request_with_secret, seal_account_key_backup_with_nonce, seal_provisioning_with_secret,
};
use sealpost_devices::{AccountKeyPair, DeviceListPin, DeviceRole, Update, VerifiedDeviceList};
use sealpost_wire::devices::{
    ContactDevices, DeviceName, HistoryContact, HistoryDevice, HistoryDirection, HistoryMessage,
    HistoryPart, HistoryRecord, HistoryStatus, HistoryVerification, ProvisioningBody,
};
use sealpost_wire::{AccountId, IdentityBytes};
use sealpost_wire::{DeviceAddress, DeviceId};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

mod business;

const ACCOUNT: &str = "+15551230001";
const SPEC_LIST_LABEL: &[u8] = b"Sealpost_DeviceList_v1";
const SPEC_BINDING_LABEL: &[u8] = b"Sealpost_DeviceBinding_v1";
const SPEC_PROVISION_INFO: &[u8] = b"Sealpost_Provision_v1";
const SPEC_BACKUP_INFO: &[u8] = b"Sealpost_AccountKey_Backup_v1";

fn secret(label: &str) -> [u8; 32] {
    Sha256::digest(format!("sealpost-vector-{label}").as_bytes()).into()
}

struct Device {
    signing: SigningKey,
    identity: IdentityBytes,
}

fn device(label: &str) -> Device {
    let signing = SigningKey::from_seed(&secret(&format!("{label}.identity-ed25519")));
    let dh = X25519Secret::from_bytes(secret(&format!("{label}.identity-x25519")));
    let identity = IdentityBytes {
        signing: signing.verifying_key().to_bytes(),
        dh: dh.public_key().to_bytes(),
    };
    Device { signing, identity }
}

/// List version 1 of the vectors' account: the phone alone, as primary, with id 1.
fn phone_first_list(
    ak: &AccountKeyPair,
    account: &AccountId,
    phone: &Device,
) -> VerifiedDeviceList {
    ak.first_list(
        account,
        1,
        phone.identity,
        DeviceRole::Primary,
        DeviceName::new("Phone").unwrap(),
        1_765_000_000_000,
        |m| phone.signing.sign(m),
    )
    .unwrap()
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors")
}

fn write_or_check(name: &str, computed: &Value) {
    let path = vectors_dir().join(name);
    if std::env::var("SEALPOST_WRITE_VECTORS").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(computed).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}); generate it with \
             `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-devices --test vectors`",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&text).unwrap();
    let mut differences = Vec::new();
    diff("", &committed, computed, &mut differences);
    assert!(
        differences.is_empty(),
        "{name} differs from the computed values at: {differences:#?}"
    );
}

fn diff(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                diff(
                    &format!("{at}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{at}[{i}]"), p, q, out);
            }
        }
        _ if a == b => {}
        _ => out.push(at.to_owned()),
    }
}

/// The model's binding input (spec/devices.md 3.3).
fn model_binding_input(account_key: &[u8; 32], identity: &IdentityBytes) -> Vec<u8> {
    let mut m = SPEC_BINDING_LABEL.to_vec();
    m.push(u8::try_from(ACCOUNT.len()).unwrap());
    m.extend_from_slice(ACCOUNT.as_bytes());
    m.extend_from_slice(account_key);
    m.extend_from_slice(&identity.signing);
    m.extend_from_slice(&identity.dh);
    m
}

/// The model's body encoding (spec/devices.md 3.1) for entries `(id, identity, role, added_at, name)`.
fn model_body(
    account_key: &[u8; 32],
    version: u64,
    issued_at: u64,
    next_id: u32,
    entries: &[(u32, IdentityBytes, u8, u64, &str)],
) -> Vec<u8> {
    let mut b = vec![0x01, 0x10, u8::try_from(ACCOUNT.len()).unwrap()];
    b.extend_from_slice(ACCOUNT.as_bytes());
    b.extend_from_slice(account_key);
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&issued_at.to_be_bytes());
    b.extend_from_slice(&next_id.to_be_bytes());
    b.push(u8::try_from(entries.len()).unwrap());
    for (id, identity, role, added_at, name) in entries {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&identity.signing);
        b.extend_from_slice(&identity.dh);
        b.push(*role);
        b.extend_from_slice(&added_at.to_be_bytes());
        b.push(u8::try_from(name.len()).unwrap());
        b.extend_from_slice(name.as_bytes());
    }
    b
}

/// The model's full list: body, the account key's signature, the bindings.
fn model_list(ak: &SigningKey, body: &[u8], devices: &[&Device]) -> Vec<u8> {
    let account_key = ak.verifying_key().to_bytes();
    let mut signed = SPEC_LIST_LABEL.to_vec();
    signed.extend_from_slice(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&ak.sign(&signed).to_bytes());
    for d in devices {
        let binding = d
            .signing
            .sign(&model_binding_input(&account_key, &d.identity));
        out.extend_from_slice(&binding.to_bytes());
    }
    out
}

#[test]
fn device_list_vectors() {
    let account = AccountId::new(ACCOUNT).unwrap();
    let ak_seed = secret("account-key");
    let ak = AccountKeyPair::from_seed(&ak_seed);
    let ak_model = SigningKey::from_seed(&ak_seed);
    let account_key = ak.public().to_bytes();
    let phone = device("phone");
    let desktop = device("desktop");
    let laptop = device("laptop");

    // Version 1: the phone alone.
    let v1 = phone_first_list(&ak, &account, &phone);
    let body1 = model_body(
        &account_key,
        1,
        1_765_000_000_000,
        2,
        &[(1, phone.identity, 0x01, 1_765_000_000_000, "Phone")],
    );
    assert_eq!(v1.as_bytes(), model_list(&ak_model, &body1, &[&phone]));

    // Version 2: a desktop linked (the binding added by the desktop), then version 3: a
    // laptop linked, then version 4: the desktop removed.
    let link = |current: &VerifiedDeviceList, d: &Device, name: &str, at: u64| {
        let body = ak
            .link_device(
                current,
                d.identity,
                DeviceRole::Linked,
                DeviceName::new(name).unwrap(),
                at,
            )
            .unwrap();
        let mut list = body.list.clone();
        let i = list
            .body
            .entries
            .iter()
            .position(|e| e.device_id == body.device_id)
            .unwrap();
        list.bindings[i] = d
            .signing
            .sign(&model_binding_input(&account_key, &d.identity))
            .to_bytes();
        VerifiedDeviceList::verify(&list.encode().unwrap(), &account).unwrap()
    };
    let v2 = link(&v1, &desktop, "Desktop", 1_765_000_060_000);
    let v3 = link(&v2, &laptop, "Laptop ✓", 1_765_000_120_000);
    let v4 = ak.remove_device(&v3, 2, 1_765_000_180_000).unwrap();
    let body4 = model_body(
        &account_key,
        4,
        1_765_000_180_000,
        4,
        &[
            (1, phone.identity, 0x01, 1_765_000_000_000, "Phone"),
            (3, laptop.identity, 0x02, 1_765_000_120_000, "Laptop ✓"),
        ],
    );
    assert_eq!(
        v4.as_bytes(),
        model_list(&ak_model, &body4, &[&phone, &laptop])
    );

    // The update rule over the sequence, and the refusals a relay could try.
    let mut pin = DeviceListPin::new(v1.clone());
    for next in [&v2, &v3, &v4] {
        assert!(matches!(pin.accept(next).unwrap(), Update::Advanced(_)));
    }
    assert!(pin.check(&v2).is_err());

    let hex = |b: &[u8]| hex::encode(b);
    let identity_json = |d: &Device| {
        json!({
            "identity": hex(&[d.identity.signing, d.identity.dh].concat()),
        })
    };
    let computed = json!({
        "description": "Signed device lists of one consumer account (spec/devices.md sections 3-5). Secrets are SHA-256(\"sealpost-vector-\" || label). Each list verifies for `account`; `update_rule` gives the outcome of offering each list to a pin holding `pinned`.",
        "account": ACCOUNT,
        "account_key_seed": hex(&ak_seed),
        "account_key": hex(&account_key),
        "devices": {
            "phone": identity_json(&phone),
            "desktop": identity_json(&desktop),
            "laptop": identity_json(&laptop),
        },
        "phone_binding_input": hex(&model_binding_input(&account_key, &phone.identity)),
        "lists": {
            "v1": hex(v1.as_bytes()),
            "v2": hex(v2.as_bytes()),
            "v3": hex(v3.as_bytes()),
            "v4": hex(v4.as_bytes()),
        },
        "v1_signed_input": hex(&[SPEC_LIST_LABEL, &body1].concat()),
        "update_rule": [
            { "pinned": "v1", "offered": "v2", "result": "advanced", "added": [2], "removed": [] },
            { "pinned": "v3", "offered": "v4", "result": "advanced", "added": [], "removed": [2] },
            { "pinned": "v4", "offered": "v4", "result": "unchanged" },
            { "pinned": "v4", "offered": "v2", "result": "rolled_back" },
        ],
    });
    // The update-rule table is what the code does.
    let lists = [&v1, &v2, &v3, &v4];
    let by_name = |n: &str| lists[n[1..].parse::<usize>().unwrap() - 1];
    for case in computed["update_rule"].as_array().unwrap() {
        let pin = DeviceListPin::new(by_name(case["pinned"].as_str().unwrap()).clone());
        let outcome = pin.check(by_name(case["offered"].as_str().unwrap()));
        match (case["result"].as_str().unwrap(), outcome) {
            ("advanced", Ok(Update::Advanced(change))) => {
                let ids = |v: &[sealpost_devices::DeviceEntry]| -> Vec<u32> {
                    v.iter().map(|e| e.device_id).collect()
                };
                assert_eq!(json!(ids(&change.added)), case["added"]);
                assert_eq!(json!(ids(&change.removed)), case["removed"]);
            }
            ("unchanged", Ok(Update::Unchanged)) => {}
            ("rolled_back", Err(sealpost_devices::UpdateError::RolledBack { .. })) => {}
            (want, got) => panic!("{case}: expected {want}, got {got:?}"),
        }
    }
    write_or_check("device_list.json", &computed);
}

#[test]
fn provisioning_vectors() {
    let account = AccountId::new(ACCOUNT).unwrap();
    let ak = AccountKeyPair::from_seed(&secret("account-key"));
    let phone = device("phone");
    let desktop = device("desktop");
    let v1 = phone_first_list(&ak, &account, &phone);
    let provisioning_id: [u8; 16] = secret("provisioning-id")[..16].try_into().unwrap();
    let e_secret = secret("provisioning.new-device-ephemeral");
    let p_secret = secret("provisioning.key-holder-ephemeral");
    let request = link_request_with_secret(e_secret, provisioning_id, desktop.identity);
    let text = request.invitation_text();
    let body = ak
        .link_device(
            &v1,
            desktop.identity,
            DeviceRole::Linked,
            DeviceName::new("Desktop").unwrap(),
            1_765_000_060_000,
        )
        .unwrap();
    let body_bytes = body.encode().unwrap();
    let envelope = seal_provisioning_with_secret(p_secret, request.invitation(), &body).unwrap();

    // The model: X25519, HKDF and the AEAD exactly as section 6.3 writes them.
    let e_public = X25519Secret::from_bytes(e_secret).public_key().to_bytes();
    let p = X25519Secret::from_bytes(p_secret);
    let p_public = p.public_key().to_bytes();
    let dh = p
        .diffie_hellman(&X25519Public::from_bytes(e_public))
        .unwrap();
    let info = [SPEC_PROVISION_INFO, &provisioning_id, &e_public, &p_public].concat();
    let key = kdf::hkdf_sha256_array::<32>(&[0; 32], dh.as_bytes(), &info).unwrap();
    let sealed = aead::seal(&key, &[0; 12], &info, &body_bytes);
    assert_eq!(envelope, [&[0x01, 0x12][..], &p_public, &sealed].concat());
    let invitation = [
        &[0x01, 0x11][..],
        &provisioning_id,
        &e_public,
        &desktop.identity.signing,
        &desktop.identity.dh,
    ]
    .concat();
    assert_eq!(text, format!("sealpost-link:{}", base64_url(&invitation)));
    // The body's list carries a zero binding for the new device and a valid signature.
    let list_bytes = &body_bytes[10..];
    let ak_key = VerifyingKey::from_bytes(&ak.public().to_bytes()).unwrap();
    let signed_len = list_bytes.len() - 64 - 2 * 64;
    ak_key
        .verify(
            &[SPEC_LIST_LABEL, &list_bytes[..signed_len]].concat(),
            &Signature::from_slice(&list_bytes[signed_len..signed_len + 64]).unwrap(),
        )
        .unwrap();
    assert_eq!(&list_bytes[list_bytes.len() - 64..], &[0; 64]);

    // The new device opens it and completes the list.
    let provisioned = request.open(&envelope).unwrap();
    let completed = provisioned.complete(|m| desktop.signing.sign(m)).unwrap();
    assert_eq!(completed.list_version(), 2);

    let hex = |b: &[u8]| hex::encode(b);
    let computed = json!({
        "description": "Linking a desktop to the account of device_list.json (spec/devices.md section 6). Secrets are SHA-256(\"sealpost-vector-\" || label); the provisioning id is the first 16 bytes of SHA-256(\"sealpost-vector-provisioning-id\").",
        "account": ACCOUNT,
        "provisioning_id": hex(&provisioning_id),
        "new_device_ephemeral_secret": hex(&e_secret),
        "new_device_ephemeral_public": hex(&e_public),
        "key_holder_ephemeral_secret": hex(&p_secret),
        "key_holder_ephemeral_public": hex(&p_public),
        "new_device_identity": hex(&[desktop.identity.signing, desktop.identity.dh].concat()),
        "invitation": hex(&invitation),
        "invitation_text": text,
        "kdf_info": hex(&info),
        "provisioning_key": hex(key.as_slice()),
        "body": hex(&body_bytes),
        "envelope": hex(&envelope),
        "completed_list": hex(completed.as_bytes()),
    });
    write_or_check("provisioning.json", &computed);
    let _ = ProvisioningBody::decode(&body_bytes).unwrap();
}

/// A history part (spec/devices.md 6.4) holding a contact without a list, a contact with the
/// vectors' list, an incoming and an outgoing message; and an empty last part. The model
/// writes the bytes field by field from the spec's tables.
#[test]
fn history_bundle_vectors() {
    let account = AccountId::new(ACCOUNT).unwrap();
    let ak = AccountKeyPair::from_seed(&secret("account-key"));
    let phone = device("phone");
    let list = phone_first_list(&ak, &account, &phone);
    let list_bytes = list.as_bytes().to_vec();
    let friend = device("friend");
    let friend_account = AccountId::new("+15551230002").unwrap();
    let bundle_id: [u8; 16] = secret("history.bundle-id")[..16].try_into().unwrap();
    // Message contents as spec/client-store.md section 6 writes them: version, kind (text),
    // message id, body.
    let content = |label: &str, text: &str| {
        let mut c = vec![0x01, 0x01];
        c.extend_from_slice(&secret(label)[..16]);
        c.extend_from_slice(text.as_bytes());
        c
    };
    let incoming = content("history.message-1", "Is order #1234 on its way?");
    let outgoing = content("history.message-2", "It ships today.");
    let records = vec![
        HistoryRecord::Contact(HistoryContact {
            account: friend_account.clone(),
            devices: ContactDevices::Devices(vec![HistoryDevice {
                device_id: DeviceId(3),
                identity: friend.identity,
                verification: HistoryVerification::Verified,
            }]),
        }),
        HistoryRecord::Contact(HistoryContact {
            account: account.clone(),
            devices: ContactDevices::List {
                verification: HistoryVerification::ChangedSinceVerified,
                list: sealpost_wire::devices::SignedDeviceList::decode(&list_bytes).unwrap(),
            },
        }),
        HistoryRecord::Message(HistoryMessage {
            direction: HistoryDirection::Incoming,
            peer: DeviceAddress::new(friend_account.clone(), DeviceId(3)),
            timestamp: 1_765_000_100_000,
            status: HistoryStatus::Received,
            status_at: 0,
            content: incoming.clone(),
        }),
        HistoryRecord::Message(HistoryMessage {
            direction: HistoryDirection::Outgoing,
            peer: DeviceAddress::new(friend_account.clone(), DeviceId(0)),
            timestamp: 1_765_000_200_000,
            status: HistoryStatus::Delivered,
            status_at: 1_765_000_200_123,
            content: outgoing.clone(),
        }),
    ];
    let part = HistoryPart {
        bundle_id,
        index: 0,
        last: false,
        records,
    };
    let encoded = part.encode().unwrap();
    let empty_last = HistoryPart {
        bundle_id,
        index: 1,
        last: true,
        records: Vec::new(),
    };
    let empty_encoded = empty_last.encode().unwrap();

    // The model.
    let var8 = |m: &mut Vec<u8>, b: &[u8]| {
        m.push(u8::try_from(b.len()).unwrap());
        m.extend_from_slice(b);
    };
    let var32 = |m: &mut Vec<u8>, b: &[u8]| {
        m.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
        m.extend_from_slice(b);
    };
    let header = |index: u16, last: bool, count: u16| {
        let mut m = vec![0x01, 0x14];
        m.extend_from_slice(&bundle_id);
        m.extend_from_slice(&index.to_be_bytes());
        m.push(u8::from(last));
        m.extend_from_slice(&count.to_be_bytes());
        m
    };
    let mut model = header(0, false, 4);
    model.push(0x01);
    var8(&mut model, friend_account.as_str().as_bytes());
    model.extend_from_slice(&[0x00, 1]);
    model.extend_from_slice(&3u32.to_be_bytes());
    model.extend_from_slice(&friend.identity.signing);
    model.extend_from_slice(&friend.identity.dh);
    model.push(0x01);
    model.push(0x01);
    var8(&mut model, ACCOUNT.as_bytes());
    model.extend_from_slice(&[0x01, 0x02]);
    var32(&mut model, &list_bytes);
    for (direction, device, timestamp, status, status_at, content) in [
        (0x00, 3u32, 1_765_000_100_000u64, 0x00, 0u64, &incoming),
        (
            0x01,
            0,
            1_765_000_200_000,
            0x02,
            1_765_000_200_123,
            &outgoing,
        ),
    ] {
        model.extend_from_slice(&[0x02, direction]);
        var8(&mut model, friend_account.as_str().as_bytes());
        model.extend_from_slice(&device.to_be_bytes());
        model.extend_from_slice(&timestamp.to_be_bytes());
        model.push(status);
        model.extend_from_slice(&status_at.to_be_bytes());
        var32(&mut model, content);
    }
    assert_eq!(encoded, model);
    assert_eq!(empty_encoded, header(1, true, 0));
    assert_eq!(HistoryPart::decode(&encoded).unwrap(), part);
    assert_eq!(HistoryPart::decode(&empty_encoded).unwrap(), empty_last);

    let hex = |b: &[u8]| hex::encode(b);
    let computed = json!({
        "description": "spec/devices.md section 6.4: a history part with a contact without a \
            list (verified), a contact with a list (changed since verified), an incoming and an \
            outgoing message (contents as spec/client-store.md section 6), then an empty last \
            part. Secrets are SHA-256(\"sealpost-vector-\" || label).",
        "bundle_id": hex(&bundle_id),
        "contact_without_list": {
            "account": friend_account.as_str(),
            "device_id": 3,
            "identity": hex(&friend.identity.to_bytes()),
            "verification": 1,
        },
        "contact_with_list": {
            "account": ACCOUNT,
            "verification": 2,
            "list": hex(&list_bytes),
        },
        "incoming": {
            "peer_device": 3,
            "timestamp": 1_765_000_100_000u64,
            "status": 0,
            "status_at": 0,
            "content": hex(&incoming),
        },
        "outgoing": {
            "peer_device": 0,
            "timestamp": 1_765_000_200_000u64,
            "status": 2,
            "status_at": 1_765_000_200_123u64,
            "content": hex(&outgoing),
        },
        "part_0": hex(&encoded),
        "part_1_empty_last": hex(&empty_encoded),
    });
    write_or_check("history_bundle.json", &computed);
}

/// base64url without padding, written out from RFC 4648 section 5 (the model does not use
/// the crate the library uses).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// spec/devices.md 2.1 and 8.6: the account-key backup under a PIN vault's backup key, and
/// the list a new key holder signs with the key it opened (the old primary leaves, the
/// linked desktop stays, the new phone joins with the next id).
#[test]
fn account_key_backup_vectors() {
    let account = AccountId::new(ACCOUNT).unwrap();
    let ak = AccountKeyPair::from_seed(&secret("account-key"));
    let backup_key = secret("account-key-backup.backup-key");
    let nonce: [u8; 12] = secret("account-key-backup.nonce")[..12].try_into().unwrap();
    let backup = seal_account_key_backup_with_nonce(nonce, &ak, &account, &backup_key).unwrap();
    let bytes = backup.encode();

    // The model: HKDF and the AEAD exactly as section 2.1 writes them.
    let key = kdf::hkdf_sha256_array::<32>(&[], &backup_key, SPEC_BACKUP_INFO).unwrap();
    let mut account_enc = vec![u8::try_from(ACCOUNT.len()).unwrap()];
    account_enc.extend_from_slice(ACCOUNT.as_bytes());
    let header = [&[0x01, 0x15][..], &ak.public().to_bytes(), &nonce].concat();
    let ad = [SPEC_BACKUP_INFO, &account_enc, &header].concat();
    let sealed = aead::seal(&key, &nonce, &ad, &*ak.to_seed());
    assert_eq!(bytes, [&header[..], &sealed].concat());
    assert_eq!(bytes.len(), 94);
    let opened = sealpost_devices::open_account_key_backup(&backup, &account, &backup_key).unwrap();
    assert_eq!(opened.public(), ak.public());
    assert_eq!(
        sealpost_devices::open_account_key_backup(&backup, &account, &secret("other")).err(),
        Some(sealpost_devices::BackupError::Decrypt)
    );

    // The recovery list: v2 (phone 1, desktop 2) becomes v3 (desktop 2, new phone 3).
    let phone = device("phone");
    let desktop = device("desktop");
    let new_phone = device("new-phone");
    let v1 = phone_first_list(&ak, &account, &phone);
    let body = ak
        .link_device(
            &v1,
            desktop.identity,
            DeviceRole::Linked,
            DeviceName::new("Desktop").unwrap(),
            1_765_000_060_000,
        )
        .unwrap();
    let mut v2 = body.list.clone();
    let d = &v2.body.entries[1];
    let message = sealpost_devices::binding_message(&account, &ak.public(), &d.identity);
    v2.bindings[1] = desktop.signing.sign(&message).to_bytes();
    let v2 = VerifiedDeviceList::verify(&v2.encode().unwrap(), &account).unwrap();
    let v3 = ak
        .replace_key_holder(
            &v2,
            3,
            new_phone.identity,
            DeviceName::new("New phone").unwrap(),
            1_765_000_120_000,
            |m| new_phone.signing.sign(m),
        )
        .unwrap();
    assert_eq!(v3.list_version(), 3);
    assert_eq!(v3.next_device_id(), 4);
    let ids: Vec<(u32, DeviceRole)> = v3.entries().iter().map(|e| (e.device_id, e.role)).collect();
    assert_eq!(ids, vec![(2, DeviceRole::Linked), (3, DeviceRole::Primary)]);
    // A contact that pinned v2 accepts v3: same account key, so the same safety number.
    let mut pin = DeviceListPin::new(v2.clone());
    assert!(matches!(pin.accept(&v3).unwrap(), Update::Advanced(_)));
    // An id below v2's next_device_id is refused (ids are never reused).
    assert!(
        ak.replace_key_holder(
            &v2,
            2,
            new_phone.identity,
            DeviceName::new("New phone").unwrap(),
            0,
            |m| new_phone.signing.sign(m)
        )
        .is_err()
    );

    let computed = json!({
        "account": ACCOUNT,
        "account_key_seed": hex::encode(secret("account-key")),
        "account_key": hex::encode(ak.public().to_bytes()),
        "backup_key": hex::encode(backup_key),
        "nonce": hex::encode(nonce),
        "backup": hex::encode(&bytes),
        "recovery": {
            "list_before": hex::encode(v2.as_bytes()),
            "new_key_holder_identity_ed25519_seed": hex::encode(secret("new-phone.identity-ed25519")),
            "new_key_holder_identity_x25519_secret": hex::encode(secret("new-phone.identity-x25519")),
            "new_device_id": 3,
            "new_device_name": "New phone",
            "issued_at": 1_765_000_120_000u64,
            "list_after": hex::encode(v3.as_bytes()),
        },
    });
    write_or_check("account_key_backup.json", &computed);
}
