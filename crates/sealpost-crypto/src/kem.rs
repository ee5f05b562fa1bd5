//! ML-KEM-1024 (FIPS 203) through libcrux's formally verified implementation.
//!
//! Sealpost uses the 1024 parameter set (NIST category 5), as Signal's PQXDH does: the
//! KEM protects handshakes recorded today against a future quantum adversary, a threat
//! that lasts as long as the messages matter, so the margin is worth the extra bytes compared
//! to ML-KEM-768 (384 per published KEM prekey and bundle, 480 per prekey message). See
//! spec/README.md, "Primitive choices".

use crate::{CryptoError, CryptoRng};
use core::fmt;
use libcrux_ml_kem::mlkem1024;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an ML-KEM-1024 encapsulation (public) key.
pub const KEM_PUBLIC_LEN: usize = 1568;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of the ML-KEM key-generation seed `d || z` (FIPS 203, section 7.1).
pub const KEM_SEED_LEN: usize = 64;
/// Length of the ML-KEM shared secret.
pub const KEM_SHARED_SECRET_LEN: usize = 32;

/// A validated ML-KEM-1024 encapsulation key.
#[derive(Clone)]
pub struct KemPublic(Box<mlkem1024::MlKem1024PublicKey>);

impl KemPublic {
    /// Parses and validates (FIPS 203 modulus check) an encapsulation key.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; KEM_PUBLIC_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-KEM-1024 public key",
                expected: KEM_PUBLIC_LEN,
                actual: bytes.len(),
            })?;
        let key = Box::new(mlkem1024::MlKem1024PublicKey::from(arr));
        if !mlkem1024::validate_public_key(&key) {
            return Err(CryptoError::InvalidKemKey);
        }
        Ok(Self(key))
    }

    /// The 1568-byte encoding.
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_LEN] {
        self.0.as_slice()
    }

    /// Encapsulates a fresh shared secret to this key.
    pub fn encapsulate<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> (KemCiphertext, KemSharedSecret) {
        let mut m = [0u8; 32];
        rng.fill_bytes(&mut m);
        let (ct, ss) = mlkem1024::encapsulate(&self.0, m);
        m.zeroize();
        (KemCiphertext(Box::new(*ct.as_slice())), KemSharedSecret(ss))
    }

    /// Deterministic encapsulation with the FIPS 203 message `m`, for test vectors.
    pub fn encapsulate_derand(&self, m: [u8; 32]) -> (KemCiphertext, KemSharedSecret) {
        let (ct, ss) = mlkem1024::encapsulate(&self.0, m);
        (KemCiphertext(Box::new(*ct.as_slice())), KemSharedSecret(ss))
    }
}

impl PartialEq for KemPublic {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for KemPublic {}

impl fmt::Debug for KemPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemPublic({})", crate::kdf::short_hex(self.as_bytes()))
    }
}

/// An ML-KEM-1024 ciphertext, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; KEM_CIPHERTEXT_LEN]>);

impl KemCiphertext {
    /// Wraps a ciphertext of exactly 1568 bytes. Every such string is a valid input to
    /// decapsulation (ML-KEM uses implicit rejection).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEM_CIPHERTEXT_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-KEM-1024 ciphertext",
                expected: KEM_CIPHERTEXT_LEN,
                actual: bytes.len(),
            })?;
        Ok(Self(Box::new(arr)))
    }

    /// The 1568-byte encoding.
    pub fn as_bytes(&self) -> &[u8; KEM_CIPHERTEXT_LEN] {
        &self.0
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KemCiphertext({})",
            crate::kdf::short_hex(self.as_bytes())
        )
    }
}

/// The 32-byte ML-KEM shared secret. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KemSharedSecret([u8; KEM_SHARED_SECRET_LEN]);

impl KemSharedSecret {
    /// The raw bytes, to feed into a KDF.
    pub fn as_bytes(&self) -> &[u8; KEM_SHARED_SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for KemSharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemSharedSecret(..)")
    }
}

/// An ML-KEM-1024 key pair. Stored as its 64-byte seed; the expanded decapsulation key
/// is held in memory and wiped on drop.
pub struct KemKeyPair {
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    secret: Box<mlkem1024::MlKem1024PrivateKey>,
    public: KemPublic,
}

impl KemKeyPair {
    /// Generates a key pair from fresh randomness.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let seed = crate::random_array::<KEM_SEED_LEN, R>(rng);
        Self::from_seed(&seed)
    }

    /// Deterministically derives the key pair from its seed `d || z` (FIPS 203 ML-KEM.KeyGen_internal).
    pub fn from_seed(seed: &[u8; KEM_SEED_LEN]) -> Self {
        let pair = mlkem1024::generate_key_pair(*seed);
        let (sk, pk) = pair.into_parts();
        Self {
            seed: Zeroizing::new(*seed),
            secret: Box::new(sk),
            public: KemPublic(Box::new(pk)),
        }
    }

    /// The seed from which the key pair is derived (secret).
    pub fn seed(&self) -> &[u8; KEM_SEED_LEN] {
        &self.seed
    }

    /// The encapsulation key.
    pub fn public_key(&self) -> &KemPublic {
        &self.public
    }

    /// Decapsulates. Never fails: an invalid ciphertext yields a pseudorandom secret
    /// (implicit rejection), which then fails the handshake's AEAD.
    pub fn decapsulate(&self, ciphertext: &KemCiphertext) -> KemSharedSecret {
        let ct = mlkem1024::MlKem1024Ciphertext::from(&*ciphertext.0);
        KemSharedSecret(mlkem1024::decapsulate(&self.secret, &ct))
    }
}

impl Clone for KemKeyPair {
    fn clone(&self) -> Self {
        Self::from_seed(&self.seed)
    }
}

impl Drop for KemKeyPair {
    fn drop(&mut self) {
        self.secret[0..].zeroize();
    }
}

impl ZeroizeOnDrop for KemKeyPair {}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_implicit_rejection() {
        let mut rng = rand::rng();
        let kp = KemKeyPair::generate(&mut rng);
        let pk = KemPublic::from_slice(kp.public_key().as_bytes()).unwrap();
        let (ct, ss) = pk.encapsulate(&mut rng);
        assert_eq!(kp.decapsulate(&ct).as_bytes(), ss.as_bytes());
        let mut bad = *ct.as_bytes();
        bad[0] ^= 1;
        let bad = KemCiphertext::from_slice(&bad).unwrap();
        assert_ne!(kp.decapsulate(&bad).as_bytes(), ss.as_bytes());
    }

    #[test]
    fn seed_is_deterministic() {
        let a = KemKeyPair::from_seed(&[3; 64]);
        let b = KemKeyPair::from_seed(&[3; 64]);
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn bad_lengths_and_moduli_are_rejected() {
        assert!(matches!(
            KemPublic::from_slice(&[0u8; 10]),
            Err(CryptoError::InvalidLength { .. })
        ));
        // All-0xff coefficients exceed q = 3329.
        assert_eq!(
            KemPublic::from_slice(&[0xff; KEM_PUBLIC_LEN]),
            Err(CryptoError::InvalidKemKey).map(|_: ()| unreachable!())
        );
    }
}
