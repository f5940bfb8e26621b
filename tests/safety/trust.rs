//! Repository-level trust (issue 7): what cbsnap reads back from its own files is
//! verified, a damaged file is an error that names it instead of a quiet substitute,
//! and no input makes a command panic.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cbsnap::snapshot::Snapshot;

use crate::util::*;

fn small_tree(dir: &Path, content: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("f"), content).unwrap();
}

/// The snapshot file of the snapshot with id `id` (as `snapshots --json` prints it).
fn snapshot_file(repo: &Repo, id: &str) -> PathBuf {
    repo.path().join("snapshots").join(id)
}

/// Rewrite a snapshot with `edit` applied, under its new hash; returns the new id.
fn rewrite_snapshot(repo: &Repo, id: &str, edit: impl FnOnce(&mut Snapshot)) -> String {
    let path = snapshot_file(repo, id);
    let mut s = Snapshot::decode(&fs::read(&path).unwrap()).unwrap();
    edit(&mut s);
    fs::remove_file(&path).unwrap();
    s.save(
        &cbsnap::storage::Local::new(repo.path()),
        &cbsnap::crypto::Crypt::Plain,
    )
    .unwrap()
    .to_hex()
}

/// Case 13: one flipped digit of `chunker.avg_size` (still a size FastCDC takes)
/// is an error of every command, `check` included, instead of silently cutting
/// chunks elsewhere.
#[test]
fn config_with_a_flipped_digit_is_refused() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path(), "data");
    repo.snapshot_dir(src.path(), "a");
    let path = repo.path().join("config");
    let mut bytes = fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text.find("\"avg_size\": 65536").unwrap() + "\"avg_size\": ".len();
    bytes[at] = b'4';
    fs::write(&path, &bytes).unwrap();
    for args in [
        vec![
            "snapshot",
            "--path",
            src.path().to_str().unwrap(),
            "--name",
            "a",
        ],
        vec!["check"],
        vec!["snapshots"],
    ] {
        let o = repo.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("checksum") && e.contains("config"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(
        fs::read_dir(repo.path().join("snapshots")).unwrap().count(),
        1
    );
}

/// Case 6: when the newest snapshot file is damaged (truncated, a flipped byte, a
/// version this build does not read), `NAME@latest` is an error naming that file,
/// not the snapshot before it; an explicit id still picks the older one.
#[test]
fn damaged_newest_snapshot_is_an_error_not_a_fallback() {
    let src = tempfile::tempdir().unwrap();
    type Hurt = fn(&Path);
    let damage: [(&str, Hurt); 3] = [
        ("truncated", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() / 2]).unwrap();
        }),
        ("flipped byte", |p| {
            let mut b = fs::read(p).unwrap();
            let i = b.len() / 2;
            b[i] ^= 0x01;
            fs::write(p, &b).unwrap();
        }),
        ("newer version", |_| {}),
    ];
    for (what, hurt) in damage {
        let repo = Repo::new();
        small_tree(src.path(), "night 1");
        repo.snapshot_dir(src.path(), "vol");
        small_tree(src.path(), "night 2");
        repo.snapshot_dir(src.path(), "vol");
        let snaps = repo.snapshots_json();
        let old = snaps[0]["id"].as_str().unwrap().to_string();
        let mut new = snaps[1]["id"].as_str().unwrap().to_string();
        if what == "newer version" {
            // A snapshot file of the next version, correctly named by its hash.
            let p = snapshot_file(&repo, &new);
            let mut b = fs::read(&p).unwrap();
            b[8..12].copy_from_slice(&(cbsnap::snapshot::VERSION + 1).to_le_bytes());
            fs::remove_file(&p).unwrap();
            new = blake3::hash(&b).to_hex().to_string();
            fs::write(snapshot_file(&repo, &new), &b).unwrap();
        }
        hurt(&snapshot_file(&repo, &new));

        let out = tempfile::tempdir().unwrap();
        for spec in ["vol@latest", "vol", "vol@latest~0"] {
            let o = repo.run(&[
                "restore",
                spec,
                "--to",
                out.path().join("t").to_str().unwrap(),
            ]);
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{what} {spec}: {e}");
            assert!(e.contains(&new), "{what}: the error names the file: {e}");
            assert!(!out.path().join("t").exists(), "{what}: nothing restored");
        }
        let o = repo.run(&["ls", "vol@latest"]);
        assert_eq!(o.status.code(), Some(1), "{what}: ls");
        // The user may explicitly pick the older snapshot.
        let t = out.path().join("older");
        repo.restore(&format!("vol@{}", &old[..12]), &t);
        assert_eq!(fs::read_to_string(t.join("f")).unwrap(), "night 1");
        // An explicit id of the damaged file is an error too.
        let o = repo.run(&[
            "restore",
            &new[..12],
            "--to",
            out.path().join("x").to_str().unwrap(),
        ]);
        assert_ne!(o.status.code(), Some(0), "{what}");
        // check says the same.
        let o = repo.run(&["check"]);
        assert_ne!(o.status.code(), Some(0), "{what}: check");
        let report = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(report.contains(&new), "{what}: {report}");
    }
}

