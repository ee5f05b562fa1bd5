//! The Sealpost relay: a QUIC server that registers devices, publishes their prekeys and
//! stores and forwards **opaque** end-to-end encrypted envelopes (spec/relay.md). It holds
//! no key that decrypts an envelope; envelopes, keys and verification codes never appear in
//! its logs.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | [`store`] | the async [`Store`] trait (one transaction per method; its docs are the contract a backend is written from), [`AnyStore`] (the backends as one type), [`MemoryStore`], `SqliteStore` |
//! | [`handler`] | request handling as plain async functions over the store: `(state, request, now) -> (response, effects)` |
//! | [`guardian`] | the guardian role's settings (spec/pin.md sections 7, 9) |
//! | [`ratelimit`] | token buckets, keyed with bounded memory |
//! | [`codes`] | verification-code delivery: [`CodeSender`], [`LogCodeSender`], `WebhookCodeSender` |
//! | [`limits`] | the spec's limits and operator-tunable rate limits |
//! | [`metrics`] | metric names; the Prometheus exporter |
//! | `config` | TOML file + `SEALPOST_RELAY_*` environment + flags → [`RelayConfig`] |
//! | `tls` | operator certificate or a persisted self-signed one; its public-key pin |
//! | `server` | the quinn/tokio driver: request streams, delivery, shutdown → [`Relay`] |
//! | `startup` | start-up checks (a writable store), secret files, the stateless-reset key |
//! | `backup` | `sealpost-relay backup` / `restore`: an online copy of the SQLite store and the key files |
//!
//! Everything that owns sockets, files or threads is behind the default `server` feature;
//! without it the crate is the pure core (used by the fuzz targets).
//!
//! # Quick start: an in-process relay
//!
//! [`Relay::start`] binds, opens (or creates) the data directory and returns a
//! [`RelayHandle`]; clients pin [`RelayHandle::spki_pin`] (the SHA-256 of the
//! SubjectPublicKeyInfo of [`RelayHandle::cert_der`]) and connect to [`RelayHandle::local_addr`] with ALPN
//! `sealpost/1`. This API is stable: SDK tests use it to run a relay on `127.0.0.1:0`.
//!
//! ```
//! # #[cfg(feature = "server")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sealpost_relay::{Relay, RelayConfig};
//! let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let dir = tempfile::tempdir()?;
//!     let mut config = RelayConfig::for_tests(dir.path());
//!     config.listen = "127.0.0.1:0".parse()?;
//!     config.dev_log_codes = true; // development: verification codes go to the log
//!     let relay = Relay::start(config).await?;
//!     assert_ne!(relay.local_addr().port(), 0);
//!     assert!(relay.spki_pin().to_string().starts_with("sha256/"));
//!     relay.shutdown().await;
//!     Ok(())
//! })
//! # }
//! # #[cfg(not(feature = "server"))]
//! # fn main() {}
//! ```
//!
//! The binary `sealpost-relay` does the same from a configuration file, environment and
//! flags (`sealpost-relay --help`).
#![forbid(unsafe_code)]
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod codes;
mod error;
pub mod guardian;
pub mod handler;
pub mod limits;
pub mod metrics;
pub mod ratelimit;
pub mod store;

#[cfg(feature = "server")]
pub mod backup;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod startup;
#[cfg(feature = "server")]
pub mod tls;

pub use codes::{CodeSender, LogCodeSender, VerificationCode};
pub use error::{
    BackendError, Cause, ConfigError, IoTarget, RelayError, StoreError, TlsError, Unavailable,
    WebhookUrlError,
};
pub use guardian::GuardianConfig;
pub use handler::{ConnectionState, Effect, Handler};
pub use limits::Limits;
pub use store::{AnyStore, MemoryStore, Store};

#[cfg(feature = "server")]
pub use codes::WebhookCodeSender;
#[cfg(feature = "server")]
pub use config::RelayConfig;
#[cfg(feature = "server")]
pub use server::{PROVISIONING_POLL, Relay, RelayHandle};
#[cfg(feature = "server")]
pub use store::SqliteStore;
