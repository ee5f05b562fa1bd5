//! The typed details of [`ClientError`](super::ClientError) and
//! [`StoreError`](super::StoreError): what went wrong as a matchable kind, and the underlying
//! error of a dependency (QUIC, SQLite, Argon2) kept as [`std::error::Error::source`] only,
//! so that the SDK's public types do not carry those crates' types.
//!
//! Equality of the structs here compares their kind only: two errors of the same kind with
//! different underlying causes are equal (tests `assert_eq!` on kinds; the cause is for logs).

use sealpost_wire::DecodeError;
use std::fmt;
use std::sync::Arc;

/// An underlying error, kept for `source()`.
pub(crate) type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

macro_rules! kind_error {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            kind: $kind,
            source: Option<Source>,
        }

        impl $name {
            /// What went wrong.
            pub fn kind(&self) -> $kind {
                self.kind
            }

            pub(crate) fn new(kind: $kind) -> Self {
                Self { kind, source: None }
            }

            pub(crate) fn with_source(
                kind: $kind,
                source: impl std::error::Error + Send + Sync + 'static,
            ) -> Self {
                Self {
                    kind,
                    source: Some(Arc::new(source)),
                }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.kind == other.kind
            }
        }

        impl Eq for $name {}

        impl From<$kind> for $name {
            fn from(kind: $kind) -> Self {
                Self::new(kind)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ": {}"), self.kind)
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.source
                    .as_deref()
                    .map(|s| s as &(dyn std::error::Error + 'static))
            }
        }
    };
}

kind_error!(
    /// The local QUIC endpoint could not be set up or could not start a connection
    /// ([`ClientError::Endpoint`](super::ClientError::Endpoint)).
    EndpointError,
    EndpointErrorKind,
    "cannot connect"
);

/// What [`EndpointError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointErrorKind {
    /// The UDP socket could not be bound (the source is the I/O error).
    #[error("cannot bind a UDP socket")]
    Bind,
    /// The TLS or QUIC configuration was refused by the TLS or QUIC library.
    #[error("invalid TLS or QUIC configuration")]
    Config,
    /// The idle timeout is larger than QUIC can express.
    #[error("idle timeout too large")]
    IdleTimeoutTooLarge,
    /// The configured TLS server name is not a valid DNS name or IP address.
    #[error("invalid TLS server name")]
    InvalidServerName,
    /// The relay address cannot be connected to from this endpoint (port 0, or another
    /// address family).
    #[error("invalid relay address for this endpoint")]
    InvalidRemoteAddress,
    /// The endpoint is shutting down.
    #[error("the endpoint is stopping")]
    Stopping,
    /// Another refusal of the QUIC library (the source says which).
    #[error("the QUIC library refused to start a connection")]
    Other,
}

impl EndpointError {
    /// Maps the QUIC library's refusal to start a connection.
    pub(crate) fn connect(e: quinn::ConnectError) -> Self {
        let kind = match &e {
            quinn::ConnectError::EndpointStopping => EndpointErrorKind::Stopping,
            quinn::ConnectError::InvalidServerName(_) => EndpointErrorKind::InvalidServerName,
            quinn::ConnectError::InvalidRemoteAddress(_) => EndpointErrorKind::InvalidRemoteAddress,
            _ => EndpointErrorKind::Other,
        };
        Self::with_source(kind, e)
    }
}

kind_error!(
    /// A QUIC connection failed or was closed
    /// ([`ClientError::Connection`](super::ClientError::Connection)).
    ConnectionError,
    ConnectionErrorKind,
    "connection"
);

/// What ended a connection (or its handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionErrorKind {
    /// The relay supports no QUIC version this client speaks.
    #[error("no common QUIC version")]
    VersionMismatch,
    /// This side detected a QUIC or TLS error, e.g. a failed TLS handshake; `code` is the
    /// QUIC transport error code (`0x100 + alert` for a TLS alert, RFC 9001 section 4.8).
    #[error("QUIC/TLS error {code:#x}")]
    Transport {
        /// The QUIC transport error code.
        code: u64,
    },
    /// The relay refused a new connection (QUIC `CONNECTION_REFUSED`, e.g. at its connection
    /// limit).
    #[error("the relay refused the connection")]
    Refused,
    /// The relay's QUIC stack closed the connection with a transport error code.
    #[error("aborted by the relay with QUIC error {code:#x}")]
    Aborted {
        /// The QUIC transport error code.
        code: u64,
    },
    /// The relay closed the connection with an application close code (spec/relay.md
    /// section 1: 0 normal, 1 device removed, 3 replaced by a newer connection).
    #[error("closed by the relay with code {code}")]
    Closed {
        /// The application close code.
        code: u64,
    },
    /// The relay reset the connection (it restarted and no longer knows it).
    #[error("reset by the relay")]
    Reset,
    /// Nothing was heard from the relay for the idle timeout.
    #[error("timed out")]
    TimedOut,
    /// This client closed the connection.
    #[error("closed by this client")]
    LocallyClosed,
    /// Another failure of the QUIC library (the source says which).
    #[error("QUIC failure")]
    Other,
}

