//! A small reader for the crate's byte encodings (vault record, local verifier, reminder
//! state): every read is bounds-checked and fails with [`PinError::Truncated`].

use crate::{PinError, stretch::Argon2Params};

/// A cursor over untrusted bytes.
pub(crate) struct ByteReader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    /// Starts reading `bytes`; `what` names the encoding in errors.
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self {
            what,
            bytes,
            pos: 0,
        }
    }

    fn truncated(&self) -> PinError {
        PinError::Truncated {
            what: self.what,
            len: self.bytes.len(),
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], PinError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated())?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], PinError> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| self.truncated())
    }

    /// A byte.
    pub(crate) fn u8(&mut self) -> Result<u8, PinError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, PinError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, PinError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Fails with [`PinError::TrailingBytes`] if anything is left.
    pub(crate) fn finish(&self) -> Result<(), PinError> {
        let extra = self.bytes.len().saturating_sub(self.pos);
        if extra > 0 {
            return Err(PinError::TrailingBytes {
                what: self.what,
                extra,
            });
        }
        Ok(())
    }
}

/// Reads `m || t || p` (three big-endian `u32`) and checks them with
/// [`Argon2Params::check_accepted`].
pub(crate) fn read_params(r: &mut ByteReader<'_>) -> Result<Argon2Params, PinError> {
    let params = Argon2Params {
        memory_kib: r.u32()?,
        iterations: r.u32()?,
        lanes: r.u32()?,
    };
    params.check_accepted()?;
    Ok(params)
}

/// Writes `m || t || p` (three big-endian `u32`).
pub(crate) fn write_params(out: &mut Vec<u8>, params: &Argon2Params) {
    out.extend_from_slice(&params.memory_kib.to_be_bytes());
    out.extend_from_slice(&params.iterations.to_be_bytes());
    out.extend_from_slice(&params.lanes.to_be_bytes());
}
