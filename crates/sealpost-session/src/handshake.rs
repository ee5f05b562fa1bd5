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
use sealpost_wire::{DeviceAddress, MAX_ACCOUNT_ID_LEN, PreKeyMessage, Writer};
use zeroize::Zeroizing;

/// HKDF info prefix of the handshake KDF; the initiator's base key as sent follows it.
pub const HANDSHAKE_INFO: &[u8] = b"Sealpost_PQXDH_X25519_SHA-256_ML-KEM-1024_v2";
/// The 32 0xFF bytes prepended to the key material (X3DH, section 2.2).
pub const HANDSHAKE_PREFIX: [u8; 32] = [0xFF; 32];

/// Longest session associated data: two identities (64 bytes each) and two device
/// addresses (`len8 || account || u32`, at most 69 bytes each).
pub const MAX_AD_LEN: usize = 2 * 64 + 2 * (1 + MAX_ACCOUNT_ID_LEN + 4);

/// The two device addresses a session is bound to. They enter the session's associated
/// data (spec/session.md, "Associated data"), so a relay that relabels the sender or the
/// recipient of any message of the session makes it fail authentication.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionAddresses {
    /// This device.
    pub local: DeviceAddress,
    /// The peer device. For [`respond`] this is the sender the relay claims, which the
    /// handshake then authenticates.
    pub remote: DeviceAddress,
}

impl SessionAddresses {
    /// `local` is this device, `remote` the peer.
    pub fn new(local: DeviceAddress, remote: DeviceAddress) -> Self {
        Self { local, remote }
    }
}

/// `AD = IK_A || IK_B || enc(addr_A) || enc(addr_B)`, A the initiator, `enc` the
/// DeviceAddress wire encoding `len(u8) || account || device(u32)`.
pub(crate) fn associated_data(
    initiator: &IdentityKey,
    responder: &IdentityKey,
    initiator_address: &DeviceAddress,
    responder_address: &DeviceAddress,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(MAX_AD_LEN);
    w.bytes(&initiator.to_bytes()).bytes(&responder.to_bytes());
    initiator_address.encode_into(&mut w);
    responder_address.encode_into(&mut w);
    w.into_bytes()
}

/// SK = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS,
/// info = HANDSHAKE_INFO || EK_A as sent, L = 32).
pub(crate) fn derive_sk(dhs: &[&[u8; 32]], kem_ss: &[u8; 32], base_key: &[u8; 32]) -> Key32 {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (dhs.len() + 2)));
    ikm.extend_from_slice(&HANDSHAKE_PREFIX);
    for d in dhs {
        ikm.extend_from_slice(d.as_slice());
    }
    ikm.extend_from_slice(kem_ss);
    let mut info = Vec::with_capacity(HANDSHAKE_INFO.len() + 32);
    info.extend_from_slice(HANDSHAKE_INFO);
    info.extend_from_slice(base_key);
    let mut sk = [0u8; 32];
    // 32 bytes of output cannot exceed HKDF's limit.
    let _ = hkdf_sha256(&[0u8; 32], &ikm, &info, &mut sk);
    Key32(sk)
}

/// The initiator's fresh secrets for one handshake. Drawn from the RNG by [`initiate`];
/// explicit only for test vectors (`hazmat::initiate_with_secrets`), and public only through
/// the `hazmat` feature.
#[cfg_attr(not(feature = "hazmat"), allow(unreachable_pub))]
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
    #[cfg_attr(not(feature = "hazmat"), allow(unreachable_pub))]
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            base_key: X25519Secret::generate(rng),
            ratchet_key: X25519Secret::generate(rng),
            kem_randomness: sealpost_crypto::random_array(rng),
        }
    }
}

/// Starts a session with the device that published `bundle`, at `addresses.remote`
/// (whose device id must be the bundle's). The bundle's signatures were verified by
/// [`VerifiedBundle::verify`]. The returned session's messages are sent as prekey messages
/// until the first reply has been decrypted.
pub fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    local: &IdentityKeyPair,
    addresses: &SessionAddresses,
    bundle: &VerifiedBundle,
    config: SessionConfig,
) -> Result<Session, HandshakeError> {
    initiate_with(
        local,
        addresses,
        bundle,
        InitiatorSecrets::generate(rng),
        config,
    )
}

pub(crate) fn initiate_with(
    local: &IdentityKeyPair,
    addresses: &SessionAddresses,
    bundle: &VerifiedBundle,
    secrets: InitiatorSecrets,
    config: SessionConfig,
) -> Result<Session, HandshakeError> {
    let local_pub = local.public();
    if local_pub == bundle.identity {
        return Err(HandshakeError::OwnIdentity);
    }
    if addresses.remote.device.0 != bundle.device_id {
        return Err(HandshakeError::DeviceMismatch {
            bundle: bundle.device_id,
            address: addresses.remote.device.0,
        });
    }
    if addresses.local == addresses.remote {
        return Err(HandshakeError::OwnAddress);
    }
    let ek = &secrets.base_key;
    let base_key = ek.public_key();
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
    let sk = derive_sk(&dhs, kem_ss.as_bytes(), base_key.as_bytes());
    let ratchet = RatchetState::init_initiator(sk, bundle.signed_prekey, secrets.ratchet_key)?;
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
        base_key,
        Some(pending),
        ratchet,
        addresses.clone(),
        config,
    ))
}

/// Accepts a prekey message that the relay says `addresses.remote` sent to
/// `addresses.local`: looks up the prekeys it names, derives the session, decrypts the
/// embedded first message, and only then consumes the one-time prekeys used. Both
/// addresses and the exact base-key bytes are authenticated: if the relay relabelled the
/// sender or the recipient, or the base key was re-encoded, this fails with
/// [`HandshakeError::FirstMessage`]`(`[`DecryptError::Authentication`]`)`. On any error the
/// store is unchanged.
pub fn respond<R: CryptoRng + ?Sized>(
    rng: &mut R,
    local: &IdentityKeyPair,
    addresses: &SessionAddresses,
    store: &mut PreKeyStore,
    message: &PreKeyMessage,
    config: SessionConfig,
) -> Result<(Session, Vec<u8>), HandshakeError> {
    let remote = IdentityKey::from_wire(&message.identity)?;
    let local_pub = local.public();
    if remote == local_pub {
        return Err(HandshakeError::OwnIdentity);
    }
    if addresses.local == addresses.remote {
        return Err(HandshakeError::OwnAddress);
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
    // The base key enters the KDF exactly as it was sent.
    let sk = derive_sk(&dhs, kem_ss.as_bytes(), &message.base_key);
    let ratchet = RatchetState::init_responder(sk, spk.secret().clone());
    let mut session = Session::new(
        local_pub,
        remote,
        Role::Responder,
        ek,
        None,
        ratchet,
        addresses.clone(),
        config,
    );
    let plaintext = session
        .decrypt_ratchet(rng, &message.message)
        .map_err(HandshakeError::FirstMessage)?;
    store.consume(message.one_time_prekey_id, message.kem_prekey_id);
    Ok((session, plaintext))
}
