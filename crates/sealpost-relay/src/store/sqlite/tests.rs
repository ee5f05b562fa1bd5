//! SQLite-specific tests: pragmas, flushes, reopen, migrations, group-commit isolation.

use super::mail::MAILBOX_SQL;
use super::schema::{MIGRATE_V2, SCHEMA_V1};
use super::writer::ID_BLOCK;
use super::*;
use crate::store::conformance::{acct, register};

#[tokio::test]
async fn pragmas_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let s = SqliteStore::open(&path).unwrap();
    let (mode, sync, version) = s
        .write(|c| {
            let mode: String = c
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .map_err(backend)?;
            let sync: i64 = c
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .map_err(backend)?;
            let v: i64 = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(backend)?;
            Ok((mode, sync, v))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 1, "synchronous = NORMAL: the writer flushes");
    assert_eq!(version, SCHEMA_VERSION);
    s.close();
    assert_eq!(s.total_queued().await, Err(StoreError::Closed));
    assert_eq!(
        s.put_code(&acct(1), &[0; 32], 1).await,
        Err(StoreError::Closed)
    );
    // A database from a newer relay is refused.
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(c);
    assert!(SqliteStore::open(&path).is_err());
}

/// A durable job is answered only after a WAL flush that followed its commit; a lazy job
/// (acknowledgement delete) is answered without one.
#[tokio::test]
async fn durable_jobs_are_answered_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("r.db")).unwrap();
    let flushes_seen = async |flush: Flush| {
        let before = s.flushes();
        s.write_with(
            |c: &Connection| {
                c.execute("INSERT INTO codes VALUES ('x', x'00', 1, 0)", [])
                    .and_then(|_| c.execute("DELETE FROM codes", []))
                    .map_err(backend)
            },
            flush,
        )
        .await
        .unwrap();
        s.flushes() - before
    };
    for _ in 0..3 {
        assert_eq!(flushes_seen(Flush::Lazy).await, 0, "an ack is not flushed");
        assert_eq!(
            flushes_seen(Flush::Durable).await,
            1,
            "answered after its flush"
        );
    }
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let a = acct(1);
    let b = acct(2);
    {
        let s = SqliteStore::open(&path).unwrap();
        register(&s, &a, 1).await;
        register(&s, &b, 2).await;
        queue_one(&s, &DeviceAddress::new(a.clone(), DeviceId(1)), &b).await;
        s.put_code(&a, &[4; 32], u64::MAX).await.unwrap();
        s.begin_code_attempt(&a, 0, 5).await.unwrap();
        s.begin_code_attempt(&a, 0, 5).await.unwrap();
        // Dropped without close(): Drop closes too.
    }
    let s = SqliteStore::open(&path).unwrap();
    let bd = DeviceAddress::new(b.clone(), DeviceId(1));
    assert_eq!(
        s.mailbox(&bd, 0, 10).await.unwrap()[0].envelope,
        vec![1, 2, 3]
    );
    // The attempt counter was durable: this is the third attempt.
    assert_eq!(
        s.begin_code_attempt(&a, 0, 5).await.unwrap(),
        CodeAttempt::Check {
            mac: [4; 32],
            attempt: 3
        }
    );
    // Device ids keep counting after a reopen.
    assert_eq!(register(&s, &a, 3).await, 2);
}

/// Queues `[1, 2, 3]` from `sender` to device 1 of `to`; returns its server id.
async fn queue_one(s: &SqliteStore, sender: &DeviceAddress, to: &AccountId) -> u64 {
    let env = [sealpost_wire::relay::OutgoingEnvelope {
        device_id: 1,
        envelope: vec![1, 2, 3],
    }];
    let m = NewMessage {
        sender,
        recipient: to,
        exclude_device: None,
        addressing: crate::store::Addressing::Exact,
        message_id: &[0; 16],
        sender_seq: 0,
        timestamp: 5,
        envelopes: &env,
        max_queued: 100,
    };
    match s.enqueue(&m).await.unwrap() {
        EnqueueOutcome::Queued(ids) => ids[0].1,
        other => panic!("{other:?}"),
    }
}

