//! Assembling directories: entries arrive in any order (a tar stream may name a file
//! before its directory), are placed the way `tar -x` into an empty directory would
//! place them, and each directory becomes a tree blob as soon as the source says it
//! is complete.
//!
//! A tar stream says no directory is complete before it ends, so its leaves (every
//! node but directories and symlinks) go to sorted runs on disk once more than
//! [`Leaves`]' limit of them is held ([`super::spill`]); sealing merges them back in
//! name order, straight into the [`TreeWriter`]. The trees are the same as when
//! every node stays in memory: a name's newest entry wins either way.

use std::collections::{BTreeMap, HashMap};

use super::spill::{self, Merge, Spill};
use super::Ingest;
use crate::codec::Writer;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::RootMeta;
use crate::source::Sink;
use crate::tree::{self, Node, NodeKind, TreeWriter};

/// Leaves held in memory before they are written to a run: a few MB of nodes.
pub(super) const SPILL_AFTER: usize = 20_000;

/// Encoded bytes of leaves held in memory before they are written to a run, however
/// few: a file's node lists its chunk ids (32 bytes per chunk, 0.5 MB per GiB with the
/// default chunker), so 13 files of a directory of model blobs can hold more than
/// 20,000 small files do (docs/BENCHMARKS.md, "Issue 9, seventh pass"; 8 MiB then,
/// 4 MiB since the eighth pass).
pub(super) const SPILL_BYTES: usize = 4 << 20;

/// The leaves of the tree being assembled that are not in memory (see the module
/// documentation).
pub(super) struct Leaves {
    /// Spill once more than this many leaves are held.
    limit: usize,
    /// Leaves added to the in-memory tree since the last run (an upper bound).
    held: usize,
    /// Spill once their encoded bytes pass this ([`SPILL_BYTES`], or never).
    byte_limit: usize,
    /// The encoded bytes of the leaves counted in `held` (an upper bound).
    held_bytes: usize,
    /// Made at the first run.
    spill: Option<Spill>,
    /// Link groups given to spilled files after they were spilled (a hard link to
    /// them arrived later), by key: (the run of the record they apply to, group).
    links: HashMap<Vec<u8>, (usize, u64)>,
}

impl Leaves {
    /// Spill after `limit` leaves or, for the default [`SPILL_AFTER`], [`SPILL_BYTES`]
    /// of them (in proportion for another limit), whichever comes first (`usize::MAX`:
    /// never).
    pub(super) fn new(limit: usize) -> Leaves {
        Leaves {
            limit,
            held: 0,
            // SPILL_BYTES at SPILL_AFTER leaves, in proportion for other limits.
            byte_limit: limit.saturating_mul(SPILL_BYTES / SPILL_AFTER),
            held_bytes: 0,
            spill: None,
            links: HashMap::new(),
        }
    }

    /// The number of runs written.
    pub(super) fn runs(&self) -> usize {
        self.spill.as_ref().map_or(0, Spill::runs)
    }
}

/// Whether a node can be written to a run: not a directory (those stay open or are
/// sealed) nor a symlink (a later path may be written through it).
fn spillable(n: &Node) -> bool {
    !matches!(n.kind, NodeKind::Dir | NodeKind::Symlink)
}

fn encode_node(n: &Node) -> Vec<u8> {
    let mut w = Writer::with_capacity(tree::encoded_len(n));
    tree::encode_node(&mut w, n);
    w.buf
}

/// A directory being assembled.
pub(super) struct DirBuild {
    pub(super) node: Node,
    pub(super) children: BTreeMap<Vec<u8>, Child>,
    /// Some of its entries were written to a run: it holds entries even when
    /// `children` is empty, and a missing name may be a spilled leaf.
    spilled: bool,
}

/// A directory's entry. Both variants are boxed, so a map slot is two words: with the
/// node inline, every slot took a whole `Node` (~250 bytes) even for an open directory,
/// whose node is in its `DirBuild`, and a tar of 3 million files in 30,000 directories
/// peaked at 68.5–71.6 MiB, 61.5 boxed (`docs/BENCHMARKS.md`, "Memory (E)").
pub(super) enum Child {
    Open(Box<DirBuild>),
    /// A leaf, or a directory whose tree is already written.
    Done(Box<Node>),
}

impl DirBuild {
    pub(super) fn new(node: Node) -> DirBuild {
        DirBuild {
            node,
            children: BTreeMap::new(),
            spilled: false,
        }
    }

