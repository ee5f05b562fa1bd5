//! Typed errors of the relay library.

/// A storage backend failed. The operation changed nothing (every state change is one
/// transaction). Carries the backend's message, which never contains envelope bytes, keys or
/// codes (those are only ever bound as SQL parameters, never formatted into messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend reported an error.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Stored data did not decode (corruption or a schema this version does not know).
    #[error("corrupt stored record: {0}")]
    Corrupt(&'static str),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// The relay could not reach its storage (database server down or unreachable, no pooled
    /// connection in time, the disk failing, full or read-only). Nothing was changed; the same
    /// request may succeed later. Answered with the wire code `Unavailable`
    /// (spec/relay.md section 6); a constraint violation or a bug is never this.
    #[error("storage unavailable: {0}")]
    Unavailable(Unavailable),
}

impl StoreError {
    /// Whether the failure is the storage being out of reach rather than the request or
    /// the relay being wrong: the request changed nothing and may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Why a store is [`StoreError::Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The database server refused or dropped the connection, or is shutting down or
    /// starting up.
    #[error("the database server is unreachable")]
    Unreachable,
    /// No pooled database connection became free in time.
    #[error("no database connection became free in time")]
    PoolTimeout,
    /// The database server has run out of a resource (connections, memory).
    #[error("the database server is out of resources")]
    Exhausted,
    /// Reading or writing the storage failed (an I/O error of the disk or file system).
    #[error("a storage I/O error")]
    Io,
    /// The disk holding the storage is full.
    #[error("the storage disk is full")]
    DiskFull,
    /// The storage is read-only (a read-only file system or file, or a database server in
    /// recovery or standby).
    #[error("the storage is read-only")]
    ReadOnly,
    /// The storage is locked by another process for longer than the relay waits.
    #[error("the storage is locked by another process")]
    Busy,
    /// An earlier flush to disk failed: the store refuses every write until the relay is
    /// restarted (what was written since the last flush may not be on disk).
    #[error("a flush to disk failed; the relay must be restarted")]
    FlushFailed,
}

/// Errors starting or running the relay (configuration, TLS material, storage, sockets).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Command-line usage: `--help`/`--version` output (exit code 0) or a usage error (2).
    #[error("{text}")]
    Usage {
        /// The text to print.
        text: String,
        /// The process exit code.
        exit_code: i32,
    },
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Certificate or key could not be loaded, generated or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Opening or migrating the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another process (or another relay in this process) holds the data directory's lock
    /// (spec/relay.md section 5): one relay per data directory.
    #[error("another sealpost-relay is using {}", dir.display())]
    DataDirInUse {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The relay cannot write its store (a read-only data directory or file system, wrong
    /// ownership, a full disk): it refuses to start rather than accept connections and fail
    /// every request (spec/relay.md section 5).
    #[error(
        "the relay's store is not writable: {}: {source} (check the data directory's \
         owner, permissions, mount and free space)",
        path.display()
    )]
    NotWritable {
        /// The directory or file that cannot be written.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl RelayError {
    #[cfg(feature = "server")]
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
