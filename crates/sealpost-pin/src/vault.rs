//! The PIN vault (spec/pin.md section 6): the master secret and what derives from it, the
//! vault record every guardian stores, enrolment, the guardian-side checks, and recovery.
//!
//! * [`MasterSecret`] — 32 random bytes; derives the [`RegLockToken`] (whose
//!   [`RegLockToken::verifier`] the relay stores) and the backup key.
//! * [`enroll`] — client, when the PIN is set or changed: stretches the PIN, draws a fresh
//!   OPRF key, splits it among `n` guardians with threshold `t`, evaluates the OPRF once
//!   unblinded and seals the master secret under a key derived from the output. Returns the
//!   [`VaultRecord`] (the same for every guardian) and each guardian's share and success
//!   verifier.
//! * Guardian side: [`VaultRecord::decode`] (every rejection of section 6.3), [`check_share`]
//!   (for `VaultStore`), [`crate::oprf::OprfKey::evaluate`] on the share (for
//!   `VaultEvaluate`) and [`verify_success`] (for `VaultConfirm`).
//! * Client recovery: [`choose_record`] (6.4 step 1), [`Recovery::start`] (stretch and
//!   blind), [`Recovery::finish`] (verify each guardian's proof against the record, combine,
//!   finalize, open the sealed master secret).
//!
//! Nothing here does I/O; the RNG is passed in.
//!
//! ```
//! use sealpost_pin::{normalize::normalize, stretch::Argon2Params, threshold::GuardianResponse};
//! use sealpost_pin::vault::{MasterSecret, Recovery, VaultRecord, check_share, enroll, verify_success};
//! # fn main() -> Result<(), sealpost_pin::PinError> {
//! let mut rng = rand::rng();
//! let params = Argon2Params::testing(); // PRODUCTION in real use
//! let master = MasterSecret::generate(&mut rng);
//! let e = enroll(&normalize("123456")?, "+15550001234", &master, 2, 3, &params, &mut rng)?;
//!
//! // Each guardian decodes the record and checks its share (VaultStore).
//! let stored = e.record.encode();
//! for g in &e.guardians {
//!     check_share(&VaultRecord::decode(&stored)?, &g.share)?;
//! }
//!
//! // A new device: stretch and blind, two guardians evaluate, finish.
//! let record = VaultRecord::decode(&stored)?;
//! let (recovery, blinded) = Recovery::start(&normalize("123456")?, "+15550001234", record, &mut rng)?;
//! let answers: Vec<GuardianResponse> = e.guardians[1..]
//!     .iter()
//!     .map(|g| {
//!         let (evaluated, proof) = g.share.key().evaluate(&blinded, &mut rng);
//!         GuardianResponse { index: g.index, evaluated, proof }
//!     })
//!     .collect();
//! let recovered = recovery.finish(&answers)?;
//! assert!(recovered.master.ct_eq(&master));
//! // VaultConfirm: each guardian checks its token against its stored verifier.
//! let token = recovered.token_for(2).expect("index 2 is in the record");
//! assert!(verify_success(&e.guardians[1].success_verifier, token));
//! # Ok(()) }
//! ```

use crate::{
    PinError,
    codec::{ByteReader, read_params, write_params},
    normalize::NormalizedPin,
    oprf::{
        self, Blind, BlindedElement, ELEMENT_LEN, OprfKey, OprfOutput, OprfPublicKey,
        evaluate_unblinded,
    },
    stretch::{Argon2Params, StretchedPin, USER_SALT_LEN, UserSalt, stretch},
    threshold::{
        GuardianResponse, GuardianSet, KeyShare, MAX_SHARES, ShareCommitment, combine_valid, split,
    },
};
use core::fmt;
use sealpost_crypto::{CryptoRng, aead, kdf::hmac_sha256};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The vault record version this implementation writes and reads.
pub const VAULT_VERSION: u8 = 0x01;
/// Length of the random vault id.
pub const VAULT_ID_LEN: usize = 16;
/// Length of the master secret.
pub const MASTER_SECRET_LEN: usize = 32;
/// Length of the sealed master secret: 32 bytes of ciphertext and a 16-byte tag.
pub const SEALED_LEN: usize = MASTER_SECRET_LEN + aead::AEAD_TAG_LEN;
/// Length of a registration-lock token, a success token and their verifiers.
pub const TOKEN_LEN: usize = 32;
/// Longest account id (the `AccountId` limit of spec/relay.md).
pub const MAX_ACCOUNT_ID_LEN: usize = 64;
/// Bytes per guardian in a record: `index: u8 || K_i: 32`.
pub const COMMITMENT_LEN: usize = 1 + ELEMENT_LEN;
/// Record bytes before the commitments: version, vault id, three `u32` Argon2 parameters,
/// user salt, threshold, n.
const HEADER_LEN: usize = 1 + VAULT_ID_LEN + 12 + USER_SALT_LEN + 2;
/// Shortest valid record (one guardian): 128 bytes.
pub const MIN_VAULT_RECORD_LEN: usize = HEADER_LEN + COMMITMENT_LEN + SEALED_LEN;
/// Longest valid record (255 guardians): 8510 bytes (`95 + 255 × 33`, spec/pin.md section 12).
pub const MAX_VAULT_RECORD_LEN: usize = HEADER_LEN + SEALED_LEN + MAX_SHARES * COMMITMENT_LEN;

