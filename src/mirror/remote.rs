//! `cbsnap mirror s3://…` and `sftp://…`: the rsync mirror's order, through the storage
//! trait instead of rsync (issue 10). Source and destination may each be any backend
//! (a path, S3, SFTP).
//!
//! Packs and snapshot files are immutable and named by their hash, so "what the
//! destination lacks" is a set difference of names; a file the destination has is
//! never sent again, whatever its size, since a local copy that differs is a damaged
//! one (a damaged copy in the mirror is found by `check --read-data` there; remove it
//! and the next run sends it again). Before anything is copied, the checks of
//! [`super::preflight`] run: the packs the local index lists are all there and whole,
//! and, from a path, the packs the mirror lacks match their names (from a remote
//! repository they are not hashed: that would download each twice). The order is the one
//! [`super::mirror`] keeps, for the same reason: a snapshot file may only reach the
//! mirror after every pack it references.
//!
//! 1. list the snapshot files that exist now (under the source's shared lock, which
//!    keeps `prune` from deleting packs meanwhile; a destination that already is a
//!    repository is locked shared too, so a prune there waits);
//! 2. with `--delete` only: delete from the mirror the snapshot files the source no
//!    longer has, before any pack;
//! 3. copy every other file the mirror lacks (packs, `config`, `README.md`, `keys/`),
//!    `jobs` at a time; with `--delete`, then delete the packs the source no longer has;
//! 4. copy the snapshot files listed in 1.
//!
//! Stopped anywhere, the mirror holds at most orphan packs, never a snapshot with
//! missing data; the next run sends what is still missing. `index/`, `locks/` and
//! temporary files are never sent: the mirror's index is rebuilt from the pack
//! trailers by whoever opens it. An encrypted repository is copied as it is stored:
//! no key is needed, and the copy opens with the same passphrases.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::lock::{self, LockKind};
use crate::repo::{self, Repository};
use crate::storage::{Storage, StorageError};

/// What a mirror to a backend did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Snapshot files the mirror received or already had.
    pub snapshots: usize,
    /// Files copied (packs, snapshot files, config, keys).
    pub uploaded_files: u64,
    /// Bytes copied (the files' sizes).
    pub uploaded_bytes: u64,
    /// Files the mirror already had.
    pub skipped_files: u64,
    /// Files deleted from the mirror (`--delete`).
    pub deleted_files: u64,
    /// Packs hashed before they were sent (from a path repository).
    pub verified_packs: u64,
    /// Packs the repository lacks that `--delete` left in the mirror, because the
    /// local index does not vouch for every snapshot
    /// ([`super::preflight::Source::vouched`]).
    pub kept_packs: u64,
}

