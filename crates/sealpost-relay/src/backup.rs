//! Backup and restore of a relay on SQLite (spec/operations.md, "Backup and restore"):
//! `sealpost-relay backup --to DIR` and `sealpost-relay restore --from DIR`, with the same
//! configuration options as the relay (they find the data directory the same way).
//!
//! A **backup** works while the relay runs and never takes the data directory's lock: the
//! database is copied by SQLite itself (`VACUUM INTO` on a read-only connection, one read
//! transaction, so the copy is a consistent snapshot of the last commit; in WAL mode it
//! neither blocks the relay's writer nor is blocked by it), and the files that make the relay
//! the same relay are copied next to it with their permissions: the self-signed TLS
//! certificate and key, the code-MAC key, the guardian-credential issuer key and the
//! stateless-reset key. A manifest, written last, lists them. The vault ledger is left out
//! on purpose (spec/relay-store.md section 2.1): a restored database must not pass for the
//! live one.
//!
//! A **restore** writes a backup into the configured data directory while no relay runs
//! there (it takes the data directory's lock): the database replaces `relay.db` (the old
//! database's WAL and shared-memory files are removed first, so that SQLite cannot replay
//! them into the restored copy), the key files replace theirs, and the vault ledger stays.
//! The next start then compares the restored database with the ledger and holds back the
//! vaults whose attempt counts may have gone backwards.
//!
//! PostgreSQL stores are refused ([`BackupError::PostgresStore`]): they are backed up with
//! PostgreSQL's own tools.

use crate::config::{RelayConfig, StoreBackend};
use crate::server::{DB_FILE, ISSUER_KEY_FILE, LOCK_FILE};
use crate::store::LEDGER_FILE;
use crate::{RelayError, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use zeroize::Zeroizing;

/// The manifest of a backup directory, written last.
pub const MANIFEST_FILE: &str = "sealpost-backup.toml";
/// The backup format this relay writes and reads ([`Manifest::format`]).
pub const BACKUP_FORMAT: u32 = 1;

/// The files of a data directory a backup holds besides the database, if they exist
/// (relative paths): the self-signed certificate and key, the code-MAC key, the issuer key
/// and the stateless-reset key.
pub const KEY_FILES: [&str; 5] = [
    "tls/cert.pem",
    "tls/key.pem",
    crate::server::CODE_KEY_FILE,
    ISSUER_KEY_FILE,
    crate::startup::RESET_KEY_FILE,
];

/// Why a backup or a restore failed. Nothing is half-restored: a restore that fails has
/// replaced at most some key files with the backup's copies, never the database alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The relay's store is PostgreSQL, which this command does not copy.
    #[error(
        "the store is PostgreSQL: back it up with PostgreSQL's tools (pg_dump, or a base \
         backup with WAL archiving for point-in-time recovery), and each node's data \
         directory key files by copying them (spec/operations.md, \"Backup and restore\")"
    )]
    PostgresStore,
    /// The data directory holds no database.
    #[error("no relay database at {}: nothing to back up", path.display())]
    NoDatabase {
        /// The missing database file.
        path: PathBuf,
    },
    /// The backup destination exists and is not an empty directory.
    #[error("{} exists and is not an empty directory: back up into a new one", path.display())]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// The directory to restore from has no readable manifest of a supported format.
    #[error(
        "{} is not a sealpost-relay backup of format {BACKUP_FORMAT} (no valid {MANIFEST_FILE})",
        path.display()
    )]
    NotABackup {
        /// The directory.
        path: PathBuf,
    },
    /// The backup's database fails SQLite's integrity check.
    #[error("the backup's database {} fails SQLite's integrity check", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
    },
    /// A relay runs on the data directory to restore into.
    #[error("another sealpost-relay is using {}: stop it before restoring", dir.display())]
    DataDirInUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite failed while copying or checking the database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command line lacks the destination or source directory.
    #[error("`sealpost-relay {command}` needs {flag} DIR")]
    MissingDirectory {
        /// `backup` or `restore`.
        command: &'static str,
        /// `--to` or `--from`.
        flag: &'static str,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

fn sqlite(e: rusqlite::Error) -> BackupError {
    BackupError::Store(StoreError::backend("the backup's SQLite database", e))
}

/// A backup directory's manifest ([`MANIFEST_FILE`], TOML).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`BACKUP_FORMAT`].
    pub format: u32,
    /// When the backup was taken, Unix seconds.
    pub created_at: u64,
    /// The database's schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Vault writes the database had counted (its vault ledger, spec/relay-store.md 2.1).
    pub vault_writes: u64,
    /// The files of the backup, relative to it, the database first.
    pub files: Vec<String>,
}