impl ConnectionError {
    /// Maps the QUIC library's connection error.
    pub(crate) fn quic(e: quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as Q;
        let kind = match &e {
            Q::VersionMismatch => ConnectionErrorKind::VersionMismatch,
            Q::TransportError(t) => ConnectionErrorKind::Transport {
                code: u64::from(t.code),
            },
            Q::ConnectionClosed(c)
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                ConnectionErrorKind::Refused
            }
            Q::ConnectionClosed(c) => ConnectionErrorKind::Aborted {
                code: u64::from(c.error_code),
            },
            Q::ApplicationClosed(c) => ConnectionErrorKind::Closed {
                code: c.error_code.into_inner(),
            },
            Q::Reset => ConnectionErrorKind::Reset,
            Q::TimedOut => ConnectionErrorKind::TimedOut,
            Q::LocallyClosed => ConnectionErrorKind::LocallyClosed,
            Q::CidsExhausted => ConnectionErrorKind::Other,
        };
        Self::with_source(kind, e)
    }
}

kind_error!(
    /// One request or push stream failed while the connection stayed up
    /// ([`ClientError::Stream`](super::ClientError::Stream)).
    StreamError,
    StreamErrorKind,
    "stream"
);

/// What went wrong on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// The relay reset the stream with this application code.
    #[error("stream reset by the relay (code {code})")]
    Reset {
        /// The relay's code.
        code: u64,
    },
    /// The relay stopped reading the stream with this application code.
    #[error("stream stopped by the relay (code {code})")]
    Stopped {
        /// The relay's code.
        code: u64,
    },
    /// The stream ended before a whole frame arrived.
    #[error("stream ended early")]
    FinishedEarly,
    /// The stream was longer than the protocol allows.
    #[error("stream too long")]
    TooLong,
    /// The stream was already closed.
    #[error("stream closed")]
    Closed,
    /// Another failure of the QUIC library (the source says which).
    #[error("stream failure")]
    Other,
}

/// Maps a failed read (a lost connection is a connection error).
pub(crate) fn read_error(e: quinn::ReadError) -> crate::ClientError {
    use crate::ClientError as Self_;
    match e {
        quinn::ReadError::ConnectionLost(c) => Self_::Connection(ConnectionError::quic(c)),
        quinn::ReadError::Reset(code) => Self_::Stream(StreamError::with_source(
            StreamErrorKind::Reset {
                code: code.into_inner(),
            },
            e,
        )),
        quinn::ReadError::ClosedStream => {
            Self_::Stream(StreamError::with_source(StreamErrorKind::Closed, e))
        }
        _ => Self_::Stream(StreamError::with_source(StreamErrorKind::Other, e)),
    }
}

/// Maps a failed write (a lost connection is a connection error).
pub(crate) fn write_error(e: quinn::WriteError) -> crate::ClientError {
    use crate::ClientError as Self_;
    match e {
        quinn::WriteError::ConnectionLost(c) => Self_::Connection(ConnectionError::quic(c)),
        quinn::WriteError::Stopped(code) => Self_::Stream(StreamError::with_source(
            StreamErrorKind::Stopped {
                code: code.into_inner(),
            },
            e,
        )),
        quinn::WriteError::ClosedStream => {
            Self_::Stream(StreamError::with_source(StreamErrorKind::Closed, e))
        }
        _ => Self_::Stream(StreamError::with_source(StreamErrorKind::Other, e)),
    }
}

kind_error!(
    /// The store's database failed ([`StoreError::Database`](super::StoreError::Database)).
    /// For SQLite, the source is the SQLite error (its message never contains stored
    /// values: they are sealed).
    DatabaseError,
    DatabaseErrorKind,
    "database error"
);

/// What kind of database failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// The database is busy or locked by another connection (retry later).
    #[error("the database is busy")]
    Busy,
    /// A disk I/O error.
    #[error("disk I/O error")]
    Io,
    /// The disk or the database is full.
    #[error("the disk is full")]
    Full,
    /// The database cannot be written (read-only file or file system, permissions).
    #[error("the database cannot be written")]
    ReadOnly,
    /// The database file cannot be opened.
    #[error("the database file cannot be opened")]
    CannotOpen,
    /// The file is not a database, or the database is corrupt.
    #[error("the database is corrupt or not a database")]
    Corrupt,
    /// The store's lock file cannot be opened or locked (the source is the I/O error).
    #[error("the store's lock file cannot be used")]
    LockFile,
    /// SQLite's write-ahead log cannot be enabled (e.g. on a file system without shared
    /// memory).
    #[error("write-ahead logging cannot be enabled")]
    WalUnavailable,
    /// A thread panicked while holding the database (a bug).
    #[error("a lock on the database was poisoned")]
    Poisoned,
    /// Another failure (the source says which).
    #[error("database failure")]
    Other,
}

