//! Repository locks: objects under `locks/`, so they travel with the repository and
//! work across hosts that share it (restic's approach, `doc/design.rst` "Locks"),
//! written and read through the repository's [`Storage`].
//!
//! Snapshot and restore take a *shared* lock; prune takes an *exclusive* one. A lock
//! is JSON: `{"kind","host","pid","time"}`, named `<kind>-<host>-<pid>-<n>`, created
//! with [`Storage::create_new`]. While a lock is held a thread refreshes it every
//! [`REFRESH`]. Staleness:
//! - a path repository keeps today's rules: the refresh touches the file's mtime; a
//!   lock whose process is dead on this host is removed at once, one from another
//!   host only when its file has not been refreshed for [`STALE_AFTER`];
//! - a remote repository cannot ask a pid on another host, nor touch an object: the
//!   refresh rewrites the lock with a new `time`, and any host's lock whose `time` is
//!   older than [`STALE_AFTER`] is stale (two containers may share a host name, so
//!   a pid is never judged there).
//!
//! Locks fail closed (restic's rules, issue 7 case 12): a file in `locks/` that cannot
//! be read or parsed blocks every other lock until an operator removes it
//! (`cbsnap unlock`), and a holder whose lock was not refreshed in time (a failed
//! refresh, a host that slept past [`STALE_AFTER`], a lock another host removed as
//! stale) learns it from [`Lock::check`] and stops before it commits.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::host::hostname;
use crate::storage::{self, Storage, StorageError};

/// How often a held lock is refreshed.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How soon a refresh that failed (a server error, a timeout) is tried again. The
/// lock is lost only when it is gone, or when no refresh has succeeded for
/// [`STALE_AFTER`] minus one [`REFRESH`] ([`Lock::check`]), as in restic.
pub const RETRY: Duration = Duration::from_secs(5);
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    kind: LockKind,
    host: String,
    pid: i32,
    time: String,
    /// [`crate::codec::json_check`] of the other fields. Absent in locks of cbsnap
    /// before repository format version 2 (accepted); older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
}

impl LockInfo {
    fn sealed(mut self) -> LockInfo {
        self.check = None;
        self.check = Some(crate::codec::json_check(&self));
        self
    }

    fn verified(&self) -> bool {
        let Some(check) = &self.check else {
            return true;
        };
        let bare = LockInfo {
            check: None,
            ..self.clone()
        };
        &crate::codec::json_check(&bare) == check
    }
}

/// Not a lock: the record of quiesced containers (see `docs/FORMAT.md`).
pub const QUIESCE_FILE: &str = "quiesced.json";

/// A held lock; released on drop.
pub struct Lock {
    storage: Arc<dyn Storage>,
    /// `locks/<name>`.
    key: String,
    /// Where the lock is, for messages (its file for a path repository).
    path: PathBuf,
    stop: Arc<AtomicBool>,
    refresh: Arc<RefreshState>,
}