/// What [`backup`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Files the configuration names outside the data directory (an operator certificate and
    /// key, a shared stateless-reset key, the webhook secret): the relay needs them, the
    /// backup does not hold them.
    pub external: Vec<PathBuf>,
    /// Files in the data directory that the backup leaves out because the relay does not
    /// know them (the relay's own re-creatable files are not listed).
    pub unknown: Vec<PathBuf>,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backup written to {}", self.dir.display())?;
        for file in &self.manifest.files {
            writeln!(f, "  {file}")?;
        }
        for file in &self.external {
            writeln!(
                f,
                "not in the backup, keep it yourself: {} (named by the configuration)",
                file.display()
            )?;
        }
        for file in &self.unknown {
            writeln!(f, "left out (unknown to the relay): {}", file.display())?;
        }
        Ok(())
    }
}

/// What [`restore`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The data directory restored into.
    pub data_dir: PathBuf,
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Whether the data directory already had a vault ledger, against which the next start
    /// compares the restored database (else every vault is held back at the next start).
    pub ledger_kept: bool,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "restored into {}:", self.data_dir.display())?;
        for file in &self.manifest.files {
            writeln!(f, "  {file}")?;
        }
        if self.ledger_kept {
            writeln!(
                f,
                "the vault ledger was kept: at the next start, vaults are held back if \
                 their attempt counters went backwards"
            )
        } else {
            writeln!(
                f,
                "no vault ledger here: at the next start every vault is held back until \
                 its owner stores or confirms it again"
            )
        }
    }
}

/// A `backup` or `restore` command line, split from the relay's own options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `sealpost-relay backup --to DIR [relay options]`.
    Backup {
        /// The backup directory (new, or empty).
        to: PathBuf,
    },
    /// `sealpost-relay restore --from DIR [relay options]`.
    Restore {
        /// The backup directory.
        from: PathBuf,
    },
}

impl Command {
    /// Recognises `backup` / `restore` as the first argument after the program name and
    /// takes it and its `--to DIR` / `--from DIR` (also `--to=DIR`) out of `args`; the rest
    /// are the relay's options, for [`RelayConfig::load`]. `Ok(None)`: no such command.
    pub fn split(args: Vec<OsString>) -> Result<(Option<Self>, Vec<OsString>), BackupError> {
        let (command, flag) = match args.get(1).and_then(|a| a.to_str()) {
            Some("backup") => ("backup", "--to"),
            Some("restore") => ("restore", "--from"),
            _ => return Ok((None, args)),
        };
        let mut rest = Vec::with_capacity(args.len());
        let mut dir = None;
        let mut it = args.into_iter().enumerate();
        while let Some((i, arg)) = it.next() {
            if i == 1 {
                continue;
            }
            let text = arg.to_str().unwrap_or_default();
            if text == flag {
                dir = it.next().map(|(_, d)| PathBuf::from(d));
            } else if let Some(d) = text.strip_prefix(flag).and_then(|t| t.strip_prefix('=')) {
                dir = Some(PathBuf::from(d));
            } else {
                rest.push(arg);
            }
        }
        let dir = dir
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or(BackupError::MissingDirectory { command, flag })?;
        let command = match command {
            "backup" => Self::Backup { to: dir },
            _ => Self::Restore { from: dir },
        };
        Ok((Some(command), rest))
    }

