//! Fault injection for lost writes: a pack or snapshot file that a power loss
//! dropped (deleted, or truncated as an unsynced file is) is found by `check`, makes
//! the restores that need it fail, and is never served as good data — not even to
//! deduplication: the next snapshot of the same data stores it again.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::*;

fn packs(repo: &Repo) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in fs::read_dir(repo.path().join("packs")).unwrap().flatten() {
        for f in fs::read_dir(sub.path()).unwrap().flatten() {
            if !f.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn source(dir: &Path) {
    fs::create_dir_all(dir.join("d")).unwrap();
    fs::write(dir.join("a.bin"), random_bytes(3 << 20, 11)).unwrap();
    fs::write(dir.join("d/b.txt"), text_bytes(200_000, 12)).unwrap();
}

/// What a power loss can do to a file whose last writes were not synced.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Deleted,
    Empty,
    Half,
    TailCut,
}

fn lose(p: &Path, how: Loss) {
    match how {
        Loss::Deleted => fs::remove_file(p).unwrap(),
        Loss::Empty => fs::write(p, b"").unwrap(),
        Loss::Half => {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() / 2]).unwrap();
        }
        Loss::TailCut => {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() - 1]).unwrap();
        }
    }
}

#[test]
fn lost_pack_is_detected_and_never_served() {
    let src = tempfile::tempdir().unwrap();
    source(src.path());
    for how in [Loss::Deleted, Loss::Empty, Loss::Half, Loss::TailCut] {
        let repo = Repo::new();
        repo.snapshot_dir(src.path(), "vol");
        let before = packs(&repo);
        assert!(!before.is_empty());
        for p in &before {
            lose(p, how);
        }
        let o = repo.run(&["check", "--read-data"]);
        assert_ne!(o.status.code(), Some(0), "{how:?}: check passed");
        // A cut pack's own entry does not say it breaks nothing while the snapshots
        // that need its blobs are listed under the blobs no pack holds.
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("no pack holds"), "{how:?}: {text}");
        assert!(!text.contains("breaks no snapshot"), "{how:?}: {text}");
        let out = tempfile::tempdir().unwrap();
        let t = out.path().join("t");
        let o = repo.run(&["restore", "vol@latest", "--to", t.to_str().unwrap()]);
        assert_ne!(o.status.code(), Some(0), "{how:?}: restore passed");
        // Whatever the failed restore left, a file of full length holds the right
        // bytes. (That a failed restore may leave a short file under its final name is
        // issue 7 case 8, restore/dir.rs, handled on another branch.)
        for (rel, want) in [
            ("a.bin", src.path().join("a.bin")),
            ("d/b.txt", src.path().join("d/b.txt")),
        ] {
            if let Ok(got) = fs::read(t.join(rel)) {
                assert!(
                    want.metadata().unwrap().len() as usize != got.len()
                        || got == fs::read(&want).unwrap(),
                    "{how:?}: {rel} restored with wrong content"
                );
            }
        }
        // The next snapshot of the same data does not deduplicate against the lost
        // blobs: it stores them again and restores byte-exact.
        repo.snapshot_dir(src.path(), "vol");
        let t2 = out.path().join("t2");
        repo.restore("vol@latest", &t2);
        compare_trees(src.path(), &t2);
    }
}

#[test]
fn lost_snapshot_file_is_detected() {
    let src = tempfile::tempdir().unwrap();
    source(src.path());
    for how in [Loss::Empty, Loss::Half, Loss::TailCut] {
        let repo = Repo::new();
        repo.snapshot_dir(src.path(), "vol");
        let id = repo.snapshots_json()[0]["id"].as_str().unwrap().to_string();
        lose(&repo.path().join("snapshots").join(&id), how);
        let o = repo.run(&["check"]);
        assert_ne!(o.status.code(), Some(0), "{how:?}: check passed");
        let report = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(report.contains(&id), "{how:?}: {report}");
        let out = tempfile::tempdir().unwrap();
        let o = repo.run(&[
            "restore",
            "vol@latest",
            "--to",
            out.path().join("t").to_str().unwrap(),
        ]);
        assert_ne!(o.status.code(), Some(0), "{how:?}: restore passed");
        assert!(!out.path().join("t").exists());
    }
}

/// Two snapshots of `vol`: the first of d/a.bin alone, the second reusing d/a.bin
/// and the tree of `d` (so it is recorded as wholly indexed,
/// `Index::snapshot_indexed`) and writing b.bin and its own root tree into new packs;
/// then the first snapshot's packs, which hold a.bin's blobs and d's tree, vanish.
/// Returns the source, the repository and the vanished packs.
fn reused_file_whose_packs_vanished() -> (tempfile::TempDir, Repo, Vec<PathBuf>) {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("d")).unwrap();
    fs::write(src.path().join("d/a.bin"), random_bytes(1 << 20, 21)).unwrap();
    let repo = Repo::new();
    settle();
    repo.snapshot_dir(src.path(), "vol");
    let first = packs(&repo);
    fs::write(src.path().join("b.bin"), random_bytes(1 << 20, 22)).unwrap();
    repo.snapshot_dir(src.path(), "vol");
    assert!(packs(&repo).iter().any(|p| !first.contains(p)));
    for p in &first {
        fs::remove_file(p).unwrap();
    }
    (src, repo, first)
}

/// The next snapshot restores byte-exact: a.bin was read again and d's tree stored
/// again, not referenced.
fn next_snapshot_restores(src: &Path, repo: &Repo) {
    repo.snapshot_dir(src, "vol");
    let out = tempfile::tempdir().unwrap();
    repo.restore("vol@latest", &out.path().join("t"));
    compare_trees(src, &out.path().join("t"));
}

/// A snapshot whose blobs were all indexed lets the next one reuse its unchanged
/// files without looking their blobs up. Once packs vanish, that no longer holds: a
/// file whose blobs went with them is read again, not referenced, though its parent
/// says it is unchanged.
#[test]
fn vanished_packs_make_unchanged_files_be_read_again() {
    let (src, repo, _) = reused_file_whose_packs_vanished();
    next_snapshot_restores(src.path(), &repo);
}

/// Builds before index layout 2 write their layout version over a newer one and,
/// when packs vanished, forget them without dropping the records of wholly indexed
/// snapshots. An index last written by such a build has none of its records
/// trusted: the file whose blobs vanished is read again. (Found by review: the
/// older build's `sync_index` is done here by hand, `remove_packs` then version 1.)
#[test]
fn records_left_by_an_older_build_are_not_trusted() {
    use cbsnap::index::Index;
    use cbsnap::Id;
    use std::collections::HashSet;
    let (src, repo, vanished) = reused_file_whose_packs_vanished();
    let index = repo.path().join("index");
    let gone: HashSet<Id> = vanished
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    Index::open(&index).unwrap().remove_packs(&gone).unwrap();
    rocksdb::DB::open_default(&index)
        .unwrap()
        .put(b"v", 1u32.to_le_bytes())
        .unwrap();
    next_snapshot_restores(src.path(), &repo);
}
