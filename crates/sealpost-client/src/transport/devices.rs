//! Device-list and linking requests (spec/relay.md 3.9–3.11).

use super::{Connection, unexpected};
use crate::error::ClientError;
use sealpost_session::IdentityKeyPair;
use sealpost_wire::AccountId;
use sealpost_wire::devices::{
    AccountKeyBackup, PROVISIONING_ID_LEN, ProvisioningEnvelope, SignedDeviceList,
};
use sealpost_wire::relay::{DeviceLastSeen, Request, Response, link_device_signed_bytes};

impl Connection {
    /// `StoreAccountKeyBackup` (spec/relay.md 3.13): the key holder leaves the sealed account
    /// key with the relay.
    pub(crate) async fn store_account_key_backup(
        &self,
        backup: AccountKeyBackup,
    ) -> Result<(), ClientError> {
        match self
            .request(&Request::StoreAccountKeyBackup { backup })
            .await?
        {
            Response::AccountKeyBackupStored => Ok(()),
            other => Err(unexpected("StoreAccountKeyBackup", &other)),
        }
    }

    /// `FetchAccountKeyBackup`: this account's sealed account key, if the relay holds one.
    pub(crate) async fn fetch_account_key_backup(
        &self,
    ) -> Result<Option<AccountKeyBackup>, ClientError> {
        match self.request(&Request::FetchAccountKeyBackup).await? {
            Response::AccountKeyBackup(b) => Ok(b),
            other => Err(unexpected("FetchAccountKeyBackup", &other)),
        }
    }

    /// `DeviceActivity`: when each device of this connection's account was last seen, to
    /// the day, in increasing device order (the decoder checks the order and the rounding).
    pub(crate) async fn device_activity(&self) -> Result<Vec<DeviceLastSeen>, ClientError> {
        match self.request(&Request::DeviceActivity).await? {
            Response::Activity(d) => Ok(d),
            other => Err(unexpected("DeviceActivity", &other)),
        }
    }

    /// `PublishDeviceList`: stores the account's next list; returns the stored version.
    pub(crate) async fn publish_device_list(
        &self,
        list: SignedDeviceList,
    ) -> Result<u64, ClientError> {
        match self.request(&Request::PublishDeviceList { list }).await? {
            Response::DeviceListStored { list_version } => Ok(list_version),
            other => Err(unexpected("PublishDeviceList", &other)),
        }
    }

    /// `FetchDeviceList`: the account's stored list, or `None` for an account without one
    /// (a version-1 account). Not verified here.
    pub(crate) async fn fetch_device_list(
        &self,
        account: &AccountId,
    ) -> Result<Option<SignedDeviceList>, ClientError> {
        match self
            .request(&Request::FetchDeviceList {
                account: account.clone(),
            })
            .await?
        {
            Response::DeviceList(list) => Ok(list),
            other => Err(unexpected("FetchDeviceList", &other)),
        }
    }

    /// `OpenProvisioning`: a single-use provisioning id and its lifetime in seconds.
    pub(crate) async fn open_provisioning(
        &self,
    ) -> Result<([u8; PROVISIONING_ID_LEN], u32), ClientError> {
        match self.request(&Request::OpenProvisioning).await? {
            Response::ProvisioningOpened {
                provisioning_id,
                expires_in,
            } => Ok((provisioning_id, expires_in)),
            other => Err(unexpected("OpenProvisioning", &other)),
        }
    }

    /// `Provision`: leaves a sealed provisioning message for a new device.
    pub(crate) async fn provision(
        &self,
        provisioning_id: [u8; PROVISIONING_ID_LEN],
        envelope: ProvisioningEnvelope,
    ) -> Result<(), ClientError> {
        match self
            .request(&Request::Provision {
                provisioning_id,
                envelope,
            })
            .await?
        {
            Response::Provisioned => Ok(()),
            other => Err(unexpected("Provision", &other)),
        }
    }

    /// `LinkDevice`: joins the account with the completed list, proving possession of
    /// `identity` on this connection; returns the device id.
    pub(crate) async fn link_device(
        &self,
        list: SignedDeviceList,
        encoded: &[u8],
        device_id: u32,
        identity: &IdentityKeyPair,
    ) -> Result<u32, ClientError> {
        let exporter = self.exporter()?;
        let signature = identity
            .sign(&link_device_signed_bytes(&exporter, device_id, encoded))
            .to_bytes();
        match self
            .request(&Request::LinkDevice {
                list,
                device_id,
                signature,
            })
            .await?
        {
            Response::Registered { device_id } => Ok(device_id),
            other => Err(unexpected("LinkDevice", &other)),
        }
    }
}
