//! A business desk at scale (spec/business.md 7–9): a shop with an owner, a bot and 50
//! agent devices holds 1,000 open customer conversations, each routed to one agent; the
//! SDK and an in-process relay on 127.0.0.1 (durable SQLite), every device online.
//!
//! * `business/customer_send_100B/routed`: a customer sends 100 bytes to the shop, timed
//!   from `send_bytes` to the relay's acceptance (`ClientEvent::Delivered`); the customers
//!   take turns over all 1,000 conversations. The conversation route names one agent, so
//!   the customer's client encrypts to that agent and the owner device (7.3): 2 envelopes.
//! * `business/customer_send_100B/whole_desk`: the same for conversations routed to every
//!   device of the shop (the bot and the 50 agents, and the owner): what every customer
//!   message would cost without routing, 52 envelopes.
//! * `business/customer_to_agent_100B`: from the customer's `send_bytes` to the agent's
//!   `ClientEvent::Message` (relay push and the agent's decrypt and store included).
//! * `business/session_encrypt_100B`: the baseline primitive, one session encryption of
//!   100 bytes on an established chain.
//! * `business/handoff_500/{encode,decode,verify}` and the `sha256_500_steps` baseline: a
//!   handoff bundle of a 500-message conversation (`DeskRef::Handoff`, 8.2) built, parsed,
//!   and checked (9.3: the receiving device's `TranscriptLog` against the customer's
//!   confirmation), against the floor of that check, 500 SHA-256 chain steps.
//! * `business/handoff_500/transfer_to_checked`: through the SDK, an agent transfers a
//!   conversation of 500 messages (250 from the customer, 250 from the shop) to another
//!   agent, timed from `transfer` to the receiver's `ClientEvent::HandoffChecked`
//!   (`Verified`): build, encrypt, relay, decrypt, import, the customer's client accepting
//!   the route and confirming its transcript, the check. The two agents hand it back and
//!   forth.
//!
//! Besides the timings the bench prints the relay's own account of each send (envelopes
//! queued per customer message, and its mean handling time per `Send` request, from its
//! Prometheus `/metrics`) and the handoff's bundle size. Before each case it waits until
//! the relay has no unacknowledged envelope left (every device has processed its backlog).
//!
//! The relay's caps are raised for the set-up (64 devices on a business list, links, sends,
//! registrations and bundle fetches not rate-limited, 2,000 connections from 127.0.0.1).
//! `SEALPOST_BENCH_AGENTS` and `SEALPOST_BENCH_CONVERSATIONS` scale the desk down for a
//! quick look (defaults 50 and 1,000).
//!
//! Run: `cargo bench -p sealpost-benches --bench business`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod common;

use common::{Codes, established_pair, register};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use sealpost_client::{
    AccountId, AccountKind, BusinessProfileFields, Client, ClientConfig, ClientEvent, DeviceId,
    DeviceRole, EventReceiver, HandoffCheck, MessageId, Store, StoreKey,
};
use sealpost_devices::{Transcript, TranscriptLog, chain_step};
use sealpost_relay::{Relay, RelayConfig, RelayHandle};
use sealpost_wire::business::{DeskRef, HandoffEntryRef, Side, TranscriptConfirmation};
use sealpost_wire::content::{CONTENT_TEXT, CONTENT_VERSION};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const SHOP: &str = "+15550009000";
const BODY: [u8; 100] = [0x62; 100];
/// Messages in the handed-over conversation (half from each side).
const HANDOFF_MESSAGES: usize = 500;
/// Conversations routed to the whole desk, for the comparison.
const WHOLE_DESK_CONVERSATIONS: usize = 10;
/// Registrations and first messages in flight at once during the set-up.
const SETUP_CONCURRENCY: usize = 16;
const WAIT: Duration = Duration::from_secs(120);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The events the bench waits for, from every device, tagged with the device.
#[derive(Debug)]
enum Seen {
    Delivered(MessageId),
    Message { to: usize, message_id: MessageId },
    RouteChanged,
    Handoff { to: usize, messages: usize },
    Checked { to: usize, check: HandoffCheck },
}

