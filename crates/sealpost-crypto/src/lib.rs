//! Typed keys and thin, misuse-resistant wrappers over the primitives Sealpost uses.
//!
//! | concern            | primitive                          | crate            |
//! |--------------------|------------------------------------|------------------|
//! | key agreement      | X25519 (non-contributory rejected) | `x25519-dalek`   |
//! | signatures         | Ed25519, `verify_strict`            | `ed25519-dalek`  |
//! | post-quantum KEM   | ML-KEM-1024 (FIPS 203)              | `libcrux-ml-kem` |
//! | KDF / MAC          | HKDF-SHA256, HMAC-SHA256            | `hkdf`, `hmac`   |
//! | AEAD               | ChaCha20-Poly1305 (RFC 8439)        | `chacha20poly1305` |
//! | TLS key pins       | SHA-256 of the SPKI, `sha256/<b64>` | `sha2`, `base64` |
//!
//! Every type holding secret material zeroizes on drop, is not `Copy`, and prints
//! nothing secret through `Debug`. Functions that take untrusted input (public keys,
//! signatures, ciphertexts) return [`CryptoError`] instead of panicking.
//!
//! Randomness is always passed in by the caller (`&mut impl CryptoRng`), so the protocol
//! crates built on top stay deterministic under test.
//!
//! ```
//! use sealpost_crypto::{x25519::X25519Secret, ed25519::SigningKey};
//! let mut rng = rand::rng();
//! let a = X25519Secret::generate(&mut rng);
//! let b = X25519Secret::generate(&mut rng);
//! let ab = a.diffie_hellman(&b.public_key()).unwrap();
//! let ba = b.diffie_hellman(&a.public_key()).unwrap();
//! assert_eq!(ab.as_bytes(), ba.as_bytes());
//!
//! let sk = SigningKey::generate(&mut rng);
//! let sig = sk.sign(b"hello");
//! sk.verifying_key().verify(b"hello", &sig).unwrap();
//! ```
#![forbid(unsafe_code)]
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod aead;
pub mod ed25519;
mod error;
pub mod kdf;
pub mod kem;
pub mod spki;
pub mod x25519;

pub use error::CryptoError;
pub use rand_core::CryptoRng;
pub use subtle::ConstantTimeEq;
pub use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Fills a fresh array from the caller's RNG.
pub fn random_array<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    rng.fill_bytes(out.as_mut_slice());
    out
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