/// HKDF info for the registration-lock token.
pub const REGLOCK_INFO: &[u8] = b"Sealpost_RegLock_v1";
/// HKDF info for the backup key.
pub const BACKUP_INFO: &[u8] = b"Sealpost_Backup_v1";
/// Hash label of the registration-lock verifier.
pub const REGLOCK_VERIFIER_LABEL: &[u8] = b"Sealpost_RegLock_Verifier_v1";
/// HKDF info for the key that seals the master secret.
pub const WRAP_INFO: &[u8] = b"Sealpost_PIN_Wrap_v1";
/// HKDF info prefix for guardian `i`'s success token (followed by `u8(i)`).
pub const SUCCESS_INFO: &[u8] = b"Sealpost_PIN_Success_v1";
/// Hash label of a success verifier.
pub const SUCCESS_VERIFIER_LABEL: &[u8] = b"Sealpost_PIN_SuccessVerifier_v1";
/// First bytes of the vault's associated data.
pub const VAULT_AD_LABEL: &[u8] = b"Sealpost_PIN_Vault_v1";

/// The AEAD nonce: all zero, safe because every `wrap_key` seals exactly one plaintext
/// (spec/pin.md 6.2 step 6).
const ZERO_NONCE: [u8; aead::AEAD_NONCE_LEN] = [0u8; aead::AEAD_NONCE_LEN];

/// HKDF-SHA256 with an empty salt and `L = 32` (RFC 5869): `PRK = HMAC(0^32, ikm)`,
/// `OKM = HMAC(PRK, info || 0x01)`. Written out over HMAC because for one block it cannot
/// fail, which keeps every derivation here infallible; a unit test checks it against
/// `sealpost_crypto::kdf::hkdf_sha256`.
fn hkdf32(ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let prk = Zeroizing::new(hmac_sha256(&[0u8; 32], ikm));
    let mut msg = Zeroizing::new(Vec::with_capacity(64));
    for part in info {
        msg.extend_from_slice(part);
    }
    msg.push(0x01);
    Zeroizing::new(hmac_sha256(prk.as_slice(), &msg))
}

/// `SHA-256(label || data)`.
fn labeled_hash(label: &[u8], data: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(label)
        .chain_update(data)
        .finalize()
        .into()
}

/// Checks the `AccountId` rules of spec/relay.md: 1..=64 UTF-8 bytes, no control character.
fn check_account(account: &str) -> Result<(), PinError> {
    if account.is_empty()
        || account.len() > MAX_ACCOUNT_ID_LEN
        || account.chars().any(char::is_control)
    {
        return Err(PinError::InvalidAccount { len: account.len() });
    }
    Ok(())
}

macro_rules! secret_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; TOKEN_LEN]);

        impl $name {
            /// Wraps 32 bytes (received on the wire or loaded from storage).
            pub const fn from_bytes(bytes: [u8; TOKEN_LEN]) -> Self {
                Self(bytes)
            }

            /// Parses a 32-byte slice.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, PinError> {
                let arr: [u8; TOKEN_LEN] =
                    bytes.try_into().map_err(|_| PinError::InvalidLength {
                        what: stringify!($name),
                        expected: TOKEN_LEN,
                        actual: bytes.len(),
                    })?;
                Ok(Self(arr))
            }

            /// The 32 bytes (secret).
            pub const fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
                &self.0
            }

            /// Constant-time equality.
            pub fn ct_eq(&self, other: &Self) -> bool {
                bool::from(self.0.ct_eq(&other.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(redacted)"))
            }
        }
    };
}

