//! Reachability: which blobs the snapshots reference.
//!
//! The trees are walked by one [`Walker::once`], which reads each tree once however
//! many snapshots share it (an unchanged directory keeps its tree id from one
//! snapshot to the next), so walking a hundred snapshots of a mostly unchanged source
//! costs little more than walking one.
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

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::Node;
use crate::walk::{Step, Walker};

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

/// Every blob the given snapshots reference, trees included. Fails on the first tree
/// that cannot be read: below it, referenced blobs are unknown, and treating them as
/// unreferenced would delete them.
pub fn referenced(repo: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<(SortedKeys, usize)> {
    let mut walker = Walker::new(repo).once();
    let mut set = KeySet::new();
    for (sid, snap) in snapshots {
        // Below a tree that cannot be read, referenced blobs are unknown: stop.
        mark(
            &mut walker,
            &snap.tree,
            &mut |k| set.insert(k),
            &mut |id, path, e| {
                let why = match e {
                    Error::Corrupt(s) => s,
                    other => other.to_string(),
                };
                Err(Error::Corrupt(format!(
                "tree {id} (/{path}) of snapshot {}@{} cannot be read ({why}), so nothing was removed: forget or repair the broken snapshots first",
                snap.name,
                sid.short()
            )))
            },
        )?;
    }
    let trees = walker.trees();
    Ok((set.finish(), trees))
}

/// Feed the key of every blob below `root` to `f`: the tree blobs, and the chunks of
/// every file, below trees `walker` (a [`Walker::once`]) has not walked before. Each
/// tree that cannot be read goes to `unreadable` with its directory's path; the walk
/// goes on past it unless `unreadable` returns an error, which `mark` returns.
pub fn mark<E>(
    walker: &mut Walker<'_>,
    root: &Id,
    f: &mut dyn FnMut(BlobKey),
    unreadable: &mut dyn FnMut(Id, String, Error) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    walker.push(root, b"");
    while let Some(step) = walker.next() {
        match step {
            Step::Tree(id) => f(key(&id)),
            Step::Node(n) => file_chunks(&n).for_each(|c| f(key(c))),
            Step::Unreadable(id, e) => {
                let path = String::from_utf8_lossy(walker.path()).into_owned();
                if let Err(e) = unreadable(id, path, e) {
                    walker.clear();
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// A file node's chunks (none for other kinds: a directory's content is its tree,
/// which the walk reports itself).
fn file_chunks(n: &Node) -> impl Iterator<Item = &Id> {
    n.content.iter().filter(move |_| n.subtree().is_none())
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
