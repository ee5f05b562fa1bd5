//! Device identity and prekeys.

use crate::{HandshakeError, PickleError};
use sealpost_crypto::CryptoRng;
use sealpost_crypto::ed25519::{Signature, SigningKey, VerifyingKey};
use sealpost_crypto::kem::{KemKeyPair, KemPublic};
use sealpost_crypto::x25519::{X25519Public, X25519Secret};
use sealpost_wire::{
    DecodeError, IdentityBytes, KemPreKeyKind, KemPreKeyPublic, PreKeyBundle, Reader,
    SignedPreKeyPublic, Writer,
};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// The public identity of a device: an Ed25519 key that signs its prekeys and an X25519 key
/// that takes part in the handshake (DH1 and DH2). Both are covered by the safety number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    signing: VerifyingKey,
    dh: X25519Public,
}

impl IdentityKey {
    /// Validates the wire form (the Ed25519 key must be canonical and not of small order).
    pub fn from_wire(bytes: &IdentityBytes) -> Result<Self, HandshakeError> {
        let signing = VerifyingKey::from_bytes(&bytes.signing)
            .map_err(|_| HandshakeError::InvalidIdentityKey)?;
        Ok(Self {
            signing,
            dh: X25519Public::from_bytes(bytes.dh),
        })
    }

    /// The wire form `signing(32) || dh(32)`.
    pub fn to_wire(&self) -> IdentityBytes {
        IdentityBytes {
            signing: self.signing.to_bytes(),
            dh: self.dh.to_bytes(),
        }
    }

    /// The 64-byte encoding `signing || dh`.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.to_wire().to_bytes()
    }

    /// The Ed25519 public key.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// The X25519 identity public key.
    pub fn dh_key(&self) -> &X25519Public {
        &self.dh
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKey")
            .field("signing", &self.signing)
            .field("dh", &self.dh)
            .finish()
    }
}

/// A device's long-term identity key pair. Secret parts are zeroized on drop and never printed.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh: X25519Secret,
}

impl IdentityKeyPair {
    /// Generates a new identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
            dh: X25519Secret::generate(rng),
        }
    }

    /// Restores an identity from its two 32-byte secrets (Ed25519 seed, X25519 scalar).
    pub fn from_secret_bytes(signing_seed: &[u8; 32], dh_secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_seed(signing_seed),
            dh: X25519Secret::from_bytes(dh_secret),
        }
    }

    /// The public identity.
    pub fn public(&self) -> IdentityKey {
        IdentityKey {
            signing: self.signing.verifying_key(),
            dh: self.dh.public_key(),
        }
    }

    /// Signs with the Ed25519 identity key.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    pub(crate) fn dh_secret(&self) -> &X25519Secret {
        &self.dh
    }

    /// Serialized secret form for an encrypted store: `seed(32) || dh(32)`. Secret.
    pub fn to_secret_bytes(&self) -> zeroize::Zeroizing<[u8; 64]> {
        let mut out = zeroize::Zeroizing::new([0u8; 64]);
        let (a, b) = out.split_at_mut(32);
        a.copy_from_slice(self.signing.to_seed().as_slice());
        b.copy_from_slice(self.dh.to_bytes().as_slice());
        out
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A signed X25519 prekey with its secret.
#[derive(Clone)]
pub struct SignedPreKey {
    id: u32,
    created_at: u64,
    key: X25519Secret,
    signature: Signature,
}

impl SignedPreKey {
    /// Generates and signs a prekey. `now` is Unix seconds, supplied by the caller.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: u32,
        now: u64,
    ) -> Self {
        let key = X25519Secret::generate(rng);
        let msg = SignedPreKeyPublic::signed_bytes(
            identity.public().dh_key().as_bytes(),
            id,
            now,
            key.public_key().as_bytes(),
        );
        let signature = identity.sign(&msg);
        Self {
            id,
            created_at: now,
            key,
            signature,
        }
    }

    /// The id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Creation time (Unix seconds).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The published form.
    pub fn public(&self) -> SignedPreKeyPublic {
        SignedPreKeyPublic {
            id: self.id,
            created_at: self.created_at,
            public: self.key.public_key().to_bytes(),
            signature: self.signature.to_bytes(),
        }
    }

    pub(crate) fn secret(&self) -> &X25519Secret {
        &self.key
    }
}

