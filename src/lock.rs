//! Repository locks: files under `locks/`, so they travel with the repository and work
//! across hosts that share it (restic's approach, `doc/design.rst` "Locks").
//!
//! Snapshot and restore take a *shared* lock; prune takes an *exclusive* one. A lock
//! file is JSON: `{"kind","host","pid","time"}`, named `<kind>-<host>-<pid>-<n>`.
//! While a lock is held a thread touches its file every [`REFRESH`]; a lock whose
//! process is dead on this host is removed at once, one from another host only when
//! it has not been refreshed for [`STALE_AFTER`].
//!
//! Locks fail closed (restic's rules, issue 7 case 12): a file in `locks/` that cannot
//! be read or parsed blocks every other lock until an operator removes it
//! (`cbsnap unlock`), and a holder whose file was not refreshed in time (a failed
//! touch, a host that slept past [`STALE_AFTER`], a file another host removed as
//! stale) learns it from [`Lock::check`] and stops before it commits.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::host::hostname;

pub const REFRESH: Duration = Duration::from_secs(60);
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
    /// A touch failed: the file is gone or cannot be written.
    failed: AtomicBool,
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
    /// Errors: [`LockLost`] when the file is gone, a refresh failed, or the last
    /// refresh is older than [`STALE_AFTER`] minus one [`REFRESH`] (a margin for the
    /// time the commit itself takes).
    pub fn check(&self) -> std::result::Result<(), LockLost> {
        if !self.path.exists() {
            return Err(LockLost::Removed(self.path.clone()));
        }
        if self.refresh.failed.load(Ordering::SeqCst) {
            return Err(LockLost::RefreshFailed(self.path.clone()));
        }
        let age = now_secs() - self.refresh.last_ok.load(Ordering::SeqCst);
        let limit = STALE_AFTER.saturating_sub(REFRESH).as_secs();
        if age > limit as i64 {
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
        let _ = fs::remove_file(&self.path);
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

/// Read a lock file: `Ok(None)` if it is gone.
///
/// Errors: [`UnreadableLock`] when it cannot be read or is not a lock.
fn read_lock(path: &Path) -> std::result::Result<Option<LockInfo>, UnreadableLock> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) if info.verified() => Ok(Some(info)),
            Ok(_) => Err(UnreadableLock::Checksum),
            Err(e) => Err(UnreadableLock::NotALock(e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UnreadableLock::Io(e)),
    }
}

