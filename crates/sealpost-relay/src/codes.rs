//! Delivering verification codes: the [`CodeSender`] trait, [`LogCodeSender`] for development
//! and, with the `server` feature, [`WebhookCodeSender`] for an SMS gateway.

use core::fmt;
use sealpost_wire::AccountId;
use sealpost_wire::relay::CODE_LEN;
use zeroize::Zeroizing;

/// A six-digit verification code. Wiped on drop; `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(Zeroizing<[u8; CODE_LEN]>);

impl VerificationCode {
    /// Wraps six ASCII digits; `None` for anything else.
    pub fn new(digits: [u8; CODE_LEN]) -> Option<Self> {
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| Self(Zeroizing::new(digits)))
    }

    /// The code as it is typed and sent: six ASCII digits.
    pub fn as_bytes(&self) -> &[u8; CODE_LEN] {
        &self.0
    }

    /// The code as a string (six ASCII digits).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.0.as_slice()).unwrap_or("")
    }
}

impl fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerificationCode(..)")
    }
}

/// Hands a verification code to its recipient.
///
/// Contract: called on the request path (a blocking thread), so an implementation must
/// return quickly and must not block on the network: it queues or spawns the delivery and
/// reports failures through its own logs. It never logs the code or the full account
/// (except [`LogCodeSender`], whose whole purpose is to log the code in development).
pub trait CodeSender: Send + Sync {
    /// Delivers `code` to `account`.
    fn send_code(&self, account: &AccountId, code: &VerificationCode);
}

/// Development code sender: logs `verification code for account …: NNNNNN` at INFO with the
/// account redacted. Never use it in production: anyone with the logs can register any number.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogCodeSender;

impl CodeSender for LogCodeSender {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        tracing::info!(
            "verification code for account {account:?}: {} (development code sender)",
            code.as_str()
        );
    }
}

/// Checks a webhook URL: `https://`, or plain `http://` only to a loopback host
/// (`127.0.0.0/8`, `::1`, `localhost`). The error says what is wrong (it never repeats the
/// URL, which may carry a token).
#[cfg(feature = "server")]
pub fn check_webhook_url(url: &str) -> Result<(), crate::WebhookUrlError> {
    use crate::WebhookUrlError;
    let uri: ureq::http::Uri = url.parse().map_err(|_| WebhookUrlError::NotAUrl)?;
    let host = uri.host().ok_or(WebhookUrlError::NoHost)?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = bare.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(WebhookUrlError::NotHttps)
            }
        }
        _ => Err(WebhookUrlError::NotHttps),
    }
}

/// The `X-Sealpost-Signature` value of a webhook request (spec/relay.md section 3.1.1):
/// `v1=` and the lowercase hex of `HMAC-SHA256(secret, timestamp || "." || body)`, where
/// `timestamp` is the decimal Unix time in seconds sent as `X-Sealpost-Timestamp`.
#[cfg(feature = "server")]
pub fn webhook_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut signed = zeroize::Zeroizing::new(Vec::with_capacity(body.len() + 21));
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mac = sealpost_crypto::kdf::hmac_sha256(secret, &signed);
    format!("v1={}", hex::encode(mac))
}

#[cfg(feature = "server")]
pub use webhook::{
    WEBHOOK_BACKOFF, WEBHOOK_MAX_ATTEMPTS, WEBHOOK_MIN_SECRET_LEN, WebhookCodeSender,
};

#[cfg(feature = "server")]
mod webhook {
    use super::{CodeSender, VerificationCode, webhook_signature};
    use crate::metrics;
    use sealpost_wire::AccountId;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use tokio::runtime::Handle;
    use tokio::sync::Semaphore;
    use zeroize::Zeroizing;

    /// Deliveries in flight at once; further codes are dropped (counted and logged) rather
    /// than queued without bound.
    const MAX_IN_FLIGHT: usize = 64;
    /// `WEBHOOK_MAX_ATTEMPTS`: HTTP requests per code (the first and two retries).
    pub const WEBHOOK_MAX_ATTEMPTS: u32 = 3;
    /// `WEBHOOK_BACKOFF`: the wait before the first retry; it doubles for each further one.
    pub const WEBHOOK_BACKOFF: Duration = Duration::from_secs(1);
    /// The shortest webhook secret accepted, in bytes.
    pub const WEBHOOK_MIN_SECRET_LEN: usize = 16;

    /// Posts `{"account": "+15551234567", "code": "123456"}` (JSON) to a configured URL,
    /// e.g. an SMS gateway, signed with an HMAC-SHA256 under a shared secret (headers
    /// `X-Sealpost-Timestamp` and `X-Sealpost-Signature`, spec/relay.md section 3.1.1).
    /// Runs on a blocking thread of the tokio runtime (never on the async workers), with a
    /// timeout per request, no redirects, and up to [`WEBHOOK_MAX_ATTEMPTS`] attempts with
    /// doubling backoff on transport errors, 429 and 5xx. Failures are counted in
    /// `sealpost_webhook_failures_total`; only the HTTP status or error kind is logged.
    pub struct WebhookCodeSender {
        url: String,
        secret: Arc<Zeroizing<Vec<u8>>>,
        agent: ureq::Agent,
        runtime: Handle,
        permits: Arc<Semaphore>,
        max_attempts: u32,
        backoff: Duration,
    }

