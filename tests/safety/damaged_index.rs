//! A damaged index found while in use, not at open (a table block that fails its
//! checksum): it is the index's damage, not the repository's. `check` says to rebuild
//! the index and check again, and gives none of the advice (prune, move packs,
//! forget) that the index's word would make destructive; a snapshot rebuilds it, as
//! README promises, and is taken.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::util::*;

/// A repository with two snapshots of 300 small files (`dsrc`), whose index table
/// has its first data block damaged: the index opens, and lookups of the lowest
/// ids fail with "block checksum mismatch".
fn damaged_index() -> (Env, PathBuf) {
    let env = Env::new();
    let src = env.path("dsrc");
    for i in 0..300 {
        write(&src, &format!("f{i:03}"), format!("file {i}").as_bytes());
    }
    env.snapshot(&src, "dsrc");
    // The second open replays the write-ahead log into a table file.
    env.snapshot(&src, "dsrc");
    let mut hurt = 0;
    for e in fs::read_dir(env.repo().join("index")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "sst") {
            let mut b = fs::read(e.path()).unwrap();
            for x in &mut b[100..110] {
                *x ^= 0xff;
            }
            fs::write(e.path(), &b).unwrap();
            hurt += 1;
        }
    }
    assert!(hurt > 0, "no table file to damage");
    (env, src)
}

/// The tester's case: `check` reported unreferenced packs "`cbsnap prune` removes",
/// hundreds of unreadable blobs and broken snapshots, and advised moving packs out,
/// forgetting and pruning, though the packs were whole and `cbsnap index rebuild`
/// fixed everything.
#[test]
fn check_on_a_damaged_index_says_rebuild_it_not_prune() {
    let (env, src) = damaged_index();
    let o = env.run(&env.repo(), &["check"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("the index is damaged"), "{out}");
    assert!(out.contains("block checksum mismatch"), "{out}");
    let all = format!("{out}{err}");
    assert!(all.contains("run `cbsnap index rebuild`, then `cbsnap check` again"));
    for wrong in [
        "`cbsnap prune` removes",
        "run `cbsnap prune`",
        "unreferenced",
        "move each damaged pack",
        "forget the broken",
        "breaks",
    ] {
        assert!(
            !all.contains(wrong),
            "advice on the index's word ({wrong}): {all}"
        );
    }

    let o = env.run(&env.repo(), &["--json", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["index_damaged"].is_string(), "{v}");
    assert_eq!(v["orphans"]["packs"], 0, "{v}");
    for p in v["problems"].as_array().unwrap() {
        assert_eq!(p["snapshots"].as_array().unwrap().len(), 0, "{v}");
    }

    // Following the advice is all it takes: the packs were never damaged.
    env.ok(&["index", "rebuild"]);
    let out = env.ok(&["check", "--read-data"]);
    assert!(out.contains("no damage found"), "{out}");
    let to = env.restore(&env.repo(), "dsrc@latest", "r");
    assert_same_files(&to, &src);
}

/// A snapshot whose lookups meet the damage (a copy of the files under another name:
/// every chunk is looked up) used to fail with exit 1. Now the index is rebuilt from
/// the packs and the snapshot taken on it; a tar on stdin, which cannot be read
/// twice, fails having rebuilt the index and says to run it again, which works.
#[test]
fn a_snapshot_on_a_damaged_index_rebuilds_it() {
    let (env, src) = damaged_index();
    let copy = env.path("copy");
    copy_dir(&src, &copy);
    let o = env.run(&env.repo(), &["snapshot", "--path", copy.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("rebuilding it from the packs"), "{err}");
    let out = env.ok(&["check", "--read-data"]);
    assert!(out.contains("no damage found"), "{out}");
    let to = env.restore(&env.repo(), "copy@latest", "r");
    assert_same_files(&to, &src);

    let (env, src) = damaged_index();
    let tar = env.path("dsrc.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let import = || {
        env.cmd(
            &env.repo(),
            &["snapshot", "--tar", "-", "--name", "imported"],
        )
        .stdin(Stdio::from(fs::File::open(&tar).unwrap()))
        .output()
        .unwrap()
    };
    let o = import();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("it has been rebuilt from the packs"), "{err}");
    assert!(err.contains("Run it again"), "{err}");
    let o = import();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let to = env.restore(&env.repo(), "imported@latest", "r");
    assert_same_files(&to, &src);
    env.ok(&["check", "--read-data"]);
}

/// A restore whose lookups meet the damage stops there (exit 1) and says to rebuild
/// the index; it went on, restored every file the damaged block did not describe,
/// and listed the others as not restored (exit 3), so that a volume's containers were
/// started on part of its files though every pack was whole. After `index rebuild`
/// the same restore puts every file in place.
#[test]
fn a_restore_on_a_damaged_index_stops_and_says_to_rebuild_it() {
    let (env, src) = damaged_index();
    let to = env.path("r");
    let o = env.run(
        &env.repo(),
        &["restore", "dsrc@latest", "--to", to.to_str().unwrap()],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("index rebuild"), "{err}");
    assert!(!err.contains("not restored exactly"), "{err}");
    env.ok(&["index", "rebuild"]);
    env.ok(&[
        "restore",
        "dsrc@latest",
        "--to",
        to.to_str().unwrap(),
        "--force",
    ]);
    assert_same_files(&to, &src);
}
