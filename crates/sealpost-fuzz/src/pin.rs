//! PIN targets (spec/pin.md): the vault record codec, client recovery against arbitrary
//! guardian answers, the local verifier and reminder-state codecs, and the PIN relay frames.

use crate::input::{ByteSource, rng_from};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sealpost_pin::{
    PinError,
    normalize::normalize,
    oprf::{BlindedElement, EvaluatedElement, OprfKey, Proof, verify_proof},
    reminder::{
        FREE_FAILURES, LocalVerifier, MAX_BACKOFF_SECS, REMINDER_INTERVALS_DAYS, ReminderState,
    },
    stretch::Argon2Params,
    threshold::{GuardianResponse, KeyShare},
    vault::{
        Enrollment, MAX_VAULT_RECORD_LEN, MIN_VAULT_RECORD_LEN, MasterSecret, Recovery,
        SuccessToken, VaultRecord, check_share, choose_record, enroll, verify_success,
    },
};
use sealpost_wire::PROTOCOL_VERSION;
use sealpost_wire::relay::{Request, Response};
use std::sync::OnceLock;

/// The account every PIN fixture is enrolled for.
pub const PIN_ACCOUNT: &str = "+15550000001";
/// The fixture's PIN.
pub const PIN: &str = "123456";
/// Guardians in the fixture vault, and its threshold.
pub const PIN_GUARDIANS: usize = 3;
/// See [`PIN_GUARDIANS`].
pub const PIN_THRESHOLD: usize = 2;

/// A 2-of-3 vault enrolled once per process at `Argon2Params::testing()`, with a recovery
/// already started with the right PIN and one with a wrong PIN (so a fuzz iteration never
/// runs Argon2), the true success tokens, and another blinded element.
pub struct PinFixture {
    pub master: MasterSecret,
    pub enrollment: Enrollment,
    pub record_bytes: Vec<u8>,
    pub right: Recovery,
    pub wrong: Recovery,
    pub tokens: Vec<SuccessToken>,
    pub other_blinded: BlindedElement,
}

/// The PIN fixture (built on first use).
pub fn pin_fixture() -> &'static PinFixture {
    static F: OnceLock<PinFixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x9e11);
        let params = Argon2Params::testing();
        let master = MasterSecret::generate(&mut rng);
        let pin = normalize(PIN).expect("fixture PIN");
        let enrollment = enroll(
            &pin,
            PIN_ACCOUNT,
            &master,
            PIN_THRESHOLD,
            PIN_GUARDIANS,
            &params,
            &mut rng,
        )
        .expect("fixture enrolment");
        let record = enrollment.record.clone();
        let (right, _) =
            Recovery::start(&pin, PIN_ACCOUNT, record.clone(), &mut rng).expect("recovery");
        let wrong_pin = normalize("654321").expect("fixture PIN");
        let (wrong, _) =
            Recovery::start(&wrong_pin, PIN_ACCOUNT, record.clone(), &mut rng).expect("recovery");
        let responses: Vec<_> = enrollment
            .guardians
            .iter()
            .map(|g| answer(&g.share, g.index, right.blinded(), &mut rng))
            .collect();
        let recovered = right.finish(&responses).expect("fixture recovers");
        assert!(recovered.master.ct_eq(&master));
        let tokens = recovered
            .success_tokens
            .iter()
            .map(|(_, t)| t.clone())
            .collect();
        let (_, other_blinded) =
            sealpost_pin::oprf::blind(b"another input", &mut rng).expect("blind");
        PinFixture {
            record_bytes: record.encode(),
            master,
            enrollment,
            right,
            wrong,
            tokens,
            other_blinded,
        }
    })
}

fn answer(
    share: &KeyShare,
    index: u8,
    blinded: &BlindedElement,
    rng: &mut StdRng,
) -> GuardianResponse {
    let (evaluated, proof) = share.key().evaluate(blinded, rng);
    GuardianResponse {
        index,
        evaluated,
        proof,
    }
}

