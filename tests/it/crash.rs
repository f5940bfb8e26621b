//! Crash safety: SIGKILL at any point leaves earlier snapshots intact and the
//! repository usable.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn sigkill_during_snapshot_loses_nothing() {
    let small = tempfile::tempdir().unwrap();
    build_every_kind(small.path());
    let big = tempfile::tempdir().unwrap();
    for i in 0..12u64 {
        std::fs::write(
            big.path().join(format!("blob{i}")),
            random_bytes(24 << 20, 300 + i),
        )
        .unwrap();
    }
    let repo = Repo::new();
    repo.snapshot_dir(small.path(), "small");
    let out = tempfile::tempdir().unwrap();

    // Kill at several moments: early (before any pack), and after packs were written.
    for (round, delay_ms) in [50u64, 400, 900].into_iter().enumerate() {
        let mut child = repo
            .cmd()
            .args([
                "snapshot",
                "--path",
                big.path().to_str().unwrap(),
                "--name",
                "big",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        if finished {
            eprintln!("round {round}: snapshot finished before the kill; kill not exercised");
        }
        // Every earlier snapshot restores byte-exact.
        let t = out.path().join(format!("small-{round}"));
        repo.restore("small@latest", &t);
        compare_trees(small.path(), &t);
    }
    // Nothing half-made is listed, and the next snapshot succeeds and is complete.
    let names: Vec<String> = repo
        .snapshots_json()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.iter().all(|n| n == "small" || n == "big"),
        "{names:?}"
    );
    repo.snapshot_dir(big.path(), "big");
    let t = out.path().join("big");
    repo.restore("big@latest", &t);
    compare_trees(big.path(), &t);
    // No temporary files are left once a later command ran.
    let leftovers: Vec<_> = std::fs::read_dir(repo.path().join("packs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
