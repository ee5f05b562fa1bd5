//! The PostgreSQL store: one database shared by any number of relay nodes, each with its own
//! [`PgStore`] (feature `postgres`). The schema, its versions and what each table holds are
//! defined in spec/relay-store.md section 3.
//!
//! # Methods and their contract
//!
//! `PgStore` has one inherent `async fn` per method of the [`Store`](super::Store) trait, with
//! the same name, arguments, result and contract (each method's documentation on the trait is
//! its specification). Every method is **one transaction**, and a method that changes
//! anything returns only once its commit has returned. Connections run with
//! `synchronous_commit = on` (set for every connection the pool opens), so "the commit
//! returned" means the commit record is flushed to the server's disk: that is what durable
//! means here. The single exception is [`PgStore::ack`], whose transaction sets
//! `synchronous_commit = off` locally, as the SQLite store answers acknowledgement deletes
//! before its flush (spec/relay.md section 3.8: a crash may redeliver an acknowledged
//! envelope, never lose one).
//!
//! # Several nodes on one database
//!
//! Transactions run at `READ COMMITTED` and take row locks where a decision depends on what
//! they read, so concurrent calls from any number of nodes behave as if run one after the
//! other (spec/relay-store.md section 3.4):
//!
//! * counted attempts (verification codes, registration-lock tokens, vault evaluations)
//!   read their row `FOR UPDATE`: every attempt is counted exactly once, and the count is
//!   committed before a MAC or a share is returned;
//! * one-time prekeys are taken with `DELETE ... WHERE key = (SELECT ... ORDER BY id LIMIT 1
//!   FOR UPDATE SKIP LOCKED) RETURNING`: concurrent fetches take different keys, and a key
//!   is returned by the one transaction that deleted it;
//! * a send locks the recipient's device rows (and the sender's, when it raises its
//!   `sender_seq`) in key order before it counts the mailboxes and draws server ids, so
//!   mailbox bounds hold and a device's server ids increase in commit order; sends are
//!   group-committed per node ([`sends`]: the sends that arrive while a lane's transaction
//!   is under way share the next one, and its one WAL flush);
//! * server ids come from the sequence `server_ids`, which never hands out a value twice
//!   (a sequence is not rolled back with the transaction that drew from it).
//!
//! A transaction that fails with a serialization failure or a detected deadlock (SQLSTATE
//! `40001`, `40P01`: the server rolled it back) is run again, at most [`MAX_TX_ATTEMPTS`]
//! times in all. A server out of reach (connection refused or lost, shutting down, out of
//! resources, read-only) is [`StoreError::Unavailable`]; any other failure is returned as
//! [`StoreError::Backend`]; if the connection
//! broke during `COMMIT`, the outcome is unknown to the relay (as with any database server),
//! which is safe for every method: a send that is not answered `Accepted` is sent again by
//! the client and de-duplicated by the recipient, and an attempt counted twice only errs on
//! the side of the limit.
//!
//! # Connections
//!
//! A [`deadpool_postgres`] pool of at most [`DEFAULT_POOL_SIZE`] connections (see
//! [`PgStoreBuilder::pool_size`]); prepared statements are cached per connection. There is
//! **no TLS** to the database: run it on the loopback interface or a private network that
//! only the relay nodes reach (spec/relay-store.md section 3.1).

mod accounts;
mod devices;
mod mail;
mod prekeys;
mod provisioning;
mod quotas;
mod schema;
mod sends;
mod store_impl;
mod vaults;

#[cfg(test)]
mod tests;

pub use schema::PG_SCHEMA_VERSION;
pub use sends::{SEND_BATCH_MAX, SEND_BATCH_MAX_BYTES, SEND_LANES};

