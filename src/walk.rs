//! Trees, loaded and walked: the one way every reader of a snapshot gets from a tree id
//! to the nodes below it (`check`, `stats`, `prune`'s mark phase, `diff`, `ls`, `dump`,
//! `mount`, restore).
//!
//! [`Listing::read`] loads one directory: its tree blob, and for a split tree (FORMAT.md,
//! "Tree blobs", version 2) each part, checked to continue the name order; a part that
//! cannot be read is recorded and the others still listed, so `check` can name every
//! damaged blob. [`load`] is the same for callers that stop at the first fault.
//!
//! A [`Walker`] visits the nodes below one or more roots in name order, each with its
//! path, a directory before its entries (pre-order), and reports every tree blob it
//! reads and every one it cannot. The walk keeps its own stack, one level per
//! directory on the current path: a repository can hold trees of any depth (a hostile
//! tar import), the thread's stack cannot. [`Walker::once`] makes it skip a tree it
//! has visited before over its whole life, as restic's `StreamTrees` does: an unchanged
//! directory keeps its tree id from one snapshot to the next, so marking a hundred
//! snapshots of a mostly unchanged source reads little more than one.
//! [`Entries`] is the walk as an iterator of `(path, node)` that ends at the first
//! tree it cannot read (`ls`, `dump`).

use std::collections::{HashSet, VecDeque};

use crate::codec::DecodeError;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::{self, Node, TreeBlob};

/// Reads the raw bytes of one blob by id.
pub type ReadBlob<'r> = Box<dyn Fn(&Id) -> Result<Vec<u8>> + 'r>;

fn corrupt(at: &Id, e: DecodeError) -> Error {
    Error::Corrupt(format!("tree {at}: {e}"))
}

/// One directory as read from the repository.
#[derive(Default)]
pub struct Listing {
    /// The entries, in name order (a split tree's readable parts joined).
    pub nodes: Vec<Node>,
    /// The tree blobs read: the directory's tree, and a split tree's parts.
    pub blobs: Vec<Id>,
    /// Tree blobs that could not be read or decoded, each with why. Entries they held
    /// are missing from `nodes`.
    pub unreadable: Vec<(Id, Error)>,
}

impl Listing {
    /// Read the directory `id` with `read`. Never fails: what cannot be read is in
    /// [`Listing::unreadable`].
    pub fn read(read: &dyn Fn(&Id) -> Result<Vec<u8>>, id: &Id) -> Listing {
        Listing::read_skipping(read, id, &mut |_| false)
    }

    /// [`Listing::read`], leaving out a split tree's parts for which `skip` is true
    /// (a [`Walker::once`] has read them before).
    fn read_skipping(
        read: &dyn Fn(&Id) -> Result<Vec<u8>>,
        id: &Id,
        skip: &mut dyn FnMut(&Id) -> bool,
    ) -> Listing {
        let mut l = Listing::default();
        let blob = read(id).and_then(|raw| tree::decode_blob(&raw).map_err(|e| corrupt(id, e)));
        let parts = match blob {
            Ok(TreeBlob::Nodes(n)) => {
                l.blobs.push(*id);
                l.nodes = n;
                return l;
            }
            Ok(TreeBlob::Split(parts)) => parts,
            Err(e) => {
                l.unreadable.push((*id, e));
                return l;
            }
        };
        l.blobs.push(*id);
        for p in parts {
            if skip(&p) {
                continue;
            }
            // A part is a plain (version-1) tree whose names continue the order.
            let nodes = read(&p).and_then(|raw| {
                let n = tree::decode(&raw).map_err(|e| corrupt(&p, e))?;
                tree::check_part_order(l.nodes.last(), &n).map_err(|e| corrupt(&p, e))?;
                Ok(n)
            });
            match nodes {
                Ok(n) => {
                    l.blobs.push(p);
                    l.nodes.extend(n);
                }
                Err(e) => l.unreadable.push((p, e)),
            }
        }
        l
    }

    /// The entries, or the first fault.
    pub fn into_nodes(self) -> Result<Vec<Node>> {
        match self.unreadable.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(self.nodes),
        }
    }
}

