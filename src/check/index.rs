//! Streaming the index in id order next to the referenced set: what is missing, what
//! sits in a missing or damaged pack, what nothing references, and one digest of each
//! pack's entries to compare with its trailer.

use std::collections::{HashMap, HashSet};

use super::{Fault, Findings, Report, NO_PACK};
use crate::codec::Writer;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Location;
use crate::pack::BlobEntry;
use crate::prune::reach::{key, BlobKey, SortedKeys};
use crate::repo::Repository;

/// Stream the index in id order next to the referenced set: find referenced blobs the
/// index lacks, or locates in a missing or damaged pack; count unreferenced data;
/// digest each pack's entries. Returns the digests.
pub(super) fn stream_index(
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

/// An order-independent digest of one index or trailer entry: summed (wrapping) over a
/// pack, it compares the index's view of the pack with the trailer in one number.
pub(super) fn entry_digest(e: &BlobEntry) -> u128 {
    let mut w = Writer::new();
    e.encode(&mut w);
    let h = blake3::hash(&w.buf);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
}
