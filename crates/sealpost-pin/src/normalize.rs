//! PIN normalisation (spec/pin.md "Normalisation").
//!
//! 1. Reject raw input longer than [`MAX_INPUT_BYTES`].
//! 2. Trim leading and trailing Unicode `White_Space`.
//! 3. Apply NFKD (so full-width `１２３` becomes `123`, ligatures split, etc.).
//! 4. Map every decimal digit (general category `Nd`, Unicode 14 table below) to ASCII `0`-`9`
//!    (Arabic-Indic `٤` becomes `4`; NFKD alone does not do this).
//! 5. Reject control characters; require at least [`MIN_PIN_CHARS`] characters and at most
//!    [`MAX_PIN_BYTES`] UTF-8 bytes.
//!
//! The result is the exact byte string that is stretched, so this table is part of the
//! protocol: changing it changes derived keys for existing users.

use crate::PinError;
use core::fmt;
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Minimum number of characters (Unicode scalar values) in a normalised PIN.
pub const MIN_PIN_CHARS: usize = 6;
/// Maximum length of a normalised PIN in UTF-8 bytes.
pub const MAX_PIN_BYTES: usize = 64;
/// Maximum length of the raw input in UTF-8 bytes, checked before normalisation.
pub const MAX_INPUT_BYTES: usize = 256;

/// The code point of digit zero of every run of ten decimal digits (`Nd`) in Unicode 14.0.
/// Every run is contiguous and ordered 0..=9 (checked when the table was generated).
const ND_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// Maps a Unicode decimal digit to its ASCII digit; other characters are returned unchanged.
fn ascii_digit(c: char) -> char {
    let cp = u32::from(c);
    // Sorted table: the last run start <= cp is the only candidate.
    let idx = ND_ZEROS.partition_point(|&zero| zero <= cp);
    match idx.checked_sub(1).and_then(|i| ND_ZEROS.get(i)) {
        Some(&zero) if cp - zero < 10 => char::from_digit(cp - zero, 10).unwrap_or(c),
        _ => c,
    }
}

/// A normalised PIN: the exact bytes that are stretched. Zeroized on drop; `Debug` prints
/// only the length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NormalizedPin(String);

impl NormalizedPin {
    /// The normalised PIN as UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the normalised PIN consists of ASCII digits only.
    pub fn is_numeric(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_digit())
    }
}

impl fmt::Debug for NormalizedPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NormalizedPin({} bytes, redacted)", self.0.len())
    }
}