    /// Runs the command for `config`; the report is what the binary prints.
    pub fn run(&self, config: &RelayConfig) -> Result<String, BackupError> {
        match self {
            Self::Backup { to } => backup(config, to).map(|r| r.to_string()),
            Self::Restore { from } => restore(config, from).map(|r| r.to_string()),
        }
    }
}

/// Backs up the relay configured by `config` into the new or empty directory `to`, while
/// the relay runs or not (module documentation). Blocking: call it from a blocking thread.
pub fn backup(config: &RelayConfig, to: &Path) -> Result<BackupReport, BackupError> {
    if !matches!(config.store, StoreBackend::Sqlite) {
        return Err(BackupError::PostgresStore);
    }
    let data_dir = &config.data_dir;
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NoDatabase { path: db });
    }
    create_private_dir(to)?;
    if fs::read_dir(to)
        .map_err(io("reading", to))?
        .next()
        .is_some()
    {
        return Err(BackupError::DestinationNotEmpty {
            path: to.to_path_buf(),
        });
    }
    let copy = to.join(DB_FILE);
    snapshot(&db, &copy)?;
    let (schema_version, vault_writes) = check_database(&copy)?;
    let mut files = vec![DB_FILE.to_owned()];
    for name in KEY_FILES {
        let from = data_dir.join(name);
        if from.is_file() {
            copy_file(&from, &to.join(name))?;
            files.push(name.to_owned());
        }
    }
    let manifest = Manifest {
        format: BACKUP_FORMAT,
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        schema_version,
        vault_writes,
        files,
    };
    let text = toml::to_string(&manifest)
        .map_err(|e| BackupError::Store(StoreError::backend("encoding the backup manifest", e)))?;
    write_new(&to.join(MANIFEST_FILE), text.as_bytes(), 0o600)?;
    sync_dir(to)?;
    Ok(BackupReport {
        dir: to.to_path_buf(),
        manifest,
        external: external_files(config),
        unknown: unknown_files(data_dir)?,
    })
}

/// Restores the backup in `from` into the data directory of `config`, which no relay may be
/// using (module documentation). Blocking: call it from a blocking thread.
pub fn restore(config: &RelayConfig, from: &Path) -> Result<RestoreReport, BackupError> {
    if !matches!(config.store, StoreBackend::Sqlite) {
        return Err(BackupError::PostgresStore);
    }
    let manifest = read_manifest(from)?;
    check_database(&from.join(DB_FILE))?;
    let data_dir = &config.data_dir;
    create_private_dir(data_dir)?;
    let _lock = crate::server::lock_data_dir(data_dir).map_err(|e| match e {
        RelayError::DataDirInUse { dir } => BackupError::DataDirInUse { dir },
        RelayError::Io { source, .. } => BackupError::Io {
            what: "locking",
            path: data_dir.join(LOCK_FILE),
            source,
        },
        other => BackupError::Store(StoreError::backend("locking the data directory", other)),
    })?;
    let ledger_kept = data_dir.join(LEDGER_FILE).is_file();
    // Key files first: a restore that fails half-way has not yet replaced the database.
    for name in manifest.files.iter().filter(|f| *f != DB_FILE) {
        replace_file(&from.join(name), &data_dir.join(name), false)?;
    }
    let db = data_dir.join(DB_FILE);
    for suffix in ["-wal", "-shm"] {
        let mut stale = db.clone().into_os_string();
        stale.push(suffix);
        match fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", Path::new(&stale))(e)),
        }
    }
    replace_file(&from.join(DB_FILE), &db, true)?;
    sync_dir(data_dir)?;
    Ok(RestoreReport {
        data_dir: data_dir.clone(),
        manifest,
        ledger_kept,
    })
}

/// Copies the live database at `db` into the new file `to` with `VACUUM INTO` on a
/// read-only connection, then gives the copy the original's permissions and syncs it.
fn snapshot(db: &Path, to: &Path) -> Result<(), BackupError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;
    let target = to.to_str().ok_or_else(|| BackupError::Io {
        what: "naming",
        path: to.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "SQLite takes the backup's path as UTF-8 text",
        ),
    })?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(sqlite)?;
    drop(conn);
    let perms = fs::metadata(db).map_err(io("reading", db))?.permissions();
    fs::set_permissions(to, perms).map_err(io("setting permissions of", to))?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", to))
}

