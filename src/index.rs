//! The chunk index: blob id → (pack, offset, lengths), kept in RocksDB under `index/`.
//!
//! The index is a cache, never the truth: every fact in it can be recomputed from the
//! pack trailers. It records which packs it has indexed (`p` keys), so a repository
//! can notice by itself when the index is missing, damaged, or behind the packs (a copy
//! made with rsync, a crash before the index write reached disk) and bring it up to
//! date by reading only the trailers it lacks. See [`crate::repo::Repository::sync_index`].
//!
//! Keys (one RocksDB column family, the default):
//! - `"v"` → u32 LE index layout version ([`INDEX_VERSION`]).
//! - `'c' || blob id[32]` → pack id[32] || offset u64 || stored_len u32 || raw_len u32 || kind u8 || compression u8
//! - `'p' || pack id[32]` → pack file size u64 || blob count u32
//! - `'s' || snapshot id[32]` → empty: every blob the snapshot references was in the
//!   index when it was committed (layout 2; see [`Index::snapshot_indexed`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobEntry;

/// The index layout this build writes and reads. 2 added the `'s'` keys, which a
/// build of layout 1 keeps while it forgets vanished packs: builds from `4ea085b`
/// refuse a layout 2 index ([`Error::IndexTooNew`]); older ones write their version
/// over it, and [`crate::repo::Repository::sync_index`] drops every `'s'` key of an
/// index found at another version.
pub const INDEX_VERSION: u32 = 2;

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: Id,
    pub entry: BlobEntry,
}

pub struct Index {
    db: DB,
    /// Blob ids checked so far by [`Index::contains`] and [`Index::contains_all`]
    /// (dedup and reuse checks, not the reads of [`Index::get`]): what an unchanged
    /// snapshot should not need.
    checks: std::sync::atomic::AtomicU64,
    /// The first error of the index's own data met since it was opened
    /// ([`Index::damage`]).
    damage: std::sync::Mutex<Option<String>>,
    /// A secondary instance's own directory ([`Index::open_secondary`]), removed
    /// once `db` (declared first, dropped first) is closed.
    _secondary: Option<tempfile::TempDir>,
}

/// A key and its value, as RocksDB's iterator yields them.
type KeyValue = (Box<[u8]>, Box<[u8]>);

/// The key of `id` under `prefix` (`b'c'`, `b'p'` or `b's'`, see the module docs).
fn key(prefix: u8, id: &Id) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.0);
    k
}

fn chunk_key(id: &Id) -> [u8; 33] {
    key(b'c', id)
}

fn pack_key(id: &Id) -> [u8; 33] {
    key(b'p', id)
}

fn snapshot_key(id: &Id) -> [u8; 33] {
    key(b's', id)
}

fn encode_location(pack: &Id, e: &BlobEntry) -> Vec<u8> {
    let mut w = Writer::new();
    w.id(pack);
    e.encode_location(&mut w);
    w.buf
}

fn decode_location(id: Id, v: &[u8]) -> Result<Location> {
    let mut r = Reader::new(v, "index entry");
    let bad = |e: crate::codec::DecodeError| Error::Index(e.to_string());
    let pack = r.id().map_err(bad)?;
    let entry = BlobEntry::decode_location(id, &mut r).map_err(bad)?;
    Ok(Location { pack, entry })
}

/// A RocksDB error as ours. RocksDB gives a message, not an errno; a full disk or
/// quota (`IOError` with the system's own text, naming the index file) becomes an
/// [`Error::Io`] of that errno, so the operator is told to free space, not to rebuild
/// an index that is not damaged.
fn db_err(e: rocksdb::Error) -> Error {
    let msg = e.into_string();
    match errno_of(&msg) {
        Some(code) if code == libc::ENOSPC || code == libc::EDQUOT => Error::io(
            format!("write the index ({msg})"),
            std::io::Error::from_raw_os_error(code),
        ),
        _ => Error::Index(msg),
    }
}

