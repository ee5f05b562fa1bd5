//! `sealpost-bridge`: one device of a business account, on the business's own machine, that
//! hands the device's conversations to the business's own systems (bots, CRMs, in any
//! language) over a local HTTP API: poll `/v1/events` or receive signed webhooks, send
//! replies with `POST /v1/conversations/{account}/messages`. The relay and any vendor see
//! ciphertext only; plaintext exists on this machine alone.
//!
//! The API is bound to loopback by default, every route but `GET /v1/health` and
//! `GET /openapi.json` needs `Authorization: Bearer <token>` (the token is generated into
//! [`files::TOKEN_FILE`], mode 0600, in the store directory), and it is described in
//! `openapi.json` and README.md.
//!
//! Events come from the client store's durable history (by history position), so nothing
//! is lost across restarts of the bridge or of its consumer, and a slow consumer only falls
//! behind: it never loses a message.
//!
//! ```no_run
//! # async fn demo(store: sealpost_client::Store, config: sealpost_client::ClientConfig)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use sealpost_bridge::{Bridge, BridgeConfig};
//! let (client, events) = sealpost_client::Client::open(store, config).await?;
//! let bridge = Bridge::start(client, events, BridgeConfig::new("bridge-store")).await?;
//! println!("listening on {}", bridge.local_addr());
//! bridge.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
mod error;
pub mod event;
pub mod files;
mod webhook;

pub use api::ApiError;
pub use error::BridgeError;
pub use webhook::WebhookConfig;

use api::AppState;
use files::{
    SENT_JOURNAL_FILE, Secret, SentJournal, TOKEN_FILE, WEBHOOK_CURSOR_FILE, WEBHOOK_SECRET_FILE,
};
use sealpost_client::{Client, ClientEvent, EventReceiver};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8787);

/// How the bridge runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The store directory: the bridge's token, webhook secret and cursor live here.
    pub dir: PathBuf,
    /// Where the API listens ([`DEFAULT_LISTEN`]; port 0 picks one).
    pub listen: SocketAddr,
    /// Allow a listen address that is not loopback (logged as a warning).
    pub allow_remote: bool,
    /// The API token's file, instead of [`files::TOKEN_FILE`] in `dir` (which is created if
    /// missing; this one must exist).
    pub token_file: Option<PathBuf>,
    /// Webhook delivery, if wanted.
    pub webhook: Option<WebhookConfig>,
}

impl BridgeConfig {
    /// The defaults for the store directory `dir`: loopback port 8787, the token in `dir`,
    /// no webhook.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            listen: DEFAULT_LISTEN,
            allow_remote: false,
            token_file: None,
            webhook: None,
        }
    }

    /// Listens on `addr`.
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Delivers events to a webhook.
    pub fn with_webhook(mut self, webhook: WebhookConfig) -> Self {
        self.webhook = Some(webhook);
        self
    }

    /// Checks the settings [`Bridge::start`] checks first: a listen address that is not
    /// loopback needs [`BridgeConfig::allow_remote`] (and is logged as a warning); a webhook
    /// URL is `http://` or `https://`.
    pub fn check(&self) -> Result<(), BridgeError> {
        if !self.listen.ip().is_loopback() {
            if !self.allow_remote {
                return Err(BridgeError::NotLoopback { addr: self.listen });
            }
            tracing::warn!(addr = %self.listen, "the API listens on a non-loopback address: other machines can reach it");
        }
        if let Some(w) = &self.webhook
            && !(w.url.starts_with("http://") || w.url.starts_with("https://"))
        {
            return Err(BridgeError::InvalidWebhookUrl);
        }
        Ok(())
    }
}

