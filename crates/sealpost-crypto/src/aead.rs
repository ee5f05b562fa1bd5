//! ChaCha20-Poly1305 (RFC 8439) with the full 16-byte tag.

use crate::CryptoError;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

/// Key length.
pub const AEAD_KEY_LEN: usize = 32;
/// Nonce length.
pub const AEAD_NONCE_LEN: usize = 12;
/// Tag length; every Sealpost ciphertext carries the full tag.
pub const AEAD_TAG_LEN: usize = 16;

/// Encrypts `plaintext`, appending `ciphertext || tag` to `out`.
pub fn seal_into(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let start = out.len();
    out.extend_from_slice(plaintext);
    let body = out.get_mut(start..).unwrap_or_default();
    // Only fails for inputs over 256 GiB, which no caller can construct (frames are
    // bounded far below that by sealpost-wire).
    if let Ok(tag) = cipher.encrypt_inout_detached(&Nonce::from(*nonce), ad, body.into()) {
        out.extend_from_slice(&tag);
    } else {
        out.truncate(start);
    }
}

/// Encrypts `plaintext` and returns `ciphertext || tag`.
pub fn seal(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + AEAD_TAG_LEN);
    seal_into(key, nonce, ad, plaintext, &mut out);
    out
}

/// Verifies and decrypts `ciphertext || tag`. Nothing of the plaintext is released
/// when the tag does not verify.
pub fn open(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    ad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let Some(body_len) = ciphertext.len().checked_sub(AEAD_TAG_LEN) else {
        return Err(CryptoError::InvalidLength {
            what: "AEAD ciphertext",
            expected: AEAD_TAG_LEN,
            actual: ciphertext.len(),
        });
    };
    let (body, tag) = ciphertext.split_at(body_len);
    let tag: [u8; AEAD_TAG_LEN] = tag
        .try_into()
        .map_err(|_| CryptoError::AeadAuthentication)?;
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let mut out = body.to_vec();
    match cipher.decrypt_inout_detached(
        &Nonce::from(*nonce),
        ad,
        out.as_mut_slice().into(),
        &Tag::from(tag),
    ) {
        Ok(()) => Ok(out),
        Err(_) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(CryptoError::AeadAuthentication)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8439_section_2_8_2() {
        let key: [u8; 32] =
            hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .unwrap()
                .try_into()
                .unwrap();
        let nonce: [u8; 12] = hex::decode("070000004041424344454647")
            .unwrap()
            .try_into()
            .unwrap();
        let ad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = seal(&key, &nonce, &ad, pt);
        assert_eq!(
            hex::encode(&ct[ct.len() - 16..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        assert_eq!(open(&key, &nonce, &ad, &ct).unwrap(), pt);
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            open(&key, &nonce, &ad, &bad),
            Err(CryptoError::AeadAuthentication)
        );
        assert!(open(&key, &nonce, &ad, &ct[..15]).is_err());
    }
}
