//! Configuration: a TOML file (`--config path`), `SEALPOST_RELAY_*` environment variables and
//! command-line flags, with precedence **flags > environment > file > defaults**.
//!
//! Every option is declared once (`options.rs`): its flag, its environment variable and its
//! file key come from that one definition, so the three cannot drift apart.
//! `sealpost-relay --help` lists each option with its variable; `sealpost-relay
//! --print-config` prints the effective configuration as a loadable file with secrets
//! redacted ([`RelayConfig::to_toml`]). A file, for example:
//!
//! ```toml
//! listen = "0.0.0.0:4433"
//! data_dir = "/var/lib/sealpost-relay"
//! store = "sqlite"                       # or "postgres://user:password@db.internal/sealpost"
//! nats = "nats://127.0.0.1:4222"         # optional, with a shared store: cross-node wake-ups
//! metrics_listen = "127.0.0.1:9464"      # optional; /metrics, /healthz, /readyz
//! cert = "/etc/sealpost/cert.pem"        # optional, with `key`; else self-signed
//! key = "/etc/sealpost/key.pem"
//! reset_key_file = "/etc/sealpost/stateless-reset.key"  # optional: shared by every node of a
//!                                        #   deployment; else `stateless-reset.key` in data_dir
//! cert_names = ["relay.example.com"]     # names of the self-signed certificate
//! webhook_url = "https://sms.example/send"  # the production code sender (spec/relay.md 3.1)
//! webhook_secret_file = "/etc/sealpost/webhook.secret"  # or webhook_secret = "..."
//! webhook_timeout_secs = 10
//! dev_log_codes = false                  # development only: write codes to the log
//! sweep_interval_secs = 60
//! shutdown_grace_secs = 10
//!
//! [limits]                               # see `Limits`; flag --max-connections, variable
//! max_connections = 10000                #   SEALPOST_RELAY_MAX_CONNECTIONS, and so on
//! code_requests_per_hour = 3000
//!
//! [guardian]                             # spec/pin.md section 9; see `GuardianConfig`
//! enabled = true                         # --guardian[=false], --no-guardian
//! max_attempts = 10                      # --guardian-max-attempts, 1..=100
//! accounts = ["*"]                       # --guardian-accounts +1555,+44
//! trusted_issuers = ["<64 hex>"]         # --guardian-trusted-issuer (repeatable)
//! max_vaults = 1000000                   # --guardian-max-vaults
//! ```
//!
//! The variable of an option is `SEALPOST_RELAY_` and its flag in capitals with `_` for `-`
//! (`--max-connections`: `SEALPOST_RELAY_MAX_CONNECTIONS`; `--guardian-trusted-issuer`:
//! `SEALPOST_RELAY_GUARDIAN_TRUSTED_ISSUERS`, comma-separated); lists are comma-separated and
//! booleans `true` or `false`. `SEALPOST_RELAY_CONFIG` names the file.
//!
//! A relay needs a code sender: `webhook_url` (production) or `dev_log_codes` /
//! `--dev-log-codes` (development: codes are written to the log, so anyone who reads it can
//! register any number). With neither, the relay refuses to start. The webhook must be
//! `https://` (plain `http://` only to a loopback address) and every request is signed with
//! HMAC-SHA256 under `webhook_secret` (file or `SEALPOST_RELAY_WEBHOOK_SECRET` only, never a
//! flag: flags are visible to every local user) or the contents of `webhook_secret_file`
//! (spec/relay.md section 3.1.1).
//!
//! `store` ([`StoreBackend`]) is `sqlite` (the default: `relay.db` in the data directory) or a
//! PostgreSQL URL `postgres://...` shared by several relay nodes (spec/relay-store.md
//! section 3); put a URL that carries a password in the file or `SEALPOST_RELAY_STORE`, not
//! in `--store` (flags are visible to every local user).
//!
//! `nats` ([`RelayConfig::nats`]) is the URL of a NATS server (`nats://host:port`, or
//! `tls://...`) through which the nodes of one deployment wake each other's deliveries
//! (spec/relay.md section 8, "Several nodes"). It is only meaningful with a store that other
//! nodes share (`postgres://...`): a SQLite relay is the only node of its store. A URL with
//! credentials belongs in the file or `SEALPOST_RELAY_NATS`.
//!
//! The relay prints its guardian issuer key at start (`guardian issuer key: <hex>`). Three
//! guardians trusting one issuer, for example:
//!
//! ```sh
//! sealpost-relay --dev-log-codes --data-dir a --listen 127.0.0.1:4433      # prints its issuer key K
//! sealpost-relay --dev-log-codes --data-dir b --listen 127.0.0.1:4434 --guardian-trusted-issuer K
//! sealpost-relay --dev-log-codes --data-dir c --listen 127.0.0.1:4435 --guardian-trusted-issuer K
//! ```
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`RelayConfig`], [`StoreBackend`], [`NatsUrl`], loading and checks |
//! | `options.rs` | every option, declared once (flag, variable, file key) |
//! | `print.rs` | `--print-config`: [`RelayConfig::to_toml`], secrets redacted |

