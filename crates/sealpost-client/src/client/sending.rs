//! The outbox task: sending queued messages, retries, and the sessions and device lists
//! they need.

use super::linking::refresh_own_list;
use super::*;
use crate::content::is_internal;
use sealpost_wire::devices::RoleFamily;

/// Why a round of the send loop ended.
enum Drained {
    /// The outbox is empty.
    Empty,
    /// Every message left waits for its recipient's retry time (the earliest is given).
    Waiting(tokio::time::Instant),
    /// The connection failed, the relay asked this device to slow down, or the relay cannot
    /// reach its storage: everything waits.
    Stall(Stall),
}

/// Why the whole outbox stopped draining.
#[derive(Debug, PartialEq, Eq)]
enum Stall {
    /// Retry after this long (the relay said so).
    After(Duration),
    /// Retry with backoff.
    Backoff,
}

pub(super) async fn outbox_task(shared: Arc<Shared>) {
    let mut conn_rx = shared.conn.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = BackoffState::new(shared.config.reconnect);
    let mut retries = Retries::default();
    loop {
        if shared.is_shutting_down() {
            return;
        }
        let current = conn_rx.borrow_and_update().clone();
        let Some(conn) = current else {
            tokio::select! {
                r = conn_rx.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        };
        let drained = tokio::select! {
            r = drain_outbox(&shared, &conn, &mut retries) => r,
            _ = shutdown.changed() => return,
        };
        let delay = match drained {
            Drained::Empty | Drained::Waiting(_) => {
                backoff.reset();
                let until = match drained {
                    Drained::Waiting(at) => Some(at),
                    _ => None,
                };
                tokio::select! {
                    _ = shared.outbox_wake.notified() => {}
                    _ = tokio::time::sleep_until(until.unwrap_or_else(tokio::time::Instant::now)), if until.is_some() => {}
                    r = conn_rx.changed() => if r.is_err() { return },
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            Drained::Stall(Stall::After(d)) => d,
            Drained::Stall(Stall::Backoff) => backoff.next_delay(),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Ends an outgoing message for good: out of the outbox, history failed, `SendFailed`.
async fn give_up(
    shared: &Arc<Shared>,
    entry: crate::store::OutboxEntry,
    error: ClientError,
) -> Result<(), ClientError> {
    let message_id = entry.message_id;
    let internal = is_internal(&entry.content);
    let engine = shared.engine.clone();
    blocking(move || engine.fail(&entry, now_ms())).await?;
    if internal {
        // The app never saw the id of a sent copy, a sync content or a history part (for a
        // copy, the message itself was delivered).
        tracing::warn!(error = %error, "sent copy, sync or history part could not be sent to this account's other devices; dropped");
    } else {
        tracing::warn!(error = %error, "message could not be sent; giving up");
        shared.emit(ClientEvent::SendFailed { message_id, error });
    }
    Ok(())
}

/// One or more rounds over the outbox (spec/client-store.md section 10). Each round reads the
/// first [`OUTBOX_SCAN_LIMIT`] entries in order and walks them: an entry is tried only if
/// every earlier entry to the same recipient left the outbox in this round and the
/// recipient is not waiting for a retry, so that order is kept per recipient and one
/// recipient never holds up another. A permanent error ends the message at once; a
/// transient one makes its recipient wait (bounded attempts, backoff); a connection
/// failure or the relay's `RateLimited` stops the whole loop. Rounds repeat while they make
/// progress.
async fn drain_outbox(shared: &Arc<Shared>, conn: &Connection, retries: &mut Retries) -> Drained {
    loop {
        let engine = shared.engine.clone();
        let scan = match blocking(move || engine.outbox_scan(OUTBOX_SCAN_LIMIT)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return Drained::Stall(Stall::Backoff);
            }
        };
        if scan.is_empty() {
            return Drained::Empty;
        }
        let mut progressed = false;
        let mut held = false;
        let mut blocked: HashSet<AccountId> = HashSet::new();
        for (seq, entry) in scan {
            let entry = match entry {
                Ok(e) => e,
                Err(error) if error.is_permanent() => {
                    // Its message id and recipient are unknowable: drop the row, report it.
                    tracing::error!(error = %error, "unreadable outbox entry dropped");
                    let engine = shared.engine.clone();
                    if let Err(e) = blocking(move || engine.drop_outbox_row(seq)).await {
                        tracing::error!(error = %e, "dropping an unreadable outbox entry failed");
                        return Drained::Stall(Stall::Backoff);
                    }
                    shared.emit(ClientEvent::UnreadableOutboxEntry { error });
                    progressed = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox failed");
                    return Drained::Stall(Stall::Backoff);
                }
            };
            let recipient = entry.recipient.clone();
            if blocked.contains(&recipient)
                || !retries.ready(&recipient, tokio::time::Instant::now())
            {
                blocked.insert(recipient);
                continue;
            }
            let message_id = entry.message_id;
            // A sent copy, a sync content or a history part: no events, no history
            // (spec/client-store.md 6.1, 6.2 and 6.3).
            let copy = is_internal(&entry.content);
            let failure = match send_entry(shared, conn, entry.clone()).await {
                Ok((entry, timestamp)) => {
                    if !copy {
                        own_list_current(shared, conn).await;
                    }
                    let engine = shared.engine.clone();
                    if let Err(e) = blocking(move || engine.complete(&entry, timestamp)).await {
                        tracing::error!(error = %e, "recording a delivery failed");
                        return Drained::Stall(Stall::Backoff);
                    }
                    retries.done(&recipient);
                    progressed = true;
                    if !copy {
                        shared.emit(ClientEvent::Delivered {
                            message_id,
                            timestamp,
                        });
                    }
                    continue;
                }
                Err(ClientError::NoDevices) if copy => {
                    // The own list names no other device any more (or not the device a
                    // history part is for): nothing to send to, and no request was made.
                    let engine = shared.engine.clone();
                    if let Err(e) = blocking(move || engine.drop_outbox_row(entry.seq)).await {
                        tracing::error!(error = %e, "dropping a sent copy failed");
                        return Drained::Stall(Stall::Backoff);
                    }
                    retries.done(&recipient);
                    progressed = true;
                    continue;
                }
                Err(e) => e,
            };
            let retry_after = relay_retry_after(&failure);
            if failure == ClientError::UnapprovedIdentity {
                // Held until the user approves or verifies; `approve_identity` wakes us.
                tracing::debug!("recipient held: a verified contact's identity changed");
                held = true;
                blocked.insert(recipient);
                continue;
            }
            if let Some(stall) = stalls_everything(&failure) {
                tracing::debug!(error = %failure, "sending stalled; will retry");
                return Drained::Stall(stall);
            }
            let ended = if failure.is_permanent() {
                Some(failure)
            } else {
                match retries.failed(
                    &recipient,
                    message_id,
                    tokio::time::Instant::now(),
                    retry_after,
                ) {
                    Verdict::RetryAt(_) => {
                        tracing::debug!(error = %failure, "send failed; the recipient's queue waits");
                        blocked.insert(recipient.clone());
                        None
                    }
                    Verdict::GiveUp(attempts) => Some(ClientError::SendAttemptsExhausted {
                        attempts,
                        last: Box::new(failure),
                    }),
                }
            };
            if let Some(error) = ended {
                if let Err(e) = give_up(shared, entry, error).await {
                    tracing::error!(error = %e, "recording a failed send failed");
                    return Drained::Stall(Stall::Backoff);
                }
                retries.done(&recipient);
                progressed = true;
            }
        }
        if !progressed {
            return match retries.next_ready() {
                Some(at) => Drained::Waiting(at),
                // Only held recipients are left: wait for an approval (or a new message).
                None if held => Drained::Empty,
                // Nothing waits and nothing moved: only possible if the outbox changed
                // under us; read it again after the backoff.
                None => Drained::Stall(Stall::Backoff),
            };
        }
    }
}

/// The relay's `retry_after`, if the failure is a relay error that gives one.
fn relay_retry_after(failure: &ClientError) -> Option<Duration> {
    match failure {
        ClientError::Relay { retry_after, .. } if *retry_after > 0 => {
            Some(Duration::from_secs(u64::from(*retry_after)))
        }
        _ => None,
    }
}

/// Whether a failed send stops the whole send loop rather than counting an attempt against
/// its message (spec/client-store.md section 10), and how long it waits: a broken
/// connection (reconnect backoff); the relay's `RateLimited`, which limits this device's
/// sends as a whole; and the relay's `Unavailable`, its storage out of reach, which fails
/// every send alike however long the outage lasts (the message is not at fault: it stays
/// queued with its attempts untouched).
fn stalls_everything(failure: &ClientError) -> Option<Stall> {
    if failure.is_connectivity() {
        return Some(Stall::Backoff);
    }
    match failure.relay_code() {
        Some(ErrorCode::RateLimited | ErrorCode::Unavailable) => {
            Some(relay_retry_after(failure).map_or(Stall::Backoff, Stall::After))
        }
        _ => None,
    }
}

/// Fans one outbox entry out and sends it; returns the entry as prepared and the relay
/// timestamp.
async fn send_entry(
    shared: &Arc<Shared>,
    conn: &Connection,
    mut entry: crate::store::OutboxEntry,
) -> Result<(crate::store::OutboxEntry, u64), ClientError> {
    let recipient = entry.recipient.clone();
    {
        let engine = shared.engine.clone();
        let recipient = recipient.clone();
        blocking(move || engine.check_sendable(&recipient)).await?;
    }
    if entry.envelopes.is_none() {
        let devices = entry_devices(shared, conn, &entry, false).await?;
        entry = prepare(shared, conn, entry, devices).await?;
    }
    let envelopes = entry.envelopes.clone().unwrap_or_default();
    match conn
        .send(
            *entry.message_id.as_bytes(),
            entry.sender_seq,
            &recipient,
            envelopes,
        )
        .await
    {
        Ok(ts) => Ok((entry, ts)),
        Err(e) if e.relay_code() == Some(ErrorCode::MismatchedDevices) => {
            tracing::debug!("recipient devices changed; refreshing");
            let devices = entry_devices(shared, conn, &entry, true).await?;
            entry = prepare(shared, conn, entry, devices).await?;
            let envelopes = entry.envelopes.clone().unwrap_or_default();
            let ts = conn
                .send(
                    *entry.message_id.as_bytes(),
                    entry.sender_seq,
                    &recipient,
                    envelopes,
                )
                .await?;
            Ok((entry, ts))
        }
        Err(e) => Err(e),
    }
}

/// The devices an outbox entry is encrypted to: [`part_devices`] for an entry addressed to
/// one own device (a history part), else [`devices_for`] its recipient.
async fn entry_devices(
    shared: &Arc<Shared>,
    conn: &Connection,
    entry: &crate::store::OutboxEntry,
    force: bool,
) -> Result<Vec<DeviceId>, ClientError> {
    match entry.target {
        Some(target) => part_devices(shared, conn, target, entry.created_at, force).await,
        None if entry.recipient == shared.engine.address.account => {
            own_devices_for(shared, conn, force, Some(&entry.content)).await
        }
        None => devices_for(shared, conn, &entry.recipient, force).await,
    }
}

/// The devices a history part for the own device `target`, queued at `queued_at`, is
/// encrypted to (spec/client-store.md 6.2): every device of the own list but this one (the
/// relay wants exactly those, spec/relay.md 3.7; all but `target` get the placeholder),
/// once the list names `target` and every one of them has a session.
/// [`ClientError::LinkedDeviceNotReady`] (retried) while `target` has not joined or a
/// device has no prekeys yet; [`ClientError::NoDevices`] (the part is dropped) when it
/// will never join: the list has gone past its id without it, or
/// [`crate::HISTORY_PART_LINK_WAIT`] has passed.
async fn part_devices(
    shared: &Arc<Shared>,
    conn: &Connection,
    target: DeviceId,
    queued_at: u64,
    force: bool,
) -> Result<Vec<DeviceId>, ClientError> {
    let me = shared.engine.address.clone();
    let stored = {
        let engine = shared.engine.clone();
        blocking(move || Ok(engine.own_devices()?.map(|o| o.list))).await?
    };
    let list = match stored {
        Some(l) if !force && shared.list_fresh(&me.account) && l.device(target.0).is_some() => {
            Some(l)
        }
        _ => {
            let list = refresh_own_list(shared, conn).await?;
            // A list without the new device does not count as fresh: `link_device` made
            // the own list stale so that the next sent copy reads it again once the device
            // has joined, and this fetch (made before that) must not undo it.
            if list.as_ref().is_some_and(|l| l.device(target.0).is_some()) {
                shared.list_fetched(&me.account);
            }
            list
        }
    };
    let Some(list) = list else {
        return Err(ClientError::NoDevices);
    };
    if list.device(target.0).is_none() {
        let waited = Duration::from_millis(now_ms().saturating_sub(queued_at));
        if list.next_device_id() > target.0 || waited > crate::HISTORY_PART_LINK_WAIT {
            tracing::warn!(
                device = target.0,
                "the device a history part is for is not on this account's list and will not join"
            );
            return Err(ClientError::NoDevices);
        }
        return Err(ClientError::LinkedDeviceNotReady { device: target });
    }
    sync_listed(shared, conn, &list).await?;
    let others: Vec<DeviceId> = list
        .entries()
        .iter()
        .map(|e| DeviceId(e.device_id))
        .filter(|d| *d != me.device)
        .collect();
    let reachable = recipient_devices(shared, &me.account).await?;
    if let Some(missing) = others.iter().find(|d| !reachable.contains(d)) {
        return Err(ClientError::LinkedDeviceNotReady { device: *missing });
    }
    Ok(others)
}

/// The devices a message to `account` is encrypted to, with sessions started where
/// needed. An account with a signed list (spec/devices.md 8.1): exactly the listed devices
/// (never this one), each session bound to its listed identity. An account without one (a
/// version-1 account): the devices the relay lists. `force` fetches the list (or the
/// relay's devices) again even if it was fetched recently.
async fn devices_for(
    shared: &Arc<Shared>,
    conn: &Connection,
    account: &AccountId,
    force: bool,
) -> Result<Vec<DeviceId>, ClientError> {
    if account == &shared.engine.address.account {
        return own_devices_for(shared, conn, force, None).await;
    }
    if let Some(list) = current_list(shared, conn, account, force).await? {
        let me = &shared.engine.address;
        if list.family() == RoleFamily::Business && account != &me.account {
            // Routed (spec/business.md 7.3): the default route's devices and the owner.
            let engine = shared.engine.clone();
            let l = list.clone();
            let me = me.account.clone();
            let targets = blocking(move || engine.business_targets(&l, Some(&me))).await?;
            sync_listed_for(shared, conn, &list, Some(&targets)).await?;
            return Ok(targets);
        }
        sync_listed(shared, conn, &list).await?;
        return Ok(list
            .entries()
            .iter()
            .map(|e| DeviceId(e.device_id))
            .filter(|d| !(account == &me.account && *d == me.device))
            .collect());
    }
    if force {
        refresh_devices(shared, conn, account, true).await?;
        return recipient_devices(shared, account).await;
    }
    let devices = recipient_devices(shared, account).await?;
    if !devices.is_empty() {
        return Ok(devices);
    }
    refresh_devices(shared, conn, account, false).await?;
    recipient_devices(shared, account).await
}

/// Brings this account's own list up to date before a delivered message is recorded, so
/// that its sent copy is queued exactly when the list names another device: fetched again
/// (`FetchDeviceList`, checked with the update rule) unless it was fetched within
/// `device_list_refresh`. A failure keeps the stored list (the delivery must be recorded).
pub(super) async fn own_list_current(shared: &Arc<Shared>, conn: &Connection) {
    let own = shared.engine.address.account.clone();
    if shared.list_fresh(&own) {
        return;
    }
    match refresh_own_list(shared, conn).await {
        Ok(_) => shared.list_fetched(&own),
        Err(e) => {
            tracing::debug!(error = %e, "own device list not refreshed; using the stored one")
        }
    }
}

/// The devices a sent copy goes to: this account's own list (spec/devices.md 8.9, never a
/// contact pin), fetched again and checked with the update rule when it was not fetched
/// within `device_list_refresh` or `force` is set; every listed device but this one. On a
/// business, `content` (the entry's) decides (spec/business.md 7.4, 8.2).
async fn own_devices_for(
    shared: &Arc<Shared>,
    conn: &Connection,
    force: bool,
    content: Option<&[u8]>,
) -> Result<Vec<DeviceId>, ClientError> {
    let me = shared.engine.address.clone();
    let list = if !force && shared.list_fresh(&me.account) {
        let engine = shared.engine.clone();
        blocking(move || Ok(engine.own_devices()?.map(|o| o.list))).await?
    } else {
        let list = refresh_own_list(shared, conn).await?;
        shared.list_fetched(&me.account);
        if let Some(list) = &list {
            // A business's own route comes with its list (spec/business.md 7.4).
            super::business::refresh_business(shared, conn, list).await;
        }
        list
    };
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.family() == RoleFamily::Business {
        // A business's own devices get a copy only where a customer's message would go:
        // the default route and the owner (spec/business.md 7.4).
        let engine = shared.engine.clone();
        let l = list.clone();
        let content = content.map(|c| sealpost_crypto::Zeroizing::new(c.to_vec()));
        let mut targets = blocking(move || {
            if let Some(c) = &content
                && let Some(t) = engine.own_control_targets(&l, c)?
            {
                return Ok(t);
            }
            engine.business_targets(&l, None)
        })
        .await?;
        targets.retain(|d| *d != me.device);
        sync_listed_for(shared, conn, &list, Some(&targets)).await?;
        return Ok(targets);
    }
    sync_listed(shared, conn, &list).await?;
    Ok(list
        .entries()
        .iter()
        .map(|e| DeviceId(e.device_id))
        .filter(|d| *d != me.device)
        .collect())
}

async fn recipient_devices(
    shared: &Arc<Shared>,
    account: &AccountId,
) -> Result<Vec<DeviceId>, ClientError> {
    let engine = shared.engine.clone();
    let account = account.clone();
    blocking(move || engine.recipient_devices(&account)).await
}

async fn prepare(
    shared: &Arc<Shared>,
    conn: &Connection,
    entry: crate::store::OutboxEntry,
    mut devices: Vec<DeviceId>,
) -> Result<crate::store::OutboxEntry, ClientError> {
    if devices.is_empty() {
        return Err(ClientError::NoDevices);
    }
    let (entry, left) = renew_sessions(shared, conn, entry, &devices).await?;
    if !left.is_empty() {
        // Gone, or registered again with another identity: the ordinary refresh forgets
        // them or starts sessions with their successors.
        devices = entry_devices(shared, conn, &entry, true).await?;
        if devices.is_empty() {
            return Err(ClientError::NoDevices);
        }
    }
    let engine = shared.engine.clone();
    blocking(move || engine.prepare(entry, &devices)).await
}

/// After a rollback ([`ClientEvent::StoreRolledBack`]): starts new sessions with the devices
/// `entry` still has to encrypt for whose sessions were set aside (one `FetchBundles`).
/// Returns the entry and the devices that got no new session.
async fn renew_sessions(
    shared: &Arc<Shared>,
    conn: &Connection,
    entry: crate::store::OutboxEntry,
    devices: &[DeviceId],
) -> Result<(crate::store::OutboxEntry, Vec<DeviceId>), ClientError> {
    let engine = shared.engine.clone();
    let devs = devices.to_vec();
    let (entry, renew) = blocking(move || {
        let renew = engine.sessions_to_renew(&entry, &devs)?;
        Ok((entry, renew))
    })
    .await?;
    if renew.is_empty() {
        return Ok((entry, renew));
    }
    tracing::info!(
        devices = renew.len(),
        "renewing sessions after a store rollback"
    );
    let bundles = conn.fetch_bundles(&entry.recipient).await?;
    let engine = shared.engine.clone();
    let account = entry.recipient.clone();
    let left = blocking(move || engine.renew_sessions(&account, &renew, &bundles)).await?;
    Ok((entry, left))
}

/// Learns an account's devices from the relay and starts sessions where missing. With
/// `list`, asks `ListDevices` first (and forgets devices that are gone) and fetches bundles
/// only if some device lacks a session; without, fetches bundles directly.
async fn refresh_devices(
    shared: &Arc<Shared>,
    conn: &Connection,
    account: &AccountId,
    list: bool,
) -> Result<(), ClientError> {
    let listed = if list {
        Some(conn.list_devices(account).await?)
    } else {
        None
    };
    let missing = match &listed {
        Some(l) => {
            let engine = shared.engine.clone();
            let account = account.clone();
            let l = l.clone();
            Some(blocking(move || engine.missing_devices(&account, &l)).await?)
        }
        None => None,
    };
    let bundles = match &missing {
        Some(m) if m.is_empty() => Vec::new(),
        _ => {
            let mut b = conn.fetch_bundles(account).await?;
            if let Some(m) = &missing {
                b.retain(|x| m.contains(&x.device_id));
            }
            b
        }
    };
    let engine = shared.engine.clone();
    let account = account.clone();
    let events = blocking(move || {
        engine.apply_refresh(&account, listed.as_deref(), &bundles, now_ms(), false)
    })
    .await?;
    for ev in events {
        shared.emit(ev);
    }
    Ok(())
}

#[cfg(feature = "hazmat")]
impl Client {
    /// Queues `content` as it is (a content encoding whose message id is `message_id`) to
    /// `account`, without a history entry; see [`crate::hazmat::send_sent_copy`].
    pub(crate) async fn send_raw(
        &self,
        account: &AccountId,
        message_id: MessageId,
        content: sealpost_crypto::Zeroizing<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let account = account.clone();
        blocking(move || engine.enqueue_raw(&account, message_id, content, now_ms())).await?;
        shared.outbox_wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(code: ErrorCode, retry_after: u32) -> ClientError {
        ClientError::Relay {
            code,
            retry_after,
            detail: String::new(),
        }
    }

    /// The relay's `Unavailable` (its storage is out of reach) stops the whole send loop with
    /// backoff, like a broken connection, instead of counting an attempt against the message
    /// (which would give it up after `MAX_SEND_ATTEMPTS` however healthy it is); a
    /// `retry_after` is honoured. `Internal` and `QueueFull` stay per-message failures.
    #[test]
    fn an_unavailable_relay_stalls_the_loop_without_counting_attempts() {
        let unavailable = relay(ErrorCode::Unavailable, 0);
        assert!(unavailable.is_transient());
        assert_eq!(stalls_everything(&unavailable), Some(Stall::Backoff));
        assert_eq!(
            stalls_everything(&relay(ErrorCode::Unavailable, 7)),
            Some(Stall::After(Duration::from_secs(7)))
        );
        assert_eq!(
            stalls_everything(&relay(ErrorCode::RateLimited, 3)),
            Some(Stall::After(Duration::from_secs(3)))
        );
        assert_eq!(
            stalls_everything(&ClientError::Timeout),
            Some(Stall::Backoff)
        );
        for per_message in [ErrorCode::Internal, ErrorCode::QueueFull] {
            assert_eq!(stalls_everything(&relay(per_message, 0)), None);
            assert!(relay(per_message, 0).is_transient());
        }
        assert_eq!(
            stalls_everything(&relay(ErrorCode::UnknownAccount, 0)),
            None
        );
    }
}