/// The entries of the directory `id`, through the repository's index.
///
/// Errors: the blob's read error, or [`Error::Corrupt`] naming the tree blob that does
/// not decode (or a split tree's part out of order).
pub fn load(repo: &Repository, id: &Id) -> Result<Vec<Node>> {
    Listing::read(&|b| repo.read_blob(b), id).into_nodes()
}

/// Find the node at `path` (components separated by `/`) below the tree `root`.
/// Returns `None` for the root itself.
///
/// Errors: those of [`load`], and [`Error::Usage`] when a component does not exist or
/// is not a directory.
pub fn lookup(repo: &Repository, root: &Id, path: &str) -> Result<Option<Node>> {
    let mut tree_id = *root;
    let mut found: Option<Node> = None;
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, comp) in comps.iter().enumerate() {
        let nodes = load(repo, &tree_id)?;
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

/// What a [`Walker`] yields, in walk order. [`Walker::path`] tells where each is.
#[derive(Debug)]
pub enum Step {
    /// A tree blob was read: a directory's tree, or a part of a split tree. Comes
    /// right after the directory's node (first for a root).
    Tree(Id),
    /// An entry, after its directory and before the entries below it.
    Node(Node),
    /// A tree blob that could not be read or decoded: what it held is unknown and
    /// not walked.
    Unreadable(Id, Error),
}

/// One directory on the current path: the length of its path in [`Walker::path`]
/// and the entries still to visit.
struct Level {
    len: usize,
    nodes: std::vec::IntoIter<Node>,
}

/// Walks trees in name order with an explicit stack (see the module docs).
pub struct Walker<'r> {
    read: ReadBlob<'r>,
    /// With [`Walker::once`]: every tree blob read so far, to skip it next time.
    seen: Option<HashSet<Id>>,
    stack: Vec<Level>,
    /// Steps produced by reading a directory, handed out before its entries.
    queued: VecDeque<Step>,
    /// The path of the last step: one buffer, truncated and extended as the walk
    /// moves, so a deep tree costs its depth in memory, not its depth squared.
    path: Vec<u8>,
}

impl<'r> Walker<'r> {
    /// A walker that reads trees through the repository's index.
    pub fn new(repo: &'r Repository) -> Walker<'r> {
        Walker::with_reader(Box::new(move |id| repo.read_blob(id)))
    }

    /// A walker with its own way to read a blob (`check` also looks in packs the
    /// index does not list yet).
    pub fn with_reader(read: ReadBlob<'r>) -> Walker<'r> {
        Walker {
            read,
            seen: None,
            stack: Vec::new(),
            queued: VecDeque::new(),
            path: Vec::new(),
        }
    }

    /// Visit each tree blob at most once over the walker's life: a directory (or a
    /// split tree's part) read before is skipped with everything below it. For
    /// walks that collect what is referenced (`prune`, `check`, `stats`), not for
    /// listings.
    pub fn once(mut self) -> Walker<'r> {
        self.seen = Some(HashSet::new());
        self
    }

    /// Distinct tree blobs read so far by a [`Walker::once`] (0 otherwise).
    pub fn trees(&self) -> usize {
        self.seen.as_ref().map_or(0, HashSet::len)
    }

    /// Start a walk below `root`, with paths starting with `prefix` (empty for none);
    /// what is left of the previous walk is dropped. The root itself yields
    /// [`Step::Tree`] (or [`Step::Unreadable`]), no node.
    pub fn push(&mut self, root: &Id, prefix: &[u8]) {
        self.clear();
        self.path.extend_from_slice(prefix);
        self.open(root);
    }

    /// Where the last step is: a node's path (the prefix and the names down to it,
    /// joined by `/`), or for a tree blob the path of its directory.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// Read the directory `id` at the current path: queue what was read and push
    /// its entries.
    fn open(&mut self, id: &Id) {
        let listing = match &mut self.seen {
            Some(seen) => {
                if !seen.insert(*id) {
                    return;
                }
                Listing::read_skipping(&*self.read, id, &mut |p| !seen.insert(*p))
            }
            None => Listing::read(&*self.read, id),
        };
        self.queued
            .extend(listing.blobs.into_iter().map(Step::Tree));
        self.queued.extend(
            listing
                .unreadable
                .into_iter()
                .map(|(id, e)| Step::Unreadable(id, e)),
        );
        if !listing.nodes.is_empty() {
            self.stack.push(Level {
                len: self.path.len(),
                nodes: listing.nodes.into_iter(),
            });
        }
    }

    /// Drop what is left of the current walk.
    pub fn clear(&mut self) {
        self.stack.clear();
        self.queued.clear();
        self.path.clear();
    }
}

impl Iterator for Walker<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        loop {
            // Queued steps belong to the directory whose node came last: the path
            // stays.
            if let Some(s) = self.queued.pop_front() {
                return Some(s);
            }
            let level = self.stack.last_mut()?;
            let Some(node) = level.nodes.next() else {
                self.stack.pop();
                continue;
            };
            self.path.truncate(level.len);
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&node.name);
            if let Some(sub) = node.subtree() {
                // Its tree's steps are queued and come right after this node.
                self.open(&sub);
            }
            return Some(Step::Node(node));
        }
    }
}

