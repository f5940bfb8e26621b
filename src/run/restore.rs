//! Whole-stack restore (`restore --all`): every source of one run, on a running
//! stack, without ever leaving a half-old stack behind.
//!
//! [`plan`] checks every source before anything is touched: each volume's
//! containers, whether the volume can be written the way chosen, each host path's
//! target and the containers that use it (a bind mount: the stack's `./workspace`,
//! `docker/bind.rs`). Running containers make it refuse unless `stop` is set. [`execute`] then
//! stops every affected container once (dependents first), restores every source,
//! and starts the containers once, in Compose dependency order ([`super::order`]).
//! The stop goes through the quiesce guard, so a crash or Ctrl-C in between starts
//! them again (`docker/quiesce.rs`).

use std::path::PathBuf;

use crate::docker::{ContainerInfo, Engine, Hold, QuiesceMode};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::dir;
use crate::snapshot::{Snapshot, SourceKind};
use crate::volume::restore::VolumeRestore;
use crate::volume::{quiesce_state_file, recorded_volume, Via};
use crate::Id;

use super::{order, Observer, RunError, RunInfo, RunSelect, Selected};

/// How `restore --all` writes.
#[derive(Clone, Debug)]
pub struct RestoreAllOptions {
    /// Stop the running containers that use the run's volumes or host paths (a bind
    /// mount), restore, start them.
    pub stop: bool,
    /// Restore host paths into non-empty directories, replacing entries of the same name.
    pub force: bool,
    /// Also remove what the snapshot lacks from host paths, so each equals its snapshot
    /// as volumes do (implies `force`).
    pub delete: bool,
    /// How to write volumes.
    pub via: Via,
    /// The command that runs this restore again, named when it does not finish and
    /// leaves the containers stopped (`cbsnap restore --all --run 1a2b3c4d --stop`).
    pub again: String,
}

