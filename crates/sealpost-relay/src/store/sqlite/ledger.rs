//! The vault ledger (spec/relay-store.md section 2.1): how a guardian notices that its
//! database went back in time (restored from an older copy), which would give every vault
//! back the PIN attempts counted since that copy was taken.
//!
//! The database counts the transactions that changed `vaults` (`vault_ledger.writes`) and
//! stamps each vault row with the count of its last change (`write_seq`). After every such
//! transaction is durable, and before its caller is answered, the count is also written to
//! the file [`LEDGER_FILE`] next to the database, which backups leave out. At open, a
//! database whose count is behind the file's, whose id is not the file's, or that comes
//! without the file, has lost vault writes: every vault it holds is then held back
//! (`write_seq < trusted_from`) until its owner stores it again, confirms it with its
//! success token, or deletes it.

use super::*;

/// The ledger file, in the database's directory.
pub const LEDGER_FILE: &str = "vault-ledger";
/// First bytes of [`LEDGER_FILE`].
const MAGIC: [u8; 4] = *b"SPVL";
/// The ledger file's format version.
const VERSION: u8 = 1;
/// Length of [`LEDGER_FILE`]: magic, version, store id, count.
const LEDGER_LEN: usize = 4 + 1 + 16 + 8;

/// Why the database was found rolled back at open ([`SqliteStore::vault_rollback`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollbackReason {
    /// The database has counted fewer vault writes than the ledger file recorded: it is an
    /// older copy of this data directory's database.
    Behind {
        /// Vault writes the database holds.
        database: u64,
        /// Vault writes the ledger file recorded.
        ledger: u64,
    },
    /// The ledger file belongs to another database (a copy of another relay's database, or
    /// one restored from before the ledger was last recreated).
    OtherDatabase,
    /// The database has no ledger file next to it although it was not created or upgraded
    /// now: it was copied or restored into this directory, from an unknown point in time.
    NoLedger,
    /// The ledger file does not decode.
    UnreadableLedger,
}

/// What opening the store found: the database's vault counters went backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaultRollback {
    /// How it was noticed.
    pub reason: RollbackReason,
    /// Vaults now held back: `VaultEvaluate` on them is refused with `VaultRolledBack`
    /// until their owner stores them again, confirms or deletes them.
    pub held_back: u64,
}

/// The ledger of an open store: the file's path, the database's id, and the count last
/// written to the file.
pub(super) struct Ledger {
    path: PathBuf,
    store_id: [u8; 16],
    written: Mutex<u64>,
    rollback: Option<VaultRollback>,
}

/// The ledger file's contents.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LedgerFile {
    store_id: [u8; 16],
    writes: u64,
}

impl LedgerFile {
    fn encode(&self) -> [u8; LEDGER_LEN] {
        let mut out = [0u8; LEDGER_LEN];
        let (magic, rest) = out.split_at_mut(4);
        magic.copy_from_slice(&MAGIC);
        let (version, rest) = rest.split_at_mut(1);
        version.copy_from_slice(&[VERSION]);
        let (id, writes) = rest.split_at_mut(16);
        id.copy_from_slice(&self.store_id);
        writes.copy_from_slice(&self.writes.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; LEDGER_LEN] = bytes.try_into().ok()?;
        let (magic, rest) = bytes.split_at(4);
        let (version, rest) = rest.split_at(1);
        let (id, writes) = rest.split_at(16);
        if magic != MAGIC || version != [VERSION] {
            return None;
        }
        Some(Self {
            store_id: id.try_into().ok()?,
            writes: u64::from_be_bytes(writes.try_into().ok()?),
        })
    }
}

/// The ledger file of the database at `db`.
pub(super) fn ledger_path(db: &Path) -> PathBuf {
    db.with_file_name(LEDGER_FILE)
}

/// The database's ledger row: `(store_id, writes, trusted_from)`.
fn ledger_row(conn: &Connection) -> Result<([u8; 16], u64, u64), StoreError> {
    let (id, writes, trusted_from) = conn
        .query_row(
            "SELECT store_id, writes, trusted_from FROM vault_ledger WHERE singleton = 1",
            [],
            |r| Ok((r.get::<_, Vec<u8>>(0)?, get_u64(r, 1)?, get_u64(r, 2)?)),
        )
        .map_err(backend)?;
    Ok((array(&id, "vault ledger")?, writes, trusted_from))
}

