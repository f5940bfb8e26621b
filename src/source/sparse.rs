//! GNU tar's PAX sparse members, expanded back into the file `tar -x` writes.
//!
//! `tar --sparse --format=posix` stores only a sparse file's data segments and
//! describes where they go in one of three dialects (GNU tar manual, "Storing Sparse
//! Files"):
//!
//! - **0.0**: PAX records `GNU.sparse.size`, then `GNU.sparse.offset` /
//!   `GNU.sparse.numbytes` repeated, one pair per segment; the header name is real.
//! - **0.1**: `GNU.sparse.map` = `offset,numbytes,offset,numbytes,…`; the real name is
//!   in `GNU.sparse.name`, the header says `…/GNUSparseFile.PID/name`.
//! - **1.0**: `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.realsize`,
//!   `GNU.sparse.name`; the map is at the start of the member's data as decimal
//!   numbers, one per line (the count, then offset and numbytes per segment), padded
//!   with NULs to a multiple of 512 bytes.
//!
//! The old GNU format (`--format=gnu`, type `S`) is expanded by the `tar` crate itself.
//! Segments must be in order, not overlap and lie within the real size; a member
//! whose map breaks that is not stored and is named in the snapshot's errors.

use std::io::{self, Read};

/// Segments must stay below this count: 1.0 maps come from the data itself, and a
/// hostile stream must not make us allocate without bound.
const MAX_SEGMENTS: usize = 1 << 20;

/// The PAX records of one member that describe sparseness.
#[derive(Debug, Default)]
pub struct SparseInfo {
    /// `GNU.sparse.size` / `GNU.sparse.realsize`.
    pub real_size: Option<u64>,
    /// `GNU.sparse.name`: the real path of a 0.1 or 1.0 member.
    pub name: Option<Vec<u8>>,
    /// 0.0 offsets and sizes in record order, or the parsed 0.1 map.
    map: Vec<u64>,
    /// `GNU.sparse.major=1`: the map precedes the data.
    map_in_data: bool,
}

/// A sparse map or record that does not describe a file.
#[derive(Debug, thiserror::Error)]
#[error("GNU sparse member with a malformed map: {0}")]
pub struct SparseError(pub String);

impl SparseInfo {
    /// Take one PAX record; returns whether it was a sparse one.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<bool, SparseError> {
        let num = || -> Result<u64, SparseError> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    SparseError(format!(
                        "{} is not a number",
                        String::from_utf8_lossy(value)
                    ))
                })
        };
        match key {
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => self.real_size = Some(num()?),
            b"GNU.sparse.name" => self.name = Some(value.to_vec()),
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                self.push(num()?)?;
            }
            b"GNU.sparse.map" => {
                for v in value.split(|b| *b == b',') {
                    let n = std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or_else(|| SparseError("GNU.sparse.map holds a non-number".into()))?;
                    self.push(n)?;
                }
            }
            b"GNU.sparse.major" => self.map_in_data = num()? == 1,
            b"GNU.sparse.minor" | b"GNU.sparse.numblocks" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn push(&mut self, n: u64) -> Result<(), SparseError> {
        if self.map.len() >= 2 * MAX_SEGMENTS {
            return Err(SparseError("too many segments".into()));
        }
        self.map.push(n);
        Ok(())
    }

    /// Whether the member is a sparse one (it has a real size).
    pub fn is_sparse(&self) -> bool {
        self.real_size.is_some()
    }

    /// A reader of the expanded file over `data` (the member's stored bytes). For a
    /// 1.0 member the map is read from `data` first.
    pub fn expand<R: Read>(mut self, mut data: R) -> Result<Expand<R>, SparseError> {
        let real = self
            .real_size
            .ok_or_else(|| SparseError("no real size".into()))?;
        if self.map_in_data {
            self.map = read_data_map(&mut data)?;
        }
        if !self.map.len().is_multiple_of(2) {
            return Err(SparseError("an offset without a size".into()));
        }
        let mut segs: Vec<(u64, u64)> = self.map.chunks(2).map(|p| (p[0], p[1])).collect();
        let mut end = 0u64;
        for &(off, len) in &segs {
            let stop = off
                .checked_add(len)
                .ok_or_else(|| SparseError("segment overflows".into()))?;
            if off < end || stop > real {
                return Err(SparseError(format!(
                    "segment {off}+{len} overlaps another or ends past the size {real}"
                )));
            }
            end = stop;
        }
        segs.reverse();
        Ok(Expand {
            data,
            segs,
            pos: 0,
            real,
        })
    }
}

