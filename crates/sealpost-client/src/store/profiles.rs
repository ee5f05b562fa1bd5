//! Business-profile pins (spec/client-store.md 5.12, spec/business.md 3.4): the last
//! business profile this device accepted for each business account.

use super::records::{malformed, start};
use super::{Batch, Store, Table};
use crate::error::StoreError;
use sealpost_crypto::Zeroizing;
use sealpost_devices::{AccountKey, VerifiedBusinessProfile};
use sealpost_wire::business::MAX_BUSINESS_PROFILE_LEN;
use sealpost_wire::{AccountId, Reader, Writer};

const TABLE: &str = "profiles";

/// `0x01 || account (AccountId) || var16(SignedBusinessProfile)`.
fn encode(profile: &VerifiedBusinessProfile) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(80 + profile.encoded().len());
    w.u8(super::RECORD_PLAINTEXT_VERSION);
    profile.signed().body.account.encode_into(&mut w);
    w.var_bytes16(profile.encoded());
    Zeroizing::new(w.into_bytes())
}

/// Decodes a pin of `account`; the profile is verified again under the account key it
/// names (the record is sealed; this catches a record of another account or a bug).
fn decode(bytes: &[u8], account: &AccountId) -> Result<VerifiedBusinessProfile, StoreError> {
    let m = malformed(TABLE);
    let mut r = Reader::new(bytes);
    start(&mut r).map_err(&m)?;
    let named = AccountId::decode_from(&mut r).map_err(&m)?;
    if &named != account {
        return Err(StoreError::Inconsistent("business profile pin account"));
    }
    let profile = r
        .var_bytes16("business profile", MAX_BUSINESS_PROFILE_LEN)
        .map_err(&m)?;
    r.finish().map_err(&m)?;
    let decoded = sealpost_wire::business::SignedBusinessProfile::decode(profile).map_err(&m)?;
    let key = AccountKey::from_bytes(&decoded.body.account_key)
        .map_err(|_| StoreError::Inconsistent("business profile pin key"))?;
    VerifiedBusinessProfile::verify(&decoded, account, &key)
        .map_err(|_| StoreError::Inconsistent("business profile pin signature"))
}

impl Store {
    /// The pinned business profile of `account`, if this device accepted one.
    pub(crate) fn profile_pin(
        &self,
        account: &AccountId,
    ) -> Result<Option<VerifiedBusinessProfile>, StoreError> {
        match self
            .backend()
            .get(Table::Profiles, &self.account_tag(account))?
        {
            None => Ok(None),
            Some(row) => Ok(Some(decode(
                &self.open_row(Table::Profiles, &row)?,
                account,
            )?)),
        }
    }

    /// Pins `profile` for its account (replacing the pin).
    pub(crate) fn put_profile_pin(&self, batch: &mut Batch, profile: &VerifiedBusinessProfile) {
        let key = self.account_tag(&profile.signed().body.account).to_vec();
        self.put(batch, Table::Profiles, key, Vec::new(), 0, &encode(profile));
    }
}
