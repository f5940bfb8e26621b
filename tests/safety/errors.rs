//! Bad input gets a clear error, a non-zero exit, and loses nothing.

use std::process::Command;

use crate::util::*;

#[test]
fn missing_path_is_a_clear_error() {
    let repo = Repo::new();
    let o = repo.run(&["snapshot", "--path", "/no/such/dir", "--name", "x"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/no/such/dir") && e.contains("No such file"),
        "{e}"
    );
    assert!(repo.snapshots_json().is_empty());
}

#[test]
fn unreadable_file_is_warned_recorded_and_exit_3() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("ok"), b"fine").unwrap();
    std::fs::write(src.path().join("locked"), b"secret").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.path().join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let repo = Repo::new();
    let mut cmd = repo.cmd();
    if is_root() {
        // root reads everything; run as nobody, with a repository nobody may write.
        for p in [repo.dir.path(), src.path()] {
            Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(p)
                .status()
                .unwrap();
        }
        std::fs::set_permissions(
            src.path().join("locked"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        cmd = repo.cmd_as_nobody();
    }
    let o = cmd
        .args([
            "snapshot",
            "--path",
            src.path().to_str().unwrap(),
            "--name",
            "partial",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    let snaps = repo.snapshots_json();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["errors"][0]["path"], "locked");
    let out = tempfile::tempdir().unwrap();
    repo.restore("partial@latest", &out.path().join("r"));
    assert_eq!(std::fs::read(out.path().join("r/ok")).unwrap(), b"fine");
    assert!(!out.path().join("r/locked").exists());
}

fn make_tar(dir: &std::path::Path, gzip: bool) -> Vec<u8> {
    let o = Command::new("tar")
        .arg(if gzip { "-cz" } else { "-c" })
        .arg("-C")
        .arg(dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

#[test]
fn truncated_or_corrupt_tar_commits_nothing() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), random_bytes(300_000, 1)).unwrap();
    std::fs::write(src.path().join("b"), random_bytes(300_000, 2)).unwrap();
    let plain = make_tar(src.path(), false);
    let gz = make_tar(src.path(), true);
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Cut inside file data.
        ("mid-entry", plain[..plain.len() / 2].to_vec()),
        // Cut exactly after an entry: no end-of-archive marker.
        (
            "entry-boundary",
            plain[..512 + 300_000usize.div_ceil(512) * 512 + 512].to_vec(),
        ),
        ("gzip-truncated", gz[..gz.len() / 2].to_vec()),
        ("gzip-corrupt", {
            let mut g = gz.clone();
            let m = g.len() / 2;
            for b in &mut g[m..m + 64] {
                *b ^= 0x5a;
            }
            g
        }),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        let f = work.path().join(what);
        std::fs::write(&f, &bytes).unwrap();
        let o = repo.run(&["snapshot", "--tar", f.to_str().unwrap(), "--name", what]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("tar stream"), "{what}: {}", stderr(&o));
    }
    assert!(repo.snapshots_json().is_empty());
    // The repository still works.
    let f = work.path().join("good.tar");
    std::fs::write(&f, &plain).unwrap();
    repo.ok(&["snapshot", "--tar", f.to_str().unwrap(), "--name", "good"]);
}

#[test]
fn hostile_tar_entries_are_refused_and_cannot_escape() {
    let work = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("ok.txt", &b"fine"[..]),
        ("../escape.txt", b"evil"),
        ("a/../../escape2.txt", b"evil"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        // Write the name bytes directly: the tar crate refuses `..` in set_path.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    let f = work.path().join("hostile.tar");
    std::fs::write(&f, bytes).unwrap();
    let repo = Repo::new();
    let o = repo.run(&[
        "snapshot",
        "--tar",
        f.to_str().unwrap(),
        "--name",
        "hostile",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("unsafe path"), "{}", stderr(&o));
    let target = work.path().join("inner/restored");
    repo.restore("hostile@latest", &target);
    assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"fine");
    assert!(!work.path().join("inner/escape.txt").exists());
    assert!(!work.path().join("escape.txt").exists());
    assert!(!work.path().join("escape2.txt").exists());
}

#[test]
fn repo_that_is_not_a_repository_is_refused_and_untouched() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("notes.txt"), b"my notes").unwrap();
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(d.path())
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("is not a cbsnap repository") && e.contains("cbsnap --repo"),
        "{e}"
    );
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    // Nor does init overwrite it.
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(d.path())
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // A missing directory is not created by a read command.
    let missing = d.path().join("nope");
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(&missing)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!missing.exists());
}

/// Two typos of a hurried operator. A directory inside a repository given as
/// `--repo` names the repository to pass (it suggested `init` in a new directory
/// under it); a snapshot of a host path restored without `--to` names the path it
/// was taken from.
#[test]
fn a_path_inside_a_repository_and_a_missing_to_name_what_to_type() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"x").unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "work");
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(repo.path().join("packs"))
        .args(["snapshots"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!("pass --repo {}", repo.path().display())),
        "{e}"
    );
    let o = repo.run(&["restore", "work@latest"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!("--to {} --force", src.path().display())),
        "{e}"
    );
}

