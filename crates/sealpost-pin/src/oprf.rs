//! VOPRF over ristretto255 with SHA-512, as in RFC 9497 (mode `0x01`, batch size 1).
//!
//! Every function here is byte-for-byte RFC 9497 `ristretto255-SHA512` in VOPRF mode, and is
//! checked against the RFC's Appendix A.1.2 test vector. The threshold layer
//! ([`crate::threshold`]) treats each guardian as an independent RFC 9497 VOPRF server with key
//! share `k_i` and public key `K_i = k_i·G`, so each guardian's proof is an ordinary RFC proof.
//!
//! * `HashToGroup(x)  = from_uniform_bytes(expand_message_xmd_SHA512(x, "HashToGroup-" || ctx, 64))`
//! * `HashToScalar(x) = expand_message_xmd_SHA512(x, "HashToScalar-" || ctx, 64) mod ℓ`
//! * `ctx = "OPRFV1-" || 0x01 || "-ristretto255-SHA512"`
//! * `Finalize = SHA-512(u16(len(input)) || input || u16(32) || N || "Finalize")`

use crate::PinError;
use core::fmt;
use curve25519_dalek::{
    constants::RISTRETTO_BASEPOINT_TABLE,
    ristretto::{CompressedRistretto, RistrettoPoint},
    scalar::Scalar,
    traits::IsIdentity,
};
use sealpost_crypto::CryptoRng;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// RFC 9497 context string for VOPRF mode with ristretto255-SHA512.
pub const CONTEXT_STRING: &[u8] = b"OPRFV1-\x01-ristretto255-SHA512";
/// Encoded length of an element (compressed ristretto255).
pub const ELEMENT_LEN: usize = 32;
/// Encoded length of a scalar (little-endian, canonical).
pub const SCALAR_LEN: usize = 32;
/// Encoded length of a proof: `c || s`.
pub const PROOF_LEN: usize = 64;
/// Length of the OPRF output (SHA-512).
pub const OUTPUT_LEN: usize = 64;
/// Largest OPRF input (RFC 9497 length-prefixes it with two bytes).
pub const MAX_INPUT_LEN: usize = u16::MAX as usize;

/// RFC 9380 `expand_message_xmd` with SHA-512 for `len_in_bytes = 64` (the only length the
/// ristretto255-SHA512 suite uses), so `ell = 1` and the output is `b_1`.
/// `dst` must be at most 255 bytes (all DSTs here are short constants).
fn expand_message_xmd_64(msg: &[&[u8]], dst_parts: &[&[u8]]) -> [u8; 64] {
    let dst_len: usize = dst_parts.iter().map(|p| p.len()).sum();
    let dst_len_byte = u8::try_from(dst_len).unwrap_or(u8::MAX);
    let mut h = Sha512::new();
    h.update([0u8; 128]); // Z_pad: SHA-512 block size
    for m in msg {
        h.update(m);
    }
    h.update(64u16.to_be_bytes()); // l_i_b_str
    h.update([0u8]);
    for p in dst_parts {
        h.update(p);
    }
    h.update([dst_len_byte]);
    let b0 = h.finalize();
    let mut h = Sha512::new();
    h.update(b0);
    h.update([1u8]);
    for p in dst_parts {
        h.update(p);
    }
    h.update([dst_len_byte]);
    h.finalize().into()
}

pub(crate) fn hash_to_group(msg: &[&[u8]]) -> RistrettoPoint {
    let uniform = expand_message_xmd_64(msg, &[b"HashToGroup-", CONTEXT_STRING]);
    RistrettoPoint::from_uniform_bytes(&uniform)
}

fn hash_to_scalar(msg: &[&[u8]]) -> Scalar {
    let uniform = expand_message_xmd_64(msg, &[b"HashToScalar-", CONTEXT_STRING]);
    Scalar::from_bytes_mod_order_wide(&uniform)
}