/// What the refresher thread reports to the holder.
struct RefreshState {
    /// Wall-clock seconds of the last successful touch (wall clock, because other
    /// hosts judge staleness by the file's mtime, and a suspended host's monotonic
    /// clock stands still).
    last_ok: AtomicI64,
    /// The lock is gone (another host removed it as stale): lost for good.
    gone: AtomicBool,
    /// Why the refreshes since `last_ok` failed, if they did; they are retried.
    last_error: std::sync::Mutex<Option<String>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub use crate::error::LockLost;

impl Lock {
    /// Whether this process still holds its lock; to be called right before a
    /// commit (a snapshot file written, packs or snapshots deleted).
    ///
    /// Errors: [`LockLost`] when the file is gone, or the last successful refresh is
    /// older than [`STALE_AFTER`] minus one [`REFRESH`] (a margin for the time the
    /// commit itself takes): because the refreshes since failed, or the host slept.
    /// A refresh that failed and was retried in time loses nothing: no other host
    /// may remove a lock refreshed less than [`STALE_AFTER`] ago.
    pub fn check(&self) -> std::result::Result<(), LockLost> {
        // Asked now, not only by the refresher: another host may have removed it
        // since. A server that cannot be asked leaves the answer to the age below.
        if let Err(StorageError::NotFound { .. }) = self.storage.size(&self.key) {
            return Err(LockLost::Removed(self.path.clone()));
        }
        if self.refresh.gone.load(Ordering::SeqCst) {
            return Err(LockLost::Removed(self.path.clone()));
        }
        let age = now_secs() - self.refresh.last_ok.load(Ordering::SeqCst);
        let limit = STALE_AFTER.saturating_sub(REFRESH).as_secs();
        if age > limit as i64 {
            let failed = self
                .refresh
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(error) = failed {
                return Err(LockLost::RefreshFailed {
                    path: self.path.clone(),
                    age,
                    error,
                });
            }
            return Err(LockLost::Expired {
                path: self.path.clone(),
                age,
                limit,
            });
        }
        Ok(())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.storage.delete(&self.key);
    }
}

/// Whether a file in `locks/` is to be read as a lock: everything but hidden files
/// (temp files: `.tmp-…`; older cbsnap wrote `.quiesced.json.tmp.<pid>`) and the quiesce record. Any
/// other name that is not a readable lock blocks.
fn is_lock_name(name: &str) -> bool {
    !name.starts_with('.') && name != QUIESCE_FILE
}

/// Why a file in `locks/` is not a lock cbsnap can read. Such a file blocks every
/// other lock (locks fail closed) until `cbsnap unlock` removes it. The messages
/// follow the file's path.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableLock {
    /// It parses, but does not match its checksum.
    #[error("does not match its checksum (damaged)")]
    Checksum,
    /// It is not the JSON of a lock.
    #[error("is not a lock file cbsnap can read ({0})")]
    NotALock(#[source] serde_json::Error),
    /// Reading it failed (other than its being gone).
    #[error("cannot be read ({0})")]
    Io(#[source] std::io::Error),
}

/// Read a lock: `Ok(None)` if it is gone.
///
/// Errors: [`UnreadableLock`] when it cannot be read or is not a lock (such a file
/// blocks: locks fail closed).
fn read_lock(
    storage: &dyn Storage,
    key: &str,
) -> std::result::Result<Option<LockInfo>, UnreadableLock> {
    match storage.read(key) {
        Ok(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) if info.verified() => Ok(Some(info)),
            Ok(_) => Err(UnreadableLock::Checksum),
            Err(e) => Err(UnreadableLock::NotALock(e)),
        },
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(UnreadableLock::Io(std::io::Error::other(e))),
    }
}

/// Whether the lock `info` under `key` is stale (see the module docs): on a path, its
/// process is gone (a lock of this host) or its file has not been touched for
/// [`STALE_AFTER`]; on a remote repository, its `time` is older than [`STALE_AFTER`].
fn is_stale(storage: &dyn Storage, key: &str, info: &LockInfo, host: &str) -> bool {
    let age = match storage.local_root() {
        Some(root) => {
            if info.host == host {
                return !u32::try_from(info.pid).is_ok_and(crate::host::process_alive);
            }
            fs::metadata(root.join(key))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
        }
        None => chrono::DateTime::parse_from_rfc3339(&info.time)
            .ok()
            .and_then(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .ok()
            }),
    };
    age.is_some_and(|age| age > STALE_AFTER)
}

/// The lock keys under `locks/` (temp files and the quiesce record left out).
fn lock_keys(storage: &dyn Storage) -> Result<Vec<String>> {
    let listed = storage
        .list("locks/")
        .map_err(|e| crate::error::engine_error(storage, "list", e))?;
    let mut keys: Vec<String> = listed
        .into_iter()
        .map(|l| l.key)
        .filter(|k| {
            k.strip_prefix("locks/")
                .is_some_and(|name| !name.contains('/') && is_lock_name(name))
        })
        .collect();
    keys.sort();
    Ok(keys)
}

/// The cbsnap processes of this host, other than this one, that hold a lock on the
/// repository in `storage`, each as `pid N (its command line)`: who holds the index
/// when it is busy (a writer: readers let go of it once open). Lock files of other
/// hosts, of processes gone, or that cannot be read are left out; so is everything
/// when `locks/` cannot be listed.
pub fn local_holders(storage: &dyn Storage) -> Vec<String> {
    let host = hostname();
    let me = std::process::id();
    let Ok(keys) = lock_keys(storage) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| read_lock(storage, k).ok().flatten())
        .filter_map(|i| u32::try_from(i.pid).ok().filter(|_| i.host == host))
        .filter(|&pid| pid != me && crate::host::process_alive(pid))
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            if cmd.is_empty() {
                format!("pid {pid}")
            } else {
                format!("pid {pid} ({cmd})")
            }
        })
        .collect()
}

