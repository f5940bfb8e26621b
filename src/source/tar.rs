//! Tar source: reads a tar stream (plain, gzip or zstd, detected by content) into the
//! same entries as a directory walk. This is how `docker export`-style archives, the
//! Docker archive API and the old `tar czf` backups come in.
//!
//! The stream is untrusted: paths are normalized and entries that would escape the
//! root (`..`) are refused and recorded; a stream that ends early — inside an entry
//! or without its end-of-archive block — is an error, and no snapshot is committed.

use std::io::{self, BufRead, BufReader, Read};

use ::tar::{Archive, EntryType};

use crate::error::{Error, Result};
use crate::source::sparse::{SparseError, SparseInfo};
use crate::source::{normalize_path, Content, Entry, Sink};
use crate::tree::{Node, NodeKind, Xattrs};

/// Remembers whether the last 512-byte block read was all zeros: the tar crate stops
/// at the first zero block, and a stream that ends without one was cut short.
struct Tail<R> {
    inner: R,
    pos: u64,
    last_block_zero: bool,
    block: Vec<u8>,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut data = &buf[..n];
        self.pos += n as u64;
        // Complete the block carried over from the previous read.
        if !self.block.is_empty() {
            let take = (512 - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == 512 {
                self.last_block_zero = self.block.iter().all(|&x| x == 0);
                self.block.clear();
            }
        }
        // Only the last whole block of this read matters.
        let whole = data.len() / 512 * 512;
        if whole > 0 {
            self.last_block_zero = data[whole - 512..whole].iter().all(|&x| x == 0);
        }
        self.block.extend_from_slice(&data[whole..]);
        Ok(n)
    }
}

/// Wrap `r` in a decompressor chosen by its first bytes.
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