mod options;
mod print;
#[cfg(test)]
mod tests;

pub use print::REDACTED;

use crate::codes::{CodeSender, WEBHOOK_MIN_SECRET_LEN};
use crate::guardian::GuardianConfig;
use crate::limits::Limits;
use crate::{ConfigError, RelayError};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4433";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./sealpost-relay-data";

/// The message of a configuration without a code sender ([`ConfigError::NoCodeSender`]).
pub const NO_CODE_SENDER: &str = "no verification code sender: set webhook_url (an SMS gateway) \
     or, for development only, --dev-log-codes (codes are written to the log, where anyone who \
     reads it can register any number)";

/// Where the relay keeps its state (`store` in the file, `SEALPOST_RELAY_STORE`, `--store`).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreBackend {
    /// `relay.db` (SQLite) in the data directory: one relay process. The default.
    #[default]
    Sqlite,
    /// A PostgreSQL database that any number of relay nodes share (spec/relay-store.md
    /// section 3): a libpq URL `postgres://` or `postgresql://`. It may carry a password:
    /// `Debug` does not print it.
    Postgres(Zeroizing<String>),
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("Sqlite"),
            Self::Postgres(_) => f.write_str("Postgres(<url>)"),
        }
    }
}

impl std::str::FromStr for StoreBackend {
    type Err = ConfigError;

    /// `sqlite`, or a URL starting with `postgres://` or `postgresql://`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "sqlite" {
            Ok(Self::Sqlite)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(Zeroizing::new(s.to_owned())))
        } else {
            Err(ConfigError::Store)
        }
    }
}

/// The URL of the NATS server of a deployment's cross-node wake-ups (`nats` in the file,
/// `SEALPOST_RELAY_NATS`, `--nats`; spec/relay.md section 8): `nats://`, `tls://`, `ws://` or
/// `wss://`. It may carry credentials: `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl(Zeroizing<String>);

impl NatsUrl {
    /// The URL, credentials included: for connecting, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsUrl(<url>)")
    }
}

impl std::str::FromStr for NatsUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|scheme| s.len() > scheme.len() && s.starts_with(scheme))
        {
            Ok(Self(Zeroizing::new(s.to_owned())))
        } else {
            Err(ConfigError::Nats)
        }
    }
}

