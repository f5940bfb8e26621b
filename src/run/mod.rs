//! Runs: one `snapshot --all` over a whole stack (the compose project's volumes and
//! the configured host paths), and the whole-stack restore of one run.
//!
//! Every snapshot of a run carries the run id and the run's [`RunPlan`]: which
//! sources the run set out to cover, which were left out by a command-line
//! `--exclude`, and which could not even be listed (the Docker engine was down).
//! A run is *complete* when nothing was left out and every expected source has a
//! snapshot in it. `restore --all` takes the newest complete run of the project, so
//! a night with Docker down (a run that holds only `~/.ollama`) or a run made with a
//! wrong `--project` never silently becomes "the stack" (issue 7, case 7).
//!
//! - [`backup`]: [`backup::snapshot_all`], the nightly run, with hooks.
//! - [`restore`]: [`restore::plan`] checks every source first, then
//!   [`restore::execute`] stops every affected container once, restores all and
//!   starts them once, in compose dependency order ([`order`]).
//! - [`report`]: the run's JSON summary and the Prometheus textfile.
//! - [`notify`]: webhook, healthchecks-style pings and ntfy after a run.
//! - [`hooks`]: host-side `pre`/`post` commands of the config.

pub mod backup;
pub mod hooks;
pub mod key;
pub mod notify;
pub mod order;
pub mod report;
pub mod restore;
pub mod single;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::progress::Progress;
use crate::snapshot::Snapshot;
use crate::Id;

/// Where a run reports progress and what it is doing; the CLI draws it, library
/// code never prints.
pub trait Observer {
    /// The progress display for source `index` of `count` (1-based), e.g. drawn as
    /// `[2/5] qdrant-data`.
    fn progress(&self, index: usize, count: usize, name: &str) -> Progress;
    /// What the run is doing or waiting for ("pausing container code-buddy-qdrant-1").
    fn note(&self, message: &str);
    /// A source of `restore --all` has ended: restored, perhaps with problems
    /// (`Ok`), or not (`Err`). Called as each ends, so that a run interrupted later
    /// has said what it finished. Nothing by default.
    fn restored(
        &self,
        _item: &restore::PlanItem,
        _result: &crate::Result<crate::restore::dir::Report>,
    ) {
    }
}

/// An [`Observer`] that shows nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn progress(&self, _: usize, _: usize, _: &str) -> Progress {
        Progress::hidden()
    }
    fn note(&self, _: &str) {}
}

pub use crate::snapshot::RunPlan;

/// One run as found in the repository.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The run id (`YYYYMMDDTHHMMSSZ-xxxxxx`).
    pub id: String,
    /// When its first snapshot was committed.
    pub time: DateTime<Utc>,
    /// The plan recorded in its snapshots; `None` for runs of cbsnap before
    /// snapshot format version 2, which did not record one.
    pub plan: Option<RunPlan>,
    /// Its snapshots, oldest first.
    pub members: Vec<(Id, Snapshot)>,
    /// Why the run is incomplete; empty when it is complete.
    pub problems: Vec<String>,
}

impl RunInfo {
    /// Whether the run covered everything it set out to.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }

    /// The project the run took volumes of, if recorded.
    pub fn project(&self) -> Option<&str> {
        self.plan.as_ref().map(|p| p.project.as_str())
    }

    /// A one-line description: id, local time, sources, completeness.
    pub fn line(&self) -> String {
        format!(
            "{}  {}  {} sources{}  {}",
            self.id,
            self.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            self.members.len(),
            self.project()
                .map(|p| format!(", project {p}"))
                .unwrap_or_default(),
            if self.is_complete() {
                "complete".to_string()
            } else {
                format!("INCOMPLETE: {}", self.problems.join("; "))
            }
        )
    }
}

