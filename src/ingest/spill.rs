//! Leaf nodes of a tar import kept on disk instead of in memory (issue 9).
//!
//! A tar stream may name its entries in any order, so no directory is complete before
//! the stream ends; holding every entry until then costs hundreds of bytes each, and
//! gigabytes for a stream of millions. Directories and symlinks stay in memory (they
//! decide how later paths resolve, as in `tar -x`); the other nodes ("leaves") are
//! written, once more than a limit of them is held, as one sorted *run* to an
//! anonymous temporary file ([`tempfile::tempfile`], removed by the OS on every path
//! out, a crash included). At the end the runs are merged ([`Merge`]) straight into
//! the tree writer, newest run first for a name (a repeated path in a tar replaces
//! the earlier entry).
//!
//! A record is `key_len u32 || key || node_len u32 || node`, integers little-endian.
//! The node is its tree encoding ([`tree::encode_node`]); the key is the record's
//! resolved path with NUL between components ([`key`]). NUL sorts below every byte
//! a name can hold, so byte order of keys is the order a depth-first walk of the
//! directories in name order meets the entries, the order the trees are written in.
//! A sparse index (every [`SPARSE`]th key of a run) finds a path without reading the
//! whole run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use crate::codec::Writer;
use crate::error::{Error, Result};
use crate::tree::{self, Node};

/// Records between two keys of a run's sparse index.
const SPARSE: usize = 64;
/// Bytes a run cursor reads at a time while merging.
const READ_BUF: usize = 32 << 10;
/// Bytes read at a time to look up one key (about [`SPARSE`] small records).
const LOOKUP_BUF: usize = 8 << 10;

/// The key of `name` in the directory whose key prefix is `dir` (see [`dir_prefix`]).
pub(super) fn key(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(dir.len() + name.len());
    k.extend_from_slice(dir);
    k.extend_from_slice(name);
    k
}

/// The key prefix of the entries of the directory at `comps`: each component
/// followed by NUL (empty for the root).
pub(super) fn dir_prefix<C: AsRef<[u8]>>(comps: &[C]) -> Vec<u8> {
    let mut p = Vec::new();
    for c in comps {
        p.extend_from_slice(c.as_ref());
        p.push(0);
    }
    p
}

/// One sorted run: `[start, end)` of the file, and every [`SPARSE`]th key with its
/// record's offset.
struct Run {
    start: u64,
    end: u64,
    sparse: Vec<(Vec<u8>, u64)>,
    /// Its largest key (the smallest is the first sparse key).
    last: Vec<u8>,
}

/// The spilled leaves of one import.
pub(super) struct Spill {
    file: File,
    /// The file's length (the next run starts here).
    len: u64,
    runs: Vec<Run>,
}

fn spill_error(e: std::io::Error) -> Error {
    Error::io(
        format!(
            "write tar entries to a temporary file in {} (a large tar import keeps its entries there until the stream ends; free space there or point TMPDIR at a file system with more room, then retry)",
            std::env::temp_dir().display()
        ),
        e,
    )
}

impl Spill {
    pub(super) fn new() -> Result<Spill> {
        Ok(Spill {
            file: tempfile::tempfile().map_err(spill_error)?,
            len: 0,
            runs: Vec::new(),
        })
    }

    /// The number of runs written so far; a run's index is its age (higher: newer).
    pub(super) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Write one run: `records` as (key, encoded node), in ascending key order, each
    /// key once.
    pub(super) fn write_run(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let start = self.len;
        let mut pos = start;
        let mut sparse = Vec::with_capacity(records.len() / SPARSE + 1);
        // Written at the end of the file through `write_at`-free appends: the file is
        // only ever read with positioned reads, so its offset is ours.
        let mut w = BufWriter::with_capacity(1 << 16, &self.file);
        for (i, (k, node)) in records.iter().enumerate() {
            debug_assert!(i == 0 || records[i - 1].0 < *k, "run not sorted");
            if i % SPARSE == 0 {
                sparse.push((k.clone(), pos));
            }
            w.write_all(&(k.len() as u32).to_le_bytes())
                .and_then(|_| w.write_all(k))
                .and_then(|_| w.write_all(&(node.len() as u32).to_le_bytes()))
                .and_then(|_| w.write_all(node))
                .map_err(spill_error)?;
            pos += 8 + k.len() as u64 + node.len() as u64;
        }
        w.flush().map_err(spill_error)?;
        drop(w);
        self.len = pos;
        let last = records.last().map(|(k, _)| k.clone()).unwrap_or_default();
        self.runs.push(Run {
            start,
            end: pos,
            sparse,
            last,
        });
        Ok(())
    }

