//! Public-key pins of TLS servers (spec/relay.md section 1.1): the SHA-256 digest of a
//! certificate's DER-encoded `SubjectPublicKeyInfo` (SPKI), written `sha256/<base64>` as in
//! HPKP (RFC 7469 section 2.4). A pin names a key, not a certificate, so a relay can renew
//! its certificate for the same key without breaking clients, and announce its next key in
//! advance ([`SpkiPins`] holds the current and the next).
//!
//! Extracting the SPKI from a certificate needs an X.509 parser and lives with the TLS code
//! (`sealpost-client`'s and `sealpost-relay`'s `tls` modules); this module only hashes,
//! prints, parses and compares.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The text prefix of a pin.
pub const SPKI_PIN_PREFIX: &str = "sha256/";
/// Most pins a client accepts for one server (the current key, the next, and spares for an
/// emergency key kept offline).
pub const MAX_SPKI_PINS: usize = 8;

/// SHA-256 of a DER-encoded `SubjectPublicKeyInfo`. Public data: `Debug` and `Display` print
/// the text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin([u8; 32]);

impl SpkiPin {
    /// The pin of `spki_der`, a DER-encoded `SubjectPublicKeyInfo` (outer `SEQUENCE`
    /// included).
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// A pin from its 32 digest bytes.
    pub const fn from_bytes(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The 32 digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `self` equals `other`, in constant time.
    pub fn matches(&self, other: &SpkiPin) -> bool {
        crate::ct_eq(&self.0, &other.0)
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SPKI_PIN_PREFIX}{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

/// Why a pin's text form did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpkiPinError {
    /// 64 hex digits: the SHA-256 of a whole certificate, which earlier versions pinned.
    /// It changes with every renewal; pin the public key instead (`sha256/...`, printed by
    /// the relay at start and by `sealpost-relay --print-pin`).
    #[error(
        "this is a certificate fingerprint (64 hex digits), which is no longer accepted: pin the relay's public key instead, `sha256/<base64>` as printed by the relay at start or by `sealpost-relay --print-pin`"
    )]
    CertificateFingerprint,
    /// The text does not start with `sha256/`.
    #[error("a pin starts with \"sha256/\"")]
    MissingPrefix,
    /// What follows the prefix is not canonical padded base64 (RFC 4648 section 4).
    #[error("the pin after \"sha256/\" is not padded base64")]
    Base64,
    /// The base64 decodes to a digest of the wrong length.
    #[error("the pin decodes to {len} bytes, expected 32")]
    Length {
        /// Decoded length.
        len: usize,
    },
    /// A list of pins is empty.
    #[error("at least one pin is needed")]
    Empty,
    /// A list of pins is longer than [`MAX_SPKI_PINS`].
    #[error("{count} pins, at most {max}")]
    TooMany {
        /// Pins given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl FromStr for SpkiPin {
    type Err = SpkiPinError;

    /// Parses `sha256/<base64>`: exactly the prefix, then 44 characters of padded,
    /// canonical standard base64 (surrounding whitespace is ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some(b64) = s.strip_prefix(SPKI_PIN_PREFIX) else {
            let hex_digits = s
                .chars()
                .filter(|c| !matches!(c, ':' | ' ' | '-'))
                .collect::<Vec<_>>();
            if hex_digits.len() == 64 && hex_digits.iter().all(char::is_ascii_hexdigit) {
                return Err(SpkiPinError::CertificateFingerprint);
            }
            return Err(SpkiPinError::MissingPrefix);
        };
        let bytes = STANDARD.decode(b64).map_err(|_| SpkiPinError::Base64)?;
        let digest = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| SpkiPinError::Length { len: bytes.len() })?;
        Ok(Self(digest))
    }
}

/// The pins a client accepts for one server: 1 to [`MAX_SPKI_PINS`], duplicates removed, in
/// the order given. A server is accepted if its key matches any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpkiPins(Vec<SpkiPin>);