/// Every run in `all` (snapshots oldest first, as [`crate::snapshot::load_all`]
/// returns them), oldest first.
pub fn list_runs(all: &[(Id, Snapshot)]) -> Vec<RunInfo> {
    let mut runs: Vec<RunInfo> = Vec::new();
    for (id, s) in all {
        let Some(run_id) = &s.run_id else { continue };
        match runs.iter_mut().find(|r| &r.id == run_id) {
            Some(r) => {
                r.members.push((*id, s.clone()));
                if r.plan.is_none() {
                    r.plan = s.run.clone();
                }
            }
            None => runs.push(RunInfo {
                id: run_id.clone(),
                time: s.time,
                plan: s.run.clone(),
                members: vec![(*id, s.clone())],
                problems: Vec::new(),
            }),
        }
    }
    for r in &mut runs {
        r.problems = problems(r);
    }
    runs.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    runs
}

fn problems(r: &RunInfo) -> Vec<String> {
    let Some(plan) = &r.plan else {
        return vec![
            "made by a cbsnap that did not record which sources the run was to cover".into(),
        ];
    };
    let mut out = Vec::new();
    for u in &plan.unlisted {
        out.push(format!("could not list {u}"));
    }
    if !plan.excluded.is_empty() {
        out.push(format!(
            "left out by --exclude: {}",
            plan.excluded.join(", ")
        ));
    }
    let got: BTreeSet<&str> = r.members.iter().map(|(_, s)| s.name.as_str()).collect();
    let missing: Vec<&str> = plan
        .expected
        .iter()
        .map(String::as_str)
        .filter(|n| !got.contains(n))
        .collect();
    if !missing.is_empty() {
        out.push(format!("no snapshot of {}", missing.join(", ")));
    }
    out
}

/// Which run a whole-stack restore takes.
#[derive(Clone, Debug, Default)]
pub struct RunSelect<'a> {
    /// A run id or a prefix of one (`--run`); default: the newest complete run.
    pub run: Option<&'a str>,
    /// Only runs of this compose project (runs of older cbsnap, which did not
    /// record one, match any).
    pub project: Option<&'a str>,
    /// Take an incomplete run rather than refuse it (`--incomplete`); without
    /// `run`, the newest run whatever it holds.
    pub allow_incomplete: bool,
}

/// The run chosen, and the newer runs passed over (with why).
#[derive(Clone, Debug)]
pub struct Selected {
    /// The run to restore.
    pub run: RunInfo,
    /// Newer runs that were not taken: incomplete, or of another project.
    pub passed_over: Vec<String>,
}

/// Why no run could be chosen or restored. Callers match the variants; the
/// messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The repository holds no snapshot of any run.
    #[error("no `snapshot --all` run in this repository; take one with `cbsnap snapshot --all`")]
    NoRuns,
    /// `--run` matches no run id; `available` lists them (newest first).
    #[error("no run starts with {typed}. Runs in this repository:\n{}", lines(.available))]
    NoSuchRun {
        typed: String,
        available: Vec<String>,
    },
    /// `--run` matches several run ids; `candidates` lists them (newest first).
    #[error("{} runs start with {typed}; give more of the id. They are:\n{}", .candidates.len(), lines(.candidates))]
    AmbiguousRun {
        typed: String,
        candidates: Vec<String>,
    },
    /// The run asked for is incomplete and `--incomplete` was not given.
    #[error("run {id} is incomplete ({}); restoring it would restore only part of the stack. Pick a complete run with --run ID (`cbsnap snapshots` lists runs), or pass --incomplete to restore what it holds", .problems.join("; "))]
    Incomplete { id: String, problems: Vec<String> },
    /// No run of the project is complete; `passed_over` says why for each.
    #[error("no complete `snapshot --all` run{} in this repository. Runs passed over:\n{}\n{}", .project.as_deref().map(|p| format!(" of project {p}")).unwrap_or_default(), lines(.passed_over), pick(.other_projects))]
    NoCompleteRun {
        project: Option<String>,
        passed_over: Vec<String>,
        /// Projects with a complete run that was passed over for its project (the
        /// configured project is not the one the repository's runs are of: a new
        /// host without its config file).
        other_projects: Vec<String>,
    },
    /// Running containers use the run's volumes or host paths (a bind mount) and
    /// `--stop` was not given.
    #[error("restoring now would leave a half-old stack: running containers use volumes or directories of run {run}: {}. Nothing was changed. Pass --stop to stop them all once, restore every source and start them again, or stop the stack first (`docker compose stop`)", .containers.join(", "))]
    ContainersRunning {
        run: String,
        containers: Vec<String>,
    },
    /// Some sources cannot be restored (no recorded target, a non-empty directory
    /// without `--force`, …); found before anything was touched.
    #[error("{} of run {run} cannot be restored as planned; nothing was changed:\n{}", if .problems.len() == 1 { "a source".to_string() } else { format!("{} sources", .problems.len()) }, lines(.problems))]
    Unrestorable { run: String, problems: Vec<String> },
    /// Some sources cannot be restored now, because of a state of the stack (a
    /// `docker run --rm` container that `--stop` would delete, a volume that
    /// containers keep from being cleared); found before anything was touched.
    #[error("{} of run {run} cannot be restored now; nothing was changed:\n{}", if .problems.len() == 1 { "a source".to_string() } else { format!("{} sources", .problems.len()) }, lines(.problems))]
    InUse { run: String, problems: Vec<String> },
    /// Some sources of the run could not be restored (each was reported); the
    /// others were.
    #[error("{failed} of {total} sources of run {run} were not restored")]
    NotRestored {
        run: String,
        failed: usize,
        total: usize,
    },
    /// The repository or a restore failed.
    #[error(transparent)]
    Repo(#[from] crate::Error),
    /// The Docker engine failed (stopping or starting containers, listing them).
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
}

