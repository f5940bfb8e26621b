//! Tracing damage to what it breaks: each snapshot's trees are walked (each tree once,
//! memoised) to name the snapshots and paths that need a faulty blob. Directories are
//! read by [`Listing::read`]; the walk itself is bottom-up (a tree's result is the sum
//! of its subtrees'), which the pre-order [`crate::walk::Walker`] cannot give.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use super::{Broken, Faults, Findings, Problem, Report};
use crate::error::Result;
use crate::id::Id;
use crate::snapshot::Snapshot;
use crate::walk::Listing;

/// Walk every snapshot again and attribute each fault to the snapshots and paths it
/// breaks, grouped by the pack at fault.
pub(super) fn trace(
    snapshots: &[(Id, Snapshot)],
    read_blob: &dyn Fn(&Id) -> Result<Vec<u8>>,
    f: &mut Findings,
    r: &mut Report,
) {
    let mut broken: BTreeMap<Option<Id>, Vec<Broken>> = BTreeMap::new();
    let mut damaged: BTreeMap<Option<Id>, BTreeSet<Id>> = BTreeMap::new();
    let mut lines: Vec<(Option<Id>, String)> = Vec::new();
    let mut tracer = Tracer {
        read: read_blob,
        faults: &f.faults,
        memo: HashMap::new(),
    };
    for (sid, snap) in snapshots {
        let mut per_pack: BTreeMap<Option<Id>, Vec<String>> = BTreeMap::new();
        for (path, blob) in tracer.tree(&snap.tree).iter() {
            let Some(fault) = f.faults.get(blob) else {
                continue;
            };
            damaged.entry(fault.pack).or_default().insert(*blob);
            lines.push((fault.pack, fault.why.clone()));
            let paths = per_pack.entry(fault.pack).or_default();
            let path = if path.is_empty() { "/" } else { path.as_str() };
            if paths.last().map(String::as_str) != Some(path) {
                paths.push(path.to_string());
            }
        }
        for (pack, paths) in per_pack {
            broken.entry(pack).or_default().push(Broken {
                id: *sid,
                name: snap.name.clone(),
                time: snap.time,
                paths,
            });
        }
    }
    // A pack already described (damaged trailer, bytes changed) needs no more lines.
    for (pack, why) in lines {
        if pack.is_none() || !f.problems.contains_key(&pack) {
            f.note(pack, why);
        }
    }
    for (pack, what) in std::mem::take(&mut f.problems) {
        r.problems.push(Problem {
            pack,
            what,
            damaged_blobs: damaged.get(&pack).map_or(0, |s| s.len()),
            snapshots: broken.remove(&pack).unwrap_or_default(),
        });
    }
}

type Hits = Rc<Vec<(String, Id)>>;

/// Finds, below a tree, the paths that need a faulty blob. Each tree is examined once;
/// the result is shared by every snapshot that holds it.
struct Tracer<'a> {
    read: &'a dyn Fn(&Id) -> Result<Vec<u8>>,
    faults: &'a Faults,
    memo: HashMap<Id, Hits>,
}

impl Tracer<'_> {
    /// The faulty blobs below `root`, with the path (relative to `root`) that needs
    /// each. Depth-first with an explicit stack: a tree's result is built once all
    /// its subtrees have theirs, and untrusted depth never touches the thread's stack.
    fn tree(&mut self, root: &Id) -> Hits {
        let mut open: HashMap<Id, Listing> = HashMap::new();
        let mut stack = vec![*root];
        while let Some(&id) = stack.last() {
            if self.memo.contains_key(&id) {
                stack.pop();
                continue;
            }
            if !open.contains_key(&id) {
                let l = Listing::read(self.read, &id);
                // A subtree already open is an ancestor (a cycle only damage can
                // make); it contributes nothing.
                let subs: Vec<Id> = l
                    .nodes
                    .iter()
                    .filter_map(|n| n.subtree())
                    .filter(|s| *s != id && !self.memo.contains_key(s) && !open.contains_key(s))
                    .collect();
                open.insert(id, l);
                if !subs.is_empty() {
                    stack.extend(subs);
                    continue;
                }
            }
            stack.pop();
            let l = open.remove(&id).expect("listed above");
            let mut out: Vec<(String, Id)> = l
                .unreadable
                .iter()
                .map(|(b, _)| (String::new(), *b))
                .collect();
            for n in &l.nodes {
                let name = n.name_lossy();
                if let Some(sub) = n.subtree() {
                    if let Some(h) = self.memo.get(&sub) {
                        for (p, b) in h.iter() {
                            out.push((format!("{name}/{p}"), *b));
                        }
                    }
                } else {
                    for b in n.content.iter().filter(|c| self.faults.get(c).is_some()) {
                        out.push((name.clone(), *b));
                    }
                }
            }
            self.memo.insert(id, Rc::new(out));
        }
        self.memo.get(root).cloned().unwrap_or_default()
    }
}
