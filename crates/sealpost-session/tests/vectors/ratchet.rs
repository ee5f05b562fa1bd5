//! The ratchet transcript (spec/vectors/ratchet.json; session.md section 6).

use super::*;

// ---------------------------------------------------------------------------------------
// Ratchet transcript.
// ---------------------------------------------------------------------------------------

pub(crate) const MESSAGES: [&[u8]; 15] = [
    b"Hi, where is my order #1234?",
    b"It was supposed to arrive on Monday.",
    b"The tracking page only says 'label created'.",
    b"Hello! Let me check that for you.",
    b"Could you confirm the shipping address?",
    b"42 Elm Street, Springfield.",
    b"(this message is lost in transit and never delivered)",
    b"Apartment 3B.",
    b"Thanks. The parcel left the warehouse this morning.",
    b"Great, thank you!",
    b"Do you have a tracking number?",
    b"You will get an update by email too.",
    b"Tracking number: SP-000-1234-5678.",
    b"",
    b"Is there anything else I can help you with today? Our support desk is open from 8am to \
      8pm on weekdays and from 10am to 4pm on weekends; you can also reply to this chat at any \
      time and we will get back to you as soon as possible.",
];

/// (party, action, message index). Alice sends three prekey messages before Bob answers;
/// messages 2, 4, 7 and 10 overtake earlier ones; message 6 is never delivered.
const SCHEDULE: [(&str, &str, usize); 29] = [
    ("alice", "send", 0),
    ("alice", "send", 1),
    ("alice", "send", 2),
    ("bob", "deliver", 0),
    ("bob", "deliver", 2),
    ("bob", "send", 3),
    ("bob", "send", 4),
    ("alice", "deliver", 4),
    ("alice", "deliver", 3),
    ("bob", "deliver", 1),
    ("alice", "send", 5),
    ("alice", "send", 6),
    ("alice", "send", 7),
    ("bob", "deliver", 7),
    ("bob", "deliver", 5),
    ("bob", "send", 8),
    ("alice", "send", 9),
    ("alice", "deliver", 8),
    ("alice", "send", 10),
    ("bob", "send", 11),
    ("bob", "deliver", 10),
    ("bob", "deliver", 9),
    ("alice", "deliver", 11),
    ("bob", "send", 12),
    ("alice", "deliver", 12),
    ("alice", "send", 13),
    ("bob", "deliver", 13),
    ("bob", "send", 14),
    ("alice", "deliver", 14),
];

#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) party: String,
    pub(crate) action: String,
    pub(crate) message: usize,
}

pub(crate) struct RatchetInputs {
    pub(crate) events: Vec<Event>,
    pub(crate) plaintexts: Vec<Vec<u8>>,
    /// Recorded RNG draws per event (check mode); `None` derives fresh labelled ones.
    pub(crate) draws: Option<Vec<Vec<Vec<u8>>>>,
}

fn ratchet_inputs() -> RatchetInputs {
    if write_mode() {
        return RatchetInputs {
            events: SCHEDULE
                .iter()
                .map(|(p, a, m)| Event {
                    party: (*p).into(),
                    action: (*a).into(),
                    message: *m,
                })
                .collect(),
            plaintexts: MESSAGES.iter().map(|m| m.to_vec()).collect(),
            draws: None,
        };
    }
    let file = load("ratchet.json");
    let events: Vec<&Value> = field(&file, "events").as_array().unwrap().iter().collect();
    let messages = field(&file, "messages").as_array().unwrap();
    RatchetInputs {
        events: events
            .iter()
            .map(|e| Event {
                party: str_at(e, "party").into(),
                action: str_at(e, "action").into(),
                message: usize::try_from(u64_at(e, "message")).unwrap(),
            })
            .collect(),
        plaintexts: messages.iter().map(|m| bytes_at(m, "plaintext")).collect(),
        draws: Some(
            events
                .iter()
                .map(|e| match e.get("rng_draws") {
                    Some(Value::Array(d)) => d.iter().map(bytes_of).collect(),
                    _ => Vec::new(),
                })
                .collect(),
        ),
    }
}

/// Both sessions (API state bytes, since sessions are not `Clone`, and reference) after
/// one event.
pub(crate) struct Snapshot {
    pub(crate) alice: Vec<u8>,
    pub(crate) bob: Option<Vec<u8>>,
    pub(crate) ref_alice: RefParty,
    pub(crate) ref_bob: Option<RefParty>,
}

pub(crate) fn state_of(s: &Session) -> Vec<u8> {
    hazmat::to_state_bytes(s).to_vec()
}

pub(crate) fn restore(state: &[u8]) -> Session {
    hazmat::from_state_bytes(state).unwrap()
}

pub(crate) struct Transcript {
    pub(crate) json: Value,
    pub(crate) snapshots: Vec<Snapshot>,
    pub(crate) wire: Vec<Vec<u8>>,
    pub(crate) draws: Vec<Vec<Vec<u8>>>,
}