fn len2(n: usize) -> [u8; 2] {
    // Callers only pass element/scalar/hash sizes or inputs bounded by MAX_INPUT_LEN.
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

fn decode_element(bytes: &[u8], what: &'static str) -> Result<RistrettoPoint, PinError> {
    let arr: [u8; ELEMENT_LEN] = bytes.try_into().map_err(|_| PinError::InvalidLength {
        what,
        expected: ELEMENT_LEN,
        actual: bytes.len(),
    })?;
    let p = CompressedRistretto(arr)
        .decompress()
        .ok_or(PinError::InvalidElement)?;
    if p.is_identity() {
        return Err(PinError::InvalidElement);
    }
    Ok(p)
}

fn decode_scalar(bytes: &[u8], what: &'static str) -> Result<Scalar, PinError> {
    let arr: [u8; SCALAR_LEN] = bytes.try_into().map_err(|_| PinError::InvalidLength {
        what,
        expected: SCALAR_LEN,
        actual: bytes.len(),
    })?;
    Option::<Scalar>::from(Scalar::from_canonical_bytes(arr)).ok_or(PinError::InvalidScalar)
}

fn nonzero_random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    loop {
        let s = Scalar::random(rng);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

macro_rules! public_element {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            point: RistrettoPoint,
            bytes: [u8; ELEMENT_LEN],
        }

        impl $name {
            /// Parses a canonical 32-byte encoding; the identity element is rejected.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, PinError> {
                let point = decode_element(bytes, $what)?;
                Ok(Self::from_point(point))
            }

            pub(crate) fn from_point(point: RistrettoPoint) -> Self {
                Self { bytes: point.compress().to_bytes(), point }
            }

            pub(crate) fn point(&self) -> &RistrettoPoint {
                &self.point
            }

            /// The 32-byte encoding.
            pub const fn to_bytes(&self) -> [u8; ELEMENT_LEN] {
                self.bytes
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:02x}{:02x}{:02x}{:02x}..)"),
                    self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3])
            }
        }
    };
}

public_element!(
    /// A server (or guardian) public key `K = k·G`.
    OprfPublicKey,
    "OPRF public key"
);
public_element!(
    /// The client's blinded element `B = r·HashToGroup(input)`; uniformly random to the server.
    BlindedElement,
    "blinded element"
);
public_element!(
    /// A server's evaluation `Z = k·B`.
    EvaluatedElement,
    "evaluated element"
);

/// An OPRF private key (or a guardian's key share). Zeroized on drop; `Debug` prints only the
/// public key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct OprfKey(Scalar);

impl OprfKey {
    /// Draws a fresh non-zero key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(nonzero_random_scalar(rng))
    }

    /// Parses a canonical non-zero scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PinError> {
        let s = decode_scalar(bytes, "OPRF key")?;
        if s == Scalar::ZERO {
            return Err(PinError::InvalidScalar);
        }
        Ok(Self(s))
    }

    pub(crate) fn from_scalar(s: Scalar) -> Self {
        Self(s)
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.0
    }

    /// The 32-byte little-endian scalar (secret).
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; SCALAR_LEN]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// `K = k·G`.
    pub fn public_key(&self) -> OprfPublicKey {
        OprfPublicKey::from_point(&self.0 * RISTRETTO_BASEPOINT_TABLE)
    }

    /// RFC 9497 `BlindEvaluate` plus `GenerateProof` (batch size 1): returns `Z = k·B` and a
    /// DLEQ proof that `log_G(K) = log_B(Z)`.
    pub fn evaluate<R: CryptoRng + ?Sized>(
        &self,
        blinded: &BlindedElement,
        rng: &mut R,
    ) -> (EvaluatedElement, Proof) {
        let r = nonzero_random_scalar(rng);
        self.evaluate_with_nonce(blinded, r)
    }

    pub(crate) fn evaluate_with_nonce(
        &self,
        blinded: &BlindedElement,
        mut r: Scalar,
    ) -> (EvaluatedElement, Proof) {
        let z = EvaluatedElement::from_point(self.0 * blinded.point());
        let pk = self.public_key();
        let (m, zc) = composites(&pk, blinded, &z);
        let t2 = &r * RISTRETTO_BASEPOINT_TABLE;
        let t3 = r * m;
        let c = challenge(&pk, &m, &zc, &t2, &t3);
        let s = r - c * self.0;
        r.zeroize();
        (z, Proof { c, s })
    }
}

