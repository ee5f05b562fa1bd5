//! Cross-node wake-ups over NATS core pub/sub (spec/relay.md section 8, "Several nodes").
//!
//! Nodes that share a store tell each other about committed mail: after a `Send` commits, the
//! node that took it publishes one wake-up per recipient device ([`Wakeups::publish`]); every
//! node subscribes, per device, for the devices connected to it ([`Wakeups::watch`],
//! [`Wakeups::sync`]), and hands each wake-up it receives to [`mail_committed`], exactly like
//! a local commit notice: the delivery reads the mailbox, which is the truth. A wake-up is a
//! hint: a lost one delays a message until the device's next read (a later wake-up or
//! reconnection), a duplicated one (an echo of this node's own publish included) costs at
//! most one read that finds nothing new.
//!
//! Per-device subscriptions, not one wildcard: a node then receives only the wake-ups of
//! devices connected to it, so the bus traffic each node handles grows with its own
//! connections, not with the whole deployment's sends. A device's subscription is a task
//! holding an async-nats `Subscriber`; it exists while the device has a connection on this
//! node (dropping the subscriber unsubscribes).

use super::delivery::mail_committed;
use super::*;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The subject prefix of wake-ups (spec/relay.md section 8.1).
pub const WAKE_SUBJECT_PREFIX: &str = "sealpost.wake.";
/// The domain-separation label of the subject hash (spec/relay.md section 8.1).
const WAKE_SUBJECT_LABEL: &[u8] = b"sealpost relay wake subject v1";
/// The version byte of the wake-up payload (spec/relay.md section 8.2).
pub const WAKE_VERSION: u8 = 1;
/// The length of a wake-up payload: version byte and server id (spec/relay.md section 8.2).
pub const WAKE_PAYLOAD_LEN: usize = 9;
/// Wake-ups waiting to be handed to the NATS client; more are dropped and counted (a
/// dropped wake-up delays, never loses, a message).
pub(super) const WAKE_PUBLISH_QUEUE: usize = 4096;
/// Wake-ups buffered per device subscription; more are dropped by the client (one is
/// enough to make the delivery read its mailbox).
pub(super) const WAKE_SUBSCRIPTION_CAPACITY: usize = 64;
/// How long an authentication waits for its device's subscription to be confirmed by the
/// NATS server before its delivery starts anyway (only while connected to NATS).
pub(super) const WAKE_SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);
/// While this node is not connected to NATS (and once more after it has reconnected), every
/// device connected to it has its mailbox read this often: wake-ups cannot reach the node
/// then, and the mailbox is the truth (spec/relay.md section 8.3).
pub const WAKE_FALLBACK_POLL: Duration = Duration::from_secs(1);

/// The subject of `device`'s wake-ups: [`WAKE_SUBJECT_PREFIX`] followed by the first 16
/// bytes, in lower-case hex, of SHA-256(label || u8 len(account) || account || u32 BE device).
/// The bus so never sees an account identifier (a phone number) in clear.
pub fn wake_subject(device: &DeviceAddress) -> String {
    let account = device.account.as_str().as_bytes();
    let mut h = Sha256::new();
    h.update(WAKE_SUBJECT_LABEL);
    // An account identifier is at most 64 bytes (sealpost-wire), so its length fits a byte.
    h.update([u8::try_from(account.len()).unwrap_or(u8::MAX)]);
    h.update(account);
    h.update(device.device.0.to_be_bytes());
    let digest: [u8; 32] = h.finalize().into();
    let (head, _) = digest.split_at(16);
    format!("{WAKE_SUBJECT_PREFIX}{}", hex::encode(head))
}

/// The payload of a wake-up: [`WAKE_VERSION`] || `up_to` as u64 big-endian.
pub fn wake_payload(up_to: u64) -> [u8; WAKE_PAYLOAD_LEN] {
    let mut p = [WAKE_VERSION; WAKE_PAYLOAD_LEN];
    let (_, id) = p.split_at_mut(1);
    id.copy_from_slice(&up_to.to_be_bytes());
    p
}

