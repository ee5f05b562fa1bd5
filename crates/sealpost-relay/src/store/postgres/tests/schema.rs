//! Schema versions: creation, reopening, refusal of a newer database, nodes starting
//! together, and the durability settings of the store's connections.

use super::with_schema;
use crate::StoreError;
use crate::store::postgres::{PG_SCHEMA_VERSION, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_migrates_once_and_refuses_newer() {
    with_schema(|db| async move {
        let s = db.store().await;
        let sql = db.sql().await;
        let version = |rows: Vec<tokio_postgres::Row>| -> Vec<i64> {
            rows.iter().map(|r| r.get::<_, i64>(0)).collect()
        };
        assert_eq!(
            version(
                sql.query("SELECT version FROM schema_version", &[])
                    .await
                    .unwrap()
            ),
            vec![PG_SCHEMA_VERSION]
        );
        // Reopening keeps the data (no step runs again).
        let a = sealpost_wire::AccountId::new("+15550000001").unwrap();
        s.put_code(&a, &[1; 32], u64::MAX).await.unwrap();
        drop(s);
        let s = db.store().await;
        assert!(matches!(
            s.begin_code_attempt(&a, 0, 5).await.unwrap(),
            crate::store::CodeAttempt::Check { attempt: 1, .. }
        ));
        // A database written by a newer relay is refused.
        sql.execute("UPDATE schema_version SET version = version + 1", &[])
            .await
            .unwrap();
        let err = PgStore::builder(db.url())
            .schema(db.schema())
            .connect()
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::SchemaTooNew {
                found: PG_SCHEMA_VERSION + 1,
                supported: PG_SCHEMA_VERSION
            }
        );
    })
    .await;
}

/// Nodes that start together on an empty schema migrate it once (the advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    with_schema(|db| async move {
        let db = std::sync::Arc::new(db);
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let db = std::sync::Arc::clone(&db);
                tokio::spawn(async move {
                    PgStore::builder(db.url())
                        .schema(db.schema())
                        .pool_size(1)
                        .connect()
                        .await
                })
            })
            .collect();
        for s in starts {
            s.await.unwrap().unwrap();
        }
        let sql = db.sql().await;
        let n: i64 = sql
            .query_one("SELECT COUNT(*) FROM schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    })
    .await;
}

/// Every connection of the store commits synchronously, whatever the server's default, and
/// a bad schema name or URL is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_commit_synchronously() {
    with_schema(|db| async move {
        let sql = db.sql().await;
        // Even a role whose default is off gets `on` from the store.
        let role: String = sql
            .query_one("SELECT current_user", &[])
            .await
            .unwrap()
            .get(0);
        let database: String = sql
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        sql.batch_execute(&format!(
            "ALTER ROLE \"{role}\" IN DATABASE \"{database}\" SET synchronous_commit = off"
        ))
        .await
        .unwrap();
        let s = db.store().await;
        let client = s.client().await.unwrap();
        let setting: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0);
        sql.batch_execute(&format!(
            "ALTER ROLE \"{role}\" IN DATABASE \"{database}\" RESET synchronous_commit"
        ))
        .await
        .unwrap();
        assert_eq!(setting, "on");
        for bad in ["Upper", "a;b", "1abc", ""] {
            assert_eq!(
                PgStore::builder(db.url())
                    .schema(bad)
                    .connect()
                    .await
                    .unwrap_err(),
                StoreError::InvalidSetting("invalid PostgreSQL schema name")
            );
        }
        assert_eq!(
            PgStore::connect("postgres://[bad").await.unwrap_err(),
            StoreError::InvalidSetting("invalid PostgreSQL connection URL")
        );
    })
    .await;
}

/// A closed store fails every call with `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_store_fails_with_closed() {
    with_schema(|db| async move {
        let s = db.store().await;
        s.close();
        assert_eq!(s.total_queued().await, Err(StoreError::Closed));
        let a = sealpost_wire::AccountId::new("+15550000001").unwrap();
        assert_eq!(s.put_code(&a, &[0; 32], 1).await, Err(StoreError::Closed));
    })
    .await;
}
