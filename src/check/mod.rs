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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::codec::Writer;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Location;
use crate::pack::{self, BlobEntry};
use crate::progress::Progress;
use crate::prune::reach::{key, BlobKey, KeySet, SortedKeys, Visit, Walker};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

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

/// What reading one pack found.
struct PackScan {
    id: Id,
    size: u64,
    trailer: std::result::Result<(u64, u128), String>,
    /// Entries of a pack the index does not list, so its blobs can still be found.
    unindexed: Vec<BlobEntry>,
    read: bool,
    name_matches: bool,
    bad_blobs: Vec<(Id, String)>,
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
    let mut walker = Walker::with_reader(Box::new(read_blob));
    let mut set = KeySet::new();
    let mut tree_faults: Vec<(Id, String)> = Vec::new();
    for (_, snap) in &snapshots {
        walker.walk(&snap.tree, &mut |v| match v {
            Visit::Tree(id) => set.insert(key(id)),
            Visit::File(n) => n.content.iter().for_each(|c| set.insert(key(c))),
            Visit::Unreadable(id, e) => tree_faults.push((*id, e.to_string())),
        });
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
    Ok(r)
}

/// Read every pack's trailer, and in full the packs `read` selects.
fn scan_packs(
    repo: &Repository,
    on_disk: &HashMap<Id, u64>,
    indexed: &HashMap<Id, u64>,
    read: ReadData,
    progress: &Progress,
    f: &mut Findings,
    r: &mut Report,
) -> Result<()> {
    let selected = select(on_disk, read);
    progress.set_total(selected.iter().map(|id| on_disk[id]).sum());
    let scans: Vec<PackScan> = on_disk
        .par_iter()
        .map(|(id, size)| {
            let unindexed = !indexed.contains_key(id);
            scan_pack(repo, id, *size, unindexed, selected.contains(id), progress)
        })
        .collect();
    for s in scans {
        match &s.trailer {
            Ok(d) => {
                f.trailer_digest.insert(s.id, *d);
            }
            Err(e) => {
                f.bad_trailer.insert(s.id);
                f.note(Some(s.id), format!("its trailer is damaged ({e})"));
            }
        }
        for e in &s.unindexed {
            let loc = Location {
                pack: s.id,
                entry: *e,
            };
            f.extra.insert(e.id, loc);
        }
        if !s.read {
            continue;
        }
        r.packs_read += 1;
        r.bytes_read += s.size;
        if !s.name_matches {
            f.note(
                Some(s.id),
                "the pack file does not match its name (its bytes changed)",
            );
        }
        if let Some((_, why)) = s.bad_blobs.first() {
            f.note(
                Some(s.id),
                format!("{} blob(s) do not match their id: {why}", s.bad_blobs.len()),
            );
        }
        for (blob, why) in s.bad_blobs {
            // A damaged copy does not matter when the index reads another one.
            let elsewhere = match repo.index().get(&blob) {
                Ok(Some(loc)) => loc.pack != s.id,
                Ok(None) | Err(_) => false,
            };
            if !elsewhere {
                let fault = Fault {
                    pack: Some(s.id),
                    why,
                };
                f.faults.by_id.insert(blob, fault);
            }
        }
    }
    r.orphans.unindexed_packs = f
        .extra
        .values()
        .map(|l| l.pack)
        .collect::<HashSet<_>>()
        .len();
    Ok(())
}

/// Stream the index in id order next to the referenced set: find referenced blobs the
/// index lacks, or locates in a missing or damaged pack; count unreferenced data;
/// digest each pack's entries. Returns the digests.
fn stream_index(
    repo: &Repository,
    on_disk: &HashMap<Id, u64>,
    indexed: &HashMap<Id, u64>,
    referenced: &SortedKeys,
    extra: &HashMap<Id, Location>,
    f: &mut Findings,
    r: &mut Report,
) -> Result<HashMap<Id, (u64, u128)>> {
    let mut digest: HashMap<Id, (u64, u128)> = HashMap::new();
    let mut used_packs: HashSet<Id> = HashSet::new();
    let mut join = referenced.join();
    for loc in repo.index().chunks() {
        let loc = match loc {
            Ok(loc) => loc,
            // Reported, and the blob counts as missing from the index below.
            Err(e @ Error::Index(_)) => {
                f.note(
                    None,
                    format!("{e}; run `cbsnap index rebuild` (the index is a cache of the pack trailers)"),
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let used = join.seek(key(&loc.entry.id));
        let d = digest.entry(loc.pack).or_default();
        d.0 += 1;
        d.1 = d.1.wrapping_add(entry_digest(&loc.entry));
        if !used {
            r.orphans.blobs += 1;
            r.orphans.bytes += loc.entry.stored_len as u64;
            continue;
        }
        used_packs.insert(loc.pack);
        let why = if !on_disk.contains_key(&loc.pack) {
            "the pack file is missing"
        } else if f.bad_trailer.contains(&loc.pack) {
            "its pack's trailer is damaged"
        } else {
            continue;
        };
        f.faults.by_id.entry(loc.entry.id).or_insert(Fault {
            pack: Some(loc.pack),
            why: why.into(),
        });
    }
    let extra_keys: HashSet<BlobKey> = extra.keys().map(key).collect();
    for k in join.finish() {
        if !extra_keys.contains(&k) {
            let fault = Fault {
                pack: None,
                why: NO_PACK.into(),
            };
            f.faults.by_key.insert(k, fault);
        }
    }
    for l in extra.values() {
        if referenced.contains(key(&l.entry.id)) {
            used_packs.insert(l.pack);
        }
    }
    for p in indexed.keys().filter(|p| !on_disk.contains_key(p)) {
        f.note(Some(*p), "the index lists it but the pack file is missing");
    }
    for (id, size) in on_disk {
        if !used_packs.contains(id) && !f.bad_trailer.contains(id) {
            r.orphans.packs += 1;
            r.orphans.pack_bytes += size;
        }
    }
    Ok(digest)
}

/// Walk every snapshot again and attribute each fault to the snapshots and paths it
/// breaks, grouped by the pack at fault.
fn trace(
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

const NO_PACK: &str =
    "referenced blobs that no pack holds (a pack file was deleted or lost, or never finished)";

/// Snapshot files, verified. A damaged one is a problem, not a reason to stop.
fn load_snapshots(repo: &Repository, f: &mut Findings) -> Result<Vec<(Id, Snapshot)>> {
    let set = crate::snapshot::scan(repo.storage())?;
    for d in &set.damaged {
        f.note(
            None,
            format!("snapshot file {} {}", d.path.display(), d.reason),
        );
    }
    Ok(set.snapshots)
}

/// Which packs to read in full.
fn select(on_disk: &HashMap<Id, u64>, read: ReadData) -> HashSet<Id> {
    match read {
        ReadData::None => HashSet::new(),
        ReadData::All => on_disk.keys().copied().collect(),
        ReadData::Subset(share) => {
            // A fresh order every run, so repeated subsets cover the whole repository.
            let seed = format!("{:?}-{}", std::time::SystemTime::now(), std::process::id());
            let mut order: Vec<(Id, Id)> = on_disk
                .keys()
                .map(|id| {
                    let mut h = blake3::Hasher::new();
                    h.update(seed.as_bytes());
                    h.update(&id.0);
                    (Id::from(h.finalize()), *id)
                })
                .collect();
            order.sort();
            let n = (share * on_disk.len() as f64).ceil() as usize;
            order.into_iter().take(n).map(|(_, id)| id).collect()
        }
    }
}

/// An order-independent digest of one index or trailer entry: summed (wrapping) over a
/// pack, it compares the index's view of the pack with the trailer in one number.
fn entry_digest(e: &BlobEntry) -> u128 {
    let mut w = Writer::new();
    e.encode(&mut w);
    let h = blake3::hash(&w.buf);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
}

fn scan_pack(
    repo: &Repository,
    id: &Id,
    size: u64,
    unindexed: bool,
    read: bool,
    progress: &Progress,
) -> PackScan {
    let mut s = PackScan {
        id: *id,
        size,
        trailer: Err(String::new()),
        unindexed: Vec::new(),
        read,
        name_matches: true,
        bad_blobs: Vec::new(),
    };
    let entries = match repo.read_trailer(id, size) {
        Ok(e) => e,
        Err(e) => {
            s.trailer = Err(e);
            return s;
        }
    };
    let digest = entries
        .iter()
        .fold(0u128, |acc, e| acc.wrapping_add(entry_digest(e)));
    s.trailer = Ok((entries.len() as u64, digest));
    if read {
        match repo.read_pack(id, size) {
            Ok(bytes) => {
                s.name_matches = Id::hash(&bytes) == *id;
                for e in &entries {
                    let stored =
                        &bytes[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
                    if let Err(why) = pack::decode_blob(e, stored) {
                        s.bad_blobs.push((e.id, why));
                    }
                }
            }
            Err(e) => {
                s.name_matches = false;
                s.bad_blobs.extend(
                    entries
                        .iter()
                        .map(|b| (b.id, format!("pack cannot be read: {e}"))),
                );
            }
        }
        progress.inc(size);
    }
    if unindexed {
        s.unindexed = entries;
    }
    s
}

/// Compare, pack by pack, the trailer with the index. Only packs whose digests differ
/// are examined blob by blob.
fn compare_trailers(
    repo: &Repository,
    on_disk: &HashMap<Id, u64>,
    index: &HashMap<Id, (u64, u128)>,
    referenced: &SortedKeys,
    f: &mut Findings,
    orphans: &mut Orphans,
) -> Result<()> {
    let differing: Vec<(Id, u64)> = f
        .trailer_digest
        .iter()
        // A pack the index does not list is counted with the unindexed packs.
        .filter_map(|(id, t)| index.get(id).filter(|i| *i != t).map(|i| (*id, i.0)))
        .collect();
    for (id, indexed_entries) in differing {
        let entries = repo
            .read_trailer(&id, on_disk[&id])
            .map_err(|e| Error::Corrupt(format!("pack {id}: {e}")))?;
        let (mut matched, mut differ, mut lacking) = (0u64, 0u64, 0u64);
        for e in &entries {
            // An index entry that does not decode disagrees with the trailer too.
            let indexed = match repo.index().get(&e.id) {
                Ok(l) => Some(l),
                Err(Error::Index(_)) => None,
                Err(other) => return Err(other),
            };
            match indexed {
                None => {
                    differ += 1;
                    if referenced.contains(key(&e.id)) {
                        let fault = Fault {
                            pack: Some(id),
                            why: "its index entry cannot be read".into(),
                        };
                        f.faults.by_id.insert(e.id, fault);
                    }
                }
                Some(Some(loc)) if loc.pack == id && loc.entry == *e => matched += 1,
                Some(Some(loc)) if loc.pack == id => {
                    differ += 1;
                    if referenced.contains(key(&e.id)) {
                        let fault = Fault {
                            pack: Some(id),
                            why: "the index disagrees with the pack trailer".into(),
                        };
                        f.faults.by_id.insert(e.id, fault);
                    }
                }
                Some(Some(_)) => orphans.duplicates += 1,
                Some(None) => lacking += 1,
            }
        }
        let stray = indexed_entries.saturating_sub(matched + differ);
        for (n, what) in [
            (differ, "disagree with its trailer"),
            (lacking, "are missing for blobs of its trailer"),
            (stray, "point into it for blobs its trailer does not list"),
        ] {
            if n > 0 {
                f.note(
                    Some(id),
                    format!("{n} index entries {what}; run `cbsnap index rebuild`"),
                );
            }
        }
    }
    Ok(())
}

type Hits = Rc<Vec<(String, Id)>>;

/// Finds, below a tree, the paths that need a faulty blob. Each tree is examined once;
/// the result is shared by every snapshot that holds it.
struct Tracer<'a> {
    read: &'a dyn Fn(&Id) -> Result<Vec<u8>>,
    faults: &'a Faults,
    memo: HashMap<Id, Hits>,
}

/// One directory's nodes, and the blobs of its own tree that cannot be read.
struct Listing {
    unreadable: Vec<Id>,
    nodes: Vec<crate::tree::Node>,
}

impl Tracer<'_> {
    fn list(&self, id: &Id) -> Listing {
        use crate::tree::{decode, decode_blob, TreeBlob};
        let mut l = Listing {
            unreadable: Vec::new(),
            nodes: Vec::new(),
        };
        match (self.read)(id).map(|raw| decode_blob(&raw)) {
            Ok(Ok(TreeBlob::Nodes(n))) => l.nodes = n,
            Ok(Ok(TreeBlob::Split(parts))) => {
                for p in parts {
                    match (self.read)(&p).map(|raw| decode(&raw)) {
                        Ok(Ok(n)) => l.nodes.extend(n),
                        _ => l.unreadable.push(p),
                    }
                }
            }
            _ => l.unreadable.push(*id),
        }
        l
    }

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
                let l = self.list(&id);
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
            let mut out: Vec<(String, Id)> =
                l.unreadable.iter().map(|b| (String::new(), *b)).collect();
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
