//! Readers list the snapshots when they open the repository, before the index
//! (FORMAT.md "Reading order", restic's order): a snapshot committed after that is not
//! seen by the handle, so its blobs can never look missing from an index view taken
//! earlier; a snapshot file removed after the listing is skipped, not damage.

use std::fs;

use cbsnap::repo::Access;
use cbsnap::snapshot;
use cbsnap::{Id, Repository};

fn take(root: &std::path::Path, name: &str) -> Id {
    let repo = Repository::open(root, Access::Append).unwrap();
    crate::util::snapshot_files(&repo, name, &[("f", name.as_bytes().to_vec())]).unwrap()
}

fn names(set: &snapshot::SnapshotSet) -> Vec<&str> {
    set.snapshots.iter().map(|(_, s)| s.name.as_str()).collect()
}

#[test]
fn readers_see_the_snapshots_listed_when_the_repository_was_opened() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    Repository::init(&root).unwrap();
    let one = take(&root, "one");
    let two = take(&root, "two");
    let file = |id: &Id| root.join("snapshots").join(id.to_hex());
    let two_bytes = fs::read(file(&two)).unwrap();
    fs::remove_file(file(&two)).unwrap();

    let reader = Repository::open(&root, Access::Read).unwrap();
    // `two` is committed after the reader opened the repository.
    fs::write(file(&two), &two_bytes).unwrap();
    let set = reader.snapshots().unwrap();
    assert_eq!(names(&set), ["one"]);
    assert!(set.damaged.is_empty());
    let fresh = snapshot::scan(reader.storage(), reader.crypt()).unwrap();
    assert_eq!(names(&fresh), ["one", "two"], "a new listing sees it");

    // `one` is forgotten after the listing: skipped, not damage.
    fs::remove_file(file(&one)).unwrap();
    let set = reader.snapshots().unwrap();
    assert!(
        set.snapshots.is_empty() && set.damaged.is_empty(),
        "{set:?}"
    );
}
