//! Warnings and notices of the library, and the one sink they go to.
//!
//! The library neither prints nor exits (`src/error.rs`, rule 4). What an operator
//! should hear about while a command goes on (a lock it waits for, a damaged index
//! it rebuilds, a snapshot file it skips) is a [`Warning`] handed to [`emit`]. The
//! binary installs a [`Sink`] once at start ([`install`]) that renders them as `-q`
//! and `--json` say; without one they are dropped (a library caller sees the same
//! facts in the values it gets back: [`crate::repo::SyncReport::unreadable`],
//! [`crate::snapshot::SnapshotSet::damaged`]).
//!
//! Code and tests that want the warnings of one call rather than the process's sink
//! wrap the call in [`capture`], which collects what is emitted *on the calling
//! thread* while it runs. So emit from the thread that called the library (collect
//! the results of a worker pool first, then warn), not from inside a worker.
//!
//! Using it from a new module (e.g. `docker/`): add a variant to [`Warning`] with the
//! structured fields an operator needs, word it in the `Display` impl as the full
//! line the operator reads, give it a [`Level`], and call
//! `crate::warn::emit(Warning::…)` where the module wrote to stderr before.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// How much a warning matters to an operator who asked for quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Why the command is slow right now (waiting for a lock), or what it does on
    /// purpose that the operator may not expect (an entry left out of a snapshot);
    /// `-q` hides it.
    Notice,
    /// Something is wrong or was not done; shown even with `-q`.
    Warning,
}

/// One thing the library tells the operator while a command goes on. `Display` is
/// the whole line as it is shown, `cbsnap:` prefix included.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// Waiting for the repository lock; `holders` describes each conflicting lock.
    LockWait { holders: Vec<String> },
    /// Waiting for another process to release the RocksDB index.
    IndexWait,
    /// The index at `dir` could not be opened (`cause`, RocksDB's words) and is
    /// being rebuilt from the packs.
    IndexRebuilt { dir: PathBuf, cause: String },
    /// The disk of the index at `dir` has `free` bytes free, fewer than opening it
    /// for writing may write (`needed`): a reading command opened it read-only, so
    /// packs it lacks are not added to it.
    IndexReadOnlyNoSpace {
        dir: PathBuf,
        free: u64,
        needed: u64,
    },
    /// The trailer of the pack at `path` could not be read (`cause`); its blobs
    /// are not indexed.
    PackUnreadable { path: PathBuf, cause: String },
    /// A file under `snapshots/` that is not a readable snapshot was skipped;
    /// `reason` is its [`SnapshotFileError`](crate::snapshot::SnapshotFileError),
    /// rendered (this module is a leaf that every layer may use).
    SnapshotSkipped { path: PathBuf, reason: String },
    /// `container` was to be stopped while its volume is read, but it was started
    /// with `docker run --rm` and Docker would delete it: it is paused instead (or
    /// left running when it cannot be paused); `consistency` is what the snapshot
    /// records then (`paused`, `live`).
    AutoRemoveNotStopped {
        container: String,
        consistency: String,
    },
    /// A tree blob (`tree`) of the parent snapshot, listing the directory `path` of
    /// the source (empty: its root), could not be read (`cause`): the snapshot reads
    /// the files below it again instead of taking them from the parent. When
    /// `damaged` (its stored copy failed its checks, rather than a read failing), a
    /// new tree of that id is stored again, not deduplicated against the damaged copy.
    ParentTreeUnreadable {
        path: String,
        tree: crate::id::Id,
        cause: String,
        damaged: bool,
    },
    /// The socket at `path` (in the snapshot) was left out of a tar stream, which has
    /// no entry type for one; a socket holds no data, and the service that owns it
    /// makes it again, so the stream is still whole (as GNU tar's "socket ignored").
    SocketLeftOut { path: PathBuf },
    /// The entry `path` of the source `source` is left out of its snapshot on
    /// purpose, `why` says why (it is the repository the snapshot writes to). The
    /// snapshot records it apart from its errors; nothing went wrong.
    LeftOut {
        source: String,
        path: String,
        why: String,
    },
    /// The Docker engine could not be asked (`cause`) whether running containers
    /// use the host directory `dir` that is being restored into; the restore goes
    /// on without that check.
    DirUsersUnknown { dir: PathBuf, cause: String },
    /// A line already worded by the library (a progress display with no bar to
    /// print above, an entry that could not be read), shown as it is.
    Line(String),
}

