//! Fan-out to linked devices (spec/devices.md 8.1): a shop sends one 100-byte message to a
//! customer account with 1, 5 and 32 devices, through the SDK and an in-process relay on
//! 127.0.0.1 (durable SQLite), from `send_text` to the relay's acceptance
//! (`ClientEvent::Delivered`). The sender already has a session with every device, so each
//! send is one session encryption per device, one `Send` with N envelopes, one commit.
//!
//! * `fanout/send_100B/N`: the whole send, N = 1, 5, 32.
//! * `fanout/session_encrypt_100B`: the baseline primitive, one session encryption of 100
//!   bytes on an established session (`sealpost-session`), in the same run.
//!
//! The cost should grow linearly in N: `(t(32) − t(1)) / 31` per extra device, against one
//! session encryption plus the envelope's bytes, and nothing quadratic.
//!
//! The relay's caps are raised for the bench (32 devices on a consumer account, links and
//! sends not rate-limited). The recipients go offline once set up, so that only the sender
//! and the relay are measured. A device's mailbox holds at most `MAX_QUEUED_PER_DEVICE` =
//! 10,000 envelopes, so each N has `ACCOUNTS_PER_N` recipient accounts that the bench sends
//! to in turn.
//!
//! Run: `cargo bench -p sealpost-benches --bench fanout`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    clippy::indexing_slicing
)]

mod common;

use common::{Codes, established_pair, register};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientEvent, EventReceiver, Store, StoreKey,
};
use sealpost_relay::{Relay, RelayConfig, RelayHandle};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

const SHOP: &str = "+15550008000";
const BODY: [u8; 100] = [0x61; 100];
/// Recipient accounts of each size, sent to in turn (keeps every mailbox under its cap).
const ACCOUNTS_PER_N: usize = 3;

/// Drains a device's events in the background (the client acknowledges what it stores).
fn drain(mut events: EventReceiver) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

/// Waits until the relay accepted message `id`.
async fn delivered(events: &mut EventReceiver, id: sealpost_client::MessageId) {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(ClientEvent::Delivered { message_id, .. })) if message_id == id => return,
            Ok(Some(ClientEvent::SendFailed { error, .. })) => panic!("send failed: {error}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the sender stopped"),
            Err(_) => panic!("no acceptance within 30 s"),
        }
    }
}

/// A customer account with `devices` devices (a phone and `devices − 1` linked ones), all
/// connected and draining their events.
async fn customer(
    config: &ClientConfig,
    codes: &Codes,
    phone: &str,
    devices: usize,
) -> Vec<Client> {
    let (primary, events) = register(config, codes, phone).await;
    drain(events);
    let mut all = vec![primary];
    for i in 1..devices {
        let store = Store::in_memory(StoreKey::generate()).unwrap();
        let pending = Client::link(store, config.clone()).await.unwrap();
        all[0]
            .link_device(&pending.invitation_text(), &format!("Device {i}"))
            .await
            .unwrap();
        let (client, events) = pending.complete().await.unwrap();
        drain(events);
        all.push(client);
    }
    all
}

fn fanout(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut relay_config = RelayConfig::for_tests(dir.path());
    relay_config.listen = "127.0.0.1:0".parse().unwrap();
    relay_config.code_sender = Some(codes.clone());
    let limits = &mut relay_config.limits;
    limits.device_cap_consumer = 32;
    limits.links_per_account_per_hour = 1_000;
    limits.device_list_publishes_per_hour = 1_000;
    limits.sends_per_second = 10_000_000;
    limits.send_burst = 10_000_000;
    limits.code_requests_per_source_per_hour = 10_000;
    limits.code_requests_per_country_per_hour = 10_000;
    limits.code_requests_per_hour = 10_000;
    limits.bundle_fetches_per_pair_burst = 10_000;
    limits.bundle_fetches_per_target_per_day = 10_000;
    limits.bundle_fetches_per_minute = 10_000;
    let relay: RelayHandle = rt.block_on(Relay::start(relay_config)).unwrap();
    let config = ClientConfig::new(relay.local_addr(), relay.spki_pin());

    let (shop, mut shop_events) = rt.block_on(register(&config, &codes, SHOP));
    let mut customers = Vec::new();
    for (i, n) in [1usize, 5, 32].into_iter().enumerate() {
        let mut accounts = Vec::new();
        for k in 0..ACCOUNTS_PER_N {
            let phone = format!("+155500081{i}{k}");
            let devices = rt.block_on(customer(&config, &codes, &phone, n));
            let account = AccountId::new(&phone).unwrap();
            // The first message starts the sessions (and fetches the list); not measured.
            rt.block_on(async {
                let id = shop.send_bytes(&account, &BODY).await.unwrap();
                delivered(&mut shop_events, id).await;
            });
            // Measure the sender and the relay alone: the recipients go offline (on this
            // 2-core machine their decrypting and acknowledging would compete with the
            // sender); their mailboxes hold what the bench sends.
            rt.block_on(async {
                for d in devices {
                    d.shutdown().await;
                }
            });
            accounts.push(account);
        }
        customers.push((n, accounts));
    }

    let mut g = c.benchmark_group("fanout");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(5));
    // Only Alice's side is measured: a sending chain has no limit on how far it runs ahead.
    let (mut alice, _bob) = established_pair(SHOP, "+15550008100");
    g.bench_function("session_encrypt_100B", |b| {
        b.iter(|| alice.encrypt(&BODY).unwrap());
    });
    for (n, accounts) in &customers {
        g.bench_with_input(BenchmarkId::new("send_100B", n), accounts, |b, accounts| {
            let mut turn = accounts.iter().cycle();
            b.iter(|| {
                let account = turn.next().unwrap();
                rt.block_on(async {
                    let id = shop.send_bytes(account, &BODY).await.unwrap();
                    delivered(&mut shop_events, id).await;
                });
            });
        });
    }
    g.finish();
    rt.block_on(async {
        shop.shutdown().await;
        relay.shutdown().await;
    });
}

criterion_group!(benches, fanout);
criterion_main!(benches);
