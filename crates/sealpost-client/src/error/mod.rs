//! Typed errors. Display strings carry codes, sizes and counts, never key material, message
//! content or account ids (phone numbers).

mod kinds;

pub use kinds::{
    ConnectionError, ConnectionErrorKind, DatabaseError, DatabaseErrorKind, EndpointError,
    EndpointErrorKind, InternalError, KdfError, KdfErrorKind, ProtocolViolation, StreamError,
    StreamErrorKind, VaultUnavailable,
};
pub(crate) use kinds::{read_error, write_error};

use sealpost_session::{EncryptError, HandshakeError, PickleError};
use sealpost_wire::DecodeError;
use sealpost_wire::relay::ErrorCode;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying database failed (I/O, locking, SQL): its kind, with the database's
    /// own error as the source (whose message never contains stored values).
    #[error(transparent)]
    Database(DatabaseError),
    /// The store key (or passphrase) does not open this store.
    #[error("wrong store key or passphrase")]
    WrongKey,
    /// A sealed record did not authenticate: it was modified, moved to another row, or
    /// written under another key.
    #[error("record in table {table} failed authentication")]
    Authentication {
        /// The table of the record.
        table: &'static str,
    },
    /// A record authenticated but its plaintext does not decode.
    #[error("record in table {table} is malformed: {error}")]
    Malformed {
        /// The table of the record.
        table: &'static str,
        /// What was wrong.
        error: DecodeError,
    },
    /// A stored session or prekey state did not load.
    #[error("stored state did not load: {0}")]
    State(PickleError),
    /// The store was created by a newer (or unknown) version of this library.
    #[error("unsupported store format {0}")]
    UnsupportedFormat(u32),
    /// Key derivation from the passphrase failed (invalid parameters).
    #[error(transparent)]
    Kdf(KdfError),
    /// The runtime shut down while the store was being opened on a blocking thread.
    #[error("the runtime shut down while the store was opening")]
    Cancelled,
    /// The store is not in the state the operation needs.
    #[error("inconsistent store: {0}")]
    Inconsistent(&'static str),
    /// Another open of this store holds its lock (another process, or another
    /// `Store::open_sqlite` of the same file in this process): a store has one writer at a
    /// time (spec/client-store.md section 4.2).
    #[error("the store at {} is in use by another open (another process?)", .path.display())]
    InUse {
        /// The store's database file.
        path: std::path::PathBuf,
    },
}

impl StoreError {
    /// Whether retrying cannot help: everything except the database's own failures
    /// (I/O, locking) and a store in use.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Database(_) | Self::InUse { .. } | Self::Cancelled => false,
            Self::WrongKey
            | Self::Authentication { .. }
            | Self::Malformed { .. }
            | Self::State(_)
            | Self::UnsupportedFormat(_)
            | Self::Kdf(_)
            | Self::Inconsistent(_) => true,
        }
    }
}

/// Why a served device list was refused (spec/devices.md sections 4 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceListRefusal {
    /// It does not decode or verify for the account (signature, bindings, roles).
    #[error("the device list does not verify")]
    Invalid,
    /// It is older than the pinned list.
    #[error("device list rolled back from version {pinned} to {offered}")]
    RolledBack {
        /// The pinned version.
        pinned: u64,
        /// The offered version.
        offered: u64,
    },
    /// A different list with the pinned version.
    #[error("two different device lists with version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
    /// A device id was used again (or `next_device_id` went down).
    #[error("device id {device_id} reused")]
    DeviceIdReused {
        /// The id.
        device_id: u32,
    },
    /// A listed device kept its id but not its identity.
    #[error("device {device_id} changed its identity")]
    IdentityChanged {
        /// The device.
        device_id: u32,
    },
    /// The relay serves no list for an account that had one.
    #[error("the relay serves no device list for an account that had one")]
    Missing,
}

