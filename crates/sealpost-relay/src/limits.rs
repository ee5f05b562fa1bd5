//! Operational limits (spec/relay.md section 7 and the rate limits of section 3). Defaults are
//! the spec's values; operators may lower them (see [`Limits::validate`]).

use crate::ConfigError;
use crate::ratelimit::Rate;

/// Ten minutes, in milliseconds.
const TEN_MINUTES_MS: u64 = 10 * 60 * 1000;
/// One hour, in milliseconds.
const HOUR_MS: u64 = 60 * 60 * 1000;

/// Spec maximum of queued envelopes per device (`MAX_QUEUED_PER_DEVICE`).
pub const MAX_QUEUED_PER_DEVICE: u32 = 10_000;
/// Spec maximum of stored one-time X25519 prekeys per device (`MAX_STORED_ONE_TIME`).
pub const MAX_STORED_ONE_TIME: u32 = 1000;
/// Spec maximum of stored one-time ML-KEM prekeys per device (`MAX_STORED_ONE_TIME`).
pub const MAX_STORED_KEM: u32 = 200;
/// Spec mailbox TTL (`MAILBOX_TTL`), in seconds: 30 days.
pub const MAILBOX_TTL_SECS: u64 = 30 * 24 * 3600;
/// Verification code lifetime (`CODE_TTL`), in seconds.
pub const CODE_TTL_SECS: u32 = 600;
/// Wrong codes allowed per code (`CODE_MAX_ATTEMPTS`).
pub const CODE_MAX_ATTEMPTS: u32 = 5;
/// `PREKEY_LOW_WATERMARK` for one-time X25519 prekeys.
pub const LOW_WATERMARK_ONE_TIME: u32 = 20;
/// `PREKEY_LOW_WATERMARK` for one-time ML-KEM prekeys.
pub const LOW_WATERMARK_KEM: u32 = 5;
/// `DELIVERY_WINDOW`: delivered-but-unacknowledged envelopes per connection.
pub const DELIVERY_WINDOW: usize = 64;
/// `MAX_CONCURRENT_REQUESTS`: request streams per authenticated connection, granted once it
/// has `AUTH_CONCURRENT_REQUESTS` requests in progress at the same time.
pub const MAX_CONCURRENT_REQUESTS: u32 = 32;
/// `AUTH_CONCURRENT_REQUESTS`: request streams per connection once it has authenticated.
pub const AUTH_CONCURRENT_REQUESTS: u32 = 4;
/// `PRE_AUTH_CONCURRENT_REQUESTS`: request streams per connection before it authenticates.
/// Registration, authentication and the guardian requests are sequential exchanges, but one
/// stream is not enough for them: QUIC returns a stream's credit only once the client has
/// acknowledged the response, and a client delays that acknowledgement by up to its
/// `max_ack_delay` (25 ms by default), so with one stream every exchange after the first
/// waited for it (a PIN recovery took 59 ms instead of 10). With two, a sequential client
/// opens the next stream at once, and that stream's first packet carries the acknowledgement
/// that frees the one before. quinn keeps state for every stream a peer may open, and keeps
/// the receive state of every stream used, so small allowances keep idle connections small.
pub const PRE_AUTH_CONCURRENT_REQUESTS: u32 = 2;
/// `IDLE_TIMEOUT`, in seconds.
pub const IDLE_TIMEOUT_SECS: u64 = 60;
/// Default `REQUEST_BUFFER`: request bytes buffered relay-wide at once (128 MiB).
pub const REQUEST_BUFFER: u64 = 128 * 1024 * 1024;
/// Default `REQUEST_BUFFER_PER_CONNECTION`: request bytes one connection may have buffered at
/// once (4 MiB: one largest frame and some small requests beside it).
pub const REQUEST_BUFFER_PER_CONNECTION: u64 = 4 * 1024 * 1024;
/// Default `REQUEST_STALL_TIMEOUT`, in milliseconds: while more than half of the relay-wide
/// request buffer is in use, a request body that has received nothing for this long is
/// abandoned.
pub const REQUEST_STALL_TIMEOUT_MS: u64 = 3000;
/// Default `RETRY_THRESHOLD`: with at least this many connections open (handshakes
/// included), a peer whose address is not validated gets a QUIC Retry.
pub const RETRY_THRESHOLD: u32 = 1000;

