//! Property tests of the ratchet invariants: any delivery order and drop pattern within the
//! bounds decrypts everything delivered exactly once; everything else errors without a state
//! change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{assert_noop, established};
use proptest::prelude::*;
use sealpost_session::{DecryptError, PickleKey, Session, SessionConfig, SessionMessage};
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    Send {
        from_a: bool,
    },
    Deliver {
        to_b: bool,
        pick: usize,
    },
    Drop {
        to_b: bool,
        pick: usize,
    },
    Replay {
        to_b: bool,
        pick: usize,
    },
    Tamper {
        to_b: bool,
        pick: usize,
        byte: usize,
    },
    Repickle {
        a: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|from_a| Op::Send { from_a }),
        4 => (any::<bool>(), any::<usize>()).prop_map(|(to_b, pick)| Op::Deliver { to_b, pick }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_b, pick)| Op::Drop { to_b, pick }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_b, pick)| Op::Replay { to_b, pick }),
        1 => (any::<bool>(), any::<usize>(), any::<usize>())
            .prop_map(|(to_b, pick, byte)| Op::Tamper { to_b, pick, byte }),
        1 => any::<bool>().prop_map(|a| Op::Repickle { a }),
    ]
}

struct Party {
    session: Session,
    inbox: Vec<(SessionMessage, Vec<u8>)>,
    delivered: Vec<SessionMessage>,
    received: Vec<Vec<u8>>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_order_within_bounds_decrypts_exactly_once(ops in proptest::collection::vec(op(), 1..120)) {
        let mut rng = rand::rng();
        let (a, b) = established(SessionConfig::default());
        let mut parties = [
            Party { session: a, inbox: Vec::new(), delivered: Vec::new(), received: Vec::new() },
            Party { session: b, inbox: Vec::new(), delivered: Vec::new(), received: Vec::new() },
        ];
        let mut sent = [Vec::new(), Vec::new()];
        let mut counter = 0u32;
        for op in ops {
            match op {
                Op::Send { from_a } => {
                    let (s, r) = if from_a { (0, 1) } else { (1, 0) };
                    counter += 1;
                    let text = format!("msg {counter} from {s}").into_bytes();
                    let m = parties[s].session.encrypt(&text).unwrap();
                    parties[r].inbox.push((m, text.clone()));
                    sent[s].push(text);
                }
                Op::Deliver { to_b, pick } => {
                    let p = &mut parties[usize::from(to_b)];
                    if p.inbox.is_empty() { continue; }
                    let (m, text) = p.inbox.remove(pick % p.inbox.len());
                    let pt = p.session.decrypt(&mut rng, &m).unwrap();
                    prop_assert_eq!(&pt, &text);
                    p.received.push(pt);
                    p.delivered.push(m);
                }
                Op::Drop { to_b, pick } => {
                    let p = &mut parties[usize::from(to_b)];
                    if !p.inbox.is_empty() {
                        let i = pick % p.inbox.len();
                        p.inbox.remove(i);
                    }
                }
                Op::Replay { to_b, pick } => {
                    let p = &mut parties[usize::from(to_b)];
                    if p.delivered.is_empty() { continue; }
                    let m = p.delivered[pick % p.delivered.len()].clone();
                    let err = assert_noop(&mut p.session, |s| s.decrypt(&mut rng, &m));
                    prop_assert!(matches!(err, DecryptError::Duplicate { .. }), "{:?}", err);
                }
                Op::Tamper { to_b, pick, byte } => {
                    let p = &mut parties[usize::from(to_b)];
                    if p.inbox.is_empty() { continue; }
                    let mut bytes = p.inbox[pick % p.inbox.len()].0.encode();
                    let i = byte % bytes.len();
                    bytes[i] ^= 0x20;
                    assert_noop(&mut p.session, |s| s.decrypt_bytes(&mut rng, &bytes));
                }
                Op::Repickle { a } => {
                    let p = &mut parties[usize::from(!a)];
                    let key = PickleKey::new([3; 32]);
                    let pickle = p.session.pickle(&mut rng, &key);
                    let restored = Session::unpickle(&pickle, &key).unwrap();
                    prop_assert_eq!(&*sealpost_session::hazmat::to_state_bytes(&restored), &*sealpost_session::hazmat::to_state_bytes(&p.session));
                    p.session = restored;
                }
            }
        }
        // Deliver everything still in flight, in reverse order: all of it decrypts.
        for p in &mut parties {
            while let Some((m, text)) = p.inbox.pop() {
                prop_assert_eq!(p.session.decrypt(&mut rng, &m).unwrap(), text.clone());
                p.received.push(text);
            }
        }
        // Nothing was received twice, and nothing was received that was not sent.
        for (r, s) in [(0usize, 1usize), (1, 0)] {
            let mut got = parties[r].received.clone();
            got.sort();
            let before = got.len();
            got.dedup();
            prop_assert_eq!(before, got.len());
            for g in &got { prop_assert!(sent[s].contains(g)); }
        }
    }

    /// A single chain with small bounds, against an exact model of what must be accepted.
    #[test]
    fn bounds_match_the_model(order in Just((0u32..30).collect::<Vec<_>>()).prop_shuffle(),
                               deliver in proptest::collection::vec(any::<bool>(), 30)) {
        let mut rng = rand::rng();
        let (max_skip, cap) = (6u32, 10usize);
        let (mut a, mut b) = established(SessionConfig::new(max_skip, cap as u32).unwrap());
        let msgs: Vec<_> = (0..30).map(|i| a.encrypt(format!("n{i}").as_bytes()).unwrap()).collect();
        // Model: next expected number and stored skipped numbers (oldest first).
        let mut nr = 0u32;
        let mut stored: VecDeque<u32> = VecDeque::new();
        for (k, &n) in order.iter().enumerate() {
            if !deliver[k] { continue; }
            let m = &msgs[n as usize];
            if let Some(pos) = stored.iter().position(|&s| s == n) {
                prop_assert_eq!(b.decrypt(&mut rng, m).unwrap(), format!("n{n}").into_bytes());
                stored.remove(pos);
            } else if n < nr {
                let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, m));
                prop_assert_eq!(err, DecryptError::Duplicate { message_number: n });
            } else if n - nr > max_skip {
                let err = assert_noop(&mut b, |s| s.decrypt(&mut rng, m));
                prop_assert_eq!(err, DecryptError::TooManySkipped { skipped: u64::from(n - nr), max_skip });
            } else {
                prop_assert_eq!(b.decrypt(&mut rng, m).unwrap(), format!("n{n}").into_bytes());
                stored.extend(nr..n);
                while stored.len() > cap { stored.pop_front(); }
                nr = n + 1;
            }
            prop_assert_eq!(b.skipped_key_count(), stored.len());
        }
    }
}
