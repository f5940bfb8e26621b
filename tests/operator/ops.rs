//! Operator stumbles of issue 11, end to end through the binary: command
//! suggestions, completions and man pages, tag and date selectors, `init` hints,
//! tar imports with their real date, partial restores and `--delete`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{stderr, Repo, BIN};

fn snapshots_of(repo: &Repo, name: &str) -> Vec<serde_json::Value> {
    repo.snapshots_json()
        .into_iter()
        .filter(|s| s["name"] == name)
        .collect()
}

/// Every path below `root`, relative, sorted.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn unknown_command_suggests_only_a_close_spelling() {
    let o = Command::new(BIN).arg("find").output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("unrecognized subcommand 'find'"), "{e}");
    assert!(!e.contains("index"), "`find` must not suggest `index`: {e}");
    assert!(e.contains("cbsnap ls NAME@latest"), "{e}");

    let o = Command::new(BIN).arg("snapshto").output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("'snapshot'"), "a typo gets its command: {e}");

    let o = Command::new(BIN).arg("qwertz").output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(!e.contains("similar"), "nothing is close to qwertz: {e}");
}

#[test]
fn completions_and_man_pages_are_generated() {
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_cbsnap()") && bash.contains("restore"),
        "{bash}"
    );
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef cbsnap"), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c cbsnap") && fish.contains("-l include"));
    let man = run(&["man"]);
    assert!(man.contains(".TH cbsnap 1"), "{man}");
    assert!(man.contains("snapshot"), "{man}");

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    run(&["man", pages.to_str().unwrap()]);
    for p in [
        "cbsnap.1",
        "cbsnap-restore.1",
        "cbsnap-mount.1",
        "cbsnap-forget.1",
    ] {
        let text = fs::read_to_string(pages.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(text.starts_with(".ie"), "{p}: {text}");
    }
    let restore = fs::read_to_string(pages.join("cbsnap-restore.1")).unwrap();
    assert!(restore.contains("\\-\\-delete"), "{restore}");
}

#[test]
fn tag_selector_picks_the_newest_tagged_snapshot() {
    let repo = Repo::new();
    let src = repo.dir.path().join("ws");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "before").unwrap();
    let p = src.to_str().unwrap();
    repo.ok(&["snapshot", "--path", p, "--tag", "before-upgrade"]);
    fs::write(src.join("f"), "after").unwrap();
    repo.ok(&["snapshot", "--path", p]);

    let out = repo.dir.path().join("out");
    repo.restore("ws@tag:before-upgrade", &out);
    assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "before");

    let o = repo.run(&["ls", "ws@tag:nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no snapshot of ws matches `tag:nope`"));
}

/// `NAME@YYYY-MM-DD` takes the newest snapshot at or before the end of that (local)
/// day: three snapshots dated the 10th, 15th and 20th, each holding its own content,
/// so a selector that took any other snapshot restores the wrong bytes.
#[test]
fn date_selector_takes_the_newest_at_or_before_that_day_and_says_so() {
    let repo = Repo::new();
    for (day, content) in [("10", "tenth"), ("15", "fifteenth"), ("20", "twentieth")] {
        let tar = make_tar(repo.dir.path(), &format!("ws-{day}.tar.gz"), 0, content);
        repo.ok(&[
            "snapshot",
            "--tar",
            tar.to_str().unwrap(),
            "--name",
            "ws",
            "--time",
            &format!("2026-01-{day} 12:00"),
        ]);
    }
    // Not quiet: the note is informational.
    let restore = |day: &str| {
        let to = repo.dir.path().join(format!("out-{day}"));
        let o = Command::new(BIN)
            .arg("--repo")
            .arg(repo.path())
            .env("XDG_CONFIG_HOME", repo.dir.path().join("no-config"))
            .args(["restore", &format!("ws@2026-01-{day}"), "--to"])
            .arg(&to)
            .output()
            .unwrap();
        let data = fs::read_to_string(to.join("collection/data.bin")).ok();
        (o, data)
    };
    for (day, want, note_day) in [
        ("15", "fifteenth", None),
        ("17", "fifteenth", Some("2026-01-15 12:00")),
        ("19", "fifteenth", Some("2026-01-15 12:00")),
        ("20", "twentieth", None),
        ("25", "twentieth", Some("2026-01-20 12:00")),
        ("10", "tenth", None),
        ("12", "tenth", Some("2026-01-10 12:00")),
    ] {
        let (o, data) = restore(day);
        let e = stderr(&o);
        assert!(o.status.success(), "@2026-01-{day}: {e}");
        assert_eq!(data.as_deref(), Some(want), "@2026-01-{day}");
        match note_day {
            None => assert!(!e.contains("no snapshot on"), "@2026-01-{day}: {e}"),
            Some(taken) => {
                assert!(
                    e.contains(&format!("ws has no snapshot on 2026-01-{day}")),
                    "@2026-01-{day}: {e}"
                );
                assert!(
                    e.contains(&format!(
                        "newest at or before the end of that day, which is the one of {taken}"
                    )),
                    "@2026-01-{day}: {e}"
                );
            }
        }
    }
    // Before the first snapshot there is nothing to take.
    let (o, data) = restore("09");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no snapshot of ws matches `2026-01-09`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(data, None);
}

