//! The run's host hooks: once the run's `pre` hook ran, its `post` hook runs,
//! whatever stops the run afterwards.

use std::fs;

use crate::common::{stderr, Repo};

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
