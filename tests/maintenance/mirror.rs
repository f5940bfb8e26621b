//! rsync mirrors: incremental, checkable, restorable, with or without the index.

use std::fs;
use std::path::Path;

use crate::util::*;

/// Sum of rsync's "Total bytes sent" over all its runs in `out`.
fn bytes_sent(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.strip_prefix("Total bytes sent: "))
        .map(|n| n.trim().replace(',', "").parse::<u64>().unwrap())
        .sum()
}

fn snapshot_files(repo: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_second_mirror_sends_little_more_than_the_new_packs() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4 {
        write(&src, &format!("f{i}.bin"), &random_bytes(3 << 20, 20 + i));
    }
    let first = env.snapshot(&src, "data");
    copy_dir(&src, &env.path("v1"));
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap();
    env.ok(&["mirror", m]);
    assert!(
        !mirror.join("index").exists(),
        "the index is not copied by default"
    );
    assert!(!mirror.join("locks").read_dir().unwrap().any(|_| true));
    env.ok_in(&mirror, &["check"]);

    // One new file, one file changed in the middle.
    write(&src, "new.bin", &random_bytes(3 << 20, 30));
    let mut b = fs::read(src.join("f1.bin")).unwrap();
    b[1 << 20..(1 << 20) + 300_000].copy_from_slice(&random_bytes(300_000, 31));
    write(&src, "f1.bin", &b);
    let second = env.snapshot(&src, "data");

    let mirrored = packs(&mirror);
    let new_packs: u64 = packs(&env.repo())
        .iter()
        .filter(|(id, _)| !mirrored.contains_key(*id))
        .map(|(_, s)| s)
        .sum();
    let new_snaps: u64 = snapshot_files(&env.repo())
        .iter()
        .filter(|(n, _)| n == &second)
        .map(|(_, s)| s)
        .sum();
    let expected = new_packs + new_snaps;
    assert!(new_packs > 3 << 20, "{new_packs}");

    let out = env.ok(&["mirror", m, "--", "--stats"]);
    let sent = bytes_sent(&out);
    assert!(
        sent >= expected && sent as f64 <= expected as f64 * 1.05,
        "rsync sent {sent} bytes for {expected} bytes of new packs and snapshots\n{out}"
    );
    assert_eq!(packs(&mirror), packs(&env.repo()));
    assert_eq!(snapshot_files(&mirror), snapshot_files(&env.repo()));

    env.ok_in(&mirror, &["check", "--read-data"]);
    let r1 = env.restore(&mirror, &format!("data@{}", &first[..12]), "r1");
    assert_same_files(&r1, &env.path("v1"));
    let r2 = env.restore(&mirror, &format!("data@{}", &second[..12]), "r2");
    assert_same_files(&r2, &src);
}

#[test]
fn a_mirror_with_its_index_restores_too() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(2 << 20, 40));
    env.snapshot(&src, "data");
    let mirror = env.path("mirror");
    env.ok(&["mirror", "--with-index", mirror.to_str().unwrap()]);
    assert!(mirror.join("index").is_dir());
    env.ok_in(&mirror, &["check", "--read-data"]);
    let r = env.restore(&mirror, "data@latest", "r");
    assert_same_files(&r, &src);
}

#[test]
fn mirror_delete_follows_forget_and_prune_and_keeps_the_mirror_index() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(2 << 20, 50));
    env.snapshot(&src, "data");
    write(&src, "a.bin", &random_bytes(2 << 20, 51));
    env.snapshot(&src, "data");
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap();
    env.ok(&["mirror", m]);
    env.ok_in(&mirror, &["check"]);
    assert!(
        mirror.join("index").is_dir(),
        "the mirror built its own index"
    );

    env.ok(&["forget", "--keep-last", "1", "--prune"]);
    env.ok(&["mirror", m]);
    assert_eq!(
        snapshot_files(&mirror).len(),
        2,
        "without --delete nothing is removed"
    );
    env.ok(&["mirror", "--delete", m]);
    assert_eq!(snapshot_files(&mirror), snapshot_files(&env.repo()));
    assert_eq!(packs(&mirror), packs(&env.repo()));
    assert!(
        mirror.join("index").is_dir(),
        "--delete leaves the mirror's index alone"
    );
    env.ok_in(&mirror, &["check", "--read-data"]);
    let r = env.restore(&mirror, "data@latest", "r");
    assert_same_files(&r, &src);
}

