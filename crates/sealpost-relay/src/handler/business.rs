//! Business profiles (spec/relay.md 3.14, spec/business.md 6): `PublishBusinessProfile`
//! checks the profile and its verification statements against the account's stored device
//! list in the spec's order and stores them with [`Store::put_business_profile`], which
//! repeats in its transaction what a concurrent request may have changed;
//! `FetchBusinessProfile` serves any account's profile byte for byte.

use super::*;
use crate::store::{NewBusinessProfile, PutProfileOutcome, profile_may_replace};
use sealpost_devices::{
    AccountKey, VerifiedBusinessProfile, VerifiedDeviceList, VerifiedRoute,
    check_verification_binding,
};
use sealpost_wire::business::{PublishedProfile, RouteSigner};
use sealpost_wire::devices::{RoleFamily, SignedDeviceList};
use sealpost_wire::{Reader, Writer};

/// The `request` label of this file's metrics.
const PROFILE: &str = "business_profile";

/// A refusal counted under `outcome`.
fn refuse(outcome: &'static str, code: ErrorCode, detail: &str) -> Response {
    metrics::device_list(PROFILE, outcome);
    Response::error(code, detail)
}

fn invalid_list(detail: &str) -> Response {
    refuse("invalid", ErrorCode::InvalidDeviceList, detail)
}

fn invalid_profile(detail: &str) -> Response {
    refuse("invalid_profile", ErrorCode::InvalidBusinessProfile, detail)
}

fn stale(detail: &str) -> Response {
    refuse("stale", ErrorCode::StaleBusinessProfile, detail)
}

fn failed(e: &StoreError) -> Response {
    metrics::device_list(PROFILE, "failed");
    internal(e)
}

impl Handler {
    /// `PublishBusinessProfile` (spec/relay.md 3.14) from the authenticated device `me`.
    pub(super) async fn publish_business_profile(
        &self,
        me: &AuthenticatedDevice,
        published: &PublishedProfile,
        now: u64,
    ) -> Response {
        match self.try_publish_profile(me, published, now).await {
            Ok(profile_version) => Response::BusinessProfileStored { profile_version },
            Err(r) => *r,
        }
    }

