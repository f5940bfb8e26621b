//! Restore: turn a snapshot's trees back into files, or into a tar stream.
//!
//! [`dir`] writes into a directory (used for `--to DIR` and the Docker mount path);
//! [`tar`] writes a tar stream (`cbsnap dump`, and the Docker archive upload). Both
//! walk the trees in name order ([`crate::walk`]) and verify every chunk against its
//! BLAKE3 id. [`in_use`] refuses a host directory that running containers use.

pub mod dir;
pub mod in_use;
mod plan;
pub mod tar;

use std::io::{self, Read};

use crate::id::Id;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

/// `cbsnap restore NAME --to DIR`: refused ([`crate::Error::InUse`]) before
/// anything is written when running containers use `target`
/// ([`in_use::refuse_if_in_use`]); otherwise [`dir::restore`].
pub fn into_dir(
    repo: &Repository,
    snap: &Snapshot,
    target: &std::path::Path,
    opts: &dir::Options,
    progress: &Progress,
) -> crate::Result<dir::Report> {
    in_use::refuse_if_in_use(target)?;
    dir::restore(repo, snap, target, opts, progress)
}

/// Reads a file's content chunk by chunk.
pub struct ChunkReader<'r> {
    repo: &'r Repository,
    ids: std::vec::IntoIter<Id>,
    cur: Vec<u8>,
    pos: usize,
}

impl<'r> ChunkReader<'r> {
    pub fn new(repo: &'r Repository, node: &Node) -> ChunkReader<'r> {
        debug_assert_eq!(node.kind, NodeKind::File);
        ChunkReader {
            repo,
            ids: node.content.clone().into_iter(),
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.ids.next() {
                None => return Ok(0),
                Some(id) => {
                    self.cur = self.repo.read_blob(&id).map_err(io::Error::other)?;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
