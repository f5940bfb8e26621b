//! Durable file writes.
//!
//! The durability contract of the whole repository rests on one pair of functions:
//! [`temp_file`] creates a temporary file next to the target (through the `tempfile`
//! crate, which removes it when it is dropped unfinished), and [`persist`] fsyncs it,
//! renames it into place and fsyncs the directory. [`write_atomic`] is the pair for a
//! file written at once; packs use them for a file written piece by piece. When
//! `persist` returns `Ok`, the file is in stable storage under its final name with its
//! full contents; when it fails or the process dies, the final name either does not
//! exist or holds a complete older file, and at most a temporary file is left behind
//! (named `.tmp-*`, ignored by every reader and removed by the next writer that finds
//! its owner gone).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Prefix of temporary files; readers skip names that start with it.
pub const TMP_PREFIX: &str = ".tmp-";

/// A temporary file of another host (or of a cbsnap that did not record its host) is
/// removed only once it has not been written for this long: whether its process is
/// alive cannot be asked from here.
pub const FOREIGN_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// This host's name as it appears in temp file names (no `/` or `@`).
fn host_tag() -> String {
    crate::host::hostname().replace(['/', '@'], "_")
}

/// The start of the names of this process's temporary files: `.tmp-<pid>@<host>@`.
/// The host is part of the name so that a process on another host sharing the
/// repository never takes it for one of its own dead processes' files (issue 7,
/// case 12); [`remove_stale_temps`] reads both back.
fn temp_prefix() -> String {
    format!("{TMP_PREFIX}{}@{}@", std::process::id(), host_tag())
}

/// Random characters after [`temp_prefix`] (`tempfile` retries on a clash).
const TEMP_RANDOM_LEN: usize = 12;

/// A new temporary file in `dir`, private to its owner (0600), named
/// `.tmp-<pid>@<host>@<random>`. It is removed when dropped, unless [`persist`]ed.
pub fn temp_file(dir: &Path) -> io::Result<NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&temp_prefix())
        .rand_bytes(TEMP_RANDOM_LEN)
        .permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .tempfile_in(dir)
        .map_err(os_error)
}

/// The OS error number of `e`, also when a crate wrapped it: `tempfile` wraps the
/// errors of its files in its own private type to name the path, keeping only the
/// error's kind; the kinds cbsnap decides by are mapped back to their numbers
/// (ENOSPC: the disk is full, EDQUOT, EROFS, ENOTDIR, EACCES). Decide by this, never
/// by `raw_os_error` alone and never by message text.
pub fn os_code(e: &io::Error) -> Option<i32> {
    if let Some(code) = e.raw_os_error() {
        return Some(code);
    }
    e.get_ref()?;
    match e.kind() {
        io::ErrorKind::StorageFull => Some(libc::ENOSPC),
        io::ErrorKind::QuotaExceeded => Some(libc::EDQUOT),
        io::ErrorKind::ReadOnlyFilesystem => Some(libc::EROFS),
        io::ErrorKind::NotADirectory => Some(libc::ENOTDIR),
        io::ErrorKind::PermissionDenied => Some(libc::EACCES),
        _ => None,
    }
}

/// `e` as a plain OS error when it wraps one (see [`os_code`]); callers add the path
/// as context themselves.
fn os_error(e: io::Error) -> io::Error {
    match (e.raw_os_error(), os_code(&e)) {
        (None, Some(code)) => io::Error::from_raw_os_error(code),
        _ => e,
    }
}

/// A temporary name in `dir`, as [`temp_file`] names them, made by `make` (which
/// must create something there or fail with `AlreadyExists`, e.g. a hard link).
/// Removed when dropped, unless persisted.
pub fn temp_made_by<R>(
    dir: &Path,
    make: impl FnMut(&Path) -> io::Result<R>,
) -> io::Result<NamedTempFile<R>> {
    tempfile::Builder::new()
        .prefix(&temp_prefix())
        .rand_bytes(TEMP_RANDOM_LEN)
        .make_in(dir, make)
        .map_err(os_error)
}