/// The mailbox read walks the per-device index in order (no sort, no table scan), so
/// stopping after `limit` rows costs no more than a `LIMIT` would.
#[tokio::test]
async fn mailbox_read_uses_the_device_index_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("r.db")).unwrap();
    let plan: Vec<String> = s
        .read(|c| {
            let mut stmt = c
                .prepare(&format!("EXPLAIN QUERY PLAN {MAILBOX_SQL}"))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params!["+15550001111", 1, 0], |r| r.get::<_, String>(3))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
        .unwrap();
    let plan = plan.join(" | ");
    assert!(plan.contains("USING INDEX envelopes_by_device"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

/// Server ids handed out after the last durable state are not handed out again by a
/// relay restarted from that state (a crash), nor after a clean reopen.
#[tokio::test]
async fn server_ids_are_never_reused_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let crashed = dir.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    let (a, b) = (acct(1), acct(2));
    let sender = DeviceAddress::new(a.clone(), DeviceId(1));
    let send = async |s: &SqliteStore| queue_one(s, &sender, &b).await;
    let s = SqliteStore::open(&path).unwrap();
    register(&s, &a, 1).await;
    register(&s, &b, 2).await;
    let first = send(&s).await;
    // The files as a crash right now would leave them (the writer is idle).
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", path.display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, crashed.join(format!("r.db{suffix}"))).unwrap();
        }
    }
    // Ids the crashed relay handed out after that state (they may have been pushed).
    let mut later: Vec<u64> = Vec::new();
    for _ in 0..5 {
        later.push(send(&s).await);
    }
    assert!(later.iter().all(|id| *id > first));
    s.close();
    let restarted = SqliteStore::open(crashed.join("r.db")).unwrap();
    let after_crash = send(&restarted).await;
    assert!(
        after_crash > *later.iter().max().unwrap(),
        "{after_crash} reuses an id handed out before the crash ({later:?})"
    );
    assert!(
        after_crash > first + ID_BLOCK - 1,
        "continues above the reservation"
    );
    restarted.close();
    let reopened = SqliteStore::open(&path).unwrap();
    assert!(send(&reopened).await > *later.iter().max().unwrap());
}

#[tokio::test]
async fn quotas_survive_reopening() {
    use crate::ratelimit::Rate;
    use crate::store::{QuotaCheck, QuotaKind, QuotaOutcome};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let q = [QuotaCheck {
        kind: QuotaKind::CodeSource,
        subject: "192.0.2.1".into(),
        rate: Rate {
            capacity: 1,
            refill_ms: 3_600_000,
        },
    }];
    {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.take_quotas(&q, 1000).await.unwrap(), QuotaOutcome::Taken);
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.take_quotas(&q, 2000).await.unwrap(),
        QuotaOutcome::Exceeded {
            index: 0,
            retry_after_ms: 3_599_000
        }
    );
}

#[tokio::test]
async fn migrates_a_version_1_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "{SCHEMA_V1}
             INSERT INTO accounts (account, next_device_id) VALUES ('+15550000001', 2);
             INSERT INTO devices (account, device_id, identity, registered_at)
             VALUES ('+15550000001', 1, zeroblob(64), 1234);
             PRAGMA user_version = 1;"
        ))
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let version: i64 = s
        .read(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(
        s.registration_lock(&acct(1)).await.unwrap(),
        Some(crate::store::RegLockState {
            verifier: None,
            failures: 0,
            last_seen: 1234
        })
    );
    assert_eq!(s.vault(&acct(1)).await.unwrap(), None);
    // The account keeps its devices and id counter.
    assert_eq!(s.list_devices(&acct(1)).await.unwrap().len(), 1);
    assert_eq!(register(&s, &acct(1), 3).await, 2);
}

/// Version 2 → 3: existing devices get `sender_seq` 0, which then rises with their sends
/// and survives a reopen.
#[tokio::test]
async fn migrates_a_version_2_database_to_sender_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "{SCHEMA_V1} {MIGRATE_V2}
             INSERT INTO accounts (account, next_device_id) VALUES ('+15550000001', 2);
             INSERT INTO devices (account, device_id, identity, registered_at)
             VALUES ('+15550000001', 1, zeroblob(64), 1234);
             PRAGMA user_version = 2;"
        ))
        .unwrap();
    }
    let a1 = DeviceAddress::new(acct(1), DeviceId(1));
    {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.sender_seq(&a1).await.unwrap(), 0);
        let b = acct(2);
        register(&s, &b, 2).await;
        let envs = [OutgoingEnvelope {
            device_id: 1,
            envelope: vec![1],
        }];
        let m = NewMessage {
            sender: &a1,
            recipient: &b,
            exclude_device: None,
            addressing: crate::store::Addressing::Exact,
            message_id: &[1; 16],
            sender_seq: 42,
            timestamp: 1,
            envelopes: &envs,
            max_queued: 10,
        };
        assert!(matches!(
            s.enqueue(&m).await.unwrap(),
            EnqueueOutcome::Queued(_)
        ));
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.sender_seq(&a1).await.unwrap(), 42);
}

