//! Configuration: a TOML file (`--config path`), `SEALPOST_RELAY_*` environment variables and
//! command-line flags, with precedence **flags > environment > file > defaults**.
//!
//! ```toml
//! listen = "0.0.0.0:4433"
//! data_dir = "/var/lib/sealpost-relay"
//! store = "sqlite"                       # or "postgres://user:password@db.internal/sealpost"
//! nats = "nats://127.0.0.1:4222"         # optional, with a shared store: cross-node wake-ups
//! metrics_listen = "127.0.0.1:9464"      # optional; Prometheus `/metrics`, `/ready`, `/live`
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
//! [limits]                               # see `Limits`; operators may lower them
//! code_requests_per_account = 3          # per number per 10 minutes (persisted quotas:
//! code_requests_per_source_per_hour = 30  #   spec/relay.md 7.1)
//! code_requests_per_country_per_hour = 300
//! code_requests_per_hour = 3000           # relay-wide
//! bundle_fetches_per_pair_burst = 3      # FetchBundles per (requester, target) account,
//! bundle_fetch_pair_interval_secs = 300  #   then one per 5 minutes (persisted)
//! bundle_fetches_per_target_per_day = 500
//! max_connections = 10000
//! max_connections_per_ip = 256
//! vault_requests_per_account = 30        # per 10 minutes (spec/pin.md section 9)
//!
//! [guardian]                             # spec/pin.md section 9; see `GuardianConfig`
//! enabled = true                         # default: on, 1-of-1 for this relay's own accounts
//! max_attempts = 10                      # 1..=100
//! accounts = ["*"]                       # or E.164 prefixes, e.g. ["+1555"]
//! trusted_issuers = ["<64 hex>"]         # other relays' issuer keys; our own is implied
//! max_vaults = 1000000
//! ```
//!
//! Environment variables: `SEALPOST_RELAY_CONFIG`, `_LISTEN`, `_DATA_DIR`, `_STORE`, `_NATS`, `_METRICS_LISTEN`,
//! `_CERT`, `_KEY`, `_RESET_KEY_FILE`, `_CERT_NAMES` (comma-separated), `_WEBHOOK_URL`, `_WEBHOOK_SECRET`,
//! `_WEBHOOK_SECRET_FILE`, `_DEV_LOG_CODES`
//! (`true`/`false`), `_CODE_REQUESTS_PER_SOURCE_PER_HOUR`, `_CODE_REQUESTS_PER_COUNTRY_PER_HOUR`,
//! `_CODE_REQUESTS_PER_HOUR`, `_MAX_CONNECTIONS`,
//! `_MAX_CONNECTIONS_PER_IP`, `_GUARDIAN` (`true`/`false`), `_GUARDIAN_MAX_ATTEMPTS`,
//! `_GUARDIAN_TRUSTED_ISSUERS` (comma-separated hex), `_GUARDIAN_ACCOUNTS` (comma-separated).
//!
//! A relay needs a code sender: `webhook_url` (production) or `dev_log_codes` /
//! `--dev-log-codes` (development: codes are written to the log, so anyone who reads it can
//! register any number). With neither, the relay refuses to start. The webhook must be
//! `https://` (plain `http://` only to a loopback address) and every request is signed with
//! HMAC-SHA256 under `webhook_secret` (file or environment only, never a flag: flags are
//! visible to every local user) or the contents of `webhook_secret_file` (spec/relay.md
//! section 3.1.1).
//!
//! `store` ([`StoreBackend`]) is `sqlite` (the default: `relay.db` in the data directory) or a
//! PostgreSQL URL `postgres://...` shared by several relay nodes (spec/relay-store.md
//! section 3); put a URL that carries a password in the file or `SEALPOST_RELAY_STORE`, not
//! in `--store` (flags are visible to every local user).
//!
//! `nats` ([`RelayConfig::nats`]) is the URL of a NATS server (`nats://host:port`, or
//! `tls://...`) through which the nodes of one deployment wake each other's deliveries
//! (spec/relay.md section 8, "Several nodes"). It is only meaningful with a store that other
//! nodes share (`postgres://...`): a SQLite relay is the only node of its store. Without it a
//! node pushes live only what was sent through itself, and other mail on the device's next
//! connection. A URL with credentials belongs in the file or `SEALPOST_RELAY_NATS`.
//!
//! Flags: `--store`, `--nats`, `--dev-log-codes`, `--guardian` / `--no-guardian`, `--guardian-max-attempts N`,
//! `--guardian-trusted-issuer HEX` (repeatable; replaces the file's list),
//! `--guardian-accounts +1555,+44`. The relay prints its issuer key at start
//! (`guardian issuer key: <hex>`). Three guardians trusting one issuer, for example:
//!
//! ```sh
//! sealpost-relay --dev-log-codes --data-dir a --listen 127.0.0.1:4433      # prints its issuer key K
//! sealpost-relay --dev-log-codes --data-dir b --listen 127.0.0.1:4434 --guardian-trusted-issuer K
//! sealpost-relay --dev-log-codes --data-dir c --listen 127.0.0.1:4435 --guardian-trusted-issuer K
//! ```

