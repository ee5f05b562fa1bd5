//! Business accounts: the signed business profile and verification statements
//! (`spec/business.md` sections 3 and 4). Structure only: `sealpost-devices` signs and
//! verifies them.

use crate::devices::DEVICES_VERSION;
use crate::{AccountId, DecodeError, KEY_LEN, Reader, SIGNATURE_LEN, Writer};

mod desk;
mod route;
pub use desk::{
    CHAIN_HEAD_ENCODED_LEN, CHAIN_HEAD_LEN, ChainHead, ConversationState, DESK_ASSIGN,
    DESK_HANDOFF, DESK_NOTE, DeskRef, HANDOFF_ENTRY_OVERHEAD, HANDOFF_PART_OVERHEAD,
    HandoffEntryRef, MAX_HANDOFF_ENTRIES, MAX_HANDOFF_PARTS, MAX_NOTE_LEN, MAX_TRANSCRIPT_CHAINS,
    RouteMessage, Side, TranscriptConfirmation, decode_chains, encode_chains,
};
pub use route::{MAX_ROUTE_LEN, RouteBody, RouteSigner, SignedRoute, TYPE_ROUTE};

/// Type byte of a [`SignedBusinessProfile`].
pub const TYPE_BUSINESS_PROFILE: u8 = 0x16;
/// Type byte of a [`BusinessVerification`].
pub const TYPE_BUSINESS_VERIFICATION: u8 = 0x17;

/// Longest business name, in bytes of UTF-8.
pub const MAX_BUSINESS_NAME_LEN: usize = 64;
/// Longest category.
pub const MAX_CATEGORY_LEN: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest postal address.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest website URL.
pub const MAX_WEBSITE_LEN: usize = 200;
/// Longest opening-hours text.
pub const MAX_HOURS_LEN: usize = 512;
/// Most verification statements the relay keeps with one profile.
pub const MAX_VERIFICATIONS: usize = 4;

/// Longest [`SignedBusinessProfile`] encoding (2,312 bytes).
pub const MAX_BUSINESS_PROFILE_LEN: usize = 2
    + 1
    + crate::MAX_ACCOUNT_ID_LEN
    + KEY_LEN
    + 8
    + 8
    + (1 + MAX_BUSINESS_NAME_LEN)
    + (1 + MAX_CATEGORY_LEN)
    + (2 + MAX_DESCRIPTION_LEN)
    + (2 + MAX_ADDRESS_LEN)
    + (1 + MAX_WEBSITE_LEN)
    + (2 + MAX_HOURS_LEN)
    + 4
    + SIGNATURE_LEN;

/// Longest [`BusinessVerification`] encoding (276 bytes).
pub const MAX_BUSINESS_VERIFICATION_LEN: usize = 2
    + KEY_LEN
    + 1
    + crate::MAX_ACCOUNT_ID_LEN
    + KEY_LEN
    + (1 + MAX_BUSINESS_NAME_LEN)
    + 8
    + 8
    + SIGNATURE_LEN;

/// What kind of text a field holds (`spec/business.md` 3.1).
#[derive(Clone, Copy)]
enum TextKind {
    /// No control character.
    Line,
    /// No control character but LF.
    Text,
    /// Printable ASCII starting with `https://`.
    Url,
}

/// A text field's rules.
struct Field {
    what: &'static str,
    kind: TextKind,
    min: usize,
    max: usize,
}

const NAME: Field = Field {
    what: "business name",
    kind: TextKind::Line,
    min: 1,
    max: MAX_BUSINESS_NAME_LEN,
};
const CATEGORY: Field = Field {
    what: "category",
    kind: TextKind::Line,
    min: 0,
    max: MAX_CATEGORY_LEN,
};
const DESCRIPTION: Field = Field {
    what: "description",
    kind: TextKind::Text,
    min: 0,
    max: MAX_DESCRIPTION_LEN,
};
const ADDRESS: Field = Field {
    what: "address",
    kind: TextKind::Text,
    min: 0,
    max: MAX_ADDRESS_LEN,
};
const WEBSITE: Field = Field {
    what: "website",
    kind: TextKind::Url,
    min: 0,
    max: MAX_WEBSITE_LEN,
};
const HOURS: Field = Field {
    what: "hours",
    kind: TextKind::Text,
    min: 0,
    max: MAX_HOURS_LEN,
};

