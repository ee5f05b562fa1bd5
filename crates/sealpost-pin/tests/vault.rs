//! The PIN vault end to end (spec/pin.md section 6): enrolment, guardian checks, recovery with
//! honest and faulty guardians, tampered records, and every decode rejection of section 6.3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};
use sealpost_pin::{
    PinError,
    normalize::{NormalizedPin, normalize},
    oprf::{EvaluatedElement, OprfKey, Proof},
    stretch::Argon2Params,
    threshold::{GuardianResponse, KeyShare},
    vault::{
        Enrollment, MAX_VAULT_RECORD_LEN, MasterSecret, Recovery, SuccessToken, VaultRecord,
        check_share, choose_record, enroll, verify_success,
    },
};

const ACCOUNT: &str = "+15550001234";

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5ea1)
}

fn pin(s: &str) -> NormalizedPin {
    normalize(s).unwrap()
}

fn setup(t: usize, n: usize) -> (MasterSecret, Enrollment) {
    setup_seeded(t, n, 1)
}

fn setup_seeded(t: usize, n: usize, seed: u64) -> (MasterSecret, Enrollment) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ms = MasterSecret::generate(&mut rng);
    let e = enroll(
        &pin("123456"),
        ACCOUNT,
        &ms,
        t,
        n,
        &Argon2Params::testing(),
        &mut rng,
    )
    .unwrap();
    (ms, e)
}

fn answer(share: &KeyShare, recovery: &Recovery, rng: &mut StdRng) -> GuardianResponse {
    let (evaluated, proof) = share.key().evaluate(recovery.blinded(), rng);
    GuardianResponse {
        index: share.index(),
        evaluated,
        proof,
    }
}

fn start(p: &str, record: &VaultRecord) -> Recovery {
    Recovery::start(&pin(p), ACCOUNT, record.clone(), &mut rng())
        .unwrap()
        .0
}

#[test]
fn every_t_subset_recovers_the_master_secret() {
    let (ms, e) = setup(2, 3);
    let mut rng = rng();
    let rec = start("123456", &e.record);
    for pair in [[0usize, 1], [0, 2], [1, 2], [2, 0]] {
        let responses: Vec<_> = pair
            .iter()
            .map(|&i| answer(&e.guardians[i].share, &rec, &mut rng))
            .collect();
        let got = rec.finish(&responses).unwrap();
        assert!(got.master.ct_eq(&ms));
        assert!(got.faulty.is_empty());
        // Every success token matches the verifier its guardian stored.
        for g in &e.guardians {
            assert!(verify_success(
                &g.success_verifier,
                got.token_for(g.index).unwrap()
            ));
        }
        assert!(!verify_success(
            &e.guardians[0].success_verifier,
            got.token_for(2).unwrap()
        ));
    }
    // The recovered secret derives the same registration-lock token.
    assert_eq!(
        ms.reglock_token().verifier(),
        MasterSecret::from_bytes(*ms.to_bytes())
            .reglock_token()
            .verifier()
    );
}

#[test]
fn one_of_one_recovers() {
    let (ms, e) = setup(1, 1);
    assert_eq!(e.record.encode().len(), 128);
    let rec = start(" １２３４５６ ", &e.record);
    let r = answer(&e.guardians[0].share, &rec, &mut rng());
    assert!(rec.finish(&[r]).unwrap().master.ct_eq(&ms));
}

#[test]
fn wrong_pin_is_wrong_pin() {
    let (_, e) = setup(2, 3);
    let mut rng = rng();
    let rec = start("123457", &e.record);
    let responses: Vec<_> = e.guardians[..2]
        .iter()
        .map(|g| answer(&g.share, &rec, &mut rng))
        .collect();
    assert_eq!(rec.finish(&responses).unwrap_err(), PinError::WrongPin);
}

#[test]
fn fewer_than_t_answers_fail_then_more_succeed() {
    let (ms, e) = setup(2, 3);
    let mut rng = rng();
    let rec = start("123456", &e.record);
    let first = answer(&e.guardians[0].share, &rec, &mut rng);
    assert_eq!(
        rec.finish(&[first]).unwrap_err(),
        PinError::NotEnoughValidResponses {
            needed: 2,
            valid: 1,
            faulty: vec![]
        }
    );
    assert!(matches!(
        rec.finish(&[]),
        Err(PinError::NotEnoughValidResponses { valid: 0, .. })
    ));
    // The same recovery finishes once a second guardian answers.
    let second = answer(&e.guardians[2].share, &rec, &mut rng);
    assert!(rec.finish(&[first, second]).unwrap().master.ct_eq(&ms));
}

