//! Business profiles and verification statements (`spec/business.md` sections 3 and 4):
//! signing, verification, the profile pin, and the check a customer's client makes before
//! it shows "verified by".

use crate::{AccountKey, AccountKeyPair};
use sealpost_crypto::ed25519::{Signature, SigningKey, VerifyingKey};
use sealpost_wire::business::{
    BusinessProfileBody, BusinessProfileFields, BusinessVerification, BusinessVerificationBody,
    SignedBusinessProfile,
};
use sealpost_wire::{AccountId, DecodeError};

/// Label before the profile body in the account key's signature.
pub const BUSINESS_PROFILE_LABEL: &[u8] = b"Sealpost_BusinessProfile_v1";
/// Label before the statement body in a verifier's signature.
pub const BUSINESS_VERIFICATION_LABEL: &[u8] = b"Sealpost_BusinessVerification_v1";

/// Why a profile is not valid, or not accepted over the pinned one (`spec/business.md`
/// 3.3, 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The bytes are not a profile, or a field breaks its rule.
    #[error("business profile does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The profile names another account.
    #[error("business profile names another account")]
    WrongAccount,
    /// The profile names another account key than the account's list.
    #[error("business profile is signed for another account key")]
    WrongAccountKey,
    /// The account key's signature does not verify.
    #[error("business profile signature does not verify")]
    BadSignature,
    /// Older than the pinned profile.
    #[error("business profile rolled back from version {pinned} to {offered}")]
    RolledBack {
        /// The pinned version.
        pinned: u64,
        /// The offered version.
        offered: u64,
    },
    /// A different profile with the pinned version.
    #[error("two different business profiles with version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
    /// The profile version cannot be raised further.
    #[error("business profile version exhausted")]
    Exhausted,
}

/// Why a statement does not make a profile "verified" (`spec/business.md` 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// The bytes are not a statement.
    #[error("verification statement does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Its verifier is not one this client trusts.
    #[error("verification statement by a verifier this client does not trust")]
    UntrustedVerifier,
    /// It names another account.
    #[error("verification statement names another account")]
    WrongAccount,
    /// It names another account key.
    #[error("verification statement names another account key")]
    WrongAccountKey,
    /// It names another business name than the profile's.
    #[error("verification statement names another business name")]
    WrongName,
    /// The verifier key is not a valid Ed25519 key, or the signature does not verify.
    #[error("verification statement signature does not verify")]
    BadSignature,
    /// Outside `issued_at ..< expires_at` by the checking clock.
    #[error("verification statement expired or not yet valid")]
    Expired,
}

/// A verifier a client trusts: the name it shows, and the key it checks statements with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedVerifier {
    /// The name shown to users ("Sealpost Business Registry").
    pub name: String,
    /// The verifier's Ed25519 public key.
    pub key: [u8; 32],
}

fn labelled(label: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + body.len());
    out.extend_from_slice(label);
    out.extend_from_slice(body);
    out
}

impl AccountKeyPair {
    /// Signs a business profile of `account` (`spec/business.md` 3.1). Fails when a field
    /// breaks its rule or `profile_version` is 0.
    pub fn sign_business_profile(
        &self,
        account: &AccountId,
        profile_version: u64,
        issued_at: u64,
        fields: BusinessProfileFields,
    ) -> Result<SignedBusinessProfile, ProfileError> {
        let body = BusinessProfileBody {
            account: account.clone(),
            account_key: self.public().to_bytes(),
            profile_version,
            issued_at,
            fields,
        };
        let message = labelled(BUSINESS_PROFILE_LABEL, &body.encode()?);
        let signature = self.sign_bytes(&message).to_bytes();
        Ok(SignedBusinessProfile { body, signature })
    }
}

/// A business profile valid for its account under the account's key (section 3.3). Only
/// this crate makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBusinessProfile {
    profile: SignedBusinessProfile,
    encoded: Vec<u8>,
}