/// The errno a RocksDB I/O error's message names, by the system's own text
/// (`strerror`, which RocksDB appends after the file's path): a full disk or quota, or
/// no permission to open or write the index's files, none of which is damage.
pub fn errno_of(msg: &str) -> Option<i32> {
    [
        (libc::ENOSPC, "No space left on device"),
        (libc::EDQUOT, "Disk quota exceeded"),
        (libc::EACCES, "Permission denied"),
        (libc::EPERM, "Operation not permitted"),
        (libc::EROFS, "Read-only file system"),
    ]
    .into_iter()
    .find(|(_, text)| msg.contains(text))
    .map(|(code, _)| code)
}

/// Bytes of RocksDB block cache. Data, index and filter blocks all live in it, so
/// the index's memory stays at this size whatever the number of chunks (the 64 MB
/// RSS budget covers the whole process). 8 MiB holds the filter and index partitions
/// a snapshot into 3.4 million chunks needs: against 16 MiB it took as long (all
/// lookups missing, or all hitting) at 6 MiB less peak RSS (docs/BENCHMARKS.md,
/// "Issue 9, fifth pass").
const BLOCK_CACHE: usize = 8 << 20;

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    // The index is read with point lookups and written in pack-sized batches; keep its
    // memory small and bounded (the 64 MB RSS budget covers the whole process).
    let mut t = BlockBasedOptions::default();
    // A snapshot of new data asks for ids the index does not have: a full bloom
    // filter (10 bits per key, ~1% false positives) answers most of those without
    // reading a data block, so lookups stay fast as the index grows.
    t.set_bloom_filter(10.0, false);
    // Index and filter blocks count against the block cache instead of living
    // outside it for every open table; level-0 ones stay pinned (hot, few).
    t.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE));
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Partitioned: a table's filter and index are cut into 4 KiB partitions under a
    // small top level, which stays pinned. A lookup then reads one partition of each,
    // not the table's whole filter: with whole-table filters, an index of millions of
    // chunks had more filter bytes than the cache holds, and a lookup re-read and
    // re-checksummed whole filters (RocksDB's "partitioned index/filters" for large
    // databases under a small cache; docs/BENCHMARKS.md, "Index growth: partitioned
    // filters").
    t.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    t.set_partition_filters(true);
    t.set_metadata_block_size(4096);
    t.set_pin_top_level_index_and_filter(true);
    o.set_block_based_table_factory(&t);
    o.set_max_open_files(256);
    // Two memtables of 4 MiB at most (one filling while one is written out), in arena
    // blocks of an eighth of that: 512 KiB, above the process's malloc map threshold
    // (`src/main.rs`), so a flushed memtable's memory goes back to the system. 8 MiB
    // memtables cost a snapshot of 216,000 new blobs about 2 MiB more peak RSS
    // (docs/BENCHMARKS.md, "Memory (Q)": L with a 128 KiB threshold against N).
    o.set_write_buffer_size(4 << 20);
    o.set_max_write_buffer_number(2);
    // RocksDB's own info log (`index/LOG`) gets only fatal messages. It lives on the
    // repository's disk; once a write to it failed for a full disk, the next message
    // (the full disk's own report from the index write that failed) trips an
    // assertion in Debian's librocksdb 7.8 (`WritableFileWriter` after an error) and
    // aborts the process (exit 134) instead of returning the error. Our errors carry
    // what an operator needs; its routine messages were never read.
    o.set_log_level(rocksdb::LogLevel::Fatal);
    o.set_keep_log_file_num(2);
    o.set_max_log_file_size(1 << 20);
    // Each file RocksDB writes (the log, a table being flushed or compacted, the
    // MANIFEST) buffers up to this much before a write; the default, 1 MiB each, held
    // ~3 MiB at the peak of a snapshot into millions of chunks (heaptrack).
    o.set_writable_file_max_buffer_size(256 << 10);
    o
}

impl Index {
    /// Open (or create) the index read-write. Fails with a RocksDB error if another
    /// process holds it or it is damaged; the repository decides what to do.
    pub fn open(path: &Path) -> std::result::Result<Index, rocksdb::Error> {
        let db = DB::open(&options(), path)?;
        Ok(Index {
            db,
            checks: Default::default(),
            damage: Default::default(),
            _secondary: None,
        })
    }

