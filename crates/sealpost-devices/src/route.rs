//! Routes (`spec/business.md` section 7): signing, verification against the business's
//! list, the version rule, and whom a customer encrypts to.

use crate::{AccountKeyPair, VerifiedDeviceList};
use sealpost_crypto::ed25519::{Signature, VerifyingKey};
use sealpost_wire::business::{RouteBody, RouteSigner, SignedRoute};
use sealpost_wire::devices::DeviceRole;
use sealpost_wire::{AccountId, DecodeError};

/// Label before the route body in its signature.
pub const ROUTE_LABEL: &[u8] = b"Sealpost_Route_v1";

/// Why a route is not valid, or not accepted over the one held (`spec/business.md` 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The bytes are not a route.
    #[error("route does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// It names another business.
    #[error("route names another account")]
    WrongAccount,
    /// It names another account key than the business's list.
    #[error("route names another account key")]
    WrongAccountKey,
    /// A default route with a customer, or a conversation route for another customer.
    #[error("route is for another conversation")]
    WrongCustomer,
    /// Its signer may not route this conversation.
    #[error("route signer may not route this conversation")]
    Unauthorized,
    /// The signature does not verify.
    #[error("route signature does not verify")]
    BadSignature,
    /// Older than the route held.
    #[error("route rolled back from version {held} to {offered}")]
    RolledBack {
        /// The held version.
        held: u64,
        /// The offered version.
        offered: u64,
    },
    /// A different route with the held version.
    #[error("two different routes with version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
    /// The route version cannot be raised further.
    #[error("route version exhausted")]
    Exhausted,
}

fn message(body: &RouteBody) -> Result<Vec<u8>, DecodeError> {
    let encoded = body.encode()?;
    let mut out = Vec::with_capacity(ROUTE_LABEL.len() + encoded.len());
    out.extend_from_slice(ROUTE_LABEL);
    out.extend_from_slice(&encoded);
    Ok(out)
}

impl AccountKeyPair {
    /// Signs `body` with the account key; `body.signer` must be [`RouteSigner::AccountKey`]
    /// and `body.account_key` this key (otherwise [`RouteError::Unauthorized`] /
    /// [`RouteError::WrongAccountKey`]).
    pub fn sign_route(&self, body: RouteBody) -> Result<SignedRoute, RouteError> {
        if body.signer != RouteSigner::AccountKey {
            return Err(RouteError::Unauthorized);
        }
        if body.account_key != self.public().to_bytes() {
            return Err(RouteError::WrongAccountKey);
        }
        let signature = self.sign_bytes(&message(&body)?).to_bytes();
        Ok(SignedRoute { body, signature })
    }
}

/// Signs `body` as the device `body.signer` names, with `sign` (its identity key's
/// Ed25519 half). Whether that device may route is checked by the reader (7.2 rule 3).
pub fn sign_route_as_device(
    body: RouteBody,
    sign: impl FnOnce(&[u8]) -> Signature,
) -> Result<SignedRoute, RouteError> {
    if body.signer == RouteSigner::AccountKey {
        return Err(RouteError::Unauthorized);
    }
    let signature = sign(&message(&body)?).to_bytes();
    Ok(SignedRoute { body, signature })
}

/// A route valid for its business's list (section 7.2). Only this crate makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRoute {
    route: SignedRoute,
    encoded: Vec<u8>,
}

impl VerifiedRoute {
    /// Section 7.2: `route` for the business of `list`, as the conversation route of
    /// `customer` (`Some`) or as the default route (`None`); `current` is the conversation's
    /// current route before this one (section 7.3), which lets its devices hand the
    /// conversation on.
    pub fn verify(
        route: &SignedRoute,
        list: &VerifiedDeviceList,
        customer: Option<&AccountId>,
        current: Option<&VerifiedRoute>,
    ) -> Result<Self, RouteError> {
        let body = &route.body;
        let bytes = message(body)?;
        if &body.account != list.account() {
            return Err(RouteError::WrongAccount);
        }
        let account_key = list.account_key();
        if body.account_key != account_key.to_bytes() {
            return Err(RouteError::WrongAccountKey);
        }
        if body.customer.as_ref() != customer {
            return Err(RouteError::WrongCustomer);
        }
        let signature =
            Signature::from_slice(&route.signature).map_err(|_| RouteError::BadSignature)?;
        let key = match body.signer {
            RouteSigner::AccountKey => account_key.0,
            RouteSigner::Device(id) => {
                let entry = list.device(id).ok_or(RouteError::Unauthorized)?;
                let manages = matches!(entry.role, DeviceRole::Owner | DeviceRole::Admin);
                let holds = customer.is_some()
                    && current.is_some_and(|c| c.route.body.devices.contains(&id));
                if !manages && !holds {
                    return Err(RouteError::Unauthorized);
                }
                VerifyingKey::from_bytes(&entry.identity.signing)
                    .map_err(|_| RouteError::BadSignature)?
            }
        };
        key.verify(&bytes, &signature)
            .map_err(|_| RouteError::BadSignature)?;
        let mut encoded = body.encode()?;
        encoded.extend_from_slice(&route.signature);
        Ok(Self {
            route: route.clone(),
            encoded,
        })
    }

