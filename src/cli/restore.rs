//! `cbsnap restore` and `cbsnap dump`.

use std::path::{Path, PathBuf};

use cbsnap::docker::Engine;
use cbsnap::snapshot::{Snapshot, SourceKind};
use cbsnap::volume::restore::VolumeRestore;
use cbsnap::volume::snapshot::{quiesce_state_file, Via};
use cbsnap::Id;

use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::restore;
use cbsnap::run::{self, restore::RestoreAllOptions, RunSelect};
use cbsnap::snapshot;

use super::{print_json, Ctx};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// NAME@SELECTOR: latest, latest~N, an id prefix, tag:T, or a date YYYY-MM-DD
    /// (the newest snapshot at or before the end of that day)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub snapshot: Option<String>,
    /// Restore into this host directory (must not exist or be empty, unless --force)
    #[arg(long, value_name = "DIR", conflicts_with = "to_volume")]
    pub to: Option<PathBuf>,
    /// Restore a volume snapshot into another Docker volume (created if missing)
    #[arg(long, value_name = "VOLUME")]
    pub to_volume: Option<String>,
    /// Restore into a non-empty directory, replacing entries of the same name (other
    /// entries are kept; see --delete)
    #[arg(long)]
    pub force: bool,
    /// Restore into a non-empty directory and remove what the snapshot does not have,
    /// so the directory equals the snapshot (volumes are always made equal)
    #[arg(long)]
    pub delete: bool,
    /// Only this path of the snapshot, e.g. `models/manifests` (repeatable; needs --to)
    #[arg(long, value_name = "PATH", requires = "to")]
    pub include: Vec<String>,
    /// Leave out entries whose path in the snapshot or name matches this glob, e.g.
    /// '*.log' (repeatable; needs --to)
    #[arg(long, value_name = "GLOB", requires = "to")]
    pub exclude: Vec<String>,
    /// Stop the running containers that use the volume, restore, start them again
    #[arg(long)]
    pub stop: bool,
    /// Restore every source of the newest complete `snapshot --all` run (or of --run)
    #[arg(long, conflicts_with_all = ["to", "to_volume"])]
    pub all: bool,
    /// With --all: the run id (or a prefix of it), as `cbsnap snapshots` shows
    #[arg(long, requires = "all", value_name = "ID")]
    pub run: Option<String>,
    /// With --all: restore an incomplete run (one that missed sources, or was made
    /// with --exclude) instead of refusing it
    #[arg(long, requires = "all")]
    pub incomplete: bool,
    /// With --all: runs of this compose project [default: config `project`, else code-buddy]
    #[arg(long, requires = "all")]
    pub project: Option<String>,
    /// With --all: print the plan (run, sources, targets, containers) and change nothing
    #[arg(long, requires = "all")]
    pub dry_run: bool,
    /// How to write volumes
    #[arg(long, value_enum)]
    pub via: Option<Via>,
}

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// NAME@SELECTOR
    pub snapshot: String,
    /// Only this file or directory of the snapshot
    pub path: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let via = a.via.or(ctx.settings.via).unwrap_or(Via::Auto);
    if a.all {
        let all = snapshot::load_all(repo.storage())?;
        return restore_run(ctx, &repo, &all, &a, via);
    }
    let spec = a
        .snapshot
        .as_deref()
        .expect("clap requires a snapshot without --all");
    let set = snapshot::scan(repo.storage())?;
    let (id, snap) = super::resolve_in(ctx, &set, spec)?;
    if let Some(to) = &a.to {
        let opts = restore::dir::Options {
            force: a.force,
            delete: a.delete,
            filter: restore::dir::Filter::new(&a.include, &a.exclude)?,
        };
        return restore_to_dir(ctx, &repo, &id, &snap, to, &opts);
    }
    if a.to_volume.is_none() && snap.kind != SourceKind::Volume {
        return Err(cbsnap::Error::Usage(format!(
            "{} is a snapshot of a {}: say where to restore it with --to DIR (or --to-volume VOLUME)",
            snap.name,
            format!("{:?}", snap.kind).to_lowercase()
        ))
        .into());
    }
    let opts = VolumeRestore {
        target: a.to_volume.clone(),
        stop: a.stop,
        via,
    };
    restore_to_volume(ctx, &repo, &Engine::connect()?, &id, &snap, &opts)
}

fn restore_to_dir(
    ctx: &Ctx,
    repo: &cbsnap::Repository,
    id: &Id,
    snap: &Snapshot,
    to: &Path,
    opts: &restore::dir::Options,
) -> anyhow::Result<()> {
    let progress = Progress::new(ctx.quiet || ctx.json, "restore");
    let report = restore::dir::restore(repo, snap, to, opts, &progress)?;
    let target = to.display().to_string();
    print_report(ctx, id, snap, &target, &report);
    incomplete(&target, &report)
}

fn restore_to_volume(
    ctx: &Ctx,
    repo: &cbsnap::Repository,
    engine: &Engine,
    id: &Id,
    snap: &Snapshot,
    opts: &VolumeRestore,
) -> anyhow::Result<()> {
    engine.recover_quiesced(&quiesce_state_file(&repo.root))?;
    let progress = Progress::new(ctx.quiet || ctx.json, "restore");
    let (volume, report) =
        cbsnap::volume::restore::restore_volume(repo, engine, snap, opts, &progress)?;
    let target = format!("volume {volume}");
    print_report(ctx, id, snap, &target, &report);
    incomplete(&target, &report)
}

