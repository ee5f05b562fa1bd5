//! Client configuration.

use crate::error::ClientError;
use sealpost_crypto::spki::SpkiPins;
use sealpost_pin::stretch::Argon2Params as PinArgon2Params;
use sealpost_session::SessionConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Default QUIC keep-alive interval (spec/relay.md section 1): a relay that restarted
/// resets the connection at the next keep-alive, so this bounds how long a receiving
/// client takes to notice.
pub const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// Default QUIC idle timeout the client offers (spec/relay.md section 1). A relay node that
/// vanished without a trace (no stateless reset) is given up sooner, once it has been silent
/// for the keep-alive interval plus a grace (spec/relay.md section 1).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to connect to one relay address before trying the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// When connecting, the next relay address is tried after this long without an answer
/// from the previous one (which goes on trying; the first to answer wins).
pub const CONNECT_STAGGER: Duration = Duration::from_secs(1);
/// Consecutive request timeouts after which a connection counts as dead: the client
/// closes it and reconnects (trying the next relay address first).
pub const DEAD_AFTER_TIMEOUTS: u32 = 2;
/// Default capacity of the event buffer ([`ClientConfig::event_capacity`]).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// One way to reach a relay: an address, or a DNS name (with a port) resolved at every
/// connection attempt, all of whose addresses are tried.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelayAddr {
    /// An IP address and UDP port.
    Socket(SocketAddr),
    /// A DNS name and UDP port.
    Host {
        /// The name.
        name: String,
        /// The UDP port.
        port: u16,
    },
}

/// Why a relay address does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayAddrError {
    /// No `:port` at the end.
    #[error("a relay address is HOST:PORT or IP:PORT")]
    MissingPort,
    /// The port is not a number from 1 to 65535.
    #[error("invalid port in a relay address")]
    InvalidPort,
    /// The host part is empty or not a valid DNS name.
    #[error("invalid host name in a relay address")]
    InvalidHost,
}

impl std::str::FromStr for RelayAddr {
    type Err = RelayAddrError;

    /// `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self::Socket(addr));
        }
        let (name, port) = s.rsplit_once(':').ok_or(RelayAddrError::MissingPort)?;
        let port: u16 = port.parse().map_err(|_| RelayAddrError::InvalidPort)?;
        if name.parse::<std::net::IpAddr>().is_ok() {
            // An IPv6 literal needs brackets here (`[::1]:4433`).
            return Err(RelayAddrError::InvalidHost);
        }
        Self::new(name, port)
    }
}

