//! What becomes of the entries a source pushes into the [`Sink`] (which queues them
//! in walk order while files are read ahead, [`super::read`]): names are checked
//! against the format's limits, hard links are grouped, and each entry goes to the
//! tree being assembled.

use super::read::Body;
use super::tree::split_last;
use super::Ingest;
use crate::error::Result;
use crate::snapshot::{Excluded, FileError};
use crate::source::{Entry, Sink};
use crate::tree::{self, NodeKind};

impl Ingest<'_> {
    /// Add an entry to the tree, its content read if needed ([`Ingest::file_content`]).
    /// The [`Sink`] calls this in walk order ([`super::read`]).
    pub(super) fn apply_entry(&mut self, mut e: Entry, content: Body<'_>) -> Result<()> {
        self.progress.set_path(&e.path);
        self.newest_mtime = Some(
            self.newest_mtime
                .map_or(e.node.mtime, |n| n.max(e.node.mtime)),
        );
        if e.path.is_empty() {
            if e.node.kind == NodeKind::Dir {
                self.root.node = e.node;
            }
            return Ok(());
        }
        if !e.path.split(|b| *b == b'/').all(tree::valid_name) {
            self.warn(
                &e.path,
                "a name in this path cannot be stored; entry skipped".into(),
            );
            return Ok(());
        }
        if let Err(why) = tree::fits(&e.node) {
            self.warn(&e.path, format!("{why}; entry skipped"));
            return Ok(());
        }
        if tree::truncate_owner_names(&mut e.node) {
            self.stored_inexactly(
                &e.path,
                format!(
                    "owner or group name longer than {} bytes; stored cut to that length",
                    tree::MAX_OWNER_NAME
                ),
            );
        }
        let (_, name) = split_last(&e.path);
        e.node.name = name.to_vec();
        match e.node.kind {
            NodeKind::Dir => {
                let path = e.path.clone();
                let Some(d) = self.open_dir(&path, true, &e.path)? else {
                    return Ok(());
                };
                let name = std::mem::take(&mut e.node.name);
                d.node = e.node;
                d.node.name = name;
                self.stats.dirs += 1;
                Ok(())
            }
            NodeKind::File => {
                if let Some(target) = e.hardlink_to.take() {
                    let group = self.next_group;
                    let Some(t) = self.link_target(&target, group)? else {
                        self.warn(
                            &e.path,
                            format!(
                                "hard link to {} which is not in the stream before it",
                                String::from_utf8_lossy(&target)
                            ),
                        );
                        return Ok(());
                    };
                    // One inode: `tar -x` gives the link the target's metadata, and
                    // restore creates whichever name comes first in the tree.
                    if t.link_group == group {
                        self.next_group += 1;
                    }
                    let name = std::mem::take(&mut e.node.name);
                    e.node = t;
                    e.node.name = name;
                    if self.insert(&e.path.clone(), e.node)? {
                        self.stats.files += 1;
                    }
                    return Ok(());
                }
                if let Some(key) = e.link_key {
                    if let Some((g, ids, size)) = self.links_by_key.get(&key) {
                        e.node.link_group = *g;
                        e.node.content = ids.clone();
                        e.node.size = *size;
                        if self.insert(&e.path.clone(), e.node)? {
                            self.stats.files += 1;
                        }
                        return Ok(());
                    }
                }
                let Some((ids, size)) = self.file_content(&mut e, content)? else {
                    return Ok(());
                };
                e.node.content = ids;
                e.node.size = size;
                // Only now is the chunk list known: a file of millions of chunks can
                // outgrow what one tree blob holds.
                if let Err(why) = tree::fits(&e.node) {
                    self.warn(&e.path, format!("{why}; file not stored"));
                    return Ok(());
                }
                if let Some(key) = e.link_key {
                    e.node.link_group = self.next_group;
                    self.next_group += 1;
                    self.links_by_key
                        .insert(key, (e.node.link_group, e.node.content.clone(), size));
                }
                if self.insert(&e.path.clone(), e.node)? {
                    self.stats.files += 1;
                    self.stats.bytes += size;
                }
                Ok(())
            }
            _ => {
                if self.insert(&e.path.clone(), e.node)? {
                    self.stats.other += 1;
                }
                Ok(())
            }
        }
    }

    /// The source will yield nothing more below `path`: write its tree.
    /// The root is sealed by [`Ingest::finish_root`], with the parent's root tree kept
    /// for it.
    pub(super) fn apply_dir_done(&mut self, path: &[u8]) -> Result<()> {
        if path.is_empty() {
            return Ok(());
        }
        let indexed = self.parent.as_mut().and_then(|p| p.forget(path));
        self.seal_at(path, indexed)
    }

    /// Record why the entry at `path` is not in the snapshot exactly as the source
    /// has it: left out, or `stored` otherwise than it was ([`FileError::stored`]).
    pub(super) fn apply_warn(&mut self, path: &[u8], error: String, stored: bool) {
        let p = String::from_utf8_lossy(path).into_owned();
        self.progress
            .println(&format!("cbsnap: warning: {p}: {error}"));
        self.errors.push(FileError {
            path: p,
            error,
            stored,
        });
    }

    /// Record that the source left the entry at `path` out on purpose, and say so
    /// once. Not queued behind the entries being read, as warnings are: nothing of it
    /// enters the tree, and the snapshot lists these apart from its errors.
    pub(super) fn apply_left_out(&mut self, path: &[u8], why: String) {
        let path = String::from_utf8_lossy(path).into_owned();
        self.progress.notice(crate::warn::Warning::LeftOut {
            source: self.source.clone(),
            path: path.clone(),
            why: why.clone(),
        });
        self.excluded.push(Excluded { path, why });
    }
}
