//! The engine's error type, and the rules every error of the library follows.
//!
//! Every message names what failed (the repository, pack, snapshot, path or volume)
//! and, where there is one, the next thing to do. The rules:
//!
//! 1. **Kinds, not strings.** Each module returns a `thiserror` enum (this [`Error`],
//!    or a module's own: [`crate::config::ConfigError`], [`LockLost`],
//!    [`crate::pack::BlobError`], [`crate::docker::DockerError`], …) and no function
//!    of the library returns `Result<_, String>`. Callers may branch on the variant
//!    (and on its structured fields); never on the text of a message, which is for
//!    the operator and may change in any release. A `String` inside a variant is a
//!    rendered detail, not something to parse. The variants meant for branching:
//!    [`Error::Usage`] (the request itself is wrong), [`Error::NoSuchSnapshot`],
//!    [`Error::InUse`] (a resource is busy now; the same request may work later),
//!    [`Error::Locked`] / [`Error::LockLost`], [`Error::Corrupt`] / [`Error::Index`]
//!    (damage), [`Error::Interrupted`], [`Error::RestoreIncomplete`], and
//!    [`Error::Io`] through its `io::ErrorKind` / OS error code.
//! 2. **Fail closed.** A lock file that cannot be read or parsed blocks every other
//!    lock ([`Error::Locked`]) until an operator removes it; a lock that was not
//!    refreshed in time stops the command before it commits ([`Error::LockLost`]).
//!    A file from disk that does not parse (config, snapshot, pack trailer, tree) is
//!    an error or is reported as damaged; it is never read as empty or as a default.
//! 3. **The first cause wins.** When several threads of a pipeline fail, the error
//!    reported is the one that started it. A stage that stops only because another
//!    stage went away returns [`Error::PipelineStopped`], and [`first_cause`] ranks it
//!    below any other error, so that sentinel never reaches an operator in place of
//!    the disk-full or read error behind it.
//! 4. **Exit codes are the binary's** (`main.rs` and `src/cli/`): `0` ok; `1` an
//!    error, including every state of the environment (a volume in use, a lock held,
//!    damage, a full disk); `2` bad usage only ([`Error::Usage`], an unknown
//!    snapshot: a request that cannot succeed as typed); `3` finished but not exactly
//!    ([`Error::RestoreIncomplete`], unreadable files in a committed snapshot);
//!    `130`/`143` interrupted. The library neither prints nor exits: warnings go
//!    through [`crate::warn`].

