//! Checks spec/vectors/pin_oprf.json: normalisation, Argon2id (testing() parameters), the
//! OPRF with fixed blind/nonce-free outputs, and a fixed 2-of-3 sharing.
//! `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-pin --test vectors` regenerates the file.
// Tests may panic on malformed vectors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sealpost_pin::{
    normalize::normalize,
    oprf::{
        Blind, BlindedElement, EvaluatedElement, OprfKey, Proof, blind_with, finalize, verify_proof,
    },
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
            let b = Blind::from_bytes(&blind_bytes).unwrap();
            let blinded = blind_with(stretched.as_bytes(), &b).unwrap();
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
        let blinded = blind_with(input, &Blind::from_bytes(&h(&v.blind_hex)).unwrap()).unwrap();
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
            let b = Blind::from_bytes(&h(&v.blind_hex)).unwrap();
            let sub = [responses[pair[0]], responses[pair[1]]];
            let c = set.combine(&blinded, &sub).unwrap();
            let out = finalize(input, b, &c.evaluated).unwrap();
            assert_eq!(hex::encode(out.as_bytes()), v.output_hex);
        }
        let direct = sealpost_pin::oprf::evaluate_unblinded(&key, input).unwrap();
        assert_eq!(hex::encode(direct.as_bytes()), v.output_hex);
    }
}