/// Parses a wake-up payload; `None` for any other length or version (ignored and counted).
pub fn parse_wake_payload(p: &[u8]) -> Option<u64> {
    let (&version, id) = p.split_first()?;
    let id: [u8; 8] = id.try_into().ok()?;
    (version == WAKE_VERSION && p.len() == WAKE_PAYLOAD_LEN).then(|| u64::from_be_bytes(id))
}

/// One device's subscription on this node.
struct Watch {
    task: AbortHandle,
    /// `true` once the NATS server has confirmed the subscription.
    ready: watch::Receiver<bool>,
}

/// This node's link to the deployment's NATS server.
pub(super) struct Wakeups {
    client: async_nats::Client,
    publish: mpsc::Sender<(DeviceAddress, u64)>,
    watches: Mutex<HashMap<DeviceAddress, Watch>>,
}

impl Wakeups {
    /// Connects to `url` in the background: the relay starts and serves while NATS is
    /// unreachable, and the client reconnects on its own. Returns the link and its publisher
    /// task.
    pub(super) async fn connect(url: &str) -> Result<(Arc<Self>, JoinHandle<()>), RelayError> {
        let options = async_nats::ConnectOptions::new()
            .name("sealpost-relay")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .subscription_capacity(WAKE_SUBSCRIPTION_CAPACITY)
            .event_callback(|event| async move {
                let name = match event {
                    async_nats::Event::Connected => "connected",
                    async_nats::Event::Disconnected => "disconnected",
                    async_nats::Event::Closed => "closed",
                    async_nats::Event::SlowConsumer(_) => "slow_consumer",
                    _ => "other",
                };
                tracing::warn!(event = name, "NATS connection event");
                metrics::nats_event(name);
            });
        let client = async_nats::connect_with_options(url, options)
            .await
            .map_err(|e| RelayError::Nats(crate::Cause::msg(e.kind().to_string())))?;
        let (tx, rx) = mpsc::channel(WAKE_PUBLISH_QUEUE);
        let publisher = publish_loop(client.clone(), rx);
        let task = tokio::spawn(publisher);
        Ok((
            Arc::new(Self {
                client,
                publish: tx,
                watches: Mutex::new(HashMap::new()),
            }),
            task,
        ))
    }

    /// Queues a wake-up for `device` (never blocks).
    pub(super) fn publish(&self, device: &DeviceAddress, up_to: u64) {
        if self.publish.try_send((device.clone(), up_to)).is_err() {
            metrics::wakeup_dropped("queue_full");
        }
    }

    /// Makes sure `device` has a subscription on this node and, while NATS is connected,
    /// waits (at most [`WAKE_SUBSCRIBE_WAIT`]) until the server has confirmed it, so that a
    /// delivery started afterwards misses no wake-up between its first read and the
    /// subscription.
    pub(super) async fn watch(&self, shared: &Arc<Shared>, device: &DeviceAddress) {
        let mut ready = self.ensure(shared, device);
        if self.client.connection_state() == async_nats::connection::State::Connected {
            let _ = tokio::time::timeout(WAKE_SUBSCRIBE_WAIT, ready.wait_for(|r| *r)).await;
        }
    }

    /// The device's subscription, started if missing.
    pub(super) fn ensure(
        &self,
        shared: &Arc<Shared>,
        device: &DeviceAddress,
    ) -> watch::Receiver<bool> {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = watches.get(device) {
            return w.ready.clone();
        }
        let (ready_tx, ready) = watch::channel(false);
        let task = shared.runtime.spawn(subscription(
            self.client.clone(),
            Arc::downgrade(shared),
            device.clone(),
            ready_tx,
        ));
        watches.insert(
            device.clone(),
            Watch {
                task: task.abort_handle(),
                ready: ready.clone(),
            },
        );
        ready
    }

