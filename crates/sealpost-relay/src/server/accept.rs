//! Accepting connections: limits, address validation (Retry), per-address slots, the
//! handshake and the per-connection loop that accepts request streams.

use super::refusals::Refusal;
use super::*;

/// Holds one slot of an IP address's connection allowance; released on drop.
pub(super) struct IpSlot {
    pub(super) shared: Arc<Shared>,
    pub(super) ip: IpAddr,
}

impl IpSlot {
    /// Whether `ip` has its whole allowance in use.
    pub(super) fn full(shared: &Shared, ip: IpAddr) -> bool {
        let map = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&ip)
            .is_some_and(|n| *n >= shared.max_connections_per_ip)
    }

    /// Takes a slot for `ip`, or `None` when the address is at its limit.
    pub(super) fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let mut map = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= shared.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

pub(super) async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        if *shutdown.borrow() {
            shared.refused(Refusal::ShuttingDown);
            incoming.refuse();
            continue;
        }
        if endpoint.open_connections() >= shared.max_connections {
            shared.refused(Refusal::ConnectionLimit);
            incoming.refuse();
            continue;
        }
        // Address validation (spec/relay.md section 1): when busy, a peer must first show
        // that it receives at its address (a Retry costs the relay no state).
        let validated = incoming.remote_address_validated();
        if !validated
            && incoming.may_retry()
            && endpoint.open_connections() >= shared.retry_threshold
        {
            match incoming.retry() {
                Ok(()) => {
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::retry_sent();
                }
                Err(e) => {
                    shared.refused(Refusal::RetryFailed);
                    e.into_incoming().refuse();
                }
            }
            continue;
        }
        // Per-address slots are taken only for validated addresses: here after a Retry,
        // otherwise once the handshake (which validates the address) is complete.
        let ip = incoming.remote_address().ip();
        let slot = if validated {
            let Some(slot) = IpSlot::take(&shared, ip) else {
                shared.refused(Refusal::AddressLimit);
                metrics::rate_limited("connections_per_ip");
                incoming.refuse();
                continue;
            };
            Some(slot)
        } else {
            if IpSlot::full(&shared, ip) {
                shared.refused(Refusal::AddressLimit);
                metrics::rate_limited("connections_per_ip");
                incoming.refuse();
                continue;
            }
            None
        };
        let shared = Arc::clone(&shared);
        // Boxed: the pending handshake is 384 bytes that the connection's task would
        // otherwise keep for its whole life (an idle connection's memory is the budget).
        tokio::spawn(serve_connection(Box::new(incoming), shared, slot));
    }
}

pub(super) struct ConnectionGauge;

impl ConnectionGauge {
    pub(super) fn new() -> Self {
        metrics::connections(1.0);
        Self
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::connections(-1.0);
    }
}

/// Completes a handshake. The box is freed when this returns: awaited directly in
/// [`serve_connection`], it would live (empty) as long as the connection.
pub(super) async fn handshake(
    incoming: Box<quinn::Incoming>,
) -> Result<Connection, quinn::ConnectionError> {
    (*incoming).await
}

pub(super) async fn serve_connection(
    incoming: Box<quinn::Incoming>,
    shared: Arc<Shared>,
    slot: Option<IpSlot>,
) {
    let conn = match handshake(incoming).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    // The completed handshake validated the address: now it counts.
    let _slot = match slot {
        Some(s) => s,
        None => {
            let Some(s) = IpSlot::take(&shared, conn.remote_address().ip()) else {
                shared.refused(Refusal::AddressLimit);
                metrics::rate_limited("connections_per_ip");
                conn.close(
                    VarInt::from_u32(CLOSE_ADDRESS_LIMIT),
                    b"too many connections from this address",
                );
                return;
            };
            s
        }
    };
    let _gauge = ConnectionGauge::new();
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let alpn_ok = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == sealpost_wire::relay::ALPN);
    let mut exporter = [0u8; 32];
    if !alpn_ok
        || conn
            .export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
            .is_err()
    {
        shared.refused(Refusal::Alpn);
        conn.close(
            VarInt::from_u32(CLOSE_PROTOCOL_VIOLATION),
            b"ALPN sealpost/1 required",
        );
        return;
    }
    tracing::debug!(conn = conn_id, remote = %conn.remote_address(), "connection open");
    let state = tokio::sync::Mutex::new(
        // The handshake is complete, so the peer's address is validated (RFC 9000 section
        // 8.1): per-source quotas count addresses that really answered.
        shared
            .handler
            .new_connection(conn_id, now_ms())
            .with_source(conn.remote_address().ip()),
    );
    let ctx = Arc::new(ConnCtx {
        conn_id,
        conn: conn.clone(),
        exporter,
        state,
        shared: Arc::clone(&shared),
        delivery: Mutex::new(None),
        open_requests: AtomicU32::new(0),
        budget: Semaphore::new(shared.budget.per_connection),
        authed: AtomicBool::new(false),
        authenticated: AtomicBool::new(false),
        full_allowance: AtomicBool::new(false),
        responder: Responder::default(),
    });
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = shutdown.changed() => break,
        };
        match stream {
            Ok((send, recv)) => {
                let guard = shared.in_flight.enter();
                tokio::spawn(serve_request(Arc::clone(&ctx), send, recv, guard));
            }
            Err(e) => {
                tracing::debug!(conn = conn_id, reason = %e, "connection closed");
                break;
            }
        }
    }
    // Wait for the connection to end (on shutdown the endpoint closes it), then clean up.
    conn.closed().await;
    ctx.stop_delivery();
    // An authenticated connection's end counts as its account being seen (registration lock,
    // spec/pin.md section 10). Waits for any request still holding the state.
    let state = ctx.state.lock().await;
    if state.authenticated().is_some() {
        let _guard = shared.in_flight.enter();
        // Boxed: the store's future is large, and awaited inline it would make every
        // connection's task that large for the connection's whole life (an idle
        // connection's memory is the budget), though it runs once, at the end.
        let closed = Box::pin(shared.handler.connection_closed(&state, now_ms()));
        if let Err(e) = closed.await {
            tracing::warn!(conn = conn_id, error = %e, "recording last_seen failed");
        }
    }
}

