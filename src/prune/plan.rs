//! The prune plan: which packs to delete, which to repack, which to keep.
//!
//! The referenced set from [`super::reach`] is merged with the index, streamed in id
//! order, to total for every pack the bytes its referenced blobs occupy. Nothing is
//! loaded per blob; per pack, one [`PackUse`].
//!
//! A pack's *live* bytes are what a pack holding only its referenced blobs would take:
//! their stored bytes, their trailer entries, and the header and footer. Its unused
//! bytes are the rest: blobs nothing references, and copies of blobs the index finds
//! in another pack. A pack with nothing live is deleted; one whose unused share
//! exceeds the threshold is repacked.

use std::collections::HashMap;

use serde::Serialize;

use crate::codec;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack;
use crate::repo::Repository;
use crate::snapshot;

use super::reach::{self, BlobKey, SortedKeys};

/// Default share of a pack that may be unused before the pack is repacked.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.10;

#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Repack a pack when more than this share of it (0.0..=1.0) is unused.
    pub repack_threshold: f64,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
        }
    }
}

impl PlanOptions {
    /// The options of `prune` and `forget --prune`: `--repack-threshold PCT` (`10`,
    /// `2.5`, `10%`) over the config's `prune.repack_threshold` (a percentage) over
    /// [`DEFAULT_REPACK_THRESHOLD`]. [`Error::Usage`] for what is not a percentage
    /// between 0 and 100.
    pub fn resolve(flag: Option<&str>, config: Option<f64>) -> Result<PlanOptions> {
        let pct = match flag {
            Some(s) => s.trim().trim_end_matches('%').parse::<f64>().map_err(|_| {
                Error::Usage(format!(
                    "--repack-threshold takes a percentage such as 10 or 2.5, not {s:?}"
                ))
            })?,
            None => config.unwrap_or(DEFAULT_REPACK_THRESHOLD * 100.0),
        };
        if !(0.0..=100.0).contains(&pct) {
            return Err(Error::Usage(format!(
                "the repack threshold is a percentage between 0 and 100, not {pct}"
            )));
        }
        Ok(PlanOptions {
            repack_threshold: pct / 100.0,
        })
    }
}

/// How much of one pack is still referenced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PackUse {
    pub id: Id,
    pub size: u64,
    /// Index entries pointing into the pack, and how many of them are referenced.
    pub blobs: u64,
    pub used_blobs: u64,
    /// Bytes a pack of only the referenced blobs would take.
    pub live_bytes: u64,
}

impl PackUse {
    pub fn unused_bytes(&self) -> u64 {
        self.size.saturating_sub(self.live_bytes)
    }
}

/// What prune would do.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub snapshots: usize,
    /// The snapshots the plan keeps the blobs of (all there are).
    #[serde(skip)]
    pub snapshot_ids: Vec<Id>,
    pub trees: usize,
    pub referenced_blobs: usize,
    /// Heap bytes of the referenced set (the largest allocation of a prune).
    pub referenced_set_bytes: usize,
    /// Referenced blobs that no indexed pack holds (keys), which makes prune refuse.
    #[serde(skip)]
    pub missing: Vec<BlobKey>,
    pub missing_blobs: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    /// Entries in the index (blobs, counting a duplicate once).
    pub index_entries: u64,
    pub unused_blobs: u64,
    pub unused_stored_bytes: u64,
    pub delete: Vec<PackUse>,
    pub repack: Vec<PackUse>,
    pub keep_packs: usize,
    pub keep_unused_bytes: u64,
    /// Bytes the packs will take after the sweep (estimate: live bytes of repacked
    /// packs are rewritten into new packs of about the same size).
    pub bytes_after: u64,
    #[serde(skip)]
    pub referenced: SortedKeys,
}

impl Plan {
    pub fn bytes_freed(&self) -> u64 {
        self.pack_bytes.saturating_sub(self.bytes_after)
    }