/// Runs SQLite's integrity check on a backup's database; returns its schema version and
/// vault-ledger count (0 before schema version 5).
fn check_database(path: &Path) -> Result<(i64, u64), BackupError> {
    if !path.is_file() {
        return Err(BackupError::NoDatabase {
            path: path.to_path_buf(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(|_| BackupError::Corrupt {
            path: path.to_path_buf(),
        })?;
    if verdict != "ok" {
        return Err(BackupError::Corrupt {
            path: path.to_path_buf(),
        });
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite)?;
    let writes: i64 = if version >= 5 {
        conn.query_row("SELECT writes FROM vault_ledger", [], |r| r.get(0))
            .map_err(sqlite)?
    } else {
        0
    };
    Ok((version, u64::try_from(writes).unwrap_or(0)))
}

/// Reads and checks `from`'s manifest: the supported format, the database first, and only
/// files a backup may hold (so a crafted manifest cannot write outside the data directory).
fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let not_a_backup = || BackupError::NotABackup {
        path: from.to_path_buf(),
    };
    let text = fs::read_to_string(from.join(MANIFEST_FILE)).map_err(|_| not_a_backup())?;
    let manifest: Manifest = toml::from_str(&text).map_err(|_| not_a_backup())?;
    let allowed = |f: &String| {
        (f == DB_FILE || KEY_FILES.contains(&f.as_str()))
            && Path::new(f)
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
    };
    if manifest.format != BACKUP_FORMAT
        || manifest.files.first().map(String::as_str) != Some(DB_FILE)
        || !manifest.files.iter().all(allowed)
    {
        return Err(not_a_backup());
    }
    Ok(manifest)
}

/// Creates `dir` (and its parents) if missing, private to the owner (0700) like a data
/// directory the relay creates.
fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io("creating", dir))
}

/// The permission bits of `path` (0o600 where there are none).
fn mode_of(path: &Path) -> Result<u32, BackupError> {
    let meta = fs::metadata(path).map_err(io("reading", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(meta.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(0o600)
    }
}

/// Copies the key file `from` to the new file `to` with `from`'s permissions (a missing
/// parent directory with the permissions of `from`'s), synced. The bytes pass through a
/// buffer that is wiped afterwards.
fn copy_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    if let (Some(src_dir), Some(dst_dir)) = (from.parent(), to.parent())
        && !dst_dir.exists()
    {
        create_private_dir(dst_dir)?;
        let perms = fs::metadata(src_dir)
            .map_err(io("reading", src_dir))?
            .permissions();
        fs::set_permissions(dst_dir, perms).map_err(io("setting permissions of", dst_dir))?;
    }
    let bytes = Zeroizing::new(fs::read(from).map_err(io("reading", from))?);
    write_new(to, &bytes, mode_of(from)?)
}

/// Copies the database `from` (a backup's) to the new file `to` with its permissions,
/// streamed, synced.
fn copy_database(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut src = fs::File::open(from).map_err(io("reading", from))?;
    let mut dst = create_new(to, mode_of(from)?)?;
    std::io::copy(&mut src, &mut dst)
        .and_then(|_| dst.sync_all())
        .map_err(io("writing", to))
}

/// Creates the new file `path` with exactly `mode` (not filtered by the umask).
fn create_new(path: &Path, mode: u32) -> Result<fs::File, BackupError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let f = opts.open(path).map_err(io("creating", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("setting permissions of", path))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(f)
}

/// Writes `bytes` to the new file `path` with `mode`, synced.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    let mut f = create_new(path, mode)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", path))
}

/// Replaces `to` with a copy of `from` (same permissions) through a temporary file renamed
/// over it; `database`: streamed ([`copy_database`]), else a key file ([`copy_file`]).
fn replace_file(from: &Path, to: &Path, database: bool) -> Result<(), BackupError> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing", &tmp)(e)),
    }
    if database {
        copy_database(from, &tmp)?;
    } else {
        copy_file(from, &tmp)?;
    }
    fs::rename(&tmp, to).map_err(io("renaming", to))?;
    match to.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Syncs a directory, so that the files created or renamed in it stay.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Files the configuration names outside the data directory.