    /// A cursor on run `r` at its first record whose key is at least `from`.
    fn seek(&self, r: usize, from: &[u8], chunk: usize) -> Result<Cursor<'_>> {
        let run = &self.runs[r];
        // The last sparse key not above `from`: the record sought is at or after it.
        let i = run.sparse.partition_point(|(k, _)| k.as_slice() <= from);
        let pos = if i == 0 {
            run.start
        } else {
            run.sparse[i - 1].1
        };
        let mut c = Cursor {
            file: &self.file,
            run: r,
            pos,
            end: run.end,
            buf: Vec::new(),
            at: 0,
            chunk,
            head: None,
        };
        c.advance()?;
        while c.head.as_ref().is_some_and(|(k, _)| k.as_slice() < from) {
            c.advance()?;
        }
        Ok(c)
    }

    /// The newest spilled record of `key`: its run and encoded node.
    pub(super) fn find(&self, key: &[u8]) -> Result<Option<(usize, Vec<u8>)>> {
        for r in (0..self.runs.len()).rev() {
            let run = &self.runs[r];
            if run
                .sparse
                .first()
                .is_none_or(|(first, _)| key < first.as_slice())
                || key > run.last.as_slice()
            {
                continue;
            }
            let c = self.seek(r, key, LOOKUP_BUF)?;
            if let Some((k, node)) = &c.head {
                if k.as_slice() == key {
                    return Ok(Some((r, node.read(&self.file)?)));
                }
            }
        }
        Ok(None)
    }

    /// Every run merged, from the first key at least `from`, newest run first for a
    /// key.
    pub(super) fn merge(&self, from: &[u8]) -> Result<Merge<'_>> {
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        for r in 0..self.runs.len() {
            let c = self.seek(r, from, READ_BUF)?;
            if c.head.is_some() {
                heap.push(Reverse(c));
            }
        }
        let mut m = Merge {
            file: &self.file,
            heap,
            next: None,
        };
        m.step()?;
        Ok(m)
    }
}

/// Decode an encoded node (the bytes of one node of a version-1 tree).
pub(super) fn decode_node(node: &[u8]) -> Result<Node> {
    let mut w = Writer::with_capacity(5 + node.len());
    w.u8(tree::TREE_VERSION);
    w.u32(1);
    w.raw(node);
    let mut nodes = tree::decode(&w.buf)
        .map_err(|e| Error::Corrupt(format!("spilled tar entry in the temporary file: {e}")))?;
    nodes
        .pop()
        .ok_or_else(|| Error::Corrupt("spilled tar entry without a node".into()))
}

/// Reads one run's records in order with positioned reads.
struct Cursor<'a> {
    file: &'a File,
    run: usize,
    /// File offset of `buf[0]`'s successor bytes: the next byte to read from the file.
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    /// Read position in `buf`.
    at: usize,
    /// Bytes to read from the file at a time.
    chunk: usize,
    /// The current record: its key, and where its node is. A node larger than
    /// `chunk` stays in the file until the merge takes it, so a merge of many runs
    /// holds their keys, not their nodes (a file's node lists its chunk ids: 19 MB
    /// for a 40 GB model file, and a run may hold one such file).
    head: Option<(Vec<u8>, NodeAt)>,
}

/// Where a record's encoded node is.
enum NodeAt {
    /// Copied out of the cursor's buffer (at most its `chunk` bytes).
    Read(Vec<u8>),
    /// Still in the file: `len` bytes at offset `pos`.
    File { pos: u64, len: usize },
}