/// Other holders that conflict with `kind`, after clearing stale locks. Every lock
/// conflicts with a lock file that cannot be read.
/// Whether the lock `info`, read from the directory entry `e`, is stale: its process
/// is gone (a lock of this host), or it has not been refreshed for [`STALE_AFTER`]
/// (another host's, judged by the file's mtime, which the refresher touches).
fn is_stale(info: &LockInfo, host: &str, e: &fs::DirEntry) -> bool {
    if info.host == host {
        return !u32::try_from(info.pid).is_ok_and(crate::host::process_alive);
    }
    e.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

fn conflicts(dir: &Path, kind: LockKind, own: &Path) -> Result<Vec<String>> {
    let host = hostname();
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        let path = e.path();
        let name = e.file_name();
        if path == own || !is_lock_name(&name.to_string_lossy()) {
            continue;
        }
        let info = match read_lock(&path) {
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
        if is_stale(&info, &host, &e) {
            let _ = fs::remove_file(&path);
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

/// Take a lock of `kind` in `dir`, waiting up to `wait` for conflicting holders.
pub fn acquire(dir: &Path, kind: LockKind, wait: Duration) -> Result<Lock> {
    let info = LockInfo {
        kind,
        host: hostname(),
        pid: std::process::id() as i32,
        time: chrono::Utc::now().to_rfc3339(),
        check: None,
    }
    .sealed();
    let name = format!(
        "{}-{}-{}-{}",
        match kind {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        },
        info.host.replace('/', "_"),
        info.pid,
        crate::id::random_hex(4)
    );
    let path = dir.join(name);
    let body = serde_json::to_vec(&info).expect("lock info serializes");
    let deadline = std::time::Instant::now() + wait;
    let mut announced = false;
    // Temp files of lock writes that a crash left behind.
    fsutil::remove_stale_temps(dir);
    loop {
        // Publish first, then look: two processes racing each see the other's file, so
        // at worst both back off and retry, never both proceed.
        fsutil::write_atomic(&path, &body).ctx(|| format!("write lock {}", path.display()))?;
        let others = conflicts(dir, kind, &path)?;
        if others.is_empty() {
            let stop = Arc::new(AtomicBool::new(false));
            let refresh = Arc::new(RefreshState {
                last_ok: AtomicI64::new(now_secs()),
                failed: AtomicBool::new(false),
            });
            spawn_refresher(path.clone(), stop.clone(), refresh.clone());
            return Ok(Lock {
                path,
                stop,
                refresh,
            });
        }
        let _ = fs::remove_file(&path);
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked(format!(
                "the repository is locked: {}.\nWait for that command to finish. If its process is gone and the lock is from another host, it expires {} min after its last refresh; or remove the file under {} by hand.",
                others.join("; "),
                STALE_AFTER.as_secs() / 60,
                dir.display()
            )));
        }
        if !announced {
            crate::warn::emit(crate::warn::Warning::LockWait { holders: others });
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn_refresher(path: PathBuf, stop: Arc<AtomicBool>, state: Arc<RefreshState>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            // By the wall clock: after a suspend, refresh (and learn of a lost lock) at once.
            if now_secs() - state.last_ok.load(Ordering::SeqCst) >= REFRESH.as_secs() as i64 {
                // Touch only a file that is still there: re-creating a lock another
                // host removed as stale would hide that it was lost.
                let ok = path.is_file()
                    && filetime::set_file_mtime(&path, filetime::FileTime::now()).is_ok();
                if ok {
                    state.last_ok.store(now_secs(), Ordering::SeqCst);
                } else {
                    state.failed.store(true, Ordering::SeqCst);
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

/// Remove the lock files in `dir` that block without a live holder: stale locks and
/// files that are not readable locks. With `all`, every lock file (only for when no
/// cbsnap runs on any host that shares the repository). The quiesce record is left.
///
/// Errors: listing `dir` or removing a file failed.
pub fn unlock(dir: &Path, all: bool) -> Result<Unlocked> {
    let host = hostname();
    let mut out = Unlocked::default();
    fsutil::remove_stale_temps(dir);
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        let path = e.path();
        if !is_lock_name(&e.file_name().to_string_lossy()) {
            continue;
        }
        let bucket = match read_lock(&path) {
            Ok(None) => continue,
            Err(_) => &mut out.unreadable,
            Ok(Some(info)) => {
                if is_stale(&info, &host, &e) {
                    &mut out.stale
                } else if all {
                    &mut out.live
                } else {
                    continue;
                }
            }
        };
        match fs::remove_file(&path) {
            Ok(()) => bucket.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io_path("remove lock", &path, err)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_exclusive_waits() {
        let d = tempfile::tempdir().unwrap();
        let a = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
        let _b = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
        let e = acquire(d.path(), LockKind::Exclusive, Duration::ZERO);
        assert!(matches!(e, Err(Error::Locked(_))));
        drop(a);
        drop(_b);
        let _x = acquire(d.path(), LockKind::Exclusive, Duration::ZERO).unwrap();
        assert!(matches!(
            acquire(d.path(), LockKind::Shared, Duration::ZERO),
            Err(Error::Locked(_))
        ));
    }

    /// Issue 7, case 12: a lock file that cannot be parsed blocks, with advice;
    /// `unlock` removes it.
    #[test]
    fn unparsable_lock_blocks_until_unlocked() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("exclusive-h-1-2"), b"{\"kind\": \"excl").unwrap();
        fs::write(d.path().join(QUIESCE_FILE), b"{}").unwrap();
        fs::write(d.path().join(".quiesced.json.tmp.99"), b"{").unwrap();
        let e = acquire(d.path(), LockKind::Shared, Duration::ZERO);
        let Err(Error::Locked(msg)) = e else {
            panic!("an unparsable lock was ignored");
        };
        assert!(msg.contains("cbsnap unlock"), "{msg}");
        let u = unlock(d.path(), false).unwrap();
        assert_eq!(u.unreadable, [d.path().join("exclusive-h-1-2")]);
        assert!(d.path().join(QUIESCE_FILE).exists());
        let _l = acquire(d.path(), LockKind::Exclusive, Duration::ZERO).unwrap();
    }

    /// Issue 7, case 12: a lock whose file was removed, or not refreshed for the
    /// stale time, is reported lost by `check`.
    #[test]
    fn lost_lock_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let l = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
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
            l.refresh.failed.load(Ordering::SeqCst),
            "the refresher saw it"
        );
        assert!(!l.path.exists(), "the refresher did not re-create it");
    }

    /// Issue 7, case 13 (kind): a lock file is verifiable; one flipped digit blocks.
    #[test]
    fn damaged_lock_blocks() {
        let d = tempfile::tempdir().unwrap();
        let l = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
        let text = fs::read_to_string(&l.path).unwrap();
        let pid = std::process::id().to_string();
        let flipped = pid.replacen(&pid[..1], if &pid[..1] == "1" { "2" } else { "1" }, 1);
        let bad = d.path().join("shared-x-1-1");
        fs::write(
            &bad,
            text.replace(&format!("\"pid\":{pid}"), &format!("\"pid\":{flipped}")),
        )
        .unwrap();
        let e = acquire(d.path(), LockKind::Exclusive, Duration::ZERO);
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
        let e = acquire(d.path(), LockKind::Exclusive, Duration::ZERO);
        let Err(Error::Locked(msg)) = e else {
            panic!("a live lock was ignored")
        };
        assert!(msg.contains("a shared lock held by pid"), "{msg}");
    }

    #[test]
    fn stale_lock_temps_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dead = d.path().join(format!(
            "{}999999999@{}@x-0",
            fsutil::TMP_PREFIX,
            hostname()
        ));
        fs::write(&dead, b"x").unwrap();
        let _l = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
        assert!(!dead.exists());
    }

    #[test]
    fn lock_of_dead_process_is_cleared() {
        let d = tempfile::tempdir().unwrap();
        let info = LockInfo {
            kind: LockKind::Exclusive,
            host: hostname(),
            pid: 999_999_999,
            time: "then".into(),
            check: None,
        }
        .sealed();
        fs::write(
            d.path().join("exclusive-x"),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        let _l = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
        assert!(!d.path().join("exclusive-x").exists());
    }
}