    /// Drops the device's subscription if no connection of it is left on this node. Call
    /// after every removal from the registry.
    pub(super) fn sync(&self, shared: &Shared, device: &DeviceAddress) {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.registry.slot(device).is_none()
            && let Some(w) = watches.remove(device)
        {
            w.task.abort();
        }
    }

    /// The NATS client (for the fallback poll).
    pub(super) fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Device subscriptions held now.
    pub(super) fn subscriptions(&self) -> usize {
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        for (_, w) in self
            .watches
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            w.task.abort();
        }
    }
}

/// The fallback poll (spec/relay.md section 8.3): every [`WAKE_FALLBACK_POLL`], while the
/// NATS link is not connected, and once at the first tick after it has reconnected (the
/// wake-ups published meanwhile were lost), every delivery on this node reads its mailbox to
/// its end. Ends when the relay is gone. Only for stores without early delivery (several
/// nodes share only such a store; a store with early delivery is its node's alone).
pub(super) async fn fallback_poll(client: async_nats::Client, shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(WAKE_FALLBACK_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = false;
    loop {
        tick.tick().await;
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if connected && !owed {
            continue;
        }
        owed = !connected;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let slots = shared.registry.all();
        shared.wake_polls.fetch_add(1, Ordering::Relaxed);
        for slot in slots {
            // "Everything in the mailbox now is committed": without early delivery what a
            // read finds is committed, so a read to the end brings the delivery up to date.
            slot.update(|i| {
                i.committed = u64::MAX;
                i.dropped = u64::MAX;
            });
        }
    }
}

/// Hands queued wake-ups to the NATS client (which buffers them while reconnecting, up to
/// its own bound) until the relay drops its link.
async fn publish_loop(client: async_nats::Client, mut rx: mpsc::Receiver<(DeviceAddress, u64)>) {
    while let Some((device, up_to)) = rx.recv().await {
        let payload = wake_payload(up_to).to_vec();
        if client
            .publish(wake_subject(&device), payload.into())
            .await
            .is_err()
        {
            metrics::wakeup_dropped("client");
        }
    }
}

/// One device's subscription: every well-formed wake-up is a commit notice.
async fn subscription(
    client: async_nats::Client,
    shared: std::sync::Weak<Shared>,
    device: DeviceAddress,
    ready: watch::Sender<bool>,
) {
    let mut sub = match client.subscribe(wake_subject(&device)).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(error = %e, "NATS subscribe failed");
            return;
        }
    };
    // The server has processed the SUB once it answers the PING that follows it.
    if client.flush().await.is_ok() {
        let _ = ready.send(true);
    }
    while let Some(msg) = sub.next().await {
        let Some(up_to) = parse_wake_payload(&msg.payload) else {
            metrics::wakeup_received("malformed");
            continue;
        };
        metrics::wakeup_received("ok");
        let Some(shared) = shared.upgrade() else {
            return;
        };
        mail_committed(&shared, &device, up_to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_other_shapes() {
        let p = wake_payload(0x0102_0304_0506_0708);
        assert_eq!(p, [1, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parse_wake_payload(&p), Some(0x0102_0304_0506_0708));
        assert_eq!(parse_wake_payload(&p[..8]), None);
        assert_eq!(parse_wake_payload(&[p.as_slice(), &[0]].concat()), None);
        assert_eq!(parse_wake_payload(&[2, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(parse_wake_payload(&[]), None);
    }

    #[test]
    fn subject_hides_the_account_and_separates_devices() {
        let account = AccountId::new("+15550100".to_owned()).unwrap();
        let a = wake_subject(&DeviceAddress::new(account.clone(), DeviceId(1)));
        let b = wake_subject(&DeviceAddress::new(account, DeviceId(2)));
        assert!(a.starts_with(WAKE_SUBJECT_PREFIX));
        assert_eq!(a.len(), WAKE_SUBJECT_PREFIX.len() + 32);
        assert!(!a.contains("15550100"));
        // spec/relay.md section 8.1.
        assert_eq!(a, "sealpost.wake.eb1744595db8b615973ec55c63858615");
        assert_ne!(a, b);
    }
}