/// One connection's context, shared by its request tasks. One allocation for the
/// connection's life: what it holds is inline (an idle connection's memory is the budget).
pub(super) struct ConnCtx {
    pub(super) conn_id: u64,
    pub(super) conn: Connection,
    pub(super) exporter: [u8; 32],
    pub(super) state: tokio::sync::Mutex<ConnectionState>,
    pub(super) shared: Arc<Shared>,
    /// Once authenticated: the delivery's slot (also in the registry).
    pub(super) delivery: Mutex<Option<Arc<Slot>>>,
    /// Request streams being served.
    pub(super) open_requests: AtomicU32,
    /// This connection's request buffer (`limits.request_buffer_per_connection`).
    pub(super) budget: Semaphore,
    /// The connection is authenticated now (frames up to `MAX_FRAME_LEN`; before, up to
    /// `MAX_PRE_AUTH_FRAME`).
    pub(super) authed: AtomicBool,
    /// The connection has authenticated (it may get the full request-stream allowance).
    pub(super) authenticated: AtomicBool,
    /// The full allowance (`MAX_CONCURRENT_REQUESTS`) was granted.
    pub(super) full_allowance: AtomicBool,
    /// Writes the connection's finished responses.
    pub(super) responder: Responder,
}

impl ConnCtx {
    /// Counts a request stream; grants an authenticated connection the full request-stream
    /// allowance the first time it uses all of `AUTH_CONCURRENT_REQUESTS` (spec/relay.md
    /// section 1).
    /// quinn keeps state for every stream a peer may open, so connections that never
    /// pipeline requests (most idle apps) stay small.
    pub(super) fn request_opened(&self) -> RequestGuard<'_> {
        let open = self.open_requests.fetch_add(1, Ordering::AcqRel) + 1;
        if open >= AUTH_CONCURRENT_REQUESTS
            && self.authenticated.load(Ordering::Acquire)
            && !self.full_allowance.swap(true, Ordering::AcqRel)
        {
            self.conn
                .set_max_concurrent_bi_streams(VarInt::from_u32(MAX_CONCURRENT_REQUESTS));
        }
        RequestGuard(&self.open_requests)
    }
}

/// Uncounts a request stream when dropped.
pub(super) struct RequestGuard<'a>(&'a AtomicU32);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns (without calling it).
    fn future_size<A, B, C, F>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task holds its future for the connection's whole life, so the rarely
    /// used large awaits (the store's `connection_closed`) are boxed: inline it made the
    /// future 1968 bytes (1.9 KiB of every idle connection), boxed it is 424 (dev profile).
    #[test]
    fn an_idle_connections_task_stays_small() {
        let size = future_size(serve_connection);
        assert!(size <= 1024, "serve_connection's future is {size} bytes");
    }

    /// What an authenticated idle connection keeps of the relay's own, besides its task: the
    /// context (one allocation, its state and request buffer inline; they were three), the
    /// delivery slot, and the registry's entry (one pointer: the set is keyed by the slot's
    /// own device; it was a cloned address and a `Vec` of slots, one more string and one more
    /// allocation).
    #[test]
    fn an_idle_connections_state_stays_small() {
        let ctx = std::mem::size_of::<ConnCtx>();
        let slot = std::mem::size_of::<super::super::delivery::Slot>();
        let entry = super::super::delivery::Registry::ENTRY_BYTES;
        eprintln!("ConnCtx {ctx} bytes, Slot {slot} bytes, registry entry {entry} bytes");
        assert!(ctx <= 512, "ConnCtx is {ctx} bytes");
        assert!(slot <= 384, "Slot is {slot} bytes");
        assert_eq!(entry, std::mem::size_of::<usize>());
    }
}
