//! Linking: the invitation a new device shows and the provisioning message the key holder
//! seals to it (`spec/devices.md` section 6).

use crate::LinkError;
use crate::list::{self, VerifiedDeviceList};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sealpost_crypto::ed25519::Signature;
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_crypto::{CryptoError, CryptoRng, aead, kdf};
use sealpost_wire::devices::{
    LINK_INVITATION_LEN, LinkInvitation, PROVISIONING_ID_LEN, ProvisioningBody,
    ProvisioningEnvelope, SignedDeviceList,
};
use sealpost_wire::{AccountId, IdentityBytes};
use zeroize::Zeroizing;

/// Label and KDF info prefix of the provisioning message.
pub const PROVISIONING_INFO: &[u8] = b"Sealpost_Provision_v1";
/// Prefix of an invitation's text form.
pub const LINK_TEXT_PREFIX: &str = "sealpost-link:";

/// A new device's side of linking: its invitation and the ephemeral secret that opens the
/// answer. Not `Clone`: one invitation, one secret, used once.
pub struct LinkRequest {
    ephemeral: X25519Secret,
    invitation: LinkInvitation,
}

impl LinkRequest {
    /// A fresh ephemeral key for the provisioning id the relay gave this device.
    pub fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        provisioning_id: [u8; PROVISIONING_ID_LEN],
        identity: IdentityBytes,
    ) -> Self {
        Self::with_secret(X25519Secret::generate(rng), provisioning_id, identity)
    }

    pub(crate) fn with_secret(
        ephemeral: X25519Secret,
        provisioning_id: [u8; PROVISIONING_ID_LEN],
        identity: IdentityBytes,
    ) -> Self {
        let invitation = LinkInvitation {
            provisioning_id,
            ephemeral: ephemeral.public_key().to_bytes(),
            identity,
        };
        Self {
            ephemeral,
            invitation,
        }
    }

    /// The invitation.
    pub fn invitation(&self) -> &LinkInvitation {
        &self.invitation
    }

    /// The invitation's text form (and QR code content): `sealpost-link:` and base64url.
    pub fn invitation_text(&self) -> String {
        let mut text = String::from(LINK_TEXT_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.invitation.encode(), &mut text);
        text
    }

    /// Opens a provisioning envelope addressed to this invitation and checks what it
    /// says about this device (section 6.3). Failure changes nothing: the request stays
    /// usable.
    pub fn open(&self, envelope: &[u8]) -> Result<ProvisionedLink, LinkError> {
        let envelope = ProvisioningEnvelope::decode(envelope)?;
        let sender = X25519Public::from_bytes(envelope.sender_ephemeral);
        let info = info(&self.invitation, &envelope.sender_ephemeral);
        let key = key(&self.ephemeral, &sender, &info)?;
        let plaintext = Zeroizing::new(
            aead::open(&key, &[0; 12], &info, &envelope.sealed).map_err(|_| LinkError::Decrypt)?,
        );
        let body = ProvisioningBody::decode(&plaintext)?;
        let index = body
            .list
            .body
            .entries
            .iter()
            .position(|e| e.device_id == body.device_id)
            .ok_or(LinkError::NotListed)?;
        check_new_entry(&body, index, &self.invitation.identity)?;
        let account = body.list.body.account.clone();
        list::check(&body.list, &account, Some(index))?;
        Ok(ProvisionedLink {
            device_id: body.device_id,
            index,
            list: body.list,
        })
    }
}

impl core::fmt::Debug for LinkRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkRequest").finish_non_exhaustive()
    }
}

/// A provisioning message that opened and checked: the new device's id on a list signed
/// by the account key, still without the new device's own binding.
#[derive(Debug)]
pub struct ProvisionedLink {
    device_id: u32,
    index: usize,
    list: SignedDeviceList,
}

impl ProvisionedLink {
    /// The account the device is about to join (show it to the user first).
    pub fn account(&self) -> &AccountId {
        &self.list.body.account
    }

    /// The id the new device gets.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The key holder's display name on the list.
    pub fn key_holder_name(&self) -> Option<&str> {
        self.list
            .body
            .entries
            .iter()
            .find(|e| e.role.holds_account_key())
            .map(|e| e.name.as_str())
    }