/// Other holders that conflict with `kind`, after clearing stale locks. Every lock
/// conflicts with a lock file that cannot be read.
fn conflicts(storage: &dyn Storage, kind: LockKind, own: &str) -> Result<Vec<String>> {
    let host = hostname();
    let mut out = Vec::new();
    for key in lock_keys(storage)? {
        if key == own {
            continue;
        }
        let path = storage::display_path(storage, &key);
        let info = match read_lock(storage, &key) {
            Ok(Some(info)) => info,
            // Removed between listing and reading: its holder let go.
            Ok(None) => continue,
            Err(why) => {
                out.push(format!(
                    "the lock file {} {why}; if no cbsnap is running on any host, remove it with `cbsnap unlock`",
                    path.display()
                ));
                continue;
            }
        };
        if is_stale(storage, &key, &info, &host) {
            let _ = storage.delete(&key);
            continue;
        }
        if kind == LockKind::Exclusive || info.kind == LockKind::Exclusive {
            out.push(format!(
                "{} lock held by pid {} on {} since {}",
                match info.kind {
                    LockKind::Shared => "a shared",
                    LockKind::Exclusive => "an exclusive",
                },
                info.pid,
                info.host,
                info.time
            ));
        }
    }
    Ok(out)
}

fn new_info(kind: LockKind) -> LockInfo {
    LockInfo {
        kind,
        host: hostname(),
        pid: std::process::id() as i32,
        time: chrono::Utc::now().to_rfc3339(),
        check: None,
    }
    .sealed()
}

/// Take a lock of `kind` in the repository `storage`, waiting up to `wait` for
/// conflicting holders.
///
/// Errors: [`Error::Locked`] naming the holders when `wait` passed; storage errors.
pub fn acquire(storage: &Arc<dyn Storage>, kind: LockKind, wait: Duration) -> Result<Lock> {
    let s: &dyn Storage = &**storage;
    let info = new_info(kind);
    let deadline = std::time::Instant::now() + wait;
    let mut announced = false;
    // Temp files of lock writes that a crash left behind.
    if let Some(root) = s.local_root() {
        fsutil::remove_stale_temps(&root.join("locks"));
    }
    loop {
        let key = format!(
            "locks/{}-{}-{}-{}",
            match kind {
                LockKind::Shared => "shared",
                LockKind::Exclusive => "exclusive",
            },
            info.host.replace(['/', '\\'], "_"),
            info.pid,
            crate::id::random_hex(4)
        );
        let path = storage::display_path(s, &key);
        let body = serde_json::to_vec(&info).expect("lock info serializes");
        // Publish first, then look: two processes racing each see the other's lock, so
        // at worst both back off and retry, never both proceed.
        match s.create_new(&key, &body) {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(crate::error::engine_error(s, "write lock", e)),
        }
        let others = match conflicts(s, kind, &key) {
            Ok(o) => o,
            Err(e) => {
                let _ = s.delete(&key);
                return Err(e);
            }
        };
        if others.is_empty() {
            let stop = Arc::new(AtomicBool::new(false));
            let refresh = Arc::new(RefreshState {
                last_ok: AtomicI64::new(now_secs()),
                gone: AtomicBool::new(false),
                last_error: std::sync::Mutex::new(None),
            });
            spawn_refresher(
                storage.clone(),
                key.clone(),
                kind,
                stop.clone(),
                refresh.clone(),
            );
            return Ok(Lock {
                storage: storage.clone(),
                key,
                path,
                stop,
                refresh,
            });
        }
        let _ = s.delete(&key);
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked(format!(
                "the repository is locked: {}.\nWait for that command to finish. If its process is gone and the lock is from another host, it expires {} min after its last refresh; or remove the file under {} by hand.",
                others.join("; "),
                STALE_AFTER.as_secs() / 60,
                storage::display_path(s, "locks").display()
            )));
        }
        if !announced {
            crate::warn::emit(crate::warn::Warning::LockWait { holders: others });
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One refresh of the lock `key`. Only a lock that is still there is refreshed:
/// re-creating a lock another host removed as stale would hide that it was lost. On a
/// path the file's mtime is touched; a remote lock is rewritten with a new `time`
/// (between the existence check and the write another host could remove it as
/// stale; it then reappears with a fresh time, which is what that host waits for).
fn refresh_once(storage: &dyn Storage, key: &str, kind: LockKind) -> Refresh {
    match storage.local_root() {
        Some(root) => {
            let path = root.join(key);
            match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Refresh::Gone,
                Err(e) => return Refresh::Failed(e.to_string()),
                Ok(_) => {}
            }
            match filetime::set_file_mtime(&path, filetime::FileTime::now()) {
                Ok(()) => Refresh::Done,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Refresh::Gone,
                Err(e) => Refresh::Failed(e.to_string()),
            }
        }
        None => {
            match storage.size(key) {
                Err(StorageError::NotFound { .. }) => return Refresh::Gone,
                Err(e) => return Refresh::Failed(e.to_string()),
                Ok(_) => {}
            }
            let info = serde_json::to_vec(&new_info(kind)).expect("lock info serializes");
            match storage.write(key, &info) {
                Ok(()) => Refresh::Done,
                Err(e) => Refresh::Failed(e.to_string()),
            }
        }
    }
}

