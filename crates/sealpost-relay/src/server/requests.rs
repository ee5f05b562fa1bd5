//! Request streams (spec/relay.md section 2): reading a frame within the request buffer,
//! handling it (under the connection's state, or from a snapshot for `Send` and `Ack`),
//! writing the response and carrying out its effects.

use super::*;

/// Time allowed to receive a complete request (prefix, body and end of stream).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed for a response or push to be acknowledged before the stream is dropped.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The buffer for request bodies (spec/relay.md section 2): a body's bytes are reserved,
/// as declared by its length prefix, from its connection's budget and then from the
/// relay-wide one before it is read, and released when the request has been handled.
pub(super) struct Budget {
    pub(super) global: Arc<Semaphore>,
    pub(super) capacity: usize,
    pub(super) per_connection: usize,
    /// Under pressure (more than half of `capacity` reserved), a body idle this long is
    /// abandoned.
    pub(super) stall: Duration,
    /// The most bytes reserved at once so far ([`RelayHandle::peak_buffered_request_bytes`]).
    pub(super) peak: AtomicUsize,
}

impl Budget {
    pub(super) fn in_use(&self) -> usize {
        self.capacity
            .saturating_sub(self.global.available_permits())
    }

    pub(super) fn under_pressure(&self) -> bool {
        self.in_use().saturating_mul(2) > self.capacity
    }
}

/// Bytes reserved for one request body; the gauge follows on drop.
pub(super) struct Reserved<'a> {
    pub(super) budget: &'a Budget,
    pub(super) _global: tokio::sync::OwnedSemaphorePermit,
    pub(super) _connection: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        // The permits are released after this body: count them out first.
        let n = self._global.num_permits();
        metrics::request_buffer(self.budget.in_use().saturating_sub(n));
    }
}

pub(super) enum ReadOutcome {
    Body(Vec<u8>),
    /// Answer with this error and stop reading.
    Refuse(Box<Response>),
    /// The peer reset the stream or the connection is gone.
    Gone,
    /// The body stalled while the request buffer was under pressure.
    Stalled,
}

/// Reads one request frame (spec/relay.md section 2): the length prefix is checked against
/// the connection's frame limit before anything else, the body's bytes are reserved in the
/// request buffer before it is read, and a body that stalls while the buffer is under
/// pressure is abandoned. The caller bounds the whole by `REQUEST_TIMEOUT`.
pub(super) async fn read_request(recv: &mut RecvStream, ctx: &ConnCtx) -> ReadOutcome {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return ReadOutcome::Refuse(Box::new(decode_error_response(&DecodeError::Truncated {
                offset: 0,
                needed: 4,
            })));
        }
        Err(quinn::ReadExactError::ReadError(_)) => return ReadOutcome::Gone,
    }
    let max = if ctx.authed.load(Ordering::Acquire) {
        MAX_FRAME_LEN
    } else {
        MAX_PRE_AUTH_FRAME
    };
    let len = match frame_len_within(prefix, max) {
        Ok(l) => l,
        Err(e) => return ReadOutcome::Refuse(Box::new(decode_error_response(&e))),
    };
    let budget = &ctx.shared.budget;
    if len > budget.per_connection {
        return ReadOutcome::Refuse(Box::new(Response::error(
            sealpost_wire::relay::ErrorCode::TooLarge,
            format!(
                "frame is {len} bytes, this relay buffers at most {}",
                budget.per_connection
            ),
        )));
    }
    // `len` fits both semaphores (checked above; the global one is at least as large).
    let n = u32::try_from(len).unwrap_or(u32::MAX);
    let Ok(connection) = ctx.budget.acquire_many(n).await else {
        return ReadOutcome::Gone;
    };
    let Ok(global) = Arc::clone(&budget.global).acquire_many_owned(n).await else {
        return ReadOutcome::Gone;
    };
    let in_use = budget.in_use();
    budget.peak.fetch_max(in_use, Ordering::Relaxed);
    metrics::request_buffer(in_use);
    let _reserved = Reserved {
        budget,
        _global: global,
        _connection: connection,
    };
    read_body(recv, len, budget).await
}

