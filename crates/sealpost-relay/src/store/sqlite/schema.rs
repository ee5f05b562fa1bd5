//! The schema, its version and the step-by-step migrations run at open.

use super::*;

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 10;

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE codes (
    account     TEXT PRIMARY KEY NOT NULL,
    mac         BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL
);
CREATE TABLE accounts (
    account         TEXT PRIMARY KEY NOT NULL,
    next_device_id  INTEGER NOT NULL
);
CREATE TABLE devices (
    account        TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    identity       BLOB NOT NULL,
    registered_at  INTEGER NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
CREATE TABLE signed_prekeys (
    account     TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    public      BLOB NOT NULL,
    signature   BLOB NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
CREATE TABLE one_time_prekeys (
    account     TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    public      BLOB NOT NULL,
    PRIMARY KEY (account, device_id, id)
) WITHOUT ROWID;
CREATE TABLE kem_prekeys (
    account      TEXT NOT NULL,
    device_id    INTEGER NOT NULL,
    id           INTEGER NOT NULL,
    last_resort  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    public       BLOB NOT NULL,
    signature    BLOB NOT NULL,
    PRIMARY KEY (account, device_id, id)
) WITHOUT ROWID;
CREATE TABLE envelopes (
    server_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    account        TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    sender_account TEXT NOT NULL,
    sender_device  INTEGER NOT NULL,
    message_id     BLOB NOT NULL,
    timestamp      INTEGER NOT NULL,
    envelope       BLOB NOT NULL
);
CREATE INDEX envelopes_by_device ON envelopes (account, device_id, server_id);
CREATE INDEX envelopes_by_time ON envelopes (timestamp);
";

/// Version 2: the registration lock (per-account verifier, failure count, last time a device
/// was seen) and guardian vaults (spec/pin.md sections 9–10). Existing accounts get
/// `last_seen` = their newest device's registration time.
pub(super) const MIGRATE_V2: &str = "
ALTER TABLE accounts ADD COLUMN reglock_verifier BLOB;
ALTER TABLE accounts ADD COLUMN reglock_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET last_seen = COALESCE(
    (SELECT MAX(registered_at) FROM devices WHERE devices.account = accounts.account), 0);
CREATE TABLE vaults (
    account           TEXT PRIMARY KEY NOT NULL,
    vault_id          BLOB NOT NULL,
    share             BLOB NOT NULL,
    success_verifier  BLOB NOT NULL,
    record            BLOB NOT NULL,
    attempts_used     INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
";

/// Version 3: each device's highest accepted `sender_seq` (spec/relay.md section 3.7), the
/// value a client's rollback check compares with. Existing devices start at 0, which is what
/// a device whose client never sent a sequence number has.
pub(super) const MIGRATE_V3_SENDER_SEQ: &str = "
ALTER TABLE devices ADD COLUMN max_sender_seq INTEGER NOT NULL DEFAULT 0;
";

/// Version 4 (persisted quotas, spec/relay.md section 7.1): one row per `(kind,
/// subject)` with the GCRA's theoretical arrival time (`ratelimit::gcra`); a row whose `tat`
/// is not after now is a full quota and is deleted by the sweep.
pub(super) const MIGRATE_V4_QUOTAS: &str = "
CREATE TABLE quotas (
    kind     INTEGER NOT NULL,
    subject  TEXT NOT NULL,
    tat      INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
) WITHOUT ROWID;
CREATE INDEX quotas_by_tat ON quotas (tat);
";

/// Version 5 (the vault ledger, spec/relay-store.md section 2.1): a count of the
/// transactions that changed `vaults`, the id of this database, and from which count on a
/// vault is trusted; each vault row remembers the count of its last change. A database
/// migrated to it starts at 0 with every vault trusted.
pub(super) const MIGRATE_V5_VAULT_LEDGER: &str = "
ALTER TABLE vaults ADD COLUMN write_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE vault_ledger (
    singleton     INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    store_id      BLOB NOT NULL,
    writes        INTEGER NOT NULL,
    trusted_from  INTEGER NOT NULL
);
INSERT INTO vault_ledger (singleton, store_id, writes, trusted_from)
    VALUES (1, randomblob(16), 0, 0);
";

/// Version 6: provisioning ids for linking devices (spec/relay.md 3.11): the id, its expiry
/// and the one envelope left for it.
pub(super) const MIGRATE_V6_PROVISIONING: &str = "
CREATE TABLE provisioning (
    id          BLOB PRIMARY KEY NOT NULL,
    expires_at  INTEGER NOT NULL,
    envelope    BLOB
) WITHOUT ROWID;
CREATE INDEX provisioning_by_expiry ON provisioning (expires_at);
";

/// Version 7 (linked devices, spec/relay.md 3.9): each account's stored device list, the
/// `SignedDeviceList` encoding with the values the next list is checked against.
pub(super) const MIGRATE_V7_DEVICE_LISTS: &str = "
CREATE TABLE device_lists (
    account         TEXT PRIMARY KEY NOT NULL,
    account_key     BLOB NOT NULL,
    list_version    INTEGER NOT NULL,
    next_device_id  INTEGER NOT NULL,
    list            BLOB NOT NULL,
    updated_at      INTEGER NOT NULL
);
";

/// Version 8 (per-device last seen, spec/relay.md 3.12): the Unix ms at which each device
/// was created or last authenticated or closed an authenticated connection. Existing
/// devices get 0 ("not recorded"), not the account's `last_seen`, which is the newest of all
/// its devices and would make a device that has long been idle look recent.
pub(super) const MIGRATE_V8_DEVICE_LAST_SEEN: &str = "
ALTER TABLE devices ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
";

/// Version 9 (the account-key backup, spec/relay.md 3.13): one sealed account key per
/// account, with the public account key it seals, compared with the stored list's; and the
/// device a recovery registration added (3.2), until the next list is stored.
pub(super) const MIGRATE_V9_ACCOUNT_KEY_BACKUPS: &str = "
CREATE TABLE account_key_backups (
    account      TEXT PRIMARY KEY NOT NULL,
    account_key  BLOB NOT NULL,
    backup       BLOB NOT NULL
);
ALTER TABLE accounts ADD COLUMN rekey_device INTEGER;
";

/// Version 10 (business profiles, spec/relay.md 3.14): one profile per account, with the
/// account key and version the next one is checked against, the profile's encoding (compared
/// by the version rule) and the payload it was published with (served byte for byte).
pub(super) const MIGRATE_V10_BUSINESS_PROFILES: &str = "
CREATE TABLE business_profiles (
    account          TEXT PRIMARY KEY NOT NULL,
    account_key      BLOB NOT NULL,
    profile_version  INTEGER NOT NULL,
    profile          BLOB NOT NULL,
    route_version    INTEGER NOT NULL,
    payload          BLOB NOT NULL
);
";

/// Opens the writing connection, in WAL mode, and migrates the schema; also returns the
/// schema version the database had before (0: it was created now).
pub(super) fn open_writer(path: &Path) -> Result<(Connection, i64), StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    configure(&conn)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::backend_msg(
            "could not enable WAL (journal_mode stays another mode)",
        ));
    }
    // Commits write the WAL without flushing it; the writer flushes (module documentation).
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(backend)?;
    let before = migrate(&conn)?;
    Ok((conn, before))
}

/// Migrates the schema to [`SCHEMA_VERSION`]; returns the version found.
pub(super) fn migrate(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 2 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V2} PRAGMA user_version = 2; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 3 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V3_SENDER_SEQ} PRAGMA user_version = 3; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 4 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V4_QUOTAS} PRAGMA user_version = 4; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 5 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V5_VAULT_LEDGER} PRAGMA user_version = 5; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 6 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V6_PROVISIONING} PRAGMA user_version = 6; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 7 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V7_DEVICE_LISTS} PRAGMA user_version = 7; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 8 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V8_DEVICE_LAST_SEEN} PRAGMA user_version = 8; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 9 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V9_ACCOUNT_KEY_BACKUPS} PRAGMA user_version = 9; COMMIT;"
        ))
        .map_err(backend)?;
    }
    if version < 10 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_V10_BUSINESS_PROFILES} PRAGMA user_version = 10; COMMIT;"
        ))
        .map_err(backend)?;
    }
    Ok(version)
}