/// `VaultRecord::decode` on arbitrary bytes:
///
/// - nothing panics;
/// - an `Ok` record re-encodes to exactly the input, its length is within the limits, its
///   indices increase and `t ≤ n`; its AD and [`choose_record`] work on it.
pub fn pin_vault_record(data: &[u8]) {
    let Ok(record) = VaultRecord::decode(data) else {
        return;
    };
    assert_eq!(record.encode(), data, "vault record does not round-trip");
    assert!((MIN_VAULT_RECORD_LEN..=MAX_VAULT_RECORD_LEN).contains(&data.len()));
    assert!(1 <= record.threshold() && record.threshold() <= record.guardian_count());
    let indices: Vec<u8> = record.indices().collect();
    assert!(indices.windows(2).all(|w| w[0] < w[1]) && indices[0] >= 1);
    assert_eq!(data.len(), 95 + 33 * indices.len());
    let ad = record.aad(PIN_ACCOUNT).expect("valid account");
    assert!(ad.ends_with(&data[..data.len() - 48]));
    let _ = format!("{record:?}");
    let fetched: Vec<(u8, &[u8])> = (0..record.threshold())
        .map(|i| (i as u8, data))
        .chain([(255, &b"junk"[..])])
        .collect();
    let choice = choose_record(&fetched).expect("t agreeing guardians");
    assert_eq!(choice.record, record);
    assert_eq!(choice.disagreeing, vec![255]);
}

/// Responses per `pin_recovery` program: enough for `t` honest answers among garbage, few
/// enough that an iteration stays cheap (each response costs a proof verification).
const MAX_RESPONSES: usize = 5;

/// What [`pin_recovery_outcome`] saw, for the seed test.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryOutcome {
    pub wrong_pin: bool,
    pub responses: usize,
    pub honest: usize,
    pub recovered: bool,
    pub rejected_wrong_pin: bool,
    pub not_enough: bool,
    pub faulty: usize,
    pub share_checks: usize,
    pub token_checks: usize,
}

/// Client recovery against a program of guardian answers (spec/pin.md 6.4):
///
/// byte 0 selects the right or a wrong PIN; then each op adds a response — an honest
/// evaluation, raw bytes, an honest evaluation under another guardian's index, an honest
/// evaluation with a modified proof, an evaluation of another blinded element — or checks a
/// guardian-side helper (`check_share` on share bytes, `verify_success` on token bytes).
///
/// - nothing panics;
/// - a master secret is returned only for the right PIN and then equals the enrolled one;
/// - exactly the honest responses (first per index) are used, every other one is reported
///   faulty; with `t` of them the right PIN recovers and a wrong PIN is `WrongPin`, with
///   fewer the error is `NotEnoughValidResponses`;
/// - `check_share` accepts exactly the real shares, `verify_success` exactly the real tokens.
pub fn pin_recovery(data: &[u8]) {
    pin_recovery_outcome(data);
}

