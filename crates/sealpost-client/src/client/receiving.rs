//! The connection task: authentication, reconnection, prekey maintenance, pushes and their
//! acknowledgements.

use super::*;
use crate::error::{ConnectionError, ConnectionErrorKind};
use crate::state::ConnectFailure;

/// Uploads prekeys until nothing more is due (bounded rounds), tracking the relay's counts.
pub(super) async fn maintain_prekeys(
    shared: &Arc<Shared>,
    conn: &Connection,
) -> Result<(), ClientError> {
    let _serial = shared.prekey_lock.lock().await;
    for _ in 0..PREKEY_ROUNDS {
        let engine = shared.engine.clone();
        let counts = shared.prekey_counts();
        let now_s = now_ms() / 1000;
        let Some(upload) = blocking(move || engine.plan_prekeys(counts, now_s)).await? else {
            return Ok(());
        };
        let (one_time, kem) = (upload.one_time.len(), upload.kem.len());
        let stored = match conn.upload_prekeys(upload.clone()).await {
            Ok(stored) => {
                tracing::debug!(one_time, kem, "prekeys published");
                shared.set_prekey_counts(stored);
                true
            }
            Err(e) if !e.is_transient() => {
                // E.g. InvalidPreKey for a re-sent upload the relay had already stored
                // before the response was lost. Drop it so we do not loop; the next counts
                // tell whether more keys are needed.
                tracing::warn!(error = %e, "prekey upload rejected; discarded");
                false
            }
            Err(e) => return Err(e),
        };
        let engine = shared.engine.clone();
        blocking(move || engine.prekeys_uploaded(&upload)).await?;
        if !stored {
            return Ok(());
        }
    }
    Ok(())
}

async fn connect_and_authenticate(shared: &Arc<Shared>) -> Result<Connection, ClientError> {
    let conn = shared.transport.connect().await?;
    let engine = &shared.engine;
    let ((one_time, kem), queued, sender_seq) =
        conn.authenticate(&engine.identity, &engine.address).await?;
    tracing::debug!(queued, "authenticated to the relay");
    shared.set_prekey_counts((one_time, kem));
    // Before the connection is handed to the outbox task, so nothing is encrypted from a
    // rolled-back state on it (spec/client-store.md section 9).
    let engine = engine.clone();
    if let Some(ev) = blocking(move || engine.check_rollback(sender_seq)).await? {
        shared.emit(ev);
    }
    // A version-1 store upgrades here (spec/devices.md 8.5); a list not yet confirmed by
    // the relay is published again.
    if shared.publishes_list
        && let Err(e) = publish_own_list(shared, &conn).await
    {
        if e.is_connectivity() {
            return Err(e);
        }
        tracing::warn!(error = %e, "could not publish the device list");
    }
    Ok(conn)
}

/// The relay closed the connection because a new registration removed this device, or the
/// key holder unlinked it (application close codes 1 and 5, spec/relay.md section 1).
fn is_device_removed(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code == quinn::VarInt::from_u32(RELAY_CLOSE_DEVICE_REMOVED)
            || c.error_code == quinn::VarInt::from_u32(RELAY_CLOSE_DEVICE_UNLINKED))
}

/// The relay closed the connection because this device authenticated on a newer connection
/// (application close code 3, spec/relay.md section 3.4).
fn is_replaced(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code == quinn::VarInt::from_u32(RELAY_CLOSE_REPLACED))
}

/// Why an established connection ended, for [`ConnectionState::BackingOff`].
fn lost(conn: &Connection) -> ConnectFailure {
    if conn.given_up() {
        return ConnectFailure::Lost(ConnectionErrorKind::TimedOut);
    }
    ConnectFailure::Lost(conn.close_reason().map_or(ConnectionErrorKind::Other, |r| {
        ConnectionError::quic(r).kind()
    }))
}