use crate::RelayError;
use crate::codes::{CodeSender, WEBHOOK_MIN_SECRET_LEN};
use crate::guardian::GuardianConfig;
use crate::limits::Limits;
use clap::Parser;
use serde::Deserialize;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4433";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./sealpost-relay-data";

/// The error of a configuration without a code sender.
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
    type Err = RelayError;

    /// `sqlite`, or a URL starting with `postgres://` or `postgresql://`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "sqlite" {
            Ok(Self::Sqlite)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(Zeroizing::new(s.to_owned())))
        } else {
            Err(RelayError::Config(
                "store must be \"sqlite\" or a postgres:// URL".into(),
            ))
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
    type Err = RelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|scheme| s.len() > scheme.len() && s.starts_with(scheme))
        {
            Ok(Self(Zeroizing::new(s.to_owned())))
        } else {
            Err(RelayError::Config(
                "nats must be a nats://host:port URL".into(),
            ))
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
    /// Prometheus exporter address, which also answers the readiness (`GET /ready`: 200, or
    /// 503 and the reason, spec/relay.md section 5) and liveness (`GET /live`) probes; none
    /// means no exporter and no probes.
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
            return Err(RelayError::Config(
                "cert and key must be configured together".into(),
            ));
        }
        if self.sweep_interval_secs == 0 {
            return Err(RelayError::Config(
                "sweep_interval_secs must be positive".into(),
            ));
        }
        if let Some(url) = &self.webhook_url {
            crate::codes::check_webhook_url(url).map_err(|m| RelayError::Config(m.into()))?;
            match (&self.webhook_secret, &self.webhook_secret_file) {
                (Some(_), Some(_)) => {
                    return Err(RelayError::Config(
                        "set one of webhook_secret and webhook_secret_file, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(RelayError::Config(
                        "webhook_url needs webhook_secret or webhook_secret_file \
                         (requests are signed, spec/relay.md 3.1.1)"
                            .into(),
                    ));
                }
                (Some(secret), None) => check_secret(secret.as_bytes())?,
                (None, Some(_)) => {}
            }
        }
        self.limits.validate().map_err(RelayError::Config)?;
        self.guardian.validate().map_err(RelayError::Config)
    }

    /// Whether a code sender is configured (`code_sender`, `webhook_url` or
    /// `dev_log_codes`), else [`NO_CODE_SENDER`]. [`crate::Relay::start`] refuses to start
    /// without one; commands that do not start a relay (`--print-pin`) do not need one, so
    /// this is not part of loading the configuration.
    pub fn check_code_sender(&self) -> Result<(), RelayError> {
        if self.code_sender.is_none() && self.webhook_url.is_none() && !self.dev_log_codes {
            return Err(RelayError::Config(NO_CODE_SENDER.into()));
        }
        Ok(())
    }

    /// The webhook secret: `webhook_secret`, or the contents of `webhook_secret_file`
    /// without surrounding whitespace; `None` without either.
    pub fn load_webhook_secret(&self) -> Result<Option<Zeroizing<Vec<u8>>>, RelayError> {
        let secret = match (&self.webhook_secret, &self.webhook_secret_file) {
            (Some(s), _) => Zeroizing::new(s.as_bytes().to_vec()),
            (None, Some(path)) => {
                let raw = Zeroizing::new(
                    std::fs::read(path)
                        .map_err(|e| RelayError::io(format!("reading {}", path.display()), e))?,
                );
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
    pub fn load_with_env(
        args: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RelayError> {
        let cli = Cli::try_parse_from(args).map_err(|e| RelayError::Usage {
            text: e.render().to_string(),
            exit_code: e.exit_code(),
        })?;
        let flags = cli.layer();
        let env_layer = Layer::from_env(&env)?;
        let config_path = cli
            .config
            .clone()
            .or_else(|| env("SEALPOST_RELAY_CONFIG").map(PathBuf::from));
        let mut config = Self::default();
        if let Some(path) = config_path {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| RelayError::io(format!("reading {}", path.display()), e))?;
            let file: FileConfig = toml::from_str(&text)
                .map_err(|e| RelayError::Config(format!("{}: {e}", path.display())))?;
            if let Some(l) = file.limits.clone() {
                config.limits = l;
            }
            if let Some(g) = file.guardian.clone() {
                config.guardian = g;
            }
            config.apply(file.layer()?);
        }
        config.apply(env_layer);
        config.apply(flags);
        config.check_settings()?;
        Ok(config)
    }

    fn apply(&mut self, l: Layer) {
        if let Some(v) = l.listen {
            self.listen = v;
        }
        if let Some(v) = l.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = l.store {
            self.store = v;
        }
        if let Some(v) = l.nats {
            self.nats = Some(v);
        }
        if let Some(v) = l.metrics_listen {
            self.metrics_listen = Some(v);
        }
        if let Some(v) = l.cert {
            self.cert_path = Some(v);
        }
        if let Some(v) = l.key {
            self.key_path = Some(v);
        }
        if let Some(v) = l.cert_names {
            self.cert_names = v;
        }
        if let Some(v) = l.reset_key_file {
            self.reset_key_file = Some(v);
        }
        if let Some(v) = l.webhook_url {
            self.webhook_url = Some(v);
        }
        if let Some(v) = l.webhook_secret {
            self.webhook_secret = Some(v);
        }
        if let Some(v) = l.webhook_secret_file {
            self.webhook_secret_file = Some(v);
        }
        if let Some(v) = l.dev_log_codes {
            self.dev_log_codes = v;
        }
        if let Some(v) = l.webhook_timeout_secs {
            self.webhook_timeout_secs = v;
        }
        if let Some(v) = l.sweep_interval_secs {
            self.sweep_interval_secs = v;
        }
        if let Some(v) = l.shutdown_grace_secs {
            self.shutdown_grace_secs = v;
        }
        if let Some(v) = l.code_requests_per_source_per_hour {
            self.limits.code_requests_per_source_per_hour = v;
        }
        if let Some(v) = l.code_requests_per_country_per_hour {
            self.limits.code_requests_per_country_per_hour = v;
        }
        if let Some(v) = l.code_requests_per_hour {
            self.limits.code_requests_per_hour = v;
        }
        if let Some(v) = l.max_connections {
            self.limits.max_connections = v;
        }
        if let Some(v) = l.max_connections_per_ip {
            self.limits.max_connections_per_ip = v;
        }
        if let Some(v) = l.guardian {
            self.guardian.enabled = v;
        }
        if let Some(v) = l.guardian_max_attempts {
            self.guardian.max_attempts = v;
        }
        if let Some(v) = l.guardian_trusted_issuers {
            self.guardian.trusted_issuers = v;
        }
        if let Some(v) = l.guardian_accounts {
            self.guardian.accounts = v;
        }
    }
}

fn check_secret(secret: &[u8]) -> Result<(), RelayError> {
    if secret.len() < WEBHOOK_MIN_SECRET_LEN {
        return Err(RelayError::Config(format!(
            "the webhook secret has {} bytes; at least {WEBHOOK_MIN_SECRET_LEN} are required",
            secret.len()
        )));
    }
    Ok(())
}

/// One source's settings; `None` leaves the lower layer's value.
#[derive(Default)]
struct Layer {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<StoreBackend>,
    nats: Option<NatsUrl>,
    metrics_listen: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cert_names: Option<Vec<String>>,
    reset_key_file: Option<PathBuf>,
    webhook_url: Option<String>,
    webhook_secret: Option<Zeroizing<String>>,
    webhook_secret_file: Option<PathBuf>,
    dev_log_codes: Option<bool>,
    webhook_timeout_secs: Option<u64>,
    sweep_interval_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    code_requests_per_source_per_hour: Option<u32>,
    code_requests_per_country_per_hour: Option<u32>,
    code_requests_per_hour: Option<u32>,
    max_connections: Option<u32>,
    max_connections_per_ip: Option<u32>,
    guardian: Option<bool>,
    guardian_max_attempts: Option<u16>,
    guardian_trusted_issuers: Option<Vec<String>>,
    guardian_accounts: Option<Vec<String>>,
}

fn list(v: String) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_env<T: std::str::FromStr>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<T>, RelayError>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e| RelayError::Config(format!("{name}: {e}"))),
    }
}

