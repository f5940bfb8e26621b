//! The parent snapshot: its trees are loaded lazily along the current path, so a file
//! that looks unchanged (inode, size, mtime, ctime) reuses the parent's chunk list
//! instead of being read again.

use std::collections::HashMap;
use std::rc::Rc;

use super::tree::split_last;
use super::Ingest;
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::source::Entry;
use crate::tree::{Node, NodeKind};

/// Trees of the parent snapshot, loaded lazily along the current path.
pub(super) struct ParentTrees {
    root: Id,
    cache: HashMap<Vec<u8>, Option<Rc<Vec<Node>>>>,
}

impl ParentTrees {
    pub(super) fn new(root: Id) -> ParentTrees {
        ParentTrees {
            root,
            cache: HashMap::new(),
        }
    }

    fn dir(&mut self, repo: &Repository, path: &[u8]) -> Option<Rc<Vec<Node>>> {
        if let Some(c) = self.cache.get(path) {
            return c.clone();
        }
        let id = if path.is_empty() {
            Some(self.root)
        } else {
            let (parent, name) = split_last(path);
            let p = self.dir(repo, parent)?;
            p.binary_search_by(|n| n.name.as_slice().cmp(name))
                .ok()
                .and_then(|i| p[i].subtree())
        };
        let t = id
            .and_then(|id| crate::walk::load(repo, &id).ok())
            .map(Rc::new);
        self.cache.insert(path.to_vec(), t.clone());
        t
    }

    pub(super) fn node(&mut self, repo: &Repository, path: &[u8]) -> Option<Node> {
        let (dir, name) = split_last(path);
        let t = self.dir(repo, dir)?;
        t.binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| t[i].clone())
    }

    pub(super) fn forget(&mut self, path: &[u8]) {
        self.cache.remove(path);
    }
}

impl Ingest<'_> {
    pub(super) fn unchanged_in_parent(&mut self, e: &Entry) -> Result<Option<Vec<Id>>> {
        let Some(parent) = self.parent.as_mut() else {
            return Ok(None);
        };
        let Some(old) = parent.node(self.repo, &e.path) else {
            return Ok(None);
        };
        let n = &e.node;
        let same = old.kind == NodeKind::File
            && n.inode != 0
            && old.inode == n.inode
            && old.size == n.size
            && old.mtime == n.mtime
            && old.mtime_nsec == n.mtime_nsec
            && old.ctime == n.ctime
            && old.ctime_nsec == n.ctime_nsec;
        if !same {
            return Ok(None);
        }
        // The parent's blobs cannot be pruned while this snapshot holds its shared
        // lock, but the index may have lost them (a pack deleted by hand, then
        // `sync_index`): then the file is read again rather than referenced.
        if !self.repo.index().contains_all(&old.content)? {
            return Ok(None);
        }
        Ok(Some(old.content))
    }
}