pub(super) async fn connection_task(shared: Arc<Shared>, mut initial: Option<Connection>) {
    let mut backoff = BackoffState::new(shared.config.reconnect);
    let mut failures: u32 = 0;
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if shared.is_shutting_down() {
            break;
        }
        let attempt = match initial.take() {
            Some(c) => Ok(c),
            None => {
                shared.set_state(ConnectionState::Connecting);
                tokio::select! {
                    r = connect_and_authenticate(&shared) => r,
                    _ = shutdown.changed() => break,
                }
            }
        };
        let failure = match attempt {
            Ok(conn) => {
                backoff.reset();
                failures = 0;
                shared.conn.send_replace(Some(conn.clone()));
                shared.set_state(ConnectionState::Connected {
                    relay: conn.remote(),
                });
                shared.emit(ClientEvent::Connected);
                shared.outbox_wake.notify_one();
                {
                    let shared = shared.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        if let Err(e) = maintain_prekeys(&shared, &conn).await {
                            tracing::warn!(error = %e, "prekey maintenance failed");
                        }
                    });
                }
                run_pushes(&shared, &conn, &mut shutdown).await;
                shared.conn.send_replace(None);
                // A node that stopped answering (silent, idle timeout, requests timing out) is
                // likely gone: try the next address first. A reset or a close comes from a
                // live node (a restart resets old connections at once): stay with it.
                if conn.given_up()
                    || matches!(conn.close_reason(), Some(quinn::ConnectionError::TimedOut))
                {
                    shared.transport.connection_died(&conn);
                }
                if shared.is_shutting_down() {
                    conn.close(0, b"client shutdown");
                }
                shared.emit(ClientEvent::Disconnected);
                if conn.close_reason().is_some_and(|r| is_device_removed(&r)) {
                    tracing::error!(
                        "this device was removed from its account (re-registered or unlinked)"
                    );
                    shared.set_state(ConnectionState::Stopped(StopReason::Deregistered));
                    shared.emit(ClientEvent::Deregistered);
                    break;
                }
                if conn.close_reason().is_some_and(|r| is_replaced(&r)) {
                    tracing::error!(
                        "another copy of this device connected to the relay; not reconnecting"
                    );
                    shared.set_state(ConnectionState::Stopped(StopReason::Replaced));
                    shared.emit(ClientEvent::ReplacedByAnotherConnection);
                    break;
                }
                lost(&conn)
            }
            Err(e) if e.relay_code() == Some(ErrorCode::AuthFailed) => {
                tracing::error!("the relay does not know this device any more");
                shared.set_state(ConnectionState::Stopped(StopReason::Deregistered));
                shared.emit(ClientEvent::Deregistered);
                break;
            }
            Err(e) => {
                tracing::info!(error = %e, "connecting to the relay failed");
                ConnectFailure::of(&e)
            }
        };
        if shared.is_shutting_down() {
            break;
        }
        let next_attempt =
            tokio::time::Instant::now() + reconnect_delay(backoff.next_delay(), &failure);
        failures = failures.saturating_add(1);
        shared.set_state(ConnectionState::BackingOff {
            failure,
            failures,
            next_attempt,
        });
        tokio::select! {
            _ = tokio::time::sleep_until(next_attempt) => {}
            _ = shutdown.changed() => break,
        }
    }
    if shared.is_shutting_down() {
        shared.set_state(ConnectionState::Stopped(StopReason::ShutDown));
    }
}

/// How long to wait before the next connection attempt: the backoff's delay, or longer when
/// the relay refused with a `retry_after` (spec/relay.md section 6: a client waits at least
/// that long).
fn reconnect_delay(backoff: Duration, failure: &ConnectFailure) -> Duration {
    match failure {
        ConnectFailure::Rejected { retry_after, .. } if *retry_after > 0 => {
            backoff.max(Duration::from_secs(u64::from(*retry_after)))
        }
        _ => backoff,
    }
}

async fn flush_acks(conn: &Connection, acks: &mut Vec<u64>) {
    if acks.is_empty() {
        return;
    }
    let ids = std::mem::take(acks);
    if let Err(e) = conn.ack(ids).await {
        // Not acknowledged means delivered again later and de-duplicated then.
        tracing::debug!(error = %e, "ack failed");
    }
}

/// Reads pushes in stream order (a dedicated reader task, so that no push is lost to a
/// cancelled read) and processes them one at a time, so that messages reach the app in
/// delivery order. Returns when the connection ends or on shutdown.
async fn run_pushes(shared: &Arc<Shared>, conn: &Connection, shutdown: &mut watch::Receiver<bool>) {
    let (tx, mut pushes) = mpsc::channel(PUSH_QUEUE);
    let reader = {
        let conn = conn.clone();
        tokio::spawn(async move {
            loop {
                let (pushes, fatal) = match conn.accept_pushes().await {
                    Ok(pushes) => (pushes.into_iter().map(Ok).collect(), false),
                    Err(e) => {
                        let fatal = matches!(e, ClientError::Connection(_));
                        (vec![Err(e)], fatal)
                    }
                };
                for push in pushes {
                    if tx.send(push).await.is_err() {
                        return;
                    }
                }
                if fatal {
                    break;
                }
            }
        })
    };
    read_pushes(shared, conn, shutdown, &mut pushes).await;
    reader.abort();
}

