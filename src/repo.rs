//! A repository on disk: opening, creating, locking, and keeping the index in step
//! with the packs.
//!
//! ```text
//! REPO/
//!   config             format version, id, chunker and compression parameters
//!   README.md          how to read the format without cbsnap
//!   packs/ab/abcd…     immutable pack files, named by the BLAKE3 of their bytes
//!   snapshots/ef01…    one file per snapshot, named by the BLAKE3 of its bytes
//!   index/             RocksDB: blob id → pack location (a cache; rebuilt from packs)
//!   locks/             lock files of running cbsnap processes
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;

use crate::config::RepoConfig;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::Id;
use crate::index::{Index, Location};
use crate::lock::{self, Lock, LockKind};
use crate::pack::{self, PackReadError};
use crate::warn::{self, Warning};

/// Written into every new repository as `README.md`, so the data can be read back
/// without cbsnap.
pub const FORMAT_README: &str = concat!(
    "This directory is a cbsnap repository. Do not edit it by hand; copy it with\n",
    "`rsync` as cbsnap's README describes. Its format follows.\n\n",
    include_str!("../docs/FORMAT.md")
);

/// How a command opens the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only (restore, ls, dump, snapshots): shared lock; the index may be opened
    /// read-only when another process is writing it.
    Read,
    /// Adds packs and snapshots: shared lock, index read-write.
    Append,
    /// Removes data (prune): exclusive lock.
    Exclusive,
}

/// What [`Repository::sync_index`] found.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub added_packs: usize,
    pub removed_packs: usize,
    /// Packs whose trailer could not be read: `(pack file, why)`.
    pub unreadable: Vec<(PathBuf, PackReadError)>,
}

pub struct Repository {
    pub root: PathBuf,
    pub config: RepoConfig,
    index: Index,
    index_writable: bool,
    open_packs: Mutex<HashMap<Id, Arc<File>>>,
    _lock: Option<Lock>,
}

impl Repository {
    pub fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Whether this handle still holds its repository lock. Called right before each
    /// commit (a snapshot file written, snapshot files or packs deleted), so that a
    /// process whose lock lapsed (a host asleep past the stale time, a lock another
    /// host removed) stops before it commits (issue 7, case 12).
    ///
    /// Errors: [`Error::LockLost`].
    pub fn check_lock(&self) -> Result<()> {
        match &self._lock {
            Some(l) => l.check().map_err(Error::LockLost),
            None => Ok(()),
        }
    }

    /// Create a new repository at `root`, which must not exist or be an empty directory.
    pub fn init(root: &Path) -> Result<RepoConfig> {
        if root.exists() {
            let mut rd = fs::read_dir(root).ctx(|| format!("read {}", root.display()))?;
            if rd.next().is_some() {
                return Err(if root.join("config").exists() {
                    Error::AlreadyExists(root.to_path_buf())
                } else {
                    Error::NotEmpty(root.to_path_buf())
                });
            }
        }
        fsutil::create_private_dir_all(root).ctx(|| format!("create {}", root.display()))?;
        for d in ["packs", "snapshots", "locks"] {
            let p = root.join(d);
            fsutil::create_private_dir_all(&p).ctx(|| format!("create {}", p.display()))?;
        }
        let cfg = RepoConfig::new();
        let readme = root.join("README.md");
        fsutil::write_atomic(&readme, FORMAT_README.as_bytes())
            .ctx(|| format!("write {}", readme.display()))?;
        // The config is written last: its presence is what makes this a repository.
        let path = root.join("config");
        fsutil::write_atomic(&path, &cfg.encode()).ctx(|| format!("write {}", path.display()))?;
        if let Some(parent) = root.parent() {
            let _ = fsutil::fsync_dir(parent);
        }
        Ok(cfg)
    }

