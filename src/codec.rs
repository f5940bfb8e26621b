//! Little-endian binary encoding helpers shared by the pack trailer and tree blobs.
//!
//! Every integer on disk is little-endian with a fixed width; variable-length byte
//! strings carry a length prefix whose width is part of the field's definition in
//! `docs/FORMAT.md`. The reader never trusts a length: every read is bounds-checked so
//! that a corrupt or hostile blob yields [`DecodeError`], never a panic or a huge
//! allocation.

use crate::id::Id;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("malformed {what}: {detail}")]
pub struct DecodeError {
    pub what: &'static str,
    pub detail: String,
}

#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { buf: Vec::new() }
    }
    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn id(&mut self, id: &Id) {
        self.buf.extend_from_slice(&id.0);
    }
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Bytes with a u8 length prefix; longer input is an encoder bug.
    pub fn bytes8(&mut self, b: &[u8]) {
        let n = u8::try_from(b.len()).expect("field limited to 255 bytes");
        self.u8(n);
        self.raw(b);
    }
    /// Bytes with a u16 length prefix.
    pub fn bytes16(&mut self, b: &[u8]) {
        let n = u16::try_from(b.len()).expect("field limited to 65535 bytes");
        self.u16(n);
        self.raw(b);
    }
    /// Bytes with a u32 length prefix.
    pub fn bytes32(&mut self, b: &[u8]) {
        let n = u32::try_from(b.len()).expect("field limited to 4 GiB");
        self.u32(n);
        self.raw(b);
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }

    pub fn err(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            what: self.what,
            detail: detail.into(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.err(format!(
                "needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn id(&mut self) -> Result<Id, DecodeError> {
        Ok(Id(self.array()?))
    }
    pub fn bytes8(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    pub fn bytes16(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    pub fn bytes32(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Every file cbsnap writes starts with an 8-byte magic and a u32 LE format version.
pub const HEADER_LEN: usize = 12;

pub fn header(magic: &[u8; 8], version: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&version.to_le_bytes());
    h
}

/// Check a file header; returns the version it carries.
pub fn check_header(buf: &[u8], magic: &[u8; 8], what: &'static str) -> Result<u32, DecodeError> {
    if buf.len() < HEADER_LEN || &buf[..8] != magic {
        return Err(DecodeError {
            what,
            detail: format!(
                "does not start with the magic {:?}; it is not a cbsnap {what}",
                String::from_utf8_lossy(magic)
            ),
        });
    }
    Ok(u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]))
}

/// The checksum of a small JSON file (lock files, the quiesce state): BLAKE3, in hex,
/// of the compact JSON serialization of the value with its checksum field empty.
/// Serialization of a struct is deterministic (fields in declaration order), so a
/// reader recomputes it from what it parsed; any changed value (a flipped digit of a
/// pid) no longer matches.
pub fn json_check<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("value serializes");
    blake3::hash(&bytes).to_hex().to_string()
}