secret_bytes!(
    /// The master secret `MS` (spec/pin.md 6.1): 32 random bytes drawn when the PIN is first
    /// set, kept across PIN changes, sealed in the vault. Zeroized on drop; `Debug` prints
    /// nothing.
    MasterSecret
);

secret_bytes!(
    /// The registration-lock token `HKDF(MS, "Sealpost_RegLock_v1")`: sent to the relay in
    /// `Register` and `SetRegistrationLock`; the relay keeps only its [`verifier`](Self::verifier).
    RegLockToken
);

secret_bytes!(
    /// Guardian `i`'s success token `HKDF(O, "Sealpost_PIN_Success_v1" || u8(i))`, sent in
    /// `VaultConfirm` after a successful recovery; the guardian keeps only its verifier.
    SuccessToken
);

impl MasterSecret {
    /// Draws a fresh master secret.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; MASTER_SECRET_LEN];
        rng.fill_bytes(&mut bytes);
        let ms = Self(bytes);
        bytes.zeroize();
        ms
    }

    /// A zeroizing copy of the 32 bytes, for storage.
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_SECRET_LEN]> {
        Zeroizing::new(self.0)
    }

    /// `reglock_token = HKDF-SHA256(salt = "", IKM = MS, info = "Sealpost_RegLock_v1", L = 32)`.
    pub fn reglock_token(&self) -> RegLockToken {
        RegLockToken(*hkdf32(&self.0, &[REGLOCK_INFO]))
    }

    /// `backup_key = HKDF-SHA256(salt = "", IKM = MS, info = "Sealpost_Backup_v1", L = 32)`.
    pub fn backup_key(&self) -> Zeroizing<[u8; 32]> {
        hkdf32(&self.0, &[BACKUP_INFO])
    }
}

impl RegLockToken {
    /// `SHA-256("Sealpost_RegLock_Verifier_v1" || token)`: what the relay stores.
    pub fn verifier(&self) -> [u8; 32] {
        labeled_hash(REGLOCK_VERIFIER_LABEL, &self.0)
    }

    /// Relay side: whether this token's verifier equals `stored`, in constant time.
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        bool::from(self.verifier().ct_eq(stored))
    }
}

impl SuccessToken {
    /// Derives guardian `index`'s token from the OPRF output `O` (spec/pin.md 6.2 step 5).
    pub fn derive(output: &OprfOutput, index: u8) -> Self {
        Self(*hkdf32(output.as_bytes(), &[SUCCESS_INFO, &[index]]))
    }

    /// `SHA-256("Sealpost_PIN_SuccessVerifier_v1" || token)`: what the guardian stores.
    pub fn verifier(&self) -> [u8; 32] {
        labeled_hash(SUCCESS_VERIFIER_LABEL, &self.0)
    }
}

/// Guardian side: the verifier of a success token (same as [`SuccessToken::verifier`]).
pub fn success_verifier(token: &SuccessToken) -> [u8; 32] {
    token.verifier()
}

/// Guardian side, for `VaultConfirm`: whether `token`'s verifier equals the stored one, in
/// constant time.
pub fn verify_success(stored_verifier: &[u8; 32], token: &SuccessToken) -> bool {
    bool::from(token.verifier().ct_eq(stored_verifier))
}

/// `wrap_key = HKDF-SHA256(salt = "", IKM = O, info = "Sealpost_PIN_Wrap_v1", L = 32)`.
pub fn derive_wrap_key(output: &OprfOutput) -> Zeroizing<[u8; 32]> {
    hkdf32(output.as_bytes(), &[WRAP_INFO])
}

/// The vault record (spec/pin.md 6.3): public, identical at every guardian.
///
/// Values exist only through [`VaultRecord::decode`] or [`enroll`], so every record has
/// passed the checks of section 6.3, and [`VaultRecord::encode`] gives back exactly the
/// decoded bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultRecord {
    vault_id: [u8; VAULT_ID_LEN],
    params: Argon2Params,
    user_salt: UserSalt,
    guardians: GuardianSet,
    sealed: [u8; SEALED_LEN],
}