    /// Read the config of the repository at `root`, without locking or opening the index.
    /// Errors: [`Error::NotARepository`] when `root` has no valid config.
    pub fn read_config(root: &Path) -> Result<RepoConfig> {
        let path = root.join("config");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let detail = if root.exists() {
                    "it has no `config` file".to_string()
                } else {
                    "the directory does not exist".to_string()
                };
                return Err(Error::NotARepository {
                    path: root.to_path_buf(),
                    detail,
                    occupied: occupied(root),
                });
            }
            Err(e) => return Err(Error::io_path("read", &path, e)),
        };
        RepoConfig::decode(&bytes).map_err(|reason| Error::Config {
            path: path.clone(),
            reason,
        })
    }

    /// Open an existing repository, take the lock `access` needs and bring the index up
    /// to date with the packs.
    pub fn open(root: &Path, access: Access) -> Result<Repository> {
        let config = Self::read_config(root)?;
        for d in ["packs", "snapshots", "locks"] {
            let p = root.join(d);
            if !p.is_dir() {
                if access == Access::Read {
                    return Err(Error::NotARepository {
                        path: root.to_path_buf(),
                        detail: format!("its `{d}` directory is missing"),
                        occupied: true,
                    });
                }
                fsutil::create_private_dir_all(&p).ctx(|| format!("create {}", p.display()))?;
            }
        }
        let kind = match access {
            Access::Exclusive => LockKind::Exclusive,
            _ => LockKind::Shared,
        };
        let locks_dir = root.join("locks");
        let lock = lock::acquire(&locks_dir, kind, lock_wait())?;
        let (index, index_writable) = open_index(&root.join("index"), access)?;
        let repo = Repository {
            root: root.to_path_buf(),
            config,
            index,
            index_writable,
            open_packs: Mutex::new(HashMap::new()),
            _lock: Some(lock),
        };
        if repo.index_writable {
            fsutil::remove_stale_temps(&repo.packs_dir());
            fsutil::remove_stale_temps(&repo.snapshots_dir());
            repo.sync_index()?;
        }
        Ok(repo)
    }

    /// Every pack file present, with its size. Temporary files are skipped.
    pub fn list_packs(&self) -> Result<HashMap<Id, u64>> {
        let dir = self.packs_dir();
        let mut out = HashMap::new();
        for sub in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let sub = sub.ctx(|| format!("read {}", dir.display()))?;
            if !sub.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            for f in fs::read_dir(sub.path()).ctx(|| format!("read {}", sub.path().display()))? {
                let f = f.ctx(|| format!("read {}", sub.path().display()))?;
                let name = f.file_name();
                let Some(id) = name.to_str().and_then(|s| s.parse::<Id>().ok()) else {
                    continue;
                };
                let len = f
                    .metadata()
                    .ctx(|| format!("stat {}", f.path().display()))?
                    .len();
                out.insert(id, len);
            }
        }
        Ok(out)
    }

    pub fn pack_path(&self, id: &Id) -> PathBuf {
        pack::pack_path(&self.packs_dir(), id)
    }

    /// Bring the index in step with the packs on disk: index packs it lacks (reading
    /// only their trailers) and forget packs that are gone. Cheap when nothing changed:
    /// one directory listing and one index scan of pack keys.
    pub fn sync_index(&self) -> Result<SyncReport> {
        let on_disk = self.list_packs()?;
        let indexed = self.index.packs()?;
        let mut report = SyncReport::default();
        let gone: HashSet<Id> = indexed
            .iter()
            .filter(|(id, size)| on_disk.get(id) != Some(size))
            .map(|(id, _)| *id)
            .collect();
        if !gone.is_empty() {
            if !self.index_writable {
                return Ok(report);
            }
            self.index.remove_packs(&gone)?;
            report.removed_packs = gone.len();
        }
        let missing: Vec<(Id, u64)> = on_disk
            .iter()
            .filter(|(id, size)| indexed.get(id) != Some(size))
            .map(|(id, s)| (*id, *s))
            .collect();
        if !missing.is_empty() && self.index_writable {
            let read: Vec<_> = missing
                .par_iter()
                .map(|(id, size)| {
                    let path = self.pack_path(id);
                    let r = pack::PackFile::open(&path, *size).map(pack::PackFile::into_entries);
                    (*id, *size, r)
                })
                .collect();
            for (id, size, r) in read {
                match r {
                    Ok(entries) => {
                        self.index.add_pack(&id, size, &entries)?;
                        report.added_packs += 1;
                    }
                    Err(e) => report.unreadable.push((self.pack_path(&id), e)),
                }
            }
        }
        if self.index.version()? != Some(crate::index::INDEX_VERSION) && self.index_writable {
            self.index.set_version()?;
        }
        for (p, e) in &report.unreadable {
            warn::emit(Warning::PackUnreadable {
                path: p.clone(),
                cause: e.to_string(),
            });
        }
        Ok(report)
    }

    /// Delete the index and recreate it from the pack trailers.
    pub fn rebuild_index(root: &Path) -> Result<SyncReport> {
        Self::read_config(root)?;
        let locks = root.join("locks");
        let _lock = lock::acquire(&locks, LockKind::Exclusive, lock_wait())?;
        let dir = root.join("index");
        if dir.exists() {
            fs::remove_dir_all(&dir).ctx(|| format!("remove {}", dir.display()))?;
        }
        let (index, _) = open_index(&dir, Access::Append)?;
        let repo = Repository {
            root: root.to_path_buf(),
            config: Self::read_config(root)?,
            index,
            index_writable: true,
            open_packs: Mutex::new(HashMap::new()),
            _lock: None,
        };
        let r = repo.sync_index()?;
        repo.index.flush()?;
        Ok(r)
    }

    pub fn locate(&self, id: &Id) -> Result<Location> {
        self.index.get(id)?.ok_or_else(|| {
            Error::Corrupt(format!(
                "blob {id} is referenced but no pack holds it (a pack is missing, or the index is stale: try `cbsnap index rebuild`)"
            ))
        })
    }

    fn pack_file(&self, id: &Id) -> Result<Arc<File>> {
        let mut cache = self.open_packs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.get(id) {
            return Ok(f.clone());
        }
        let path = self.pack_path(id);
        let f = Arc::new(File::open(&path).map_err(|e| {
            Error::Corrupt(format!("pack {} cannot be opened: {e}", path.display()))
        })?);
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(*id, f.clone());
        Ok(f)
    }

    /// Read a blob, decompress it and verify it against its id.
    pub fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        self.read_located(&loc)
    }

    pub fn read_located(&self, loc: &Location) -> Result<Vec<u8>> {
        let f = self.pack_file(&loc.pack)?;
        let stored =
            pack::read_stored(&f, loc.entry.offset, loc.entry.stored_len).map_err(|e| {
                Error::Corrupt(format!(
                    "pack {} cannot be read at offset {}: {e}",
                    loc.pack, loc.entry.offset
                ))
            })?;
        pack::decode_blob(&loc.entry, &stored).map_err(|e| {
            Error::Corrupt(format!(
                "blob {} in pack {} is damaged: {e}",
                loc.entry.id, loc.pack
            ))
        })
    }
}