/// A signed ML-KEM-1024 prekey with its secret.
#[derive(Clone)]
pub struct KemPreKey {
    id: u32,
    kind: KemPreKeyKind,
    created_at: u64,
    key: KemKeyPair,
    signature: Signature,
}

impl KemPreKey {
    /// Generates and signs a KEM prekey.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: u32,
        kind: KemPreKeyKind,
        now: u64,
    ) -> Self {
        let key = KemKeyPair::generate(rng);
        let msg = KemPreKeyPublic::signed_bytes(
            identity.public().dh_key().as_bytes(),
            id,
            kind,
            now,
            key.public_key().as_bytes(),
        );
        let signature = identity.sign(&msg);
        Self {
            id,
            kind,
            created_at: now,
            key,
            signature,
        }
    }

    /// The id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Last-resort or one-time.
    pub fn kind(&self) -> KemPreKeyKind {
        self.kind
    }

    /// The published form.
    pub fn public(&self) -> KemPreKeyPublic {
        KemPreKeyPublic {
            id: self.id,
            kind: self.kind,
            created_at: self.created_at,
            public: Box::new(*self.key.public_key().as_bytes()),
            signature: self.signature.to_bytes(),
        }
    }

    pub(crate) fn secret(&self) -> &KemKeyPair {
        &self.key
    }
}

/// What a device keeps to answer handshakes: its signed prekeys (the current one and recent
/// predecessors), unused one-time prekeys, and ML-KEM prekeys.
///
/// Ids are allocated from increasing counters, so the store can tell an id that was issued
/// and consumed ([`HandshakeError::OneTimePreKeyReused`]) from one never issued.
pub struct PreKeyStore {
    signed: BTreeMap<u32, SignedPreKey>,
    one_time: BTreeMap<u32, X25519Secret>,
    kem: BTreeMap<u32, KemPreKey>,
    next_signed_id: u32,
    next_one_time_id: u32,
    next_kem_id: u32,
}

impl Default for PreKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PreKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKeyStore")
            .field("signed", &self.signed.keys().collect::<Vec<_>>())
            .field("one_time", &self.one_time.len())
            .field("kem", &self.kem.len())
            .finish_non_exhaustive()
    }
}

/// Most one-time prekeys (X25519 or ML-KEM) a store holds at once.
pub const MAX_ONE_TIME_PREKEYS: usize = 10_000;

impl PreKeyStore {
    /// An empty store. Ids start at 1.
    pub fn new() -> Self {
        Self {
            signed: BTreeMap::new(),
            one_time: BTreeMap::new(),
            kem: BTreeMap::new(),
            next_signed_id: 1,
            next_one_time_id: 1,
            next_kem_id: 1,
        }
    }

