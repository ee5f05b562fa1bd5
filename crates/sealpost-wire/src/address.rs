//! Addressing: an account has devices, and every session is between two devices.

use crate::{DecodeError, Reader, Writer};
use core::fmt;

/// Longest account identifier, in bytes.
pub const MAX_ACCOUNT_ID_LEN: usize = 64;

/// An account identifier. Today an E.164 phone number (`+` and 8 to 15 digits, validated by
/// the relay at registration); the encoding is an opaque UTF-8 string so that usernames can
/// be added without a new wire version. 1..=64 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// Wraps an identifier after checking its length (1..=64 bytes) and that it contains no
    /// control characters.
    pub fn new(id: impl Into<String>) -> Result<Self, DecodeError> {
        let id = id.into();
        if id.is_empty() {
            return Err(DecodeError::TooShort {
                what: "account id",
                len: 0,
                min: 1,
            });
        }
        if id.len() > MAX_ACCOUNT_ID_LEN {
            return Err(DecodeError::TooLong {
                what: "account id",
                len: id.len(),
                max: MAX_ACCOUNT_ID_LEN,
            });
        }
        if id.chars().any(char::is_control) {
            return Err(DecodeError::InvalidValue("account id"));
        }
        Ok(Self(id))
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends `len(u8) || utf8`.
    pub fn encode_into(&self, w: &mut Writer) {
        w.var_bytes8(self.0.as_bytes());
    }

    /// Reads `len(u8) || utf8`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let b = r.var_bytes8("account id", MAX_ACCOUNT_ID_LEN)?;
        let s = core::str::from_utf8(b).map_err(|_| DecodeError::InvalidValue("account id"))?;
        Self::new(s)
    }
}

impl fmt::Debug for AccountId {
    // Phone numbers are personal data: Debug shows only the length and last two characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(f, "AccountId(len={}, …{tail})", self.0.len())
    }
}

/// A device of an account. Device 1 is the primary device that registered the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

/// The address of one device: `(account, device)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The account.
    pub account: AccountId,
    /// The device within the account.
    pub device: DeviceId,
}

impl DeviceAddress {
    /// Builds an address.
    pub fn new(account: AccountId, device: DeviceId) -> Self {
        Self { account, device }
    }

    /// Appends `account || device(u32)`.
    pub fn encode_into(&self, w: &mut Writer) {
        self.account.encode_into(w);
        w.u32(self.device.0);
    }

    /// Reads `account || device(u32)`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let account = AccountId::decode_from(r)?;
        let device = DeviceId(r.u32()?);
        Ok(Self { account, device })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_limits() {
        assert!(AccountId::new("").is_err());
        assert!(AccountId::new("a".repeat(65)).is_err());
        assert!(AccountId::new("+1555\n").is_err());
        let a = AccountId::new("+15551234567").unwrap();
        assert!(!format!("{a:?}").contains("555123"));
        let addr = DeviceAddress::new(a, DeviceId(2));
        let mut w = Writer::new();
        addr.encode_into(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(DeviceAddress::decode_from(&mut r).unwrap(), addr);
        r.finish().unwrap();
    }
}