impl DeviceListRefusal {
    pub(crate) fn of(e: sealpost_devices::UpdateError) -> Option<Self> {
        use sealpost_devices::UpdateError as U;
        match e {
            U::AccountKeyChanged => None,
            U::RolledBack { pinned, offered } => Some(Self::RolledBack { pinned, offered }),
            U::Equivocation { version } => Some(Self::Equivocation { version }),
            U::DeviceIdReused { device_id } => Some(Self::DeviceIdReused { device_id }),
            U::IdentityChanged { device_id } => Some(Self::IdentityChanged { device_id }),
            // Kinds added later are refusals too.
            _ => Some(Self::Invalid),
        }
    }
}

/// Why linking failed (spec/devices.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkFailure {
    /// The invitation text is not `sealpost-link:` and 152 base64url characters.
    #[error("not a link invitation")]
    InvalidInvitation,
    /// The provisioning message does not open or does not name this device.
    #[error("the provisioning message is not valid for this device")]
    InvalidProvisioning,
    /// The list is full, or the device id is not on it, or the role is not allowed.
    #[error("the device list cannot take this change")]
    List,
    /// The provisioning id expired before the key holder answered.
    #[error("the link invitation expired")]
    Expired,
    /// A device's display name is empty, longer than 64 bytes, or has a control character
    /// (spec/devices.md section 3.1). Nothing was sent.
    #[error("a device name is 1 to 64 bytes of text without control characters")]
    InvalidName,
    /// The role cannot be given to that device: it holds the account key (there is one key
    /// holder, and it keeps its role), or it is of the other family than the account's list
    /// (spec/devices.md section 3.2). Nothing was sent.
    #[error("the role {role:?} is not allowed here")]
    RoleNotAllowed {
        /// The refused role.
        role: sealpost_devices::DeviceRole,
    },
    /// The device is not on this account's signed list.
    #[error("device {} is not on the account's device list", .device.0)]
    UnknownDevice {
        /// The device id asked for.
        device: sealpost_wire::DeviceId,
    },
}

impl LinkFailure {
    pub(crate) fn of(e: sealpost_devices::LinkError) -> Self {
        use sealpost_devices::LinkError as L;
        match e {
            L::InvalidInvitation => Self::InvalidInvitation,
            L::Decode(_) | L::NonContributory | L::Decrypt | L::NotListed | L::WrongKey => {
                Self::InvalidProvisioning
            }
            _ => Self::List,
        }
    }
}

