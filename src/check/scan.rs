//! Reading the packs: every pack's trailer, digested for the comparison with the
//! index, and in full the packs `--read-data` selects, each read once and in parallel.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::index::entry_digest;
use super::{Fault, Findings, ReadData, Report};
use crate::error::Result;
use crate::id::Id;
use crate::index::Location;
use crate::pack::{self, BlobEntry, PackReadError};
use crate::progress::Progress;
use crate::repo::Repository;

/// What reading one pack found.
struct PackScan {
    id: Id,
    size: u64,
    trailer: std::result::Result<(u64, u128), PackReadError>,
    /// Entries of a pack the index does not list, so its blobs can still be found.
    unindexed: Vec<BlobEntry>,
    read: bool,
    name_matches: bool,
    bad_blobs: Vec<(Id, String)>,
}

/// Read every pack's trailer, and in full the packs `read` selects.
pub(super) fn scan_packs(
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
                format!(
                    "{} blob(s) do not match their id or fail authentication; first {why}",
                    s.bad_blobs.len()
                ),
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

/// Which packs to read in full.
fn select(on_disk: &HashMap<Id, u64>, read: ReadData) -> HashSet<Id> {
    match read {
        ReadData::None => HashSet::new(),
        ReadData::All => on_disk.keys().copied().collect(),
        ReadData::Subset(share) => {
            // A fresh order every run, so repeated subsets cover the whole repository.
            let seed = Id::random();
            let mut order: Vec<(Id, Id)> = on_disk
                .keys()
                .map(|id| {
                    let mut h = blake3::Hasher::new();
                    h.update(&seed.0);
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
        trailer: Ok((0, 0)),
        unindexed: Vec::new(),
        read,
        name_matches: true,
        bad_blobs: Vec::new(),
    };
    let pack = match repo.open_pack(id, size) {
        Ok(p) => p,
        Err(e) => {
            s.trailer = Err(e);
            return s;
        }
    };
    let digest = pack
        .entries()
        .iter()
        .fold(0u128, |acc, e| acc.wrapping_add(entry_digest(e)));
    s.trailer = Ok((pack.entries().len() as u64, digest));
    if read {
        match pack.read_all() {
            Ok(bytes) => {
                s.name_matches = Id::hash(&bytes) == *id;
                for e in pack.entries() {
                    if let Err(why) = pack::decode_blob(e, bytes.stored(e), repo.crypt()) {
                        s.bad_blobs.push((e.id, why.to_string()));
                    }
                }
            }
            Err(e) => {
                s.name_matches = false;
                s.bad_blobs.extend(
                    pack.entries()
                        .iter()
                        .map(|b| (b.id, format!("the pack {e}"))),
                );
            }
        }
        progress.inc(size);
    }
    if unindexed {
        s.unindexed = pack.into_entries();
    }
    s
}