/// Counts one change to `vaults` in the current transaction; returns the new count, which
/// the changed row takes as its `write_seq` and the ledger file records once durable.
pub(super) fn count_vault_write(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "UPDATE vault_ledger SET writes = writes + 1 WHERE singleton = 1 RETURNING writes",
    )
    .and_then(|mut s| s.query_row([], |r| get_u64(r, 0)))
    .map_err(backend)
}

/// Whether a vault last changed at `write_seq` is held back (written before a detected
/// rollback and not re-armed since).
pub(super) fn held_back(conn: &Connection, write_seq: u64) -> Result<bool, StoreError> {
    let trusted_from = conn
        .prepare_cached("SELECT trusted_from FROM vault_ledger WHERE singleton = 1")
        .and_then(|mut s| s.query_row([], |r| get_u64(r, 0)))
        .map_err(backend)?;
    Ok(write_seq < trusted_from)
}

impl Ledger {
    /// Compares the database (whose schema was at `version_before` until this open) with
    /// its ledger file and, if it went backwards, holds back every vault it has, in one
    /// transaction on `conn`. The file itself is brought up to date by [`Ledger::sync`],
    /// once that transaction is flushed.
    pub(super) fn open(
        conn: &Connection,
        db: &Path,
        version_before: i64,
    ) -> Result<Self, StoreError> {
        let path = ledger_path(db);
        let (store_id, writes, _) = ledger_row(conn)?;
        let file = match std::fs::read(&path) {
            Ok(bytes) => Some(LedgerFile::decode(&bytes).ok_or(())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the vault ledger");
                return Err(StoreError::Unavailable(Unavailable::Io));
            }
        };
        let reason = match file {
            // Created or upgraded now: the ledger starts with this database.
            None if version_before < 5 => None,
            None => Some(RollbackReason::NoLedger),
            Some(Err(())) => Some(RollbackReason::UnreadableLedger),
            Some(Ok(f)) if f.store_id != store_id => Some(RollbackReason::OtherDatabase),
            Some(Ok(f)) if f.writes > writes => Some(RollbackReason::Behind {
                database: writes,
                ledger: f.writes,
            }),
            Some(Ok(_)) => None,
        };
        let rollback = match reason {
            None => None,
            Some(reason) => {
                let top = match reason {
                    RollbackReason::Behind { ledger, .. } => ledger.max(writes),
                    _ => writes,
                };
                let held_back = hold_back_all(conn, top)?;
                tracing::error!(
                    ?reason,
                    held_back,
                    "the database's vault counters went backwards (restored from an older \
                     copy?): its vaults are refused until their owners store, confirm or \
                     delete them (spec/relay-store.md 2.1)"
                );
                Some(VaultRollback { reason, held_back })
            }
        };
        let (_, _, trusted_from) = ledger_row(conn)?;
        let waiting: u64 = conn
            .query_row(
                "SELECT COUNT(*) FROM vaults WHERE write_seq < ?1",
                params![to_i64(trusted_from)],
                |r| get_u64(r, 0),
            )
            .map_err(backend)?;
        if rollback.is_none() && waiting > 0 {
            tracing::warn!(
                held_back = waiting,
                "vaults held back since an earlier rollback are still waiting for their owners"
            );
        }
        Ok(Self {
            path,
            store_id,
            // Until `sync` has written the file, whatever it held.
            written: Mutex::new(0),
            rollback,
        })
    }

    /// What [`Ledger::open`] found.
    pub(super) fn rollback(&self) -> Option<VaultRollback> {
        self.rollback
    }

    /// Writes the database's current count to the file (after the open's flush).
    pub(super) fn sync(&self, conn: &Connection) -> Result<(), StoreError> {
        let (_, writes, _) = ledger_row(conn)?;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_file(writes)?;
        *written = writes;
        Ok(())
    }

    /// Records that vault write `seq` is durable in the database: the file holds at least
    /// `seq` when this returns. Called before the write's caller is answered.
    pub(super) fn record(&self, seq: u64) -> Result<(), StoreError> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if *written >= seq {
            return Ok(());
        }
        self.write_file(seq)?;
        *written = seq;
        Ok(())
    }

    /// Replaces the file atomically: a temporary file, synced, renamed over it, and the
    /// directory synced.
    fn write_file(&self, writes: u64) -> Result<(), StoreError> {
        use std::io::Write as _;
        let bytes = LedgerFile {
            store_id: self.store_id,
            writes,
        }
        .encode();
        let tmp = self.path.with_extension("tmp");
        let done = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .and_then(|()| match self.path.parent() {
                #[cfg(unix)]
                Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
                _ => Ok(()),
            });
        done.map_err(|e| {
            tracing::error!(path = %self.path.display(), error = %e, "writing the vault ledger failed");
            StoreError::Unavailable(Unavailable::Io)
        })
    }
}