impl VerifiedBusinessProfile {
    /// Verifies `profile` for `account` under `account_key` (the account key of the
    /// account's verified device list): section 3.3, in order.
    pub fn verify(
        profile: &SignedBusinessProfile,
        account: &AccountId,
        account_key: &AccountKey,
    ) -> Result<Self, ProfileError> {
        let body = profile.body.encode()?;
        if &profile.body.account != account {
            return Err(ProfileError::WrongAccount);
        }
        if profile.body.account_key != account_key.to_bytes() {
            return Err(ProfileError::WrongAccountKey);
        }
        let signature =
            Signature::from_slice(&profile.signature).map_err(|_| ProfileError::BadSignature)?;
        account_key
            .0
            .verify(&labelled(BUSINESS_PROFILE_LABEL, &body), &signature)
            .map_err(|_| ProfileError::BadSignature)?;
        let mut encoded = body;
        encoded.extend_from_slice(&profile.signature);
        Ok(Self {
            profile: profile.clone(),
            encoded,
        })
    }

    /// Decodes and verifies an encoding.
    pub fn verify_bytes(
        bytes: &[u8],
        account: &AccountId,
        account_key: &AccountKey,
    ) -> Result<Self, ProfileError> {
        Self::verify(&SignedBusinessProfile::decode(bytes)?, account, account_key)
    }

    /// The profile.
    pub fn signed(&self) -> &SignedBusinessProfile {
        &self.profile
    }

    /// What the business says about itself.
    pub fn fields(&self) -> &BusinessProfileFields {
        &self.profile.body.fields
    }

    /// The profile's version.
    pub fn profile_version(&self) -> u64 {
        self.profile.body.profile_version
    }

    /// The account key it is signed under.
    pub fn account_key(&self) -> [u8; 32] {
        self.profile.body.account_key
    }

    /// The canonical encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// The last profile a client accepted for one business (`spec/business.md` 3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessProfilePin(VerifiedBusinessProfile);

impl BusinessProfilePin {
    /// Pins a first profile.
    pub fn new(profile: VerifiedBusinessProfile) -> Self {
        Self(profile)
    }

    /// The pinned profile.
    pub fn profile(&self) -> &VerifiedBusinessProfile {
        &self.0
    }