    fn dir(name: &[u8]) -> Child {
        Child::Open(Box::new(DirBuild::new(Node::new(
            name.to_vec(),
            NodeKind::Dir,
        ))))
    }
}

/// Drops nested directories with an explicit stack: a hostile tar can nest them
/// deeper than the thread's stack would survive a recursive drop.
impl Drop for DirBuild {
    fn drop(&mut self) {
        let mut stack: Vec<Box<DirBuild>> = Vec::new();
        let take = |d: &mut DirBuild, stack: &mut Vec<Box<DirBuild>>| {
            for (_, c) in std::mem::take(&mut d.children) {
                if let Child::Open(sub) = c {
                    stack.push(sub);
                }
            }
        };
        take(self, &mut stack);
        while let Some(mut d) = stack.pop() {
            take(&mut d, &mut stack);
        }
    }
}

/// How a path's directories resolve, as `tar -x` into an empty directory would.
enum Resolved {
    /// The path itself: only directories (or nothing yet) on the way.
    AsIs,
    /// The directory's components (symlinks along the way followed).
    Dir(Vec<Vec<u8>>),
    /// `tar -x` would fail here too; the reason, for the snapshot's errors.
    Fails(String),
}

/// The non-empty components of `path`, owned.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

pub(super) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

impl Ingest<'_> {
    /// Resolve the directories of `path` the way `tar -x` into an empty directory
    /// does: a symlink on the way whose target is relative and stays below it is
    /// followed (its target must already exist, as GNU tar needs), any other
    /// non-directory on the way makes extraction fail. `explicit_last`: the last
    /// component is a directory entry itself, which replaces a non-directory there.
    fn resolve(&self, path: &[u8], explicit_last: bool) -> Result<Resolved> {
        // The common case, without allocating: directories all the way.
        let mut cur: Option<&DirBuild> = Some(&self.root);
        let mut comps = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .peekable();
        let mut plain = true;
        let mut depth = 0;
        while let Some(c) = comps.next() {
            let last = comps.peek().is_none();
            cur = match cur.map(|d| (d, d.children.get(c))) {
                Some((_, Some(Child::Open(d)))) => Some(d),
                Some((d, None)) => {
                    // A spilled leaf in the way is as a leaf in memory: see below.
                    if !(last && explicit_last)
                        && self.spilled_leaf(d, &components(path)[..depth], c)?
                    {
                        plain = false;
                        break;
                    }
                    None
                }
                None => None,
                Some((_, Some(Child::Done(n))))
                    if n.kind == NodeKind::Dir || (last && explicit_last) =>
                {
                    None
                }
                Some((_, Some(Child::Done(_)))) => {
                    plain = false;
                    break;
                }
            };
            depth += 1;
        }
        if plain {
            return Ok(Resolved::AsIs);
        }
        let mut todo: std::collections::VecDeque<Vec<u8>> = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let mut out: Vec<Vec<u8>> = Vec::new();
        // Components that come from a symlink's target and must exist.
        let mut must_exist = 0usize;
        let mut hops = 0;
        let shown = |out: &[Vec<u8>], c: &[u8]| {
            let mut p = out.join(&b'/');
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(c);
            String::from_utf8_lossy(&p).into_owned()
        };
        // `cur`: the open directory at `out`, while every component so far exists.
        let mut cur: Option<&DirBuild> = Some(&self.root);
        while let Some(c) = todo.pop_front() {
            let last = todo.is_empty();
            let existing = cur.and_then(|d| d.children.get(&c));
            let linked = must_exist > 0;
            must_exist = must_exist.saturating_sub(1);
            let spilled = match (cur, existing) {
                (Some(d), None) => self.spilled_leaf(d, &out, &c)?,
                _ => false,
            };
            match existing {
                None if spilled && last && explicit_last => {
                    cur = None;
                    out.push(c);
                }
                None if spilled => {
                    return Ok(Resolved::Fails(format!(
                        "{} is not a directory in the archive (tar -x fails: Not a directory); not stored",
                        shown(&out, &c)
                    )))
                }
                None if linked => {
                    return Ok(Resolved::Fails(format!(
                        "written through a symlink whose target {} is not in the archive before it (tar -x fails: No such file or directory); not stored",
                        shown(&out, &c)
                    )))
                }
                None => {
                    cur = None;
                    out.push(c);
                }
                Some(Child::Open(d)) => {
                    cur = Some(d);
                    out.push(c);
                }
                Some(Child::Done(n)) if n.kind == NodeKind::Dir => {
                    cur = None;
                    out.push(c);
                }
                Some(Child::Done(_)) if last && explicit_last => {
                    cur = None;
                    out.push(c);
                }
                Some(Child::Done(n)) if n.kind == NodeKind::Symlink => {
                    hops += 1;
                    let t = &n.target;
                    let comps: Vec<Vec<u8>> = t
                        .split(|b| *b == b'/')
                        .filter(|c| !c.is_empty() && *c != b".")
                        .map(<[u8]>::to_vec)
                        .collect();
                    if t.first() == Some(&b'/') || comps.iter().any(|c| c == b"..") || hops > 40
                    {
                        return Ok(Resolved::Fails(format!(
                            "written through the symlink {} -> {}, which tar -x does not follow (absolute, leaves its directory, or loops); not stored",
                            shown(&out, &c),
                            String::from_utf8_lossy(t)
                        )));
                    }
                    must_exist = comps.len();
                    for tc in comps.into_iter().rev() {
                        todo.push_front(tc);
                    }
                    // Resolve the target from the symlink's own directory again.
                    cur = self.dir_at(&out);
                }
                Some(Child::Done(_)) => {
                    return Ok(Resolved::Fails(format!(
                        "{} is not a directory in the archive (tar -x fails: Not a directory); not stored",
                        shown(&out, &c)
                    )))
                }
            }
        }
        Ok(Resolved::Dir(out))
    }

    /// Whether `name` in the open directory `d`, at `comps`, is a leaf written to a
    /// run. Only asked for a name `d` does not hold in memory: then a spilled leaf of
    /// the name is its newest entry (a later one would be in memory).
    fn spilled_leaf(&self, d: &DirBuild, comps: &[Vec<u8>], name: &[u8]) -> Result<bool> {
        match &self.leaves.spill {
            Some(s) if d.spilled => Ok(s
                .find(&spill::key(&spill::dir_prefix(comps), name))?
                .is_some()),
            _ => Ok(false),
        }
    }

    /// The open directory at `comps`, if every component is one.
    fn dir_at(&self, comps: &[Vec<u8>]) -> Option<&DirBuild> {
        let mut cur = &self.root;
        for c in comps {
            cur = match cur.children.get(c)? {
                Child::Open(d) => d,
                Child::Done(_) => return None,
            };
        }
        Some(cur)
    }

    /// The components `path` resolves to (see [`Self::resolve`]), or why `tar -x`
    /// would fail there.
    fn resolved(
        &self,
        path: &[u8],
        explicit: bool,
    ) -> Result<std::result::Result<Vec<Vec<u8>>, String>> {
        Ok(match self.resolve(path, explicit)? {
            Resolved::AsIs => Ok(components(path)),
            Resolved::Dir(c) => Ok(c),
            Resolved::Fails(why) => Err(why),
        })
    }

    /// The open directory at `path`, creating missing directories on the way (a tar
    /// stream may name a file before, or without, its directories). `None` (recorded
    /// in the snapshot's errors) where `tar -x` would fail too, see [`Self::resolve`].
    /// `entry` is the path of the entry being stored, named if it cannot be.
    pub(super) fn open_dir(
        &mut self,
        path: &[u8],
        explicit: bool,
        entry: &[u8],
    ) -> Result<Option<&mut DirBuild>> {
        let comps = match self.resolved(path, explicit)? {
            Ok(c) => c,
            Err(why) => {
                self.warn(entry, why);
                return Ok(None);
            }
        };
        Ok(Some(self.make_dirs(path, comps)?))
    }

    /// The open directory at `comps`, made where missing; a directory replaces a
    /// non-directory on the way (the caller checked that `tar -x` would do so).
    fn make_dirs(&mut self, path: &[u8], comps: Vec<Vec<u8>>) -> Result<&mut DirBuild> {
        let mut cur = &mut self.root;
        for comp in comps {
            let child = cur
                .children
                .entry(comp)
                .or_insert_with_key(|k| DirBuild::dir(k));
            if let Child::Done(n) = child {
                if n.kind == NodeKind::Dir {
                    return Err(Error::Source(format!(
                        "entry below {} arrived after the directory was complete",
                        String::from_utf8_lossy(path)
                    )));
                }
                // A directory entry replaces a non-directory of its name, as tar -x does.
                *child = DirBuild::dir(&n.name);
            }
            cur = match child {
                Child::Open(d) => d,
                Child::Done(_) => unreachable!("replaced above"),
            };
        }
        Ok(cur)
    }

    /// The regular file at `target`, for a hard link to it: a copy of its node whose
    /// link group is set, to `group` if it had none yet (then the caller uses up
    /// `group`). `None` when there is no regular file at `target`.
    pub(super) fn link_target(&mut self, target: &[u8], group: u64) -> Result<Option<Node>> {
        let (dir, name) = split_last(target);
        let Ok(comps) = self.resolved(dir, false)? else {
            return Ok(None);
        };
        let mut cur = &mut self.root;
        for comp in &comps {
            cur = match cur.children.get_mut(comp) {
                Some(Child::Open(d)) => d,
                _ => return Ok(None),
            };
        }
        match cur.children.get_mut(name) {
            Some(Child::Done(n)) if n.kind == NodeKind::File => {
                if n.link_group == 0 {
                    n.link_group = group;
                }
                return Ok(Some(Node::clone(n)));
            }
            Some(_) => return Ok(None),
            None if !cur.spilled => return Ok(None),
            None => {}
        }
        // Written to a run: its group is recorded by key, for the run it is in.
        let Some(s) = &self.leaves.spill else {
            return Ok(None);
        };
        let key = spill::key(&spill::dir_prefix(&comps), name);
        let Some((run, bytes)) = s.find(&key)? else {
            return Ok(None);
        };
        let mut n = spill::decode_node(&bytes)?;
        if n.kind != NodeKind::File {
            return Ok(None);
        }
        if n.link_group == 0 {
            // A group recorded for an older run's record of the key is of a file this
            // one replaced.
            n.link_group = match self.leaves.links.get(&key) {
                Some(&(r, g)) if r == run => g,
                _ => {
                    self.leaves.links.insert(key, (run, group));
                    group
                }
            };
        }
        Ok(Some(n))
    }

    /// Put a non-directory at `path`. It replaces an earlier entry of the name, as
    /// `tar -x` does, except a directory that holds entries: there `tar -x` fails
    /// (`File exists`) and keeps the directory, so this does too and records it.
    /// Returns whether the node was stored.
    pub(super) fn insert(&mut self, path: &[u8], node: Node) -> Result<bool> {
        let (dir, name) = split_last(path);
        let Some(d) = self.open_dir(dir, false, path)? else {
            return Ok(false);
        };
        if let Some(Child::Open(old)) = d.children.get(name) {
            if !old.children.is_empty() || old.spilled {
                self.warn(
                    path,
                    "a non-directory entry of the name of an earlier directory that holds entries (tar -x fails: File exists); the directory is kept, the entry not stored".into(),
                );
                return Ok(false);
            }
        }
        let leaf = spillable(&node).then(|| tree::encoded_len(&node));
        d.children
            .insert(name.to_vec(), Child::Done(Box::new(node)));
        if let Some(bytes) = leaf {
            self.leaves.held += 1;
            self.leaves.held_bytes = self.leaves.held_bytes.saturating_add(bytes);
            if self.leaves.held > self.leaves.limit
                || self.leaves.held_bytes > self.leaves.byte_limit
            {
                self.spill_leaves()?;
            }
        }
        Ok(true)
    }

    /// Write every leaf held in memory to a new run, in key order (a depth-first walk
    /// in name order), and mark their directories. Explicit stack: the depth comes
    /// from untrusted input.
    fn spill_leaves(&mut self) -> Result<()> {
        struct Frame {
            name: Vec<u8>,
            /// `None`: the root.
            dir: Option<Box<DirBuild>>,
            rest: std::collections::btree_map::IntoIter<Vec<u8>, Child>,
            kept: BTreeMap<Vec<u8>, Child>,
            prefix: Vec<u8>,
            spilled: bool,
        }
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(self.leaves.held);
        let mut stack = vec![Frame {
            name: Vec::new(),
            dir: None,
            rest: std::mem::take(&mut self.root.children).into_iter(),
            kept: BTreeMap::new(),
            prefix: Vec::new(),
            spilled: false,
        }];
        loop {
            let top = stack.last_mut().expect("the root frame is popped last");
            match top.rest.next() {
                Some((name, Child::Done(n))) if spillable(&n) => {
                    records.push((spill::key(&top.prefix, &name), encode_node(&n)));
                    top.spilled = true;
                }
                Some((name, Child::Open(mut sub))) => {
                    let mut prefix = top.prefix.clone();
                    prefix.extend_from_slice(&name);
                    prefix.push(0);
                    let rest = std::mem::take(&mut sub.children).into_iter();
                    stack.push(Frame {
                        name,
                        dir: Some(sub),
                        rest,
                        kept: BTreeMap::new(),
                        prefix,
                        spilled: false,
                    });
                }
                Some((name, kept)) => {
                    top.kept.insert(name, kept);
                }
                None => {
                    let f = stack.pop().expect("checked above");
                    match (f.dir, stack.last_mut()) {
                        (Some(mut d), Some(parent)) => {
                            d.children = f.kept;
                            d.spilled |= f.spilled;
                            parent.kept.insert(f.name, Child::Open(d));
                        }
                        _ => {
                            self.root.children = f.kept;
                            self.root.spilled |= f.spilled;
                            break;
                        }
                    }
                }
            }
        }
        self.leaves.held = 0;
        self.leaves.held_bytes = 0;
        if records.is_empty() {
            return Ok(());
        }
        if self.leaves.spill.is_none() {
            self.leaves.spill = Some(Spill::new()?);
        }
        self.leaves
            .spill
            .as_mut()
            .expect("made above")
            .write_run(&records)
    }

    /// Write the tree of an open directory at `comps` (children first) and return
    /// its node: the entries in memory merged with those written to runs. `indexed`
    /// is a tree id the index is known to hold (the parent snapshot's tree of this
    /// directory, read through the index: [`ParentTrees::forget`]): a blob of that id
    /// is not looked up.
    ///
    /// [`ParentTrees::forget`]: super::parent::ParentTrees::forget
    pub(super) fn seal_dir(
        &mut self,
        d: DirBuild,
        comps: &[Vec<u8>],
        indexed: Option<Id>,
    ) -> Result<Node> {
        let prefix = spill::dir_prefix(comps);
        // Taken out while the trees are written (`put_tree` needs `self`); sealing
        // spills nothing.
        let Some(s) = self.leaves.spill.take() else {
            return self.seal_merged(d, prefix, None, &HashMap::new(), indexed);
        };
        let links = std::mem::take(&mut self.leaves.links);
        let sealed = s
            .merge(&prefix)
            .and_then(|mut m| self.seal_merged(d, prefix, Some(&mut m), &links, indexed));
        self.leaves.spill = Some(s);
        self.leaves.links = links;
        sealed
    }

    /// Post-order with an explicit stack (the depth comes from untrusted input); at
    /// each directory the next entry is the smaller name of its next child in memory
    /// and the next spilled record below it. A name in both is the one in memory,
    /// which arrived later (a directory holding spilled entries never leaves memory,
    /// an entry of a name replaces the one in memory, and every leaf held is written
    /// to each new run).
    fn seal_merged(
        &mut self,
        mut d: DirBuild,
        prefix: Vec<u8>,
        mut spilled: Option<&mut Merge<'_>>,
        links: &HashMap<Vec<u8>, (usize, u64)>,
        indexed: Option<Id>,
    ) -> Result<Node> {
        struct Frame {
            node: Node,
            rest: std::iter::Peekable<std::collections::btree_map::IntoIter<Vec<u8>, Child>>,
            tree: TreeWriter,
            prefix: Vec<u8>,
        }
        let frame = |d: &mut DirBuild, prefix: Vec<u8>| Frame {
            node: std::mem::replace(&mut d.node, Node::new(Vec::new(), NodeKind::Dir)),
            rest: std::mem::take(&mut d.children).into_iter().peekable(),
            tree: TreeWriter::new(),
            prefix,
        };
        enum Step {
            /// Store the next spilled record.
            Spilled,
            /// Drop the next spilled record: the name is in memory, or it is below a
            /// directory already sealed.
            Skip,
            /// Take the next child in memory.
            Memory,
            /// The directory is complete.
            Close,
        }
        let mut stack = vec![frame(&mut d, prefix)];
        let mut put = |raw: Vec<u8>| self.put_tree(raw, indexed);
        loop {
            let top = stack
                .last_mut()
                .expect("the stack holds the directory being sealed");
            let mem = top.rest.peek();
            let record = spilled
                .as_ref()
                .and_then(|m| m.peek())
                .and_then(|k| k.strip_prefix(top.prefix.as_slice()));
            let step = match (record, mem) {
                (None, None) => Step::Close,
                (None, Some(_)) => Step::Memory,
                (Some(rel), mem) => {
                    // A record of this directory, or below its subdirectory `name`.
                    let (name, below) = match rel.iter().position(|b| *b == 0) {
                        Some(i) => (&rel[..i], true),
                        None => (rel, false),
                    };
                    match mem {
                        Some((m, _)) if m.as_slice() < name => Step::Memory,
                        Some((m, Child::Open(_))) if m.as_slice() == name && below => Step::Memory,
                        Some((m, _)) if m.as_slice() == name => Step::Skip,
                        _ if below => Step::Skip,
                        _ => Step::Spilled,
                    }
                }
            };
            match step {
                Step::Spilled => {
                    let m = spilled.as_mut().expect("a record was peeked");
                    let (key, run, bytes) = m.pop()?.expect("a record was peeked");
                    match links.get(&key) {
                        Some(&(r, g)) if r == run => {
                            let mut n = spill::decode_node(&bytes)?;
                            n.link_group = g;
                            top.tree.push(&n, &mut put)?;
                        }
                        _ => top.tree.push_encoded(&bytes, &mut put)?,
                    }
                }
                Step::Skip => {
                    spilled.as_mut().expect("a record was peeked").skip()?;
                }
                Step::Memory => match top.rest.next().expect("peeked") {
                    (_, Child::Done(n)) => top.tree.push(&n, &mut put)?,
                    (name, Child::Open(mut sub)) => {
                        let mut prefix = top.prefix.clone();
                        prefix.extend_from_slice(&name);
                        prefix.push(0);
                        stack.push(frame(&mut sub, prefix));
                    }
                },
                Step::Close => {
                    let f = stack.pop().expect("checked above");
                    let id = f.tree.finish(&mut put)?;
                    let mut node = f.node;
                    node.content = vec![id];
                    match stack.last_mut() {
                        Some(parent) => parent.tree.push(&node, &mut put)?,
                        None => return Ok(node),
                    }
                }
            }
        }
    }

    /// Seal the open directory at `path` (a source said it is complete) and keep its
    /// node in its parent; `indexed` as for [`Ingest::seal_dir`].
    pub(super) fn seal_at(&mut self, path: &[u8], indexed: Option<Id>) -> Result<()> {
        let (dir, name) = split_last(path);
        let Ok(mut comps) = self.resolved(dir, false)? else {
            return Ok(());
        };
        let Some(parent) = self.open_dir(dir, false, path)? else {
            return Ok(());
        };
        let Some(Child::Open(d)) = parent.children.remove(name) else {
            return Ok(());
        };
        comps.push(name.to_vec());
        let node = self.seal_dir(*d, &comps, indexed)?;
        if let Some(parent) = self.open_dir(dir, false, path)? {
            parent
                .children
                .insert(name.to_vec(), Child::Done(Box::new(node)));
        }
        Ok(())
    }

    pub(super) fn finish_root(&mut self) -> Result<(Id, RootMeta)> {
        let root = std::mem::replace(
            &mut self.root,
            DirBuild::new(Node::new(Vec::new(), NodeKind::Dir)),
        );
        let meta = RootMeta {
            mode: root.node.mode,
            uid: root.node.uid,
            gid: root.node.gid,
            mtime: root.node.mtime,
            mtime_nsec: root.node.mtime_nsec,
        };
        let indexed = self.parent.as_ref().and_then(|p| p.read_root());
        let node = self.seal_dir(root, &[], indexed)?;
        Ok((node.content[0], meta))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{snapshot_spilling, SnapshotSpec};
    use crate::id::Id;
    use crate::progress::Progress;
    use crate::repo::{Access, Repository};
    use crate::snapshot::{FileError, SourceKind};
    use tar::{EntryType, Header};

    /// A tar stream built entry by entry.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn header(kind: EntryType, size: u64, mtime: u64) -> Header {
            let mut h = Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            h
        }
        fn file(&mut self, path: &str, data: &[u8]) -> &mut Tar {
            let mut h = Tar::header(EntryType::Regular, data.len() as u64, data.len() as u64);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }
        fn dir(&mut self, path: &str, mtime: u64) -> &mut Tar {
            let mut h = Tar::header(EntryType::Directory, 0, mtime);
            self.0.append_data(&mut h, path, &[][..]).unwrap();
            self
        }
        fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Tar {
            let mut h = Tar::header(kind, 0, 7);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        fn fifo(&mut self, path: &str) -> &mut Tar {
            let mut h = Tar::header(EntryType::Fifo, 0, 9);
            self.0.append_data(&mut h, path, &[][..]).unwrap();
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// Import `tar` holding at most `spill_after` leaves in memory: the root tree, the
    /// snapshot's errors and the number of runs written.
    fn import(repo: &Repository, tar: &[u8], spill_after: usize) -> (Id, Vec<FileError>, usize) {
        let spec = SnapshotSpec::new("t", SourceKind::Tar);
        let progress = Progress::new(true, "test");
        let (_, snap, counts) = snapshot_spilling(repo, spec, &progress, spill_after, |sink| {
            crate::source::tar::read_tar(tar, b"", sink)
        })
        .unwrap();
        (snap.tree, snap.errors, counts.spill_runs)
    }

    /// Every path of the tree `id` with the node fields that differ when an entry is
    /// lost or the wrong copy of a name wins, sorted.
    fn flat(repo: &Repository, id: &Id) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![(String::new(), *id)];
        while let Some((p, id)) = todo.pop() {
            for n in crate::walk::load(repo, &id).unwrap() {
                let path = format!("{p}/{}", n.name_lossy());
                if let Some(sub) = n.subtree() {
                    todo.push((path.clone(), sub));
                }
                out.push(format!(
                    "{path} {:?} size={} mtime={} link_group={} content={:?}",
                    n.kind, n.size, n.mtime, n.link_group, n.content
                ));
            }
        }
        out.sort();
        out
    }

    fn repo(d: &tempfile::TempDir) -> Repository {
        let root = d.path().join("repo");
        Repository::init(&root).unwrap();
        Repository::open(&root, Access::Append).unwrap()
    }

    /// The stream's tricky shapes: repeated paths, hard links (to files in memory,
    /// spilled, and replaced later), a directory then a file of its name (with and
    /// without entries), entries below a file, a directory entry replacing a file,
    /// symlinks written through, deep paths, implicit directories and a directory
    /// entry after its contents.
    fn tricky() -> Vec<u8> {
        let mut t = Tar::new();
        t.dir("top/", 1)
            .file("top/a", b"first a")
            .file("top/b", b"b");
        for i in 0..20 {
            t.file(&format!("top/n{i:02}"), format!("n{i}").as_bytes());
        }
        // Repeated: the later entry replaces the earlier one, spilled or not.
        t.file("top/a", b"second a").file("top/n03", b"n03 again");
        t.link(EntryType::Link, "top/hl-b", "top/b");
        t.link(EntryType::Link, "top/hl-b2", "top/b");
        t.link(EntryType::Link, "top/hl-n01", "top/n01");
        // A linked file replaced afterwards: the new one is not in the group.
        t.link(EntryType::Link, "top/hl-n02", "top/n02");
        t.file("top/n02", b"n02 replaced");
        t.link(EntryType::Link, "top/hl-n02-new", "top/n02");
        t.link(EntryType::Link, "top/hl-missing", "top/nothing");
        // A directory holding an entry, then a file of its name: the directory stays.
        t.dir("x/", 2).file("x/kept", b"kept").file("x", b"file");
        // An empty directory, then a file of its name: the file replaces it.
        t.dir("e/", 3).file("e", b"e file");
        // A file, then an entry below it: refused; then a directory entry replaces it.
        t.file("f", b"f file");
        for i in 0..10 {
            t.file(&format!("pad{i}"), b"pad");
        }
        t.file("f/y", b"below a file")
            .dir("f/", 4)
            .file("f/z", b"z");
        // Through a symlink to a directory; through one to a file.
        t.dir("d/", 5)
            .link(EntryType::Symlink, "l", "d")
            .file("l/through", b"through");
        t.link(EntryType::Symlink, "lf", "top/b")
            .file("lf/below", b"no");
        t.fifo("top/fifo").fifo("top/n05");
        // Implicit directories below a directory with spilled entries.
        t.file("top/sub/deeper/g", b"g")
            .file("top/n07/h", b"below n07");
        let deep = "q/".repeat(150);
        t.file(&format!("{deep}leaf"), b"deep");
        for i in 0..10 {
            t.file(&format!("late/f{i}"), b"late");
        }
        t.dir("late/", 6);
        t.file("top/a", b"third a");
        t.bytes()
    }

    /// The same tree, whatever the number of leaves held in memory.
    #[test]
    fn spilled_imports_make_the_same_trees() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo(&d);
        let tar = tricky();
        let (want, want_errors, runs) = import(&repo, &tar, usize::MAX);
        assert_eq!(runs, 0);
        assert!(want_errors.len() >= 4, "{want_errors:?}");
        for limit in [0, 1, 2, 3, 5, 8, 13, 40] {
            let (got, errors, runs) = import(&repo, &tar, limit);
            assert!(runs > 0, "limit {limit}: nothing spilled");
            assert_eq!(flat(&repo, &got), flat(&repo, &want), "limit {limit}");
            assert_eq!(got, want, "limit {limit}");
            assert_eq!(errors, want_errors, "limit {limit}");
        }
        // The nodes themselves, as read back.
        let nodes = |id: &Id| crate::walk::load(&repo, id).unwrap();
        let root = nodes(&want);
        let top = root.iter().find(|n| n.name == b"top").unwrap();
        let top = nodes(&top.content[0]);
        let get = |name: &str| top.iter().find(|n| n.name == name.as_bytes()).unwrap();
        assert_eq!(get("a").size, b"third a".len() as u64);
        let b = get("b");
        assert!(b.link_group != 0);
        assert_eq!(get("hl-b").link_group, b.link_group);
        assert_eq!(get("hl-b2").link_group, b.link_group);
        assert_eq!(get("hl-n01").link_group, get("n01").link_group);
        assert_eq!(get("n02").link_group, get("hl-n02-new").link_group);
        assert_ne!(get("n02").link_group, get("hl-n02").link_group);
        assert!(top.iter().all(|n| n.name != b"hl-missing"));
    }

    /// Two files whose nodes list many chunk ids: they go to a run once their encoded
    /// bytes pass the limit, though far fewer than the limit's count of leaves, and
    /// the tree is the same as when nothing is spilled.
    #[test]
    fn leaves_with_long_chunk_lists_are_spilled_by_their_bytes() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo(&d);
        // Incompressible, distinct bytes from BLAKE3's extendable output.
        let noise = |seed: &[u8], n: usize| -> Vec<u8> {
            let mut v = vec![0u8; n];
            blake3::Hasher::new()
                .update(seed)
                .finalize_xof()
                .fill(&mut v);
            v
        };
        let (a, b) = (noise(b"a", 2 << 20), noise(b"b", 2 << 20));
        let mut t = Tar::new();
        t.dir("models/", 1)
            .file("models/a", &a)
            .file("models/b", &b);
        let tar = t.bytes();
        let (want, _, none) = import(&repo, &tar, usize::MAX);
        // A limit of 2 leaves is ~840 bytes of them: one node of 2 MiB in ~64 KiB
        // chunks (some 32 ids of 32 bytes) passes it, two leaves do not pass the count.
        let (got, _, runs) = import(&repo, &tar, 2);
        assert_eq!(none, 0);
        assert!(
            runs >= 1,
            "{runs} runs: the bytes of the leaves were not counted"
        );
        assert_eq!(got, want);
    }

    /// A directory of more entries than one tree part holds is written as parts, the
    /// same from runs as from memory.
    #[test]
    fn a_spilled_directory_larger_than_a_tree_part_is_the_same() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo(&d);
        let mut t = Tar::new();
        t.dir("big/", 1);
        // ~290 bytes per node: 16,000 of them take more than one 4 MiB part.
        let pad = "p".repeat(190);
        for i in 0..16_000 {
            t.file(&format!("big/{pad}{:05}", (i * 7919) % 16_000), b"");
        }
        t.file("big/again", b"1")
            .file(&format!("big/{pad}00042"), b"replaced");
        let tar = t.bytes();
        let (want, _, _) = import(&repo, &tar, usize::MAX);
        let (got, _, runs) = import(&repo, &tar, 1000);
        assert!(runs >= 15, "{runs} runs");
        assert_eq!(got, want);
        let root = crate::walk::load(&repo, &want).unwrap();
        let blob = repo.read_blob(&root[0].content[0]).unwrap();
        assert!(
            matches!(crate::tree::decode_blob(&blob), Ok(crate::tree::TreeBlob::Split(p)) if p.len() >= 2),
            "big/ is not a split tree"
        );
    }
}