impl RelayAddr {
    /// A relay at `host` (a DNS name, resolved at every connection attempt, or an IP
    /// address literal, IPv6 without brackets) and UDP `port` (1 to 65535).
    pub fn new(host: &str, port: u16) -> Result<Self, RelayAddrError> {
        if port == 0 {
            return Err(RelayAddrError::InvalidPort);
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(Self::Socket(SocketAddr::new(ip, port)));
        }
        let name = host;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(RelayAddrError::InvalidHost);
        }
        Ok(Self::Host {
            name: name.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for RelayAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(a) => write!(f, "{a}"),
            Self::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl From<SocketAddr> for RelayAddr {
    fn from(addr: SocketAddr) -> Self {
        Self::Socket(addr)
    }
}

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

/// What kind of account a new registration makes (spec/devices.md section 3.2 and 8.9): it
/// decides the role of this device on the account's first signed device list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccountKind {
    /// A person's account: this device is the `primary`, linked devices are `linked`.
    #[default]
    Personal,
    /// A business account: this device is the `owner` (it holds the account key), linked
    /// devices are `admin`, `agent` or `bot`, and customers see each device's signed name
    /// and role on the messages it sends.
    Business,
}

impl AccountKind {
    /// The key holder's role on a first list of this kind.
    pub fn key_holder_role(self) -> sealpost_devices::DeviceRole {
        match self {
            Self::Personal => sealpost_devices::DeviceRole::Primary,
            Self::Business => sealpost_devices::DeviceRole::Owner,
        }
    }

    /// The kind whose key holder has roles of `family`.
    pub(crate) fn of_family(family: sealpost_devices::RoleFamily) -> Self {
        match family {
            sealpost_devices::RoleFamily::Business => Self::Business,
            _ => Self::Personal,
        }
    }

    /// The key holder's display name when [`ClientConfig::device_name`] is not set:
    /// [`crate::PRIMARY_DEVICE_NAME`] or [`crate::OWNER_DEVICE_NAME`].
    pub fn default_device_name(self) -> &'static str {
        match self {
            Self::Personal => crate::PRIMARY_DEVICE_NAME,
            Self::Business => crate::OWNER_DEVICE_NAME,
        }
    }
}

/// How a client reaches its relay and paces itself.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The relay: the nodes of one deployment, tried in order (a DNS name stands for all
    /// its addresses). The client stays on the node it reached; when it cannot connect, or
    /// a connection dies, it tries the next.
    pub relays: Vec<RelayAddr>,
    /// The relay's accepted public-key pins, checked on every node: SHA-256 of the
    /// certificate's `SubjectPublicKeyInfo` (the relay prints its pin, `sha256/<base64>`, at
    /// start). List the current key and, ahead of a key rotation, the next one
    /// (spec/relay.md 1.1).
    pub relay_pins: SpkiPins,
    /// TLS server name sent in the handshake. Not verified (the pin decides); default
    /// `sealpost-relay`.
    pub server_name: String,
    /// Timeout of one request/response exchange, and of connecting as a whole. Default
    /// 10 s. [`DEAD_AFTER_TIMEOUTS`] consecutive timeouts close the connection.
    pub request_timeout: Duration,
    /// Time to connect to one relay address before trying the next. Default
    /// [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// QUIC keep-alive interval while connected. Default [`KEEP_ALIVE`] (spec/relay.md
    /// section 1).
    pub keep_alive: Duration,
    /// QUIC idle timeout offered to the relay (the smaller of both sides' applies). Default
    /// [`IDLE_TIMEOUT`] (spec/relay.md section 1).
    pub idle_timeout: Duration,
    /// Reconnection backoff.
    pub reconnect: Backoff,
    /// Capacity of the event buffer (rounded up to a power of two). Processing never waits
    /// for the app: when the app lets more events than this pile up, the oldest are dropped
    /// and the app's next read is [`crate::ClientEvent::Lagged`] (see
    /// [`crate::EventReceiver`]). Default [`DEFAULT_EVENT_CAPACITY`].
    pub event_capacity: usize,
    /// Limits of new sessions.
    pub session: SessionConfig,
    /// The guardians that keep the PIN vault (spec/pin.md section 13). Default: the relay
    /// alone, 1-of-1.
    pub guardians: Guardians,
    /// Argon2id parameters for new PIN vaults and the local PIN verifier. Default
    /// [`PinArgon2Params::PRODUCTION`] (16 MiB, 32 passes); tests lower them.
    pub pin_params: PinArgon2Params,
    /// How long a contact's signed device list is used before it is fetched again for
    /// the next message sent to the account or received from it (spec/devices.md 8.9:
    /// so a new device is used, and a renamed one is named as the account signs it now).
    /// Default [`crate::DEVICE_LIST_REFRESH`]; a stale list is also corrected by the
    /// relay's `MismatchedDevices`.
    pub device_list_refresh: Duration,
    /// On the key holder: the most messages a history bundle carries to a newly linked
    /// device (spec/devices.md 8.7 and 8.9), the newest ones. Default
    /// [`crate::HISTORY_BUNDLE_MAX_MESSAGES`] (1,000); 0 sends contacts only.
    pub history_bundle_max_messages: usize,
    /// On the key holder: how old (by its history timestamp) a message may be and still go
    /// into a history bundle. Default [`crate::HISTORY_BUNDLE_MAX_AGE`] (90 days).
    pub history_bundle_max_age: Duration,
    /// The kind of account this device makes when it generates the account's first signed
    /// device list (spec/devices.md 8.9 "Publishing": a new registration, or the first start
    /// of a version-1 store): [`AccountKind::Personal`] (default) makes it the `primary`,
    /// [`AccountKind::Business`] the `owner`. Ignored once the store has a list; a key
    /// holder restored after a PIN recovery keeps the family of the stored list.
    pub account_kind: AccountKind,
    /// This device's display name on a first list it generates, or on the list it signs
    /// as the new key holder after a PIN recovery (1 to 64 bytes of UTF-8 without control
    /// characters; otherwise registering fails with
    /// [`crate::LinkFailure::InvalidName`] before anything is sent). Default `None`:
    /// [`AccountKind::default_device_name`] of the list's kind.
    pub device_name: Option<String>,
    /// The verifiers whose statements make a business show as verified
    /// (spec/business.md 4.2): each a name shown to the user and an Ed25519 key. Empty by
    /// default: which verifiers to trust is the application's decision, never the protocol's.
    pub trusted_verifiers: Vec<sealpost_devices::TrustedVerifier>,
}

