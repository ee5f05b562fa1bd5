//! Typed errors of the relay library.
//!
//! Every error is data: a variant per failure, the values that explain it (sizes, names of
//! settings, paths), and the underlying library's error as [`std::error::Error::source`]
//! wrapped in [`Cause`], so that this crate's API is not tied to the types of its
//! dependencies (rusqlite, tokio-postgres, rustls, async-nats, toml, clap).

use std::path::PathBuf;
use std::sync::Arc;

/// An underlying error (a database driver's, a TLS library's, a parser's) kept as the
/// `source()` of a relay error. Its `Display` is the underlying error's. Opaque on purpose:
/// the relay's public errors do not expose the types of the libraries it uses.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    #[cfg(feature = "server")]
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// A cause that is only a description (of an error whose own text could hold a secret).
    #[cfg(feature = "server")]
    pub(crate) fn msg(text: impl Into<String>) -> Self {
        Self::new(Message(text.into()))
    }
}

/// The error behind [`Cause::msg`].
#[cfg(feature = "server")]
#[derive(Debug)]
struct Message(String);

#[cfg(feature = "server")]
impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "server")]
impl std::error::Error for Message {}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are equal when they print the same (for tests' `assert_eq!`; the underlying
/// types are rarely comparable).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// What a storage backend reported: what the store was doing and, when a library reported
/// it, that library's error as the `source()`. For PostgreSQL the source carries the
/// SQLSTATE and the primary message only, never the `DETAIL` (which can quote row values
/// such as account numbers). Never contains envelope bytes, keys or codes: those are only
/// ever bound as SQL parameters, never formatted into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    context: &'static str,
    cause: Option<Cause>,
}

impl BackendError {
    /// A failure with no underlying library error.
    pub(crate) fn msg(context: &'static str) -> Self {
        Self {
            context,
            cause: None,
        }
    }

    /// A failure of a library call.
    #[cfg(feature = "server")]
    pub(crate) fn new(
        context: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context,
            cause: Some(Cause::new(e)),
        }
    }

    /// What the store was doing, or what went wrong (`"SQLite"`, `"PostgreSQL pool"`,
    /// `"server ids exhausted"`, ...).
    pub fn context(&self) -> &'static str {
        self.context
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.context),
            None => f.write_str(self.context),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// A storage backend failed. The operation changed nothing (every state change is one