/// Make a written temporary file durable under `path`: fsync it, rename it into
/// place and fsync the directory. When this returns `Ok`, `path` holds the full
/// contents in stable storage; on error the temporary file is removed and `path`
/// holds what it held before (or nothing).
pub fn persist(tmp: NamedTempFile, path: &Path) -> io::Result<File> {
    tmp.as_file().sync_all()?;
    // On error `PersistError` hands the temp file back; dropping it removes it.
    let f = tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(parent_dir(path))?;
    Ok(f)
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
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

/// The mount points of this process's mount namespace: field 5 of
/// `/proc/self/mountinfo` (proc(5)), its octal escapes (`\040` for a space) undone.
/// Empty where `/proc` cannot say.
pub fn mount_points() -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let Ok(text) = fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| {
            let mut out = Vec::with_capacity(field.len());
            let mut i = 0;
            while i < field.len() {
                let octal = field
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                match (field[i], octal) {
                    (b'\\', Some(d)) => {
                        out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                        i += 4;
                    }
                    (b, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// The mount points strictly below the directory `dir` (resolved through its
/// symlinks): what removing everything in `dir` would reach into. Empty when `dir`
/// cannot be resolved.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    mount_points()
        .into_iter()
        .filter(|m| m != &dir && m.starts_with(&dir))
        .collect()
}

/// Fsync a directory so that a rename or creation inside it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `data` to `path` atomically and durably (see the module docs).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = temp_file(parent_dir(path))?;
    tmp.write_all(data)?;
    persist(tmp, path).map(drop)
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
        let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
        let ours = parts.next() == Some(host.as_str());
        let stale = match pid {
            Some(pid) if ours => !crate::host::process_alive(pid),
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

/// `p` made absolute, `.` and `..` taken out, and its longest existing prefix
/// resolved through its symlinks: a directory that is not made yet compares by
/// where it will be.
pub fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let mut rest = Vec::new();
    let mut head = clean.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(head) {
            return rest.iter().rev().fold(real, |acc, name| acc.join(name));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                head = parent;
            }
            _ => return clean,
        }
    }
}

/// Remove the temporary files in `dir` of cbsnap processes of this host that are
/// gone (a restore killed or interrupted while writing there), and nothing else:
/// for a directory that holds an operator's own files, where a `.tmp-*` name not
/// made by [`temp_file`] on this host is theirs. Returns how many were removed.
pub fn remove_dead_temps(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let host = host_tag();
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
            continue;
        };
        let mut parts = rest.splitn(3, '@');
        let (Some(pid), Some(h), Some(random)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let dead = h == host
            && random.len() == TEMP_RANDOM_LEN
            && pid.parse().is_ok_and(|pid: u32| {
                pid != std::process::id() && !crate::host::process_alive(pid)
            });
        // Ours are regular files (a hard link to one included); a symlink is not.
        if dead && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_through_symlinks_and_dots_also_where_they_do_not_exist_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(real.join("ws")).unwrap();
        std::os::unix::fs::symlink(real.join("ws"), real.join("link")).unwrap();
        assert_eq!(resolved(&real.join("link")), real.join("ws"));
        assert_eq!(
            resolved(&real.join("link/new/deeper")),
            real.join("ws/new/deeper")
        );
        assert_eq!(resolved(&real.join("other/../ws/./x")), real.join("ws/x"));
    }

    /// Only this host's temporary files of a dead process go: not a live one's, not
    /// another host's, not a name of the operator's that merely starts with `.tmp-`.
    #[test]
    fn dead_temps_are_removed_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let host = host_tag();
        let random = "a".repeat(TEMP_RANDOM_LEN);
        // A pid above the kernel's limit (4194304) is never alive.
        let dead = format!("{TMP_PREFIX}4999999@{host}@{random}");
        let live = format!("{TMP_PREFIX}1@{host}@{random}");
        let other = format!("{TMP_PREFIX}4999999@elsewhere@{random}");
        for name in [dead.as_str(), &live, &other, ".tmp-notes", ".tmp-1@x"] {
            fs::write(d.path().join(name), b"x").unwrap();
        }
        // A symlink of that name is not one of ours.
        let link = format!("{TMP_PREFIX}4999998@{host}@{random}");
        std::os::unix::fs::symlink("/etc/passwd", d.path().join(&link)).unwrap();
        assert_eq!(remove_dead_temps(d.path()), 1);
        assert!(!d.path().join(&dead).exists());
        let left = fs::read_dir(d.path()).unwrap().count();
        assert_eq!(left, 5);
    }

    #[test]
    fn mount_points_include_the_root_and_nothing_is_below_a_plain_directory() {
        assert!(mount_points().contains(&PathBuf::from("/")));
        assert!(mounts_below(Path::new("/"))
            .iter()
            .any(|m| m == Path::new("/proc")));
        let d = tempfile::tempdir().unwrap();
        assert!(mounts_below(d.path()).is_empty());
    }

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

    /// A temp file dropped before `persist` (an error, a panic) leaves nothing; a
    /// persisted one is under its final name only, private to its owner.
    #[test]
    fn temp_files_are_private_and_cleaned_up() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mut t = temp_file(d.path()).unwrap();
        let name = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&temp_prefix()), "{name}");
        t.write_all(b"half").unwrap();
        drop(t);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        let mut t = temp_file(d.path()).unwrap();
        t.write_all(b"whole").unwrap();
        let p = d.path().join("f");
        persist(t, &p).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dead = d
            .path()
            .join(format!("{TMP_PREFIX}999999999@{}@x-0", host_tag()));
        let ours = temp_file(d.path()).unwrap();
        fs::write(&dead, b"x").unwrap();
        remove_stale_temps(d.path());
        assert!(!dead.exists());
        assert!(ours.path().exists());
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
