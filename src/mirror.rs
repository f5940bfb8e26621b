//! Mirroring a repository with rsync, safely while snapshots are being taken.
//!
//! The layout makes rsync cheap: packs and snapshot files are immutable and named by
//! their hash, so a second run sends only new files. What needs care is order. A
//! snapshot file may only reach the mirror after every pack it references; a plain
//! `rsync -a` copies `packs/` before `snapshots/`, so a snapshot committed in between
//! would arrive without its packs. [`mirror`] therefore runs, under a shared lock
//! (which keeps `prune` from deleting packs meanwhile):
//!
//! 1. list the snapshot files that exist now;
//! 2. with `--delete` only: remove from the mirror the snapshot files the source no
//!    longer has, before any pack they reference is deleted;
//! 3. copy everything but `snapshots/` (and `locks/*`, `.tmp-*`, and `index/` unless
//!    asked): every pack the listed snapshots reference existed at step 1, and packs
//!    are only ever removed by prune, so all of them arrive;
//! 4. copy exactly the snapshot files listed at step 1.
//!
//! A local mirror is locked as well, so that a `prune` run on it waits. Stopped at any
//! point, the mirror holds at most orphans (packs no snapshot there
//! references), never a snapshot with missing data. The mirror's index is its own: it
//! is rebuilt from the pack trailers the first time cbsnap opens the mirror, and
//! `--delete` leaves it alone. The recipe, for doing this by hand, is in
//! `docs/MIRROR.md`.

pub mod preflight;
pub mod remote;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::lock::{self, LockKind};
use crate::repo::{self, Repository};
use crate::storage::{Local, Storage};

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Make the mirror equal to the source: delete forgotten snapshots and pruned packs.
    pub delete: bool,
    /// Copy `index/` too (it is a cache; by default the mirror rebuilds its own).
    pub with_index: bool,
    /// Extra arguments for every rsync run (`--stats`, `-z`, `-e "ssh -p 2222"`, …).
    pub rsync_args: Vec<OsString>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Snapshot files the mirror received or already had.
    pub snapshots: usize,
    pub rsync_runs: usize,
    /// Packs hashed before they were sent (those a local mirror lacked).
    pub verified_packs: usize,
    /// `--delete` left the packs the repository lacks in the mirror: the local index
    /// does not vouch for every snapshot ([`preflight::Source::vouched`]), so one of
    /// them may be a lost pack a snapshot needs rather than a pruned one.
    pub kept_packs: bool,
}

/// The top-level names a repository (and so a mirror, even one cut short) holds.
const REPOSITORY_NAMES: [&str; 7] = [
    "config",
    "README.md",
    "keys",
    "packs",
    "snapshots",
    "locks",
    "index",
];

/// Refuse a destination that is not a mirror of the repository in `source`: one that
/// holds another repository (its `config` has another id), or files no repository
/// has. Mirroring writes the source's `config` over the destination's, and
/// `--delete` removes what the source lacks, so such a destination (a typo, another
/// repository) would be emptied or replaced. A missing or empty destination, or one
/// that holds only a repository's names (a first mirror cut short), is taken.
///
/// Errors: [`Error::Usage`] naming what is there; the storages' errors.
pub fn check_destination(source: &dyn Storage, dest: &dyn Storage) -> Result<()> {
    let ours = Repository::read_config_in(source)?.id;
    let place = dest.location();
    match dest.read("config") {
        Ok(bytes) => match crate::config::RepoConfig::decode(&bytes) {
            Ok(c) if c.id == ours => Ok(()),
            Ok(c) => Err(Error::Usage(format!(
                "{place} holds another cbsnap repository (id {}), not a mirror of this one ({}): mirroring would replace its config and, with --delete, its snapshots. Mirror into a new or empty directory, or into this repository's own mirror",
                c.id.short(),
                ours.short()
            ))),
            Err(e) => Err(Error::Usage(format!(
                "{place} has a `config` that is not this repository's ({e}); mirroring would replace it. Mirror into a new or empty directory, or into this repository's own mirror"
            ))),
        },
        Err(crate::storage::StorageError::NotFound { .. }) => {
            let foreign: Vec<String> = match dest.local_root() {
                // The directory itself, every name: a listing skips names that are
                // not UTF-8 and temporary-looking ones, which are someone's files
                // all the same. An empty `lost+found` (a fresh filesystem) is not.
                Some(root) => match std::fs::read_dir(root) {
                    Ok(rd) => rd
                        .flatten()
                        .map(|e| e.file_name())
                        .filter(|n| {
                            let n = n.to_string_lossy();
                            let empty_lost_found = n == "lost+found"
                                && std::fs::read_dir(root.join("lost+found"))
                                    .is_ok_and(|mut d| d.next().is_none());
                            !REPOSITORY_NAMES.contains(&n.as_ref()) && !empty_lost_found
                        })
                        .map(|n| n.to_string_lossy().into_owned())
                        .take(3)
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => {
                        return Err(Error::io_path("read the mirror destination", root, e))
                    }
                },
                None => dest
                    .list("")
                    .map_err(|e| crate::error::engine_error(dest, "list", e))?
                    .into_iter()
                    .map(|l| l.key)
                    .filter(|k| !REPOSITORY_NAMES.contains(&k.split('/').next().unwrap_or("")))
                    .take(3)
                    .collect(),
            };
            if foreign.is_empty() {
                return Ok(());
            }
            Err(Error::Usage(format!(
                "{place} is not empty and is not a cbsnap repository (it holds {}): mirroring would write over it, and --delete would empty it. Mirror into a new or empty directory, or into this repository's own mirror",
                foreign.join(", ")
            )))
        }
        Err(e) => Err(crate::error::engine_error(dest, "read", e)),
    }
}