/// Reads `len` body bytes and the end of the stream.
pub(super) async fn read_body(recv: &mut RecvStream, len: usize, budget: &Budget) -> ReadOutcome {
    let mut body = Vec::with_capacity(len);
    let mut progress = tokio::time::Instant::now();
    loop {
        // One byte past a complete body: the end of the stream, or a protocol error.
        let want = (len - body.len()).max(1);
        match tokio::time::timeout(budget.stall, recv.read_chunk(want, true)).await {
            Ok(Ok(Some(chunk))) => {
                if body.len() == len {
                    return ReadOutcome::Refuse(Box::new(Response::error(
                        sealpost_wire::relay::ErrorCode::Malformed,
                        "bytes after the frame",
                    )));
                }
                body.extend_from_slice(&chunk.bytes);
                progress = tokio::time::Instant::now();
            }
            Ok(Ok(None)) if body.len() == len => return ReadOutcome::Body(body),
            Ok(Ok(None)) => {
                return ReadOutcome::Refuse(Box::new(decode_error_response(
                    &DecodeError::Truncated {
                        offset: body.len(),
                        needed: len - body.len(),
                    },
                )));
            }
            Ok(Err(_)) => return ReadOutcome::Gone,
            // Checked at least every `stall`: a body idle for `stall` or more while the
            // buffer is under pressure goes.
            Err(_) => {
                if budget.under_pressure() && progress.elapsed() >= budget.stall {
                    return ReadOutcome::Stalled;
                }
            }
        }
    }
}

pub(super) async fn write_frame(send: &mut SendStream, frame: &[u8]) -> bool {
    if send.write_all(frame).await.is_err() || send.finish().is_err() {
        return false;
    }
    // Wait until the peer has the whole frame, so a graceful shutdown loses no response.
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, send.stopped()).await,
        Ok(Ok(None))
    )
}

pub(super) async fn serve_request(
    ctx: Arc<ConnCtx>,
    mut send: SendStream,
    mut recv: RecvStream,
    _in_flight: InFlightGuard,
) {
    let _open = ctx.request_opened();
    let shared = Arc::clone(&ctx.shared);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut recv, &ctx));
    let body = match read.await {
        Ok(ReadOutcome::Body(b)) => b,
        Ok(ReadOutcome::Refuse(resp)) => {
            metrics::frame("malformed");
            let _ = recv.stop(VarInt::from_u32(STREAM_ABANDONED));
            write_frame(&mut send, &resp.encode()).await;
            return;
        }
        outcome @ (Ok(ReadOutcome::Gone | ReadOutcome::Stalled) | Err(_)) => {
            match outcome {
                Ok(ReadOutcome::Stalled) => metrics::request_abandoned("stalled"),
                Err(_) => metrics::request_abandoned("timeout"),
                _ => {}
            }
            let _ = recv.stop(VarInt::from_u32(STREAM_ABANDONED));
            let _ = send.reset(VarInt::from_u32(STREAM_ABANDONED));
            return;
        }
    };
    // `server_id`s in an `Ack` are this connection's (see `Slot::deliver_push`).
    let body = if body.get(1) == Some(&0x21) {
        ctx.translate_ack(body)
    } else {
        body
    };
    let handler = Arc::clone(&shared.handler);
    let exporter = ctx.exporter;
    // `Send` and `Ack` (types 0x20, 0x21) only read the authenticated device: run them from a
    // snapshot, without holding the connection's state, so a client's pipelined sends share
    // the store's group commit instead of queueing for one fsync each.
    if matches!(body.get(1), Some(0x20 | 0x21)) {
        let snap = ctx.state.lock().await.snapshot();
        if let Some((response, effects)) = handler.handle_send_or_ack(&snap, &body, now_ms()).await
        {
            let answer = Answer::new(response, effects, snap.authenticated().cloned());
            finish_request(&ctx, send, answer).await;
            return;
        }
    }
    let answer = {
        let mut state = ctx.state.lock().await;
        // Boxed: registration, prekeys and the vault hold larger futures than the
        // `Send`/`Ack` path above, and every request's task would otherwise carry them.
        let (response, effects) =
            Box::pin(handler.handle_frame(&mut state, exporter, &body, now_ms())).await;
        Answer::new(response, effects, state.authenticated().cloned())
    };
    finish_request(&ctx, send, answer).await;
}