/// Threshold and guardian count fit a byte: both are at most [`MAX_SHARES`] in every
/// `GuardianSet`.
fn byte_count(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

impl VaultRecord {
    /// Parses a record, applying every rejection of spec/pin.md 6.3: longer than
    /// [`MAX_VAULT_RECORD_LEN`] ([`PinError::TooLarge`]), another version
    /// ([`PinError::UnsupportedVersion`]), Argon2 parameters out of range
    /// ([`PinError::Argon2ParamsOutOfRange`]), `t = 0` ([`PinError::ZeroThreshold`]),
    /// `t > n` ([`PinError::ThresholdTooLarge`]), index 0 ([`PinError::ZeroIndex`]), indices
    /// not strictly increasing ([`PinError::UnorderedIndices`]), a `K_i` that is not a
    /// canonical non-identity element ([`PinError::InvalidElement`]), commitments not on one
    /// polynomial of degree `t − 1` ([`PinError::InconsistentCommitments`]), missing bytes
    /// ([`PinError::Truncated`]) and trailing bytes ([`PinError::TrailingBytes`]).
    ///
    /// Cost: at most `(n − t)·t` scalar multiplications for the consistency check.
    pub fn decode(bytes: &[u8]) -> Result<Self, PinError> {
        if bytes.len() > MAX_VAULT_RECORD_LEN {
            return Err(PinError::TooLarge {
                what: "vault record",
                max: MAX_VAULT_RECORD_LEN,
                len: bytes.len(),
            });
        }
        let mut r = ByteReader::new("vault record", bytes);
        let version = r.u8()?;
        if version != VAULT_VERSION {
            return Err(PinError::UnsupportedVersion {
                what: "vault record",
                version,
            });
        }
        let vault_id = r.array()?;
        let params = read_params(&mut r)?;
        let user_salt = UserSalt::from_bytes(r.array()?);
        let threshold = usize::from(r.u8()?);
        let n = usize::from(r.u8()?);
        if threshold == 0 {
            return Err(PinError::ZeroThreshold);
        }
        if threshold > n {
            return Err(PinError::ThresholdTooLarge {
                threshold,
                shares: n,
            });
        }
        let mut commitments = Vec::with_capacity(n);
        let mut previous = 0u8;
        for _ in 0..n {
            let index = r.u8()?;
            if index == 0 {
                return Err(PinError::ZeroIndex);
            }
            if index <= previous {
                return Err(PinError::UnorderedIndices { previous, index });
            }
            previous = index;
            let public_key = OprfPublicKey::from_slice(r.take(ELEMENT_LEN)?)?;
            commitments.push(ShareCommitment { index, public_key });
        }
        let sealed = r.array()?;
        r.finish()?;
        let guardians = GuardianSet::new(threshold, commitments)?;
        Ok(Self {
            vault_id,
            params,
            user_salt,
            guardians,
            sealed,
        })
    }

    /// The canonical encoding (spec/pin.md 6.3).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&self.sealed);
        out
    }

    /// The record bytes before `sealed`.
    fn header(&self) -> Vec<u8> {
        let commitments = self.guardians.commitments();
        let mut out =
            Vec::with_capacity(HEADER_LEN + commitments.len() * COMMITMENT_LEN + SEALED_LEN);
        out.push(VAULT_VERSION);
        out.extend_from_slice(&self.vault_id);
        write_params(&mut out, &self.params);
        out.extend_from_slice(self.user_salt.as_bytes());
        out.push(byte_count(self.guardians.threshold()));
        out.push(byte_count(commitments.len()));
        for c in commitments {
            out.push(c.index);
            out.extend_from_slice(&c.public_key.to_bytes());
        }
        out
    }

    /// The associated data that seals the master secret:
    /// `"Sealpost_PIN_Vault_v1" || u8(len(account)) || account || (record bytes before sealed)`.
    /// `account` must be a valid `AccountId` (1..=64 bytes, no control characters).
    pub fn aad(&self, account: &str) -> Result<Vec<u8>, PinError> {
        check_account(account)?;
        let header = self.header();
        let mut ad = Vec::with_capacity(VAULT_AD_LABEL.len() + 1 + account.len() + header.len());
        ad.extend_from_slice(VAULT_AD_LABEL);
        ad.push(byte_count(account.len()));
        ad.extend_from_slice(account.as_bytes());
        ad.extend_from_slice(&header);
        Ok(ad)
    }

    /// The random vault id (echoed in `VaultEvaluate` and `VaultConfirm`).
    pub const fn vault_id(&self) -> &[u8; VAULT_ID_LEN] {
        &self.vault_id
    }

    /// The Argon2id parameters the PIN is stretched with.
    pub const fn params(&self) -> &Argon2Params {
        &self.params
    }

    /// The per-user salt of the stretching.
    pub const fn user_salt(&self) -> &UserSalt {
        &self.user_salt
    }

    /// Threshold and commitments; its public key is the whole OPRF key's `K = k·G`.
    pub const fn guardians(&self) -> &GuardianSet {
        &self.guardians
    }

    /// The threshold `t`.
    pub const fn threshold(&self) -> usize {
        self.guardians.threshold()
    }

    /// The number of guardians `n`.
    pub fn guardian_count(&self) -> usize {
        self.guardians.commitments().len()
    }

    /// The guardian indices, increasing.
    pub fn indices(&self) -> impl Iterator<Item = u8> + '_ {
        self.guardians.commitments().iter().map(|c| c.index)
    }

    /// Guardian `index`'s commitment `K_i`, if the record has that index.
    pub fn index_commitment(&self, index: u8) -> Option<&OprfPublicKey> {
        self.guardians
            .commitments()
            .iter()
            .find(|c| c.index == index)
            .map(|c| &c.public_key)
    }

    /// `ChaCha20-Poly1305(wrap_key, 0^12, AD, MS)`: 32 bytes of ciphertext and the tag.
    pub const fn sealed(&self) -> &[u8; SEALED_LEN] {
        &self.sealed
    }
}

