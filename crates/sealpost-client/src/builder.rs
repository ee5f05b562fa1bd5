//! [`ClientConfigBuilder`]: the short way to a [`ClientConfig`].

use crate::config::{AccountKind, Backoff, ClientConfig, Guardians, RelayAddr, RelayAddrError};
use sealpost_crypto::spki::{SpkiPin, SpkiPinError, SpkiPins};
use sealpost_pin::stretch::Argon2Params as PinArgon2Params;
use sealpost_session::SessionConfig;
use std::time::Duration;

/// Why [`ClientConfigBuilder::build`] refused the configuration. Positions count from 0 in
/// the order the relays or pins were given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A relay's host name or port is invalid.
    #[error("relay #{index}: {error}")]
    InvalidRelay {
        /// Its position.
        index: usize,
        /// What is wrong with it.
        error: RelayAddrError,
    },
    /// No relay was given ([`ClientConfigBuilder::relay`]).
    #[error("no relay address: give the relay's host name and port")]
    NoRelay,
    /// A pin's text form does not parse (`sha256/<base64>`, as the relay prints it).
    #[error("relay pin #{index}: {error}")]
    InvalidPin {
        /// Its position.
        index: usize,
        /// What is wrong with it.
        error: SpkiPinError,
    },
    /// The list of pins is empty or too long ([`SpkiPinError::Empty`],
    /// [`SpkiPinError::TooMany`]).
    #[error("relay pins: {0}")]
    Pins(SpkiPinError),
    /// The device name ([`ClientConfigBuilder::device_name`]) is empty, longer than 64
    /// bytes, or has a control character (spec/devices.md section 3.1).
    #[error("a device name is 1 to 64 bytes of text without control characters")]
    InvalidDeviceName,
}

/// Builds a [`ClientConfig`] from the relay's host name and port and its public-key pin in
/// text form; everything else has a production default (see the `with_` methods of
/// [`ClientConfig`] for what each setting does). Parse errors are kept until
/// [`build`](Self::build), which reports the first one.
///
/// ```
/// use sealpost_client::ClientConfig;
///
/// let config = ClientConfig::builder()
///     .relay("relay.example.org", 4433)
///     .pin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
///     .build()?;
/// assert_eq!(config.relays.len(), 1);
/// # Ok::<(), sealpost_client::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ClientConfigBuilder {
    relays: Vec<RelayAddr>,
    pins: Vec<SpkiPin>,
    error: Option<ConfigError>,
    relay_count: usize,
    pin_count: usize,
    server_name: Option<String>,
    request_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    keep_alive: Option<(Duration, Duration)>,
    reconnect: Option<Backoff>,
    event_capacity: Option<usize>,
    session: Option<SessionConfig>,
    guardians: Option<Guardians>,
    pin_params: Option<PinArgon2Params>,
    account_kind: Option<AccountKind>,
    device_name: Option<String>,
    trusted_verifiers: Vec<sealpost_devices::TrustedVerifier>,
}

impl ClientConfig {
    /// A [`ClientConfigBuilder`].
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder::default()
    }
}

impl ClientConfigBuilder {
    fn fail(&mut self, error: ConfigError) {
        self.error.get_or_insert(error);
    }

    /// Adds a relay node: a DNS name (resolved again at every connection attempt, all its
    /// addresses tried) or an IP address literal, and its UDP port. Nodes are tried in the
    /// order given; the first is also the default PIN guardian.
    pub fn relay(mut self, host: &str, port: u16) -> Self {
        let index = self.relay_count;
        self.relay_count += 1;
        match RelayAddr::new(host, port) {
            Ok(addr) => self.relays.push(addr),
            Err(error) => self.fail(ConfigError::InvalidRelay { index, error }),
        }
        self
    }

    /// Adds a relay node given as a [`RelayAddr`] (e.g. a `SocketAddr`).
    pub fn relay_addr(mut self, addr: impl Into<RelayAddr>) -> Self {
        self.relay_count += 1;
        self.relays.push(addr.into());
        self
    }

