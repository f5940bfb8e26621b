//! The parent snapshot: its trees are loaded lazily along the current path, so a file
//! that looks unchanged (inode, size, mtime, ctime) reuses the parent's chunk list
//! instead of being read again.
//!
//! A thread reads the parent's trees ahead ([`read_ahead`]), depth first with each
//! directory's children in name order: the order in which a directory walk asks for
//! them. On a cold cache or a remote repository every tree is a read at a random place
//! in a pack (a round trip for a remote one); read on the walk's own thread they added
//! to its `stat`s instead of overlapping them (issue 9: an unchanged snapshot within
//! 2× a stat walk).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::tree::split_last;
use super::Ingest;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::source::Entry;
use crate::tree::{Node, NodeKind, Xattrs};
use crate::warn::Warning;

/// Trees [`read_ahead`] sends at once when the walk is not waiting for one: a send
/// that finds the walk waiting wakes it, and one wake-up per tree cost a warm
/// unchanged snapshot about an eighth more CPU time (`docs/BENCHMARKS.md`, "Issue 9,
/// third pass").
const BATCH: usize = 16;

/// Nodes after which a batch goes even if it holds fewer than [`BATCH`] trees: what
/// is read ahead is bounded by nodes, not by trees, since one tree may list a
/// hundred thousand files.
const BATCH_NODES: usize = 4096;

/// Batches the channel from [`read_ahead`] holds. With the one being filled, at most
/// two batches are held decoded before the walk asks for them: each of at most
/// [`BATCH_NODES`] nodes plus the tree that passed that mark.
pub(super) const AHEAD_BATCHES: usize = 1;

/// One tree read ahead: its directory's path, its id, its nodes.
pub(super) type AheadTree = (Vec<u8>, Id, Arc<Vec<Node>>);

/// A tree of the parent snapshot as read: its id and its nodes.
type ReadTree = (Id, Arc<Vec<Node>>);

/// How long before the parent snapshot started an object's ctime must be for the
/// object to count as unchanged when its ctime still matches, in nanoseconds, on a
/// filesystem with sub-second timestamps: a change in the same timestamp tick as the
/// parent's `stat` of it, just after, leaves the ctime as it was. Linux stamps
/// files from a clock that advances every jiffy (1–10 ms) before 6.13's fine-grained
/// timestamps; the margin is ten times that. Git's "racily clean" entries are the same
/// problem (`Documentation/technical/racy-git.txt`).
const SETTLED_NS: i128 = 100_000_000;

/// The same on a filesystem that keeps whole seconds (a ctime without nanoseconds):
/// two seconds, FAT's tick.
const SETTLED_COARSE_NS: i128 = 2_000_000_000;

/// Whether a snapshot of `origin` may take xattrs from a parent of `parent_origin`:
/// both record the same `uid` they were read as ([`crate::host::reader_uid`]). What a
/// process may list depends on it (`trusted.*` only for root), so a parent read as
/// another user, or recorded before the uid was, may lack xattrs this one would see.
pub(super) fn same_reader(origin: &serde_json::Value, parent_origin: &serde_json::Value) -> bool {
    match (origin.get("uid"), parent_origin.get("uid")) {
        (Some(a), Some(b)) => a.is_u64() && a == b,
        _ => false,
    }
}

/// When the snapshot `p` started, in nanoseconds since the epoch: its time (taken at
/// the commit) less its duration (measured from before its walk began).
pub(super) fn started_ns(p: &crate::snapshot::Snapshot) -> i128 {
    let at = i128::from(p.time.timestamp()) * 1_000_000_000
        + i128::from(p.time.timestamp_subsec_nanos());
    let took = (p.stats.duration_secs.max(0.0) * 1e9) as i128;
    at - took
}

/// Wait until what was just written counts as settled for a snapshot started after
/// this returns ([`SETTLED_NS`] and a little): for tests of unchanged snapshots.
#[cfg(test)]
pub(super) fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(
        (SETTLED_NS / 1_000_000) as u64 + 50,
    ));
}