fn lines(v: &[String]) -> String {
    v.iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Choose the run a whole-stack restore takes; see [`RunSelect`].
pub fn select_run(all: &[(Id, Snapshot)], sel: &RunSelect<'_>) -> Result<Selected, RunError> {
    let runs = list_runs(all);
    if runs.is_empty() {
        return Err(RunError::NoRuns);
    }
    if let Some(typed) = sel.run {
        let matching: Vec<&RunInfo> = runs.iter().filter(|r| r.id.starts_with(typed)).collect();
        let run = match matching.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(RunError::NoSuchRun {
                    typed: typed.to_string(),
                    available: runs.iter().rev().map(RunInfo::line).collect(),
                })
            }
            many => {
                return Err(RunError::AmbiguousRun {
                    typed: typed.to_string(),
                    candidates: many.iter().rev().map(|r| r.line()).collect(),
                })
            }
        };
        if !run.is_complete() && !sel.allow_incomplete {
            return Err(RunError::Incomplete {
                id: run.id,
                problems: run.problems,
            });
        }
        return Ok(Selected {
            run,
            passed_over: Vec::new(),
        });
    }
    let mut passed_over = Vec::new();
    for r in runs.iter().rev() {
        if let (Some(want), Some(got)) = (sel.project, r.project()) {
            if want != got {
                passed_over.push(format!("{} (of project {got}, not {want})", r.line()));
                continue;
            }
        }
        if r.is_complete() || sel.allow_incomplete {
            return Ok(Selected {
                run: r.clone(),
                passed_over,
            });
        }
        passed_over.push(r.line());
    }
    let mut other_projects: Vec<String> = Vec::new();
    for r in runs.iter().rev().filter(|r| r.is_complete()) {
        if let (Some(want), Some(got)) = (sel.project, r.project()) {
            if want != got && !other_projects.iter().any(|p| p == got) {
                other_projects.push(got.to_string());
            }
        }
    }
    Err(RunError::NoCompleteRun {
        project: sel.project.map(str::to_string),
        passed_over,
        other_projects,
    })
}

