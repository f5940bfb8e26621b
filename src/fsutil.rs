//! Durable file writes.
//!
//! The durability contract of the whole repository rests on one function:
//! [`write_atomic`] writes a file under a temporary name, fsyncs it, renames it into
//! place and fsyncs the directory. When it returns `Ok`, the file is in stable storage
//! under its final name with its full contents; when it fails or the process dies, the
//! final name either does not exist or holds a complete older file, and at most a
//! temporary file is left behind (named `.tmp-*`, ignored by every reader and removed
//! by the next writer that finds its owner gone).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Prefix of temporary files; readers skip names that start with it.
pub const TMP_PREFIX: &str = ".tmp-";

/// A temporary file of another host (or of a cbsnap that did not record its host) is
/// removed only once it has not been written for this long: whether its process is
/// alive cannot be asked from here.
pub const FOREIGN_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// This host's name as it appears in temp file names (no `/` or `@`).
fn host_tag() -> String {
    gethostname::gethostname()
        .to_string_lossy()
        .replace(['/', '@'], "_")
}

/// Name for a temporary file in `dir` owned by this process:
/// `.tmp-<pid>@<host>@<random>-<n>`. The host is part of the name so that a process
/// on another host sharing the repository never takes it for one of its own dead
/// processes' files (issue 7, case 12).
pub fn temp_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "{TMP_PREFIX}{}@{}@{}-{n}",
        std::process::id(),
        host_tag(),
        rand_suffix()
    ))
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", t & 0xffff_ffff)
}

/// Mode of every file cbsnap creates in a repository: only its owner may read it
/// (restic's choice; the data is every volume's content).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every directory cbsnap creates in a repository or restore target.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// `create_dir_all`, creating missing directories private to the owner (0700).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Files and directories below `root` that users other than the owner can read
/// (any group or other permission bit), sorted; symlinks are not followed.
pub fn readable_by_others(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.file_type().is_symlink() {
            continue;
        }
        if md.mode() & 0o044 != 0 {
            found.push(p.clone());
        }
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    found.sort();
    found
}

/// Fsync a directory so that a rename or creation inside it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `data` to `path` atomically and durably (see the module docs).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(dir);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Finish a temporary file that the caller has written and fsynced: rename it to
/// `path` and fsync the directory.
pub fn commit_temp(tmp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(tmp, path)?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Remove temporary files in `dir` left by processes of this host that are gone, and
/// those of other hosts (or without a host) untouched for [`FOREIGN_TEMP_AGE`].
pub fn remove_stale_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let host = host_tag();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
            continue;
        };
        let mut parts = rest.splitn(3, '@');
        let pid: Option<i32> = parts.next().and_then(|p| p.parse().ok());
        let ours = parts.next() == Some(host.as_str());
        let stale = match pid {
            Some(pid) if ours => !process_alive(pid),
            _ => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > FOREIGN_TEMP_AGE),
        };
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether a process with this pid exists on this host.
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dead = d
            .path()
            .join(format!("{TMP_PREFIX}999999999@{}@x-0", host_tag()));
        let ours = temp_path(d.path());
        fs::write(&dead, b"x").unwrap();
        fs::write(&ours, b"x").unwrap();
        remove_stale_temps(d.path());
        assert!(!dead.exists());
        assert!(ours.exists());
    }

    /// Issue 7, case 12: a pack in progress on another host (the same pid as a dead
    /// process here, or a name without a host) is left alone until it is a day old.
    #[test]
    fn temps_of_other_hosts_are_left_until_old() {
        let d = tempfile::tempdir().unwrap();
        let other = d
            .path()
            .join(format!("{TMP_PREFIX}999999999@other-host@x-0"));
        let legacy = d.path().join(format!("{TMP_PREFIX}999999999-x-0"));
        let old = d
            .path()
            .join(format!("{TMP_PREFIX}999999998@other-host@x-0"));
        for p in [&other, &legacy, &old] {
            fs::write(p, b"x").unwrap();
        }
        let t = filetime::FileTime::from_unix_time(
            filetime::FileTime::now().unix_seconds() - FOREIGN_TEMP_AGE.as_secs() as i64 - 60,
            0,
        );
        filetime::set_file_mtime(&old, t).unwrap();
        remove_stale_temps(d.path());
        assert!(other.exists() && legacy.exists());
        assert!(!old.exists());
    }
}
