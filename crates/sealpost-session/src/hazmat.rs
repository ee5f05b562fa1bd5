//! Entry points for test vectors and tests only, behind the non-default `hazmat` feature.
//!
//! Each of these lets the caller choose a value that must be fresh and secret (ephemeral
//! keys, KEM randomness, a pickle salt) or read secret state in the clear. Used wrongly they
//! break the protocol's security; applications use [`crate::initiate`] and
//! [`Session::pickle`] instead.

use crate::handshake::initiate_with;
use crate::{
    HandshakeError, IdentityKeyPair, PICKLE_SALT_LEN, PickleError, PickleKey, Session,
    SessionAddresses, SessionConfig, VerifiedBundle,
};
use zeroize::Zeroizing;

pub use crate::handshake::InitiatorSecrets;

/// [`crate::initiate`] with explicitly supplied fresh secrets, for deterministic test
/// vectors. Reusing `secrets` for two handshakes breaks security.
pub fn initiate_with_secrets(
    local: &IdentityKeyPair,
    addresses: &SessionAddresses,
    bundle: &VerifiedBundle,
    secrets: InitiatorSecrets,
    config: SessionConfig,
) -> Result<Session, HandshakeError> {
    initiate_with(local, addresses, bundle, secrets, config)
}

/// The plaintext, versioned state encoding (spec/session.md, "Session state encoding"),
/// secret keys included. A legacy session gives back its version-1 bytes unchanged.
pub fn to_state_bytes(session: &Session) -> Zeroizing<Vec<u8>> {
    session.to_state_bytes()
}

/// Restores a session from [`to_state_bytes`] (version 2, or version 1 as a legacy session).
pub fn from_state_bytes(bytes: &[u8]) -> Result<Session, PickleError> {
    Session::from_state_bytes(bytes)
}

/// [`Session::pickle`] with an explicit salt. Never reuse a salt under one key.
pub fn pickle_with_salt(
    session: &Session,
    key: &PickleKey,
    salt: &[u8; PICKLE_SALT_LEN],
) -> Vec<u8> {
    session.pickle_with_salt(key, salt)
}
