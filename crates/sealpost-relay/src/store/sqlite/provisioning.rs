//! Provisioning ids for linking devices (spec/relay.md 3.11).

use super::*;

pub(super) async fn open_provisioning(
    s: &SqliteStore,
    id: &[u8; PROVISIONING_ID_LEN],
    expires_at: u64,
) -> Result<(), StoreError> {
    let id = *id;
    s.write(move |c| {
        c.execute(
            "INSERT INTO provisioning (id, expires_at, envelope) VALUES (?1, ?2, NULL)",
            params![&id[..], to_i64(expires_at)],
        )
        .map_err(backend)?;
        Ok(())
    })
    .await
}

pub(super) async fn put_provisioning(
    s: &SqliteStore,
    id: &[u8; PROVISIONING_ID_LEN],
    envelope: &[u8],
    now: u64,
) -> Result<bool, StoreError> {
    let id = *id;
    let envelope = envelope.to_vec();
    s.write(move |c| {
        let n = c
            .execute(
                "UPDATE provisioning SET envelope = ?2
                 WHERE id = ?1 AND expires_at > ?3 AND envelope IS NULL",
                params![&id[..], envelope, to_i64(now)],
            )
            .map_err(backend)?;
        Ok(n == 1)
    })
    .await
}

pub(super) async fn take_provisioning(
    s: &SqliteStore,
    id: &[u8; PROVISIONING_ID_LEN],
    now: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let id = *id;
    s.write(move |c| {
        c.query_row(
            "DELETE FROM provisioning
             WHERE id = ?1 AND expires_at > ?2 AND envelope IS NOT NULL
             RETURNING envelope",
            params![&id[..], to_i64(now)],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)
    })
    .await
}
