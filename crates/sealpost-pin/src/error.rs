/// Errors from PIN normalisation, stretching, the OPRF and threshold sharing.
///
/// Messages carry lengths, counts and guardian indices, never PIN characters or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The raw PIN input is longer than [`crate::normalize::MAX_INPUT_BYTES`] (checked
    /// before normalisation so NFKD expansion cannot be used to burn CPU).
    #[error("PIN input is {actual} bytes, more than the {max}-byte input limit")]
    InputTooLong {
        /// The limit in bytes.
        max: usize,
        /// The input length in bytes.
        actual: usize,
    },
    /// The normalised PIN has fewer than [`crate::normalize::MIN_PIN_CHARS`] characters.
    #[error("PIN must have at least {min} characters after normalisation, got {actual}")]
    TooShort {
        /// Minimum number of characters.
        min: usize,
        /// Number of characters after normalisation.
        actual: usize,
    },
    /// The normalised PIN is longer than [`crate::normalize::MAX_PIN_BYTES`] bytes.
    #[error("PIN must be at most {max} bytes after normalisation, got {actual}")]
    TooLong {
        /// Maximum length in bytes.
        max: usize,
        /// Length in bytes after normalisation.
        actual: usize,
    },
    /// The PIN contains a control character (after normalisation).
    #[error("PIN contains a control character")]
    ControlCharacter,
    /// The Argon2id parameters were rejected by the implementation.
    #[error("invalid Argon2id parameters")]
    InvalidArgon2Params,
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
    /// Bytes are not a canonical ristretto255 encoding, or encode the identity.
    #[error("invalid ristretto255 element")]
    InvalidElement,
    /// Bytes are not a canonical (reduced) scalar, or the scalar is zero where that is not allowed.
    #[error("invalid scalar")]
    InvalidScalar,
    /// A DLEQ proof did not verify.
    #[error("OPRF proof verification failed")]
    ProofVerification,
    /// The threshold is zero.
    #[error("threshold must be at least 1")]
    ZeroThreshold,
    /// The threshold exceeds the number of shares.
    #[error("threshold {threshold} exceeds share count {shares}")]
    ThresholdTooLarge {
        /// Requested threshold.
        threshold: usize,
        /// Number of shares.
        shares: usize,
    },
    /// More shares than indices 1..=255 allow.
    #[error("share count {0} exceeds the maximum of 255")]
    TooManyShares(usize),
    /// A share index of zero (that point is the secret itself).
    #[error("share index 0 is not allowed")]
    ZeroIndex,
    /// The same share index appears twice.
    #[error("duplicate share index {0}")]
    DuplicateIndex(u8),
    /// A response came from an index with no commitment in the guardian set.
    #[error("no guardian with index {0}")]
    UnknownGuardian(u8),
    /// Fewer valid evaluations than the threshold.
    #[error("need {needed} valid guardian evaluations, got {got}")]
    NotEnoughShares {
        /// The threshold.
        needed: usize,
        /// Valid evaluations received.
        got: usize,
    },
    /// The guardian commitments do not lie on one polynomial of degree threshold - 1.
    #[error("guardian commitments are inconsistent with threshold {0}")]
    InconsistentCommitments(usize),
}