/// What one refresh found.
enum Refresh {
    Done,
    /// The lock is no longer there: lost.
    Gone,
    /// It could not be refreshed this time (why); tried again after [`RETRY`].
    Failed(String),
}

fn spawn_refresher(
    storage: Arc<dyn Storage>,
    key: String,
    kind: LockKind,
    stop: Arc<AtomicBool>,
    state: Arc<RefreshState>,
) {
    std::thread::spawn(move || {
        let mut retry_at = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            // By the wall clock: after a suspend, refresh (and learn of a lost lock) at once.
            let due = now_secs() - state.last_ok.load(Ordering::SeqCst) >= REFRESH.as_secs() as i64;
            if !due || std::time::Instant::now() < retry_at {
                continue;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let last_error = |e: Option<String>| {
                *state.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
            };
            match refresh_once(&*storage, &key, kind) {
                Refresh::Done => {
                    state.last_ok.store(now_secs(), Ordering::SeqCst);
                    last_error(None);
                }
                Refresh::Gone => {
                    state.gone.store(true, Ordering::SeqCst);
                    break;
                }
                Refresh::Failed(e) => {
                    last_error(Some(e));
                    retry_at = std::time::Instant::now() + RETRY;
                }
            }
        }
    });
}

/// What [`unlock`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unlocked {
    /// Lock files of dead processes on this host, or stale ones of other hosts.
    pub stale: Vec<PathBuf>,
    /// Files in `locks/` that could not be read as locks.
    pub unreadable: Vec<PathBuf>,
    /// Live locks, removed because `all` was asked.
    pub live: Vec<PathBuf>,
}

