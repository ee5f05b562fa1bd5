//! A Jepsen-style total-queue checker for relay failover tests.
//!
//! Senders record every send attempt of a message (sender device, message id, recipient
//! device) with its outcome: `Accepted`, an error response, or no answer (the node died, the
//! connection broke). A message retried on a new connection keeps its message id, so one
//! message may have several attempts. Receivers record every `Deliver` push the relay made
//! (relay-level, at-least-once) and, after the client-side de-duplication by (sender,
//! message id) the SDK does, every delivery that reached the app.
//!
//! [`Checker::check`] then states the queue's safety properties, once every node is up and
//! every receiver has drained its mailbox:
//! - lost = accepted − delivered is empty (every message the relay answered `Accepted` for
//!   reached its recipient's app);
//! - delivered ⊆ attempted (nothing reached an app that was not sent, to that recipient, with
//!   that body);
//! - 0 duplicates at the app (redeliveries by the relay are allowed and counted);
//! - per-sender order: every app sees each sender's messages in the order they were sent
//!   (spec/relay.md section 4: "within one sender device, envelopes are delivered in the
//!   order the relay accepted them"). This holds for senders that send sequentially, the
//!   next message only after the relay answered `Accepted` for the previous one (every
//!   sender of these tests does), and who record their attempts in that order: a message's
//!   place in its sender's order is the order of its first recorded attempt.

use sealpost_wire::DeviceAddress;
use sealpost_wire::relay::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

/// A message: its sender device and the sender's message id.
pub type Key = (DeviceAddress, [u8; 16]);

/// What one send attempt got back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The relay answered `Accepted`: the message must be delivered.
    Accepted,
    /// The relay answered with an error: the message may or may not be delivered (a retry of an
    /// earlier, unanswered attempt may have been stored).
    Rejected(ErrorCode),
    /// No answer: the node died or the connection broke. Maybe delivered, maybe not.
    NoAnswer,
}

#[derive(Debug)]
struct Sent {
    /// The message's place in its sender's order (0, 1, ...: order of first attempts).
    seq: u64,
    recipient: DeviceAddress,
    body: Vec<u8>,
    outcomes: Vec<Outcome>,
}

#[derive(Default)]
struct State {
    sent: BTreeMap<Key, Sent>,
    /// Messages recorded so far per sender (the next message's `seq`).
    next_seq: BTreeMap<DeviceAddress, u64>,
    /// Relay-level deliveries per (receiver, message).
    relay: BTreeMap<(DeviceAddress, Key), u32>,
    /// App-level deliveries per (receiver, message), with the body the app got.
    app: BTreeMap<(DeviceAddress, Key), (u32, Vec<u8>)>,
    /// Per receiver, the messages that reached its app, in the order they first did.
    arrivals: BTreeMap<DeviceAddress, Vec<Key>>,
}

/// The history of one run; shared by the sender and receiver tasks.
#[derive(Default)]
pub struct Checker(Mutex<State>);

/// What [`Checker::check`] found.
#[derive(Debug)]
pub struct Report {
    /// Distinct messages the senders tried to send.
    pub attempted: usize,
    /// Send attempts in all (retries included).
    pub attempts: usize,
    /// Messages the relay answered `Accepted` for at least once.
    pub accepted: usize,
    /// Messages that never got an answer (their last attempt had none).
    pub unanswered: usize,
    /// Distinct messages that reached an app.
    pub delivered: usize,
    /// Deliveries by the relay beyond the first per message (allowed: at-least-once).
    pub redeliveries: u32,
    /// Deliveries the app saw beyond the first per message (must be 0).
    pub app_duplicates: u32,
    /// Accepted messages no app saw.
    pub lost: Vec<Key>,
    /// Messages an app saw that were never sent, or not to that receiver, or with another
    /// body.
    pub phantom: Vec<Key>,
    /// Messages that reached an app after a later message of the same sender had (each
    /// once per receiver that saw it late).
    pub reordered: Vec<Key>,
}