/// Read a 1.0 map: decimal numbers, one per line, padded to 512 bytes.
fn read_data_map(r: &mut impl Read) -> Result<Vec<u64>, SparseError> {
    let io = |e: io::Error| SparseError(format!("reading the map: {e}"));
    let mut consumed = 0usize;
    let mut line = Vec::new();
    let mut next = |r: &mut dyn Read, consumed: &mut usize| -> Result<u64, SparseError> {
        line.clear();
        let mut b = [0u8; 1];
        loop {
            r.read_exact(&mut b).map_err(io)?;
            *consumed += 1;
            if b[0] == b'\n' {
                break;
            }
            if line.len() > 20 {
                return Err(SparseError("a map number is too long".into()));
            }
            line.push(b[0]);
        }
        std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| SparseError("the map holds a non-number".into()))
    };
    let count = next(r, &mut consumed)? as usize;
    if count > MAX_SEGMENTS {
        return Err(SparseError(format!("{count} segments are too many")));
    }
    let mut map = Vec::with_capacity(2 * count);
    for _ in 0..2 * count {
        map.push(next(r, &mut consumed)?);
    }
    let pad = (512 - consumed % 512) % 512;
    io::copy(&mut r.take(pad as u64), &mut io::sink()).map_err(io)?;
    Ok(map)
}

/// The expanded content of a sparse member: zeros for holes, stored bytes for
/// segments, `real` bytes in all. Stored data ending early is an `UnexpectedEof`.
pub struct Expand<R> {
    data: R,
    /// Remaining segments, the next one last.
    segs: Vec<(u64, u64)>,
    pos: u64,
    real: u64,
}

impl<R: Read> Read for Expand<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.real || buf.is_empty() {
            return Ok(0);
        }
        let (n, from_data) = match self.segs.last() {
            Some(&(off, len)) if self.pos >= off => {
                let left = off + len - self.pos;
                if left == 0 {
                    self.segs.pop();
                    return self.read(buf);
                }
                (left.min(buf.len() as u64) as usize, true)
            }
            Some(&(off, _)) => ((off - self.pos).min(buf.len() as u64) as usize, false),
            None => ((self.real - self.pos).min(buf.len() as u64) as usize, false),
        };
        if from_data {
            let got = self.data.read(&mut buf[..n])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sparse member's data ends before its map does",
                ));
            }
            self.pos += got as u64;
            Ok(got)
        } else {
            buf[..n].fill(0);
            self.pos += n as u64;
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(info: SparseInfo, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        info.expand(data).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn map_0_1_expands_holes() {
        let mut i = SparseInfo::default();
        assert!(i.record(b"GNU.sparse.size", b"10").unwrap());
        i.record(b"GNU.sparse.map", b"2,3,8,1,10,0").unwrap();
        assert_eq!(expand(i, b"abcd"), b"\0\0abc\0\0\0d\0");
    }

    #[test]
    fn map_1_0_is_read_from_the_data() {
        let mut i = SparseInfo::default();
        i.record(b"GNU.sparse.major", b"1").unwrap();
        i.record(b"GNU.sparse.realsize", b"6").unwrap();
        let mut data = b"1\n4\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"xy");
        assert_eq!(expand(i, &data), b"\0\0\0\0xy");
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let mut i = SparseInfo::default();
        i.record(b"GNU.sparse.size", b"10").unwrap();
        i.record(b"GNU.sparse.map", b"4,4,2,1").unwrap();
        assert!(i.expand(&b"abcde"[..]).is_err());
    }
}
