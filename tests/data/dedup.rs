//! Deduplication: repeated snapshots cost only what changed.

use std::os::unix::fs::FileExt;

use crate::util::*;

#[test]
fn same_tree_again_adds_under_half_a_percent() {
    let src = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let dir = src.path().join(format!("pkg{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..20 {
            std::fs::write(
                dir.join(format!("f{f}.js")),
                text_bytes(20_000 + f * 997, (d * 100 + f) as u64),
            )
            .unwrap();
        }
    }
    std::fs::write(src.path().join("model.bin"), random_bytes(24 << 20, 9)).unwrap();
    let size = dir_size(src.path());
    let repo = Repo::new();
    settle();
    repo.snapshot_dir(src.path(), "tree");
    let after_first = repo.size();
    repo.snapshot_dir(src.path(), "tree");
    let added = repo.size() - after_first;
    assert!(
        (added as f64) < size as f64 * 0.005,
        "second snapshot added {added} bytes for a {size}-byte tree"
    );
    // The unchanged walk did not even read the files.
    let snaps = repo.snapshots_json();
    assert_eq!(snaps[1]["stats"]["files_unchanged"], 401);
    assert_eq!(snaps[1]["stats"]["new_blobs"], 0);
}

#[test]
fn gib_file_with_100_scattered_changes_adds_at_most_30_mib() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("big.img");
    {
        let f = std::fs::File::create(&path).unwrap();
        for i in 0..64u64 {
            f.write_all_at(&random_bytes(16 << 20, 1000 + i), i * (16 << 20))
                .unwrap();
        }
    }
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "big");
    let before = repo.size();
    // 100 changes of ~10 KiB (1 MiB in all) spread over the whole file.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for i in 0..100u64 {
        let off = i * ((1u64 << 30) / 100) + 12_345;
        f.write_all_at(&random_bytes(10_486, 5000 + i), off)
            .unwrap();
    }
    drop(f);
    repo.snapshot_dir(src.path(), "big");
    let added = repo.size() - before;
    assert!(
        added <= 30 << 20,
        "changing 1 MiB added {} MiB",
        added >> 20
    );
    // And both versions restore exactly.
    let out = tempfile::tempdir().unwrap();
    repo.restore("big@latest", &out.path().join("r"));
    assert_eq!(
        blake3::hash(&std::fs::read(out.path().join("r/big.img")).unwrap()),
        blake3::hash(&std::fs::read(&path).unwrap())
    );
}

#[test]
fn deleting_the_index_changes_nothing() {
    let src = tempfile::tempdir().unwrap();
    build_every_kind(src.path());
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "a");
    std::fs::write(src.path().join("later"), text_bytes(100_000, 77)).unwrap();
    repo.snapshot_dir(src.path(), "a");
    let out = tempfile::tempdir().unwrap();
    repo.restore("a@latest~1", &out.path().join("before-1"));
    repo.restore("a@latest", &out.path().join("before-0"));
    std::fs::remove_dir_all(repo.path().join("index")).unwrap();
    // Any command notices and rebuilds; restores are the same.
    let listed = repo.snapshots_json();
    assert_eq!(listed.len(), 2);
    repo.restore("a@latest~1", &out.path().join("after-1"));
    repo.restore("a@latest", &out.path().join("after-0"));
    compare_trees(&out.path().join("before-1"), &out.path().join("after-1"));
    compare_trees(&out.path().join("before-0"), &out.path().join("after-0"));
    assert!(repo.path().join("index").is_dir());
    // An explicit rebuild works as well.
    repo.ok(&["index", "rebuild"]);
    repo.restore("a@latest", &out.path().join("rebuilt-0"));
    compare_trees(&out.path().join("before-0"), &out.path().join("rebuilt-0"));
}