/// The advice of [`RunError::NoCompleteRun`].
fn pick(other_projects: &[String]) -> String {
    match other_projects {
        [] => "Pick one with --run ID --incomplete to restore what it holds".to_string(),
        [p] => format!("A run of project {p} is complete: pass --project {p} (or set `project` in the config file)"),
        ps => format!(
            "Runs of projects {} are complete: pass --project NAME (or set `project` in the config file)",
            ps.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{RootMeta, SnapshotStats, SourceKind};

    fn snap(name: &str, t: &str, run: &str, plan: &RunPlan) -> (Id, Snapshot) {
        let s = Snapshot {
            name: name.into(),
            kind: SourceKind::Path,
            origin: serde_json::json!({"path": format!("/x/{name}")}),
            hostname: "h".into(),
            time: DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc),
            tags: vec![],
            parent: None,
            run_id: Some(run.into()),
            run: Some(plan.clone()),
            consistency: None,
            tree: Id::hash(b"t"),
            root: RootMeta::default(),
            stats: SnapshotStats::default(),
            errors: vec![],
            excluded: vec![],
            cbsnap_version: "0".into(),
        };
        (Id::hash(format!("{name}{t}{run}").as_bytes()), s)
    }

    fn plan(project: &str, expected: &[&str]) -> RunPlan {
        RunPlan {
            project: project.into(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_complete_run_is_taken_over_a_newer_partial_one() {
        let full = plan("cb", &["qdrant", "ollama"]);
        let mut down = plan("cb", &["ollama"]);
        down.unlisted = vec!["volumes of cb: engine down".into()];
        let all = vec![
            snap("qdrant", "2026-11-28T02:00:00Z", "A", &full),
            snap("ollama", "2026-11-28T02:00:01Z", "A", &full),
            snap("ollama", "2026-11-29T02:00:01Z", "B", &down),
        ];
        let s = select_run(&all, &RunSelect::default()).unwrap();
        assert_eq!(s.run.id, "A");
        assert_eq!(s.passed_over.len(), 1);
        assert!(s.passed_over[0].contains("could not list volumes of cb"));
        // Asked by id, the incomplete run is refused unless allowed.
        let by_id = RunSelect {
            run: Some("B"),
            ..Default::default()
        };
        assert!(matches!(
            select_run(&all, &by_id),
            Err(RunError::Incomplete { ref id, .. }) if id == "B"
        ));
        let allowed = RunSelect {
            run: Some("B"),
            allow_incomplete: true,
            ..Default::default()
        };
        assert_eq!(select_run(&all, &allowed).unwrap().run.id, "B");
    }

    #[test]
    fn a_failed_source_an_exclude_or_another_project_make_a_run_unfit() {
        let full = plan("cb", &["qdrant", "ollama"]);
        let mut excl = plan("cb", &["ollama"]);
        excl.excluded = vec!["qdrant".into()];
        let other = plan("wrong", &["ollama"]);
        let all = vec![
            // Run A lost qdrant: expected but not got.
            snap("ollama", "2026-11-27T02:00:01Z", "A", &full),
            snap("ollama", "2026-11-28T02:00:01Z", "B", &excl),
            snap("ollama", "2026-11-29T02:00:01Z", "C", &other),
        ];
        let sel = RunSelect {
            project: Some("cb"),
            ..Default::default()
        };
        match select_run(&all, &sel) {
            Err(e @ RunError::NoCompleteRun { .. }) => {
                let msg = e.to_string();
                let RunError::NoCompleteRun {
                    passed_over,
                    other_projects,
                    ..
                } = e
                else {
                    unreachable!()
                };
                // The run of project `wrong` is complete: the advice names it.
                assert_eq!(other_projects, ["wrong"]);
                assert!(msg.contains("pass --project wrong"), "{msg}");
                assert!(!msg.contains("--incomplete"), "{msg}");
                assert_eq!(passed_over.len(), 3, "{passed_over:?}");
                assert!(passed_over[0].contains("of project wrong"));
                assert!(passed_over[1].contains("left out by --exclude: qdrant"));
                assert!(passed_over[2].contains("no snapshot of qdrant"));
            }
            other => panic!("expected NoCompleteRun, got {other:?}"),
        }
    }

    #[test]
    fn an_ambiguous_run_prefix_lists_the_candidates() {
        let p = plan("cb", &["ollama"]);
        let all = vec![
            snap(
                "ollama",
                "2026-11-29T01:00:00Z",
                "20261129T010000Z-aaaaaa",
                &p,
            ),
            snap(
                "ollama",
                "2026-11-29T02:00:00Z",
                "20261129T020000Z-bbbbbb",
                &p,
            ),
        ];
        let sel = RunSelect {
            run: Some("20261129"),
            ..Default::default()
        };
        let e = select_run(&all, &sel).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, RunError::AmbiguousRun { ref candidates, .. } if candidates.len() == 2)
        );
        assert!(msg.contains("20261129T010000Z-aaaaaa") && msg.contains("20261129T020000Z-bbbbbb"));
    }
}
