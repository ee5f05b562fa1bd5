//! Business accounts (spec/business.md): the owner publishes the profile and the default
//! route; anyone reads the profile verified under the business's pinned list, and a
//! customer encrypts to the devices the business routes it to.

use super::*;
pub use crate::engine::BusinessProfile;
use sealpost_devices::{VerifiedBusinessProfile, VerifiedDeviceList, check_verification_binding};
use sealpost_wire::business::{
    BusinessProfileFields, BusinessVerification, PublishedProfile, RouteBody, RouteSigner,
};
use sealpost_wire::devices::RoleFamily;

impl Client {
    /// On a business account's owner: signs and publishes the next version of the business
    /// profile (spec/business.md 3, relay.md 3.14). The version follows the relay's stored
    /// one; the default route stays, and the verification statements stored with the
    /// profile are kept when they still fit (same name and account key), dropped otherwise
    /// (a renamed business loses its mark until a verifier signs the new name). Returns the
    /// stored version. Needs a connection.
    ///
    /// Errors: [`ClientError::NotKeyHolder`] on a device without the account key,
    /// [`ClientError::NotBusiness`] on a consumer account; the relay's refusals
    /// (`InvalidBusinessProfile`, `StaleBusinessProfile` when another publish won).
    pub async fn publish_business_profile(
        &self,
        fields: BusinessProfileFields,
    ) -> Result<u64, ClientError> {
        fields
            .check()
            .map_err(|e| ClientError::BusinessProfileRefused(e.into()))?;
        let shared = self.shared()?;
        let conn = shared.connection()?;
        let account = shared.engine.address.account.clone();
        own_business_list(&shared, &conn).await?;
        let current = conn.fetch_business_profile(&account).await?;
        let engine = shared.engine.clone();
        let published = blocking(move || {
            let own = engine.own_devices()?.ok_or(ClientError::NotKeyHolder)?;
            let key = own.account_key.as_ref().ok_or(ClientError::NotKeyHolder)?;
            let ak = key.public().to_bytes();
            let (version, route, statements) = match current {
                Some(c) if c.profile.body.account_key == ak => (
                    c.profile.body.profile_version.checked_add(1).ok_or(
                        ClientError::BusinessProfileRefused(
                            sealpost_devices::ProfileError::Exhausted,
                        ),
                    )?,
                    c.route,
                    c.verifications,
                ),
                _ => (1, None, Vec::new()),
            };
            let signed = key
                .sign_business_profile(&engine.address.account, version, now_ms(), fields)
                .map_err(ClientError::BusinessProfileRefused)?;
            let verified =
                VerifiedBusinessProfile::verify(&signed, &engine.address.account, &key.public())
                    .map_err(ClientError::BusinessProfileRefused)?;
            let verifications = statements
                .into_iter()
                .filter(|s| check_verification_binding(s, &verified).is_ok())
                .collect();
            Ok(PublishedProfile {
                profile: signed,
                route,
                verifications,
            })
        })
        .await?;
        let version = conn.publish_business_profile(published).await?;
        tracing::info!(version, "business profile published");
        Ok(version)
    }

