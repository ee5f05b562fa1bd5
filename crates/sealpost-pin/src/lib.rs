//! Two-step verification PIN for Sealpost: pure functions, no I/O.
//!
//! * [`normalize`]: PIN normalisation (trim, NFKD, Unicode digits to ASCII, length limits).
//! * [`stretch`]: Argon2id stretching with an account-bound, versioned salt.
//! * [`oprf`]: RFC 9497 VOPRF, ristretto255-SHA512 (checked against the RFC's vector).
//! * [`threshold`]: Shamir t-of-n sharing of the OPRF key among guardians, with per-guardian
//!   DLEQ proofs verified by the client before combination in the exponent.
//! * [`vault`]: the PIN vault (spec/pin.md section 6): master secret, registration-lock
//!   token, vault record codec, enrolment, guardian-side checks, recovery.
//! * [`reminder`]: the local reminder verifier and its rate limit and schedule (section 11).
//!
//! Guardian storage, attempt counting and the registration lock live in `sealpost-relay`;
//! the client flows in `sealpost-client`.
//!
//! ```
//! use sealpost_pin::{normalize::normalize, oprf, stretch, threshold};
//! # fn main() -> Result<(), sealpost_pin::PinError> {
//! let mut rng = rand::rng();
//! // Registration: split a fresh OPRF key 2-of-3 among guardians.
//! let key = oprf::OprfKey::generate(&mut rng);
//! let (shares, guardians) = threshold::split(&key, 2, 3, &mut rng)?;
//!
//! // Client: normalise and stretch the PIN, blind it.
//! let pin = normalize("１２３４５６")?;
//! let salt = stretch::UserSalt::generate(&mut rng);
//! let input = stretch::stretch(&pin, b"account-1", &salt, &stretch::Argon2Params::testing())?;
//! let (blind, blinded) = oprf::blind(input.as_bytes(), &mut rng)?;
//!
//! // Two guardians answer; the client checks their proofs and combines.
//! let responses: Vec<_> = shares[1..]
//!     .iter()
//!     .map(|s| {
//!         let (evaluated, proof) = s.key().evaluate(&blinded, &mut rng);
//!         threshold::GuardianResponse { index: s.index(), evaluated, proof }
//!     })
//!     .collect();
//! let combined = guardians.combine(&blinded, &responses)?;
//! let output = oprf::finalize(input.as_bytes(), blind, &combined.evaluated)?;
//! assert!(output.ct_eq(&oprf::evaluate_unblinded(&key, input.as_bytes())?));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod codec;
mod error;
#[cfg(feature = "hazmat")]
pub mod hazmat;
pub mod normalize;
pub mod oprf;
pub mod reminder;
pub mod stretch;
pub mod threshold;
pub mod vault;

pub use error::PinError;
