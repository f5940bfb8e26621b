//! Restore reads each needed pack range once per batch (issue 9): small files that
//! share chunks, or whose chunks sit next to each other in a pack, do not cost one
//! read per chunk of each file; and what is written is still the snapshot's content.

use cbsnap::ingest::{self, SnapshotSpec};
use cbsnap::progress::Progress;
use cbsnap::repo::{Access, Repository};
use cbsnap::restore::dir::{restore, Options};
use cbsnap::snapshot::SourceKind;

use crate::util;

#[test]
fn restore_reads_each_pack_range_once_for_small_files() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // 150 files of one chunk each, in one directory (one tree): 100 distinct, and 50
    // with one shared content.
    for i in 0..100u64 {
        std::fs::write(src.join(format!("own-{i:03}")), util::random_bytes(4000, i)).unwrap();
    }
    for i in 0..50 {
        std::fs::write(
            src.join(format!("same-{i:02}")),
            b"one chunk shared by fifty files",
        )
        .unwrap();
    }
    let root = d.path().join("repo");
    Repository::init(&root).unwrap();
    let progress = Progress::hidden();
    let snap = {
        let repo = Repository::open(&root, Access::Append).unwrap();
        let spec = SnapshotSpec::new("small", SourceKind::Path);
        ingest::snapshot(&repo, spec, &progress, |sink| {
            cbsnap::source::dir::walk(&src, &ingest::own_dirs(&repo), sink)
        })
        .unwrap()
        .1
    };
    let packs = util::walk(&root.join("packs"))
        .iter()
        .filter(|p| p.is_file())
        .count();
    let repo = Repository::open(&root, Access::Read).unwrap();
    assert_eq!(repo.pack_reads(), 0);
    let to = d.path().join("restored");
    let report = restore(&repo, &snap, &to, &Options::default(), &progress).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.files, 150);
    util::diff_r(&src, &to);
    // One read for the root tree, then at most one range per pack for 101 distinct
    // chunks (one per file and chunk would be 150 reads).
    let reads = repo.pack_reads();
    assert!(packs >= 1);
    assert!(
        reads <= 1 + packs as u64,
        "{reads} pack reads for {packs} packs"
    );
}