fn external_files(config: &RelayConfig) -> Vec<PathBuf> {
    [
        &config.cert_path,
        &config.key_path,
        &config.reset_key_file,
        &config.webhook_secret_file,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

/// Files in the data directory (and its `tls/`) that are neither backed up nor the
/// relay's own re-creatable files.
fn unknown_files(data_dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let known = |rel: &str| {
        rel == DB_FILE
            || KEY_FILES.contains(&rel)
            || [LOCK_FILE, LEDGER_FILE, "tls"].contains(&rel)
            || rel.starts_with(DB_FILE) // -wal, -shm
            || rel.starts_with(LEDGER_FILE)
            || rel.starts_with(".write-probe")
    };
    let mut out = Vec::new();
    for dir in [data_dir.to_path_buf(), data_dir.join("tls")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.map_err(io("reading", &dir))?.path();
            let rel = path
                .strip_prefix(data_dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !known(&rel) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn commands_are_split_from_the_relay_options() {
        let (c, rest) =
            Command::split(args(&["relay", "backup", "--data-dir", "d", "--to", "b"])).unwrap();
        assert_eq!(c, Some(Command::Backup { to: "b".into() }));
        assert_eq!(rest, args(&["relay", "--data-dir", "d"]));
        let (c, rest) = Command::split(args(&["relay", "restore", "--from=b"])).unwrap();
        assert_eq!(c, Some(Command::Restore { from: "b".into() }));
        assert_eq!(rest, args(&["relay"]));
        let (c, rest) = Command::split(args(&["relay", "--listen", "x"])).unwrap();
        assert_eq!(c, None);
        assert_eq!(rest, args(&["relay", "--listen", "x"]));
        assert!(matches!(
            Command::split(args(&["relay", "backup", "--from", "b"])),
            Err(BackupError::MissingDirectory {
                command: "backup",
                flag: "--to"
            })
        ));
        assert!(matches!(
            Command::split(args(&["relay", "restore", "--from"])),
            Err(BackupError::MissingDirectory { .. })
        ));
    }

    #[test]
    fn postgres_is_refused_with_a_pointer_to_its_tools() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RelayConfig::for_tests(dir.path());
        config.store = "postgres://relay@127.0.0.1/sealpost".parse().unwrap();
        let err = backup(&config, &dir.path().join("b")).unwrap_err();
        assert!(matches!(err, BackupError::PostgresStore), "{err}");
        assert!(err.to_string().contains("pg_dump"), "{err}");
        assert!(matches!(
            restore(&config, dir.path()),
            Err(BackupError::PostgresStore)
        ));
    }

    #[test]
    fn a_crafted_manifest_is_not_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let write = |files: &str| {
            fs::write(
                dir.path().join(MANIFEST_FILE),
                format!(
                    "format = 1\ncreated_at = 0\nschema_version = 5\nvault_writes = 0\n\
                     files = {files}\n"
                ),
            )
            .unwrap();
            read_manifest(dir.path())
        };
        assert!(write(r#"["relay.db", "issuer.key"]"#).is_ok());
        for bad in [
            r#"["relay.db", "../issuer.key"]"#,
            r#"["relay.db", "/etc/passwd"]"#,
            r#"["issuer.key", "relay.db"]"#,
            r#"["relay.db", "vault-ledger"]"#,
        ] {
            assert!(
                matches!(write(bad), Err(BackupError::NotABackup { .. })),
                "{bad}"
            );
        }
        fs::remove_file(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(matches!(
            read_manifest(dir.path()),
            Err(BackupError::NotABackup { .. })
        ));
    }
}
