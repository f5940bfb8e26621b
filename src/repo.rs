//! A repository: opening, creating, locking, and keeping the index in step with the
//! packs. Every file is read and written through its [`Storage`] (issue 10): a path is
//! one backend, an object store or SFTP host another.
//!
//! ```text
//! REPO/
//!   config             format version, id, chunker and compression parameters
//!   README.md          how to read the format without cbsnap
//!   packs/ab/abcd…     immutable pack files, named by the BLAKE3 of their bytes
//!   snapshots/ef01…    one file per snapshot, named by the BLAKE3 of its bytes
//!   index/             RocksDB: blob id → pack location (a cache; rebuilt from packs)
//!   locks/             lock files of running cbsnap processes
//!   keys/              encrypted repositories only: the master key, wrapped by each passphrase
//! ```
//!
//! An encrypted repository is opened with a passphrase ([`Repository::open_with`]);
//! the handle then holds the unwrapped key in its [`Crypt`], which every reader and
//! writer of blobs, trailers and snapshot files takes from it.
//!
//! A path repository ([`Storage::local_root`]) keeps its index in `index/` and its
//! fast paths: packs read with `pread`/mmap, a sealed pack renamed into place. A
//! remote one keeps the index in the cache directory ([`cache_dir`]), writes each
//! sealed pack to a local temporary file and uploads it (several at once,
//! [`Repository::set_transfers`]) before indexing it, and reads blobs with ranged
//! reads. The cache holds nothing that is not also in the repository.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;

use crate::config::{Encryption, RepoConfig};
use crate::crypto::keys::{self, KdfParams};
use crate::crypto::passphrase::{FromEnv, PassphraseSource};
use crate::crypto::{Crypt, MasterKey};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::Id;
use crate::index::{Index, Location};
use crate::lock::{self, Lock, LockKind};
use crate::pack::{self, BlobEntry, PackFile, PackReadError, SealedPack};
use crate::storage::{self, Local, Storage, StorageError};
use crate::warn::{self, Warning};

/// Written into every new repository as `README.md`, so the data can be read back
/// without cbsnap.
pub const FORMAT_README: &str = concat!(
    "This directory is a cbsnap repository. Do not edit it by hand; copy it with\n",
    "`rsync` as cbsnap's README describes. Its format follows.\n\n",
    include_str!("../docs/FORMAT.md")
);

/// Uploads of sealed packs in flight at once for a remote repository, unless set
/// otherwise ([`Repository::set_transfers`]).
pub const DEFAULT_TRANSFERS: usize = 4;

/// The local cache directory of the remote repository `id`:
/// `$XDG_CACHE_HOME/cbsnap/<id>` (else `~/.cache/cbsnap/<id>`). It holds the index
/// and temporary packs; deleting it loses nothing.
///
/// Errors: [`Error::Usage`] when neither `XDG_CACHE_HOME` nor `HOME` is set.
pub fn cache_dir(id: &Id) -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".cache"),
            None => {
                return Err(Error::Usage(
                    "a remote repository needs a cache directory: set XDG_CACHE_HOME or HOME"
                        .into(),
                ))
            }
        },
    };
    Ok(base.join("cbsnap").join(id.to_hex()))
}

/// The key of pack `id`: `packs/<first 2 hex digits>/<64 hex digits>`.
pub fn pack_key(id: &Id) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{hex}", &hex[..2])
}

/// The id of pack key `packs/ab/abcd…` ([`pack_key`]); `None` for any other key.
pub fn pack_id(key: &str) -> Option<Id> {
    let mut parts = key.split('/');
    let (Some("packs"), Some(sub), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let id = name.parse::<Id>().ok()?;
    (sub.len() == 2 && name.starts_with(sub)).then_some(id)
}

pub use crate::snapshot::snapshot_key;

/// Ranged reads of pack `key` of a remote repository (see [`Repository::open_pack`]).
struct RemotePack {
    storage: Arc<dyn Storage>,
    key: String,
}

impl pack::RangedRead for RemotePack {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let got = self
            .storage
            .read_range(&self.key, offset, buf.len() as u64)
            .map_err(std::io::Error::other)?;
        if got.len() != buf.len() {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&got);
        Ok(())
    }

    fn read_all(&self) -> std::io::Result<Vec<u8>> {
        self.storage.read(&self.key).map_err(std::io::Error::other)
    }
}

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

/// How [`Repository::open_with`] opens a remote repository (a path repository
/// ignores both).
#[derive(Debug, Default, Clone)]
pub struct OpenOptions {
    /// The cache base directory instead of the XDG one; the repository's cache is
    /// `<cache_dir>/<repository id>`.
    pub cache_dir: Option<PathBuf>,
    /// Uploads in flight; default [`DEFAULT_TRANSFERS`].
    pub transfers: Option<usize>,
}

impl OpenOptions {
    /// Uploads (and trailer reads) in flight: [`OpenOptions::transfers`], at least 1.
    fn transfers(&self) -> usize {
        self.transfers.unwrap_or(DEFAULT_TRANSFERS).max(1)
    }
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
    storage: Arc<dyn Storage>,
    /// The local directory of this repository: the repository itself for a path, the
    /// cache directory ([`cache_dir`]) for a remote one. Host-local state lives here
    /// (`index/`, temporary packs, `locks/quiesced.json`).
    pub root: PathBuf,
    pub config: RepoConfig,
    index: Index,
    index_writable: bool,
    open_packs: Mutex<HashMap<Id, Arc<File>>>,
    /// Reads of pack ranges so far ([`Repository::pack_reads`]).
    pack_reads: std::sync::atomic::AtomicU64,
    crypt: Crypt,
    /// The key file that opened an encrypted repository.
    key_id: Option<String>,
    transfers: usize,
    /// Pack ranges of a remote repository read recently ([`WINDOW`] bytes each, the
    /// newest last): blobs are read in pack order by restore, dump and check, so one
    /// request serves many blobs instead of one request per blob.
    windows: Mutex<std::collections::VecDeque<Window>>,
    /// The keys under `snapshots/` listed before the index was opened (`None`: list
    /// when asked), see [`Repository::snapshots`].
    listed: Option<Vec<String>>,
    _lock: Option<Lock>,
}

