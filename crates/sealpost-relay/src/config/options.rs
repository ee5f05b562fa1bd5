//! Every relay option, declared once.
//!
//! A field of [`Options`] (or of its `[limits]` and `[guardian]` sections) is at the same
//! time a command-line flag (clap `Args`: the long name), an environment variable (its
//! `env`, `SEALPOST_RELAY_*`) and a key of the configuration file (serde: the field name, in
//! its section). Adding a field adds all three; [`Options::apply`] destructures every field
//! (and every field of [`Limits`] and [`GuardianConfig`]), so a field that is not applied
//! does not compile. The test `every_option_by_env_and_by_flag` walks clap's list of
//! arguments and changes each one through the environment and through its flag.
//!
//! clap would read the environment itself, but only the process's: the variables are looked
//! up here through the caller's function instead (the test seam
//! [`super::RelayConfig::load_with_env`]), turned into `--flag=value` and parsed by the same
//! definition, so a variable and its flag accept exactly the same values.
//!
//! The one exception is `webhook_secret`: a file key and an environment variable, never a
//! flag (every local user can read a process's flags).

use super::{NatsUrl, RelayConfig, StoreBackend};
use crate::error::Cause;
use crate::guardian::GuardianConfig;
use crate::limits::Limits;
use crate::{ConfigError, RelayError};
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Deserializer, Serialize};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable of `webhook_secret` (no flag: flags are visible to every local
/// user).
pub(crate) const WEBHOOK_SECRET_ENV: &str = "SEALPOST_RELAY_WEBHOOK_SECRET";
/// The `--help` heading of the `[limits]` options.
pub(crate) const LIMITS_HEADING: &str = "Limits ([limits] in the file)";
/// The `--help` heading of the `[guardian]` options.
pub(crate) const GUARDIAN_HEADING: &str = "Guardian ([guardian] in the file)";

/// The command line of `sealpost-relay`: what to do, and every option.
#[derive(Parser)]
#[command(
    name = "sealpost-relay",
    version,
    about = "The Sealpost QUIC relay",
    after_help = "Every option is also a key of the configuration file (in its section) and an \
environment variable; precedence: flags > environment > file > defaults. --print-config shows \
the result.\n\n--print-pin: print the public-key pin (sha256/<base64>) of the configured \
certificate\n(--cert, or the self-signed one in --data-dir) and exit, without starting."
)]
pub(crate) struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "SEALPOST_RELAY_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration (TOML, loadable as a configuration file; secrets
    /// redacted) and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// Do not serve vault requests (the same as --guardian=false).
    #[arg(long, conflicts_with = "enabled", help_heading = GUARDIAN_HEADING)]
    pub(crate) no_guardian: bool,
    #[command(flatten)]
    pub(crate) options: Options,
}

