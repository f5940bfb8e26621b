//! forget and prune: the repository ends up holding what the remaining snapshots need,
//! and every remaining snapshot still restores byte for byte.

use std::fs;

use crate::util::*;

/// Three states of one source; returns saved copies of each.
fn three_versions(env: &Env) -> Vec<(String, std::path::PathBuf)> {
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(2 << 20, 1));
    write(&src, "dir/b.bin", &random_bytes(2 << 20, 2));
    write(&src, "dir/c.bin", &random_bytes(1 << 20, 3));
    let mut out = Vec::new();
    let id = env.snapshot(&src, "data");
    copy_dir(&src, &env.path("v1"));
    out.push((id, env.path("v1")));

    // New content for a.bin; a region in the middle of b.bin rewritten.
    write(&src, "a.bin", &random_bytes(2 << 20, 4));
    let mut b = fs::read(src.join("dir/b.bin")).unwrap();
    b[900_000..1_100_000].copy_from_slice(&random_bytes(200_000, 5));
    write(&src, "dir/b.bin", &b);
    let id = env.snapshot(&src, "data");
    copy_dir(&src, &env.path("v2"));
    out.push((id, env.path("v2")));

    fs::remove_file(src.join("dir/c.bin")).unwrap();
    write(&src, "d.bin", &random_bytes(1 << 20, 6));
    let id = env.snapshot(&src, "data");
    copy_dir(&src, &env.path("v3"));
    out.push((id, env.path("v3")));
    out
}