    /// Generates a new signed prekey, keeps it, and returns its published form. Older
    /// signed prekeys are kept until [`PreKeyStore::remove_signed_prekey`] so that handshakes
    /// in flight still complete.
    pub fn generate_signed_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        identity: &IdentityKeyPair,
        now: u64,
    ) -> SignedPreKeyPublic {
        // Ids wrap after 2^32 - 1 rotations, skipping ids still held (at most a few are).
        let mut id = self.next_signed_id;
        while self.signed.contains_key(&id) {
            id = id.checked_add(1).unwrap_or(1);
        }
        self.next_signed_id = id.checked_add(1).unwrap_or(1);
        let spk = SignedPreKey::generate(rng, identity, id, now);
        let public = spk.public();
        self.signed.insert(id, spk);
        public
    }

    /// Forgets a signed prekey (rotation). Returns whether it existed.
    pub fn remove_signed_prekey(&mut self, id: u32) -> bool {
        self.signed.remove(&id).is_some()
    }

    /// Generates up to `count` one-time prekeys (bounded by [`MAX_ONE_TIME_PREKEYS`] held,
    /// and by the id space: ids are never reused, so after 2^32 - 2 keys none are generated)
    /// and returns their `(id, public)` pairs for upload.
    pub fn generate_one_time_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
    ) -> Vec<(u32, [u8; 32])> {
        let room = MAX_ONE_TIME_PREKEYS.saturating_sub(self.one_time.len());
        let ids_left = u32::MAX - self.next_one_time_id;
        (0..count.min(room).min(ids_left as usize))
            .map(|_| {
                let id = self.next_one_time_id;
                self.next_one_time_id += 1;
                let key = X25519Secret::generate(rng);
                let public = key.public_key().to_bytes();
                self.one_time.insert(id, key);
                (id, public)
            })
            .collect()
    }

    /// Generates ML-KEM prekeys of the given kind (one last-resort key is enough; one-time
    /// keys are bounded by [`MAX_ONE_TIME_PREKEYS`]) and returns their published forms.
    pub fn generate_kem_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        identity: &IdentityKeyPair,
        kind: KemPreKeyKind,
        count: usize,
        now: u64,
    ) -> Vec<KemPreKeyPublic> {
        let room = MAX_ONE_TIME_PREKEYS.saturating_sub(self.kem.len());
        let ids_left = u32::MAX - self.next_kem_id;
        (0..count.min(room).min(ids_left as usize))
            .map(|_| {
                let id = self.next_kem_id;
                self.next_kem_id += 1;
                let k = KemPreKey::generate(rng, identity, id, kind, now);
                let public = k.public();
                self.kem.insert(id, k);
                public
            })
            .collect()
    }

    /// Forgets an ML-KEM prekey, e.g. a last-resort key after it has been replaced (rotate
    /// last-resort keys like signed prekeys so their secrets do not live forever). Returns
    /// whether it existed.
    pub fn remove_kem_prekey(&mut self, id: u32) -> bool {
        self.kem.remove(&id).is_some()
    }

    /// Number of unused one-time X25519 prekeys.
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }

    /// Number of ML-KEM prekeys held (both kinds).
    pub fn kem_count(&self) -> usize {
        self.kem.len()
    }

    /// Assembles a bundle from this store the way a relay does from the uploaded parts:
    /// the newest signed prekey, the lowest unused one-time prekey (if `with_one_time` and
    /// any is left) and the lowest one-time KEM prekey, else a last-resort one. Keys are not
    /// consumed here; they are consumed when a handshake using them succeeds.
    pub fn bundle(
        &self,
        identity: &IdentityKeyPair,
        device_id: u32,
        with_one_time: bool,
    ) -> Option<PreKeyBundle> {
        let spk = self.signed.values().next_back()?;
        let one_time_prekey = if with_one_time {
            self.one_time
                .iter()
                .next()
                .map(|(id, k)| (*id, k.public_key().to_bytes()))
        } else {
            None
        };
        let kem = self
            .kem
            .values()
            .find(|k| k.kind == KemPreKeyKind::OneTime)
            .or_else(|| {
                self.kem
                    .values()
                    .find(|k| k.kind == KemPreKeyKind::LastResort)
            })?;
        Some(PreKeyBundle {
            device_id,
            identity: identity.public().to_wire(),
            signed_prekey: spk.public(),
            one_time_prekey,
            kem_prekey: kem.public(),
        })
    }

    pub(crate) fn signed(&self, id: u32) -> Result<&SignedPreKey, HandshakeError> {
        self.signed
            .get(&id)
            .ok_or(HandshakeError::UnknownSignedPreKey(id))
    }

    pub(crate) fn one_time(&self, id: u32) -> Result<&X25519Secret, HandshakeError> {
        match self.one_time.get(&id) {
            Some(k) => Ok(k),
            None if id != 0 && id < self.next_one_time_id => {
                Err(HandshakeError::OneTimePreKeyReused(id))
            }
            None => Err(HandshakeError::UnknownOneTimePreKey(id)),
        }
    }

    pub(crate) fn kem(&self, id: u32) -> Result<&KemPreKey, HandshakeError> {
        match self.kem.get(&id) {
            Some(k) => Ok(k),
            None if id != 0 && id < self.next_kem_id => Err(HandshakeError::KemPreKeyReused(id)),
            None => Err(HandshakeError::UnknownKemPreKey(id)),
        }
    }

    /// Consumes the one-time keys a successful handshake used.
    pub(crate) fn consume(&mut self, one_time: Option<u32>, kem: u32) {
        if let Some(id) = one_time {
            self.one_time.remove(&id);
        }
        if self
            .kem
            .get(&kem)
            .is_some_and(|k| k.kind == KemPreKeyKind::OneTime)
        {
            self.kem.remove(&kem);
        }
    }
}

