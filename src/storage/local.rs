//! The path backend: a repository in a local (or mounted) directory, laid out exactly
//! as before the storage trait existed (`docs/FORMAT.md`), with the same durability.
//!
//! Every write goes to a temporary file in the key's directory (named by
//! [`fsutil::temp_file`], skipped by [`Local::list`]), is fsynced, renamed into place,
//! and the directory is fsynced ([`fsutil::write_atomic`]). `create_new` publishes a
//! complete, fsynced temp file with `link(2)`, which fails when the name exists: no
//! reader ever sees a half-written lock, and a crash leaves at most a temp file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::{Listed, Storage, StorageError};
use crate::fsutil;

/// A repository in the directory `root`.
#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    /// The backend for the directory `root` (which need not exist yet: writes create
    /// the directories they need, private to the owner).
    pub fn new(root: impl Into<PathBuf>) -> Local {
        Local { root: root.into() }
    }

    /// The file of `key`. Keys are relative '/'-separated names made by the engine;
    /// one that could leave `root` (absolute, `..`, empty) is refused.
    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let bad = key.is_empty()
            || Path::new(key)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)));
        if bad {
            return Err(StorageError::Other {
                key: key.to_string(),
                source: "not a valid storage key (a relative name without `..`)".into(),
            });
        }
        Ok(self.root.join(key))
    }

    /// The directory a new file of `key` goes into, created if missing.
    fn parent_of(&self, key: &str, path: &Path) -> Result<PathBuf, StorageError> {
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.is_dir() {
            fsutil::create_private_dir_all(&dir).map_err(|e| io_err(key, e))?;
        }
        Ok(dir)
    }
}

/// A storage error for an I/O error on `key`: `NotFound` and `AlreadyExists` by kind,
/// everything else `Other` with the `io::Error` as source (the engine looks it up to
/// give the disk-full and permission hints).
fn io_err(key: &str, e: io::Error) -> StorageError {
    let key = key.to_string();
    match e.kind() {
        io::ErrorKind::NotFound => StorageError::NotFound { key },
        io::ErrorKind::AlreadyExists => StorageError::AlreadyExists { key },
        _ => StorageError::Other {
            key,
            source: Box::new(e),
        },
    }
}

