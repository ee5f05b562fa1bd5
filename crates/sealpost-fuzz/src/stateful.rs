//! `ratchet_stateful`: a program of sends, deliveries, drops, duplicates, tampering,
//! reordering, reflection and pickling run on Alice and Bob, with every outcome checked
//! against an independent model of the Double Ratchet (Signal spec, section 3) with
//! MAX_SKIP = 16 and at most 32 stored skipped keys (oldest evicted first).

use crate::decrypt::{mutate, ratchet_part, same_content};
use crate::fixture::{MAX_SKIP, MAX_SKIPPED_KEYS, fixture, pickle_key, wrong_pickle_key};
use crate::input::{ByteSource, rng_from};
use rand::rngs::StdRng;
use sealpost_session::hazmat;
use sealpost_session::{DecryptError, Session, SessionMessage};
use std::collections::VecDeque;

/// Most operations interpreted per input.
pub const MAX_OPS: usize = 256;
/// Most messages sent per input (later sends are skipped).
pub const MAX_MESSAGES: usize = 256;
/// Remote ratchet keys a session remembers to classify late duplicates. This mirrors
/// `MAX_PREVIOUS_RATCHET_KEYS` in sealpost-session, which is not exported; if it changes
/// there, the model's predictions for very old chains (`Duplicate` vs. any error) change.
const PREVIOUS_KEYS: usize = 8;
const OPCODES: u8 = 11;

/// One step of a program. Indices are taken modulo the length of the list they index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `from` (0 = Alice, 1 = Bob) encrypts a message with `len` extra plaintext bytes.
    Send { from: u8, len: u8 },
    /// `from` sends `1 + count % 24` messages in a row.
    Burst { from: u8, count: u8 },
    /// Deliver the oldest message in flight.
    DeliverNext,
    /// Deliver the newest message in flight.
    DeliverLast,
    /// Deliver the in-flight message at `index`.
    Deliver { index: u8 },
    /// Lose the in-flight message at `index`.
    Drop { index: u8 },
    /// Deliver again a message delivered (or attempted) before.
    Duplicate { index: u8 },
    /// Mutate a copy of any sent message and deliver it; the original is untouched.
    Tamper { index: u8, mutation: [u8; 4] },
    /// Swap two in-flight messages.
    Reorder { i: u8, j: u8 },
    /// Deliver the in-flight message at `index` back to its own sender.
    Reflect { index: u8 },
    /// Pickle `party` and replace it by the unpickled copy.
    Pickle { party: u8 },
}

impl Op {
    /// The bytes [`Op::read`] parses back into this op.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Op::Send { from, len } => vec![0, from, len],
            Op::Burst { from, count } => vec![1, from, count],
            Op::DeliverNext => vec![2],
            Op::DeliverLast => vec![3],
            Op::Deliver { index } => vec![4, index],
            Op::Drop { index } => vec![5, index],
            Op::Duplicate { index } => vec![6, index],
            Op::Tamper { index, mutation } => {
                let mut v = vec![7, index];
                v.extend_from_slice(&mutation);
                v
            }
            Op::Reorder { i, j } => vec![8, i, j],
            Op::Reflect { index } => vec![9, index],
            Op::Pickle { party } => vec![10, party],
        }
    }

    /// Parses one op; any byte string is a program.
    pub fn read(src: &mut ByteSource<'_>) -> Op {
        match src.u8() % OPCODES {
            0 => Op::Send {
                from: src.u8(),
                len: src.u8(),
            },
            1 => Op::Burst {
                from: src.u8(),
                count: src.u8(),
            },
            2 => Op::DeliverNext,
            3 => Op::DeliverLast,
            4 => Op::Deliver { index: src.u8() },
            5 => Op::Drop { index: src.u8() },
            6 => Op::Duplicate { index: src.u8() },
            7 => Op::Tamper {
                index: src.u8(),
                mutation: [src.u8(), src.u8(), src.u8(), src.u8()],
            },
            8 => Op::Reorder {
                i: src.u8(),
                j: src.u8(),
            },
            9 => Op::Reflect { index: src.u8() },
            _ => Op::Pickle { party: src.u8() },
        }
    }

    /// Encodes a whole program.
    pub fn program(ops: &[Op]) -> Vec<u8> {
        ops.iter().flat_map(Op::encode).collect()
    }
}