impl fmt::Debug for VaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.vault_id;
        f.debug_struct("VaultRecord")
            .field(
                "vault_id",
                &format_args!("{:02x}{:02x}{:02x}{:02x}..", id[0], id[1], id[2], id[3]),
            )
            .field("params", &self.params)
            .field("threshold", &self.threshold())
            .field("guardians", &self.guardian_count())
            .finish_non_exhaustive()
    }
}

/// Guardian side, for `VaultStore`: the share's index must be in the record and its
/// commitment must equal `k_i·G`; otherwise [`PinError::ShareMismatch`] (answered
/// `InvalidVault`).
pub fn check_share(record: &VaultRecord, share: &KeyShare) -> Result<(), PinError> {
    match record.index_commitment(share.index()) {
        Some(k) if *k == share.key().public_key() => Ok(()),
        _ => Err(PinError::ShareMismatch(share.index())),
    }
}

/// What one guardian receives in `VaultStore` (besides the record and a credential).
#[derive(Debug, Clone)]
pub struct GuardianEnrollment {
    /// The guardian's index `i` (`1..=n`).
    pub index: u8,
    /// The guardian's key share `k_i` (secret: sent only to guardian `i`).
    pub share: KeyShare,
    /// `SHA-256("Sealpost_PIN_SuccessVerifier_v1" || token_i)`.
    pub success_verifier: [u8; 32],
}

/// The result of [`enroll`]: the record (same for every guardian) and per-guardian material,
/// in index order `1..=n`.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The vault record.
    pub record: VaultRecord,
    /// Guardian `i` is `guardians[i - 1]`.
    pub guardians: Vec<GuardianEnrollment>,
}

/// Enrols a vault (spec/pin.md 6.2) for `account` (a valid `AccountId`: 1..=64 bytes, no
/// control characters) with `n` guardians and threshold `t` (`1 ≤ t ≤ n ≤ 255`). `params`
/// must be within the bounds of [`Argon2Params::check_accepted`]. Draws the user salt, vault
/// id, OPRF key and sharing from `rng`; the OPRF key is forgotten (zeroized) on return.
pub fn enroll<R: CryptoRng + ?Sized>(
    pin: &NormalizedPin,
    account: &str,
    master: &MasterSecret,
    threshold: usize,
    n: usize,
    params: &Argon2Params,
    rng: &mut R,
) -> Result<Enrollment, PinError> {
    check_account(account)?;
    params.check_accepted()?;
    let user_salt = UserSalt::generate(rng);
    let mut vault_id = [0u8; VAULT_ID_LEN];
    rng.fill_bytes(&mut vault_id);
    let key = OprfKey::generate(rng);
    let (shares, _) = split(&key, threshold, n, rng)?;
    enroll_with_secrets(
        pin, account, master, params, user_salt, vault_id, &key, threshold, shares,
    )
}