/// The top-level options (and, nested, the `[limits]` and `[guardian]` sections). `None`
/// leaves the value of the layer below. Not `Debug`: it may hold the webhook secret and URLs
/// with passwords.
#[derive(Args, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// UDP address to listen on [default: 127.0.0.1:4433].
    #[arg(long, env = "SEALPOST_RELAY_LISTEN", value_name = "ADDR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<SocketAddr>,
    /// Data directory [default: ./sealpost-relay-data].
    #[arg(long, env = "SEALPOST_RELAY_DATA_DIR", value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Store: `sqlite` (in the data directory) or a PostgreSQL URL `postgres://user@host/db`
    /// shared by several relay nodes; a URL with a password belongs in the file or the
    /// environment [default: sqlite].
    #[arg(long, env = "SEALPOST_RELAY_STORE", value_name = "STORE", value_parser = parse_store)]
    #[serde(
        default,
        deserialize_with = "de_store",
        serialize_with = "super::print::store",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) store: Option<StoreBackend>,
    /// NATS server of cross-node wake-ups (`nats://host:port`), with a shared store; a URL
    /// with credentials belongs in the file or the environment [default: none].
    #[arg(long, env = "SEALPOST_RELAY_NATS", value_name = "URL", value_parser = parse_nats)]
    #[serde(
        default,
        deserialize_with = "de_nats",
        serialize_with = "super::print::nats",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) nats: Option<NatsUrl>,
    /// Address of the HTTP listener of Prometheus `/metrics` and the probes `/healthz`,
    /// `/readyz` (aliases `/live`, `/ready`) [default: none].
    #[arg(long, env = "SEALPOST_RELAY_METRICS_LISTEN", value_name = "ADDR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Certificate chain (PEM), with --key [default: self-signed in the data directory].
    #[arg(long, env = "SEALPOST_RELAY_CERT", value_name = "PEM")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM), with --cert.
    #[arg(long, env = "SEALPOST_RELAY_KEY", value_name = "PEM")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
    /// Names of the self-signed certificate, comma-separated [default: localhost].
    #[arg(
        long,
        env = "SEALPOST_RELAY_CERT_NAMES",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert_names: Option<Vec<String>>,
    /// Stateless-reset key file (32 bytes), the same on every node of a deployment
    /// [default: stateless-reset.key in the data directory].
    #[arg(long, env = "SEALPOST_RELAY_RESET_KEY_FILE", value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reset_key_file: Option<PathBuf>,
    /// Verification-code webhook, `https://` (plain `http://` only to a loopback address).
    #[arg(long, env = "SEALPOST_RELAY_WEBHOOK_URL", value_name = "URL")]
    #[serde(
        default,
        serialize_with = "super::print::url",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) webhook_url: Option<String>,
    /// The webhook's HMAC secret: file key `webhook_secret` or `SEALPOST_RELAY_WEBHOOK_SECRET`,
    /// never a flag. Printed only as a comment.
    #[arg(skip)]
    #[serde(default, deserialize_with = "de_secret", skip_serializing)]
    pub(crate) webhook_secret: Option<Zeroizing<String>>,
    /// File holding the webhook's HMAC secret (or webhook_secret in the file /
    /// SEALPOST_RELAY_WEBHOOK_SECRET; never a flag).
    #[arg(long, env = "SEALPOST_RELAY_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) webhook_secret_file: Option<PathBuf>,
    /// Timeout of one webhook call, in seconds [default: 10].
    #[arg(long, env = "SEALPOST_RELAY_WEBHOOK_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) webhook_timeout_secs: Option<u64>,
    /// Development only: write verification codes to the log instead of sending them
    /// [default: false].
    #[arg(
        long,
        env = "SEALPOST_RELAY_DEV_LOG_CODES",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dev_log_codes: Option<bool>,
    /// Period of the expiry sweep, in seconds [default: 60].
    #[arg(long, env = "SEALPOST_RELAY_SWEEP_INTERVAL_SECS", value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sweep_interval_secs: Option<u64>,
    /// How long shutdown waits for requests in flight, in seconds [default: 10].
    #[arg(long, env = "SEALPOST_RELAY_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shutdown_grace_secs: Option<u64>,
    #[command(flatten, next_help_heading = LIMITS_HEADING)]
    #[serde(default, skip_serializing)]
    pub(crate) limits: LimitOptions,
    #[command(flatten, next_help_heading = GUARDIAN_HEADING)]
    #[serde(default, skip_serializing)]
    pub(crate) guardian: GuardianOptions,
}

