//! `diff`: what changed between two snapshots.
//!
//! Both trees are walked side by side in name order (trees are sorted by name). A
//! directory whose tree id is equal on both sides is skipped without being read, so
//! comparing two snapshots of a large, mostly unchanged source reads only the changed
//! directories. Changes use restic's letters: `+` added, `-` removed, `M` content
//! modified, `T` type changed, `U` metadata only (mode, owner, mtime, xattrs).

use std::cmp::Ordering;

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};
use crate::walk;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Modified,
    TypeChanged,
    Metadata,
}

impl Change {
    pub fn letter(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }
}

/// One changed path. Directories end in `/`.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub change: Change,
    pub path: String,
    /// `ls -l` type letter of the new entry (the old one when removed).
    pub kind: char,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub type_changed: u64,
    pub metadata: u64,
    /// Sizes of added and removed files; for modified files, old and new sizes.
    pub added_bytes: u64,
    pub removed_bytes: u64,
    pub modified_old_bytes: u64,
    pub modified_new_bytes: u64,
}

impl Summary {
    fn count(&mut self, e: &Entry) {
        let (old, new) = (e.old_size.unwrap_or(0), e.new_size.unwrap_or(0));
        match e.change {
            Change::Added => {
                self.added += 1;
                self.added_bytes += new;
            }
            Change::Removed => {
                self.removed += 1;
                self.removed_bytes += old;
            }
            Change::Modified => {
                self.modified += 1;
                self.modified_old_bytes += old;
                self.modified_new_bytes += new;
            }
            Change::TypeChanged => {
                self.type_changed += 1;
                self.removed_bytes += old;
                self.added_bytes += new;
            }
            Change::Metadata => self.metadata += 1,
        }
    }
}

/// Compare snapshot `a` (older) with `b`, handing each change to `out` in path order.
pub fn diff(
    repo: &Repository,
    a: &Snapshot,
    b: &Snapshot,
    out: &mut dyn FnMut(&Entry),
) -> Result<Summary> {
    let mut d = Differ {
        repo,
        out,
        summary: Summary::default(),
    };
    d.trees(Some(&a.tree), Some(&b.tree), "")?;
    Ok(d.summary)
}

struct Differ<'a> {
    repo: &'a Repository,
    out: &'a mut dyn FnMut(&Entry),
    summary: Summary,
}

fn file_size(n: &Node) -> Option<u64> {
    (n.kind == NodeKind::File).then_some(n.size)
}

fn content_differs(a: &Node, b: &Node) -> bool {
    a.size != b.size
        || a.content != b.content
        || a.target != b.target
        || (a.rdev_major, a.rdev_minor) != (b.rdev_major, b.rdev_minor)
}

fn meta_differs(a: &Node, b: &Node) -> bool {
    let dir = a.kind == NodeKind::Dir;
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.xattrs != b.xattrs
        // A directory's mtime follows its entries, which are reported themselves.
        || (!dir && (a.mtime, a.mtime_nsec) != (b.mtime, b.mtime_nsec))
}

/// A subtree comparison still to do: old tree, new tree, path prefix.
type Job = (Option<Id>, Option<Id>, String);