/// Drains a device's events in the background, passing on what the bench waits for.
fn watch(index: usize, mut events: EventReceiver, tx: mpsc::UnboundedSender<Seen>) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let seen = match ev {
                ClientEvent::Delivered { message_id, .. } => Seen::Delivered(message_id),
                ClientEvent::Message { message_id, .. } => Seen::Message {
                    to: index,
                    message_id,
                },
                ClientEvent::RouteChanged { .. } => Seen::RouteChanged,
                ClientEvent::HandoffReceived { messages, .. } => Seen::Handoff {
                    to: index,
                    messages,
                },
                ClientEvent::HandoffChecked { check, .. } => Seen::Checked { to: index, check },
                ClientEvent::SendFailed { error, .. } => panic!("device {index}: {error}"),
                ClientEvent::Lagged { missed } => panic!("device {index} lagged by {missed}"),
                _ => continue,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
}

/// One stream of [`Seen`] events with a deadline.
struct Inbox(mpsc::UnboundedReceiver<Seen>);

impl Inbox {
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        loop {
            match tokio::time::timeout(WAIT, self.0.recv()).await {
                Ok(Some(seen)) => {
                    if let Some(t) = pick(seen) {
                        return t;
                    }
                }
                Ok(None) => panic!("every device stopped while waiting for {what}"),
                Err(_) => panic!("no {what} within {} s", WAIT.as_secs()),
            }
        }
    }

    async fn count(&mut self, what: &str, n: usize, mut pick: impl FnMut(&Seen) -> bool) {
        let mut left = n;
        while left > 0 {
            self.until(what, |s| pick(&s).then_some(())).await;
            left -= 1;
        }
    }
}

async fn link(
    owner: &Client,
    config: &ClientConfig,
    name: &str,
    role: DeviceRole,
) -> (Client, EventReceiver) {
    let store = Store::in_memory(StoreKey::generate()).unwrap();
    let pending = Client::link(store, config.clone()).await.unwrap();
    owner
        .link_device_as(&pending.invitation_text(), name, role)
        .await
        .unwrap();
    pending.complete().await.unwrap()
}

/// Reads the relay's `/metrics` page (HTTP/1.0 on loopback).
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page
}