/// Limits enforced by the request handler and the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "server", serde(default, deny_unknown_fields))]
pub struct Limits {
    /// `RequestCode`s per number per 10 minutes (default 3). Persisted.
    pub code_requests_per_account: u32,
    /// `RequestCode`s per source address per hour (default 30; IPv6 counts per /64).
    /// Persisted.
    pub code_requests_per_source_per_hour: u32,
    /// `RequestCode`s per country calling code per hour (default 300). Persisted.
    pub code_requests_per_country_per_hour: u32,
    /// `RequestCode`s relay-wide per hour (default 3000). Persisted.
    pub code_requests_per_hour: u32,
    /// `RequestCode`s per connection per 10 minutes (default 5).
    pub code_requests_per_connection: u32,
    /// Failed `Authenticate`s per connection per 10 minutes (default 5).
    pub auth_failures_per_connection: u32,
    /// `FetchBundles` per connection per minute (default 60).
    pub bundle_fetches_per_minute: u32,
    /// `FetchBundles` of one target account by one requesting account at once (default 3).
    /// Persisted.
    pub bundle_fetches_per_pair_burst: u32,
    /// Then one `FetchBundles` per pair every this many seconds (default 300). Persisted.
    pub bundle_fetch_pair_interval_secs: u64,
    /// `FetchBundles` of one target account per day, by anyone (default 500). Persisted.
    pub bundle_fetches_per_target_per_day: u32,
    /// `Send`s per device per second, sustained (default 50).
    pub sends_per_second: u32,
    /// `Send` burst per device (default 200).
    pub send_burst: u32,
    /// Queued envelopes per device (default and maximum 10000).
    pub max_queued_per_device: u32,
    /// Stored one-time X25519 prekeys per device (default and maximum 1000).
    pub max_stored_one_time: u32,
    /// Stored one-time ML-KEM prekeys per device (default and maximum 200).
    pub max_stored_kem: u32,
    /// Mailbox TTL in seconds (default and maximum 30 days).
    pub mailbox_ttl_secs: u64,
    /// Concurrent connections (default 10000).
    pub max_connections: u32,
    /// Concurrent connections from one IP address (default 256; a busy support desk behind
    /// one NAT shares an address).
    pub max_connections_per_ip: u32,
    /// Buckets each in-memory keyed rate limiter (per device, per account) keeps at most;
    /// when all are in use and none has refilled, new keys are refused (fail closed).
    pub rate_limiter_max_keys: usize,
    /// Vault requests (spec/pin.md section 9) per account per 10 minutes (default 30).
    pub vault_requests_per_account: u32,
    /// `OpenProvisioning`s per connection per 10 minutes (default 5; spec/relay.md 3.11).
    pub provisioning_opens_per_connection: u32,
    /// Request bytes buffered relay-wide at once (default [`REQUEST_BUFFER`]; at least
    /// `request_buffer_per_connection`). A frame longer than this (or than the
    /// per-connection buffer) is refused with `TooLarge`.
    pub request_buffer_bytes: u64,
    /// Request bytes one connection may have buffered at once (default
    /// [`REQUEST_BUFFER_PER_CONNECTION`]; at least `MAX_PRE_AUTH_FRAME`).
    pub request_buffer_per_connection: u64,
    /// Under buffer pressure, a request body idle this long is abandoned, in milliseconds
    /// (default [`REQUEST_STALL_TIMEOUT_MS`]).
    pub request_stall_timeout_ms: u64,
    /// Connections (open or handshaking) from which on an unvalidated peer gets a QUIC
    /// Retry (default [`RETRY_THRESHOLD`]; 0: always).
    pub retry_threshold: u32,
    /// Most devices on a consumer account's device list (default 5: a primary and 4 linked
    /// devices; at most `MAX_DEVICES_PER_ACCOUNT`, spec/relay.md 3.9).
    pub device_cap_consumer: u32,
    /// Most devices on a business account's device list (default 32; at most
    /// `MAX_DEVICES_PER_ACCOUNT`).
    pub device_cap_business: u32,
    /// `PublishDeviceList`s per account per hour (default 20). Persisted.
    pub device_list_publishes_per_hour: u32,
    /// `LinkDevice`s per account per hour (default 10). Persisted.
    pub links_per_account_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            code_requests_per_account: 3,
            code_requests_per_source_per_hour: 30,
            code_requests_per_country_per_hour: 300,
            code_requests_per_hour: 3000,
            code_requests_per_connection: 5,
            auth_failures_per_connection: 5,
            bundle_fetches_per_minute: 60,
            bundle_fetches_per_pair_burst: 3,
            bundle_fetch_pair_interval_secs: 300,
            bundle_fetches_per_target_per_day: 500,
            sends_per_second: 50,
            send_burst: 200,
            max_queued_per_device: MAX_QUEUED_PER_DEVICE,
            max_stored_one_time: MAX_STORED_ONE_TIME,
            max_stored_kem: MAX_STORED_KEM,
            mailbox_ttl_secs: MAILBOX_TTL_SECS,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            rate_limiter_max_keys: 100_000,
            vault_requests_per_account: 30,
            provisioning_opens_per_connection: 5,
            request_buffer_bytes: REQUEST_BUFFER,
            request_buffer_per_connection: REQUEST_BUFFER_PER_CONNECTION,
            request_stall_timeout_ms: REQUEST_STALL_TIMEOUT_MS,
            retry_threshold: RETRY_THRESHOLD,
            device_cap_consumer: 5,
            device_cap_business: 32,
            device_list_publishes_per_hour: 20,
            links_per_account_per_hour: 10,
        }
    }
}