/// Read a tar stream and push its entries into `sink`. `strip` is a path prefix to
/// remove from every entry name (e.g. the directory name Docker's archive API puts
/// in front).
pub fn read_tar(r: impl Read, strip: &[u8], sink: &mut dyn Sink) -> Result<()> {
    let bad = |e: io::Error| {
        Error::Source(format!(
            "the tar stream is damaged or truncated: {e}. Nothing was committed; check the archive (`tar -tvf`), then retry."
        ))
    };
    let inner = decompress(r).map_err(bad)?;
    let mut tail = Tail {
        inner,
        pos: 0,
        last_block_zero: false,
        block: Vec::with_capacity(512),
    };
    let mut ar = Archive::new(&mut tail);
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        // PAX records first: they can rename the member (GNU sparse) and carry
        // metadata the header cannot hold.
        let mut sparse = SparseInfo::default();
        let mut pax = Pax::default();
        let mut sparse_err: Option<SparseError> = None;
        if let Some(exts) = entry.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let (key, value) = (ext.key_bytes(), ext.value_bytes());
                match sparse.record(key, value) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        sparse_err.get_or_insert(e);
                        continue;
                    }
                }
                pax.record(key, value);
            }
        }
        let raw_path = match &sparse.name {
            Some(name) => name.clone(),
            None => entry.path_bytes().into_owned(),
        };
        let Some(mut path) = normalize_path(&raw_path) else {
            sink.warn(
                &raw_path,
                "unsafe path (contains `..`); entry skipped".into(),
            );
            continue;
        };
        if !strip.is_empty() {
            if path == strip {
                path.clear();
            } else if path.starts_with(strip) && path.get(strip.len()) == Some(&b'/') {
                path.drain(..=strip.len());
            }
        }
        let h = entry.header();
        let et = h.entry_type();
        let kind = match et {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse | EntryType::Link => {
                NodeKind::File
            }
            EntryType::Directory => NodeKind::Dir,
            EntryType::Symlink => NodeKind::Symlink,
            EntryType::Fifo => NodeKind::Fifo,
            EntryType::Char => NodeKind::CharDev,
            EntryType::Block => NodeKind::BlockDev,
            other => {
                sink.warn(
                    &path,
                    format!("tar entry type {other:?} is not supported; skipped"),
                );
                continue;
            }
        };
        let mut n = Node::new(Vec::new(), kind);
        n.mode = h.mode().map_err(bad)? & 0o7777;
        // Linux ids are 32 bits; a larger one must not wrap into another owner.
        let (Ok(uid), Ok(gid)) = (
            u32::try_from(h.uid().map_err(bad)?),
            u32::try_from(h.gid().map_err(bad)?),
        ) else {
            sink.warn(
                &path,
                "owner id past 32 bits, which no Linux file can have; entry skipped".into(),
            );
            continue;
        };
        n.uid = uid;
        n.gid = gid;
        n.user = h.username_bytes().map(|b| b.to_vec()).unwrap_or_default();
        n.group = h.groupname_bytes().map(|b| b.to_vec()).unwrap_or_default();
        n.mtime = h.mtime().map_err(bad)? as i64;
        let unstored = std::mem::take(&mut pax.unstored);
        if let Err(why) = pax.apply(&mut n) {
            sink.warn(&path, format!("{why}; entry skipped"));
            continue;
        }
        if !unstored.is_empty() {
            sink.stored_inexactly(
                &path,
                format!(
                    "PAX records {} (POSIX ACLs) are not stored; the entry is stored without them",
                    unstored.join(", ")
                ),
            );
        }
        if matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) {
            // Read as device 0:0 they would restore as another device.
            match (h.device_major(), h.device_minor()) {
                (Ok(major), Ok(minor)) => {
                    n.rdev_major = major.unwrap_or(0);
                    n.rdev_minor = minor.unwrap_or(0);
                }
                (Err(e), _) | (_, Err(e)) => {
                    sink.warn(
                        &path,
                        format!("device numbers cannot be read ({e}); entry skipped"),
                    );
                    continue;
                }
            }
        }
        if kind == NodeKind::Symlink {
            n.target = entry
                .link_name_bytes()
                .map(|b| b.into_owned())
                .unwrap_or_default();
        }
        let link = if et == EntryType::Link {
            entry
                .link_name_bytes()
                .and_then(|b| normalize_path(&b))
                .map(|mut p| {
                    if !strip.is_empty()
                        && p.starts_with(strip)
                        && p.get(strip.len()) == Some(&b'/')
                    {
                        p.drain(..=strip.len());
                    }
                    p
                })
        } else {
            None
        };
        if path.is_empty() {
            if kind == NodeKind::Dir {
                sink.entry(Entry::new(path, n), Content::None)?;
            }
            continue;
        }
        let mut e = Entry::new(path, n);
        if et == EntryType::Link {
            match link {
                Some(t) => e.hardlink_to = Some(t),
                None => {
                    sink.warn(&e.path, "hard link with an unsafe target; skipped".into());
                    continue;
                }
            }
            sink.entry(e, Content::None)?;
        } else if kind == NodeKind::File {
            if let Some(err) = sparse_err {
                sink.warn(&e.path, format!("{err}; entry skipped"));
                io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
                continue;
            }
            let mut expanded;
            let content: &mut dyn Read = if sparse.is_sparse() {
                match sparse.expand(&mut entry) {
                    Ok(x) => {
                        expanded = x;
                        &mut expanded
                    }
                    Err(err) => {
                        sink.warn(&e.path, format!("{err}; entry skipped"));
                        io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
                        continue;
                    }
                }
            } else {
                &mut entry
            };
            // A read error here is the stream's (the sink only reads the entry).
            sink.entry(e, Content::Stream(content))
                .map_err(|err| match err {
                    Error::Io { context, source } => bad(io::Error::new(
                        source.kind(),
                        format!("{context}: {source}"),
                    )),
                    other => other,
                })?;
            // Anything the sink did not read is drained so the stream stays aligned.
            io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
        } else {
            sink.entry(e, Content::None)?;
        }
    }
    if !tail.last_block_zero {
        return Err(bad(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ends without the end-of-archive marker",
        )));
    }
    Ok(())
}