/// What a [`Repository`] is made of besides its index and the state of its reads:
/// found when it is opened, kept when its index is rebuilt under it
/// ([`Repository::rebuild_damaged_index`]). See the fields of [`Repository`].
struct Parts {
    storage: Arc<dyn Storage>,
    root: PathBuf,
    config: RepoConfig,
    crypt: Crypt,
    key_id: Option<String>,
    transfers: usize,
    listed: Option<Vec<String>>,
    lock: Option<Lock>,
}

/// Bytes of a remote pack fetched at once for a blob smaller than this (4 MiB); a
/// repository keeps [`windows_kept`] of them.
const WINDOW: u64 = 4 << 20;

/// How many [`WINDOW`]s a repository keeps: one per thread that reads blobs (rayon's
/// pool: the restore's writers), at least 2. It was 4 whatever the cores, 16 MiB held
/// through a whole restore on 2 cores; 2 windows took 8 MiB off the restore's peak, at
/// no cost on moto on localhost and ~10% through a proxy adding a round trip per
/// request, where a window is sometimes fetched again (docs/BENCHMARKS.md, "Issue 9,
/// seventh pass").
fn windows_kept() -> usize {
    rayon::current_num_threads().max(2)
}

/// `bytes` of pack `pack` from offset `start`.
struct Window {
    pack: Id,
    start: u64,
    bytes: Arc<Vec<u8>>,
}

impl Repository {
    /// The one place a handle is built: `parts` with `index`, and no pack open, no
    /// window read and no pack read counted yet.
    fn from_parts(parts: Parts, index: Index, index_writable: bool) -> Repository {
        let Parts {
            storage,
            root,
            config,
            crypt,
            key_id,
            transfers,
            listed,
            lock,
        } = parts;
        Repository {
            storage,
            root,
            config,
            index,
            index_writable,
            open_packs: Mutex::new(HashMap::new()),
            pack_reads: std::sync::atomic::AtomicU64::new(0),
            crypt,
            key_id,
            transfers,
            windows: Mutex::new(Default::default()),
            listed,
            _lock: lock,
        }
    }