/// How long to wait for a conflicting lock: `CBSNAP_LOCK_WAIT` seconds, default 120.
pub fn lock_wait() -> Duration {
    std::env::var("CBSNAP_LOCK_WAIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120))
}

/// Open the RocksDB index. Another cbsnap process may hold RocksDB's own lock: readers
/// then open it read-only, writers wait. An index that cannot be opened for any other
/// reason (a half-copied rsync, a damaged file), or whose pack records cannot be read,
/// is discarded and rebuilt from the packs. Busy and damaged are told apart by the
/// error's kind and by asking the kernel who holds the lock, never by the text of
/// the message ("block checksum mismatch" contains "lock").
fn open_index(dir: &Path, access: Access) -> Result<(Index, bool)> {
    let deadline = std::time::Instant::now() + lock_wait();
    let mut announced = false;
    let mut retried = false;
    loop {
        let e = match Index::open(dir) {
            Ok(i) => match i.packs() {
                Ok(_) => return Ok((i, true)),
                Err(e) => e.to_string(),
            },
            Err(e) => {
                let busy = matches!(
                    e.kind(),
                    rocksdb::ErrorKind::IOError | rocksdb::ErrorKind::Busy
                ) && Index::locked_by_other_process(dir);
                if busy {
                    if access == Access::Read {
                        if let Ok(i) = Index::open_read_only(dir) {
                            return Ok((i, false));
                        }
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(Error::Locked(format!(
                            "the index {} is in use by another cbsnap process ({}); wait for it to finish",
                            dir.display(),
                            e.into_string()
                        )));
                    }
                    if !announced {
                        warn::emit(Warning::IndexWait);
                        announced = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                if !retried {
                    // The holder may have let go between the failed open and the
                    // question to the kernel: look once more before calling it damage.
                    retried = true;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                e.into_string()
            }
        };
        warn::emit(Warning::IndexRebuilt {
            dir: dir.to_path_buf(),
            cause: e,
        });
        fs::remove_dir_all(dir).ctx(|| format!("remove {}", dir.display()))?;
        let i = Index::open(dir).map_err(|e| Error::Index(e.into_string()))?;
        return Ok((i, true));
    }
}

/// Whether `dir` is a directory with at least one entry (where `init` refuses).
fn occupied(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some())
}