/// Errors of the client SDK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The relay answered with an `Error` response (spec/relay.md section 6).
    #[error("relay error {code:?} (retry after {retry_after} s): {}", .detail.escape_debug())]
    Relay {
        /// The error code: the typed part, to match on. Unknown codes are
        /// [`ErrorCode::Other`] and never retried.
        code: ErrorCode,
        /// Seconds to wait before retrying (0 if not applicable).
        retry_after: u32,
        /// The relay's own human-readable text from the `Error` response (spec/relay.md
        /// section 6), for logs: never secret material per the protocol, but untrusted (it
        /// is printed escaped) and not meant to be matched on; `code` is.
        detail: String,
    },
    /// The local QUIC endpoint could not be set up or could not start a connection.
    #[error(transparent)]
    Endpoint(EndpointError),
    /// No relay address is configured ([`crate::ClientConfig::relays`] is empty).
    #[error("no relay address is configured")]
    NoRelayAddress,
    /// A relay host name did not resolve (or resolved to no address); the I/O error's kind.
    #[error("resolving the relay's host name failed: {0}")]
    Resolve(std::io::ErrorKind),
    /// The QUIC connection failed or was closed; TLS failures other than a pin mismatch
    /// surface here.
    #[error(transparent)]
    Connection(ConnectionError),
    /// The server's public key matches none of the configured pins (spec/relay.md section
    /// 1.1): a different server, or a relay that moved to a key the configuration does not
    /// list yet. Not transient: retrying cannot help until the pins are updated.
    #[error("the server's public key matches none of the {pinned} configured pins")]
    PinMismatch {
        /// How many pins were configured.
        pinned: usize,
    },
    /// A request or push stream failed.
    #[error(transparent)]
    Stream(StreamError),
    /// A request did not complete within the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// The relay sent something the protocol does not allow (a frame that does not decode,
    /// an unexpected response kind, bytes after a frame).
    #[error("protocol violation: {0}")]
    Protocol(ProtocolViolation),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A prekey bundle did not verify or a session could not be started.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A message could not be encrypted.
    #[error("encryption: {0}")]
    Encrypt(#[from] EncryptError),
    /// The store holds no registered device: call `Client::register` first
    /// ([`crate::Store::has_account`] tells beforehand).
    #[error("no registered device in this store")]
    NotRegistered,
    /// The store already holds a registered device.
    #[error("this store already holds a registered device")]
    AlreadyRegistered,
    /// A verification code must be exactly six ASCII digits.
    #[error("a verification code is six ASCII digits")]
    InvalidCode,
    /// The operation needs a connection to the relay and there is none right now.
    #[error("not connected to the relay")]
    Offline,
    /// The recipient has no device that can receive messages (none registered, or none with
    /// published prekeys).
    #[error("the recipient has no reachable device")]
    NoDevices,
    /// A session with this recipient device must be renewed after a store rollback
    /// ([`crate::ClientEvent::StoreRolledBack`]) and the relay had no prekey bundle for it
    /// (or one with another identity) yet. Retried.
    #[error("session with device {} awaits renewal", .device.0)]
    SessionRenewalPending {
        /// The recipient device.
        device: sealpost_wire::DeviceId,
    },
    /// A history part waits for the newly linked device it is for: the account's list does
    /// not name it yet, or it has not published prekeys yet (spec/client-store.md 6.2).
    /// Retried.
    #[error("linked device {} is not ready for its history yet", .device.0)]
    LinkedDeviceNotReady {
        /// The new device.
        device: sealpost_wire::DeviceId,
    },
    /// No identity is known for this device (no session has ever been made with it).
    #[error("unknown contact device")]
    UnknownContact,
    /// A message body exceeds what one message can carry.
    #[error("message body is {len} bytes, limit {max}")]
    MessageTooLong {
        /// Body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The conversation has no message with this id on this device
    /// (`Client::mark_read`).
    #[error("no message {message_id} in the conversation")]
    UnknownMessage {
        /// The id given.
        message_id: crate::content::MessageId,
    },
    /// More message ids than one deletion carries
    /// ([`crate::MAX_SYNC_DELETE_IDS`], spec/client-store.md 6.3); nothing was deleted.
    #[error("{count} message ids, limit {max}")]
    TooManyMessageIds {
        /// Ids given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The client has been shut down.
    #[error("client is shut down")]
    ShutDown,
    /// A background task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(InternalError),
    /// The account has a registration lock: registering needs the PIN (use
    /// [`crate::Client::register_with_pin`]) or waiting until the lock lapses.
    #[error(
        "the account has a registration lock: PIN required, {} attempts left, lapses in {} s",
        .0.attempts_remaining,
        .0.lapses_in.as_secs()
    )]
    RegistrationLocked(Box<crate::pin::RegistrationLock>),
    /// The PIN does not normalise to a valid PIN (too short, too long, control characters).
    #[error("invalid PIN: {0}")]
    InvalidPin(sealpost_pin::PinError),
    /// The PIN is wrong. Every wrong PIN counts at the guardians; at zero the vault is gone.
    #[error("wrong PIN: {attempts_remaining} attempts left")]
    WrongPin {
        /// Attempts left at the guardian closest to its limit.
        attempts_remaining: u16,
    },
    /// The PIN vault cannot be recovered: fewer than the threshold of guardians hold it
    /// (deleted at the attempt limit, never stored, or unreachable).
    #[error("PIN vault unavailable: {0}")]
    VaultUnavailable(VaultUnavailable),
    /// No PIN is set on this device.
    #[error("no PIN is set")]
    PinNotSet,
    /// The guardian configuration is invalid: it needs `1 <= threshold <= guardians <= 255`.
    #[error(
        "invalid guardian configuration: need 1 <= threshold ({threshold}) <= guardians ({guardians}) <= 255"
    )]
    InvalidGuardians {
        /// How many guardians were given.
        guardians: usize,
        /// The threshold given.
        threshold: u8,
    },
    /// A PIN computation failed.
    #[error("PIN protocol: {0}")]
    Pin(sealpost_pin::PinError),
    /// Sending to the account is held: the user verified it and one of its devices now
    /// has an identity the user has not approved (`Client::approve_identity`). The message
    /// stays queued.
    #[error("a verified contact's identity changed: approve the new identity to send")]
    UnapprovedIdentity,
    /// The safety number given does not match the contact's current identity.
    #[error("the safety number does not match")]
    SafetyNumberMismatch,
    /// The recipient's device list was refused ([`crate::ClientEvent::DeviceListRefused`]):
    /// nothing is encrypted to an account whose list cannot be trusted. Permanent for the
    /// message; the next message fetches the list again.
    #[error("device list refused: {0}")]
    DeviceListRefused(DeviceListRefusal),
    /// A linking step failed: the invitation or provisioning message is not valid, or the
    /// device list cannot take the device.
    #[error("linking failed: {0}")]
    Link(LinkFailure),
    /// This device does not hold the account key: only the key holder links and removes
    /// devices.
    #[error("this device does not hold the account key")]
    NotKeyHolder,
    /// The account is not a business account (its list is not of the business family, or
    /// it has none): it has no business profile to publish.
    #[error("not a business account")]
    NotBusiness,
    /// A business profile was refused (spec/business.md 3.3, 3.4): it does not verify under
    /// the account's key, or it is older than (or conflicts with) the pinned one. The pin
    /// is kept.
    #[error("business profile refused: {0}")]
    BusinessProfileRefused(sealpost_devices::ProfileError),
    /// A verification statement does not fit the business's profile (spec/business.md
    /// 4.2): another account, key or name, or a bad signature.
    #[error("verification statement refused: {0}")]
    VerificationRefused(sealpost_devices::VerificationError),
    /// A route was refused (spec/business.md 7.2): it does not verify against the
    /// business's list, or it is older than (or conflicts with) the route held.
    #[error("route refused: {0}")]
    RouteRefused(sealpost_devices::RouteError),
    /// The device is not on the account's list.
    #[error("device {0:?} is not on the account's list")]
    UnknownDevice(sealpost_wire::DeviceId),
    /// The conversation is too long for one handoff (spec/business.md 8.2: at most 64 parts
    /// of about 256 KiB each), or holds a message too long for a part on its own. Nothing
    /// was changed.
    #[error("the conversation is too long to hand off")]
    HandoffTooLarge,
    /// A note is empty, longer than 4096 bytes, or a handoff's note is longer (spec/business.md
    /// 8.2).
    #[error("note refused: empty or longer than 4096 bytes")]
    NoteRefused,
    /// An outgoing message failed transiently `attempts` times in a row
    /// ([`crate::MAX_SEND_ATTEMPTS`]) and was given up; `last` is the last failure.
    #[error("gave up after {attempts} attempts: {last}")]
    SendAttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether retrying the same operation later cannot succeed, so that an outgoing
    /// message that failed with this error is given up at once ([`crate::ClientEvent::SendFailed`];
    /// spec/client-store.md section 10).
    ///
    /// Permanent: every error about the message or its recipient (unknown account, no
    /// reachable device, a bundle that does not verify, a body too long), a stored record
    /// that does not authenticate or decode (reading it again gives the same bytes), the
    /// relay codes other than `RateLimited`, `QueueFull`, `Internal`, `Unavailable`,
    /// `Unauthenticated` and `DevicesChanging` (unknown codes included), and the exhausted
    /// attempts themselves. Transient: the connection (offline, closed, timed out, stream
    /// failures), a relay that misbehaved, the database's own failures (I/O, busy) and the
    /// six relay codes above. The match is exhaustive so that a new variant must be classified.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Relay { code, .. } => match code {
                ErrorCode::RateLimited
                | ErrorCode::QueueFull
                | ErrorCode::Internal
                | ErrorCode::Unavailable
                | ErrorCode::Unauthenticated
                | ErrorCode::DevicesChanging => false,
                ErrorCode::Malformed
                | ErrorCode::UnsupportedVersion
                | ErrorCode::TooLarge
                | ErrorCode::AlreadyAuthenticated
                | ErrorCode::InvalidAccount
                | ErrorCode::CodeInvalid
                | ErrorCode::CodeAttemptsExceeded
                | ErrorCode::InvalidSignature
                | ErrorCode::AuthFailed
                | ErrorCode::UnknownAccount
                | ErrorCode::MismatchedDevices
                | ErrorCode::InvalidPreKey
                | ErrorCode::TooManyPreKeys
                | ErrorCode::UnknownRequest
                | ErrorCode::RegistrationLocked
                | ErrorCode::CredentialInvalid
                | ErrorCode::NotGuardian
                | ErrorCode::VaultNotFound
                | ErrorCode::InvalidVault
                | ErrorCode::Other(_) => true,
                // Codes added to the wire crate later are unknown here: never retried.
                _ => true,
            },
            Self::Store(e) => e.is_permanent(),
            Self::Endpoint(_)
            | Self::Resolve(_)
            | Self::Connection(_)
            | Self::Stream(_)
            | Self::Timeout
            | Self::Protocol(_)
            | Self::Offline
            | Self::SessionRenewalPending { .. }
            | Self::LinkedDeviceNotReady { .. }
            | Self::Internal(_) => false,
            // Not an error of the message: it waits in the outbox until the user decides.
            Self::UnapprovedIdentity => false,
            Self::Handshake(_)
            | Self::SafetyNumberMismatch
            | Self::Encrypt(_)
            | Self::NotRegistered
            | Self::AlreadyRegistered
            | Self::InvalidCode
            | Self::NoDevices
            | Self::UnknownContact
            | Self::MessageTooLong { .. }
            | Self::UnknownMessage { .. }
            | Self::TooManyMessageIds { .. }
            | Self::ShutDown
            | Self::RegistrationLocked(_)
            | Self::InvalidPin(_)
            | Self::WrongPin { .. }
            | Self::VaultUnavailable(_)
            | Self::PinNotSet
            | Self::InvalidGuardians { .. }
            | Self::Pin(_)
            | Self::PinMismatch { .. }
            | Self::NoRelayAddress
            | Self::SendAttemptsExhausted { .. }
            | Self::DeviceListRefused(_)
            | Self::Link(_)
            | Self::NotKeyHolder
            | Self::NotBusiness
            | Self::BusinessProfileRefused(_)
            | Self::VerificationRefused(_)
            | Self::RouteRefused(_)
            | Self::HandoffTooLarge
            | Self::NoteRefused
            | Self::UnknownDevice(_) => true,
        }
    }

    /// Whether retrying later may succeed: the opposite of [`ClientError::is_permanent`].
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }

    /// Whether the error is about the connection rather than about a message: the outbox
    /// then waits for a connection instead of counting an attempt against the message.
    pub(crate) fn is_connectivity(&self) -> bool {
        match self {
            Self::Endpoint(_)
            | Self::Resolve(_)
            | Self::Connection(_)
            | Self::Stream(_)
            | Self::Timeout
            | Self::Offline
            | Self::ShutDown => true,
            Self::Relay { code, .. } => *code == ErrorCode::Unauthenticated,
            _ => false,
        }
    }

    /// The relay error code, if this is a relay error.
    pub fn relay_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Relay { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn protocol(what: ProtocolViolation) -> Self {
        Self::Protocol(what)
    }

    /// A connection error of the QUIC library.
    pub(crate) fn quic(e: quinn::ConnectionError) -> Self {
        Self::Connection(ConnectionError::quic(e))
    }

    /// An internal error from a task that did not complete.
    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        Self::Internal(InternalError::join(e))
    }

    /// The connection's kind, if this is a connection error.
    pub fn connection_kind(&self) -> Option<ConnectionErrorKind> {
        match self {
            Self::Connection(c) => Some(c.kind()),
            _ => None,
        }
    }
}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> Self {
        Self::Protocol(ProtocolViolation::Decode(e))
    }
}