    /// Applies section 3.4 to `offered` (already verified under the account's current key):
    /// `Ok(true)` when it replaces the pin, `Ok(false)` when it is the pinned profile, and
    /// the refusal otherwise (the pin is kept).
    pub fn accept(&mut self, offered: &VerifiedBusinessProfile) -> Result<bool, ProfileError> {
        let pinned = &self.0;
        if pinned.account_key() != offered.account_key() {
            self.0 = offered.clone();
            return Ok(true);
        }
        let (p, o) = (pinned.profile_version(), offered.profile_version());
        if o < p {
            return Err(ProfileError::RolledBack {
                pinned: p,
                offered: o,
            });
        }
        if o == p {
            return if pinned.encoded() == offered.encoded() {
                Ok(false)
            } else {
                Err(ProfileError::Equivocation { version: o })
            };
        }
        self.0 = offered.clone();
        Ok(true)
    }
}

/// Signs a verification statement with the verifier's key (`spec/business.md` 4.1). Fails
/// when the name breaks its rule or `expires_at` is not above `issued_at`.
pub fn sign_business_verification(
    verifier: &SigningKey,
    account: &AccountId,
    account_key: &AccountKey,
    business_name: &str,
    issued_at: u64,
    expires_at: u64,
) -> Result<BusinessVerification, DecodeError> {
    let body = BusinessVerificationBody {
        verifier_key: verifier.verifying_key().to_bytes(),
        account: account.clone(),
        account_key: account_key.to_bytes(),
        business_name: business_name.to_owned(),
        issued_at,
        expires_at,
    };
    let message = labelled(BUSINESS_VERIFICATION_LABEL, &body.encode()?);
    Ok(BusinessVerification {
        body,
        signature: verifier.sign(&message).to_bytes(),
    })
}

/// Checks that `statement` is about this profile (account, account key, name) and that its
/// signature verifies under its own `verifier_key`: section 4.2 items 3 and 4, which the
/// relay checks too (`spec/relay.md` 3.14 rule 4). Trust and time are not checked.
pub fn check_verification_binding(
    statement: &BusinessVerification,
    profile: &VerifiedBusinessProfile,
) -> Result<(), VerificationError> {
    let b = &statement.body;
    let p = &profile.signed().body;
    if b.account != p.account {
        return Err(VerificationError::WrongAccount);
    }
    if b.account_key != p.account_key {
        return Err(VerificationError::WrongAccountKey);
    }
    if b.business_name.as_bytes() != p.fields.name.as_bytes() {
        return Err(VerificationError::WrongName);
    }
    let key =
        VerifyingKey::from_bytes(&b.verifier_key).map_err(|_| VerificationError::BadSignature)?;
    let signature =
        Signature::from_slice(&statement.signature).map_err(|_| VerificationError::BadSignature)?;
    key.verify(
        &labelled(BUSINESS_VERIFICATION_LABEL, &b.encode()?),
        &signature,
    )
    .map_err(|_| VerificationError::BadSignature)
}

/// The whole check of `spec/business.md` 4.2 for one statement served with `profile`:
/// returns the trusted verifier that vouches for the business at `now_ms`.
pub fn check_verification<'t>(
    statement: &BusinessVerification,
    profile: &VerifiedBusinessProfile,
    trusted: &'t [TrustedVerifier],
    now_ms: u64,
) -> Result<&'t TrustedVerifier, VerificationError> {
    let verifier = trusted
        .iter()
        .find(|t| t.key == statement.body.verifier_key)
        .ok_or(VerificationError::UntrustedVerifier)?;
    check_verification_binding(statement, profile)?;
    if now_ms < statement.body.issued_at || now_ms >= statement.body.expires_at {
        return Err(VerificationError::Expired);
    }
    Ok(verifier)
}