/// `restore --all`: every source of one `snapshot --all` run. Prints the plan, then
/// restores (see `cbsnap::run::restore`).
fn restore_run(
    ctx: &Ctx,
    repo: &cbsnap::Repository,
    all: &[(Id, Snapshot)],
    a: &Args,
    via: Via,
) -> anyhow::Result<()> {
    let sel = RunSelect {
        run: a.run.as_deref(),
        project: a.project.as_deref().or(ctx.project()),
        allow_incomplete: a.incomplete,
    };
    let selected = run::select_run(all, &sel)?;
    let opts = RestoreAllOptions {
        stop: a.stop,
        force: a.force,
        delete: a.delete,
        via,
    };
    let engine = if selected
        .run
        .members
        .iter()
        .any(|(_, s)| s.kind == SourceKind::Volume)
    {
        Some(Engine::connect()?)
    } else {
        None
    };
    let plan = run::restore::plan(repo, engine.as_ref(), selected, &opts)?;
    print_plan(ctx, &plan, a.dry_run);
    if a.dry_run {
        if ctx.json {
            print_json(&serde_json::json!({
                "run": plan.run.id,
                "complete": plan.run.is_complete(),
                "problems": plan.run.problems,
                "passed_over": plan.passed_over,
                "sources": plan.items.iter().map(|i| serde_json::json!({
                    "name": i.snapshot.name, "snapshot": i.id, "to": i.target.to_string(),
                })).collect::<Vec<_>>(),
                "stop_order": plan.stop_order.iter().map(|c| &c.name).collect::<Vec<_>>(),
            }));
        }
        return Ok(());
    }
    let report = run::restore::execute(
        repo,
        engine.as_ref(),
        &plan,
        &opts,
        &super::snapshot::CliObserver::new(ctx),
    )?;
    let mut docs = Vec::new();
    for s in &report.sources {
        let item = plan
            .items
            .iter()
            .find(|i| i.id == s.id)
            .expect("reported sources come from the plan");
        match &s.result {
            Ok(r) if ctx.json => {
                for p in &r.problems {
                    cbsnap::warn_stderr!("cbsnap: error: {p}");
                }
                docs.push(serde_json::json!({
                    "snapshot": s.id, "name": s.name, "to": s.target.to_string(),
                    "files": r.files, "dirs": r.dirs, "bytes": r.bytes,
                    "problems": r.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }));
            }
            Ok(r) => print_report(ctx, &s.id, &item.snapshot, &s.target.to_string(), r),
            Err(e) => {
                cbsnap::warn_stderr!("cbsnap: error: {} to {}: {e}", s.name, s.target);
                docs.push(serde_json::json!({
                    "snapshot": s.id, "name": s.name, "to": s.target.to_string(),
                    "error": e.to_string(),
                }));
            }
        }
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "run": report.run,
            "passed_over": plan.passed_over,
            "stopped": report.stopped,
            "sources": docs,
        }));
    }
    if report.failed() > 0 {
        anyhow::bail!(
            "{} of {} sources of run {} were not restored",
            report.failed(),
            report.sources.len(),
            report.run
        );
    }
    let problems: usize = report
        .sources
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .map(|r| r.problems.len())
        .sum();
    if problems > 0 {
        return Err(cbsnap::Error::RestoreIncomplete {
            target: format!("the sources of run {}", report.run),
            problems,
        }
        .into());
    }
    Ok(())
}

/// The plan, on stdout; under `-q` only for a dry run (which shows nothing else).
fn print_plan(ctx: &Ctx, plan: &run::restore::RestorePlan, dry_run: bool) {
    if ctx.json || (ctx.quiet && !dry_run) {
        return;
    }
    for p in &plan.passed_over {
        cbsnap::warn_stderr!("cbsnap: passed over run {p}");
    }
    outln!("restoring run {}", plan.run.line());
    for i in &plan.items {
        outln!(
            "  {}@{} ({})  ->  {}",
            i.snapshot.name,
            i.id.short(),
            i.snapshot
                .time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            i.target
        );
    }
    if !plan.stop_order.is_empty() {
        let names = |it: &mut dyn Iterator<Item = &cbsnap::docker::ContainerInfo>| {
            it.map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        };
        outln!(
            "  stops once before: {}\n  starts once after: {}",
            names(&mut plan.stop_order.iter()),
            names(&mut plan.stop_order.iter().rev())
        );
    }
}

/// A restore with problems fails with exit code 3 after listing them.
fn incomplete(target: &str, report: &restore::dir::Report) -> anyhow::Result<()> {
    if report.problems.is_empty() {
        return Ok(());
    }
    Err(cbsnap::Error::RestoreIncomplete {
        target: target.to_string(),
        problems: report.problems.len(),
    }
    .into())
}

fn print_report(ctx: &Ctx, id: &Id, snap: &Snapshot, to: &str, report: &restore::dir::Report) {
    for p in &report.problems {
        cbsnap::warn_stderr!("cbsnap: error: {p}");
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot": id, "name": snap.name, "to": to, "files": report.files, "dirs": report.dirs,
            "bytes": report.bytes,
            "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        }));
    } else {
        ctx.say(&format!(
            "restored {}@{} ({}) to {to}: {} files, {} dirs, {}",
            snap.name,
            id.short(),
            snap.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M"),
            report.files,
            report.dirs,
            indicatif::HumanBytes(report.bytes)
        ));
    }
}

pub fn dump(ctx: &Ctx, a: DumpArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        anyhow::bail!("dump writes a tar stream; redirect it to a file or a pipe (`cbsnap dump NAME@latest > out.tar`)");
    }
    let repo = ctx.open(Access::Read)?;
    let set = snapshot::scan(repo.storage())?;
    let (_, snap) = super::resolve_in(ctx, &set, &a.snapshot)?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    match restore::tar::dump(&repo, &snap, a.path.as_deref(), out) {
        Err(cbsnap::Error::Interrupted) => Ok(()),
        r => Ok(r?),
    }
}
