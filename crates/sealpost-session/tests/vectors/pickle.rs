//! Pickles (spec/vectors/pickle.json, pickle_v1.json; session.md sections 8–9).

use super::*;

// ---------------------------------------------------------------------------------------
// Pickles.
// ---------------------------------------------------------------------------------------

struct PickleCase {
    name: String,
    party: String,
    after_step: usize,
    key: [u8; 32],
    salt: [u8; 32],
}

fn pickle_cases() -> Vec<PickleCase> {
    if write_mode() {
        return [
            ("alice_awaiting_reply", "alice", 2),
            ("bob_with_skipped_keys", "bob", 25),
        ]
        .iter()
        .map(|(name, party, after_step)| PickleCase {
            name: (*name).into(),
            party: (*party).into(),
            after_step: *after_step,
            key: seed32(&format!("pickle/{name}/key")),
            salt: seed32(&format!("pickle/{name}/salt")),
        })
        .collect();
    }
    let file = load("pickle.json");
    field(&file, "cases")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| PickleCase {
            name: str_at(c, "name").into(),
            party: str_at(c, "party").into(),
            after_step: usize::try_from(u64_at(c, "after_step")).unwrap(),
            key: arr(c, "pickle_key"),
            salt: arr(c, "salt"),
        })
        .collect()
}

fn build_pickle(case: &PickleCase, ri: &RatchetInputs, t: &Transcript) -> Value {
    let snap = &t.snapshots[case.after_step];
    let (session, model) = match case.party.as_str() {
        "alice" => (restore(&snap.alice), &snap.ref_alice),
        "bob" => (
            restore(snap.bob.as_ref().expect("Bob has no session yet")),
            snap.ref_bob.as_ref().unwrap(),
        ),
        other => panic!("unknown party {other}"),
    };
    let state = state_of(&session);
    assert_eq!(state, model.encode_state(), "{}: state encoding", case.name);

    // Reference pickle.
    let mut okm = [0u8; 44];
    kdf::hkdf_sha256(&case.salt, &case.key, SPEC_PICKLE_INFO, &mut okm).unwrap();
    let aead_key: [u8; 32] = okm[..32].try_into().unwrap();
    let aead_nonce: [u8; 12] = okm[32..].try_into().unwrap();
    let mut aead_ad = SPEC_PICKLE_INFO.to_vec();
    aead_ad.push(0x01);
    let mut ref_pickle = vec![0x01];
    ref_pickle.extend_from_slice(&case.salt);
    ref_pickle.extend_from_slice(&aead::seal(&aead_key, &aead_nonce, &aead_ad, &state));

    let key = PickleKey::new(case.key);
    let pickle = hazmat::pickle_with_salt(&session, &key, &case.salt);
    assert_eq!(
        hex::encode(&pickle),
        hex::encode(&ref_pickle),
        "{}: pickle",
        case.name
    );
    let mut rng = TestRng::fifo(vec![case.salt.to_vec()]);
    assert_eq!(
        session.pickle(&mut rng, &key),
        pickle,
        "pickle() draws the salt"
    );
    rng.assert_used_up("Session::pickle");

    // Wrong key and tampering are rejected.
    assert!(Session::unpickle(&pickle, &PickleKey::new([0x55; 32])).is_err());
    for pos in [0, 1, 40, pickle.len() - 1] {
        let mut bad = pickle.clone();
        bad[pos] ^= 0x01;
        assert!(
            Session::unpickle(&bad, &key).is_err(),
            "tampered byte {pos}"
        );
    }

    let mut restored = Session::unpickle(&pickle, &key).unwrap();
    assert_eq!(state_of(&restored), state);

    // The restored session decrypts the party's next message of the transcript.
    let (next_step, next) = ri
        .events
        .iter()
        .enumerate()
        .skip(case.after_step + 1)
        .find(|(_, e)| e.party == case.party)
        .expect("no later event for this party");
    assert_eq!(
        next.action, "deliver",
        "{}: the next event must be a delivery",
        case.name
    );
    let draws = t.draws[next_step].clone();
    let mut rng = TestRng::fifo(draws.clone());
    let plaintext = restored
        .decrypt_bytes(&mut rng, &t.wire[next.message])
        .unwrap();
    rng.assert_used_up("decrypt after unpickle");
    assert_eq!(plaintext, ri.plaintexts[next.message]);
    let later = &t.snapshots[next_step];
    let live = if case.party == "alice" {
        &later.alice
    } else {
        later.bob.as_ref().unwrap()
    };
    assert_eq!(
        &state_of(&restored),
        live,
        "{}: the restored session diverged from the live one",
        case.name
    );

    json!({
        "name": case.name,
        "party": case.party,
        "after_step": case.after_step,
        "pickle_key": hx(&case.key),
        "salt": hx(&case.salt),
        "aead_key": hx(&aead_key),
        "aead_nonce": hx(&aead_nonce),
        "aead_ad": hx(&aead_ad),
        "state": hx(&state),
        "pickle": hx(&pickle),
        "next_message": {
            "step": next_step,
            "message": next.message,
            "encoded_message": hx(&t.wire[next.message]),
            "rng_draws": draws.iter().map(|d| hx(d)).collect::<Vec<_>>(),
            "plaintext": hx(&plaintext),
        },
    })
}

