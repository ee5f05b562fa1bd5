//! Delivery (spec/relay.md section 4): the per-device registry of authenticated
//! connections, their delivery slots and the delivery loop that pushes mailboxes.
//!
//! A delivery learns about mail from two inputs (see the `store` module documentation):
//! **commit notices** ([`mail_committed`]: a local `Send` committed, or, with several relay
//! nodes, a wake-up from another node, which carries the same "committed up to this id for
//! this device"), after which it reads the mailbox; and, when the store has early delivery,
//! the store's **mail feed** ([`dispatch_feed`]), whose envelopes an up-to-date delivery
//! pushes at once, before their commit is durable.

use super::*;
use std::collections::HashSet;

/// A push stream is closed once its frames pass this size (a larger single frame goes alone);
/// below `MAX_PUSH_STREAM_LEN` (spec/relay.md section 1).
pub(super) const PUSH_BATCH_BYTES: usize = 64 * 1024;

/// How long a delivery task with nothing to do waits for the next update before it ends:
/// long enough that a device receiving a steady stream keeps its task, short enough that
/// idle connections keep none.
pub(super) const DELIVERY_LINGER: Duration = Duration::from_millis(200);

/// What an authenticated connection's delivery is told by requests (commit notices, acks,
/// prekey warnings) and by the mail feed ([`Slot::update`]); taken as a whole by the
/// delivery.
#[derive(Default)]
pub(super) struct Inbox {
    /// Highest server id committed for the device since the delivery last looked (0: none).
    pub(super) committed: u64,
    /// Envelopes written for the device whose commit may still be under way, in server-id
    /// order; at most `DELIVERY_WINDOW`.
    pub(super) staged: Vec<StoredEnvelope>,
    /// Highest server id of an envelope that exists for the device but is not in `staged`
    /// (0: none): `staged` was full, or the store has no early delivery and this is a commit
    /// notice. The delivery reads its mailbox up to there.
    pub(super) dropped: u64,
    pub(super) acked: Vec<u64>,
    pub(super) prekeys_low: Option<(u32, u32)>,
}

impl Inbox {
    pub(super) fn is_empty(&self) -> bool {
        self.committed == 0
            && self.staged.is_empty()
            && self.dropped == 0
            && self.acked.is_empty()
            && self.prekeys_low.is_none()
    }
}

/// Where a delivery stands between two runs of its task (see [`delivery_loop`]).
#[derive(Default)]
pub(super) struct Progress {
    /// The first run has waited for the writes queued before the slot was registered.
    pub(super) started: bool,
    /// Highest server id pushed on this connection (or read past).
    pub(super) last: u64,
    /// Pushed and not yet acknowledged.
    pub(super) in_flight: BTreeSet<u64>,
    /// `QueueDrained` was pushed.
    pub(super) drained: bool,
    pub(super) up_to_date: bool,
    /// Highest server id known to be committed.
    pub(super) committed: u64,
    /// Highest staged server id not pushed.
    pub(super) missed: u64,
}

#[derive(Default)]
pub(super) struct SlotState {
    pub(super) inbox: Inbox,
    /// The device was removed or the connection stopped delivering: no more runs.
    pub(super) removed: bool,
    /// Kept here while no run is under way.
    pub(super) progress: Progress,
    /// The running delivery task, if any.
    pub(super) task: Option<AbortHandle>,
    /// The `server_id`s of this connection's pushed, unacknowledged envelopes (random, so
    /// that they tell the recipient nothing about the relay's traffic; spec/relay.md
    /// section 4) and the store's ids they stand for. At most about `DELIVERY_WINDOW`.
    pub(super) wire_ids: HashMap<u64, u64>,
}

/// An authenticated connection's delivery (spec/relay.md section 4). Its task runs only
/// while there is something to do: it ends when the connection is up to date and its inbox
/// has stayed empty for `DELIVERY_LINGER`, and the next [`Slot::update`] starts a new one.
/// An idle connection so keeps this slot and no task.
pub(super) struct Slot {
    pub(super) conn_id: u64,
    pub(super) conn: Connection,
    pub(super) device: DeviceAddress,
    pub(super) shared: Arc<Shared>,
    pub(super) state: Mutex<SlotState>,
    /// Wakes a running task that waits for its next update.
    pub(super) wake: Notify,
}

