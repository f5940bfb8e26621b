//! Repository locks: files under `locks/`, so they travel with the repository and work
//! across hosts that share it (restic's approach, `doc/design.rst` "Locks").
//!
//! Snapshot and restore take a *shared* lock; prune takes an *exclusive* one. A lock
//! file is JSON: `{"kind","host","pid","time"}`, named `<kind>-<host>-<pid>-<n>`.
//! While a lock is held a thread touches its file every [`REFRESH`]; a lock whose
//! process is dead on this host is removed at once, one from another host only when
//! it has not been refreshed for [`STALE_AFTER`].

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

pub const REFRESH: Duration = Duration::from_secs(60);
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    kind: LockKind,
    host: String,
    pid: i32,
    time: String,
}

/// A held lock; released on drop.
pub struct Lock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = fs::remove_file(&self.path);
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Other holders that conflict with `kind`, after clearing stale locks.
fn conflicts(dir: &Path, kind: LockKind, own: &Path) -> Result<Vec<String>> {
    let host = hostname();
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        let path = e.path();
        let name = e.file_name();
        if path == own || name.to_string_lossy().starts_with(fsutil::TMP_PREFIX) {
            continue;
        }
        let Ok(bytes) = fs::read(&path) else { continue };
        let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) else {
            continue;
        };
        let stale = if info.host == host {
            !fsutil::process_alive(info.pid)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_AFTER)
        };
        if stale {
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
    };
    let name = format!(
        "{}-{}-{}-{}",
        match kind {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        },
        info.host.replace('/', "_"),
        info.pid,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let path = dir.join(name);
    let body = serde_json::to_vec(&info).expect("lock info serializes");
    let deadline = std::time::Instant::now() + wait;
    let mut announced = false;
    loop {
        // Publish first, then look: two processes racing each see the other's file, so
        // at worst both back off and retry, never both proceed.
        fsutil::write_atomic(&path, &body).ctx(|| format!("write lock {}", path.display()))?;
        let others = conflicts(dir, kind, &path)?;
        if others.is_empty() {
            let stop = Arc::new(AtomicBool::new(false));
            spawn_refresher(path.clone(), stop.clone());
            return Ok(Lock { path, stop });
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
            eprintln!(
                "cbsnap: waiting for the repository lock ({})",
                others.join("; ")
            );
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn_refresher(path: PathBuf, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut last = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            if last.elapsed() >= REFRESH {
                let _ = filetime::set_file_mtime(&path, filetime::FileTime::now());
                last = std::time::Instant::now();
            }
        }
    });
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

    #[test]
    fn lock_of_dead_process_is_cleared() {
        let d = tempfile::tempdir().unwrap();
        let info = LockInfo {
            kind: LockKind::Exclusive,
            host: hostname(),
            pid: 999_999_999,
            time: "then".into(),
        };
        fs::write(
            d.path().join("exclusive-x"),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        let _l = acquire(d.path(), LockKind::Shared, Duration::ZERO).unwrap();
        assert!(!d.path().join("exclusive-x").exists());
    }
}