/// Everything [`crate::Relay::start`] needs.
#[derive(Clone)]
pub struct RelayConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Directory of the database, the code key and the self-signed certificate.
    pub data_dir: PathBuf,
    /// Where the relay keeps its state (default: SQLite in `data_dir`).
    pub store: StoreBackend,
    /// The NATS server of the deployment's cross-node wake-ups (spec/relay.md section 8);
    /// none: this node pushes live only what was sent through itself. The URL may carry
    /// credentials: `Debug` does not print it.
    pub nats: Option<NatsUrl>,
    /// Address of the HTTP listener of the Prometheus exporter (`GET /metrics`) and the
    /// probes: liveness `GET /healthz` (alias `/live`) and readiness `GET /readyz` (alias
    /// `/ready`: 200, or 503 and the reason, spec/relay.md section 5); none means no
    /// exporter and no probes.
    pub metrics_listen: Option<SocketAddr>,
    /// Operator certificate chain (PEM); with `key_path`. None: self-signed in `data_dir`.
    pub cert_path: Option<PathBuf>,
    /// Operator private key (PEM).
    pub key_path: Option<PathBuf>,
    /// Subject alternative names of a generated self-signed certificate.
    pub cert_names: Vec<String>,
    /// The stateless-reset key (32 bytes, secret), shared by every node of a deployment so
    /// that any of them resets a dead node's connections at once (spec/relay.md section
    /// 1.2); the file must exist. None: `stateless-reset.key` in `data_dir`, created on first
    /// start.
    pub reset_key_file: Option<PathBuf>,
    /// Verification codes are POSTed here (the production code sender).
    pub webhook_url: Option<String>,
    /// The webhook's HMAC secret (at least 16 bytes); exactly one of this and
    /// `webhook_secret_file` is required with `webhook_url`.
    pub webhook_secret: Option<Zeroizing<String>>,
    /// A file holding the webhook's HMAC secret (surrounding whitespace is ignored).
    pub webhook_secret_file: Option<PathBuf>,
    /// Development only: write verification codes to the log ([`crate::LogCodeSender`])
    /// when neither `code_sender` nor `webhook_url` is set. Without any of the three the
    /// relay refuses to start.
    pub dev_log_codes: bool,
    /// Timeout of one webhook call, in seconds.
    pub webhook_timeout_secs: u64,
    /// Period of the expiry sweep, in seconds.
    pub sweep_interval_secs: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_secs: u64,
    /// Limits.
    pub limits: Limits,
    /// The guardian role (default: enabled for every account, own issuer only).
    pub guardian: GuardianConfig,
    /// Overrides the code sender (tests capture codes with it). Takes precedence over
    /// `webhook_url`.
    pub code_sender: Option<Arc<dyn CodeSender>>,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("store", &self.store)
            .field("nats", &self.nats)
            .field("metrics_listen", &self.metrics_listen)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("cert_names", &self.cert_names)
            .field("reset_key_file", &self.reset_key_file)
            .field("webhook", &self.webhook_url.as_ref().map(|_| "configured"))
            .field("dev_log_codes", &self.dev_log_codes)
            .field("code_sender", &self.code_sender.as_ref().map(|_| "set"))
            .field("limits", &self.limits)
            .field("guardian", &self.guardian)
            .finish_non_exhaustive()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            store: StoreBackend::Sqlite,
            nats: None,
            metrics_listen: None,
            cert_path: None,
            key_path: None,
            cert_names: vec!["localhost".into()],
            reset_key_file: None,
            webhook_url: None,
            webhook_secret: None,
            webhook_secret_file: None,
            dev_log_codes: false,
            webhook_timeout_secs: 10,
            sweep_interval_secs: 60,
            shutdown_grace_secs: 10,
            limits: Limits::default(),
            guardian: GuardianConfig::default(),
            code_sender: None,
        }
    }
}

