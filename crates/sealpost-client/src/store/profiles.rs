//! What this device keeps about each business it talks to (spec/client-store.md 5.12,
//! spec/business.md 3.4 and 7.3): the last business profile it accepted (the profile pin)
//! and the business's default route.

use super::records::malformed;
use super::{Batch, Store, Table};
use crate::error::StoreError;
use sealpost_crypto::Zeroizing;
use sealpost_devices::{AccountKey, VerifiedBusinessProfile};
use sealpost_wire::business::{MAX_BUSINESS_PROFILE_LEN, MAX_ROUTE_LEN, SignedRoute};
use sealpost_wire::{AccountId, Reader, Writer};

const TABLE: &str = "profiles";

/// The record of one business account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BusinessRecord {
    /// The profile pin.
    pub(crate) profile: Option<VerifiedBusinessProfile>,
    /// The default route as last accepted (its encoding was verified when accepted; it is
    /// verified again against the current list before every use).
    pub(crate) default_route: Option<SignedRoute>,
    /// The conversation route this device's account holds from the business (spec/business.md
    /// 7.3), as last accepted; verified again before every use like the default route.
    pub(crate) conversation_route: Option<SignedRoute>,
}

/// Version byte of a business record with a conversation route (client-store.md 5.12).
const WITH_CONVERSATION_ROUTE: u8 = 2;

/// `0x01 || account || has_profile: flag [var16(profile)] || has_route: flag [var16(route)]`;
/// with a conversation route, version `0x02` and `var16(conversation route)` after them.
fn encode(account: &AccountId, r: &BusinessRecord) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(3200);
    let conversation = r.conversation_route.as_ref().and_then(|x| x.encode().ok());
    w.u8(if conversation.is_some() {
        WITH_CONVERSATION_ROUTE
    } else {
        super::RECORD_PLAINTEXT_VERSION
    });
    account.encode_into(&mut w);
    w.flag(r.profile.is_some());
    if let Some(p) = &r.profile {
        w.var_bytes16(p.encoded());
    }
    let route = r.default_route.as_ref().and_then(|x| x.encode().ok());
    w.flag(route.is_some());
    if let Some(route) = route {
        w.var_bytes16(&route);
    }
    if let Some(route) = conversation {
        w.var_bytes16(&route);
    }
    Zeroizing::new(w.into_bytes())
}

/// Decodes the record of `account`; the profile is verified again under the account key it
/// names (the record is sealed; this catches a record of another account or a bug).
fn decode(bytes: &[u8], account: &AccountId) -> Result<BusinessRecord, StoreError> {
    let m = malformed(TABLE);
    let mut r = Reader::new(bytes);
    let version = r.u8().map_err(&m)?;
    if version != super::RECORD_PLAINTEXT_VERSION && version != WITH_CONVERSATION_ROUTE {
        return Err(m(sealpost_wire::DecodeError::UnsupportedVersion(version)));
    }
    let named = AccountId::decode_from(&mut r).map_err(&m)?;
    if &named != account {
        return Err(StoreError::Inconsistent("business record account"));
    }
    let profile = if r.flag("has_profile").map_err(&m)? {
        let bytes = r
            .var_bytes16("business profile", MAX_BUSINESS_PROFILE_LEN)
            .map_err(&m)?;
        let decoded = sealpost_wire::business::SignedBusinessProfile::decode(bytes).map_err(&m)?;
        let key = AccountKey::from_bytes(&decoded.body.account_key)
            .map_err(|_| StoreError::Inconsistent("business profile pin key"))?;
        Some(
            VerifiedBusinessProfile::verify(&decoded, account, &key)
                .map_err(|_| StoreError::Inconsistent("business profile pin signature"))?,
        )
    } else {
        None
    };
    let default_route = if r.flag("has_route").map_err(&m)? {
        let bytes = r.var_bytes16("route", MAX_ROUTE_LEN).map_err(&m)?;
        Some(SignedRoute::decode(bytes).map_err(&m)?)
    } else {
        None
    };
    let conversation_route = if version == WITH_CONVERSATION_ROUTE {
        let bytes = r.var_bytes16("route", MAX_ROUTE_LEN).map_err(&m)?;
        Some(SignedRoute::decode(bytes).map_err(&m)?)
    } else {
        None
    };
    r.finish().map_err(&m)?;
    Ok(BusinessRecord {
        profile,
        default_route,
        conversation_route,
    })
}

impl Store {
    /// What this device keeps about the business `account` (empty if nothing).
    pub(crate) fn business_record(
        &self,
        account: &AccountId,
    ) -> Result<BusinessRecord, StoreError> {
        match self
            .backend()
            .get(Table::Profiles, &self.account_tag(account))?
        {
            None => Ok(BusinessRecord::default()),
            Some(row) => decode(&self.open_row(Table::Profiles, &row)?, account),
        }
    }

    /// Replaces the record of the business `account`.
    pub(crate) fn put_business_record(
        &self,
        batch: &mut Batch,
        account: &AccountId,
        record: &BusinessRecord,
    ) {
        let key = self.account_tag(account).to_vec();
        self.put(
            batch,
            Table::Profiles,
            key,
            Vec::new(),
            0,
            &encode(account, record),
        );
    }
}
