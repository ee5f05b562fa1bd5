//! Seeds of the PIN targets: vault records, recovery, local verifiers and frames.

use super::{Seed, seed};
use crate::fixture::fixture;
use crate::input::rng_from;
use sealpost_wire::AccountId;

pub(super) fn pin_vault_records() -> Vec<Seed> {
    use sealpost_pin::{normalize::normalize, stretch::Argon2Params, vault};
    let t = "pin_vault_record";
    let f = crate::pin::pin_fixture();
    let good = f.record_bytes.clone();
    let enrol = |threshold: usize, n: usize| {
        let mut rng = rng_from(b"pin seed enrolment", &[threshold as u8, n as u8]);
        vault::enroll(
            &normalize("123456").expect("pin"),
            crate::pin::PIN_ACCOUNT,
            &vault::MasterSecret::generate(&mut rng),
            threshold,
            n,
            &Argon2Params::testing(),
            &mut rng,
        )
        .expect("seed enrolment")
        .record
        .encode()
    };
    let mut out = vec![
        seed(t, "2-of-3", good.clone()),
        seed(t, "1-of-1", enrol(1, 1)),
        seed(t, "3-of-5", enrol(3, 5)),
        seed(t, "1-of-255", enrol(1, 255)),
        seed(t, "truncated", good[..good.len() - 1].to_vec()),
        seed(t, "empty", Vec::new()),
    ];
    let mut v = good.clone();
    v[0] = 2;
    out.push(seed(t, "version-2", v));
    let mut v = good.clone();
    v[47 + 33] = 1; // second index equals the first
    out.push(seed(t, "unordered", v));
    let mut v = good.clone();
    v[48] ^= 1; // K_1 off the polynomial (or not a point)
    out.push(seed(t, "bad-commitment", v));
    let mut v = good;
    v[28] = 0; // p = 0
    out.push(seed(t, "bad-params", v));
    out
}

pub(super) fn pin_recovery() -> Vec<Seed> {
    let t = "pin_recovery";
    // A syntactically valid raw response (index 2) that is not guardian 2's answer.
    let mut raw = vec![0u8, 1, 0, 2];
    raw.extend(crate::pin::seed_key(b"raw point").public_key().to_bytes());
    raw.extend(crate::pin::seed_key(b"raw c").to_bytes().as_slice());
    raw.extend(crate::pin::seed_key(b"raw s").to_bytes().as_slice());
    raw.extend([0, 0, 0, 2]);
    vec![
        seed(t, "two-honest", vec![0, 0, 0, 0, 1]),
        seed(t, "three-honest", vec![0, 0, 0, 0, 1, 0, 2]),
        seed(t, "wrong-pin", vec![1, 0, 0, 0, 1]),
        seed(t, "one-honest", vec![0, 0, 2]),
        seed(t, "other-blinded", vec![0, 4, 0, 0, 1, 0, 2]),
        seed(t, "bad-proof", vec![0, 3, 0, 5, 7, 32, 0, 1, 0, 2]),
        seed(t, "bad-point", vec![0, 3, 1, 0, 1, 3, 9, 0, 0]),
        seed(t, "relabelled", vec![0, 2, 0, 2, 0, 1, 0, 2]),
        seed(t, "unknown-index", vec![0, 2, 0, 9, 0, 1, 0, 2]),
        seed(t, "repeated", vec![0, 0, 1, 0, 1, 0, 2]),
        seed(t, "raw", raw),
        seed(
            t,
            "share-checks",
            vec![0, 5, 1, 3, 0x10, 5, 0, 0, 0, 5, 2, 33],
        ),
        seed(
            t,
            "token-checks",
            vec![1, 6, 0, 5, 1, 6, 1, 32, 0, 0, 0, 0, 2],
        ),
    ]
}

