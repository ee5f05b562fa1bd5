//! Errors of starting and running the bridge ([`BridgeError`]); the HTTP API's errors are
//! `crate::api::ApiError`.

use std::path::PathBuf;

/// Why the bridge could not start or keep its files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// A file of the bridge could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret file exists but holds no usable secret (at least 32 printable characters).
    #[error("{} does not hold a valid secret (at least 32 printable characters)", path.display())]
    InvalidSecret {
        /// The file.
        path: PathBuf,
    },
    /// A cursor file exists but does not hold a number.
    #[error("{} does not hold a cursor (a number)", path.display())]
    InvalidCursorFile {
        /// The file.
        path: PathBuf,
    },
    /// The listen address is not a loopback address and binding it was not allowed.
    #[error(
        "refusing to listen on {addr}, which is not a loopback address: the API would be reachable from other machines (allow it explicitly if that is meant)"
    )]
    NotLoopback {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The webhook URL is not an `http` or `https` URL.
    #[error("the webhook URL must start with http:// or https://")]
    InvalidWebhookUrl,
}

impl BridgeError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}