/// Kinds of garbage a faulty guardian (index 2 of 3) can return.
fn garbage(kind: u8, e: &Enrollment, rec: &Recovery, rng: &mut StdRng) -> GuardianResponse {
    let honest = answer(&e.guardians[1].share, rec, rng);
    match kind {
        // A random point with the honest proof.
        0 => GuardianResponse {
            evaluated: EvaluatedElement::from_slice(
                &OprfKey::generate(rng).public_key().to_bytes(),
            )
            .unwrap(),
            ..honest
        },
        // A valid evaluation under another key, with a valid proof for that key.
        1 => {
            let other = OprfKey::generate(rng);
            let (evaluated, proof) = other.evaluate(rec.blinded(), rng);
            GuardianResponse {
                index: 2,
                evaluated,
                proof,
            }
        }
        // The right point with a wrong proof.
        2 => {
            let (_, proof) = e.guardians[1].share.key().evaluate(rec.blinded(), rng);
            let mut bytes = proof.to_bytes();
            bytes[0] ^= 1;
            GuardianResponse {
                proof: Proof::from_slice(&bytes).unwrap_or(honest.proof),
                evaluated: EvaluatedElement::from_slice(
                    &OprfKey::generate(rng).public_key().to_bytes(),
                )
                .unwrap(),
                ..honest
            }
        }
        // Guardian 3's valid answer relabelled as guardian 2's.
        3 => GuardianResponse {
            index: 2,
            ..answer(&e.guardians[2].share, rec, rng)
        },
        // An index not in the record.
        4 => GuardianResponse { index: 9, ..honest },
        // A repeat of guardian 1's index.
        _ => GuardianResponse {
            index: 1,
            ..answer(&e.guardians[0].share, rec, rng)
        },
    }
}

#[test]
fn faulty_guardians_are_excluded_and_reported() {
    let (ms, e) = setup(2, 3);
    let mut rng = rng();
    let rec = start("123456", &e.record);
    for kind in 0..6u8 {
        let g1 = answer(&e.guardians[0].share, &rec, &mut rng);
        let bad = garbage(kind, &e, &rec, &mut rng);
        let g3 = answer(&e.guardians[2].share, &rec, &mut rng);
        // With the faulty one first, between, and last.
        for order in [[bad, g1, g3], [g1, bad, g3], [g1, g3, bad]] {
            let got = rec.finish(&order).unwrap();
            assert!(got.master.ct_eq(&ms), "kind {kind}");
            assert_eq!(got.faulty, vec![bad.index], "kind {kind}");
        }
        // Without enough honest ones the error lists the faulty index.
        assert_eq!(
            rec.finish(&[g1, bad]).unwrap_err(),
            PinError::NotEnoughValidResponses {
                needed: 2,
                valid: 1,
                faulty: vec![bad.index]
            },
            "kind {kind}"
        );
    }
}

/// An edit of a record's bytes.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

/// Re-encodes `record` with `f` applied to its bytes; returns the decode result.
fn tamper(record: &VaultRecord, f: impl FnOnce(&mut Vec<u8>)) -> Result<VaultRecord, PinError> {
    let mut b = record.encode();
    f(&mut b);
    VaultRecord::decode(&b)
}

/// Recovery with all guardians answering against a (tampered) record.
fn recover_with(record: VaultRecord, e: &Enrollment) -> Result<MasterSecret, PinError> {
    let mut rng = rng();
    let (rec, _) = Recovery::start(&pin("123456"), ACCOUNT, record, &mut rng)?;
    let responses: Vec<_> = e
        .guardians
        .iter()
        .map(|g| answer(&g.share, &rec, &mut rng))
        .collect();
    rec.finish(&responses).map(|r| r.master)
}

