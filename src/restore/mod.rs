//! Restore: turn a snapshot's trees back into files, or into a tar stream.
//!
//! [`dir`] writes into a directory (used for `--to DIR` and the Docker mount path);
//! [`tar`] writes a tar stream (`cbsnap dump`, and the Docker archive upload). Both
//! walk the trees in name order and verify every chunk against its BLAKE3 id.

pub mod dir;
mod plan;
pub mod tar;

use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::{self, Node, NodeKind};

/// Load and decode one directory's tree (a split tree's parts joined).
pub fn load_tree(repo: &Repository, id: &Id) -> Result<Vec<Node>> {
    tree::load(&|id| repo.read_blob(id), id)
}

/// Every node below a tree in pre-order (a directory before its entries), in name
/// order, with its path relative to the tree (components joined by `/`). The walk
/// keeps its own stack, one level per directory on the current path: a repository
/// can hold trees of any depth (a hostile tar import), the thread's stack cannot.
pub struct Entries<'r> {
    repo: &'r Repository,
    stack: Vec<(Vec<u8>, std::vec::IntoIter<Node>)>,
}

impl<'r> Entries<'r> {
    /// Walk below `tree`; paths start with `prefix` (empty for none).
    pub fn new(repo: &'r Repository, tree: &Id, prefix: &[u8]) -> Result<Entries<'r>> {
        let nodes = load_tree(repo, tree)?;
        Ok(Entries {
            repo,
            stack: vec![(prefix.to_vec(), nodes.into_iter())],
        })
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(Vec<u8>, Node)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (prefix, nodes) = self.stack.last_mut()?;
            let Some(n) = nodes.next() else {
                self.stack.pop();
                continue;
            };
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&n.name);
            if let Some(sub) = n.subtree() {
                match load_tree(self.repo, &sub) {
                    Ok(nodes) => self.stack.push((path.clone(), nodes.into_iter())),
                    Err(e) => {
                        // Nothing below a tree that cannot be read; the walk ends here.
                        self.stack.clear();
                        return Some(Err(e));
                    }
                }
            }
            return Some(Ok((path, n)));
        }
    }
}

/// Find the node at `path` (components separated by `/`) below the tree `root`.
/// Returns `None` for the root itself.
pub fn lookup(repo: &Repository, root: &Id, path: &str) -> Result<Option<Node>> {
    let mut tree_id = *root;
    let mut found: Option<Node> = None;
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, comp) in comps.iter().enumerate() {
        let nodes = load_tree(repo, &tree_id)?;
        let n = nodes
            .into_iter()
            .find(|n| n.name == comp.as_bytes())
            .ok_or_else(|| Error::Usage(format!("no such path in the snapshot: {path}")))?;
        if i + 1 < comps.len() {
            tree_id = n.subtree().ok_or_else(|| {
                Error::Usage(format!("{comp} is not a directory in the snapshot"))
            })?;
        }
        found = Some(n);
    }
    Ok(found)
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
