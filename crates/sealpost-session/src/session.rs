//! A 1:1 session between two devices, its state encoding and its encrypted pickle.

use crate::handshake::{SessionAddresses, associated_data};
use crate::ratchet::{MessageAd, RatchetState};
use crate::{ConfigError, DecryptError, EncryptError, IdentityKey, PickleError};
use sealpost_crypto::CryptoRng;
use sealpost_crypto::aead;
use sealpost_crypto::kdf::hkdf_sha256;
use sealpost_crypto::x25519::X25519Public;
use sealpost_wire::{
    DecodeError, DeviceAddress, IdentityBytes, KEM_CIPHERTEXT_LEN, MAX_PLAINTEXT_LEN,
    PreKeyMessage, RatchetMessage, Reader, SessionMessage, Writer,
};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Default per-chain limit on skipped message keys (MAX_SKIP).
pub const DEFAULT_MAX_SKIP: u32 = 1_000;
/// Default limit on stored skipped message keys across all chains; the oldest is evicted.
pub const DEFAULT_MAX_SKIPPED_KEYS: u32 = 2_000;
/// Hard upper bound for `max_skipped_keys` (bounds memory and pickle size: 100 B per key).
pub const HARD_MAX_SKIPPED_KEYS: u32 = 100_000;

/// Version byte of the session state encoding written by this version. Version 1 state
/// still loads, as a legacy session ([`Session::is_legacy`]).
pub const SESSION_STATE_VERSION: u8 = 2;
/// Version byte of the legacy (session protocol version 1) state encoding.
pub const LEGACY_SESSION_STATE_VERSION: u8 = 1;
/// Version byte of the encrypted pickle.
pub const PICKLE_VERSION: u8 = 1;
/// HKDF info and AEAD associated-data label of the pickle.
pub const PICKLE_INFO: &[u8] = b"Sealpost_Pickle_v1";
/// Length of the pickle salt.
pub const PICKLE_SALT_LEN: usize = 32;

/// Limits on out-of-order delivery. Both are persisted with the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub(crate) max_skip: u32,
    pub(crate) max_skipped_keys: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_skip: DEFAULT_MAX_SKIP,
            max_skipped_keys: DEFAULT_MAX_SKIPPED_KEYS,
        }
    }
}

impl SessionConfig {
    /// A configuration with `1 <= max_skip <= max_skipped_keys <= HARD_MAX_SKIPPED_KEYS`.
    pub fn new(max_skip: u32, max_skipped_keys: u32) -> Result<Self, ConfigError> {
        if max_skipped_keys > HARD_MAX_SKIPPED_KEYS {
            return Err(ConfigError::TooManyKeys(
                max_skipped_keys,
                HARD_MAX_SKIPPED_KEYS,
            ));
        }
        if max_skip == 0 || max_skip > max_skipped_keys {
            return Err(ConfigError::MaxSkip {
                max_skip,
                max_skipped_keys,
            });
        }
        Ok(Self {
            max_skip,
            max_skipped_keys,
        })
    }

    /// Most message keys one chain may skip.
    pub fn max_skip(&self) -> u32 {
        self.max_skip
    }

    /// Most skipped message keys kept in total.
    pub fn max_skipped_keys(&self) -> u32 {
        self.max_skipped_keys
    }
}

/// Which side of the handshake this session was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Fetched the bundle and sent the first message.
    Initiator,
    /// Published the bundle and accepted the first message.
    Responder,
}

/// What the initiator repeats in every message until the responder has answered.
#[derive(Clone)]
pub(crate) struct PendingPreKey {
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
    pub(crate) kem_prekey_id: u32,
    pub(crate) kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
}

/// What a session is bound to: the two device addresses (protocol version 2), or nothing
/// (a legacy session loaded from version-1 state, kept only so it can be replaced).
enum Binding {
    Addresses(SessionAddresses),
    /// The version-1 state exactly as loaded; re-encoding gives back these bytes.
    Legacy(Zeroizing<Vec<u8>>),
}