impl Layer {
    fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Self, RelayError> {
        Ok(Self {
            listen: parse_env(env, "SEALPOST_RELAY_LISTEN")?,
            data_dir: env("SEALPOST_RELAY_DATA_DIR").map(PathBuf::from),
            store: env("SEALPOST_RELAY_STORE")
                .map(|v| v.parse::<StoreBackend>())
                .transpose()
                .map_err(|e| RelayError::Config(format!("SEALPOST_RELAY_STORE: {e}")))?,
            nats: env("SEALPOST_RELAY_NATS")
                .map(|v| v.parse::<NatsUrl>())
                .transpose()
                .map_err(|e| RelayError::Config(format!("SEALPOST_RELAY_NATS: {e}")))?,
            metrics_listen: parse_env(env, "SEALPOST_RELAY_METRICS_LISTEN")?,
            cert: env("SEALPOST_RELAY_CERT").map(PathBuf::from),
            key: env("SEALPOST_RELAY_KEY").map(PathBuf::from),
            cert_names: env("SEALPOST_RELAY_CERT_NAMES")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
            reset_key_file: env("SEALPOST_RELAY_RESET_KEY_FILE").map(PathBuf::from),
            webhook_url: env("SEALPOST_RELAY_WEBHOOK_URL"),
            webhook_secret: env("SEALPOST_RELAY_WEBHOOK_SECRET").map(Zeroizing::new),
            webhook_secret_file: env("SEALPOST_RELAY_WEBHOOK_SECRET_FILE").map(PathBuf::from),
            dev_log_codes: parse_env(env, "SEALPOST_RELAY_DEV_LOG_CODES")?,
            webhook_timeout_secs: None,
            sweep_interval_secs: None,
            shutdown_grace_secs: None,
            code_requests_per_source_per_hour: parse_env(
                env,
                "SEALPOST_RELAY_CODE_REQUESTS_PER_SOURCE_PER_HOUR",
            )?,
            code_requests_per_country_per_hour: parse_env(
                env,
                "SEALPOST_RELAY_CODE_REQUESTS_PER_COUNTRY_PER_HOUR",
            )?,
            code_requests_per_hour: parse_env(env, "SEALPOST_RELAY_CODE_REQUESTS_PER_HOUR")?,
            max_connections: parse_env(env, "SEALPOST_RELAY_MAX_CONNECTIONS")?,
            max_connections_per_ip: parse_env(env, "SEALPOST_RELAY_MAX_CONNECTIONS_PER_IP")?,
            guardian: parse_env(env, "SEALPOST_RELAY_GUARDIAN")?,
            guardian_max_attempts: parse_env(env, "SEALPOST_RELAY_GUARDIAN_MAX_ATTEMPTS")?,
            guardian_trusted_issuers: env("SEALPOST_RELAY_GUARDIAN_TRUSTED_ISSUERS").map(list),
            guardian_accounts: env("SEALPOST_RELAY_GUARDIAN_ACCOUNTS").map(list),
        })
    }
}