/// A genuine message and what it carried.
#[derive(Clone, Debug)]
struct Sent {
    from: usize,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    ratchet_key: [u8; 32],
    pn: u32,
    n: u32,
    prekey: bool,
}

/// What the model says a decryption must do.
#[derive(Clone, Debug)]
enum Expect {
    Ok(Box<Model>),
    Duplicate,
    TooManySkipped(u64),
    Reflected,
    WrongSession,
    /// A message under a ratchet key that is neither current nor remembered (a chain older
    /// than the last 8, or one of our own old keys) is processed as a new ratchet key and
    /// fails authentication (spec/session.md 6.6), unless a skip limit rejects it first.
    Authentication,
}

/// One party's view, as the Double Ratchet specification defines it.
#[derive(Clone, Debug)]
struct Model {
    initiator: bool,
    awaiting_reply: bool,
    // Sending side.
    ns: u32,
    pn: u32,
    /// Our current ratchet public key, once we have sent under it.
    send_key: Option<[u8; 32]>,
    own_keys: Vec<[u8; 32]>,
    // Receiving side.
    dhr: Option<[u8; 32]>,
    has_ckr: bool,
    nr: u32,
    previous: VecDeque<[u8; 32]>,
    seen: Vec<[u8; 32]>,
    skipped: VecDeque<([u8; 32], u32)>,
}

impl Model {
    fn push_skipped(&mut self, key: [u8; 32], range: std::ops::Range<u32>) {
        for n in range {
            self.skipped.push_back((key, n));
            while self.skipped.len() > MAX_SKIPPED_KEYS as usize {
                self.skipped.pop_front();
            }
        }
    }

    /// RatchetDecrypt on a message with header `(key, pn, n)`.
    fn receive(&self, prekey: bool, key: [u8; 32], pn: u32, n: u32) -> Expect {
        if prekey && self.initiator {
            return Expect::WrongSession;
        }
        let mut m = self.clone();
        m.awaiting_reply = false;
        if let Some(i) = m.skipped.iter().position(|&(k, x)| k == key && x == n) {
            m.skipped.remove(i);
            return Expect::Ok(Box::new(m));
        }
        if m.send_key == Some(key) {
            return Expect::Reflected;
        }
        if m.dhr == Some(key) {
            if !m.has_ckr {
                return Expect::Authentication;
            }
            if n < m.nr {
                return Expect::Duplicate;
            }
            if n - m.nr > MAX_SKIP {
                return Expect::TooManySkipped(u64::from(n - m.nr));
            }
            m.push_skipped(key, m.nr..n);
            m.nr = n + 1;
            return Expect::Ok(Box::new(m));
        }
        if m.previous.contains(&key) {
            return Expect::Duplicate;
        }
        // A new chain: DH ratchet step.
        let finish_old = m.dhr.is_some() && m.has_ckr;
        if finish_old {
            let s = pn.saturating_sub(m.nr);
            if s > MAX_SKIP {
                return Expect::TooManySkipped(u64::from(s));
            }
        }
        if n > MAX_SKIP {
            return Expect::TooManySkipped(u64::from(n));
        }
        if m.seen.contains(&key) || m.own_keys.contains(&key) {
            // Not really new: the root key has moved on since that chain.
            return Expect::Authentication;
        }
        if let Some(old) = m.dhr {
            if finish_old {
                m.push_skipped(old, m.nr..pn);
            }
            m.previous.push_back(old);
            if m.previous.len() > PREVIOUS_KEYS {
                m.previous.pop_front();
            }
        }
        m.push_skipped(key, 0..n);
        m.dhr = Some(key);
        m.seen.push(key);
        m.has_ckr = true;
        m.nr = n + 1;
        m.pn = m.ns;
        m.ns = 0;
        m.send_key = None;
        Expect::Ok(Box::new(m))
    }
}