/// Write `bytes` to a new temp file in `dir` and fsync it; the caller publishes it.
/// Dropping the result removes the temp name.
fn write_temp(dir: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let mut tmp = fsutil::temp_file(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

impl Storage for Local {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        fs::read(self.path(key)?).map_err(|e| io_err(key, e))
    }

    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let f = File::open(self.path(key)?).map_err(|e| io_err(key, e))?;
        let len = usize::try_from(len).map_err(|_| StorageError::Other {
            key: key.to_string(),
            source: format!("a range of {len} bytes does not fit in memory").into(),
        })?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| io_err(key, e))?;
        Ok(buf)
    }

    /// Durable once it returns Ok: temp file, fsync, rename, fsync of the directory.
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.parent_of(key, &path)?;
        fsutil::write_atomic(&path, bytes).map_err(|e| io_err(key, e))
    }

    /// Copies `local` into a temp file next to the key's file (in 64 KiB steps, never
    /// all of it in memory), fsyncs it, renames it into place and fsyncs the directory.
    fn write_file(&self, key: &str, local: &Path) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = self.parent_of(key, &path)?;
        let r = (|| {
            let mut src = File::open(local)?;
            let mut dst = fsutil::temp_file(&dir)?;
            io::copy(&mut src, &mut dst)?;
            // fsync, rename, fsync of the directory; on error the temp file is removed.
            fsutil::persist(dst, &path).map(drop)
        })();
        r.map_err(|e| io_err(key, e))
    }

    /// Exclusive and atomic: the complete, fsynced temp file is linked to the key's
    /// name (`link(2)` fails with `EEXIST` when it exists, like `O_EXCL`), then the
    /// temp name is removed and the directory fsynced. On a filesystem without hard
    /// links, the file is created with `O_EXCL` and written in place.
    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = self.parent_of(key, &path)?;
        let tmp = write_temp(&dir, bytes).map_err(|e| io_err(key, e))?;
        let linked = fs::hard_link(tmp.path(), &path);
        drop(tmp);
        match linked {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
                let r = (|| {
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(fsutil::PRIVATE_FILE_MODE)
                        .open(&path)?;
                    f.write_all(bytes)?;
                    f.sync_all()
                })();
                if let Err(e) = r {
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        let _ = fs::remove_file(&path);
                    }
                    return Err(io_err(key, e));
                }
            }
            Err(e) => return Err(io_err(key, e)),
        }
        fsutil::fsync_dir(&dir).map_err(|e| io_err(key, e))
    }

    /// Walks the directory of `prefix` (missing: an empty listing). Temp files
    /// (`.tmp-…`) are skipped; other hidden files are listed (a lock directory's
    /// readers decide about them).
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let trimmed = prefix.trim_end_matches('/');
        let start = if trimmed.is_empty() {
            self.root.clone()
        } else {
            self.path(trimmed)?
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, trimmed.to_string())];
        while let Some((dir, key)) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&key, e)),
            };
            for e in rd {
                let e = e.map_err(|e| io_err(&key, e))?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(fsutil::TMP_PREFIX) {
                    continue;
                }
                let child = if key.is_empty() {
                    name.to_string()
                } else {
                    format!("{key}/{name}")
                };
                let ft = match e.file_type() {
                    Ok(ft) => ft,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&child, e)),
                };
                if ft.is_dir() {
                    stack.push((e.path(), child));
                } else {
                    let size = match e.metadata() {
                        Ok(m) => m.len(),
                        // Removed between listing and stat (a lock let go, a pack pruned).
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err(&child, e)),
                    };
                    out.push(Listed { key: child, size });
                }
            }
        }
        Ok(out)
    }

    fn size(&self, key: &str) -> Result<u64, StorageError> {
        fs::metadata(self.path(key)?)
            .map(|m| m.len())
            .map_err(|e| io_err(key, e))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(key, e)),
        }
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, Local) {
        let d = tempfile::tempdir().unwrap();
        let l = Local::new(d.path().join("repo"));
        (d, l)
    }

    #[test]
    fn write_read_range_size_list_delete() {
        let (_d, s) = backend();
        s.write("packs/ab/abcd", b"0123456789").unwrap();
        s.write("snapshots/ef", b"snap").unwrap();
        assert_eq!(s.read("packs/ab/abcd").unwrap(), b"0123456789");
        assert_eq!(s.read_range("packs/ab/abcd", 3, 4).unwrap(), b"3456");
        assert_eq!(s.size("packs/ab/abcd").unwrap(), 10);
        let mut keys: Vec<(String, u64)> = s
            .list("packs/")
            .unwrap()
            .into_iter()
            .map(|l| (l.key, l.size))
            .collect();
        keys.sort();
        assert_eq!(keys, vec![("packs/ab/abcd".to_string(), 10)]);
        s.delete("packs/ab/abcd").unwrap();
        s.delete("packs/ab/abcd").unwrap();
        assert!(matches!(
            s.read("packs/ab/abcd"),
            Err(StorageError::NotFound { .. })
        ));
        assert!(s.list("packs/").unwrap().is_empty());
        assert!(s.list("keys/").unwrap().is_empty());
    }

    #[test]
    fn range_past_the_end_is_an_error() {
        let (_d, s) = backend();
        s.write("f", b"abc").unwrap();
        assert!(matches!(
            s.read_range("f", 2, 5),
            Err(StorageError::Other { .. })
        ));
    }

    #[test]
    fn create_new_is_exclusive_and_leaves_no_temp() {
        let (_d, s) = backend();
        s.create_new("locks/a", b"one").unwrap();
        assert!(matches!(
            s.create_new("locks/a", b"two"),
            Err(StorageError::AlreadyExists { .. })
        ));
        assert_eq!(s.read("locks/a").unwrap(), b"one");
        let names: Vec<_> = fs::read_dir(s.root.join("locks")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left beside the lock");
    }

    #[test]
    fn write_file_copies_and_temps_are_not_listed() {
        let (d, s) = backend();
        let src = d.path().join("sealed");
        fs::write(&src, vec![7u8; 200_000]).unwrap();
        s.write_file("packs/00/p", &src).unwrap();
        assert_eq!(s.read("packs/00/p").unwrap(), vec![7u8; 200_000]);
        let (mut f, _) = fsutil::temp_file(&s.root.join("packs/00"))
            .unwrap()
            .keep()
            .unwrap();
        f.write_all(b"x").unwrap();
        let keys: Vec<String> = s
            .list("packs")
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, vec!["packs/00/p".to_string()]);
    }

    #[test]
    fn keys_that_leave_the_root_are_refused() {
        let (_d, s) = backend();
        for k in ["../x", "/etc/passwd", "", "a/../../b"] {
            assert!(
                matches!(s.write(k, b"x"), Err(StorageError::Other { .. })),
                "{k}"
            );
        }
    }
}