impl Warning {
    /// Whether `-q` hides it.
    pub fn level(&self) -> Level {
        match self {
            Warning::LockWait { .. } | Warning::IndexWait | Warning::LeftOut { .. } => {
                Level::Notice
            }
            _ => Level::Warning,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::LockWait { holders } => write!(
                f,
                "cbsnap: waiting for the repository lock ({})",
                holders.join("; ")
            ),
            Warning::IndexWait => f.write_str(
                "cbsnap: waiting for another cbsnap process to release the index",
            ),
            Warning::IndexRebuilt { dir, cause } => write!(
                f,
                "cbsnap: the index at {} is damaged ({cause}); rebuilding it from the packs",
                dir.display()
            ),
            Warning::IndexReadOnlyNoSpace { dir, free, needed } => write!(
                f,
                "cbsnap: warning: the disk of the index {} is nearly full ({free} bytes free; opening the index for writing may need {needed}): it is read read-only, and packs it does not list are not added. Free space there before the next snapshot.",
                dir.display()
            ),
            Warning::PackUnreadable { path, cause } => write!(
                f,
                "cbsnap: warning: pack {} is unreadable ({cause}); its blobs are not indexed. Run `cbsnap check`.",
                path.display()
            ),
            Warning::SnapshotSkipped { path, reason } => write!(
                f,
                "cbsnap: warning: snapshot file {} {reason}; skipped. Run `cbsnap check`.",
                path.display()
            ),
            Warning::AutoRemoveNotStopped { container, consistency } => write!(
                f,
                "cbsnap: warning: container {container} was started with `docker run --rm`, so stopping it would make Docker delete it: it is not stopped while its volume is read, and the snapshot is {consistency}, not stopped. Run it without --rm (a restart policy, or `docker compose up`) to have it stopped, or label it cbsnap.quiesce=pause to accept this"
            ),
            Warning::ParentTreeUnreadable {
                path,
                tree,
                cause,
                damaged,
            } => {
                let dir = if path.is_empty() { "/" } else { path.as_str() };
                let what = if *damaged {
                    "is damaged"
                } else {
                    "cannot be read"
                };
                write!(
                    f,
                    "cbsnap: warning: the parent snapshot's tree {tree} of {dir} {what} ({cause}); the files below it are read again"
                )?;
                if *damaged {
                    f.write_str(", and the tree is stored again if this snapshot has it")?;
                }
                f.write_str(". Run `cbsnap check`.")
            }
            Warning::SocketLeftOut { path } => write!(
                f,
                "cbsnap: warning: {}: a socket, which a tar stream cannot carry; left out",
                path.display()
            ),
            Warning::LeftOut { source, path, why } => {
                write!(f, "cbsnap: {source}: left out {path}: {why}")
            }
            Warning::DirUsersUnknown { dir, cause } => write!(
                f,
                "cbsnap: warning: could not ask the Docker engine whether running containers use {} ({cause}); restoring into it without that check",
                dir.display()
            ),
            Warning::Line(line) => f.write_str(line),
        }
    }
}

/// Where warnings go: installed once by the binary ([`install`]). Called from any
/// thread; must not block for long.
pub trait Sink: Send + Sync {
    /// Show (or drop) one warning.
    fn warn(&self, w: &Warning);
}

static SINK: RwLock<Option<Arc<dyn Sink>>> = RwLock::new(None);

thread_local! {
    /// Warnings collected by [`capture`] on this thread, innermost call last.
    static CAPTURED: RefCell<Option<Vec<Warning>>> = const { RefCell::new(None) };
}

/// Make `sink` the process's sink (replacing any earlier one).
pub fn install(sink: Arc<dyn Sink>) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
}

/// Hand `w` to the innermost [`capture`] running on this thread, else to the
/// installed sink, else drop it.
pub fn emit(w: Warning) {
    let w = match CAPTURED.with(|c| match c.borrow_mut().as_mut() {
        Some(list) => {
            list.push(w);
            None
        }
        None => Some(w),
    }) {
        Some(w) => w,
        None => return,
    };
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(sink) = sink {
        sink.warn(&w);
    }
}

/// Run `f`, collecting every warning emitted on this thread meanwhile instead of
/// passing it to the sink. Nested captures each get their own.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Warning>) {
    /// Puts the outer capture back when the call is over, even by a panic.
    struct Restore(Option<Vec<Warning>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            CAPTURED.with(|c| *c.borrow_mut() = outer);
        }
    }
    let _restore = Restore(CAPTURED.with(|c| c.borrow_mut().replace(Vec::new())));
    let r = f();
    let got = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn capture_collects_in_order_and_nests() {
        let (((), inner), outer) = capture(|| {
            emit(Warning::IndexWait);
            let r = capture(|| emit(Warning::Line("inner".into())));
            emit(Warning::Line("after".into()));
            r
        });
        assert_eq!(inner, [Warning::Line("inner".into())]);
        assert_eq!(outer, [Warning::IndexWait, Warning::Line("after".into())]);
        // Nothing is left captured once the call is over.
        assert!(CAPTURED.with(|c| c.borrow().is_none()));
    }

    #[test]
    fn a_capture_survives_a_panic_of_its_call() {
        let (_, outer) = capture(|| {
            let r = std::panic::catch_unwind(|| capture(|| panic!("boom")));
            assert!(r.is_err());
            emit(Warning::IndexWait);
        });
        assert_eq!(outer, [Warning::IndexWait]);
    }

    /// The installed sink gets what no capture takes, from any thread. One test
    /// installs a sink for the whole test binary; the others capture, so they do
    /// not see it.
    #[test]
    fn the_installed_sink_gets_warnings_of_other_threads() {
        struct Collect(Mutex<Vec<Warning>>);
        impl Sink for Collect {
            fn warn(&self, w: &Warning) {
                self.0.lock().unwrap().push(w.clone());
            }
        }
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        install(sink.clone());
        let path = PathBuf::from("/r/packs/ab/abcd");
        let w = Warning::PackUnreadable {
            path: path.clone(),
            cause: "truncated".into(),
        };
        let sent = w.clone();
        std::thread::spawn(move || emit(sent)).join().unwrap();
        let got = sink.0.lock().unwrap().clone();
        assert!(got.contains(&w), "{got:?}");
        assert_eq!(w.level(), Level::Warning);
        assert_eq!(Warning::LockWait { holders: vec![] }.level(), Level::Notice);
        assert!(w
            .to_string()
            .starts_with("cbsnap: warning: pack /r/packs/ab/abcd"));
    }
}