#[test]
fn init_hint_in_a_non_empty_folder_names_a_usable_path() {
    let dir = tempfile::tempdir().unwrap();
    let busy = dir.path().join("backups");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("old.tar.gz"), "x").unwrap();
    let cbsnap = |args: &[&str]| {
        Command::new(BIN)
            .arg("--repo")
            .arg(&busy)
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = cbsnap(&["snapshots"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let bad_hint = format!("cbsnap --repo {} init`", busy.display());
    assert!(
        !e.contains(&bad_hint),
        "the hint must not send us to a failing init: {e}"
    );
    let good = busy.join("cbsnap");
    assert!(
        e.contains(&format!("cbsnap --repo {} init", good.display())),
        "{e}"
    );
    // What the hint says works.
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(&good)
        .arg("init")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // And init in the folder itself explains itself the same way.
    let o = cbsnap(&["init"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("not empty and not a cbsnap repository"), "{e}");
    assert!(e.contains(&format!("{} init", good.display())), "{e}");
}

fn make_tar(dir: &Path, file_name: &str, mtime: u64, content: &str) -> std::path::PathBuf {
    let path = dir.join(file_name);
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append_data(&mut h, "collection/data.bin", content.as_bytes())
        .unwrap();
    b.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn tar_import_takes_its_name_from_the_file_and_its_date_from_time() {
    let repo = Repo::new();
    let nov1 = chrono::DateTime::parse_from_rfc3339("2026-11-01T03:15:00Z")
        .unwrap()
        .timestamp() as u64;
    // A current snapshot first: the old import must not become @latest.
    let now_tar = make_tar(repo.dir.path(), "qdrant-now.tar", nov1 + 86400 * 20, "new");
    repo.ok(&[
        "snapshot",
        "--tar",
        now_tar.to_str().unwrap(),
        "--name",
        "qdrant-data",
    ]);
    let old = make_tar(
        repo.dir.path(),
        "code-buddy_qdrant-data.tar.gz",
        nov1,
        "old",
    );
    let o = repo.run(&[
        "snapshot",
        "--tar",
        old.to_str().unwrap(),
        "--time",
        "2026-11-01T05:00:00Z",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snaps = snapshots_of(&repo, "qdrant-data");
    assert_eq!(
        snaps.len(),
        2,
        "the name comes from the file name: {snaps:?}"
    );
    let times: Vec<&str> = snaps.iter().map(|s| s["time"].as_str().unwrap()).collect();
    assert!(
        times.iter().any(|t| t.starts_with("2026-11-01T05:00:00")),
        "{times:?}"
    );
    let out = repo.dir.path().join("latest");
    repo.restore("qdrant-data@latest", &out);
    assert_eq!(
        fs::read_to_string(out.join("collection/data.bin")).unwrap(),
        "new"
    );
    let out = repo.dir.path().join("nov");
    repo.restore("qdrant-data@2026-11-02", &out);
    assert_eq!(
        fs::read_to_string(out.join("collection/data.bin")).unwrap(),
        "old"
    );

    // --time tar: the newest file's date.
    let other = make_tar(repo.dir.path(), "code-buddy_agent-state.tar.gz", nov1, "a");
    repo.ok(&[
        "snapshot",
        "--tar",
        other.to_str().unwrap(),
        "--time",
        "tar",
    ]);
    let snaps = snapshots_of(&repo, "agent-state");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(
        snaps[0]["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-01T03:15:00"),
        "{snaps:?}"
    );

    // Without --time an old tar is dated now, and cbsnap says how to date it.
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(repo.path())
        .env("XDG_CONFIG_HOME", repo.dir.path().join("no-config"))
        .args(["snapshot", "--tar", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--time tar"), "{}", stderr(&o));

    let o = repo.run(&[
        "snapshot",
        "--tar",
        other.to_str().unwrap(),
        "--time",
        "soon",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--time \"soon\""), "{}", stderr(&o));
}

#[test]
fn restore_force_keeps_extra_files_and_delete_removes_them() {
    let repo = Repo::new();
    let src = repo.dir.path().join("ws");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), "a").unwrap();
    fs::write(src.join("sub/b"), "b").unwrap();
    repo.snapshot_dir(&src, "ws");
    fs::write(src.join("extra"), "new since").unwrap();
    fs::write(src.join("sub/extra2"), "new since").unwrap();
    fs::write(src.join("a"), "changed").unwrap();
    let to = src.to_str().unwrap();

    repo.ok(&["restore", "ws@latest", "--to", to, "--force"]);
    assert_eq!(fs::read_to_string(src.join("a")).unwrap(), "a");
    assert!(
        src.join("extra").exists(),
        "--force keeps what the snapshot lacks"
    );

    repo.ok(&["restore", "ws@latest", "--to", to, "--delete"]);
    assert_eq!(listing(&src), ["a", "sub", "sub/b"]);
}

#[test]
fn partial_restore_takes_included_paths_minus_excluded_globs() {
    let repo = Repo::new();
    let src = repo.dir.path().join("ws");
    fs::create_dir_all(src.join("app/cache")).unwrap();
    fs::create_dir_all(src.join("app/src")).unwrap();
    fs::create_dir_all(src.join("other")).unwrap();
    fs::write(src.join("app/src/main.rs"), "fn main() {}").unwrap();
    fs::write(src.join("app/run.log"), "log").unwrap();
    fs::write(src.join("app/cache/x"), "cache").unwrap();
    fs::write(src.join("app/README"), "readme").unwrap();
    fs::write(src.join("other/o"), "o").unwrap();
    fs::write(src.join("top"), "t").unwrap();
    repo.snapshot_dir(&src, "ws");

    let out = repo.dir.path().join("out");
    let o = out.to_str().unwrap();
    repo.ok(&[
        "restore",
        "ws@latest",
        "--to",
        o,
        "--include",
        "app",
        "--exclude",
        "*.log",
        "--exclude",
        "cache",
    ]);
    assert_eq!(
        listing(&out),
        ["app", "app/README", "app/src", "app/src/main.rs"]
    );
    assert_eq!(
        fs::read_to_string(out.join("app/src/main.rs")).unwrap(),
        "fn main() {}"
    );

    // With --delete only the included subtree is cleaned; excluded entries stay.
    fs::write(out.join("app/stray"), "s").unwrap();
    fs::write(out.join("app/mine.log"), "kept: excluded").unwrap();
    fs::write(out.join("unrelated"), "kept: not included").unwrap();
    repo.ok(&[
        "restore",
        "ws@latest",
        "--to",
        o,
        "--include",
        "app/",
        "--exclude",
        "*.log",
        "--delete",
    ]);
    assert!(!out.join("app/stray").exists());
    assert!(out.join("app/mine.log").exists());
    assert!(out.join("unrelated").exists());
    assert!(
        out.join("app/cache/x").exists(),
        "no --exclude cache this time"
    );

    let o2 = repo.run(&[
        "restore",
        "ws@latest",
        "--to",
        o,
        "--force",
        "--include",
        "app/nope",
    ]);
    assert_eq!(o2.status.code(), Some(2), "{}", stderr(&o2));
    assert!(stderr(&o2).contains("no such path in the snapshot: app/nope"));
    // A typo in --include makes no target directory (it left an empty one).
    let fresh = repo.dir.path().join("fresh");
    let o4 = repo.run(&[
        "restore",
        "ws@latest",
        "--to",
        fresh.to_str().unwrap(),
        "--include",
        "app/nope",
    ]);
    assert_eq!(o4.status.code(), Some(2), "{}", stderr(&o4));
    assert!(!fresh.exists(), "the refused restore made its target");
    // Only into a directory.
    let o3 = repo.run(&["restore", "ws@latest", "--include", "app"]);
    assert_eq!(o3.status.code(), Some(2), "{}", stderr(&o3));
}

#[test]
fn docker_restore_all_delete_makes_host_paths_equal_too() {
    // A run of a project without volumes: its host path only.
    let _engine = crate::util::docker::engine();
    let repo = Repo::new();
    let ws = repo.dir.path().join("workspace");
    fs::create_dir(&ws).unwrap();
    fs::write(ws.join("kept"), "k").unwrap();
    let config = repo.dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "project = \"cbsnap-test-ops-{}\"\npaths = [{:?}]\n",
            std::process::id(),
            ws.display().to_string()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    repo.ok(&["--config", c, "snapshot", "--all"]);
    fs::write(ws.join("added-since"), "a").unwrap();
    fs::write(ws.join("kept"), "changed").unwrap();

    repo.ok(&["--config", c, "restore", "--all", "--force"]);
    assert_eq!(fs::read_to_string(ws.join("kept")).unwrap(), "k");
    assert!(ws.join("added-since").exists(), "--force keeps extra files");

    repo.ok(&["--config", c, "restore", "--all", "--delete"]);
    assert_eq!(listing(&ws), ["kept"], "--delete makes the path equal");
}
