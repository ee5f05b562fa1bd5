/// Errors from PIN normalisation, stretching, the OPRF, threshold sharing, the PIN vault and
/// the local reminder verifier.
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
    /// Argon2id parameters outside the range a vault record or local verifier accepts
    /// (`8·p ≤ m ≤ 262144` KiB, `1 ≤ t ≤ 64`, `1 ≤ p ≤ 4`; spec/pin.md section 6.3).
    #[error("Argon2id parameters m={memory_kib} KiB t={iterations} p={lanes} are out of range")]
    Argon2ParamsOutOfRange {
        /// Memory in KiB.
        memory_kib: u32,
        /// Passes.
        iterations: u32,
        /// Lanes.
        lanes: u32,
    },
    /// An encoding starts with a version this implementation does not know.
    #[error("{what}: unsupported version {version}")]
    UnsupportedVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version byte received.
        version: u8,
    },
    /// An encoding ended before a field was complete.
    #[error("{what}: truncated at {len} bytes")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// The length received.
        len: usize,
    },
    /// An encoding has bytes after its last field.
    #[error("{what}: {extra} trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes follow the last field.
        extra: usize,
    },
    /// An encoding is longer than its limit.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The limit in bytes.
        max: usize,
        /// The length received.
        len: usize,
    },
    /// Guardian indices in a vault record are not strictly increasing.
    #[error("guardian index {index} follows {previous}: indices must be strictly increasing")]
    UnorderedIndices {
        /// The preceding index.
        previous: u8,
        /// The index that is not larger.
        index: u8,
    },
    /// A field of a stored encoding has a value outside its domain.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// The account id is empty, longer than 64 bytes or contains a control character (the
    /// rules of `AccountId`, spec/relay.md).
    #[error("account id of {len} bytes is not a valid AccountId")]
    InvalidAccount {
        /// Length of the rejected id in bytes.
        len: usize,
    },
    /// A key share does not match the vault record: its index has no commitment, or
    /// `k_i·G ≠ K_i`.
    #[error("key share {0} does not match the vault record")]
    ShareMismatch(u8),
    /// The vault could not be opened: the PIN is wrong (or the record was altered, which
    /// the authenticated encryption detects in the same way).
    #[error("wrong PIN")]
    WrongPin,
    /// Fewer than `t` guardian responses verified. `faulty` lists the indices whose response
    /// was rejected (bad proof, unknown index, repeated index): report them.
    #[error("need {needed} valid guardian responses, got {valid} ({} rejected)", faulty.len())]
    NotEnoughValidResponses {
        /// The threshold.
        needed: usize,
        /// Valid responses received.
        valid: usize,
        /// Indices of rejected responses, in the order received.
        faulty: Vec<u8>,
    },
    /// No vault record was returned by at least `threshold` guardians (spec/pin.md 6.4
    /// step 1).
    #[error("vault unavailable: best record agreed by {agreeing} guardians, need {needed}")]
    VaultUnavailable {
        /// Guardians returning the most common decodable record (0 if none decoded).
        agreeing: usize,
        /// That record's threshold (1 if no record decoded).
        needed: usize,
    },
    /// A reminder check was refused by the rate limit (spec/pin.md section 11).
    #[error("PIN reminder check rate-limited until {retry_at} (Unix seconds)")]
    ReminderRateLimited {
        /// Earliest time (Unix seconds) a check is allowed.
        retry_at: u64,
    },
}
