//! Carry out a prune [`Plan`]: repack, then retire old packs.
//!
//! The order is what makes a crash harmless at any point:
//!
//! 1. The referenced blobs of packs to repack are read, verified against their ids and
//!    copied, still compressed, into new packs. Each new pack is fsynced and renamed
//!    into place, then indexed (which points those blobs at it); the index is flushed.
//! 2. Only then is each old pack retired: its trailer read, its file deleted, and the
//!    index entries that still point into it removed. A crash between the last two
//!    leaves the index naming a missing pack, which the next open repairs
//!    ([`Repository::sync_index`]) before anything reads or deduplicates against it.
//!
//! A crash during 1 leaves new packs whose blobs are also in the old ones: orphans.
//! Nothing referenced is ever deleted before a durable, indexed copy exists.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::Id;
use crate::pack::{self, PackWriter};
use crate::repo::Repository;

use super::plan::{plan, Plan, PlanOptions};
use super::reach;

/// What a sweep did.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_written: usize,
    pub blobs_copied: u64,
    pub bytes_written: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Temporary files of interrupted writers that were removed, and their bytes.
    pub temps_removed: usize,
    pub temp_bytes_removed: u64,
    /// Packs that were to be repacked but hold a damaged referenced blob: kept as they
    /// are, with the reason. `cbsnap check --read-data` tells what they break.
    pub damaged_kept: Vec<(Id, String)>,
}

/// Plan and, unless `dry_run`, sweep. The repository must be open with
/// [`crate::repo::Access::Exclusive`].
pub fn prune(
    repo: &Repository,
    opts: &PlanOptions,
    dry_run: bool,
) -> Result<(Plan, Option<PruneReport>)> {
    let p = plan(repo, opts)?;
    if dry_run {
        return Ok((p, None));
    }
    if !p.missing.is_empty() {
        return Err(Error::Corrupt(format!(
            "{} blobs the snapshots reference are in no pack, so nothing was removed: forget or repair the broken snapshots first",
            p.missing.len()
        )));
    }
    let r = sweep(repo, &p)?;
    Ok((p, Some(r)))
}

/// Carry out `p` (see the module docs for the order of writes).
pub fn sweep(repo: &Repository, p: &Plan) -> Result<PruneReport> {
    let mut r = PruneReport {
        bytes_before: p.pack_bytes,
        ..PruneReport::default()
    };
    let (n, bytes) = remove_temps(repo);
    r.temps_removed = n;
    r.temp_bytes_removed = bytes;

    let mut retire: Vec<(Id, u64)> = p.delete.iter().map(|u| (u.id, u.size)).collect();
    let dir = repo.packs_dir();
    let mut out: Option<PackWriter> = None;
    for u in &p.repack {
        let path = repo.pack_path(&u.id);
        let f = File::open(&path).ctx(|| format!("open pack {}", path.display()))?;
        let live = match live_blobs(repo, p, &f, &u.id, u.size) {
            Ok(b) => b,
            Err(why) => {
                r.damaged_kept.push((u.id, why));
                continue;
            }
        };
        for (e, stored) in live {
            if out.is_none() {
                out = Some(
                    PackWriter::create(&dir)
                        .ctx(|| format!("create a pack in {}", dir.display()))?,
                );
            }
            let w = out.as_mut().expect("pack is open");
            w.add(e.id, e.kind, e.raw_len, &stored, e.compression)
                .ctx(|| format!("write a pack in {}", dir.display()))?;
            r.blobs_copied += 1;
            if w.size() >= repo.config.pack_target_size {
                seal(repo, out.take().expect("pack is open"), &mut r)?;
            }
        }
        retire.push((u.id, u.size));
        r.packs_repacked += 1;
    }
    if let Some(w) = out.take() {
        seal(repo, w, &mut r)?;
    }
    // Every referenced blob of a retired pack now has a durable, indexed copy.
    repo.index().flush()?;

    let mut dirs = BTreeSet::new();
    for (id, size) in &retire {
        let path = repo.pack_path(id);
        let entries = File::open(&path)
            .ok()
            .and_then(|f| pack::read_trailer(&f, *size).ok());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_path("delete pack", &path, e)),
        }
        if let Some(d) = path.parent() {
            dirs.insert(d.to_path_buf());
        }
        match entries {
            Some(entries) => repo.index().remove_pack_entries(id, &entries)?,
            // Unreadable now though indexed before: fall back to a full index scan.
            None => repo.index().remove_packs(&std::iter::once(*id).collect())?,
        }
        r.packs_deleted += 1;
    }
    for d in &dirs {
        fsutil::fsync_dir(d).ctx(|| format!("fsync {}", d.display()))?;
    }
    repo.index().flush()?;
    r.bytes_after = repo.list_packs()?.values().sum();
    Ok(r)
}

/// The referenced blobs of one pack that the index locates in it, read and verified.
/// Fails with a reason when one of them is damaged: copying it would only move the
/// damage, and deleting the pack would lose the evidence.
fn live_blobs(
    repo: &Repository,
    p: &Plan,
    f: &File,
    id: &Id,
    size: u64,
) -> std::result::Result<Vec<(pack::BlobEntry, Vec<u8>)>, String> {
    let entries = pack::read_trailer(f, size).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for e in entries {
        if !p.referenced.contains(reach::key(&e.id)) {
            continue;
        }
        match repo.index().get(&e.id).map_err(|e| e.to_string())? {
            Some(loc) if loc.pack == *id && loc.entry.offset == e.offset => {}
            // A duplicate: the index uses another pack's copy.
            _ => continue,
        }
        let stored = pack::read_stored(f, e.offset, e.stored_len)
            .map_err(|err| format!("blob {} cannot be read: {err}", e.id))?;
        pack::decode_blob(&e, &stored).map_err(|err| format!("blob {}: {err}", e.id))?;
        out.push((e, stored));
    }
    Ok(out)
}

fn seal(repo: &Repository, w: PackWriter, r: &mut PruneReport) -> Result<()> {
    let dir = repo.packs_dir();
    let (id, size, entries) = w
        .finish(&dir)
        .ctx(|| format!("write a pack in {}", dir.display()))?;
    repo.index().add_pack(&id, size, &entries)?;
    r.packs_written += 1;
    r.bytes_written += size;
    Ok(())
}

/// Remove every temporary file in `packs/` and `snapshots/`. Under the exclusive lock
/// no writer is running anywhere, so all of them are left over from crashes.
fn remove_temps(repo: &Repository) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for dir in [repo.packs_dir(), repo.snapshots_dir()] {
        n += remove_temps_in(&dir, &mut bytes);
    }
    (n, bytes)
}

fn remove_temps_in(dir: &Path, bytes: &mut u64) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in rd.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .starts_with(fsutil::TMP_PREFIX)
        {
            continue;
        }
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        if fs::remove_file(e.path()).is_ok() {
            n += 1;
            *bytes += len;
        }
    }
    n
}