    impl std::fmt::Debug for WebhookCodeSender {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("WebhookCodeSender").finish_non_exhaustive()
        }
    }

    impl WebhookCodeSender {
        /// A sender posting to `url`, signing with `secret`, with the given timeout per
        /// request, spawning on `runtime`. The URL is checked by
        /// [`super::check_webhook_url`] when the configuration is validated.
        pub fn new(
            url: impl Into<String>,
            secret: Zeroizing<Vec<u8>>,
            timeout: Duration,
            runtime: Handle,
        ) -> Self {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                // A redirect could send the code elsewhere, maybe in clear text.
                .max_redirects(0)
                .build()
                .into();
            Self {
                url: url.into(),
                secret: Arc::new(secret),
                agent,
                runtime,
                permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                max_attempts: WEBHOOK_MAX_ATTEMPTS,
                backoff: WEBHOOK_BACKOFF,
            }
        }

        /// Deliveries in progress (requests, retries and their backoff).
        pub fn in_flight(&self) -> usize {
            MAX_IN_FLIGHT - self.permits.available_permits()
        }

        /// Replaces the retry policy: `max_attempts` requests at most (at least 1), the
        /// first retry after `backoff`, doubling.
        #[must_use]
        pub fn with_retries(mut self, max_attempts: u32, backoff: Duration) -> Self {
            self.max_attempts = max_attempts.max(1);
            self.backoff = backoff;
            self
        }
    }

    /// What one attempt gave.
    enum Attempt {
        Delivered,
        /// Worth retrying: a transport error, 429 or 5xx.
        Transient,
        /// Refused for good (another status).
        Refused,
    }

    fn attempt(agent: &ureq::Agent, url: &str, secret: &[u8], body: &[u8]) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = webhook_signature(secret, timestamp, body);
        let result = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Sealpost-Timestamp", timestamp.to_string())
            .header("X-Sealpost-Signature", signature)
            .send(body);
        match result {
            Ok(resp) if resp.status().is_success() => Attempt::Delivered,
            Ok(resp) => {
                let status = resp.status().as_u16();
                tracing::warn!(status, "verification code webhook answered an error");
                if status == 429 || resp.status().is_server_error() {
                    Attempt::Transient
                } else {
                    Attempt::Refused
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "verification code webhook request failed");
                Attempt::Transient
            }
        }
    }

    impl CodeSender for WebhookCodeSender {
        fn send_code(&self, account: &AccountId, code: &VerificationCode) {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                metrics::webhook_failure("dropped");
                tracing::error!(
                    account = ?account,
                    "verification code webhook: {MAX_IN_FLIGHT} deliveries in flight, code dropped"
                );
                return;
            };
            let body = Zeroizing::new(
                serde_json::json!({ "account": account.as_str(), "code": code.as_str() })
                    .to_string(),
            );
            let agent = self.agent.clone();
            let url = self.url.clone();
            let secret = Arc::clone(&self.secret);
            let account = account.clone();
            let (max_attempts, mut backoff) = (self.max_attempts, self.backoff);
            self.runtime.spawn_blocking(move || {
                let _permit = permit;
                for n in 1..=max_attempts {
                    match attempt(&agent, &url, &secret, body.as_bytes()) {
                        Attempt::Delivered => {
                            tracing::debug!(account = ?account, attempts = n, "verification code handed to webhook");
                            return;
                        }
                        Attempt::Refused => {
                            metrics::webhook_failure("refused");
                            tracing::error!(account = ?account, "verification code webhook refused the code");
                            return;
                        }
                        Attempt::Transient if n < max_attempts => {
                            metrics::webhook_failure("retried");
                            // A blocking thread of its own: sleeping here holds no async worker.
                            std::thread::sleep(backoff);
                            backoff = backoff.saturating_mul(2);
                        }
                        Attempt::Transient => {
                            metrics::webhook_failure("gave_up");
                            tracing::error!(
                                account = ?account,
                                attempts = n,
                                "verification code webhook failed; code not delivered"
                            );
                        }
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "server")]
    use std::sync::Arc;

    #[test]
    fn code_debug_is_redacted() {
        let c = VerificationCode::new(*b"123456").unwrap();
        assert_eq!(c.as_str(), "123456");
        assert!(!format!("{c:?}").contains("123"));
        assert!(VerificationCode::new(*b"12345a").is_none());
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1: answers the i-th request with `statuses[i]`
    /// (200 after the list) and hands every raw request to the returned channel.
    #[cfg(feature = "server")]
    fn http_server(
        statuses: Vec<u16>,
    ) -> (
        String,
        std::sync::mpsc::Receiver<String>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            for (i, s) in listener.incoming().enumerate() {
                let Ok(mut s) = s else { return };
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let status = statuses.get(i).copied().unwrap_or(200);
                // Counted before the answer: once the sender has its answer, it is counted.
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
                if tx.send(String::from_utf8(buf).unwrap()).is_err() {
                    return;
                }
            }
        });
        (format!("http://{addr}/sms"), rx, hits)
    }

    /// Splits a raw request into its lowercase headers and its body.
    #[cfg(feature = "server")]
    fn parse(req: &str) -> (std::collections::HashMap<String, String>, String) {
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (headers, body.to_owned())
    }

    /// What a gateway does (spec/relay.md 3.1.1): recomputes the signature over the
    /// timestamp header and the exact body bytes and compares in constant time.
    #[cfg(feature = "server")]
    fn verify(secret: &[u8], req: &str) -> bool {
        let (headers, body) = parse(req);
        let Some(ts) = headers.get("x-sealpost-timestamp") else {
            return false;
        };
        let Some(sig) = headers.get("x-sealpost-signature") else {
            return false;
        };
        let Some(hex_mac) = sig.strip_prefix("v1=") else {
            return false;
        };
        let Ok(mac) = hex::decode(hex_mac) else {
            return false;
        };
        let mut signed = ts.as_bytes().to_vec();
        signed.push(b'.');
        signed.extend_from_slice(body.as_bytes());
        sealpost_crypto::ct_eq(&sealpost_crypto::kdf::hmac_sha256(secret, &signed), &mac)
    }

    #[cfg(feature = "server")]
    const SECRET: &[u8] = b"a test webhook secret of 32 byte";

    #[cfg(feature = "server")]
    fn sender(url: &str) -> WebhookCodeSender {
        WebhookCodeSender::new(
            url,
            zeroize::Zeroizing::new(SECRET.to_vec()),
            std::time::Duration::from_secs(5),
            tokio::runtime::Handle::current(),
        )
    }

    /// Waits until `s` has no delivery in progress (its attempts are all answered).
    #[cfg(feature = "server")]
    async fn settled(s: &WebhookCodeSender) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.in_flight() != 0 {
            assert!(std::time::Instant::now() < deadline, "delivery never ended");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[cfg(feature = "server")]
    async fn next(rx: &std::sync::mpsc::Receiver<String>) -> String {
        tokio::task::block_in_place(|| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
    }

    #[cfg(feature = "server")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn webhook_posts_signed_json() {
        let (url, rx, _) = http_server(vec![200]);
        let account = AccountId::new("+15551234567").unwrap();
        sender(&url).send_code(&account, &VerificationCode::new(*b"042042").unwrap());
        let req = next(&rx).await;
        assert!(req.starts_with("POST /sms "), "{req}");
        assert!(verify(SECRET, &req), "{req}");
        assert!(!verify(b"another secret of thirty-two byt", &req));
        let (headers, body) = parse(&req);
        let ts: u64 = headers["x-sealpost-timestamp"].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(ts.abs_diff(now) < 60);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["account"], "+15551234567");
        assert_eq!(json["code"], "042042");
        // A body changed in transit no longer verifies.
        let forged = req.replace("042042", "999999");
        assert!(!verify(SECRET, &forged));
    }

    #[cfg(feature = "server")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn webhook_retries_transient_failures_with_backoff() {
        // 503, then 500, then 200: delivered on the third attempt, each signed.
        let (url, rx, hits) = http_server(vec![503, 500, 200]);
        let account = AccountId::new("+15551234567").unwrap();
        let s = sender(&url).with_retries(3, std::time::Duration::from_millis(20));
        let started = std::time::Instant::now();
        s.send_code(&account, &VerificationCode::new(*b"123456").unwrap());
        for _ in 0..3 {
            let req = next(&rx).await;
            assert!(verify(SECRET, &req));
            assert!(req.contains("123456"));
        }
        // Backoff 20 ms, then 40 ms.
        assert!(started.elapsed() >= std::time::Duration::from_millis(60));
        settled(&s).await;
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Bounded: with two attempts and three failures the third request never comes.
        let (url, _rx, hits) = http_server(vec![500, 500, 500]);
        let s = sender(&url).with_retries(2, std::time::Duration::from_millis(1));
        s.send_code(&account, &VerificationCode::new(*b"123456").unwrap());
        tokio::task::yield_now().await;
        settled(&s).await;
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A 4xx is final: no retry.
        let (url, _rx, hits) = http_server(vec![400, 200]);
        let s = sender(&url).with_retries(3, std::time::Duration::from_millis(1));
        s.send_code(&account, &VerificationCode::new(*b"123456").unwrap());
        settled(&s).await;
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[cfg(feature = "server")]
    #[test]
    fn webhook_url_must_be_https_except_to_loopback() {
        for ok in [
            "https://sms.example/send",
            "https://203.0.113.7:8443/x",
            "http://127.0.0.1:8080/sms",
            "http://127.3.4.5/sms",
            "http://[::1]:9000/sms",
            "http://localhost/sms",
        ] {
            assert_eq!(check_webhook_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://sms.example/send",
            "http://203.0.113.7/sms",
            "http://[2001:db8::1]/sms",
            "http://localhost.evil.example/sms",
            "ftp://127.0.0.1/sms",
            "sms.example/send",
            "not a url",
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }
}