/// Normalises a PIN as entered by the user (see the module documentation).
pub fn normalize(input: &str) -> Result<NormalizedPin, PinError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(PinError::InputTooLong {
            max: MAX_INPUT_BYTES,
            actual: input.len(),
        });
    }
    let mut out = String::with_capacity(input.len());
    let mut chars = 0usize;
    for c in input.trim().nfkd().map(ascii_digit) {
        if c.is_control() {
            out.zeroize();
            return Err(PinError::ControlCharacter);
        }
        out.push(c);
        chars += 1;
    }
    // Wrap first so every early return below wipes the buffer.
    let pin = NormalizedPin(out);
    if pin.0.len() > MAX_PIN_BYTES {
        return Err(PinError::TooLong {
            max: MAX_PIN_BYTES,
            actual: pin.0.len(),
        });
    }
    if chars < MIN_PIN_CHARS {
        return Err(PinError::TooShort {
            min: MIN_PIN_CHARS,
            actual: chars,
        });
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_digits_pass_through() {
        let pin = normalize("123456").unwrap();
        assert_eq!(pin.as_bytes(), b"123456");
        assert!(pin.is_numeric());
    }

    #[test]
    fn trims_surrounding_whitespace_only() {
        assert_eq!(
            normalize(" \t123456\u{00A0}\n").unwrap().as_bytes(),
            b"123456"
        );
        assert_eq!(normalize("abc def").unwrap().as_bytes(), b"abc def");
    }

    #[test]
    fn arabic_indic_digits_map_to_ascii() {
        // U+0661..U+0666 ARABIC-INDIC DIGIT ONE..SIX
        let pin = normalize("\u{661}\u{662}\u{663}\u{664}\u{665}\u{666}").unwrap();
        assert_eq!(pin.as_bytes(), b"123456");
        // Extended Arabic-Indic (Persian) U+06F0.., Devanagari U+0966..
        assert_eq!(
            normalize("\u{6F9}\u{6F8}\u{6F7}\u{966}\u{967}\u{968}")
                .unwrap()
                .as_bytes(),
            b"987012"
        );
    }

    #[test]
    fn full_width_digits_map_to_ascii() {
        let pin = normalize("\u{FF11}\u{FF12}\u{FF13}\u{FF14}\u{FF15}\u{FF16}").unwrap();
        assert_eq!(pin.as_bytes(), b"123456");
        // Mathematical bold digits (NFKD) and mixed scripts give the same PIN.
        assert_eq!(
            normalize("1\u{1D7D0}3\u{664}\u{FF15}6").unwrap().as_bytes(),
            b"123456"
        );
    }

    #[test]
    fn nfkd_applied_to_letters() {
        // U+FB01 LATIN SMALL LIGATURE FI -> "fi"; é (U+00E9) -> e + U+0301.
        let pin = normalize("\u{FB01}\u{E9}1234").unwrap();
        assert_eq!(pin.as_bytes(), "fie\u{301}1234".as_bytes());
        assert!(!pin.is_numeric());
    }

    #[test]
    fn non_digit_numerics_are_not_mapped() {
        // U+00BD VULGAR FRACTION ONE HALF (No) decomposes to 1 U+2044 2 under NFKD; the
        // fraction slash stays. U+2167 ROMAN NUMERAL EIGHT (Nl) becomes "VIII".
        assert_eq!(
            normalize("\u{BD}3456").unwrap().as_bytes(),
            "1\u{2044}23456".as_bytes()
        );
        assert_eq!(normalize("\u{2167}12").unwrap().as_bytes(), b"VIII12");
    }

    #[test]
    fn length_limits() {
        assert_eq!(
            normalize("12345").unwrap_err(),
            PinError::TooShort { min: 6, actual: 5 }
        );
        assert_eq!(
            normalize("   12345   ").unwrap_err(),
            PinError::TooShort { min: 6, actual: 5 }
        );
        assert_eq!(
            normalize("").unwrap_err(),
            PinError::TooShort { min: 6, actual: 0 }
        );
        assert!(normalize(&"1".repeat(64)).is_ok());
        assert_eq!(
            normalize(&"1".repeat(65)).unwrap_err(),
            PinError::TooLong {
                max: 64,
                actual: 65
            }
        );
        // Full-width digits are 3 bytes each in the input but 1 after normalisation.
        assert!(normalize(&"\u{FF11}".repeat(64)).is_ok());
        assert_eq!(
            normalize(&"1".repeat(257)).unwrap_err(),
            PinError::InputTooLong {
                max: 256,
                actual: 257
            }
        );
    }

    #[test]
    fn control_characters_rejected() {
        assert_eq!(
            normalize("123\u{0}456").unwrap_err(),
            PinError::ControlCharacter
        );
        assert_eq!(
            normalize("123\u{7F}456").unwrap_err(),
            PinError::ControlCharacter
        );
    }

    #[test]
    fn digit_table_is_sorted_and_maps_all_runs() {
        assert!(ND_ZEROS.windows(2).all(|w| w[0] + 10 <= w[1]));
        for &zero in &ND_ZEROS {
            for d in 0..10u32 {
                let c = char::from_u32(zero + d).unwrap();
                assert_eq!(ascii_digit(c), char::from_digit(d, 10).unwrap());
            }
            // The code point after a run is not mapped by that run.
            let after = char::from_u32(zero + 10).unwrap();
            if !ND_ZEROS.contains(&(zero + 10)) {
                assert_eq!(ascii_digit(after), after);
            }
        }
    }

    #[test]
    fn debug_redacts() {
        let pin = normalize("secret99").unwrap();
        let s = format!("{pin:?}");
        assert!(!s.contains("secret"));
        assert!(s.contains("8 bytes"));
    }
}