/// [`enroll`] with every random value supplied: for test vectors and reproducible tests.
///
/// **Never use the same `key` twice**: the vault is sealed with a zero nonce under a key
/// derived from `key` and the PIN, so two enrolments with one key and the same PIN and salt
/// would reuse a ChaCha20 keystream. `shares` must be a sharing of `key` with threshold
/// `threshold` (indices `1..=n` in order, as [`split`] makes them), else
/// [`PinError::InconsistentCommitments`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn enroll_with_secrets(
    pin: &NormalizedPin,
    account: &str,
    master: &MasterSecret,
    params: &Argon2Params,
    user_salt: UserSalt,
    vault_id: [u8; VAULT_ID_LEN],
    key: &OprfKey,
    threshold: usize,
    shares: Vec<KeyShare>,
) -> Result<Enrollment, PinError> {
    check_account(account)?;
    params.check_accepted()?;
    let guardians = GuardianSet::new(threshold, shares.iter().map(KeyShare::commitment).collect())?;
    if *guardians.public_key() != key.public_key() {
        return Err(PinError::InconsistentCommitments(threshold));
    }
    // The record's index order must be strictly increasing for it to decode.
    if shares.windows(2).any(|w| match w {
        [a, b] => a.index() >= b.index(),
        _ => false,
    }) {
        return Err(PinError::InvalidValue(
            "share order (indices must increase)",
        ));
    }
    let stretched = stretch(pin, account.as_bytes(), &user_salt, params)?;
    let output = evaluate_unblinded(key, stretched.as_bytes())?;
    let wrap_key = derive_wrap_key(&output);
    let mut record = VaultRecord {
        vault_id,
        params: *params,
        user_salt,
        guardians,
        sealed: [0u8; SEALED_LEN],
    };
    let ad = record.aad(account)?;
    let sealed = aead::seal(&wrap_key, &ZERO_NONCE, &ad, master.as_bytes());
    record.sealed = sealed
        .as_slice()
        .try_into()
        .map_err(|_| PinError::InvalidLength {
            what: "sealed master secret",
            expected: SEALED_LEN,
            actual: sealed.len(),
        })?;
    let guardians = shares
        .into_iter()
        .map(|share| {
            let index = share.index();
            GuardianEnrollment {
                index,
                share,
                success_verifier: SuccessToken::derive(&output, index).verifier(),
            }
        })
        .collect();
    Ok(Enrollment { record, guardians })
}

/// A recovery in progress (spec/pin.md 6.4 steps 2–4): the stretched PIN, the blind and the
/// record it is checked against. Secret; zeroized on drop; `Debug` prints nothing secret.
///
/// [`Recovery::finish`] takes `&self`: when too few answers verify, the client asks further
/// guardians with the same [`Recovery::blinded`] element and calls `finish` again with all
/// answers, without stretching the PIN again.
pub struct Recovery {
    record: VaultRecord,
    ad: Vec<u8>,
    input: StretchedPin,
    blind: Blind,
    blinded: BlindedElement,
}

impl Recovery {
    /// Stretches the PIN with the record's salt and parameters and blinds it. Returns the
    /// recovery and the element to send in `VaultEvaluate`.
    pub fn start<R: CryptoRng + ?Sized>(
        pin: &NormalizedPin,
        account: &str,
        record: VaultRecord,
        rng: &mut R,
    ) -> Result<(Self, BlindedElement), PinError> {
        let ad = record.aad(account)?;
        let input = stretch(pin, account.as_bytes(), record.user_salt(), record.params())?;
        let (blind, blinded) = oprf::blind(input.as_bytes(), rng)?;
        Ok((
            Self {
                record,
                ad,
                input,
                blind,
                blinded,
            },
            blinded,
        ))
    }

