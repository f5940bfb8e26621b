//! What a mirror checks before it copies anything, so that it never spreads local
//! damage onto the good copy off-host (the mirror `check` tells the operator to copy
//! damaged packs back from).
//!
//! - [`inside`]: the destination is not the repository itself nor inside it (a mirror
//!   onto itself copied nothing and said it had; one inside it grew a nested copy that
//!   the next run copied again).
//! - [`source_packs`]: every pack the local index lists exists and is as long as the
//!   index recorded: a stat of each, no reading. The index is opened read-only and
//!   not brought up to date: opening the repository would forget a vanished pack
//!   (`Repository::sync_index`), the very evidence looked for here. It also says
//!   whether the index vouches for every snapshot (its `s` records: every blob the
//!   snapshot references was indexed at commit, and none was forgotten since except
//!   by prune), which `--delete` needs before it removes packs from the mirror.
//! - [`verify_new_packs`]: the packs the mirror lacks are rehashed before they are
//!   sent; a pack's name is the BLAKE3 of its bytes, so a flipped bit shows.
//!
//! Packs the mirror already has are never sent again (they are immutable and named by
//! their content), so a damaged local copy cannot replace a good one whatever these
//! checks miss.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::index::Index;
use crate::repo::pack_key;
use crate::storage::{Storage, StorageError};

/// What [`source_packs`] found about the local repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Every listed snapshot is recorded in the index as wholly indexed, so every pack
    /// a snapshot references is one the index lists (and [`source_packs`] found it
    /// whole). Without that, a pack the repository lacks may be a lost one that a
    /// snapshot needs, not a pruned one: `--delete` keeps such packs in the mirror.
    pub vouched: bool,
}

/// Refuse `dest` when it is the repository at `root` or lies inside it, compared by
/// device and inode of `root` and of `dest` and each of its existing ancestors (so a
/// symbolic link or a bind mount to the same directory is caught as well).
///
/// Errors: [`Error::Usage`] naming both.
pub fn inside(root: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(repo) = std::fs::metadata(root) else {
        return Ok(());
    };
    let dest_abs = std::path::absolute(dest).unwrap_or_else(|_| dest.to_path_buf());
    let mut at: Option<&Path> = Some(&dest_abs);
    while let Some(p) = at {
        if let Ok(m) = std::fs::metadata(p) {
            if m.dev() == repo.dev() && m.ino() == repo.ino() {
                let what = if p == dest_abs {
                    "is the repository itself"
                } else {
                    "lies inside the repository"
                };
                return Err(Error::Usage(format!(
                    "mirror destination {} {what} ({}): a mirror there would copy nothing, or copy the repository into itself again on every run. Mirror to another disk or host, or a directory outside {}",
                    dest.display(),
                    root.display(),
                    root.display()
                )));
            }
        }
        at = p.parent();
    }
    Ok(())
}

