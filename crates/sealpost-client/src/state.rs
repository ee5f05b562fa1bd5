//! The connection state an app shows ("connected", "offline, retrying in 20 s", "the
//! relay's certificate does not match"), observed with [`crate::Client::connection_state`].

use crate::error::{ClientError, ConnectionErrorKind};
use sealpost_wire::relay::ErrorCode;
use std::net::SocketAddr;
use tokio::time::Instant;

/// Where the client's connection to its relay stands.
///
/// The client goes `Connecting` → `Connected` → (the connection ends) `BackingOff` →
/// `Connecting` → …; a failed attempt goes from `Connecting` to `BackingOff`. `Stopped` is
/// final.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting and authenticating (the first attempt, or the next after backing off).
    Connecting,
    /// Connected and authenticated: messages flow.
    Connected {
        /// The relay node's address.
        relay: SocketAddr,
    },
    /// Not connected: the last attempt failed, or the connection ended. The client tries
    /// again at `next_attempt` (bounded exponential backoff with jitter,
    /// [`crate::Backoff`]). Sending keeps working: messages wait in the outbox.
    BackingOff {
        /// Why the last attempt failed or the connection ended.
        failure: ConnectFailure,
        /// Failures in a row (1 for the first).
        failures: u32,
        /// When the next attempt starts (tokio's clock: compare with
        /// `tokio::time::Instant::now()`, or convert with `into_std`).
        next_attempt: Instant,
    },
    /// The client stopped connecting for good.
    Stopped(StopReason),
}

impl ConnectionState {
    /// Whether the client is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected { .. })
    }

    /// Why the last attempt failed, while backing off.
    pub fn failure(&self) -> Option<ConnectFailure> {
        match self {
            Self::BackingOff { failure, .. } => Some(*failure),
            _ => None,
        }
    }
}

/// Why connecting to the relay failed, or why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The relay's public key matches none of the configured pins (spec/relay.md
    /// section 1.1): a different server (possibly an attacker in the path), or a relay
    /// that moved to a key this configuration does not list yet. Show "the relay's
    /// certificate does not match"; the client keeps trying (with backoff) in case the
    /// network changes, but only new pins fix a relay that really moved.
    #[error("the relay's public key matches none of the {pinned} pins")]
    PinMismatch {
        /// How many pins are configured.
        pinned: usize,
    },
    /// No relay node answered in time: offline, a network that drops the packets, or a
    /// relay that is down.
    #[error("the relay did not answer")]
    Unreachable,
    /// A relay host name did not resolve (the I/O error's kind).
    #[error("the relay's host name did not resolve ({0:?})")]
    Resolve(std::io::ErrorKind),
    /// No relay address is configured.
    #[error("no relay address is configured")]
    NoRelayAddress,
    /// The relay refused the new connection (QUIC `CONNECTION_REFUSED`, e.g. at its
    /// connection limit).
    #[error("the relay refused the connection")]
    Refused,
    /// A node answered but the QUIC or TLS handshake failed for another reason than the pin
    /// (no common version, a TLS alert).
    #[error("the handshake failed: {0}")]
    Handshake(ConnectionErrorKind),
    /// The relay answered this device's authentication with an error, e.g.
    /// [`ErrorCode::Unavailable`] or [`ErrorCode::RateLimited`].
    #[error("the relay refused to authenticate this device ({code:?})")]
    Rejected {
        /// The relay's error code.
        code: ErrorCode,
        /// Seconds the relay asked to wait (0 if none).
        retry_after: u32,
    },
    /// The relay broke the protocol while the connection was being set up.
    #[error("the relay broke the protocol")]
    Protocol,
    /// An established connection ended (reset by a restarting relay, closed, or silent for
    /// too long).
    #[error("the connection ended: {0}")]
    Lost(ConnectionErrorKind),
    /// This client failed locally (its QUIC endpoint or its store).
    #[error("local failure")]
    Local,
}

impl ConnectFailure {
    /// Classifies the error of a connection attempt.
    pub(crate) fn of(e: &ClientError) -> Self {
        match e {
            ClientError::PinMismatch { pinned } => Self::PinMismatch { pinned: *pinned },
            ClientError::Timeout | ClientError::Offline => Self::Unreachable,
            ClientError::Resolve(kind) => Self::Resolve(*kind),
            ClientError::NoRelayAddress => Self::NoRelayAddress,
            ClientError::Connection(c) => match c.kind() {
                ConnectionErrorKind::Refused => Self::Refused,
                ConnectionErrorKind::TimedOut => Self::Unreachable,
                kind => Self::Handshake(kind),
            },
            ClientError::Relay {
                code, retry_after, ..
            } => Self::Rejected {
                code: *code,
                retry_after: *retry_after,
            },
            ClientError::Stream(_) | ClientError::Protocol(_) => Self::Protocol,
            _ => Self::Local,
        }
    }
}

/// Why the client stopped connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StopReason {
    /// [`crate::Client::shutdown`] was called.
    #[error("the client was shut down")]
    ShutDown,
    /// The relay no longer knows this device ([`crate::ClientEvent::Deregistered`]).
    #[error("this device is no longer registered")]
    Deregistered,
    /// Another copy of this device connected
    /// ([`crate::ClientEvent::ReplacedByAnotherConnection`]).
    #[error("another copy of this device connected")]
    Replaced,
}