use crate::store::{EnqueueOutcome, NewMessage};
use crate::{StoreError, Unavailable};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Connections a [`PgStore`] keeps at most, unless [`PgStoreBuilder::pool_size`] says
/// otherwise. Each node of a deployment has its own pool: the server's `max_connections`
/// must exceed the sum over the nodes.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Runs of one transaction at most, the first included, when the server rolls it back with
/// a serialization failure or a detected deadlock.
pub const MAX_TX_ATTEMPTS: u32 = 8;

/// How long opening a connection to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a free pooled connection before it fails.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest schema name [`PgStoreBuilder::schema`] accepts (PostgreSQL's `NAMEDATALEN - 1`).
const MAX_SCHEMA_NAME_LEN: usize = 63;

/// The PostgreSQL store. See the module documentation. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The node's group-commit lanes for sends (module `sends`).
    lanes: std::sync::Arc<sends::Lanes>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("max_size", &status.max_size)
            .field("connections", &status.size)
            .finish_non_exhaustive()
    }
}

/// Opens a [`PgStore`]: `PgStore::builder(url).pool_size(32).connect().await`.
#[derive(Clone)]
pub struct PgStoreBuilder {
    url: zeroize::Zeroizing<String>,
    pool_size: usize,
    schema: Option<String>,
}

/// The URL may carry a password: `Debug` prints neither.
impl std::fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStoreBuilder")
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgStoreBuilder {
    /// Most connections kept open (at least 1; default [`DEFAULT_POOL_SIZE`]).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Keeps the relay's tables in this schema (it must exist; `search_path` of every
    /// connection is set to it) instead of the connection's default schema. `[a-z_][a-z0-9_]*`,
    /// at most 63 bytes.
    #[must_use]
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// Connects, checks that commits are durable (`fsync` on) and creates or migrates the
    /// schema (spec/relay-store.md section 3.2). Fails if the database was written by a
    /// newer relay.
    pub async fn connect(self) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|_| StoreError::InvalidSetting("invalid PostgreSQL connection URL"))?;
        let mut options = config.get_options().unwrap_or_default().to_owned();
        options.push_str(" -c synchronous_commit=on");
        if let Some(schema) = &self.schema {
            let valid = !schema.is_empty()
                && schema.len() <= MAX_SCHEMA_NAME_LEN
                && schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !schema.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(StoreError::InvalidSetting("invalid PostgreSQL schema name"));
            }
            options.push_str(" -c search_path=");
            options.push_str(schema);
        }
        config.options(options.trim_start());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("sealpost-relay");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::backend("PostgreSQL pool", e))?;
        let lanes = std::sync::Arc::new(sends::Lanes::spawn(&pool));
        let store = PgStore { pool, lanes };
        let mut client = store.client().await?;
        let fsync = query_one(&client, "SHOW fsync", &[])
            .await
            .and_then(|r| r.try_get::<_, String>(0))
            .map_err(backend)?;
        if fsync != "on" {
            return Err(StoreError::NotDurable);
        }
        schema::migrate(&mut client).await?;
        Ok(store)
    }
}

impl PgStore {
    /// The schema version this relay writes ([`PG_SCHEMA_VERSION`]).
    pub const SCHEMA_VERSION: i64 = PG_SCHEMA_VERSION;

    /// A builder for a store on the database at `url`, a libpq connection URL or key/value
    /// string (`postgres://user@host:port/dbname`, `host=/var/run/postgresql dbname=x`).
    pub fn builder(url: &str) -> PgStoreBuilder {
        PgStoreBuilder {
            url: zeroize::Zeroizing::new(url.to_owned()),
            pool_size: DEFAULT_POOL_SIZE,
            schema: None,
        }
    }