/// Holds back every vault: the count becomes `top` and only vaults changed after it are
/// trusted. Returns how many vaults are held back.
fn hold_back_all(conn: &Connection, top: u64) -> Result<u64, StoreError> {
    let run = || -> rusqlite::Result<u64> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute(
            "UPDATE vault_ledger SET writes = ?1, trusted_from = ?2 WHERE singleton = 1",
            params![to_i64(top), to_i64(top.saturating_add(1))],
        )?;
        let n = conn.query_row("SELECT COUNT(*) FROM vaults", [], |r| get_u64(r, 0))?;
        conn.execute_batch("COMMIT")?;
        Ok(n)
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        backend(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{acct, vault_row};

    const NOW: u64 = 1_700_000_000_000;

    async fn evaluate(s: &SqliteStore) -> VaultAttempt {
        s.begin_vault_evaluation(&acct(1), &[1; 16], 10, NOW)
            .await
            .unwrap()
    }

    fn used(a: &VaultAttempt) -> u32 {
        match a {
            VaultAttempt::Counted { attempts_used, .. } => *attempts_used,
            other => panic!("{other:?}"),
        }
    }

    /// Replaces the database at `db` (closed) by `bytes`, with no WAL or shared memory left.
    fn put_database(db: &Path, bytes: &[u8]) {
        for suffix in ["-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        std::fs::write(db, bytes).unwrap();
    }

    #[tokio::test]
    async fn an_honest_restart_is_not_flagged_and_the_file_follows_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let s = SqliteStore::open(&db).unwrap();
        assert_eq!(s.vault_rollback(), None);
        s.put_vault(&acct(1), &vault_row(1), 10, NOW).await.unwrap();
        assert_eq!(used(&evaluate(&s).await), 1);
        // Written before the evaluation was answered: store, evaluation.
        let file = LedgerFile::decode(&std::fs::read(ledger_path(&db)).unwrap()).unwrap();
        assert_eq!(file.writes, 2);
        s.close();
        let s = SqliteStore::open(&db).unwrap();
        assert_eq!(s.vault_rollback(), None);
        assert_eq!(used(&evaluate(&s).await), 2);
        s.close();
    }

    /// The database replaced by an older copy of itself: its vaults are held back, an
    /// evaluation is refused without counting, a wrong token changes nothing, the right one
    /// serves the vault again; the next restart is honest.
    #[tokio::test]
    async fn an_older_copy_of_the_database_is_held_back_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let s = SqliteStore::open(&db).unwrap();
        s.put_vault(&acct(1), &vault_row(1), 10, NOW).await.unwrap();
        assert_eq!(used(&evaluate(&s).await), 1);
        s.close();
        let old = std::fs::read(&db).unwrap();
        let s = SqliteStore::open(&db).unwrap();
        for n in 2..=5 {
            assert_eq!(used(&evaluate(&s).await), n);
        }
        s.close();
        put_database(&db, &old);
        let s = SqliteStore::open(&db).unwrap();
        assert_eq!(
            s.vault_rollback(),
            Some(VaultRollback {
                reason: RollbackReason::Behind {
                    database: 2,
                    ledger: 6
                },
                held_back: 1
            })
        );
        // The count went back from 5 to 1: refused, and nothing is counted.
        assert_eq!(s.vault(&acct(1)).await.unwrap().unwrap().attempts_used, 1);
        assert_eq!(evaluate(&s).await, VaultAttempt::RolledBack);
        assert_eq!(s.vault(&acct(1)).await.unwrap().unwrap().attempts_used, 1);
        assert_eq!(
            s.confirm_vault(&acct(1), &[1; 16], &[9; 32], NOW)
                .await
                .unwrap(),
            ConfirmOutcome::Mismatch
        );
        assert_eq!(evaluate(&s).await, VaultAttempt::RolledBack);
        assert_eq!(
            s.confirm_vault(&acct(1), &[1; 16], &[2; 32], NOW)
                .await
                .unwrap(),
            ConfirmOutcome::Confirmed
        );
        assert_eq!(used(&evaluate(&s).await), 1);
        s.close();
        let s = SqliteStore::open(&db).unwrap();
        assert_eq!(s.vault_rollback(), None);
        assert_eq!(used(&evaluate(&s).await), 2);
        s.close();
    }

    /// A database without its ledger file (copied into a new directory), or with another
    /// database's, is held back; storing the vault again re-arms it; a vault stored after the
    /// rollback is not held back.
    #[tokio::test]
    async fn a_copied_database_is_held_back_until_stored_again() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (db_a, db_b) = (a.path().join("relay.db"), b.path().join("relay.db"));
        let s = SqliteStore::open(&db_a).unwrap();
        s.put_vault(&acct(1), &vault_row(1), 10, NOW).await.unwrap();
        s.close();
        let bytes = std::fs::read(&db_a).unwrap();
        SqliteStore::open(&db_b).unwrap().close();
        put_database(&db_b, &bytes);
        let s = SqliteStore::open(&db_b).unwrap();
        assert_eq!(
            s.vault_rollback().map(|r| r.reason),
            Some(RollbackReason::OtherDatabase)
        );
        s.close();
        let c = tempfile::tempdir().unwrap();
        let db_c = c.path().join("relay.db");
        std::fs::write(&db_c, &bytes).unwrap();
        let s = SqliteStore::open(&db_c).unwrap();
        assert_eq!(
            s.vault_rollback(),
            Some(VaultRollback {
                reason: RollbackReason::NoLedger,
                held_back: 1
            })
        );
        assert_eq!(evaluate(&s).await, VaultAttempt::RolledBack);
        s.put_vault(&acct(2), &vault_row(1), 10, NOW).await.unwrap();
        assert_eq!(
            used(
                &s.begin_vault_evaluation(&acct(2), &[1; 16], 10, NOW)
                    .await
                    .unwrap()
            ),
            1
        );
        s.put_vault(&acct(1), &vault_row(1), 10, NOW).await.unwrap();
        assert_eq!(used(&evaluate(&s).await), 1);
        s.close();
        // A garbled ledger file is no proof either.
        std::fs::write(ledger_path(&db_c), b"garbage").unwrap();
        let s = SqliteStore::open(&db_c).unwrap();
        assert_eq!(
            s.vault_rollback().map(|r| r.reason),
            Some(RollbackReason::UnreadableLedger)
        );
        s.close();
    }

    /// A database of schema version 4 (before the ledger) is upgraded without being flagged.
    #[tokio::test]
    async fn an_upgraded_database_starts_its_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let s = SqliteStore::open(&db).unwrap();
        s.put_vault(&acct(1), &vault_row(1), 10, NOW).await.unwrap();
        s.close();
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            // Everything after version 4 goes: the ledger (5), the provisioning ids (6),
            // the device lists (7), the devices' last seen (8), the account-key backups
            // (9) and the business profiles (10).
            "DROP TABLE vault_ledger; ALTER TABLE vaults DROP COLUMN write_seq;
             DROP TABLE provisioning; DROP TABLE device_lists;
             ALTER TABLE devices DROP COLUMN last_seen; DROP TABLE account_key_backups;
             ALTER TABLE accounts DROP COLUMN rekey_device; DROP TABLE business_profiles;
             PRAGMA user_version = 4;",
        )
        .unwrap();
        drop(c);
        std::fs::remove_file(ledger_path(&db)).unwrap();
        let s = SqliteStore::open(&db).unwrap();
        assert_eq!(s.vault_rollback(), None);
        assert_eq!(used(&evaluate(&s).await), 1);
        s.close();
    }

    #[test]
    fn the_file_round_trips_and_rejects_other_bytes() {
        let f = LedgerFile {
            store_id: [7; 16],
            writes: 0x0102_0304_0506_0708,
        };
        let bytes = f.encode();
        assert_eq!(&bytes[..5], b"SPVL\x01");
        assert_eq!(&bytes[21..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(LedgerFile::decode(&bytes) == Some(f));
        let mut other = bytes;
        other[4] = 2;
        assert!(LedgerFile::decode(&other).is_none());
        assert!(LedgerFile::decode(&bytes[..28]).is_none());
    }
}