    /// [`Recovery::start`] with a caller-chosen blind: for test vectors only
    /// (`hazmat::recovery_start_with_blind`).
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))]
    pub(crate) fn start_with_blind(
        pin: &NormalizedPin,
        account: &str,
        record: VaultRecord,
        blind: Blind,
    ) -> Result<(Self, BlindedElement), PinError> {
        let ad = record.aad(account)?;
        let input = stretch(pin, account.as_bytes(), record.user_salt(), record.params())?;
        let blinded = oprf::blind_with(input.as_bytes(), &blind)?;
        Ok((
            Self {
                record,
                ad,
                input,
                blind,
                blinded,
            },
            blinded,
        ))
    }

    /// The blinded element sent to every guardian.
    pub const fn blinded(&self) -> &BlindedElement {
        &self.blinded
    }

    /// The record this recovery checks answers against.
    pub const fn record(&self) -> &VaultRecord {
        &self.record
    }

    /// Verifies every response's DLEQ proof against its guardian's `K_i` in the record;
    /// responses that fail, name an index not in the record, or repeat an index are
    /// discarded and reported. With at least `t` valid ones: combines the first `t`,
    /// finalizes, derives `wrap_key` and opens the sealed master secret.
    ///
    /// Errors: [`PinError::NotEnoughValidResponses`] (listing the faulty indices) with fewer
    /// than `t` valid responses; [`PinError::WrongPin`] when the vault does not open (wrong
    /// PIN, or a record altered since enrolment).
    ///
    /// The caller must set each response's `index` to the index of the guardian it asked
    /// (spec/pin.md 6.4 step 3) and drop answers whose claimed index differs.
    pub fn finish(&self, responses: &[GuardianResponse]) -> Result<Recovered, PinError> {
        let guardians = self.record.guardians();
        let threshold = guardians.threshold();
        let (valid, faulty) = guardians.verify_responses(&self.blinded, responses);
        let Some(first) = valid.get(..threshold).filter(|v| v.len() == threshold) else {
            return Err(PinError::NotEnoughValidResponses {
                needed: threshold,
                valid: valid.len(),
                faulty,
            });
        };
        let combined = combine_valid(first)?;
        let output = oprf::finalize(self.input.as_bytes(), self.blind.duplicate(), &combined)?;
        let wrap_key = derive_wrap_key(&output);
        let opened = Zeroizing::new(
            aead::open(&wrap_key, &ZERO_NONCE, &self.ad, self.record.sealed())
                .map_err(|_| PinError::WrongPin)?,
        );
        let master = MasterSecret::from_slice(&opened)?;
        let success_tokens = self
            .record
            .indices()
            .map(|i| (i, SuccessToken::derive(&output, i)))
            .collect();
        Ok(Recovered {
            master,
            success_tokens,
            faulty,
        })
    }
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("record", &self.record)
            .field("blinded", &self.blinded)
            .finish_non_exhaustive()
    }
}

/// A successful recovery.
pub struct Recovered {
    /// The recovered master secret.
    pub master: MasterSecret,
    /// `(i, token_i)` for every guardian index in the record, increasing. Send
    /// `VaultConfirm(token_i)` to every guardian that was sent `VaultEvaluate` (spec/pin.md
    /// 6.4 step 5), so each resets its attempt count.
    pub success_tokens: Vec<(u8, SuccessToken)>,
    /// Indices whose response was rejected (report them).
    pub faulty: Vec<u8>,
}

impl Recovered {
    /// Guardian `index`'s success token.
    pub fn token_for(&self, index: u8) -> Option<&SuccessToken> {
        self.success_tokens
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, t)| t)
    }
}

impl fmt::Debug for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovered")
            .field("master", &self.master)
            .field("tokens", &self.success_tokens.len())
            .field("faulty", &self.faulty)
            .finish()
    }
}

/// The outcome of [`choose_record`].
#[derive(Debug, Clone)]
pub struct RecordChoice<G> {
    /// The record the most guardians returned.
    pub record: VaultRecord,
    /// Guardians that returned exactly these bytes, in input order.
    pub agreeing: Vec<G>,
    /// Guardians that returned other bytes (another or an undecodable record), in input
    /// order: report them. Guardians that did not answer are not in the input at all.
    pub disagreeing: Vec<G>,
}

