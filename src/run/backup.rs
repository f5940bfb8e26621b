//! The nightly run: `snapshot --all` (every volume of the compose project and every
//! configured host path) and `snapshot VOLUME...`, as one library call that returns a
//! typed result per source.
//!
//! Order of a source: its host or container `pre` hooks, then quiesce (pause/stop),
//! read, resume, commit, then its `post` hooks (which always run once a `pre` ran).
//! A source that fails does not stop the others; the run's [`RunPlan`] is recorded in
//! every snapshot of it, so a later restore can tell what the run missed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::docker::{ContainerState, DockerError, Engine, QuiesceMode, VolumeInfo, QUIESCE_LABEL};
use crate::error::{Error, Result};
use crate::ingest::{self, SnapshotSpec};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{self, Snapshot, SourceKind};
use crate::volume::snapshot::{snapshot_volume, VolumeSnapshot};
use crate::volume::{find_volume, quiesce_state_file, source_name, Via};
use crate::Id;

use super::hooks::{self, HookError, Hooks, EXEC_POST_LABEL, EXEC_PRE_LABEL};
use super::{Observer, RunPlan};

/// What to snapshot and how.
#[derive(Clone, Debug)]
pub struct AllOptions {
    /// The compose project whose volumes are taken (label `com.docker.compose.project`).
    pub project: String,
    /// `Some`: only these volumes (`snapshot VOLUME...`), not a run. `None`: the
    /// whole stack (`--all`): every volume of the project and every path of `paths`.
    pub volumes: Option<Vec<String>>,
    /// Host directories of the run (with `volumes: None`).
    pub paths: Vec<PathBuf>,
    /// Source-name globs to skip from the config file (standing policy).
    pub exclude_config: Vec<String>,
    /// Source-name globs to skip given on the command line: they make the run
    /// incomplete (see [`super::RunInfo::is_complete`]).
    pub exclude_flag: Vec<String>,
    /// How to read volumes.
    pub via: Via,
    /// The default quiesce mode (the container label `cbsnap.quiesce` overrides it).
    pub quiesce: QuiesceMode,
    /// Tags of every snapshot taken.
    pub tags: Vec<String>,
    /// Host-side hooks of the config; `path` is keyed by absolute path, as
    /// [`crate::settings::Settings::all_options`] makes it.
    pub hooks: Hooks,
}

/// How one source ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Committed, complete.
    Ok,
    /// Committed, but some entries could not be read or a post-hook failed.
    Partial,
    /// Not snapshotted because its pre-hook failed.
    Skipped,
    /// Not snapshotted: reading or committing failed.
    Failed,
}

/// The result of one source, as `snapshot --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct SourceResult {
    /// Source name (`qdrant-data`, `ollama`).
    pub name: String,
    /// What kind of source it is.
    pub kind: SourceKind,
    /// How it ended.
    pub status: SourceStatus,
    /// The committed snapshot, if any.
    pub snapshot_id: Option<Id>,
    /// Logical size of the source's files, bytes.
    pub bytes: u64,
    /// Bytes of file content read (files unchanged since the parent are not read).
    pub bytes_read: u64,
    /// Bytes the repository grew by: new data after dedup and compression.
    pub bytes_added: u64,
    /// Seconds from the start of the source (hooks included) to its end.
    pub duration_secs: f64,
    /// How it was held still: `paused`, `stopped` or `live` (volumes).
    pub consistency: Option<String>,
    /// What went wrong: the failure, hook failures, unreadable entries (`path: error`).
    pub errors: Vec<String>,
    /// The committed snapshot itself (not serialised).
    #[serde(skip)]
    pub snapshot: Option<Snapshot>,
}

impl SourceResult {
    /// A source that stored nothing: `status` with `errors`, no snapshot, no bytes.
    fn empty(name: &str, kind: SourceKind, status: SourceStatus, errors: Vec<String>) -> Self {
        SourceResult {
            name: name.to_string(),
            kind,
            status,
            snapshot_id: None,
            bytes: 0,
            bytes_read: 0,
            bytes_added: 0,
            duration_secs: 0.0,
            consistency: None,
            errors,
            snapshot: None,
        }
    }
}

