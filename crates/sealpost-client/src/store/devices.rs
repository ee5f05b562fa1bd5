//! Records of linked devices (spec/client-store.md 5.9 and 5.10): this account's own list
//! (and, on the key holder, the account key) and the list pinned for each contact account.

use super::records::{malformed, start};
use super::{Batch, Store, Table, Verification};
use crate::error::StoreError;
use sealpost_crypto::Zeroizing;
use sealpost_devices::{AccountKeyPair, VerifiedDeviceList};
use sealpost_wire::devices::MAX_DEVICE_LIST_LEN;
use sealpost_wire::{AccountId, DecodeError, Reader, Writer};

/// Row of the own-devices record in the `account` table.
const OWN_DEVICES_KEY: &[u8] = &[3];

/// Most verified lists a store keeps in memory (one per account it reads a list of).
const VERIFIED_LIST_CACHE: usize = 4096;

/// Verifies stored list bytes for `account`; a list that no longer verifies is malformed.
fn stored_list(
    table: &'static str,
    bytes: &[u8],
    account: &AccountId,
) -> Result<VerifiedDeviceList, StoreError> {
    VerifiedDeviceList::verify(bytes, account).map_err(|_| StoreError::Malformed {
        table,
        error: DecodeError::InvalidValue("stored device list"),
    })
}

/// This account's own devices: its current signed list, and the account key on the key
/// holder. Not `Clone`: the account key lives in one place.
#[derive(Debug)]
pub(crate) struct OwnDevices {
    /// The account key (only on the key holder).
    pub(crate) account_key: Option<AccountKeyPair>,
    /// The account's current list as this device knows it.
    pub(crate) list: VerifiedDeviceList,
    /// Whether the relay confirmed storing `list` (a key holder publishes it again on the
    /// next start otherwise).
    pub(crate) published: bool,
}

impl OwnDevices {
    pub(crate) const TABLE: &'static str = "account";

    /// `0x01 || has_account_key(flag) || [seed(32)] || var32(list) || published(flag)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let list = self.list.as_bytes();
        let mut w = Writer::with_capacity(list.len() + 48);
        w.u8(super::RECORD_PLAINTEXT_VERSION)
            .flag(self.account_key.is_some());
        if let Some(key) = &self.account_key {
            w.bytes(key.to_seed().as_slice());
        }
        w.var_bytes32(list).flag(self.published);
        Zeroizing::new(w.into_bytes())
    }

    /// Decodes the record; `verify` checks the list bytes.
    fn decode_with(
        bytes: &[u8],
        verify: impl FnOnce(&[u8]) -> Result<VerifiedDeviceList, StoreError>,
    ) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let account_key = if r.flag("has_account_key").map_err(&m)? {
            let seed = Zeroizing::new(r.array::<32>().map_err(&m)?);
            Some(AccountKeyPair::from_seed(&seed))
        } else {
            None
        };
        let list = r
            .var_bytes32("device list", MAX_DEVICE_LIST_LEN)
            .map_err(&m)?;
        let list = verify(list)?;
        let published = r.flag("published").map_err(&m)?;
        r.finish().map_err(&m)?;
        if account_key
            .as_ref()
            .is_some_and(|k| k.public() != list.account_key())
        {
            return Err(StoreError::Inconsistent(
                "account key differs from the list's",
            ));
        }
        Ok(Self {
            account_key,
            list,
            published,
        })
    }
}

/// The list pinned for a contact account (spec/devices.md section 5) and the account's
/// verification state (spec/client-store.md section 11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListPin {
    pub(crate) list: VerifiedDeviceList,
    /// Whether the user verified the account's safety number (over its account key).
    pub(crate) verification: Verification,
}

impl ListPin {
    pub(crate) const TABLE: &'static str = "devices";