impl Slot {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the delivery something (`f` changes its inbox) and starts its task unless one
    /// is running. Never blocks (callable from any task).
    pub(super) fn update(self: &Arc<Self>, f: impl FnOnce(&mut Inbox)) {
        let mut state = self.lock();
        f(&mut state.inbox);
        if state.task.is_some() {
            self.wake.notify_one();
        } else if !state.removed {
            // Counted from here, not from the task's first poll: a run spawned is a run
            // under way (`RelayHandle::delivery_tasks`).
            let running = Running::new(&self.shared);
            let task = self
                .shared
                .runtime
                .spawn(deliver(Arc::clone(self), running));
            state.task = Some(task.abort_handle());
        }
    }

    /// The `Deliver` push of `e`, under a fresh random `server_id` for this connection.
    pub(super) fn deliver_push(&self, e: StoredEnvelope) -> Push {
        let mut state = self.lock();
        let wire = loop {
            let mut b = [0u8; 8];
            rand::fill(&mut b);
            let id = u64::from_be_bytes(b);
            if id != 0 && !state.wire_ids.contains_key(&id) {
                break id;
            }
        };
        state.wire_ids.insert(wire, e.server_id);
        Push::Deliver(Delivery {
            server_id: wire,
            sender: e.sender,
            message_id: e.message_id,
            timestamp: e.timestamp,
            envelope: e.envelope,
        })
    }

    /// The store's ids of the envelopes acknowledged by `wire` ids pushed on this
    /// connection; ids this connection did not push (or already translated) are dropped.
    pub(super) fn take_acked(&self, wire: &[u64]) -> Vec<u64> {
        let mut state = self.lock();
        wire.iter()
            .filter_map(|w| state.wire_ids.remove(w))
            .collect()
    }

    /// Stops the delivery for good (its device was removed, or the connection is closing
    /// or no longer authenticated).
    pub(super) fn remove(&self) {
        let mut state = self.lock();
        state.removed = true;
        if let Some(task) = state.task.take() {
            task.abort();
        }
    }
}

/// Authenticated connections by device: one per device (a newer authentication replaces the
/// older connection, which is closed). The slots are the set's entries, found by their
/// device: an entry is one pointer, the key is the slot's own `device` (an idle connection's
/// memory is the budget: a map from a cloned address to a `Vec` of slots cost one more
/// string and one more allocation per device).
#[derive(Default)]
pub(super) struct Registry {
    map: Mutex<HashSet<ByDevice>>,
}

/// A registered slot, hashed and compared by its device (as [`DeviceAddress`] itself is, so
/// the set is searched by address).
struct ByDevice(Arc<Slot>);

impl std::borrow::Borrow<DeviceAddress> for ByDevice {
    fn borrow(&self) -> &DeviceAddress {
        &self.0.device
    }
}

impl std::hash::Hash for ByDevice {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.device.hash(state);
    }
}

impl PartialEq for ByDevice {
    fn eq(&self, other: &Self) -> bool {
        self.0.device == other.0.device
    }
}

impl Eq for ByDevice {}

impl Registry {
    /// The bytes of one entry of the set (one pointer), for the size test.
    #[cfg(test)]
    pub(super) const ENTRY_BYTES: usize = std::mem::size_of::<ByDevice>();

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ByDevice>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The device's connection here, if it has one.
    pub(super) fn slot(&self, device: &DeviceAddress) -> Option<Arc<Slot>> {
        self.lock().get(device).map(|s| Arc::clone(&s.0))
    }

    /// Every registered connection.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(super) fn all(&self) -> Vec<Arc<Slot>> {
        self.lock().iter().map(|s| Arc::clone(&s.0)).collect()
    }

    /// Makes `slot` the device's only connection; returns the one it replaces (spec/relay.md
    /// section 3.4: the newest authentication wins).
    pub(super) fn replace(&self, slot: Arc<Slot>) -> Option<Arc<Slot>> {
        self.lock().replace(ByDevice(slot)).map(|old| old.0)
    }

    /// Removes the device's slot if it is connection `conn_id`'s.
    pub(super) fn remove(&self, device: &DeviceAddress, conn_id: u64) {
        let mut map = self.lock();
        if map.get(device).is_some_and(|s| s.0.conn_id == conn_id) {
            map.remove(device);
        }
    }

    pub(super) fn take_device(&self, device: &DeviceAddress) -> Option<Arc<Slot>> {
        self.lock().take(device).map(|s| s.0)
    }
}

