//! `stats`: how big the repository is, how well it deduplicates, and what each
//! snapshot cost.
//!
//! A snapshot's cost is the blobs no *earlier* snapshot (of any source) references:
//! what it added to the repository, and what forgetting it alone could free once it is
//! the last to use them. Snapshots are walked oldest first, each tree once, recording
//! for every referenced blob the first snapshot that needed it; the index is then
//! streamed once in id order to add up the sizes. Memory is 16 bytes per referenced
//! blob (a key and a snapshot number), never a copy of the index.

use serde::Serialize;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::id::Id;
use crate::prune::reach::{self, key, BlobKey, KeySet};
use crate::repo::Repository;
use crate::snapshot::{self, Snapshot};
use crate::walk::Walker;

#[derive(Debug, Default, Serialize)]
pub struct RepoTotals {
    pub snapshots: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    pub blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// Indexed blobs no snapshot references: what `prune` can remove.
    pub unreferenced_blobs: u64,
    pub unreferenced_bytes: u64,
}

/// The snapshots `stats` was asked about (all, or one source).
#[derive(Debug, Default, Serialize)]
pub struct Selection {
    pub name: Option<String>,
    pub snapshots: usize,
    pub files: u64,
    /// Sum of the file sizes of every selected snapshot: what restoring all would write.
    pub logical_bytes: u64,
    /// Distinct blobs the selection references, raw and stored.
    pub blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// logical / raw, raw / stored, logical / stored.
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    pub total_ratio: f64,
    /// Referenced blobs the index lacks (`cbsnap check` tells what they break).
    pub missing_blobs: usize,
}

/// What one snapshot added.
#[derive(Debug, Serialize)]
pub struct Cost {
    pub id: Id,
    pub name: String,
    pub time: DateTime<Utc>,
    pub files: u64,
    pub logical_bytes: u64,
    pub added_blobs: u64,
    pub added_raw_bytes: u64,
    pub added_stored_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub repository: RepoTotals,
    pub selection: Selection,
    /// Selected snapshots, oldest first.
    pub snapshots: Vec<Cost>,
}

/// Keys paired with the first snapshot (by number) that references them.
#[derive(Default)]
struct FirstUse {
    pairs: Vec<(BlobKey, u32)>,
    compacted: usize,
}

impl FirstUse {
    fn insert(&mut self, k: BlobKey, snap: u32) {
        self.pairs.push((k, snap));
        if self.pairs.len() >= (2 * self.compacted).max(1 << 16) {
            self.compact();
        }
    }

    /// Sort by key then snapshot and keep the first use of each key.
    fn compact(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup_by_key(|p| p.0);
        self.compacted = self.pairs.len();
        let want = (2 * self.compacted).max(1 << 16);
        self.pairs
            .reserve_exact(want.saturating_sub(self.pairs.len()));
    }
}

pub fn stats(repo: &Repository, name: Option<&str>, project: Option<&str>) -> Result<Stats> {
    let all = repo.readable_snapshots()?;
    let selected: Vec<bool> = match name {
        None => vec![true; all.len()],
        Some(n) => {
            let v: Vec<bool> = all
                .iter()
                .map(|(_, s)| snapshot::name_matches(s, n, project))
                .collect();
            if !v.contains(&true) {
                snapshot::resolve(&all, n, project)?;
            }
            v
        }
    };

    // Oldest first (load_all's order): the first snapshot to reference a blob pays.
    let mut first = FirstUse::default();
    let mut walker = Walker::new(repo).once();
    for (i, (_, s)) in all.iter().enumerate() {
        walker_collect(&mut walker, s, &mut |k| first.insert(k, i as u32))?;
    }
    first.compact();
    let sel_keys = match name {
        None => None,
        Some(_) => {
            let mut w = Walker::new(repo).once();
            let mut set = KeySet::new();
            for (s, _) in all.iter().zip(&selected).filter(|(_, sel)| **sel) {
                walker_collect(&mut w, &s.1, &mut |k| set.insert(k))?;
            }
            Some(set.finish())
        }
    };

    let mut st = Stats::default();
    let mut costs: Vec<Cost> = all
        .iter()
        .map(|(id, s)| Cost {
            id: *id,
            name: s.name.clone(),
            time: s.time,
            files: s.stats.files,
            logical_bytes: s.stats.bytes,
            added_blobs: 0,
            added_raw_bytes: 0,
            added_stored_bytes: 0,
        })
        .collect();
    let t = &mut st.repository;
    t.snapshots = all.len();
    let packs = repo.list_packs()?;
    t.packs = packs.len();
    t.pack_bytes = packs.values().sum();
    let sel = &mut st.selection;
    sel.name = name.map(str::to_string);
    let mut pos = 0usize;
    let mut seen = 0usize;
    let mut sel_join = sel_keys.as_ref().map(|s| s.join());
    for loc in repo.index().chunks() {
        let loc = loc?;
        let e = &loc.entry;
        let k = key(&e.id);
        t.blobs += 1;
        t.raw_bytes += e.raw_len as u64;
        t.stored_bytes += e.stored_len as u64;
        while pos < first.pairs.len() && first.pairs[pos].0 < k {
            pos += 1;
        }
        let user = match first.pairs.get(pos) {
            Some((pk, snap)) if *pk == k => Some(*snap as usize),
            _ => None,
        };
        let Some(user) = user else {
            t.unreferenced_blobs += 1;
            t.unreferenced_bytes += e.stored_len as u64;
            continue;
        };
        seen += 1;
        let c = &mut costs[user];
        c.added_blobs += 1;
        c.added_raw_bytes += e.raw_len as u64;
        c.added_stored_bytes += e.stored_len as u64;
        let in_sel = match sel_join.as_mut() {
            Some(j) => j.seek(k),
            None => true,
        };
        if in_sel {
            sel.blobs += 1;
            sel.raw_bytes += e.raw_len as u64;
            sel.stored_bytes += e.stored_len as u64;
        }
    }
    sel.missing_blobs = match sel_join {
        Some(j) => j.finish().len(),
        None => first.pairs.len().saturating_sub(seen),
    };
    for (c, _) in costs.into_iter().zip(&selected).filter(|(_, s)| **s) {
        sel.snapshots += 1;
        sel.files += c.files;
        sel.logical_bytes += c.logical_bytes;
        st.snapshots.push(c);
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    sel.dedup_ratio = ratio(sel.logical_bytes, sel.raw_bytes);
    sel.compression_ratio = ratio(sel.raw_bytes, sel.stored_bytes);
    sel.total_ratio = ratio(sel.logical_bytes, sel.stored_bytes);
    Ok(st)
}

/// Feed the key of every blob `s` references (below trees not seen before) to `f`.
/// An unreadable tree is an error: the numbers would silently be wrong.
fn walker_collect(w: &mut Walker<'_>, s: &Snapshot, f: &mut dyn FnMut(BlobKey)) -> Result<()> {
    reach::mark(w, &s.tree, f, &mut |id, path, e| {
        Err(crate::Error::Corrupt(format!(
            "tree {id} (/{path}) of {} cannot be read: {e}",
            s.name
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_keeps_the_earliest_snapshot() {
        let mut f = FirstUse::default();
        for (k, s) in [(5, 2), (5, 0), (3, 1), (5, 1), (3, 3)] {
            f.insert(k, s);
        }
        f.compact();
        assert_eq!(f.pairs, vec![(3, 1), (5, 0)]);
    }
}