/// The `[limits]` section ([`Limits`] has each field's meaning and default).
#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitOptions {
    /// `RequestCode`s per number per 10 minutes [default: 3].
    #[arg(
        long,
        env = "SEALPOST_RELAY_CODE_REQUESTS_PER_ACCOUNT",
        value_name = "N"
    )]
    #[serde(default)]
    code_requests_per_account: Option<u32>,
    /// `RequestCode`s per source address (IPv6: per /64) per hour [default: 30].
    #[arg(
        long,
        env = "SEALPOST_RELAY_CODE_REQUESTS_PER_SOURCE_PER_HOUR",
        value_name = "N"
    )]
    #[serde(default)]
    code_requests_per_source_per_hour: Option<u32>,
    /// `RequestCode`s per country calling code per hour [default: 300].
    #[arg(
        long,
        env = "SEALPOST_RELAY_CODE_REQUESTS_PER_COUNTRY_PER_HOUR",
        value_name = "N"
    )]
    #[serde(default)]
    code_requests_per_country_per_hour: Option<u32>,
    /// `RequestCode`s relay-wide per hour [default: 3000].
    #[arg(long, env = "SEALPOST_RELAY_CODE_REQUESTS_PER_HOUR", value_name = "N")]
    #[serde(default)]
    code_requests_per_hour: Option<u32>,
    /// `RequestCode`s per connection per 10 minutes [default: 5].
    #[arg(
        long,
        env = "SEALPOST_RELAY_CODE_REQUESTS_PER_CONNECTION",
        value_name = "N"
    )]
    #[serde(default)]
    code_requests_per_connection: Option<u32>,
    /// `OpenProvisioning`s per connection per 10 minutes [default: 5].
    #[arg(
        long,
        env = "SEALPOST_RELAY_PROVISIONING_OPENS_PER_CONNECTION",
        value_name = "N"
    )]
    #[serde(default)]
    provisioning_opens_per_connection: Option<u32>,
    /// Failed `Authenticate`s per connection per 10 minutes [default: 5].
    #[arg(
        long,
        env = "SEALPOST_RELAY_AUTH_FAILURES_PER_CONNECTION",
        value_name = "N"
    )]
    #[serde(default)]
    auth_failures_per_connection: Option<u32>,
    /// `FetchBundles` per connection per minute [default: 60].
    #[arg(
        long,
        env = "SEALPOST_RELAY_BUNDLE_FETCHES_PER_MINUTE",
        value_name = "N"
    )]
    #[serde(default)]
    bundle_fetches_per_minute: Option<u32>,
    /// `FetchBundles` of one target by one requesting account at once [default: 3].
    #[arg(
        long,
        env = "SEALPOST_RELAY_BUNDLE_FETCHES_PER_PAIR_BURST",
        value_name = "N"
    )]
    #[serde(default)]
    bundle_fetches_per_pair_burst: Option<u32>,
    /// Then one `FetchBundles` per pair every this many seconds [default: 300].
    #[arg(
        long,
        env = "SEALPOST_RELAY_BUNDLE_FETCH_PAIR_INTERVAL_SECS",
        value_name = "SECS"
    )]
    #[serde(default)]
    bundle_fetch_pair_interval_secs: Option<u64>,
    /// `FetchBundles` of one target account per day, by anyone [default: 500].
    #[arg(
        long,
        env = "SEALPOST_RELAY_BUNDLE_FETCHES_PER_TARGET_PER_DAY",
        value_name = "N"
    )]
    #[serde(default)]
    bundle_fetches_per_target_per_day: Option<u32>,
    /// `Send`s per device per second, sustained [default: 50].
    #[arg(long, env = "SEALPOST_RELAY_SENDS_PER_SECOND", value_name = "N")]
    #[serde(default)]
    sends_per_second: Option<u32>,
    /// `Send` burst per device [default: 200].
    #[arg(long, env = "SEALPOST_RELAY_SEND_BURST", value_name = "N")]
    #[serde(default)]
    send_burst: Option<u32>,
    /// Queued envelopes per device [default and maximum: 10000].
    #[arg(long, env = "SEALPOST_RELAY_MAX_QUEUED_PER_DEVICE", value_name = "N")]
    #[serde(default)]
    max_queued_per_device: Option<u32>,
    /// Stored one-time X25519 prekeys per device [default and maximum: 1000].
    #[arg(long, env = "SEALPOST_RELAY_MAX_STORED_ONE_TIME", value_name = "N")]
    #[serde(default)]
    max_stored_one_time: Option<u32>,
    /// Stored one-time ML-KEM prekeys per device [default and maximum: 200].
    #[arg(long, env = "SEALPOST_RELAY_MAX_STORED_KEM", value_name = "N")]
    #[serde(default)]
    max_stored_kem: Option<u32>,
    /// Mailbox TTL in seconds [default and maximum: 2592000, 30 days].
    #[arg(long, env = "SEALPOST_RELAY_MAILBOX_TTL_SECS", value_name = "SECS")]
    #[serde(default)]
    mailbox_ttl_secs: Option<u64>,
    /// Concurrent connections [default: 10000].
    #[arg(long, env = "SEALPOST_RELAY_MAX_CONNECTIONS", value_name = "N")]
    #[serde(default)]
    max_connections: Option<u32>,
    /// Concurrent connections from one IP address [default: 256].
    #[arg(long, env = "SEALPOST_RELAY_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    #[serde(default)]
    max_connections_per_ip: Option<u32>,
    /// Buckets each in-memory keyed rate limiter keeps at most [default: 100000].
    #[arg(long, env = "SEALPOST_RELAY_RATE_LIMITER_MAX_KEYS", value_name = "N")]
    #[serde(default)]
    rate_limiter_max_keys: Option<usize>,
    /// Vault requests per account per 10 minutes [default: 30].
    #[arg(
        long,
        env = "SEALPOST_RELAY_VAULT_REQUESTS_PER_ACCOUNT",
        value_name = "N"
    )]
    #[serde(default)]
    vault_requests_per_account: Option<u32>,
    /// Request bytes buffered relay-wide at once [default: 134217728].
    #[arg(
        long,
        env = "SEALPOST_RELAY_REQUEST_BUFFER_BYTES",
        value_name = "BYTES"
    )]
    #[serde(default)]
    request_buffer_bytes: Option<u64>,
    /// Request bytes one connection may have buffered at once [default: 4194304].
    #[arg(
        long,
        env = "SEALPOST_RELAY_REQUEST_BUFFER_PER_CONNECTION",
        value_name = "BYTES"
    )]
    #[serde(default)]
    request_buffer_per_connection: Option<u64>,
    /// Under buffer pressure, a request body idle this long is abandoned [default: 3000].
    #[arg(
        long,
        env = "SEALPOST_RELAY_REQUEST_STALL_TIMEOUT_MS",
        value_name = "MS"
    )]
    #[serde(default)]
    request_stall_timeout_ms: Option<u64>,
    /// Connections from which on an unvalidated peer gets a QUIC Retry (0: always)
    /// [default: 1000].
    #[arg(long, env = "SEALPOST_RELAY_RETRY_THRESHOLD", value_name = "N")]
    #[serde(default)]
    retry_threshold: Option<u32>,
    /// Most devices on a consumer account's device list (at most 64) [default: 5].
    #[arg(long, env = "SEALPOST_RELAY_DEVICE_CAP_CONSUMER", value_name = "N")]
    #[serde(default)]
    device_cap_consumer: Option<u32>,
    /// Most devices on a business account's device list (at most 64) [default: 32].
    #[arg(long, env = "SEALPOST_RELAY_DEVICE_CAP_BUSINESS", value_name = "N")]
    #[serde(default)]
    device_cap_business: Option<u32>,
    /// `PublishDeviceList`s per account per hour (persisted) [default: 20].
    #[arg(
        long,
        env = "SEALPOST_RELAY_DEVICE_LIST_PUBLISHES_PER_HOUR",
        value_name = "N"
    )]
    #[serde(default)]
    device_list_publishes_per_hour: Option<u32>,
    /// `LinkDevice`s per account per hour (persisted) [default: 10].
    #[arg(
        long,
        env = "SEALPOST_RELAY_LINKS_PER_ACCOUNT_PER_HOUR",
        value_name = "N"
    )]
    #[serde(default)]
    links_per_account_per_hour: Option<u32>,
}

