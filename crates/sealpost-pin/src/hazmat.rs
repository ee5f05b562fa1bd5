//! Entry points for test vectors and tests only, behind the non-default `hazmat` feature.
//!
//! Each lets the caller choose a value that must be fresh and secret (the OPRF blind, the
//! OPRF key and its sharing, a salt). Chosen badly or reused they break the PIN protocol's
//! security; applications use [`crate::oprf::blind`], [`crate::vault::enroll`],
//! [`crate::vault::Recovery::start`] and [`crate::reminder::LocalVerifier::create`].

use crate::PinError;
use crate::normalize::NormalizedPin;
use crate::oprf::{Blind, BlindedElement, OprfKey};
use crate::reminder::{LOCAL_SALT_LEN, LocalVerifier};
use crate::stretch::{Argon2Params, UserSalt};
use crate::threshold::KeyShare;
use crate::vault::{Enrollment, MasterSecret, Recovery, VAULT_ID_LEN, VaultRecord};

/// Parses a canonical non-zero scalar as an OPRF blind.
pub fn blind_from_bytes(bytes: &[u8]) -> Result<Blind, PinError> {
    Blind::from_bytes(bytes)
}

/// RFC 9497 `Blind` with a caller-chosen blind.
pub fn blind_with(input: &[u8], blind: &Blind) -> Result<BlindedElement, PinError> {
    crate::oprf::blind_with(input, blind)
}

/// [`crate::vault::enroll`] with every random value supplied. **Never use the same `key`
/// twice** (see the vault's sealing in spec/pin.md).
#[allow(clippy::too_many_arguments)]
pub fn enroll_with_secrets(
    pin: &NormalizedPin,
    account: &str,
    master: &MasterSecret,
    params: &Argon2Params,
    user_salt: UserSalt,
    vault_id: [u8; VAULT_ID_LEN],
    key: &OprfKey,
    threshold: usize,
    shares: Vec<KeyShare>,
) -> Result<Enrollment, PinError> {
    crate::vault::enroll_with_secrets(
        pin, account, master, params, user_salt, vault_id, key, threshold, shares,
    )
}

/// [`Recovery::start`] with a caller-chosen blind.
pub fn recovery_start_with_blind(
    pin: &NormalizedPin,
    account: &str,
    record: VaultRecord,
    blind: Blind,
) -> Result<(Recovery, BlindedElement), PinError> {
    Recovery::start_with_blind(pin, account, record, blind)
}

/// [`LocalVerifier::create`] with a caller-chosen salt.
pub fn local_verifier_with_salt(
    pin: &NormalizedPin,
    params: &Argon2Params,
    salt: [u8; LOCAL_SALT_LEN],
) -> Result<LocalVerifier, PinError> {
    LocalVerifier::create_with_salt(pin, params, salt)
}