/// Spec/pin.md 6.4 step 1: groups the records fetched from guardians by their exact bytes and
/// picks the group with the most members among those that decode. On a tie the group seen
/// first wins (so a caller who orders its guardians by preference decides). Fails with
/// [`PinError::VaultUnavailable`] if that record was returned by fewer guardians than its
/// own threshold `t` (or if none decodes). Pass one entry per guardian.
pub fn choose_record<G: Clone, B: AsRef<[u8]>>(
    fetched: &[(G, B)],
) -> Result<RecordChoice<G>, PinError> {
    // (first position, count) per distinct byte string.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (pos, (_, bytes)) in fetched.iter().enumerate() {
        let bytes = bytes.as_ref();
        let existing = groups.iter_mut().find(|(first, _)| {
            fetched
                .get(*first)
                .is_some_and(|(_, b)| b.as_ref() == bytes)
        });
        match existing {
            Some((_, count)) => *count += 1,
            None => groups.push((pos, 1)),
        }
    }
    let mut best: Option<(VaultRecord, usize, usize)> = None;
    for (first, count) in groups {
        if best.as_ref().is_some_and(|(_, _, c)| *c >= count) {
            continue;
        }
        let Some((_, bytes)) = fetched.get(first) else {
            continue;
        };
        if let Ok(record) = VaultRecord::decode(bytes.as_ref()) {
            best = Some((record, first, count));
        }
    }
    let Some((record, first, count)) = best else {
        return Err(PinError::VaultUnavailable {
            agreeing: 0,
            needed: 1,
        });
    };
    if count < record.threshold() {
        return Err(PinError::VaultUnavailable {
            agreeing: count,
            needed: record.threshold(),
        });
    }
    let chosen = fetched.get(first).map(|(_, b)| b.as_ref()).unwrap_or(&[]);
    let (agreeing, disagreeing): (Vec<_>, Vec<_>) =
        fetched.iter().partition(|(_, b)| b.as_ref() == chosen);
    Ok(RecordChoice {
        record,
        agreeing: agreeing.into_iter().map(|(g, _)| g.clone()).collect(),
        disagreeing: disagreeing.into_iter().map(|(g, _)| g.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn hkdf32_matches_rfc5869() {
        let ikm = [7u8; 32];
        let expected: Zeroizing<[u8; 32]> =
            sealpost_crypto::kdf::hkdf_sha256_array(b"", &ikm, b"Sealpost_PIN_Success_v1\x05")
                .unwrap();
        assert_eq!(*hkdf32(&ikm, &[SUCCESS_INFO, &[5]]), *expected);
    }

    #[test]
    fn limits() {
        assert_eq!(MIN_VAULT_RECORD_LEN, 128);
        assert_eq!(MAX_VAULT_RECORD_LEN, 8510);
        assert_eq!(SEALED_LEN, 48);
    }

    #[test]
    fn debug_redacts() {
        let ms = MasterSecret::from_bytes([0xAB; 32]);
        let printed = format!(
            "{ms:?} {:?} {:?}",
            ms.reglock_token(),
            SuccessToken::from_bytes([0xAB; 32])
        );
        assert!(!printed.to_lowercase().contains("ab"), "{printed}");
        assert!(!printed.contains("171"), "{printed}");
    }

    #[test]
    fn reglock_token_matches_its_verifier_only() {
        let ms = MasterSecret::generate(&mut rand::rng());
        let token = ms.reglock_token();
        assert!(token.matches(&token.verifier()));
        let other = MasterSecret::generate(&mut rand::rng()).reglock_token();
        assert!(!other.matches(&token.verifier()));
        assert_ne!(*ms.backup_key(), *token.as_bytes());
    }

    #[test]
    fn enroll_rejects_bad_arguments() {
        let mut rng = StdRng::seed_from_u64(1);
        let pin = normalize("123456").unwrap();
        let ms = MasterSecret::generate(&mut rng);
        let p = Argon2Params::testing();
        for account in ["", "a\nb", &"x".repeat(65)] {
            assert!(matches!(
                enroll(&pin, account, &ms, 1, 1, &p, &mut rng),
                Err(PinError::InvalidAccount { .. })
            ));
        }
        assert_eq!(
            enroll(&pin, "+15550001", &ms, 0, 1, &p, &mut rng).unwrap_err(),
            PinError::ZeroThreshold
        );
        let huge = Argon2Params {
            memory_kib: MAX_MEMORY + 1,
            ..p
        };
        assert!(matches!(
            enroll(&pin, "+15550001", &ms, 1, 1, &huge, &mut rng),
            Err(PinError::Argon2ParamsOutOfRange { .. })
        ));
    }

    const MAX_MEMORY: u32 = crate::stretch::MAX_MEMORY_KIB;
}