    async fn try_publish_profile(
        &self,
        me: &AuthenticatedDevice,
        published: &PublishedProfile,
        now: u64,
    ) -> Result<u64, Box<Response>> {
        let account = &me.address.account;
        let state = self
            .store
            .device_list_state(account)
            .await
            .map_err(|e| Box::new(failed(&e)))?;
        // 1. A stored list, of the business family.
        let Some(stored) = &state.list else {
            return Err(Box::new(invalid_list("the account has no device list")));
        };
        let list = SignedDeviceList::decode(&stored.bytes)
            .map_err(|_| Box::new(failed(&StoreError::Corrupt("stored device list"))))?;
        let family = list
            .body
            .entries
            .iter()
            .find(|e| e.role.holds_account_key())
            .map(|e| e.role.family());
        if family != Some(RoleFamily::Business) {
            return Err(Box::new(invalid_list(
                "only a business account has a business profile",
            )));
        }
        // 2. The authenticated device is its owner, with its registered identity.
        let owner = list.body.entries.iter().any(|e| {
            e.device_id == me.address.device.0
                && e.role.holds_account_key()
                && e.identity == me.identity
        });
        if !owner {
            return Err(Box::new(invalid_list(
                "only the owner publishes the business profile",
            )));
        }
        // 3. The profile, valid for the account under the stored list's account key.
        let account_key = AccountKey::from_bytes(&stored.account_key)
            .map_err(|_| Box::new(failed(&StoreError::Corrupt("stored device list"))))?;
        let profile = VerifiedBusinessProfile::verify(&published.profile, account, &account_key)
            .map_err(|e| Box::new(invalid_profile(&e.to_string())))?;
        // 4. Each statement bound to the account, its key and the profile's name, signed
        // by its own verifier key; no verifier twice. Trust and expiry are the clients'.
        let mut verifiers: Vec<[u8; 32]> = Vec::with_capacity(published.verifications.len());
        for (i, statement) in published.verifications.iter().enumerate() {
            check_verification_binding(statement, &profile)
                .map_err(|e| Box::new(invalid_profile(&format!("statement {i}: {e}"))))?;
            let key = statement.body.verifier_key;
            if verifiers.contains(&key) {
                return Err(Box::new(invalid_profile(&format!(
                    "statement {i}: a second statement by the same verifier"
                ))));
            }
            verifiers.push(key);
        }
        // 4a. The default route: signed by the account key, valid for the stored list,
        // naming listed devices only.
        let route_version = match &published.route {
            None => 0,
            Some(route) => {
                let verified = VerifiedDeviceList::verify(&stored.bytes, account)
                    .map_err(|_| Box::new(failed(&StoreError::Corrupt("stored device list"))))?;
                if route.body.signer != RouteSigner::AccountKey {
                    return Err(Box::new(invalid_profile(
                        "the default route is signed by the account key",
                    )));
                }
                let route = VerifiedRoute::verify(route, &verified, None, None)
                    .map_err(|e| Box::new(invalid_profile(&format!("route: {e}"))))?;
                if let Some(d) = route
                    .devices()
                    .iter()
                    .find(|d| verified.device(**d).is_none())
                {
                    return Err(Box::new(invalid_profile(&format!(
                        "the route names device {d}, which is not listed"
                    ))));
                }
                route.route_version()
            }
        };
        // The request decoded canonically, so this is the payload as received.
        let mut payload = Writer::new();
        published
            .encode_into(&mut payload)
            .map_err(|e| Box::new(invalid_profile(&e.to_string())))?;
        let version = profile.profile_version();
        let new = NewBusinessProfile {
            account_key: &stored.account_key,
            profile_version: version,
            profile: profile.encoded(),
            route_version,
            payload: payload.as_slice(),
        };
        // 5. The version rule against the stored profile and route.
        let current = self
            .store
            .business_profile(account)
            .await
            .map_err(|e| Box::new(failed(&e)))?;
        if !profile_may_replace(current.as_ref(), &new) {
            let (v, r) = current
                .as_ref()
                .map_or((0, 0), |p| (p.profile_version, p.route_version));
            return Err(Box::new(stale(&format!(
                "profile version {version} (route {route_version}) does not follow the \
                 stored {v} (route {r})"
            ))));
        }
        // 6. The account's publish quota, charged only now.
        self.take_quotas(
            &[QuotaCheck {
                kind: QuotaKind::ListPublish,
                subject: account.as_str().to_owned(),
                rate: self.limits.list_publish_rate(),
            }],
            now,
        )
        .await
        .inspect_err(|_| metrics::device_list(PROFILE, "rate_limited"))?;
        match self.store.put_business_profile(&me.address, &new).await {
            Ok(PutProfileOutcome::Stored) => {
                metrics::device_list(PROFILE, "stored");
                tracing::info!(
                    account = ?account,
                    profile_version = version,
                    statements = published.verifications.len(),
                    "business profile stored"
                );
                Ok(version)
            }
            Ok(PutProfileOutcome::Stale) => {
                Err(Box::new(stale("another business profile was stored first")))
            }
            Ok(PutProfileOutcome::ListChanged) => Err(Box::new(invalid_list(
                "the account's device list changed meanwhile",
            ))),
            Err(e) => Err(Box::new(failed(&e))),
        }
    }

    /// `FetchBusinessProfile` (spec/relay.md 3.14): any account's profile, for any
    /// authenticated device, rate-limited with the connection's `FetchBundles` bucket.
    pub(super) async fn fetch_business_profile(
        &self,
        conn: &mut ConnectionState,
        account: &AccountId,
        now: u64,
    ) -> Response {
        if let Err(s) = conn.bundle_fetches.try_take(self.limits.bundle_rate(), now) {
            return rate_limited("bundles", s);
        }
        match self.store.list_devices(account).await {
            Ok(d) if d.is_empty() => {
                return Response::error(ErrorCode::UnknownAccount, "no devices");
            }
            Ok(_) => {}
            Err(e) => return internal(&e),
        }
        let stored = match self.store.business_profile(account).await {
            Ok(p) => p,
            Err(e) => return internal(&e),
        };
        let Some(stored) = stored else {
            return Response::BusinessProfile(None);
        };
        let mut r = Reader::new(&stored.payload);
        match PublishedProfile::decode_from(&mut r).and_then(|p| r.finish().map(|()| p)) {
            Ok(p) => Response::BusinessProfile(Some(Box::new(p))),
            Err(_) => internal(&StoreError::Corrupt("stored business profile")),
        }
    }
}
