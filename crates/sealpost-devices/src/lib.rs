//! Linked devices for Sealpost (`spec/devices.md`): the **account key** that signs an
//! account's **device list**, the verification of a list and the **update rule** that every
//! client applies before it encrypts to an account's devices, and the encryption of
//! **linking** (the provisioning message a key holder sends a new device through the relay).
//!
//! Nothing here does I/O. The relay verifies lists with [`VerifiedDeviceList::verify`]
//! before it stores them; clients verify every list they fetch and keep a [`DeviceListPin`]
//! per contact, so that a device the relay adds, or an older list the relay serves, is
//! refused.
//!
//! ```
//! use sealpost_crypto::ed25519::SigningKey;
//! use sealpost_devices::{AccountKeyPair, DeviceListPin, DeviceRole, Update};
//! use sealpost_wire::{AccountId, IdentityBytes, devices::DeviceName};
//!
//! let mut rng = rand::rng();
//! let account = AccountId::new("+15551230001").unwrap();
//! // The phone (the key holder) and its identity's Ed25519 key.
//! let phone = SigningKey::generate(&mut rng);
//! let phone_identity = IdentityBytes { signing: phone.verifying_key().to_bytes(), dh: [9; 32] };
//! let account_key = AccountKeyPair::generate(&mut rng);
//! let first = account_key
//!     .first_list(&account, 1, phone_identity, DeviceRole::Primary, DeviceName::new("Phone").unwrap(), 0, |m| phone.sign(m))
//!     .unwrap();
//! // A contact verifies what the relay serves and pins it.
//! let mut pin = DeviceListPin::new(first.clone());
//! assert_eq!(pin.accept(&first).unwrap(), Update::Unchanged);
//! ```
#![forbid(unsafe_code)]
// unwrap/expect/panic outside tests: workspace lints (Cargo.toml, clippy.toml).
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod account_key;
mod backup;
mod business;
mod error;
mod list;
mod pin;
mod provisioning;
mod route;
mod transcript;

#[cfg(feature = "hazmat")]
pub mod hazmat;

pub use account_key::{AccountKey, AccountKeyPair};
pub use backup::{ACCOUNT_KEY_BACKUP_INFO, open_account_key_backup, seal_account_key_backup};
pub use business::{
    BUSINESS_PROFILE_LABEL, BUSINESS_VERIFICATION_LABEL, BusinessProfilePin, ProfileError,
    TrustedVerifier, VerificationError, VerifiedBusinessProfile, check_verification,
    check_verification_binding, sign_business_verification, verified_by,
};
pub use error::{BackupError, DeviceListError, LinkError, UpdateError};
pub use list::{BINDING_LABEL, DEVICE_LIST_LABEL, VerifiedDeviceList, binding_message};
pub use pin::{DeviceListChange, DeviceListPin, Update};
pub use provisioning::{
    LINK_TEXT_PREFIX, LinkRequest, PROVISIONING_INFO, ProvisionedLink, parse_invitation,
    seal_provisioning,
};
pub use route::{ROUTE_LABEL, RouteError, VerifiedRoute, route_targets, sign_route_as_device};
pub use sealpost_wire::devices::{DeviceEntry, DeviceRole, RoleFamily};
pub use transcript::{
    EMPTY_CHAIN_HEAD, HandoffCheck, TRANSCRIPT_LABEL, Transcript, TranscriptError, TranscriptLog,
    chain_step,
};
