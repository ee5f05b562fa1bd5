//! `OpenProvisioning` and `Provision` (spec/relay.md 3.11): a single-use, expiring address at
//! which a key holder leaves one sealed message for a device being linked.

use super::*;
use sealpost_wire::devices::ProvisioningEnvelope;
use sealpost_wire::relay::PROVISIONING_ID_LEN;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `PROVISIONING_TTL`: how long a provisioning id stays usable, in milliseconds.
pub const PROVISIONING_TTL_MS: u64 = 600_000;
/// Provisioning ids one node watches at once for the connections that opened them; more are
/// refused (`RateLimited`) until some are used or expire. Each watch reads the store every
/// [`PROVISIONING_POLL`](crate::server) at most, so this bounds that load.
pub const MAX_OPEN_PROVISIONINGS: usize = 1024;

/// The count of provisioning ids this node's connections are waiting on.
#[derive(Debug, Default)]
pub struct OpenProvisionings(AtomicUsize);

impl OpenProvisionings {
    /// Takes a place, unless all are taken.
    fn try_take(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OPEN_PROVISIONINGS).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a place back (the driver, when a watch ends).
    pub fn release(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Places taken now.
    pub fn current(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Handler {
    pub(super) async fn open_provisioning(
        &self,
        conn: &mut ConnectionState,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        if let Err(s) = conn
            .provisioning_opens
            .try_take(self.limits.provisioning_open_rate(), now)
        {
            return rate_limited("provisioning_connection", s);
        }
        if !self.open_provisionings.try_take() {
            return rate_limited("provisioning_node", 60);
        }
        let mut id = [0u8; PROVISIONING_ID_LEN];
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(&mut id);
        let expires_at = now.saturating_add(PROVISIONING_TTL_MS);
        if let Err(e) = self.store.open_provisioning(&id, expires_at).await {
            self.open_provisionings.release();
            return internal(&e);
        }
        metrics::provisioning("opened");
        effects.push(Effect::WatchProvisioning { id, expires_at });
        Response::ProvisioningOpened {
            provisioning_id: id,
            expires_in: secs_ceil(PROVISIONING_TTL_MS),
        }
    }

    pub(super) async fn provision(
        &self,
        id: &[u8; PROVISIONING_ID_LEN],
        envelope: &ProvisioningEnvelope,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match self
            .store
            .put_provisioning(id, &envelope.encode(), now)
            .await
        {
            Ok(true) => {
                metrics::provisioning("provisioned");
                effects.push(Effect::Provisioned { id: *id });
                Response::Provisioned
            }
            Ok(false) => {
                metrics::provisioning("not_found");
                Response::error(
                    ErrorCode::ProvisioningNotFound,
                    "no open provisioning id like this (unknown, expired or used)",
                )
            }
            Err(e) => internal(&e),
        }
    }

    /// The count of provisioning ids this node watches (the driver releases a place when a
    /// watch ends).
    pub fn open_provisionings(&self) -> &OpenProvisionings {
        &self.open_provisionings
    }
}