impl Field {
    /// Checks `s` against the field's length and kind.
    fn check(&self, s: &str) -> Result<(), DecodeError> {
        let len = s.len();
        if len > self.max {
            return Err(DecodeError::TooLong {
                what: self.what,
                len,
                max: self.max,
            });
        }
        if len < self.min {
            return Err(DecodeError::TooShort {
                what: self.what,
                len,
                min: self.min,
            });
        }
        let ok = match self.kind {
            TextKind::Line => !s.chars().any(char::is_control),
            TextKind::Text => !s.chars().any(|c| c.is_control() && c != '\n'),
            TextKind::Url => {
                s.is_empty()
                    || (s.len() > "https://".len()
                        && s.starts_with("https://")
                        && s.bytes().all(|b| (0x21..=0x7E).contains(&b)))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(DecodeError::InvalidValue(self.what))
        }
    }

    /// Reads the field with a `prefix`-byte length (1 or 2).
    fn read(&self, r: &mut Reader<'_>, prefix: usize) -> Result<String, DecodeError> {
        let b = if prefix == 1 {
            r.var_bytes8(self.what, self.max)?
        } else {
            r.var_bytes16(self.what, self.max)?
        };
        let s = core::str::from_utf8(b).map_err(|_| DecodeError::InvalidValue(self.what))?;
        self.check(s)?;
        Ok(s.to_owned())
    }
}

/// Checks the common header.
fn header(r: &mut Reader<'_>, kind: u8, what: &'static str) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != DEVICES_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let value = r.u8()?;
    if value != kind {
        return Err(DecodeError::UnknownType { what, value });
    }
    Ok(())
}

/// Decodes a whole `body || signature` input of at most `max` bytes, `body` read by
/// `read_body` (the common shape of this module's signed encodings).
pub(crate) fn decode_signed<T>(
    bytes: &[u8],
    max: usize,
    what: &'static str,
    read_body: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<(T, [u8; SIGNATURE_LEN]), DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLong {
            what,
            len: bytes.len(),
            max,
        });
    }
    let mut r = Reader::new(bytes);
    let body = read_body(&mut r)?;
    let signature = r.array()?;
    r.finish()?;
    Ok((body, signature))
}

/// What a business says about itself (`spec/business.md` 3.1): the fields a customer sees.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BusinessProfileFields {
    /// The business's name (1..=64 bytes, one line).
    pub name: String,
    /// Its category, e.g. "Bicycle shop" (0..=64 bytes, one line).
    pub category: String,
    /// A description (0..=1,024 bytes; LF allowed).
    pub description: String,
    /// Its postal address (0..=256 bytes; lines separated by LF).
    pub address: String,
    /// Its website: empty, or an `https://` URL of printable ASCII (at most 200 bytes).
    pub website: String,
    /// Opening hours as the business writes them (0..=512 bytes; LF allowed).
    pub hours: String,
    /// Seconds in which the business usually replies; 0 = not stated.
    pub reply_within: u32,
}

impl BusinessProfileFields {
    /// Checks every field's length and kind (the rules a decoder applies).
    pub fn check(&self) -> Result<(), DecodeError> {
        NAME.check(&self.name)?;
        CATEGORY.check(&self.category)?;
        DESCRIPTION.check(&self.description)?;
        ADDRESS.check(&self.address)?;
        WEBSITE.check(&self.website)?;
        HOURS.check(&self.hours)
    }
}

/// The part of a business profile the account key signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessProfileBody {
    /// The business's account.
    pub account: AccountId,
    /// The account key that signs the profile.
    pub account_key: [u8; KEY_LEN],
    /// The profile's version (≥ 1), strictly increasing per account key.
    pub profile_version: u64,
    /// Unix ms when it was signed (informative).
    pub issued_at: u64,
    /// What the business says about itself.
    pub fields: BusinessProfileFields,
}