/// The by-hand recipe, scripts/mirror.sh, run under `with-lock`; docs/MIRROR.md
/// shows the same commands.
#[test]
fn the_documented_script_works_under_with_lock() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(1 << 20, 60));
    env.snapshot(&src, "data");
    let mirror = env.path("mirror");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mirror.sh");
    let doc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/MIRROR.md")).unwrap();
    let body = fs::read_to_string(script).unwrap();
    for line in body
        .lines()
        .filter(|l| l.starts_with("rsync") || l.starts_with("  --") || l.starts_with("ls "))
    {
        assert!(
            doc.contains(line.trim()),
            "docs/MIRROR.md lacks `{}`",
            line.trim()
        );
    }
    let m = mirror.to_str().unwrap();
    env.ok(&["with-lock", "--", "sh", script, m]);
    env.ok_in(&mirror, &["check", "--read-data"]);
    let r = env.restore(&mirror, "data@latest", "r");
    assert_same_files(&r, &src);

    // Forget and prune, then the script follows with --delete semantics.
    write(&src, "a.bin", &random_bytes(1 << 20, 61));
    env.snapshot(&src, "data");
    env.ok(&["forget", "--keep-last", "1", "--prune"]);
    env.ok(&["with-lock", "--", "sh", script, m, "--quiet"]);
    assert_eq!(packs(&mirror), packs(&env.repo()));
    env.ok_in(&mirror, &["check", "--read-data"]);
    let r = env.restore(&mirror, "data@latest", "r2");
    assert_same_files(&r, &src);
}

/// `cbsnap mirror` locks a local mirror as well: it does not copy into a mirror that a
/// prune holds.
#[test]
fn mirror_waits_for_a_prune_on_the_mirror() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "a.bin", &random_bytes(100_000, 90));
    env.snapshot(&src, "data");
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap();
    env.ok(&["mirror", m]);
    let holder = env
        .cmd(&mirror, &["with-lock", "--exclusive", "--", "sleep", "2"])
        .spawn()
        .unwrap();
    wait_for_lock(&mirror);
    let out = env
        .cmd(&env.repo(), &["mirror", m])
        .env("CBSNAP_LOCK_WAIT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    assert!(holder.wait_with_output().unwrap().status.success());
    env.ok(&["mirror", m]);
}

/// A mirror goes only where it cannot harm: a new or empty directory, or this
/// repository's own mirror. A directory of other files (a typo) or another
/// repository is refused before anything is written (`--delete` emptied the one and
/// replaced the other, with exit 0); each keeps what it had.
#[test]
fn a_mirror_never_writes_over_other_files_or_another_repository() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "f.bin", &random_bytes(1 << 20, 60));
    env.snapshot(&src, "data");

    let victim = env.path("victim");
    write(&victim, "docs/thesis.txt", b"important");
    let other = env.path("other");
    env.ok_in(&other, &["init"]);
    let theirs = env.path("theirs");
    write(&theirs, "t.bin", &random_bytes(1 << 20, 61));
    let other_id = env.json(
        &other,
        &[
            "snapshot",
            "--path",
            theirs.to_str().unwrap(),
            "--name",
            "theirs",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_config = fs::read(other.join("config")).unwrap();
    // Files a listing would skip: a name that is not UTF-8, a temporary-looking
    // directory; and a path with a `:` after a `/`, which rsync takes as local.
    let odd = env.path("odd");
    fs::create_dir_all(&odd).unwrap();
    use std::os::unix::ffi::OsStrExt;
    fs::write(
        odd.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        b"mine",
    )
    .unwrap();
    let tmpish = env.path("tmpish");
    write(&tmpish, ".tmp-myproject/notes", b"mine");
    let colon = env.path("mx:1");
    write(&colon, "notes.txt", b"mine");

    for (dest, what) in [
        (&odd, "not a cbsnap repository"),
        (&tmpish, "not a cbsnap repository"),
        (&colon, "not a cbsnap repository"),
    ] {
        let o = env.run(&env.repo(), &["mirror", dest.to_str().unwrap(), "--delete"]);
        assert_eq!(o.status.code(), Some(2), "{dest:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(what), "{}", stderr(&o));
    }
    assert_eq!(fs::read_dir(&odd).unwrap().count(), 1);
    assert_eq!(
        fs::read(tmpish.join(".tmp-myproject/notes")).unwrap(),
        b"mine"
    );
    assert_eq!(fs::read(colon.join("notes.txt")).unwrap(), b"mine");
    for (dest, what) in [
        (&victim, "not a cbsnap repository"),
        (&other, "another cbsnap repository"),
    ] {
        for flags in [&[][..], &["--delete"]] {
            let mut args = vec!["mirror", dest.to_str().unwrap()];
            args.extend_from_slice(flags);
            let o = env.run(&env.repo(), &args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(what), "{}", stderr(&o));
        }
    }
    assert_eq!(
        fs::read(victim.join("docs/thesis.txt")).unwrap(),
        b"important"
    );
    assert_eq!(fs::read(other.join("config")).unwrap(), other_config);
    let snaps = env.json(&other, &["snapshots"]);
    assert_eq!(snaps[0]["id"].as_str().unwrap(), other_id, "{snaps}");

    // An empty directory, and a first mirror cut short (only a repository's names,
    // no config yet), are taken.
    let empty = env.path("empty");
    fs::create_dir(&empty).unwrap();
    env.ok(&["mirror", empty.to_str().unwrap()]);
    let cut = env.path("cut");
    fs::create_dir(&cut).unwrap();
    copy_dir(&env.repo().join("packs"), &cut.join("packs"));
    env.ok(&["mirror", cut.to_str().unwrap(), "--delete"]);
    env.ok_in(&cut, &["check", "--read-data"]);
}
