//! The SQLite backend (bundled SQLite through rusqlite). Layout: spec/client-store.md 4.2.

use super::backend::{ClientStore, Row, Table, WriteOp};
use crate::error::{DatabaseError, DatabaseErrorKind, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Appended to the database file's name to name its lock file (spec/client-store.md 4.2).
pub const LOCK_FILE_SUFFIX: &str = ".lock";

/// `PRAGMA user_version` of the schema below.
pub const SQLITE_SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    tbl   INTEGER NOT NULL,
    key   BLOB NOT NULL,
    grp   BLOB NOT NULL,
    seq   INTEGER NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (tbl, key)
);
CREATE INDEX IF NOT EXISTS records_group ON records (tbl, grp, seq);
CREATE INDEX IF NOT EXISTS records_seq ON records (tbl, seq);
";

/// A [`ClientStore`] in one SQLite database file (WAL mode, `synchronous = FULL`,
/// `secure_delete = ON`). It stores only what [`crate::Store`] hands it: sealed records,
/// blind tags and sequence numbers.
///
/// One open at a time: [`SqliteClientStore::open`] takes an exclusive OS advisory lock on
/// the lock file next to the database (`<file>.lock`) and holds it until the value is
/// dropped; a second open, from another process or from this one, fails at once with
/// [`StoreError::InUse`]. Two writers on one store would encrypt from the same session
/// state and reuse message keys.
pub struct SqliteClientStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Holds the exclusive lock while open; closing the file releases it.
    _lock: File,
}

impl std::fmt::Debug for SqliteClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteClientStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn seq_to_sql(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Inconsistent("sequence number over 2^63"))
}

fn seq_from_sql(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Inconsistent("negative sequence number"))
}

fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl SqliteClientStore {
    /// Opens (creating if needed) the database at `path`, after taking the store's lock
    /// (fails with [`StoreError::InUse`] while another open holds it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let lock = Self::lock(&path)?;
        let conn = Connection::open(&path).db()?;
        conn.busy_timeout(Duration::from_secs(10)).db()?;
        // journal_mode returns a row; the others do not.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(
                DatabaseErrorKind::WalUnavailable.into(),
            ));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;",
        )
        .db()?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .db()?;
        if version > SQLITE_SCHEMA_VERSION {
            return Err(StoreError::UnsupportedFormat(
                u32::try_from(version).unwrap_or(u32::MAX),
            ));
        }
        conn.execute_batch(SCHEMA).db()?;
        conn.execute_batch(&format!("PRAGMA user_version = {SQLITE_SCHEMA_VERSION}"))
            .db()?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            _lock: lock,
        })
    }

    /// The lock file of the database at `path`.
    pub fn lock_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(LOCK_FILE_SUFFIX);
        PathBuf::from(name)
    }

    /// Opens the lock file and takes an exclusive advisory lock on it without waiting.
    /// std's file locks (`flock` on Unix, `LockFileEx` on Windows) belong to the open file
    /// description, so a second open in the same process is refused too.
    fn lock(path: &Path) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(Self::lock_path(path))
            .map_err(|e| {
                StoreError::Database(DatabaseError::with_source(DatabaseErrorKind::LockFile, e))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => Err(StoreError::InUse {
                path: path.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(StoreError::Database(DatabaseError::with_source(
                DatabaseErrorKind::LockFile,
                e,
            ))),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Database(DatabaseErrorKind::Poisoned.into()))
    }
}

/// SQLite's errors become [`StoreError::Database`], with the SQLite error as the source
/// (a private conversion: the SDK's public API has no `From<rusqlite::Error>`).
trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Database(DatabaseError::sqlite(e)))
    }
}

/// `(key, grp, seq, value)` as read from SQLite.
type RawRow = (Vec<u8>, Vec<u8>, i64, Vec<u8>);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_row((key, group, seq, value): RawRow) -> Result<Row, StoreError> {
    Ok(Row {
        key,
        group,
        seq: seq_from_sql(seq)?,
        value,
    })
}

impl ClientStore for SqliteClientStore {
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()?
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .db()
    }

    fn init_meta(&self, first: &str, entries: &[(&str, Vec<u8>)]) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM meta WHERE name = ?1", [first], |r| r.get(0))
            .optional()
            .db()?;
        if exists.is_some() {
            return Ok(false);
        }
        for (name, value) in entries {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            )
            .db()?;
        }
        tx.commit().db()?;
        Ok(true)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Row>, StoreError> {
        let row = self
            .conn()?
            .query_row(
                "SELECT key, grp, seq, value FROM records WHERE tbl = ?1 AND key = ?2",
                params![table.id(), key],
                read_row,
            )
            .optional()
            .db()?;
        row.map(to_row).transpose()
    }

    fn group(
        &self,
        table: Table,
        group: &[u8],
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let sql = if newest_first {
            "SELECT key, grp, seq, value FROM records WHERE tbl = ?1 AND grp = ?2 ORDER BY seq DESC LIMIT ?3"
        } else {
            "SELECT key, grp, seq, value FROM records WHERE tbl = ?1 AND grp = ?2 ORDER BY seq ASC LIMIT ?3"
        };
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(sql).db()?;
        let rows = stmt
            .query_map(params![table.id(), group, limit_to_sql(limit)], read_row)
            .db()?
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        rows.into_iter().map(to_row).collect()
    }

    fn first(&self, table: Table, limit: usize) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, grp, seq, value FROM records WHERE tbl = ?1 ORDER BY seq ASC LIMIT ?2",
            )
            .db()?;
        let rows = stmt
            .query_map(params![table.id(), limit_to_sql(limit)], read_row)
            .db()?
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        rows.into_iter().map(to_row).collect()
    }

    fn count(&self, table: Table) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()?
            .query_row(
                "SELECT COUNT(*) FROM records WHERE tbl = ?1",
                [table.id()],
                |r| r.get(0),
            )
            .db()?;
        seq_from_sql(n)
    }

    fn max_seq(&self, table: Table) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()?
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM records WHERE tbl = ?1",
                [table.id()],
                |r| r.get(0),
            )
            .db()?;
        seq_from_sql(n)
    }

    fn commit(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        for op in ops {
            match op {
                WriteOp::Put { table, row } => {
                    tx.prepare_cached(
                        "INSERT INTO records (tbl, key, grp, seq, value) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (tbl, key) DO UPDATE SET
                           grp = excluded.grp, seq = excluded.seq, value = excluded.value",
                    ).db()?
                    .execute(params![
                        table.id(),
                        row.key,
                        row.group,
                        seq_to_sql(row.seq)?,
                        row.value
                    ]).db()?;
                }
                WriteOp::Delete { table, key } => {
                    tx.prepare_cached("DELETE FROM records WHERE tbl = ?1 AND key = ?2")
                        .db()?
                        .execute(params![table.id(), key])
                        .db()?;
                }
                WriteOp::DeleteGroup { table, group } => {
                    tx.prepare_cached("DELETE FROM records WHERE tbl = ?1 AND grp = ?2")
                        .db()?
                        .execute(params![table.id(), group])
                        .db()?;
                }
                WriteOp::DeleteSeqBelow { table, seq } => {
                    tx.prepare_cached("DELETE FROM records WHERE tbl = ?1 AND seq < ?2")
                        .db()?
                        .execute(params![table.id(), seq_to_sql(*seq)?])
                        .db()?;
                }
            }
        }
        tx.commit().db()?;
        Ok(())
    }
}