/// Saturating length of a checked field (the check bounds it far below the prefix's range).
fn len8(s: &str) -> u8 {
    u8::try_from(s.len()).unwrap_or(u8::MAX)
}

fn len16(s: &str) -> u16 {
    u16::try_from(s.len()).unwrap_or(u16::MAX)
}

impl BusinessProfileBody {
    /// The signed bytes, from `version` to `reply_within`. Fails when a field breaks its
    /// rule (section 3.2) or the version is 0.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        if self.profile_version == 0 {
            return Err(DecodeError::InvalidValue("profile version"));
        }
        self.fields.check()?;
        let f = &self.fields;
        let mut w = Writer::with_capacity(256 + f.description.len() + f.address.len());
        w.u8(DEVICES_VERSION).u8(TYPE_BUSINESS_PROFILE);
        self.account.encode_into(&mut w);
        w.bytes(&self.account_key)
            .u64(self.profile_version)
            .u64(self.issued_at)
            .u8(len8(&f.name))
            .bytes(f.name.as_bytes())
            .u8(len8(&f.category))
            .bytes(f.category.as_bytes())
            .u16(len16(&f.description))
            .bytes(f.description.as_bytes())
            .u16(len16(&f.address))
            .bytes(f.address.as_bytes())
            .u8(len8(&f.website))
            .bytes(f.website.as_bytes())
            .u16(len16(&f.hours))
            .bytes(f.hours.as_bytes())
            .u32(f.reply_within);
        Ok(w.into_bytes())
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        header(r, TYPE_BUSINESS_PROFILE, "business profile")?;
        let account = AccountId::decode_from(r)?;
        let account_key = r.array()?;
        let profile_version = r.u64()?;
        if profile_version == 0 {
            return Err(DecodeError::InvalidValue("profile version"));
        }
        let issued_at = r.u64()?;
        let fields = BusinessProfileFields {
            name: NAME.read(r, 1)?,
            category: CATEGORY.read(r, 1)?,
            description: DESCRIPTION.read(r, 2)?,
            address: ADDRESS.read(r, 2)?,
            website: WEBSITE.read(r, 1)?,
            hours: HOURS.read(r, 2)?,
            reply_within: r.u32()?,
        };
        Ok(Self {
            account,
            account_key,
            profile_version,
            issued_at,
            fields,
        })
    }
}

/// A business profile as it travels: the body and the account key's signature over it
/// (`spec/business.md` 3.1). Decoding checks structure only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBusinessProfile {
    /// What the account key signed.
    pub body: BusinessProfileBody,
    /// The account key's signature.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedBusinessProfile {
    /// The canonical encoding. Fails when the body breaks a structural rule.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = self.body.encode()?;
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Decodes a whole input (section 3.2).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (body, signature) = decode_signed(
            bytes,
            MAX_BUSINESS_PROFILE_LEN,
            "business profile",
            BusinessProfileBody::decode_from,
        )?;
        Ok(Self { body, signature })
    }
}

/// The part of a verification statement the verifier signs (`spec/business.md` 4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessVerificationBody {
    /// The verifier's Ed25519 public key.
    pub verifier_key: [u8; KEY_LEN],
    /// The business's account.
    pub account: AccountId,
    /// The business's account key.
    pub account_key: [u8; KEY_LEN],
    /// The name the verifier checked (as [`BusinessProfileFields::name`]).
    pub business_name: String,
    /// Unix ms when it was signed.
    pub issued_at: u64,
    /// Unix ms from which it no longer holds (above `issued_at`).
    pub expires_at: u64,
}

