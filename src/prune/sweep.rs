//! Carry out a prune [`Plan`]: repack, then retire old packs.
//!
//! The order is what makes a crash harmless at any point:
//!
//! 1. The referenced blobs of packs to repack are read, verified against their ids and
//!    copied, still compressed, into new packs by the one [`Packer`] that `snapshot`
//!    writes with too. Each new pack is fsynced and renamed into place, then indexed
//!    ([`packer::save`], which points those blobs at it); the index is flushed.
//! 2. Only then are the old packs retired: their files deleted, then the index
//!    entries that still point into them removed. A crash between the two leaves the
//!    index naming missing packs, which the next open repairs
//!    ([`Repository::sync_index`]) before anything reads or deduplicates against it.
//!
//! A crash during 1 leaves new packs whose blobs are also in the old ones: orphans.
//! Nothing referenced is ever deleted before a durable, indexed copy exists.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::Id;
use crate::pack::{self, BlobEntry, PackBytes, PackFile, PackReadError};
use crate::packer::{self, Packer};
use crate::repo::Repository;

use super::plan::{plan, PackUse, Plan, PlanOptions};
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

    let mut retire: Vec<&PackUse> = p.delete.iter().collect();
    // Dropped on an error with its open pack, whose temporary file goes with it.
    let mut packer = Packer::new(repo);
    for u in &p.repack {
        let (bytes, live) = match live_blobs(repo, p, u) {
            Ok(b) => b,
            Err(why) => {
                r.damaged_kept.push((u.id, why.to_string()));
                continue;
            }
        };
        for e in live {
            let full = packer.add(e.id, e.kind, e.raw_len, bytes.stored(&e), e.compression)?;
            r.blobs_copied += 1;
            if let Some(sealed) = full {
                save(repo, sealed, &mut r)?;
            }
        }
        retire.push(u);
        r.packs_repacked += 1;
    }
    if let Some(sealed) = packer.flush()? {
        save(repo, sealed, &mut r)?;
    }
    // Every referenced blob of a retired pack now has a durable, indexed copy.
    repo.index().flush()?;
    repo.check_lock()?;
    // What is retired holds no blob of a remaining snapshot, so their records in the
    // index stay true; those of forgotten snapshots go, before any pack does.
    repo.index()
        .retain_indexed_snapshots(&p.snapshot_ids.iter().copied().collect())?;
    retire_packs(repo, p, &retire)?;
    r.packs_deleted = retire.len();
    r.bytes_after = repo.list_packs()?.values().sum();
    Ok(r)
}

/// Delete retired packs and forget them in the index. A point lookup per blob costs
/// a block read in RocksDB; past a sixteenth of the index, one sequential pass over it
/// ([`crate::index::Index::remove_packs`]) is cheaper than looking up each blob of each
/// retired pack ([`crate::index::Index::remove_pack_entries`]).
fn retire_packs(repo: &Repository, p: &Plan, retire: &[&PackUse]) -> Result<()> {
    let retired_entries: u64 = retire.iter().map(|u| u.blobs).sum();
    let one_pass = retired_entries.saturating_mul(16) > p.index_entries;
    let mut dirs = BTreeSet::new();
    for u in retire {
        let entries = if one_pass {
            None
        } else {
            repo.open_pack(&u.id, u.size)
                .ok()
                .map(PackFile::into_entries)
        };
        repo.delete_pack(&u.id)?;
        if repo.local_root().is_some() {
            if let Some(d) = repo.pack_path(&u.id).parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        if one_pass {
            continue;
        }
        match entries {
            Some(entries) => repo.index().remove_pack_entries(&u.id, &entries)?,
            // Unreadable now though indexed before: fall back to a full index scan.
            None => repo
                .index()
                .remove_packs(&std::iter::once(u.id).collect())?,
        }
    }
    if one_pass {
        let ids: HashSet<Id> = retire.iter().map(|u| u.id).collect();
        repo.index().remove_packs(&ids)?;
    }
    for d in &dirs {
        fsutil::fsync_dir(d).ctx(|| format!("fsync {}", d.display()))?;
    }
    repo.index().flush()
}

/// Why a pack to repack is kept as it is (reported in [`PruneReport::damaged_kept`]).
#[derive(Debug, thiserror::Error)]
enum Unrepackable {
    #[error("{}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: PackReadError,
    },
    #[error("blob {id}: {source}")]
    DamagedBlob {
        id: Id,
        #[source]
        source: pack::BlobError,
    },
}

/// One pack to repack, read whole ([`PackFile::read_all`]), and its referenced blobs,
/// each verified against its id. Fails with the reason when one of them is damaged:
/// copying it would only move the damage, and deleting the pack would lose the
/// evidence. A referenced blob that the index finds in another pack (a rare duplicate)
/// is copied too: cheaper than a lookup per blob, and harmless; unless this copy is
/// damaged, which the index then no longer reads (it named the other copy).
fn live_blobs(
    repo: &Repository,
    p: &Plan,
    u: &PackUse,
) -> std::result::Result<(PackBytes, Vec<BlobEntry>), Unrepackable> {
    let path = repo.pack_path(&u.id);
    let unreadable = |source| Unrepackable::Unreadable {
        path: path.clone(),
        source,
    };
    let pack = repo.open_pack(&u.id, u.size).map_err(unreadable)?;
    let bytes = pack.read_all().map_err(unreadable)?;
    let mut live = Vec::new();
    for e in pack.into_entries() {
        if !p.referenced.contains(reach::key(&e.id)) {
            continue;
        }
        if let Err(source) = pack::decode_blob(&e, bytes.stored(&e), repo.crypt()) {
            // A damaged copy of a blob the index finds in another pack (a snapshot
            // that read this copy stored the blob again) is not what anything reads:
            // it is left behind with the pack, not kept as evidence of lost data.
            match repo.index().get(&e.id) {
                Ok(Some(loc)) if loc.pack != u.id => continue,
                _ => return Err(Unrepackable::DamagedBlob { id: e.id, source }),
            }
        }
        live.push(e);
    }
    Ok((bytes, live))
}

/// Save a full pack of copies (durable, then indexed) and count it.
fn save(repo: &Repository, sealed: pack::SealedPack, r: &mut PruneReport) -> Result<()> {
    let saved = packer::save(repo, sealed)?;
    r.packs_written += 1;
    r.bytes_written += saved.size;
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
