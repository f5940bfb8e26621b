//! `check`: is every snapshot fully restorable, and if not, what exactly is broken.
//!
//! Structure checks (always):
//! - every snapshot file matches its name and decodes;
//! - every tree of every snapshot reads, decodes and matches its id;
//! - every referenced blob is indexed and its pack exists;
//! - every pack's trailer is intact and agrees with the index. Per pack, the index's
//!   entries are summed into an order-independent digest while the index is streamed,
//!   and compared with the same digest of the trailer; only a pack whose digests differ
//!   is examined entry by entry. No per-blob lookups in the common case.
//!
//! Data checks (`--read-data`, or a random `--read-data-subset`): each selected pack is
//! read once, front to back; its BLAKE3 must equal its name and every blob must
//! decompress to bytes that match the blob's id.
//!
//! Damage is then traced to what it breaks: the trees of every snapshot are walked
//! once more (each tree once, with a memo) to name the snapshots and the file paths
//! that need a damaged or missing blob, grouped by pack. Unreferenced packs and blobs
//! are reported as information, never as damage: `prune` removes them.
//!
//! One file per phase: [`scan`] reads the packs (trailers, and data when asked),
//! [`index`] streams the index next to the referenced set, [`trailer`] compares the
//! packs whose digests differ entry by entry, and [`trace`] names what damage breaks.

mod index;
mod scan;
mod trace;
mod trailer;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use self::index::stream_index;
use self::scan::scan_packs;
use self::trace::trace;
use self::trailer::compare_trailers;
use crate::error::Result;
use crate::id::Id;
use crate::index::Location;
use crate::progress::Progress;
use crate::prune::reach::{key, mark, BlobKey, KeySet};
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::walk::Walker;

/// How much pack data to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A random share of the packs (0.0..=1.0), different on every run.
    Subset(f64),
}

/// One thing found wrong, attributed to a pack where one is known.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The pack at fault; `None` for blobs that no pack holds, and for snapshot files.
    pub pack: Option<Id>,
    /// What is wrong, one line each.
    pub what: Vec<String>,
    /// Referenced blobs it makes unreadable.
    pub damaged_blobs: usize,
    /// Snapshots it breaks, and in each the paths that cannot be restored.
    pub snapshots: Vec<Broken>,
}

/// The part of one snapshot that a problem breaks.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    pub id: Id,
    pub name: String,
    pub time: DateTime<Utc>,
    /// Files whose content is damaged, and directories (`path/`) whose listing is.
    pub paths: Vec<String>,
}

/// Unreferenced data: information, removed by `prune`.
#[derive(Debug, Default, Serialize)]
pub struct Orphans {
    /// Packs none of whose blobs a snapshot references.
    pub packs: usize,
    pub pack_bytes: u64,
    /// Indexed blobs no snapshot references, and their stored bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Packs on disk the index does not (yet) list: written by a running snapshot, or
    /// the index was opened read-only.
    pub unindexed_packs: usize,
    /// Blobs held by more than one pack (the index uses one copy).
    pub duplicates: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The index's own data could not be read where the check needed it (RocksDB's
    /// words, [`crate::index::Index::damage`]): then
    /// whatever the check would conclude from it (blobs no pack holds, snapshots
    /// broken, unreferenced packs) is left out, since a damaged index, not the
    /// repository, may be what lacks them. `problems` holds the index's damage and
    /// only what the packs and snapshot files show by themselves.
    pub index_damaged: Option<String>,
    pub snapshots: usize,
    pub trees: usize,
    pub referenced_blobs: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    pub packs_read: usize,
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
    pub orphans: Orphans,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why a blob cannot be read, and which pack is at fault.
#[derive(Clone)]
struct Fault {
    pack: Option<Id>,
    why: String,
}

/// Blobs known to be unreadable: by full id where known, by key for blobs the index
/// lacks (the referenced set holds keys only).
#[derive(Default)]
struct Faults {
    by_id: HashMap<Id, Fault>,
    by_key: HashMap<BlobKey, Fault>,
}

impl Faults {
    fn get(&self, id: &Id) -> Option<&Fault> {
        self.by_id.get(id).or_else(|| self.by_key.get(&key(id)))
    }
    fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.by_key.is_empty()
    }
}

/// What the phases of a check find, before it becomes a [`Report`].
#[derive(Default)]
struct Findings {
    /// Lines describing what is wrong, by the pack at fault (`None`: no pack).
    problems: BTreeMap<Option<Id>, Vec<String>>,
    faults: Faults,
    /// Blobs of packs the index does not list, so they can still be read and found.
    extra: HashMap<Id, Location>,
    /// Per readable pack: entry count and digest of its trailer.
    trailer_digest: HashMap<Id, (u64, u128)>,
    bad_trailer: HashSet<Id>,
}

