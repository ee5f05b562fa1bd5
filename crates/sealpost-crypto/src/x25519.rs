//! X25519 Diffie-Hellman with non-contributory results rejected.

use crate::{CryptoError, CryptoRng};
use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an X25519 public key, secret key and shared secret.
pub const X25519_LEN: usize = 32;

/// An X25519 public key (the Montgomery u-coordinate, RFC 7748 encoding).
///
/// Any 32 bytes decode; small-order points are caught when they are used, because the
/// agreement with them is all-zero and [`X25519Secret::diffie_hellman`] rejects it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct X25519Public([u8; X25519_LEN]);

impl X25519Public {
    /// Wraps the 32-byte encoding.
    pub const fn from_bytes(bytes: [u8; X25519_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; X25519_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "X25519 public key",
            expected: X25519_LEN,
            actual: bytes.len(),
        })?;
        Ok(Self(arr))
    }

    /// The 32-byte encoding.
    pub const fn as_bytes(&self) -> &[u8; X25519_LEN] {
        &self.0
    }

    /// The 32-byte encoding, by value.
    pub const fn to_bytes(self) -> [u8; X25519_LEN] {
        self.0
    }
}

impl fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519Public({})", crate::kdf::short_hex(&self.0))
    }
}

/// An X25519 secret key. Zeroized on drop; `Debug` prints only the public key.
#[derive(Clone, ZeroizeOnDrop)]
pub struct X25519Secret {
    secret: x25519_dalek::StaticSecret,
    #[zeroize(skip)]
    public: X25519Public,
}

impl X25519Secret {
    /// Generates a fresh secret key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rng);
        Self::from_dalek(secret)
    }

    /// Restores a secret key from its 32 bytes (clamping is applied at use, RFC 7748).
    pub fn from_bytes(mut bytes: [u8; X25519_LEN]) -> Self {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        bytes.zeroize();
        Self::from_dalek(secret)
    }

    /// Restores a secret key together with its public key as stored beside it, without
    /// the scalar multiplication that [`X25519Secret::from_bytes`] spends recomputing it.
    /// Only for state whose integrity is already authenticated (an AEAD-sealed pickle):
    /// a public key that does not match the secret would make this key's agreements
    /// disagree with the peer's, so use [`X25519Secret::from_bytes`] for anything else.
    pub fn from_bytes_with_public(mut bytes: [u8; X25519_LEN], public: X25519Public) -> Self {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        bytes.zeroize();
        Self { secret, public }
    }

    fn from_dalek(secret: x25519_dalek::StaticSecret) -> Self {
        let public = X25519Public(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The 32 secret bytes, for serialization into an encrypted pickle.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; X25519_LEN]> {
        zeroize::Zeroizing::new(self.secret.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> X25519Public {
        self.public
    }

    /// X25519(self, peer). Fails with [`CryptoError::NonContributory`] when the result is
    /// all-zero, i.e. the peer's key is of small order (RFC 7748 section 6.1).
    pub fn diffie_hellman(&self, peer: &X25519Public) -> Result<SharedSecret, CryptoError> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributory);
        }
        Ok(SharedSecret(shared.to_bytes()))
    }
}

impl fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519Secret")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The 32-byte output of an X25519 agreement. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret([u8; X25519_LEN]);

impl SharedSecret {
    /// The raw bytes, to feed into a KDF.
    pub fn as_bytes(&self) -> &[u8; X25519_LEN] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_small_order_points_are_rejected() {
        let mut rng = rand::rng();
        let sk = X25519Secret::generate(&mut rng);
        // All-zero u, u = 1 and the order-8 point from RFC 7748 tests.
        let mut one = [0u8; 32];
        one[0] = 1;
        let order8 =
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap();
        for bad in [[0u8; 32], one, order8.try_into().unwrap()] {
            assert_eq!(
                sk.diffie_hellman(&X25519Public::from_bytes(bad))
                    .unwrap_err(),
                CryptoError::NonContributory
            );
        }
    }

    #[test]
    fn debug_prints_no_secret() {
        let sk = X25519Secret::from_bytes([0x42; 32]);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains("42, 42"), "{dbg}");
        assert!(!dbg.to_lowercase().contains("4242"), "{dbg}");
        let ss = sk
            .diffie_hellman(&X25519Secret::from_bytes([7; 32]).public_key())
            .unwrap();
        assert_eq!(format!("{ss:?}"), "SharedSecret(..)");
    }

    #[test]
    fn roundtrip_secret_bytes() {
        let mut rng = rand::rng();
        let sk = X25519Secret::generate(&mut rng);
        let again = X25519Secret::from_bytes(*sk.to_bytes());
        assert_eq!(sk.public_key(), again.public_key());
    }
}
