//! The seeds are meaningful: together they drive the stateful and decryption targets
//! through every outcome the targets check (a harness whose checks never run proves nothing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealpost_fuzz::seeds;
use sealpost_fuzz::{Mutated, Stats, decrypt_arbitrary_outcome, ratchet_stateful_stats};

fn seeds_of(target: &str) -> Vec<seeds::Seed> {
    seeds::all()
        .into_iter()
        .filter(|s| s.target == target)
        .collect()
}

#[test]
fn stateful_seeds_reach_every_outcome() {
    let mut total = Stats::default();
    for s in seeds_of("ratchet_stateful") {
        let st = ratchet_stateful_stats(&s.bytes);
        eprintln!("{}: {st:?}", s.name);
        total.sent += st.sent;
        total.decrypted += st.decrypted;
        total.duplicate += st.duplicate;
        total.too_many_skipped += st.too_many_skipped;
        total.reflected += st.reflected;
        total.wrong_session += st.wrong_session;
        total.authentication += st.authentication;
        total.tamper_rejected += st.tamper_rejected;
        total.tamper_same_content += st.tamper_same_content;
        total.pickled += st.pickled;
        total.max_skipped_keys = total.max_skipped_keys.max(st.max_skipped_keys);
    }
    eprintln!("total: {total:?}");
    assert!(total.decrypted > 0 && total.duplicate > 0 && total.too_many_skipped > 0);
    assert!(total.reflected > 0 && total.wrong_session > 0 && total.authentication > 0);
    assert!(total.tamper_rejected > 0 && total.tamper_same_content > 0 && total.pickled > 0);
    // The skipped-key store was filled to its bound (and so evicted).
    assert_eq!(
        total.max_skipped_keys,
        sealpost_fuzz::fixture::MAX_SKIPPED_KEYS as usize
    );
}

#[test]
fn decrypt_seeds_reach_every_outcome() {
    let outcomes: Vec<_> = seeds_of("decrypt_arbitrary")
        .iter()
        .map(|s| decrypt_arbitrary_outcome(&s.bytes))
        .collect();
    eprintln!("{outcomes:?}");
    assert!(outcomes.iter().any(|o| o.raw_accepted));
    for m in [Mutated::Unchanged, Mutated::SameContent, Mutated::Rejected] {
        assert!(
            outcomes.iter().any(|o| o.mutated == m),
            "no seed gives {m:?}"
        );
    }
}

#[test]
fn handshake_and_bundle_seeds_are_valid() {
    use sealpost_fuzz::fixture::{bob_store, config, fixture, from_alice};
    use sealpost_session::{PreKeyBundle, PreKeyMessage, VerifiedBundle, respond};
    let f = fixture();
    for s in seeds_of("handshake_respond") {
        let msg = PreKeyMessage::decode(&s.bytes).expect("seed decodes");
        let (mut store, _) = bob_store(&f.bob);
        let mut rng = sealpost_fuzz::input::rng_from(b"test", &s.bytes);
        let result = respond(&mut rng, &f.bob, &from_alice(), &mut store, &msg, config());
        assert!(result.is_ok(), "{}: {result:?}", s.name);
    }
    for s in seeds_of("decode_bundle") {
        let bundle = PreKeyBundle::decode(&s.bytes).expect("seed decodes");
        assert!(VerifiedBundle::verify(&bundle).is_ok(), "{}", s.name);
    }
}

#[test]
fn ops_round_trip_through_their_encoding() {
    use sealpost_fuzz::Op;
    use sealpost_fuzz::input::ByteSource;
    let ops = [
        Op::Send { from: 1, len: 200 },
        Op::Burst { from: 0, count: 23 },
        Op::DeliverNext,
        Op::DeliverLast,
        Op::Deliver { index: 9 },
        Op::Drop { index: 255 },
        Op::Duplicate { index: 3 },
        Op::Tamper {
            index: 4,
            mutation: [1, 2, 3, 4],
        },
        Op::Reorder { i: 5, j: 6 },
        Op::Reflect { index: 7 },
        Op::Pickle { party: 1 },
    ];
    let program = Op::program(&ops);
    let mut src = ByteSource::new(&program);
    let read: Vec<Op> = ops.iter().map(|_| Op::read(&mut src)).collect();
    assert_eq!(read, ops);
    assert!(src.is_empty());
}