/// Where one source goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The Docker volume of this name (created if missing).
    Volume(String),
    /// The host directory it was taken from.
    Dir(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Volume(v) => write!(f, "volume {v}"),
            Target::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// One source of the plan.
#[derive(Clone, Debug)]
pub struct PlanItem {
    /// The snapshot's id.
    pub id: Id,
    /// The snapshot of the source in the run.
    pub snapshot: Snapshot,
    /// Where it is restored to.
    pub target: Target,
}

/// What [`execute`] will do; print it before doing it.
#[derive(Clone, Debug)]
pub struct RestorePlan {
    /// The run restored.
    pub run: RunInfo,
    /// Newer runs that were not taken, with why.
    pub passed_over: Vec<String>,
    /// Every source of the run, in the run's order.
    pub items: Vec<PlanItem>,
    /// Running containers to stop, in stop order (dependents first); they are
    /// started in the reverse order.
    pub stop_order: Vec<ContainerInfo>,
}

/// A plan, and the engine it needs.
pub struct Prepared {
    /// What [`execute`] will do.
    pub plan: RestorePlan,
    /// Connected when the run holds volumes, or when this host's engine answers.
    pub engine: Option<Engine>,
}

/// `restore --all` up to its plan: choose the run ([`super::select_run`]), connect
/// to the Docker engine (required when the run holds volumes; for host paths only
/// when this host has one, [`Engine::connect_if_present`]), and [`plan`]. Touches
/// nothing.
pub fn prepare(
    repo: &Repository,
    sel: &RunSelect<'_>,
    opts: &RestoreAllOptions,
) -> Result<Prepared, RunError> {
    match prepare_and_refusal(repo, sel, opts)? {
        (prepared, None) => Ok(prepared),
        (_, Some(refusal)) => Err(refusal),
    }
}

/// [`prepare`] for a dry run: the plan, and beside it the refusal a restore of it
/// would meet ([`plan_and_refusal`]).
pub fn prepare_and_refusal(
    repo: &Repository,
    sel: &RunSelect<'_>,
    opts: &RestoreAllOptions,
) -> Result<(Prepared, Option<RunError>), RunError> {
    let all = crate::snapshot::load_all(repo.storage(), repo.crypt())?;
    let selected = super::select_run(&all, sel)?;
    let engine = if selected
        .run
        .members
        .iter()
        .any(|(_, s)| s.kind == SourceKind::Volume)
    {
        Some(Engine::connect()?)
    } else {
        // Host paths only: running containers may still use them (bind mounts),
        // and an engine that answers is asked; a host without one runs none.
        match Engine::connect_if_present() {
            Ok(engine) => engine,
            Err(e) => {
                for (_, snap) in &selected.run.members {
                    if let Some(dir) = snap.origin_path() {
                        crate::warn::emit(crate::warn::Warning::DirUsersUnknown {
                            dir,
                            cause: e.to_string(),
                        });
                    }
                }
                None
            }
        }
    };
    let (plan, refusal) = plan_and_refusal(repo, engine.as_ref(), selected, opts)?;
    Ok((Prepared { plan, engine }, refusal))
}

/// Check every source of the selected run and plan the restore. Touches nothing
/// (besides resuming containers an interrupted cbsnap left quiesced). `engine` is
/// needed when the run holds volumes; with it, the containers that use a host
/// path's directory (a bind mount: the stack's `./workspace`) are stopped like
/// those of the volumes, or make the plan refuse without `stop`.
///
/// Errors: [`RunError::ContainersRunning`] without `stop`;
/// [`RunError::InUse`] when every problem found is a state of the stack (a
/// `docker run --rm` container to stop, a volume that cannot be cleared now);
/// [`RunError::Unrestorable`] when some source cannot be restored as asked.
pub fn plan(
    repo: &Repository,
    engine: Option<&Engine>,
    selected: Selected,
    opts: &RestoreAllOptions,
) -> Result<RestorePlan, RunError> {
    match plan_and_refusal(repo, engine, selected, opts)? {
        (plan, None) => Ok(plan),
        (_, Some(refusal)) => Err(refusal),
    }
}

/// [`plan`], with the refusal a restore of it would meet beside it rather than
/// instead of it, so that a dry run shows what the run holds and why it would be
/// refused. A refused plan's `stop_order` is empty. Errors: those of [`plan`] other
/// than the refusals (a run that cannot be read, an engine that does not answer).
pub fn plan_and_refusal(
    repo: &Repository,
    engine: Option<&Engine>,
    selected: Selected,
    opts: &RestoreAllOptions,
) -> Result<(RestorePlan, Option<RunError>), RunError> {
    let run = selected.run;
    let mut problems = Vec::new();
    let mut items = Vec::new();
    // States of the stack that stop the plan (exit 1), apart from `problems`,
    // which are about the request (exit 2).
    let mut busy = Vec::new();
    let mut running: Vec<ContainerInfo> = Vec::new();
    if let Some(engine) = engine {
        engine.recover_quiesced(&quiesce_state_file(&repo.root))?;
    }
    for (id, snap) in &run.members {
        // Its root tree read first: a damaged index or a lost pack that would fail
        // the source does so before anything is stopped.
        if let Err(e) = repo.read_blob(&snap.tree) {
            problems.push(format!("{}: {e}", snap.name));
            continue;
        }
        let target = match snap.kind {
            SourceKind::Volume => {
                let Some(vol) = recorded_volume(snap) else {
                    problems.push(format!("{}: the snapshot records no volume", snap.name));
                    continue;
                };
                let Some(engine) = engine else {
                    problems.push(format!(
                        "{}: volume {} needs the Docker engine",
                        snap.name, vol.name
                    ));
                    continue;
                };
                if let Some(info) = engine.inspect_volume(&vol.name)? {
                    let users = crate::volume::users(engine, &info)?;
                    stop_too(engine, &snap.name, &users, &mut running, &mut busy)?;
                    let mount = match opts.via {
                        Via::Archive => false,
                        Via::Auto | Via::Mount => engine.volume_mountpoint_readable(&info),
                    };
                    if opts.via == Via::Mount && !mount {
                        problems.push(format!(
                            "{}: {}",
                            snap.name,
                            crate::volume::via_mount_refused(&info)
                        ));
                    }
                    if !mount && !crate::volume::volume_is_empty(engine, &vol.name)? {
                        match crate::volume::restore::clearing(engine, &info, &users) {
                            Ok(_) => {}
                            Err(e @ crate::Error::InUse(_)) => {
                                busy.push(format!("{}: {e}", snap.name))
                            }
                            Err(e) => problems.push(format!("{}: {e}", snap.name)),
                        }
                    }
                }
                Target::Volume(vol.name)
            }
            SourceKind::Path | SourceKind::Tar => {
                let Some(p) = snap.origin_path() else {
                    problems.push(format!(
                        "{}: no recorded host path; restore it alone with `cbsnap restore {}@{} --to DIR`",
                        snap.name,
                        snap.name,
                        id.short()
                    ));
                    continue;
                };
                if let Ok(md) = std::fs::symlink_metadata(&p) {
                    if !md.is_dir() {
                        problems.push(format!(
                            "{}: {} exists and is not a directory",
                            snap.name,
                            p.display()
                        ));
                    } else if !(opts.force || opts.delete)
                        && std::fs::read_dir(&p)
                            .map(|mut d| d.next().is_some())
                            .unwrap_or(true)
                    {
                        problems.push(format!(
                            "{}: {} is not empty; pass --force to replace the entries it shares with the snapshot",
                            snap.name,
                            p.display()
                        ));
                    }
                }
                if let Some(engine) = engine {
                    let users = engine.containers_using_dir(&p)?;
                    stop_too(engine, &snap.name, &users, &mut running, &mut busy)?;
                }
                Target::Dir(p)
            }
        };
        items.push(PlanItem {
            id: *id,
            snapshot: snap.clone(),
            target,
        });
    }
    let refusal = if !problems.is_empty() {
        problems.extend(busy);
        Some(RunError::Unrestorable {
            run: run.id.clone(),
            problems,
        })
    } else if !busy.is_empty() {
        Some(RunError::InUse {
            run: run.id.clone(),
            problems: busy,
        })
    } else if !running.is_empty() && !opts.stop {
        let mut names: Vec<String> = running.iter().map(|c| c.name.clone()).collect();
        names.sort();
        Some(RunError::ContainersRunning {
            run: run.id.clone(),
            containers: names,
        })
    } else {
        None
    };
    let stop_order = match refusal {
        Some(_) => Vec::new(),
        None => {
            let mut order = order::start_order(&running);
            order.reverse();
            order
        }
    };
    let plan = RestorePlan {
        run,
        passed_over: selected.passed_over,
        items,
        stop_order,
    };
    Ok((plan, refusal))
}

/// Adds the running, paused or restarting containers among `users` (of the source
/// `source`) to `running`, once each; one started with `docker run --rm`, which
/// stopping would make Docker delete, is named in `busy`: refused here, before
/// anything is stopped, not halfway through.
fn stop_too(
    engine: &Engine,
    source: &str,
    users: &[ContainerInfo],
    running: &mut Vec<ContainerInfo>,
    busy: &mut Vec<String>,
) -> Result<(), RunError> {
    for c in users {
        let live = c.state.is_up();
        if live && !running.iter().any(|r| r.id == c.id) {
            if engine.auto_removes(c)? {
                busy.push(format!(
                    "{source}: {}",
                    crate::docker::DockerError::AutoRemove {
                        container: c.name.clone()
                    }
                ));
            }
            running.push(c.clone());
        }
    }
    Ok(())
}

/// What happened to one source.
#[derive(Debug)]
pub struct RestoredSource {
    /// Source name.
    pub name: String,
    /// The snapshot restored.
    pub id: Id,
    /// Where it went.
    pub target: Target,
    /// What was written, or why not.
    pub result: crate::Result<dir::Report>,
}

/// What [`execute`] did.
#[derive(Debug)]
pub struct RestoreAllReport {
    /// The run id.
    pub run: String,
    /// One entry per source of the plan.
    pub sources: Vec<RestoredSource>,
    /// Containers stopped, in that order, and started again in the reverse order.
    pub stopped: Vec<String>,
}

impl RestoreAllReport {
    /// Sources that were not restored.
    pub fn failed(&self) -> usize {
        self.sources.iter().filter(|s| s.result.is_err()).count()
    }

    /// How the restore ended, for the exit code: [`RunError::NotRestored`] when a
    /// source failed, [`crate::Error::RestoreIncomplete`] when every source was
    /// restored but some entries not exactly, `Ok` when all is in place.
    pub fn outcome(&self) -> Result<(), RunError> {
        if self.failed() > 0 {
            return Err(RunError::NotRestored {
                run: self.run.clone(),
                failed: self.failed(),
                total: self.sources.len(),
            });
        }
        let problems: usize = self
            .sources
            .iter()
            .filter_map(|s| s.result.as_ref().ok())
            .map(|r| r.problems.len())
            .sum();
        if problems > 0 {
            return Err(crate::Error::RestoreIncomplete {
                target: format!("the sources of run {}", self.run),
                problems,
            }
            .into());
        }
        Ok(())
    }
}

/// Carry out a [`plan`]: stop its containers once, restore every source (a
/// failure of one does not stop the others), start the containers once every
/// source is restored. When one failed, the containers stay stopped (their stack
/// would start on volumes part old, part restored): the state file holds them and
/// every run names them, until this restore is run again and finishes, which starts
/// them (with those an earlier run of it left stopped), or the operator starts them.
/// Returns `Err` only when containers could not be stopped or started again.
pub fn execute(
    repo: &Repository,
    engine: Option<&Engine>,
    plan: &RestorePlan,
    opts: &RestoreAllOptions,
    observer: &dyn Observer,
) -> Result<RestoreAllReport, RunError> {
    // Made even when nothing runs: it takes over what an earlier, unfinished run of
    // this restore left stopped, to start it once this one finishes.
    let ours = quiesce_state_file(&repo.root);
    let mut guard = match engine {
        Some(engine) => {
            if !plan.stop_order.is_empty() {
                observer.note(&format!(
                    "stopping {} containers for the restore: {}",
                    plan.stop_order.len(),
                    names(&plan.stop_order)
                ));
            }
            let each: Vec<(&ContainerInfo, QuiesceMode)> = plan
                .stop_order
                .iter()
                .map(|c| (c, QuiesceMode::Stop))
                .collect();
            let hold = Hold {
                target: format!("the sources of run {}", plan.run.id),
                again: opts.again.clone(),
            };
            // Also takes over what an unfinished run of this restore from another
            // repository (this one is its mirror) holds.
            let vols: Vec<&str> = volumes(plan).collect();
            let (guard, _gone) =
                crate::volume::quiesce_for_restore(engine, &repo.root, &each, hold, &vols)?;
            Some(guard)
        }
        None => None,
    };
    if let Some(g) = &mut guard {
        g.arm()?;
    }
    let n = plan.items.len();
    let mut sources = Vec::with_capacity(n);
    for (i, item) in plan.items.iter().enumerate() {
        let progress = observer.progress(i + 1, n, &item.snapshot.name);
        let result = restore_one(repo, engine, item, opts, &progress);
        progress.finish();
        // Said as each ends, so that a run interrupted later has said what it finished.
        observer.restored(item, &result);
        sources.push(RestoredSource {
            name: item.snapshot.name.clone(),
            id: item.id,
            target: item.target.clone(),
            result,
        });
    }
    if let Some(guard) = guard {
        if sources.iter().all(|s| s.result.is_ok()) {
            let quiesced = guard.quiesced();
            let start: Vec<&str> = quiesced.iter().rev().map(|c| c.name.as_str()).collect();
            if !start.is_empty() {
                observer.note(&format!("starting containers again: {}", start.join(", ")));
            }
            guard.resume()?;
            if let Some(engine) = engine {
                for v in volumes(plan) {
                    let users = engine.containers_using_volume(v).unwrap_or_default();
                    crate::volume::clear_held_in(v, &ours, &users);
                }
            }
        } else {
            // Dropped without `resume`: they stay stopped, and the guard says so.
            drop(guard);
        }
    }
    Ok(RestoreAllReport {
        run: plan.run.id.clone(),
        sources,
        stopped: plan.stop_order.iter().map(|c| c.name.clone()).collect(),
    })
}

/// The volumes `plan` restores into.
fn volumes(plan: &RestorePlan) -> impl Iterator<Item = &str> {
    plan.items.iter().filter_map(|i| match &i.target {
        Target::Volume(v) => Some(v.as_str()),
        Target::Dir(_) => None,
    })
}

fn names(cs: &[ContainerInfo]) -> String {
    cs.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn restore_one(
    repo: &Repository,
    engine: Option<&Engine>,
    item: &PlanItem,
    opts: &RestoreAllOptions,
    progress: &Progress,
) -> crate::Result<dir::Report> {
    match &item.target {
        Target::Volume(name) => {
            let engine = engine.ok_or_else(|| {
                crate::Error::Usage(format!("volume {name} needs the Docker engine"))
            })?;
            let o = VolumeRestore {
                target: Some(name.clone()),
                // Stopped above; a container started since is refused, not stopped
                // a second time.
                stop: false,
                // The run's own volumes: always made equal to their snapshots.
                delete: false,
                via: opts.via,
                again: opts.again.clone(),
            };
            crate::volume::restore::restore_volume(repo, engine, &item.snapshot, &o, progress)
                .map(|(_, r)| r)
        }
        Target::Dir(p) => {
            // Stopped above; a container started since is refused, as for a volume.
            if let Some(engine) = engine {
                let users = engine.containers_using_dir(p)?;
                if !users.is_empty() {
                    let names: Vec<&str> = users.iter().map(|c| c.name.as_str()).collect();
                    return Err(crate::Error::InUse(crate::restore::in_use::in_use_message(
                        p, &names,
                    )));
                }
            }
            let o = dir::Options {
                force: opts.force,
                delete: opts.delete,
                filter: dir::Filter::default(),
                ..dir::Options::default()
            };
            dir::restore(repo, &item.snapshot, p, &o, progress)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::DockerError;
    use crate::repo::Access;
    use crate::run::backup::{snapshot_all, AllOptions, SourceStatus};
    use crate::run::Quiet;

    /// `snapshot --all` and `restore --all` as library calls, on a run of host paths
    /// taken while the Docker engine was down: the run is incomplete, so it is
    /// refused until allowed, a non-empty target is refused before anything is
    /// written, and then every path is restored to where it was taken from.
    #[test]
    fn a_run_of_host_paths_is_restored_in_place_by_library_calls() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        Repository::init(&root).unwrap();
        let repo = Repository::open(&root, Access::Append).unwrap();
        let (a, b) = (tmp.path().join(".ollama"), tmp.path().join("work"));
        for (dir, text) in [(&a, "one"), (&b, "two")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("f"), text).unwrap();
        }
        let opts = AllOptions {
            project: "p".into(),
            volumes: None,
            paths: vec![a.clone(), b.clone()],
            exclude_config: vec![],
            exclude_flag: vec![],
            via: Via::Auto,
            quiesce: QuiesceMode::Pause,
            tags: vec![],
            hooks: Default::default(),
        };
        let down = DockerError::Unreachable {
            host: "unix:///nonexistent.sock".into(),
            detail: "test".into(),
        };
        let run = snapshot_all(&repo, Err(down), &opts, &Quiet).unwrap();
        assert_eq!(
            run.status,
            SourceStatus::Failed,
            "the volumes were not listed"
        );
        let ok: Vec<&str> = run
            .sources
            .iter()
            .filter(|s| s.status == SourceStatus::Ok)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(ok, ["ollama", "work"]);
        assert_eq!(run.plan.unlisted.len(), 1);

        std::fs::remove_dir_all(&a).unwrap();
        std::fs::write(b.join("f"), "changed").unwrap();
        std::fs::write(b.join("extra"), "x").unwrap();
        let strict = RunSelect {
            run: None,
            project: Some("p"),
            allow_incomplete: false,
        };
        let mut ropts = RestoreAllOptions {
            stop: false,
            force: false,
            delete: false,
            via: Via::Auto,
            again: String::new(),
        };
        assert!(matches!(
            prepare(&repo, &strict, &ropts),
            Err(RunError::NoCompleteRun { .. })
        ));
        let allowed = RunSelect {
            allow_incomplete: true,
            ..strict
        };
        match prepare(&repo, &allowed, &ropts) {
            Err(RunError::Unrestorable { problems, .. }) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert!(problems[0].contains("is not empty"), "{problems:?}");
            }
            Err(e) => panic!("expected Unrestorable, got {e}"),
            Ok(_) => panic!("expected Unrestorable, got a plan"),
        }
        assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "changed");

        ropts.delete = true;
        let prepared = prepare(&repo, &allowed, &ropts).unwrap();
        assert!(
            prepared.plan.stop_order.is_empty(),
            "no container uses them"
        );
        assert_eq!(
            prepared
                .plan
                .items
                .iter()
                .map(|i| &i.target)
                .collect::<Vec<_>>(),
            [&Target::Dir(a.clone()), &Target::Dir(b.clone())]
        );
        let done = execute(&repo, None, &prepared.plan, &ropts, &Quiet).unwrap();
        assert_eq!(done.failed(), 0);
        done.outcome().unwrap();
        assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "two");
        assert!(
            !b.join("extra").exists(),
            "--delete makes the path equal the snapshot"
        );
    }
}