impl ConnCtx {
    pub(super) fn start_delivery(&self, device: DeviceAddress) {
        let mut d = self.delivery.lock().unwrap_or_else(PoisonError::into_inner);
        if d.is_some() {
            return;
        }
        let slot = Arc::new(Slot {
            conn_id: self.conn_id,
            conn: self.conn.clone(),
            device,
            shared: Arc::clone(&self.shared),
            state: Mutex::new(SlotState::default()),
            wake: Notify::new(),
        });
        if let Some(old) = self.shared.registry.replace(Arc::clone(&slot))
            && old.conn_id != self.conn_id
        {
            old.remove();
            metrics::connection_replaced();
            old.conn.close(
                VarInt::from_u32(CLOSE_REPLACED),
                b"the device authenticated on a newer connection",
            );
        }
        // Kept while a connection of the device is registered here (a removal racing with
        // this registration may have dropped the subscription `wake_watch` made).
        self.shared.wake_ensure(&slot.device);
        // The first run reads the mailbox.
        slot.update(|_| {});
        *d = Some(slot);
    }

    /// An `Ack` body with the store's ids for this connection's `server_id`s (spec/relay.md
    /// section 3.8). A body that does not decode, or a connection without a delivery, is
    /// left to the handler (which answers it with the error it deserves).
    pub(super) fn translate_ack(&self, body: Vec<u8>) -> Vec<u8> {
        let Ok(Request::Ack { server_ids }) = Request::decode(&body) else {
            return body;
        };
        let slot = self
            .delivery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(slot) = slot else { return body };
        let server_ids = slot.take_acked(&server_ids);
        let mut frame = Request::Ack { server_ids }.encode();
        frame.drain(..4);
        frame
    }

    pub(super) fn stop_delivery(&self) {
        let taken = self
            .delivery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(slot) = taken {
            slot.remove();
            self.shared.registry.remove(&slot.device, self.conn_id);
            self.shared.wake_sync(&slot.device);
        }
    }
}