pub(super) fn pin_local_verifiers() -> Vec<Seed> {
    use sealpost_pin::{normalize::normalize, reminder::ReminderState, stretch::Argon2Params};
    let t = "pin_local_verifier";
    let v = sealpost_pin::hazmat::local_verifier_with_salt(
        &normalize("123456").expect("pin"),
        &Argon2Params::testing(),
        [0x5a; 16],
    )
    .expect("verifier");
    let mut s = ReminderState::new(1_700_000_000);
    s.record_result(false, 1_700_000_100);
    let mut program = s.encode().to_vec();
    // Wrong answers a minute apart until the back-off caps, then correct ones a day apart.
    for _ in 0..10 {
        program.extend([0x02, 0x00, 0x1e]);
    }
    for _ in 0..5 {
        program.extend([0xff, 0x02, 0xa6]);
    }
    vec![
        seed(t, "local-verifier", v.to_bytes().to_vec()),
        seed(t, "reminder-new", ReminderState::new(0).encode().to_vec()),
        seed(t, "reminder-failed", s.encode().to_vec()),
        seed(t, "reminder-program", program),
        seed(t, "program-only", vec![0x03, 0x10, 0x00, 0x02, 0x00, 0x01]),
    ]
}

pub(super) fn pin_frames() -> Vec<Seed> {
    use crate::pin::{PIN_REQUEST_KINDS, PIN_RESPONSE_KINDS, pin_fixture};
    use sealpost_wire::relay::{CredentialScope, GuardianCredential, Request, Response};
    let t = "pin_frames";
    let f = fixture();
    let pf = pin_fixture();
    let acct = AccountId::new(crate::pin::PIN_ACCOUNT).expect("seed account");
    let credential = |scope| GuardianCredential {
        account: acct.clone(),
        scope,
        expires_at: crate::fixture::NOW + 3600,
        issuer: [0x11; 32],
        signature: [0x22; 64],
    };
    let g = &pf.enrollment.guardians[0];
    let mut share = [0u8; 33];
    share.copy_from_slice(g.share.to_bytes().as_slice());
    let (z, proof) = g
        .share
        .key()
        .evaluate(pf.right.blinded(), &mut rng_from(b"seed", b""));
    let requests = [
        Request::Register {
            account: acct.clone(),
            code: *b"123456",
            identity: f.bob.public().to_wire(),
            signature: [0x33; 64],
            reglock: Some([0x44; 32]),
        },
        Request::SetRegistrationLock { token: [0x44; 32] },
        Request::ClearRegistrationLock,
        Request::GetGuardianCredential,
        Request::VaultStore {
            credential: credential(CredentialScope::Owner),
            share,
            success_verifier: g.success_verifier,
            record: pf.record_bytes.clone(),
        },
        Request::VaultFetch {
            credential: credential(CredentialScope::Recovery),
        },
        Request::VaultEvaluate {
            credential: credential(CredentialScope::Recovery),
            vault_id: *pf.enrollment.record.vault_id(),
            blinded: pf.right.blinded().to_bytes(),
        },
        Request::VaultConfirm {
            credential: credential(CredentialScope::Recovery),
            vault_id: *pf.enrollment.record.vault_id(),
            token: *pf.tokens[0].as_bytes(),
        },
        Request::VaultDelete {
            credential: credential(CredentialScope::Owner),
        },
    ];
    let responses = [
        Response::RegistrationLockSet,
        Response::RegistrationLockCleared,
        Response::Credential(credential(CredentialScope::Owner)),
        Response::VaultStored,
        Response::Vault {
            index: 1,
            attempts_remaining: 10,
            record: pf.record_bytes.clone(),
        },
        Response::VaultEvaluated {
            index: 1,
            evaluated: z.to_bytes(),
            proof: proof.to_bytes(),
            attempts_remaining: 9,
        },
        Response::VaultConfirmed {
            attempts_remaining: 10,
        },
        Response::VaultDeleted,
        Response::RegistrationLocked {
            lapses_in: 604_800,
            attempts_remaining: 10,
            credential: credential(CredentialScope::Recovery),
        },
    ];
    let mut out = Vec::new();
    let frames = requests
        .iter()
        .map(Request::encode)
        .chain(responses.iter().map(Response::encode));
    for (sel, frame) in frames.enumerate() {
        let body = &frame[4..];
        let kind = body[1];
        let table = if sel < PIN_REQUEST_KINDS.len() {
            PIN_REQUEST_KINDS[sel]
        } else {
            PIN_RESPONSE_KINDS[sel - PIN_REQUEST_KINDS.len()]
        };
        assert_eq!(kind, table, "seed order matches the kind table");
        let mut bytes = vec![sel as u8];
        bytes.extend_from_slice(&body[2..]);
        out.push(seed(t, format!("{kind:02x}"), bytes));
    }
    out
}
