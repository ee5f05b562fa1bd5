//! A bounds-checked big-endian reader and writer.

use crate::DecodeError;

/// Reads fixed-layout big-endian fields from a byte slice, never panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Reads `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated {
                offset: self.pos,
                needed: n,
            })?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated {
            offset: self.pos,
            needed: n,
        })?;
        self.pos = end;
        Ok(out)
    }

    /// Reads everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a boolean encoded as 0x00 or 0x01; anything else is an error.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue(what)),
        }
    }

    /// Reads a u32 length prefix, checks it against `max`, then reads that many bytes.
    pub fn var_bytes32(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.bytes(len)
    }

    /// Reads a u16 length prefix, checks it against `max`, then reads that many bytes.
    pub fn var_bytes16(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.bytes(len)
    }

    /// Reads a u8 length prefix, checks it against `max`, then reads that many bytes.
    pub fn var_bytes8(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u8()?);
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.bytes(len)
    }

    /// Fails unless every byte has been read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends big-endian fields to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends 0x01 for true, 0x00 for false.
    pub fn flag(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Appends a u32 length prefix and the bytes. Callers keep lengths within their
    /// documented limits (all far below 4 GiB); a longer slice is truncated to `u32::MAX`.
    pub fn var_bytes32(&mut self, b: &[u8]) -> &mut Self {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.bytes(b.get(..len as usize).unwrap_or(b))
    }

    /// Appends a u16 length prefix and the bytes (at most 65535 are written).
    pub fn var_bytes16(&mut self, b: &[u8]) -> &mut Self {
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.bytes(b.get(..usize::from(len)).unwrap_or(b))
    }

    /// Appends a u8 length prefix and the bytes (at most 255 are written).
    pub fn var_bytes8(&mut self, b: &[u8]) -> &mut Self {
        let len = u8::try_from(b.len()).unwrap_or(u8::MAX);
        self.u8(len);
        self.bytes(b.get(..usize::from(len)).unwrap_or(b))
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoding.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The encoding so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(
            r.u16(),
            Err(DecodeError::Truncated {
                offset: 2,
                needed: 2
            })
        );
        assert_eq!(r.u8().unwrap(), 3);
        r.finish().unwrap();
        let mut r = Reader::new(&[0, 0, 0, 9, 1]);
        assert_eq!(
            r.var_bytes32("x", 4),
            Err(DecodeError::TooLong {
                what: "x",
                len: 9,
                max: 4
            })
        );
        let mut r = Reader::new(&[2]);
        assert_eq!(r.flag("f"), Err(DecodeError::InvalidValue("f")));
        let mut r = Reader::new(&[0xff; 4]);
        assert!(r.bytes(usize::MAX).is_err());
    }
}
