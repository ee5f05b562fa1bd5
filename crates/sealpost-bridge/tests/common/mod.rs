//! Shared helpers: an in-process relay over real QUIC, real SQLite stores, a business
//! (owner + the bridge's device linked as `bot`), customers, and an HTTP client (ureq on
//! a blocking thread) for the bridge's API.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealpost_bridge::{Bridge, BridgeConfig};
use sealpost_client::{
    AccountId, AccountKind, Backoff, Client, ClientConfig, ClientEvent, DeviceInfo, DeviceRole,
    EventReceiver, Store, StoreKey, StoreSecret,
};
use sealpost_relay::{CodeSender, Limits, Relay, RelayConfig, RelayHandle, VerificationCode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SHOP: &str = "+15550004001";
pub const BOT_NAME: &str = "Order bot";

/// Captures verification codes instead of sending SMS.
#[derive(Default)]
pub struct Codes(pub Mutex<HashMap<String, String>>);

impl CodeSender for Codes {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        self.0
            .lock()
            .unwrap()
            .insert(account.as_str().to_owned(), code.as_str().to_owned());
    }
}

pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Relay limits generous enough for bulk tests.
pub fn bulk_limits() -> Limits {
    Limits {
        sends_per_second: 100_000,
        send_burst: 100_000,
        bundle_fetches_per_minute: 10_000,
        code_requests_per_account: 100,
        code_requests_per_connection: 100,
        code_requests_per_source_per_hour: 1_000_000,
        code_requests_per_country_per_hour: 1_000_000,
        code_requests_per_hour: 1_000_000,
        bundle_fetches_per_pair_burst: 1_000_000,
        bundle_fetches_per_target_per_day: 1_000_000,
        ..Limits::default()
    }
}

pub async fn start_relay(dir: &Path, codes: &Arc<Codes>) -> RelayHandle {
    init_logs();
    let mut config = RelayConfig::for_tests(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.limits = bulk_limits();
    config.shutdown_grace_secs = 2;
    config.code_sender = Some(codes.clone());
    Relay::start(config).await.unwrap()
}

pub fn client_config(relay: &RelayHandle) -> ClientConfig {
    ClientConfig::new(relay.local_addr(), relay.spki_pin())
        .with_reconnect(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
        })
        .with_request_timeout(Duration::from_secs(15))
}

pub fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub fn open_store(dir: &Path, name: &str) -> Store {
    // A fixed raw key per name (no key derivation), so the same store can be reopened.
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(name.bytes().cycle()) {
        *k = b;
    }
    Store::open_sqlite_blocking(
        dir.join(format!("{name}.db")),
        StoreSecret::Key(StoreKey::from_bytes(key)),
    )
    .unwrap()
}

pub async fn register(
    config: &ClientConfig,
    codes: &Codes,
    phone: &str,
    store: Store,
) -> (Client, EventReceiver) {
    Client::request_code(config, &acct(phone)).await.unwrap();
    let code = codes.0.lock().unwrap().remove(phone).unwrap();
    Client::register(store, config.clone(), acct(phone), &code)
        .await
        .unwrap()
}

/// Collects every event of a receiver in the background.
#[derive(Clone, Default)]
pub struct Collector {
    pub events: Arc<Mutex<Vec<ClientEvent>>>,
}

