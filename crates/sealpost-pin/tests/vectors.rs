//! Checks spec/vectors/pin_oprf.json (normalisation, Argon2id with testing() parameters, the
//! OPRF with fixed blinds, a fixed 2-of-3 sharing) and spec/vectors/pin_vault.json (master
//! secret derivations, enrolment, vault record, recovery, local reminder verifier), each
//! value re-derived from the inputs with the primitives.
//! `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-pin --test vectors` regenerates both
//! (add a test-name filter, e.g. `pin_vault`, to regenerate one). pin_vault.json is generated
//! from a seeded RNG, so regenerating it gives the same bytes.
// Tests may panic on malformed vectors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sealpost_pin::{
    normalize::normalize,
    oprf::{BlindedElement, EvaluatedElement, OprfKey, Proof, finalize, verify_proof},
    stretch::{Argon2Params, UserSalt, stretch},
    threshold::{GuardianResponse, GuardianSet, KeyShare, ShareCommitment},
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vector {
    pin: String,
    normalized_hex: String,
    account_id_hex: String,
    user_salt_hex: String,
    argon2_memory_kib: u32,
    argon2_iterations: u32,
    argon2_lanes: u32,
    stretched_hex: String,
    oprf_key_hex: String,
    blind_hex: String,
    blinded_element_hex: String,
    /// Shares of oprf_key, 2-of-3, `index || scalar`.
    threshold: usize,
    shares_hex: Vec<String>,
    /// Per-guardian evaluated elements and (randomised, any valid one verifies) proofs.
    evaluated_hex: Vec<String>,
    proofs_hex: Vec<String>,
    output_hex: String,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../spec/vectors/pin_oprf.json"
);

/// A canonical scalar: 31 copies of `b`, top byte zero (below the group order).
fn scalar_bytes(b: u8) -> [u8; 32] {
    let mut out = [b; 32];
    out[31] = 0;
    out
}

fn generate() -> Vec<Vector> {
    let mut rng = rand::rng();
    let cases = [
        ("123456", "alice", [0x11u8; 16]),
        (
            " \u{661}\u{662}\u{663}\u{664}\u{665}\u{666} ",
            "alice",
            [0x11u8; 16],
        ),
        (
            "\u{FF11}\u{FF12}\u{FF13}\u{FF14}\u{FF15}\u{FF16}",
            "bob",
            [0x22u8; 16],
        ),
        ("correct horse 42", "carol", [0x33u8; 16]),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(n, (pin, acct, salt))| {
            let norm = normalize(pin).unwrap();
            let params = Argon2Params::testing();
            let stretched = stretch(
                &norm,
                acct.as_bytes(),
                &UserSalt::from_bytes(*salt),
                &params,
            )
            .unwrap();
            let key = OprfKey::from_bytes(&scalar_bytes(n as u8 + 1)).unwrap();
            let blind_bytes = scalar_bytes(n as u8 + 0x40);
            let b = sealpost_pin::hazmat::blind_from_bytes(&blind_bytes).unwrap();
            let blinded = sealpost_pin::hazmat::blind_with(stretched.as_bytes(), &b).unwrap();
            let (shares, set) = sealpost_pin::threshold::split(&key, 2, 3, &mut rng).unwrap();
            let evals: Vec<_> = shares
                .iter()
                .map(|s| s.key().evaluate(&blinded, &mut rng))
                .collect();
            let responses: Vec<_> = shares
                .iter()
                .zip(&evals)
                .map(|(s, (e, p))| GuardianResponse {
                    index: s.index(),
                    evaluated: *e,
                    proof: *p,
                })
                .collect();
            let combined = set.combine(&blinded, &responses[..2]).unwrap();
            let out = finalize(stretched.as_bytes(), b, &combined.evaluated).unwrap();
            Vector {
                pin: pin.to_string(),
                normalized_hex: hex::encode(norm.as_bytes()),
                account_id_hex: hex::encode(acct.as_bytes()),
                user_salt_hex: hex::encode(salt),
                argon2_memory_kib: params.memory_kib,
                argon2_iterations: params.iterations,
                argon2_lanes: params.lanes,
                stretched_hex: hex::encode(stretched.as_bytes()),
                oprf_key_hex: hex::encode(key.to_bytes().as_slice()),
                blind_hex: hex::encode(blind_bytes),
                blinded_element_hex: hex::encode(blinded.to_bytes()),
                threshold: 2,
                shares_hex: shares
                    .iter()
                    .map(|s| hex::encode(s.to_bytes().as_slice()))
                    .collect(),
                evaluated_hex: evals
                    .iter()
                    .map(|(e, _)| hex::encode(e.to_bytes()))
                    .collect(),
                proofs_hex: evals
                    .iter()
                    .map(|(_, p)| hex::encode(p.to_bytes()))
                    .collect(),
                output_hex: hex::encode(out.as_bytes()),
            }
        })
        .collect()
}