    /// On a business account's owner: routes new conversations to `devices` (the default
    /// route, spec/business.md 7: for example the bot and the agents on duty), signed by
    /// the account key and published with the profile. Customers' clients encrypt a
    /// conversation without a route of its own to these devices and the owner only. Every
    /// device must be on the account's list. Needs a connection and a published profile.
    ///
    /// Errors: [`ClientError::NotKeyHolder`], [`ClientError::NotBusiness`] (also without a
    /// published profile), [`ClientError::UnknownDevice`] for a device not listed; the
    /// relay's refusals.
    pub async fn set_default_route(&self, devices: &[DeviceId]) -> Result<u64, ClientError> {
        let shared = self.shared()?;
        let conn = shared.connection()?;
        let account = shared.engine.address.account.clone();
        let list = own_business_list(&shared, &conn).await?;
        let mut ids: Vec<u32> = devices.iter().map(|d| d.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if let Some(missing) = ids.iter().find(|id| list.device(**id).is_none()) {
            return Err(ClientError::UnknownDevice(DeviceId(*missing)));
        }
        let mut current = conn
            .fetch_business_profile(&account)
            .await?
            .ok_or(ClientError::NotBusiness)?;
        let engine = shared.engine.clone();
        let published = blocking(move || {
            let own = engine.own_devices()?.ok_or(ClientError::NotKeyHolder)?;
            let key = own.account_key.as_ref().ok_or(ClientError::NotKeyHolder)?;
            let version = current
                .route
                .as_ref()
                .filter(|r| r.body.account_key == key.public().to_bytes())
                .map_or(Some(1), |r| r.body.route_version.checked_add(1))
                .ok_or(ClientError::RouteRefused(
                    sealpost_devices::RouteError::Exhausted,
                ))?;
            let route = key
                .sign_route(RouteBody {
                    account: engine.address.account.clone(),
                    account_key: key.public().to_bytes(),
                    customer: None,
                    route_version: version,
                    issued_at: now_ms(),
                    devices: ids,
                    signer: RouteSigner::AccountKey,
                })
                .map_err(ClientError::RouteRefused)?;
            current.route = Some(route);
            Ok((current, version))
        })
        .await?;
        let (published, version) = published;
        conn.publish_business_profile(published).await?;
        tracing::info!(version, "default route published");
        Ok(version)
    }

    /// On a business account's owner: adds a verifier's statement (its encoding, as the
    /// verifier hands it out) to the published profile, replacing an earlier statement by
    /// the same verifier (spec/business.md 4, relay.md 3.14 rule 5: the same profile with
    /// other statements). Needs a connection and a published profile.
    ///
    /// Errors: [`ClientError::VerificationRefused`] when the statement does not decode or
    /// does not fit the published profile (another account, key or name, a bad signature);
    /// [`ClientError::NotBusiness`] without a published profile; the relay's refusals.
    pub async fn add_business_verification(&self, statement: &[u8]) -> Result<(), ClientError> {
        let statement = BusinessVerification::decode(statement)
            .map_err(|e| ClientError::VerificationRefused(e.into()))?;
        let shared = self.shared()?;
        let conn = shared.connection()?;
        let account = shared.engine.address.account.clone();
        let list = own_business_list(&shared, &conn).await?;
        let mut current = conn
            .fetch_business_profile(&account)
            .await?
            .ok_or(ClientError::NotBusiness)?;
        let verified =
            VerifiedBusinessProfile::verify(&current.profile, &account, &list.account_key())
                .map_err(ClientError::BusinessProfileRefused)?;
        check_verification_binding(&statement, &verified)
            .map_err(ClientError::VerificationRefused)?;
        current
            .verifications
            .retain(|s| s.body.verifier_key != statement.body.verifier_key);
        if current.verifications.len() >= sealpost_wire::business::MAX_VERIFICATIONS {
            current.verifications.remove(0);
        }
        current.verifications.push(statement);
        conn.publish_business_profile(current).await?;
        tracing::info!("business verification added");
        Ok(())
    }

    /// `account`'s business profile, fetched from the relay and accepted only when it
    /// verifies under the account key of the account's pinned device list (section 3.3) and
    /// passes the profile pin (section 3.4); `None` when the account has no business list
    /// or no profile. A profile the pin refuses (a rollback, an equivocation) is an error
    /// and the pin stays. [`BusinessProfile::verified_by`] lists the trusted verifiers
    /// ([`ClientConfig::trusted_verifiers`]) whose statements hold now (section 4.2).
    /// Needs a connection.
    pub async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<BusinessProfile>, ClientError> {
        let shared = self.shared()?;
        let conn = shared.connection()?;
        let Some(list) = current_list(&shared, &conn, account, false).await? else {
            return Ok(None);
        };
        if list.family() != RoleFamily::Business {
            return Ok(None);
        }
        let fetched = conn.fetch_business_profile(account).await?;
        let trusted = shared.config.trusted_verifiers.clone();
        let engine = shared.engine.clone();
        blocking(move || engine.accept_business(&list, fetched, &trusted, now_ms())).await
    }
}

/// This account's own list, which must be a business list.
async fn own_business_list(
    shared: &Arc<Shared>,
    conn: &Connection,
) -> Result<VerifiedDeviceList, ClientError> {
    let account = shared.engine.address.account.clone();
    let list = current_list(shared, conn, &account, true)
        .await?
        .ok_or(ClientError::NotBusiness)?;
    if list.family() != RoleFamily::Business {
        return Err(ClientError::NotBusiness);
    }
    Ok(list)
}

/// After a business's list was fetched (a contact's, or this account's own): its profile
/// and default route are fetched with it (spec/business.md 7.3, 7.4) and kept. A failure is logged, not returned: without a
/// route the customer encrypts to every device of the business (never to anyone else).
pub(super) async fn refresh_business(
    shared: &Arc<Shared>,
    conn: &Connection,
    list: &VerifiedDeviceList,
) {
    if list.family() != RoleFamily::Business {
        return;
    }
    let fetched = match conn.fetch_business_profile(list.account()).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "business profile not fetched");
            return;
        }
    };
    let engine = shared.engine.clone();
    let trusted = shared.config.trusted_verifiers.clone();
    let l = list.clone();
    if let Err(e) = blocking(move || engine.accept_business(&l, fetched, &trusted, now_ms())).await
    {
        tracing::warn!(error = %e, "business profile or route refused");
    }
}