async fn read_pushes(
    shared: &Arc<Shared>,
    conn: &Connection,
    shutdown: &mut watch::Receiver<bool>,
    pushes: &mut mpsc::Receiver<Result<Push, ClientError>>,
) {
    let mut acks: Vec<u64> = Vec::new();
    loop {
        let push = tokio::select! {
            p = pushes.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = tokio::time::sleep(ACK_DELAY), if !acks.is_empty() => {
                flush_acks(conn, &mut acks).await;
                continue;
            }
            _ = shutdown.changed() => {
                flush_acks(conn, &mut acks).await;
                return;
            }
        };
        match push {
            Ok(Push::Deliver(d)) => {
                let server_id = d.server_id;
                let from = d.sender.clone();
                let message_id = MessageId::from_bytes(d.message_id);
                let processed = match process(shared, conn, d).await {
                    Ok(p) => Ok(p),
                    Err(e) if e.is_connectivity() => {
                        // Not acknowledged: delivered again on the next connection.
                        tracing::debug!(error = %e, "connection lost while checking a sender");
                        flush_acks(conn, &mut acks).await;
                        return;
                    }
                    Err(e) => Err(e),
                };
                match processed {
                    Ok(Processed::Duplicate) => {}
                    Ok(Processed::Accepted(events)) => {
                        // Accepting a conversation route queued the transcript confirmation
                        // (spec/business.md 9.2).
                        if events
                            .iter()
                            .any(|e| matches!(e, ClientEvent::RouteChanged { .. }))
                        {
                            shared.outbox_wake.notify_one();
                        }
                        for ev in events {
                            shared.emit(ev);
                        }
                    }
                    Ok(Processed::Unlisted) => {
                        tracing::warn!("envelope from a device not on its account's list dropped");
                        shared.emit(ClientEvent::RejectedUnlistedDevice { from, message_id });
                    }
                    Ok(Processed::Rejected(why)) => {
                        tracing::warn!(reason = why, "undecryptable envelope dropped");
                        shared.emit(ClientEvent::Undecryptable { from, message_id });
                    }
                    Err(e) => {
                        // Not acknowledged: it comes again on the next connection. Drop this
                        // one so that later envelopes are not processed out of order.
                        tracing::error!(error = %e, "storing an incoming message failed");
                        flush_acks(conn, &mut acks).await;
                        conn.close(1, b"client store failure");
                        return;
                    }
                }
                acks.push(server_id);
                if acks.len() >= ACK_BATCH {
                    flush_acks(conn, &mut acks).await;
                }
            }
            Ok(Push::PreKeysLow {
                one_time_prekeys,
                kem_prekeys,
            }) => {
                shared.set_prekey_counts((one_time_prekeys, kem_prekeys));
                let shared = shared.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    if let Err(e) = maintain_prekeys(&shared, &conn).await {
                        tracing::warn!(error = %e, "prekey replenishment failed");
                    }
                });
            }
            Ok(Push::QueueDrained) => flush_acks(conn, &mut acks).await,
            // Only a connection that opened a provisioning address gets these; this one
            // never does.
            Ok(Push::Provisioning { .. }) => {
                tracing::warn!("unexpected provisioning push ignored");
            }
            Err(ClientError::Connection(e)) => {
                tracing::info!(error = %e, "relay connection ended");
                return;
            }
            Err(e) => {
                if conn.close_reason().is_some() {
                    return;
                }
                tracing::warn!(error = %e, "bad push stream ignored");
            }
        }
    }
}

/// Processes a delivery; one from a device not on its account's pinned list fetches the
/// list again (the device may just have been linked) and is processed once more.
async fn process(
    shared: &Arc<Shared>,
    conn: &Connection,
    d: sealpost_wire::relay::Delivery,
) -> Result<Processed, ClientError> {
    let d = Arc::new(d);
    let account = &d.sender.account;
    if !shared.list_fresh(account) && account != &shared.engine.address.account {
        // A sender not seen for a while: learn (or refresh) its account's list first, so
        // that a first message from a device the relay added is refused too, and the
        // author's name and role are the ones its account signs now (spec/devices.md 8.9).
        match current_list(shared, conn, account, false).await {
            Err(e) if e.is_connectivity() => return Err(e),
            Err(e) => tracing::debug!(error = %e, "sender's device list not fetched"),
            Ok(_) => {}
        }
    }
    let engine = shared.engine.clone();
    let first = {
        let d = d.clone();
        blocking(move || engine.process_delivery(&d, now_ms())).await?
    };
    if !matches!(first, Processed::Unlisted) {
        return Ok(first);
    }
    // This account's own list is refreshed as the own list (a sent copy from a device
    // linked since), never pinned like a contact's.
    let fetched = if d.sender.account == shared.engine.address.account {
        super::linking::refresh_own_list(shared, conn)
            .await
            .map(drop)
    } else {
        current_list(shared, conn, &d.sender.account, true)
            .await
            .map(drop)
    };
    match fetched {
        Err(e) if e.is_connectivity() => return Err(e),
        Err(e) => tracing::debug!(error = %e, "sender's device list not fetched"),
        Ok(_) => {}
    }
    let engine = shared.engine.clone();
    blocking(move || engine.process_delivery(&d, now_ms())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relays_retry_after_lengthens_the_backoff_never_shortens_it() {
        let rejected = |retry_after| ConnectFailure::Rejected {
            code: ErrorCode::RateLimited,
            retry_after,
        };
        let backoff = Duration::from_millis(1500);
        assert_eq!(reconnect_delay(backoff, &rejected(0)), backoff);
        assert_eq!(reconnect_delay(backoff, &rejected(1)), backoff);
        assert_eq!(
            reconnect_delay(backoff, &rejected(30)),
            Duration::from_secs(30)
        );
        assert_eq!(reconnect_delay(backoff, &ConnectFailure::Refused), backoff);
    }
}
