//! Pushing provisioning messages (spec/relay.md 3.11): a connection that opened a
//! provisioning id gets the one envelope left for it, once, as a `Provisioning` push.
//!
//! The envelope is in the store, so a `Provision` handled by any node of the deployment
//! reaches it. The connection's watch reads the store when woken by a `Provision` on this
//! node, and otherwise every [`PROVISIONING_POLL`] (a key holder connected to another node:
//! linking is a person scanning a code, so a second's delay does not matter, and a watch
//! needs no bus). A node watches at most `MAX_OPEN_PROVISIONINGS` ids at once.

use super::requests::WRITE_TIMEOUT;
use super::*;
use sealpost_wire::devices::ProvisioningEnvelope;
use sealpost_wire::relay::PROVISIONING_ID_LEN;

/// How often a watch reads the store when nothing woke it.
pub const PROVISIONING_POLL: Duration = Duration::from_secs(1);

type Id = [u8; PROVISIONING_ID_LEN];

/// The watches of this node, by id, to wake them on a local `Provision`.
#[derive(Default)]
pub(super) struct Watches(Mutex<HashMap<Id, Arc<Notify>>>);

impl Watches {
    fn insert(&self, id: Id) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&notify));
        notify
    }

    fn remove(&self, id: &Id) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// An envelope was left for `id` on this node: wake its watch, if it is here.
    pub(super) fn wake(&self, id: &Id) {
        let notify = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(n) = notify {
            n.notify_one();
        }
    }
}

/// Carries out the provisioning effects of a request on connection `conn`.
pub(super) fn apply(shared: &Arc<Shared>, conn: &Connection, effects: &[Effect]) {
    for effect in effects {
        match effect {
            Effect::WatchProvisioning { id, expires_at } => {
                let notify = shared.provisioning.insert(*id);
                let task = watch(Arc::clone(shared), conn.clone(), *id, *expires_at, notify);
                shared.runtime.spawn(task);
            }
            Effect::Provisioned { id } => shared.provisioning.wake(id),
            _ => {}
        }
    }
}

/// Waits for the envelope of `id` and pushes it; ends when it is pushed, the id expires,
/// the connection closes or the relay shuts down.
async fn watch(
    shared: Arc<Shared>,
    conn: Connection,
    id: Id,
    expires_at: u64,
    notify: Arc<Notify>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let now = now_ms();
        if now >= expires_at {
            break;
        }
        match shared.store.take_provisioning(&id, now).await {
            Ok(Some(bytes)) => {
                push(&conn, id, &bytes).await;
                break;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading a provisioning id failed"),
        }
        let left = Duration::from_millis(expires_at.saturating_sub(now));
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep(PROVISIONING_POLL.min(left)) => {}
            _ = conn.closed() => break,
            _ = shutdown.changed() => break,
        }
    }
    shared.provisioning.remove(&id);
    shared.handler.open_provisionings().release();
}

/// Writes the push on a stream of its own.
async fn push(conn: &Connection, id: Id, bytes: &[u8]) {
    let Ok(envelope) = ProvisioningEnvelope::decode(bytes) else {
        // Only `Provision` writes these rows, with an envelope that decoded.
        tracing::error!("a stored provisioning envelope does not decode");
        return;
    };
    let frame = Push::Provisioning {
        provisioning_id: id,
        envelope,
    }
    .encode();
    let written = async {
        let mut stream = conn.open_uni().await.ok()?;
        stream.write_all(&frame).await.ok()?;
        stream.finish().ok()
    };
    match tokio::time::timeout(WRITE_TIMEOUT, written).await {
        Ok(Some(())) => metrics::provisioning("pushed"),
        _ => tracing::info!("a provisioning push could not be written; the connection is gone"),
    }
}