    /// Where new packs are written before they are committed (temporary files): the
    /// repository's `packs/` for a path, `<cache>/packs` for a remote repository.
    pub fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }
    /// The `snapshots/` directory of a path repository (under the cache directory for
    /// a remote one, where only temporary files may be); read snapshots with
    /// [`crate::snapshot::scan`] on [`Repository::storage`].
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// The local `locks/` directory (for a remote repository, in the cache directory:
    /// it holds only the host-local quiesce record there).
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The directories this handle writes on this host, each with what it is (a
    /// path repository's own directory, a remote one's cache directory), and their
    /// subdirectories, which may be symlinks to other places (`packs/` on another
    /// disk). A snapshot of a host directory leaves them out
    /// (`crate::ingest::own_dirs`). A remote repository writes nothing else here.
    pub fn own_dirs(&self) -> Vec<(PathBuf, String)> {
        let what = if self.local_root().is_some() {
            "this snapshot's repository"
        } else {
            "the local cache of this snapshot's repository"
        };
        let mut dirs = vec![(self.root.clone(), what.to_string())];
        for sub in ["packs", "snapshots", "index", "locks", "keys"] {
            dirs.push((self.root.join(sub), format!("the {sub}/ of {what}")));
        }
        dirs
    }

    /// The snapshots as listed when the repository was opened, before its index
    /// (FORMAT.md, "Reading order"): each is fully indexed in this handle's view,
    /// even when the index is a read-only copy taken while another process writes.
    /// Snapshots committed since, by anyone (this handle too), are not included: open
    /// the repository again to see them; files removed since are skipped. Readers use
    /// this; a command that writes snapshots and reads them back, and `prune` (under
    /// the exclusive lock, which must keep what this handle committed), list anew
    /// ([`crate::snapshot::scan`]).
    ///
    /// Errors: a failure to list `snapshots/` (only for a handle that did not list
    /// at open).
    pub fn snapshots(&self) -> Result<crate::snapshot::SnapshotSet> {
        let listed = match &self.listed {
            Some(l) => std::borrow::Cow::Borrowed(l),
            None => std::borrow::Cow::Owned(crate::snapshot::list(self.storage())?),
        };
        Ok(crate::snapshot::read_listed(
            self.storage(),
            &self.crypt,
            &listed,
        ))
    }

    /// The readable snapshots of [`Repository::snapshots`], oldest first; damaged
    /// files are skipped with a warning ([`crate::snapshot::readable`]).
    pub fn readable_snapshots(&self) -> Result<Vec<(Id, crate::snapshot::Snapshot)>> {
        Ok(crate::snapshot::readable(self.snapshots()?))
    }

    /// How this repository names and seals its data: plain BLAKE3 and bytes as they
    /// are, or keyed ids and sealed bytes.
    pub fn crypt(&self) -> &Crypt {
        &self.crypt
    }

    /// The id of a blob's raw bytes in this repository ([`Crypt::id`]).
    pub fn blob_id(&self, raw: &[u8]) -> Id {
        self.crypt.id(raw)
    }

    /// The key file (`keys/<id>`) whose passphrase opened this encrypted repository.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Where the repository's files live.
    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// The repository's directory when it is a path (the fast paths), `None` for a
    /// remote repository.
    pub fn local_root(&self) -> Option<&Path> {
        self.storage.local_root()
    }

    /// How many pack uploads (and trailer downloads of an index rebuild) a remote
    /// repository keeps in flight; at least 1. Default [`DEFAULT_TRANSFERS`].
    pub fn set_transfers(&mut self, n: usize) {
        self.transfers = n.max(1);
    }

    /// Uploads in flight: 1 for a path repository (its commit is an fsync and a rename).
    pub fn transfers(&self) -> usize {
        if self.local_root().is_some() {
            1
        } else {
            self.transfers
        }
    }

    /// The engine error for a storage failure while doing `what`.
    pub fn storage_error(&self, what: &str, e: StorageError) -> Error {
        crate::error::engine_error(self.storage(), what, e)
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

    /// Create a new unencrypted repository at `root`, which must not exist or be an
    /// empty directory.
    pub fn init(root: &Path) -> Result<RepoConfig> {
        Self::init_in(Arc::new(Local::new(root)))
    }

    /// Create a new encrypted repository at `root`: a random master key, wrapped with
    /// `passphrase` (Argon2id with `kdf`) in its first key file.
    ///
    /// Errors: those of [`Repository::init`], and [`Error::Crypto`].
    pub fn init_encrypted(root: &Path, passphrase: &str, kdf: &KdfParams) -> Result<RepoConfig> {
        Self::init_encrypted_in(Arc::new(Local::new(root)), passphrase, kdf)
    }

    /// [`Repository::init_encrypted`] in `storage` (any backend).
    pub fn init_encrypted_in(
        storage: Arc<dyn Storage>,
        passphrase: &str,
        kdf: &KdfParams,
    ) -> Result<RepoConfig> {
        Self::create(storage, Some((passphrase, kdf)))
    }

    /// Create a new repository in `storage`, which must be empty (a path: missing or
    /// an empty directory).
    ///
    /// Errors: [`Error::AlreadyExists`] when it holds a repository,
    /// [`Error::NotEmpty`] when it holds anything else, storage errors.
    pub fn init_in(storage: Arc<dyn Storage>) -> Result<RepoConfig> {
        Self::create(storage, None)
    }

    fn create(
        storage: Arc<dyn Storage>,
        encrypt: Option<(&str, &KdfParams)>,
    ) -> Result<RepoConfig> {
        let s = &*storage;
        let here = storage::display_path(s, "");
        let here = here.components().collect::<PathBuf>();
        match s.local_root() {
            Some(root) => {
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
                fsutil::create_private_dir_all(root)
                    .ctx(|| format!("create {}", root.display()))?;
                for d in ["packs", "snapshots", "locks"] {
                    let p = root.join(d);
                    fsutil::create_private_dir_all(&p).ctx(|| format!("create {}", p.display()))?;
                }
            }
            None => {
                let present = s
                    .list("")
                    .map_err(|e| crate::error::engine_error(s, "list", e))?;
                if !present.is_empty() {
                    return Err(if present.iter().any(|l| l.key == "config") {
                        Error::AlreadyExists(here)
                    } else {
                        Error::NotEmpty(here)
                    });
                }
            }
        }
        let mut cfg = RepoConfig::new();
        if let Some((passphrase, kdf)) = encrypt {
            cfg.version = crate::config::ENCRYPTION_SINCE;
            cfg.encryption = Some(Encryption::current());
            let key = MasterKey::generate()?;
            keys::add(s, &cfg.id, &key, passphrase, kdf)?;
        }
        s.write("README.md", FORMAT_README.as_bytes())
            .map_err(|e| crate::error::engine_error(s, "write", e))?;
        // The config is written last: its presence is what makes this a repository.
        s.write("config", &cfg.encode())
            .map_err(|e| crate::error::engine_error(s, "write", e))?;
        if let Some(parent) = s.local_root().and_then(Path::parent) {
            let _ = fsutil::fsync_dir(parent);
        }
        Ok(cfg)
    }

    /// Read the config of the repository at `root`, without locking or opening the index.
    /// Errors: [`Error::NotARepository`] when `root` has no valid config.
    pub fn read_config(root: &Path) -> Result<RepoConfig> {
        Self::read_config_in(&Local::new(root))
    }

    /// [`Repository::read_config`] of the repository in `storage`.
    pub fn read_config_in(storage: &dyn Storage) -> Result<RepoConfig> {
        let path = storage::display_path(storage, "config");
        let bytes = match storage.read("config") {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => {
                // A path's trailing `/` dropped; a URL kept whole (a path's
                // components would make `s3://b/p` the unusable `s3:/b/p`).
                let here = match storage.local_root() {
                    Some(_) => storage::display_path(storage, "")
                        .components()
                        .collect::<PathBuf>(),
                    None => PathBuf::from(storage.location()),
                };
                // Packs without a config: a repository that lost its config, where
                // `init` elsewhere is the wrong advice.
                if storage.list("packs/").is_ok_and(|l| !l.is_empty()) {
                    return Err(Error::ConfigLost(here));
                }
                // A directory inside a repository (`--repo …/repo/packs`): name it.
                if let Some(root) = storage.local_root() {
                    let inside = std::path::absolute(root).ok().and_then(|r| {
                        r.ancestors()
                            .skip(1)
                            .find(|a| a.join("config").is_file() && a.join("packs").is_dir())
                            .map(Path::to_path_buf)
                    });
                    if let Some(repo) = inside {
                        return Err(Error::Usage(format!(
                            "{} is inside the cbsnap repository {}: pass --repo {}",
                            here.display(),
                            repo.display(),
                            repo.display()
                        )));
                    }
                }
                let (detail, occupied) = match storage.local_root() {
                    Some(root) if !root.exists() => {
                        ("the directory does not exist".to_string(), false)
                    }
                    Some(root) => ("it has no `config` file".to_string(), occupied(root)),
                    None => {
                        let any = storage.list("").map(|l| !l.is_empty()).unwrap_or(false);
                        ("it has no `config` object".to_string(), any)
                    }
                };
                return Err(Error::NotARepository {
                    path: here,
                    detail,
                    occupied,
                });
            }
            Err(e) => return Err(crate::error::engine_error(storage, "read", e)),
        };
        RepoConfig::decode(&bytes).map_err(|reason| Error::Config {
            path: path.clone(),
            reason,
        })
    }

    /// Open an existing repository, take the lock `access` needs and bring the index up
    /// to date with the packs. An encrypted repository's passphrase comes from the
    /// `CBSNAP_PASSWORD*` variables ([`FromEnv`]).
    pub fn open(root: &Path, access: Access) -> Result<Repository> {
        Self::open_in(Arc::new(Local::new(root)), access)
    }

    /// [`Repository::open`] of the repository in `storage`. A remote repository's
    /// index is opened (created, rebuilt from the pack trailers when behind) in its
    /// cache directory.
    pub fn open_in(storage: Arc<dyn Storage>, access: Access) -> Result<Repository> {
        Self::open_with(storage, access, &OpenOptions::default())
    }

    /// [`Repository::open_in`] with a chosen cache directory and number of transfers;
    /// an encrypted repository's passphrase comes from the environment ([`FromEnv`]).
    pub fn open_with(
        storage: Arc<dyn Storage>,
        access: Access,
        opts: &OpenOptions,
    ) -> Result<Repository> {
        Self::open_keyed(storage, access, opts, &FromEnv)
    }

    /// [`Repository::open_with`], asking `passphrase` for the passphrase when the
    /// repository is encrypted (and never when it is not).
    ///
    /// Errors: those of [`Repository::open`]; [`Error::Crypto`] when no key opens
    /// ([`crate::crypto::CryptoError::WrongPassphrase`] for a wrong passphrase).
    pub fn open_keyed(
        storage: Arc<dyn Storage>,
        access: Access,
        opts: &OpenOptions,
        passphrase: &dyn PassphraseSource,
    ) -> Result<Repository> {
        let config = Self::read_config_in(&*storage)?;
        let (crypt, key_id) = unlock(&*storage, &config, passphrase)?;
        let root = local_dir(&*storage, &config, access, opts)?;
        let kind = match access {
            Access::Exclusive => LockKind::Exclusive,
            _ => LockKind::Shared,
        };
        let lock = lock::acquire(&storage, kind, lock_wait())?;
        // Snapshots first, the index after (FORMAT.md, "Reading order"): every pack a
        // listed snapshot references was indexed before that snapshot was written.
        let listed = crate::snapshot::list(&*storage)?;
        let (index, index_writable) = open_index(&*storage, &root.join("index"), access)?;
        let parts = Parts {
            storage,
            root,
            config,
            crypt,
            key_id,
            transfers: opts.transfers(),
            listed: Some(listed),
            lock: Some(lock),
        };
        let repo = Repository::from_parts(parts, index, index_writable);
        if repo.index_writable {
            fsutil::remove_stale_temps(&repo.packs_dir());
            fsutil::remove_stale_temps(&repo.snapshots_dir());
            repo.sync_index()?;
        }
        Ok(repo)
    }

    /// Every pack present, with its size. Temporary files and names that are not a
    /// pack id are skipped.
    pub fn list_packs(&self) -> Result<HashMap<Id, u64>> {
        let listed = self
            .storage
            .list("packs/")
            .map_err(|e| self.storage_error("list", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|l| Some((pack_id(&l.key)?, l.size)))
            .collect())
    }

    /// Where pack `id` is, for messages (the file of a path repository).
    pub fn pack_path(&self, id: &Id) -> PathBuf {
        storage::display_path(self.storage(), &pack_key(id))
    }

    /// Open pack `id` of `size` bytes (as listed) and read and verify its trailer:
    /// the file for a path repository ([`PackFile::open`]: `pread`, the whole pack
    /// mapped), ranged reads of the object otherwise (three for the trailer, one
    /// download for [`PackFile::read_all`]).
    ///
    /// Errors: [`PackReadError::Open`] when a local pack cannot be opened, `Trailer`
    /// when it is damaged, `Read` when a remote read fails (its source is the
    /// backend's error).
    pub fn open_pack(&self, id: &Id, size: u64) -> std::result::Result<PackFile, PackReadError> {
        if self.local_root().is_some() {
            return PackFile::open(&self.pack_path(id), size, &self.crypt);
        }
        let reader = RemotePack {
            storage: self.storage.clone(),
            key: pack_key(id),
        };
        PackFile::open_ranged(Box::new(reader), size, &self.crypt)
    }

    /// Make a sealed pack a repository file: fsync and rename it into place (a path),
    /// or upload it (remote). Only after this returns `Ok` may its blobs be indexed
    /// or referenced. Returns (pack id, size in bytes, trailer entries).
    pub fn commit_pack(&self, sealed: SealedPack) -> Result<(Id, u64, Vec<BlobEntry>)> {
        if self.local_root().is_some() {
            let dir = self.packs_dir();
            return sealed
                .commit(&dir)
                .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e));
        }
        let key = pack_key(&sealed.id());
        self.storage
            .write_file(&key, sealed.temp_path())
            .map_err(|e| self.storage_error("upload pack", e))?;
        Ok(sealed.into_parts())
    }

    /// Remove pack `id` (prune). A missing pack is not an error.
    pub fn delete_pack(&self, id: &Id) -> Result<()> {
        self.storage
            .delete(&pack_key(id))
            .map_err(|e| self.storage_error("delete pack", e))
    }

    /// Bring the index in step with the packs on disk: index packs it lacks (reading
    /// only their trailers) and forget packs that are gone. Cheap when nothing changed:
    /// one listing and one index scan of pack keys.
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
            // Packs that vanished (not pruned) may have held blobs a snapshot
            // references: no snapshot is known complete in the index any more.
            self.index.forget_indexed_snapshots()?;
            self.index.remove_packs(&gone)?;
            report.removed_packs = gone.len();
        }
        let missing: Vec<(Id, u64)> = on_disk
            .iter()
            .filter(|(id, size)| indexed.get(id) != Some(size))
            .map(|(id, s)| (*id, *s))
            .collect();
        if !missing.is_empty() && self.index_writable {
            let read_all =
                || -> Vec<(Id, u64, std::result::Result<Vec<BlobEntry>, PackReadError>)> {
                    missing
                        .par_iter()
                        .map(|(id, size)| {
                            (
                                *id,
                                *size,
                                self.open_pack(id, *size).map(PackFile::into_entries),
                            )
                        })
                        .collect()
                };
            // Remote trailers are network round trips, not CPU: as many in flight as
            // uploads are allowed, whatever the core count.
            let read = match self.local_root() {
                Some(_) => read_all(),
                None => crate::storage::in_flight(self.transfers, read_all),
            };
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
            // Any other layout was last written by another build. Builds before layout
            // 2 write their own version over a newer one and forget vanished packs
            // without dropping the records of wholly indexed snapshots, so none of
            // those records can be trusted any more.
            self.index.forget_indexed_snapshots()?;
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

    /// Delete the index and recreate it from the pack trailers (of an encrypted
    /// repository, opened with the key `passphrase` unlocks).
    pub fn rebuild_index(root: &Path, passphrase: &dyn PassphraseSource) -> Result<SyncReport> {
        let opts = OpenOptions::default();
        Self::rebuild_index_in(Arc::new(Local::new(root)), &opts, passphrase)
    }

    /// [`Repository::rebuild_index`] of the repository in `storage`, found as
    /// [`Repository::open_with`] finds it with `opts`: a remote one's index is in its
    /// cache directory, and `opts.transfers` of its pack trailers are read at once.
    pub fn rebuild_index_in(
        storage: Arc<dyn Storage>,
        opts: &OpenOptions,
        passphrase: &dyn PassphraseSource,
    ) -> Result<SyncReport> {
        let config = Self::read_config_in(&*storage)?;
        let (crypt, key_id) = unlock(&*storage, &config, passphrase)?;
        let root = local_dir(&*storage, &config, Access::Exclusive, opts)?;
        let lock = lock::acquire(&storage, LockKind::Exclusive, lock_wait())?;
        let dir = root.join("index");
        if dir.exists() {
            fs::remove_dir_all(&dir).ctx(|| format!("remove {}", dir.display()))?;
        }
        let (index, index_writable) = open_index(&*storage, &dir, Access::Append)?;
        let parts = Parts {
            storage,
            root,
            config,
            crypt,
            key_id,
            transfers: opts.transfers(),
            listed: None,
            lock: Some(lock),
        };
        let repo = Repository::from_parts(parts, index, index_writable);
        let r = repo.sync_index()?;
        repo.index.flush()?;
        Ok(r)
    }

    /// Whether this handle may write the index (it holds RocksDB's lock on it).
    pub fn index_writable(&self) -> bool {
        self.index_writable
    }

    /// Give up RocksDB's lock on the index and read it as a secondary instance
    /// ([`Index::open_secondary`]) from now on, for a reader that stays open for
    /// hours (`cbsnap mount`): holding the index, it made every snapshot of the
    /// night wait and fail. The index is read as it is now, which is all such a
    /// reader needs: the snapshots it shows were listed before.
    ///
    /// Errors: the index could not be opened again ([`Error::Index`]); the handle
    /// then reads nothing and must be dropped.
    pub fn let_go_of_index(&mut self) -> Result<()> {
        if !self.index_writable {
            return Ok(());
        }
        let dir = self.root.join("index");
        let scratch = tempfile::Builder::new()
            .prefix("cbsnap-index-")
            .tempdir()
            .ctx(|| "create a temporary directory for the index".to_string())?;
        // Opened beside the primary, as another process's would be; the primary is
        // closed when it is replaced.
        let secondary =
            Index::open_secondary(&dir, scratch).map_err(|e| Error::Index(e.into_string()))?;
        self.index = secondary;
        self.index_writable = false;
        Ok(())
    }

    /// Rebuild the index of this handle from the pack trailers because it was found
    /// damaged while in use (`cause`, RocksDB's words: [`Index::damage`]), as an index
    /// that cannot be opened is at open (FORMAT.md, "Index"). The handle keeps its
    /// repository lock and its listing of snapshots; the old index is closed first.
    /// Nothing the old index answered may be used after: call it only once the
    /// command's own work has stopped, with nothing committed on that word.
    ///
    /// Errors: [`Error::Index`] of `cause` when this handle opened the index
    /// read-only (another process writes it, and will meet the damage itself); those
    /// of removing the directory and of [`Repository::sync_index`].
    pub fn rebuild_damaged_index(self, cause: String) -> Result<Repository> {
        if !self.index_writable {
            return Err(Error::Index(cause));
        }
        let Repository {
            storage,
            root,
            config,
            index,
            index_writable: _,
            open_packs: _,
            pack_reads: _,
            crypt,
            key_id,
            transfers,
            windows: _,
            listed,
            _lock: lock,
        } = self;
        // RocksDB's lock on the directory is released only when the database closes.
        drop(index);
        let dir = root.join("index");
        warn::emit(Warning::IndexRebuilt {
            dir: dir.clone(),
            cause,
        });
        fs::remove_dir_all(&dir).ctx(|| format!("remove {}", dir.display()))?;
        let (index, index_writable) = open_index(&*storage, &dir, Access::Append)?;
        let parts = Parts {
            storage,
            root,
            config,
            crypt,
            key_id,
            transfers,
            listed,
            lock,
        };
        let repo = Repository::from_parts(parts, index, index_writable);
        repo.sync_index()?;
        repo.index.flush()?;
        Ok(repo)
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

    /// The stored bytes at `loc`: `pread` of the pack file, or one ranged read.
    fn read_stored(&self, loc: &Location) -> Result<Vec<u8>> {
        self.read_pack_range(&loc.pack, loc.entry.offset, loc.entry.stored_len as u64)
    }

    /// `len` bytes of pack `pack` from `offset`, as stored (compressed, sealed): one
    /// `pread` of the pack file, or one ranged read of a remote one. Errors:
    /// [`Error::Corrupt`] when the pack is missing or shorter; a storage error.
    pub fn read_pack_range(&self, pack: &Id, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.pack_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let short = |got: u64| {
            Error::Corrupt(format!(
                "pack {pack} cannot be read at offset {offset}: {got} bytes where {len} were asked"
            ))
        };
        if self.local_root().is_some() {
            let f = self.pack_file(pack)?;
            let len = u32::try_from(len).map_err(|_| short(0))?;
            return pack::read_stored(&f, offset, len).map_err(|e| {
                Error::Corrupt(format!(
                    "pack {pack} cannot be read at offset {offset}: {e}"
                ))
            });
        }
        let key = pack_key(pack);
        let fetched = match self.windowed(pack, offset, len) {
            Some(b) => Ok(b),
            None => self.read_remote(pack, &key, offset, len)?,
        };
        match fetched {
            Ok(b) if b.len() as u64 == len => Ok(b),
            Ok(b) => Err(short(b.len() as u64)),
            Err(e @ (StorageError::Transient { .. } | StorageError::Other { .. })) => {
                Err(self.storage_error("read pack", e))
            }
            Err(e) => Err(Error::Corrupt(format!(
                "pack {pack} cannot be read at offset {offset}: {e}"
            ))),
        }
    }

    /// `len` bytes at `offset` of the remote pack `pack` (key `key`): for a small
    /// read, the window it starts (up to [`WINDOW`] bytes, to the end of the pack),
    /// kept for the reads after it. The outer error is the index's.
    fn read_remote(
        &self,
        pack: &Id,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<std::result::Result<Vec<u8>, StorageError>> {
        let size = self.index.pack_size(pack)?;
        Ok(match size {
            Some(size) if len < WINDOW && offset + len <= size => {
                let end = size.min(offset + WINDOW);
                self.storage
                    .read_range(key, offset, end - offset)
                    .map(|bytes| {
                        let bytes = Arc::new(bytes);
                        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                        while w.len() >= windows_kept() {
                            w.pop_front();
                        }
                        w.push_back(Window {
                            pack: *pack,
                            start: offset,
                            bytes: bytes.clone(),
                        });
                        bytes[..len as usize].to_vec()
                    })
            }
            _ => self.storage.read_range(key, offset, len),
        })
    }

    /// Blob bytes `offset..offset + len` of `pack` from a window read before.
    fn windowed(&self, pack: &Id, offset: u64, len: u64) -> Option<Vec<u8>> {
        let w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let hit = w.iter().rev().find(|w| {
            w.pack == *pack && w.start <= offset && offset + len <= w.start + w.bytes.len() as u64
        })?;
        let from = (offset - hit.start) as usize;
        Some(hit.bytes[from..from + len as usize].to_vec())
    }

    /// How many pack ranges this handle has read ([`Repository::read_pack_range`],
    /// which every blob read goes through): what a restore plan saves shows here.
    pub fn pack_reads(&self) -> u64 {
        self.pack_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn read_located(&self, loc: &Location) -> Result<Vec<u8>> {
        let stored = self.read_stored(loc)?;
        self.decode_stored(loc, &stored)
    }

    /// Decrypt, decompress and verify against its id the blob at `loc`, given its
    /// stored bytes (read by [`Repository::read_pack_range`]). Errors:
    /// [`Error::Authentication`], or [`Error::Corrupt`] naming the blob and pack.
    pub fn decode_stored(&self, loc: &Location, stored: &[u8]) -> Result<Vec<u8>> {
        pack::decode_blob(&loc.entry, stored, &self.crypt).map_err(|e| match e {
            pack::BlobError::Authentication(source) => Error::Authentication {
                pack: loc.pack,
                blob: loc.entry.id,
                source,
            },
            e => Error::Corrupt(format!(
                "blob {} in pack {} is damaged: {e}",
                loc.entry.id, loc.pack
            )),
        })
    }
}

/// The repository's [`Crypt`]: plain for an unencrypted repository (no passphrase
/// asked), else the master key unwrapped with the passphrase from `source`, and the id
/// of the key file that opened it.
fn unlock(
    storage: &dyn Storage,
    config: &RepoConfig,
    source: &dyn PassphraseSource,
) -> Result<(Crypt, Option<String>)> {
    if !config.encrypted() {
        return Ok((Crypt::Plain, None));
    }
    let pass = source.passphrase()?;
    let (key, id) = keys::unlock(storage, &config.id, &pass)?;
    Ok((Crypt::Sealed(Arc::new(key)), Some(id)))
}

/// How long to wait for a conflicting lock: `CBSNAP_LOCK_WAIT` seconds, default 120.
pub fn lock_wait() -> Duration {
    std::env::var("CBSNAP_LOCK_WAIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120))
}

/// The local directory of the repository in `storage` ([`Repository::root`]): for a
/// path, the repository itself, whose `packs/`, `snapshots/` and `locks/` are created
/// when missing (a reader refuses a directory without them: it is not a
/// repository); for a remote repository its cache directory (`opts.cache_dir`, else
/// [`cache_dir`]), created with its `packs/` and `locks/`.
fn local_dir(
    storage: &dyn Storage,
    config: &RepoConfig,
    access: Access,
    opts: &OpenOptions,
) -> Result<PathBuf> {
    if let Some(root) = storage.local_root() {
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
        return Ok(root.to_path_buf());
    }
    let dir = match &opts.cache_dir {
        Some(base) => base.join(config.id.to_hex()),
        None => cache_dir(&config.id)?,
    };
    for d in ["packs", "locks"] {
        let p = dir.join(d);
        fsutil::create_private_dir_all(&p)
            .ctx(|| format!("create the cache directory {}", p.display()))?;
    }
    Ok(dir)
}

/// [`Error::Locked`] for an index another process holds (`why`, from
/// [`open_index`]), naming the cbsnap processes of this host that hold the
/// repository's locks and what ends each: a mount holds the index until it is
/// unmounted, which "wait for it to finish" would never see.
fn busy_index(storage: &dyn Storage, why: String) -> Error {
    let holders = lock::local_holders(storage);
    let who = if holders.is_empty() {
        "; wait for it to finish".to_string()
    } else {
        format!(
            ". Held by {}: wait for it to finish (a snapshot, prune or `index rebuild`; readers such as `cbsnap mount` no longer hold it once open)",
            holders.join(", ")
        )
    };
    Error::Locked(format!("{why}{who}"))
}

/// Open the RocksDB index in `dir` of the repository in `storage`. Another cbsnap
/// process may hold RocksDB's own lock: readers then open it read-only, writers wait
/// ([`lock_wait`]) and then fail with [`busy_index`], which names the holder; every
/// opening of the index (open, `index rebuild`, a rebuild in use) comes here, so
/// each names it. An index that cannot be opened for any other reason (a
/// half-copied rsync, a damaged file), or whose pack records cannot be read, is
/// discarded and rebuilt from the packs. Busy and damaged are told apart by the
/// error's kind and by asking the kernel who holds the lock, never by the text of
/// the message ("block checksum mismatch" contains "lock"). An I/O error that names a
/// full disk, a missing permission or a read-only filesystem (the system's own text,
/// [`crate::index::errno_of`]) is returned as that error, never taken for damage.
fn open_index(storage: &dyn Storage, dir: &Path, access: Access) -> Result<(Index, bool)> {
    // Another user's index (its lock file not writable here) or a read-only mount:
    // read it read-only, or say so, before RocksDB opens it for writing (which would
    // already rotate its info log there).
    let lock = dir.join("LOCK");
    let writable = rustix::fs::accessat(
        rustix::fs::CWD,
        &lock,
        rustix::fs::Access::WRITE_OK,
        rustix::fs::AtFlags::EACCESS,
    );
    if let Err(e) = writable {
        if [
            rustix::io::Errno::ACCESS,
            rustix::io::Errno::PERM,
            rustix::io::Errno::ROFS,
        ]
        .contains(&e)
        {
            if access == Access::Read {
                if let Ok(i) = Index::open_read_only(dir) {
                    i.check_version(dir)?;
                    return Ok((i, false));
                }
            }
            return Err(Error::io(
                format!("open the index {} for writing", dir.display()),
                e.into(),
            ));
        }
    }
    // Opened for writing, RocksDB writes at once: its write-ahead log replayed into a
    // table file, a new MANIFEST, an OPTIONS file, its info log. On a nearly full disk
    // (a snapshot that just failed for it) one of those writes fails, and Debian's
    // librocksdb 7.8 may abort on an assertion over the failed writer
    // (`sync_without_flush_called_`, exit 134) instead of returning the error. A reader
    // needs none of it: it opens the index read-only, as when another process holds it
    // (packs not indexed yet are then reported, not added). A writer is told the disk
    // is full before RocksDB is asked.
    if let Some((free, needed)) = short_of_space(dir) {
        if access == Access::Read {
            if let Ok(i) = Index::open_read_only(dir) {
                i.check_version(dir)?;
                warn::emit(Warning::IndexReadOnlyNoSpace {
                    dir: dir.to_path_buf(),
                    free,
                    needed,
                });
                return Ok((i, false));
            }
        }
        return Err(Error::io(
            format!(
                "open the index {} for writing ({free} bytes free, {needed} needed)",
                dir.display()
            ),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        ));
    }
    let deadline = std::time::Instant::now() + lock_wait();
    let mut announced = false;
    let mut retried = false;
    loop {
        let e = match Index::open(dir) {
            Ok(i) => match i.packs() {
                Ok(_) => {
                    i.check_version(dir)?;
                    return Ok((i, true));
                }
                Err(e) => e.to_string(),
            },
            Err(e) => {
                let busy = matches!(
                    e.kind(),
                    rocksdb::ErrorKind::IOError | rocksdb::ErrorKind::Busy
                ) && Index::locked_by_other_process(dir);
                if busy {
                    if access == Access::Read {
                        if let Some(i) = open_beside_writer(dir) {
                            i.check_version(dir)?;
                            return Ok((i, false));
                        }
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(busy_index(
                            storage,
                            format!(
                                "the index {} is in use by another cbsnap process ({})",
                                dir.display(),
                                e.into_string()
                            ),
                        ));
                    }
                    if !announced {
                        warn::emit(Warning::IndexWait);
                        announced = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                // No permission to open its files (another user's repository) or a
                // read-only mount is not damage: discarding the index would leave the
                // repository worse for its owner.
                if e.kind() == rocksdb::ErrorKind::IOError {
                    if let Some(code) = crate::index::errno_of(e.as_ref()) {
                        return Err(Error::io(
                            format!("open the index {} ({})", dir.display(), e.as_ref()),
                            std::io::Error::from_raw_os_error(code),
                        ));
                    }
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

/// The index in `dir`, which another process holds, opened to read beside it: as a
/// secondary instance ([`Index::open_secondary`]), safe while that process compacts,
/// else read-only. `None` when neither opens.
fn open_beside_writer(dir: &Path) -> Option<Index> {
    let secondary = tempfile::Builder::new()
        .prefix("cbsnap-index-")
        .tempdir()
        .ok()
        .and_then(|scratch| Index::open_secondary(dir, scratch).ok());
    secondary.or_else(|| Index::open_read_only(dir).ok())
}

/// Room for RocksDB's own writes when it opens the index, besides the write-ahead
/// logs it replays: a new MANIFEST and OPTIONS file, its info log (kilobytes each),
/// with a margin.
const OPEN_MARGIN: u64 = 64 << 10;

/// `Some((free, needed))` when the filesystem of the index in `dir` has fewer bytes
/// free for this user than opening it for writing may write: twice its write-ahead
/// logs (replayed into table files, then a new log), its MANIFEST (rewritten), and
/// [`OPEN_MARGIN`]. `None` when there is room, or when the free space cannot be
/// asked (then RocksDB's own error decides).
fn short_of_space(dir: &Path) -> Option<(u64, u64)> {
    let at = if dir.exists() { dir } else { dir.parent()? };
    let st = rustix::fs::statvfs(at).ok()?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let mut needed = OPEN_MARGIN;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        // One `stat` for each of the few files that count, not for every table.
        let times = if name.ends_with(".log") {
            2
        } else if name.starts_with("MANIFEST-") {
            1
        } else {
            continue;
        };
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        needed = needed.saturating_add(len.saturating_mul(times));
    }
    (free < needed).then_some((free, needed))
}

/// Whether `dir` is a directory with at least one entry (where `init` refuses).
fn occupied(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// The other process of [`a_busy_index_names_its_holder`]: opens the index of the
    /// repository at `CBSNAP_TEST_OPEN_INDEX` for writing, as `index rebuild` and a
    /// rebuild in use do, and prints what it got.
    #[test]
    #[ignore = "child process of a_busy_index_names_its_holder; run by it"]
    fn open_index_child() {
        let Some(root) = std::env::var_os("CBSNAP_TEST_OPEN_INDEX") else {
            return;
        };
        let root = PathBuf::from(root);
        match open_index(&Local::new(&root), &root.join("index"), Access::Append) {
            Err(Error::Locked(m)) => println!("LOCKED: {m}"),
            Err(e) => println!("OTHER ERROR: {e:?}"),
            Ok(_) => println!("OPENED"),
        }
    }

    /// An index another process holds past the wait names that process, by pid and
    /// command line, however it is opened: `index rebuild` said only "another cbsnap
    /// process", because the holders were named by one caller of [`open_index`] only.
    #[test]
    fn a_busy_index_names_its_holder() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        Repository::init(&root).unwrap();
        // This process holds the repository's shared lock and its index.
        let _holder = Repository::open(&root, Access::Append).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "repo::tests::open_index_child", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env("CBSNAP_TEST_OPEN_INDEX", &root)
            .env("CBSNAP_LOCK_WAIT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = BufReader::new(&out.stdout[..])
            .lines()
            .map_while(|l| l.ok())
            .find_map(|l| l.find("LOCKED: ").map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&out.stdout)));
        let me = std::fs::read(format!("/proc/{}/cmdline", std::process::id())).unwrap();
        let me = String::from_utf8_lossy(&me).replace('\0', " ");
        let named = format!("Held by pid {} ({})", std::process::id(), me.trim());
        assert!(said.contains(&named), "{said}\nshould contain: {named}");
        // It says what to do (it said how to end a mount, which no longer holds it).
        assert!(said.contains("wait for it to finish"), "{said}");
    }
}
