//! A snapshot of a directory that holds its own repository (a home directory holds the
//! default one, `~/.local/share/cbsnap/repo`) leaves the repository out, found by
//! device and inode: given by a relative path or through a symlink, reached through a
//! bind mount. It stored the repository's new packs again every night, so the
//! repository grew by everything it ever added. A symlink to the repository is stored
//! as a symlink; a snapshot of the repository itself, or of a directory inside it, is
//! refused.

use std::fs;
use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use crate::util::mount::Mount;
use crate::util::*;

const MIB: u64 = 1 << 20;

/// What the notice and the snapshot's `excluded` say of the repository.
const WHY: &str = "it is this snapshot's repository";

/// `cbsnap --repo REPO --json ARGS` in `cwd`, not quiet (notices show), isolated as
/// [`cbsnap`] says.
fn run_in(env: &Env, cwd: &Path, repo: &Path, args: &[&str]) -> Output {
    env.cmd(repo, &["--json"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// The JSON on stdout of a command that exited 0.
fn json_of(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    serde_json::from_str(&stdout(o)).unwrap()
}

/// How often stderr says that `path` was left out as the repository.
fn notices(o: &Output, path: &str) -> usize {
    stderr(o)
        .matches(&format!(": left out {path}: {WHY}\n"))
        .count()
}

/// Every path of `sel`'s tree (`ls --json`), with its type letter and link target.
fn tree_of(env: &Env, sel: &str) -> Vec<(String, String, String)> {
    let v = env.json(&env.repo(), &["ls", sel]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("path"), s("type"), s("target"))
        })
        .collect()
}

/// Whether any path of the tree is `dir` or lies below it.
fn holds(tree: &[(String, String, String)], dir: &str) -> bool {
    tree.iter()
        .any(|(p, _, _)| p == dir || p.starts_with(&format!("{dir}/")))
}

/// Two snapshots of the directory that holds `repo/`, with 1 MiB of new data in
/// between: the repository is named once on stderr, recorded as excluded (exit 0,
/// no errors), not in the tree, and the second snapshot adds only the new data. The
/// first is given the repository as a relative path, the second through a symlink
/// outside the source.
#[test]
fn a_snapshot_of_a_directory_that_holds_its_repository_leaves_the_repository_out() {
    let env = Env::new();
    let home = env.path("");
    write(&home, "data/first", &random_bytes(MIB as usize, 1));

    let o = run_in(
        &env,
        &home,
        Path::new("repo"),
        &["snapshot", "--path", ".", "--name", "home"],
    );
    let first = json_of(&o);
    assert_eq!(notices(&o, "repo"), 1, "{}", stderr(&o));
    assert_eq!(first["excluded"], json!([{ "path": "repo", "why": WHY }]));
    assert_eq!(first["errors"], json!([]));
    let tree = tree_of(&env, "home@latest");
    assert!(!holds(&tree, "repo"), "{tree:?}");
    assert!(holds(&tree, "data/first"), "{tree:?}");
    let before = dir_size(&env.repo());

    write(&home, "data/second", &random_bytes(MIB as usize, 2));
    settle();
    let elsewhere = tempfile::tempdir().unwrap();
    let alias = elsewhere.path().join("alias");
    std::os::unix::fs::symlink(env.repo(), &alias).unwrap();
    let o = run_in(
        &env,
        elsewhere.path(),
        &alias,
        &[
            "snapshot",
            "--path",
            home.to_str().unwrap(),
            "--name",
            "home",
        ],
    );
    let second = json_of(&o);
    assert_eq!(notices(&o, "repo"), 1, "{}", stderr(&o));
    assert_eq!(second["excluded"], json!([{ "path": "repo", "why": WHY }]));
    let stats = &second["stats"];
    // The new file and a few small trees; the first snapshot's pack (1 MiB) and
    // index files are not stored again.
    let raw = stats["new_bytes_raw"].as_u64().unwrap();
    assert!((MIB..MIB + 64 * 1024).contains(&raw), "{stats}");
    let grown = dir_size(&env.repo()) - before;
    assert!(grown < MIB + 256 * 1024, "the repository grew by {grown}");
    let tree = tree_of(&env, "home@latest");
    assert!(!holds(&tree, "repo"), "{tree:?}");
    assert!(holds(&tree, "data/second"), "{tree:?}");

    // Restored over the same directory with --force: the snapshot holds no `repo`,
    // so the restore does not reach the repository and goes ahead (it was refused
    // as if the absent path were there).
    std::fs::write(home.join("data/first"), b"damaged").unwrap();
    let o = run_in(
        &env,
        elsewhere.path(),
        &alias,
        &[
            "restore",
            "home@latest",
            "--to",
            home.to_str().unwrap(),
            "--force",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(home.join("data/first")).unwrap(),
        random_bytes(MIB as usize, 1)
    );
    let o = run_in(&env, elsewhere.path(), &alias, &["check"]);
    assert!(
        o.status.success(),
        "the repository is whole: {}",
        stderr(&o)
    );
}

/// A symlink to the repository inside the source is stored as a symlink, with its
/// target, neither followed nor left out; the repository beside it is left out.
#[test]
fn a_symlink_to_the_repository_in_the_source_is_stored_as_a_symlink() {
    let env = Env::new();
    let home = env.path("");
    write(&home, "data/f", b"data");
    std::os::unix::fs::symlink("repo", home.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(env.repo(), home.join("abs-link")).unwrap();

    let o = run_in(
        &env,
        &home,
        &env.repo(),
        &[
            "snapshot",
            "--path",
            home.to_str().unwrap(),
            "--name",
            "home",
        ],
    );
    let snap = json_of(&o);
    assert_eq!(snap["excluded"], json!([{ "path": "repo", "why": WHY }]));
    assert_eq!(notices(&o, "rel-link") + notices(&o, "abs-link"), 0);
    let tree = tree_of(&env, "home@latest");
    assert!(!holds(&tree, "repo"), "{tree:?}");
    let abs = env.repo().to_str().unwrap().to_string();
    for (link, target) in [("rel-link", "repo"), ("abs-link", abs.as_str())] {
        let entry = (link.to_string(), "l".to_string(), target.to_string());
        assert!(tree.contains(&entry), "{link}: {tree:?}");
        assert!(!holds(&tree, &format!("{link}/")), "{tree:?}");
    }
    let to = env.restore(&env.repo(), "home@latest", "restored");
    assert_eq!(
        fs::read_link(to.join("rel-link")).unwrap(),
        Path::new("repo")
    );
    assert_eq!(fs::read_link(to.join("abs-link")).unwrap(), env.repo());
    assert!(!to.join("repo").exists());
}

/// The repository bind-mounted inside the source is the same directory and is left
/// out (its path is another, its device and inode are the same). Snapshots of the
/// repository itself, through its path or the bind mount, and of a directory inside
/// it are refused (exit 1) and commit nothing.
#[test]
fn the_repository_through_a_bind_mount_in_the_source_is_left_out() {
    assert!(
        is_root(),
        "this test bind-mounts the repository: run it as root"
    );
    let env = Env::new();
    let src = env.path("src");
    write(&src, "mnt/keep", b"kept");
    let bound = Mount::bind(&env.repo(), &src.join("mnt/backup"));

    let o = run_in(
        &env,
        &src,
        &env.repo(),
        &["snapshot", "--path", ".", "--name", "src"],
    );
    let snap = json_of(&o);
    assert_eq!(notices(&o, "mnt/backup"), 1, "{}", stderr(&o));
    assert_eq!(
        snap["excluded"],
        json!([{ "path": "mnt/backup", "why": WHY }])
    );
    let tree = tree_of(&env, "src@latest");
    assert!(!holds(&tree, "mnt/backup"), "{tree:?}");
    assert!(holds(&tree, "mnt/keep"), "{tree:?}");

    // A directory of packs (`packs/3f`), below the directories of the repository
    // that are left out themselves.
    let packs = fs::read_dir(env.repo().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    for (dir, what) in [
        (env.repo(), "it is this snapshot's repository"),
        (
            bound.path().to_path_buf(),
            "it is this snapshot's repository",
        ),
        (
            env.repo().join("packs"),
            "it is the packs/ of this snapshot's",
        ),
        (
            packs,
            "it is inside the packs/ of this snapshot's repository",
        ),
    ] {
        let o = run_in(
            &env,
            &src,
            &env.repo(),
            &["snapshot", "--path", dir.to_str().unwrap(), "--name", "x"],
        );
        assert_eq!(o.status.code(), Some(1), "{dir:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(what), "{dir:?}: {}", stderr(&o));
    }
    drop(bound);
    let names: Vec<Value> = env
        .json(&env.repo(), &["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, [json!("src")]);
}

/// A `snapshot --all` run whose host path holds the repository leaves it out the
/// same way: the source is ok and the run exits 0.
#[test]
fn docker_a_run_of_a_host_path_that_holds_the_repository_leaves_it_out() {
    let _engine = crate::util::docker::engine();
    let env = Env::new();
    let home = env.path("");
    write(&home, "data/f", b"data");
    let config = env.path("config.toml");
    fs::write(
        &config,
        format!(
            "project = \"cbsnap-test-self-{}\"\npaths = [{:?}]\n",
            std::process::id(),
            home.display().to_string()
        ),
    )
    .unwrap();
    let o = run_in(
        &env,
        &home,
        &env.repo(),
        &["--config", config.to_str().unwrap(), "snapshot", "--all"],
    );
    let report = json_of(&o);
    assert_eq!(notices(&o, "repo"), 1, "{}", stderr(&o));
    assert_eq!(report["status"], "ok", "{report}");
    let tree = tree_of(
        &env,
        &format!("{}@latest", report["sources"][0]["name"].as_str().unwrap()),
    );
    assert!(!holds(&tree, "repo"), "{tree:?}");
    assert!(holds(&tree, "data/f"), "{tree:?}");
}