impl Report {
    /// True when the run kept the queue's promises.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.phantom.is_empty()
            && self.app_duplicates == 0
            && self.reordered.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checker: attempted {} ({} attempts), accepted {}, unanswered {}, delivered {}, \
             relay-level redeliveries {}, app duplicates {}, lost {}, phantom {}, \
             reordered {}",
            self.attempted,
            self.attempts,
            self.accepted,
            self.unanswered,
            self.delivered,
            self.redeliveries,
            self.app_duplicates,
            self.lost.len(),
            self.phantom.len(),
            self.reordered.len()
        )
    }
}

impl Checker {
    /// Records one attempt to send message `key` with `body` to `recipient`. A sender's
    /// first attempts of its messages are recorded in the order it sends them.
    pub fn attempt(&self, key: &Key, recipient: &DeviceAddress, body: &[u8], outcome: Outcome) {
        let mut s = self.0.lock().unwrap();
        let State { sent, next_seq, .. } = &mut *s;
        let sent = sent.entry(key.clone()).or_insert_with(|| Sent {
            seq: {
                let next = next_seq.entry(key.0.clone()).or_default();
                *next += 1;
                *next - 1
            },
            recipient: recipient.clone(),
            body: body.to_vec(),
            outcomes: Vec::new(),
        });
        assert_eq!(
            (&sent.recipient, sent.body.as_slice()),
            (recipient, body),
            "a retry keeps the message's recipient and body"
        );
        sent.outcomes.push(outcome);
    }

    /// Records a `Deliver` push `receiver` got from the relay.
    pub fn relay_delivery(&self, receiver: &DeviceAddress, key: &Key) {
        let mut s = self.0.lock().unwrap();
        *s.relay.entry((receiver.clone(), key.clone())).or_default() += 1;
    }

    /// Records a message that reached `receiver`'s app (after its de-duplication).
    pub fn app_delivery(&self, receiver: &DeviceAddress, key: &Key, body: &[u8]) {
        let mut s = self.0.lock().unwrap();
        let e = s
            .app
            .entry((receiver.clone(), key.clone()))
            .or_insert_with(|| (0, body.to_vec()));
        e.0 += 1;
        if e.0 == 1 {
            s.arrivals
                .entry(receiver.clone())
                .or_default()
                .push(key.clone());
        }
    }

    /// Checks the history (call it after the final drain).
    pub fn check(&self) -> Report {
        let s = self.0.lock().unwrap();
        let accepted: BTreeSet<&Key> = s
            .sent
            .iter()
            .filter(|(_, m)| m.outcomes.contains(&Outcome::Accepted))
            .map(|(k, _)| k)
            .collect();
        let mut delivered = BTreeSet::new();
        let mut phantom = Vec::new();
        let mut app_duplicates = 0;
        for ((receiver, key), (count, body)) in &s.app {
            app_duplicates += count - 1;
            match s.sent.get(key) {
                Some(m) if &m.recipient == receiver && &m.body == body => {
                    delivered.insert(key);
                }
                _ => phantom.push(key.clone()),
            }
        }
        let redeliveries = s.relay.values().map(|n| n - 1).sum();
        let lost = accepted
            .iter()
            .filter(|k| !delivered.contains(*k))
            .map(|k| (*k).clone())
            .collect();
        // Per receiver and sender, the place of the last message that reached the app.
        let mut reordered = Vec::new();
        for keys in s.arrivals.values() {
            let mut last: BTreeMap<&DeviceAddress, u64> = BTreeMap::new();
            for key in keys {
                let Some(m) = s.sent.get(key) else { continue };
                match last.get(&key.0) {
                    Some(&before) if before >= m.seq => reordered.push(key.clone()),
                    _ => {
                        last.insert(&key.0, m.seq);
                    }
                }
            }
        }
        Report {
            attempted: s.sent.len(),
            attempts: s.sent.values().map(|m| m.outcomes.len()).sum(),
            accepted: accepted.len(),
            unanswered: s
                .sent
                .values()
                .filter(|m| m.outcomes.last() == Some(&Outcome::NoAnswer))
                .count(),
            delivered: delivered.len(),
            redeliveries,
            app_duplicates,
            lost,
            phantom,
            reordered,
        }
    }
}