/// Mirror the repository in `source` to `dest`, `jobs` copies at a time. `delete`:
/// also remove what the source no longer has.
///
/// Errors: a destination that is not this repository's mirror
/// ([`super::check_destination`]), the source's (not a repository, locked
/// exclusively, unreadable) and the
/// destination's [`Error::Storage`], the first one to happen; nothing after it is
/// copied, and no snapshot file is sent before its packs.
pub fn mirror(
    source: &Arc<dyn Storage>,
    dest: &Arc<dyn Storage>,
    delete: bool,
    jobs: usize,
) -> Result<Report> {
    let config = Repository::read_config_in(&**source)?;
    if let (Some(from), Some(to)) = (source.local_root(), dest.local_root()) {
        super::preflight::inside(from, to)?;
    }
    super::check_destination(&**source, &**dest)?;
    let lock = lock::acquire(source, LockKind::Shared, repo::lock_wait())?;
    let _dest_lock = match dest.size("config") {
        Ok(_) => Some(lock::acquire(dest, LockKind::Shared, repo::lock_wait())?),
        Err(StorageError::NotFound { .. }) => None,
        Err(e) => return Err(on(&**dest, "read", e)),
    };
    let (src, dst) = (&**source, &**dest);
    let mut report = Report::default();

    // 1. The snapshots that exist now; only these reach the mirror in this run.
    let snapshots = listing(src, "snapshots/", "list")?;
    report.snapshots = snapshots.len();
    let have_snapshots = listing(dst, "snapshots/", "list")?;

    // The files of step 3: packs, the config, the README, key files.
    let mut files = listing(src, "packs/", "list")?;
    let mut have = listing(dst, "packs/", "list")?;
    files.extend(listing(src, "keys/", "list")?);
    have.extend(listing(dst, "keys/", "list")?);
    for top in ["config", "README.md"] {
        match src.size(top) {
            Ok(n) => {
                files.insert(top.to_string(), n);
            }
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(on(src, "read", e)),
        }
        match dst.size(top) {
            Ok(n) => {
                have.insert(top.to_string(), n);
            }
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(on(dst, "read", e)),
        }
    }

    // Before anything is copied: the packs the local index lists are all here and
    // whole, and those the mirror lacks match their names.
    let location = src.location();
    let on_disk: HashMap<Id, u64> = files
        .iter()
        .filter_map(|(k, &n)| Some((repo::pack_id(k)?, n)))
        .collect();
    let index_dir = match src.local_root() {
        Some(root) => root.join("index"),
        None => repo::cache_dir(&config.id)?.join("index"),
    };
    let snapshot_ids: Vec<Id> = snapshots
        .keys()
        .filter_map(|k| k.strip_prefix("snapshots/")?.parse().ok())
        .collect();
    let checked = super::preflight::source_packs(src, &index_dir, &on_disk, &snapshot_ids)?;
    if let Some(root) = src.local_root() {
        let new: Vec<Id> = files
            .keys()
            .filter(|k| !have.contains_key(*k))
            .filter_map(|k| repo::pack_id(k))
            .collect();
        super::preflight::verify_new_packs(root, &new, &location)?;
        report.verified_packs = new.len() as u64;
    }

    if let Some(root) = dst.local_root() {
        // A path repository has these directories even when they are empty.
        for d in ["packs", "snapshots", "locks"] {
            let p = root.join(d);
            crate::fsutil::create_private_dir_all(&p).ctx(|| format!("create {}", p.display()))?;
        }
    }

    // 2. Forgotten snapshots leave the mirror before any pack does.
    if delete {
        for key in have_snapshots
            .keys()
            .filter(|k| !snapshots.contains_key(*k))
        {
            dst.delete(key)
                .map_err(|e| on(dst, "delete a forgotten snapshot from", e))?;
            report.deleted_files += 1;
        }
    }

    // 3. Everything but the snapshots, then (--delete) the packs the source lacks.
    copy_missing(src, dst, &files, &have, jobs, &mut report)?;
    if delete {
        for key in have
            .keys()
            .filter(|k| k.starts_with("packs/") && !files.contains_key(*k))
        {
            if !checked.vouched {
                report.kept_packs += 1;
                continue;
            }
            dst.delete(key)
                .map_err(|e| on(dst, "delete a pruned pack from", e))?;
            report.deleted_files += 1;
        }
    }

    // 4. The snapshots listed in 1, whose packs are all there now, unless the lock
    // lapsed meanwhile: a prune may then have removed packs before they were copied.
    lock.check().map_err(Error::LockLost)?;
    copy_missing(src, dst, &snapshots, &have_snapshots, jobs, &mut report)?;
    Ok(report)
}

/// A backend's error, saying what was done where.
fn on(storage: &dyn Storage, what: &str, source: StorageError) -> Error {
    Error::Storage {
        context: format!("mirror: {what} {}", storage.location()),
        source,
    }
}

/// Keys and sizes under `prefix` (temporary objects are not listed by any backend).
fn listing(storage: &dyn Storage, prefix: &str, what: &str) -> Result<HashMap<String, u64>> {
    Ok(storage
        .list(prefix)
        .map_err(|e| on(storage, what, e))?
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect())
}

/// Copy one object: from a path backend without reading it into memory
/// ([`Storage::write_file`]), else read whole (a pack is at most a few target sizes).
fn copy(src: &dyn Storage, dst: &dyn Storage, key: &str) -> Result<()> {
    match src.local_root() {
        Some(root) => dst
            .write_file(key, &root.join(key))
            .map_err(|e| on(dst, "upload to", e)),
        None => {
            let bytes = src.read(key).map_err(|e| on(src, "read", e))?;
            dst.write(key, &bytes).map_err(|e| on(dst, "upload to", e))
        }
    }
}

/// Copies each of `files` that `have` lacks, `jobs` at a time; one it has is never
/// replaced, whatever its size: every file a mirror copies is written once (packs and
/// snapshot files are named by their content, key files by a random id, the config
/// and README at `init`), so a local copy that differs is a damaged one. The first
/// error stops the others from starting new copies and is returned.
fn copy_missing(
    src: &dyn Storage,
    dst: &dyn Storage,
    files: &HashMap<String, u64>,
    have: &HashMap<String, u64>,
    jobs: usize,
    report: &mut Report,
) -> Result<()> {
    let mut todo: Vec<(&String, u64)> = Vec::new();
    for (key, &len) in files {
        if have.contains_key(key) {
            report.skipped_files += 1;
        } else {
            todo.push((key, len));
        }
    }
    // Big packs first, so that the last copies in flight are the small ones.
    todo.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let queue = Mutex::new(todo.into_iter());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let (files_done, bytes_done) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((key, len)) = next else { return };
                match copy(src, dst, key) {
                    Ok(()) => {
                        files_done.fetch_add(1, Ordering::Relaxed);
                        bytes_done.fetch_add(len, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    report.uploaded_files += files_done.into_inner();
    report.uploaded_bytes += bytes_done.into_inner();
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}
