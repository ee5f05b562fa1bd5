//! Business accounts (spec/business.md 3, 4 and 7): the profile pin and default route this
//! device keeps per business, and whom a message to a business goes to.

use super::*;
use crate::store::BusinessRecord;
use sealpost_devices::{
    BusinessProfilePin, VerifiedBusinessProfile, VerifiedDeviceList, VerifiedRoute, verified_by,
};
use sealpost_wire::business::{BusinessProfileFields, BusinessVerification, PublishedProfile};

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
    /// The names (from [`crate::ClientConfig::trusted_verifiers`]) of the verifiers whose
    /// statements about this business hold now; empty: not verified.
    pub verified_by: Vec<String>,
    /// The devices the business routes new conversations to (its default route, section
    /// 7), as listed now; empty when it does not route (every device receives).
    pub routed_to: Vec<DeviceId>,
}

impl Engine {
    /// Verifies `fetched` under `list`'s key, applies the profile pin and the route's version
    /// rule, commits what changed, and returns what to show.
    pub(crate) fn accept_business(
        &self,
        list: &VerifiedDeviceList,
        fetched: Option<PublishedProfile>,
        trusted: &[sealpost_devices::TrustedVerifier],
        now_ms: u64,
    ) -> Result<Option<BusinessProfile>, ClientError> {
        let _g = self.lock()?;
        let account = list.account();
        let key = list.account_key();
        let mut record = self.store.business_record(account)?;
        let held_profile = record
            .profile
            .clone()
            .filter(|p| p.account_key() == key.to_bytes());
        let held_route = current_default_route(&record, list);
        let Some(fetched) = fetched else {
            return Ok(
                held_profile.map(|p| view(&p, &[], trusted, list, held_route.as_ref(), now_ms))
            );
        };
        let offered = VerifiedBusinessProfile::verify(&fetched.profile, account, &key)
            .map_err(ClientError::BusinessProfileRefused)?;
        let mut changed = match &held_profile {
            None => true,
            Some(p) => BusinessProfilePin::new(p.clone())
                .accept(&offered)
                .map_err(ClientError::BusinessProfileRefused)?,
        };
        let mut route = held_route;
        if let Some(r) = &fetched.route {
            let verified =
                VerifiedRoute::verify(r, list, None, None).map_err(ClientError::RouteRefused)?;
            if verified
                .replaces(route.as_ref())
                .map_err(ClientError::RouteRefused)?
            {
                changed = true;
                route = Some(verified);
            }
        }
        if changed {
            record = BusinessRecord {
                profile: Some(offered.clone()),
                default_route: route.as_ref().map(|r| r.signed().clone()),
                conversation_route: record.conversation_route.take(),
            };
            let mut batch = Batch::new();
            self.store.put_business_record(&mut batch, account, &record);
            self.store.commit(batch)?;
        }
        Ok(Some(view(
            &offered,
            &fetched.verifications,
            trusted,
            list,
            route.as_ref(),
            now_ms,
        )))
    }
}

/// The stored default route, if it is still valid for `list` (the same account key, its
/// signature).
fn current_default_route(
    record: &BusinessRecord,
    list: &VerifiedDeviceList,
) -> Option<VerifiedRoute> {
    record
        .default_route
        .as_ref()
        .and_then(|r| VerifiedRoute::verify(r, list, None, None).ok())
}

fn view(
    profile: &VerifiedBusinessProfile,
    statements: &[BusinessVerification],
    trusted: &[sealpost_devices::TrustedVerifier],
    list: &VerifiedDeviceList,
    route: Option<&VerifiedRoute>,
    now_ms: u64,
) -> BusinessProfile {
    BusinessProfile {
        account: profile.signed().body.account.clone(),
        fields: profile.fields().clone(),
        version: profile.profile_version(),
        account_key: profile.account_key(),
        verified_by: verified_by(statements, profile, trusted, now_ms)
            .into_iter()
            .map(|t| t.name.clone())
            .collect(),
        routed_to: route
            .map(|r| {
                r.devices()
                    .iter()
                    .filter(|d| list.device(**d).is_some())
                    .map(|d| DeviceId(*d))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
