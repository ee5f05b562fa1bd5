//! Shamir t-of-n sharing of the OPRF key and combination of guardian evaluations in the
//! exponent (spec/pin.md "Threshold").
//!
//! `k = f(0)` for a random polynomial `f` of degree `t - 1` over the ristretto255 scalar field;
//! guardian `i` (index `1..=n`) holds `k_i = f(i)` and publishes `K_i = k_i·G`. Given valid
//! evaluations `Z_i = k_i·B` from any `t` distinct guardians, `Σ λ_i·Z_i = k·B` with `λ_i` the
//! Lagrange coefficients at zero.

use crate::{
    PinError,
    oprf::{BlindedElement, EvaluatedElement, OprfKey, OprfPublicKey, Proof, verify_proof},
};
use core::fmt;
use curve25519_dalek::{
    ristretto::RistrettoPoint,
    scalar::Scalar,
    traits::{Identity, VartimeMultiscalarMul},
};
use sealpost_crypto::CryptoRng;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Encoded length of a key share: `index || scalar`.
pub const SHARE_LEN: usize = 33;
/// Largest number of guardians (indices are one byte, zero is the secret).
pub const MAX_SHARES: usize = 255;

/// A guardian's share of the OPRF key. Secret; zeroized on drop; `Debug` prints the index and
/// public commitment only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyShare {
    #[zeroize(skip)]
    index: u8,
    key: OprfKey,
}

impl KeyShare {
    /// The share index (`1..=n`).
    pub const fn index(&self) -> u8 {
        self.index
    }

    /// The share as an OPRF key: guardians evaluate with [`OprfKey::evaluate`].
    pub const fn key(&self) -> &OprfKey {
        &self.key
    }

    /// The public commitment `K_i = k_i·G`.
    pub fn commitment(&self) -> ShareCommitment {
        ShareCommitment {
            index: self.index,
            public_key: self.key.public_key(),
        }
    }

    /// Encodes `index (1 byte) || scalar (32 bytes, little-endian)`.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SHARE_LEN]> {
        let mut out = Zeroizing::new([0u8; SHARE_LEN]);
        let (i, s) = out.split_at_mut(1);
        i.copy_from_slice(&[self.index]);
        s.copy_from_slice(self.key.to_bytes().as_slice());
        out
    }

    /// Parses the 33-byte encoding; index 0 and zero or non-canonical scalars are rejected.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PinError> {
        let Some((&index, scalar)) = bytes.split_first().filter(|_| bytes.len() == SHARE_LEN)
        else {
            return Err(PinError::InvalidLength {
                what: "key share",
                expected: SHARE_LEN,
                actual: bytes.len(),
            });
        };
        if index == 0 {
            return Err(PinError::ZeroIndex);
        }
        Ok(Self {
            index,
            key: OprfKey::from_bytes(scalar)?,
        })
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("index", &self.index)
            .field("public_key", &self.key.public_key())
            .finish_non_exhaustive()
    }
}

/// A guardian's public commitment `(i, K_i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareCommitment {
    /// Share index.
    pub index: u8,
    /// `K_i = k_i·G`.
    pub public_key: OprfPublicKey,
}

/// The public description of a sharing: threshold and every guardian's commitment. The client
/// stores this at registration and checks guardian proofs against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianSet {
    threshold: usize,
    commitments: Vec<ShareCommitment>,
    public_key: OprfPublicKey,
}

/// One guardian's answer to a blinded element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardianResponse {
    /// Which guardian answered.
    pub index: u8,
    /// `Z_i`, claimed to be `k_i·B`.
    pub evaluated: EvaluatedElement,
    /// DLEQ proof for `Z_i` against `K_i`.
    pub proof: Proof,
}

/// The result of [`GuardianSet::combine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    /// `k·B`, ready for [`crate::oprf::finalize`].
    pub evaluated: EvaluatedElement,
    /// Indices whose response failed verification (or were unknown or repeated): report them.
    pub rejected: Vec<u8>,
}

fn check_params(threshold: usize, shares: usize) -> Result<(), PinError> {
    if threshold == 0 {
        return Err(PinError::ZeroThreshold);
    }
    if shares > MAX_SHARES {
        return Err(PinError::TooManyShares(shares));
    }
    if threshold > shares {
        return Err(PinError::ThresholdTooLarge { threshold, shares });
    }
    Ok(())
}