/// Every node below a tree in pre-order and name order, with its path; the walk ends
/// with an error at the first tree blob it cannot read.
pub struct Entries<'r> {
    walker: Walker<'r>,
}

impl<'r> Entries<'r> {
    /// Walk below `tree`; paths start with `prefix` (empty for none).
    ///
    /// Errors: those of [`load`] for the root tree.
    pub fn new(repo: &'r Repository, tree: &Id, prefix: &[u8]) -> Result<Entries<'r>> {
        let mut walker = Walker::new(repo);
        walker.push(tree, prefix);
        // The root's own steps: fail now if it cannot be read.
        while let Some(Step::Tree(_) | Step::Unreadable(..)) = walker.queued.front() {
            if let Some(Step::Unreadable(_, e)) = walker.queued.pop_front() {
                return Err(e);
            }
        }
        Ok(Entries { walker })
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(Vec<u8>, Node)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.walker.next()? {
                Step::Tree(_) => continue,
                Step::Node(node) => return Some(Ok((self.walker.path().to_vec(), node))),
                Step::Unreadable(_, error) => {
                    // Nothing below a tree that cannot be read; the walk ends here.
                    self.walker.clear();
                    return Some(Err(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::tree::NodeKind;

    /// Blobs in memory, stored the way `tree::write` hands them out.
    #[derive(Default)]
    struct Blobs(HashMap<Id, Vec<u8>>);

    impl Blobs {
        fn put(&mut self, raw: Vec<u8>) -> Id {
            let id = Id::hash(&raw);
            self.0.insert(id, raw);
            id
        }
        fn tree(&mut self, nodes: &[Node]) -> Id {
            tree::write(nodes, |raw| Ok::<_, Error>(self.put(raw))).unwrap()
        }
        fn reader(&self) -> ReadBlob<'_> {
            Box::new(|id| {
                self.0
                    .get(id)
                    .cloned()
                    .ok_or_else(|| Error::Corrupt(format!("blob {id} missing")))
            })
        }
    }

    fn file(name: &str, chunk: Id) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        n.content = vec![chunk];
        n
    }

    fn dir(name: &str, tree: Id) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
        n.content = vec![tree];
        n
    }

    fn paths(w: &mut Walker<'_>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(s) = w.next() {
            let path = String::from_utf8_lossy(w.path());
            out.push(match s {
                Step::Tree(_) => format!("T {path}"),
                Step::Node(_) => path.into_owned(),
                Step::Unreadable(..) => format!("! {path}"),
            });
        }
        out
    }

    #[test]
    fn visits_in_name_order_directories_first() {
        let mut b = Blobs::default();
        let c = b.put(b"chunk".to_vec());
        let sub = b.tree(&[file("x", c), file("y", c)]);
        let root = b.tree(&[file("a", c), dir("b", sub), file("c", c)]);
        let mut w = Walker::with_reader(b.reader());
        w.push(&root, b"top");
        assert_eq!(
            paths(&mut w),
            ["T top", "top/a", "top/b", "T top/b", "top/b/x", "top/b/y", "top/c"]
        );
    }

    #[test]
    fn once_skips_trees_seen_before() {
        let mut b = Blobs::default();
        let c = b.put(b"chunk".to_vec());
        let shared = b.tree(&[file("x", c)]);
        let one = b.tree(&[dir("d", shared)]);
        let two = b.tree(&[dir("d", shared), file("e", c)]);
        let mut w = Walker::with_reader(b.reader()).once();
        w.push(&one, b"");
        assert_eq!(paths(&mut w), ["T ", "d", "T d", "d/x"]);
        w.push(&two, b"");
        // `d` is listed (its node is in a new tree) but not entered again.
        assert_eq!(paths(&mut w), ["T ", "d", "e"]);
        assert_eq!(w.trees(), 3);
        w.push(&one, b"");
        assert!(paths(&mut w).is_empty());
    }

    #[test]
    fn a_missing_subtree_is_reported_and_the_walk_goes_on() {
        let mut b = Blobs::default();
        let c = b.put(b"chunk".to_vec());
        let gone = Id::hash(b"no such tree");
        let root = b.tree(&[dir("a", gone), file("b", c)]);
        let mut w = Walker::with_reader(b.reader());
        w.push(&root, b"");
        assert_eq!(paths(&mut w), ["T ", "a", "! a", "b"]);
    }

    #[test]
    fn split_trees_report_every_part_and_every_unreadable_part() {
        let mut b = Blobs::default();
        let c = b.put(b"chunk".to_vec());
        let p1 = b.put(tree::encode(&[file("a", c)]));
        let p2 = Id::hash(b"lost part");
        let p3 = b.put(tree::encode(&[file("c", c)]));
        let split = b.put(tree::encode_split(&[p1, p2, p3]));
        let l = Listing::read(&*b.reader(), &split);
        assert_eq!(l.blobs, vec![split, p1, p3]);
        assert_eq!(l.unreadable.len(), 1);
        assert_eq!(l.unreadable[0].0, p2);
        let names: Vec<&[u8]> = l.nodes.iter().map(|n| &n.name[..]).collect();
        assert_eq!(names, [b"a", b"c"]);
        assert!(l.into_nodes().is_err());
    }

    #[test]
    fn parts_out_of_order_are_damage() {
        let mut b = Blobs::default();
        let c = b.put(b"chunk".to_vec());
        let p1 = b.put(tree::encode(&[file("b", c)]));
        let p2 = b.put(tree::encode(&[file("a", c)]));
        let split = b.put(tree::encode_split(&[p1, p2]));
        let l = Listing::read(&*b.reader(), &split);
        assert_eq!(l.unreadable.len(), 1);
        assert!(matches!(&l.unreadable[0], (id, Error::Corrupt(_)) if *id == p2));
    }

    /// 100,000 nested directories on a 256 KiB stack: recursion would overflow it.
    #[test]
    fn walks_100k_levels_on_a_small_stack() {
        let mut b = Blobs::default();
        let c = b.put(b"chunk".to_vec());
        let mut t = b.tree(&[file("f", c)]);
        for _ in 0..100_000 {
            t = b.tree(&[dir("a", t)]);
        }
        let b = &b;
        let (nodes, deepest) = std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, move || {
                    let mut w = Walker::with_reader(b.reader()).once();
                    w.push(&t, b"");
                    let mut nodes = 0usize;
                    let mut deepest = 0usize;
                    while let Some(s) = w.next() {
                        if let Step::Node(_) = s {
                            nodes += 1;
                            deepest = deepest.max(w.path().len());
                        }
                    }
                    (nodes, deepest)
                })
                .unwrap()
                .join()
                .unwrap()
        });
        assert_eq!(nodes, 100_001);
        assert_eq!(deepest, 2 * 100_000 + 1);
    }
}