    /// `PgStore::builder(url).connect()`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Closes the pool: later calls fail with [`StoreError::Closed`]; connections close as
    /// the calls using them finish. Idempotent.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, StoreError> {
        pooled(&self.pool).await
    }

    /// The health probe ([`Store::health`](super::Store::health)): a trivial query on a
    /// pooled connection, which also says whether the server takes writes (a server in
    /// recovery, a standby, does not).
    pub async fn health(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = query_one(&client, "SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(backend)?;
        let in_recovery: bool = row.try_get(0).map_err(backend)?;
        if in_recovery {
            return Err(StoreError::Unavailable(Unavailable::ReadOnly));
        }
        Ok(())
    }

    /// [`crate::Store::enqueue`], through the node's group commit of sends
    /// (spec/relay-store.md section 3.4): returns once the transaction that holds the send
    /// has committed. Sends arriving while a transaction is under way share the next one
    /// (at most [`SEND_BATCH_MAX`] sends, [`SEND_BATCH_MAX_BYTES`] bytes; [`SEND_LANES`]
    /// transactions at a time, recipients hashed over them).
    pub async fn enqueue(&self, m: &NewMessage<'_>) -> Result<EnqueueOutcome, StoreError> {
        self.lanes.enqueue(m).await
    }
}

/// A connection from `pool`.
async fn pooled(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        deadpool_postgres::PoolError::Backend(e) => backend(e),
        deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
            StoreError::Unavailable(Unavailable::PoolTimeout)
        }
        // Connecting (or checking a pooled connection) took too long.
        deadpool_postgres::PoolError::Timeout(_) => {
            StoreError::Unavailable(Unavailable::Unreachable)
        }
        other => StoreError::backend("PostgreSQL pool", other),
    })
}

/// How a transaction's commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Commit {
    /// `synchronous_commit = on`: returns once the commit record is flushed.
    Durable,
    /// `SET LOCAL synchronous_commit = off`: returns once committed (atomic, visible); on
    /// disk with the server's next WAL flush. Only acknowledgement deletes.
    Lazy,
}

/// A failure inside a transaction: the database's (maybe retryable) or the store's.
#[derive(Debug)]
enum TxError {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl TxError {
    /// Whether the server rolled the transaction back for a reason that running it again
    /// may not meet.
    fn retryable(&self) -> bool {
        matches!(self, Self::Db(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED))
    }

    fn into_store(self) -> StoreError {
        match self {
            Self::Db(e) => backend(e),
            Self::Store(e) => e,
        }
    }
}

/// The database error as a [`StoreError`]: its SQLSTATE and primary message, never its
/// `DETAIL` (which can quote row values such as account numbers). Parameters are always
/// bound, never formatted into SQL, so no message holds envelope bytes, keys or codes.
///
/// A server out of reach is [`StoreError::Unavailable`] ([`unavailable`]); everything else
/// (a constraint violation, a bad statement, a value that does not convert) is
/// [`StoreError::Backend`].
fn backend(e: tokio_postgres::Error) -> StoreError {
    if let Some(why) = unavailable(&e) {
        return StoreError::Unavailable(why);
    }
    match e.as_db_error() {
        Some(db) => StoreError::backend(
            "PostgreSQL",
            DbError {
                sqlstate: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
        ),
        None => StoreError::backend("PostgreSQL", e),
    }
}

/// A PostgreSQL server's error as the source of a [`StoreError::Backend`]: its SQLSTATE and
/// primary message, never its `DETAIL` or `HINT` (which can quote row values).
#[derive(Debug)]
struct DbError {
    sqlstate: String,
    message: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.sqlstate, self.message)
    }
}

impl std::error::Error for DbError {}