#[test]
fn tampered_records_never_yield_a_secret() {
    let (ms, e) = setup(2, 3);
    assert!(recover_with(e.record.clone(), &e).unwrap().ct_eq(&ms));
    // Offsets: version 0, vault_id 1..17, m 17..21, t 21..25, p 25..29, salt 29..45,
    // threshold 45, n 46, commitments 47.., sealed last 48.
    let cases: Vec<(&str, Edit)> = vec![
        ("vault_id", Box::new(|b| b[1] ^= 1)),
        ("salt", Box::new(|b| b[30] ^= 1)),
        ("m", Box::new(|b| b[20] ^= 8)),
        ("t", Box::new(|b| b[24] ^= 1)),
        ("threshold", Box::new(|b| b[45] = 3)),
        (
            "sealed",
            Box::new(|b| {
                let l = b.len();
                b[l - 1] ^= 1
            }),
        ),
    ];
    for (what, f) in cases {
        // Each of these still decodes: only the AEAD stops it.
        let record = tamper(&e.record, f).unwrap();
        assert_eq!(
            recover_with(record, &e).unwrap_err(),
            PinError::WrongPin,
            "{what}"
        );
    }
    // A commitment replaced by a point off the polynomial is refused on decode.
    let off = OprfKey::generate(&mut rng()).public_key().to_bytes();
    let r = tamper(&e.record, |b| b[48..80].copy_from_slice(&off));
    assert_eq!(r.unwrap_err(), PinError::InconsistentCommitments(2));
    // A consistent substitute sharing (another key) decodes, but the honest guardians'
    // proofs fail against it: no secret.
    let (_, other) = setup_seeded(2, 3, 2);
    let swapped = tamper(&e.record, |b| {
        let o = other.record.encode();
        b[47..47 + 99].copy_from_slice(&o[47..47 + 99]);
    })
    .unwrap();
    assert!(matches!(
        recover_with(swapped, &e),
        Err(PinError::NotEnoughValidResponses { valid: 0, .. })
    ));
    // Another account's AD does not open it either.
    let mut rng = rng();
    let (rec, _) =
        Recovery::start(&pin("123456"), "+15550009999", e.record.clone(), &mut rng).unwrap();
    let responses: Vec<_> = e
        .guardians
        .iter()
        .map(|g| answer(&g.share, &rec, &mut rng))
        .collect();
    assert_eq!(rec.finish(&responses).unwrap_err(), PinError::WrongPin);
}

#[test]
fn guardian_checks_its_share() {
    let (_, e) = setup(2, 3);
    for g in &e.guardians {
        check_share(&e.record, &g.share).unwrap();
        assert_eq!(
            e.record.index_commitment(g.index),
            Some(&g.share.key().public_key())
        );
    }
    let (_, other) = setup_seeded(2, 3, 2);
    assert_eq!(
        check_share(&e.record, &other.guardians[0].share),
        Err(PinError::ShareMismatch(1))
    );
    let mut bytes = *e.guardians[0].share.to_bytes();
    bytes[0] = 7;
    let moved = KeyShare::from_bytes(&bytes).unwrap();
    assert_eq!(
        check_share(&e.record, &moved),
        Err(PinError::ShareMismatch(7))
    );
    let token = SuccessToken::from_bytes([0; 32]);
    assert!(!verify_success(&e.guardians[0].success_verifier, &token));
}

