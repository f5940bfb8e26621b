//! The index's layout version (`"v"`, FORMAT.md "Index") is checked on open: an index
//! written by a newer cbsnap is refused with what to do, and left as it is, so the
//! newer cbsnap still finds its own (issue 8).

use std::path::{Path, PathBuf};

use crate::util::{stderr, write, Repo};

fn set_version(index: &Path, v: u32) {
    let db = rocksdb::DB::open_default(index).unwrap();
    db.put(b"v", v.to_le_bytes()).unwrap();
}

fn version(index: &Path) -> Option<u32> {
    let db = rocksdb::DB::open_default(index).unwrap();
    let v = db.get(b"v").unwrap()?;
    Some(u32::from_le_bytes(v.as_slice().try_into().unwrap()))
}

/// A repository with one snapshot `s` of a directory holding `f`; returns it, that
/// directory and the index's path.
fn one_snapshot() -> (Repo, PathBuf, PathBuf) {
    let repo = Repo::new();
    let src = repo.dir.path().join("src");
    write(&src, "f", b"kept");
    repo.snapshot_dir(&src, "s");
    let index = repo.path().join("index");
    (repo, src, index)
}

#[test]
fn an_index_of_a_newer_layout_is_refused_and_left_alone() {
    let (repo, src, index) = one_snapshot();
    let now = cbsnap::index::INDEX_VERSION;
    let newer = now + 1;
    assert_eq!(version(&index), Some(now));
    set_version(&index, newer);
    let src_arg = src.to_str().unwrap();
    for args in [
        &["snapshots"][..],
        &["check"],
        &["snapshot", "--path", src_arg, "--name", "s"],
    ] {
        let o = repo.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?} must fail: {o:?}");
        let err = stderr(&o);
        let layout = format!("layout version {newer}");
        for want in [&layout[..], "Upgrade cbsnap", "cbsnap index rebuild"] {
            assert!(err.contains(want), "{args:?}: {err}");
        }
        assert_eq!(version(&index), Some(newer), "{args:?} changed the index");
    }
    // The remedy the message names works, and loses nothing.
    repo.ok(&["index", "rebuild"]);
    assert_eq!(version(&index), Some(now));
    assert_eq!(repo.snapshots_json().len(), 1);
    repo.ok(&["check"]);
}

/// An index of layout 1 (before the `'s'` records of wholly indexed snapshots) is
/// brought to the current layout by the first command that writes, and keeps working.
#[test]
fn an_index_of_layout_1_is_upgraded_in_place() {
    let (repo, src, index) = one_snapshot();
    set_version(&index, 1);
    write(&src, "g", b"new");
    repo.snapshot_dir(&src, "s");
    assert_eq!(version(&index), Some(cbsnap::index::INDEX_VERSION));
    assert_eq!(repo.snapshots_json().len(), 2);
    repo.ok(&["check", "--read-data"]);
}
