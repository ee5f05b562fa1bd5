//! Business-profile requests (spec/relay.md 3.14).

use super::{Connection, unexpected};
use crate::error::ClientError;
use sealpost_wire::AccountId;
use sealpost_wire::business::PublishedProfile;
use sealpost_wire::relay::{Request, Response};

impl Connection {
    /// `PublishBusinessProfile`: stores this account's profile and statements; returns the
    /// stored version.
    pub(crate) async fn publish_business_profile(
        &self,
        published: PublishedProfile,
    ) -> Result<u64, ClientError> {
        match self
            .request(&Request::PublishBusinessProfile(Box::new(published)))
            .await?
        {
            Response::BusinessProfileStored { profile_version } => Ok(profile_version),
            other => Err(unexpected("PublishBusinessProfile", &other)),
        }
    }

    /// `FetchBusinessProfile`: `account`'s profile and statements as the relay stores them,
    /// or `None`. Not verified here.
    pub(crate) async fn fetch_business_profile(
        &self,
        account: &AccountId,
    ) -> Result<Option<PublishedProfile>, ClientError> {
        match self
            .request(&Request::FetchBusinessProfile {
                account: account.clone(),
            })
            .await?
        {
            Response::BusinessProfile(p) => Ok(p.map(|p| *p)),
            other => Err(unexpected("FetchBusinessProfile", &other)),
        }
    }
}
