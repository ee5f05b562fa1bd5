//! Test-only entry points, behind the non-default `hazmat` feature: they make stores that a
//! real client never makes, to test what other clients do with them. Never enable it in an
//! application.

use crate::error::ClientError;
use crate::event::EventReceiver;
use crate::store::{AccountRecord, Batch, Store};
use crate::{Client, ClientConfig};
use sealpost_session::IdentityKeyPair;
use sealpost_wire::{AccountId, DeviceId};

/// Registers like [`Client::register`], as a client from before linked devices did: no
/// account key, no device list published (a version-1 account, spec/devices.md 8.5). The
/// store upgrades when it is next opened with [`Client::open`].
pub async fn register_version1(
    store: Store,
    config: ClientConfig,
    account: AccountId,
    code: &str,
) -> Result<(Client, EventReceiver), ClientError> {
    Client::register_inner(store, config, account, code, None, false).await
}

/// Writes a registered device's account record into an empty store: `identity` as device
/// `device` of `account`, whatever the relay or the account's list say (a device the relay
/// added on its own, for tests of the ghost-device attack).
pub fn install_device(
    store: &Store,
    account: AccountId,
    device: DeviceId,
    identity: IdentityKeyPair,
) -> Result<(), ClientError> {
    let mut batch = Batch::new();
    store.put_account(
        &mut batch,
        &AccountRecord {
            identity,
            account,
            device: Some(device),
            registered_at: 1,
        },
    );
    Ok(store.commit(batch)?)
}