#[test]
fn decode_rejects_every_malformed_case() {
    let (_, e) = setup(2, 3);
    let good = e.record.encode();
    assert_eq!(good.len(), 95 + 3 * 33);
    assert_eq!(VaultRecord::decode(&good).unwrap(), e.record);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        VaultRecord::decode(&b).unwrap_err()
    };
    assert!(matches!(
        with(&|b| b[0] = 2),
        PinError::UnsupportedVersion { version: 2, .. }
    ));
    assert!(matches!(
        with(&|b| b[0] = 0),
        PinError::UnsupportedVersion { version: 0, .. }
    ));
    assert_eq!(with(&|b| b[45] = 0), PinError::ZeroThreshold);
    assert!(matches!(
        with(&|b| b[45] = 4),
        PinError::ThresholdTooLarge {
            threshold: 4,
            shares: 3
        }
    ));
    // n = 0 (and the bytes shortened so only the count is wrong).
    assert!(matches!(
        with(&|b| {
            b[45] = 1;
            b[46] = 0;
        }),
        PinError::ThresholdTooLarge {
            threshold: 1,
            shares: 0
        } | PinError::TrailingBytes { .. }
    ));
    assert_eq!(with(&|b| b[47] = 0), PinError::ZeroIndex);
    assert_eq!(
        with(&|b| b[47 + 33] = 1),
        PinError::UnorderedIndices {
            previous: 1,
            index: 1
        }
    );
    assert_eq!(
        with(&|b| b[47 + 66] = 1),
        PinError::UnorderedIndices {
            previous: 2,
            index: 1
        }
    );
    // Non-increasing but in range: swap indices 2 and 3 (also reorders nothing else).
    assert_eq!(
        with(&|b| {
            b[47 + 33] = 3;
            b[47 + 66] = 2;
        }),
        PinError::UnorderedIndices {
            previous: 3,
            index: 2
        }
    );
    // K_i: identity, non-canonical, not a point.
    assert_eq!(with(&|b| b[48..80].fill(0)), PinError::InvalidElement);
    assert_eq!(with(&|b| b[48..80].fill(0xff)), PinError::InvalidElement);
    assert_eq!(
        with(&|b| {
            b[48..80].fill(0);
            b[48] = 1;
        }),
        PinError::InvalidElement
    );
    // Argon2 parameters: m below 8·p, above 262144; t 0 and 65; p 0 and 5.
    let set = |off: usize, v: u32| {
        move |b: &mut Vec<u8>| b[off..off + 4].copy_from_slice(&v.to_be_bytes())
    };
    for (off, v) in [(17, 7), (17, 262_145), (21, 0), (21, 65), (25, 0), (25, 5)] {
        assert!(
            matches!(with(&set(off, v)), PinError::Argon2ParamsOutOfRange { .. }),
            "offset {off} value {v}"
        );
    }
    // m = 8·p exactly and the maxima are accepted by decode.
    for (off, v) in [(17, 8), (17, 262_144), (21, 64)] {
        let mut b = good.clone();
        set(off, v)(&mut b);
        VaultRecord::decode(&b).unwrap();
    }
    {
        let mut b = good.clone();
        set(17, 31)(&mut b);
        set(25, 4)(&mut b);
        assert!(matches!(
            VaultRecord::decode(&b),
            Err(PinError::Argon2ParamsOutOfRange { .. })
        ));
        set(17, 32)(&mut b);
        VaultRecord::decode(&b).unwrap();
    }
    // Truncation at every length, trailing bytes, oversize.
    for len in 0..good.len() {
        assert!(
            matches!(
                VaultRecord::decode(&good[..len]),
                Err(PinError::Truncated { .. })
            ),
            "len {len}"
        );
    }
    assert_eq!(
        with(&|b| b.push(0)),
        PinError::TrailingBytes {
            what: "vault record",
            extra: 1
        }
    );
    assert!(matches!(
        VaultRecord::decode(&vec![1u8; MAX_VAULT_RECORD_LEN + 1]),
        Err(PinError::TooLarge { .. })
    ));
}

#[test]
fn largest_record_round_trips() {
    let mut rng = rng();
    let e = enroll(
        &pin("123456"),
        ACCOUNT,
        &MasterSecret::generate(&mut rng),
        1,
        255,
        &Argon2Params::testing(),
        &mut rng,
    )
    .unwrap();
    let b = e.record.encode();
    assert_eq!(b.len(), MAX_VAULT_RECORD_LEN);
    assert_eq!(VaultRecord::decode(&b).unwrap().encode(), b);
}