/// The configuration file's shape (every key optional). Not `Debug`: it may hold the
/// webhook secret.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    nats: Option<String>,
    metrics_listen: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cert_names: Option<Vec<String>>,
    reset_key_file: Option<PathBuf>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    dev_log_codes: Option<bool>,
    webhook_timeout_secs: Option<u64>,
    sweep_interval_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    limits: Option<Limits>,
    guardian: Option<GuardianConfig>,
}

impl FileConfig {
    fn layer(self) -> Result<Layer, RelayError> {
        Ok(Layer {
            listen: self.listen,
            data_dir: self.data_dir,
            store: self
                .store
                .map(|v| v.parse::<StoreBackend>())
                .transpose()
                .map_err(|e| RelayError::Config(format!("store: {e}")))?,
            nats: self
                .nats
                .map(|v| v.parse::<NatsUrl>())
                .transpose()
                .map_err(|e| RelayError::Config(format!("nats: {e}")))?,
            metrics_listen: self.metrics_listen,
            cert: self.cert,
            key: self.key,
            cert_names: self.cert_names,
            reset_key_file: self.reset_key_file,
            webhook_url: self.webhook_url,
            webhook_secret: self.webhook_secret.map(Zeroizing::new),
            webhook_secret_file: self.webhook_secret_file,
            dev_log_codes: self.dev_log_codes,
            webhook_timeout_secs: self.webhook_timeout_secs,
            sweep_interval_secs: self.sweep_interval_secs,
            shutdown_grace_secs: self.shutdown_grace_secs,
            code_requests_per_source_per_hour: None,
            code_requests_per_country_per_hour: None,
            code_requests_per_hour: None,
            max_connections: None,
            max_connections_per_ip: None,
            guardian: None,
            guardian_max_attempts: None,
            guardian_trusted_issuers: None,
            guardian_accounts: None,
        })
    }
}