/// A running bridge: the HTTP server, the task that watches the client's events, and the
/// webhook task when configured. [`Bridge::shutdown`] stops them and the client.
pub struct Bridge {
    addr: SocketAddr,
    client: Client,
    closing: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Starts serving `client` (a registered or linked device, typically with role `bot`
    /// or `agent`) with its event receiver.
    pub async fn start(
        client: Client,
        events: EventReceiver,
        config: BridgeConfig,
    ) -> Result<Self, BridgeError> {
        config.check()?;
        let dir = config.dir.clone();
        let token_file = config.token_file.clone();
        let want_webhook = config.webhook.is_some();
        let (token, webhook_secret, journal) = tokio::task::spawn_blocking(move || {
            let token = match &token_file {
                Some(path) => Secret::load(path)?,
                None => Secret::load_or_create(&dir.join(TOKEN_FILE))?,
            };
            let secret = if want_webhook {
                Some(Secret::load_or_create(&dir.join(WEBHOOK_SECRET_FILE))?)
            } else {
                None
            };
            let journal = SentJournal::load(dir.join(SENT_JOURNAL_FILE))?;
            Ok::<_, BridgeError>((token, secret, journal))
        })
        .await
        .map_err(|e| BridgeError::Io {
            what: "loading",
            path: config.dir.clone(),
            source: std::io::Error::other(e),
        })??;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| BridgeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BridgeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (closing, closing_rx) = watch::channel(false);
        let state = Arc::new(AppState::new(
            client.clone(),
            token,
            Arc::new(Mutex::new(journal)),
            watch::channel(0).0,
            closing_rx.clone(),
        ));
        let mut tasks = vec![tokio::spawn(watch_events(
            events,
            state.clone(),
            closing_rx.clone(),
        ))];
        if let (Some(webhook), Some(secret)) = (config.webhook, webhook_secret) {
            tasks.push(tokio::spawn(webhook::run(
                state.clone(),
                webhook,
                secret,
                config.dir.join(WEBHOOK_CURSOR_FILE),
                closing_rx.clone(),
            )));
        }
        let router = api::router(state);
        let mut stop = closing_rx;
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|c| *c).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the API server stopped");
            }
        }));
        tracing::info!(%addr, device = client.address().device.0, "bridge listening");
        Ok(Self {
            addr,
            client,
            closing,
            tasks,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The device's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stops serving (long polls return at once, requests in flight finish), stops the
    /// webhook (an unconfirmed delivery is sent again at the next start), then shuts the
    /// client down, releasing its store.
    pub async fn shutdown(self) {
        self.closing.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.client.shutdown().await;
        tracing::info!("bridge stopped");
    }
}

/// Wakes waiting polls and the webhook when the history may have grown (a message, a sent
/// copy, an imported history bundle or handoff, or missed events); logs connection changes.
async fn watch_events(
    mut events: EventReceiver,
    state: Arc<AppState>,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = closing.wait_for(|c| *c) => return,
        };
        match event {
            None => return,
            Some(
                ClientEvent::Message { .. }
                | ClientEvent::SentByOtherDevice { .. }
                | ClientEvent::HistoryImported { .. }
                | ClientEvent::HandoffReceived { .. }
                | ClientEvent::Lagged { .. },
            ) => state.bump(),
            Some(ClientEvent::Connected) => tracing::info!("connected to the relay"),
            Some(ClientEvent::Disconnected) => tracing::info!("disconnected from the relay"),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_loopback_unless_allowed_and_only_http_webhooks() {
        let config = BridgeConfig::new("d");
        assert!(config.listen.ip().is_loopback());
        assert!(config.check().is_ok());
        let v6 = config.clone().with_listen("[::1]:0".parse().unwrap());
        assert!(v6.check().is_ok());
        let remote = config.clone().with_listen("0.0.0.0:8787".parse().unwrap());
        assert!(matches!(
            remote.check(),
            Err(BridgeError::NotLoopback { .. })
        ));
        let allowed = BridgeConfig {
            allow_remote: true,
            ..remote
        };
        assert!(allowed.check().is_ok());
        for url in ["ftp://x", "127.0.0.1:9000/hook", ""] {
            assert!(matches!(
                config.clone().with_webhook(WebhookConfig::new(url)).check(),
                Err(BridgeError::InvalidWebhookUrl)
            ));
        }
        assert!(
            config
                .with_webhook(WebhookConfig::new("https://crm.internal/hook"))
                .check()
                .is_ok()
        );
    }
}
