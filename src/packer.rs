//! The one writer of packs, shared by `snapshot` (the ingest pipeline) and prune's
//! repack, so that "write packs correctly" is written once, as rustic_core's
//! `blob/packer.rs` `Packer` and its `Repacker` share it.
//!
//! A [`Packer`] appends compressed blobs ([`compress`]) to one open pack and seals it
//! when it reaches the repository's target size or [`PACK_MAX_BLOBS`] blobs; [`save`] then makes a sealed pack a
//! repository file (fsync, rename, fsync the directory) and indexes its blobs. The
//! two halves are apart so that the ingest pipeline can fsync one pack on its flusher
//! thread while the next one fills; prune calls them one after the other.
//!
//! The packer enforces every limit a reader enforces ([`pack::check_blob`]), before
//! anything of the blob is written: a writer must never produce what a reader rejects.
//! Deduplication is the caller's, because only the caller knows what is in flight:
//! ingest claims an id against the index and its queue before it compresses the
//! chunk, and prune copies only the referenced blobs of the packs it repacks.
//!
//! Durability: a pack's blobs are indexed only after [`save`] has made the pack
//! durable, and the caller flushes the index before it commits anything that refers
//! to them (the snapshot file, or the deletion of repacked packs). An open or sealed
//! pack that is dropped removes its temporary file.

use crate::crypto::{Crypt, Purpose};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{self, BlobEntry, BlobKind, Compression, PackWriter, SealedPack};
use crate::repo::Repository;

/// Blobs after which the packer seals a pack whatever its size (a writer's rule; a
/// reader takes up to [`pack::MAX_PACK_ENTRIES`]). Everything the pipeline holds per
/// pack in flight grows with its blob count: the trailer's entries, the index's
/// write batch (one atomic batch per pack), RocksDB's memtable that takes it, and
/// the ids claimed until the pack is indexed, ~400 bytes per blob in all. At 16 MiB
/// a pack of tiny blobs (FastCDC at 64/256/1024 bytes, or small files of under
/// 1 KiB stored) held ~65,000 and took ~26 MB of that; 16,384 keeps it near 6 MB and
/// leaves packs of blobs of 1 KiB and more (the default chunks, most files) at the
/// target size (`docs/BENCHMARKS.md`, "Issue 9, eighth pass").
pub const PACK_MAX_BLOBS: usize = 16_384;
const _: () = assert!(PACK_MAX_BLOBS <= pack::MAX_PACK_ENTRIES);

/// A blob ready to be added to a pack: its id, kind and raw length, and its bytes as
/// stored.
#[derive(Debug)]
pub struct Blob {
    pub id: Id,
    pub kind: BlobKind,
    /// Length of the blob before compression, in bytes.
    pub raw_len: u32,
    /// The stored bytes: `raw_len` bytes compressed as `compression` says, sealed
    /// when the repository encrypts.
    pub bytes: Vec<u8>,
    pub compression: Compression,
}

/// Compress the raw blob `raw` (whose id under `crypt` is `id`) at zstd `level`, or
/// keep it as it is when zstd does not make it smaller (no copy then), then seal it
/// when `crypt` encrypts (compressed first: ciphertext does not compress). The
/// ingest pipeline runs this on its workers, in parallel; [`Packer::add`] checks the
/// result against the format's limits. `raw_len` saturates for a blob beyond 4 GiB,
/// which the packer then refuses as too large.
///
/// Errors: [`Error::Crypto`] when the OS has no random bytes for the nonce.
pub fn compress(crypt: &Crypt, id: Id, kind: BlobKind, raw: Vec<u8>, level: i32) -> Result<Blob> {
    let raw_len = u32::try_from(raw.len()).unwrap_or(u32::MAX);
    let (bytes, compression) = pack::compress_vec(raw, level);
    let bytes = crypt.seal(Purpose::Blob, bytes)?;
    Ok(Blob {
        id,
        kind,
        raw_len,
        bytes,
        compression,
    })
}

