//! A snapshot that meets damage in what it reads of the repository (its parent's
//! trees) says so, reads the files again, and stores the damaged blobs again instead
//! of deduplicating against the damaged copies: the repository ends up better than
//! it was found, never with a new snapshot on a known-bad blob.

use std::fs;

use cbsnap::repo::Access;
use cbsnap::{Id, Repository};

use crate::util::*;

/// Flip one byte in the middle of the stored copy of blob `id`; returns its pack.
fn damage(repo: &std::path::Path, id: &Id) -> String {
    let r = Repository::open(repo, Access::Read).unwrap();
    let loc = r.index().get(id).unwrap().expect("the blob is indexed");
    drop(r);
    let path = pack_path(repo, &loc.pack.to_hex());
    let mut bytes = fs::read(&path).unwrap();
    bytes[(loc.entry.offset + u64::from(loc.entry.stored_len) / 2) as usize] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    loc.pack.to_hex()
}

/// The root tree of snapshot `id` and the tree of its directory `sub`.
fn trees(repo: &std::path::Path, id: &str) -> (Id, Id) {
    let r = Repository::open(repo, Access::Read).unwrap();
    let snaps = r.readable_snapshots().unwrap();
    let (_, snap) = snaps.iter().find(|(s, _)| s.to_hex() == id).unwrap();
    let sub = cbsnap::walk::lookup(&r, &snap.tree, "sub")
        .unwrap()
        .unwrap()
        .subtree()
        .unwrap();
    (snap.tree, sub)
}

/// `snapshot --json` of `src` as `dsrc`: exit 0, the warning about `dir`'s tree
/// `tree`, and bytes added (the tree stored again). Returns the snapshot id.
fn snapshot_past_damage(env: &Env, src: &std::path::Path, dir: &str, tree: &Id) -> String {
    let o = env.run(
        &env.repo(),
        &[
            "--json",
            "snapshot",
            "--path",
            src.to_str().unwrap(),
            "--name",
            "dsrc",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    let warned = format!("the parent snapshot's tree {tree} of {dir} is damaged");
    assert!(e.contains(&warned), "no warning about {dir}: {e}");
    assert!(e.contains("Run `cbsnap check`"), "{e}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["stats"]["new_bytes_stored"].as_u64().unwrap() > 0,
        "the damaged tree was not stored again: {v}"
    );
    v["id"].as_str().unwrap().to_string()
}

/// The tester's case (a byte flipped in the small pack holding the root tree, then a
/// snapshot that said "added 0 B" and referenced the damaged tree), and the same for
/// a subdirectory's tree: each snapshot warns, stores the tree again, and every
/// snapshot that shares the tree reads again through the new copy. `check` then
/// finds only the damaged copies, which break nothing, and `prune` drops them.
#[test]
fn a_damaged_parent_tree_is_reported_and_stored_again() {
    let env = Env::new();
    let src = env.path("dsrc");
    write(&src, "a.txt", b"alpha");
    write(&src, "sub/b.bin", &random_bytes(300_000, 5));
    write(&src, "sub/c.txt", b"gamma");
    let s1 = env.snapshot(&src, "dsrc");
    write(&src, "a.txt", b"alpha, changed");
    settle();
    let s2 = env.snapshot(&src, "dsrc");
    let (root, sub) = trees(&env.repo(), &s2);

    // A subdirectory's tree (in the first snapshot's pack).
    damage(&env.repo(), &sub);
    let out = env.run(&env.repo(), &["ls", "dsrc@latest", "sub"]);
    assert_eq!(out.status.code(), Some(1), "the damage is not real");
    settle();
    let s3 = snapshot_past_damage(&env, &src, "sub", &sub);
    assert_eq!(trees(&env.repo(), &s3), (root, sub));

    // The root tree (in the second snapshot's small pack), as the tester found it.
    let small = damage(&env.repo(), &root);
    settle();
    let s4 = snapshot_past_damage(&env, &src, "/", &root);
    assert_eq!(trees(&env.repo(), &s4), (root, sub));

    // Every snapshot reads through the new copies, the older ones too.
    for s in [&s1, &s2, &s3, &s4] {
        env.ok(&["ls", &format!("dsrc@{s}"), "sub"]);
    }
    let to = env.restore(&env.repo(), &format!("dsrc@{s4}"), "r4");
    assert_same_files(&to, &src);
    let to = env.restore(&env.repo(), &format!("dsrc@{s2}"), "r2");
    assert_same_files(&to, &src);
    env.ok(&["check"]);

    // Reading the data finds the damaged copies, which no snapshot needs.
    let o = env.run(&env.repo(), &["--json", "check", "--read-data"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["pack"] == small.as_str()), "{v}");
    for p in problems {
        assert_eq!(p["snapshots"].as_array().unwrap().len(), 0, "{v}");
    }
    // Nothing to forget, no pack to move out (it holds blobs in use too).
    let o = env.run(&env.repo(), &["check", "--read-data"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("no snapshot needs the damaged data"), "{e}");
    assert!(!e.contains("forget") && !e.contains("move each"), "{e}");

    // The damaged copies are unused: prune drops them with their packs' used blobs
    // copied out, and nothing is damaged any more.
    env.ok(&["prune", "--repack-threshold", "0"]);
    assert!(!pack_path(&env.repo(), &small).exists());
    let out = env.ok(&["check", "--read-data"]);
    assert!(out.contains("no damage found"), "{out}");
    let to = env.restore(&env.repo(), &format!("dsrc@{s1}"), "r1");
    assert_eq!(fs::read(to.join("a.txt")).unwrap(), b"alpha");
    assert_same_files(&to.join("sub"), &src.join("sub"));
}