/// A source the run did not take, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// Source name.
    pub name: String,
    /// Why (`excluded by the config`, `excluded by --exclude`).
    pub reason: String,
}

/// The result of [`snapshot_all`]; serialised as the run's JSON summary (`snapshot
/// --json`, the webhook body).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `None` for `snapshot VOLUME...`.
    pub run_id: Option<String>,
    /// The compose project.
    pub project: String,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// Seconds the run took, hooks included.
    pub duration_secs: f64,
    /// The worst status of any source (and `failed` if the run's pre-hook failed).
    pub status: SourceStatus,
    /// What the run set out to cover (recorded in its snapshots).
    pub plan: RunPlan,
    /// One result per source tried, in order.
    pub sources: Vec<SourceResult>,
    /// Sources excluded.
    pub skipped: Vec<Skipped>,
    /// Things the operator should know that did not fail anything.
    pub warnings: Vec<String>,
    /// Run-level failures: the run's pre/post hooks.
    pub errors: Vec<String>,
}

impl RunReport {
    /// Sum of `bytes_added` over the sources.
    pub fn bytes_added(&self) -> u64 {
        self.sources.iter().map(|s| s.bytes_added).sum()
    }
}

/// A source name for a host directory: its base name without leading dots
/// (`~/.ollama` → `ollama`).
pub fn path_source_name(abs: &Path) -> Result<String> {
    abs.file_name()
        .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "cannot derive a name from {}; pass --name",
                abs.display()
            ))
        })
}

/// A new run id: UTC time to the second and 6 hex digits, `20261129T020000Z-3f9a1c`.
pub fn new_run_id() -> String {
    let t = Utc::now();
    format!(
        "{}-{}",
        t.format("%Y%m%dT%H%M%SZ"),
        crate::id::random_hex(3)
    )
}

enum Source {
    Volume(VolumeInfo),
    Path(PathBuf),
}

fn globs(patterns: &[String]) -> Result<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        b.add(
            globset::Glob::new(p)
                .map_err(|e| Error::Usage(format!("bad --exclude pattern {p:?}: {e}")))?,
        );
    }
    b.build()
        .map_err(|e| Error::Usage(format!("bad --exclude patterns: {e}")))
}