#[test]
fn forget_prune_leaves_only_what_the_remaining_snapshots_need() {
    let env = Env::new();
    let versions = three_versions(&env);
    let before = pack_bytes(&env.repo());

    let out = env.ok(&["forget", "data", "--keep-last", "2", "--prune"]);
    assert!(out.contains("removed 1 snapshot(s)"), "{out}");
    assert!(
        out.contains(&format!("remove  {}", &versions[0].0[..8])),
        "{out}"
    );
    let after = pack_bytes(&env.repo());
    // v1's a.bin, 2 MiB of incompressible data, is in no remaining snapshot.
    assert!(after + (2 << 20) - 65536 <= before, "{before} -> {after}");

    // What the remaining snapshots need: the same two states in a fresh repository.
    let fresh = Env::new();
    fresh.snapshot(&env.path("v2"), "data");
    fresh.snapshot(&env.path("v3"), "data");
    let need = pack_bytes(&fresh.repo());
    assert!(
        after as f64 <= need as f64 * 1.10 + 65536.0,
        "pruned repository {after} bytes, a fresh one of the same snapshots {need}"
    );

    for (i, (id, saved)) in versions.iter().enumerate().skip(1) {
        let to = env.restore(
            &env.repo(),
            &format!("data@{}", &id[..12]),
            &format!("r{i}"),
        );
        assert_same_files(&to, saved);
    }
    env.ok(&["check", "--read-data"]);
    let snaps = env.json(&env.repo(), &["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2);
}

#[test]
fn prune_with_zero_threshold_leaves_no_unreferenced_blob() {
    let env = Env::new();
    let versions = three_versions(&env);
    env.ok(&["forget", "--keep-last", "1"]);
    let v = env.json(&env.repo(), &["prune", "--repack-threshold", "0"]);
    assert!(v["result"]["packs_deleted"].as_u64().unwrap() >= 1, "{v}");
    let st = env.json(&env.repo(), &["stats"]);
    assert_eq!(st["repository"]["unreferenced_blobs"], 0, "{st}");
    let to = env.restore(&env.repo(), "data@latest", "r");
    assert_same_files(&to, &versions[2].1);
    env.ok(&["check", "--read-data"]);
    // A second prune finds nothing to do.
    let v = env.json(&env.repo(), &["prune", "--repack-threshold", "0"]);
    assert_eq!(v["result"]["packs_deleted"], 0, "{v}");
}

#[test]
fn prune_dry_run_changes_nothing() {
    let env = Env::new();
    three_versions(&env);
    env.ok(&["forget", "--keep-last", "1"]);
    let before = packs(&env.repo());
    let v = env.json(&env.repo(), &["prune", "--dry-run"]);
    assert!(v["result"].is_null());
    assert!(
        !v["plan"]["delete"].as_array().unwrap().is_empty()
            || !v["plan"]["repack"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(packs(&env.repo()), before);
}

#[test]
fn forget_without_a_policy_refuses_and_config_policy_applies() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3 {
        write(&src, "f", &random_bytes(1000, i));
        env.snapshot(&src, "data");
    }
    let out = env.run(&env.repo(), &["forget"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("say what to keep"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.json(&env.repo(), &["snapshots"])
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let cfg = env.path("cbsnap.toml");
    fs::write(&cfg, "[keep]\nlast = 2\n").unwrap();
    let v = env.json(
        &env.repo(),
        &["--config", cfg.to_str().unwrap(), "forget", "--dry-run"],
    );
    let d = v["groups"][0]["decisions"].as_array().unwrap();
    let kept = d.iter().filter(|d| d["keep"] == true).count();
    assert_eq!((d.len(), kept), (3, 2), "{v}");
    assert_eq!(
        env.json(&env.repo(), &["snapshots"])
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let out = env.run(&env.repo(), &["forget", "nosuch", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("data (3 snapshots)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn forget_keeps_tagged_and_other_sources() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "f", b"one");
    let tagged = env.json(
        &env.repo(),
        &[
            "snapshot",
            "--path",
            src.to_str().unwrap(),
            "--name",
            "a",
            "--tag",
            "golden",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&src, "f", b"two");
    env.snapshot(&src, "a");
    env.snapshot(&src, "b");
    let v = env.json(
        &env.repo(),
        &["forget", "a", "--keep-last", "1", "--keep-tag", "golden"],
    );
    let d = v["groups"][0]["decisions"].as_array().unwrap();
    assert!(d.iter().all(|d| d["keep"] == true), "{v}");
    let reasons: Vec<String> = d.iter().map(|d| d["reasons"].to_string()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("tag golden")),
        "{reasons:?}"
    );
    assert!(d.iter().any(|d| d["id"] == tagged.as_str()));
    let out = env.ok(&["forget", "--keep-within", "1h"]);
    assert!(out.contains("removed 0 snapshot(s)"), "{out}");
}

/// SIGKILL prune at different moments; whatever state it leaves, every remaining
/// snapshot restores exactly and `check --read-data` passes.
#[test]
fn prune_killed_at_any_moment_loses_nothing() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..6 {
        write(&src, &format!("f{i}"), &random_bytes(3 << 20, 100 + i));
    }
    env.snapshot(&src, "data");
    // Half of every file changes: every pack becomes about half unused.
    for i in 0..6 {
        let mut b = fs::read(src.join(format!("f{i}"))).unwrap();
        b[..3 << 19].copy_from_slice(&random_bytes(3 << 19, 200 + i));
        write(&src, &format!("f{i}"), &b);
    }
    env.snapshot(&src, "data");
    env.ok(&["forget", "--keep-last", "1"]);
    let template = env.path("template");
    copy_dir(&env.repo(), &template);

    for (n, delay_ms) in [0u64, 15, 40, 80, 150, 250, 400].iter().enumerate() {
        let repo = env.path(&format!("repo-{n}"));
        copy_dir(&template, &repo);
        let mut child = env.cmd(&repo, &["-q", "prune"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let out = env.run(&repo, &["check", "--read-data"]);
        assert!(
            out.status.success(),
            "after kill at {delay_ms} ms: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let to = env.restore(&repo, "data@latest", &format!("r{n}"));
        assert_same_files(&to, &src);
        // A later prune completes the job.
        env.ok_in(&repo, &["prune"]);
        env.ok_in(&repo, &["check", "--read-data"]);
        assert!(pack_bytes(&repo) < pack_bytes(&template));
    }
}

/// Set the repository's pack size, as only a test or a benchmark would.
fn set_pack_size(repo: &std::path::Path, bytes: u64) {
    let path = repo.join("config");
    let mut cfg = cbsnap::config::RepoConfig::decode(&fs::read(&path).unwrap()).unwrap();
    cfg.pack_target_size = bytes;
    // Re-encoded with its checksum (config version 2).
    fs::write(&path, cfg.encode()).unwrap();
}

/// Few packs retired among many: the index entries are removed pack by pack (the
/// targeted path), and nothing else is touched.
#[test]
fn pruning_a_small_part_of_a_large_index_removes_only_that_part() {
    let env = Env::new();
    set_pack_size(&env.repo(), 256 << 10);
    let big = env.path("big");
    for i in 0..8 {
        write(&big, &format!("f{i}.bin"), &random_bytes(1 << 20, 300 + i));
    }
    env.snapshot(&big, "big");
    let small = env.path("small");
    write(&small, "s.bin", &random_bytes(200_000, 310));
    env.snapshot(&small, "small");
    let before = packs(&env.repo());
    assert!(before.len() >= 20, "{} packs", before.len());

    env.ok(&["forget", "small", "--keep-tag", "none"]);
    let v = env.json(&env.repo(), &["prune"]);
    let deleted = v["result"]["packs_deleted"].as_u64().unwrap();
    assert!((1..=2).contains(&deleted), "{v}");
    let after = packs(&env.repo());
    assert_eq!(after.len() as u64, before.len() as u64 - deleted);
    assert!(after.keys().all(|k| before.contains_key(k)));
    let st = env.json(&env.repo(), &["stats"]);
    assert_eq!(st["repository"]["unreferenced_blobs"], 0, "{st}");
    env.ok(&["check", "--read-data"]);
    let to = env.restore(&env.repo(), "big@latest", "r");
    assert_same_files(&to, &big);
}

/// `Index::remove_pack_entries` keeps a blob's entry when it points into another pack.
#[test]
fn retiring_a_pack_keeps_entries_that_point_elsewhere() {
    use cbsnap::index::Index;
    use cbsnap::pack::{BlobEntry, BlobKind, Compression};
    use cbsnap::Id;
    let d = tempfile::tempdir().unwrap();
    let idx = Index::open(&d.path().join("index")).unwrap();
    let entry = |data: &[u8], offset| BlobEntry {
        id: Id::hash(data),
        offset,
        stored_len: data.len() as u32,
        raw_len: data.len() as u32,
        kind: BlobKind::Data,
        compression: Compression::None,
    };
    let (old, new) = (Id::hash(b"old pack"), Id::hash(b"new pack"));
    let shared = entry(b"shared", 12);
    let only_old = entry(b"only old", 18);
    idx.add_pack(&old, 100, &[shared, only_old]).unwrap();
    idx.add_pack(&new, 50, &[entry(b"shared", 12)]).unwrap();
    idx.remove_pack_entries(&old, &[shared, only_old]).unwrap();
    assert_eq!(idx.get(&shared.id).unwrap().unwrap().pack, new);
    assert!(idx.get(&only_old.id).unwrap().is_none());
    let packs = idx.packs().unwrap();
    assert!(!packs.contains_key(&old) && packs.contains_key(&new));
}

/// A snapshot file prune cannot read (a flipped byte, or written by a newer cbsnap)
/// may be the only one that references some data: prune removes nothing, names the
/// file and says what to do, and the data is still there once the file is good again.
#[test]
fn prune_refuses_while_a_snapshot_file_cannot_be_read() {
    let env = Env::new();
    let (x, y) = (env.path("x"), env.path("y"));
    write(&x, "x.bin", &random_bytes(2 << 20, 11));
    write(&y, "y.bin", &random_bytes(2 << 20, 12));
    env.snapshot(&x, "x");
    let yid = env.snapshot(&y, "y");
    let file = env.repo().join("snapshots").join(&yid);
    let good = fs::read(&file).unwrap();
    let before = packs(&env.repo());

    // A flipped byte: the file no longer matches its name.
    let mut flipped = good.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 1;
    fs::write(&file, &flipped).unwrap();
    // A file a newer cbsnap wrote: named by its BLAKE3, version 3 in the header.
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&3u32.to_le_bytes());
    let newer_name = blake3::hash(&newer).to_hex().to_string();
    let newer_file = env.repo().join("snapshots").join(&newer_name);
    fs::write(&newer_file, &newer).unwrap();

    for args in [
        &["prune"][..],
        &["prune", "--dry-run"],
        &["forget", "x", "--keep-last", "1", "--prune"],
    ] {
        let out = env.run(&env.repo(), args);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains("nothing was removed"), "{text}");
        assert!(text.contains(&yid), "{text}");
        assert!(text.contains(&newer_name), "{text}");
        assert!(text.contains("upgrade cbsnap"), "{text}");
        assert_eq!(packs(&env.repo()), before, "{args:?} removed packs");
    }

    // With the good file back and the newer one moved out, y restores whole.
    fs::write(&file, &good).unwrap();
    fs::remove_file(&newer_file).unwrap();
    env.ok(&["prune"]);
    let to = env.restore(&env.repo(), "y@latest", "ry");
    assert_same_files(&to, &y);
}
