//! The asynchronous handshake: X3DH with an ML-KEM-1024 shared secret mixed in as in PQXDH
//! (spec/session.md, "Handshake").

use crate::keys::{IdentityKeyPair, PreKeyStore, VerifiedBundle};
use crate::ratchet::{Key32, RatchetState};
use crate::session::{PendingPreKey, Role, Session};
use crate::{DecryptError, HandshakeError, IdentityKey, SessionConfig};
use sealpost_crypto::CryptoRng;
use sealpost_crypto::kdf::hkdf_sha256;
use sealpost_crypto::kem::KemCiphertext;
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_wire::PreKeyMessage;
use zeroize::Zeroizing;

/// HKDF info string of the handshake KDF.
pub const HANDSHAKE_INFO: &[u8] = b"Sealpost_PQXDH_X25519_SHA-256_ML-KEM-1024_v1";
/// The 32 0xFF bytes prepended to the key material (X3DH, section 2.2).
pub const HANDSHAKE_PREFIX: [u8; 32] = [0xFF; 32];

/// Length of the session associated data: both identities.
pub const AD_LEN: usize = 128;

/// AD = initiator identity (signing || dh) || responder identity (signing || dh).
pub(crate) fn associated_data(initiator: &IdentityKey, responder: &IdentityKey) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    let (a, b) = ad.split_at_mut(64);
    a.copy_from_slice(&initiator.to_bytes());
    b.copy_from_slice(&responder.to_bytes());
    ad
}

/// SK = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS, info, 32).
pub(crate) fn derive_sk(dhs: &[&[u8; 32]], kem_ss: &[u8; 32]) -> Key32 {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (dhs.len() + 2)));
    ikm.extend_from_slice(&HANDSHAKE_PREFIX);
    for d in dhs {
        ikm.extend_from_slice(d.as_slice());
    }
    ikm.extend_from_slice(kem_ss);
    let mut sk = [0u8; 32];
    // 32 bytes of output cannot exceed HKDF's limit.
    let _ = hkdf_sha256(&[0u8; 32], &ikm, HANDSHAKE_INFO, &mut sk);
    Key32(sk)
}

/// The initiator's fresh secrets for one handshake. Normally drawn from the RNG by
/// [`initiate`]; explicit only for test vectors ([`initiate_with_secrets`]).
pub struct InitiatorSecrets {
    /// Ephemeral key EK_A (the "base key").
    pub base_key: X25519Secret,
    /// The initiator's first ratchet key pair.
    pub ratchet_key: X25519Secret,
    /// The ML-KEM encapsulation randomness `m`.
    pub kem_randomness: Zeroizing<[u8; 32]>,
}

impl InitiatorSecrets {
    /// Draws all three from `rng`, in the order base key, ratchet key, KEM randomness.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            base_key: X25519Secret::generate(rng),
            ratchet_key: X25519Secret::generate(rng),
            kem_randomness: sealpost_crypto::random_array(rng),
        }
    }
}

/// Starts a session with the device that published `bundle`. Verifies the bundle's
/// signatures (`verify_strict`) and keys first. The returned session's messages are sent as
/// prekey messages until the first reply has been decrypted.
pub fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    local: &IdentityKeyPair,
    bundle: &VerifiedBundle,
    config: SessionConfig,
) -> Result<Session, HandshakeError> {
    initiate_with_secrets(local, bundle, InitiatorSecrets::generate(rng), config)
}