/// Why the PAX records of an entry cannot be stored; the entry is skipped with a
/// warning naming it.
#[derive(Debug, thiserror::Error)]
enum PaxError {
    /// A record whose value does not parse (a number that is not one).
    #[error("PAX record {key}={value} is malformed")]
    Malformed { key: String, value: String },
    /// An owner id beyond 32 bits: neither storable nor restorable on Linux.
    #[error("owner id {0} does not fit 32 bits")]
    OwnerId(u64),
}

/// Metadata a member's PAX records carry beyond its header (POSIX.1-2001 `pax`
/// "extended header keywords"; `SCHILY.xattr.*` as GNU tar and bsdtar write them).
#[derive(Default)]
struct Pax {
    mtime: Option<(i64, u32)>,
    uid: Option<u64>,
    gid: Option<u64>,
    uname: Option<Vec<u8>>,
    gname: Option<Vec<u8>>,
    xattrs: Xattrs,
    bad: Option<PaxError>,
    /// Records `tar -x` would apply that cbsnap does not store (POSIX ACLs as text,
    /// whose user and group names only resolve on the host that extracts them).
    unstored: Vec<String>,
}

impl Pax {
    fn record(&mut self, key: &[u8], value: &[u8]) {
        let num = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        match key {
            b"mtime" => self.mtime = parse_pax_time(value),
            b"uid" => self.uid = num(),
            b"gid" => self.gid = num(),
            b"uname" => self.uname = Some(value.to_vec()),
            b"gname" => self.gname = Some(value.to_vec()),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    self.xattrs.push((name.to_vec(), value.to_vec()));
                } else if key.starts_with(b"SCHILY.acl.") {
                    self.unstored
                        .push(String::from_utf8_lossy(key).into_owned());
                }
                return;
            }
        }
        let ok = match key {
            b"mtime" => self.mtime.is_some(),
            b"uid" => self.uid.is_some(),
            b"gid" => self.gid.is_some(),
            _ => true,
        };
        if !ok && self.bad.is_none() {
            self.bad = Some(PaxError::Malformed {
                key: String::from_utf8_lossy(key).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
            });
        }
    }

    /// Overlay the records on a node built from the header. An id beyond 32 bits
    /// cannot be stored (nor restored on Linux), so it is an error, never truncated.
    fn apply(self, n: &mut Node) -> std::result::Result<(), PaxError> {
        if let Some(bad) = self.bad {
            return Err(bad);
        }
        if let Some((s, ns)) = self.mtime {
            n.mtime = s;
            n.mtime_nsec = ns;
        }
        for (id, slot) in [(self.uid, &mut n.uid), (self.gid, &mut n.gid)] {
            if let Some(v) = id {
                *slot = u32::try_from(v).map_err(|_| PaxError::OwnerId(v))?;
            }
        }
        if let Some(u) = self.uname {
            n.user = u;
        }
        if let Some(g) = self.gname {
            n.group = g;
        }
        if !self.xattrs.is_empty() {
            n.xattrs = self.xattrs;
            n.xattrs.sort();
            // The last record of a name wins, as in a PAX header.
            n.xattrs.reverse();
            n.xattrs.dedup_by(|a, b| a.0 == b.0);
            n.xattrs.reverse();
        }
        Ok(())
    }
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.123456789`,
/// `-1.25` (1.25 s before the epoch: seconds -2, nanoseconds 750000000).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let negative = secs.starts_with('-');
    let secs: i64 = secs.parse().ok()?;
    let mut ns = 0u32;
    if !frac.is_empty() {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().take(9).collect();
        ns = format!("{digits:0<9}").parse().ok()?;
    }
    if negative && ns > 0 {
        return Some((secs.checked_sub(1)?, 1_000_000_000 - ns));
    }
    Some((secs, ns))
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_time() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