impl SpkiPins {
    /// A list of pins; fails if it is empty or longer than [`MAX_SPKI_PINS`] (after
    /// removing duplicates).
    pub fn new(pins: impl IntoIterator<Item = SpkiPin>) -> Result<Self, SpkiPinError> {
        let mut list: Vec<SpkiPin> = Vec::new();
        for p in pins {
            if !list.contains(&p) {
                if list.len() == MAX_SPKI_PINS {
                    return Err(SpkiPinError::TooMany {
                        count: list.len() + 1,
                        max: MAX_SPKI_PINS,
                    });
                }
                list.push(p);
            }
        }
        if list.is_empty() {
            return Err(SpkiPinError::Empty);
        }
        Ok(Self(list))
    }

    /// Parses each item as a pin ([`SpkiPin::from_str`]) and builds the list.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, SpkiPinError> {
        let pins = items
            .into_iter()
            .map(SpkiPin::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(pins)
    }

    /// The pins, in the order given.
    pub fn as_slice(&self) -> &[SpkiPin] {
        &self.0
    }

    /// Whether `pin` is one of the list (every entry is compared, in constant time).
    pub fn accepts(&self, pin: &SpkiPin) -> bool {
        self.0.iter().fold(false, |found, p| found | p.matches(pin))
    }
}

impl From<SpkiPin> for SpkiPins {
    fn from(pin: SpkiPin) -> Self {
        Self(vec![pin])
    }
}

impl fmt::Display for SpkiPins {
    /// The pins separated by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_matches_hpkp() {
        // RFC 7469 style: base64 of the SHA-256 digest. SHA-256("") is e3b0c442...
        let pin = SpkiPin::of_spki_der(b"");
        assert_eq!(
            pin.to_string(),
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(pin.to_string().parse::<SpkiPin>(), Ok(pin));
        assert_eq!(format!(" {pin}\n").parse::<SpkiPin>(), Ok(pin));
        assert_eq!(SpkiPin::from_bytes(*pin.as_bytes()), pin);
    }

    #[test]
    fn bad_text_gives_typed_errors() {
        let hex64 = "ab".repeat(32);
        assert_eq!(
            hex64.parse::<SpkiPin>(),
            Err(SpkiPinError::CertificateFingerprint)
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            colons.parse::<SpkiPin>(),
            Err(SpkiPinError::CertificateFingerprint)
        );
        assert_eq!(
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse::<SpkiPin>(),
            Err(SpkiPinError::MissingPrefix)
        );
        assert_eq!(
            "sha1/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse::<SpkiPin>(),
            Err(SpkiPinError::MissingPrefix)
        );
        // Unpadded, URL-safe alphabet, junk, and a non-canonical last character.
        for bad in [
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "sha256/47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256/!!",
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
        ] {
            assert_eq!(bad.parse::<SpkiPin>(), Err(SpkiPinError::Base64), "{bad}");
        }
        assert_eq!(
            "sha256/AAAA".parse::<SpkiPin>(),
            Err(SpkiPinError::Length { len: 3 })
        );
        assert_eq!(
            "sha256/".parse::<SpkiPin>(),
            Err(SpkiPinError::Length { len: 0 })
        );
    }

    #[test]
    fn lists_are_bounded_deduplicated_and_match_any() {
        let a = SpkiPin::from_bytes([1; 32]);
        let b = SpkiPin::from_bytes([2; 32]);
        let c = SpkiPin::from_bytes([3; 32]);
        assert_eq!(SpkiPins::new([]), Err(SpkiPinError::Empty));
        let pins = SpkiPins::new([a, b, a]).unwrap();
        assert_eq!(pins.as_slice(), &[a, b]);
        assert!(pins.accepts(&a) && pins.accepts(&b) && !pins.accepts(&c));
        let many = (0..=MAX_SPKI_PINS).map(|i| SpkiPin::from_bytes([i as u8; 32]));
        assert_eq!(
            SpkiPins::new(many),
            Err(SpkiPinError::TooMany {
                count: MAX_SPKI_PINS + 1,
                max: MAX_SPKI_PINS
            })
        );
        let text = pins.to_string();
        assert_eq!(SpkiPins::parse(text.split(',')), Ok(pins));
        assert_eq!(
            SpkiPins::parse(["sha256/AAAA"]),
            Err(SpkiPinError::Length { len: 3 })
        );
    }
}