impl BusinessVerificationBody {
    /// The signed bytes, from `version` to `expires_at`. Fails when the name breaks its
    /// rule or `expires_at` is not above `issued_at`.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        NAME.check(&self.business_name)?;
        if self.expires_at <= self.issued_at {
            return Err(DecodeError::InvalidValue("verification expiry"));
        }
        let mut w = Writer::with_capacity(MAX_BUSINESS_VERIFICATION_LEN);
        w.u8(DEVICES_VERSION)
            .u8(TYPE_BUSINESS_VERIFICATION)
            .bytes(&self.verifier_key);
        self.account.encode_into(&mut w);
        w.bytes(&self.account_key)
            .u8(len8(&self.business_name))
            .bytes(self.business_name.as_bytes())
            .u64(self.issued_at)
            .u64(self.expires_at);
        Ok(w.into_bytes())
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        header(r, TYPE_BUSINESS_VERIFICATION, "business verification")?;
        let verifier_key = r.array()?;
        let account = AccountId::decode_from(r)?;
        let account_key = r.array()?;
        let business_name = NAME.read(r, 1)?;
        let issued_at = r.u64()?;
        let expires_at = r.u64()?;
        if expires_at <= issued_at {
            return Err(DecodeError::InvalidValue("verification expiry"));
        }
        Ok(Self {
            verifier_key,
            account,
            account_key,
            business_name,
            issued_at,
            expires_at,
        })
    }
}

/// A verifier's statement that a business name belongs to an account key
/// (`spec/business.md` 4.1). Decoding checks structure only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessVerification {
    /// What the verifier signed.
    pub body: BusinessVerificationBody,
    /// The verifier's signature.
    pub signature: [u8; SIGNATURE_LEN],
}

impl BusinessVerification {
    /// The canonical encoding. Fails when the body breaks a structural rule.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = self.body.encode()?;
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Decodes a whole input (section 4.1).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (body, signature) = decode_signed(
            bytes,
            MAX_BUSINESS_VERIFICATION_LEN,
            "business verification",
            BusinessVerificationBody::decode_from,
        )?;
        Ok(Self { body, signature })
    }
}

/// A profile with the verification statements published with it: the payload of
/// `PublishBusinessProfile` and of a `BusinessProfile` response (`spec/relay.md` 3.14):
/// `var16(profile) || has_route: flag [|| var16(route)] || count: u8 || count ×
/// var16(statement)`, `count` ≤ [`MAX_VERIFICATIONS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedProfile {
    /// The signed profile.
    pub profile: SignedBusinessProfile,
    /// The business's default route (`spec/business.md` 7), if it routes.
    pub route: Option<SignedRoute>,
    /// The statements, in the order they were published.
    pub verifications: Vec<BusinessVerification>,
}

impl PublishedProfile {
    /// Appends the payload. Fails when the profile or a statement breaks a structural rule,
    /// or there are more than [`MAX_VERIFICATIONS`] statements.
    pub fn encode_into(&self, w: &mut Writer) -> Result<(), DecodeError> {
        if self.verifications.len() > MAX_VERIFICATIONS {
            return Err(DecodeError::TooMany {
                what: "verifications",
                count: self.verifications.len(),
                max: MAX_VERIFICATIONS,
            });
        }
        w.var_bytes16(&self.profile.encode()?);
        w.flag(self.route.is_some());
        if let Some(route) = &self.route {
            w.var_bytes16(&route.encode()?);
        }
        w.u8(u8::try_from(self.verifications.len()).unwrap_or(u8::MAX));
        for v in &self.verifications {
            w.var_bytes16(&v.encode()?);
        }
        Ok(())
    }

    /// Reads the payload from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let profile = SignedBusinessProfile::decode(
            r.var_bytes16("business profile", MAX_BUSINESS_PROFILE_LEN)?,
        )?;
        let route = if r.flag("has_route")? {
            Some(SignedRoute::decode(r.var_bytes16("route", MAX_ROUTE_LEN)?)?)
        } else {
            None
        };
        let count = usize::from(r.u8()?);
        if count > MAX_VERIFICATIONS {
            return Err(DecodeError::TooMany {
                what: "verifications",
                count,
                max: MAX_VERIFICATIONS,
            });
        }
        let mut verifications = Vec::with_capacity(count);
        for _ in 0..count {
            verifications.push(BusinessVerification::decode(
                r.var_bytes16("business verification", MAX_BUSINESS_VERIFICATION_LEN)?,
            )?);
        }
        Ok(Self {
            profile,
            route,
            verifications,
        })
    }
}

#[cfg(test)]
mod tests;
