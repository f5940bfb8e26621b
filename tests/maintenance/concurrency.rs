//! Maintenance next to a running snapshot: prune waits or refuses, a mirror taken
//! meanwhile is consistent, with-lock keeps prune away.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};

use crate::util::*;

/// A `snapshot --tar -` whose input the test feeds file by file, so the snapshot is
/// held open (with its lock, and with packs already written) as long as needed.
struct SlowSnapshot {
    child: Child,
    tar: tar::Builder<ChildStdin>,
}

impl SlowSnapshot {
    fn start(env: &Env, repo: &Path, name: &str) -> SlowSnapshot {
        let mut child = env
            .cmd(repo, &["--json", "snapshot", "--tar", "-", "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        SlowSnapshot {
            child,
            tar: tar::Builder::new(stdin),
        }
    }

    fn add(&mut self, src: &Path, name: &str) {
        self.tar
            .append_path_with_name(src.join(name), name)
            .unwrap();
        self.tar.get_mut().flush().unwrap();
    }

    /// End the stream and wait for the commit; returns the snapshot id.
    fn finish(self) -> String {
        let stdin = self.tar.into_inner().unwrap();
        drop(stdin);
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    }
}

/// Big enough files that the snapshot seals packs (16 MiB each) before it commits.
fn big_source(env: &Env, seed: u64) -> std::path::PathBuf {
    let src = env.path(&format!("big-{seed}"));
    for i in 0..4 {
        write(
            &src,
            &format!("part{i}.bin"),
            &random_bytes(10 << 20, seed * 10 + i),
        );
    }
    src
}

fn wait_for_packs(repo: &Path, more_than: usize) {
    for _ in 0..1000 {
        if packs(repo).len() > more_than {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the snapshot wrote no pack");
}

#[test]
fn prune_during_a_snapshot_refuses_or_waits_and_nothing_is_lost() {
    let env = Env::new();
    let old = env.path("old");
    write(&old, "gone.bin", &random_bytes(2 << 20, 1));
    env.snapshot(&old, "old");
    env.ok(&["forget", "old", "--keep-tag", "none"]);

    let src = big_source(&env, 2);
    let before = packs(&env.repo()).len();
    let mut s = SlowSnapshot::start(&env, &env.repo(), "big");
    s.add(&src, "part0.bin");
    s.add(&src, "part1.bin");
    wait_for_lock(&env.repo());
    wait_for_packs(&env.repo(), before);

    // Without waiting, prune refuses and says why.
    let out = env
        .cmd(&env.repo(), &["prune"])
        .env("CBSNAP_LOCK_WAIT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));

    // With waiting, prune runs once the snapshot has committed.
    let mut waiting = env
        .cmd(&env.repo(), &["--json", "prune"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the snapshot go on only once prune says it waits for the lock (not after a
    // guessed sleep): the rest of the stderr is drained so prune never blocks on it.
    let mut lines = std::io::BufReader::new(waiting.stderr.take().unwrap()).lines();
    let said = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("waiting for the repository lock"));
    assert!(said.is_some(), "prune ended without waiting for the lock");
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    s.add(&src, "part2.bin");
    s.add(&src, "part3.bin");
    let id = s.finish();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", drain.join().unwrap());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["result"]["packs_deleted"].as_u64().unwrap() >= 1, "{v}");

    env.ok(&["check", "--read-data"]);
    let to = env.restore(&env.repo(), &format!("big@{}", &id[..12]), "r");
    assert_same_files(&to, &src);
}

#[test]
fn a_mirror_taken_during_a_snapshot_is_consistent() {
    let env = Env::new();
    let small = env.path("small");
    write(&small, "f.bin", &random_bytes(100_000, 3));
    env.snapshot(&small, "small");
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap();

    let src = big_source(&env, 4);
    let before = packs(&env.repo()).len();
    let mut s = SlowSnapshot::start(&env, &env.repo(), "big");
    s.add(&src, "part0.bin");
    s.add(&src, "part1.bin");
    wait_for_packs(&env.repo(), before);

    // check runs beside the snapshot (with the index read-only) and finds nothing wrong.
    let v = env.json(&env.repo(), &["check"]);
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");

    // Packs of the unfinished snapshot reach the mirror as orphans; nothing breaks.
    env.ok(&["-q", "mirror", m]);
    let v = env.json(&mirror, &["check"]);
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["snapshots"], 1);
    assert!(v["orphans"]["packs"].as_u64().unwrap() >= 1, "{v}");

    s.add(&src, "part2.bin");
    s.add(&src, "part3.bin");
    let id = s.finish();
    env.ok(&["-q", "mirror", m]);
    env.ok_in(&mirror, &["check", "--read-data"]);
    let to = env.restore(&mirror, &format!("big@{}", &id[..12]), "r");
    assert_same_files(&to, &src);
}

/// Snapshots commit continuously while mirrors are taken: every mirror must pass
/// `check`. A mirror that copied a snapshot file before its packs would fail.
#[test]
fn mirrors_racing_many_commits_never_hold_a_broken_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "seed", b"x");
    env.snapshot(&src, "s");
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap().to_string();
    let repo = env.repo();
    let writer = {
        let src = src.clone();
        let repo = repo.clone();
        let home = env.path("no-config");
        std::thread::spawn(move || {
            for i in 0..20u64 {
                write(&src, "f.bin", &random_bytes(1 << 20, 1000 + i));
                let st = std::process::Command::new(BIN)
                    .args(["-q", "--repo"])
                    .arg(&repo)
                    .args(["snapshot", "--path"])
                    .arg(&src)
                    .args(["--name", "s"])
                    .env("XDG_CONFIG_HOME", &home)
                    .status()
                    .unwrap();
                assert!(st.success());
            }
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds < 3 {
        // A slow copy of the new packs widens the window in which a snapshot commits
        // while the mirror is being made.
        env.ok(&["-q", "mirror", &m, "--", "--bwlimit=8000"]);
        let out = env.run(&mirror, &["check"]);
        assert!(
            out.status.success(),
            "round {rounds}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        rounds += 1;
    }
    writer.join().unwrap();
    env.ok(&["-q", "mirror", &m]);
    env.ok_in(&mirror, &["check", "--read-data"]);
    let to = env.restore(&mirror, "s@latest", "r");
    assert_same_files(&to, &src);
}

#[test]
fn with_lock_keeps_prune_away_and_passes_the_exit_code() {
    let env = Env::new();
    let holder = env
        .cmd(&env.repo(), &["with-lock", "--", "sleep", "2"])
        .spawn()
        .unwrap();
    wait_for_lock(&env.repo());
    let out = env
        .cmd(&env.repo(), &["prune"])
        .env("CBSNAP_LOCK_WAIT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    let out = holder.wait_with_output().unwrap();
    assert!(out.status.success());
    env.ok(&["prune"]);

    let out = env.run(
        &env.repo(),
        &[
            "with-lock",
            "--",
            "sh",
            "-c",
            "test -n \"$CBSNAP_REPO\" && exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7));

    // The lock removed under the command (`unlock --all`): what it did may have
    // raced a prune, so it is not reported as done (it exited 0).
    let unlock = format!("{BIN} unlock --all -q");
    let out = env.run(&env.repo(), &["with-lock", "--", "sh", "-c", &unlock]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("lock was lost"), "{}", stderr(&out));
}

/// A snapshot that commits between the mirror's rsync runs — in particular after the
/// packs were copied — must not reach the mirror in that run. A wrapper `rsync` first
/// in PATH takes a snapshot after every real rsync run.
#[test]
fn a_snapshot_committed_between_rsync_runs_waits_for_the_next_mirror() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "f.bin", &random_bytes(500_000, 80));
    env.snapshot(&src, "s");
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("rsync");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n/usr/bin/env PATH=/usr/local/bin:/usr/bin:/bin rsync \"$@\" || exit $?\n\
             head -c 700000 /dev/urandom > '{src}/f.bin'\n\
             '{bin}' -q --repo '{repo}' snapshot --path '{src}' --name s\n",
            src = src.display(),
            bin = BIN,
            repo = env.repo().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap();

    for delete in [false, true] {
        let mut args = vec!["-q", "mirror", m];
        if delete {
            args.push("--delete");
        }
        let out = env
            .cmd(&env.repo(), &args)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v = env.json(&mirror, &["check"]);
        assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    }
    // The plain mirror catches up with every snapshot taken meanwhile.
    let n = env
        .json(&env.repo(), &["snapshots"])
        .as_array()
        .unwrap()
        .len();
    assert!(n >= 6, "{n} snapshots");
    env.ok(&["-q", "mirror", m]);
    env.ok_in(&mirror, &["check", "--read-data"]);
    assert_eq!(
        env.json(&mirror, &["snapshots"]).as_array().unwrap().len(),
        n
    );
    let to = env.restore(&mirror, "s@latest", "r");
    assert_same_files(&to, &src);
}

/// The mirror's lock removed while rsync copies the packs (`unlock --all` in a
/// wrapper `rsync`): a prune may have removed packs meanwhile, so the snapshot files
/// are not sent and the mirror exits 1 naming the lost lock (it exited 0). The next
/// mirror completes it.
#[test]
fn a_mirror_whose_lock_was_lost_sends_no_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "f.bin", &random_bytes(500_000, 81));
    env.snapshot(&src, "s");
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("rsync");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{bin}' -q --repo '{repo}' unlock --all\n\
             exec /usr/bin/env PATH=/usr/local/bin:/usr/bin:/bin rsync \"$@\"\n",
            bin = BIN,
            repo = env.repo().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mirror = env.path("mirror");
    let m = mirror.to_str().unwrap();
    let out = env
        .cmd(&env.repo(), &["mirror", m])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("lock was lost"), "{}", stderr(&out));
    let sent: Vec<_> = std::fs::read_dir(mirror.join("snapshots"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(sent.is_empty(), "snapshot files sent: {sent:?}");
    env.ok(&["-q", "mirror", m]);
    env.ok_in(&mirror, &["check", "--read-data"]);
}
