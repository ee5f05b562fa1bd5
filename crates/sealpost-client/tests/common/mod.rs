//! Shared helpers: an in-process relay with captured verification codes, registration,
//! and event collection.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealpost_client::{
    AccountId, Backoff, Client, ClientConfig, ClientEvent, DeviceAddress, DeviceId, DeviceInfo,
    DeviceRole, EventReceiver, MessageId, SpkiPins, Store, StoreKey, StoreSecret,
};
use sealpost_relay::{
    CodeSender, GuardianConfig, Limits, Relay, RelayConfig, RelayHandle, VerificationCode,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=sealpost_client=debug`).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

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

impl Codes {
    pub fn take(&self, account: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .remove(account)
            .expect("a code was sent")
    }
}

/// Relay limits generous enough for bulk tests (the defaults are production limits).
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

pub async fn start_relay(
    dir: &Path,
    listen: SocketAddr,
    codes: &Arc<Codes>,
    limits: Limits,
) -> RelayHandle {
    start_relay_with(dir, listen, codes, limits, GuardianConfig::default()).await
}

/// [`start_relay`] with a guardian configuration (spec/pin.md section 9).
pub async fn start_relay_with(
    dir: &Path,
    listen: SocketAddr,
    codes: &Arc<Codes>,
    limits: Limits,
    guardian: GuardianConfig,
) -> RelayHandle {
    init_logs();
    RELAYS_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut config = RelayConfig::for_tests(dir).with_guardian(guardian.clone());
        config.listen = listen;
        config.limits = limits.clone();
        config.shutdown_grace_secs = 2;
        config.code_sender = Some(codes.clone());
        match Relay::start(config).await {
            Ok(r) => return r,
            // The port of a relay that just stopped may take a moment to be released.
            Err(e) if Instant::now() < deadline => {
                eprintln!("relay start failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("relay did not start: {e:#}"),
        }
    }
}

pub fn client_config(relay: SocketAddr, pins: impl Into<SpkiPins>) -> ClientConfig {
    ClientConfig::new(relay, pins)
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
    // A fixed key per name, so the same store can be reopened.
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(name.bytes().cycle()) {
        *k = b;
    }
    // A raw key needs no key derivation: the blocking open is instant.
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
    let expires = Client::request_code(config, &acct(phone)).await.unwrap();
    assert!(expires > 0);
    let code = codes.take(phone);
    Client::register(store, config.clone(), acct(phone), &code)
        .await
        .unwrap()
}

/// A message as the app saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub from: DeviceAddress,
    pub text: String,
    pub id: MessageId,
}

/// Collects every event of a receiver in the background until the channel closes.
#[derive(Clone, Default)]
pub struct Collector {
    pub messages: Arc<Mutex<Vec<Seen>>>,
    pub events: Arc<Mutex<Vec<ClientEvent>>>,
}

impl Collector {
    pub fn spawn(&self, mut rx: EventReceiver) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let ClientEvent::Message {
                    from,
                    body,
                    message_id,
                    ..
                } = &ev
                {
                    me.messages.lock().unwrap().push(Seen {
                        from: from.clone(),
                        text: body.as_text().unwrap_or_default().to_owned(),
                        id: *message_id,
                    });
                }
                me.events.lock().unwrap().push(ev);
            }
        })
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn texts(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.text.clone())
            .collect()
    }

    pub fn delivered(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, ClientEvent::Delivered { .. }))
            .count()
    }

    pub fn count_events(&self, f: impl Fn(&ClientEvent) -> bool) -> usize {
        self.events.lock().unwrap().iter().filter(|e| f(e)).count()
    }

    /// Waits until `f` holds (polling), failing the test after `secs`.
    pub async fn wait(&self, what: &str, secs: u64, f: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (messages: {}, delivered: {})",
                self.count(),
                self.delivered()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Copies every file of `from` into `to` (created if needed): a store directory (the SQLite
/// database with its `-wal` and `-shm` files, if any).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Opens a registered store and waits until the client is connected.
pub async fn open_connected(home: &Path, name: &str, config: &ClientConfig) -> (Client, Collector) {
    let (client, rx): (Client, EventReceiver) =
        Client::open(open_store(home, name), config.clone())
            .await
            .unwrap();
    let seen = Collector::default();
    seen.spawn(rx);
    seen.wait("connected", 30, |c| {
        c.count_events(|e| matches!(e, ClientEvent::Connected)) > 0
    })
    .await;
    (client, seen)
}

/// 127.0.0.1 on a port the system picks.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Relays started in this process by [`start_relay`] and [`start_relay_with_metrics`].
static RELAYS_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A relay that also serves its Prometheus metrics. The `metrics` recorder is global to the
/// process, and every relay in the process records into it, not only the one serving it;
/// `cargo test` runs all tests of a test file in one process. So a test that counts
/// requests with [`sends`] must be **the only test in its file** (checked by [`sends`]).
pub async fn start_relay_with_metrics(dir: &Path, codes: &Arc<Codes>) -> RelayHandle {
    init_logs();
    RELAYS_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut config = RelayConfig::for_tests(dir);
    config.listen = any_port();
    config.limits = bulk_limits();
    config.shutdown_grace_secs = 2;
    config.code_sender = Some(codes.clone());
    config.metrics_listen = Some(any_port());
    Relay::start(config).await.unwrap()
}

/// How many `Send` requests the relays of this process have answered (the global
/// request-duration histogram, served by `relay`). Panics if more than one relay was started
/// in this process: their requests would be counted together.
pub fn sends(relay: &RelayHandle) -> u64 {
    assert_eq!(
        RELAYS_STARTED.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sends() counts every relay of the process: keep the test alone in its file"
    );
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(relay.metrics_addr().unwrap()).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("sealpost_request_duration_seconds_count") && l.contains("kind=\"send\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Waits for exactly one `Delivered` event of `id`.
pub async fn delivered(seen: &Collector, id: MessageId) {
    seen.wait("delivered", 30, |c| {
        c.count_events(
            |e| matches!(e, ClientEvent::Delivered { message_id, .. } if *message_id == id),
        ) == 1
    })
    .await;
}

/// The device-list entry `(id, name, role)`.
pub fn info(id: u32, name: &str, role: DeviceRole) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(id),
        name: name.to_owned(),
        role,
    }
}

/// Links a new device (store `name`) to `primary`'s account as `device_name`.
pub async fn link(
    home: &Path,
    name: &str,
    config: &sealpost_client::ClientConfig,
    primary: &Client,
    device_name: &str,
) -> (Client, Collector) {
    let pending = Client::link(open_store(home, name), config.clone())
        .await
        .unwrap();
    let text = pending.invitation_text();
    assert!(text.starts_with("sealpost-link:"));
    let id = primary.link_device(&text, device_name).await.unwrap();
    let (client, rx) = pending.complete().await.unwrap();
    assert_eq!(client.address().device, id);
    assert_eq!(client.address().account, primary.address().account);
    let seen = Collector::default();
    seen.spawn(rx);
    (client, seen)
}

/// Links a new device (store `name`) to `holder`'s account as `device_name` with `role`
/// (`Client::link_device_as`).
pub async fn link_as(
    home: &Path,
    name: &str,
    config: &sealpost_client::ClientConfig,
    holder: &Client,
    device_name: &str,
    role: DeviceRole,
) -> (Client, Collector) {
    let pending = Client::link(open_store(home, name), config.clone())
        .await
        .unwrap();
    let id = holder
        .link_device_as(&pending.invitation_text(), device_name, role)
        .await
        .unwrap();
    let (client, rx) = pending.complete().await.unwrap();
    assert_eq!(client.address().device, id);
    let seen = Collector::default();
    seen.spawn(rx);
    (client, seen)
}

/// A customer (store `phone`) that fetches a business's list before every message it sends
/// (so it always encrypts along the business's current routes), with its events collected.
pub async fn customer(
    dir: &Path,
    config: &ClientConfig,
    codes: &Codes,
    phone: &str,
) -> (Client, Collector) {
    let config = config.clone().with_device_list_refresh(Duration::ZERO);
    let (c, rx) = register(&config, codes, phone, open_store(dir, phone)).await;
    let seen = Collector::default();
    seen.spawn(rx);
    (c, seen)
}