fn check_indices(indices: &[u8]) -> Result<(), PinError> {
    let mut seen = [false; 256];
    for &i in indices {
        if i == 0 {
            return Err(PinError::ZeroIndex);
        }
        let slot = seen.get_mut(usize::from(i)).ok_or(PinError::ZeroIndex)?;
        if *slot {
            return Err(PinError::DuplicateIndex(i));
        }
        *slot = true;
    }
    Ok(())
}

/// Lagrange coefficients at `x` for the distinct non-zero `indices`:
/// `λ_i(x) = Π_{j≠i} (x - x_j) / (x_i - x_j)`.
fn lagrange_at(x: Scalar, indices: &[u8]) -> Result<Vec<Scalar>, PinError> {
    check_indices(indices)?;
    Ok(indices
        .iter()
        .map(|&i| {
            let xi = Scalar::from(i);
            let (num, den) = indices.iter().filter(|&&j| j != i).fold(
                (Scalar::ONE, Scalar::ONE),
                |(num, den), &j| {
                    let xj = Scalar::from(j);
                    (num * (x - xj), den * (xi - xj))
                },
            );
            // den is a product of non-zero differences of distinct indices < ℓ: invertible.
            num * den.invert()
        })
        .collect())
}

/// Lagrange coefficients at zero for any set of distinct non-zero indices.
pub fn lagrange_at_zero(indices: &[u8]) -> Result<Vec<Scalar>, PinError> {
    lagrange_at(Scalar::ZERO, indices)
}

/// Label of the challenge in [`commitments_consistent`].
const CONSISTENCY_LABEL: &[u8] = b"Sealpost_GuardianSet_Consistency_v1";

/// Whether the `n` commitments `K_j = P(x_j)·G` (distinct non-zero indices `x_j`) lie on one
/// polynomial `P` of degree `< t`.
///
/// They do iff the vector `(K_j)` is in the Reed–Solomon code of dimension `t` at the points
/// `x_j`, i.e. orthogonal to its dual, which is spanned by `(v_j·x_j^m)_j` for
/// `m = 0..n−t` with `v_j = 1/Π_{k≠j}(x_j − x_k)` (the `(n−1)`-th divided difference of a
/// polynomial of degree `≤ n − 2` is zero). Instead of checking the `n − t` rows one by one,
/// check their combination with the powers of a challenge `ρ`:
/// `Σ_j v_j·(Σ_{m<n−t} (ρ·x_j)^m)·K_j = identity`. For commitments off every such polynomial
/// the left side is a non-zero polynomial in `ρ` of degree `< n − t` (with group-element
/// coefficients, in a prime-order group), so it vanishes for fewer than 255 values of `ρ`.
/// `ρ` is a hash of the threshold and all commitments, so whoever builds the commitments
/// cannot pick it (random-oracle argument; each attempt passes with probability
/// `< 2^-244`). Cost: `O(n²)` scalar operations and one variable-time multi-scalar
/// multiplication (the inputs are public).
fn commitments_consistent(threshold: usize, commitments: &[ShareCommitment]) -> bool {
    let n = commitments.len();
    let Some(rows) = n.checked_sub(threshold).filter(|r| *r > 0) else {
        return true; // n ≤ t: any t points lie on a polynomial of degree < t
    };
    let mut h = Sha512::new();
    h.update(CONSISTENCY_LABEL);
    h.update([byte(threshold), byte(n)]);
    for c in commitments {
        h.update([c.index]);
        h.update(c.public_key.to_bytes());
    }
    let rho = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let xs: Vec<Scalar> = commitments.iter().map(|c| Scalar::from(c.index)).collect();
    // Distinct indices below ℓ: every product is non-zero, so the inverse is defined.
    let v: Vec<Scalar> = xs
        .iter()
        .enumerate()
        .map(|(j, xj)| {
            xs.iter()
                .enumerate()
                .filter(|(k, _)| *k != j)
                .fold(Scalar::ONE, |acc, (_, xk)| acc * (xj - xk))
                .invert()
        })
        .collect();
    let coeffs: Vec<Scalar> = xs
        .iter()
        .zip(&v)
        .map(|(xj, vj)| {
            let y = rho * xj;
            // Σ_{m<rows} y^m by Horner.
            let g = (0..rows).fold(Scalar::ZERO, |acc, _| acc * y + Scalar::ONE);
            vj * g
        })
        .collect();
    let sum = RistrettoPoint::vartime_multiscalar_mul(
        &coeffs,
        commitments.iter().map(|c| *c.public_key.point()),
    );
    sum == RistrettoPoint::identity()
}