/// The trusted verifiers that vouch for `profile` at `now_ms` by the `statements` served
/// with it, each once, in the order of the statements; statements that fail are skipped
/// (section 4.2: they change nothing else).
pub fn verified_by<'t>(
    statements: &[BusinessVerification],
    profile: &VerifiedBusinessProfile,
    trusted: &'t [TrustedVerifier],
    now_ms: u64,
) -> Vec<&'t TrustedVerifier> {
    let mut out: Vec<&TrustedVerifier> = Vec::new();
    for s in statements {
        if let Ok(v) = check_verification(s, profile, trusted, now_ms)
            && !out.iter().any(|o| o.key == v.key)
        {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::new("+15550100300").unwrap()
    }

    fn fields(name: &str) -> BusinessProfileFields {
        BusinessProfileFields {
            name: name.into(),
            category: "Bicycle shop".into(),
            reply_within: 900,
            ..BusinessProfileFields::default()
        }
    }

    fn setup() -> (AccountKeyPair, VerifiedBusinessProfile, SigningKey) {
        let mut rng = rand::rng();
        let ak = AccountKeyPair::generate(&mut rng);
        let signed = ak
            .sign_business_profile(&account(), 1, 0, fields("Velo Lina"))
            .unwrap();
        let verified = VerifiedBusinessProfile::verify(&signed, &account(), &ak.public()).unwrap();
        (ak, verified, SigningKey::generate(&mut rng))
    }

    #[test]
    fn a_profile_verifies_only_for_its_account_key_and_bytes() {
        let (ak, verified, _) = setup();
        let other = AccountKeyPair::generate(&mut rand::rng());
        let signed = verified.signed().clone();
        assert_eq!(
            VerifiedBusinessProfile::verify(&signed, &account(), &other.public()),
            Err(ProfileError::WrongAccountKey)
        );
        assert_eq!(
            VerifiedBusinessProfile::verify(
                &signed,
                &AccountId::new("+15550100301").unwrap(),
                &ak.public()
            ),
            Err(ProfileError::WrongAccount)
        );
        let mut changed = signed.clone();
        changed.body.fields.hours = "Mon-Sun 0-24".into();
        assert_eq!(
            VerifiedBusinessProfile::verify(&changed, &account(), &ak.public()),
            Err(ProfileError::BadSignature)
        );
        // Every byte of the encoding is covered: flip each one.
        let bytes = verified.encoded().to_vec();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(VerifiedBusinessProfile::verify_bytes(&b, &account(), &ak.public()).is_err());
        }
    }

    #[test]
    fn the_pin_refuses_rollback_and_equivocation_and_follows_a_new_key() {
        let (ak, v1, _) = setup();
        let sign = |version, name: &str, key: &AccountKeyPair| {
            let s = key
                .sign_business_profile(&account(), version, 0, fields(name))
                .unwrap();
            VerifiedBusinessProfile::verify(&s, &account(), &key.public()).unwrap()
        };
        let v2 = sign(2, "Velo Lina", &ak);
        let mut pin = BusinessProfilePin::new(v2.clone());
        assert_eq!(pin.accept(&v2), Ok(false));
        assert_eq!(
            pin.accept(&v1),
            Err(ProfileError::RolledBack {
                pinned: 2,
                offered: 1
            })
        );
        assert_eq!(
            pin.accept(&sign(2, "Velo Lina Ltd", &ak)),
            Err(ProfileError::Equivocation { version: 2 })
        );
        assert_eq!(pin.profile(), &v2);
        assert_eq!(pin.accept(&sign(3, "Velo", &ak)), Ok(true));
        let new_key = AccountKeyPair::generate(&mut rand::rng());
        let fresh = sign(1, "Velo", &new_key);
        assert_eq!(pin.accept(&fresh), Ok(true));
        assert_eq!(pin.profile(), &fresh);
    }

    #[test]
    fn a_statement_counts_only_from_a_trusted_verifier_for_this_key_and_name_in_time() {
        let (ak, profile, verifier) = setup();
        let trusted = [TrustedVerifier {
            name: "Registry".into(),
            key: verifier.verifying_key().to_bytes(),
        }];
        let statement =
            sign_business_verification(&verifier, &account(), &ak.public(), "Velo Lina", 10, 20)
                .unwrap();
        assert_eq!(
            check_verification(&statement, &profile, &trusted, 10).map(|t| t.name.as_str()),
            Ok("Registry")
        );
        assert_eq!(
            check_verification(&statement, &profile, &trusted, 20),
            Err(VerificationError::Expired)
        );
        assert_eq!(
            check_verification(&statement, &profile, &trusted, 9),
            Err(VerificationError::Expired)
        );
        assert_eq!(
            check_verification(&statement, &profile, &[], 10),
            Err(VerificationError::UntrustedVerifier)
        );
        let renamed =
            sign_business_verification(&verifier, &account(), &ak.public(), "Velo Lin", 10, 20)
                .unwrap();
        assert_eq!(
            check_verification(&renamed, &profile, &trusted, 10),
            Err(VerificationError::WrongName)
        );
        let other_key = AccountKeyPair::generate(&mut rand::rng());
        let stale = sign_business_verification(
            &verifier,
            &account(),
            &other_key.public(),
            "Velo Lina",
            10,
            20,
        )
        .unwrap();
        assert_eq!(
            check_verification(&stale, &profile, &trusted, 10),
            Err(VerificationError::WrongAccountKey)
        );
        let mut forged = statement.clone();
        forged.body.expires_at = 30;
        assert_eq!(
            check_verification(&forged, &profile, &trusted, 25),
            Err(VerificationError::BadSignature)
        );
        let statements = vec![forged, statement.clone(), statement];
        let by = verified_by(&statements, &profile, &trusted, 15);
        assert_eq!(by.len(), 1);
    }
}
