//! Authentication: `Challenge` is answered in the dispatch; `Authenticate` here.

use super::*;

impl Handler {
    pub(super) async fn authenticate(
        &self,
        conn: &mut ConnectionState,
        exporter: &[u8; 32],
        address: DeviceAddress,
        signature: &[u8; 64],
        now: u64,
    ) -> Response {
        if conn.device.is_some() {
            return Response::error(ErrorCode::AlreadyAuthenticated, "already authenticated");
        }
        let rate = self.limits.auth_failure_rate();
        if let Err(s) = conn.auth_failures.check(rate, now) {
            return rate_limited("auth", s);
        }
        let nonce = conn.nonce.take();
        let identity = match (&nonce, self.store.device_identity(&address).await) {
            (_, Err(e)) => return internal(&e),
            (Some(nonce), Ok(Some(identity))) => {
                let signed = auth_signed_bytes(exporter, nonce, &address);
                VerifyingKey::from_bytes(&identity.signing)
                    .and_then(|k| k.verify(&signed, &Signature::from_bytes(*signature)))
                    .is_ok()
                    .then_some(identity)
            }
            _ => None,
        };
        let Some(identity) = identity else {
            metrics::auth_failure();
            // The failure is counted; the check above refuses once the bucket is empty.
            let _ = conn.auth_failures.try_take(rate, now);
            tracing::info!(conn = conn.id, device = ?address, "authentication failed");
            return Response::error(ErrorCode::AuthFailed, "authentication failed");
        };
        let counts = match self.store.prekey_counts(&address).await {
            Ok(c) => c,
            Err(e) => return internal(&e),
        };
        let queued = match self.store.queue_depth(&address).await {
            Ok(q) => q,
            Err(e) => return internal(&e),
        };
        let sender_seq = match self.store.sender_seq(&address).await {
            Ok(s) => s,
            Err(e) => return internal(&e),
        };
        if let Err(e) = self.store.touch_device(&address, now).await {
            return internal(&e);
        }
        tracing::info!(conn = conn.id, device = ?address, queued, "device authenticated");
        conn.device = Some(AuthenticatedDevice { address, identity });
        Response::Authenticated {
            one_time_prekeys: counts.one_time_prekeys,
            kem_prekeys: counts.kem_prekeys,
            queued,
            sender_seq,
        }
    }
}