/// Serialization of the secret state (spec/session.md, "Prekey store encoding").
impl PreKeyStore {
    /// Version byte of [`PreKeyStore::to_bytes`].
    pub const STATE_VERSION: u8 = 1;

    /// The plaintext, versioned encoding of the whole store: id counters, signed prekeys,
    /// one-time prekeys and KEM prekeys with their secrets. It contains secret keys: store it
    /// only encrypted (e.g. in an encrypted client store).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(
            13 + 12 + self.signed.len() * 108 + self.one_time.len() * 36 + self.kem.len() * 141,
        );
        w.u8(Self::STATE_VERSION)
            .u32(self.next_signed_id)
            .u32(self.next_one_time_id)
            .u32(self.next_kem_id);
        // Every map is bounded by MAX_ONE_TIME_PREKEYS (signed prekeys: a handful), far below
        // u32::MAX.
        w.u32(u32::try_from(self.signed.len()).unwrap_or(u32::MAX));
        for (id, k) in &self.signed {
            w.u32(*id)
                .u64(k.created_at)
                .bytes(k.key.to_bytes().as_slice())
                .bytes(k.signature.as_bytes());
        }
        w.u32(u32::try_from(self.one_time.len()).unwrap_or(u32::MAX));
        for (id, k) in &self.one_time {
            w.u32(*id).bytes(k.to_bytes().as_slice());
        }
        w.u32(u32::try_from(self.kem.len()).unwrap_or(u32::MAX));
        for (id, k) in &self.kem {
            w.u32(*id)
                .u8(k.kind.to_u8())
                .u64(k.created_at)
                .bytes(k.key.seed())
                .bytes(k.signature.as_bytes());
        }
        Zeroizing::new(w.into_bytes())
    }

    /// Restores a store from [`PreKeyStore::to_bytes`]. Checks the version, the bounds, that
    /// ids are strictly increasing within each family, non-zero, and below their counters, and
    /// that nothing trails. Public keys are recomputed from the secrets; signatures are kept
    /// as stored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PickleError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != Self::STATE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let next_signed_id = r.u32()?;
        let next_one_time_id = r.u32()?;
        let next_kem_id = r.u32()?;
        if next_signed_id == 0 || next_one_time_id == 0 || next_kem_id == 0 {
            return Err(DecodeError::InvalidValue("prekey id counter").into());
        }

        let mut signed = BTreeMap::new();
        let n = bounded_count(&mut r, "signed prekeys")?;
        let mut last = 0u32;
        for _ in 0..n {
            let id = r.u32()?;
            // Signed prekey ids wrap (section 2.3), so they are only required to be distinct
            // and increasing in the encoding, not below the counter.
            if id <= last {
                return Err(DecodeError::InvalidValue("signed prekey id").into());
            }
            last = id;
            let created_at = r.u64()?;
            let key = X25519Secret::from_bytes(r.array()?);
            let signature = Signature::from_bytes(r.array()?);
            signed.insert(
                id,
                SignedPreKey {
                    id,
                    created_at,
                    key,
                    signature,
                },
            );
        }

        let mut one_time = BTreeMap::new();
        let n = bounded_count(&mut r, "one-time prekeys")?;
        let mut last = 0u32;
        for _ in 0..n {
            let id = r.u32()?;
            if id <= last || id >= next_one_time_id {
                return Err(DecodeError::InvalidValue("one-time prekey id").into());
            }
            last = id;
            let secret = Zeroizing::new(r.array::<32>()?);
            one_time.insert(id, X25519Secret::from_bytes(*secret));
        }

        let mut kem = BTreeMap::new();
        let n = bounded_count(&mut r, "KEM prekeys")?;
        let mut last = 0u32;
        for _ in 0..n {
            let id = r.u32()?;
            if id <= last || id >= next_kem_id {
                return Err(DecodeError::InvalidValue("KEM prekey id").into());
            }
            last = id;
            let kind = KemPreKeyKind::from_u8(r.u8()?)?;
            let created_at = r.u64()?;
            let seed = Zeroizing::new(r.array::<{ sealpost_crypto::kem::KEM_SEED_LEN }>()?);
            let signature = Signature::from_bytes(r.array()?);
            kem.insert(
                id,
                KemPreKey {
                    id,
                    kind,
                    created_at,
                    key: KemKeyPair::from_seed(&seed),
                    signature,
                },
            );
        }
        r.finish()?;
        Ok(Self {
            signed,
            one_time,
            kem,
            next_signed_id,
            next_one_time_id,
            next_kem_id,
        })
    }
}

