//! HKDF-SHA256 (RFC 5869) and HMAC-SHA256 (RFC 2104).

use crate::CryptoError;
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Output length of SHA-256 / HMAC-SHA256.
pub const HASH_LEN: usize = 32;

/// HKDF-SHA256: extract with `salt` (empty means 32 zero bytes, per RFC 5869), then expand
/// `info` to fill `out`. Fails only if `out` is longer than 255 * 32 bytes.
pub fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let salt = if salt.is_empty() { None } else { Some(salt) };
    hkdf::Hkdf::<sha2::Sha256>::new(salt, ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::KdfOutputTooLong(out.len()))
}

/// HKDF-SHA256 into a fixed-size, zeroizing array.
pub fn hkdf_sha256_array<const N: usize>(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; N]>, CryptoError> {
    let mut out = Zeroizing::new([0u8; N]);
    hkdf_sha256(salt, ikm, info, out.as_mut_slice())?;
    Ok(out)
}

/// HMAC-SHA256(key, message).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; HASH_LEN] {
    let mut mac = new_hmac(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of three one-byte messages under the same key, sharing the key schedule, each
/// output written straight into its destination (the caller's zeroizing key types, so no
/// intermediate copy needs erasing): `out[i] = HMAC(key, [msgs[i]])`. This is KDF_CK of
/// session protocol version 2 (message key, next chain key, nonce key), once per message on
/// each side.
pub fn hmac_sha256_triple_into(key: &[u8; HASH_LEN], msgs: [u8; 3], out: [&mut [u8; HASH_LEN]; 3]) {
    let keyed = new_hmac(key);
    for (m, o) in msgs.into_iter().zip(out) {
        let mut mac = keyed.clone();
        mac.update(&[m]);
        hmac::digest::FixedOutput::finalize_into(mac, o.into());
    }
}

/// HMAC-SHA256(key, a || b) written into `out`, without building the concatenation (the
/// synthetic nonce of session protocol version 2 covers the header fields and the plaintext).
pub fn hmac_sha256_concat_into(key: &[u8], a: &[u8], b: &[u8], out: &mut [u8; HASH_LEN]) {
    let mut mac = new_hmac(key);
    mac.update(a);
    mac.update(b);
    hmac::digest::FixedOutput::finalize_into(mac, out.into());
}

/// Verifies `tag` against HMAC-SHA256(key, message) in constant time. Only full 32-byte
/// tags are accepted: a truncated tag is an error, never a prefix match.
pub fn hmac_sha256_verify(key: &[u8], message: &[u8], tag: &[u8]) -> Result<(), CryptoError> {
    if tag.len() != HASH_LEN {
        return Err(CryptoError::InvalidLength {
            what: "HMAC-SHA256 tag",
            expected: HASH_LEN,
            actual: tag.len(),
        });
    }
    let mut mac = new_hmac(key);
    mac.update(message);
    mac.verify_slice(tag).map_err(|_| CryptoError::BadSignature)
}

fn new_hmac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed), so this cannot fail.
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` is infallible for every key length; keep the lint happy
    // without `unwrap` in library code.
    #[allow(clippy::panic)]
    {
        panic!("HMAC key of any length is valid")
    }
}

/// First four bytes of `bytes` in hex, for `Debug` of *public* values only.
pub(crate) fn short_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(10);
    for b in bytes.iter().take(4) {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn triple_into_and_concat_into_match_plain_hmacs() {
        let key = [9u8; 32];
        let (mut a, mut b, mut c) = ([0u8; 32], [0u8; 32], [0u8; 32]);
        hmac_sha256_triple_into(&key, [1, 2, 3], [&mut a, &mut b, &mut c]);
        assert_eq!(a, hmac_sha256(&key, &[1]));
        assert_eq!(b, hmac_sha256(&key, &[2]));
        assert_eq!(c, hmac_sha256(&key, &[3]));
        let mut t = [0u8; 32];
        hmac_sha256_concat_into(&key, b"header", b"plaintext", &mut t);
        assert_eq!(t, hmac_sha256(&key, b"headerplaintext"));
        hmac_sha256_concat_into(&key, b"", b"", &mut t);
        assert_eq!(t, hmac_sha256(&key, b""));
    }

    #[test]
    fn truncated_tags_are_rejected() {
        let tag = hmac_sha256(b"k", b"m");
        hmac_sha256_verify(b"k", b"m", &tag).unwrap();
        assert!(hmac_sha256_verify(b"k", b"m", &tag[..16]).is_err());
        assert!(hmac_sha256_verify(b"k", b"n", &tag).is_err());
    }
}