/// Command-line flags of `sealpost-relay`.
#[derive(Debug, Parser)]
#[command(
    name = "sealpost-relay",
    version,
    about = "The Sealpost QUIC relay",
    after_help = "--print-pin: print the public-key pin (sha256/<base64>) of the configured certificate\n(--cert, or the self-signed one in --data-dir) and exit, without starting."
)]
struct Cli {
    /// TOML configuration file [env: SEALPOST_RELAY_CONFIG].
    #[arg(long)]
    config: Option<PathBuf>,
    /// UDP address to listen on (default 127.0.0.1:4433) [env: SEALPOST_RELAY_LISTEN].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (default ./sealpost-relay-data) [env: SEALPOST_RELAY_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Store: `sqlite` (default, in the data directory) or a PostgreSQL URL
    /// `postgres://user@host:port/db` shared by several relay nodes (a URL with a password
    /// belongs in SEALPOST_RELAY_STORE or the file) [env: SEALPOST_RELAY_STORE].
    #[arg(long, value_parser = parse_store)]
    store: Option<StoreBackend>,
    /// NATS server for cross-node wake-ups, `nats://host:port`, with a shared store (default:
    /// none; a URL with credentials belongs in SEALPOST_RELAY_NATS or the file)
    /// [env: SEALPOST_RELAY_NATS].
    #[arg(long, value_parser = parse_nats_flag)]
    nats: Option<NatsUrl>,
    /// Prometheus exporter address (default: none) [env: SEALPOST_RELAY_METRICS_LISTEN].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Certificate chain PEM (default: self-signed in the data dir) [env: SEALPOST_RELAY_CERT].
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Private key PEM [env: SEALPOST_RELAY_KEY].
    #[arg(long)]
    key: Option<PathBuf>,
    /// Names for the self-signed certificate, comma-separated [env: SEALPOST_RELAY_CERT_NAMES].
    #[arg(long, value_delimiter = ',')]
    cert_names: Option<Vec<String>>,
    /// Stateless-reset key file (32 bytes), the same on every node of a deployment
    /// (default: stateless-reset.key in the data dir) [env: SEALPOST_RELAY_RESET_KEY_FILE].
    #[arg(long)]
    reset_key_file: Option<PathBuf>,
    /// Verification-code webhook URL, `https://` (plain `http://` only to a loopback
    /// address) [env: SEALPOST_RELAY_WEBHOOK_URL].
    #[arg(long)]
    webhook_url: Option<String>,
    /// File holding the webhook's HMAC secret [env: SEALPOST_RELAY_WEBHOOK_SECRET_FILE]
    /// (or `webhook_secret` in the file / SEALPOST_RELAY_WEBHOOK_SECRET; never a flag).
    #[arg(long)]
    webhook_secret_file: Option<PathBuf>,
    /// Development only: write verification codes to the log instead of sending them
    /// [env: SEALPOST_RELAY_DEV_LOG_CODES].
    #[arg(long)]
    dev_log_codes: bool,
    /// `RequestCode`s per source address per hour (default 30)
    /// [env: SEALPOST_RELAY_CODE_REQUESTS_PER_SOURCE_PER_HOUR].
    #[arg(long)]
    code_requests_per_source_per_hour: Option<u32>,
    /// `RequestCode`s per country calling code per hour (default 300)
    /// [env: SEALPOST_RELAY_CODE_REQUESTS_PER_COUNTRY_PER_HOUR].
    #[arg(long)]
    code_requests_per_country_per_hour: Option<u32>,
    /// `RequestCode`s relay-wide per hour (default 3000)
    /// [env: SEALPOST_RELAY_CODE_REQUESTS_PER_HOUR].
    #[arg(long)]
    code_requests_per_hour: Option<u32>,
    /// Most concurrent connections (default 10000) [env: SEALPOST_RELAY_MAX_CONNECTIONS].
    #[arg(long)]
    max_connections: Option<u32>,
    /// Most concurrent connections from one IP address (default 256)
    /// [env: SEALPOST_RELAY_MAX_CONNECTIONS_PER_IP].
    #[arg(long)]
    max_connections_per_ip: Option<u32>,
    /// Serve vault requests as a guardian (the default) [env: SEALPOST_RELAY_GUARDIAN].
    #[arg(long, overrides_with = "no_guardian")]
    guardian: bool,
    /// Do not serve vault requests (credentials are still issued).
    #[arg(long)]
    no_guardian: bool,
    /// Guardian evaluations per vault between successes, 1..=100 (default 10)
    /// [env: SEALPOST_RELAY_GUARDIAN_MAX_ATTEMPTS].
    #[arg(long)]
    guardian_max_attempts: Option<u16>,
    /// Issuer key (64 hex digits) of another relay whose credentials this guardian accepts;
    /// repeatable [env: SEALPOST_RELAY_GUARDIAN_TRUSTED_ISSUERS, comma-separated].
    #[arg(long = "guardian-trusted-issuer")]
    guardian_trusted_issuers: Vec<String>,
    /// Account prefixes this guardian keeps shares for, comma-separated (default "*")
    /// [env: SEALPOST_RELAY_GUARDIAN_ACCOUNTS].
    #[arg(long, value_delimiter = ',')]
    guardian_accounts: Option<Vec<String>>,
}

/// `--nats`'s parser (clap reports the message).
fn parse_nats_flag(v: &str) -> Result<NatsUrl, String> {
    v.parse().map_err(|e: RelayError| e.to_string())
}

/// `--store`'s parser (clap reports the message).
fn parse_store(v: &str) -> Result<StoreBackend, String> {
    v.parse().map_err(|e: RelayError| e.to_string())
}

