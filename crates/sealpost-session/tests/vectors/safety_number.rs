//! Safety numbers (spec/vectors/safety_number.json; session.md section 10).

use super::*;

// ---------------------------------------------------------------------------------------
// Safety numbers.
// ---------------------------------------------------------------------------------------

fn ref_fingerprint_half(identity: &[u8; 64], account: &str) -> [u8; 32] {
    ref_half(0, identity, account)
}

/// The fingerprint half of spec/session.md 10.1 with any version and key (version 1: an
/// account key, 10.6).
fn ref_half(version: u16, identity: &[u8], account: &str) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update(version.to_be_bytes());
    h.update(identity);
    h.update([u8::try_from(account.len()).unwrap()]);
    h.update(account.as_bytes());
    let mut digest = h.finalize();
    for _ in 0..5200 {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(identity);
        digest = h.finalize();
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest[..32]);
    out
}

fn ref_digits(half: &[u8; 32]) -> String {
    (0..6)
        .map(|i| {
            let v = half[i * 5..i * 5 + 5]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect()
}

#[test]
fn safety_number_vectors() {
    let (a_seed, a_dh, a_acct, b_seed, b_dh, b_acct) = if write_mode() {
        (
            seed32("alice/identity-signing"),
            seed32("alice/identity-dh"),
            "+15551230001".to_string(),
            seed32("bob/identity-signing"),
            seed32("bob/identity-dh"),
            "+15551230002".to_string(),
        )
    } else {
        let f = load("safety_number.json");
        (
            arr(&f, "alice.identity_signing_seed"),
            arr(&f, "alice.identity_dh_secret"),
            str_at(&f, "alice.account").to_string(),
            arr(&f, "bob.identity_signing_seed"),
            arr(&f, "bob.identity_dh_secret"),
            str_at(&f, "bob.account").to_string(),
        )
    };
    let a_id = identity_bytes(&a_seed, &a_dh);
    let b_id = identity_bytes(&b_seed, &b_dh);
    let a_half = ref_fingerprint_half(&a_id, &a_acct);
    let b_half = ref_fingerprint_half(&b_id, &b_acct);
    let (a_digits, b_digits) = (ref_digits(&a_half), ref_digits(&b_half));
    let number = if a_digits <= b_digits {
        format!("{a_digits}{b_digits}")
    } else {
        format!("{b_digits}{a_digits}")
    };
    let groups: Vec<String> = (0..12)
        .map(|i| number[i * 5..i * 5 + 5].to_string())
        .collect();
    let qr = |local: &[u8; 32], remote: &[u8; 32]| {
        let mut q = vec![0x01];
        q.extend_from_slice(local);
        q.extend_from_slice(remote);
        q
    };
    let a_qr = qr(&a_half, &b_half);
    let b_qr = qr(&b_half, &a_half);

    // The API.
    let alice = IdentityKeyPair::from_secret_bytes(&a_seed, a_dh).public();
    let bob = IdentityKeyPair::from_secret_bytes(&b_seed, b_dh).public();
    assert_eq!(alice.to_bytes(), a_id);
    assert_eq!(bob.to_bytes(), b_id);
    let a_account = AccountId::new(a_acct.clone()).unwrap();
    let b_account = AccountId::new(b_acct.clone()).unwrap();
    assert_eq!(fingerprint::fingerprint_half(&alice, &a_account), a_half);
    assert_eq!(fingerprint::fingerprint_half(&bob, &b_account), b_half);
    assert_eq!(fingerprint::digits(&a_half), a_digits);
    assert_eq!(fingerprint::digits(&b_half), b_digits);
    let at_alice = SafetyNumber::new(&alice, &a_account, &bob, &b_account);
    let at_bob = SafetyNumber::new(&bob, &b_account, &alice, &a_account);
    assert_eq!(at_alice.digits(), number);
    assert_eq!(at_bob.digits(), number);
    assert_eq!(at_alice.display_groups(), groups);
    assert_eq!(at_alice.qr_payload().to_vec(), a_qr);
    assert_eq!(at_bob.qr_payload().to_vec(), b_qr);
    at_alice.verify_scanned(&b_qr).unwrap();
    at_bob.verify_scanned(&a_qr).unwrap();
    assert!(
        at_alice.verify_scanned(&a_qr).is_err(),
        "own payload accepted"
    );
    let other = SafetyNumber::new(
        &alice,
        &a_account,
        &bob,
        &AccountId::new("+15551230003").unwrap(),
    );
    assert_ne!(
        other.digits(),
        number,
        "the account id must change the number"
    );

    // Version 1: over account keys (spec/session.md 10.6, spec/devices.md 8.4).
    let (a_ak_seed, b_ak_seed) = if write_mode() {
        (seed32("alice/account-key"), seed32("bob/account-key"))
    } else {
        let f = load("safety_number.json");
        (
            arr(&f, "account_keys.alice.account_key_seed"),
            arr(&f, "account_keys.bob.account_key_seed"),
        )
    };
    let a_ak = SigningKey::from_seed(&a_ak_seed).verifying_key().to_bytes();
    let b_ak = SigningKey::from_seed(&b_ak_seed).verifying_key().to_bytes();
    let a_ak_half = ref_half(1, &a_ak, &a_acct);
    let b_ak_half = ref_half(1, &b_ak, &b_acct);
    let (a_ak_digits, b_ak_digits) = (ref_digits(&a_ak_half), ref_digits(&b_ak_half));
    let ak_number = if a_ak_digits <= b_ak_digits {
        format!("{a_ak_digits}{b_ak_digits}")
    } else {
        format!("{b_ak_digits}{a_ak_digits}")
    };
    assert_eq!(
        fingerprint::account_key_fingerprint_half(&a_ak, &a_account),
        a_ak_half
    );
    let ak_at_alice = SafetyNumber::for_account_keys(&a_ak, &a_account, &b_ak, &b_account);
    let ak_at_bob = SafetyNumber::for_account_keys(&b_ak, &b_account, &a_ak, &a_account);
    assert_eq!(ak_at_alice.digits(), ak_number);
    assert_eq!(ak_at_bob.digits(), ak_number);
    assert_ne!(
        ak_number, number,
        "the versions must give different numbers"
    );
    ak_at_alice.verify_scanned(&ak_at_bob.qr_payload()).unwrap();
    let ak_party = |seed: &[u8; 32], ak: &[u8; 32], acct: &str, half: &[u8; 32], digits: &str| {
        json!({
            "account": acct,
            "account_key_seed": hx(seed),
            "account_key": hx(ak),
            "fingerprint_half": hx(half),
            "digits": digits,
        })
    };

    let party = |seed: &[u8; 32], dh: &[u8; 32], acct: &str, half: &[u8; 32], digits: &str| {
        let mut v = identity_json(seed, dh);
        v["account"] = json!(acct);
        v["fingerprint_half"] = hx(half);
        v["digits"] = json!(digits);
        v
    };
    let file = json!({
        "description": "Safety numbers. Per side: H_0 = SHA-512(version u16 BE = 0 || identity(64) \
            || len(account) u8 || account UTF-8), H_i = SHA-512(H_(i-1) || identity) for i = \
            1..5200, half = first 32 bytes of H_5200; its 30 digits are six 5-byte big-endian \
            chunks, each mod 100000, zero-padded to 5 digits. The 60-digit number is the two \
            30-digit halves with the numerically smaller first (the same on both sides). The QR \
            payload a device shows is 0x01 || own half || peer half. Bytes are hex.",
        "iterations": 5200,
        "version": 0,
        "alice": party(&a_seed, &a_dh, &a_acct, &a_half, &a_digits),
        "bob": party(&b_seed, &b_dh, &b_acct, &b_half, &b_digits),
        "safety_number": number,
        "display_groups": groups,
        "qr_payload_alice": hx(&a_qr),
        "qr_payload_bob": hx(&b_qr),
        "account_keys": {
            "description": "Fingerprint version 1 (spec/session.md 10.6): the same derivation \
                with version u16 BE = 1 and the 32-byte Ed25519 account key in place of the \
                identity, for accounts with signed device lists.",
            "version": 1,
            "alice": ak_party(&a_ak_seed, &a_ak, &a_acct, &a_ak_half, &a_ak_digits),
            "bob": ak_party(&b_ak_seed, &b_ak, &b_acct, &b_ak_half, &b_ak_digits),
            "safety_number": ak_number,
            "qr_payload_alice": hx(&ak_at_alice.qr_payload()),
        },
    });
    write_or_check("safety_number.json", &file);
}

/// The worked examples in spec/session.md sections 3.1, 6.3 and 6.4, recomputed with the
/// reference model's functions.
#[test]
fn spec_examples_hold() {
    let mut ikm = vec![0xFF; 32];
    for b in 1u8..=5 {
        ikm.extend_from_slice(&[b; 32]);
    }
    let sk = |ikm: &[u8], ek: &[u8; 32]| {
        let mut info = SPEC_HANDSHAKE_INFO.to_vec();
        info.extend_from_slice(ek);
        let mut out = [0u8; 32];
        kdf::hkdf_sha256(&[0u8; 32], ikm, &info, &mut out).unwrap();
        hex::encode(out)
    };
    assert_eq!(
        sk(&ikm, &[6; 32]),
        "1b72a74fd3b19d6adc0c53e6721bd7e7670b5627d4cd4dab30fa30dc6dcefe6a"
    );
    let mut high = [6u8; 32];
    high[31] = 0x86;
    assert_eq!(
        sk(&ikm, &high),
        "c686820ebf0a82a0991055c64c97ee5760f79fe7cb71280fdecade1cd9a94884"
    );
    let mut no_dh4 = ikm[..128].to_vec();
    no_dh4.extend_from_slice(&[5; 32]);
    assert_eq!(
        sk(&no_dh4, &[6; 32]),
        "143f18df38d4eb34b33cab0fc784b082f71a770a928e289006830a8da669bb05"
    );
    let ck: [u8; 32] = core::array::from_fn(|i| i as u8);
    let (mk, next, nk) = kdf_ck(&ck);
    assert_eq!(
        hex::encode(mk),
        "9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7"
    );
    assert_eq!(
        hex::encode(next),
        "4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d"
    );
    assert_eq!(
        hex::encode(nk),
        "2a24d008789d3c74daf5e02636c675df8f09ec5e740c1bdf6305f9261f7b1c32"
    );
    let mut ad = hex::decode(
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
         ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59\
         ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1\
         ac01b2209e86354fb853237b5de0f4fab13c7fcbf433a61c019369617fecf10b",
    )
    .unwrap();
    ad.extend_from_slice(&encode_address("+15551230001", 1));
    ad.extend_from_slice(&encode_address("+15551230002", 1));
    assert_eq!(ad.len(), 162);
    let fields = header_fields(&ck, 0, 0);
    let nonce = siv(&nk, &fields, b"hi");
    assert_eq!(hex::encode(nonce), "d0ca873cd24ed2b04a17ac96");
    let header = encode_header(&fields, &nonce);
    ad.extend_from_slice(&header);
    let ct = aead::seal(&mk, &nonce, &ad, b"hi");
    let mut msg = header.to_vec();
    msg.extend_from_slice(&ct);
    assert_eq!(
        hex::encode(msg),
        "0201000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0000000000000000\
         d0ca873cd24ed2b04a17ac96\
         95e3ce128d5437a503450c065e25d226a67e"
    );
}