#[test]
fn relay_handler_seeds_reach_every_outcome() {
    use sealpost_fuzz::{RelayStats, relay_handler_stats};
    let mut total = RelayStats::default();
    for s in seeds_of("relay_handler") {
        let st = relay_handler_stats(&s.bytes);
        eprintln!("{}: {st:?}", s.name);
        total.registered += st.registered;
        total.authenticated += st.authenticated;
        total.stored += st.stored;
        total.bundles_with_one_time += st.bundles_with_one_time;
        total.accepted += st.accepted;
        total.acked += st.acked;
        total.activity += st.activity;
        for (k, v) in st.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    eprintln!("total: {total:?}");
    assert!(total.registered > 0 && total.authenticated > 0 && total.stored > 0);
    assert!(total.bundles_with_one_time > 0 && total.accepted > 0 && total.acked > 0);
    assert!(total.activity > 0, "no seed reaches an Activity answer");
    // Error codes (spec/relay.md section 6) the seeds must reach.
    for (code, name) in [
        (1, "Malformed"),
        (2, "UnsupportedVersion"),
        (4, "Unauthenticated"),
        (5, "AlreadyAuthenticated"),
        (7, "InvalidAccount"),
        (8, "CodeInvalid"),
        (9, "CodeAttemptsExceeded"),
        (10, "InvalidSignature"),
        (11, "AuthFailed"),
        (12, "UnknownAccount"),
        (13, "MismatchedDevices"),
        (14, "QueueFull"),
        (15, "InvalidPreKey"),
        (17, "UnknownRequest"),
    ] {
        assert!(total.errors.contains_key(&code), "no seed reaches {name}");
    }
}

#[test]
fn pin_recovery_seeds_reach_every_outcome() {
    use sealpost_fuzz::pin::pin_recovery_outcome;
    let outcomes: Vec<_> = seeds_of("pin_recovery")
        .iter()
        .map(|s| pin_recovery_outcome(&s.bytes))
        .collect();
    eprintln!("{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.recovered && o.faulty == 0));
    assert!(outcomes.iter().any(|o| o.recovered && o.faulty > 0));
    assert!(outcomes.iter().any(|o| o.rejected_wrong_pin));
    assert!(outcomes.iter().any(|o| o.not_enough && o.faulty > 0));
    assert!(outcomes.iter().any(|o| o.not_enough && o.faulty == 0));
    assert!(outcomes.iter().map(|o| o.share_checks).sum::<usize>() >= 2);
    assert!(outcomes.iter().map(|o| o.token_checks).sum::<usize>() >= 2);
}

#[test]
fn pin_seeds_decode() {
    use sealpost_pin::{reminder::ReminderState, vault::VaultRecord};
    use sealpost_wire::relay::{Request, Response};
    let records = seeds_of("pin_vault_record");
    let ok = records
        .iter()
        .filter(|s| VaultRecord::decode(&s.bytes).is_ok())
        .count();
    assert_eq!(ok, 4, "four valid records, the rest malformed");
    // Every PIN frame kind has a seed that decodes.
    for s in seeds_of("pin_frames") {
        let (is_request, body) = sealpost_fuzz::pin::pin_frame_body(&s.bytes).unwrap();
        let decoded = if is_request {
            Request::decode(&body).is_ok()
        } else {
            Response::decode(&body).is_ok()
        };
        assert!(decoded, "{}", s.name);
    }
    assert_eq!(seeds_of("pin_frames").len(), 18);
    assert!(
        seeds_of("pin_local_verifier")
            .iter()
            .any(|s| ReminderState::decode(&s.bytes).is_ok())
    );
}

/// The content seeds reach every kind the target re-encodes, every sync item, and each way
/// a sync content is refused (spec/client-store.md section 6.3).
#[test]
fn content_seeds_reach_every_sync_outcome() {
    use sealpost_wire::DecodeError;
    use sealpost_wire::content::{Content, ContentBody};
    let mut tags = std::collections::BTreeSet::new();
    let mut refusals = Vec::new();
    for s in seeds_of("content") {
        sealpost_fuzz::content(&s.bytes);
        match Content::decode(&s.bytes) {
            Ok(Content {
                body: ContentBody::Sync(items),
                ..
            }) => tags.extend(items.iter().map(|i| i.tag())),
            Ok(_) => {}
            Err(e) if s.name.starts_with("seed-sync-") => refusals.push(e),
            Err(_) => {}
        }
    }
    assert_eq!(tags.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    let reached = |f: fn(&DecodeError) -> bool| refusals.iter().any(f);
    assert!(reached(|e| matches!(
        e,
        DecodeError::UnknownType {
            what: "sync item",
            ..
        }
    )));
    assert!(reached(|e| matches!(
        e,
        DecodeError::TooMany {
            what: "sync items",
            ..
        }
    )));
    assert!(reached(|e| matches!(e, DecodeError::Truncated { .. })));
    assert!(reached(|e| matches!(e, DecodeError::TrailingBytes(_))));
}