/// Whether `now` is the object the parent recorded as `old`, unchanged since: the same
/// kind, inode, size, mtime and ctime, and a ctime settled before the parent started
/// ([`settled`]). For xattrs the ctime alone proves it on one filesystem; size and
/// mtime keep a parent from another host, whose inode numbers may coincide, from
/// passing for this object.
fn unchanged(old: &Node, now: &Node, started_ns: i128) -> bool {
    old.kind == now.kind
        && old.inode == now.inode
        && old.size == now.size
        && old.mtime == now.mtime
        && old.mtime_nsec == now.mtime_nsec
        && old.ctime == now.ctime
        && old.ctime_nsec == now.ctime_nsec
        && settled(old, started_ns)
}

/// Whether a change after the parent's walk saw `old` must have moved its ctime: the
/// ctime is older than the parent's start (`started_ns`) by more than a timestamp tick
/// ([`SETTLED_NS`]). A node that is not settled proves nothing unchanged; the next
/// snapshot, which has this one as its parent, will find it settled.
fn settled(old: &Node, started_ns: i128) -> bool {
    let margin = if old.ctime_nsec == 0 {
        SETTLED_COARSE_NS
    } else {
        SETTLED_NS
    };
    let ctime = i128::from(old.ctime) * 1_000_000_000 + i128::from(old.ctime_nsec);
    ctime + margin < started_ns
}

/// Trees of the parent snapshot, loaded lazily along the current path.
pub(super) struct ParentTrees {
    root: Id,
    /// When the parent started ([`started_ns`]): its nodes whose ctime is not older
    /// by [`SETTLED_NS`] are not taken as unchanged.
    started_ns: i128,
    /// Whether the parent was read as the same user ([`same_reader`]): else no
    /// xattrs are taken from it.
    xattrs: bool,
    /// Whether the index has every blob of the parent
    /// ([`crate::index::Index::snapshot_indexed`]): then an unchanged file's blobs are
    /// not looked up.
    indexed: bool,
    /// The trees read so far along the walk, by directory path, with their ids.
    cache: HashMap<Vec<u8>, Option<ReadTree>>,
    /// Trees from [`read_ahead`], in walk order; `None` once it stopped.
    ahead: Option<Receiver<Vec<AheadTree>>>,
    /// Trees received from `ahead` and not yet asked for, in walk order.
    received: std::collections::VecDeque<AheadTree>,
    /// Trees read on the walk's thread because `ahead` did not have them.
    loaded_here: u64,
    /// Tree blobs that could not be read, not yet reported
    /// ([`Ingest::report_unreadable_parent_trees`]).
    unreadable: Vec<UnreadableTree>,
}

/// A tree blob of the parent snapshot that could not be read: the directory it lists
/// (for a split tree, the directory one of its parts lists), its id and why.
struct UnreadableTree {
    path: Vec<u8>,
    id: Id,
    error: Error,
}

impl ParentTrees {
    /// The trees of snapshot `id`, whose root tree is `root`, read ahead from `ahead`
    /// (the receiving end of [`read_ahead`]; a closed channel when none runs).
    ///
    /// Errors: those of [`crate::index::Index::snapshot_indexed`].
    pub(super) fn new(
        repo: &Repository,
        id: &Id,
        root: Id,
        started_ns: i128,
        xattrs: bool,
        ahead: Receiver<Vec<AheadTree>>,
    ) -> Result<ParentTrees> {
        Ok(ParentTrees {
            root,
            started_ns,
            xattrs,
            indexed: repo.index().snapshot_indexed(id)?,
            cache: HashMap::new(),
            ahead: Some(ahead),
            received: Default::default(),
            loaded_here: 0,
            unreadable: Vec::new(),
        })
    }