/// A count known to be at most [`MAX_SHARES`] as a byte.
fn byte(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// Splits `key` into `n` shares with threshold `t` (`1 ≤ t ≤ n ≤ 255`).
pub fn split<R: CryptoRng + ?Sized>(
    key: &OprfKey,
    threshold: usize,
    shares: usize,
    rng: &mut R,
) -> Result<(Vec<KeyShare>, GuardianSet), PinError> {
    check_params(threshold, shares)?;
    let mut coeffs: Vec<Scalar> = Vec::with_capacity(threshold);
    coeffs.push(*key.scalar());
    coeffs.extend((1..threshold).map(|_| Scalar::random(rng)));
    let mut out = Vec::with_capacity(shares);
    for i in 1..=shares {
        let index = u8::try_from(i).map_err(|_| PinError::TooManyShares(shares))?;
        let x = Scalar::from(index);
        // Horner evaluation of f(x).
        let mut y = coeffs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c);
        if y == Scalar::ZERO {
            // Probability ~2^-252 per share; a zero share would be rejected on decode.
            coeffs.zeroize();
            y.zeroize();
            return Err(PinError::InvalidScalar);
        }
        out.push(KeyShare {
            index,
            key: OprfKey::from_scalar(y),
        });
    }
    coeffs.zeroize();
    let set = GuardianSet::new(threshold, out.iter().map(KeyShare::commitment).collect())?;
    Ok((out, set))
}

impl GuardianSet {
    /// Builds a set from published commitments and checks that they lie on one polynomial
    /// of degree `threshold - 1` (Feldman-style consistency, so a client cannot be handed
    /// commitments under which different guardian subsets give different outputs).
    ///
    /// The check is one multi-scalar multiplication over all `n` commitments (see
    /// `commitments_consistent`), so a 255-guardian record costs milliseconds, not the
    /// `(n − t)·t` point multiplications of interpolating every extra commitment.
    pub fn new(threshold: usize, commitments: Vec<ShareCommitment>) -> Result<Self, PinError> {
        check_params(threshold, commitments.len())?;
        let indices: Vec<u8> = commitments.iter().map(|c| c.index).collect();
        check_indices(&indices)?;
        if !commitments_consistent(threshold, &commitments) {
            return Err(PinError::InconsistentCommitments(threshold));
        }
        let base = commitments.get(..threshold).unwrap_or(&commitments);
        let base_idx: Vec<u8> = base.iter().map(|c| c.index).collect();
        let lambdas = lagrange_at(Scalar::ZERO, &base_idx)?;
        let k = RistrettoPoint::vartime_multiscalar_mul(
            &lambdas,
            base.iter().map(|c| *c.public_key.point()),
        );
        let public_key = OprfPublicKey::from_point(k);
        if public_key.point() == &RistrettoPoint::identity() {
            return Err(PinError::InvalidElement);
        }
        Ok(Self {
            threshold,
            commitments,
            public_key,
        })
    }

    /// The threshold `t`.
    pub const fn threshold(&self) -> usize {
        self.threshold
    }

    /// Every guardian's commitment.
    pub fn commitments(&self) -> &[ShareCommitment] {
        &self.commitments
    }

    /// The group public key `K = k·G`, interpolated from the commitments.
    pub const fn public_key(&self) -> &OprfPublicKey {
        &self.public_key
    }

    /// Verifies each response's proof against its guardian's commitment. Returns the valid
    /// responses (in input order, at most one per index) and the indices of the rejected ones:
    /// a failed proof, an index without a commitment, or an index that already has a valid
    /// response. Every response is checked, so every faulty guardian is reported.
    pub fn verify_responses(
        &self,
        blinded: &BlindedElement,
        responses: &[GuardianResponse],
    ) -> (Vec<GuardianResponse>, Vec<u8>) {
        let mut valid: Vec<GuardianResponse> = Vec::with_capacity(self.threshold);
        let mut rejected = Vec::new();
        for r in responses {
            let known = self.commitments.iter().find(|c| c.index == r.index);
            let fresh = !valid.iter().any(|v| v.index == r.index);
            let ok = match known {
                Some(c) if fresh => {
                    verify_proof(&c.public_key, blinded, &r.evaluated, &r.proof).is_ok()
                }
                _ => false,
            };
            if ok {
                valid.push(*r);
            } else {
                rejected.push(r.index);
            }
        }
        (valid, rejected)
    }

