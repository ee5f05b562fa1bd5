//! The prekey directory: uploads, counts and bundles.

use super::accounts::identity_at;
use super::{
    Commit, PgStore, TxError, execute, get_array, get_u32, get_u64, in_tx, query, query_one,
    query_opt, to_i64,
};
use crate::StoreError;
use crate::store::{NewPreKeys, PreKeyCounts, PreKeyLimits, TakenBundle, UploadOutcome};
use deadpool_postgres::GenericClient;
use sealpost_wire::{
    AccountId, DeviceAddress, KEM_PUBLIC_LEN, KemPreKeyKind, KemPreKeyPublic, PreKeyBundle,
    SignedPreKeyPublic,
};

/// The device's prekey counts.
async fn counts<C: GenericClient + Sync>(
    c: &C,
    account: &str,
    device_id: i64,
) -> Result<PreKeyCounts, TxError> {
    let row = query_one(
        c,
        "SELECT (SELECT COUNT(*) FROM one_time_prekeys WHERE account = $1 AND device_id = $2),
                (SELECT COUNT(*) FROM kem_prekeys
                 WHERE account = $1 AND device_id = $2 AND NOT last_resort)",
        &[&account, &device_id],
    )
    .await?;
    let count = |i| -> Result<u32, TxError> {
        let n: i64 = row.try_get(i)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(PreKeyCounts {
        one_time_prekeys: count(0)?,
        kem_prekeys: count(1)?,
    })
}

/// A KEM prekey from `id, created_at, public, signature` at columns 0..4.
fn kem_at(row: &tokio_postgres::Row, kind: KemPreKeyKind) -> Result<KemPreKeyPublic, TxError> {
    Ok(KemPreKeyPublic {
        id: get_u32(row, 0, "KEM prekey id")?,
        kind,
        created_at: get_u64(row, 1, "KEM prekey time")?,
        public: Box::new(get_array::<KEM_PUBLIC_LEN>(row, 2, "KEM prekey")?),
        signature: get_array(row, 3, "KEM prekey signature")?,
    })
}

/// Takes one bundle of a device (see [`PgStore::take_bundles`]), or `None` (nothing taken)
/// if it has no signed prekey or no KEM prekey it can give.
async fn take_bundle(
    tx: &deadpool_postgres::Transaction<'_>,
    account: &AccountId,
    device_id: u32,
    identity: sealpost_wire::IdentityBytes,
) -> Result<Option<TakenBundle>, TxError> {
    let acct = account.as_str();
    let dev = i64::from(device_id);
    let Some(row) = query_opt(
        tx,
        "SELECT id, created_at, public, signature FROM signed_prekeys
         WHERE account = $1 AND device_id = $2",
        &[&acct, &dev],
    )
    .await?
    else {
        return Ok(None);
    };
    let signed_prekey = SignedPreKeyPublic {
        id: get_u32(&row, 0, "signed prekey id")?,
        created_at: get_u64(&row, 1, "signed prekey time")?,
        public: get_array(&row, 2, "signed prekey")?,
        signature: get_array(&row, 3, "signed prekey signature")?,
    };
    // The lowest one-time KEM key that no concurrent transaction holds; else the last-resort
    // key (which stays).
    let kem_prekey = match query_opt(
        tx,
        "DELETE FROM kem_prekeys WHERE account = $1 AND device_id = $2 AND id = (
             SELECT id FROM kem_prekeys
             WHERE account = $1 AND device_id = $2 AND NOT last_resort
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, created_at, public, signature",
        &[&acct, &dev],
    )
    .await?
    {
        Some(row) => kem_at(&row, KemPreKeyKind::OneTime)?,
        None => match query_opt(
            tx,
            "SELECT id, created_at, public, signature FROM kem_prekeys
             WHERE account = $1 AND device_id = $2 AND last_resort",
            &[&acct, &dev],
        )
        .await?
        {
            Some(row) => kem_at(&row, KemPreKeyKind::LastResort)?,
            None => return Ok(None),
        },
    };
    let one_time_prekey = match query_opt(
        tx,
        "DELETE FROM one_time_prekeys WHERE account = $1 AND device_id = $2 AND id = (
             SELECT id FROM one_time_prekeys WHERE account = $1 AND device_id = $2
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, public",
        &[&acct, &dev],
    )
    .await?
    {
        Some(row) => Some((
            get_u32(&row, 0, "one-time prekey id")?,
            get_array(&row, 1, "one-time prekey")?,
        )),
        None => None,
    };
    Ok(Some(TakenBundle {
        bundle: PreKeyBundle {
            device_id,
            identity,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        },
        remaining: counts(tx, acct, dev).await?,
    }))
}

impl PgStore {
    /// [`crate::Store::store_prekeys`]. The device row is locked, so uploads for one device
    /// run one after the other.
    pub async fn store_prekeys(
        &self,
        device: &DeviceAddress,
        keys: &NewPreKeys,
        limits: &PreKeyLimits,
    ) -> Result<UploadOutcome, StoreError> {
        let acct = device.account.as_str();
        let dev = i64::from(device.device.0);
        let otk_ids: Vec<i64> = keys.one_time.iter().map(|(id, _)| i64::from(*id)).collect();
        let otk_publics: Vec<&[u8]> = keys.one_time.iter().map(|(_, p)| &p[..]).collect();
        let kems: Vec<&KemPreKeyPublic> = keys
            .kem_one_time
            .iter()
            .chain(keys.kem_last_resort.iter())
            .collect();
        let kem_ids: Vec<i64> = kems.iter().map(|k| i64::from(k.id)).collect();
        let kem_last_resort: Vec<bool> = kems
            .iter()
            .map(|k| k.kind == KemPreKeyKind::LastResort)
            .collect();
        let kem_created: Vec<i64> = kems.iter().map(|k| to_i64(k.created_at)).collect();
        let kem_publics: Vec<&[u8]> = kems.iter().map(|k| k.public.as_slice()).collect();
        let kem_signatures: Vec<&[u8]> = kems.iter().map(|k| &k.signature[..]).collect();
        let one_time_kem_ids: Vec<i64> =
            keys.kem_one_time.iter().map(|k| i64::from(k.id)).collect();
        in_tx!(self, Commit::Durable, |tx| {
            if query_opt(
                &tx,
                "SELECT 1 FROM devices WHERE account = $1 AND device_id = $2 FOR NO KEY UPDATE",
                &[&acct, &dev],
            )
            .await?
            .is_none()
            {
                return Ok(UploadOutcome::UnknownDevice);
            }
            let otk_clash = query_one(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM one_time_prekeys
                 WHERE account = $1 AND device_id = $2 AND id = ANY($3))",
                &[&acct, &dev, &otk_ids],
            )
            .await?
            .try_get::<_, bool>(0)?;
            // One-time KEM ids clash with any stored KEM key; a new last-resort id only with
            // a stored one-time key (it may reuse the id of the last-resort key it replaces).
            let kem_clash = query_one(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM kem_prekeys WHERE account = $1 AND device_id = $2
                 AND (id = ANY($3) OR (id = $4 AND NOT last_resort)))",
                &[
                    &acct,
                    &dev,
                    &one_time_kem_ids,
                    &keys.kem_last_resort.as_ref().map(|k| i64::from(k.id)),
                ],
            )
            .await?
            .try_get::<_, bool>(0)?;
            if otk_clash || kem_clash {
                return Ok(UploadOutcome::IdConflict);
            }
            let before = counts(&tx, acct, dev).await?;
            if u64::from(before.one_time_prekeys) + keys.one_time.len() as u64
                > u64::from(limits.max_one_time)
                || u64::from(before.kem_prekeys) + keys.kem_one_time.len() as u64
                    > u64::from(limits.max_kem_one_time)
            {
                return Ok(UploadOutcome::TooMany);
            }
            if let Some(s) = &keys.signed {
                execute(
                    &tx,
                    "INSERT INTO signed_prekeys
                     (account, device_id, id, created_at, public, signature)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (account, device_id) DO UPDATE SET id = EXCLUDED.id,
                        created_at = EXCLUDED.created_at, public = EXCLUDED.public,
                        signature = EXCLUDED.signature",
                    &[
                        &acct,
                        &dev,
                        &i64::from(s.id),
                        &to_i64(s.created_at),
                        &&s.public[..],
                        &&s.signature[..],
                    ],
                )
                .await?;
            }
            if !otk_ids.is_empty() {
                execute(
                    &tx,
                    "INSERT INTO one_time_prekeys (account, device_id, id, public)
                     SELECT $1, $2, id, public FROM unnest($3::BIGINT[], $4::BYTEA[]) AS k (id, public)",
                    &[&acct, &dev, &otk_ids, &otk_publics],
                )
                .await?;
            }
            if keys.kem_last_resort.is_some() {
                execute(
                    &tx,
                    "DELETE FROM kem_prekeys WHERE account = $1 AND device_id = $2 AND last_resort",
                    &[&acct, &dev],
                )
                .await?;
            }
            if !kem_ids.is_empty() {
                execute(
                    &tx,
                    "INSERT INTO kem_prekeys
                     (account, device_id, id, last_resort, created_at, public, signature)
                     SELECT $1, $2, id, last_resort, created_at, public, signature
                     FROM unnest($3::BIGINT[], $4::BOOLEAN[], $5::BIGINT[], $6::BYTEA[], $7::BYTEA[])
                        AS k (id, last_resort, created_at, public, signature)",
                    &[
                        &acct,
                        &dev,
                        &kem_ids,
                        &kem_last_resort,
                        &kem_created,
                        &kem_publics,
                        &kem_signatures,
                    ],
                )
                .await?;
            }
            Ok(UploadOutcome::Stored(counts(&tx, acct, dev).await?))
        })
    }

    /// [`crate::Store::prekey_counts`].
    pub async fn prekey_counts(&self, device: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
        let c = self.client().await?;
        counts(&c, device.account.as_str(), i64::from(device.device.0))
            .await
            .map_err(TxError::into_store)
    }

    /// [`crate::Store::take_bundles`]. One-time keys are taken with `FOR UPDATE SKIP LOCKED`:
    /// concurrent fetches on any number of nodes take different keys, and each key is
    /// returned by the transaction that deleted it.
    pub async fn take_bundles(
        &self,
        account: &AccountId,
    ) -> Result<Option<Vec<TakenBundle>>, StoreError> {
        in_tx!(self, Commit::Durable, |tx| {
            let devices = query(
                &tx,
                "SELECT device_id, identity FROM devices WHERE account = $1 ORDER BY device_id",
                &[&account.as_str()],
            )
            .await?;
            if devices.is_empty() {
                return Ok(None);
            }
            let mut out = Vec::with_capacity(devices.len());
            for row in &devices {
                let device_id = get_u32(row, 0, "device id")?;
                if let Some(b) = take_bundle(&tx, account, device_id, identity_at(row, 1)?).await? {
                    out.push(b);
                }
            }
            Ok(Some(out))
        })
    }
}