use crate::storage::{Storage, StorageError};
use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `path` is not a repository. `occupied`: it is a directory holding other files,
    /// where `init` would refuse to create one, so the hint names a new directory.
    #[error("{path} is not a cbsnap repository: {detail}\n{hint}", path = .path.display(), hint = not_a_repo_hint(.path, *.occupied))]
    NotARepository {
        path: PathBuf,
        detail: String,
        occupied: bool,
    },

    /// The location holds packs but no `config`: a repository that lost its config.
    /// `init` there (or elsewhere) is the wrong advice; the config must come back.
    #[error("{} has packs but no `config`: this is a repository that lost its config file. Copy `config` back from a mirror or backup of this same repository (a `cbsnap mirror` copy has it); do not run `init` here. Nothing was changed.", .0.display())]
    ConfigLost(PathBuf),

    /// The `config` file exists but cannot be trusted (damaged, or too new).
    #[error("{}: {reason}", .path.display())]
    Config {
        path: PathBuf,
        reason: crate::config::ConfigError,
    },

    #[error("{} already holds a cbsnap repository; use it (`cbsnap --repo {} snapshots`) or choose another path", .0.display(), .0.display())]
    AlreadyExists(PathBuf),

    /// `init` in a directory that holds other files.
    #[error("{} is not empty and not a cbsnap repository; `init` creates a repository only in a new or empty directory, e.g. `cbsnap --repo {} init`", .0.display(), .0.join("cbsnap").display())]
    NotEmpty(PathBuf),

    #[error("{context}: {source}{hint}", hint = io_hint(.source))]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "the repository is damaged: {0}\nRun `cbsnap check --read-data` to see what it affects."
    )]
    Corrupt(String),

    #[error(
        "index: {0}\nThe index is a cache: `cbsnap index rebuild` recreates it from the packs."
    )]
    Index(String),

    /// A command met a damaged index (RocksDB's words in `cause`), stopped without
    /// committing anything, and rebuilt the index from the pack trailers; running it
    /// again works on the rebuilt index.
    #[error("the index was damaged ({cause}); it has been rebuilt from the packs, and nothing of this command was committed. Run it again.")]
    IndexRebuilt { cause: String },

    /// The index was written by a newer cbsnap (its layout version is above the one
    /// this build reads). Nothing was read from it or written to it.
    #[error("the index {} has layout version {found}, newer than this cbsnap reads ({supported}): it was written by a newer cbsnap.\nUpgrade cbsnap, or run `cbsnap index rebuild` to recreate the index from the packs in version {supported} (the index is a cache: nothing is lost; a newer cbsnap rebuilds its own again).", .dir.display())]
    IndexTooNew {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{0}")]
    Locked(String),

    /// This process's lock lapsed; it stopped before committing anything.
    #[error("the repository lock was lost: {0}. Stopped before committing; nothing of this run was committed. Run the command again.")]
    LockLost(LockLost),

    #[error("{0}")]
    NoSuchSnapshot(String),

    /// A selector could not be resolved safely because snapshot files are damaged:
    /// `(file, what check says about it)`.
    #[error("cannot resolve `{spec}`: {}\nThe damaged snapshot may be the one you mean, so none is picked in its place. Run `cbsnap check` to see what is wrong. To use another snapshot anyway, name it by id (`NAME@<id prefix>`; `cbsnap snapshots` lists the readable ones).", damaged_list(.files))]
    DamagedSnapshots {
        spec: String,
        files: Vec<(PathBuf, String)>,
    },

    /// The request itself is wrong (a bad flag value, a path not in the snapshot, a
    /// missing flag the situation needs): exit code 2. Not for states of the
    /// environment; those are [`Error::InUse`] or another kind.
    #[error("{0}")]
    Usage(String),

    /// `--repo`, `CBSNAP_REPO`, the config's `repo` or a mirror destination is not a
    /// location cbsnap knows (a usage error: exit 2).
    #[error(transparent)]
    Location(#[from] crate::storage::LocationError),

    /// Something the command needs is busy right now (a Docker volume used by
    /// running containers); the message says what to stop or which flag lets
    /// cbsnap do it. Nothing was changed. Not bad usage: exit code 1.
    #[error("{0}")]
    InUse(String),

    #[error("{0}")]
    Source(String),

    /// A blob a pack writer refused because a reader would reject it (a cbsnap bug).
    #[error(transparent)]
    BlobRejected(#[from] crate::pack::BlobRejected),

    /// A restore went through to the end, but some entries were not restored exactly;
    /// they were listed in its report ([`crate::restore::dir::Report::problems`]).
    #[error("restored into {target}, but {problems} entries were not restored exactly (listed above); everything else is in place")]
    RestoreIncomplete { target: String, problems: usize },

    /// A pipeline stage stopped because another stage failed first; that first
    /// failure is the cause, and what the pipeline reports ([`first_cause`] ranks
    /// this variant below every other, so it is never what an operator sees).
    #[error("the pack writer stopped")]
    PipelineStopped,

    #[error("interrupted; nothing was committed")]
    Interrupted,

    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),

    /// Encryption: no or a wrong passphrase, a damaged key file, a key command refused.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),

    /// Encrypted repository: a blob's sealed bytes fail authentication, so they were
    /// changed after they were written. Nothing of it is used.
    #[error("pack {pack}, blob {blob}: {source}\nThe pack is damaged. Run `cbsnap check --read-data` to see what it affects; a mirror or copy of the repository may hold an intact copy of the pack.")]
    Authentication {
        pack: crate::id::Id,
        blob: crate::id::Id,
        source: crate::crypto::AuthError,
    },

    /// A storage backend failed: `context` says what was done and where (the object's
    /// location); match `source` for [`crate::storage::StorageError::NotFound`] or
    /// `Transient`. Errors of the path backend are [`Error::Io`] as before.
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: crate::storage::StorageError,
    },
}

fn not_a_repo_hint(path: &Path, occupied: bool) -> String {
    if occupied {
        format!(
            "It holds other files, so `cbsnap init` will not create a repository there: point --repo / CBSNAP_REPO at an existing repository, or create one in a new directory (`cbsnap --repo {} init`).",
            path.join("cbsnap").display()
        )
    } else {
        format!(
            "Create one with `cbsnap --repo {} init`, or point --repo / CBSNAP_REPO at an existing repository.",
            path.display()
        )
    }
}

/// Why a held lock can no longer be trusted ([`crate::lock::Lock::check`]). Defined
/// here, not in `lock`, so that `error` uses nothing above it.
#[derive(Debug, thiserror::Error)]
pub enum LockLost {
    /// The lock file is gone: another process found it stale and removed it.
    #[error("the lock file {} was removed (another host found it stale)", .0.display())]
    Removed(PathBuf),
    /// No refresh (touch or rewrite of the file) has succeeded for longer than other
    /// hosts wait before they may remove it; the last one failed with `error`.
    #[error("the lock file {} could not be refreshed for {age} s (last error: {error}), past the time after which other hosts may remove it", .path.display())]
    RefreshFailed {
        path: PathBuf,
        age: i64,
        error: String,
    },
    /// The last refresh is older than the time after which others may remove it.
    #[error("the lock file {} was last refreshed {age} s ago, past the {limit} s after which other hosts may remove it (was this host asleep?)", .path.display())]
    Expired { path: PathBuf, age: i64, limit: u64 },
}