#[tokio::test]
async fn lock_and_vault_counts_survive_reopen() {
    use crate::store::conformance::vault_row;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let a = acct(1);
    {
        let s = SqliteStore::open(&path).unwrap();
        register(&s, &a, 1).await;
        s.set_registration_lock(&a, Some(&[1; 32]), 10)
            .await
            .unwrap();
        s.put_code(&a, &[7; 32], u64::MAX).await.unwrap();
        let policy = RegLockPolicy {
            presented: Some([2; 32]),
            max_failures: 10,
            lapse: u64::MAX / 4,
        };
        for _ in 0..3 {
            let r = s
                .register_device(
                    &a,
                    &IdentityBytes {
                        signing: [1; 32],
                        dh: [2; 32],
                    },
                    &[7; 32],
                    &policy,
                    20,
                )
                .await
                .unwrap();
            assert!(matches!(r, RegisterOutcome::Locked { .. }));
        }
        s.put_vault(&a, &vault_row(1), 10, 0).await.unwrap();
        for _ in 0..4 {
            s.begin_vault_evaluation(&a, &[1; 16], 10, 0).await.unwrap();
        }
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.registration_lock(&a).await.unwrap().unwrap().failures, 3);
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_isolates_failing_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(SqliteStore::open(dir.path().join("r.db")).unwrap());
    let threads: Vec<_> = (0..16u32)
        .map(|i| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move {
                if i % 2 == 0 {
                    s.put_code(&acct(i), &[1; 32], 10).await.map(|_| true)
                } else {
                    // Writes, then fails: its savepoint is rolled back, the others commit.
                    s.write(move |c| {
                        c.execute(
                            "INSERT INTO codes (account, mac, expires_at, attempts) VALUES (?1, x'00', 1, 0)",
                            params![format!("bad{i}")],
                        )
                        .map_err(backend)?;
                        Err::<bool, _>(StoreError::Corrupt("test"))
                    }).await
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in threads {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 8);
    let n: i64 = s
        .read(|c| {
            c.query_row("SELECT COUNT(*) FROM codes", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
        .unwrap();
    assert_eq!(n, 8);
}

/// The storage failing under SQLite (I/O, a full disk, a read-only database, a lock held
/// elsewhere) is `Unavailable`; a violated constraint or a bad statement stays `Backend`.
#[test]
fn storage_failures_are_unavailable_and_the_rest_is_not() {
    let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
    for (code, why) in [
        (rusqlite::ffi::SQLITE_IOERR, Unavailable::Io),
        (rusqlite::ffi::SQLITE_IOERR_FSYNC, Unavailable::Io),
        (rusqlite::ffi::SQLITE_CANTOPEN, Unavailable::Io),
        (rusqlite::ffi::SQLITE_FULL, Unavailable::DiskFull),
        (rusqlite::ffi::SQLITE_READONLY, Unavailable::ReadOnly),
        (rusqlite::ffi::SQLITE_BUSY, Unavailable::Busy),
    ] {
        assert_eq!(
            backend(failure(code)),
            StoreError::Unavailable(why),
            "{code}"
        );
    }
    for code in [
        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
        rusqlite::ffi::SQLITE_ERROR,
        rusqlite::ffi::SQLITE_MISMATCH,
        rusqlite::ffi::SQLITE_CORRUPT,
    ] {
        assert!(
            matches!(backend(failure(code)), StoreError::Backend(_)),
            "{code}"
        );
    }
}

/// The health probe: healthy on a working store; unhealthy, with the reason, while the
/// writer cannot write (here another process holds the database's write lock, then the
/// writer's connection is made read-only); healthy again once a real write commits (the
/// probe itself writes while the storage is known to fail); a closed store is not healthy.
#[tokio::test]
async fn health_follows_the_storage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let s = SqliteStore::open(&path).unwrap();
    s.health().await.unwrap();
    let (account, mac) = (acct(1111), [7u8; CODE_MAC_LEN]);
    s.put_code(&account, &mac, 1).await.unwrap();

    // Another process holds the write lock past the writer's busy timeout.
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert_eq!(
        s.health().await,
        Err(StoreError::Unavailable(Unavailable::Busy))
    );
    other.execute_batch("COMMIT").unwrap();
    drop(other);
    // The probe's own write commits: healthy again.
    s.health().await.unwrap();
    s.put_code(&account, &mac, 2).await.unwrap();

    // A read-only database: the probe and every write say so.
    s.write(|c| c.pragma_update(None, "query_only", true).map_err(backend))
        .await
        .unwrap();
    assert_eq!(
        s.health().await,
        Err(StoreError::Unavailable(Unavailable::ReadOnly))
    );
    assert_eq!(
        s.put_code(&account, &mac, 3).await,
        Err(StoreError::Unavailable(Unavailable::ReadOnly))
    );
    s.close();
    assert_eq!(s.health().await, Err(StoreError::Closed));
}

/// One writer per database: a second open of the same file is refused while the first is
/// open (and migrates nothing), and succeeds once the first is closed.
#[tokio::test]
async fn a_second_open_of_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let first = SqliteStore::open(&path).unwrap();
    assert!(lock_path(&path).is_file());
    assert_eq!(
        SqliteStore::open(&path).unwrap_err(),
        StoreError::InUse { path: path.clone() }
    );
    // The same file under another name is the same database.
    let other_name = dir.path().join(".").join("r.db");
    assert!(matches!(
        SqliteStore::open(&other_name),
        Err(StoreError::InUse { .. })
    ));
    // The refused opens did not disturb the first.
    first.put_code(&acct(1), &[7; 32], 1).await.unwrap();
    first.close();
    let second = SqliteStore::open(&path).unwrap();
    assert!(second.total_queued().await.is_ok());
    second.close();
}

/// Jobs without a savepoint of their own (`Job::guarded` false): one that fails before it
/// writes leaves the group's other jobs alone; one that fails after a write fails its whole
/// group, and then nothing of that group is stored (what was answered `Ok` is exactly what
/// is in the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unguarded_jobs_fail_alone_or_with_their_whole_group() {
    for writes_first in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open(dir.path().join("r.db")).unwrap());
        let tasks: Vec<_> = (0..32u32)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                tokio::spawn(async move {
                    let r = if i % 2 == 0 {
                        s.put_code(&acct(i), &[1; 32], 10).await.map(|_| ())
                    } else {
                        s.write_unguarded(
                            move |c| {
                                if writes_first {
                                    c.execute(
                                        "INSERT INTO codes (account, mac, expires_at, attempts) VALUES (?1, x'00', 1, 0)",
                                        params![format!("bad{i}")],
                                    )
                                    .map_err(backend)?;
                                }
                                Err::<(), _>(StoreError::Corrupt("test"))
                            },
                            Flush::Durable,
                        )
                        .await
                    };
                    (i, r.is_ok())
                })
            })
            .collect();
        let mut ok = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            assert!(i % 2 == 0 || !r, "a failing job was answered Ok");
            if r {
                ok.push(acct(i).as_str().to_owned());
            }
        }
        let mut stored: Vec<String> = s
            .read(|c| {
                let mut st = c.prepare("SELECT account FROM codes").map_err(backend)?;
                let rows = st.query_map([], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
            .unwrap();
        ok.sort();
        stored.sort();
        assert_eq!(stored, ok, "writes_first = {writes_first}");
        if !writes_first {
            assert_eq!(ok.len(), 16, "a job that wrote nothing failed others");
        }
    }
}

/// Version 7 → 10: existing devices get `last_seen` 0 ("not recorded", spec/relay-store.md
/// section 2), not their account's; the next touch records them; the account-key backups
/// table (9) and the business profiles table (10) start empty.
#[tokio::test]
async fn migrates_a_version_7_database_to_device_last_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    {
        let c = Connection::open(&path).unwrap();
        super::schema::migrate(&c).unwrap();
        c.execute_batch(
            "ALTER TABLE devices DROP COLUMN last_seen;
             DROP TABLE account_key_backups;
             ALTER TABLE accounts DROP COLUMN rekey_device;
             DROP TABLE business_profiles;
             PRAGMA user_version = 7;
             INSERT INTO accounts (account, next_device_id, last_seen)
             VALUES ('+15550000001', 3, 5000);
             INSERT INTO devices (account, device_id, identity, registered_at)
             VALUES ('+15550000001', 1, zeroblob(64), 1234),
                    ('+15550000001', 2, zeroblob(64), 2345);",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let seen = |id, last_seen| crate::store::DeviceSeen {
        device_id: id,
        last_seen,
    };
    assert_eq!(
        s.device_activity(&acct(1)).await.unwrap(),
        vec![seen(1, 0), seen(2, 0)]
    );
    s.touch_device(&DeviceAddress::new(acct(1), DeviceId(2)), 6000)
        .await
        .unwrap();
    assert_eq!(
        s.device_activity(&acct(1)).await.unwrap(),
        vec![seen(1, 0), seen(2, 6000)]
    );
    assert_eq!(
        s.registration_lock(&acct(1))
            .await
            .unwrap()
            .unwrap()
            .last_seen,
        6000
    );
    assert_eq!(s.account_key_backup(&acct(1)).await.unwrap(), None);
    assert_eq!(s.business_profile(&acct(1)).await.unwrap(), None);
}