impl NodeAt {
    /// The node's bytes, read from `file` if they are still there.
    fn read(&self, file: &File) -> Result<Vec<u8>> {
        match self {
            NodeAt::Read(node) => Ok(node.clone()),
            NodeAt::File { pos, len } => {
                let mut node = vec![0; *len];
                file.read_exact_at(&mut node, *pos)
                    .map_err(|e| Error::io("read tar entries back from the temporary file", e))?;
                Ok(node)
            }
        }
    }

    fn take(self, file: &File) -> Result<Vec<u8>> {
        match self {
            NodeAt::Read(node) => Ok(node),
            at => at.read(file),
        }
    }
}

impl Cursor<'_> {
    /// Make `n` unread bytes available in `buf`, reading from the file.
    fn fill(&mut self, n: usize) -> Result<()> {
        if self.buf.len() - self.at >= n {
            return Ok(());
        }
        self.buf.drain(..self.at);
        self.at = 0;
        let want = (n - self.buf.len()).max(self.chunk) as u64;
        let take = want.min(self.end - self.pos) as usize;
        let old = self.buf.len();
        self.buf.resize(old + take, 0);
        self.file
            .read_exact_at(&mut self.buf[old..], self.pos)
            .map_err(|e| Error::io("read tar entries back from the temporary file", e))?;
        self.pos += take as u64;
        if self.buf.len() < n {
            return Err(Error::Corrupt(
                "a spilled tar entry runs past its run in the temporary file".into(),
            ));
        }
        Ok(())
    }

    fn u32(&mut self) -> Result<usize> {
        self.fill(4)?;
        let v = u32::from_le_bytes(self.buf[self.at..self.at + 4].try_into().expect("4 bytes"));
        self.at += 4;
        Ok(v as usize)
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()?;
        self.fill(n)?;
        let v = self.buf[self.at..self.at + n].to_vec();
        self.at += n;
        Ok(v)
    }

    /// The next length-prefixed field as a [`NodeAt`]: copied when it is at most
    /// `chunk` bytes, else passed over and left in the file.
    fn node(&mut self) -> Result<NodeAt> {
        let n = self.u32()?;
        if n <= self.chunk {
            self.fill(n)?;
            let v = self.buf[self.at..self.at + n].to_vec();
            self.at += n;
            return Ok(NodeAt::Read(v));
        }
        let buffered = self.buf.len() - self.at;
        let pos = self.pos - buffered as u64;
        if buffered >= n {
            self.at += n;
        } else {
            let past = pos + n as u64;
            if past > self.end {
                return Err(Error::Corrupt(
                    "a spilled tar entry runs past its run in the temporary file".into(),
                ));
            }
            self.buf.clear();
            self.at = 0;
            self.pos = past;
        }
        Ok(NodeAt::File { pos, len: n })
    }

    /// Move to the next record (`head` is `None` at the end of the run).
    fn advance(&mut self) -> Result<()> {
        if self.at == self.buf.len() && self.pos == self.end {
            self.head = None;
            return Ok(());
        }
        let k = self.bytes()?;
        let node = self.node()?;
        self.head = Some((k, node));
        Ok(())
    }
}

// Heap order: the smallest key first, and for one key the newest run first.
impl PartialEq for Cursor<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Cursor<'_> {}
impl PartialOrd for Cursor<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cursor<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn key<'c>(c: &'c Cursor<'_>) -> Option<&'c [u8]> {
            c.head.as_ref().map(|(k, _)| k.as_slice())
        }
        key(self).cmp(&key(other)).then(other.run.cmp(&self.run))
    }
}

/// A record as merged: key, the run it is from, encoded node.
pub(super) type Record = (Vec<u8>, usize, Vec<u8>);

/// The runs merged in key order, one record per key: the newest run's. It holds
/// each run's next key and at most one node larger than a cursor's read buffer
/// (the one [`Merge::pop`] returns), whatever the number of runs.
pub(super) struct Merge<'a> {
    file: &'a File,
    heap: BinaryHeap<Reverse<Cursor<'a>>>,
    next: Option<(Vec<u8>, usize, NodeAt)>,
}

