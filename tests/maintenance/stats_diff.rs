//! stats and diff.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn stats_reports_dedup_and_what_each_snapshot_added() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(2 << 20, 70));
    env.snapshot(&src, "data");
    env.snapshot(&src, "data");
    write(&src, "b.bin", &random_bytes(1 << 20, 71));
    env.snapshot(&src, "data");
    let other = env.path("other");
    write(&other, "c.bin", &random_bytes(1 << 20, 72));
    env.snapshot(&other, "other");

    let v = env.json(&env.repo(), &["stats", "data"]);
    let snaps = v["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 3, "{v}");
    let added = |i: usize| snaps[i]["added_raw_bytes"].as_u64().unwrap();
    assert!(added(0) >= 2 << 20 && added(0) < (2 << 20) + 4096, "{v}");
    // The unchanged second snapshot re-uses even its trees.
    assert_eq!(added(1), 0, "{v}");
    assert!(added(2) >= 1 << 20 && added(2) < (1 << 20) + 4096, "{v}");
    let sel = &v["selection"];
    assert_eq!(sel["logical_bytes"], (2 << 20) * 3 + (1 << 20));
    assert!(sel["raw_bytes"].as_u64().unwrap() < (3 << 20) + 8192);
    let dedup = sel["dedup_ratio"].as_f64().unwrap();
    assert!(dedup > 2.3 && dedup < 2.34, "{v}");
    let repo = &v["repository"];
    assert_eq!(repo["snapshots"], 4);
    assert!(repo["stored_bytes"].as_u64().unwrap() >= 4 << 20);

    let text = env.ok(&["stats"]);
    assert!(text.contains("dedup"), "{text}");
    assert!(text.contains("other"), "{text}");
}

#[test]
fn diff_lists_added_removed_modified_and_metadata_changes() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "same.txt", b"unchanged");
    write(&src, "gone.txt", b"0123456789");
    write(&src, "edit.txt", b"short");
    write(&src, "mode.txt", b"mode");
    write(&src, "kind", b"a file, then a directory");
    write(&src, "dir/deep/old.txt", b"old");
    env.snapshot(&src, "data");

    fs::remove_file(src.join("gone.txt")).unwrap();
    write(&src, "edit.txt", b"much longer now");
    fs::set_permissions(src.join("mode.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(src.join("kind")).unwrap();
    write(&src, "kind/inner.txt", b"inside");
    write(&src, "dir/deep/new.txt", b"fresh!");
    env.snapshot(&src, "data");

    let out = env.ok(&["diff", "data@latest~1", "data@latest"]);
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "-  gone.txt  10",
        "M  edit.txt  5 -> 15",
        "U  mode.txt  4 -> 4",
        "T  kind/  24 -> -",
        "+  kind/inner.txt  6",
        "+  dir/deep/new.txt  6",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert!(
        !out.contains("same.txt") && !out.contains("old.txt"),
        "{out}"
    );

    let v = env.json(&env.repo(), &["diff", "data@latest~1", "data@latest"]);
    assert_eq!(v["summary"]["added"], 2, "{v}");
    assert_eq!(v["summary"]["removed"], 1, "{v}");
    assert_eq!(v["summary"]["modified"], 1, "{v}");
    assert_eq!(v["summary"]["type_changed"], 1, "{v}");
}