/// How often each outcome occurred in one run (to check that seeds reach every path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: usize,
    pub decrypted: usize,
    pub duplicate: usize,
    pub too_many_skipped: usize,
    pub reflected: usize,
    pub wrong_session: usize,
    /// Messages under forgotten or own old ratchet keys.
    pub authentication: usize,
    /// Tampered copies that were rejected.
    pub tamper_rejected: usize,
    /// Tampered copies whose content was unchanged (delivered as the genuine message).
    pub tamper_same_content: usize,
    pub pickled: usize,
    /// Largest number of skipped keys held by either party.
    pub max_skipped_keys: usize,
}

struct World {
    stats: Stats,
    sessions: [Session; 2],
    models: [Model; 2],
    sent: Vec<Sent>,
    in_flight: Vec<usize>,
    attempted: Vec<usize>,
    rng: StdRng,
}

const NAMES: [&str; 2] = ["Alice", "Bob"];

impl World {
    fn new(data: &[u8]) -> Self {
        let f = fixture();
        let SessionMessage::PreKey(m0) = SessionMessage::decode(&f.m0.bytes).expect("m0") else {
            panic!("m0 is a prekey message");
        };
        let k0 = m0.message.ratchet_key;
        let spk = f.published.signed.public;
        let alice = Model {
            initiator: true,
            awaiting_reply: true,
            ns: 1,
            pn: 0,
            send_key: Some(k0),
            own_keys: vec![k0],
            dhr: Some(spk),
            has_ckr: false,
            nr: 0,
            previous: VecDeque::new(),
            seen: vec![spk],
            skipped: VecDeque::new(),
        };
        let bob = Model {
            initiator: false,
            awaiting_reply: false,
            ns: 0,
            pn: 0,
            send_key: None,
            own_keys: Vec::new(),
            dhr: Some(k0),
            has_ckr: true,
            nr: 1,
            previous: VecDeque::new(),
            seen: vec![k0],
            skipped: VecDeque::new(),
        };
        let m0_sent = Sent {
            from: 0,
            bytes: f.m0.bytes.clone(),
            plaintext: f.m0.plaintext.clone(),
            ratchet_key: k0,
            pn: 0,
            n: 0,
            prekey: true,
        };
        Self {
            stats: Stats::default(),
            sessions: [crate::fixture::dup(&f.a0), crate::fixture::dup(&f.b0)],
            models: [alice, bob],
            sent: vec![m0_sent],
            in_flight: Vec::new(),
            attempted: vec![0],
            rng: rng_from(b"ratchet_stateful", data),
        }
    }

    fn check_party(&self, p: usize) {
        let (s, m) = (&self.sessions[p], &self.models[p]);
        assert_eq!(
            s.awaiting_reply(),
            m.awaiting_reply,
            "{}: awaiting_reply",
            NAMES[p]
        );
        assert_eq!(
            s.skipped_key_count(),
            m.skipped.len(),
            "{}: skipped key count",
            NAMES[p]
        );
    }

    fn send(&mut self, from: usize, extra: usize) {
        if self.sent.len() >= MAX_MESSAGES {
            return;
        }
        let id = self.sent.len();
        let mut plaintext = format!("{}#{id}|", NAMES[from]).into_bytes();
        plaintext.extend(std::iter::repeat_n(id as u8, extra));
        let msg = self.sessions[from]
            .encrypt(&plaintext)
            .unwrap_or_else(|e| panic!("{} cannot encrypt: {e:?}", NAMES[from]));
        let m = &mut self.models[from];
        assert_eq!(
            matches!(msg, SessionMessage::PreKey(_)),
            m.awaiting_reply,
            "prekey message iff awaiting a reply"
        );
        let r = ratchet_part(&msg);
        assert_eq!(
            (r.previous_chain_length, r.message_number),
            (m.pn, m.ns),
            "PN, N"
        );
        match m.send_key {
            Some(k) => assert_eq!(r.ratchet_key, k, "ratchet key changed without a reply"),
            None => {
                assert!(!m.own_keys.contains(&r.ratchet_key), "ratchet key reused");
                m.send_key = Some(r.ratchet_key);
                m.own_keys.push(r.ratchet_key);
            }
        }
        m.ns += 1;
        self.stats.sent += 1;
        self.sent.push(Sent {
            from,
            bytes: msg.encode(),
            plaintext,
            ratchet_key: r.ratchet_key,
            pn: r.previous_chain_length,
            n: r.message_number,
            prekey: matches!(msg, SessionMessage::PreKey(_)),
        });
        self.in_flight.push(id);
    }