/// Whether `e` says the server is out of reach rather than the statement wrong: the
/// connection closed or failed at the socket (refused, reset, timed out), or the server
/// answered with a class of SQLSTATE that is about the server, not the request: `08`
/// (connection exception), `57P01`..`57P03` (shutting down, crashed, starting up), `53`
/// (insufficient resources: disk full, out of memory, too many connections), `58030` (I/O
/// error) and `25006` (read-only transaction: a standby).
fn unavailable(e: &tokio_postgres::Error) -> Option<Unavailable> {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let c = code.code();
        return if c.starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            Some(Unavailable::Unreachable)
        } else if *code == SqlState::DISK_FULL {
            Some(Unavailable::DiskFull)
        } else if c.starts_with("53") {
            Some(Unavailable::Exhausted)
        } else if *code == SqlState::IO_ERROR {
            Some(Unavailable::Io)
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            Some(Unavailable::ReadOnly)
        } else {
            None
        };
    }
    if e.is_closed() {
        return Some(Unavailable::Unreachable);
    }
    // A socket error (refused, reset, timed out) of the connection or of connecting.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return Some(Unavailable::Unreachable);
        }
        source = s.source();
    }
    None
}

/// Runs `$body` (a block evaluating to `Result<T, TxError>`, with `$tx` bound to the open
/// transaction; `return` and `?` leave the body) in one transaction and commits it unless
/// the body failed; runs it again (a new transaction on a
/// pooled connection) when the server rolled it back as [`TxError::retryable`], at most
/// [`MAX_TX_ATTEMPTS`] times. A macro rather than a function taking a closure: the body
/// borrows the method's arguments and the transaction, which a closure returning a future
/// cannot express without boxing and copying every argument.
macro_rules! in_tx {
    ($store:expr, $commit:expr, |$tx:ident| $body:block) => {{
        let store: &$crate::store::postgres::PgStore = $store;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut client = store.client().await?;
            let outcome: Result<_, $crate::store::postgres::TxError> = async {
                let $tx = client.transaction().await?;
                if $commit == $crate::store::postgres::Commit::Lazy {
                    $tx.batch_execute("SET LOCAL synchronous_commit = off")
                        .await?;
                }
                // Its own async block: a `return` in the body ends the body, not the
                // transaction, whose commit follows; an error skips the commit.
                let value: Result<_, $crate::store::postgres::TxError> = async $body.await;
                let value = value?;
                let started = std::time::Instant::now();
                $tx.commit().await?;
                $crate::metrics::store_commit("postgres", started.elapsed());
                Ok(value)
            }
            .await;
            match outcome {
                Ok(v) => break Ok(v),
                Err(e) if e.retryable() && attempt < $crate::store::postgres::MAX_TX_ATTEMPTS => {
                    tracing::debug!(attempt, "PostgreSQL transaction rolled back by the server; retrying");
                }
                Err(e) => break Err(e.into_store()),
            }
        }
    }};
}
pub(crate) use in_tx;

/// `query` through the connection's statement cache.
async fn query<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await
}

/// `query_opt` through the connection's statement cache.
async fn query_opt<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, params).await
}

/// `query_one` through the connection's statement cache.
async fn query_one<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_one(&st, params).await
}

/// `execute` through the connection's statement cache.
async fn execute<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, params).await
}

/// A `u64` as stored (`BIGINT`): values above `i64::MAX` are stored as `i64::MAX`, as in the
/// SQLite store (only "never" times and `sender_seq`s get there, spec/relay.md 3.7).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Column `i` as a `u64`; a negative value is corruption.
fn get_u64(row: &Row, i: usize, what: &'static str) -> Result<u64, TxError> {
    let v: i64 = row.try_get(i)?;
    u64::try_from(v).map_err(|_| TxError::Store(StoreError::Corrupt(what)))
}

/// Column `i` as a `u32`; a value outside `u32` is corruption.
fn get_u32(row: &Row, i: usize, what: &'static str) -> Result<u32, TxError> {
    let v: i64 = row.try_get(i)?;
    u32::try_from(v).map_err(|_| TxError::Store(StoreError::Corrupt(what)))
}

/// Column `i` (`BYTEA`) as an `N`-byte array.
fn get_array<const N: usize>(row: &Row, i: usize, what: &'static str) -> Result<[u8; N], TxError> {
    let v: &[u8] = row.try_get(i)?;
    v.try_into()
        .map_err(|_| TxError::Store(StoreError::Corrupt(what)))
}
