//! Trees deeper than a thread's stack, built through the library, are walked by
//! `check` and `stats` (issue 8: one iterative tree walk, `cbsnap::walk`). The binary's
//! own test of the same depth through a tar import is
//! `data::tar_import::tar_nesting_100k_directories_never_overflows_the_stack`.

use cbsnap::check::{self, ReadData};
use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::Repository;

const DEPTH: usize = 100_000;

/// A stack of 256 KiB: a walk that recursed once per level would need a frame for
/// each of the 100,000 levels and overflow it many times over.
const SMALL_STACK: usize = 256 << 10;

#[test]
fn check_and_stats_walk_100k_levels_on_a_small_stack() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    Repository::init(&root).unwrap();
    let repo = Repository::open(&root, Access::Append).unwrap();
    let path = "a/".repeat(DEPTH) + "f";
    crate::util::snapshot_files(&repo, "deep", &[(&path, b"deep".to_vec())]).unwrap();
    drop(repo);
    // A reader opens the repository after the snapshot, as `cbsnap check` would: it
    // lists the snapshots when it opens.
    let repo = Repository::open(&root, Access::Read).unwrap();

    let (report, stats) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn_scoped(s, || {
                let progress = Progress::new(true, "check");
                let report = check::check(&repo, ReadData::All, &progress).unwrap();
                let stats = cbsnap::stats::stats(&repo, None, None).unwrap();
                (report, stats)
            })
            .unwrap()
            .join()
            .expect("check and stats ran without overflowing the stack")
    });
    // Every level was walked: one tree per directory and the root's.
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.trees, DEPTH + 1);
    assert_eq!(
        report.referenced_blobs,
        DEPTH + 2,
        "the trees and one chunk"
    );
    assert_eq!(stats.selection.blobs as usize, DEPTH + 2);
    assert_eq!(stats.selection.missing_blobs, 0);
    assert_eq!(stats.repository.unreferenced_blobs, 0);
}
