//! Reachability: which blobs the snapshots reference.
//!
//! A [`Walker`] reads each tree once however many snapshots share it (an unchanged
//! directory keeps its tree id from one snapshot to the next), so walking a hundred
//! snapshots of a mostly unchanged source costs little more than walking one.
//!
//! Referenced blobs are collected as [`BlobKey`]s, the first 8 bytes of the id, into a
//! [`KeySet`]: a plain vector that is sorted and deduplicated whenever it has doubled,
//! so it holds 8 bytes per referenced blob and at most twice that while collecting.
//! Keys sort like the ids, and the index iterates in id order, so the set is joined
//! with the index by one forward merge ([`Join`]) instead of a lookup per blob.
//!
//! A key is a 64-bit prefix of a BLAKE3 id. Two different blobs share one with
//! probability about n²/2⁶⁴ (10⁻⁷ for 10⁶ blobs). The consequence is always the safe
//! one for `prune`: an unreferenced blob whose key equals a referenced one is kept.
//! For `check`, a blob missing from every pack could hide behind another blob's key,
//! with probability (missing × indexed)/2⁶⁴, about 10⁻¹³ for a million-blob index.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{self, Node, TreeBlob};

/// The first 8 bytes of a blob id, big-endian, so keys sort like ids.
pub type BlobKey = u64;

pub fn key(id: &Id) -> BlobKey {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

/// Collects keys with duplicates, compacting as it goes (see the module docs).
#[derive(Default)]
pub struct KeySet {
    keys: Vec<BlobKey>,
    /// Length after the last compaction: the vector is compacted when it doubles.
    compacted: usize,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    pub fn insert(&mut self, k: BlobKey) {
        self.keys.push(k);
        if self.keys.len() >= (2 * self.compacted).max(1 << 16) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.keys.sort_unstable();
        self.keys.dedup();
        self.compacted = self.keys.len();
        // Room for exactly the next doubling, so the vector never grows past twice
        // the distinct keys by the allocator's own doubling.
        let want = (2 * self.compacted).max(1 << 16);
        self.keys
            .reserve_exact(want.saturating_sub(self.keys.len()));
    }

    pub fn finish(mut self) -> SortedKeys {
        self.compact();
        self.keys.shrink_to_fit();
        SortedKeys { keys: self.keys }
    }
}

/// A sorted set of distinct keys.
#[derive(Default, Debug, Clone)]
pub struct SortedKeys {
    keys: Vec<BlobKey>,
}

impl SortedKeys {
    pub fn contains(&self, k: BlobKey) -> bool {
        self.keys.binary_search(&k).is_ok()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<BlobKey>()
    }

    /// Start a merge join against keys that arrive in ascending order.
    pub fn join(&self) -> Join<'_> {
        Join {
            keys: &self.keys,
            pos: 0,
            hit: false,
            missing: Vec::new(),
        }
    }
}

/// A forward merge of a [`SortedKeys`] with an ascending stream of keys (the index).
/// Remembers the set's keys the stream never produced.
pub struct Join<'a> {
    keys: &'a [BlobKey],
    pos: usize,
    hit: bool,
    missing: Vec<BlobKey>,
}

impl Join<'_> {
    /// Whether `k`, the next key of the ascending stream, is in the set.
    pub fn seek(&mut self, k: BlobKey) -> bool {
        while self.pos < self.keys.len() && self.keys[self.pos] < k {
            if !self.hit {
                self.missing.push(self.keys[self.pos]);
            }
            self.pos += 1;
            self.hit = false;
        }
        if self.pos < self.keys.len() && self.keys[self.pos] == k {
            self.hit = true;
            return true;
        }
        false
    }

    /// The set's keys the stream did not produce.
    pub fn finish(mut self) -> Vec<BlobKey> {
        while self.pos < self.keys.len() {
            if !self.hit {
                self.missing.push(self.keys[self.pos]);
            }
            self.pos += 1;
            self.hit = false;
        }
        self.missing
    }
}