impl DatabaseError {
    /// Maps a SQLite error, keeping it as the source.
    pub(crate) fn sqlite(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let kind = match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => DatabaseErrorKind::Busy,
            Some(C::SystemIoFailure | C::FileLockingProtocolFailed) => DatabaseErrorKind::Io,
            Some(C::DiskFull) => DatabaseErrorKind::Full,
            Some(C::ReadOnly | C::PermissionDenied) => DatabaseErrorKind::ReadOnly,
            Some(C::CannotOpen) => DatabaseErrorKind::CannotOpen,
            Some(C::DatabaseCorrupt | C::NotADatabase) => DatabaseErrorKind::Corrupt,
            _ => DatabaseErrorKind::Other,
        };
        Self::with_source(kind, e)
    }
}

kind_error!(
    /// Deriving the store key failed ([`StoreError::Kdf`](super::StoreError::Kdf)).
    KdfError,
    KdfErrorKind,
    "key derivation failed"
);

/// Which key derivation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KdfErrorKind {
    /// Argon2id refused the parameters (the source says which bound they break).
    #[error("invalid Argon2id parameters")]
    Argon2Params,
    /// HKDF of the store's sub-keys failed.
    #[error("HKDF failed")]
    Hkdf,
}

/// The relay sent something the protocol does not allow
/// ([`ClientError::Protocol`](super::ClientError::Protocol)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A frame did not decode.
    #[error("undecodable frame: {0}")]
    Decode(DecodeError),
    /// The response is of another kind than the request calls for.
    #[error("unexpected response to {request}: {response}")]
    UnexpectedResponse {
        /// The request.
        request: &'static str,
        /// The kind of response received.
        response: &'static str,
    },
    /// Bytes followed a frame on a stream that carries one.
    #[error("bytes after a frame")]
    TrailingBytes,
    /// The TLS exporter of the connection is unavailable.
    #[error("TLS exporter unavailable")]
    ExporterUnavailable,
    /// The relay listed a device with an identity key that does not decode.
    #[error("invalid identity key in a device list")]
    InvalidIdentity,
}

/// Something that should not happen inside the SDK did
/// ([`ClientError::Internal`](super::ClientError::Internal)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InternalError {
    /// A background task panicked.
    #[error("a background task panicked")]
    TaskPanicked,
    /// A background task was cancelled (the runtime is shutting down).
    #[error("a background task was cancelled")]
    TaskCancelled,
    /// A thread panicked while holding a lock.
    #[error("a lock was poisoned")]
    LockPoisoned,
    /// The session index and the sessions disagree.
    #[error("session index inconsistent")]
    SessionIndex,
    /// A PIN vault share or request names a guardian that is not configured.
    #[error("unknown guardian")]
    UnknownGuardian,
    /// A sync content the client made broke its own bounds (checked before encoding).
    #[error("sync content out of bounds")]
    SyncEncoding,
    /// A route, desk or transcript content the client made does not encode (checked before
    /// anything is queued).
    #[error("business control content out of bounds")]
    Encoding,
}

impl InternalError {
    /// A blocking or background task that did not complete.
    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        if e.is_panic() {
            Self::TaskPanicked
        } else {
            Self::TaskCancelled
        }
    }
}

/// Why a PIN vault cannot be recovered
/// ([`ClientError::VaultUnavailable`](super::ClientError::VaultUnavailable)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultUnavailable {
    /// Too few guardians returned the same vault record.
    #[error(
        "{returned} of {guardians} guardians returned a vault ({without_vault} have none), {agreeing} agree, {needed} needed"
    )]
    TooFewRecords {
        /// Guardians asked.
        guardians: usize,
        /// Guardians that returned a record.
        returned: usize,
        /// Guardians that hold no vault for the account.
        without_vault: usize,
        /// Guardians returning the most common record.
        agreeing: usize,
        /// The threshold.
        needed: usize,
    },
    /// Too few guardians answered the PIN evaluation correctly.
    #[error("{valid} valid guardian evaluations, {needed} needed")]
    TooFewEvaluations {
        /// Valid evaluations.
        valid: usize,
        /// The threshold.
        needed: usize,
    },
}