impl Limits {
    /// Checks that every limit is positive and that the storage limits do not exceed the
    /// spec's (clients rely on those). Rate limits may be set freely (operators usually lower
    /// them; test deployments may raise them).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "limits.code_requests_per_account",
                u64::from(self.code_requests_per_account),
            ),
            (
                "limits.code_requests_per_source_per_hour",
                u64::from(self.code_requests_per_source_per_hour),
            ),
            (
                "limits.code_requests_per_country_per_hour",
                u64::from(self.code_requests_per_country_per_hour),
            ),
            (
                "limits.code_requests_per_hour",
                u64::from(self.code_requests_per_hour),
            ),
            (
                "limits.code_requests_per_connection",
                u64::from(self.code_requests_per_connection),
            ),
            (
                "limits.provisioning_opens_per_connection",
                u64::from(self.provisioning_opens_per_connection),
            ),
            (
                "limits.auth_failures_per_connection",
                u64::from(self.auth_failures_per_connection),
            ),
            (
                "limits.bundle_fetches_per_minute",
                u64::from(self.bundle_fetches_per_minute),
            ),
            (
                "limits.bundle_fetches_per_pair_burst",
                u64::from(self.bundle_fetches_per_pair_burst),
            ),
            (
                "limits.bundle_fetch_pair_interval_secs",
                self.bundle_fetch_pair_interval_secs,
            ),
            (
                "limits.bundle_fetches_per_target_per_day",
                u64::from(self.bundle_fetches_per_target_per_day),
            ),
            ("limits.sends_per_second", u64::from(self.sends_per_second)),
            ("limits.send_burst", u64::from(self.send_burst)),
            (
                "limits.max_queued_per_device",
                u64::from(self.max_queued_per_device),
            ),
            ("limits.mailbox_ttl_secs", self.mailbox_ttl_secs),
            ("limits.max_connections", u64::from(self.max_connections)),
            (
                "limits.max_connections_per_ip",
                u64::from(self.max_connections_per_ip),
            ),
            (
                "limits.rate_limiter_max_keys",
                self.rate_limiter_max_keys as u64,
            ),
            (
                "limits.vault_requests_per_account",
                u64::from(self.vault_requests_per_account),
            ),
            (
                "limits.device_cap_consumer",
                u64::from(self.device_cap_consumer),
            ),
            (
                "limits.device_cap_business",
                u64::from(self.device_cap_business),
            ),
            (
                "limits.device_list_publishes_per_hour",
                u64::from(self.device_list_publishes_per_hour),
            ),
            (
                "limits.links_per_account_per_hour",
                u64::from(self.links_per_account_per_hour),
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::NotPositive { key });
            }
        }
        if self.request_stall_timeout_ms == 0 {
            return Err(ConfigError::NotPositive {
                key: "limits.request_stall_timeout_ms",
            });
        }
        let pre_auth = sealpost_wire::relay::MAX_PRE_AUTH_FRAME as u64;
        if self.request_buffer_per_connection < pre_auth {
            return Err(ConfigError::BelowMinimum {
                key: "limits.request_buffer_per_connection",
                value: self.request_buffer_per_connection,
                minimum: "MAX_PRE_AUTH_FRAME",
                min: pre_auth,
            });
        }
        if self.request_buffer_bytes < self.request_buffer_per_connection {
            return Err(ConfigError::BelowMinimum {
                key: "limits.request_buffer_bytes",
                value: self.request_buffer_bytes,
                minimum: "limits.request_buffer_per_connection",
                min: self.request_buffer_per_connection,
            });
        }
        let capped = [
            (
                "limits.max_queued_per_device",
                u64::from(self.max_queued_per_device),
                u64::from(MAX_QUEUED_PER_DEVICE),
            ),
            (
                "limits.max_stored_one_time",
                u64::from(self.max_stored_one_time),
                u64::from(MAX_STORED_ONE_TIME),
            ),
            (
                "limits.max_stored_kem",
                u64::from(self.max_stored_kem),
                u64::from(MAX_STORED_KEM),
            ),
            (
                "limits.mailbox_ttl_secs",
                self.mailbox_ttl_secs,
                MAILBOX_TTL_SECS,
            ),
            (
                "limits.device_cap_consumer",
                u64::from(self.device_cap_consumer),
                sealpost_wire::devices::MAX_LISTED_DEVICES as u64,
            ),
            (
                "limits.device_cap_business",
                u64::from(self.device_cap_business),
                sealpost_wire::devices::MAX_LISTED_DEVICES as u64,
            ),
        ];
        for (key, value, max) in capped {
            if value > max {
                return Err(ConfigError::AboveProtocolMaximum { key, value, max });
            }
        }
        Ok(())
    }

    pub(crate) fn code_account_rate(&self) -> Rate {
        Rate::per(self.code_requests_per_account, TEN_MINUTES_MS)
    }

    pub(crate) fn code_source_rate(&self) -> Rate {
        Rate::per(self.code_requests_per_source_per_hour, HOUR_MS)
    }

    pub(crate) fn code_country_rate(&self) -> Rate {
        Rate::per(self.code_requests_per_country_per_hour, HOUR_MS)
    }

    pub(crate) fn code_global_rate(&self) -> Rate {
        Rate::per(self.code_requests_per_hour, HOUR_MS)
    }

    pub(crate) fn code_connection_rate(&self) -> Rate {
        Rate::per(self.code_requests_per_connection, TEN_MINUTES_MS)
    }

    pub(crate) fn provisioning_open_rate(&self) -> Rate {
        Rate::per(self.provisioning_opens_per_connection, TEN_MINUTES_MS)
    }

    pub(crate) fn auth_failure_rate(&self) -> Rate {
        Rate::per(self.auth_failures_per_connection, TEN_MINUTES_MS)
    }

    pub(crate) fn bundle_rate(&self) -> Rate {
        Rate::per(self.bundle_fetches_per_minute, 60_000)
    }

    pub(crate) fn bundle_pair_rate(&self) -> Rate {
        Rate {
            capacity: self.bundle_fetches_per_pair_burst.max(1),
            refill_ms: self
                .bundle_fetch_pair_interval_secs
                .saturating_mul(1000)
                .max(1),
        }
    }

    pub(crate) fn bundle_target_rate(&self) -> Rate {
        Rate::per(self.bundle_fetches_per_target_per_day, 24 * HOUR_MS)
    }

    pub(crate) fn vault_rate(&self) -> Rate {
        Rate::per(self.vault_requests_per_account, TEN_MINUTES_MS)
    }

    pub(crate) fn list_publish_rate(&self) -> Rate {
        Rate::per(self.device_list_publishes_per_hour, HOUR_MS)
    }

    pub(crate) fn link_rate(&self) -> Rate {
        Rate::per(self.links_per_account_per_hour, HOUR_MS)
    }

    pub(crate) fn send_rate(&self) -> Rate {
        Rate::per_second(self.sends_per_second, self.send_burst)
    }

    pub(crate) fn mailbox_ttl_ms(&self) -> u64 {
        self.mailbox_ttl_secs.saturating_mul(1000)
    }
}