impl RelayConfig {
    /// Defaults with `data_dir` set and listening on `127.0.0.1:0` (an ephemeral port). No
    /// code sender is set: set [`RelayConfig::code_sender`] (tests capture codes with it) or
    /// `dev_log_codes`.
    pub fn for_tests(data_dir: impl AsRef<Path>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.as_ref().to_path_buf(),
            ..Self::default()
        }
    }

    /// Replaces the guardian configuration (builder style, for tests and embedders).
    #[must_use]
    pub fn with_guardian(mut self, guardian: GuardianConfig) -> Self {
        self.guardian = guardian;
        self
    }

    /// Checks consistency (both or neither of cert/key, limits, guardian).
    pub fn validate(&self) -> Result<(), RelayError> {
        self.check_settings()
    }

    /// The consistency checks of [`RelayConfig::validate`], which loading applies (commands
    /// that do not start a relay, such as `--print-pin`, accept any store).
    fn check_settings(&self) -> Result<(), RelayError> {
        if self.cert_path.is_some() != self.key_path.is_some() {
            return Err(ConfigError::CertWithoutKey.into());
        }
        if self.sweep_interval_secs == 0 {
            return Err(ConfigError::NotPositive {
                key: "sweep_interval_secs",
            }
            .into());
        }
        if let Some(url) = &self.webhook_url {
            crate::codes::check_webhook_url(url).map_err(ConfigError::WebhookUrl)?;
            match (&self.webhook_secret, &self.webhook_secret_file) {
                (Some(_), Some(_)) => return Err(ConfigError::WebhookSecretTwice.into()),
                (None, None) => return Err(ConfigError::WebhookSecretMissing.into()),
                (Some(secret), None) => check_secret(secret.as_bytes())?,
                (None, Some(_)) => {}
            }
        }
        self.limits.validate()?;
        self.guardian.validate()?;
        Ok(())
    }

    /// Whether a code sender is configured (`code_sender`, `webhook_url` or
    /// `dev_log_codes`), else [`NO_CODE_SENDER`]. [`crate::Relay::start`] refuses to start
    /// without one; commands that do not start a relay (`--print-pin`) do not need one, so
    /// this is not part of loading the configuration.
    pub fn check_code_sender(&self) -> Result<(), RelayError> {
        if self.code_sender.is_none() && self.webhook_url.is_none() && !self.dev_log_codes {
            return Err(ConfigError::NoCodeSender.into());
        }
        Ok(())
    }

    /// The webhook secret: `webhook_secret`, or the contents of `webhook_secret_file`
    /// without surrounding whitespace; `None` without either.
    pub fn load_webhook_secret(&self) -> Result<Option<Zeroizing<Vec<u8>>>, RelayError> {
        let secret = match (&self.webhook_secret, &self.webhook_secret_file) {
            (Some(s), _) => Zeroizing::new(s.as_bytes().to_vec()),
            (None, Some(path)) => {
                let raw = Zeroizing::new(std::fs::read(path).map_err(|e| {
                    RelayError::io(
                        "reading",
                        crate::error::IoTarget::Path(path.to_path_buf()),
                        e,
                    )
                })?);
                Zeroizing::new(raw.trim_ascii().to_vec())
            }
            (None, None) => return Ok(None),
        };
        check_secret(&secret)?;
        Ok(Some(secret))
    }

    /// Reads flags from `args` (the first item is the program name), the environment and the
    /// configuration file they name.
    pub fn load(args: impl IntoIterator<Item = OsString>) -> Result<Self, RelayError> {
        Self::load_with_env(args, |k| std::env::var(k).ok())
    }

    /// As [`RelayConfig::load`], with environment variables looked up through `env`.
    /// `--print-config` ends in [`RelayError::Usage`] with the printed configuration and exit
    /// code 0, as `--help` does.
    pub fn load_with_env(
        args: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RelayError> {
        let flags = options::parse_flags(args.into_iter().collect())?;
        let from_env = options::parse_env(&env)?;
        let mut config = Self::default();
        if let Some(path) = flags.config.as_ref().or(from_env.config.as_ref()) {
            options::read_file(path)?.apply(&mut config);
        }
        from_env.options.apply(&mut config);
        flags.options.apply(&mut config);
        if flags.no_guardian {
            config.guardian.enabled = false;
        }
        config.check_settings()?;
        if flags.print_config {
            return Err(RelayError::Usage {
                text: config.to_toml()?,
                exit_code: 0,
            });
        }
        Ok(config)
    }
}

fn check_secret(secret: &[u8]) -> Result<(), RelayError> {
    if secret.len() < WEBHOOK_MIN_SECRET_LEN {
        return Err(ConfigError::WebhookSecretTooShort {
            len: secret.len(),
            min: WEBHOOK_MIN_SECRET_LEN,
        }
        .into());
    }
    Ok(())
}
