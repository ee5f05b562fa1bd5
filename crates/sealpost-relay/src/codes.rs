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

#[cfg(feature = "server")]
pub use webhook::WebhookCodeSender;

#[cfg(feature = "server")]
mod webhook {
    use super::{CodeSender, VerificationCode};
    use sealpost_wire::AccountId;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::runtime::Handle;
    use tokio::sync::Semaphore;

    /// Deliveries in flight at once; further codes are dropped (and logged) rather than
    /// queued without bound.
    const MAX_IN_FLIGHT: usize = 64;

    /// Posts `{"account": "+15551234567", "code": "123456"}` (JSON) to a configured URL,
    /// e.g. an SMS gateway, on a blocking thread of the tokio runtime, with a timeout. Only
    /// the HTTP status or error kind is logged.
    pub struct WebhookCodeSender {
        url: String,
        agent: ureq::Agent,
        runtime: Handle,
        permits: Arc<Semaphore>,
    }

    impl std::fmt::Debug for WebhookCodeSender {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("WebhookCodeSender").finish_non_exhaustive()
        }
    }

    impl WebhookCodeSender {
        /// A sender posting to `url` with the given timeout, spawning on `runtime`.
        pub fn new(url: impl Into<String>, timeout: Duration, runtime: Handle) -> Self {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .build()
                .into();
            Self {
                url: url.into(),
                agent,
                runtime,
                permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            }
        }
    }

    impl CodeSender for WebhookCodeSender {
        fn send_code(&self, account: &AccountId, code: &VerificationCode) {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                tracing::error!(
                    account = ?account,
                    "verification code webhook: {MAX_IN_FLIGHT} deliveries in flight, code dropped"
                );
                return;
            };
            let body = zeroize::Zeroizing::new(
                serde_json::json!({ "account": account.as_str(), "code": code.as_str() })
                    .to_string(),
            );
            let agent = self.agent.clone();
            let url = self.url.clone();
            let account = account.clone();
            self.runtime.spawn_blocking(move || {
                let _permit = permit;
                let result = agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send(body.as_bytes());
                match result {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::debug!(account = ?account, "verification code handed to webhook");
                    }
                    Ok(resp) => tracing::error!(
                        account = ?account,
                        status = resp.status().as_u16(),
                        "verification code webhook refused the code"
                    ),
                    Err(e) => tracing::error!(
                        account = ?account,
                        error = %e,
                        "verification code webhook failed"
                    ),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_debug_is_redacted() {
        let c = VerificationCode::new(*b"123456").unwrap();
        assert_eq!(c.as_str(), "123456");
        assert!(!format!("{c:?}").contains("123"));
        assert!(VerificationCode::new(*b"12345a").is_none());
    }

    #[cfg(feature = "server")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn webhook_posts_json() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            // Read headers and the (small) body.
            loop {
                let n = s.read(&mut chunk).unwrap();
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
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            tx.send(String::from_utf8(buf).unwrap()).unwrap();
        });
        let sender = WebhookCodeSender::new(
            format!("http://{addr}/sms"),
            std::time::Duration::from_secs(5),
            tokio::runtime::Handle::current(),
        );
        let account = AccountId::new("+15551234567").unwrap();
        sender.send_code(&account, &VerificationCode::new(*b"042042").unwrap());
        let req = tokio::task::spawn_blocking(move || {
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap()
        })
        .await
        .unwrap();
        assert!(req.starts_with("POST /sms "), "{req}");
        let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["account"], "+15551234567");
        assert_eq!(json["code"], "042042");
    }
}