#[test]
fn pin_oprf_vectors() {
    if std::env::var_os("SEALPOST_WRITE_VECTORS").is_some() {
        let json = serde_json::to_string_pretty(&generate()).unwrap();
        std::fs::write(PATH, json + "\n").unwrap();
    }
    let vectors: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert!(!vectors.is_empty());
    for v in &vectors {
        let norm = normalize(&v.pin).unwrap();
        assert_eq!(hex::encode(norm.as_bytes()), v.normalized_hex);
        let params = Argon2Params {
            memory_kib: v.argon2_memory_kib,
            iterations: v.argon2_iterations,
            lanes: v.argon2_lanes,
        };
        let salt = UserSalt::from_bytes(h(&v.user_salt_hex).try_into().unwrap());
        let stretched = stretch(&norm, &h(&v.account_id_hex), &salt, &params).unwrap();
        assert_eq!(hex::encode(stretched.as_bytes()), v.stretched_hex);
        let input = stretched.as_bytes();
        let blinded = sealpost_pin::hazmat::blind_with(
            input,
            &sealpost_pin::hazmat::blind_from_bytes(&h(&v.blind_hex)).unwrap(),
        )
        .unwrap();
        assert_eq!(hex::encode(blinded.to_bytes()), v.blinded_element_hex);
        assert_eq!(
            BlindedElement::from_slice(&h(&v.blinded_element_hex)).unwrap(),
            blinded
        );
        let key = OprfKey::from_bytes(&h(&v.oprf_key_hex)).unwrap();
        let shares: Vec<KeyShare> = v
            .shares_hex
            .iter()
            .map(|s| KeyShare::from_bytes(&h(s)).unwrap())
            .collect();
        let set = GuardianSet::new(
            v.threshold,
            shares
                .iter()
                .map(KeyShare::commitment)
                .collect::<Vec<ShareCommitment>>(),
        )
        .unwrap();
        assert_eq!(set.public_key(), &key.public_key());
        let responses: Vec<GuardianResponse> = shares
            .iter()
            .zip(v.evaluated_hex.iter().zip(&v.proofs_hex))
            .map(|(s, (e, p))| {
                let evaluated = EvaluatedElement::from_slice(&h(e)).unwrap();
                let proof = Proof::from_slice(&h(p)).unwrap();
                verify_proof(&s.key().public_key(), &blinded, &evaluated, &proof).unwrap();
                GuardianResponse {
                    index: s.index(),
                    evaluated,
                    proof,
                }
            })
            .collect();
        // Every 2-subset gives the recorded output, which equals the unshared evaluation.
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let b = sealpost_pin::hazmat::blind_from_bytes(&h(&v.blind_hex)).unwrap();
            let sub = [responses[pair[0]], responses[pair[1]]];
            let c = set.combine(&blinded, &sub).unwrap();
            let out = finalize(input, b, &c.evaluated).unwrap();
            assert_eq!(hex::encode(out.as_bytes()), v.output_hex);
        }
        let direct = sealpost_pin::oprf::evaluate_unblinded(&key, input).unwrap();
        assert_eq!(hex::encode(direct.as_bytes()), v.output_hex);
    }
}