/// The `[guardian]` section ([`GuardianConfig`] has each field's meaning and default).
#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GuardianOptions {
    /// Serve vault requests as a guardian [default: true].
    #[arg(
        id = "enabled",
        long = "guardian",
        env = "SEALPOST_RELAY_GUARDIAN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    #[serde(default)]
    enabled: Option<bool>,
    /// Evaluations per vault between successes, 1..=100 [default: 10].
    #[arg(
        long = "guardian-max-attempts",
        env = "SEALPOST_RELAY_GUARDIAN_MAX_ATTEMPTS",
        value_name = "N"
    )]
    #[serde(default)]
    max_attempts: Option<u16>,
    /// Account prefixes served, comma-separated, e.g. +1555,+44 [default: *].
    #[arg(
        long = "guardian-accounts",
        env = "SEALPOST_RELAY_GUARDIAN_ACCOUNTS",
        value_name = "PREFIXES",
        value_delimiter = ','
    )]
    #[serde(default)]
    accounts: Option<Vec<String>>,
    /// Issuer key (64 hex digits) of another relay whose credentials are accepted;
    /// repeatable or comma-separated (replaces the lower layer's list).
    #[arg(
        long = "guardian-trusted-issuer",
        visible_alias = "guardian-trusted-issuers",
        env = "SEALPOST_RELAY_GUARDIAN_TRUSTED_ISSUERS",
        value_name = "HEX",
        value_delimiter = ','
    )]
    #[serde(default)]
    trusted_issuers: Option<Vec<String>>,
    /// Most vaults stored [default: 1000000].
    #[arg(
        long = "guardian-max-vaults",
        env = "SEALPOST_RELAY_GUARDIAN_MAX_VAULTS",
        value_name = "N"
    )]
    #[serde(default)]
    max_vaults: Option<u64>,
}