    /// A route this reader accepted earlier (with [`Self::verify`], then kept in its own
    /// sealed store), checked again before it is used: rules 1 and 2 of section 7.2 against
    /// the current `list` (a new account key drops it), and the signature again while the
    /// signer is still the account key or a listed device. A conversation route whose
    /// signing device has left the list since stays valid: it was verified when accepted,
    /// and removing the device that routed a conversation must not take it from the devices
    /// it routed to. Whether that device could route the conversation then (rule 3) was
    /// decided when it was accepted.
    pub fn verify_held(
        route: &SignedRoute,
        list: &VerifiedDeviceList,
        customer: Option<&AccountId>,
    ) -> Result<Self, RouteError> {
        let body = &route.body;
        let mut encoded = body.encode()?;
        encoded.extend_from_slice(&route.signature);
        let held = Self {
            route: route.clone(),
            encoded,
        };
        match body.signer {
            RouteSigner::Device(id) if customer.is_some() && list.device(id).is_none() => {
                if &body.account != list.account() {
                    return Err(RouteError::WrongAccount);
                }
                if body.account_key != list.account_key().to_bytes() {
                    return Err(RouteError::WrongAccountKey);
                }
                if body.customer.as_ref() != customer {
                    return Err(RouteError::WrongCustomer);
                }
                Ok(held)
            }
            RouteSigner::Device(id) if customer.is_some() => {
                // The signer held the conversation under some route: itself, for rule 3.
                let as_holder = Self {
                    route: SignedRoute {
                        body: RouteBody {
                            devices: vec![id],
                            ..body.clone()
                        },
                        signature: route.signature,
                    },
                    encoded: Vec::new(),
                };
                Self::verify(route, list, customer, Some(&as_holder))
            }
            _ => Self::verify(route, list, customer, None),
        }
    }

    /// The route.
    pub fn signed(&self) -> &SignedRoute {
        &self.route
    }

    /// The routed device ids.
    pub fn devices(&self) -> &[u32] {
        &self.route.body.devices
    }

    /// The route's version.
    pub fn route_version(&self) -> u64 {
        self.route.body.route_version
    }

    /// The canonical encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Section 7.2's version rule: whether `self` replaces `held` (the route held for the
    /// same conversation, or the default): `Ok(true)` to replace, `Ok(false)` when it is the
    /// held route, the refusal otherwise. A route under another account key always
    /// replaces.
    pub fn replaces(&self, held: Option<&VerifiedRoute>) -> Result<bool, RouteError> {
        let Some(held) = held else {
            return Ok(true);
        };
        if held.route.body.account_key != self.route.body.account_key {
            return Ok(true);
        }
        let (h, o) = (held.route_version(), self.route_version());
        if o < h {
            return Err(RouteError::RolledBack {
                held: h,
                offered: o,
            });
        }
        if o == h {
            return if held.encoded == self.encoded {
                Ok(false)
            } else if self.route.body.customer.is_some() {
                // Two of the business's devices routed the conversation at once (two
                // claims): every reader keeps the smaller encoding (section 7.2).
                Ok(self.encoded < held.encoded)
            } else {
                Err(RouteError::Equivocation { version: o })
            };
        }
        Ok(true)
    }
}

/// Section 7.3: the devices of `list` (a business's verified list) that a customer's
/// message goes to, given the conversation's route and the business's default route: the
/// first of them that names a listed device decides, plus the key holder; with neither,
/// every listed device. In increasing id order.
pub fn route_targets(
    list: &VerifiedDeviceList,
    conversation: Option<&VerifiedRoute>,
    default: Option<&VerifiedRoute>,
) -> Vec<u32> {
    let listed = |id: &u32| list.device(*id).is_some();
    let current = [conversation, default]
        .into_iter()
        .flatten()
        .find(|r| r.devices().iter().any(listed));
    let Some(route) = current else {
        return list.entries().iter().map(|e| e.device_id).collect();
    };
    let mut out: Vec<u32> = route.devices().iter().copied().filter(listed).collect();
    if let Some(holder) = list.key_holder()
        && !out.contains(&holder.device_id)
    {
        out.push(holder.device_id);
        out.sort_unstable();
    }
    out
}