    fn dir(&mut self, repo: &Repository, path: &[u8]) -> Option<Arc<Vec<Node>>> {
        if let Some(c) = self.cache.get(path) {
            return c.as_ref().map(|(_, t)| t.clone());
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
        let t = id.and_then(|id| {
            self.take_ahead(path, &id)
                .or_else(|| {
                    self.loaded_here += 1;
                    // A tree that cannot be read proves nothing unchanged below it:
                    // its files are read again. Each blob that failed is kept to be
                    // reported, and stored again if the new tree has its id.
                    let l = crate::walk::Listing::read(&|b| repo.read_blob(b), &id);
                    if l.unreadable.is_empty() {
                        return Some(Arc::new(l.nodes));
                    }
                    for (blob, error) in l.unreadable {
                        self.unreadable.push(UnreadableTree {
                            path: path.to_vec(),
                            id: blob,
                            error,
                        });
                    }
                    None
                })
                .map(|t| (id, t))
        });
        let nodes = t.as_ref().map(|(_, t)| t.clone());
        self.cache.insert(path.to_vec(), t);
        nodes
    }

    /// The tree of directory `path` (id `id`) if [`read_ahead`] read it. Trees it read
    /// for directories before `path` in walk order were not asked for (gone from the
    /// source, or without an unchanged file) and are dropped.
    fn take_ahead(&mut self, path: &[u8], id: &Id) -> Option<Arc<Vec<Node>>> {
        loop {
            if self.received.is_empty() {
                match self.ahead.as_ref()?.recv() {
                    Ok(batch) => self.received.extend(batch),
                    Err(_) => {
                        self.ahead = None;
                        return None;
                    }
                }
            }
            let next = self.received.front()?;
            match walk_order(&next.0, path) {
                Ordering::Less => {
                    self.received.pop_front();
                }
                Ordering::Equal => {
                    let (_, got, t) = self.received.pop_front()?;
                    return (got == *id).then_some(t);
                }
                Ordering::Greater => return None,
            }
        }
    }

    /// `f` of the parent's node at `path`, if the parent has one there.
    fn with_node<R>(
        &mut self,
        repo: &Repository,
        path: &[u8],
        f: impl FnOnce(&Node) -> R,
    ) -> Option<R> {
        let (dir, name) = split_last(path);
        let t = self.dir(repo, dir)?;
        t.binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| f(&t[i]))
    }

    pub(super) fn node(&mut self, repo: &Repository, path: &[u8]) -> Option<Node> {
        self.with_node(repo, path, Node::clone)
    }

    /// Drop the tree of directory `path`: the walk is done with it. Returns its id
    /// if it was read: it was found through the index a moment ago (and nothing
    /// prunes while a snapshot holds its lock), so the directory's new tree, if
    /// unchanged, has that id and needs no lookup ([`Ingest::seal_at`]).
    pub(super) fn forget(&mut self, path: &[u8]) -> Option<Id> {
        self.cache.remove(path).flatten().map(|(id, _)| id)
    }

    /// The root tree's id if it was read, as [`ParentTrees::forget`] for the root
    /// (which is not forgotten: it is sealed after the walk ends).
    pub(super) fn read_root(&self) -> Option<Id> {
        match self.cache.get(&b""[..]) {
            Some(Some((id, _))) => Some(*id),
            _ => None,
        }
    }
}

/// The order of a depth-first walk that visits each directory's entries by name:
/// paths compared component by component (`a/b` before `a-c`, though `-` < `/`).
fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|c| *c == b'/').cmp(b.split(|c| *c == b'/'))
}