// ---------------------------------------------------------------------------------------
// spec/vectors/pin_vault.json (spec/pin.md sections 6 and 11)
// ---------------------------------------------------------------------------------------

mod vault_vectors {
    use super::h;
    use rand::{SeedableRng, rngs::StdRng};
    use sealpost_crypto::{aead, kdf::hkdf_sha256_array};
    use sealpost_pin::{
        hazmat::enroll_with_secrets,
        normalize::normalize,
        oprf::{
            BlindedElement, EvaluatedElement, OprfKey, OprfPublicKey, Proof, evaluate_unblinded,
            finalize, verify_proof,
        },
        reminder::{LocalVerifier, ReminderState},
        stretch::{Argon2Params, UserSalt, stretch},
        threshold::{GuardianResponse, GuardianSet, KeyShare, split},
        vault::{MasterSecret, SuccessToken, VaultRecord},
    };
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    const PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/vectors/pin_vault.json"
    );

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct File {
        description: String,
        argon2_memory_kib: u32,
        argon2_iterations: u32,
        argon2_lanes: u32,
        vaults: Vec<VaultVector>,
        local_verifiers: Vec<LocalVector>,
        reminder_states: Vec<ReminderVector>,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct VaultVector {
        // Inputs.
        pin: String,
        account: String,
        master_secret_hex: String,
        user_salt_hex: String,
        vault_id_hex: String,
        oprf_key_hex: String,
        threshold: usize,
        /// `index || k_i`, indices 1..=n.
        shares_hex: Vec<String>,
        blind_hex: String,
        // Derived from the master secret (6.1).
        reglock_token_hex: String,
        reglock_verifier_hex: String,
        backup_key_hex: String,
        // Enrolment (6.2, 6.3).
        stretched_hex: String,
        /// `K_i` per guardian, and the group key `K = k·G`.
        commitments_hex: Vec<String>,
        group_public_key_hex: String,
        output_hex: String,
        wrap_key_hex: String,
        success_tokens_hex: Vec<String>,
        success_verifiers_hex: Vec<String>,
        ad_hex: String,
        sealed_hex: String,
        record_hex: String,
        // Recovery (6.4).
        blinded_element_hex: String,
        /// Per guardian `Z_i = k_i·B` and a (randomised: check by verification) proof.
        evaluated_hex: Vec<String>,
        proofs_hex: Vec<String>,
        /// `Σ λ_i·Z_i` over the first `threshold` guardians: `k·B`.
        combined_hex: String,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct LocalVector {
        pin: String,
        salt_hex: String,
        hash_hex: String,
        encoded_hex: String,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct ReminderVector {
        /// Events applied to `ReminderState::new(created_at)`: `(correct, now)`.
        created_at: u64,
        events: Vec<(bool, u64)>,
        encoded_hex: String,
    }

    fn params_of(f: &File) -> Argon2Params {
        Argon2Params {
            memory_kib: f.argon2_memory_kib,
            iterations: f.argon2_iterations,
            lanes: f.argon2_lanes,
        }
    }

    fn hkdf(ikm: &[u8], info: &[u8]) -> [u8; 32] {
        *hkdf_sha256_array::<32>(b"", ikm, info).unwrap()
    }

    fn sha256(label: &[u8], data: &[u8]) -> [u8; 32] {
        Sha256::new()
            .chain_update(label)
            .chain_update(data)
            .finalize()
            .into()
    }

    fn generate() -> File {
        let params = Argon2Params::testing();
        let mut rng = StdRng::seed_from_u64(0x7661_756c);
        let cases: [(&str, &str, usize, usize); 3] = [
            ("123456", "+15550001234", 2, 3),
            ("correct horse 42", "+445550009876", 1, 1),
            (
                "\u{661}\u{662}\u{663}\u{664}\u{665}\u{666}\u{667}",
                "+15550004321",
                3,
                5,
            ),
        ];
        let vaults = cases
            .iter()
            .map(|&(pin, account, t, n)| {
                let norm = normalize(pin).unwrap();
                let ms = MasterSecret::generate(&mut rng);
                let salt = UserSalt::generate(&mut rng);
                let vault_id = *sealpost_crypto::random_array::<16, _>(&mut rng);
                let key = OprfKey::generate(&mut rng);
                let (shares, _) = split(&key, t, n, &mut rng).unwrap();
                // A canonical scalar: 31 random bytes and a zero top byte.
                let mut blind_bytes = *sealpost_crypto::random_array::<32, _>(&mut rng);
                blind_bytes[31] = 0;
                let e = enroll_with_secrets(
                    &norm,
                    account,
                    &ms,
                    &params,
                    salt,
                    vault_id,
                    &key,
                    t,
                    shares.clone(),
                )
                .unwrap();
                let stretched = stretch(&norm, account.as_bytes(), &salt, &params).unwrap();
                let output = evaluate_unblinded(&key, stretched.as_bytes()).unwrap();
                let tokens: Vec<SuccessToken> = shares
                    .iter()
                    .map(|s| SuccessToken::derive(&output, s.index()))
                    .collect();
                let (rec, blinded) = sealpost_pin::hazmat::recovery_start_with_blind(
                    &norm,
                    account,
                    e.record.clone(),
                    sealpost_pin::hazmat::blind_from_bytes(&blind_bytes).unwrap(),
                )
                .unwrap();
                let evals: Vec<_> = shares
                    .iter()
                    .map(|s| s.key().evaluate(&blinded, &mut rng))
                    .collect();
                let responses: Vec<_> = shares
                    .iter()
                    .zip(&evals)
                    .map(|(s, (z, p))| GuardianResponse {
                        index: s.index(),
                        evaluated: *z,
                        proof: *p,
                    })
                    .collect();
                let combined = e
                    .record
                    .guardians()
                    .combine(&blinded, &responses[..t])
                    .unwrap();
                assert!(rec.finish(&responses).unwrap().master.ct_eq(&ms));
                let record = e.record.encode();
                VaultVector {
                    pin: pin.to_string(),
                    account: account.to_string(),
                    master_secret_hex: hex::encode(ms.as_bytes()),
                    user_salt_hex: hex::encode(salt.as_bytes()),
                    vault_id_hex: hex::encode(vault_id),
                    oprf_key_hex: hex::encode(key.to_bytes().as_slice()),
                    threshold: t,
                    shares_hex: shares
                        .iter()
                        .map(|s| hex::encode(s.to_bytes().as_slice()))
                        .collect(),
                    blind_hex: hex::encode(blind_bytes),
                    reglock_token_hex: hex::encode(ms.reglock_token().as_bytes()),
                    reglock_verifier_hex: hex::encode(ms.reglock_token().verifier()),
                    backup_key_hex: hex::encode(ms.backup_key().as_slice()),
                    stretched_hex: hex::encode(stretched.as_bytes()),
                    commitments_hex: shares
                        .iter()
                        .map(|s| hex::encode(s.key().public_key().to_bytes()))
                        .collect(),
                    group_public_key_hex: hex::encode(key.public_key().to_bytes()),
                    output_hex: hex::encode(output.as_bytes()),
                    wrap_key_hex: hex::encode(
                        sealpost_pin::vault::derive_wrap_key(&output).as_slice(),
                    ),
                    success_tokens_hex: tokens.iter().map(|t| hex::encode(t.as_bytes())).collect(),
                    success_verifiers_hex: e
                        .guardians
                        .iter()
                        .map(|g| hex::encode(g.success_verifier))
                        .collect(),
                    ad_hex: hex::encode(e.record.aad(account).unwrap()),
                    sealed_hex: hex::encode(e.record.sealed()),
                    record_hex: hex::encode(&record),
                    blinded_element_hex: hex::encode(blinded.to_bytes()),
                    evaluated_hex: evals
                        .iter()
                        .map(|(z, _)| hex::encode(z.to_bytes()))
                        .collect(),
                    proofs_hex: evals
                        .iter()
                        .map(|(_, p)| hex::encode(p.to_bytes()))
                        .collect(),
                    combined_hex: hex::encode(combined.evaluated.to_bytes()),
                }
            })
            .collect();
        let local_verifiers = [("123456", [0x5au8; 16]), ("correct horse 42", [0xa5u8; 16])]
            .iter()
            .map(|(pin, salt)| {
                let v = sealpost_pin::hazmat::local_verifier_with_salt(
                    &normalize(pin).unwrap(),
                    &params,
                    *salt,
                )
                .unwrap();
                let encoded = v.to_bytes();
                LocalVector {
                    pin: pin.to_string(),
                    salt_hex: hex::encode(salt),
                    hash_hex: hex::encode(&encoded[29..]),
                    encoded_hex: hex::encode(encoded.as_slice()),
                }
            })
            .collect();
        let t0 = 1_700_000_000u64;
        let reminder_states = [
            vec![],
            vec![(true, t0 + 86_400), (true, t0 + 2 * 86_400)],
            vec![
                (false, t0 + 10),
                (false, t0 + 20),
                (false, t0 + 30),
                (false, t0 + 70),
            ],
        ]
        .into_iter()
        .map(|events| {
            let mut s = ReminderState::new(t0);
            for &(ok, now) in &events {
                s.record_result(ok, now);
            }
            ReminderVector {
                created_at: t0,
                events,
                encoded_hex: hex::encode(s.encode()),
            }
        })
        .collect();
        File {
            description: "spec/pin.md sections 6 and 11 with testing() Argon2id parameters; \
                          checked by crates/sealpost-pin/tests/vectors.rs. Proofs are randomised: \
                          verify them, do not compare them."
                .to_string(),
            argon2_memory_kib: params.memory_kib,
            argon2_iterations: params.iterations,
            argon2_lanes: params.lanes,
            vaults,
            local_verifiers,
            reminder_states,
        }
    }

    fn check_vault(v: &VaultVector, params: &Argon2Params) {
        let norm = normalize(&v.pin).unwrap();
        let ms = MasterSecret::from_slice(&h(&v.master_secret_hex)).unwrap();
        // 6.1, with the primitives directly.
        let token = hkdf(ms.as_bytes(), b"Sealpost_RegLock_v1");
        assert_eq!(hex::encode(token), v.reglock_token_hex);
        assert_eq!(
            hex::encode(ms.reglock_token().as_bytes()),
            v.reglock_token_hex
        );
        let verifier = sha256(b"Sealpost_RegLock_Verifier_v1", &token);
        assert_eq!(hex::encode(verifier), v.reglock_verifier_hex);
        assert!(ms.reglock_token().matches(&verifier));
        assert_eq!(
            hex::encode(hkdf(ms.as_bytes(), b"Sealpost_Backup_v1")),
            v.backup_key_hex
        );
        assert_eq!(hex::encode(ms.backup_key().as_slice()), v.backup_key_hex);

        // 6.2: stretching, key and shares, output, derived keys.
        let salt = UserSalt::from_bytes(h(&v.user_salt_hex).try_into().unwrap());
        let stretched = stretch(&norm, v.account.as_bytes(), &salt, params).unwrap();
        assert_eq!(hex::encode(stretched.as_bytes()), v.stretched_hex);
        let key = OprfKey::from_bytes(&h(&v.oprf_key_hex)).unwrap();
        assert_eq!(
            hex::encode(key.public_key().to_bytes()),
            v.group_public_key_hex
        );
        let shares: Vec<KeyShare> = v
            .shares_hex
            .iter()
            .map(|s| KeyShare::from_bytes(&h(s)).unwrap())
            .collect();
        let set = GuardianSet::new(
            v.threshold,
            shares.iter().map(KeyShare::commitment).collect(),
        )
        .unwrap();
        assert_eq!(set.public_key(), &key.public_key());
        for (s, k) in shares.iter().zip(&v.commitments_hex) {
            assert_eq!(hex::encode(s.key().public_key().to_bytes()), *k);
        }
        let output = evaluate_unblinded(&key, stretched.as_bytes()).unwrap();
        assert_eq!(hex::encode(output.as_bytes()), v.output_hex);
        let wrap_key = hkdf(output.as_bytes(), b"Sealpost_PIN_Wrap_v1");
        assert_eq!(hex::encode(wrap_key), v.wrap_key_hex);
        for ((s, t), sv) in shares
            .iter()
            .zip(&v.success_tokens_hex)
            .zip(&v.success_verifiers_hex)
        {
            let mut info = b"Sealpost_PIN_Success_v1".to_vec();
            info.push(s.index());
            let token = hkdf(output.as_bytes(), &info);
            assert_eq!(hex::encode(token), *t);
            assert_eq!(
                hex::encode(sha256(b"Sealpost_PIN_SuccessVerifier_v1", &token)),
                *sv
            );
            assert!(sealpost_pin::vault::verify_success(
                &h(sv).try_into().unwrap(),
                &SuccessToken::from_bytes(token)
            ));
        }

        // 6.3: the record laid out by hand, the AD, the sealed secret.
        let record = h(&v.record_hex);
        let mut expect = vec![1u8];
        expect.extend(h(&v.vault_id_hex));
        for x in [params.memory_kib, params.iterations, params.lanes] {
            expect.extend(x.to_be_bytes());
        }
        expect.extend(salt.as_bytes());
        expect.push(v.threshold as u8);
        expect.push(shares.len() as u8);
        for (s, k) in shares.iter().zip(&v.commitments_hex) {
            expect.push(s.index());
            expect.extend(h(k));
        }
        let mut ad = b"Sealpost_PIN_Vault_v1".to_vec();
        ad.push(v.account.len() as u8);
        ad.extend(v.account.as_bytes());
        ad.extend(&expect);
        assert_eq!(hex::encode(&ad), v.ad_hex);
        let sealed = aead::seal(&wrap_key, &[0u8; 12], &ad, ms.as_bytes());
        assert_eq!(hex::encode(&sealed), v.sealed_hex);
        expect.extend(&sealed);
        assert_eq!(hex::encode(&expect), v.record_hex);
        let decoded = VaultRecord::decode(&record).unwrap();
        assert_eq!(decoded.encode(), record);
        assert_eq!(hex::encode(decoded.aad(&v.account).unwrap()), v.ad_hex);
        // The library's enrolment from the same inputs gives the same bytes.
        let e = enroll_with_secrets(
            &norm,
            &v.account,
            &ms,
            params,
            salt,
            h(&v.vault_id_hex).try_into().unwrap(),
            &key,
            v.threshold,
            shares.clone(),
        )
        .unwrap();
        assert_eq!(e.record.encode(), record);
        for (g, sv) in e.guardians.iter().zip(&v.success_verifiers_hex) {
            assert_eq!(hex::encode(g.success_verifier), *sv);
            sealpost_pin::vault::check_share(&decoded, &g.share).unwrap();
        }

        // 6.4: blind, evaluations (proofs verified), combination, finalize, open.
        let blind = || sealpost_pin::hazmat::blind_from_bytes(&h(&v.blind_hex)).unwrap();
        let (rec, blinded) = sealpost_pin::hazmat::recovery_start_with_blind(
            &norm,
            &v.account,
            decoded.clone(),
            blind(),
        )
        .unwrap();
        assert_eq!(hex::encode(blinded.to_bytes()), v.blinded_element_hex);
        assert_eq!(
            BlindedElement::from_slice(&h(&v.blinded_element_hex)).unwrap(),
            blinded
        );
        let responses: Vec<GuardianResponse> = shares
            .iter()
            .zip(v.evaluated_hex.iter().zip(&v.proofs_hex))
            .map(|(s, (z, p))| {
                let evaluated = EvaluatedElement::from_slice(&h(z)).unwrap();
                // Deterministic part: Z_i = k_i·B.
                assert_eq!(s.key().evaluate(&blinded, &mut rand::rng()).0, evaluated);
                let proof = Proof::from_slice(&h(p)).unwrap();
                let k_i = OprfPublicKey::from_slice(&s.key().public_key().to_bytes()).unwrap();
                verify_proof(&k_i, &blinded, &evaluated, &proof).unwrap();
                GuardianResponse {
                    index: s.index(),
                    evaluated,
                    proof,
                }
            })
            .collect();
        let combined = set.combine(&blinded, &responses[..v.threshold]).unwrap();
        assert_eq!(hex::encode(combined.evaluated.to_bytes()), v.combined_hex);
        assert_eq!(
            key.evaluate(&blinded, &mut rand::rng()).0,
            combined.evaluated
        );
        let out = finalize(stretched.as_bytes(), blind(), &combined.evaluated).unwrap();
        assert_eq!(hex::encode(out.as_bytes()), v.output_hex);
        let opened = aead::open(&wrap_key, &[0u8; 12], &ad, &h(&v.sealed_hex)).unwrap();
        assert_eq!(hex::encode(opened), v.master_secret_hex);
        // And through the library, from the last `threshold` guardians.
        let got = rec
            .finish(&responses[responses.len() - v.threshold..])
            .unwrap();
        assert!(got.master.ct_eq(&ms));
        for (i, t) in &got.success_tokens {
            assert_eq!(
                hex::encode(t.as_bytes()),
                v.success_tokens_hex[*i as usize - 1]
            );
        }
    }

    #[test]
    fn pin_vault_vectors() {
        if std::env::var_os("SEALPOST_WRITE_VECTORS").is_some() {
            let json = serde_json::to_string_pretty(&generate()).unwrap();
            std::fs::write(PATH, json + "\n").unwrap();
        }
        let f: File = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
        let params = params_of(&f);
        assert_eq!(params, Argon2Params::testing());
        assert!(!f.vaults.is_empty());
        for v in &f.vaults {
            check_vault(v, &params);
        }
        assert!(!f.local_verifiers.is_empty());
        for l in &f.local_verifiers {
            let norm = normalize(&l.pin).unwrap();
            let salt: [u8; 16] = h(&l.salt_hex).try_into().unwrap();
            // Raw Argon2id with the stored salt, no account binding.
            let mut hash = [0u8; 32];
            argon2::Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                argon2::Params::new(params.memory_kib, params.iterations, params.lanes, Some(32))
                    .unwrap(),
            )
            .hash_password_into(norm.as_bytes(), &salt, &mut hash)
            .unwrap();
            assert_eq!(hex::encode(hash), l.hash_hex);
            let mut encoded = vec![1u8];
            encoded.extend(salt);
            for x in [params.memory_kib, params.iterations, params.lanes] {
                encoded.extend(x.to_be_bytes());
            }
            encoded.extend(hash);
            assert_eq!(hex::encode(&encoded), l.encoded_hex);
            let v = LocalVerifier::from_bytes(&encoded).unwrap();
            assert_eq!(*v.to_bytes(), encoded);
            assert!(v.verify(&norm).unwrap());
            let fresh =
                sealpost_pin::hazmat::local_verifier_with_salt(&norm, &params, salt).unwrap();
            assert_eq!(*fresh.to_bytes(), encoded);
        }
        for r in &f.reminder_states {
            let mut s = ReminderState::new(r.created_at);
            for &(ok, now) in &r.events {
                s.record_result(ok, now);
            }
            assert_eq!(hex::encode(s.encode()), r.encoded_hex);
            assert_eq!(ReminderState::decode(&h(&r.encoded_hex)).unwrap(), s);
        }
    }
}