/// Sets `$target.$field` for every `Some` field of `$layer`. The field list is checked
/// against both structs: destructuring `$layer` and a `$Target` pattern without `..` fails to
/// compile when either gains a field the list does not name.
macro_rules! overlay {
    ($layer:expr => $target:expr, $Layer:ident / $Target:ident { $($f:ident),* $(,)? }) => {{
        let $Layer { $($f),* } = $layer;
        let target: &mut $Target = $target;
        let $Target { $($f: _),* } = &*target;
        $(if let Some(v) = $f { target.$f = v; })*
    }};
}

impl LimitOptions {
    fn apply(self, limits: &mut Limits) {
        overlay!(self => limits, LimitOptions / Limits {
            code_requests_per_account,
            code_requests_per_source_per_hour,
            code_requests_per_country_per_hour,
            code_requests_per_hour,
            code_requests_per_connection,
            provisioning_opens_per_connection,
            auth_failures_per_connection,
            bundle_fetches_per_minute,
            bundle_fetches_per_pair_burst,
            bundle_fetch_pair_interval_secs,
            bundle_fetches_per_target_per_day,
            sends_per_second,
            send_burst,
            max_queued_per_device,
            max_stored_one_time,
            max_stored_kem,
            mailbox_ttl_secs,
            max_connections,
            max_connections_per_ip,
            rate_limiter_max_keys,
            vault_requests_per_account,
            request_buffer_bytes,
            request_buffer_per_connection,
            request_stall_timeout_ms,
            retry_threshold,
            device_cap_consumer,
            device_cap_business,
            device_list_publishes_per_hour,
            links_per_account_per_hour,
        });
    }
}

impl GuardianOptions {
    fn apply(self, guardian: &mut GuardianConfig) {
        overlay!(self => guardian, GuardianOptions / GuardianConfig {
            enabled,
            max_attempts,
            accounts,
            trusted_issuers,
            max_vaults,
        });
    }
}

impl Options {
    /// Overlays every option that is set onto `c`.
    pub(crate) fn apply(self, c: &mut RelayConfig) {
        let Self {
            listen,
            data_dir,
            store,
            nats,
            metrics_listen,
            cert,
            key,
            cert_names,
            reset_key_file,
            webhook_url,
            webhook_secret,
            webhook_secret_file,
            webhook_timeout_secs,
            dev_log_codes,
            sweep_interval_secs,
            shutdown_grace_secs,
            limits,
            guardian,
        } = self;
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        fn set_some<T>(slot: &mut Option<T>, v: Option<T>) {
            if v.is_some() {
                *slot = v;
            }
        }
        set(&mut c.listen, listen);
        set(&mut c.data_dir, data_dir);
        set(&mut c.store, store);
        set_some(&mut c.nats, nats);
        set_some(&mut c.metrics_listen, metrics_listen);
        set_some(&mut c.cert_path, cert);
        set_some(&mut c.key_path, key);
        set(&mut c.cert_names, cert_names);
        set_some(&mut c.reset_key_file, reset_key_file);
        set_some(&mut c.webhook_url, webhook_url);
        set_some(&mut c.webhook_secret, webhook_secret);
        set_some(&mut c.webhook_secret_file, webhook_secret_file);
        set(&mut c.webhook_timeout_secs, webhook_timeout_secs);
        set(&mut c.dev_log_codes, dev_log_codes);
        set(&mut c.sweep_interval_secs, sweep_interval_secs);
        set(&mut c.shutdown_grace_secs, shutdown_grace_secs);
        limits.apply(&mut c.limits);
        guardian.apply(&mut c.guardian);
    }

    /// The top-level options of `c`, every one set (the sections are printed from
    /// [`Limits`] and [`GuardianConfig`] themselves).
    pub(crate) fn effective(c: &RelayConfig) -> Self {
        let RelayConfig {
            listen,
            data_dir,
            store,
            nats,
            metrics_listen,
            cert_path,
            key_path,
            cert_names,
            reset_key_file,
            webhook_url,
            webhook_secret,
            webhook_secret_file,
            dev_log_codes,
            webhook_timeout_secs,
            sweep_interval_secs,
            shutdown_grace_secs,
            limits: _,
            guardian: _,
            code_sender: _,
        } = c;
        Self {
            listen: Some(*listen),
            data_dir: Some(data_dir.clone()),
            store: Some(store.clone()),
            nats: nats.clone(),
            metrics_listen: *metrics_listen,
            cert: cert_path.clone(),
            key: key_path.clone(),
            cert_names: Some(cert_names.clone()),
            reset_key_file: reset_key_file.clone(),
            webhook_url: webhook_url.clone(),
            webhook_secret: webhook_secret.clone(),
            webhook_secret_file: webhook_secret_file.clone(),
            webhook_timeout_secs: Some(*webhook_timeout_secs),
            dev_log_codes: Some(*dev_log_codes),
            sweep_interval_secs: Some(*sweep_interval_secs),
            shutdown_grace_secs: Some(*shutdown_grace_secs),
            limits: LimitOptions::default(),
            guardian: GuardianOptions::default(),
        }
    }
}