/// Case 9: a snapshot dated a year ahead (a bad clock) does not make
/// `forget --keep-within 7d` remove today's snapshots; it is warned about and kept.
#[test]
fn future_dated_snapshot_does_not_push_real_ones_out() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path(), "today");
    repo.snapshot_dir(src.path(), "vol");
    small_tree(src.path(), "today, later");
    repo.snapshot_dir(src.path(), "vol");
    small_tree(src.path(), "bad clock");
    repo.snapshot_dir(src.path(), "vol");
    let snaps = repo.snapshots_json();
    let future = rewrite_snapshot(&repo, snaps[2]["id"].as_str().unwrap(), |s| {
        s.time += chrono::Duration::days(365);
    });
    let o = repo.run(&["forget", "--keep-within", "7d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&future[..8]) && e.contains("future"), "{e}");
    assert_eq!(repo.snapshots_json().len(), 3, "nothing removed");
    // keep-last 1 keeps the newest real snapshot besides the future one.
    repo.ok(&["forget", "--keep-last", "1"]);
    let left: Vec<String> = repo
        .snapshots_json()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&future));
    assert!(left.contains(&snaps[1]["id"].as_str().unwrap().to_string()));
}

/// Case 15: a huge `--keep-within` is a usage error, not a wrap-around to a short
/// duration that removes snapshots.
#[test]
fn huge_keep_within_is_refused() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path(), "x");
    repo.snapshot_dir(src.path(), "vol");
    for bad in ["700000000w", "4294967295d1d"] {
        let o = repo.run(&["forget", "--keep-within", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    assert_eq!(repo.snapshots_json().len(), 1);
}

/// Case 15: a run id that is not ASCII (a snapshot file is input) is shown, not a
/// panic on a byte boundary.
#[test]
fn non_ascii_run_id_is_listed() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path(), "x");
    repo.snapshot_dir(src.path(), "vol");
    let id = repo.snapshots_json()[0]["id"].as_str().unwrap().to_string();
    rewrite_snapshot(&repo, &id, |s| s.run_id = Some("aéééééé-run".into()));
    let out = repo.ok(&["snapshots"]);
    assert!(out.contains("aéééééé"), "{out}");
}

/// Case 15: an error while stderr is a closed pipe ends with the error's exit code,
/// not a panic (101).
#[test]
fn closed_stderr_is_not_a_panic() {
    let repo = Repo::new();
    let mut child = repo
        .cmd()
        .args(["restore", "nosuch@latest", "--to", "/nonexistent/x"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(2));
}

/// Case 11: an index with a block checksum mismatch is damaged, not "held by another
/// process": it is rebuilt at once, without waiting for a lock.
#[test]
fn damaged_index_is_rebuilt_not_waited_for() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path(), &"indexed ".repeat(10_000));
    repo.snapshot_dir(src.path(), "vol");
    // A second open replays the write-ahead log into a table file.
    repo.snapshot_dir(src.path(), "vol");
    let mut hurt = 0;
    for e in fs::read_dir(repo.path().join("index")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "sst") {
            // Damage the blocks before the footer: RocksDB reads them at open and
            // reports "block checksum mismatch".
            let mut b = fs::read(e.path()).unwrap();
            let n = b.len();
            for x in &mut b[n - 150..n - 60] {
                *x ^= 0xff;
            }
            fs::write(e.path(), &b).unwrap();
            hurt += 1;
        }
    }
    assert!(hurt > 0, "no table file to damage");
    let start = Instant::now();
    let o = repo
        .cmd()
        .env("CBSNAP_LOCK_WAIT", "60")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "it waited for a lock"
    );
    assert!(stderr(&o).contains("rebuilding"), "{}", stderr(&o));
    let t = tempfile::tempdir().unwrap();
    repo.restore("vol@latest", &t.path().join("r"));
    compare_trees(src.path(), &t.path().join("r"));
    repo.ok(&["check", "--read-data"]);
}

/// Case 12: a lock file that cannot be parsed blocks (fails closed) with an error
/// that says how to remove it; `cbsnap unlock` does.
#[test]
fn unreadable_lock_blocks_until_unlock() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    small_tree(src.path(), "x");
    let bad = repo.path().join("locks").join("exclusive-otherhost-7-1");
    fs::write(&bad, b"{\"kind\": \"exclusive\", \"ho").unwrap();
    let o = repo
        .cmd()
        .env("CBSNAP_LOCK_WAIT", "0")
        .args([
            "snapshot",
            "--path",
            src.path().to_str().unwrap(),
            "--name",
            "a",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("exclusive-otherhost-7-1") && e.contains("cbsnap unlock"),
        "{e}"
    );
    assert_eq!(
        fs::read_dir(repo.path().join("snapshots")).unwrap().count(),
        0
    );
    repo.ok(&["unlock"]);
    assert!(!bad.exists());
    repo.snapshot_dir(src.path(), "a");
}

/// Case 12: a command whose lock file disappeared while it ran (another host found
/// it stale and removed it) stops before it commits.
#[test]
fn lost_lock_stops_before_commit() {
    let repo = Repo::new();
    let src = tempfile::tempdir().unwrap();
    for i in 0..6u64 {
        fs::write(
            src.path().join(format!("blob{i}")),
            random_bytes(16 << 20, 700 + i),
        )
        .unwrap();
    }
    let mut child = repo
        .cmd()
        .args([
            "snapshot",
            "--path",
            src.path().to_str().unwrap(),
            "--name",
            "big",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let locks = repo.path().join("locks");
    let start = Instant::now();
    let lock = loop {
        let found = fs::read_dir(&locks)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("shared-"));
        if let Some(e) = found {
            break e.path();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no lock appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    fs::remove_file(&lock).unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the snapshot finished before its lock was removed; the test needs a bigger source"
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("lock was lost") && e.contains("removed"), "{e}");
    assert!(repo.snapshots_json().is_empty(), "nothing committed");
    // The repository is fine for the next run.
    repo.snapshot_dir(src.path(), "big");
}