/// The sum of every sample of `name` whose labels contain `label` (all when empty).
fn metric(page: &str, name: &str, label: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(key, _)| {
            let (n, labels) = key.split_once('{').unwrap_or((key, ""));
            n == name && labels.contains(label)
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Waits until every envelope the relay queued was acknowledged (every device online has
/// processed what it was sent), so that no backlog competes with the next case.
async fn settle(addr: SocketAddr) {
    let start = std::time::Instant::now();
    loop {
        let page = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .unwrap();
        let queued = metric(&page, "sealpost_messages_queued_total", "");
        let delivered = metric(&page, "sealpost_messages_delivered_total", "");
        if delivered >= queued {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "{} envelopes still unacknowledged after 15 minutes",
            queued - delivered
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the relay counted for `Send` requests and queued envelopes.
#[derive(Clone, Copy)]
struct RelayCount {
    sends: f64,
    send_seconds: f64,
    queued: f64,
}

impl RelayCount {
    fn read(addr: SocketAddr) -> Self {
        let page = scrape(addr);
        Self {
            sends: metric(
                &page,
                "sealpost_request_duration_seconds_count",
                "kind=\"send\"",
            ),
            send_seconds: metric(
                &page,
                "sealpost_request_duration_seconds_sum",
                "kind=\"send\"",
            ),
            queued: metric(&page, "sealpost_messages_queued_total", ""),
        }
    }

    /// Prints what happened between `self` and `after` over `messages` customer messages.
    fn report(self, after: Self, what: &str, messages: u64) {
        let sends = after.sends - self.sends;
        let queued = after.queued - self.queued;
        let per_send_us = 1e6 * (after.send_seconds - self.send_seconds) / sends.max(1.0);
        println!(
            "relay, {what}: {messages} customer messages, {sends} Send requests, \
             {queued} envelopes queued ({:.2} per message), {per_send_us:.0} µs handling per Send",
            queued / messages.max(1) as f64
        );
    }
}

/// The content encodings of a 500-message conversation of 100-byte texts, alternating
/// between the customer's device 1 and the shop's device 2, and the confirmation the
/// customer's client sends for it (every message seen).
fn handoff_conversation() -> (Vec<(Side, u32, Vec<u8>)>, TranscriptConfirmation) {
    let mut transcript = Transcript::new();
    let messages: Vec<(Side, u32, Vec<u8>)> = (0..HANDOFF_MESSAGES)
        .map(|i| {
            let (side, device) = if i % 2 == 0 {
                (Side::Customer, 1)
            } else {
                (Side::Business, 2)
            };
            let mut content = vec![CONTENT_VERSION, CONTENT_TEXT];
            content.extend_from_slice(&(i as u128).to_be_bytes());
            content.extend_from_slice(&BODY);
            transcript.append(side, device, &content).unwrap();
            (side, device, content)
        })
        .collect();
    let confirmation = TranscriptConfirmation {
        route_version: 2,
        chains: transcript.heads(),
    };
    (messages, confirmation)
}

fn handoff_bundle<'a>(messages: &'a [(Side, u32, Vec<u8>)]) -> DeskRef<'a> {
    DeskRef::Handoff {
        customer: AccountId::new("+15550009100").unwrap(),
        route_version: 2,
        part: 1,
        parts: 1,
        note: "shift ends; order 1042, parcel traced",
        entries: messages
            .iter()
            .enumerate()
            .map(|(i, (side, device, content))| HandoffEntryRef {
                side: *side,
                device: *device,
                timestamp: 1_700_000_000_000 + i as u64,
                content,
            })
            .collect(),
    }
}

/// The receiving device's side of 9.3: the log from the bundle, checked.
fn verify(bundle: &DeskRef<'_>, confirmation: &TranscriptConfirmation) -> HandoffCheck {
    let DeskRef::Handoff { entries, .. } = bundle else {
        panic!("a handoff");
    };
    let mut log = TranscriptLog::new();
    for e in entries {
        log.push(e.side, e.device, e.content).unwrap();
    }
    log.check(confirmation, 1)
}

fn handoff_pure(c: &mut Criterion) {
    let (messages, confirmation) = handoff_conversation();
    let bundle = handoff_bundle(&messages);
    let encoded = bundle.encode().unwrap();
    println!(
        "handoff of {HANDOFF_MESSAGES} messages of 100 B: bundle {} bytes ({:.0} per message), \
         confirmation {} bytes",
        encoded.len(),
        encoded.len() as f64 / HANDOFF_MESSAGES as f64,
        confirmation.encode().unwrap().len()
    );
    assert!(matches!(
        verify(&DeskRef::decode(&encoded).unwrap(), &confirmation),
        HandoffCheck::Verified {
            confirmed: HANDOFF_MESSAGES,
            unconfirmed: 0
        }
    ));

    let mut g = c.benchmark_group("business/handoff_500");
    g.sample_size(50);
    g.bench_function("sha256_500_steps", |b| {
        b.iter(|| {
            let mut head = [0u8; 32];
            for (_, _, content) in &messages {
                head = chain_step(&head, content);
            }
            head
        });
    });
    g.bench_function("encode", |b| b.iter(|| bundle.encode().unwrap()));
    g.bench_function("decode", |b| {
        b.iter(|| DeskRef::decode(&encoded).unwrap());
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            let decoded = DeskRef::decode(&encoded).unwrap();
            verify(&decoded, &confirmation)
        });
    });
    g.finish();
}

/// The shop and its customers, every device online.
struct Desk {
    relay: RelayHandle,
    shop: Vec<Client>,
    customers: Vec<Client>,
    inbox: Inbox,
    /// Index into `shop` of each conversation's agent.
    agent_of: Vec<usize>,
}

/// Indices into `Desk::shop`.
const OWNER: usize = 0;
const BOT: usize = 1;
const FIRST_AGENT: usize = 2;
/// What [`Seen`] says for any customer's device.
const CUSTOMER: usize = usize::MAX;

async fn build_desk(
    agents: usize,
    conversations: usize,
    codes: Arc<Codes>,
    dir: &std::path::Path,
) -> Desk {
    let mut relay_config = RelayConfig::for_tests(dir);
    relay_config.listen = "127.0.0.1:0".parse().unwrap();
    relay_config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    relay_config.code_sender = Some(codes.clone());
    let limits = &mut relay_config.limits;
    limits.device_cap_business = 64;
    limits.links_per_account_per_hour = 1_000;
    limits.device_list_publishes_per_hour = 1_000;
    limits.sends_per_second = 10_000_000;
    limits.send_burst = 10_000_000;
    limits.code_requests_per_source_per_hour = 100_000;
    limits.code_requests_per_country_per_hour = 100_000;
    limits.code_requests_per_hour = 100_000;
    limits.bundle_fetches_per_pair_burst = 100_000;
    limits.bundle_fetches_per_target_per_day = 100_000;
    limits.bundle_fetches_per_minute = 100_000;
    limits.max_connections_per_ip = 4_000;
    let relay = Relay::start(relay_config).await.unwrap();
    let config = ClientConfig::new(relay.local_addr(), relay.spki_pin());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut inbox = Inbox(rx);

    let t0 = std::time::Instant::now();
    let shop_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Owner");
    let (owner, events) = register(&shop_config, &codes, SHOP).await;
    watch(OWNER, events, tx.clone());
    let mut shop = vec![owner];
    let (bot, events) = link(&shop[OWNER], &config, "Order bot", DeviceRole::Bot).await;
    watch(BOT, events, tx.clone());
    shop.push(bot);
    for i in 0..agents {
        let (agent, events) = link(
            &shop[OWNER],
            &config,
            &format!("Agent {i}"),
            DeviceRole::Agent,
        )
        .await;
        watch(shop.len(), events, tx.clone());
        shop.push(agent);
    }
    shop[OWNER]
        .publish_business_profile(BusinessProfileFields {
            name: "Harbour Books".into(),
            category: "Bookshop".into(),
            ..BusinessProfileFields::default()
        })
        .await
        .unwrap();
    shop[OWNER]
        .set_default_route(&[shop[BOT].address().device])
        .await
        .unwrap();
    println!(
        "set-up: shop of {} devices in {:.1} s",
        shop.len(),
        t0.elapsed().as_secs_f64()
    );

    // Customers: registered, each writes to the shop (the bot answers first).
    let t0 = std::time::Instant::now();
    let shop_account = AccountId::new(SHOP).unwrap();
    let total = conversations + WHOLE_DESK_CONVERSATIONS + 1;
    let mut customers = Vec::with_capacity(total);
    let phones: Vec<String> = (0..total).map(|i| format!("+1555101{i:04}")).collect();
    for chunk in phones.chunks(SETUP_CONCURRENCY) {
        let registered = join_all(chunk.iter().map(|p| register(&config, &codes, p))).await;
        for (client, events) in registered {
            watch(CUSTOMER, events, tx.clone());
            customers.push(client);
        }
    }
    for chunk in customers.chunks(SETUP_CONCURRENCY) {
        join_all(chunk.iter().map(|c| c.send_bytes(&shop_account, &BODY)))
            .await
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
    }
    inbox
        .count("first messages at the bot", total, |s| {
            matches!(s, Seen::Message { to: BOT, .. })
        })
        .await;
    println!(
        "set-up: {total} customers registered, their first messages at the bot, in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The bot hands each conversation on: to one agent, or (the comparison) to the desk.
    let t0 = std::time::Instant::now();
    let whole_desk: Vec<DeviceId> = shop[BOT..].iter().map(|d| d.address().device).collect();
    let mut agent_of = Vec::with_capacity(total);
    for (i, customer) in customers.iter().enumerate() {
        let to = if i < conversations || i == total - 1 {
            let agent = FIRST_AGENT + i % agents;
            agent_of.push(agent);
            vec![shop[agent].address().device]
        } else {
            agent_of.push(usize::MAX);
            whole_desk.clone()
        };
        shop[BOT]
            .transfer(&customer.address().account, &to, "")
            .await
            .unwrap();
    }
    inbox
        .count("customers' route changes", total, |s| {
            matches!(s, Seen::RouteChanged)
        })
        .await;
    println!(
        "set-up: {total} conversations routed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Desk {
        relay,
        shop,
        customers,
        inbox,
        agent_of,
    }
}

/// A customer message, until the relay accepted it.
async fn send_accepted(desk: &mut Desk, customer: usize) {
    let id = desk.customers[customer]
        .send_bytes(&AccountId::new(SHOP).unwrap(), &BODY)
        .await
        .unwrap();
    desk.inbox
        .until("the relay's acceptance", |s| {
            matches!(s, Seen::Delivered(m) if m == id).then_some(())
        })
        .await;
}

fn business(c: &mut Criterion) {
    handoff_pure(c);

    let agents = env_or("SEALPOST_BENCH_AGENTS", 50).clamp(2, 60);
    let conversations = env_or("SEALPOST_BENCH_CONVERSATIONS", 1_000).max(agents);
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let mut desk = rt.block_on(build_desk(agents, conversations, codes, dir.path()));
    let metrics = desk.relay.metrics_addr().unwrap();
    let handed = desk.customers.len() - 1;
    rt.block_on(settle(metrics));

    let mut g = c.benchmark_group("business");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(8));
    let (mut alice, _bob) = established_pair("+15550009100", SHOP);
    g.bench_function("session_encrypt_100B", |b| {
        b.iter(|| alice.encrypt(&BODY).unwrap());
    });

    let before = RelayCount::read(metrics);
    let mut sent = 0u64;
    let mut turn = (0..conversations).cycle();
    g.bench_function("customer_send_100B/routed", |b| {
        b.iter(|| {
            let i = turn.next().unwrap();
            rt.block_on(send_accepted(&mut desk, i));
            sent += 1;
        });
    });
    before.report(RelayCount::read(metrics), "routed to one agent", sent);

    let before = RelayCount::read(metrics);
    let mut sent = 0u64;
    rt.block_on(settle(metrics));
    let mut turn = (conversations..conversations + WHOLE_DESK_CONVERSATIONS).cycle();
    g.bench_function("customer_send_100B/whole_desk", |b| {
        b.iter(|| {
            let i = turn.next().unwrap();
            rt.block_on(send_accepted(&mut desk, i));
            sent += 1;
        });
    });
    before.report(RelayCount::read(metrics), "routed to the whole desk", sent);
    // The desk's devices finish decrypting the whole-desk messages before the next case.
    rt.block_on(settle(metrics));

    // One agent's conversations, to its device.
    let agent = FIRST_AGENT;
    let mine: Vec<usize> = (0..conversations)
        .filter(|&i| desk.agent_of[i] == agent)
        .collect();
    let mut turn = mine.iter().copied().cycle();
    g.bench_function("customer_to_agent_100B", |b| {
        b.iter(|| {
            let i = turn.next().unwrap();
            rt.block_on(async {
                let id = desk.customers[i]
                    .send_bytes(&AccountId::new(SHOP).unwrap(), &BODY)
                    .await
                    .unwrap();
                desk.inbox
                    .until("the agent's message", |s| {
                        matches!(s, Seen::Message { to, message_id } if to == agent && message_id == id)
                            .then_some(())
                    })
                    .await;
            });
        });
    });
    g.finish();

    // A 500-message conversation, handed between two agents.
    let me = desk.customers[handed].address().account.clone();
    let shop_account = AccountId::new(SHOP).unwrap();
    let holder = desk.agent_of[handed];
    let other = if holder == FIRST_AGENT {
        FIRST_AGENT + 1
    } else {
        FIRST_AGENT
    };
    rt.block_on(async {
        for _ in 0..HANDOFF_MESSAGES / 2 {
            desk.customers[handed]
                .send_bytes(&shop_account, &BODY)
                .await
                .unwrap();
            desk.shop[holder].send_bytes(&me, &BODY).await.unwrap();
        }
        // The agent has the customer's messages and the customer the agent's, so that the
        // customer's confirmation counts every message.
        desk.inbox
            .count(
                "the conversation at both ends",
                HANDOFF_MESSAGES,
                |s| matches!(s, Seen::Message { to, .. } if *to == holder || *to == CUSTOMER),
            )
            .await;
    });
    rt.block_on(settle(metrics));
    let mut pair = [holder, other];
    let mut g = c.benchmark_group("business/handoff_500");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("transfer_to_checked", |b| {
        b.iter(|| {
            let [from, to] = pair;
            rt.block_on(async {
                let device = desk.shop[to].address().device;
                desk.shop[from]
                    .transfer(&me, &[device], "shift ends")
                    .await
                    .unwrap();
                let messages = desk
                    .inbox
                    .until("the handoff", |s| match s {
                        Seen::Handoff { to: t, messages } if t == to => Some(messages),
                        _ => None,
                    })
                    .await;
                assert!(
                    messages >= HANDOFF_MESSAGES,
                    "{messages} messages handed over"
                );
                let check = desk
                    .inbox
                    .until("the handoff's check", |s| match s {
                        Seen::Checked { to: t, check } if t == to => Some(check),
                        _ => None,
                    })
                    .await;
                assert!(matches!(check, HandoffCheck::Verified { .. }), "{check:?}");
            });
            pair = [to, from];
        });
    });
    g.finish();

    let shop = std::mem::take(&mut desk.shop);
    let customers = std::mem::take(&mut desk.customers);
    rt.block_on(async move {
        join_all(shop.iter().chain(&customers).map(Client::shutdown)).await;
        desk.relay.shutdown().await;
    });
}

criterion_group!(benches, business);
criterion_main!(benches);