/// A session with one remote device.
///
/// [`Session::decrypt`] is transactional: on any error the session is exactly as before.
///
/// A session is deliberately not `Clone`: two copies would encrypt under the same message
/// keys. To keep a copy, pickle it ([`Session::pickle`]). Persist the session after
/// [`Session::encrypt`] and before the ciphertext leaves the device. Should an older copy
/// encrypt again anyway (a restored backup), the synthetic nonce means no (key, nonce) pair
/// ever encrypts two different plaintexts (spec/session.md, "Message encryption").
pub struct Session {
    local: IdentityKey,
    remote: IdentityKey,
    role: Role,
    base_key: X25519Public,
    pending: Option<PendingPreKey>,
    ratchet: RatchetState,
    binding: Binding,
    ad: MessageAd,
    config: SessionConfig,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.remote)
            .field("remote_address", &self.remote_address())
            .field("legacy", &self.is_legacy())
            .field("role", &self.role)
            .field("awaiting_reply", &self.pending.is_some())
            .field("ratchet", &self.ratchet)
            .finish_non_exhaustive()
    }
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: IdentityKey,
        remote: IdentityKey,
        role: Role,
        base_key: X25519Public,
        pending: Option<PendingPreKey>,
        ratchet: RatchetState,
        addresses: SessionAddresses,
        config: SessionConfig,
    ) -> Self {
        let ad = match role {
            Role::Initiator => {
                associated_data(&local, &remote, &addresses.local, &addresses.remote)
            }
            Role::Responder => {
                associated_data(&remote, &local, &addresses.remote, &addresses.local)
            }
        };
        Self {
            local,
            remote,
            role,
            base_key,
            pending,
            ratchet,
            binding: Binding::Addresses(addresses),
            ad: MessageAd::new(ad),
            config,
        }
    }

    /// The peer device this session is bound to (authenticated by the handshake). `None`
    /// for a legacy session. A message that the relay says comes from another address must
    /// not be given to this session.
    pub fn remote_address(&self) -> Option<&DeviceAddress> {
        match &self.binding {
            Binding::Addresses(a) => Some(&a.remote),
            Binding::Legacy(_) => None,
        }
    }

    /// This device's address as bound into the session. `None` for a legacy session.
    pub fn local_address(&self) -> Option<&DeviceAddress> {
        match &self.binding {
            Binding::Addresses(a) => Some(&a.local),
            Binding::Legacy(_) => None,
        }
    }

    /// Whether this session was loaded from version-1 state (before sessions were bound to
    /// addresses). A legacy session neither encrypts nor decrypts; replace it with a new
    /// handshake (spec/session.md, "Upgrading from version 1").
    pub fn is_legacy(&self) -> bool {
        matches!(self.binding, Binding::Legacy(_))
    }

    /// Our identity.
    pub fn local_identity(&self) -> &IdentityKey {
        &self.local
    }

    /// The peer's identity (compare it with the one you trust, or show a safety number).
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote
    }

    /// Which side of the handshake we were.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The initiator's base key, which identifies the handshake that created this session.
    pub fn base_key(&self) -> &X25519Public {
        &self.base_key
    }

    /// Whether we are the initiator and have not yet decrypted a reply (our messages are
    /// still prekey messages).
    pub fn awaiting_reply(&self) -> bool {
        self.pending.is_some()
    }

    /// The limits in force.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Number of stored skipped message keys.
    pub fn skipped_key_count(&self) -> usize {
        self.ratchet.skipped.len()
    }

    /// Whether a prekey message belongs to this session (same initiator identity and
    /// exactly the same base-key bytes, and we are the responder). Callers also compare the
    /// relay-claimed sender with [`Session::remote_address`]. The outer handshake fields (prekey ids, KEM
    /// ciphertext) of a repeated prekey message are not used once the session exists, so a
    /// relay altering them changes nothing; only the embedded ratchet message is decrypted.
    pub fn matches(&self, message: &PreKeyMessage) -> bool {
        self.role == Role::Responder
            && message.base_key == self.base_key.to_bytes()
            && message.identity == self.remote.to_wire()
    }

    /// Encrypts one message. While [`Session::awaiting_reply`], the result is a prekey
    /// message carrying everything the responder needs to create the session. Fails only for
    /// a plaintext over [`MAX_PLAINTEXT_LEN`] or after 2^32 - 1 messages on one sending chain.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<SessionMessage, EncryptError> {
        if self.is_legacy() {
            return Err(EncryptError::LegacySession);
        }
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(EncryptError::PlaintextTooLong {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let enc = self.ratchet.encrypt(&mut self.ad, plaintext)?;
        Ok(match &self.pending {
            None => SessionMessage::Ratchet(enc.message),
            Some(p) => SessionMessage::PreKey(PreKeyMessage {
                identity: self.local.to_wire(),
                base_key: self.base_key.to_bytes(),
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                kem_prekey_id: p.kem_prekey_id,
                kem_ciphertext: p.kem_ciphertext.clone(),
                message: enc.message,
            }),
        })
    }

    /// Decrypts a message of this session. `rng` supplies the next ratchet key when the
    /// message starts a new chain. On error nothing changes.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &SessionMessage,
    ) -> Result<Vec<u8>, DecryptError> {
        match message {
            SessionMessage::Ratchet(m) => self.decrypt_ratchet(rng, m),
            SessionMessage::PreKey(m) => {
                if !self.matches(m) {
                    return Err(DecryptError::WrongSession);
                }
                self.decrypt_ratchet(rng, &m.message)
            }
        }
    }

    /// Decodes and decrypts; see [`Session::decrypt`].
    pub fn decrypt_bytes<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        let msg = SessionMessage::decode(bytes)?;
        self.decrypt(rng, &msg)
    }

    pub(crate) fn decrypt_ratchet<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &RatchetMessage,
    ) -> Result<Vec<u8>, DecryptError> {
        if self.is_legacy() {
            return Err(DecryptError::LegacySession);
        }
        let pt = self
            .ratchet
            .decrypt(rng, &self.config, &mut self.ad, message)?;
        // A reply authenticated under this session: the responder has the session.
        self.pending = None;
        Ok(pt)
    }

    /// The plaintext, versioned state encoding (spec/session.md, "Session state encoding").
    /// It contains secret keys; outside tests it only ever enters [`Session::pickle`].
    pub(crate) fn to_state_bytes(&self) -> Zeroizing<Vec<u8>> {
        let addresses = match &self.binding {
            Binding::Addresses(a) => a,
            Binding::Legacy(v1) => return v1.clone(),
        };
        let mut w = Writer::with_capacity(512 + 100 * self.ratchet.skipped.len());
        w.u8(SESSION_STATE_VERSION)
            .u32(self.config.max_skip)
            .u32(self.config.max_skipped_keys)
            .bytes(&self.local.to_bytes())
            .bytes(&self.remote.to_bytes());
        addresses.local.encode_into(&mut w);
        addresses.remote.encode_into(&mut w);
        w.u8(match self.role {
            Role::Initiator => 0,
            Role::Responder => 1,
        })
        .bytes(self.base_key.as_bytes())
        .flag(self.pending.is_some());
        if let Some(p) = &self.pending {
            w.u32(p.signed_prekey_id)
                .flag(p.one_time_prekey_id.is_some())
                .u32(p.one_time_prekey_id.unwrap_or(0))
                .u32(p.kem_prekey_id)
                .bytes(p.kem_ciphertext.as_slice());
        }
        self.ratchet.encode_into(&mut w);
        Zeroizing::new(w.into_bytes())
    }

    /// Restores a session from [`Session::to_state_bytes`] (version 2), or a legacy session
    /// from version-1 state.
    pub(crate) fn from_state_bytes(bytes: &[u8]) -> Result<Self, PickleError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SESSION_STATE_VERSION && version != LEGACY_SESSION_STATE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let config = SessionConfig::new(r.u32()?, r.u32()?)
            .map_err(|_| PickleError::Inconsistent("session limits"))?;
        let local = identity(&mut r)?;
        let remote = identity(&mut r)?;
        let addresses = if version == SESSION_STATE_VERSION {
            let local = DeviceAddress::decode_from(&mut r)?;
            let remote = DeviceAddress::decode_from(&mut r)?;
            if local == remote {
                return Err(PickleError::Inconsistent("session with own address"));
            }
            Some(SessionAddresses { local, remote })
        } else {
            None
        };
        let role = match r.u8()? {
            0 => Role::Initiator,
            1 => Role::Responder,
            v => {
                return Err(DecodeError::UnknownType {
                    what: "session role",
                    value: v,
                }
                .into());
            }
        };
        let base_key = X25519Public::from_bytes(r.array()?);
        let pending = if r.flag("pending")? {
            let signed_prekey_id = r.u32()?;
            let has_opk = r.flag("has_one_time_prekey")?;
            let opk = r.u32()?;
            if !has_opk && opk != 0 {
                return Err(DecodeError::InvalidValue("one_time_prekey_id").into());
            }
            let kem_prekey_id = r.u32()?;
            let kem_ciphertext = Box::new(r.array()?);
            Some(PendingPreKey {
                signed_prekey_id,
                one_time_prekey_id: has_opk.then_some(opk),
                kem_prekey_id,
                kem_ciphertext,
            })
        } else {
            None
        };
        if pending.is_some() && role == Role::Responder {
            return Err(PickleError::Inconsistent("responder with pending prekey"));
        }
        let ratchet = RatchetState::decode_from(&mut r, &config, version)?;
        r.finish()?;
        if local == remote {
            return Err(PickleError::Inconsistent("session with own identity"));
        }
        // Every session this crate creates can send: the initiator from the start, the
        // responder after accepting the first message.
        if ratchet.cks.is_none() || ratchet.dhr.is_none() {
            return Err(PickleError::Inconsistent(
                "missing sending or receiving ratchet key",
            ));
        }
        if pending.is_some() && ratchet.ckr.is_some() {
            return Err(PickleError::Inconsistent(
                "pending prekey with a receiving chain",
            ));
        }
        Ok(match addresses {
            Some(a) => Self::new(local, remote, role, base_key, pending, ratchet, a, config),
            None => Self {
                local,
                remote,
                role,
                base_key,
                pending,
                ratchet,
                binding: Binding::Legacy(Zeroizing::new(bytes.to_vec())),
                ad: MessageAd::new(Vec::new()),
                config,
            },
        })
    }

    /// Encrypts the state under `key` (spec/session.md, "Pickle"):
    /// `version(1) || salt(32) || ChaCha20-Poly1305(state)`, with key and nonce derived from
    /// `key` and a fresh salt by HKDF.
    pub fn pickle<R: CryptoRng + ?Sized>(&self, rng: &mut R, key: &PickleKey) -> Vec<u8> {
        let salt = sealpost_crypto::random_array::<PICKLE_SALT_LEN, R>(rng);
        self.pickle_with_salt(key, &salt)
    }

    /// [`Session::pickle`] with an explicit salt, for test vectors. Never reuse a salt.
    pub(crate) fn pickle_with_salt(
        &self,
        key: &PickleKey,
        salt: &[u8; PICKLE_SALT_LEN],
    ) -> Vec<u8> {
        seal_pickle(key, salt, &self.to_state_bytes())
    }

    /// Decrypts and restores a pickle.
    pub fn unpickle(pickle: &[u8], key: &PickleKey) -> Result<Self, PickleError> {
        let state = open_pickle(key, pickle)?;
        Self::from_state_bytes(&state)
    }
}