/// Blobs and bytes a [`Packer`] has added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PackerStats {
    pub blobs: u64,
    /// Raw (uncompressed) bytes of the blobs added.
    pub raw_bytes: u64,
    /// Their stored (compressed) bytes.
    pub stored_bytes: u64,
}

/// Fills packs up to the repository's target size (see the module docs).
pub struct Packer<'r> {
    repo: &'r Repository,
    target: u64,
    open: Option<PackWriter>,
    stats: PackerStats,
}

impl<'r> Packer<'r> {
    /// A packer writing into `repo`'s `packs/` at its `pack_target_size`.
    pub fn new(repo: &'r Repository) -> Packer<'r> {
        Packer {
            repo,
            target: repo.config.pack_target_size,
            open: None,
            stats: PackerStats::default(),
        }
    }

    /// Add one blob as stored (`stored` is `raw_len` bytes compressed as
    /// `compression` says, sealed when the repository encrypts: [`compress`]); opens a pack when none is open. Returns the pack this
    /// blob filled to the target size, sealed, for [`save`]. A blob a reader would
    /// reject is refused ([`Error::BlobRejected`]) and nothing of it is written; an
    /// I/O error names the packs directory.
    pub fn add(
        &mut self,
        id: Id,
        kind: BlobKind,
        raw_len: u32,
        stored: &[u8],
        compression: Compression,
    ) -> Result<Option<SealedPack>> {
        let plain_len = (stored.len() as u64).saturating_sub(self.repo.crypt().overhead() as u64);
        pack::check_blob(&id, raw_len as u64, plain_len, compression)?;
        let dir = self.repo.packs_dir();
        let w = match &mut self.open {
            Some(w) => w,
            empty => empty.insert(
                PackWriter::create(&dir, self.repo.crypt())
                    .map_err(|e| Error::io(format!("create pack in {}", dir.display()), e))?,
            ),
        };
        w.add(id, kind, raw_len, stored, compression)
            .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e))?;
        self.stats.blobs += 1;
        self.stats.raw_bytes += raw_len as u64;
        self.stats.stored_bytes += stored.len() as u64;
        // A full pack is sealed at the target size, or at the blob count that bounds
        // its memory in flight (well before the footer's `u32` count could overflow).
        if w.size() >= self.target || w.len() >= PACK_MAX_BLOBS {
            return self.flush();
        }
        Ok(None)
    }

    /// [`Packer::add`] of a [`Blob`].
    pub fn add_blob(&mut self, b: &Blob) -> Result<Option<SealedPack>> {
        self.add(b.id, b.kind, b.raw_len, &b.bytes, b.compression)
    }

    /// Seal the open pack, if any (at the end of a run, whatever its size).
    pub fn flush(&mut self) -> Result<Option<SealedPack>> {
        let Some(w) = self.open.take() else {
            return Ok(None);
        };
        let dir = self.repo.packs_dir();
        w.seal()
            .map(Some)
            .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e))
    }

    /// What was added so far.
    pub fn stats(&self) -> PackerStats {
        self.stats
    }
}

/// A pack that is a durable repository file and is indexed.
#[derive(Debug)]
pub struct SavedPack {
    pub id: Id,
    /// Its size in bytes.
    pub size: u64,
    /// Its trailer's entries.
    pub entries: Vec<BlobEntry>,
}

