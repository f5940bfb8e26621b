//! cbsnap: content-addressed, deduplicating snapshots of Docker volumes and host
//! directories.
//!
//! Data flows one way: a [`source`] yields entries → [`chunker`] (FastCDC) → BLAKE3
//! [`id`] → dedup against the [`index`] → zstd → [`pack`] files → index → the
//! [`snapshot`] file, the only commit point ([`ingest`]). [`restore`] walks the
//! [`tree`]s back into a directory or a tar stream. The on-disk format is specified
//! in `docs/FORMAT.md`. [`run`] holds the whole-stack use cases: the nightly
//! `snapshot --all` with its hooks, notifications and metrics, and `restore --all`.

/// `eprintln!` that never panics: a message to a closed stderr pipe (cron mailing
/// off, `cbsnap … 2>&1 | head`) is dropped instead of aborting the command with exit
/// 101 (issue 7, case 15). Use it for every message to stderr.
#[macro_export]
macro_rules! warn_stderr {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

pub mod check;
pub mod chunker;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod diff;
pub mod docker;
pub mod error;
pub mod forget;
pub mod fsutil;
pub mod host;
pub mod id;
pub mod index;
pub mod ingest;
pub mod lock;
pub mod mirror;
pub mod mount;
pub mod pack;
pub mod packer;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod run;
pub mod settings;
pub mod snapshot;
pub mod source;
pub mod stats;
pub mod storage;
pub mod tree;
pub mod volume;
pub mod walk;
pub mod warn;

pub use error::{Error, Result};
pub use id::Id;
pub use repo::Repository;
