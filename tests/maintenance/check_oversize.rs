//! Issue 7 case 1: a repository whose index says a tree blob is larger than the blob
//! limit (what cbsnap wrote for a directory of 600,000 entries before split trees)
//! is reported by `check`, naming the snapshot, instead of stopping at the first
//! index entry it cannot read.

use std::fs;

use cbsnap::pack::MAX_BLOB;
use cbsnap::repo::{Access, Repository};

use crate::util::Env;

#[test]
fn check_reports_an_oversized_index_entry_and_names_the_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/file"), b"content").unwrap();
    env.ok(&[
        "snapshot",
        "--path",
        src.to_str().unwrap(),
        "--name",
        "victim",
    ]);
    {
        let repo = Repository::open(&env.repo(), Access::Append).unwrap();
        let snaps = cbsnap::snapshot::load_all(repo.storage(), repo.crypt()).unwrap();
        let tree = snaps[0].1.tree;
        let loc = repo.locate(&tree).unwrap();
        let mut entry = loc.entry;
        entry.raw_len = MAX_BLOB + 1;
        let path = repo.pack_path(&loc.pack);
        let f = fs::File::open(&path).unwrap();
        let size = f.metadata().unwrap().len();
        // The pack's own entries, the tree's with the length the old writer produced.
        let mut all = cbsnap::pack::read_trailer(&f, size, repo.crypt()).unwrap();
        for e in all.iter_mut().filter(|e| e.id == tree) {
            *e = entry;
        }
        repo.index().add_pack(&loc.pack, size, &all).unwrap();
    }
    let out = env.run(&env.repo(), &["--json", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "check stopped instead of reporting ({e}): {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        !out.status.success(),
        "a damaged repository checks clean: {report}"
    );
    let text = report["problems"].to_string();
    assert!(
        text.contains("victim"),
        "the snapshot is not named: {report}"
    );
    assert!(text.contains("index rebuild"), "no advice: {report}");
}