    /// Whether another process holds RocksDB's lock on the index in `path` (a POSIX
    /// record lock on `LOCK`, which RocksDB's `PosixEnv::LockFile` takes with
    /// `fcntl(F_SETLK)`). Asked of the kernel, not read from an error message: an
    /// index that fails to open while nobody holds its lock is damaged, not busy
    /// (issue 7, case 11).
    pub fn locked_by_other_process(path: &Path) -> bool {
        use std::os::unix::io::AsRawFd;
        let Ok(f) = std::fs::File::open(path.join("LOCK")) else {
            return false;
        };
        // SAFETY: `flock` is plain data; F_GETLK only reads the lock table and fills
        // in the struct. Our own process holds no lock on this file (its open
        // failed), so closing `f` releases nothing.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
        r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
    }

    /// Open without taking RocksDB's lock (another process may be writing).
    pub fn open_read_only(path: &Path) -> std::result::Result<Index, rocksdb::Error> {
        let db = DB::open_for_read_only(&options(), path, false)?;
        Ok(Index {
            db,
            checks: Default::default(),
            damage: Default::default(),
            _secondary: None,
        })
    }

    /// Open as a RocksDB secondary instance, which takes no lock: a writer (another
    /// cbsnap's snapshot) may hold the index and change it meanwhile, and this one
    /// reads it as it was when opened, also after the writer's compactions delete the
    /// table files it read, since a secondary keeps every table file open
    /// (`max_open_files = -1`, which RocksDB requires of one; its wiki, "Read-only and
    /// Secondary instances"). A read-only instance opens table files as it needs them,
    /// and one a compaction deleted meanwhile is then missing. `scratch` holds the
    /// instance's own files (its info log) and is removed when the index is dropped.
    pub fn open_secondary(
        path: &Path,
        scratch: tempfile::TempDir,
    ) -> std::result::Result<Index, rocksdb::Error> {
        let mut o = options();
        o.create_if_missing(false);
        o.set_max_open_files(-1);
        let db = DB::open_as_secondary(&o, path, scratch.path())?;
        Ok(Index {
            db,
            checks: Default::default(),
            damage: Default::default(),
            _secondary: Some(scratch),
        })
    }

