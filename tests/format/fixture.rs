//! The repository of format version 1 in `tests/fixtures/repo-v1` (made by
//! `tests/fixtures/make-repo-v1.sh` with the cbsnap of that format) must stay
//! readable by every later version: restored byte-exactly, verified by
//! `check --read-data`, and still accepting new snapshots.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The source tree the fixture was made from, written by the same script.
fn fixture_tree(dir: &Path) {
    let st = Command::new("bash")
        .arg(fixture_dir().join("make-repo-v1.sh"))
        .arg("tree")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A copy of the fixture in a temp dir, as a [`Repo`] (commands may write to it).
fn fixture_copy() -> Repo {
    let repo = Repo {
        dir: tempfile::tempdir().unwrap(),
    };
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture_dir().join("repo-v1"))
        .arg(repo.path())
        .status()
        .unwrap();
    assert!(st.success());
    // git keeps no empty directory.
    std::fs::create_dir_all(repo.path().join("locks")).unwrap();
    repo
}

#[test]
fn format_1_repository_restores_byte_exact_and_checks_clean() {
    let config = std::fs::read(repo_v1().join("config")).unwrap();
    assert_eq!(
        &config[..12],
        b"CBSNAPCF\x01\x00\x00\x00",
        "the fixture is of version 1"
    );

    let repo = fixture_copy();
    let want = tempfile::tempdir().unwrap();
    fixture_tree(&want.path().join("t"));
    let got = tempfile::tempdir().unwrap();
    repo.restore("fixture@latest", &got.path().join("t"));
    compare_trees(&want.path().join("t"), &got.path().join("t"));

    repo.ok(&["check", "--read-data"]);

    // The repository stays usable: a new snapshot goes in and comes back, and its
    // config is left as it was (version 1).
    repo.snapshot_dir(&want.path().join("t"), "again");
    let again = tempfile::tempdir().unwrap();
    repo.restore("again@latest", &again.path().join("t"));
    compare_trees(&want.path().join("t"), &again.path().join("t"));
    assert_eq!(std::fs::read(repo.path().join("config")).unwrap(), config);
    repo.ok(&["check", "--read-data"]);
}

fn repo_v1() -> PathBuf {
    fixture_dir().join("repo-v1")
}
