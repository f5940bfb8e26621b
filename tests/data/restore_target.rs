//! A restore harms nothing it does not restore: the repository when it lies inside
//! the target, a non-empty directory `--force` must keep, what is mounted below the
//! target. Each is refused or listed (exit 2 or 3), and the rest is restored.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::mount::Mount;
use crate::util::*;

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// A snapshot `s` of `top` (a file) and `sub/f`.
fn snapshot_top_and_sub(env: &Env) -> PathBuf {
    let src = env.path("src");
    write(&src, "top", b"top file");
    write(&src, "sub/f", b"inner");
    env.snapshot(&src, "s");
    src
}

fn restore(env: &Env, to: &Path, flags: &[&str]) -> Output {
    let mut args = vec!["restore", "s@latest", "--to", to.to_str().unwrap()];
    args.extend_from_slice(flags);
    env.run(&env.repo(), &args)
}

/// The repository inside `--to` (or `--to` inside the repository) is refused where the
/// restore would reach it, before anything is written or removed: with `--delete` the
/// restore removed the repository, and exited 0 when the snapshot held an older copy
/// of it. A `..` after a directory still to be created does not get past it. A
/// restore that does not reach the repository (`--include` elsewhere, `--force` of a
/// snapshot without its path) goes on: a home directory holds the default repository.
#[test]
fn a_target_that_holds_the_repository_is_refused_where_the_restore_reaches_it() {
    let env = Env::new();
    snapshot_top_and_sub(&env);
    let home = env.path("");
    std::os::unix::fs::symlink(&home, env.path("alias")).unwrap();
    let inside = env.repo().join("restored");
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (home.clone(), &["--delete"]),
        (env.path("alias"), &["--delete"]),
        (inside.clone(), &[]),
        (env.path("newdir/.."), &["--delete"]),
        (env.path("nonexist/../repo"), &[]),
        (env.path("nonexist/../repo"), &["--force"]),
    ];
    for (to, flags) in cases {
        let o = restore(&env, &to, flags);
        assert_eq!(o.status.code(), Some(2), "{to:?} {flags:?}: {}", text(&o));
        assert!(text(&o).contains("repository"), "{}", text(&o));
    }
    assert!(!inside.exists(), "a refused restore created its target");
    assert!(!home.join("top").exists());
    env.ok(&["check", "--read-data"]);
    assert_eq!(
        env.json(&env.repo(), &["snapshots"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let o = restore(&env, &home, &["--force", "--include", "sub"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read(home.join("sub/f")).unwrap(), b"inner");
    assert!(!home.join("top").exists());
    env.ok(&["check", "--read-data"]);
}

/// `--force` keeps the entries the snapshot does not have: a non-empty directory
/// where the snapshot has a file stays, listed (exit 3), and the rest is restored.
/// An empty one is replaced; `--delete` replaces a non-empty one.
#[test]
fn force_keeps_a_non_empty_directory_where_the_snapshot_has_a_file() {
    let env = Env::new();
    snapshot_top_and_sub(&env);

    let kept = env.path("kept");
    write(&kept, "top/precious/data", b"mine");
    let o = restore(&env, &kept, &["--force"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("top"), "{}", text(&o));
    assert!(text(&o).contains("--delete"), "{}", text(&o));
    assert_eq!(fs::read(kept.join("top/precious/data")).unwrap(), b"mine");
    assert_eq!(fs::read(kept.join("sub/f")).unwrap(), b"inner");

    let empty = env.path("empty");
    fs::create_dir_all(empty.join("top")).unwrap();
    let o = restore(&env, &empty, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read(empty.join("top")).unwrap(), b"top file");

    let equal = env.path("equal");
    write(&equal, "top/precious/data", b"mine");
    let o = restore(&env, &equal, &["--delete"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read(equal.join("top")).unwrap(), b"top file");
}

/// `--delete` removes what the snapshot lacks, but never inside another filesystem
/// mounted below the target (it emptied a mounted tmpfs, then stopped with exit 1
/// before restoring anything). What it cannot remove is listed, exit 3, and the
/// restore goes on.
#[test]
fn delete_never_crosses_a_mount_point_and_goes_on_past_it() {
    assert!(is_root(), "this test mounts a tmpfs: run it as root");
    let env = Env::new();
    snapshot_top_and_sub(&env);
    let to = env.path("to");
    write(&to, "a-extra", b"not in the snapshot");
    write(&to, "top", b"old");
    let mounted = Mount::tmpfs(&to.join("mnt"), "1m");
    write(mounted.path(), "data", b"on another filesystem");
    write(mounted.path(), "deeper/more", b"also");
    // A directory of this filesystem that holds a mount point deeper down.
    let nested = Mount::tmpfs(&to.join("z-dir/inner"), "1m");
    write(nested.path(), "kept", b"nested mount");
    // A bind mount of this same filesystem: the device number does not tell.
    let elsewhere = env.path("elsewhere");
    write(&elsewhere, "keep.txt", b"bound");
    let bound = Mount::bind(&elsewhere, &to.join("y-bound"));
    // A mount point where the snapshot has a directory: its files not in the
    // snapshot stay.
    let on_sub = Mount::tmpfs(&to.join("sub"), "1m");
    write(on_sub.path(), "otherfs.txt", b"on the mounted sub");

    let o = restore(&env, &to, &["--delete"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("mount point"), "{}", text(&o));
    assert_eq!(
        fs::read(mounted.path().join("data")).unwrap(),
        b"on another filesystem"
    );
    assert_eq!(
        fs::read(mounted.path().join("deeper/more")).unwrap(),
        b"also"
    );
    assert_eq!(
        fs::read(nested.path().join("kept")).unwrap(),
        b"nested mount"
    );
    assert_eq!(fs::read(elsewhere.join("keep.txt")).unwrap(), b"bound");
    assert_eq!(
        fs::read(on_sub.path().join("otherfs.txt")).unwrap(),
        b"on the mounted sub"
    );
    drop(bound);
    assert!(!to.join("a-extra").exists(), "the extra file was kept");
    assert_eq!(fs::read(to.join("top")).unwrap(), b"top file");
    assert_eq!(fs::read(to.join("sub/f")).unwrap(), b"inner");
}

/// Every entry of `dir`, at any depth, whose name starts with `.tmp-`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}

/// SIGTERM in the middle of a restore into a directory: the restore stops, removes
/// its partial file (it left a `.tmp-*` file of tens of MB in the target, which a
/// later `--force` restore kept), says so, and exits 143; the same restore with
/// `--force` then finishes it.
#[test]
fn an_interrupted_restore_leaves_no_partial_file() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4u64 {
        write(
            &src,
            &format!("big{i}.bin"),
            &random_bytes(48 << 20, 40 + i),
        );
    }
    env.snapshot(&src, "s");
    let to = env.path("to");
    let mut child = env
        .cmd(
            &env.repo(),
            &["restore", "s@latest", "--to", to.to_str().unwrap()],
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The signal counts only once a file is being written: then it lands mid-restore.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before any file was being written"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no file written in 60 s"
        );
        if to.exists() && !temporaries(&to).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: kill(2) with a valid signal on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
    assert!(text(&o).contains("stopped by SIGTERM"), "{}", text(&o));
    assert!(temporaries(&to).is_empty(), "{:?}", temporaries(&to));
    let restored = files(&to).len();
    assert!(
        restored < 4,
        "the restore finished before the signal ({restored} files)"
    );

    let o = restore(&env, &to, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same_files(&to, &src);
}

/// A `--to` that is a symlink is refused with what it is and what to give instead
/// (it said "exists and is not a directory", which a link to one seems to be).
#[test]
fn a_symlink_target_is_named_as_one() {
    let env = Env::new();
    snapshot_top_and_sub(&env);
    let real = env.path("real");
    fs::create_dir(&real).unwrap();
    let link = env.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = restore(&env, &link, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a symlink"), "{}", text(&o));
    assert!(text(&o).contains("real"), "{}", text(&o));
    assert!(fs::read_dir(&real).unwrap().next().is_none());
    let o = restore(&env, &real, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