/// [`pin_recovery`], returning what happened.
pub fn pin_recovery_outcome(data: &[u8]) -> RecoveryOutcome {
    let f = pin_fixture();
    let guardians = &f.enrollment.guardians;
    let mut src = ByteSource::new(data);
    let mut rng = rng_from(b"pin_recovery", data);
    let mut out = RecoveryOutcome {
        wrong_pin: src.u8() & 1 == 1,
        ..RecoveryOutcome::default()
    };
    let recovery = if out.wrong_pin { &f.wrong } else { &f.right };
    let blinded = recovery.blinded();
    let mut responses = Vec::new();
    let mut honest = [false; PIN_GUARDIANS];
    while !src.is_empty() && responses.len() < MAX_RESPONSES {
        let op = src.u8() % 7;
        let g = src.below(PIN_GUARDIANS);
        let share = &guardians[g].share;
        let index = guardians[g].index;
        match op {
            0 => {
                responses.push(answer(share, index, blinded, &mut rng));
                honest[g] = true;
            }
            1 => {
                let i = src.u8();
                let z = EvaluatedElement::from_slice(src.take(32));
                let p = Proof::from_slice(src.take(64));
                if let (Ok(evaluated), Ok(proof)) = (z, p) {
                    // Raw bytes count as honest only if they are the true `k_i·B` with a
                    // proof that verifies (the fuzzer cannot be expected to find one).
                    if let Some(pos) = guardians.iter().position(|e| e.index == i) {
                        let e = &guardians[pos];
                        let real = answer(&e.share, i, blinded, &mut rng).evaluated;
                        let k_i = e.share.key().public_key();
                        if real == evaluated
                            && verify_proof(&k_i, blinded, &evaluated, &proof).is_ok()
                        {
                            honest[pos] = true;
                        }
                    }
                    responses.push(GuardianResponse {
                        index: i,
                        evaluated,
                        proof,
                    });
                }
            }
            2 => {
                let i = src.u8();
                responses.push(answer(share, i, blinded, &mut rng));
                if i == index {
                    honest[g] = true;
                }
            }
            3 => {
                let r = answer(share, index, blinded, &mut rng);
                let mut proof = r.proof.to_bytes();
                let pos = src.below(64);
                proof[pos] ^= src.u8() | 1;
                let mut z = r.evaluated.to_bytes();
                let zpos = src.below(33);
                if zpos < 32 {
                    z[zpos] ^= src.u8();
                }
                if let (Ok(evaluated), Ok(proof)) =
                    (EvaluatedElement::from_slice(&z), Proof::from_slice(&proof))
                {
                    responses.push(GuardianResponse {
                        index,
                        evaluated,
                        proof,
                    });
                }
            }
            4 => responses.push(answer(share, index, &f.other_blinded, &mut rng)),
            5 => {
                // Share bytes: the real share with one byte changed (or not), or raw bytes.
                let mut bytes = share.to_bytes().to_vec();
                let pos = src.below(34);
                if pos < 33 {
                    bytes[pos] ^= src.u8();
                } else {
                    bytes = src.take(33).to_vec();
                }
                if let Ok(candidate) = KeyShare::from_bytes(&bytes) {
                    let real = guardians
                        .iter()
                        .any(|e| e.share.to_bytes().as_slice() == bytes.as_slice());
                    assert_eq!(
                        check_share(&f.enrollment.record, &candidate).is_ok(),
                        real,
                        "check_share disagrees with the real shares"
                    );
                    out.share_checks += 1;
                }
            }
            _ => {
                let mut token = *f.tokens[g].as_bytes();
                let pos = src.below(33);
                if pos < 32 {
                    token[pos] ^= src.u8();
                }
                let t = SuccessToken::from_bytes(token);
                let real = token == *f.tokens[g].as_bytes();
                assert_eq!(
                    verify_success(&guardians[g].success_verifier, &t),
                    real,
                    "verify_success disagrees with the real token"
                );
                out.token_checks += 1;
            }
        }
    }
    out.responses = responses.len();
    out.honest = honest.iter().filter(|h| **h).count();
    match recovery.finish(&responses) {
        Ok(r) => {
            assert!(!out.wrong_pin, "a wrong PIN recovered a master secret");
            assert!(r.master.ct_eq(&f.master), "recovered a different secret");
            assert!(out.honest >= PIN_THRESHOLD);
            out.faulty = r.faulty.len();
            out.recovered = true;
        }
        Err(PinError::WrongPin) => {
            assert!(out.wrong_pin, "the right PIN with valid answers failed");
            assert!(out.honest >= PIN_THRESHOLD);
            out.rejected_wrong_pin = true;
        }
        Err(PinError::NotEnoughValidResponses {
            needed,
            valid,
            faulty,
        }) => {
            assert_eq!(needed, PIN_THRESHOLD);
            assert_eq!(valid, out.honest, "a dishonest answer was accepted");
            assert!(valid < PIN_THRESHOLD);
            out.faulty = faulty.len();
            out.not_enough = true;
        }
        Err(e) => panic!("unexpected recovery error {e:?}"),
    }
    // `WrongPin` carries no list; otherwise every answer not used is reported.
    if !out.rejected_wrong_pin {
        assert_eq!(
            out.faulty,
            out.responses - out.honest.min(out.responses),
            "every non-honest answer must be reported faulty"
        );
    }
    out
}

/// `LocalVerifier::from_bytes` and `ReminderState::decode` on arbitrary bytes, then the
/// reminder policy under a program of results:
///
/// - nothing panics; `Ok` values re-encode to the input;
/// - after a correct answer checks are allowed and the next reminder is 1, 3, 7 or 14 days
///   out; after a wrong one the back-off is 0 for the first free failures, else 30..=3600 s;
/// - every intermediate state round-trips through its encoding.
pub fn pin_local_verifier(data: &[u8]) {
    if let Ok(v) = LocalVerifier::from_bytes(data) {
        assert_eq!(v.to_bytes().as_slice(), data);
        let _ = format!("{v:?}");
    }
    if let Ok(s) = ReminderState::decode(data) {
        assert_eq!(s.encode().as_slice(), data);
    }
    let (mut state, rest) = match data.get(..22).map(ReminderState::decode) {
        Some(Ok(s)) => (s, &data[22..]),
        _ => (ReminderState::new(1_700_000_000), data),
    };
    let mut src = ByteSource::new(rest);
    let mut now = state.next_reminder_at().saturating_sub(86_400);
    while !src.is_empty() {
        let b = src.u8();
        now = now.saturating_add(u64::from(src.u16()) * u64::from(b >> 1));
        let correct = b & 1 == 1;
        let before = state.consecutive_failures();
        let locked_before = state.locked_until();
        state.record_result(correct, now);
        if correct {
            assert!(state.can_check(now));
            assert_eq!(state.consecutive_failures(), 0);
            let days = state.next_reminder_at().saturating_sub(now) / 86_400;
            assert!(
                state.next_reminder_at() == u64::MAX
                    || REMINDER_INTERVALS_DAYS.contains(&(days as u8)),
                "reminder {days} days out"
            );
        } else {
            assert_eq!(state.consecutive_failures(), before.saturating_add(1));
            assert!(REMINDER_INTERVALS_DAYS[0] == state.interval_days());
            if state.consecutive_failures() < FREE_FAILURES {
                assert_eq!(state.locked_until(), locked_before, "a free failure locked");
            } else if now < u64::MAX - MAX_BACKOFF_SECS {
                let wait = state.locked_until() - now;
                assert!((30..=MAX_BACKOFF_SECS).contains(&wait), "wait {wait}");
            }
        }
        assert_eq!(ReminderState::decode(&state.encode()), Ok(state));
    }
}