/// What handling a request produced.
pub(super) struct Answer {
    pub(super) response: Response,
    pub(super) effects: Vec<Effect>,
    /// The connection's device after the request.
    pub(super) device: Option<DeviceAddress>,
    /// `response`, encoded.
    pub(super) frame: Vec<u8>,
}

impl Answer {
    pub(super) fn new(
        response: Response,
        effects: Vec<Effect>,
        device: Option<DeviceAddress>,
    ) -> Self {
        let frame = response.encode();
        Self {
            response,
            effects,
            device,
            frame,
        }
    }
}

/// Carries out a request's effects and writes (the rest of) its response.
pub(super) async fn finish_request(ctx: &ConnCtx, send: SendStream, answer: Answer) {
    let Answer {
        response,
        effects,
        device,
        frame,
    } = answer;
    if device.is_none() {
        ctx.authed.store(false, Ordering::Release);
        ctx.stop_delivery();
    }
    super::provisioning::apply(&ctx.shared, &ctx.conn, &effects);
    apply_effects(&ctx.shared, ctx.conn_id, effects);
    match (&device, &response) {
        (Some(d), Response::Authenticated { .. }) => {
            // Boxed: once per connection, and every request's task would otherwise carry it.
            Box::pin(authenticated(ctx, send, d, &frame)).await;
        }
        _ => {
            ctx.responder.respond(send, frame).await;
        }
    }
}

/// Answers `Authenticated` on a connection and starts its delivery.
async fn authenticated(ctx: &ConnCtx, mut send: SendStream, d: &DeviceAddress, frame: &[u8]) {
    // Larger frames from now on: set before the client can learn it is authenticated.
    ctx.authed.store(true, Ordering::Release);
    // The authenticated allowance (spec/relay.md section 1), once per connection;
    // request_opened grants the full one when it is all in use.
    if !ctx.authenticated.swap(true, Ordering::AcqRel) {
        ctx.conn
            .set_max_concurrent_bi_streams(VarInt::from_u32(AUTH_CONCURRENT_REQUESTS));
    }
    // Subscribed to the device's wake-ups from other nodes before the delivery's first
    // read (spec/relay.md section 8.3), and before the client hears it is authenticated.
    ctx.shared.wake_watch(d).await;
    // Response first, so the client knows it is authenticated before pushes arrive.
    if send.write_all(frame).await.is_ok() && send.finish().is_ok() {
        ctx.start_delivery(d.clone());
        let _ = tokio::time::timeout(WRITE_TIMEOUT, send.stopped()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns (without calling it).
    fn future_size<A, B, C, D, F>(_: impl Fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request is a task of its own, allocated and moved into place at spawn: the
    /// rarely taken large awaits (registration, prekeys, the vault, `Authenticated`, and
    /// PostgreSQL's futures in `AnyStore`) are boxed so a `Send` or an `Ack` does not carry
    /// them. Inline they made the future 4,816 bytes (release); now it is about 1.8 KiB.
    #[test]
    fn a_requests_task_stays_small() {
        let size = future_size(serve_request);
        eprintln!("serve_request's future: {size} bytes");
        assert!(size <= 2560, "serve_request's future is {size} bytes");
    }
}