/// [`initiate`] with explicitly supplied fresh secrets, for deterministic test vectors.
/// Reusing `secrets` for two handshakes breaks security; production code calls [`initiate`].
pub fn initiate_with_secrets(
    local: &IdentityKeyPair,
    bundle: &VerifiedBundle,
    secrets: InitiatorSecrets,
    config: SessionConfig,
) -> Result<Session, HandshakeError> {
    let local_pub = local.public();
    if local_pub == bundle.identity {
        return Err(HandshakeError::OwnIdentity);
    }
    let ek = &secrets.base_key;
    let dh1 = local.dh_secret().diffie_hellman(&bundle.signed_prekey)?;
    let dh2 = ek.diffie_hellman(bundle.identity.dh_key())?;
    let dh3 = ek.diffie_hellman(&bundle.signed_prekey)?;
    let dh4 = match &bundle.one_time_prekey {
        Some((_, opk)) => Some(ek.diffie_hellman(opk)?),
        None => None,
    };
    let (kem_ct, kem_ss) = bundle
        .kem_prekey
        .encapsulate_derand(*secrets.kem_randomness);
    let mut dhs = vec![dh1.as_bytes(), dh2.as_bytes(), dh3.as_bytes()];
    if let Some(d) = &dh4 {
        dhs.push(d.as_bytes());
    }
    let sk = derive_sk(&dhs, kem_ss.as_bytes());
    let ratchet = RatchetState::init_initiator(sk, bundle.signed_prekey, secrets.ratchet_key)?;
    let ad = associated_data(&local_pub, &bundle.identity);
    let pending = PendingPreKey {
        signed_prekey_id: bundle.signed_prekey_id,
        one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
        kem_prekey_id: bundle.kem_prekey_id,
        kem_ciphertext: Box::new(*kem_ct.as_bytes()),
    };
    Ok(Session::new(
        local_pub,
        bundle.identity,
        Role::Initiator,
        ek.public_key(),
        Some(pending),
        ratchet,
        ad,
        config,
    ))
}

/// Accepts a prekey message: looks up the prekeys it names, derives the session, decrypts
/// the embedded first message, and only then consumes the one-time prekeys used. On any
/// error the store is unchanged.
pub fn respond<R: CryptoRng + ?Sized>(
    rng: &mut R,
    local: &IdentityKeyPair,
    store: &mut PreKeyStore,
    message: &PreKeyMessage,
    config: SessionConfig,
) -> Result<(Session, Vec<u8>), HandshakeError> {
    let remote = IdentityKey::from_wire(&message.identity)?;
    let local_pub = local.public();
    if remote == local_pub {
        return Err(HandshakeError::OwnIdentity);
    }
    let spk = store.signed(message.signed_prekey_id)?;
    let opk = match message.one_time_prekey_id {
        Some(id) => Some(store.one_time(id)?),
        None => None,
    };
    let kem = store.kem(message.kem_prekey_id)?;
    let ek = X25519Public::from_bytes(message.base_key);

    let dh1 = spk.secret().diffie_hellman(remote.dh_key())?;
    let dh2 = local.dh_secret().diffie_hellman(&ek)?;
    let dh3 = spk.secret().diffie_hellman(&ek)?;
    let dh4 = match opk {
        Some(k) => Some(k.diffie_hellman(&ek)?),
        None => None,
    };
    let ct = KemCiphertext::from_slice(message.kem_ciphertext.as_slice())
        .map_err(|_| HandshakeError::FirstMessage(DecryptError::Authentication))?;
    let kem_ss = kem.secret().decapsulate(&ct);
    let mut dhs = vec![dh1.as_bytes(), dh2.as_bytes(), dh3.as_bytes()];
    if let Some(d) = &dh4 {
        dhs.push(d.as_bytes());
    }
    let sk = derive_sk(&dhs, kem_ss.as_bytes());
    let ratchet = RatchetState::init_responder(sk, spk.secret().clone());
    let ad = associated_data(&remote, &local_pub);
    let mut session = Session::new(
        local_pub,
        remote,
        Role::Responder,
        ek,
        None,
        ratchet,
        ad,
        config,
    );
    let plaintext = session
        .decrypt_ratchet(rng, &message.message)
        .map_err(HandshakeError::FirstMessage)?;
    store.consume(message.one_time_prekey_id, message.kem_prekey_id);
    Ok((session, plaintext))
}