    /// The layout version (`"v"`), `None` while none is written.
    ///
    /// Errors: [`Error::Index`] for a value that is not 4 bytes (damage).
    pub fn version(&self) -> Result<Option<u32>> {
        match self.db.get(b"v").map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => <[u8; 4]>::try_from(v.as_slice())
                .map(|b| Some(u32::from_le_bytes(b)))
                .map_err(|_| {
                    Error::Index(format!(
                        "its layout version is {} bytes long, not 4",
                        v.len()
                    ))
                }),
        }
    }

    /// Refuse an index of a layout newer than [`INDEX_VERSION`]: written by a newer
    /// cbsnap, its keys may mean what this build cannot tell, and writing our version
    /// over it would hide that from the newer one. `dir` is its directory, for the
    /// message.
    ///
    /// Errors: [`Error::IndexTooNew`], and those of [`Index::version`].
    pub fn check_version(&self, dir: &Path) -> Result<()> {
        match self.version()? {
            Some(found) if found > INDEX_VERSION => Err(Error::IndexTooNew {
                dir: dir.to_path_buf(),
                found,
                supported: INDEX_VERSION,
            }),
            _ => Ok(()),
        }
    }

    pub fn set_version(&self) -> Result<()> {
        self.db
            .put(b"v", INDEX_VERSION.to_le_bytes())
            .map_err(|e| self.db_err(e))
    }

    /// [`db_err`], remembering the first error that is not the disk's (a full disk,
    /// a missing permission) but the index's own: a block that fails its checksum,
    /// a file RocksDB cannot read.
    fn db_err(&self, e: rocksdb::Error) -> Error {
        let e = db_err(e);
        if let Error::Index(m) = &e {
            let mut d = self.damage.lock().unwrap_or_else(|p| p.into_inner());
            d.get_or_insert_with(|| m.clone());
        }
        e
    }

    /// The first error of the index's own data (RocksDB's words) that a read or write
    /// of this handle met, if any: the index is damaged, and what it answered may be
    /// untrue. It is a cache, so a writer rebuilds it from the pack trailers
    /// ([`crate::repo::Repository::rebuild_damaged_index`]).
    pub fn damage(&self) -> Option<String> {
        self.damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Blob ids checked by [`Index::contains`] and [`Index::contains_all`] since the
    /// index was opened.
    pub fn checks(&self) -> u64 {
        self.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_checks(&self, n: usize) {
        self.checks
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self, id: &Id) -> Result<Option<Location>> {
        match self
            .db
            .get_pinned(chunk_key(id))
            .map_err(|e| self.db_err(e))?
        {
            Some(v) => Ok(Some(decode_location(*id, &v)?)),
            None => Ok(None),
        }
    }

    pub fn contains(&self, id: &Id) -> Result<bool> {
        self.count_checks(1);
        Ok(self
            .db
            .get_pinned(chunk_key(id))
            .map_err(|e| self.db_err(e))?
            .is_some())
    }

    /// Whether the index has every one of `ids`: one RocksDB multi-get (keys
    /// sorted, so a block holding several of them is found once) instead of a lookup
    /// per id.
    pub fn contains_all(&self, ids: &[Id]) -> Result<bool> {
        if ids.is_empty() {
            return Ok(true);
        }
        self.count_checks(ids.len());
        let mut keys: Vec<[u8; 33]> = ids.iter().map(chunk_key).collect();
        keys.sort_unstable();
        for v in self.db.multi_get(&keys) {
            if v.map_err(|e| self.db_err(e))?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Record a durable pack and all its blobs in one atomic batch. The write is not
    /// fsynced: a crash may lose it, which [`crate::repo::Repository::sync_index`]
    /// repairs from the pack trailers.
    pub fn add_pack(&self, pack: &Id, size: u64, entries: &[BlobEntry]) -> Result<()> {
        let mut b = WriteBatch::default();
        for e in entries {
            b.put(chunk_key(&e.id), encode_location(pack, e));
        }
        let mut v = size.to_le_bytes().to_vec();
        v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        b.put(pack_key(pack), v);
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(b, &wo).map_err(|e| self.db_err(e))
    }

    /// The size in bytes of pack `pack`, if the index has recorded it.
    ///
    /// Errors: [`Error::Index`] for a damaged record.
    pub fn pack_size(&self, pack: &Id) -> Result<Option<u64>> {
        let Some(v) = self.db.get(pack_key(pack)).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        v.get(..8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(|b| Some(u64::from_le_bytes(b)))
            .ok_or_else(|| Error::Index("bad pack value".into()))
    }

    /// The packs the index has recorded, with their sizes.
    pub fn packs(&self) -> Result<HashMap<Id, u64>> {
        let mut out = HashMap::new();
        for item in self.scan(b'p') {
            let (k, v) = item?;
            let id = Id::from_slice(&k[1..]).ok_or_else(|| Error::Index("bad pack key".into()))?;
            let size = v
                .get(..8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| Error::Index("bad pack value".into()))?;
            out.insert(id, size);
        }
        Ok(out)
    }

    /// Forget packs: their `p` keys and every blob entry that points into them. This
    /// scans all blob entries (rare: only after packs vanished, e.g. a mirror updated
    /// with `rsync --delete` after a prune). Packs that vanished rather than being
    /// pruned may have held referenced blobs: call [`Index::forget_indexed_snapshots`]
    /// first.
    pub fn remove_packs(&self, gone: &HashSet<Id>) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        for item in self.chunks() {
            let loc = item?;
            if gone.contains(&loc.pack) {
                b.delete(chunk_key(&loc.entry.id));
            }
            if b.len() > 100_000 {
                self.db
                    .write(std::mem::take(&mut b))
                    .map_err(|e| self.db_err(e))?;
            }
        }
        for p in gone {
            b.delete(pack_key(p));
        }
        self.db.write(b).map_err(|e| self.db_err(e))
    }

    /// Forget one pack whose trailer is known: delete the entries of its blobs that
    /// still point into it (a blob copied elsewhere keeps its new entry), and its `p`
    /// key. Unlike [`Index::remove_packs`] this reads only that pack's keys; prune
    /// retires packs this way.
    pub fn remove_pack_entries(&self, pack: &Id, entries: &[BlobEntry]) -> Result<()> {
        let mut b = WriteBatch::default();
        for e in entries {
            let k = chunk_key(&e.id);
            if let Some(v) = self.db.get_pinned(k).map_err(|e| self.db_err(e))? {
                if v.get(..32) == Some(&pack.0[..]) {
                    b.delete(k);
                }
            }
        }
        b.delete(pack_key(pack));
        self.db.write(b).map_err(|e| self.db_err(e))
    }

    /// Record that every blob snapshot `id` references is in the index (called right
    /// after the snapshot is committed). Not fsynced: a lost record only costs the
    /// next snapshot the lookups it saves.
    pub fn mark_snapshot_indexed(&self, id: &Id) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db
            .put_opt(snapshot_key(id), [], &wo)
            .map_err(|e| self.db_err(e))
    }

    /// Whether every blob snapshot `id` references is still in the index: it was when
    /// the snapshot was committed ([`Index::mark_snapshot_indexed`]), and since then
    /// the index has forgotten only blobs no snapshot referenced (prune, which keeps
    /// this snapshot's while it exists). Forgetting vanished packs clears every such
    /// record ([`Index::forget_indexed_snapshots`]). An unchanged file of such a
    /// parent is reused without looking its blobs up: what makes an unchanged
    /// snapshot a stat walk (issue 9).
    pub fn snapshot_indexed(&self, id: &Id) -> Result<bool> {
        Ok(self
            .db
            .get_pinned(snapshot_key(id))
            .map_err(|e| self.db_err(e))?
            .is_some())
    }

    /// Drop every [`Index::snapshot_indexed`] record: packs vanished from storage, so
    /// any snapshot may now reference blobs the index lacks.
    pub fn forget_indexed_snapshots(&self) -> Result<()> {
        self.delete_snapshot_records(|_| true)
    }

    /// Drop the records of snapshots that no longer exist (after prune); `keep` are
    /// the snapshots that do.
    pub fn retain_indexed_snapshots(&self, keep: &HashSet<Id>) -> Result<()> {
        self.delete_snapshot_records(|id| !keep.contains(id))
    }

    fn delete_snapshot_records(&self, drop: impl Fn(&Id) -> bool) -> Result<()> {
        let mut b = WriteBatch::default();
        for item in self.scan(b's') {
            let (k, _) = item?;
            match Id::from_slice(&k[1..]) {
                Some(id) if !drop(&id) => {}
                _ => b.delete(&k),
            }
        }
        self.db.write(b).map_err(|e| self.db_err(e))
    }

    /// Stream every blob entry in id order, without loading the index into memory.
    pub fn chunks(&self) -> impl Iterator<Item = Result<Location>> + '_ {
        self.scan(b'c').map(|item| {
            let (k, v) = item?;
            match Id::from_slice(&k[1..]) {
                Some(id) => decode_location(id, &v),
                None => Err(Error::Index("bad blob key".into())),
            }
        })
    }

    /// Every key under `prefix` with its value, in key order.
    fn scan(&self, prefix: u8) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        self.db
            .iterator(IteratorMode::From(&[prefix], Direction::Forward))
            .map(move |item| item.map_err(|e| self.db_err(e)))
            .take_while(move |item| match item {
                Ok((k, _)) => k.first() == Some(&prefix),
                Err(_) => true,
            })
    }

    /// Make everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secondary instance reads what it saw at open after the writer flushed,
    /// compacted and deleted the table files it had: a mount stays readable while
    /// the night's snapshots write to the index. The writer's new keys are not seen.
    #[test]
    fn a_secondary_reads_on_while_the_writer_compacts_its_tables_away() {
        let d = tempfile::tempdir().unwrap();
        let writer = Index::open(d.path()).unwrap();
        let key = |i: u32| format!("k{i:08}").into_bytes();
        // Every round rewrites the same keys, so that compaction merges the tables.
        let put_all = |value: u8| {
            for i in 0..1000 {
                writer.db.put(key(i), [value; 64]).unwrap();
            }
            writer.db.flush().unwrap();
        };
        for round in 0..4 {
            put_all(round);
        }
        let tables = |dir: &Path| -> std::collections::BTreeSet<String> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sst"))
                .collect()
        };
        let before = tables(d.path());
        let reader = Index::open_secondary(d.path(), tempfile::tempdir().unwrap()).unwrap();
        put_all(4);
        writer.db.put(key(5000), [9u8; 64]).unwrap();
        writer.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        let after = tables(d.path());
        assert!(
            before.is_disjoint(&after),
            "compaction replaced every table: {before:?} {after:?}"
        );
        for i in 0..1000 {
            assert_eq!(
                reader.db.get(key(i)).unwrap().as_deref(),
                Some(&[3u8; 64][..]),
                "key {i}"
            );
        }
        assert_eq!(
            reader.db.get(key(5000)).unwrap(),
            None,
            "written after it opened"
        );
    }

    #[test]
    fn a_newer_layout_version_is_refused_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let i = Index::open(d.path()).unwrap();
        assert_eq!(i.version().unwrap(), None);
        i.check_version(d.path()).unwrap();
        i.set_version().unwrap();
        i.check_version(d.path()).unwrap();
        i.db.put(b"v", (INDEX_VERSION + 1).to_le_bytes()).unwrap();
        let e = i.check_version(d.path()).unwrap_err();
        assert!(
            matches!(e, Error::IndexTooNew { found, supported, .. }
                if found == INDEX_VERSION + 1 && supported == INDEX_VERSION),
            "{e}"
        );
        assert!(e.to_string().contains("Upgrade cbsnap"), "{e}");
        assert_eq!(i.version().unwrap(), Some(INDEX_VERSION + 1));
    }

    #[test]
    fn a_malformed_layout_version_is_damage() {
        let d = tempfile::tempdir().unwrap();
        let i = Index::open(d.path()).unwrap();
        i.db.put(b"v", [1u8, 0]).unwrap();
        assert!(matches!(i.version(), Err(Error::Index(_))));
    }

    /// Records of wholly indexed snapshots sit beside the blob and pack keys without
    /// showing in their scans, survive a prune for the snapshots that remain, and are
    /// all dropped when packs vanish.
    #[test]
    fn indexed_snapshot_records_are_kept_and_forgotten_as_the_index_changes() {
        let d = tempfile::tempdir().unwrap();
        let i = Index::open(d.path()).unwrap();
        let (a, b, c) = (Id::hash(b"a"), Id::hash(b"b"), Id::hash(b"c"));
        let pack = Id::hash(b"pack");
        let blob = BlobEntry {
            id: Id::hash(b"blob"),
            offset: 0,
            stored_len: 10,
            raw_len: 10,
            kind: crate::pack::BlobKind::Data,
            compression: crate::pack::Compression::None,
        };
        i.add_pack(&pack, 100, std::slice::from_ref(&blob)).unwrap();
        for s in [a, b, c] {
            assert!(!i.snapshot_indexed(&s).unwrap());
            i.mark_snapshot_indexed(&s).unwrap();
            assert!(i.snapshot_indexed(&s).unwrap());
        }
        assert_eq!(i.chunks().count(), 1);
        assert_eq!(i.packs().unwrap().len(), 1);

        i.retain_indexed_snapshots(&[a, c].into_iter().collect())
            .unwrap();
        assert!(i.snapshot_indexed(&a).unwrap());
        assert!(!i.snapshot_indexed(&b).unwrap());
        assert!(i.snapshot_indexed(&c).unwrap());

        i.forget_indexed_snapshots().unwrap();
        assert!(!i.snapshot_indexed(&a).unwrap());
        assert!(!i.snapshot_indexed(&c).unwrap());
        assert_eq!(i.chunks().count(), 1);
    }
}