impl fmt::Debug for OprfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OprfKey(public: {:?})", self.public_key())
    }
}

/// RFC 9497 `ComputeComposites` for batch size 1: `M = d·B`, `Z' = d·Z`.
fn composites(
    pk: &OprfPublicKey,
    blinded: &BlindedElement,
    evaluated: &EvaluatedElement,
) -> (RistrettoPoint, RistrettoPoint) {
    let bm = pk.to_bytes();
    let seed_dst: &[u8] = b"Seed-";
    let seed = Sha512::new()
        .chain_update(len2(ELEMENT_LEN))
        .chain_update(bm)
        .chain_update(len2(seed_dst.len() + CONTEXT_STRING.len()))
        .chain_update(seed_dst)
        .chain_update(CONTEXT_STRING)
        .finalize();
    let ci = blinded.to_bytes();
    let di = evaluated.to_bytes();
    let d = hash_to_scalar(&[
        &len2(seed.len()),
        &seed,
        &0u16.to_be_bytes(),
        &len2(ELEMENT_LEN),
        &ci,
        &len2(ELEMENT_LEN),
        &di,
        b"Composite",
    ]);
    (d * blinded.point(), d * evaluated.point())
}

fn challenge(
    pk: &OprfPublicKey,
    m: &RistrettoPoint,
    z: &RistrettoPoint,
    t2: &RistrettoPoint,
    t3: &RistrettoPoint,
) -> Scalar {
    let l = len2(ELEMENT_LEN);
    let bm = pk.to_bytes();
    let a0 = m.compress().to_bytes();
    let a1 = z.compress().to_bytes();
    let a2 = t2.compress().to_bytes();
    let a3 = t3.compress().to_bytes();
    hash_to_scalar(&[&l, &bm, &l, &a0, &l, &a1, &l, &a2, &l, &a3, b"Challenge"])
}

/// A DLEQ (Chaum–Pedersen) proof `c || s`, RFC 9497 section 2.2.1.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    c: Scalar,
    s: Scalar,
}

impl Proof {
    /// Parses `c || s` (two canonical little-endian scalars).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, PinError> {
        if bytes.len() != PROOF_LEN {
            return Err(PinError::InvalidLength {
                what: "proof",
                expected: PROOF_LEN,
                actual: bytes.len(),
            });
        }
        let (c, s) = bytes.split_at(SCALAR_LEN);
        Ok(Self {
            c: decode_scalar(c, "proof c")?,
            s: decode_scalar(s, "proof s")?,
        })
    }

    /// The 64-byte encoding `c || s`.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        let (c, s) = out.split_at_mut(SCALAR_LEN);
        c.copy_from_slice(self.c.as_bytes());
        s.copy_from_slice(self.s.as_bytes());
        out
    }
}

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Proof(..)")
    }
}

/// RFC 9497 `VerifyProof` (batch size 1): checks that `evaluated = k·blinded` for the `k`
/// behind `pk`.
pub fn verify_proof(
    pk: &OprfPublicKey,
    blinded: &BlindedElement,
    evaluated: &EvaluatedElement,
    proof: &Proof,
) -> Result<(), PinError> {
    let (m, z) = composites(pk, blinded, evaluated);
    let t2 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&proof.c, pk.point(), &proof.s);
    let t3 = proof.s * m + proof.c * z;
    let expected = challenge(pk, &m, &z, &t2, &t3);
    if bool::from(expected.ct_eq(&proof.c)) {
        Ok(())
    } else {
        Err(PinError::ProofVerification)
    }
}

/// The client's blinding scalar. Secret, zeroized on drop, consumed by [`finalize`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Blind(Scalar);