impl Collector {
    pub fn spawn(&self, mut rx: EventReceiver) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                me.events.lock().unwrap().push(ev);
            }
        });
    }

    /// The texts of the messages received, in order, with their authors.
    pub fn received(&self) -> Vec<(String, Option<DeviceInfo>)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { body, author, .. } => Some((
                    body.as_text().unwrap_or_default().to_owned(),
                    author.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Waits until `f` holds, failing the test after `secs`.
    pub async fn wait(&self, what: &str, secs: u64, f: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The bot's entry in the shop's list.
pub fn bot_info() -> DeviceInfo {
    DeviceInfo {
        id: sealpost_client::DeviceId(2),
        name: BOT_NAME.to_owned(),
        role: DeviceRole::Bot,
    }
}

/// A business: its owner device, and its bridge device (linked as `bot`) served by a bridge.
pub struct Shop {
    pub home: PathBuf,
    pub config: ClientConfig,
    pub owner: Client,
    pub owner_seen: Collector,
    pub bridge: Option<Bridge>,
    pub bridge_dir: PathBuf,
    pub base: String,
}

impl Shop {
    /// Registers the owner, links the bridge's device as `bot` and starts the bridge.
    pub async fn start(
        home: &Path,
        relay: &RelayHandle,
        codes: &Codes,
        configure: impl Fn(BridgeConfig) -> BridgeConfig,
    ) -> Self {
        let config = client_config(relay);
        let owner_config = config
            .clone()
            .with_account_kind(AccountKind::Business)
            .with_device_name("Shop owner");
        let (owner, rx) = register(&owner_config, codes, SHOP, open_store(home, "owner")).await;
        let owner_seen = Collector::default();
        owner_seen.spawn(rx);
        let pending = Client::link(open_store(home, "bridge"), config.clone())
            .await
            .unwrap();
        owner
            .link_device_as(&pending.invitation_text(), BOT_NAME, DeviceRole::Bot)
            .await
            .unwrap();
        let (client, events) = pending.complete().await.unwrap();
        let bridge_dir = home.join("bridge-home");
        std::fs::create_dir_all(&bridge_dir).unwrap();
        let bridge_config =
            configure(BridgeConfig::new(&bridge_dir).with_listen("127.0.0.1:0".parse().unwrap()));
        let bridge = Bridge::start(client, events, bridge_config).await.unwrap();
        let base = format!("http://{}", bridge.local_addr());
        Self {
            home: home.to_owned(),
            config,
            owner,
            owner_seen,
            bridge: Some(bridge),
            bridge_dir,
            base,
        }
    }

    pub fn bridge(&self) -> &Bridge {
        self.bridge.as_ref().unwrap()
    }

    /// Stops the bridge (and its client) and starts it again on the same store and
    /// directory (a new port; the same token).
    pub async fn restart(&mut self, configure: impl Fn(BridgeConfig) -> BridgeConfig) {
        self.bridge.take().unwrap().shutdown().await;
        let (client, events) = Client::open(open_store(&self.home, "bridge"), self.config.clone())
            .await
            .unwrap();
        let bridge_config = configure(
            BridgeConfig::new(&self.bridge_dir).with_listen("127.0.0.1:0".parse().unwrap()),
        );
        let bridge = Bridge::start(client, events, bridge_config).await.unwrap();
        self.base = format!("http://{}", bridge.local_addr());
        self.bridge = Some(bridge);
    }

    /// The API token (from the file the bridge generated).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.bridge_dir.join(sealpost_bridge::files::TOKEN_FILE)).unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(b) = self.bridge.take() {
            b.shutdown().await;
        }
        self.owner.shutdown().await;
    }
}

/// A customer with its own store and event collector.
pub async fn customer(
    home: &Path,
    relay: &RelayHandle,
    codes: &Codes,
    phone: &str,
) -> (Client, Collector) {
    let (client, rx) = register(&client_config(relay), codes, phone, open_store(home, phone)).await;
    let seen = Collector::default();
    seen.spawn(rx);
    (client, seen)
}

/// An HTTP answer: status, the `WWW-Authenticate` header, the body as JSON (Null if empty
/// or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub json: serde_json::Value,
}

/// One HTTP request to the bridge (`token`: the bearer token to present, if any).
pub async fn http(method: &str, url: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Answer {
    let (method, url) = (method.to_owned(), url.to_owned());
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = if method == "GET" {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        } else {
            let mut r = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(&body.unwrap_or_default()[..])
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response
            .body_mut()
            .with_config()
            .limit(10 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            www_authenticate,
            json,
        }
    })
    .await
    .unwrap()
}

/// `POST /v1/conversations/{account}/messages` with text; returns the message id.
pub async fn reply(base: &str, token: &str, account: &str, text: &str) -> String {
    let url = format!(
        "{base}/v1/conversations/{}/messages",
        account.replace('+', "%2B")
    );
    let body = serde_json::json!({ "text": text }).to_string().into_bytes();
    let answer = http("POST", &url, Some(token), Some(body)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);
    answer.json["message_id"].as_str().unwrap().to_owned()
}

/// Polls `/v1/events` after `cursor` until at least one event arrives (failing after
/// `secs`); returns the events and the next cursor.
pub async fn poll(
    base: &str,
    token: &str,
    cursor: u64,
    secs: u64,
) -> (Vec<serde_json::Value>, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = http(
            "GET",
            &format!("{base}/v1/events?after={cursor}&limit=50&wait=5"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        let events = answer.json["events"].as_array().unwrap().clone();
        let next = answer.json["next_cursor"].as_u64().unwrap();
        if !events.is_empty() {
            return (events, next);
        }
        assert_eq!(
            next, cursor,
            "an empty page moves the cursor only past gaps"
        );
        assert!(Instant::now() < deadline, "no event after {secs} s");
    }
}