/// Remove the locks of the repository `storage` that block without a live holder: stale locks and
/// files that are not readable locks. With `all`, every lock file (only for when no
/// cbsnap runs on any host that shares the repository). The quiesce record is left.
///
/// Errors: listing `dir` or removing a file failed.
pub fn unlock(storage: &dyn Storage, all: bool) -> Result<Unlocked> {
    let host = hostname();
    let mut out = Unlocked::default();
    if let Some(root) = storage.local_root() {
        fsutil::remove_stale_temps(&root.join("locks"));
    }
    for key in lock_keys(storage)? {
        let bucket = match read_lock(storage, &key) {
            Ok(None) => continue,
            Err(_) => &mut out.unreadable,
            Ok(Some(info)) => {
                if is_stale(storage, &key, &info, &host) {
                    &mut out.stale
                } else if all {
                    &mut out.live
                } else {
                    continue;
                }
            }
        };
        storage
            .delete(&key)
            .map_err(|e| crate::error::engine_error(storage, "remove lock", e))?;
        bucket.push(storage::display_path(storage, &key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Local;
    use std::path::Path;

    /// A path repository in `d` and its `locks/` directory.
    fn repo(d: &Path) -> (Arc<dyn Storage>, PathBuf) {
        let locks = d.join("locks");
        fs::create_dir_all(&locks).unwrap();
        (Arc::new(Local::new(d)), locks)
    }

    #[test]
    fn shared_locks_coexist_exclusive_waits() {
        let d = tempfile::tempdir().unwrap();
        let (s, _locks) = repo(d.path());
        let a = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        let _b = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        let e = acquire(&s, LockKind::Exclusive, Duration::ZERO);
        assert!(matches!(e, Err(Error::Locked(_))));
        drop(a);
        drop(_b);
        let _x = acquire(&s, LockKind::Exclusive, Duration::ZERO).unwrap();
        assert!(matches!(
            acquire(&s, LockKind::Shared, Duration::ZERO),
            Err(Error::Locked(_))
        ));
    }

    /// Issue 7, case 12: a lock file that cannot be parsed blocks, with advice;
    /// `unlock` removes it.
    #[test]
    fn unparsable_lock_blocks_until_unlocked() {
        let d = tempfile::tempdir().unwrap();
        let (s, locks) = repo(d.path());
        fs::write(locks.join("exclusive-h-1-2"), b"{\"kind\": \"excl").unwrap();
        fs::write(locks.join(QUIESCE_FILE), b"{}").unwrap();
        fs::write(locks.join(".quiesced.json.tmp.99"), b"{").unwrap();
        let e = acquire(&s, LockKind::Shared, Duration::ZERO);
        let Err(Error::Locked(msg)) = e else {
            panic!("an unparsable lock was ignored");
        };
        assert!(msg.contains("cbsnap unlock"), "{msg}");
        let u = unlock(&*s, false).unwrap();
        assert_eq!(u.unreadable, [locks.join("exclusive-h-1-2")]);
        assert!(locks.join(QUIESCE_FILE).exists());
        let _l = acquire(&s, LockKind::Exclusive, Duration::ZERO).unwrap();
    }

    /// Issue 7, case 12: a lock whose file was removed, or not refreshed for the
    /// stale time, is reported lost by `check`.
    #[test]
    fn lost_lock_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let (s, _locks) = repo(d.path());
        let l = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        l.check().unwrap();
        let past = SystemTime::now() - STALE_AFTER;
        l.refresh.last_ok.store(
            past.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
            Ordering::SeqCst,
        );
        assert!(matches!(l.check(), Err(LockLost::Expired { .. })));
        l.refresh.last_ok.store(now_secs(), Ordering::SeqCst);
        fs::remove_file(&l.path).unwrap();
        assert!(matches!(l.check(), Err(LockLost::Removed(_))));
        l.refresh.last_ok.store(0, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            l.refresh.gone.load(Ordering::SeqCst),
            "the refresher saw it"
        );
        assert!(!l.path.exists(), "the refresher did not re-create it");
    }

    /// A remote repository (no local root) whose server can be made to fail every
    /// request, as S3 does during an outage.
    #[derive(Debug)]
    struct Flaky {
        inner: Local,
        down: AtomicBool,
    }

    impl Flaky {
        fn check(&self, key: &str) -> std::result::Result<(), StorageError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StorageError::Transient {
                    key: key.to_string(),
                    source: "503 Slow Down".into(),
                });
            }
            Ok(())
        }
    }

    impl Storage for Flaky {
        fn location(&self) -> String {
            "flaky-test://".into()
        }
        fn read(&self, key: &str) -> std::result::Result<Vec<u8>, StorageError> {
            self.check(key)?;
            self.inner.read(key)
        }
        fn read_range(
            &self,
            key: &str,
            offset: u64,
            len: u64,
        ) -> std::result::Result<Vec<u8>, StorageError> {
            self.check(key)?;
            self.inner.read_range(key, offset, len)
        }
        fn write(&self, key: &str, bytes: &[u8]) -> std::result::Result<(), StorageError> {
            self.check(key)?;
            self.inner.write(key, bytes)
        }
        fn write_file(&self, key: &str, local: &Path) -> std::result::Result<(), StorageError> {
            self.check(key)?;
            self.inner.write_file(key, local)
        }
        fn create_new(&self, key: &str, bytes: &[u8]) -> std::result::Result<(), StorageError> {
            self.check(key)?;
            self.inner.create_new(key, bytes)
        }
        fn list(&self, prefix: &str) -> std::result::Result<Vec<storage::Listed>, StorageError> {
            self.check(prefix)?;
            self.inner.list(prefix)
        }
        fn size(&self, key: &str) -> std::result::Result<u64, StorageError> {
            self.check(key)?;
            self.inner.size(key)
        }
        fn delete(&self, key: &str) -> std::result::Result<(), StorageError> {
            self.check(key)?;
            self.inner.delete(key)
        }
        fn local_root(&self) -> Option<&Path> {
            None
        }
    }

    /// A refresh that fails during a short server outage is tried again: the lock is
    /// not lost (it was, for the rest of the run, by one failed request). Lost only
    /// when no refresh has succeeded for the stale time, which names the error.
    #[test]
    fn a_refresh_that_fails_once_is_retried_and_the_lock_kept() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("locks")).unwrap();
        let flaky = Arc::new(Flaky {
            inner: Local::new(d.path()),
            down: AtomicBool::new(false),
        });
        let s: Arc<dyn Storage> = flaky.clone();
        let l = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        let due = |l: &Lock| {
            l.refresh
                .last_ok
                .store(now_secs() - REFRESH.as_secs() as i64 - 1, Ordering::SeqCst)
        };

        // The server fails the refresh that is due, and the check before a commit.
        flaky.down.store(true, Ordering::SeqCst);
        due(&l);
        std::thread::sleep(Duration::from_millis(1200));
        let failed = l.refresh.last_error.lock().unwrap().clone();
        assert!(
            failed.is_some_and(|e| e.contains("503")),
            "a refresh was tried"
        );
        l.check()
            .expect("one failed refresh does not lose the lock");

        // It comes back: the refresh is retried and succeeds.
        flaky.down.store(false, Ordering::SeqCst);
        let start = std::time::Instant::now();
        while l.refresh.last_error.lock().unwrap().is_some() {
            assert!(start.elapsed() < RETRY * 3, "the refresh was never retried");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(now_secs() - l.refresh.last_ok.load(Ordering::SeqCst) < 5);
        l.check().unwrap();

        // Down for longer than the stale time: lost, naming the error.
        flaky.down.store(true, Ordering::SeqCst);
        l.refresh
            .last_ok
            .store(now_secs() - STALE_AFTER.as_secs() as i64, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1200));
        let e = l.check().unwrap_err();
        assert!(
            matches!(&e, LockLost::RefreshFailed { error, .. } if error.contains("503")),
            "{e}"
        );
        flaky.down.store(false, Ordering::SeqCst);
    }

    /// Issue 7, case 13 (kind): a lock file is verifiable; one flipped digit blocks.
    #[test]
    fn damaged_lock_blocks() {
        let d = tempfile::tempdir().unwrap();
        let (s, locks) = repo(d.path());
        let l = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        let text = fs::read_to_string(&l.path).unwrap();
        let pid = std::process::id().to_string();
        let flipped = pid.replacen(&pid[..1], if &pid[..1] == "1" { "2" } else { "1" }, 1);
        let bad = locks.join("shared-x-1-1");
        fs::write(
            &bad,
            text.replace(&format!("\"pid\":{pid}"), &format!("\"pid\":{flipped}")),
        )
        .unwrap();
        let e = acquire(&s, LockKind::Exclusive, Duration::ZERO);
        let Err(Error::Locked(msg)) = e else {
            panic!("a damaged lock was not noticed")
        };
        assert!(
            msg.contains("shared-x-1-1") && msg.contains("checksum"),
            "{msg}"
        );
        // A lock of an older cbsnap, without a checksum, is read as before.
        fs::remove_file(&bad).unwrap();
        fs::write(
            &bad,
            format!(
                "{{\"kind\":\"shared\",\"host\":\"{}\",\"pid\":{pid},\"time\":\"t\"}}",
                hostname()
            ),
        )
        .unwrap();
        let e = acquire(&s, LockKind::Exclusive, Duration::ZERO);
        let Err(Error::Locked(msg)) = e else {
            panic!("a live lock was ignored")
        };
        assert!(msg.contains("a shared lock held by pid"), "{msg}");
    }

    #[test]
    fn stale_lock_temps_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let (s, locks) = repo(d.path());
        let dead = locks.join(format!(
            "{}999999999@{}@x-0",
            fsutil::TMP_PREFIX,
            hostname()
        ));
        fs::write(&dead, b"x").unwrap();
        let _l = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        assert!(!dead.exists());
    }

    #[test]
    fn lock_of_dead_process_is_cleared() {
        let d = tempfile::tempdir().unwrap();
        let (s, locks) = repo(d.path());
        let info = LockInfo {
            kind: LockKind::Exclusive,
            host: hostname(),
            pid: 999_999_999,
            time: "then".into(),
            check: None,
        }
        .sealed();
        fs::write(
            locks.join("exclusive-x"),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        let _l = acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
        assert!(!locks.join("exclusive-x").exists());
    }
}