/// transaction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend reported an error that is not the storage being out of reach (a
    /// constraint, a bad statement, a value that does not convert, an internal failure).
    #[error("storage backend error: {0}")]
    Backend(#[source] BackendError),
    /// Stored data did not decode (corruption or a schema this version does not know).
    #[error("corrupt stored record: {0}")]
    Corrupt(&'static str),
    /// The database was written by a newer relay: its schema version is above the one this
    /// relay knows.
    #[error("database schema version {found} is newer than this relay's {supported}")]
    SchemaTooNew {
        /// The database's schema version.
        found: i64,
        /// The newest schema version this relay knows.
        supported: i64,
    },
    /// The store's connection settings are invalid (a URL that does not parse, a schema
    /// name outside `[a-z_][a-z0-9_]*`); the value is not repeated (a URL may hold a
    /// password).
    #[error("invalid store setting: {0}")]
    InvalidSetting(&'static str),
    /// The database server does not make commits durable (PostgreSQL with `fsync = off`).
    #[error("the database server runs with fsync off: commits would not be durable")]
    NotDurable,
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// Another open store (in this process or another) holds the database's lock file
    /// (spec/relay-store.md section 2): one writer per database.
    #[error("the database {} is open in another store (another relay?)", .path.display())]
    InUse {
        /// The database file.
        path: std::path::PathBuf,
    },
    /// The relay could not reach its storage (database server down or unreachable, no pooled
    /// connection in time, the disk failing, full or read-only). Nothing was changed; the same
    /// request may succeed later. Answered with the wire code `Unavailable`
    /// (spec/relay.md section 6); a constraint violation or a bug is never this.
    #[error("storage unavailable: {0}")]
    Unavailable(Unavailable),
}

impl StoreError {
    /// Whether the failure is the storage being out of reach rather than the request or
    /// the relay being wrong: the request changed nothing and may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// [`StoreError::Backend`] without an underlying library error.
    pub(crate) fn backend_msg(context: &'static str) -> Self {
        Self::Backend(BackendError::msg(context))
    }

    /// [`StoreError::Backend`] wrapping a library's error.
    #[cfg(feature = "server")]
    pub(crate) fn backend(
        context: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend(BackendError::new(context, e))
    }
}

/// Why a store is [`StoreError::Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The database server refused or dropped the connection, or is shutting down or
    /// starting up.
    #[error("the database server is unreachable")]
    Unreachable,
    /// No pooled database connection became free in time.
    #[error("no database connection became free in time")]
    PoolTimeout,
    /// The database server has run out of a resource (connections, memory).
    #[error("the database server is out of resources")]
    Exhausted,
    /// Reading or writing the storage failed (an I/O error of the disk or file system).
    #[error("a storage I/O error")]
    Io,
    /// The disk holding the storage is full.
    #[error("the storage disk is full")]
    DiskFull,
    /// The storage is read-only (a read-only file system or file, or a database server in
    /// recovery or standby).
    #[error("the storage is read-only")]
    ReadOnly,
    /// The storage is locked by another process for longer than the relay waits.
    #[error("the storage is locked by another process")]
    Busy,
    /// An earlier flush to disk failed: the store refuses every write until the relay is
    /// restarted (what was written since the last flush may not be on disk).
    #[error("a flush to disk failed; the relay must be restarted")]
    FlushFailed,
}

/// An invalid configuration: each variant names the setting (`limits.max_connections`,
/// `guardian.max_attempts`, an environment variable, a file) and what is wrong with it. A
/// value that may be secret (a URL with a password, the webhook secret) is never repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read as the relay's TOML (a syntax error, an
    /// unknown key, a value of the wrong type). The source says where.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: Cause,
    },
    /// An environment variable's value is not valid for its option.
    #[error("{var}: {source}")]
    Env {
        /// The variable (`SEALPOST_RELAY_...`).
        var: String,
        /// The parser's error.
        source: Cause,
    },
    /// `cert` and `key` must be configured together.
    #[error("cert and key must be configured together")]
    CertWithoutKey,
    /// A setting that must be positive is 0.
    #[error("{key} must be positive")]
    NotPositive {
        /// The setting (`sweep_interval_secs`, `limits.max_connections`, ...).
        key: &'static str,
    },
    /// A storage limit exceeds the protocol's maximum, which clients rely on.
    #[error("{key} = {value} exceeds the protocol maximum {max}")]
    AboveProtocolMaximum {
        /// The setting.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// The protocol's maximum.
        max: u64,
    },
    /// A setting is below the least value another setting or constant requires.
    #[error("{key} = {value} is below {minimum} = {min}")]
    BelowMinimum {
        /// The setting.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// What sets the minimum (a setting or a protocol constant).
        minimum: &'static str,
        /// The minimum.
        min: u64,
    },
    /// A setting is outside its range.
    #[error("{key} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The setting.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// The least valid value.
        min: u64,
        /// The greatest valid value.
        max: u64,
    },
    /// `guardian.accounts` is empty while the guardian is enabled.
    #[error("guardian.accounts is empty: use [\"*\"] for every account")]
    NoGuardianAccounts,
    /// A `guardian.accounts` entry is neither `"*"` nor an E.164 prefix such as `"+1555"`.
    #[error("guardian.accounts: {pattern:?} is neither \"*\" nor an E.164 prefix like \"+1555\"")]
    AccountPattern {
        /// The entry.
        pattern: String,
    },
    /// A `guardian.trusted_issuers` entry is not 64 hex digits.
    #[error("guardian.trusted_issuers: {key:?} is not 64 hex digits")]
    IssuerKeyNotHex {
        /// The entry.
        key: String,
    },
    /// A `guardian.trusted_issuers` entry is not a valid Ed25519 public key.
    #[error("guardian.trusted_issuers: {key} is not a valid Ed25519 public key")]
    IssuerKeyInvalid {
        /// The entry.
        key: String,
    },
    /// `store` is neither `sqlite` nor a `postgres://` URL (not repeated: it may hold a
    /// password).
    #[error("store must be \"sqlite\" or a postgres:// URL")]
    Store,
    /// `nats` is not a NATS URL (not repeated: it may hold credentials).
    #[error("nats must be a nats://host:port URL (or tls://, ws://, wss://)")]
    Nats,
    /// The configuration cannot be written as TOML (`--print-config`: a path that is not
    /// UTF-8, a number beyond TOML's integers).
    #[error("the configuration cannot be printed as TOML: {source}")]
    Unprintable {
        /// The serializer's error.
        source: Cause,
    },
    /// The relay was built without a feature the configuration needs.
    #[error("{setting} needs the relay built with the `{feature}` feature")]
    FeatureMissing {
        /// The setting (`store = postgres://...`, `nats`).
        setting: &'static str,
        /// The Cargo feature.
        feature: &'static str,
    },
    /// `webhook_url` is not an `https://` URL (plain `http://` only to a loopback address).
    /// The URL is not repeated (it may carry a token).
    #[error("{0}")]
    WebhookUrl(WebhookUrlError),
    /// `webhook_url` is set without a secret to sign requests with (spec/relay.md 3.1.1).
    #[error(
        "webhook_url needs webhook_secret or webhook_secret_file (requests are signed, \
         spec/relay.md 3.1.1)"
    )]
    WebhookSecretMissing,
    /// Both `webhook_secret` and `webhook_secret_file` are set.
    #[error("set one of webhook_secret and webhook_secret_file, not both")]
    WebhookSecretTwice,
    /// The webhook secret is too short.
    #[error("the webhook secret has {len} bytes; at least {min} are required")]
    WebhookSecretTooShort {
        /// Its length in bytes.
        len: usize,
        /// The least length.
        min: usize,
    },
    /// No verification-code sender is configured ([`crate::config::NO_CODE_SENDER`]).
    #[error(
        "no verification code sender: set webhook_url (an SMS gateway) or, for development \
         only, --dev-log-codes (codes are written to the log, where anyone who reads it can \
         register any number)"
    )]
    NoCodeSender,
    /// A key file does not hold exactly 32 bytes.
    #[error("{} is not 32 bytes", path.display())]
    KeyFileLength {
        /// The file.
        path: PathBuf,
    },
    /// The configured `reset_key_file` does not exist (it is shared by every node of a
    /// deployment, so the relay does not create it).
    #[error(
        "reset_key_file {} does not exist (create it once with 32 random bytes, mode 0600, \
         and give every node of the deployment the same file)",
        path.display()
    )]
    ResetKeyFileMissing {
        /// The file.
        path: PathBuf,
    },
}