    /// Decrypts `bytes` at `to`, which carry the content of genuine message `id` (possibly
    /// re-wrapped: `prekey` says how they arrive), and checks the outcome against the model.
    fn deliver_as(&mut self, id: usize, to: usize, bytes: &[u8], prekey: bool) {
        let msg = &self.sent[id];
        let expect = self.models[to].receive(prekey, msg.ratchet_key, msg.pn, msg.n);
        let before = hazmat::to_state_bytes(&self.sessions[to]);
        let result = self.sessions[to].decrypt_bytes(&mut self.rng, bytes);
        let ctx = || format!("message {id} ({} -> {})", NAMES[msg.from], NAMES[to]);
        let st = &mut self.stats;
        match (expect, &result) {
            (Expect::Ok(model), Ok(pt)) => {
                assert_eq!(pt, &msg.plaintext, "{}: wrong plaintext", ctx());
                self.models[to] = *model;
                st.decrypted += 1;
            }
            (Expect::Duplicate, Err(DecryptError::Duplicate { message_number })) => {
                assert_eq!(*message_number, msg.n, "{}", ctx());
                st.duplicate += 1;
            }
            (
                Expect::TooManySkipped(k),
                Err(DecryptError::TooManySkipped { skipped, max_skip }),
            ) => {
                assert_eq!((*skipped, *max_skip), (k, MAX_SKIP), "{}", ctx());
                st.too_many_skipped += 1;
            }
            (Expect::Reflected, Err(DecryptError::Reflected)) => st.reflected += 1,
            (Expect::WrongSession, Err(DecryptError::WrongSession)) => st.wrong_session += 1,
            (Expect::Authentication, Err(DecryptError::Authentication)) => st.authentication += 1,
            (expect, result) => panic!("{}: model expects {expect:?}, got {result:?}", ctx()),
        }
        st.max_skipped_keys = st.max_skipped_keys.max(self.models[to].skipped.len());
        if let Err(e) = &result {
            assert_eq!(
                hazmat::to_state_bytes(&self.sessions[to]),
                before,
                "{}: failed decrypt ({e:?}) changed the state",
                ctx()
            );
        }
        self.check_party(to);
    }

    fn deliver(&mut self, id: usize, to: usize) {
        self.attempted.push(id);
        let (bytes, prekey) = (self.sent[id].bytes.clone(), self.sent[id].prekey);
        self.deliver_as(id, to, &bytes, prekey);
    }

    fn take_in_flight(&mut self, index: usize) -> Option<usize> {
        if self.in_flight.is_empty() {
            return None;
        }
        let i = index % self.in_flight.len();
        Some(self.in_flight.remove(i))
    }

    fn tamper(&mut self, index: usize, mutation: [u8; 4]) {
        let id = index % self.sent.len();
        let to = 1 - self.sent[id].from;
        let original = self.sent[id].bytes.clone();
        let mut bytes = original.clone();
        mutate(&mut bytes, &mut ByteSource::new(&mutation));
        let genuine = SessionMessage::decode(&original).expect("genuine message decodes");
        match SessionMessage::decode(&bytes) {
            Ok(m) if same_content(&m, &genuine, &self.sessions[to]) => {
                // Unchanged content (e.g. only the ML-KEM ciphertext of a prekey message
                // sent to an established session): this is the genuine message.
                self.attempted.push(id);
                self.stats.tamper_same_content += 1;
                self.deliver_as(id, to, &bytes, matches!(m, SessionMessage::PreKey(_)));
            }
            decoded => {
                let s = &mut self.sessions[to];
                let before = hazmat::to_state_bytes(s);
                let awaiting = s.awaiting_reply();
                match s.decrypt_bytes(&mut self.rng, &bytes) {
                    Ok(_) => panic!("tampered message {id} accepted: {bytes:02x?}"),
                    Err(e) => {
                        assert_eq!(decoded.is_err(), matches!(e, DecryptError::Decode(_)));
                        assert_eq!(hazmat::to_state_bytes(s), before, "tampering changed state");
                        assert_eq!(s.awaiting_reply(), awaiting);
                        self.stats.tamper_rejected += 1;
                    }
                }
            }
        }
    }