/// What a [`Walker`] reports.
pub enum Visit<'a> {
    /// A tree seen for the first time (its blob is referenced too).
    Tree(&'a Id),
    /// A file node and its chunk ids (the chunks may repeat across nodes).
    File(&'a Node),
    /// A tree that could not be read or decoded; what lies below it is unknown.
    Unreadable(&'a Id, Error),
}

type ReadFn<'r> = Box<dyn Fn(&Id) -> Result<Vec<u8>> + 'r>;

/// Walks trees, each at most once over the walker's life.
pub struct Walker<'r> {
    read: ReadFn<'r>,
    visited: HashSet<Id>,
}

impl<'r> Walker<'r> {
    /// A walker that reads trees through the repository's index.
    pub fn new(repo: &'r Repository) -> Walker<'r> {
        Walker::with_reader(Box::new(move |id| repo.read_blob(id)))
    }

    /// A walker with its own way to read a blob (`check` also looks in packs the
    /// index does not know yet).
    pub fn with_reader(read: ReadFn<'r>) -> Walker<'r> {
        Walker {
            read,
            visited: HashSet::new(),
        }
    }

    /// Distinct trees visited so far.
    pub fn trees(&self) -> usize {
        self.visited.len()
    }

    /// Read and decode one tree blob (for a split tree: the list of its parts).
    pub fn load(&self, id: &Id) -> Result<TreeBlob> {
        let raw = (self.read)(id)?;
        tree::decode_blob(&raw).map_err(|e| Error::Corrupt(format!("tree {id}: {e}")))
    }

    /// Visit every tree below and including `root` that this walker has not visited
    /// before (a split tree's parts too), and every file node in them. The walk keeps
    /// its own stack, so untrusted depth costs heap, not the thread's stack.
    pub fn walk(&mut self, root: &Id, visit: &mut dyn FnMut(Visit<'_>)) {
        let mut stack = vec![(*root, true)];
        while let Some((id, may_split)) = stack.pop() {
            if !self.visited.insert(id) {
                continue;
            }
            visit(Visit::Tree(&id));
            let nodes = match self.load(&id) {
                Ok(TreeBlob::Nodes(n)) => n,
                Ok(TreeBlob::Split(parts)) if may_split => {
                    // Parts are plain trees; a part that is itself split is damage.
                    stack.extend(parts.into_iter().rev().map(|p| (p, false)));
                    continue;
                }
                Ok(TreeBlob::Split(_)) => {
                    let e = Error::Corrupt(format!("tree {id}: a split tree's part is split"));
                    visit(Visit::Unreadable(&id, e));
                    continue;
                }
                Err(e) => {
                    visit(Visit::Unreadable(&id, e));
                    continue;
                }
            };
            for n in &nodes {
                if let Some(sub) = n.subtree() {
                    stack.push((sub, true));
                } else if !n.content.is_empty() {
                    visit(Visit::File(n));
                }
            }
        }
    }
}

/// Every blob the given snapshots reference, trees included. Fails on the first tree
/// that cannot be read: below it, referenced blobs are unknown, and treating them as
/// unreferenced would delete them.
pub fn referenced(repo: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<(SortedKeys, usize)> {
    let mut walker = Walker::new(repo);
    let mut set = KeySet::new();
    let mut failure: Option<Error> = None;
    for (sid, snap) in snapshots {
        walker.walk(&snap.tree, &mut |v| match v {
            Visit::Tree(id) => set.insert(key(id)),
            Visit::File(n) => n.content.iter().for_each(|c| set.insert(key(c))),
            Visit::Unreadable(id, e) => {
                if failure.is_none() {
                    let why = match e {
                        Error::Corrupt(s) => s,
                        other => other.to_string(),
                    };
                    failure = Some(Error::Corrupt(format!(
                        "tree {id} of snapshot {}@{} cannot be read ({why}), so nothing was removed: forget or repair the broken snapshots first",
                        snap.name,
                        sid.short()
                    )));
                }
            }
        });
        if let Some(e) = failure.take() {
            return Err(e);
        }
    }
    let trees = walker.trees();
    Ok((set.finish(), trees))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_set_dedups_and_sorts() {
        let mut s = KeySet::new();
        for i in 0..200_000u64 {
            s.insert((i * 7919) % 1000);
        }
        let s = s.finish();
        assert_eq!(s.len(), 1000);
        assert!(s.contains(999));
        assert!(!s.contains(1000));
    }

    #[test]
    fn join_reports_keys_the_stream_lacks() {
        let mut s = KeySet::new();
        for k in [5, 1, 9, 3, 7] {
            s.insert(k);
        }
        let s = s.finish();
        let mut j = s.join();
        let hits: Vec<bool> = [2, 3, 3, 4, 7, 8].iter().map(|k| j.seek(*k)).collect();
        assert_eq!(hits, vec![false, true, true, false, true, false]);
        assert_eq!(j.finish(), vec![1, 5, 9]);
    }

    #[test]
    fn keys_sort_like_ids() {
        let mut ids: Vec<Id> = (0..100u32).map(|i| Id::hash(&i.to_le_bytes())).collect();
        ids.sort();
        let keys: Vec<u64> = ids.iter().map(key).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    }
}