#[test]
fn pickle_vectors() {
    let (_, ri, t) = transcript();
    let cases: Vec<Value> = pickle_cases()
        .iter()
        .map(|c| build_pickle(c, &ri, &t))
        .collect();
    let file = json!({
        "description": "Encrypted session pickles of sessions from ratchet.json, taken after event \
            `after_step` of its transcript. pickle = 0x01 || salt(32) || ChaCha20-Poly1305(k, n, \
            AD = \"Sealpost_Pickle_v1\" || 0x01, state) with k(32) || n(12) = HKDF-SHA256(salt, \
            IKM = pickle_key, info = \"Sealpost_Pickle_v1\", L = 44); `state` is \
            Session::to_state_bytes. Unpickling must give back exactly `state`, and the restored \
            session must decrypt next_message (the party's next event in the transcript), drawing \
            next_message.rng_draws, to next_message.plaintext. `state` is the version-2 state \
            encoding (spec/session.md, \"Session state encoding\"). pickle_v1.json holds \
            version-1 pickles that must keep loading (as legacy sessions). Bytes are hex.",
        "cases": cases,
    });
    write_or_check("pickle.json", &file);
}

/// Version-1 pickles (written before session protocol version 2) keep loading, as legacy
/// sessions: their state re-encodes to exactly the recorded version-1 bytes, they refuse to
/// encrypt with a typed error, and the version-1 message recorded with them no longer
/// decodes. This file is never rewritten.
#[test]
fn pickle_v1_vectors_still_load_as_legacy_sessions() {
    let file = load("pickle_v1.json");
    let cases = field(&file, "cases").as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        let name = str_at(c, "name");
        let key = PickleKey::new(arr(c, "pickle_key"));
        let state = bytes_at(c, "state");
        assert_eq!(state[0], 0x01, "{name}: a version-1 state");
        let mut session = Session::unpickle(&bytes_at(c, "pickle"), &key)
            .unwrap_or_else(|e| panic!("{name}: version-1 pickle does not load: {e}"));
        assert!(session.is_legacy(), "{name}");
        assert_eq!(session.remote_address(), None);
        assert_eq!(state_of(&session), state, "{name}: legacy state re-encodes");
        assert_eq!(
            hazmat::from_state_bytes(&state).map(|s| s.is_legacy()),
            Ok(true)
        );
        let before = state_of(&session);
        assert_eq!(session.encrypt(b"x"), Err(EncryptError::LegacySession));
        let mut rng = TestRng::fifo(Vec::new());
        assert_eq!(
            session.decrypt_bytes(&mut rng, &bytes_at(c, "next_message.encoded_message")),
            Err(DecryptError::Decode(DecodeError::UnsupportedVersion(1)))
        );
        assert_eq!(
            state_of(&session),
            before,
            "{name}: a legacy session changed"
        );
        // The identities of the version-1 session are still there for the client.
        assert_ne!(session.local_identity(), session.remote_identity());
    }
}