    pub fn is_noop(&self) -> bool {
        self.delete.is_empty() && self.repack.is_empty()
    }
}

/// Refuse to plan while any snapshot file cannot be read: the blobs only it references
/// would look unreferenced and be deleted. A flipped byte, a lost write, or a file a
/// newer cbsnap wrote must not cost the data of that snapshot (as an unreadable tree
/// stops [`reach::referenced`]). [`Error::Corrupt`] names every such file and what to do.
fn refuse_damaged(damaged: &[snapshot::DamagedSnapshot]) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    let files: Vec<String> = damaged
        .iter()
        .map(|d| format!("  {} {}", d.path.display(), d.reason))
        .collect();
    Err(Error::Corrupt(format!(
        "{} snapshot file(s) cannot be read, so nothing was removed: the data only they reference would look unused.\n{}\nCopy each back from a mirror or backup, or prune with the cbsnap that wrote it (a newer version); to give one up, move it out of snapshots/ and run prune again.",
        damaged.len(),
        files.join("\n")
    )))
}

/// Make the plan. The caller holds the exclusive lock (or accepts that the plan is
/// stale by the time it is printed, as `prune --dry-run` may).
pub fn plan(repo: &Repository, opts: &PlanOptions) -> Result<Plan> {
    if !(0.0..=1.0).contains(&opts.repack_threshold) {
        return Err(Error::Usage(format!(
            "the repack threshold must lie between 0 and 100 percent, not {}",
            opts.repack_threshold * 100.0
        )));
    }
    // Listed now, not at open: under the exclusive lock no other process commits, and
    // a snapshot this handle committed since it opened must keep its blobs.
    let set = snapshot::scan(repo.storage(), repo.crypt())?;
    refuse_damaged(&set.damaged)?;
    let snapshots = set.snapshots;
    let (referenced, trees) = reach::referenced(repo, &snapshots)?;

    let mut uses: HashMap<Id, PackUse> = repo
        .index()
        .packs()?
        .into_iter()
        .map(|(id, size)| {
            let u = PackUse {
                id,
                size,
                live_bytes: (codec::HEADER_LEN + pack::FOOTER_LEN) as u64,
                ..PackUse::default()
            };
            (id, u)
        })
        .collect();
    let mut p = Plan {
        snapshots: snapshots.len(),
        snapshot_ids: snapshots.iter().map(|(id, _)| *id).collect(),
        trees,
        referenced_blobs: referenced.len(),
        referenced_set_bytes: referenced.heap_bytes(),
        ..Plan::default()
    };
    let mut join = referenced.join();
    for loc in repo.index().chunks() {
        let loc = loc?;
        let used = join.seek(reach::key(&loc.entry.id));
        let Some(u) = uses.get_mut(&loc.pack) else {
            // An entry of a pack the index does not list; `sync_index` removes those.
            continue;
        };
        u.blobs += 1;
        p.index_entries += 1;
        if used {
            u.used_blobs += 1;
            u.live_bytes += loc.entry.stored_len as u64 + pack::ENTRY_LEN as u64;
        } else {
            p.unused_blobs += 1;
            p.unused_stored_bytes += loc.entry.stored_len as u64;
        }
    }
    p.missing = join.finish();
    p.missing_blobs = p.missing.len();

    let mut all: Vec<PackUse> = uses.into_values().collect();
    all.sort_by_key(|u| u.id);
    p.packs = all.len();
    for u in all {
        p.pack_bytes += u.size;
        if u.used_blobs == 0 {
            p.delete.push(u);
        } else if u.unused_bytes() as f64 > opts.repack_threshold * u.size as f64 {
            p.bytes_after += u.live_bytes;
            p.repack.push(u);
        } else {
            p.keep_packs += 1;
            p.keep_unused_bytes += u.unused_bytes();
            p.bytes_after += u.size;
        }
    }
    p.referenced = referenced;
    Ok(p)
}