/// PIN request and response kinds (spec/pin.md section 8), plus `Register` (its lock flag).
pub const PIN_REQUEST_KINDS: [u8; 9] = [0x02, 0x30, 0x31, 0x32, 0x38, 0x39, 0x3A, 0x3B, 0x3C];
/// See [`PIN_REQUEST_KINDS`].
pub const PIN_RESPONSE_KINDS: [u8; 9] = [0x70, 0x71, 0x72, 0x78, 0x79, 0x7A, 0x7B, 0x7C, 0x7D];

/// The frame body a `pin_frames` input stands for: byte 0 picks a kind (modulo 18) and the
/// rest is the payload; the body is `version || kind || payload`. `None` for an empty input.
pub fn pin_frame_body(data: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (&sel, payload) = data.split_first()?;
    let sel = usize::from(sel) % (PIN_REQUEST_KINDS.len() + PIN_RESPONSE_KINDS.len());
    let (is_request, kind) = match PIN_REQUEST_KINDS.get(sel) {
        Some(&k) => (true, k),
        None => (false, PIN_RESPONSE_KINDS[sel - PIN_REQUEST_KINDS.len()]),
    };
    let mut body = Vec::with_capacity(2 + payload.len());
    body.push(PROTOCOL_VERSION);
    body.push(kind);
    body.extend_from_slice(payload);
    Some((is_request, body))
}

/// Each PIN request/response kind decoded from an arbitrary payload:
///
/// - nothing panics; an `Ok` frame re-encodes to exactly the body;
/// - the PIN payloads inside go through `sealpost-pin` (record decode, share parse and
///   `check_share`, blinded/evaluated elements and proofs) without panicking, and a record
///   that decodes round-trips.
pub fn pin_frames(data: &[u8]) {
    let Some((is_request, body)) = pin_frame_body(data) else {
        return;
    };
    let record_check = |bytes: &[u8]| {
        if let Ok(r) = VaultRecord::decode(bytes) {
            assert_eq!(r.encode(), bytes);
            Some(r)
        } else {
            None
        }
    };
    if is_request {
        let Ok(req) = Request::decode(&body) else {
            return;
        };
        assert_eq!(&req.encode()[4..], &body[..], "request does not re-encode");
        let _ = format!("{req:?}");
        match &req {
            Request::VaultStore { share, record, .. } => {
                let share = KeyShare::from_bytes(share);
                if let (Some(r), Ok(s)) = (record_check(record), share) {
                    let _ = check_share(&r, &s);
                }
            }
            Request::VaultEvaluate { blinded, .. } => {
                let _ = BlindedElement::from_slice(blinded);
            }
            Request::VaultConfirm { token, .. } => {
                let t = SuccessToken::from_bytes(*token);
                let _ = verify_success(&pin_fixture().enrollment.guardians[0].success_verifier, &t);
            }
            _ => {}
        }
    } else {
        let Ok(resp) = Response::decode(&body) else {
            return;
        };
        assert_eq!(
            &resp.encode()[4..],
            &body[..],
            "response does not re-encode"
        );
        let _ = format!("{resp:?}");
        match &resp {
            Response::Vault { record, .. } => {
                record_check(record);
            }
            Response::VaultEvaluated {
                evaluated, proof, ..
            } => {
                let _ = EvaluatedElement::from_slice(evaluated);
                let _ = Proof::from_slice(proof);
            }
            _ => {}
        }
    }
}

/// An OPRF key for seeds that need a well-formed but unrelated element.
pub fn seed_key(label: &[u8]) -> OprfKey {
    OprfKey::generate(&mut rng_from(b"pin seed key", label))
}
