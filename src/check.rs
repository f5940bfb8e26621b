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
use std::fs::{self, File};
use std::rc::Rc;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::codec::Writer;
use crate::error::{Error, Result};
use crate::gc::reach::{key, BlobKey, KeySet, Visit, Walker};
use crate::id::Id;
use crate::index::Location;
use crate::pack::{self, BlobEntry};
use crate::progress::Progress;
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

/// Check the repository. Damage is in the report, not an error; errors are reserved
/// for not being able to check at all.
pub fn check(repo: &Repository, read: ReadData, progress: &Progress) -> Result<Report> {
    let mut r = Report::default();
    let mut problems: BTreeMap<Option<Id>, Vec<String>> = BTreeMap::new();
    let snapshots = load_snapshots(repo, &mut problems)?;
    r.snapshots = snapshots.len();

    let on_disk = repo.list_packs()?;
    let indexed = repo.index().packs()?;
    r.packs = on_disk.len();
    r.pack_bytes = on_disk.values().sum();
    let selected = select(&on_disk, read);
    progress.set_total(selected.iter().map(|id| on_disk[id]).sum());
    let scans: Vec<PackScan> = on_disk
        .par_iter()
        .map(|(id, size)| {
            scan_pack(
                repo,
                id,
                *size,
                !indexed.contains_key(id),
                selected.contains(id),
                progress,
            )
        })
        .collect();

    let mut faults = Faults::default();
    let mut extra: HashMap<Id, Location> = HashMap::new();
    let mut trailer_digest: HashMap<Id, (u64, u128)> = HashMap::new();
    let mut bad_trailer: HashSet<Id> = HashSet::new();
    for s in &scans {
        match &s.trailer {
            Ok(d) => {
                trailer_digest.insert(s.id, *d);
            }
            Err(e) => {
                bad_trailer.insert(s.id);
                problems
                    .entry(Some(s.id))
                    .or_default()
                    .push(format!("its trailer is damaged ({e})"));
            }
        }
        for e in &s.unindexed {
            extra.insert(
                e.id,
                Location {
                    pack: s.id,
                    entry: *e,
                },
            );
        }
        if s.read {
            r.packs_read += 1;
            r.bytes_read += s.size;
        }
        if s.read && !s.name_matches {
            problems
                .entry(Some(s.id))
                .or_default()
                .push("the pack file does not match its name (its bytes changed)".into());
        }
        for (blob, why) in &s.bad_blobs {
            let f = Fault {
                pack: Some(s.id),
                why: why.clone(),
            };
            faults.by_id.insert(*blob, f);
        }
        if !s.bad_blobs.is_empty() {
            problems.entry(Some(s.id)).or_default().push(format!(
                "{} blob(s) do not match their id: {}",
                s.bad_blobs.len(),
                s.bad_blobs[0].1
            ));
        }
    }
    r.orphans.unindexed_packs = extra.values().map(|l| l.pack).collect::<HashSet<_>>().len();

    // Trees: collect the referenced set; a tree that cannot be read is a fault.
    let read_blob = |id: &Id| -> Result<Vec<u8>> {
        if let Some(loc) = repo.index().get(id)? {
            return repo.read_located(&loc);
        }
        match extra.get(id) {
            Some(loc) => repo.read_located(loc),
            None => repo.read_blob(id),
        }
    };
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

    // The index, streamed in id order next to the referenced set.
    let mut index_digest: HashMap<Id, (u64, u128)> = HashMap::new();
    let mut used_packs: HashSet<Id> = HashSet::new();
    let mut join = referenced.join();
    for loc in repo.index().chunks() {
        let loc = loc?;
        let used = join.seek(key(&loc.entry.id));
        let d = index_digest.entry(loc.pack).or_default();
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
        } else if bad_trailer.contains(&loc.pack) {
            "its pack's trailer is damaged"
        } else {
            continue;
        };
        faults.by_id.entry(loc.entry.id).or_insert(Fault {
            pack: Some(loc.pack),
            why: why.into(),
        });
    }
    let extra_keys: HashSet<BlobKey> = extra.keys().map(key).collect();
    for k in join.finish() {
        if !extra_keys.contains(&k) {
            faults.by_key.insert(
                k,
                Fault {
                    pack: None,
                    why: "no pack holds it".into(),
                },
            );
        }
    }
    for l in extra.values() {
        if referenced.contains(key(&l.entry.id)) {
            used_packs.insert(l.pack);
        }
    }
    for (id, why) in tree_faults {
        let pack = repo.index().get(&id)?.map(|l| l.pack);
        faults.by_id.entry(id).or_insert(Fault { pack, why });
    }

    compare_trailers(
        repo,
        &on_disk,
        &trailer_digest,
        &index_digest,
        &referenced,
        &mut faults,
        &mut problems,
        &mut r.orphans,
    )?;
    for p in indexed.keys().filter(|p| !on_disk.contains_key(p)) {
        problems
            .entry(Some(*p))
            .or_default()
            .push("the index lists it but the pack file is missing".into());
    }
    for (id, size) in &on_disk {
        if !used_packs.contains(id) && !bad_trailer.contains(id) {
            r.orphans.packs += 1;
            r.orphans.pack_bytes += size;
        }
    }

    // Trace faults to snapshots and paths.
    let mut broken: BTreeMap<Option<Id>, Vec<Broken>> = BTreeMap::new();
    let mut damaged: BTreeMap<Option<Id>, BTreeSet<Id>> = BTreeMap::new();
    if !faults.is_empty() {
        let mut tracer = Tracer {
            read: &read_blob,
            faults: &faults,
            memo: HashMap::new(),
        };
        for (sid, snap) in &snapshots {
            let mut per_pack: BTreeMap<Option<Id>, Vec<String>> = BTreeMap::new();
            for (path, blob) in tracer.tree(&snap.tree).iter() {
                let Some(f) = faults.get(blob) else { continue };
                damaged.entry(f.pack).or_default().insert(*blob);
                let lines = problems.entry(f.pack).or_default();
                let line = match f.pack {
                    None => NO_PACK.to_string(),
                    Some(_) => f.why.clone(),
                };
                if (f.pack.is_none() || lines.is_empty()) && !lines.contains(&line) {
                    lines.push(line);
                }
                let paths = per_pack.entry(f.pack).or_default();
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
    }
    for (pack, what) in problems {
        r.problems.push(Problem {
            pack,
            what,
            damaged_blobs: damaged.get(&pack).map_or(0, |s| s.len()),
            snapshots: broken.remove(&pack).unwrap_or_default(),
        });
    }
    Ok(r)
}

const NO_PACK: &str =
    "referenced blobs that no pack holds (a pack file was deleted or lost, or never finished)";

/// Snapshot files, verified. A damaged one is a problem, not a reason to stop.
fn load_snapshots(
    repo: &Repository,
    problems: &mut BTreeMap<Option<Id>, Vec<String>>,
) -> Result<Vec<(Id, Snapshot)>> {
    let dir = repo.snapshots_dir();
    let mut out = Vec::new();
    let rd = fs::read_dir(&dir).map_err(|e| Error::io_path("read", &dir, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io_path("read", &dir, e))?;
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(|s| s.parse::<Id>().ok()) else {
            continue;
        };
        let path = e.path();
        let verdict = match fs::read(&path) {
            Err(err) => Err(format!("cannot be read: {err}")),
            Ok(b) if Id::hash(&b) != id => Err("does not match its name".to_string()),
            Ok(b) => Snapshot::decode(&b),
        };
        match verdict {
            Ok(s) => out.push((id, s)),
            Err(why) => problems
                .entry(None)
                .or_default()
                .push(format!("snapshot file {} {why}", path.display())),
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok(out)
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
    let path = repo.pack_path(id);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            s.trailer = Err(format!("cannot open: {e}"));
            return s;
        }
    };
    let entries = match pack::read_trailer(&f, size) {
        Ok(e) => e,
        Err(e) => {
            s.trailer = Err(e.to_string());
            return s;
        }
    };
    let digest = entries
        .iter()
        .fold(0u128, |acc, e| acc.wrapping_add(entry_digest(e)));
    s.trailer = Ok((entries.len() as u64, digest));
    if read {
        match map_pack(&f, size) {
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

/// A whole pack's bytes: mapped, or read when mapping fails.
enum PackBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for PackBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            PackBytes::Mapped(m) => m,
            PackBytes::Read(v) => v,
        }
    }
}

fn map_pack(f: &File, size: u64) -> std::io::Result<PackBytes> {
    // SAFETY: a mapped file that shrinks under us raises SIGBUS. Packs are immutable
    // once renamed into place and only `prune` deletes them, under the exclusive lock;
    // check holds a shared lock, so no cbsnap process truncates or removes this pack
    // while it is mapped (and deleting a mapped file keeps its pages valid).
    match unsafe { memmap2::Mmap::map(f) } {
        Ok(m) if m.len() as u64 == size => Ok(PackBytes::Mapped(m)),
        _ => {
            use std::os::unix::fs::FileExt;
            let mut v = vec![0u8; size as usize];
            f.read_exact_at(&mut v, 0)?;
            Ok(PackBytes::Read(v))
        }
    }
}

/// Compare, pack by pack, the trailer with the index. Only packs whose digests differ
/// are examined blob by blob.
#[allow(clippy::too_many_arguments)]
fn compare_trailers(
    repo: &Repository,
    on_disk: &HashMap<Id, u64>,
    trailer: &HashMap<Id, (u64, u128)>,
    index: &HashMap<Id, (u64, u128)>,
    referenced: &crate::gc::SortedKeys,
    faults: &mut Faults,
    problems: &mut BTreeMap<Option<Id>, Vec<String>>,
    orphans: &mut Orphans,
) -> Result<()> {
    for (id, t) in trailer {
        let Some(i) = index.get(id) else {
            continue; // unindexed pack: counted as an orphan-like note
        };
        if t == i {
            continue;
        }
        let f = File::open(repo.pack_path(id)).map_err(|e| Error::io("open pack", e))?;
        let entries = pack::read_trailer(&f, on_disk[id])
            .map_err(|e| Error::Corrupt(format!("pack {id}: {e}")))?;
        let (mut matched, mut differ, mut lacking) = (0u64, 0u64, 0u64);
        for e in &entries {
            match repo.index().get(&e.id)? {
                Some(loc) if loc.pack == *id && loc.entry == *e => matched += 1,
                Some(loc) if loc.pack == *id => {
                    differ += 1;
                    if referenced.contains(key(&e.id)) {
                        faults.by_id.insert(
                            e.id,
                            Fault {
                                pack: Some(*id),
                                why: "the index disagrees with the pack trailer".into(),
                            },
                        );
                    }
                }
                Some(_) => orphans.duplicates += 1,
                None => lacking += 1,
            }
        }
        let stray = i.0.saturating_sub(matched + differ);
        let mut say = |n: u64, what: &str| {
            if n > 0 {
                problems.entry(Some(*id)).or_default().push(format!(
                    "{n} index entries {what}; run `cbsnap index rebuild`"
                ));
            }
        };
        say(differ, "disagree with its trailer");
        say(lacking, "are missing for blobs of its trailer");
        say(stray, "point into it for blobs its trailer does not list");
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

impl Tracer<'_> {
    fn tree(&mut self, id: &Id) -> Hits {
        if let Some(h) = self.memo.get(id) {
            return h.clone();
        }
        let mut out = Vec::new();
        let nodes = (self.read)(id)
            .and_then(|raw| crate::tree::decode(&raw).map_err(|e| Error::Corrupt(e.to_string())));
        match nodes {
            Err(_) => out.push((String::new(), *id)),
            Ok(nodes) => {
                for n in &nodes {
                    let name = n.name_lossy();
                    if let Some(sub) = n.subtree() {
                        for (p, b) in self.tree(&sub).iter() {
                            out.push((format!("{name}/{p}"), *b));
                        }
                    } else {
                        for b in n.content.iter().filter(|c| self.faults.get(c).is_some()) {
                            out.push((name.clone(), *b));
                        }
                    }
                }
            }
        }
        let h = Rc::new(out);
        self.memo.insert(*id, h.clone());
        h
    }
}