impl Blind {
    /// Parses a canonical non-zero scalar. For deterministic tests and vectors only
    /// (`hazmat::blind_from_bytes`): real clients use [`blind`], which draws it from the RNG.
    #[cfg_attr(not(feature = "hazmat"), allow(dead_code))]
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, PinError> {
        let s = decode_scalar(bytes, "blind")?;
        if s == Scalar::ZERO {
            return Err(PinError::InvalidScalar);
        }
        Ok(Self(s))
    }
}

impl Blind {
    /// A copy for a caller that must finalize more than once with the same blind (a
    /// recovery retried with more guardian answers). Crate-internal so the public API keeps
    /// the blind single-use.
    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl fmt::Debug for Blind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blind(redacted)")
    }
}

fn check_input(input: &[u8]) -> Result<(), PinError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(PinError::InvalidLength {
            what: "OPRF input (at most 65535)",
            expected: MAX_INPUT_LEN,
            actual: input.len(),
        });
    }
    Ok(())
}

/// RFC 9497 `Blind`: draws `r` and returns `(r, r·HashToGroup(input))`.
pub fn blind<R: CryptoRng + ?Sized>(
    input: &[u8],
    rng: &mut R,
) -> Result<(Blind, BlindedElement), PinError> {
    let b = Blind(nonzero_random_scalar(rng));
    let e = blind_with(input, &b)?;
    Ok((b, e))
}

/// `Blind` with a caller-chosen blind (`hazmat::blind_with`).
pub(crate) fn blind_with(input: &[u8], blind: &Blind) -> Result<BlindedElement, PinError> {
    check_input(input)?;
    let p = hash_to_group(&[input]);
    // HashToGroup hitting the identity is negligible, but RFC 9497 says to reject it.
    if p.is_identity() {
        return Err(PinError::InvalidElement);
    }
    Ok(BlindedElement::from_point(blind.0 * p))
}

/// The 64-byte OPRF output. Secret; compare with [`OprfOutput::ct_eq`]; `Debug` prints nothing.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct OprfOutput([u8; OUTPUT_LEN]);

impl OprfOutput {
    /// The 64 bytes (secret).
    pub fn as_bytes(&self) -> &[u8; OUTPUT_LEN] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for OprfOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OprfOutput(redacted)")
    }
}

/// RFC 9497 `Finalize`: unblinds `evaluated` (already proof-checked, or combined from
/// proof-checked guardian evaluations) and hashes it with the input.
pub fn finalize(
    input: &[u8],
    blind: Blind,
    evaluated: &EvaluatedElement,
) -> Result<OprfOutput, PinError> {
    check_input(input)?;
    let n = (blind.0.invert() * evaluated.point()).compress().to_bytes();
    Ok(finalize_unblinded(input, &n))
}

pub(crate) fn finalize_unblinded(input: &[u8], n: &[u8; ELEMENT_LEN]) -> OprfOutput {
    let h = Sha512::new()
        .chain_update(len2(input.len()))
        .chain_update(input)
        .chain_update(len2(ELEMENT_LEN))
        .chain_update(n)
        .chain_update(b"Finalize")
        .finalize();
    OprfOutput(h.into())
}

/// The unblinded, unshared evaluation `SHA-512(... k·HashToGroup(input) ...)`: what a single
/// server holding the whole key would give. For tests and for checking a threshold set-up.
pub fn evaluate_unblinded(key: &OprfKey, input: &[u8]) -> Result<OprfOutput, PinError> {
    check_input(input)?;
    let n = (key.scalar() * hash_to_group(&[input]))
        .compress()
        .to_bytes();
    Ok(finalize_unblinded(input, &n))
}

