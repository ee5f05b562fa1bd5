//! Webhook delivery: every event of the feed, in order, POSTed to the business's URL with
//! an HMAC-SHA256 signature, at least once. The cursor of the last delivered event is kept
//! in [`crate::files::WEBHOOK_CURSOR_FILE`] (written atomically after each delivery), so a
//! restart resumes after it: an event whose delivery was not confirmed (2xx) is sent again.
//!
//! Failures (a connection error, a timeout, any non-2xx status) are retried with capped
//! exponential backoff ([`WebhookConfig`]), forever: the webhook never skips an event, and
//! the events behind it wait (the feed is durable, so they are not lost meanwhile).

use crate::api::AppState;
use crate::api::events::read_page;
use crate::files::{Secret, read_cursor, write_atomic};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events read from the history per batch.
const WEBHOOK_BATCH: usize = 100;
/// How often an idle webhook task looks at the history without a wake-up.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// Where and how to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Delivery to `url` with the default retry policy (0.5 s doubling to 60 s; 10 s per
    /// attempt).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The task: delivers until `closing` is set.
pub(crate) async fn run(
    state: Arc<AppState>,
    config: WebhookConfig,
    secret: Secret,
    cursor_path: PathBuf,
    mut closing: watch::Receiver<bool>,
) {
    let secret = Arc::new(secret);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .build()
        .into();
    let mut cursor = match read_cursor(&cursor_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook stopped: its cursor file does not read");
            return;
        }
    };
    let mut wake = state.wake.subscribe();
    while !*closing.borrow() {
        wake.borrow_and_update();
        let page = match read_page(&state, cursor, WEBHOOK_BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = ?e, "webhook: reading the history failed");
                if pause(&mut closing, config.retry_max).await {
                    return;
                }
                continue;
            }
        };
        if page.events.is_empty() {
            if page.next_cursor != cursor {
                cursor = page.next_cursor;
                persist(&cursor_path, cursor).await;
                continue;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = closing.changed() => {}
                () = tokio::time::sleep(IDLE_RECHECK) => {}
            }
            continue;
        }
        for event in page.events {
            let body = match serde_json::to_vec(&event) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "webhook: an event does not encode");
                    return;
                }
            };
            let mut delay = config.retry_initial;
            let mut attempt: u32 = 0;
            loop {
                attempt += 1;
                let outcome =
                    deliver(&agent, &config.url, &secret, event.cursor, body.clone()).await;
                match outcome {
                    Ok(()) => break,
                    Err(why) => {
                        tracing::warn!(cursor = event.cursor, attempt, %why, retry_in_ms = delay.as_millis(), "webhook delivery failed");
                        if pause(&mut closing, delay).await {
                            return;
                        }
                        delay = (delay * 2).min(config.retry_max);
                    }
                }
            }
            cursor = event.cursor;
            persist(&cursor_path, cursor).await;
            tracing::debug!(cursor, "webhook delivered");
        }
    }
}

/// Sleeps `delay`; true if the bridge is closing.
async fn pause(closing: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = closing.changed() => {}
        () = tokio::time::sleep(delay) => {}
    }
    *closing.borrow()
}

async fn persist(path: &std::path::Path, cursor: u64) {
    let path = path.to_owned();
    let written =
        tokio::task::spawn_blocking(move || write_atomic(&path, cursor.to_string().as_bytes()))
            .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "webhook cursor not saved"),
        Err(e) => tracing::error!(error = %e, "webhook cursor not saved"),
    }
}

/// One attempt; the error says why (never the body).
async fn deliver(
    agent: &ureq::Agent,
    url: &str,
    secret: &Arc<Secret>,
    cursor: u64,
    body: Vec<u8>,
) -> Result<(), String> {
    let agent = agent.clone();
    let url = url.to_owned();
    let secret = secret.clone();
    let attempt = tokio::task::spawn_blocking(move || {
        let signature = secret.sign(&body);
        agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Sealpost-Signature", &signature)
            .header("X-Sealpost-Cursor", &cursor.to_string())
            .send(&body[..])
            .map(|r| r.status())
    })
    .await;
    match attempt {
        Ok(Ok(status)) if status.is_success() => Ok(()),
        Ok(Ok(status)) => Err(format!("status {}", status.as_u16())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