/// Mirror the repository at `root` to `dest` (a path or rsync's `host:path`). A path
/// is checked first ([`check_destination`], [`preflight::inside`]); rsync's
/// `host:path` cannot be. Nothing is copied from a repository whose index lists packs
/// that are missing or cut short ([`preflight::source_packs`]), nor, to a path, when a
/// pack the mirror lacks does not match its name ([`preflight::verify_new_packs`]; a
/// `host:path` cannot be listed, so there rsync sends new packs unverified). Packs and
/// snapshot files the mirror has are never sent again (`--ignore-existing`): they are
/// immutable, so a different local copy is a damaged one.
pub fn mirror(root: &Path, dest: &str, opts: &Options) -> Result<Report> {
    let source: Arc<dyn Storage> = Arc::new(Local::new(root));
    Repository::read_config_in(&*source)?;
    // rsync's rule: a `:` before the first `/` makes a destination remote
    // (`host:path`), which cannot be looked into; any other is a local path.
    let local_dest = !dest
        .split('/')
        .next()
        .is_some_and(|first| first.contains(':'));
    if local_dest {
        preflight::inside(root, Path::new(dest))?;
        check_destination(&*source, &Local::new(Path::new(dest)))?;
    }
    let lock = lock::acquire(&source, LockKind::Shared, repo::lock_wait())?;
    // A local mirror that is already a repository is locked too: a prune there would
    // delete packs whose snapshots arrive only in step 4.
    let local = Path::new(dest);
    let _mirror_lock = if local_dest && local.join("config").is_file() {
        let locks = local.join("locks");
        crate::fsutil::create_private_dir_all(&locks)
            .ctx(|| format!("create {}", locks.display()))?;
        let dest: Arc<dyn Storage> = Arc::new(Local::new(local));
        Some(lock::acquire(&dest, LockKind::Shared, repo::lock_wait())?)
    } else {
        None
    };
    let src = format!("{}/", root.display());
    let dst = if dest.ends_with('/') {
        dest.to_string()
    } else {
        format!("{dest}/")
    };
    let mut report = Report::default();

    // 1. The snapshots that exist now; only these reach the mirror in this run.
    let snapshots = list_snapshots(&*source)?;
    report.snapshots = snapshots.len();
    let mut list = tempfile::NamedTempFile::new().ctx(|| "create a temporary file".into())?;
    for id in &snapshots {
        writeln!(list, "snapshots/{id}").ctx(|| "write the snapshot list".into())?;
    }
    list.flush().ctx(|| "write the snapshot list".into())?;

    // Before anything is copied: the packs the index lists are all here, whole, and
    // those the mirror lacks match their names.
    let location = root.display().to_string();
    let on_disk = list_packs(&*source)?;
    let checked = preflight::source_packs(&*source, &root.join("index"), &on_disk, &snapshots)?;
    if local_dest {
        let have = list_packs(&Local::new(local))?;
        let new: Vec<Id> = on_disk
            .keys()
            .filter(|id| !have.contains_key(*id))
            .copied()
            .collect();
        preflight::verify_new_packs(root, &new, &location)?;
        report.verified_packs = new.len();
    }
    let delete_packs = opts.delete && checked.vouched;
    report.kept_packs = opts.delete && !checked.vouched;

    // 2. Forgotten snapshots leave the mirror before any pack does.
    if opts.delete {
        let mut args = args_of(&["-r", "--delete", "--existing", "--ignore-existing"]);
        args.extend(args_of(&[
            "--include=/snapshots/",
            "--include=/snapshots/*",
        ]));
        args.extend(args_of(&["--exclude=*"]));
        rsync(&args, opts, &src, &dst, "remove forgotten snapshots")?;
        report.rsync_runs += 1;
    }

    // 3. The packs: only those the mirror lacks are sent, never one over a pack it
    // has; with --delete (and an index that vouches for every snapshot), those the
    // repository no longer has go.
    let mut a = args_of(&["-a", "--ignore-existing"]);
    if delete_packs {
        a.push("--delete".into());
    }
    a.extend(args_of(&[
        "--exclude=.tmp-*",
        "--include=/packs/***",
        "--exclude=*",
    ]));
    rsync(&a, opts, &src, &dst, "copy packs")?;
    report.rsync_runs += 1;

    // 3b. Everything else but the snapshots: the config, README.md, keys/.
    let mut a = args_of(&["-a"]);
    if opts.delete {
        a.push("--delete".into());
    }
    a.extend(args_of(&[
        "--exclude=/snapshots/",
        "--exclude=/packs/",
        "--exclude=/locks/*",
        "--exclude=.tmp-*",
    ]));
    if !opts.with_index {
        a.push("--exclude=/index/".into());
    }
    rsync(&a, opts, &src, &dst, "copy the config and keys")?;
    report.rsync_runs += 1;

    // 4. The snapshots listed in 1, whose packs are all there now, unless the lock
    // lapsed meanwhile: a prune may then have removed packs before rsync copied them.
    lock.check().map_err(Error::LockLost)?;
    let mut a = args_of(&["-a", "--ignore-existing"]);
    let mut from = OsString::from("--files-from=");
    from.push(list.path());
    a.push(from);
    rsync(&a, opts, &src, &dst, "copy snapshots")?;
    report.rsync_runs += 1;
    Ok(report)
}