    /// Adds this device's binding, signed by `sign` (its identity's Ed25519 key), and
    /// returns the complete list for `LinkDevice`. A signer that is not the listed
    /// identity's is [`LinkError::WrongKey`].
    pub fn complete(
        mut self,
        sign: impl FnOnce(&[u8]) -> Signature,
    ) -> Result<VerifiedDeviceList, LinkError> {
        let account = self.list.body.account.clone();
        let account_key = crate::AccountKey::from_bytes(&self.list.body.account_key)?;
        let identity = self
            .list
            .body
            .entries
            .get(self.index)
            .map(|e| e.identity)
            .ok_or(LinkError::NotListed)?;
        let binding = list::sign_binding(&account, &account_key, &identity, sign)?;
        let slot = self
            .list
            .bindings
            .get_mut(self.index)
            .ok_or(LinkError::NotListed)?;
        *slot = binding;
        Ok(VerifiedDeviceList::verify_decoded(self.list, &account)?)
    }
}

/// Reads an invitation's text form (section 6.2): exactly the prefix and 152 base64url
/// characters without padding.
pub fn parse_invitation(text: &str) -> Result<LinkInvitation, LinkError> {
    let encoded = text
        .strip_prefix(LINK_TEXT_PREFIX)
        .ok_or(LinkError::InvalidInvitation)?;
    if encoded.len() != LINK_INVITATION_LEN / 3 * 4 {
        return Err(LinkError::InvalidInvitation);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| LinkError::InvalidInvitation)?;
    Ok(LinkInvitation::decode(&bytes)?)
}

/// The key holder's side: seals `body` (made by [`crate::AccountKeyPair::link_device`]
/// for the invitation's identity) to the invitation, with a fresh ephemeral key.
pub fn seal_provisioning<R: CryptoRng + ?Sized>(
    rng: &mut R,
    invitation: &LinkInvitation,
    body: &ProvisioningBody,
) -> Result<Vec<u8>, LinkError> {
    seal_with(X25519Secret::generate(rng), invitation, body)
}

pub(crate) fn seal_with(
    ephemeral: X25519Secret,
    invitation: &LinkInvitation,
    body: &ProvisioningBody,
) -> Result<Vec<u8>, LinkError> {
    let index = body
        .list
        .body
        .entries
        .iter()
        .position(|e| e.device_id == body.device_id)
        .ok_or(LinkError::NotListed)?;
    check_new_entry(body, index, &invitation.identity)?;
    let sender = ephemeral.public_key().to_bytes();
    let info = info(invitation, &sender);
    let key = key(
        &ephemeral,
        &X25519Public::from_bytes(invitation.ephemeral),
        &info,
    )?;
    let plaintext = Zeroizing::new(body.encode()?);
    let sealed = aead::seal(&key, &[0; 12], &info, &plaintext);
    Ok(ProvisioningEnvelope {
        sender_ephemeral: sender,
        sealed,
    }
    .encode())
}

/// The new entry names `identity` and does not hold the account key.
fn check_new_entry(
    body: &ProvisioningBody,
    index: usize,
    identity: &IdentityBytes,
) -> Result<(), LinkError> {
    let entry = body
        .list
        .body
        .entries
        .get(index)
        .ok_or(LinkError::NotListed)?;
    if entry.identity != *identity {
        return Err(LinkError::NotListed);
    }
    if entry.role.holds_account_key() {
        return Err(LinkError::Roles);
    }
    Ok(())
}

/// `"Sealpost_Provision_v1" || provisioning_id || E || Pe`: the HKDF info and the AEAD's
/// associated data.
fn info(invitation: &LinkInvitation, sender_ephemeral: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROVISIONING_INFO.len() + PROVISIONING_ID_LEN + 64);
    out.extend_from_slice(PROVISIONING_INFO);
    out.extend_from_slice(&invitation.provisioning_id);
    out.extend_from_slice(&invitation.ephemeral);
    out.extend_from_slice(sender_ephemeral);
    out
}

fn key(
    secret: &X25519Secret,
    peer: &X25519Public,
    info: &[u8],
) -> Result<Zeroizing<[u8; 32]>, LinkError> {
    let dh = secret.diffie_hellman(peer).map_err(|e| match e {
        CryptoError::NonContributory => LinkError::NonContributory,
        _ => LinkError::Decrypt,
    })?;
    kdf::hkdf_sha256_array::<32>(&[0; 32], dh.as_bytes(), info).map_err(|_| LinkError::Decrypt)
}