fn build_ratchet(hs: &HsInputs, ri: &RatchetInputs) -> Transcript {
    assert_eq!(
        ri.plaintexts.first(),
        Some(&hs.plaintext),
        "message 0 of ratchet.json is the first message of handshake.json case 0"
    );
    let Setup {
        bob: bob_identity,
        mut store,
        alice_session,
        r,
        ..
    } = setup(hs);
    let mut alice = alice_session;
    let mut bob: Option<Session> = None;
    let mut ref_alice = r.initiator(hs);
    let mut ref_bob: Option<RefParty> = None;

    let count = ri.plaintexts.len();
    let mut messages: Vec<Value> = vec![Value::Null; count];
    let mut wire: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut ratchet_messages: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut delivered: Vec<Option<usize>> = vec![None; count];
    let mut events = Vec::new();
    let mut snapshots = Vec::new();
    let mut all_draws = Vec::new();

    let initial = json!({
        "alice": ref_alice.summary(),
        "bob": r.responder(hs).summary(),
    });

    for (step, ev) in ri.events.iter().enumerate() {
        let idx = ev.message;
        assert!(idx < count, "event {step}: no message {idx}");
        let is_alice = match ev.party.as_str() {
            "alice" => true,
            "bob" => false,
            other => panic!("event {step}: unknown party {other}"),
        };
        let plaintext = &ri.plaintexts[idx];
        let mut record =
            json!({ "step": step, "party": ev.party, "action": ev.action, "message": idx });
        let mut draws_used = Vec::new();
        match ev.action.as_str() {
            "send" => {
                assert!(wire[idx].is_none(), "message {idx} is sent twice");
                let (session, model) = if is_alice {
                    (&mut alice, &mut ref_alice)
                } else {
                    (
                        bob.as_mut().expect("Bob sends before he has a session"),
                        ref_bob.as_mut().unwrap(),
                    )
                };
                let before = model.summary();
                let bytes = session.encrypt(plaintext).unwrap().encode();
                let (mut m, rm, ref_bytes) = model.encrypt(plaintext);
                assert_eq!(
                    hex::encode(&bytes),
                    hex::encode(&ref_bytes),
                    "message {idx}: Session::encrypt differs from the reference"
                );
                assert_same_state(session, model, &format!("step {step}"));
                m["index"] = json!(idx);
                m["sender"] = json!(ev.party);
                m["recipient"] = json!(if is_alice { "bob" } else { "alice" });
                m["plaintext"] = hx(plaintext);
                m["plaintext_utf8"] = Value::String(String::from_utf8_lossy(plaintext).into());
                m["sent_at_step"] = json!(step);
                messages[idx] = m;
                wire[idx] = Some(bytes);
                ratchet_messages[idx] = Some(rm);
                record["state_before"] = before;
                record["state_after"] = model.summary();
            }
            "deliver" => {
                let bytes = wire[idx]
                    .clone()
                    .unwrap_or_else(|| panic!("event {step}: message {idx} was not sent yet"));
                assert!(delivered[idx].is_none(), "message {idx} is delivered twice");
                assert_ne!(
                    messages[idx]["sender"], ev.party,
                    "event {step}: message {idx} delivered to its sender"
                );
                let respond_now = !is_alice && bob.is_none();
                let mut rng = if respond_now {
                    TestRng::fifo(vec![hs.responder_ratchet_key.to_vec()])
                } else {
                    match &ri.draws {
                        Some(d) => TestRng::fifo(d[step].clone()),
                        None => TestRng::deriving(format!("ratchet/step{step}/{}", ev.party)),
                    }
                };
                let (api_plaintext, session): (Vec<u8>, &Session) = if respond_now {
                    let SessionMessage::PreKey(pkm) = SessionMessage::decode(&bytes).unwrap()
                    else {
                        panic!("event {step}: Bob's first message must be a PreKeyMessage");
                    };
                    let (s, pt) = respond(
                        &mut rng,
                        &bob_identity,
                        &bob_addresses(hs),
                        &mut store,
                        &pkm,
                        SessionConfig::default(),
                    )
                    .unwrap();
                    ref_bob = Some(r.responder(hs));
                    (pt, bob.insert(s))
                } else {
                    let s = if is_alice {
                        &mut alice
                    } else {
                        bob.as_mut().unwrap()
                    };
                    let pt = s
                        .decrypt_bytes(&mut rng, &bytes)
                        .unwrap_or_else(|e| panic!("event {step}: message {idx}: {e}"));
                    (pt, &*s)
                };
                rng.assert_used_up(&format!("event {step}"));
                draws_used = rng.drawn;
                assert_eq!(
                    &api_plaintext, plaintext,
                    "message {idx}: decrypted plaintext"
                );
                let model = if is_alice {
                    &mut ref_alice
                } else {
                    ref_bob.as_mut().unwrap()
                };
                let before = model.summary();
                let (ref_plaintext, receive) =
                    model.decrypt(ratchet_messages[idx].as_ref().unwrap(), &draws_used);
                assert_eq!(&ref_plaintext, plaintext);
                assert_same_state(session, model, &format!("step {step}"));
                delivered[idx] = Some(step);
                record["rng_draws"] = json!(draws_used.iter().map(|d| hx(d)).collect::<Vec<_>>());
                record["receive"] = receive;
                record["plaintext"] = hx(plaintext);
                record["state_before"] = before;
                record["state_after"] = model.summary();
            }
            other => panic!("event {step}: unknown action {other}"),
        }
        events.push(record);
        all_draws.push(draws_used);
        snapshots.push(Snapshot {
            alice: state_of(&alice),
            bob: bob.as_ref().map(state_of),
            ref_alice: ref_alice.clone(),
            ref_bob: ref_bob.clone(),
        });
    }

    for (idx, m) in messages.iter_mut().enumerate() {
        assert!(!m.is_null(), "message {idx} is never sent");
        m["delivered_at_step"] = delivered[idx].map_or(Value::Null, |s| json!(s));
    }
    let wire: Vec<Vec<u8>> = wire.into_iter().map(Option::unwrap).collect();

    // Every delivered message is rejected when replayed, and the session does not change.
    let mut alice_final = restore(&state_of(&alice));
    let mut bob_final = restore(&state_of(bob.as_ref().unwrap()));
    for (idx, step) in delivered.iter().enumerate() {
        if step.is_none() {
            continue;
        }
        let to_alice = messages[idx]["recipient"] == "alice";
        let s = if to_alice {
            &mut alice_final
        } else {
            &mut bob_final
        };
        let before = state_of(s);
        let mut rng = TestRng::fifo(Vec::new());
        assert!(
            s.decrypt_bytes(&mut rng, &wire[idx]).is_err(),
            "replayed message {idx} was accepted"
        );
        assert_eq!(before, state_of(s));
    }
    // Undelivered messages still decrypt late with their stored skipped keys.
    for (idx, step) in delivered.iter().enumerate() {
        if step.is_some() {
            continue;
        }
        let mut s = if messages[idx]["recipient"] == "alice" {
            restore(&state_of(&alice))
        } else {
            restore(&state_of(bob.as_ref().unwrap()))
        };
        let before = s.skipped_key_count();
        let mut rng = TestRng::fifo(Vec::new());
        assert_eq!(
            s.decrypt_bytes(&mut rng, &wire[idx]).unwrap(),
            ri.plaintexts[idx]
        );
        assert_eq!(s.skipped_key_count() + 1, before);
    }

    let json = json!({
        "description": "Double Ratchet transcript continuing handshake.json case \
            `with_one_time_prekey` (message 0 is that case's first message). KDF_RK(rk, dh) = \
            HKDF-SHA256(salt = rk, IKM = dh, info = \"Sealpost_Ratchet_v1\", L = 64) -> (rk', ck); \
            KDF_CK(ck): mk = HMAC-SHA256(ck, 0x01), ck' = HMAC-SHA256(ck, 0x02), nk = \
            HMAC-SHA256(ck, 0x03). Each message is \
            ChaCha20-Poly1305 with key mk, nonce = HMAC-SHA256(nk, header_fields || \
            plaintext)[0..12] where nk = HMAC-SHA256(ck, 0x03) and header_fields = ratchet public \
            key || PN u32 BE || N u32 BE, AD = session AD || 54-byte header (0x02, 0x01, \
            header_fields, nonce); a ratchet message is header || ciphertext || tag. Each derived \
            value `x` has an `x_kdf` entry naming its derivation. Alice's messages are sent as PreKeyMessages until she has decrypted \
            a reply. `events` is the order in which messages are sent and delivered; delivery is \
            out of order (messages 2, 4, 7 and 10 overtake earlier ones; 1, 3, 5 and 9 are then \
            decrypted with stored skipped message keys, 9 from a receiving chain the recipient had \
            already left) and message 6 is never delivered. rng_draws are the ratchet private keys \
            the receiving session drew from its RNG (one per DH ratchet step). state_before / \
            state_after summarize the acting party's ratchet state. Bytes are hex.",
        "handshake_case": hs.name,
        "session_ad": hx(&r.ad),
        "config": { "max_skip": SPEC_MAX_SKIP, "max_skipped_keys": SPEC_MAX_SKIPPED_KEYS },
        "initial_state": initial,
        "messages": messages,
        "events": events,
        "never_delivered": delivered
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| i)
            .collect::<Vec<_>>(),
    });
    Transcript {
        json,
        snapshots,
        wire,
        draws: all_draws,
    }
}

pub(crate) fn transcript() -> (Vec<HsInputs>, RatchetInputs, Transcript) {
    let hs = hs_inputs();
    let ri = ratchet_inputs();
    let t = build_ratchet(&hs[0], &ri);
    (hs, ri, t)
}

#[test]
fn ratchet_vectors() {
    let (_, ri, t) = transcript();
    assert!(ri.plaintexts.len() >= 12);
    write_or_check("ratchet.json", &t.json);
}