impl Cli {
    fn layer(&self) -> Layer {
        Layer {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            store: self.store.clone(),
            nats: self.nats.clone(),
            metrics_listen: self.metrics_listen,
            cert: self.cert.clone(),
            key: self.key.clone(),
            cert_names: self.cert_names.clone(),
            reset_key_file: self.reset_key_file.clone(),
            webhook_url: self.webhook_url.clone(),
            webhook_secret: None,
            webhook_secret_file: self.webhook_secret_file.clone(),
            dev_log_codes: self.dev_log_codes.then_some(true),
            webhook_timeout_secs: None,
            sweep_interval_secs: None,
            shutdown_grace_secs: None,
            code_requests_per_source_per_hour: self.code_requests_per_source_per_hour,
            code_requests_per_country_per_hour: self.code_requests_per_country_per_hour,
            code_requests_per_hour: self.code_requests_per_hour,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            guardian: match (self.guardian, self.no_guardian) {
                (true, _) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            },
            guardian_max_attempts: self.guardian_max_attempts,
            guardian_trusted_issuers: (!self.guardian_trusted_issuers.is_empty())
                .then(|| self.guardian_trusted_issuers.clone()),
            guardian_accounts: self.guardian_accounts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The program name, `--dev-log-codes` (every relay needs a code sender) and `a`.
    fn args(a: &[&str]) -> Vec<OsString> {
        ["sealpost-relay", "--dev-log-codes"]
            .into_iter()
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// The program name and `a`.
    fn bare_args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("sealpost-relay")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn a_code_sender_is_required() {
        // Loading succeeds (`--print-pin` needs no sender); starting is refused.
        let c = RelayConfig::load_with_env(bare_args(&[]), |_| None).unwrap();
        assert!(matches!(
            c.check_code_sender(),
            Err(RelayError::Config(m)) if m == NO_CODE_SENDER
        ));
        assert!(matches!(
            RelayConfig::default().check_code_sender(),
            Err(RelayError::Config(m)) if m == NO_CODE_SENDER
        ));
        // The flag, the variable and the file key each enable the development sender.
        let c = RelayConfig::load_with_env(bare_args(&["--dev-log-codes"]), |_| None).unwrap();
        assert!(c.dev_log_codes);
        let c = RelayConfig::load_with_env(bare_args(&[]), |k| {
            (k == "SEALPOST_RELAY_DEV_LOG_CODES").then(|| "true".to_owned())
        })
        .unwrap();
        assert!(c.dev_log_codes);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "dev_log_codes = true\n").unwrap();
        let path = file.display().to_string();
        let c = RelayConfig::load_with_env(bare_args(&["--config", &path]), |_| None).unwrap();
        assert!(c.dev_log_codes);
        // A webhook is a code sender; the development flag is then not needed.
        let c = RelayConfig::load_with_env(
            bare_args(&["--webhook-url", "https://sms.example/send"]),
            |k| (k == "SEALPOST_RELAY_WEBHOOK_SECRET").then(|| "0123456789abcdef".to_owned()),
        )
        .unwrap();
        assert!(!c.dev_log_codes);
        assert!(c.check_code_sender().is_ok());
    }

    #[test]
    fn webhook_is_https_and_signed() {
        let secret =
            |k: &str| (k == "SEALPOST_RELAY_WEBHOOK_SECRET").then(|| "0123456789abcdef".to_owned());
        let config_error = |r: Result<RelayConfig, RelayError>| match r {
            Err(RelayError::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        // Plain http only to loopback.
        let m = config_error(RelayConfig::load_with_env(
            bare_args(&["--webhook-url", "http://sms.example/send"]),
            secret,
        ));
        assert!(m.contains("https://"), "{m}");
        let c = RelayConfig::load_with_env(
            bare_args(&["--webhook-url", "http://127.0.0.1:8080/sms"]),
            secret,
        )
        .unwrap();
        assert_eq!(
            c.load_webhook_secret().unwrap().unwrap().as_slice(),
            b"0123456789abcdef"
        );
        // A secret is required, long enough, and only one of the two sources.
        let m = config_error(RelayConfig::load_with_env(
            bare_args(&["--webhook-url", "https://sms.example/send"]),
            |_| None,
        ));
        assert!(m.contains("webhook_secret"), "{m}");
        let m = config_error(RelayConfig::load_with_env(
            bare_args(&["--webhook-url", "https://sms.example/send"]),
            |k| (k == "SEALPOST_RELAY_WEBHOOK_SECRET").then(|| "short".to_owned()),
        ));
        assert!(m.contains("at least 16"), "{m}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhook.secret");
        std::fs::write(&file, "  from-a-file-0123456789\n").unwrap();
        let path = file.display().to_string();
        let c = RelayConfig::load_with_env(
            bare_args(&[
                "--webhook-url",
                "https://sms.example/send",
                "--webhook-secret-file",
                &path,
            ]),
            |_| None,
        )
        .unwrap();
        assert_eq!(
            c.load_webhook_secret().unwrap().unwrap().as_slice(),
            b"from-a-file-0123456789"
        );
        let m = config_error(RelayConfig::load_with_env(
            bare_args(&[
                "--webhook-url",
                "https://sms.example/send",
                "--webhook-secret-file",
                &path,
            ]),
            secret,
        ));
        assert!(m.contains("not both"), "{m}");
        // The secret is never printed.
        let c = RelayConfig::load_with_env(
            bare_args(&["--webhook-url", "https://sms.example/send"]),
            secret,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn defaults() {
        let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(c.metrics_listen.is_none() && c.cert_path.is_none() && c.webhook_url.is_none());
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn precedence_flags_env_file_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            r#"
listen = "127.0.0.1:1000"
data_dir = "/from/file"
metrics_listen = "127.0.0.1:9000"
webhook_url = "https://file.example/"
webhook_secret = "0123456789abcdef0123"
[limits]
code_requests_per_account = 2
max_connections = 50
"#,
        )
        .unwrap();
        let env: HashMap<&str, String> = [
            ("SEALPOST_RELAY_CONFIG", file.display().to_string()),
            ("SEALPOST_RELAY_LISTEN", "127.0.0.1:2000".to_owned()),
            ("SEALPOST_RELAY_DATA_DIR", "/from/env".to_owned()),
        ]
        .into_iter()
        .collect();
        let c = RelayConfig::load_with_env(args(&["--listen", "127.0.0.1:3000"]), |k| {
            env.get(k).cloned()
        })
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000"); // flag
        assert_eq!(c.data_dir, PathBuf::from("/from/env")); // env over file
        assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9000"); // file
        assert_eq!(c.webhook_url.as_deref(), Some("https://file.example/"));
        assert_eq!(c.limits.code_requests_per_account, 2);
        assert_eq!(c.limits.max_connections, 50);
        assert_eq!(c.limits.sends_per_second, 50); // default inside [limits]
    }

    #[test]
    fn reset_key_file_from_file_env_and_flag() {
        assert_eq!(
            RelayConfig::load_with_env(args(&[]), |_| None)
                .unwrap()
                .reset_key_file,
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "reset_key_file = \"/from/file.key\"\n").unwrap();
        let path = file.display().to_string();
        let from_file = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
        assert_eq!(
            from_file.reset_key_file,
            Some(PathBuf::from("/from/file.key"))
        );
        let env = |k: &str| (k == "SEALPOST_RELAY_RESET_KEY_FILE").then(|| "/from/env.key".into());
        let from_env = RelayConfig::load_with_env(args(&["--config", &path]), env).unwrap();
        assert_eq!(
            from_env.reset_key_file,
            Some(PathBuf::from("/from/env.key"))
        );
        let from_flag = RelayConfig::load_with_env(
            args(&["--config", &path, "--reset-key-file", "/from/flag.key"]),
            env,
        )
        .unwrap();
        assert_eq!(
            from_flag.reset_key_file,
            Some(PathBuf::from("/from/flag.key"))
        );
    }

    #[test]
    fn guardian_from_file_env_and_flags() {
        let k1 = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let k2 = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
        let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
        assert_eq!(c.guardian, GuardianConfig::default());
        assert!(c.guardian.enabled);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            format!(
                "[guardian]\nmax_attempts = 5\naccounts = [\"+1555\"]\ntrusted_issuers = [\"{k1}\"]\nmax_vaults = 7\n"
            ),
        )
        .unwrap();
        let path = file.display().to_string();
        let c = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
        assert_eq!(
            c.guardian,
            GuardianConfig {
                enabled: true,
                max_attempts: 5,
                accounts: vec!["+1555".into()],
                trusted_issuers: vec![k1.into()],
                max_vaults: 7,
            }
        );
        let env: HashMap<&str, String> = [
            ("SEALPOST_RELAY_GUARDIAN", "false".to_owned()),
            ("SEALPOST_RELAY_GUARDIAN_MAX_ATTEMPTS", "20".to_owned()),
        ]
        .into_iter()
        .collect();
        let c = RelayConfig::load_with_env(args(&["--config", &path]), |k| env.get(k).cloned())
            .unwrap();
        assert!(!c.guardian.enabled);
        assert_eq!(c.guardian.max_attempts, 20);
        let c = RelayConfig::load_with_env(
            args(&[
                "--config",
                &path,
                "--guardian",
                "--guardian-max-attempts",
                "3",
                "--guardian-trusted-issuer",
                k1,
                "--guardian-trusted-issuer",
                k2,
                "--guardian-accounts",
                "+1,+44",
            ]),
            |k| env.get(k).cloned(),
        )
        .unwrap();
        assert!(c.guardian.enabled);
        assert_eq!(c.guardian.max_attempts, 3);
        assert_eq!(
            c.guardian.trusted_issuers,
            vec![k1.to_owned(), k2.to_owned()]
        );
        assert_eq!(c.guardian.accounts, vec!["+1".to_owned(), "+44".to_owned()]);
        let c = RelayConfig::load_with_env(args(&["--no-guardian"]), |_| None).unwrap();
        assert!(!c.guardian.enabled);
        // Clear errors for bad values.
        for bad in [
            &["--guardian-max-attempts", "0"][..],
            &["--guardian-max-attempts", "101"],
            &["--guardian-trusted-issuer", "abcd"],
            &["--guardian-accounts", "1555"],
        ] {
            match RelayConfig::load_with_env(args(bad), |_| None) {
                Err(RelayError::Config(m)) => assert!(m.contains("guardian."), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        std::fs::write(&file, "[guardian]\nunknown = 1\n").unwrap();
        assert!(RelayConfig::load_with_env(args(&["--config", &path]), |_| None).is_err());
    }

    #[test]
    fn store_from_file_env_and_flags() {
        let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
        assert_eq!(c.store, StoreBackend::Sqlite);
        assert!(c.validate().is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            "store = \"postgres://relay:s3cret@db.internal/file\"\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let postgres = |url: &str| StoreBackend::Postgres(Zeroizing::new(url.to_owned()));
        let c = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
        assert_eq!(
            c.store,
            postgres("postgres://relay:s3cret@db.internal/file")
        );
        // The password is never printed.
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        // Environment over file, flag over environment; `sqlite` selects the default back.
        let env = |k: &str| {
            (k == "SEALPOST_RELAY_STORE").then(|| "postgresql://relay@127.0.0.1/env".to_owned())
        };
        let c = RelayConfig::load_with_env(args(&["--config", &path]), env).unwrap();
        assert_eq!(c.store, postgres("postgresql://relay@127.0.0.1/env"));
        let c = RelayConfig::load_with_env(args(&["--config", &path, "--store", "sqlite"]), env)
            .unwrap();
        assert_eq!(c.store, StoreBackend::Sqlite);
        let c = RelayConfig::load_with_env(args(&["--store", "postgres://h/flag"]), env).unwrap();
        assert_eq!(c.store, postgres("postgres://h/flag"));
        assert!(c.validate().is_ok());
        // Anything else is refused, from every source.
        assert!(RelayConfig::load_with_env(args(&["--store", "mysql://x"]), |_| None).is_err());
        let bad_env = |k: &str| (k == "SEALPOST_RELAY_STORE").then(|| "redis://x".to_owned());
        assert!(matches!(
            RelayConfig::load_with_env(args(&[]), bad_env),
            Err(RelayError::Config(m)) if m.contains("SEALPOST_RELAY_STORE")
        ));
        std::fs::write(&file, "store = \"/var/lib/relay.db\"\n").unwrap();
        assert!(matches!(
            RelayConfig::load_with_env(args(&["--config", &path]), |_| None),
            Err(RelayError::Config(m)) if m.contains("postgres://")
        ));
    }

    #[test]
    fn nats_from_file_env_and_flags_and_not_in_debug() {
        let c = RelayConfig::load_with_env(args(&[]), |_| None).unwrap();
        assert_eq!(c.nats, None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "nats = \"nats://relay:s3cret@bus.internal:4222\"\n").unwrap();
        let path = file.to_str().unwrap().to_owned();
        let c = RelayConfig::load_with_env(args(&["--config", &path]), |_| None).unwrap();
        let url = c.nats.as_ref().unwrap();
        assert_eq!(url.expose(), "nats://relay:s3cret@bus.internal:4222");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        let env =
            |k: &str| (k == "SEALPOST_RELAY_NATS").then(|| "nats://127.0.0.1:4333".to_owned());
        let c = RelayConfig::load_with_env(args(&["--config", &path]), env).unwrap();
        assert_eq!(c.nats.unwrap().expose(), "nats://127.0.0.1:4333");
        let c = RelayConfig::load_with_env(args(&["--nats", "nats://flag:4222"]), env).unwrap();
        assert_eq!(c.nats.unwrap().expose(), "nats://flag:4222");
        assert!(RelayConfig::load_with_env(args(&["--nats", "http://x"]), |_| None).is_err());
        assert!(RelayConfig::load_with_env(args(&["--nats", "nats://"]), |_| None).is_err());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert!(RelayConfig::load_with_env(args(&["--cert", "a.pem"]), |_| None).is_err());
        assert!(RelayConfig::load_with_env(args(&["--bogus"]), |_| None).is_err());
        assert!(
            RelayConfig::load_with_env(args(&[]), |k| {
                (k == "SEALPOST_RELAY_LISTEN").then(|| "nope".to_owned())
            })
            .is_err()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "[limits]\nmax_queued_per_device = 20000\n").unwrap();
        let path = file.display().to_string();
        assert!(RelayConfig::load_with_env(args(&["--config", &path]), |_| None).is_err());
        std::fs::write(&file, "unknown_key = 1\n").unwrap();
        assert!(RelayConfig::load_with_env(args(&["--config", &path]), |_| None).is_err());
    }
}
