/// Errors from the primitive wrappers. Messages never contain key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An X25519 agreement produced the all-zero output: the peer key has small order.
    #[error("X25519 public key is of small order (non-contributory agreement)")]
    NonContributory,
    /// The bytes are not a valid (canonical, non-small-order) Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    InvalidVerifyingKey,
    /// Ed25519 strict verification failed.
    #[error("Ed25519 signature verification failed")]
    BadSignature,
    /// The bytes are not a valid ML-KEM-1024 encapsulation key (FIPS 203 modulus check).
    #[error("invalid ML-KEM-1024 encapsulation key")]
    InvalidKemKey,
    /// AEAD tag verification failed.
    #[error("AEAD authentication failed")]
    AeadAuthentication,
    /// An input had the wrong length.
    #[error("{what} must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// What the input was.
        what: &'static str,
        /// Expected length in bytes.
        expected: usize,
        /// Received length in bytes.
        actual: usize,
    },
    /// A KDF was asked for more output than it can produce.
    #[error("KDF output length {0} too large")]
    KdfOutputTooLong(usize),
}