/// Check every pack the local index in `index_dir` lists against `on_disk` (the
/// packs and sizes in `source`, listed before), and whether the index vouches for
/// every one of `snapshots`. No index there (a copy of the repository without one):
/// nothing can be compared, and nothing is vouched for.
///
/// The index is opened as a secondary instance, which takes no lock and reads it as
/// it is now while a snapshot may be writing it (see [`Index::open_secondary`]). A
/// pack that snapshot committed after `on_disk` was listed is in the index but not
/// in the listing: a pack the listing lacks, or has shorter, is asked for again
/// before it counts as damage.
///
/// Errors: [`Error::Corrupt`] naming each pack that is missing or shorter than the
/// index recorded, and what to do; [`Error::Index`] when the index cannot be read.
pub fn source_packs(
    source: &dyn Storage,
    index_dir: &Path,
    on_disk: &HashMap<Id, u64>,
    snapshots: &[Id],
) -> Result<Source> {
    if !index_dir.join("CURRENT").is_file() {
        return Ok(Source { vouched: false });
    }
    let scratch = tempfile::Builder::new()
        .prefix("cbsnap-index-")
        .tempdir()
        .ctx(|| "create a temporary directory for the index".to_string())?;
    let index =
        Index::open_secondary(index_dir, scratch).map_err(|e| Error::Index(e.into_string()))?;
    let mut bad: Vec<String> = Vec::new();
    let mut indexed = index.packs()?.into_iter().collect::<Vec<_>>();
    indexed.sort();
    for (id, size) in indexed {
        if on_disk.get(&id).is_some_and(|&have| have >= size) {
            continue;
        }
        let key = pack_key(&id);
        match source.size(&key) {
            Ok(have) if have >= size => {}
            Ok(have) => bad.push(format!("{key} is {have} bytes, the index recorded {size}")),
            Err(StorageError::NotFound { .. }) => bad.push(format!("{key} is missing")),
            Err(e) => return Err(crate::error::engine_error(source, "read", e)),
        }
    }
    let location = source.location();
    if !bad.is_empty() {
        return Err(refusal(
            &location,
            &bad,
            "packs the index lists are missing or cut short",
        ));
    }
    let mut vouched = true;
    for id in snapshots {
        if !index.snapshot_indexed(id)? {
            vouched = false;
            break;
        }
    }
    Ok(Source { vouched })
}

/// Hash each of `packs` (files under `root`) and compare with its name, a few at a
/// time; `location` names the repository in the error.
///
/// Errors: [`Error::Corrupt`] naming each pack whose bytes do not match its name or
/// that cannot be read.
pub fn verify_new_packs(root: &Path, packs: &[Id], location: &str) -> Result<()> {
    let mut bad: Vec<String> = packs
        .par_iter()
        .filter_map(|id| {
            let key = pack_key(id);
            match hash_file(&root.join(&key)) {
                Ok(h) if h == *id => None,
                Ok(h) => Some(format!("{key} hashes to {}", h.short())),
                Err(e) => Some(format!("{key} cannot be read: {e}")),
            }
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    Err(refusal(
        location,
        &bad,
        "packs the mirror lacks are damaged",
    ))
}

fn hash_file(path: &Path) -> std::io::Result<Id> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// The refusal of a damaged source: what is wrong, that nothing was copied, and what
/// to do, with the mirror (which still has the good packs) as the way back.
fn refusal(location: &str, bad: &[String], what: &str) -> Error {
    let mut list: Vec<&str> = bad.iter().take(20).map(String::as_str).collect();
    let more = bad.len().saturating_sub(list.len());
    let tail = format!("… and {more} more");
    if more > 0 {
        list.push(&tail);
    }
    Error::Corrupt(format!(
        "{location}: {what}, so the mirror was not updated (nothing was copied; it would have spread the damage onto the good copy):\n  {}\nRun `cbsnap check` here. Copy each named pack back from the mirror, which still has it (`cbsnap mirror` never replaces a pack the mirror has): `rsync MIRROR/packs/ab/abcd… {location}/packs/ab/`. If no copy is left anywhere, remove the damaged pack and run `cbsnap index rebuild`, then `cbsnap check` names the snapshots that lost data (forget them, then `cbsnap prune`)",
        list.join("\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository itself, by its path or a symbolic link to it, and any path
    /// below it (existing or not) are refused; a sibling is not.
    #[test]
    fn inside_catches_the_repository_by_inode() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir_all(repo.join("packs")).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&repo, &link).unwrap();
        for dest in [
            repo.clone(),
            link.clone(),
            repo.join("mirror"),
            link.join("packs/new/deeper"),
        ] {
            let r = inside(&repo, &dest);
            assert!(matches!(r, Err(Error::Usage(_))), "{dest:?}: {r:?}");
        }
        for dest in [d.path().join("mirror"), d.path().join("repo-mirror")] {
            assert!(inside(&repo, &dest).is_ok(), "{dest:?}");
        }
    }
}
