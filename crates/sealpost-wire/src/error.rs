/// Why a byte string is not a valid Sealpost encoding. Carries sizes and tags, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field of `needed` bytes at `offset`.
    #[error("truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needed.
        needed: usize,
    },
    /// Bytes were left after a complete encoding.
    #[error("{0} trailing bytes after a complete encoding")]
    TrailingBytes(usize),
    /// The version byte is not one this implementation speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The type byte is unknown.
    #[error("unknown {what} type {value}")]
    UnknownType {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u8,
    },
    /// A length exceeds its limit.
    #[error("{what} is {len} bytes, limit {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// The declared or actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A count of items (keys, ids, devices) exceeds its limit.
    #[error("{count} {what}, limit {max}")]
    TooMany {
        /// Which items.
        what: &'static str,
        /// The declared count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A length is below its minimum.
    #[error("{what} is {len} bytes, minimum {min}")]
    TooShort {
        /// Which field.
        what: &'static str,
        /// The declared or actual length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A field holds a value outside its domain (e.g. a flag byte that is not 0 or 1).
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
}