/// Make a sealed pack a repository file and index its blobs: fsync it, rename it into
/// `packs/`, fsync the directory ([`SealedPack::commit`]), or upload it to a remote
/// repository ([`Repository::commit_pack`]), then add its entries to the index. The one place a pack becomes a repository file. When this returns `Ok` the
/// pack is durable; its index entries are durable after the next
/// [`crate::index::Index::flush`], which the caller runs before it commits anything
/// that refers to them. On an error the temporary file is removed.
pub fn save(repo: &Repository, sealed: SealedPack) -> Result<SavedPack> {
    let (id, size, entries) = repo.commit_pack(sealed)?;
    repo.index().add_pack(&id, size, &entries)?;
    Ok(SavedPack { id, size, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Access;

    fn repo(d: &tempfile::TempDir) -> Repository {
        let root = d.path().join("repo");
        Repository::init(&root).unwrap();
        Repository::open(&root, Access::Append).unwrap()
    }

    /// Names of the files in `packs/` that are not packs (temporary files).
    fn temps(repo: &Repository) -> Vec<String> {
        std::fs::read_dir(repo.packs_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// `len` random (incompressible) bytes, compressed: stored as they are.
    fn blob(seed: u64, len: usize) -> Blob {
        use rand::{RngCore, SeedableRng};
        let mut raw = vec![0u8; len];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut raw);
        let b = compress(
            &crate::crypto::Crypt::Plain,
            Id::hash(&raw),
            BlobKind::Data,
            raw,
            3,
        )
        .unwrap();
        assert_eq!(b.compression, Compression::None);
        b
    }

    /// Blobs go into packs sealed at the target size; saved packs are indexed and
    /// every blob reads back.
    #[test]
    fn seals_at_target_size_and_indexes_what_it_saves() {
        let d = tempfile::tempdir().unwrap();
        let mut repo = repo(&d);
        repo.config.pack_target_size = 100_000;
        let blobs: Vec<Blob> = (0..10).map(|n| blob(n, 40_000)).collect();
        let mut packer = Packer::new(&repo);
        let mut saved = Vec::new();
        for b in &blobs {
            if let Some(s) = packer.add_blob(b).unwrap() {
                saved.push(save(&repo, s).unwrap());
            }
        }
        // 40 kB blobs stored uncompressed reach 100 kB at every third blob.
        assert_eq!(saved.len(), 3);
        assert!(saved.iter().all(|p| p.entries.len() == 3));
        saved.push(save(&repo, packer.flush().unwrap().unwrap()).unwrap());
        assert!(packer.flush().unwrap().is_none());
        assert_eq!(packer.stats().blobs, 10);
        assert_eq!(packer.stats().raw_bytes, 400_000);
        repo.index().flush().unwrap();
        for b in &blobs {
            let raw = repo.read_blob(&b.id).unwrap();
            assert_eq!(Id::hash(&raw), b.id);
        }
        let on_disk = repo.list_packs().unwrap();
        assert_eq!(on_disk.len(), 4);
        assert!(saved.iter().all(|p| on_disk.get(&p.id) == Some(&p.size)));
        assert!(temps(&repo).is_empty(), "{:?}", temps(&repo));
    }

    /// Tiny blobs seal a pack at [`PACK_MAX_BLOBS`], long before the target size, and
    /// every one of them is indexed and reads back.
    #[test]
    fn seals_at_the_blob_count_when_blobs_are_tiny() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo(&d);
        let n = PACK_MAX_BLOBS * 2 + 10;
        let mut packer = Packer::new(&repo);
        let mut saved = Vec::new();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let b = blob(i as u64, 16);
            ids.push(b.id);
            if let Some(s) = packer.add_blob(&b).unwrap() {
                saved.push(save(&repo, s).unwrap());
            }
        }
        assert_eq!(saved.len(), 2);
        assert!(saved.iter().all(|p| p.entries.len() == PACK_MAX_BLOBS));
        assert!(saved.iter().all(|p| p.size < repo.config.pack_target_size));
        let last = save(&repo, packer.flush().unwrap().unwrap()).unwrap();
        assert_eq!(last.entries.len(), 10);
        repo.index().flush().unwrap();
        for (i, id) in ids.iter().enumerate().step_by(997) {
            let raw = repo.read_blob(id).unwrap();
            assert_eq!(Id::hash(&raw), *id, "blob {i}");
        }
        assert_eq!(repo.list_packs().unwrap().len(), 3);
    }

    /// What a reader would reject is refused before a byte of it is written.
    #[test]
    fn refuses_what_a_reader_rejects() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo(&d);
        let mut packer = Packer::new(&repo);
        let id = Id::hash(b"abc");
        let err = packer
            .add(id, BlobKind::Data, 5, b"abc", Compression::None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BlobRejected(pack::BlobRejected::LengthMismatch { raw_len: 5, .. })
            ),
            "{err:?}"
        );
        let big = vec![0u8; pack::MAX_BLOB as usize + 1];
        let err = packer
            .add(id, BlobKind::Data, 10, &big, Compression::Zstd)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BlobRejected(pack::BlobRejected::TooLarge { .. })
            ),
            "{err:?}"
        );
        let err = packer
            .add_blob(&compress(&crate::crypto::Crypt::Plain, id, BlobKind::Data, big, 1).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BlobRejected(pack::BlobRejected::TooLarge { .. })
            ),
            "{err:?}"
        );
        // Nothing was opened for the refused blobs.
        assert!(packer.flush().unwrap().is_none());
        assert!(temps(&repo).is_empty());
    }

    /// In an encrypted repository the packer writes what [`compress`] sealed: a blob
    /// of the full [`pack::MAX_BLOB`] is accepted (sealing adds
    /// [`crate::crypto::OVERHEAD`] bytes on disk), its plaintext is nowhere in the
    /// pack, and it reads back through [`pack::PackFile`] with the repository's key.
    #[test]
    fn an_encrypted_repository_packs_sealed_blobs_up_to_the_limit() {
        use crate::crypto::keys::KdfParams;
        use crate::crypto::passphrase::Given;
        use crate::repo::Access;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..KdfParams::default()
        };
        Repository::init_encrypted(&root, "pw", &kdf).unwrap();
        let pass = Given(zeroize::Zeroizing::new("pw".to_string()));
        let repo = Repository::open_keyed(
            std::sync::Arc::new(crate::storage::Local::new(&root)),
            Access::Append,
            &crate::repo::OpenOptions::default(),
            &pass,
        )
        .unwrap();
        let raw = blob(7, pack::MAX_BLOB as usize).bytes;
        let id = repo.blob_id(&raw);
        let b = compress(repo.crypt(), id, BlobKind::Data, raw.clone(), 3).unwrap();
        assert_eq!(b.compression, Compression::None);
        assert_eq!(b.bytes.len(), raw.len() + crate::crypto::OVERHEAD);
        let mut packer = Packer::new(&repo);
        let sealed = match packer.add_blob(&b).unwrap() {
            Some(s) => s,
            None => packer.flush().unwrap().unwrap(),
        };
        let saved = save(&repo, sealed).unwrap();
        let path = repo.pack_path(&saved.id);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(!on_disk.windows(64).any(|w| w == &raw[1000..1064]));
        let pf = pack::PackFile::open(&path, saved.size, repo.crypt()).unwrap();
        let bytes = pf.read_all().unwrap();
        let e = &pf.entries()[0];
        assert_eq!(
            pack::decode_blob(e, bytes.stored(e), repo.crypt()).unwrap(),
            raw
        );
        assert!(pack::PackFile::open(&path, saved.size, &crate::crypto::Crypt::Plain).is_err());
    }

    /// An open pack, and a sealed one never saved, leave no temporary file behind.
    #[test]
    fn dropping_an_open_or_sealed_pack_removes_its_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo(&d);
        let mut packer = Packer::new(&repo);
        assert!(packer.add_blob(&blob(1, 1000)).unwrap().is_none());
        assert_eq!(temps(&repo).len(), 1, "the open pack has a temporary file");
        drop(packer);
        assert!(temps(&repo).is_empty());

        let mut packer = Packer::new(&repo);
        packer.add_blob(&blob(2, 1000)).unwrap();
        let sealed = packer.flush().unwrap().unwrap();
        assert_eq!(temps(&repo).len(), 1);
        drop(sealed);
        assert!(temps(&repo).is_empty());
        assert!(repo.list_packs().unwrap().is_empty());
    }
}