/// The command, as `--help` shows it: with each option's environment variable, never its
/// value (a variable may hold a password).
pub(crate) fn command() -> clap::Command {
    Cli::command().mut_args(|a| a.hide_env_values(true))
}

/// The command that parses: without clap's own reading of the process environment (the
/// environment is read through the caller's function, [`parse_env`]).
fn parsing_command() -> clap::Command {
    command().mut_args(|a| a.env(clap::builder::Resettable::Reset))
}

fn usage(e: &clap::Error) -> RelayError {
    RelayError::Usage {
        text: e.render().to_string(),
        exit_code: e.exit_code(),
    }
}

/// The command line (`args`, the program name first).
pub(crate) fn parse_flags(args: Vec<OsString>) -> Result<Cli, RelayError> {
    let matches = match parsing_command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            // The help of the full command names each option's variable.
            let help = command().try_get_matches_from(&args).err().unwrap_or(e);
            return Err(usage(&help));
        }
        Err(e) => return Err(usage(&e)),
    };
    Cli::from_arg_matches(&matches).map_err(|e| usage(&e))
}

/// The options set by environment variables, looked up through `env`: each variable is
/// parsed as its flag (`--flag=value`) by the one definition.
pub(crate) fn parse_env(env: &impl Fn(&str) -> Option<String>) -> Result<Cli, ConfigError> {
    let mut argv = vec![OsString::from("sealpost-relay")];
    let mut set = Vec::new();
    for arg in command().get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env().and_then(|v| v.to_str()), arg.get_long())
        else {
            continue;
        };
        if let Some(value) = env(var) {
            let flag = Zeroizing::new(format!("--{long}={value}"));
            argv.push(OsString::from(flag.as_str()));
            set.push((var.to_owned(), flag));
        }
    }
    let parsed = parsing_command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    let mut cli = match parsed {
        Ok(cli) => cli,
        Err(_) => {
            // Name the variable: parse them one at a time.
            for (var, flag) in set {
                if let Err(e) = parsing_command()
                    .try_get_matches_from(["sealpost-relay", flag.as_str()])
                    .and_then(|m| Cli::from_arg_matches(&m))
                {
                    let why = std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "not a valid value".to_owned());
                    // The parser's reason, not clap's message, which repeats the value.
                    return Err(ConfigError::Env {
                        var,
                        source: Cause::msg(why),
                    });
                }
            }
            return Err(ConfigError::Env {
                var: "SEALPOST_RELAY_*".into(),
                source: Cause::msg("variables that conflict"),
            });
        }
    };
    cli.options.webhook_secret = env(WEBHOOK_SECRET_ENV).map(Zeroizing::new);
    Ok(cli)
}

/// The options of the configuration file at `path`.
pub(crate) fn read_file(path: &Path) -> Result<Options, RelayError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        RelayError::io(
            "reading",
            crate::error::IoTarget::Path(path.to_path_buf()),
            e,
        )
    })?);
    toml::from_str(&text).map_err(|e| {
        RelayError::Config(ConfigError::File {
            path: path.to_path_buf(),
            source: Cause::new(e),
        })
    })
}

/// `--store`'s parser.
fn parse_store(v: &str) -> Result<StoreBackend, ConfigError> {
    v.parse()
}

/// `--nats`'s parser.
fn parse_nats(v: &str) -> Result<NatsUrl, ConfigError> {
    v.parse()
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(Some(Zeroizing::new(String::deserialize(d)?)))
}

fn de_store<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StoreBackend>, D::Error> {
    let s = Zeroizing::new(String::deserialize(d)?);
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

fn de_nats<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NatsUrl>, D::Error> {
    let s = Zeroizing::new(String::deserialize(d)?);
    s.parse().map(Some).map_err(serde::de::Error::custom)
}
