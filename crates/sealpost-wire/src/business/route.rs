//! Routes (`spec/business.md` section 7.1): which devices of a business receive a
//! conversation. Structure only: `sealpost-devices` signs and verifies them.

use super::header;
use crate::devices::{DEVICES_VERSION, MAX_LISTED_DEVICES};
use crate::{AccountId, DecodeError, KEY_LEN, Reader, SIGNATURE_LEN, Writer};

/// Type byte of a [`SignedRoute`].
pub const TYPE_ROUTE: u8 = 0x18;

/// Longest [`SignedRoute`] encoding (506 bytes).
pub const MAX_ROUTE_LEN: usize = 2
    + (1 + crate::MAX_ACCOUNT_ID_LEN)
    + KEY_LEN
    + (2 + crate::MAX_ACCOUNT_ID_LEN)
    + 8
    + 8
    + 1
    + 4 * MAX_LISTED_DEVICES
    + 4
    + SIGNATURE_LEN;

/// Who signed a route: the account key, or one of the business's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteSigner {
    /// The business's account key (`signer` 0).
    AccountKey,
    /// The listed device with this id (≥ 1), with its identity key.
    Device(u32),
}

impl RouteSigner {
    fn to_u32(self) -> u32 {
        match self {
            Self::AccountKey => 0,
            Self::Device(id) => id,
        }
    }

    fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::AccountKey,
            id => Self::Device(id),
        }
    }
}

/// The signed part of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteBody {
    /// The business's account.
    pub account: AccountId,
    /// The business's account key.
    pub account_key: [u8; KEY_LEN],
    /// The customer of a conversation route; `None` for the default route.
    pub customer: Option<AccountId>,
    /// The route's version (≥ 1).
    pub route_version: u64,
    /// Unix ms when it was signed (informative).
    pub issued_at: u64,
    /// The routed device ids, strictly increasing, 1..=64 of them.
    pub devices: Vec<u32>,
    /// Who signs it.
    pub signer: RouteSigner,
}

fn check_devices(devices: &[u32]) -> Result<(), DecodeError> {
    if devices.is_empty() {
        return Err(DecodeError::TooShort {
            what: "route",
            len: 0,
            min: 1,
        });
    }
    if devices.len() > MAX_LISTED_DEVICES {
        return Err(DecodeError::TooLong {
            what: "route",
            len: devices.len(),
            max: MAX_LISTED_DEVICES,
        });
    }
    let mut previous = 0u32;
    for &d in devices {
        if d == 0 {
            return Err(DecodeError::InvalidValue("device id"));
        }
        if d <= previous {
            return Err(DecodeError::InvalidValue("device order"));
        }
        previous = d;
    }
    Ok(())
}

impl RouteBody {
    /// The signed bytes, from `version` to `signer`. Fails when the version is 0 or the
    /// device ids break their rule.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        if self.route_version == 0 {
            return Err(DecodeError::InvalidValue("route version"));
        }
        check_devices(&self.devices)?;
        let mut w = Writer::with_capacity(160 + 4 * self.devices.len());
        w.u8(DEVICES_VERSION).u8(TYPE_ROUTE);
        self.account.encode_into(&mut w);
        w.bytes(&self.account_key).flag(self.customer.is_some());
        if let Some(c) = &self.customer {
            c.encode_into(&mut w);
        }
        w.u64(self.route_version)
            .u64(self.issued_at)
            .u8(u8::try_from(self.devices.len()).unwrap_or(u8::MAX));
        for d in &self.devices {
            w.u32(*d);
        }
        w.u32(self.signer.to_u32());
        Ok(w.into_bytes())
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        header(r, TYPE_ROUTE, "route")?;
        let account = AccountId::decode_from(r)?;
        let account_key = r.array()?;
        let customer = if r.flag("has_customer")? {
            Some(AccountId::decode_from(r)?)
        } else {
            None
        };
        let route_version = r.u64()?;
        if route_version == 0 {
            return Err(DecodeError::InvalidValue("route version"));
        }
        let issued_at = r.u64()?;
        let count = usize::from(r.u8()?);
        if count == 0 {
            return Err(DecodeError::TooShort {
                what: "route",
                len: 0,
                min: 1,
            });
        }
        if count > MAX_LISTED_DEVICES {
            return Err(DecodeError::TooLong {
                what: "route",
                len: count,
                max: MAX_LISTED_DEVICES,
            });
        }
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            devices.push(r.u32()?);
        }
        check_devices(&devices)?;
        let signer = RouteSigner::from_u32(r.u32()?);
        Ok(Self {
            account,
            account_key,
            customer,
            route_version,
            issued_at,
            devices,
            signer,
        })
    }
}

/// A route as it travels: the body and its signature (`spec/business.md` 7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRoute {
    /// What was signed.
    pub body: RouteBody,
    /// The signature by the account key or the signing device's identity key.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedRoute {
    /// The canonical encoding. Fails when the body breaks a structural rule.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = self.body.encode()?;
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Decodes a whole input (section 7.1).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (body, signature) =
            super::decode_signed(bytes, MAX_ROUTE_LEN, "route", RouteBody::decode_from)?;
        Ok(Self { body, signature })
    }
}