impl Differ<'_> {
    fn emit(&mut self, change: Change, path: String, old: Option<&Node>, new: Option<&Node>) {
        let e = Entry {
            change,
            kind: new.or(old).map_or('?', |n| n.kind.letter()),
            path,
            old_size: old.and_then(file_size),
            new_size: new.and_then(file_size),
        };
        self.summary.count(&e);
        (self.out)(&e);
    }

    /// Compare two trees (either may be absent), depth first in name order. The walk
    /// keeps its own stack of levels: tree depth comes from the repository, which
    /// may hold a hostile tar import, and must not be bounded by the thread's stack.
    fn trees(&mut self, a: Option<&Id>, b: Option<&Id>, prefix: &str) -> Result<()> {
        enum Work {
            Job(Option<Id>, Option<Id>, String),
            Level {
                old: Vec<Node>,
                new: Vec<Node>,
                i: usize,
                j: usize,
                prefix: String,
            },
        }
        let mut stack = vec![Work::Job(a.copied(), b.copied(), prefix.to_string())];
        while let Some(w) = stack.pop() {
            match w {
                Work::Job(a, b, prefix) => {
                    if a.is_some() && a == b {
                        continue;
                    }
                    let load =
                        |t: Option<Id>| t.map_or(Ok(Vec::new()), |t| walk::load(self.repo, &t));
                    stack.push(Work::Level {
                        old: load(a)?,
                        new: load(b)?,
                        i: 0,
                        j: 0,
                        prefix,
                    });
                }
                Work::Level {
                    old,
                    new,
                    mut i,
                    mut j,
                    prefix,
                } => {
                    if i >= old.len() && j >= new.len() {
                        continue;
                    }
                    let ord = match (old.get(i), new.get(j)) {
                        (Some(x), Some(y)) => x.name.cmp(&y.name),
                        (Some(_), None) => Ordering::Less,
                        _ => Ordering::Greater,
                    };
                    let jobs = match ord {
                        Ordering::Less => {
                            i += 1;
                            self.one_side(&old[i - 1], &prefix, Change::Removed)
                        }
                        Ordering::Greater => {
                            j += 1;
                            self.one_side(&new[j - 1], &prefix, Change::Added)
                        }
                        Ordering::Equal => {
                            i += 1;
                            j += 1;
                            self.both(&old[i - 1], &new[j - 1], &prefix)
                        }
                    };
                    stack.push(Work::Level {
                        old,
                        new,
                        i,
                        j,
                        prefix,
                    });
                    // The subtrees of this entry come before its next sibling.
                    for (a, b, p) in jobs.into_iter().rev() {
                        stack.push(Work::Job(a, b, p));
                    }
                }
            }
        }
        Ok(())
    }

    fn path(prefix: &str, n: &Node) -> String {
        let slash = if n.kind == NodeKind::Dir { "/" } else { "" };
        format!("{prefix}{}{slash}", n.name_lossy())
    }

    /// An entry present on one side only; returns the subtree comparison still to do.
    fn one_side(&mut self, n: &Node, prefix: &str, change: Change) -> Vec<Job> {
        let path = Self::path(prefix, n);
        let (old, new) = match change {
            Change::Removed => (Some(n), None),
            _ => (None, Some(n)),
        };
        self.emit(change, path.clone(), old, new);
        let mut jobs = Vec::new();
        if let Some(t) = n.subtree() {
            jobs.push(match change {
                Change::Removed => (Some(t), None, path),
                _ => (None, Some(t), path),
            });
        }
        jobs
    }

    /// An entry on both sides; returns the subtree comparisons still to do, in order.
    fn both(&mut self, a: &Node, b: &Node, prefix: &str) -> Vec<Job> {
        let mut jobs = Vec::new();
        if a.kind != b.kind {
            self.emit(Change::TypeChanged, Self::path(prefix, b), Some(a), Some(b));
            if let Some(t) = a.subtree() {
                jobs.push((Some(t), None, Self::path(prefix, a)));
            }
            if let Some(t) = b.subtree() {
                jobs.push((None, Some(t), Self::path(prefix, b)));
            }
            return jobs;
        }
        let path = Self::path(prefix, b);
        if a.kind == NodeKind::Dir {
            if meta_differs(a, b) {
                self.emit(Change::Metadata, path.clone(), Some(a), Some(b));
            }
            jobs.push((a.subtree(), b.subtree(), path));
            return jobs;
        }
        if content_differs(a, b) {
            self.emit(Change::Modified, path, Some(a), Some(b));
        } else if meta_differs(a, b) {
            self.emit(Change::Metadata, path, Some(a), Some(b));
        }
        jobs
    }
}