fn damaged_list(files: &[(PathBuf, String)]) -> String {
    files
        .iter()
        .map(|(p, why)| format!("snapshot file {} {why}", p.display()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn io_hint(e: &io::Error) -> &'static str {
    match crate::fsutil::os_code(e) {
        // Said for a snapshot and a restore alike: no advice here may lose data.
        Some(libc::ENOSPC) => "\nThe disk is full (no space left on the filesystem of the path above): free space there, or use another disk, and run the command again.",
        Some(libc::EACCES) | Some(libc::EPERM) => "\nPermission denied: run as a user that can read and write there (often root).",
        Some(libc::EDQUOT) => "\nDisk quota exceeded on the filesystem of the path above: free space there and run the command again.",
        _ => "",
    }
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn io_path(what: &str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }
}

/// Attach a context to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

/// The engine error for `e`, raised while doing `what` ("write snapshot", "read
/// pack") to `key`. A failure of the path backend stays an [`Error::Io`] naming
/// the file (so the disk-full and permission hints still apply); others are
/// [`Error::Storage`] naming the object's location.
pub fn engine_error(storage: &dyn Storage, what: &str, e: StorageError) -> Error {
    let key = match &e {
        StorageError::NotFound { key }
        | StorageError::AlreadyExists { key }
        | StorageError::Transient { key, .. }
        | StorageError::Credentials { key, .. }
        | StorageError::Other { key, .. } => key.clone(),
    };
    let context = format!(
        "{what} {}",
        crate::storage::display_path(storage, &key).display()
    );
    if storage.local_root().is_none() {
        return Error::Storage { context, source: e };
    }
    let io = match e {
        StorageError::NotFound { .. } => std::io::Error::from(std::io::ErrorKind::NotFound),
        StorageError::AlreadyExists { .. } => {
            std::io::Error::from(std::io::ErrorKind::AlreadyExists)
        }
        StorageError::Other { source, key } => match source.downcast::<std::io::Error>() {
            Ok(io) => *io,
            Err(source) => {
                return Error::Storage {
                    context,
                    source: StorageError::Other { key, source },
                }
            }
        },
        other => {
            return Error::Storage {
                context,
                source: other,
            }
        }
    };
    Error::Io {
        context,
        source: io,
    }
}

/// The outcome of two cooperating pipeline stages, as one result: both values when
/// both succeeded, else the first cause. `primary` is the stage whose failure started
/// things when both failed (the source before the writer it feeds; the flusher
/// before the writer that fills it), except that an [`Error::PipelineStopped`] of
/// either stage gives way to the other's real error.
///
/// Errors: `primary`'s error, unless it is [`Error::PipelineStopped`] and `secondary`
/// failed too; then `secondary`'s.
pub fn first_cause<A, B>(primary: Result<A>, secondary: Result<B>) -> Result<(A, B)> {
    match (primary, secondary) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(Error::PipelineStopped), Err(e)) => Err(e),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_full() -> Error {
        Error::io("write pack", io::Error::from_raw_os_error(libc::ENOSPC))
    }

    fn is_disk_full(e: &Error) -> bool {
        matches!(e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }

    /// The source stopped because the writer did (disk full): the writer's error is
    /// the cause, whichever side it is on.
    #[test]
    fn a_stopped_stage_gives_way_to_the_real_error() {
        let e = first_cause::<(), ()>(Err(Error::PipelineStopped), Err(disk_full())).unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        let e = first_cause::<(), ()>(Err(disk_full()), Err(Error::PipelineStopped)).unwrap_err();
        assert!(is_disk_full(&e), "{e}");
    }

    /// Two real errors: the primary stage's is the first cause; the writer's
    /// `Interrupted` (it was told to stop) never hides the source's failure.
    #[test]
    fn the_primary_error_wins_over_the_secondary() {
        let e = first_cause::<(), ()>(Err(Error::Source("read".into())), Err(Error::Interrupted))
            .unwrap_err();
        assert!(matches!(e, Error::Source(ref m) if m == "read"), "{e}");
        let e = first_cause::<(), ()>(Ok(()), Err(disk_full())).unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        let e = first_cause::<(), ()>(Err(disk_full()), Ok(())).unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        assert_eq!(first_cause::<u8, u16>(Ok(1), Ok(2)).unwrap(), (1, 2));
    }

    /// Only when nothing better is known does the sentinel come out.
    #[test]
    fn two_stopped_stages_stay_stopped() {
        let e = first_cause::<(), ()>(Err(Error::PipelineStopped), Err(Error::PipelineStopped))
            .unwrap_err();
        assert!(matches!(e, Error::PipelineStopped));
    }
}
