//! Sources: everything cbsnap snapshots is turned into one stream of [`Entry`]s.
//!
//! A directory walk ([`dir`]) and a tar stream ([`tar`], also the Docker archive
//! path) yield the same entries, so the ingest pipeline, the tree format and restore
//! do not know where data came from. A source pushes entries into a [`Sink`] in any
//! order; content comes either as a stream the sink must read now, or as a file the
//! sink may skip when the parent snapshot already has it unchanged.

pub mod dir;
pub mod prefetch;
pub mod sparse;
pub mod tar;

use std::io::Read;

use crate::error::Result;
use crate::tree::{Node, Xattrs};

/// One filesystem object, as a source sees it.
pub struct Entry {
    /// Path relative to the source root: components joined by `/`, no `.` or `..`,
    /// no leading or trailing `/`. Empty for the root itself.
    pub path: Vec<u8>,
    /// Metadata; `name` and `content` are filled in by the sink.
    pub node: Node,
    /// For a hard link found by a directory walk: (device, inode) of the file. The
    /// first entry with a key carries the content; later ones are links to it.
    pub link_key: Option<(u64, u64)>,
    /// For a hard link in a tar stream: the path of the earlier entry it links to.
    pub hardlink_to: Option<Vec<u8>>,
}

impl Entry {
    pub fn new(path: Vec<u8>, node: Node) -> Entry {
        Entry {
            path,
            node,
            link_key: None,
            hardlink_to: None,
        }
    }
}

/// Where a regular file's bytes come from.
pub enum Content<'a> {
    None,
    /// Bytes that must be consumed now (a tar entry).
    Stream(&'a mut dyn Read),
    /// A file of a live directory tree, opened only if its content is needed; the
    /// reader compares its `stat` before and after reading ([`dir::LiveFile`]).
    File(&'a dir::LiveFile<'a>),
}

pub trait Sink {
    fn entry(&mut self, e: Entry, content: Content<'_>) -> Result<()>;
    /// The source will yield nothing more below `path` (a directory walk calls this
    /// on leaving a directory, which lets the sink write its tree and free memory).
    fn dir_done(&mut self, _path: &[u8]) -> Result<()> {
        Ok(())
    }
    /// An entry could not be read (or not all of it: a directory that cannot be
    /// listed); it is left out of the snapshot and recorded.
    fn warn(&mut self, path: &[u8], error: String);
    /// An entry is yielded (or was) but cannot be stored exactly as the source has it:
    /// `why` says how it differs (it changed while read and is stored as read, POSIX
    /// ACLs are left out). Recorded, and told apart from what is left out. By default
    /// recorded as [`Sink::warn`] records.
    fn stored_inexactly(&mut self, path: &[u8], why: String) {
        self.warn(path, why)
    }
    /// The source leaves the entry at `path` out on purpose, and `why` says why (a
    /// directory walk leaves out the repository the snapshot writes to,
    /// [`dir::LeaveOut`]): it is not in the snapshot, and nothing went wrong. By
    /// default nothing is recorded.
    fn left_out(&mut self, _path: &[u8], _why: String) {}
    /// The extended attributes of the entry at `path`, if the sink already has them
    /// for the object `node` describes unchanged: the same kind, inode, size, mtime and
    /// ctime (seconds and nanoseconds) as in the parent snapshot. Setting or removing an
    /// xattr changes the ctime (`setxattr(2)`, `removexattr(2)`; `stat(2)`: "changed
    /// by writing or by setting inode information"), the same proof an unchanged
    /// file's content rests on. A source asks before it reads them; `None` (the
    /// default) means read them.
    fn unchanged_xattrs(&mut self, _path: &[u8], _node: &Node) -> Option<Xattrs> {
        None
    }
}

/// Normalize a path from an untrusted source. Leading `/` and `./` and empty or `.`
/// components are dropped; a `..` component makes the path unsafe (`None`).
pub fn normalize_path(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return None,
            c => {
                if c.contains(&0) {
                    return None;
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Some(out)
}

/// A sink that passes everything on to `inner`, showing each entry to `on_entry`
/// first: the newest mtime of an imported tar (the `snapshot --tar FILE --time`
/// hint), or a test's action at a point of the walk.
pub struct Tap<'s, F: FnMut(&Entry)> {
    inner: &'s mut dyn Sink,
    on_entry: F,
}

impl<'s, F: FnMut(&Entry)> Tap<'s, F> {
    /// Wrap `inner`.
    pub fn new(inner: &'s mut dyn Sink, on_entry: F) -> Tap<'s, F> {
        Tap { inner, on_entry }
    }
}

impl<F: FnMut(&Entry)> Sink for Tap<'_, F> {
    fn entry(&mut self, e: Entry, content: Content<'_>) -> Result<()> {
        (self.on_entry)(&e);
        self.inner.entry(e, content)
    }
    fn dir_done(&mut self, path: &[u8]) -> Result<()> {
        self.inner.dir_done(path)
    }
    fn warn(&mut self, path: &[u8], error: String) {
        self.inner.warn(path, error)
    }
    fn stored_inexactly(&mut self, path: &[u8], why: String) {
        self.inner.stored_inexactly(path, why)
    }
    fn left_out(&mut self, path: &[u8], why: String) {
        self.inner.left_out(path, why)
    }
    fn unchanged_xattrs(&mut self, path: &[u8], node: &Node) -> Option<Xattrs> {
        self.inner.unchanged_xattrs(path, node)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn normalize() {
        assert_eq!(normalize_path(b"./a//b/").unwrap(), b"a/b");
        assert_eq!(normalize_path(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize_path(b"./").unwrap(), b"");
        assert!(normalize_path(b"a/../../etc").is_none());
        assert!(normalize_path(b"..").is_none());
    }
}