#[test]
fn choose_record_takes_the_majority() {
    let (_, a) = setup_seeded(2, 3, 3);
    let (_, b) = setup_seeded(2, 3, 4);
    let ra = a.record.encode();
    let rb = b.record.encode();
    let fetched = vec![
        ("g1", rb.clone()),
        ("g2", ra.clone()),
        ("g3", ra.clone()),
        ("g4", vec![1, 2, 3]),
    ];
    let c = choose_record(&fetched).unwrap();
    assert_eq!(c.record, a.record);
    assert_eq!(c.agreeing, vec!["g2", "g3"]);
    assert_eq!(c.disagreeing, vec!["g1", "g4"]);
    // One agreeing guardian is below t = 2.
    assert_eq!(
        choose_record(&[("g1", ra.clone()), ("g2", rb.clone())]).unwrap_err(),
        PinError::VaultUnavailable {
            agreeing: 1,
            needed: 2
        }
    );
    // Undecodable majorities are skipped; nothing decodable at all is unavailable.
    let junk = vec![9u8; 10];
    let c = choose_record(&[
        ("a", junk.clone()),
        ("b", junk.clone()),
        ("c", junk.clone()),
        ("d", ra.clone()),
        ("e", ra),
    ])
    .unwrap();
    assert_eq!(c.agreeing, vec!["d", "e"]);
    assert_eq!(
        choose_record::<&str, Vec<u8>>(&[("a", junk)]).unwrap_err(),
        PinError::VaultUnavailable {
            agreeing: 0,
            needed: 1
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any record built from arbitrary header fields and a consistent sharing round-trips.
    #[test]
    fn record_round_trip(
        id in any::<[u8; 16]>(),
        salt in any::<[u8; 16]>(),
        m in 8u32..=262_144,
        t_passes in 1u32..=64,
        sealed in proptest::collection::vec(any::<u8>(), 48),
        n in 1usize..=6,
        t_frac in 0usize..6,
        seed in any::<u64>(),
    ) {
        let t = 1 + t_frac % n;
        let mut rng = StdRng::seed_from_u64(seed);
        let key = OprfKey::generate(&mut rng);
        let (shares, _) = sealpost_pin::threshold::split(&key, t, n, &mut rng).unwrap();
        let mut b = vec![1u8];
        b.extend_from_slice(&id);
        b.extend_from_slice(&m.to_be_bytes());
        b.extend_from_slice(&t_passes.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&salt);
        b.push(t as u8);
        b.push(n as u8);
        for s in &shares {
            b.push(s.index());
            b.extend_from_slice(&s.key().public_key().to_bytes());
        }
        b.extend_from_slice(&sealed);
        let r = VaultRecord::decode(&b).unwrap();
        prop_assert_eq!(r.encode(), b.clone());
        prop_assert_eq!(r.threshold(), t);
        prop_assert_eq!(r.guardian_count(), n);
        prop_assert_eq!(r.vault_id(), &id);
        prop_assert_eq!(r.params().memory_kib, m);
        prop_assert_eq!(&r.sealed()[..], &sealed[..]);
        // Decode is total: flipping any byte gives Ok (re-encoding identically) or Err.
        let pos = (seed as usize) % b.len();
        let mut flipped = b;
        flipped[pos] ^= 1 << (seed % 8);
        if let Ok(r2) = VaultRecord::decode(&flipped) {
            prop_assert_eq!(r2.encode(), flipped);
        }
    }
}

/// 255 guardians at several thresholds: consistent commitments decode, one replaced
/// commitment is refused. (The consistency check is one multi-scalar multiplication, so this
/// stays fast; the time is printed, not asserted.)
#[test]
fn large_guardian_sets_are_checked() {
    use sealpost_pin::threshold::split;
    let mut rng = rng();
    for t in [1usize, 2, 128, 254, 255] {
        let key = OprfKey::generate(&mut rng);
        let (shares, _) = split(&key, t, 255, &mut rng).unwrap();
        let mut b = vec![1u8];
        b.extend([0u8; 16]);
        for x in [256u32, 2, 1] {
            b.extend(x.to_be_bytes());
        }
        b.extend([0u8; 16]);
        b.push(t as u8);
        b.push(255);
        for s in &shares {
            b.push(s.index());
            b.extend(s.key().public_key().to_bytes());
        }
        b.extend([0u8; 48]);
        let start = std::time::Instant::now();
        let r = VaultRecord::decode(&b).unwrap();
        eprintln!("t={t} n=255: decode {:?}", start.elapsed());
        assert_eq!(r.guardians().public_key(), &key.public_key());
        let victim = 47 + 33 * 200 + 1;
        b[victim..victim + 32]
            .copy_from_slice(&OprfKey::generate(&mut rng).public_key().to_bytes());
        let got = VaultRecord::decode(&b);
        if t == 255 {
            assert!(got.is_ok());
        } else {
            assert_eq!(got.unwrap_err(), PinError::InconsistentCommitments(t));
        }
    }
}