    /// `0x01 || account || var32(list) || verification(u8)`.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let list = self.list.as_bytes();
        let mut w = Writer::with_capacity(list.len() + 80);
        w.u8(super::RECORD_PLAINTEXT_VERSION);
        self.list.account().encode_into(&mut w);
        w.var_bytes32(list).u8(self.verification.code());
        Zeroizing::new(w.into_bytes())
    }

    #[cfg(test)]
    pub(crate) fn decode(bytes: &[u8], account: &AccountId) -> Result<Self, StoreError> {
        Self::decode_with(bytes, account, |list| {
            stored_list(Self::TABLE, list, account)
        })
    }

    /// Decodes the record of `account`; `verify` checks the list bytes.
    fn decode_with(
        bytes: &[u8],
        account: &AccountId,
        verify: impl FnOnce(&[u8]) -> Result<VerifiedDeviceList, StoreError>,
    ) -> Result<Self, StoreError> {
        let m = malformed(Self::TABLE);
        let mut r = Reader::new(bytes);
        start(&mut r).map_err(&m)?;
        let stored = AccountId::decode_from(&mut r).map_err(&m)?;
        if &stored != account {
            return Err(StoreError::Inconsistent("device list pin account"));
        }
        let list = r
            .var_bytes32("device list", MAX_DEVICE_LIST_LEN)
            .map_err(&m)?;
        let list = verify(list)?;
        let verification = Verification::from_code(r.u8().map_err(&m)?).map_err(&m)?;
        r.finish().map_err(&m)?;
        Ok(Self { list, verification })
    }
}

impl Store {
    /// [`stored_list`], remembering the last list verified for each account: a list read
    /// again with the same bytes is not verified again (a sender reads the recipient's pin
    /// for every message, and verifying a 32-device list is 33 signature checks). The
    /// bytes come from a sealed record, so they are what this store wrote after verifying.
    fn verified_list(
        &self,
        table: &'static str,
        bytes: &[u8],
        account: &AccountId,
    ) -> Result<VerifiedDeviceList, StoreError> {
        // A panic while the lock was held cannot leave an unverified list behind.
        let mut cache = self
            .inner
            .verified_lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = cache.get(account).filter(|l| l.as_bytes() == bytes) {
            return Ok(list.clone());
        }
        let list = stored_list(table, bytes, account)?;
        if cache.len() >= VERIFIED_LIST_CACHE {
            cache.clear();
        }
        cache.insert(account.clone(), list.clone());
        Ok(list)
    }

    /// This account's own devices record, if any (none: a version-1 store, or one that has
    /// not finished registering).
    pub(crate) fn own_devices(
        &self,
        account: &AccountId,
    ) -> Result<Option<OwnDevices>, StoreError> {
        match self.backend().get(Table::Account, OWN_DEVICES_KEY)? {
            None => Ok(None),
            Some(row) => Ok(Some(OwnDevices::decode_with(
                &self.open_row(Table::Account, &row)?,
                |list| self.verified_list(OwnDevices::TABLE, list, account),
            )?)),
        }
    }

    pub(crate) fn put_own_devices(&self, batch: &mut Batch, own: &OwnDevices) {
        self.put(
            batch,
            Table::Account,
            OWN_DEVICES_KEY.to_vec(),
            Vec::new(),
            0,
            &own.encode(),
        );
    }

    /// The list pinned for `account`, if any.
    pub(crate) fn list_pin(&self, account: &AccountId) -> Result<Option<ListPin>, StoreError> {
        let key = self.account_tag(account);
        match self.backend().get(Table::Devices, &key)? {
            None => Ok(None),
            Some(row) => Ok(Some(ListPin::decode_with(
                &self.open_row(Table::Devices, &row)?,
                account,
                |list| self.verified_list(ListPin::TABLE, list, account),
            )?)),
        }
    }

    /// Every pinned contact list (for a history bundle), in no particular order.
    pub(crate) fn all_list_pins(&self) -> Result<Vec<ListPin>, StoreError> {
        let mut out = Vec::new();
        for row in self.backend().first(Table::Devices, usize::MAX)? {
            let plain = self.open_row(Table::Devices, &row)?;
            // The record names its account (after the version byte); the row key is its tag.
            let mut r = Reader::new(&plain);
            start(&mut r).map_err(malformed(ListPin::TABLE))?;
            let account = AccountId::decode_from(&mut r).map_err(malformed(ListPin::TABLE))?;
            if row.key != self.account_tag(&account) {
                return Err(StoreError::Inconsistent("device list pin account"));
            }
            out.push(ListPin::decode_with(&plain, &account, |list| {
                self.verified_list(ListPin::TABLE, list, &account)
            })?);
        }
        Ok(out)
    }

    pub(crate) fn put_list_pin(&self, batch: &mut Batch, pin: &ListPin) {
        let key = self.account_tag(pin.list.account()).to_vec();
        self.put(batch, Table::Devices, key, Vec::new(), 0, &pin.encode());
    }
}
