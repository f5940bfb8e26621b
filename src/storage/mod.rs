//! Where a repository's files live. A path is one backend; object stores and SFTP are others
//! (Apache OpenDAL). Keys are '/'-separated relative names: "config", "keys/<id>",
//! "packs/<2 hex>/<64 hex>", "snapshots/<64 hex>", "locks/<name>".
//!
//! The repository reads and writes only through [`Storage`] (issue 10), so that every
//! command works on every backend. A backend with a local path ([`Storage::local_root`])
//! lets the repository keep its fast paths: packs read with `pread`/mmap, a sealed pack
//! renamed into place, and the RocksDB index inside the repository.
use std::path::Path;

pub mod local;

pub use local::Local;

pub mod location;
pub mod opendal;
pub mod remote;
pub use self::opendal::Remote;
pub use location::{Location, LocationError};
pub use remote::{Retry, S3Settings};

/// Run `f` on a pool of `threads` threads, for work that waits on storage (a cold
/// disk, a network round trip) rather than on a core: `f`'s parallel iterators then
/// keep `threads` requests in flight whatever the core count. When no pool can be
/// built (out of threads), `f` runs on the current one, just slower.
pub fn in_flight<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// Errors of a storage backend. `NotFound` is the only one callers branch on besides `Transient`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    /// A network or server error worth retrying (OpenDAL's `is_temporary`), after retries were spent.
    #[error("{key}: {source} (the server did not answer; check the network or the endpoint and run again)")]
    Transient {
        key: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request could not be signed: no credentials for the object store were
    /// found (OpenDAL's "failed to load signing credential"). Nothing was sent.
    #[error("{key}: {source} (no credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `access_key_id` and `secret_access_key` in the config file's [s3] section)")]
    Credentials {
        key: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{key}: {source}")]
    Other {
        key: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One entry of a listing: key and size in bytes.
pub struct Listed {
    pub key: String,
    pub size: u64,
}

pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Human form of the location ("/srv/repo", "s3://bucket/prefix", "sftp://u@h/p"), for messages.
    fn location(&self) -> String;
    /// The whole object.
    fn read(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    /// `len` bytes at `offset` (a pack's blob or trailer).
    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError>;
    /// Stores `bytes` under `key` atomically and durably: after Ok, a reader sees the whole object,
    /// and after a crash either the whole object or nothing.
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Like `write`, from a local file (a sealed pack), without reading it all into memory.
    fn write_file(&self, key: &str, local: &Path) -> Result<(), StorageError>;
    /// Creates `key` only if it does not exist (locks); `AlreadyExists` otherwise. On object stores
    /// without conditional writes this is write-then-list and documented as such.
    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Every key under `prefix` ("packs/", "snapshots/", "locks/", "keys/"), recursively, with sizes.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError>;
    /// Size of one object.
    fn size(&self, key: &str) -> Result<u64, StorageError>;
    /// Removes `key`; removing a missing key is Ok.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// `Some(root)` for a local path: lets the repository keep its fast paths (pread/mmap of packs,
    /// rename of a sealed pack into place, its RocksDB index in `<root>/index`).
    fn local_root(&self) -> Option<&Path>;
}

/// Where `key` of `storage` is, for messages and reports: the file under the root
/// of a path backend (the paths cbsnap always showed), `<location>/<key>` otherwise.
pub fn display_path(storage: &dyn Storage, key: &str) -> std::path::PathBuf {
    match storage.local_root() {
        Some(root) => root.join(key),
        None => format!("{}/{}", storage.location().trim_end_matches('/'), key).into(),
    }
}
