//! Comparing a pack's trailer with the index, entry by entry, for the few packs whose
//! digests differ.

use std::collections::HashMap;

use super::{Fault, Findings, Orphans};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackReadError;
use crate::prune::reach::{key, SortedKeys};
use crate::repo::Repository;

/// Compare, pack by pack, the trailer with the index. Only packs whose digests differ
/// are examined blob by blob.
pub(super) fn compare_trailers(
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
        let entries = match repo.open_pack(&id, on_disk[&id]) {
            Ok(p) => p.into_entries(),
            Err(PackReadError::Open(e)) => return Err(Error::io("open pack", e)),
            // A remote read that failed says nothing about the pack's bytes.
            Err(PackReadError::Read(e)) => {
                return Err(Error::io(
                    format!("read pack {}", repo.pack_path(&id).display()),
                    e,
                ))
            }
            Err(e) => return Err(Error::Corrupt(format!("pack {id}: {e}"))),
        };
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