pub(super) fn apply_effects(shared: &Shared, conn_id: u64, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::MailArrived { device, up_to } => {
                mail_committed(shared, &device, up_to);
                shared.wake_publish(&device, up_to);
            }
            Effect::PreKeysLow {
                device,
                one_time_prekeys,
                kem_prekeys,
            } => {
                if let Some(slot) = shared.registry.slot(&device) {
                    slot.update(|i| i.prekeys_low = Some((one_time_prekeys, kem_prekeys)));
                }
            }
            Effect::Acked { device, server_ids } => {
                if let Some(slot) = shared.registry.slot(&device) {
                    slot.update(|i| i.acked.extend_from_slice(&server_ids));
                }
            }
            Effect::DevicesRemoved { account, devices } => {
                close_removed(
                    shared,
                    conn_id,
                    &account,
                    &devices,
                    (
                        CLOSE_DEVICE_REMOVED,
                        b"device removed by a new registration",
                    ),
                );
            }
            Effect::DevicesUnlisted { account, devices } => {
                close_removed(
                    shared,
                    conn_id,
                    &account,
                    &devices,
                    (
                        CLOSE_DEVICE_UNLISTED,
                        b"device removed from the device list",
                    ),
                );
            }
            // `Effect` is non-exhaustive only for other crates.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// A commit notice: envelopes up to server id `up_to` are committed for `device`. A local
/// `Send` gives one once its commit is durable; a wake-up from another relay node is the same
/// notice. Without early delivery the notice itself marks the mail as missed, so the
/// delivery reads its mailbox; with it, the envelopes also come through the feed, and the
/// notice only tells a delivery that missed some of them that a read now finds them.
pub(super) fn mail_committed(shared: &Shared, device: &DeviceAddress, up_to: u64) {
    let early = shared.early_delivery;
    if let Some(slot) = shared.registry.slot(device) {
        slot.update(|i| {
            i.committed = i.committed.max(up_to);
            if !early {
                i.dropped = i.dropped.max(up_to);
            }
        });
    }
}

/// Routes the store's mail feed to the deliveries of the devices it addresses, batch by
/// batch in the order the store wrote them, so each delivery's inbox gets its device's
/// envelopes in increasing server-id order. Ends when the store closes.
pub(super) async fn dispatch_feed(shared: Arc<Shared>, mut feed: MailFeed) {
    while let Some(batch) = feed.recv().await {
        for Written {
            recipient,
            envelopes,
        } in batch
        {
            for (device_id, envelope) in envelopes {
                let device = DeviceAddress::new(recipient.clone(), DeviceId(device_id));
                stage(&shared, &device, envelope);
            }
        }
    }
}

/// Hands a written (possibly not yet durable) envelope to the device's deliveries.
fn stage(shared: &Shared, device: &DeviceAddress, envelope: StoredEnvelope) {
    if let Some(slot) = shared.registry.slot(device) {
        slot.update(|i| {
            if i.staged.len() < DELIVERY_WINDOW {
                i.staged.push(envelope);
            } else {
                i.dropped = i.dropped.max(envelope.server_id);
            }
        });
    }
}

/// Closes the connections of removed `devices` with `close` (code and reason), except
/// `conn_id`, the connection whose request removed them.
pub(super) fn close_removed(
    shared: &Shared,
    conn_id: u64,
    account: &AccountId,
    devices: &[u32],
    close: (u32, &'static [u8]),
) {
    for id in devices {
        let device = DeviceAddress::new(account.clone(), DeviceId(*id));
        if let Some(slot) = shared.registry.take_device(&device) {
            slot.remove();
            // The registering connection itself stays open (it gets its response); other
            // connections of removed devices are closed.
            if slot.conn_id != conn_id {
                slot.conn.close(VarInt::from_u32(close.0), close.1);
            }
        }
        shared.wake_sync(&device);
    }
}

/// Push frames gathered for one unidirectional stream (spec/relay.md section 1: a push
/// stream carries one or more frames back to back). One stream per batch instead of per
/// envelope saves the per-stream work on both ends.
pub(super) struct PushBatch<'a> {
    pub(super) frames: Vec<u8>,
    /// Counts the pushes added (`Shared::pushes`).
    counter: &'a AtomicU64,
}

impl<'a> PushBatch<'a> {
    pub(super) fn new(counter: &'a AtomicU64) -> Self {
        Self {
            frames: Vec::new(),
            counter,
        }
    }

    /// Adds a push; first sends what is gathered if the stream would pass
    /// `PUSH_BATCH_BYTES`. `false` if the connection is gone.
    pub(super) async fn add(&mut self, conn: &Connection, push: &Push) -> bool {
        self.counter.fetch_add(1, Ordering::Relaxed);
        let frame = push.encode();
        if !self.frames.is_empty()
            && self.frames.len() + frame.len() > PUSH_BATCH_BYTES
            && !self.send(conn).await
        {
            return false;
        }
        self.frames.extend_from_slice(&frame);
        true
    }

    /// Sends the gathered pushes on one stream. `false` if the connection is gone.
    pub(super) async fn send(&mut self, conn: &Connection) -> bool {
        if self.frames.is_empty() {
            return true;
        }
        let frames = std::mem::take(&mut self.frames);
        let Ok(mut stream) = conn.open_uni().await else {
            return false;
        };
        if stream.write_all(&frames).await.is_err() {
            return false;
        }
        stream.finish().is_ok()
    }
}

/// Counts a delivery task in `Shared::delivery_tasks` from its spawn until it ends (also
/// when aborted, before or after its first poll).
pub(super) struct Running(Arc<Shared>);

impl Running {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.delivery_tasks.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Release: whoever sees the task gone (`RelayHandle::delivery_tasks`) sees its
        // pushes counted.
        self.0.delivery_tasks.fetch_sub(1, Ordering::Release);
    }
}

/// One run of a slot's delivery task.
pub(super) async fn deliver(slot: Arc<Slot>, _running: Running) {
    let conn = slot.conn.clone();
    tokio::select! {
        () = delivery_loop(&slot) => {}
        _ = conn.closed() => {}
    }
}

