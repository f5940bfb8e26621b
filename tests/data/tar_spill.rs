//! A large tar import keeps its entries in a temporary file, not in memory (issue 9):
//! when that file cannot grow, the import fails with a clear error, commits nothing
//! and leaves no file behind.

use std::path::Path;
use std::process::Command;

use crate::util::{is_root, stderr, Repo};

/// A 1 MiB tmpfs at `dir`, unmounted (and removed) on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path) -> Tmpfs<'a> {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            st.success(),
            "mounting a tmpfs failed (the suite runs as root)"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn tar_import_whose_temporary_file_fills_the_disk_fails_and_commits_nothing() {
    assert!(is_root(), "this test mounts a tmpfs: run the suite as root");
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("many.tar");
    let st = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tar/gen.py"))
        .args(["many", "100000"])
        .arg(&tar)
        .status()
        .expect("python3 runs");
    assert!(st.success());
    let tmp = work.path().join("tmp");
    let full = Tmpfs::mount(&tmp);
    let repo = Repo::new();
    // 100,000 entries spill several MB of nodes: more than the 1 MiB there is.
    let o = repo
        .cmd()
        .env("TMPDIR", &tmp)
        .args(["snapshot", "--tar", tar.to_str().unwrap(), "--name", "m"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success() && o.status.code() != Some(3), "{err}");
    assert!(
        err.contains("temporary file") && err.contains("TMPDIR"),
        "{err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert!(repo.snapshots_json().is_empty());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "a file was left"
    );
    drop(full);
    // With room, the same stream imports.
    repo.ok(&["snapshot", "--tar", tar.to_str().unwrap(), "--name", "m"]);
    assert_eq!(repo.snapshots_json().len(), 1);
}
