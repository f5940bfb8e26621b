//! Reading the chunks of a batch of small files pack by pack, as restic's restorer
//! plans its reads: every distinct chunk of the batch is located, the locations are
//! grouped by pack and sorted by offset, and neighbouring blobs (gaps of at most
//! [`MAX_GAP`] bytes, which are read and dropped) come in one `pread`, or one ranged
//! read of a remote pack, of at most [`MAX_RANGE`] bytes. A chunk that several files
//! of the batch share, or that repeats inside a file, is read once, and a pack's
//! needed range once per batch, instead of one read per chunk of each file.
//!
//! Each blob is still decrypted, decompressed and verified against its id
//! ([`Repository::decode_stored`]). A blob the plan cannot read (not indexed, a
//! short or damaged pack) is left out of the result: the file that needs it reads it
//! alone ([`Repository::read_blob`]), which reports the damage for that file only,
//! as a restore without a plan would. Memory: the batch's planned files are at most
//! [`MAX_FILE`] bytes each and [`MAX_BATCH`] together (the restore flushes a batch
//! when it reaches that), plus one range per thread.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::id::Id;
use crate::index::Location;
use crate::pack::BlobEntry;
use crate::repo::Repository;

/// A gap between two needed blobs of a pack up to which they are read together.
pub(super) const MAX_GAP: u64 = 256 << 10;
/// The longest range read at once.
pub(super) const MAX_RANGE: u64 = 16 << 20;
/// Files larger than this are not planned: their chunks are read one by one while
/// they are written (a big file's chunks are mostly its own and in pack order).
pub(super) const MAX_FILE: u64 = 4 << 20;
/// The planned bytes of one batch, at most (plus one file).
pub(super) const MAX_BATCH: u64 = 16 << 20;

/// The content of the chunks a plan read, by id.
pub(super) type Chunks = HashMap<Id, Vec<u8>>;

/// Read the chunks `ids` (repeats allowed) pack range by pack range, the ranges in
/// parallel. Chunks that could not be read are missing from the result.
pub(super) fn read_chunks<'a>(repo: &Repository, ids: impl IntoIterator<Item = &'a Id>) -> Chunks {
    let mut seen = HashSet::new();
    let mut by_pack: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    for id in ids {
        if !seen.insert(*id) {
            continue;
        }
        if let Ok(loc) = repo.locate(id) {
            by_pack.entry(loc.pack).or_default().push(loc.entry);
        }
    }
    ranges(by_pack)
        .par_iter()
        .flat_map_iter(|(pack, entries)| read_range(repo, pack, entries))
        .collect()
}

/// The reads of a plan: each pack's entries, sorted by offset, cut where the gap to
/// the next exceeds [`MAX_GAP`] or the range would exceed [`MAX_RANGE`].
fn ranges(by_pack: HashMap<Id, Vec<BlobEntry>>) -> Vec<(Id, Vec<BlobEntry>)> {
    let mut out = Vec::new();
    for (pack, mut entries) in by_pack {
        entries.sort_by_key(|e| e.offset);
        let mut cur: Vec<BlobEntry> = Vec::new();
        let mut end = 0u64;
        for e in entries {
            let e_end = e.offset + e.stored_len as u64;
            if let Some(first) = cur.first() {
                if e.offset.saturating_sub(end) > MAX_GAP || e_end - first.offset > MAX_RANGE {
                    out.push((pack, std::mem::take(&mut cur)));
                }
            }
            end = if cur.is_empty() {
                e_end
            } else {
                end.max(e_end)
            };
            cur.push(e);
        }
        if !cur.is_empty() {
            out.push((pack, cur));
        }
    }
    out
}

/// One read of `entries` (sorted by offset) of `pack`, each blob decoded and
/// verified, the blobs in parallel (a batch is often one range of one pack, and
/// decompressing and hashing it on one thread would leave the other cores idle);
/// what fails is left out.
fn read_range(repo: &Repository, pack: &Id, entries: &[BlobEntry]) -> Vec<(Id, Vec<u8>)> {
    let start = entries[0].offset;
    let end = entries
        .iter()
        .map(|e| e.offset + e.stored_len as u64)
        .max()
        .unwrap_or(start);
    let Ok(bytes) = repo.read_pack_range(pack, start, end - start) else {
        return Vec::new();
    };
    entries
        .par_iter()
        .filter_map(|e| {
            let at = (e.offset - start) as usize;
            let stored = &bytes[at..at + e.stored_len as usize];
            let loc = Location {
                pack: *pack,
                entry: *e,
            };
            repo.decode_stored(&loc, stored).ok().map(|d| (e.id, d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BlobKind, Compression};

    fn entry(n: u8, offset: u64, len: u32) -> BlobEntry {
        BlobEntry {
            id: Id::hash(&[n]),
            offset,
            stored_len: len,
            raw_len: len,
            kind: BlobKind::Data,
            compression: Compression::None,
        }
    }

    /// Neighbours are read together, a wide gap or a long range starts a new read,
    /// and every entry is in exactly one read, in offset order.
    #[test]
    fn ranges_join_neighbours_and_cut_at_gaps_and_length() {
        let pack = Id::hash(b"pack");
        let big = (MAX_RANGE / 2) as u32;
        let entries = vec![
            entry(3, 2000, 500),
            entry(1, 0, 1000),
            entry(2, 1000 + MAX_GAP, 10), // gap of MAX_GAP - 0 after entry 1: joined
            entry(4, 2500 + MAX_GAP + 1 + MAX_GAP, 10), // wide gap: a new read
            entry(5, 10 << 30, big),
            entry(6, (10 << 30) + big as u64, big),
            entry(7, (10 << 30) + 2 * big as u64, 1), // would pass MAX_RANGE
        ];
        let mut by_pack = HashMap::new();
        by_pack.insert(pack, entries);
        let got: Vec<Vec<u8>> = ranges(by_pack)
            .into_iter()
            .map(|(p, es)| {
                assert_eq!(p, pack);
                es.iter()
                    .map(|e| (1..=7).find(|n| Id::hash(&[*n]) == e.id).unwrap())
                    .collect()
            })
            .collect();
        let mut got = got;
        got.sort();
        assert_eq!(got, vec![vec![1, 3, 2], vec![4], vec![5, 6], vec![7]]);
    }
}