/// The identity point, for tests of rejection paths.
#[cfg(test)]
pub(crate) fn identity_bytes() -> [u8; 32] {
    use curve25519_dalek::traits::Identity;
    RistrettoPoint::identity().compress().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 9497 Appendix A.1.2.1 (VOPRF, ristretto255-SHA512, batch size 1): pins
    /// expand_message_xmd, both DSTs, the proof transcript and Finalize byte for byte.
    #[test]
    fn rfc9497_a_1_2_1_voprf_vector() {
        let sk = OprfKey::from_bytes(&h(
            "e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909",
        ))
        .unwrap();
        assert_eq!(
            hex::encode(sk.public_key().to_bytes()),
            "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e"
        );
        let input = h("00");
        let b = Blind::from_bytes(&h(
            "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        ))
        .unwrap();
        let blinded = blind_with(&input, &b).unwrap();
        assert_eq!(
            hex::encode(blinded.to_bytes()),
            "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945"
        );
        let r = decode_scalar(
            &h("222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e"),
            "r",
        )
        .unwrap();
        let (z, proof) = sk.evaluate_with_nonce(&blinded, r);
        assert_eq!(
            hex::encode(z.to_bytes()),
            "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e"
        );
        assert_eq!(
            hex::encode(proof.to_bytes()),
            "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd06\
             6d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d"
        );
        verify_proof(&sk.public_key(), &blinded, &z, &proof).unwrap();
        let out = finalize(&input, b, &z).unwrap();
        assert_eq!(
            hex::encode(out.as_bytes()),
            "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7d\
             a4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c"
        );
        assert!(out.ct_eq(&evaluate_unblinded(&sk, &input).unwrap()));
    }

    #[test]
    fn proof_rejects_wrong_element_key_or_tampering() {
        let mut rng = rand::rng();
        let k = OprfKey::generate(&mut rng);
        let other = OprfKey::generate(&mut rng);
        let (_, blinded) = blind(b"pin", &mut rng).unwrap();
        let (z, proof) = k.evaluate(&blinded, &mut rng);
        verify_proof(&k.public_key(), &blinded, &z, &proof).unwrap();
        // Wrong public key.
        assert_eq!(
            verify_proof(&other.public_key(), &blinded, &z, &proof),
            Err(PinError::ProofVerification)
        );
        // Garbage element with an honest proof for the real one.
        let garbage = EvaluatedElement::from_point(RistrettoPoint::random(&mut rng));
        assert_eq!(
            verify_proof(&k.public_key(), &blinded, &garbage, &proof),
            Err(PinError::ProofVerification)
        );
        // Tampered proof bytes.
        let mut bytes = proof.to_bytes();
        bytes[40] ^= 1;
        if let Ok(p) = Proof::from_slice(&bytes) {
            assert!(verify_proof(&k.public_key(), &blinded, &z, &p).is_err());
        }
    }

    #[test]
    fn decoding_rejects_bad_bytes() {
        assert_eq!(
            BlindedElement::from_slice(&identity_bytes()),
            Err(PinError::InvalidElement)
        );
        assert_eq!(
            BlindedElement::from_slice(&[0xFF; 32]),
            Err(PinError::InvalidElement)
        );
        assert!(matches!(
            EvaluatedElement::from_slice(&[1; 31]),
            Err(PinError::InvalidLength { actual: 31, .. })
        ));
        assert_eq!(Proof::from_slice(&[0xFF; 64]), Err(PinError::InvalidScalar));
        assert_eq!(
            OprfKey::from_bytes(&[0; 32]).unwrap_err(),
            PinError::InvalidScalar
        );
        assert_eq!(
            Blind::from_bytes(&[0; 32]).unwrap_err(),
            PinError::InvalidScalar
        );
    }

    #[test]
    fn round_trips_and_debug() {
        let mut rng = rand::rng();
        let k = OprfKey::generate(&mut rng);
        let (b, blinded) = blind(b"input", &mut rng).unwrap();
        assert_eq!(
            BlindedElement::from_slice(&blinded.to_bytes()).unwrap(),
            blinded
        );
        let (z, proof) = k.evaluate(&blinded, &mut rng);
        assert_eq!(Proof::from_slice(&proof.to_bytes()).unwrap(), proof);
        let secret_hex = hex::encode(k.to_bytes().as_slice());
        assert!(!format!("{k:?}").contains(&secret_hex[..8]));
        assert_eq!(format!("{b:?}"), "Blind(redacted)");
        let out = finalize(b"input", b, &z).unwrap();
        assert_eq!(format!("{out:?}"), "OprfOutput(redacted)");
        assert!(out.ct_eq(&evaluate_unblinded(&k, b"input").unwrap()));
    }
}
