//! Assembling directories: entries arrive in any order (a tar stream may name a file
//! before its directory), are placed the way `tar -x` into an empty directory would
//! place them, and each directory becomes a tree blob as soon as the source says it
//! is complete.

use std::collections::BTreeMap;

use super::Ingest;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobKind;
use crate::snapshot::RootMeta;
use crate::source::Sink;
use crate::tree::{self, Node, NodeKind};

/// A directory being assembled.
pub(super) struct DirBuild {
    pub(super) node: Node,
    pub(super) children: BTreeMap<Vec<u8>, Child>,
}

// Leaves are by far the most common children; boxing them would allocate per file.
#[allow(clippy::large_enum_variant)]
pub(super) enum Child {
    Open(Box<DirBuild>),
    /// A leaf, or a directory whose tree is already written.
    Done(Node),
}

impl DirBuild {
    pub(super) fn new(node: Node) -> DirBuild {
        DirBuild {
            node,
            children: BTreeMap::new(),
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
    fn resolve(&self, path: &[u8], explicit_last: bool) -> Resolved {
        // The common case, without allocating: directories all the way.
        let mut cur: Option<&DirBuild> = Some(&self.root);
        let mut comps = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .peekable();
        let mut plain = true;
        while let Some(c) = comps.next() {
            let last = comps.peek().is_none();
            cur = match cur.and_then(|d| d.children.get(c)) {
                Some(Child::Open(d)) => Some(d),
                None => None,
                Some(Child::Done(n)) if n.kind == NodeKind::Dir || (last && explicit_last) => None,
                Some(Child::Done(_)) => {
                    plain = false;
                    break;
                }
            };
        }
        if plain {
            return Resolved::AsIs;
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
            match existing {
                None if linked => {
                    return Resolved::Fails(format!(
                        "written through a symlink whose target {} is not in the archive before it (tar -x fails: No such file or directory); not stored",
                        shown(&out, &c)
                    ))
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
                        return Resolved::Fails(format!(
                            "written through the symlink {} -> {}, which tar -x does not follow (absolute, leaves its directory, or loops); not stored",
                            shown(&out, &c),
                            String::from_utf8_lossy(t)
                        ));
                    }
                    must_exist = comps.len();
                    for tc in comps.into_iter().rev() {
                        todo.push_front(tc);
                    }
                    // Resolve the target from the symlink's own directory again.
                    cur = self.dir_at(&out);
                }
                Some(Child::Done(_)) => {
                    return Resolved::Fails(format!(
                        "{} is not a directory in the archive (tar -x fails: Not a directory); not stored",
                        shown(&out, &c)
                    ))
                }
            }
        }
        Resolved::Dir(out)
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
        let comps = match self.resolve(path, explicit) {
            Resolved::AsIs => components(path),
            Resolved::Dir(c) => c,
            Resolved::Fails(why) => {
                self.warn(entry, why);
                return Ok(None);
            }
        };
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
        Ok(Some(cur))
    }

    pub(super) fn find_leaf(&mut self, path: &[u8]) -> Option<&mut Node> {
        let (dir, name) = split_last(path);
        let comps = match self.resolve(dir, false) {
            Resolved::AsIs => components(dir),
            Resolved::Dir(c) => c,
            Resolved::Fails(_) => return None,
        };
        let mut cur = &mut self.root;
        for comp in &comps {
            cur = match cur.children.get_mut(comp)? {
                Child::Open(d) => d,
                Child::Done(_) => return None,
            };
        }
        match cur.children.get_mut(name)? {
            Child::Done(n) if n.kind == NodeKind::File => Some(n),
            _ => None,
        }
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
            if !old.children.is_empty() {
                self.warn(
                    path,
                    "a non-directory entry of the name of an earlier directory that holds entries (tar -x fails: File exists); the directory is kept, the entry not stored".into(),
                );
                return Ok(false);
            }
        }
        d.children.insert(name.to_vec(), Child::Done(node));
        Ok(true)
    }

    /// Store one directory's tree ([`tree::write`] splits one too large for a blob).
    fn write_tree(&mut self, nodes: &[Node]) -> Result<Id> {
        tree::write(nodes, |raw| self.put_blob(BlobKind::Tree, raw))
    }

    /// Write the tree of an open directory (children first) and return its node.
    /// Post-order with an explicit stack: the depth comes from untrusted input.
    pub(super) fn seal_dir(&mut self, mut d: DirBuild) -> Result<Node> {
        struct Frame {
            node: Node,
            rest: std::collections::btree_map::IntoIter<Vec<u8>, Child>,
            done: Vec<Node>,
        }
        let frame = |d: &mut DirBuild| Frame {
            node: std::mem::replace(&mut d.node, Node::new(Vec::new(), NodeKind::Dir)),
            done: Vec::with_capacity(d.children.len()),
            rest: std::mem::take(&mut d.children).into_iter(),
        };
        let mut stack = vec![frame(&mut d)];
        loop {
            let top = stack
                .last_mut()
                .expect("the stack holds the directory being sealed");
            match top.rest.next() {
                Some((_, Child::Done(n))) => top.done.push(n),
                Some((_, Child::Open(mut sub))) => stack.push(frame(&mut sub)),
                None => {
                    let f = stack.pop().expect("checked above");
                    let id = self.write_tree(&f.done)?;
                    let mut node = f.node;
                    node.content = vec![id];
                    match stack.last_mut() {
                        Some(parent) => parent.done.push(node),
                        None => return Ok(node),
                    }
                }
            }
        }
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
        let node = self.seal_dir(root)?;
        Ok((node.content[0], meta))
    }
}
