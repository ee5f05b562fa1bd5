//! Tests against a real PostgreSQL server, never a mock.
//!
//! The server is `SEALPOST_TEST_POSTGRES` (a libpq URL, e.g.
//! `postgres://sealpost@127.0.0.1:5432/sealpost_test`; `.ci/postgres.sh start` prints one) or,
//! when that is unset, `postgres://postgres@127.0.0.1:5432/postgres` or the local socket.
//! Each test works in a schema of its own (created with a random name, dropped at the end),
//! so tests run in parallel on one database. Without a reachable server every test prints a
//! banner to the real stderr and returns, unless `SEALPOST_REQUIRE_POSTGRES=1` (as `.ci/run`
//! sets), which makes it fail.

mod concurrency;
mod schema;
mod storage;

use super::PgStore;
use std::future::Future;
use std::io::Write as _;
use std::time::Duration;
use tokio_postgres::NoTls;

/// Servers tried when `SEALPOST_TEST_POSTGRES` is unset.
const DEFAULT_URLS: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/postgres",
    "host=/var/run/postgresql user=postgres dbname=postgres",
];

/// Connections of each store a test opens (several stores are several relay nodes).
const TEST_POOL_SIZE: usize = 6;

/// A fresh schema on the test server.
pub(super) struct Fresh {
    url: String,
    schema: String,
}

impl Fresh {
    /// A new store ("relay node") on the schema.
    pub(super) async fn store(&self) -> PgStore {
        PgStore::builder(&self.url)
            .schema(&self.schema)
            .pool_size(TEST_POOL_SIZE)
            .connect()
            .await
            .unwrap()
    }

    /// A plain connection with the schema on its search path, for looking at the tables.
    pub(super) async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = self.config().connect(NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// The connection configuration of [`Fresh::sql`].
    pub(super) fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = self.url.parse().unwrap();
        config.options(format!("-c search_path={}", self.schema));
        config
    }

    /// The server URL (without the schema).
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub(super) fn schema(&self) -> &str {
        &self.schema
    }
}

/// `url` without the password of its `user:password@` part, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if scheme + 3 < at => {
            let (head, rest) = url.split_at(scheme + 3);
            let (userinfo, host) = rest.split_at(at - scheme - 3);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{head}{user}:<password>{host}"),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[test]
fn messages_do_not_show_passwords() {
    assert_eq!(
        redact("postgres://relay:s3cret@127.0.0.1:5432/db"),
        "postgres://relay:<password>@127.0.0.1:5432/db"
    );
    assert_eq!(redact("postgres://relay@h/db"), "postgres://relay@h/db");
    assert_eq!(
        redact("host=/run/postgresql user=x"),
        "host=/run/postgresql user=x"
    );
}

/// Connects to the test server, or says loudly why not (and fails if it is required).
async fn admin() -> Option<(tokio_postgres::Client, String)> {
    let explicit = std::env::var("SEALPOST_TEST_POSTGRES").ok();
    let urls: Vec<String> = match &explicit {
        Some(url) => vec![url.clone()],
        None => DEFAULT_URLS.iter().map(|u| (*u).to_owned()).collect(),
    };
    let mut errors = Vec::new();
    for url in &urls {
        let mut config: tokio_postgres::Config = match url.parse() {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{}: {e}", redact(url)));
                continue;
            }
        };
        config.connect_timeout(Duration::from_secs(3));
        match config.connect(NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return Some((client, url.clone()));
            }
            Err(e) => errors.push(format!("{}: {e}", redact(url))),
        }
    }
    let why = errors.join("; ");
    if std::env::var("SEALPOST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("SEALPOST_REQUIRE_POSTGRES=1 but no PostgreSQL server is reachable ({why})");
    }
    static BANNER: std::sync::Once = std::sync::Once::new();
    BANNER.call_once(|| {
        // Straight to the process's stderr: the test harness captures eprintln! of passing
        // tests, and this must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\n PostgreSQL tests SKIPPED: no server at {tried} ({why}).\n \
             Start one with `eval \"$(.ci/postgres.sh start)\"` (README, \"PostgreSQL\").\n{bar}\n",
            bar = "!".repeat(78),
            tried = urls
                .iter()
                .map(|u| redact(u))
                .collect::<Vec<_>>()
                .join(" or "),
        );
    });
    None
}

/// Runs `test` on a fresh schema, then drops the schema (also when the test panics, whose
/// panic is then passed on). Returns at once, after the banner, without a server.
pub(super) async fn with_schema<F, Fut>(test: F)
where
    F: FnOnce(Fresh) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((admin, url)) = admin().await else {
        return;
    };
    let schema = format!("sealpost_test_{:016x}", rand::random::<u64>());
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let outcome = tokio::spawn(test(Fresh {
        url,
        schema: schema.clone(),
    }))
    .await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One `#[tokio::test]` per case of the shared conformance suite (`store::conformance`, the
/// same cases memory and SQLite pass), each on a fresh schema and store; the concurrent
/// cases share one store between tasks (the multi-node cases are in [`concurrency`]).
macro_rules! conformance_cases {
    (plain: $($case:ident),* ; shared: $($shared:ident),* $(,)?) => {
        mod conformance_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::with_schema(|db| async move {
                        let s = db.store().await;
                        crate::store::conformance::$case(&s).await;
                    })
                    .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $shared() {
                    super::with_schema(|db| async move {
                        let s = std::sync::Arc::new(db.store().await);
                        crate::store::conformance::$shared(s).await;
                    })
                    .await;
                }
            )*
        }
    };
}

conformance_cases!(
    plain: codes, registration, prekeys, mailboxes, sender_seqs, feed, registration_lock, vaults,
    quotas, provisioning, device_lists, account_key_backups, business_profiles, device_activity,
    routed_sends;
    shared: concurrent_bundles, concurrent_sends, concurrent_reglock, concurrent_evaluations,
        concurrent_provisioning, concurrent_links,
);