/// Delivers the slot's device's mailbox on its connection (spec/relay.md section 4): reads
/// it from the store oldest first, then, once up to date, pushes envelopes as the mail feed
/// brings them, before their commit is flushed. Returns, keeping its [`Progress`] in the
/// slot, when it has nothing left to do until the next [`Slot::update`]; returns for good
/// when the connection is gone or the slot removed.
///
/// Being *up to date* means: the last mailbox read reached the end of the mailbox, and every
/// staged envelope that was not pushed (because the delivery was not up to date, or the
/// window or the staging buffer was full) had been committed before that read started. Only
/// then can a staged envelope be pushed directly: no lower server id can still be missing.
/// This holds because the feed brings each device's envelopes in id order
/// ([`dispatch_feed`] keeps it), every envelope routed after this connection's slot was
/// registered reaches its inbox (kept or counted as dropped), and the first read waits until
/// every envelope published before that is committed ([`Store::settled`]). Commit notices
/// ([`mail_committed`], given once a commit is durable) tell which missed envelopes a read
/// would now find; without early delivery they are the only input, and every notice makes
/// the delivery read.
pub(super) async fn delivery_loop(slot: &Slot) {
    let mut p = std::mem::take(&mut slot.lock().progress);
    if !p.started {
        if let Err(e) = slot.shared.store.settled().await {
            tracing::warn!(error = %e, "waiting for published envelopes to commit failed");
        }
        p.started = true;
    }
    let mut pushes = PushBatch::new(&slot.shared.pushes);
    // Taken after the first run's wait for queued writes.
    let mut inbox = std::mem::take(&mut slot.lock().inbox);
    loop {
        let Inbox {
            committed: new_commit,
            staged,
            dropped,
            acked,
            prekeys_low,
        } = inbox;
        for id in acked {
            p.in_flight.remove(&id);
        }
        if let Some((one_time_prekeys, kem_prekeys)) = prekeys_low {
            let push = Push::PreKeysLow {
                one_time_prekeys,
                kem_prekeys,
            };
            if !pushes.add(&slot.conn, &push).await {
                return;
            }
        }
        p.committed = p.committed.max(new_commit);
        if dropped > p.last {
            p.missed = p.missed.max(dropped);
            p.up_to_date = false;
        }
        for e in staged {
            if e.server_id <= p.last {
                continue;
            }
            if p.up_to_date && p.in_flight.len() < DELIVERY_WINDOW {
                let id = e.server_id;
                if !pushes.add(&slot.conn, &slot.deliver_push(e)).await {
                    return;
                }
                p.in_flight.insert(id);
                p.last = id;
            } else {
                p.missed = p.missed.max(e.server_id);
                p.up_to_date = false;
            }
        }
        let room = DELIVERY_WINDOW.saturating_sub(p.in_flight.len());
        if room > 0 && !p.up_to_date {
            // What is gathered goes out before the read.
            if !pushes.send(&slot.conn).await {
                return;
            }
            // Every missed envelope is committed (or its commit failed) before this read
            // starts: a read to the end then brings the delivery up to date.
            let complete = p.committed >= p.missed;
            let batch = match slot.shared.store.mailbox(&slot.device, p.last, room).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading a mailbox failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    inbox = std::mem::take(&mut slot.lock().inbox);
                    continue;
                }
            };
            let reached_end = batch.len() < room;
            for e in batch {
                let id = e.server_id;
                if !pushes.add(&slot.conn, &slot.deliver_push(e)).await {
                    return;
                }
                p.in_flight.insert(id);
                p.last = p.last.max(id);
            }
            p.up_to_date = reached_end && complete;
            if reached_end && !p.drained {
                if !pushes.add(&slot.conn, &Push::QueueDrained).await {
                    return;
                }
                p.drained = true;
            }
        }
        if !pushes.send(&slot.conn).await {
            return;
        }
        // Wait for the next update, but not long: a busy device keeps its task, an idle one
        // ends the run (the next update starts another). Checked under the lock that updates
        // take, so no update is missed.
        let mut waited = false;
        inbox = loop {
            {
                let mut state = slot.lock();
                if state.removed {
                    return;
                }
                if !state.inbox.is_empty() {
                    break std::mem::take(&mut state.inbox);
                }
                if waited {
                    state.progress = p;
                    state.task = None;
                    return;
                }
            }
            waited = tokio::time::timeout(DELIVERY_LINGER, slot.wake.notified())
                .await
                .is_err();
        };
    }
}