    /// Verifies each response's proof against its guardian's commitment, drops the ones that
    /// fail (listing them in [`Combined::rejected`]), and combines the first `t` valid ones:
    /// `Z = Σ λ_i·Z_i`. Fails with [`PinError::NotEnoughShares`] if fewer than `t` verify.
    pub fn combine(
        &self,
        blinded: &BlindedElement,
        responses: &[GuardianResponse],
    ) -> Result<Combined, PinError> {
        let (mut valid, rejected) = self.verify_responses(blinded, responses);
        if valid.len() < self.threshold {
            return Err(PinError::NotEnoughShares {
                needed: self.threshold,
                got: valid.len(),
            });
        }
        valid.truncate(self.threshold);
        let evaluated = combine_valid(&valid)?;
        Ok(Combined {
            evaluated,
            rejected,
        })
    }
}

/// `Σ λ_i·Z_i` over responses whose proofs were already verified (distinct indices).
pub(crate) fn combine_valid(valid: &[GuardianResponse]) -> Result<EvaluatedElement, PinError> {
    let indices: Vec<u8> = valid.iter().map(|r| r.index).collect();
    let lambdas = lagrange_at_zero(&indices)?;
    let z = lambdas
        .iter()
        .zip(valid)
        .fold(RistrettoPoint::identity(), |acc, (l, r)| {
            acc + l * r.evaluated.point()
        });
    let evaluated = EvaluatedElement::from_point(z);
    if evaluated.point() == &RistrettoPoint::identity() {
        return Err(PinError::InvalidElement);
    }
    Ok(evaluated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oprf::{blind, evaluate_unblinded, finalize};
    use proptest::prelude::*;

    fn respond(share: &KeyShare, blinded: &BlindedElement) -> GuardianResponse {
        let (evaluated, proof) = share.key().evaluate(blinded, &mut rand::rng());
        GuardianResponse {
            index: share.index(),
            evaluated,
            proof,
        }
    }

    /// Runs the client side against the given responses.
    fn client(
        set: &GuardianSet,
        input: &[u8],
        shares: &[&KeyShare],
    ) -> Result<(crate::oprf::OprfOutput, Vec<u8>), PinError> {
        let (b, blinded) = blind(input, &mut rand::rng())?;
        let responses: Vec<_> = shares.iter().map(|s| respond(s, &blinded)).collect();
        let c = set.combine(&blinded, &responses)?;
        Ok((finalize(input, b, &c.evaluated)?, c.rejected))
    }

    #[test]
    fn two_of_three_end_to_end() {
        let mut rng = rand::rng();
        let key = OprfKey::generate(&mut rng);
        let (shares, set) = split(&key, 2, 3, &mut rng).unwrap();
        assert_eq!(set.public_key(), &key.public_key());
        let input = b"stretched pin bytes";
        let direct = evaluate_unblinded(&key, input).unwrap();
        for pair in [[0, 1], [0, 2], [1, 2], [2, 0]] {
            let (out, rejected) =
                client(&set, input, &[&shares[pair[0]], &shares[pair[1]]]).unwrap();
            assert!(out.ct_eq(&direct), "pair {pair:?}");
            assert!(rejected.is_empty());
        }
        // One guardian alone: combine refuses, and its share used as if it were the key
        // gives a different output.
        assert_eq!(
            client(&set, input, &[&shares[0]]).unwrap_err(),
            PinError::NotEnoughShares { needed: 2, got: 1 }
        );
        let lone = evaluate_unblinded(shares[0].key(), input).unwrap();
        assert!(!lone.ct_eq(&direct));
        // Wrong PIN: different output.
        let (wrong, _) = client(&set, b"stretched pin bytez", &[&shares[0], &shares[1]]).unwrap();
        assert!(!wrong.ct_eq(&direct));
    }

    #[test]
    fn misbehaving_guardian_detected_and_skipped() {
        let mut rng = rand::rng();
        let key = OprfKey::generate(&mut rng);
        let (shares, set) = split(&key, 2, 3, &mut rng).unwrap();
        let input = b"input";
        let direct = evaluate_unblinded(&key, input).unwrap();
        for case in 0..4 {
            let (b, blinded) = blind(input, &mut rng).unwrap();
            let good1 = respond(&shares[1], &blinded);
            let good2 = respond(&shares[2], &blinded);
            let bad = match case {
                // Garbage element with the honest proof.
                0 => GuardianResponse {
                    evaluated: EvaluatedElement::from_point(RistrettoPoint::random(&mut rng)),
                    ..respond(&shares[0], &blinded)
                },
                // Honest evaluation and proof, but for a different blinded element.
                1 => respond(&shares[0], &blind(b"other", &mut rng).unwrap().1),
                // Guardian 2's valid answer relabelled as guardian 1's.
                2 => GuardianResponse { index: 1, ..good1 },
                // Unknown guardian index.
                _ => GuardianResponse { index: 9, ..good1 },
            };
            // The proof check catches it directly.
            if let Some(c) = set.commitments().iter().find(|c| c.index == bad.index) {
                assert_eq!(
                    verify_proof(&c.public_key, &blinded, &bad.evaluated, &bad.proof),
                    Err(PinError::ProofVerification),
                    "case {case}"
                );
            }
            // Bad + one good: not enough.
            assert_eq!(
                set.combine(&blinded, &[bad, good1]).unwrap_err(),
                PinError::NotEnoughShares { needed: 2, got: 1 },
                "case {case}"
            );
            // Bad + two good: bad one rejected and not used, output correct.
            let c = set.combine(&blinded, &[bad, good1, good2]).unwrap();
            assert_eq!(c.rejected, vec![bad.index], "case {case}");
            assert!(finalize(input, b, &c.evaluated).unwrap().ct_eq(&direct));
        }
        // A repeated response from the same guardian counts once.
        let (_, blinded) = blind(input, &mut rng).unwrap();
        let good = respond(&shares[1], &blinded);
        assert_eq!(
            set.combine(&blinded, &[good, good]).unwrap_err(),
            PinError::NotEnoughShares { needed: 2, got: 1 }
        );
    }

    #[test]
    fn parameter_and_index_validation() {
        let mut rng = rand::rng();
        let key = OprfKey::generate(&mut rng);
        assert_eq!(
            split(&key, 0, 3, &mut rng).unwrap_err(),
            PinError::ZeroThreshold
        );
        assert_eq!(
            split(&key, 4, 3, &mut rng).unwrap_err(),
            PinError::ThresholdTooLarge {
                threshold: 4,
                shares: 3
            }
        );
        assert_eq!(
            split(&key, 2, 256, &mut rng).unwrap_err(),
            PinError::TooManyShares(256)
        );
        assert_eq!(split(&key, 255, 255, &mut rng).unwrap().0.len(), 255);
        assert_eq!(lagrange_at_zero(&[1, 0]).unwrap_err(), PinError::ZeroIndex);
        assert_eq!(
            lagrange_at_zero(&[1, 2, 1]).unwrap_err(),
            PinError::DuplicateIndex(1)
        );
        // 1-of-1 is the unshared key.
        let (s, set) = split(&key, 1, 1, &mut rng).unwrap();
        assert_eq!(s[0].key().to_bytes(), key.to_bytes());
        assert_eq!(set.public_key(), &key.public_key());
    }

    /// The exact check: interpolate the first `t` commitments at every other index.
    fn consistent_by_interpolation(t: usize, c: &[ShareCommitment]) -> bool {
        let (base, rest) = c.split_at(t);
        let idx: Vec<u8> = base.iter().map(|c| c.index).collect();
        rest.iter().all(|r| {
            let l = lagrange_at(Scalar::from(r.index), &idx).unwrap();
            let p = l
                .iter()
                .zip(base)
                .fold(RistrettoPoint::identity(), |acc, (l, c)| {
                    acc + l * c.public_key.point()
                });
            p == *r.public_key.point()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The fast check agrees with interpolation on consistent sets, on sets with one
        /// commitment replaced, and on sets whose threshold is understated by one.
        #[test]
        fn fast_consistency_check_matches_interpolation(
            n in 2usize..=9,
            t_seed in 0usize..9,
            victim in 0usize..9,
            seed in any::<u64>(),
        ) {
            use rand::SeedableRng;
            let t = 1 + t_seed % n;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = OprfKey::generate(&mut rng);
            let (shares, _) = split(&key, t, n, &mut rng).unwrap();
            let good: Vec<ShareCommitment> = shares.iter().map(KeyShare::commitment).collect();
            prop_assert!(commitments_consistent(t, &good));
            prop_assert!(consistent_by_interpolation(t, &good));
            let mut bad = good.clone();
            bad[victim % n].public_key = OprfKey::generate(&mut rng).public_key();
            prop_assert_eq!(
                commitments_consistent(t, &bad),
                consistent_by_interpolation(t, &bad)
            );
            if t > 1 {
                prop_assert_eq!(
                    commitments_consistent(t - 1, &good),
                    consistent_by_interpolation(t - 1, &good)
                );
                prop_assert!(!commitments_consistent(t - 1, &good));
            }
            if t < n {
                prop_assert!(!commitments_consistent(t, &bad));
            }
        }
    }

    #[test]
    fn inconsistent_commitments_rejected() {
        let mut rng = rand::rng();
        let key = OprfKey::generate(&mut rng);
        let (_, set) = split(&key, 2, 3, &mut rng).unwrap();
        let mut c = set.commitments().to_vec();
        c[2].public_key = OprfKey::generate(&mut rng).public_key();
        assert_eq!(
            GuardianSet::new(2, c).unwrap_err(),
            PinError::InconsistentCommitments(2)
        );
        let mut c = set.commitments().to_vec();
        c[1].index = c[0].index;
        assert_eq!(
            GuardianSet::new(2, c).unwrap_err(),
            PinError::DuplicateIndex(1)
        );
    }

    #[test]
    fn share_encoding() {
        let mut rng = rand::rng();
        let key = OprfKey::generate(&mut rng);
        let (shares, _) = split(&key, 2, 3, &mut rng).unwrap();
        let bytes = shares[2].to_bytes();
        assert_eq!(bytes[0], 3);
        let back = KeyShare::from_bytes(bytes.as_slice()).unwrap();
        assert_eq!(back.index(), 3);
        assert_eq!(back.key().to_bytes(), shares[2].key().to_bytes());
        let mut zero = *bytes;
        zero[0] = 0;
        assert_eq!(
            KeyShare::from_bytes(&zero).unwrap_err(),
            PinError::ZeroIndex
        );
        assert!(KeyShare::from_bytes(&bytes[..32]).is_err());
        let dbg = format!("{:?}", shares[2]);
        assert!(!dbg.contains(&hex::encode(&bytes[1..9])));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any t distinct guardians out of n (t ≤ n ≤ 7) reconstruct k·B, and the Lagrange
        /// combination of the shares themselves gives k.
        #[test]
        fn any_t_subset_combines(n in 1usize..=7, t_seed in 0usize..7, perm_seed in any::<u64>(), input in proptest::collection::vec(any::<u8>(), 0..40)) {
            let t = 1 + t_seed % n;
            let mut rng = rand::rng();
            let key = OprfKey::generate(&mut rng);
            let (shares, set) = split(&key, t, n, &mut rng).unwrap();
            // Deterministic shuffle from perm_seed, then take t.
            let mut order: Vec<usize> = (0..n).collect();
            let mut s = perm_seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let subset: Vec<&KeyShare> = order[..t].iter().map(|&i| &shares[i]).collect();
            let idx: Vec<u8> = subset.iter().map(|s| s.index()).collect();
            let l = lagrange_at_zero(&idx).unwrap();
            let k: Scalar = l.iter().zip(&subset).map(|(l, s)| l * s.key().scalar()).sum();
            prop_assert_eq!(k, *key.scalar());
            let (out, rejected) = client(&set, &input, &subset).unwrap();
            prop_assert!(out.ct_eq(&evaluate_unblinded(&key, &input).unwrap()));
            prop_assert!(rejected.is_empty());
            if t > 1 {
                prop_assert_eq!(
                    client(&set, &input, &subset[..t - 1]).unwrap_err(),
                    PinError::NotEnoughShares { needed: t, got: t - 1 }
                );
            }
        }
    }
}