    /// Adds an accepted public-key pin in its text form, `sha256/<base64>` (the relay prints
    /// it at start). Add the current key's pin and, ahead of a key rotation, the next one.
    pub fn pin(mut self, pin: &str) -> Self {
        let index = self.pin_count;
        self.pin_count += 1;
        match pin.parse::<SpkiPin>() {
            Ok(p) => self.pins.push(p),
            Err(error) => self.fail(ConfigError::InvalidPin { index, error }),
        }
        self
    }

    /// Adds an accepted public-key pin already parsed.
    pub fn spki_pin(mut self, pin: SpkiPin) -> Self {
        self.pin_count += 1;
        self.pins.push(pin);
        self
    }

    /// The TLS server name sent in the handshake (not verified: the pin decides). Default
    /// `sealpost-relay`.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// See [`ClientConfig::with_request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// See [`ClientConfig::with_connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// See [`ClientConfig::with_keep_alive`].
    pub fn keep_alive(mut self, keep_alive: Duration, idle_timeout: Duration) -> Self {
        self.keep_alive = Some((keep_alive, idle_timeout));
        self
    }

    /// See [`ClientConfig::with_reconnect`].
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// See [`ClientConfig::with_event_capacity`].
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = Some(capacity);
        self
    }

    /// Limits of new sessions.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.session = Some(session);
        self
    }

    /// See [`ClientConfig::with_guardians`]. Default: the first relay alone, 1-of-1.
    pub fn guardians(mut self, guardians: Guardians) -> Self {
        self.guardians = Some(guardians);
        self
    }

    /// See [`ClientConfig::with_pin_params`].
    pub fn pin_params(mut self, params: PinArgon2Params) -> Self {
        self.pin_params = Some(params);
        self
    }

    /// The kind of account a registration makes ([`ClientConfig::account_kind`]).
    pub fn account_kind(mut self, kind: AccountKind) -> Self {
        self.account_kind = Some(kind);
        self
    }

    /// This device's name on a first list it generates ([`ClientConfig::device_name`]);
    /// checked by [`build`](Self::build).
    pub fn device_name(mut self, name: impl Into<String>) -> Self {
        self.device_name = Some(name.into());
        self
    }

    /// Trusts a verifier of businesses ([`ClientConfig::trusted_verifiers`]): `name` is what
    /// users see ("verified by ..."), `key` its Ed25519 public key. May be called several
    /// times.
    pub fn trusted_verifier(mut self, name: impl Into<String>, key: [u8; 32]) -> Self {
        self.trusted_verifiers
            .push(sealpost_devices::TrustedVerifier {
                name: name.into(),
                key,
            });
        self
    }

    /// The configuration, or the first error met (a relay or pin that does not parse, no
    /// relay, no pin, an invalid device name).
    pub fn build(self) -> Result<ClientConfig, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let first = self.relays.first().cloned().ok_or(ConfigError::NoRelay)?;
        let pins = SpkiPins::new(self.pins).map_err(ConfigError::Pins)?;
        let mut config = ClientConfig::with_first_relay(first, pins).with_relays(self.relays);
        if let Some(name) = self.server_name {
            config.server_name = name;
        }
        if let Some(t) = self.request_timeout {
            config.request_timeout = t;
        }
        if let Some(t) = self.connect_timeout {
            config.connect_timeout = t;
        }
        if let Some((keep_alive, idle)) = self.keep_alive {
            config = config.with_keep_alive(keep_alive, idle);
        }
        if let Some(b) = self.reconnect {
            config.reconnect = b;
        }
        if let Some(c) = self.event_capacity {
            config = config.with_event_capacity(c);
        }
        if let Some(s) = self.session {
            config.session = s;
        }
        if let Some(g) = self.guardians {
            config.guardians = g;
        }
        if let Some(p) = self.pin_params {
            config.pin_params = p;
        }
        if let Some(k) = self.account_kind {
            config.account_kind = k;
        }
        config.trusted_verifiers = self.trusted_verifiers;
        if let Some(name) = self.device_name {
            config.device_name = Some(name);
            config
                .key_holder_name(config.account_kind)
                .map_err(|_| ConfigError::InvalidDeviceName)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn business_accounts_and_device_names() {
        let base = || {
            ClientConfig::builder()
                .relay("relay.example.org", 4433)
                .pin(PIN)
        };
        let config = base().build().unwrap();
        assert_eq!(config.account_kind, AccountKind::Personal);
        assert_eq!(config.device_name, None);
        let config = base()
            .account_kind(AccountKind::Business)
            .device_name("Shop owner")
            .build()
            .unwrap();
        assert_eq!(config.account_kind, AccountKind::Business);
        assert_eq!(config.device_name.as_deref(), Some("Shop owner"));
        for bad in ["", "line\nbreak", &"x".repeat(65)] {
            assert_eq!(
                base().device_name(bad).build().unwrap_err(),
                ConfigError::InvalidDeviceName,
                "{bad:?}"
            );
        }
        assert!(base().device_name("x".repeat(64)).build().is_ok());
        assert_eq!(AccountKind::Business.default_device_name(), "Owner");
        assert_eq!(AccountKind::Personal.default_device_name(), "Primary");
        assert!(config.trusted_verifiers.is_empty());
        let trusting = base()
            .trusted_verifier("Registry", [1; 32])
            .trusted_verifier("Chamber", [2; 32])
            .build()
            .unwrap();
        let names: Vec<&str> = trusting
            .trusted_verifiers
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["Registry", "Chamber"]);
        assert_eq!(trusting.trusted_verifiers[1].key, [2; 32]);
    }

    #[test]
    fn builds_with_defaults_and_names() {
        let config = ClientConfig::builder()
            .relay("relay.example.org", 4433)
            .relay("127.0.0.1", 4434)
            .pin(PIN)
            .build()
            .unwrap();
        assert_eq!(
            config.relays,
            vec![
                RelayAddr::Host {
                    name: "relay.example.org".into(),
                    port: 4433
                },
                RelayAddr::Socket("127.0.0.1:4434".parse().unwrap()),
            ]
        );
        assert_eq!(config.relay_pins.as_slice(), &[PIN.parse().unwrap()]);
        assert_eq!(config.guardians.threshold(), 1);
        assert_eq!(
            config.guardians.list()[0].addr,
            RelayAddr::Host {
                name: "relay.example.org".into(),
                port: 4433
            }
        );
        assert_eq!(config.keep_alive, crate::KEEP_ALIVE);
        assert_eq!(config.event_capacity, crate::config::DEFAULT_EVENT_CAPACITY);
    }

    #[test]
    fn reports_the_first_error_with_its_position() {
        let b = || ClientConfig::builder();
        assert_eq!(
            b().relay("relay", 1)
                .pin(PIN)
                .pin("sha256/not base64!")
                .build()
                .err(),
            Some(ConfigError::InvalidPin {
                index: 1,
                error: SpkiPinError::Base64
            })
        );
        assert_eq!(
            b().relay("a b", 1).pin("x").build().err(),
            Some(ConfigError::InvalidRelay {
                index: 0,
                error: RelayAddrError::InvalidHost
            })
        );
        assert_eq!(
            b().relay("relay", 0).pin(PIN).build().err(),
            Some(ConfigError::InvalidRelay {
                index: 0,
                error: RelayAddrError::InvalidPort
            })
        );
        assert_eq!(b().pin(PIN).build().err(), Some(ConfigError::NoRelay));
        assert_eq!(
            b().relay("relay", 1).build().err(),
            Some(ConfigError::Pins(SpkiPinError::Empty))
        );
        assert_eq!(
            b().relay("relay", 1).pin(&"ab".repeat(32)).build().err(),
            Some(ConfigError::InvalidPin {
                index: 0,
                error: SpkiPinError::CertificateFingerprint
            })
        );
    }
}