/// Pack ids and sizes in `storage` (temporary files and other names are skipped); a
/// missing `packs/` has none.
pub(crate) fn list_packs(storage: &dyn Storage) -> Result<HashMap<Id, u64>> {
    let listed = match storage.list("packs/") {
        Ok(l) => l,
        Err(crate::storage::StorageError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(crate::error::engine_error(storage, "list", e)),
    };
    Ok(listed
        .into_iter()
        .filter_map(|l| Some((repo::pack_id(&l.key)?, l.size)))
        .collect())
}

fn args_of(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

/// Snapshot files by id; temporary files are skipped.
fn list_snapshots(source: &dyn Storage) -> Result<Vec<Id>> {
    let listed = source
        .list("snapshots/")
        .map_err(|e| crate::error::engine_error(source, "list", e))?;
    let mut out: Vec<Id> = listed
        .iter()
        .filter_map(|l| l.key.strip_prefix("snapshots/")?.parse::<Id>().ok())
        .collect();
    out.sort();
    Ok(out)
}

fn rsync(args: &[OsString], opts: &Options, src: &str, dst: &str, step: &str) -> Result<()> {
    let status = Command::new("rsync")
        .args(args)
        .args(&opts.rsync_args)
        .arg(src)
        .arg(dst)
        .status()
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (is rsync installed? `apt install rsync`)"
            } else {
                ""
            };
            Error::io(format!("run rsync{hint}"), e)
        })?;
    if status.success() {
        return Ok(());
    }
    Err(Error::io(
        format!("rsync ({step})"),
        std::io::Error::other(format!(
            "{status}. The mirror holds at most unreferenced packs, never a snapshot with missing data; fix the cause and run the mirror again"
        )),
    ))
}
