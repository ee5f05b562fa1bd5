//! Prekeys: uploads, counts and the one-time bundle takes.

use super::*;

pub(super) fn counts(conn: &Connection, d: &DeviceAddress) -> Result<PreKeyCounts, StoreError> {
    Ok(PreKeyCounts {
        one_time_prekeys: count_where(
            conn,
            "SELECT COUNT(*) FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2",
            d,
        )?,
        kem_prekeys: count_where(
            conn,
            "SELECT COUNT(*) FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND last_resort = 0",
            d,
        )?,
    })
}

/// `(id, last_resort, created_at, public, signature)` as read from `kem_prekeys`.
pub(super) type KemRow = (u32, bool, u64, Vec<u8>, Vec<u8>);

pub(super) fn kem_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KemRow> {
    Ok((
        get_u32(row, 0)?,
        row.get::<_, i64>(1)? != 0,
        get_u64(row, 2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

pub(super) fn kem_key(raw: KemRow) -> Result<KemPreKeyPublic, StoreError> {
    let (id, last_resort, created_at, public, signature) = raw;
    Ok(KemPreKeyPublic {
        id,
        kind: if last_resort {
            KemPreKeyKind::LastResort
        } else {
            KemPreKeyKind::OneTime
        },
        created_at,
        public: Box::new(array::<KEM_PUBLIC_LEN>(&public, "KEM prekey")?),
        signature: array(&signature, "KEM prekey signature")?,
    })
}

pub(super) fn take_bundle(
    conn: &Connection,
    account: &AccountId,
    device_id: u32,
    identity: IdentityBytes,
) -> Result<Option<TakenBundle>, StoreError> {
    let acct = account.as_str();
    let signed = conn
        .query_row(
            "SELECT id, created_at, public, signature FROM signed_prekeys
             WHERE account = ?1 AND device_id = ?2",
            params![acct, device_id],
            |r| {
                Ok((
                    get_u32(r, 0)?,
                    get_u64(r, 1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    let Some((id, created_at, public, signature)) = signed else {
        return Ok(None);
    };
    let signed_prekey = SignedPreKeyPublic {
        id,
        created_at,
        public: array(&public, "signed prekey")?,
        signature: array(&signature, "signed prekey signature")?,
    };
    // Lowest one-time KEM prekey first, else the last-resort one (last_resort sorts after).
    let kem = conn
        .query_row(
            "SELECT id, last_resort, created_at, public, signature FROM kem_prekeys
             WHERE account = ?1 AND device_id = ?2 ORDER BY last_resort, id LIMIT 1",
            params![acct, device_id],
            kem_from_row,
        )
        .optional()
        .map_err(backend)?;
    let Some(kem) = kem else {
        return Ok(None);
    };
    let kem_prekey = kem_key(kem)?;
    if kem_prekey.kind == KemPreKeyKind::OneTime {
        conn.execute(
            "DELETE FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
            params![acct, device_id, kem_prekey.id],
        )
        .map_err(backend)?;
    }
    let otk = conn
        .query_row(
            "SELECT id, public FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2
             ORDER BY id LIMIT 1",
            params![acct, device_id],
            |r| Ok((get_u32(r, 0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let one_time_prekey = match otk {
        Some((id, public)) => {
            conn.execute(
                "DELETE FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
                params![acct, device_id, id],
            )
            .map_err(backend)?;
            Some((id, array(&public, "one-time prekey")?))
        }
        None => None,
    };
    let addr = DeviceAddress::new(account.clone(), DeviceId(device_id));
    Ok(Some(TakenBundle {
        bundle: PreKeyBundle {
            device_id,
            identity,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        },
        remaining: counts(conn, &addr)?,
    }))
}

pub(super) async fn store_prekeys(
    s: &SqliteStore,
    device: &DeviceAddress,
    keys: &NewPreKeys,
    limits: &PreKeyLimits,
) -> Result<UploadOutcome, StoreError> {
    let device = device.clone();
    let keys = keys.clone();
    let limits = *limits;
    s.write(move |c| {
        let acct = device.account.as_str();
        let dev = device.device.0;
        let exists: Option<i64> = c
            .query_row(
                "SELECT 1 FROM devices WHERE account = ?1 AND device_id = ?2",
                params![acct, dev],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if exists.is_none() {
            return Ok(UploadOutcome::UnknownDevice);
        }
        {
            let mut otk = c
                .prepare_cached(
                    "SELECT 1 FROM one_time_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
                )
                .map_err(backend)?;
            for (id, _) in &keys.one_time {
                if otk.exists(params![acct, dev, id]).map_err(backend)? {
                    return Ok(UploadOutcome::IdConflict);
                }
            }
            let mut kem = c
                .prepare_cached(
                    "SELECT last_resort FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND id = ?3",
                )
                .map_err(backend)?;
            for k in &keys.kem_one_time {
                if kem.exists(params![acct, dev, k.id]).map_err(backend)? {
                    return Ok(UploadOutcome::IdConflict);
                }
            }
            if let Some(k) = &keys.kem_last_resort {
                let lr: Option<i64> = kem
                    .query_row(params![acct, dev, k.id], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                if lr == Some(0) {
                    return Ok(UploadOutcome::IdConflict);
                }
            }
        }
        let before = counts(c, &device)?;
        if u64::from(before.one_time_prekeys) + keys.one_time.len() as u64
            > u64::from(limits.max_one_time)
            || u64::from(before.kem_prekeys) + keys.kem_one_time.len() as u64
                > u64::from(limits.max_kem_one_time)
        {
            return Ok(UploadOutcome::TooMany);
        }
        if let Some(s) = &keys.signed {
            c.execute(
                "INSERT OR REPLACE INTO signed_prekeys
                 (account, device_id, id, created_at, public, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![acct, dev, s.id, to_i64(s.created_at), &s.public[..], &s.signature[..]],
            )
            .map_err(backend)?;
        }
        {
            let mut ins = c
                .prepare_cached(
                    "INSERT INTO one_time_prekeys (account, device_id, id, public)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(backend)?;
            for (id, public) in &keys.one_time {
                ins.execute(params![acct, dev, id, &public[..]])
                    .map_err(backend)?;
            }
        }
        if keys.kem_last_resort.is_some() {
            c.execute(
                "DELETE FROM kem_prekeys WHERE account = ?1 AND device_id = ?2 AND last_resort = 1",
                params![acct, dev],
            )
            .map_err(backend)?;
        }
        {
            let mut ins = c
                .prepare_cached(
                    "INSERT INTO kem_prekeys
                     (account, device_id, id, last_resort, created_at, public, signature)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(backend)?;
            for k in keys.kem_one_time.iter().chain(keys.kem_last_resort.iter()) {
                let lr = i64::from(k.kind == KemPreKeyKind::LastResort);
                ins.execute(params![
                    acct,
                    dev,
                    k.id,
                    lr,
                    to_i64(k.created_at),
                    k.public.as_slice(),
                    &k.signature[..]
                ])
                .map_err(backend)?;
            }
        }
        Ok(UploadOutcome::Stored(counts(c, &device)?))
    }).await
}

pub(super) async fn prekey_counts(
    s: &SqliteStore,
    device: &DeviceAddress,
) -> Result<PreKeyCounts, StoreError> {
    let device = device.clone();
    s.read(move |c| counts(c, &device)).await
}

pub(super) async fn take_bundles(
    s: &SqliteStore,
    account: &AccountId,
) -> Result<Option<Vec<TakenBundle>>, StoreError> {
    let account = account.clone();
    s.write(move |c| {
        let devices: Vec<(u32, Vec<u8>)> = {
            let mut stmt = c
                .prepare_cached(
                    "SELECT device_id, identity FROM devices WHERE account = ?1 ORDER BY device_id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![account.as_str()], |r| {
                    Ok((get_u32(r, 0)?, r.get(1)?))
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)?
        };
        if devices.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (device_id, identity) in devices {
            if let Some(b) = take_bundle(c, &account, device_id, identity_from(&identity)?)? {
                out.push(b);
            }
        }
        Ok(Some(out))
    })
    .await
}