    fn pickle(&mut self, p: usize) {
        let s = &self.sessions[p];
        let state = hazmat::to_state_bytes(s);
        let pickle = s.pickle(&mut self.rng, &pickle_key());
        assert!(Session::unpickle(&pickle, &wrong_pickle_key()).is_err());
        let restored = Session::unpickle(&pickle, &pickle_key()).expect("own pickle opens");
        assert_eq!(
            hazmat::to_state_bytes(&restored),
            state,
            "pickle round trip"
        );
        assert_eq!(restored.role(), s.role());
        assert_eq!(restored.config(), s.config());
        self.sessions[p] = restored;
        self.stats.pickled += 1;
        self.check_party(p);
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Send { from, len } => self.send(usize::from(from & 1), usize::from(len)),
            Op::Burst { from, count } => {
                for _ in 0..=count % 24 {
                    self.send(usize::from(from & 1), 0);
                }
            }
            Op::DeliverNext | Op::DeliverLast | Op::Deliver { .. } => {
                let index = match op {
                    Op::DeliverNext => 0,
                    Op::DeliverLast => usize::MAX,
                    Op::Deliver { index } => usize::from(index),
                    _ => unreachable!(),
                };
                let index = if index == usize::MAX {
                    self.in_flight.len().saturating_sub(1)
                } else {
                    index
                };
                if let Some(id) = self.take_in_flight(index) {
                    self.deliver(id, 1 - self.sent[id].from);
                }
            }
            Op::Drop { index } => {
                self.take_in_flight(usize::from(index));
            }
            Op::Duplicate { index } => {
                let id = self.attempted[usize::from(index) % self.attempted.len()];
                self.deliver(id, 1 - self.sent[id].from);
            }
            Op::Tamper { index, mutation } => self.tamper(usize::from(index), mutation),
            Op::Reorder { i, j } => {
                let len = self.in_flight.len();
                if len > 0 {
                    self.in_flight
                        .swap(usize::from(i) % len, usize::from(j) % len);
                }
            }
            Op::Reflect { index } => {
                if let Some(id) = self.take_in_flight(usize::from(index)) {
                    let to = self.sent[id].from;
                    self.deliver(id, to);
                    // It was never received by its addressee: keep it deliverable.
                    self.in_flight.push(id);
                }
            }
            Op::Pickle { party } => self.pickle(usize::from(party & 1)),
        }
    }
}

/// Interprets the input as a program of [`Op`]s on Alice and Bob (starting right after the
/// handshake: Bob has accepted Alice's first message, Alice awaits his reply) and checks
/// each step against the model:
///
/// - every genuine message decrypts to the plaintext it was sent with, exactly when the
///   model says it must (in order, out of order within MAX_SKIP, from stored skipped keys);
/// - duplicates fail with `Duplicate`, skips beyond MAX_SKIP with `TooManySkipped` (with
///   the exact count), reflected messages with `Reflected`, a prekey message sent back to
///   its initiator with `WrongSession`; tampered messages fail;
/// - every failure leaves `to_state_bytes()` unchanged; skipped-key counts, PN/N and
///   `awaiting_reply` follow the model; pickling round-trips the state exactly.
pub fn ratchet_stateful(data: &[u8]) {
    ratchet_stateful_stats(data);
}

/// [`ratchet_stateful`], returning what happened.
pub fn ratchet_stateful_stats(data: &[u8]) -> Stats {
    let mut world = World::new(data);
    let mut src = ByteSource::new(data);
    for _ in 0..MAX_OPS {
        if src.is_empty() {
            break;
        }
        world.run(Op::read(&mut src));
    }
    // Finally everything still in flight is delivered, in order.
    while let Some(id) = world.take_in_flight(0) {
        world.deliver(id, 1 - world.sent[id].from);
    }
    world.check_party(0);
    world.check_party(1);
    world.stats
}
