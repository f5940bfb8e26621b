//! The fixture repositories `tests/fixtures/repo-v1` (format version 1) and
//! `tests/fixtures/repo-v2` (format version 2: config checksum, snapshot version 2,
//! a split tree), each made by its `make-repo-vN.sh` with the cbsnap of that format,
//! must stay readable by every later version: restored byte-exactly, verified by
//! `check --read-data`, and still accepting new snapshots.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The source tree fixture `version` was made from, written by the same script.
fn fixture_tree(version: u32, dir: &Path) {
    let st = Command::new("bash")
        .arg(fixture_dir().join(format!("make-repo-v{version}.sh")))
        .arg("tree")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A copy of fixture `version` in a temp dir, as a [`Repo`] (commands may write to it).
fn fixture_copy(version: u32) -> Repo {
    let repo = Repo {
        dir: tempfile::tempdir().unwrap(),
    };
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture_dir().join(format!("repo-v{version}")))
        .arg(repo.path())
        .status()
        .unwrap();
    assert!(st.success());
    // git keeps no empty directory.
    std::fs::create_dir_all(repo.path().join("locks")).unwrap();
    repo
}

/// Restores fixture `version` byte-exactly, checks it, and takes a new snapshot into
/// it; the config is never rewritten. Returns the copy.
fn restores_checks_and_takes_snapshots(version: u32) -> Repo {
    let config = std::fs::read(fixture_dir().join(format!("repo-v{version}/config"))).unwrap();
    let mut header = b"CBSNAPCF".to_vec();
    header.extend(version.to_le_bytes());
    assert_eq!(&config[..12], header, "the fixture is of version {version}");

    let repo = fixture_copy(version);
    let want = tempfile::tempdir().unwrap();
    fixture_tree(version, &want.path().join("t"));
    let got = tempfile::tempdir().unwrap();
    repo.restore("fixture@latest", &got.path().join("t"));
    compare_trees(&want.path().join("t"), &got.path().join("t"));

    repo.ok(&["check", "--read-data"]);

    // The repository stays usable: a new snapshot goes in and comes back, and its
    // config is left as it was.
    repo.snapshot_dir(&want.path().join("t"), "again");
    let again = tempfile::tempdir().unwrap();
    repo.restore("again@latest", &again.path().join("t"));
    compare_trees(&want.path().join("t"), &again.path().join("t"));
    assert_eq!(std::fs::read(repo.path().join("config")).unwrap(), config);
    repo.ok(&["check", "--read-data"]);
    repo
}

#[test]
fn format_1_repository_restores_byte_exact_and_checks_clean() {
    restores_checks_and_takes_snapshots(1);
}

/// The fixture of format 2 holds what that format added: its snapshot file is of
/// version 2 and one of its trees is a split tree (version 2).
#[test]
fn format_2_repository_restores_byte_exact_and_checks_clean() {
    let dir = fixture_dir().join("repo-v2");
    let snaps: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(snaps.len(), 1);
    assert_eq!(&snaps[0][..12], b"CBSNAPSN\x02\x00\x00\x00");
    let mut tree_versions = std::collections::BTreeSet::new();
    for pack in crate::util::walk(&dir.join("packs")) {
        if !pack.is_file() {
            continue;
        }
        let f = std::fs::File::open(&pack).unwrap();
        let len = f.metadata().unwrap().len();
        for e in cbsnap::pack::read_trailer(&f, len).unwrap() {
            if e.kind == cbsnap::pack::BlobKind::Tree {
                let stored = cbsnap::pack::read_stored(&f, e.offset, e.stored_len).unwrap();
                tree_versions.insert(cbsnap::pack::decode_blob(&e, &stored).unwrap()[0]);
            }
        }
    }
    assert_eq!(
        tree_versions,
        [1, 2].into(),
        "trees of both versions are in the fixture"
    );
    restores_checks_and_takes_snapshots(2);
}