fn identity(r: &mut Reader<'_>) -> Result<IdentityKey, PickleError> {
    let bytes = IdentityBytes::decode_from(r)?;
    IdentityKey::from_wire(&bytes).map_err(|_| PickleError::Inconsistent("identity key"))
}

/// A caller-supplied 32-byte key that pickles are encrypted under. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PickleKey([u8; 32]);

impl PickleKey {
    /// Wraps 32 bytes of key material (from the platform keystore, or a KDF of a passphrase).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for PickleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PickleKey(..)")
    }
}

fn pickle_keys(key: &PickleKey, salt: &[u8]) -> Zeroizing<[u8; 44]> {
    let mut okm = Zeroizing::new([0u8; 44]);
    // 44 bytes cannot exceed HKDF's limit.
    let _ = hkdf_sha256(salt, &key.0, PICKLE_INFO, okm.as_mut_slice());
    okm
}

fn split_keys(okm: &[u8; 44]) -> ([u8; 32], [u8; 12]) {
    let mut k = [0u8; 32];
    let mut n = [0u8; 12];
    let (a, b) = okm.split_at(32);
    k.copy_from_slice(a);
    n.copy_from_slice(b);
    (k, n)
}

fn pickle_ad() -> Vec<u8> {
    let mut ad = PICKLE_INFO.to_vec();
    ad.push(PICKLE_VERSION);
    ad
}

pub(crate) fn seal_pickle(key: &PickleKey, salt: &[u8; PICKLE_SALT_LEN], state: &[u8]) -> Vec<u8> {
    let okm = pickle_keys(key, salt);
    let (mut k, n) = split_keys(&okm);
    let mut out = Vec::with_capacity(1 + PICKLE_SALT_LEN + state.len() + 16);
    out.push(PICKLE_VERSION);
    out.extend_from_slice(salt);
    aead::seal_into(&k, &n, &pickle_ad(), state, &mut out);
    k.zeroize();
    out
}

pub(crate) fn open_pickle(
    key: &PickleKey,
    pickle: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PickleError> {
    let mut r = Reader::new(pickle);
    let version = r.u8()?;
    if version != PICKLE_VERSION {
        return Err(DecodeError::UnsupportedVersion(version).into());
    }
    let salt: [u8; PICKLE_SALT_LEN] = r.array()?;
    let body = r.rest();
    let okm = pickle_keys(key, &salt);
    let (mut k, n) = split_keys(&okm);
    let result = aead::open(&k, &n, &pickle_ad(), body).map_err(|_| PickleError::Authentication);
    k.zeroize();
    Ok(Zeroizing::new(result?))
}
