//! Business profiles and verification (spec/business.md sections 3, 4 and 6): the owner
//! publishes the profile, anyone reads it verified under the business's pinned list.

use super::*;
use sealpost_devices::{
    AccountKey, BusinessProfilePin, VerifiedBusinessProfile, check_verification_binding,
    verified_by,
};
use sealpost_wire::business::{BusinessProfileFields, BusinessVerification, PublishedProfile};
use sealpost_wire::devices::RoleFamily;

/// A business's profile as this client accepted it (spec/business.md 3.4), with the
/// trusted verifiers that vouch for it now (4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessProfile {
    /// The business's account.
    pub account: AccountId,
    /// What the business says about itself, signed by its account key.
    pub fields: BusinessProfileFields,
    /// The profile's version.
    pub version: u64,
    /// The account key it is signed under (the key of the account's pinned device list):
    /// what a verifier checks out of band before it signs a statement.
    pub account_key: [u8; 32],
    /// The names (from [`ClientConfig::trusted_verifiers`]) of the verifiers whose
    /// statements about this business hold now; empty: not verified.
    pub verified_by: Vec<String>,
}

impl Client {
    /// On a business account's owner: signs and publishes the next version of the business
    /// profile (spec/business.md 3, relay.md 3.14). The version follows the relay's stored
    /// one; the verification statements stored with it are kept when they still fit (same
    /// name and account key), dropped otherwise (a renamed business loses its mark until a
    /// verifier signs the new name). Returns the stored version. Needs a connection.
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
        let list = current_list(&shared, &conn, &account, true)
            .await?
            .ok_or(ClientError::NotBusiness)?;
        if list.family() != RoleFamily::Business {
            return Err(ClientError::NotBusiness);
        }
        let current = conn.fetch_business_profile(&account).await?;
        let engine = shared.engine.clone();
        let published = blocking(move || {
            let own = engine.own_devices()?.ok_or(ClientError::NotKeyHolder)?;
            let key = own.account_key.as_ref().ok_or(ClientError::NotKeyHolder)?;
            let ak = key.public().to_bytes();
            let (version, statements) = match current {
                Some(c) if c.profile.body.account_key == ak => (
                    c.profile.body.profile_version.checked_add(1).ok_or(
                        ClientError::BusinessProfileRefused(
                            sealpost_devices::ProfileError::Exhausted,
                        ),
                    )?,
                    c.verifications,
                ),
                _ => (1, Vec::new()),
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
                route: None,
                verifications,
            })
        })
        .await?;
        let version = conn.publish_business_profile(published).await?;
        tracing::info!(version, "business profile published");
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
        let list = current_list(&shared, &conn, &account, true)
            .await?
            .ok_or(ClientError::NotBusiness)?;
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
    /// passes the profile pin (section 3.4); `None` when the relay has none and this device
    /// pinned none. A profile the pin refuses (a rollback, an equivocation) is an error and
    /// the pin stays; without a connection the pinned profile is returned.
    /// [`BusinessProfile::verified_by`] lists the trusted verifiers
    /// ([`ClientConfig::trusted_verifiers`]) whose statements hold now (section 4.2).
    pub async fn business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<BusinessProfile>, ClientError> {
        let shared = self.shared()?;
        let trusted = shared.config.trusted_verifiers.clone();
        let engine = shared.engine.clone();
        let a = account.clone();
        let Ok(conn) = shared.connection() else {
            let pinned = blocking(move || Ok(engine.store.profile_pin(&a)?)).await?;
            return Ok(pinned.map(|p| view(&p, &[], &trusted)));
        };
        let Some(list) = current_list(&shared, &conn, account, false).await? else {
            return Ok(None);
        };
        let fetched = conn.fetch_business_profile(account).await?;
        let key = list.account_key();
        blocking(move || accept_profile(&engine, &a, &key, fetched, &trusted)).await
    }
}

/// Verifies `fetched` under `key`, applies the pin and commits it; returns what to show.
fn accept_profile(
    engine: &Engine,
    account: &AccountId,
    key: &AccountKey,
    fetched: Option<PublishedProfile>,
    trusted: &[sealpost_devices::TrustedVerifier],
) -> Result<Option<BusinessProfile>, ClientError> {
    let pinned = engine
        .store
        .profile_pin(account)?
        .filter(|p| p.account_key() == key.to_bytes());
    let Some(fetched) = fetched else {
        return Ok(pinned.map(|p| view(&p, &[], trusted)));
    };
    let offered = VerifiedBusinessProfile::verify(&fetched.profile, account, key)
        .map_err(ClientError::BusinessProfileRefused)?;
    let accepted = match pinned {
        None => true,
        Some(p) => BusinessProfilePin::new(p)
            .accept(&offered)
            .map_err(ClientError::BusinessProfileRefused)?,
    };
    if accepted {
        let mut batch = Batch::new();
        engine.store.put_profile_pin(&mut batch, &offered);
        engine.store.commit(batch)?;
    }
    Ok(Some(view(&offered, &fetched.verifications, trusted)))
}

fn view(
    profile: &VerifiedBusinessProfile,
    statements: &[BusinessVerification],
    trusted: &[sealpost_devices::TrustedVerifier],
) -> BusinessProfile {
    BusinessProfile {
        account: profile.signed().body.account.clone(),
        fields: profile.fields().clone(),
        version: profile.profile_version(),
        account_key: profile.account_key(),
        verified_by: verified_by(statements, profile, trusted, now_ms())
            .into_iter()
            .map(|t| t.name.clone())
            .collect(),
    }
}