fn bounded_count(r: &mut Reader<'_>, what: &'static str) -> Result<usize, DecodeError> {
    let n = r.u32()? as usize;
    if n > MAX_ONE_TIME_PREKEYS {
        return Err(DecodeError::TooLong {
            what,
            len: n,
            max: MAX_ONE_TIME_PREKEYS,
        });
    }
    Ok(n)
}

/// A prekey bundle whose signatures and keys have been verified.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    pub(crate) device_id: u32,
    pub(crate) identity: IdentityKey,
    pub(crate) signed_prekey_id: u32,
    pub(crate) signed_prekey: X25519Public,
    pub(crate) one_time_prekey: Option<(u32, X25519Public)>,
    pub(crate) kem_prekey_id: u32,
    pub(crate) kem_prekey: KemPublic,
}

impl VerifiedBundle {
    /// Verifies both prekey signatures with `verify_strict` under the bundle's identity key
    /// and validates the ML-KEM key.
    pub fn verify(bundle: &PreKeyBundle) -> Result<Self, HandshakeError> {
        let identity = IdentityKey::from_wire(&bundle.identity)?;
        let spk = &bundle.signed_prekey;
        let msg = SignedPreKeyPublic::signed_bytes(
            &bundle.identity.dh,
            spk.id,
            spk.created_at,
            &spk.public,
        );
        identity
            .signing_key()
            .verify(&msg, &Signature::from_bytes(spk.signature))
            .map_err(|_| HandshakeError::BadSignedPreKeySignature(spk.id))?;
        let kpk = &bundle.kem_prekey;
        let msg = KemPreKeyPublic::signed_bytes(
            &bundle.identity.dh,
            kpk.id,
            kpk.kind,
            kpk.created_at,
            &kpk.public,
        );
        identity
            .signing_key()
            .verify(&msg, &Signature::from_bytes(kpk.signature))
            .map_err(|_| HandshakeError::BadKemPreKeySignature(kpk.id))?;
        let kem_prekey = KemPublic::from_slice(kpk.public.as_slice())
            .map_err(|_| HandshakeError::InvalidKemPreKey(kpk.id))?;
        Ok(Self {
            device_id: bundle.device_id,
            identity,
            signed_prekey_id: spk.id,
            signed_prekey: X25519Public::from_bytes(spk.public),
            one_time_prekey: bundle
                .one_time_prekey
                .map(|(id, k)| (id, X25519Public::from_bytes(k))),
            kem_prekey_id: kpk.id,
            kem_prekey,
        })
    }

    /// The identity of the device the bundle belongs to.
    pub fn identity(&self) -> &IdentityKey {
        &self.identity
    }