/// One guardian of the PIN vault: a relay with its guardian role enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guardian {
    /// Its address (a host name is resolved at every use).
    pub addr: RelayAddr,
    /// Its public-key pins (checked like the relay's).
    pub pins: SpkiPins,
    /// TLS server name sent in the handshake (not verified; the pin decides).
    pub server_name: String,
}

impl Guardian {
    /// A guardian at `addr` whose key matches one of `pins` (a single
    /// [`SpkiPin`](sealpost_crypto::spki::SpkiPin) converts).
    pub fn new(addr: impl Into<RelayAddr>, pins: impl Into<SpkiPins>) -> Self {
        Self {
            addr: addr.into(),
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
            return Err(ClientError::InvalidGuardians {
                guardians: list.len(),
                threshold,
            });
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
    /// single [`SpkiPin`](sealpost_crypto::spki::SpkiPin) converts). For a host name and
    /// pins in text form, use [`ClientConfig::builder`].
    pub fn new(relay_addr: SocketAddr, relay_pins: impl Into<SpkiPins>) -> Self {
        Self::with_first_relay(RelayAddr::Socket(relay_addr), relay_pins.into())
    }

    /// Defaults, with `relay_addr` as the relay and the guardian (1-of-1).
    pub(crate) fn with_first_relay(relay_addr: RelayAddr, relay_pins: SpkiPins) -> Self {
        Self {
            relays: vec![relay_addr.clone()],
            relay_pins: relay_pins.clone(),
            server_name: "sealpost-relay".into(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: CONNECT_TIMEOUT,
            keep_alive: KEEP_ALIVE,
            idle_timeout: IDLE_TIMEOUT,
            reconnect: Backoff::default(),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            session: SessionConfig::default(),
            guardians: Guardians::single(Guardian::new(relay_addr, relay_pins)),
            pin_params: PinArgon2Params::PRODUCTION,
            device_list_refresh: crate::DEVICE_LIST_REFRESH,
            history_bundle_max_messages: crate::HISTORY_BUNDLE_MAX_MESSAGES,
            history_bundle_max_age: crate::HISTORY_BUNDLE_MAX_AGE,
            account_kind: AccountKind::Personal,
            device_name: None,
            trusted_verifiers: Vec::new(),
        }
    }

    /// Sets the relay's nodes, tried in order (see [`ClientConfig::relays`]); every node must
    /// present a key matching `relay_pins`. The guardians are left as they are (by default
    /// the first relay given to [`ClientConfig::new`] or the builder). An empty list makes
    /// connecting fail with [`ClientError::NoRelayAddress`].
    pub fn with_relays(mut self, relays: impl IntoIterator<Item = RelayAddr>) -> Self {
        self.relays = relays.into_iter().collect();
        self
    }

    /// Sets the time to connect to one relay address before trying the next.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the QUIC keep-alive interval and the idle timeout offered to the relay.
    pub fn with_keep_alive(mut self, keep_alive: Duration, idle_timeout: Duration) -> Self {
        self.keep_alive = keep_alive;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the guardians of the PIN vault.
    pub fn with_guardians(mut self, guardians: Guardians) -> Self {
        self.guardians = guardians;
        self
    }

    /// Sets the Argon2id parameters of new PIN vaults and of the local verifier (lower them
    /// only in tests).
    pub fn with_pin_params(mut self, params: PinArgon2Params) -> Self {
        self.pin_params = params;
        self
    }

    /// Sets the reconnection backoff.
    pub fn with_reconnect(mut self, reconnect: Backoff) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Sets the capacity of the event buffer (see [`ClientConfig::event_capacity`]; at
    /// least 1).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long a contact's device list is used before it is fetched again.
    pub fn with_device_list_refresh(mut self, refresh: Duration) -> Self {
        self.device_list_refresh = refresh;
        self
    }

    /// Sets the kind of account a new registration makes (see [`ClientConfig::account_kind`]).
    pub fn with_account_kind(mut self, kind: AccountKind) -> Self {
        self.account_kind = kind;
        self
    }

    /// Sets this device's display name on a first list it generates (see
    /// [`ClientConfig::device_name`]).
    pub fn with_device_name(mut self, name: impl Into<String>) -> Self {
        self.device_name = Some(name.into());
        self
    }

    /// The key holder's display name on a list of `kind`: [`ClientConfig::device_name`]
    /// or the kind's default, checked.
    pub(crate) fn key_holder_name(
        &self,
        kind: AccountKind,
    ) -> Result<sealpost_wire::devices::DeviceName, ClientError> {
        let name = self
            .device_name
            .as_deref()
            .unwrap_or(kind.default_device_name());
        sealpost_wire::devices::DeviceName::new(name)
            .map_err(|_| ClientError::Link(crate::error::LinkFailure::InvalidName))
    }

    /// Sets the bounds of the history bundle sent to a newly linked device: at most
    /// `max_messages` messages (the newest), none older than `max_age`.
    pub fn with_history_bundle(mut self, max_messages: usize, max_age: Duration) -> Self {
        self.history_bundle_max_messages = max_messages;
        self.history_bundle_max_age = max_age;
        self
    }

    /// Adds a verifier whose statements make a business show as verified
    /// (spec/business.md 4.2): `name` is what the user is shown, `key` its Ed25519 public key.
    pub fn with_trusted_verifier(mut self, name: impl Into<String>, key: [u8; 32]) -> Self {
        self.trusted_verifiers
            .push(sealpost_devices::TrustedVerifier {
                name: name.into(),
                key,
            });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_parse() {
        let p = |s: &str| s.parse::<RelayAddr>();
        assert_eq!(
            p("127.0.0.1:4433"),
            Ok(RelayAddr::Socket("127.0.0.1:4433".parse().unwrap()))
        );
        assert_eq!(
            p("[::1]:4433"),
            Ok(RelayAddr::Socket("[::1]:4433".parse().unwrap()))
        );
        assert_eq!(
            p(" relay.example.org.:4433 "),
            Ok(RelayAddr::Host {
                name: "relay.example.org".into(),
                port: 4433
            })
        );
        assert_eq!(
            p("relay.example.org:4433").unwrap().to_string(),
            "relay.example.org:4433"
        );
        assert_eq!(p("relay.example.org"), Err(RelayAddrError::MissingPort));
        assert_eq!(p("relay:0"), Err(RelayAddrError::InvalidPort));
        assert_eq!(p("relay:65536"), Err(RelayAddrError::InvalidPort));
        assert_eq!(p(":4433"), Err(RelayAddrError::InvalidHost));
        assert_eq!(p("a..b:4433"), Err(RelayAddrError::InvalidHost));
        assert_eq!(p("-a.b:4433"), Err(RelayAddrError::InvalidHost));
        assert_eq!(p("a b:4433"), Err(RelayAddrError::InvalidHost));
        assert_eq!(p("::1:4433"), Err(RelayAddrError::InvalidHost));
    }

    #[test]
    fn keep_alive_is_well_below_both_idle_timeouts() {
        // Three keep-alives fit in the client's idle timeout, and the relay's
        // (spec/relay.md section 1): one lost packet never ends a connection.
        assert!(KEEP_ALIVE * 3 <= IDLE_TIMEOUT);
        assert!(IDLE_TIMEOUT <= Duration::from_secs(sealpost_relay::limits::IDLE_TIMEOUT_SECS));
    }

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
