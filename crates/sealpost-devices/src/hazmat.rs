//! Entry points for test vectors only, behind the non-default `hazmat` feature: they take
//! secrets that must be fresh and random from the caller.

use crate::LinkError;
use crate::provisioning::{self, LinkRequest};
use sealpost_crypto::x25519::X25519Secret;
use sealpost_wire::IdentityBytes;
use sealpost_wire::devices::{LinkInvitation, PROVISIONING_ID_LEN, ProvisioningBody};

/// [`LinkRequest::new`] with a chosen ephemeral secret.
pub fn link_request_with_secret(
    ephemeral: [u8; 32],
    provisioning_id: [u8; PROVISIONING_ID_LEN],
    identity: IdentityBytes,
) -> LinkRequest {
    LinkRequest::with_secret(
        X25519Secret::from_bytes(ephemeral),
        provisioning_id,
        identity,
    )
}

/// [`crate::seal_provisioning`] with a chosen ephemeral secret. Reusing one breaks the
/// provisioning key's single use.
pub fn seal_provisioning_with_secret(
    ephemeral: [u8; 32],
    invitation: &LinkInvitation,
    body: &ProvisioningBody,
) -> Result<Vec<u8>, LinkError> {
    provisioning::seal_with(X25519Secret::from_bytes(ephemeral), invitation, body)
}

/// [`crate::seal_account_key_backup`] with a chosen nonce. Reusing one under the same
/// backup key breaks the AEAD.
pub fn seal_account_key_backup_with_nonce(
    nonce: [u8; sealpost_wire::devices::BACKUP_NONCE_LEN],
    key: &crate::AccountKeyPair,
    account: &sealpost_wire::AccountId,
    backup_key: &[u8; 32],
) -> Result<sealpost_wire::devices::AccountKeyBackup, crate::BackupError> {
    crate::backup::seal_with_nonce(nonce, key, account, backup_key)
}