impl Merge<'_> {
    /// The next record's key, not consumed.
    pub(super) fn peek(&self) -> Option<&[u8]> {
        self.next.as_ref().map(|(k, _, _)| k.as_slice())
    }

    /// Consume the next record (its node read from the file if it was left there)
    /// and find the one after it.
    pub(super) fn pop(&mut self) -> Result<Option<Record>> {
        let Some((k, run, node)) = self.next.take() else {
            return Ok(None);
        };
        let node = node.take(self.file)?;
        self.step()?;
        Ok(Some((k, run, node)))
    }

    /// Consume the next record without reading its node.
    pub(super) fn skip(&mut self) -> Result<()> {
        self.next = None;
        self.step()
    }

    fn step(&mut self) -> Result<()> {
        let Some(Reverse(mut c)) = self.heap.pop() else {
            self.next = None;
            return Ok(());
        };
        let (k, node) = c
            .head
            .take()
            .expect("only cursors with a record are queued");
        // The cursor moves on below: a node it passed over stays in the file, where
        // `pop` reads it; one it copied moves here.
        let run = c.run;
        c.advance()?;
        if c.head.is_some() {
            self.heap.push(Reverse(c));
        }
        // Older copies of the key (a path the stream repeated) are dropped.
        while self
            .heap
            .peek()
            .is_some_and(|Reverse(o)| o.head.as_ref().is_some_and(|(ok, _)| *ok == k))
        {
            let Reverse(mut o) = self.heap.pop().expect("peeked");
            o.advance()?;
            if o.head.is_some() {
                self.heap.push(Reverse(o));
            }
        }
        self.next = Some((k, run, node));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes of a node, distinct per `seed` (the merge does not decode nodes).
    fn node(seed: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        blake3::Hasher::new()
            .update(&[seed])
            .finalize_xof()
            .fill(&mut v);
        v
    }

    fn run(records: &[(&str, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        records
            .iter()
            .map(|(k, n)| (k.as_bytes().to_vec(), n.clone()))
            .collect()
    }

    /// Nodes larger than a cursor's buffer (left in the file until taken) and small
    /// ones (copied) merge in key order, the newest run's copy of a key winning, and
    /// each reads back byte for byte, whether taken, skipped or looked up.
    #[test]
    fn nodes_larger_than_the_read_buffer_merge_and_read_back() {
        let mut s = Spill::new().unwrap();
        let old = run(&[
            ("a", node(1, 10)),
            ("b", node(2, READ_BUF + 1)),
            ("c", node(3, 100)),
            ("d", node(4, 200_000)),
            ("f", node(5, 7)),
        ]);
        let new = run(&[
            ("b", node(6, 50_000)),
            ("c", node(7, 5)),
            ("e", node(8, 1 << 20)),
        ]);
        s.write_run(&old).unwrap();
        s.write_run(&new).unwrap();
        let want: Vec<(&str, usize, Vec<u8>)> = vec![
            ("a", 0, node(1, 10)),
            ("b", 1, node(6, 50_000)),
            ("c", 1, node(7, 5)),
            ("d", 0, node(4, 200_000)),
            ("e", 1, node(8, 1 << 20)),
            ("f", 0, node(5, 7)),
        ];
        let mut m = s.merge(b"").unwrap();
        for (k, run, n) in &want {
            assert_eq!(m.peek(), Some(k.as_bytes()));
            let (gk, grun, gn) = m.pop().unwrap().unwrap();
            assert_eq!((gk.as_slice(), grun), (k.as_bytes(), *run));
            assert!(
                gn == *n,
                "node of {k}: {} bytes, want {}",
                gn.len(),
                n.len()
            );
        }
        assert!(m.pop().unwrap().is_none());
        // Skipping a large node leaves the next record intact.
        let mut m = s.merge(b"c").unwrap();
        m.skip().unwrap();
        m.skip().unwrap();
        let (gk, _, gn) = m.pop().unwrap().unwrap();
        assert_eq!(gk, b"e");
        assert!(gn == node(8, 1 << 20));
        for (k, run, n) in &want {
            let (grun, gn) = s.find(k.as_bytes()).unwrap().unwrap();
            assert_eq!(grun, *run, "{k}");
            assert!(gn == *n, "lookup of {k}");
        }
        assert!(s.find(b"g").unwrap().is_none());
    }
}