/// What is wrong with a `webhook_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookUrlError {
    /// It does not parse as an absolute URL.
    #[error("webhook_url is not a valid absolute URL")]
    NotAUrl,
    /// It has no host.
    #[error("webhook_url has no host")]
    NoHost,
    /// It is neither `https://` nor `http://` to a loopback address.
    #[error("webhook_url must be https:// (plain http:// only to a loopback address)")]
    NotHttps,
}

/// The TLS certificate or key could not be loaded, generated or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done (`reading`, `parsing`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: Cause,
    },
    /// A certificate file holds no certificate.
    #[error("{} contains no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// Generating, parsing or using the certificate and key failed.
    #[error("{what}: {source}")]
    Material {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: Cause,
    },
}

/// Errors starting or running the relay (configuration, TLS material, storage, sockets).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Output that ends the command instead of a configuration: `--help`, `--version` and
    /// `--print-config` (exit code 0), or a command-line usage error (exit code 2).
    #[error("{text}")]
    Usage {
        /// The text to print (stdout with exit code 0, else stderr).
        text: String,
        /// The process exit code.
        exit_code: i32,
    },
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// Certificate or key could not be loaded, generated or used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// Opening or migrating the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The NATS server of the cross-node wake-ups could not be reached.
    #[error("NATS: {0}")]
    Nats(Cause),
    /// The Prometheus recorder could not be installed (another recorder is installed in
    /// this process).
    #[error("metrics recorder: {0}")]
    Metrics(Cause),
    /// Another process (or another relay in this process) holds the data directory's lock
    /// (spec/relay.md section 5): one relay per data directory.
    #[error("another sealpost-relay is using {}", dir.display())]
    DataDirInUse {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The relay cannot write its store (a read-only data directory or file system, wrong
    /// ownership, a full disk): it refuses to start rather than accept connections and fail
    /// every request (spec/relay.md section 5).
    #[error(
        "the relay's store is not writable: {}: {source} (check the data directory's \
         owner, permissions, mount and free space)",
        path.display()
    )]
    NotWritable {
        /// The directory or file that cannot be written.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or socket operation failed.
    #[error("{what} {target}: {source}")]
    Io {
        /// What was being done (`reading`, `binding`).
        what: &'static str,
        /// The file or address it was done to.
        target: IoTarget,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What a failed [`RelayError::Io`] operation was done to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoTarget {
    /// A file or directory.
    Path(std::path::PathBuf),
    /// A socket address.
    Addr(std::net::SocketAddr),
    /// The QUIC endpoint's socket.
    Endpoint,
    /// The metrics listener's socket.
    MetricsListener,
}

impl std::fmt::Display for IoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Addr(a) => write!(f, "{a}"),
            Self::Endpoint => f.write_str("the QUIC endpoint"),
            Self::MetricsListener => f.write_str("the metrics listener"),
        }
    }
}

impl RelayError {
    #[cfg(feature = "server")]
    pub(crate) fn io(what: &'static str, target: IoTarget, source: std::io::Error) -> Self {
        Self::Io {
            what,
            target,
            source,
        }
    }
}