/// Read the trees below `root` depth first, each directory's subdirectories in name
/// order, and send them to `tx` with their paths (the root's is empty), in batches
/// of up to [`BATCH`] trees or [`BATCH_NODES`] nodes: a batch goes at once when the
/// channel is empty (the walk may be waiting), else when full. Stops at the first
/// tree it cannot read (the walk then reads that one itself and reports as it always
/// did) or when the receiver is gone.
pub(super) fn read_ahead(repo: &Repository, root: Id, tx: Sender<Vec<AheadTree>>) {
    let mut stack = vec![(Vec::new(), root)];
    let mut batch = Vec::with_capacity(BATCH);
    let mut nodes_held = 0;
    while let Some((path, id)) = stack.pop() {
        let Ok(nodes) = crate::walk::load(repo, &id) else {
            break;
        };
        for n in nodes.iter().rev() {
            if let Some(sub) = n.subtree() {
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(&n.name);
                stack.push((p, sub));
            }
        }
        nodes_held += nodes.len();
        batch.push((path, id, Arc::new(nodes)));
        if batch.len() >= BATCH || nodes_held >= BATCH_NODES || tx.is_empty() {
            if tx.send(std::mem::take(&mut batch)).is_err() {
                return;
            }
            nodes_held = 0;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
}

/// What the parent snapshot says of a regular file's content.
pub(super) enum FromParent {
    /// Nothing to go by: no parent, no file at this path there, or one too small to
    /// be cut in more than one place.
    Nothing,
    /// The same object, unchanged since the parent: its chunk ids.
    Unchanged(Vec<Id>),
    /// A file that changed since the parent: its chunks there, the cuts to try first
    /// when it is read ([`crate::chunker::Chunker::next_known`]).
    Changed(OldChunks),
}

/// A file's chunk ids and size in the parent snapshot.
pub(super) struct OldChunks {
    pub(super) ids: Vec<Id>,
    pub(super) size: u64,
}

impl Ingest<'_> {
    /// What the parent says of the regular file `e`: unchanged (its chunks are
    /// reused), changed (its old chunks guide the read), or nothing.
    pub(super) fn parent_says(&mut self, e: &Entry) -> Result<FromParent> {
        let said = self.parent_says_of(e);
        self.report_unreadable_parent_trees();
        said
    }

    /// [`Ingest::parent_says`], before the parent's trees that could not be read on
    /// the way are reported.
    fn parent_says_of(&mut self, e: &Entry) -> Result<FromParent> {
        let Some(parent) = self.parent.as_mut() else {
            return Ok(FromParent::Nothing);
        };
        // Without an inode (a tar entry) nothing proves a file unchanged: the
        // parent's trees are not even read.
        if e.node.inode == 0 {
            return Ok(FromParent::Nothing);
        }
        let Some(old) = parent.node(self.repo, &e.path) else {
            return Ok(FromParent::Nothing);
        };
        if old.kind != NodeKind::File {
            return Ok(FromParent::Nothing);
        }
        if !unchanged(&old, &e.node, parent.started_ns) {
            // Only a file of more than one largest chunk, then and now, has cuts to
            // take from the parent (`next_known` needs more than `max` bytes after
            // each); each old chunk is looked up in the index when it is tried.
            let max = u64::from(self.repo.config.chunker.max_size);
            return Ok(if old.size > max && e.node.size > max {
                FromParent::Changed(OldChunks {
                    ids: old.content,
                    size: old.size,
                })
            } else {
                FromParent::Nothing
            });
        }
        // The parent's blobs cannot be pruned while this snapshot holds its shared
        // lock, but the index may have lost them (a pack deleted by hand, then
        // `sync_index`): then the file is read again rather than referenced. A parent
        // known to be wholly indexed needs no lookup: `sync_index` drops that record
        // before it forgets any pack.
        if !parent.indexed && !self.repo.index().contains_all(&old.content)? {
            return Ok(FromParent::Nothing);
        }
        Ok(FromParent::Unchanged(old.content))
    }

    /// The parent's xattrs of the entry at `path` if `node` is the same object there
    /// (kind and inode) with the same size, mtime and ctime
    /// ([`crate::source::Sink::unchanged_xattrs`]).
    pub(super) fn unchanged_xattrs_in_parent(
        &mut self,
        path: &[u8],
        node: &Node,
    ) -> Option<Xattrs> {
        let parent = self.parent.as_mut()?;
        if node.inode == 0 || path.is_empty() || !parent.xattrs {
            return None;
        }
        let started_ns = parent.started_ns;
        let xattrs = parent
            .with_node(self.repo, path, |old| {
                unchanged(old, node, started_ns).then(|| old.xattrs.clone())
            })
            .flatten();
        self.report_unreadable_parent_trees();
        xattrs
    }

    /// Tell the operator of each tree of the parent that could not be read since the
    /// last call (the files below it are read again, so the snapshot is still whole),
    /// and have each damaged one stored again should the new snapshot hold a tree of
    /// its id, rather than deduplicated against the damaged copy ([`Pending::damaged`]).
    /// Called on the source thread, which is the one [`crate::warn::capture`] sees.
    ///
    /// [`Pending::damaged`]: super::pipeline::Pending::damaged
    fn report_unreadable_parent_trees(&mut self) {
        let Some(parent) = self.parent.as_mut() else {
            return;
        };
        for t in std::mem::take(&mut parent.unreadable) {
            let damaged = matches!(t.error, Error::Corrupt(_) | Error::Authentication { .. });
            if damaged {
                super::pipeline::Pending::damaged(self.pending, t.id);
            }
            // The damage itself, without the advice its error carries: the warning
            // gives its own.
            let cause = match &t.error {
                Error::Corrupt(what) => what.clone(),
                Error::Authentication { pack, blob, source } => {
                    format!("pack {pack}, blob {blob}: {source}")
                }
                other => other.to_string(),
            };
            crate::warn::emit(Warning::ParentTreeUnreadable {
                path: String::from_utf8_lossy(&t.path).into_owned(),
                tree: t.id,
                cause,
                damaged,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use crate::repo::Access;
    use crate::snapshot::SourceKind;

    /// The snapshot of an unchanged source, with its parent, checks nothing in the
    /// index: its files are the parent's (a wholly indexed snapshot), its directories'
    /// trees those just read from the parent. A changed file checks its blob and the
    /// trees on its path, no more.
    /// A source below `d` of the directories `dirs`, each holding a file `f`, and a
    /// file `top`; and a new repository below `d`.
    fn source_and_repo(d: &std::path::Path, dirs: &[&str]) -> (std::path::PathBuf, Repository) {
        let src = d.join("src");
        for dir in dirs {
            std::fs::create_dir_all(src.join(dir)).unwrap();
            std::fs::write(src.join(dir).join("f"), dir.as_bytes()).unwrap();
        }
        std::fs::write(src.join("top"), b"top").unwrap();
        let at = d.join("repo");
        Repository::init(&at).unwrap();
        settle();
        (src, Repository::open(&at, Access::Append).unwrap())
    }

    /// A snapshot named `name` with `parent`, read as this process's user, as the CLI
    /// records it.
    fn spec(
        name: &str,
        parent: Option<(Id, crate::snapshot::Snapshot)>,
    ) -> super::super::SnapshotSpec {
        super::super::SnapshotSpec {
            parent,
            origin: serde_json::json!({ "path": "/src", "uid": crate::host::reader_uid() }),
            ..super::super::SnapshotSpec::new(name, SourceKind::Path)
        }
    }

    /// A snapshot of the directory `src` with `parent`.
    fn take(
        repo: &Repository,
        src: &std::path::Path,
        parent: Option<(Id, crate::snapshot::Snapshot)>,
    ) -> (Id, crate::snapshot::Snapshot) {
        let spec = spec("t", parent);
        super::super::snapshot(repo, spec, &Progress::new(true, "test"), |sink| {
            crate::source::dir::walk(src, &Default::default(), sink)
        })
        .unwrap()
    }

    #[test]
    fn an_unchanged_snapshot_checks_nothing_in_the_index() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo) = source_and_repo(d.path(), &["a/x", "a/y", "b"]);
        let counted = |parent| {
            let before = repo.index().checks();
            let (id, snap) = take(&repo, &src, parent);
            (id, snap, repo.index().checks() - before)
        };
        let (id, first, _) = counted(None);
        let (id, second, checks) = counted(Some((id, first.clone())));
        assert_eq!(second.tree, first.tree);
        assert_eq!(second.stats.files_unchanged, 4);
        assert_eq!(
            checks, 0,
            "an unchanged snapshot checked blobs in the index"
        );

        std::fs::write(src.join("a/x/f"), b"changed").unwrap();
        let (_, third, checks) = counted(Some((id, second)));
        assert_eq!(third.stats.files_unchanged, 3);
        assert_eq!(
            checks, 4,
            "a/x/f's blob and the trees of a/x, a and the root"
        );
    }

    /// An unchanged snapshot takes the xattrs of an object whose inode and ctime are
    /// the parent's from the parent (the walk lists none); setting or removing an
    /// xattr changes the ctime, so the next snapshot reads the new ones.
    #[test]
    fn xattrs_of_unchanged_objects_come_from_the_parent() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo) = source_and_repo(d.path(), &["a"]);
        let xattrs = |root: &Id, path: &str| {
            crate::walk::lookup(&repo, root, path)
                .unwrap()
                .unwrap_or_else(|| panic!("{path} is in the snapshot"))
                .xattrs
        };
        let value = |v: &[u8]| vec![(b"user.k".to_vec(), v.to_vec())];
        xattr::set(src.join("top"), "user.k", b"1").unwrap();
        xattr::set(src.join("a"), "user.k", b"d").unwrap();
        let (id, first) = take(&repo, &src, None);
        assert_eq!(xattrs(&first.tree, "top"), value(b"1"));

        let (id, second) = take(&repo, &src, Some((id, first.clone())));
        assert_eq!(second.tree, first.tree, "an unchanged source changed");
        assert_eq!(xattrs(&second.tree, "top"), value(b"1"));
        assert_eq!(xattrs(&second.tree, "a"), value(b"d"));

        xattr::set(src.join("top"), "user.k", b"2").unwrap();
        xattr::remove(src.join("a"), "user.k").unwrap();
        let (id, third) = take(&repo, &src, Some((id, second)));
        assert_eq!(
            xattrs(&third.tree, "top"),
            value(b"2"),
            "a new xattr value was missed"
        );
        assert_eq!(
            xattrs(&third.tree, "a"),
            Vec::new(),
            "a removed xattr was kept"
        );
        assert_eq!(xattrs(&third.tree, "a/f"), Vec::new());

        let (_, fourth) = take(&repo, &src, Some((id, third.clone())));
        assert_eq!(fourth.tree, third.tree);
    }

    /// A file changed just before its parent snapshot started proves nothing by an
    /// equal ctime (a change in the same timestamp tick after the parent's `stat`
    /// would not move it): it is read again, its xattrs listed again, until a parent
    /// started well after the change.
    #[test]
    fn an_object_changed_just_before_its_parent_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo) = source_and_repo(d.path(), &["a"]);
        let (id, first) = take(&repo, &src, None);
        let (id, second) = take(&repo, &src, Some((id, first)));
        assert_eq!(second.stats.files_unchanged, 2, "settled files were read");

        std::fs::write(src.join("top"), b"changed").unwrap();
        xattr::set(src.join("top"), "user.k", b"1").unwrap();
        let (id, third) = take(&repo, &src, Some((id, second)));
        let (id, fourth) = take(&repo, &src, Some((id, third)));
        assert_eq!(
            fourth.stats.files_unchanged, 1,
            "top, changed just before its parent started, was taken as unchanged"
        );
        // What the source's sink answers for top, given the parent's own node of it.
        let ask = |parent: (Id, crate::snapshot::Snapshot)| {
            let node = crate::walk::lookup(&repo, &parent.1.tree, "top")
                .unwrap()
                .unwrap();
            let spec = spec("asked", Some(parent));
            let mut got = None;
            super::super::snapshot(&repo, spec, &Progress::new(true, "test"), |sink| {
                got = Some(sink.unchanged_xattrs(b"top", &node));
                Ok(())
            })
            .unwrap();
            got.unwrap()
        };
        assert_eq!(ask((id, fourth.clone())), None);

        settle();
        let (id, fifth) = take(&repo, &src, Some((id, fourth)));
        let (id, sixth) = take(&repo, &src, Some((id, fifth.clone())));
        assert_eq!(sixth.stats.files_unchanged, 2);
        assert_eq!(
            ask((id, sixth.clone())),
            Some(vec![(b"user.k".to_vec(), b"1".to_vec())])
        );
        // A parent read as another user (or before the uid was recorded) may lack
        // xattrs this user can list: none are taken from it.
        for origin in [
            serde_json::json!({ "path": "/src", "uid": crate::host::reader_uid() + 1 }),
            serde_json::json!({ "path": "/src" }),
        ] {
            let other = crate::snapshot::Snapshot {
                origin,
                ..sixth.clone()
            };
            assert_eq!(ask((id, other)), None);
        }
    }

    /// An xattr set between the walk's listing and the read of the file: the node
    /// keeps the walk's ctime (not the later one of the read's `stat`), so the next
    /// snapshot does not take the older xattrs for current.
    #[test]
    fn an_xattr_set_while_the_file_is_read_is_in_the_next_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo) = source_and_repo(d.path(), &["a"]);
        xattr::set(src.join("top"), "user.k", b"1").unwrap();
        settle();
        let spec = spec("t", None);
        let (id, first) =
            super::super::snapshot(&repo, spec, &Progress::new(true, "test"), |sink| {
                // `user.k` becomes 2 as `top`'s entry goes by: after the walk listed
                // its xattrs, before the file is read.
                let mut on_the_way = crate::source::Tap::new(sink, |e| {
                    if e.path == b"top" {
                        xattr::set(src.join("top"), "user.k", b"2").unwrap();
                    }
                });
                crate::source::dir::walk(&src, &Default::default(), &mut on_the_way)
            })
            .unwrap();
        let node = crate::walk::lookup(&repo, &first.tree, "top")
            .unwrap()
            .unwrap();
        assert_eq!(node.xattrs, vec![(b"user.k".to_vec(), b"1".to_vec())]);
        let now = std::fs::symlink_metadata(src.join("top")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            (node.ctime, i64::from(node.ctime_nsec)),
            (now.ctime(), now.ctime_nsec()),
            "the node has the ctime of after the xattr was set, with the xattrs of before"
        );

        settle();
        let (_, second) = take(&repo, &src, Some((id, first)));
        let node = crate::walk::lookup(&repo, &second.tree, "top")
            .unwrap()
            .unwrap();
        assert_eq!(node.xattrs, vec![(b"user.k".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn walk_order_is_component_by_component() {
        let mut paths: Vec<&[u8]> = vec![b"b", b"a-c", b"a/x/y", b"", b"a", b"a/x", b"a.b", b"a/z"];
        paths.sort_by(|a, b| walk_order(a, b));
        let want: Vec<&[u8]> = vec![b"", b"a", b"a/x", b"a/x/y", b"a/z", b"a-c", b"a.b", b"b"];
        assert_eq!(paths, want);
    }

    /// The trees read ahead come in the order a directory walk asks for them, names
    /// that sort around `/` included, so the walk of an unchanged source reads no
    /// tree itself; and a source that lost a directory still gets every tree it asks
    /// for.
    #[test]
    fn trees_read_ahead_are_the_ones_the_walk_asks_for() {
        let d = tempfile::tempdir().unwrap();
        let dirs = [
            "",
            "a",
            "a/x",
            "a/x/y",
            "a/z",
            "a-c",
            "a.b",
            "a.b/q",
            "b",
            "gone",
            "gone/deep",
        ];
        let (src, repo) = source_and_repo(d.path(), &dirs[1..]);
        let (id, first) = take(&repo, &src, None);

        let (tx, rx) = crossbeam_channel::unbounded();
        read_ahead(&repo, first.tree, tx);
        let paths: Vec<Vec<u8>> = rx.iter().flatten().map(|(p, _, _)| p).collect();
        assert_eq!(paths, dirs.map(|d| d.as_bytes().to_vec()));

        // Ask as the walk of an unchanged source does: every file's node, in walk order.
        let files: Vec<String> = dirs[1..]
            .iter()
            .map(|d| format!("{d}/f"))
            .chain(["top".to_string()])
            .collect();
        let ask = |skip: &str| {
            let (tx, rx) = crossbeam_channel::bounded(2);
            let mut trees =
                ParentTrees::new(&repo, &id, first.tree, started_ns(&first), true, rx).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| read_ahead(&repo, first.tree, tx));
                for f in files.iter().filter(|f| !f.starts_with(skip)) {
                    let n = trees.node(&repo, f.as_bytes()).unwrap();
                    assert_eq!(n.kind, NodeKind::File, "{f}");
                }
                let loaded = trees.loaded_here;
                drop(trees);
                loaded
            })
        };
        assert_eq!(ask("-"), 0, "an unchanged walk read trees itself");
        assert_eq!(ask("gone"), 0, "a walk without gone/ read trees itself");
        // `a/z` sorts before `a-c` in walk order, after it in byte order.
        assert_eq!(ask("a/z"), 0, "a walk without a/z/ read trees itself");
    }
}
