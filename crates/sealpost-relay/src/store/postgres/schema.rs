//! Schema versions and migrations (spec/relay-store.md section 3.2).
//!
//! The version is the single row of `schema_version`. At open, under a transaction-scoped
//! advisory lock (so that nodes starting together migrate once), a database without that
//! table or row is version 0; a version above [`PG_SCHEMA_VERSION`] is refused; an older one
//! is migrated one step at a time, each step and its new version number committed together.

use super::{TxError, backend, execute, query_opt};
use crate::StoreError;
use deadpool_postgres::Object;

/// The schema version this relay writes.
pub const PG_SCHEMA_VERSION: i64 = 6;

/// The SQL of each step: `MIGRATIONS[n - 1]` takes version `n - 1` to `n`.
const MIGRATIONS: [&str; PG_SCHEMA_VERSION as usize] = [
    include_str!("migrations/v1.sql"),
    include_str!("migrations/v2.sql"),
    include_str!("migrations/v3.sql"),
    include_str!("migrations/v4.sql"),
    include_str!("migrations/v5.sql"),
    include_str!("migrations/v6.sql"),
];

/// Key of the advisory lock held while checking and migrating (ASCII "SEALPOST").
const MIGRATION_LOCK: i64 = 0x5345_414c_504f_5354;

/// Created before the version is read; not part of any step.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version    BIGINT NOT NULL
)";

/// Brings the schema to [`PG_SCHEMA_VERSION`], or refuses a newer one.
pub(super) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    loop {
        let tx = client.transaction().await.map_err(backend)?;
        let step = async {
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            tx.batch_execute(VERSION_TABLE).await?;
            let version: i64 =
                match query_opt(&tx, "SELECT version FROM schema_version", &[]).await? {
                    Some(row) => row.try_get(0)?,
                    None => 0,
                };
            if version < 0 {
                return Err(TxError::Store(StoreError::Corrupt("schema version")));
            }
            if version > PG_SCHEMA_VERSION {
                return Err(TxError::Store(StoreError::SchemaTooNew {
                    found: version,
                    supported: PG_SCHEMA_VERSION,
                }));
            }
            let Some(sql) = usize::try_from(version)
                .ok()
                .and_then(|v| MIGRATIONS.get(v))
            else {
                return Ok(false);
            };
            tx.batch_execute(sql).await?;
            let next = version + 1;
            execute(
                &tx,
                "INSERT INTO schema_version (singleton, version) VALUES (TRUE, $1)
                 ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
                &[&next],
            )
            .await?;
            tracing::info!(version = next, "PostgreSQL schema migrated");
            Ok(true)
        }
        .await;
        match step {
            Ok(more) => {
                tx.commit().await.map_err(backend)?;
                if !more {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into_store()),
        }
    }
}