/// Snapshot the stack (or the volumes of `opts.volumes`). `engine` is the engine or
/// why it could not be reached: with `--all` an unreachable engine fails the volumes
/// (recorded in the plan) and the host paths are still saved; for named volumes it
/// is an error. Returns `Err` only for what stops everything before it starts (a bad
/// exclude pattern) and, for named volumes, an unreadable repository or a volume that
/// does not exist; in a run such a failure makes the report `failed` (in its
/// `errors`) and the run's post hook still runs.
pub fn snapshot_all(
    repo: &Repository,
    engine: std::result::Result<&Engine, DockerError>,
    opts: &AllOptions,
    observer: &dyn Observer,
) -> Result<RunReport> {
    let started = Utc::now();
    let clock = Instant::now();
    let is_run = opts.volumes.is_none();
    let run_id = is_run.then(new_run_id);
    // Bad patterns are refused before anything runs.
    globs(&opts.exclude_config)?;
    globs(&opts.exclude_flag)?;
    let mut report = RunReport {
        run_id: run_id.clone(),
        project: opts.project.clone(),
        started,
        duration_secs: 0.0,
        status: SourceStatus::Ok,
        plan: RunPlan {
            project: opts.project.clone(),
            ..Default::default()
        },
        sources: Vec::new(),
        skipped: Vec::new(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    let run_env: Vec<(&str, &str)> = vec![("CBSNAP_RUN_ID", run_id.as_deref().unwrap_or(""))];

    if is_run {
        if let Some(pre) = &opts.hooks.pre {
            observer.note("running the run's pre hook");
            if let Err(e) = hooks::run_host("pre", pre, &run_env) {
                report.errors.push(format!("{e}; nothing was snapshotted"));
                report.status = SourceStatus::Failed;
                finish_run(&mut report, opts, &run_env, observer, clock);
                return Ok(report);
            }
        }
    }

    if let Err(e) = discover_and_snapshot(repo, engine, opts, observer, &mut report) {
        if !is_run {
            return Err(e);
        }
        // The run's pre hook ran: the run ends as failed, so its post hook, the
        // notifications and the metrics still happen.
        report.errors.push(format!("the run stopped: {e}"));
        report.status = SourceStatus::Failed;
    }
    finish_run(&mut report, opts, &run_env, observer, clock);
    Ok(report)
}

/// Lists the sources of the run (or the named volumes) and snapshots each into
/// `report.sources`. `Err` for what stops everything.
fn discover_and_snapshot(
    repo: &Repository,
    engine: std::result::Result<&Engine, DockerError>,
    opts: &AllOptions,
    observer: &dyn Observer,
    report: &mut RunReport,
) -> Result<()> {
    let is_run = opts.volumes.is_none();
    let run_id = report.run_id.clone();
    let policy = globs(&opts.exclude_config)?;
    let flagged = globs(&opts.exclude_flag)?;
    // Discover.
    let mut sources: Vec<(String, Source)> = Vec::new();
    let engine = match engine {
        Ok(e) => Some(e),
        Err(e) => {
            if !is_run {
                return Err(Error::Docker(e));
            }
            let what = format!("volumes of {}", opts.project);
            report.plan.unlisted.push(format!("{what}: {e}"));
            report.sources.push(SourceResult::empty(
                &what,
                SourceKind::Volume,
                SourceStatus::Failed,
                vec![e.to_string()],
            ));
            None
        }
    };
    if let Some(engine) = engine {
        let rec = engine.recover_quiesced(&quiesce_state_file(&repo.root))?;
        for r in &rec.resumed {
            report.warnings.push(format!(
                "resumed container {} left quiesced by an interrupted run",
                r.name
            ));
        }
        for r in &rec.held {
            if let Some(h) = &r.hold {
                report.warnings.push(format!(
                    "container {} is kept stopped: the restore into {} did not finish; run `{}` to finish it, or `{}`",
                    r.name, h.target, h.again, r.action.undo_hint(&r.name)
                ));
            }
        }
        let volumes = match &opts.volumes {
            None => {
                let v = engine.list_project_volumes(&opts.project)?;
                if v.is_empty() {
                    report.warnings.push(format!(
                        "no Docker volume carries the label com.docker.compose.project={}; is the stack's compose project named differently? (--project NAME, or `project` in the config)",
                        opts.project
                    ));
                }
                v
            }
            Some(names) => names
                .iter()
                .map(|v| find_volume(engine, v, Some(&opts.project)))
                .collect::<Result<Vec<_>>>()?,
        };
        for v in volumes {
            sources.push((source_name(&v.name, Some(&opts.project)), Source::Volume(v)));
        }
    }
    if is_run {
        for p in &opts.paths {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            sources.push((path_source_name(&abs)?, Source::Path(abs)));
        }
    }

    // Exclude, then fix the plan before the first snapshot is committed.
    sources.retain(|(name, src)| {
        let full = match src {
            Source::Volume(v) => v.name.as_str(),
            Source::Path(_) => name.as_str(),
        };
        if is_run && (policy.is_match(name) || policy.is_match(full)) {
            report.skipped.push(Skipped {
                name: name.clone(),
                reason: "excluded by the config".into(),
            });
            return false;
        }
        if is_run && (flagged.is_match(name) || flagged.is_match(full)) {
            report.skipped.push(Skipped {
                name: name.clone(),
                reason: "excluded by --exclude".into(),
            });
            report.plan.excluded.push(name.clone());
            return false;
        }
        true
    });
    report.plan.expected = sources.iter().map(|(n, _)| n.clone()).collect();
    report.plan.expected.sort();
    report.plan.expected.dedup();
    let plan = is_run.then(|| report.plan.clone());

    // Read once: each source's parent comes from this list.
    let existing = snapshot::load_all(repo.storage(), repo.crypt())?;
    let n = sources.len();
    for (i, (name, src)) in sources.into_iter().enumerate() {
        let progress = observer.progress(i + 1, n, &name);
        let parent = snapshot::latest_of(&existing, &name);
        let ctx = SourceCtx {
            repo,
            opts,
            run_id: run_id.clone(),
            plan: plan.clone(),
            parent,
            progress: &progress,
            observer,
        };
        let r = match src {
            Source::Volume(v) => volume_source(
                &ctx,
                engine.expect("volumes come from the engine"),
                &name,
                &v,
            ),
            Source::Path(p) => path_source(&ctx, &name, &p),
        };
        progress.finish();
        report.sources.push(r);
    }
    Ok(())
}

fn finish_run(
    report: &mut RunReport,
    opts: &AllOptions,
    run_env: &[(&str, &str)],
    observer: &dyn Observer,
    clock: Instant,
) {
    if report.run_id.is_some() {
        if let Some(post) = &opts.hooks.post {
            observer.note("running the run's post hook");
            if let Err(e) = hooks::run_host("post", post, run_env) {
                report.errors.push(e.to_string());
                report.status = report.status.max(SourceStatus::Partial);
            }
        }
    }
    for s in &report.sources {
        report.status = report.status.max(s.status);
    }
    report.duration_secs = clock.elapsed().as_secs_f64();
}

struct SourceCtx<'a> {
    repo: &'a Repository,
    opts: &'a AllOptions,
    run_id: Option<String>,
    plan: Option<RunPlan>,
    parent: Option<(Id, Snapshot)>,
    progress: &'a Progress,
    observer: &'a dyn Observer,
}

fn result(
    name: &str,
    kind: SourceKind,
    r: Result<(Id, Snapshot)>,
    hook_errors: Vec<HookError>,
    clock: Instant,
) -> SourceResult {
    let mut errors: Vec<String> = Vec::new();
    let mut out = SourceResult::empty(name, kind, SourceStatus::Ok, Vec::new());
    match r {
        Ok((id, s)) => {
            out.snapshot_id = Some(id);
            out.bytes = s.stats.bytes;
            out.bytes_read = s.stats.bytes_read;
            out.bytes_added = s.stats.new_bytes_stored;
            out.consistency = s.consistency.clone();
            errors.extend(s.errors.iter().map(|e| format!("{}: {}", e.path, e.error)));
            if !s.errors.is_empty() {
                out.status = SourceStatus::Partial;
            }
            out.snapshot = Some(s);
        }
        Err(e) => {
            errors.push(e.to_string());
            out.status = SourceStatus::Failed;
        }
    }
    if !hook_errors.is_empty() && out.status == SourceStatus::Ok {
        out.status = SourceStatus::Partial;
    }
    errors.extend(hook_errors.iter().map(|e| e.to_string()));
    out.errors = errors;
    out.duration_secs = clock.elapsed().as_secs_f64();
    out
}

fn skipped_by_hook(
    name: &str,
    kind: SourceKind,
    mut errors: Vec<HookError>,
    clock: Instant,
) -> SourceResult {
    let mut msgs: Vec<String> = errors
        .drain(..1)
        .map(|e| format!("{e}; {name} was not snapshotted"))
        .collect();
    msgs.extend(errors.iter().map(|e| e.to_string()));
    SourceResult {
        duration_secs: clock.elapsed().as_secs_f64(),
        ..SourceResult::empty(name, kind, SourceStatus::Skipped, msgs)
    }
}

fn volume_source(
    ctx: &SourceCtx<'_>,
    engine: &Engine,
    name: &str,
    vol: &VolumeInfo,
) -> SourceResult {
    let clock = Instant::now();
    let containers = match engine.containers_using_volume(&vol.name) {
        Ok(c) => c,
        Err(e) => return result(name, SourceKind::Volume, Err(e.into()), Vec::new(), clock),
    };
    let running: Vec<_> = containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .cloned()
        .collect();
    if running
        .iter()
        .any(|c| c.labels.contains_key(EXEC_PRE_LABEL))
    {
        ctx.observer.note(&format!(
            "{name}: running the exec-pre hooks of its containers"
        ));
    }
    let pre = hooks::run_in_containers(engine, &running, EXEC_PRE_LABEL, true);
    if !pre.is_empty() {
        // The post-hooks always run once a pre-hook was tried.
        let mut errs = pre;
        errs.extend(hooks::run_in_containers(
            engine,
            &running,
            EXEC_POST_LABEL,
            false,
        ));
        return skipped_by_hook(name, SourceKind::Volume, errs, clock);
    }
    let held: Vec<String> = running
        .iter()
        .filter_map(|c| {
            let mode = c
                .labels
                .get(QUIESCE_LABEL)
                .and_then(|v| v.parse().ok())
                .unwrap_or(ctx.opts.quiesce);
            match mode {
                QuiesceMode::Pause => Some(format!("pausing {}", c.name)),
                QuiesceMode::Stop => Some(format!("stopping {}", c.name)),
                QuiesceMode::None => None,
            }
        })
        .collect();
    if !held.is_empty() {
        ctx.observer
            .note(&format!("{name}: {} while it is read", held.join(", ")));
    }
    if ctx.parent.is_none()
        && ctx.opts.via != Via::Archive
        && engine.volume_mountpoint_readable(vol)
    {
        ctx.progress.set_total(precount(Path::new(&vol.mountpoint)));
    }
    let vs = VolumeSnapshot {
        project: Some(&ctx.opts.project),
        via: ctx.opts.via,
        quiesce: ctx.opts.quiesce,
        run_id: ctx.run_id.clone(),
        run: ctx.plan.clone(),
        tags: ctx.opts.tags.clone(),
    };
    let r = snapshot_volume(ctx.repo, engine, vol, &vs, ctx.parent.clone(), ctx.progress);
    let post = hooks::run_in_containers(engine, &running, EXEC_POST_LABEL, false);
    result(name, SourceKind::Volume, r, post, clock)
}

fn path_source(ctx: &SourceCtx<'_>, name: &str, abs: &Path) -> SourceResult {
    let clock = Instant::now();
    let hooks = ctx
        .opts
        .hooks
        .path
        .iter()
        .find(|(k, _)| Path::new(k) == abs);
    let path_str = abs.to_string_lossy();
    let env = [
        ("CBSNAP_RUN_ID", ctx.run_id.as_deref().unwrap_or("")),
        ("CBSNAP_SOURCE", name),
        ("CBSNAP_PATH", path_str.as_ref()),
    ];
    let (pre, post) = match hooks {
        Some((_, h)) => (h.pre.as_deref(), h.post.as_deref()),
        None => (None, None),
    };
    if let Some(pre) = pre {
        ctx.observer.note(&format!("{name}: running its pre hook"));
        if let Err(e) = hooks::run_host("pre", pre, &env) {
            let mut errs = vec![e];
            if let Some(post) = post {
                errs.extend(hooks::run_host("post", post, &env).err());
            }
            return skipped_by_hook(name, SourceKind::Path, errs, clock);
        }
    }
    if ctx.parent.is_none() {
        ctx.progress.set_total(precount(abs));
    }
    let spec = SnapshotSpec {
        parent: ctx.parent.clone(),
        name: name.to_string(),
        kind: SourceKind::Path,
        origin: serde_json::json!({ "path": abs, "uid": crate::host::reader_uid() }),
        tags: ctx.opts.tags.clone(),
        run_id: ctx.run_id.clone(),
        run: ctx.plan.clone(),
        consistency: None,
        time: ingest::SnapshotTime::Now,
    };
    let leave_out = ingest::own_dirs(ctx.repo);
    let r = ingest::snapshot(ctx.repo, spec, ctx.progress, |sink| {
        crate::source::dir::walk(abs, &leave_out, sink)
    });
    let post_err: Vec<HookError> = match post {
        Some(post) => hooks::run_host("post", post, &env)
            .err()
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    result(name, SourceKind::Path, r, post_err, clock)
}

/// The total size of the regular files under `root`, for the progress bar of a
/// source without a parent snapshot. A quick walk of metadata only (an explicit
/// stack, no symlinks followed); unreadable parts count as 0.
pub fn precount(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}
