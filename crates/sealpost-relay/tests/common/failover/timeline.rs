//! A run's [`Timeline`]: when messages were accepted, through which node, when nodes were
//! killed, when live receivers' connections opened and closed and what reached their apps on
//! which; and what follows from it about live delivery ([`LiveReport`]).

use crate::common::checker::Key;
use sealpost_wire::DeviceAddress;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A live receiver's connection.
struct Session {
    receiver: DeviceAddress,
    node: usize,
    /// When `Authenticated` came.
    opened: Instant,
    /// When the receiver gave it up (its node may have died earlier: see the kills).
    closed: Option<Instant>,
}

#[derive(Default)]
struct TimelineState {
    /// The first `Accepted` of each message: when the sender got it, through which node,
    /// and to whom.
    accepted: HashMap<Key, (Instant, usize, DeviceAddress)>,
    /// When each node was killed (just before the SIGKILL).
    kills: Vec<(usize, Instant)>,
    sessions: Vec<Session>,
    /// When each message first reached a live receiver's app, and on which session.
    arrived: HashMap<(DeviceAddress, Key), (Instant, usize)>,
    /// Sessions (of any client) each node authenticated.
    served: Vec<u64>,
}

/// When things happened in a run, for what the checker does not judge: how long live
/// receivers waited ([`LiveReport`]) and which nodes served.
pub struct Timeline(Mutex<TimelineState>);

impl Timeline {
    pub fn new(nodes: usize) -> Self {
        Self(Mutex::new(TimelineState {
            served: vec![0; nodes],
            ..TimelineState::default()
        }))
    }

    pub(super) fn accepted(&self, key: &Key, to: &DeviceAddress, node: usize) {
        let mut t = self.0.lock().unwrap();
        t.accepted
            .entry(key.clone())
            .or_insert_with(|| (Instant::now(), node, to.clone()));
    }

    pub fn killed(&self, node: usize) {
        self.0.lock().unwrap().kills.push((node, Instant::now()));
    }

    pub(super) fn served(&self, node: usize) {
        self.0.lock().unwrap().served[node] += 1;
    }

    /// Sessions each node authenticated, in node order.
    pub fn sessions_served(&self) -> Vec<u64> {
        self.0.lock().unwrap().served.clone()
    }

    /// A live receiver's new connection to `node`; returns its id.
    pub(super) fn opened(&self, receiver: &DeviceAddress, node: usize) -> usize {
        let mut t = self.0.lock().unwrap();
        t.sessions.push(Session {
            receiver: receiver.clone(),
            node,
            opened: Instant::now(),
            closed: None,
        });
        t.sessions.len() - 1
    }

    pub(super) fn closed(&self, session: usize) {
        self.0.lock().unwrap().sessions[session].closed = Some(Instant::now());
    }

    pub(super) fn arrived(&self, receiver: &DeviceAddress, key: &Key, session: usize) {
        self.0
            .lock()
            .unwrap()
            .arrived
            .entry((receiver.clone(), key.clone()))
            .or_insert((Instant::now(), session));
    }

    /// How the messages accepted for live receivers while they were connected got to them.
    pub fn live_report(&self, grace: Duration) -> LiveReport {
        let t = self.0.lock().unwrap();
        // When each session ended: its receiver gave it up, or its node was killed.
        let ends: Vec<Option<Instant>> = t
            .sessions
            .iter()
            .map(|s| {
                let killed = t
                    .kills
                    .iter()
                    .filter(|(n, at)| *n == s.node && *at >= s.opened)
                    .map(|(_, at)| *at)
                    .min();
                match (killed, s.closed) {
                    (Some(k), Some(c)) => Some(k.min(c)),
                    (k, c) => k.or(c),
                }
            })
            .collect();
        let mut report = LiveReport {
            grace,
            cross_node: LiveClass::default(),
            same_node: LiveClass::default(),
            judged: 0,
            late: Vec::new(),
        };
        for (key, (accepted, node, to)) in &t.accepted {
            let Some((id, s)) = t.sessions.iter().enumerate().find(|(id, s)| {
                &s.receiver == to
                    && s.opened <= *accepted
                    && ends[*id].is_none_or(|e| *accepted < e)
            }) else {
                continue;
            };
            let class = if s.node == *node {
                &mut report.same_node
            } else {
                &mut report.cross_node
            };
            class.accepted += 1;
            let arrived = t.arrived.get(&(to.clone(), key.clone()));
            if let Some((at, session)) = arrived
                && *session == id
            {
                class.waits.push(at.saturating_duration_since(*accepted));
            }
            if ends[id].is_none_or(|e| e >= *accepted + grace) {
                report.judged += 1;
                if arrived.is_none_or(|(at, _)| *at > *accepted + grace) {
                    report.late.push(key.clone());
                }
            }
        }
        report.cross_node.waits.sort_unstable();
        report.same_node.waits.sort_unstable();
        report
    }
}

/// The messages accepted for live receivers while connected, through one kind of node.
#[derive(Default)]
pub struct LiveClass {
    /// Accepted while the receiver was connected.
    pub accepted: usize,
    /// For those that reached the app on that same connection: the time from `Accepted`
    /// (as the sender saw it) to the app, sorted (0 when the push came first).
    pub waits: Vec<Duration>,
}

impl LiveClass {
    /// The share of [`LiveClass::accepted`] that came on the connection (1 when none).
    pub fn live_share(&self) -> f64 {
        if self.accepted == 0 {
            1.0
        } else {
            self.waits.len() as f64 / self.accepted as f64
        }
    }

    fn quantile(&self, q: f64) -> Duration {
        let Some(last) = self.waits.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        self.waits[((last as f64) * q).round() as usize]
    }
}

impl fmt::Display for LiveClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted while connected, {} pushed live on that connection \
             (Accepted to app: p50 {:?}, p99 {:?}, max {:?}), {} only after a reconnection",
            self.accepted,
            self.waits.len(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.waits.last().copied().unwrap_or_default(),
            self.accepted - self.waits.len()
        )
    }
}

/// How messages reached live receivers ([`Timeline::live_report`]).
pub struct LiveReport {
    pub grace: Duration,
    /// Accepted by another node than the receiver's: brought by a wake-up (or the fallback
    /// poll).
    pub cross_node: LiveClass,
    /// Accepted by the receiver's own node: brought by its local commit notice.
    pub same_node: LiveClass,
    /// Messages whose receiver's connection stayed up at least `grace` after `Accepted`.
    pub judged: usize,
    /// Of those, the ones that had not reached the app `grace` after `Accepted` (a lost
    /// wake-up that only a reconnection rescued).
    pub late: Vec<Key>,
}

impl fmt::Display for LiveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "live receivers: cross-node: {}; same node: {}; late (not at the app {:?} after \
             Accepted on a connection that stayed up): {} of {}",
            self.cross_node,
            self.same_node,
            self.grace,
            self.late.len(),
            self.judged
        )
    }
}
