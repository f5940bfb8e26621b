//! The run's host hooks: once the run's `pre` hook ran, its `post` hook runs,
//! whatever stops the run afterwards.

use std::fs;

use crate::util::{stderr, Repo};

#[test]
fn run_post_hook_runs_when_the_run_fails_after_its_pre_hook() {
    let repo = Repo::new();
    let marks = repo.dir.path().join("marks");
    fs::create_dir(&marks).unwrap();
    let config = repo.dir.path().join("config.toml");
    // `/` has no base name, so the run fails while it lists its sources, after
    // the pre hook stopped "the indexer".
    fs::write(
        &config,
        format!(
            "project = \"cbsnap-test-hooks-{pid}\"\npaths = [\"/\"]\n\
             [hooks]\npre = \"touch {m}/pre\"\npost = \"touch {m}/post\"\n",
            pid = std::process::id(),
            m = marks.display()
        ),
    )
    .unwrap();
    let o = repo.run(&["--config", config.to_str().unwrap(), "snapshot", "--all"]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        marks.join("pre").exists(),
        "the pre hook ran: {}",
        stderr(&o)
    );
    assert!(
        marks.join("post").exists(),
        "the post hook must run once the pre hook ran: {}",
        stderr(&o)
    );
}

#[test]
fn a_closed_stdout_does_not_stop_the_run_before_its_metrics() {
    use std::process::Stdio;
    let repo = Repo::new();
    let ws = repo.dir.path().join("ws");
    fs::create_dir(&ws).unwrap();
    fs::write(ws.join("f"), "x").unwrap();
    let metrics = repo.dir.path().join("cbsnap.prom");
    let config = repo.dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "project = \"cbsnap-test-pipe-{}\"\npaths = [{:?}]\n",
            std::process::id(),
            ws.display().to_string()
        ),
    )
    .unwrap();
    let mut child = repo
        .cmd()
        .args(["--config", config.to_str().unwrap(), "snapshot", "--all"])
        .args(["--json", "--metrics-file", metrics.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader is gone before the summary is printed.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
    assert!(metrics.exists(), "the metrics file is written: {err}");
}
