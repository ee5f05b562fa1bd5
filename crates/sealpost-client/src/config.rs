//! Client configuration.

use crate::error::ClientError;
use sealpost_crypto::spki::SpkiPins;
use sealpost_pin::stretch::Argon2Params;
use sealpost_session::SessionConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Reconnection backoff: exponential with "equal jitter". The n-th consecutive failure
/// waits `d/2 + uniform(0, d/2)` with `d = min(max, initial * 2^n)`; a successful
/// authentication resets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay (before jitter).
    pub initial: Duration,
    /// Upper bound of the delay (before jitter).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// The state of a [`Backoff`] sequence.
#[derive(Debug)]
pub(crate) struct BackoffState {
    config: Backoff,
    failures: u32,
}

impl BackoffState {
    pub(crate) fn new(config: Backoff) -> Self {
        Self {
            config,
            failures: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(30)).unwrap_or(u32::MAX);
        let base = self
            .config
            .initial
            .checked_mul(factor)
            .unwrap_or(self.config.max)
            .min(self.config.max);
        self.failures = self.failures.saturating_add(1);
        let half = base / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let r = u64::from_be_bytes(*sealpost_crypto::random_array::<8, _>(&mut rand::rng()));
        let jitter = if nanos == 0 { 0 } else { r % nanos };
        half + Duration::from_nanos(jitter)
    }
}

/// How a client reaches its relay and paces itself.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The relay's UDP address.
    pub relay_addr: SocketAddr,
    /// The relay's accepted public-key pins: SHA-256 of the certificate's
    /// `SubjectPublicKeyInfo` (the relay prints its pin, `sha256/<base64>`, at start). List
    /// the current key and, ahead of a key rotation, the next one (spec/relay.md 1.1).
    pub relay_pins: SpkiPins,
    /// TLS server name sent in the handshake. Not verified (the pin decides); default
    /// `sealpost-relay`.
    pub server_name: String,
    /// Timeout of one request (connect, and each request/response exchange). Default 30 s.
    pub request_timeout: Duration,
    /// QUIC keep-alive interval while connected. Default 20 s (spec/relay.md section 1).
    pub keep_alive: Duration,
    /// Reconnection backoff.
    pub reconnect: Backoff,
    /// Capacity of the event channel; when full, delivery processing waits for the app.
    /// Default 1024.
    pub event_capacity: usize,
    /// Limits of new sessions.
    pub session: SessionConfig,
    /// The guardians that keep the PIN vault (spec/pin.md section 13). Default: the relay
    /// alone, 1-of-1.
    pub guardians: Guardians,
    /// Argon2id parameters for new PIN vaults and the local PIN verifier. Default
    /// [`Argon2Params::PRODUCTION`] (16 MiB, 32 passes); tests lower them.
    pub pin_params: Argon2Params,
}

/// One guardian of the PIN vault: a relay with its guardian role enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guardian {
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its public-key pins (checked like the relay's).
    pub pins: SpkiPins,
    /// TLS server name sent in the handshake (not verified; the pin decides).
    pub server_name: String,
}

impl Guardian {
    /// A guardian at `addr` whose key matches one of `pins` (a single
    /// [`SpkiPin`](sealpost_crypto::spki::SpkiPin) converts).
    pub fn new(addr: SocketAddr, pins: impl Into<SpkiPins>) -> Self {
        Self {
            addr,
            pins: pins.into(),
            server_name: "sealpost-relay".into(),
        }
    }
}

/// The guardians of a PIN vault and the threshold `t`: any `t` of them recover the vault,
/// fewer learn nothing (spec/pin.md sections 4 and 5). Guardian `i` (1-based) of a vault is
/// the `i`-th of this list, so keep the order when the list is configured on a new device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guardians {
    list: Vec<Guardian>,
    threshold: u8,
}

impl Guardians {
    /// `threshold`-of-`list.len()` guardians; `1 ≤ threshold ≤ len ≤ 255`.
    pub fn new(list: Vec<Guardian>, threshold: u8) -> Result<Self, ClientError> {
        if list.is_empty()
            || list.len() > 255
            || threshold == 0
            || usize::from(threshold) > list.len()
        {
            return Err(ClientError::InvalidGuardians(format!(
                "need 1 <= threshold ({threshold}) <= guardians ({}) <= 255",
                list.len()
            )));
        }
        Ok(Self { list, threshold })
    }

    /// The relay alone (1-of-1): the weaker single-operator setup of spec/pin.md section 13.
    pub fn single(relay: Guardian) -> Self {
        Self {
            list: vec![relay],
            threshold: 1,
        }
    }

    /// The guardians, in index order (index = position + 1).
    pub fn list(&self) -> &[Guardian] {
        &self.list
    }

    /// The threshold `t`.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }
}

impl ClientConfig {
    /// A configuration with defaults for everything but the relay address and its pins (a
    /// single [`SpkiPin`](sealpost_crypto::spki::SpkiPin) converts).
    pub fn new(relay_addr: SocketAddr, relay_pins: impl Into<SpkiPins>) -> Self {
        let relay_pins = relay_pins.into();
        Self {
            relay_addr,
            relay_pins: relay_pins.clone(),
            server_name: "sealpost-relay".into(),
            request_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(20),
            reconnect: Backoff::default(),
            event_capacity: 1024,
            session: SessionConfig::default(),
            guardians: Guardians::single(Guardian::new(relay_addr, relay_pins)),
            pin_params: Argon2Params::PRODUCTION,
        }
    }

    /// Sets the guardians of the PIN vault.
    pub fn with_guardians(mut self, guardians: Guardians) -> Self {
        self.guardians = guardians;
        self
    }

    /// Sets the Argon2id parameters of new PIN vaults and of the local verifier (lower them
    /// only in tests).
    pub fn with_pin_params(mut self, params: Argon2Params) -> Self {
        self.pin_params = params;
        self
    }

    /// Sets the reconnection backoff.
    pub fn with_reconnect(mut self, reconnect: Backoff) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_bounded_with_jitter() {
        let mut b = BackoffState::new(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        });
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        for x in &d[4..] {
            assert!(*x >= Duration::from_millis(500) && *x <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let mut zero = BackoffState::new(Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        });
        assert_eq!(zero.next_delay(), Duration::ZERO);
    }
}