impl Findings {
    fn note(&mut self, pack: Option<Id>, line: impl Into<String>) {
        let line = line.into();
        let lines = self.problems.entry(pack).or_default();
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
}

/// Check the repository. Damage is in the report, not an error; errors are reserved
/// for not being able to check at all.
pub fn check(repo: &Repository, read: ReadData, progress: &Progress) -> Result<Report> {
    let mut r = Report::default();
    let mut f = Findings::default();
    let snapshots = load_snapshots(repo, &mut f)?;
    r.snapshots = snapshots.len();

    let on_disk = repo.list_packs()?;
    let indexed = repo.index().packs()?;
    r.packs = on_disk.len();
    r.pack_bytes = on_disk.values().sum();
    scan_packs(repo, &on_disk, &indexed, read, progress, &mut f, &mut r)?;
    // What the packs and snapshot files show by themselves, kept apart from what the
    // index says, which a damaged index makes untrue.
    let without_index = f.problems.clone();

    // A reader that also finds blobs of packs the index does not list yet.
    let extra = std::mem::take(&mut f.extra);
    let read_blob = |id: &Id| -> Result<Vec<u8>> {
        if let Some(loc) = repo.index().get(id)? {
            return repo.read_located(&loc);
        }
        match extra.get(id) {
            Some(loc) => repo.read_located(loc),
            None => repo.read_blob(id),
        }
    };

    // Mark: every blob the snapshots reference; an unreadable tree is a fault.
    let mut walker = Walker::with_reader(Box::new(read_blob)).once();
    let mut set = KeySet::new();
    let mut tree_faults: Vec<(Id, String)> = Vec::new();
    for (_, snap) in &snapshots {
        let noted = mark(
            &mut walker,
            &snap.tree,
            &mut |k| set.insert(k),
            &mut |id, _, e| {
                tree_faults.push((id, e.to_string()));
                Ok::<(), std::convert::Infallible>(())
            },
        );
        let Ok(()) = noted;
    }
    r.trees = walker.trees();
    drop(walker);
    let referenced = set.finish();
    r.referenced_blobs = referenced.len();
    for (id, why) in tree_faults {
        // An index entry that cannot be read is itself a finding, not a reason to stop.
        let fault = match repo.index().get(&id) {
            Ok(Some(loc)) => Fault {
                pack: Some(loc.pack),
                why,
            },
            Ok(None) => Fault {
                pack: None,
                why: NO_PACK.into(),
            },
            Err(e) => Fault {
                pack: None,
                why: format!("{why} ({e})"),
            },
        };
        f.faults.by_id.entry(id).or_insert(fault);
    }

    let index_digest = stream_index(
        repo,
        &on_disk,
        &indexed,
        &referenced,
        &extra,
        &mut f,
        &mut r,
    )?;
    compare_trailers(
        repo,
        &on_disk,
        &index_digest,
        &referenced,
        &mut f,
        &mut r.orphans,
    )?;
    // Any read of the index's own data that failed (a block that fails its checksum)
    // makes every answer of the phases above suspect: one that lacks a blob may be
    // the damage, not the repository. An entry that reads but does not decode is a
    // finding of its own, above, and leaves the rest of the index to be trusted.
    if let Some(cause) = repo.index().damage() {
        return Ok(index_damaged_report(r, cause, without_index));
    }
    if !f.faults.is_empty() {
        trace(&snapshots, &read_blob, &mut f, &mut r);
    }
    for (pack, what) in std::mem::take(&mut f.problems) {
        r.problems.push(Problem {
            pack,
            what,
            damaged_blobs: 0,
            snapshots: Vec::new(),
        });
    }
    // Clean, and every referenced blob found in the index (none only in packs it does
    // not list yet): the index vouches for every snapshot again. A pack that vanished
    // made it forget that (`Repository::sync_index`); `mirror --delete` removes packs
    // from a mirror only while it holds, so a lost pack is never taken for a pruned one.
    if r.is_clean() && f.faults.is_empty() && extra.is_empty() && repo.index_writable() {
        // A record that fails to be written only leaves a mirror's packs in place.
        for (id, _) in &snapshots {
            let _ = repo.index().mark_snapshot_indexed(id);
        }
    }
    Ok(r)
}

const NO_PACK: &str =
    "referenced blobs that no pack holds (a pack file was deleted or lost, or never finished)";

/// The report of a check that met a damaged index (`cause`): the index's damage, and
/// of the rest only `without_index`, what the packs and snapshot files showed by
/// themselves, attributed to no snapshot. Counts of unreferenced data are left at
/// zero: the index is what they were counted from.
fn index_damaged_report(
    mut r: Report,
    cause: String,
    without_index: BTreeMap<Option<Id>, Vec<String>>,
) -> Report {
    r.problems.push(Problem {
        pack: None,
        what: vec![format!(
            "the index is damaged ({cause}); it is a cache of the pack trailers: run `cbsnap index rebuild`, then `cbsnap check` again"
        )],
        damaged_blobs: 0,
        snapshots: Vec::new(),
    });
    for (pack, what) in without_index {
        r.problems.push(Problem {
            pack,
            what,
            damaged_blobs: 0,
            snapshots: Vec::new(),
        });
    }
    r.orphans = Orphans::default();
    r.index_damaged = Some(cause);
    r
}

/// Snapshot files, verified. A damaged one is a problem, not a reason to stop.
fn load_snapshots(repo: &Repository, f: &mut Findings) -> Result<Vec<(Id, Snapshot)>> {
    let set = repo.snapshots()?;
    for d in &set.damaged {
        f.note(
            None,
            format!("snapshot file {} {}", d.path.display(), d.reason),
        );
    }
    Ok(set.snapshots)
}