    /// The device id the bundle was published for, as the relay stated it. It is **not**
    /// covered by any signature: treat it as routing information from the relay.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> (IdentityKeyPair, PreKeyStore) {
        let mut rng = rand::rng();
        let id = IdentityKeyPair::generate(&mut rng);
        let mut store = PreKeyStore::new();
        store.generate_signed_prekey(&mut rng, &id, 10);
        store.generate_signed_prekey(&mut rng, &id, 20);
        store.generate_one_time_prekeys(&mut rng, 5);
        store.generate_kem_prekeys(&mut rng, &id, KemPreKeyKind::OneTime, 2, 30);
        store.generate_kem_prekeys(&mut rng, &id, KemPreKeyKind::LastResort, 1, 40);
        (id, store)
    }

    #[test]
    fn prekey_store_roundtrip() {
        let (id, mut store) = filled();
        // Consume some keys so the counters run ahead of the held ids.
        store.consume(Some(1), 1);
        let bytes = store.to_bytes();
        assert_eq!(bytes.len(), 25 + 2 * 108 + 4 * 36 + 2 * 141);
        let back = PreKeyStore::from_bytes(&bytes).unwrap();
        assert_eq!(*back.to_bytes(), *bytes);
        assert_eq!(back.one_time_count(), 4);
        assert_eq!(back.kem_count(), 2);
        assert_eq!(back.bundle(&id, 1, true), store.bundle(&id, 1, true));
        // Consumed ids are still recognised as consumed after the round trip.
        assert_eq!(
            back.one_time(1).err(),
            Some(HandshakeError::OneTimePreKeyReused(1))
        );
        assert_eq!(back.kem(1).err(), Some(HandshakeError::KemPreKeyReused(1)));
        // Secrets survive: the restored KEM key decapsulates what the original's public
        // key encapsulates.
        let mut rng = rand::rng();
        let (ct, ss) = store
            .kem(2)
            .unwrap()
            .secret()
            .public_key()
            .encapsulate(&mut rng);
        assert_eq!(
            back.kem(2).unwrap().secret().decapsulate(&ct).as_bytes(),
            ss.as_bytes()
        );
        let empty = PreKeyStore::new();
        assert_eq!(
            PreKeyStore::from_bytes(&empty.to_bytes())
                .unwrap()
                .to_bytes(),
            empty.to_bytes()
        );
    }

    #[test]
    fn prekey_store_rejects_bad_encodings() {
        let (_, store) = filled();
        let bytes = store.to_bytes().to_vec();
        for cut in 0..bytes.len() {
            assert!(PreKeyStore::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            PreKeyStore::from_bytes(&long).err(),
            Some(PickleError::Decode(DecodeError::TrailingBytes(1)))
        );
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(
            PreKeyStore::from_bytes(&v).err(),
            Some(PickleError::Decode(DecodeError::UnsupportedVersion(2)))
        );
        // next_one_time_id (offset 5) lowered below a held id.
        let mut v = bytes.clone();
        v[5..9].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(
            PreKeyStore::from_bytes(&v).err(),
            Some(PickleError::Decode(DecodeError::InvalidValue(
                "one-time prekey id"
            )))
        );
        // A zero counter.
        let mut v = bytes.clone();
        v[1..5].copy_from_slice(&0u32.to_be_bytes());
        assert!(PreKeyStore::from_bytes(&v).is_err());
        // Signed prekeys out of order: swap the ids of the two entries (offset 17 and 125).
        let mut v = bytes.clone();
        v[17..21].copy_from_slice(&2u32.to_be_bytes());
        v[125..129].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(
            PreKeyStore::from_bytes(&v).err(),
            Some(PickleError::Decode(DecodeError::InvalidValue(
                "signed prekey id"
            )))
        );
        // A count over the bound.
        let mut v = bytes.clone();
        v[13..17].copy_from_slice(&(MAX_ONE_TIME_PREKEYS as u32 + 1).to_be_bytes());
        assert!(matches!(
            PreKeyStore::from_bytes(&v).err(),
            Some(PickleError::Decode(DecodeError::TooLong { .. }))
        ));
    }

    #[test]
    fn debug_prints_no_secret() {
        let (_, store) = filled();
        let bytes = store.to_bytes();
        let dbg = format!("{store:?}");
        // No 8-byte window of the secret encoding shows up in hex in Debug output.
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&hex[58..74]));
    }
}