#[test]
fn unknown_name_or_selector_lists_what_exists() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"x").unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "qdrant-data");
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("r");
    let o = repo.run(&["restore", "qdrant-dta@latest", "--to", to.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("Did you mean `qdrant-data`"),
        "{}",
        stderr(&o)
    );
    let o = repo.run(&[
        "restore",
        "qdrant-data@yesterday",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("qdrant-data@latest~0"),
        "{}",
        stderr(&o)
    );
    let o = repo.run(&[
        "restore",
        "qdrant-data@latest~5",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!to.exists(), "a failed restore created its target");
    // The compose-prefixed spelling works.
    repo.restore("code-buddy_qdrant-data@latest", &to);
    assert_eq!(std::fs::read(to.join("f")).unwrap(), b"x");
}

#[test]
fn restore_refuses_a_non_empty_target_without_force() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"new").unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "s");
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("f"), b"old").unwrap();
    std::fs::write(out.path().join("keep"), b"mine").unwrap();
    let o = repo.run(&["restore", "s@latest", "--to", out.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.path().join("f")).unwrap(), b"old");
    repo.ok(&[
        "restore",
        "s@latest",
        "--to",
        out.path().to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(std::fs::read(out.path().join("f")).unwrap(), b"new");
    assert_eq!(std::fs::read(out.path().join("keep")).unwrap(), b"mine");
}

/// Inputs the fuzzers found (fuzz/regressions): fields far beyond what a filesystem
/// allows are refused per entry (exit 3), never a panic.
#[test]
fn fuzzer_found_tar_inputs_are_refused_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let repo = Repo::new();
    for name in ["tar_source-1", "tar_source-2", "tar_source-3"] {
        let f = root.join(name);
        let o = repo.run(&["snapshot", "--tar", f.to_str().unwrap(), "--name", name]);
        assert_eq!(o.status.code(), Some(3), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("skipped"), "{name}: {}", stderr(&o));
    }
    // The snapshots that were committed read back.
    for s in repo.snapshots_json() {
        repo.ok(&["ls", &format!("{}@latest", s["name"].as_str().unwrap())]);
    }
    // A config whose chunker sizes FastCDC cannot take is a damaged config, not a crash.
    let cfg = std::fs::read(root.join("snapshot_decode-1")).unwrap();
    std::fs::write(repo.path().join("config"), cfg).unwrap();
    let o = repo.run(&["snapshots"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a cbsnap repository") || stderr(&o).contains("damaged"),
        "{}",
        stderr(&o)
    );
}

/// A user without write permission on a repository's index files (root's repository,
/// its directories open to all) reads it through a read-only index and is told why a
/// write cannot be done; the index is not taken for damaged, discarded and rebuilt,
/// which would leave the repository worse for its owner.
#[test]
fn another_users_index_is_not_taken_for_damage() {
    if !is_root() {
        eprintln!("skipped: needs root to make a repository another user cannot write");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"data").unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "s");
    let index = repo.path().join("index");
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(&index);
    // Everything readable, every directory writable; the files stay root's.
    let chmod = |args: &[&str]| {
        assert!(Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap()
            .success());
    };
    let root = repo.dir.path().to_str().unwrap();
    chmod(&["chmod", "-R", "a+rX", root]);
    chmod(&[
        "find", root, "-type", "d", "-exec", "chmod", "a+rwx", "{}", "+",
    ]);

    // Reading needs no write: the index is opened read-only.
    let o = repo.cmd_as_nobody().arg("snapshots").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains('s'));
    // Writing does: refused, with the cause.
    let o = repo
        .cmd_as_nobody()
        .args([
            "snapshot",
            "--path",
            src.path().to_str().unwrap(),
            "--name",
            "s",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("damaged"), "{}", stderr(&o));
    assert_eq!(listing(&index), before, "the index was touched");

    let o = repo.cmd().args(["check"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("rebuild"), "{}", stderr(&o));
}

/// A repository whose `config` was lost is named as that, with the advice to copy
/// the config back: not "not a repository, init one" (init elsewhere would start an
/// empty repository beside the data). `--path DIR --time T` is refused: the date is
/// only for `--tar`, and it was ignored without a word.
#[test]
fn a_lost_config_and_a_stray_time_are_named() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"x").unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "s");
    let o = repo.run(&[
        "snapshot",
        "--path",
        src.path().to_str().unwrap(),
        "--time",
        "2020-01-01",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--time"), "{}", stderr(&o));
    assert_eq!(repo.snapshots_json().len(), 1);

    let config = repo.path().join("config");
    let saved = std::fs::read(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    let o = repo.run(&["snapshots"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("lost its config"), "{}", stderr(&o));
    assert!(stderr(&o).contains("do not run `init`"), "{}", stderr(&o));
    assert!(!config.exists());
    std::fs::write(&config, saved).unwrap();
    assert_eq!(repo.snapshots_json().len(), 1);
}
