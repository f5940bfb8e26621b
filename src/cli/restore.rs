//! `cbsnap restore` and `cbsnap dump`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cbsnap::repo::Access;
use cbsnap::restore;
use cbsnap::run::restore::{self as run_restore, RestoreAllOptions};
use cbsnap::run::RunSelect;
use cbsnap::volume::restore::{restore_snapshot, VolumeRestore};
use cbsnap::volume::Via;

use super::render::{self, CliObserver};
use super::Ctx;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// NAME@SELECTOR: latest, latest~N, an id prefix, tag:T, or a date YYYY-MM-DD
    /// (the newest snapshot at or before the end of that day)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub snapshot: Option<String>,
    /// Restore into this host directory (must not exist or be empty, unless --force)
    #[arg(long, value_name = "DIR", conflicts_with = "to_volume")]
    pub to: Option<PathBuf>,
    /// Restore a volume snapshot into another Docker volume (created if missing; one
    /// that holds files needs --delete, as it is made equal to the snapshot)
    #[arg(long, value_name = "VOLUME")]
    pub to_volume: Option<String>,
    /// Restore into a non-empty directory, replacing entries of the same name (other
    /// entries are kept, also a non-empty directory where the snapshot has a file;
    /// see --delete)
    #[arg(long)]
    pub force: bool,
    /// Restore into a non-empty directory and remove what the snapshot does not have,
    /// so the directory equals the snapshot (volumes are always made equal; with
    /// --to-volume, allows replacing the contents of a non-empty other volume);
    /// nothing inside a filesystem mounted below it is removed
    #[arg(long)]
    pub delete: bool,
    /// Only this path of the snapshot, e.g. `models/manifests` (repeatable; needs --to)
    #[arg(long, value_name = "PATH", requires = "to")]
    pub include: Vec<String>,
    /// Leave out entries whose path in the snapshot or name matches this glob, e.g.
    /// '*.log' (repeatable; needs --to)
    #[arg(long, value_name = "GLOB", requires = "to")]
    pub exclude: Vec<String>,
    /// Stop the containers that use the volume (running, paused or restarting), restore,
    /// and return each to its state (start them; a paused one is paused again); with
    /// --all, also those that bind-mount the run's host paths. Not for --to DIR
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
    let mut repo = ctx.open(Access::Read)?;
    // A restore of a model library takes an hour: the night's snapshot must not wait
    // for it to let go of the index.
    repo.let_go_of_index()?;
    let via = ctx.settings.via(a.via);
    if a.all {
        return restore_all(ctx, &repo, &a, via);
    }
    let spec = a
        .snapshot
        .as_deref()
        .expect("clap requires a snapshot without --all");
    let set = repo.snapshots()?;
    let (id, snap) = super::resolve_in(ctx, &set, spec)?;
    let progress = render::progress(ctx, "restore");
    let restored = match &a.to {
        Some(to) => {
            let opts = restore::dir::Options {
                force: a.force,
                delete: a.delete,
                filter: restore::dir::Filter::new(&a.include, &a.exclude)?,
                stop: stop_on_signals()?,
            };
            match restore::into_dir(&repo, &snap, to, &opts, &progress) {
                Err(cbsnap::Error::Interrupted) => {
                    progress.finish();
                    drop(repo);
                    interrupted(to, opts.stop.load(Ordering::Relaxed) as i32)
                }
                r => r.map(|r| (to.display().to_string(), r)),
            }
        }
        None => {
            let opts = VolumeRestore {
                target: a.to_volume.clone(),
                stop: a.stop,
                delete: a.delete,
                via,
                again: again(ctx, &format!("{}@{}", snap.name, id.short()), &a),
            };
            restore_snapshot(&repo, &snap, &opts, &progress)
                .map(|(v, r)| (format!("volume {v}"), r))
        }
    };
    progress.finish();
    let (target, report) = restored?;
    render::restored(ctx, &id, &snap, &target, &report);
    Ok(report.outcome(&target)?)
}

/// Stop a restore into a directory on SIGINT, SIGTERM or SIGHUP rather than die in
/// the middle of a file: the first signal sets the returned flag to its number and
/// the restore stops, removing its temporary files; a second ends the process at once
/// (exit 128 + signal), as an operator who presses Ctrl-C twice expects.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicUsize>> {
    use anyhow::Context;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // Registered first, so it sees `seen` as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, seen.clone())
            .and_then(|_| signal_hook::flag::register(sig, seen.clone()))
            .and_then(|_| signal_hook::flag::register_usize(sig, stop.clone(), sig as usize))
            .context("install signal handlers")?;
    }
    Ok(stop)
}

/// Say what an interrupted restore into `to` left, and end with 128 + `signal`.
fn interrupted(to: &std::path::Path, signal: i32) -> ! {
    let name = match signal {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    };
    eprintln!(
        "cbsnap: restore into {} stopped by {name}: the entries restored so far are in place and no partial file is left; run the same restore with --force to finish it",
        to.display()
    );
    std::process::exit(128 + signal)
}

/// The command line that runs the restore `what` (`qdrant-data@1a2b3c4d`, or
/// `--all --run …`) again with `a`'s flags, named when it does not finish and leaves
/// containers stopped. `--stop` is always in it: they are stopped by then.
fn again(ctx: &Ctx, what: &str, a: &Args) -> String {
    // The repository named whatever the environment and config say at 3 a.m.
    let repo = match &ctx.location {
        cbsnap::storage::Location::Local(p) => std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        other => other.to_string(),
    };
    let mut line = format!("cbsnap --repo {} restore {what}", shell_word(&repo));
    if let Some(v) = &a.to_volume {
        line.push_str(&format!(" --to-volume {v}"));
    }
    line.push_str(" --stop");
    if a.force {
        line.push_str(" --force");
    }
    if a.delete {
        line.push_str(" --delete");
    }
    if let Some(via) = a.via {
        let via = clap::ValueEnum::to_possible_value(&via)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        line.push_str(&format!(" --via {via}"));
    }
    line
}

/// `word` as one word of a POSIX shell command line: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `restore --all`: every source of one `snapshot --all` run. Prints the plan, then
/// restores (see `cbsnap::run::restore`).
fn restore_all(ctx: &Ctx, repo: &cbsnap::Repository, a: &Args, via: Via) -> anyhow::Result<()> {
    let project = ctx.settings.project(a.project.as_deref());
    let sel = RunSelect {
        run: a.run.as_deref(),
        project: Some(&project),
        allow_incomplete: a.incomplete,
    };
    let mut opts = RestoreAllOptions {
        stop: a.stop,
        force: a.force,
        delete: a.delete,
        via,
        again: String::new(),
    };
    // A dry run shows the plan also when the restore would be refused, then why.
    let (prepared, refusal) = if a.dry_run {
        run_restore::prepare_and_refusal(repo, &sel, &opts)?
    } else {
        (run_restore::prepare(repo, &sel, &opts)?, None)
    };
    let plan = &prepared.plan;
    let mut what = format!("--all --run {}", plan.run.id);
    if let Some(p) = &a.project {
        what.push_str(&format!(" --project {p}"));
    }
    if a.incomplete {
        what.push_str(" --incomplete");
    }
    opts.again = again(ctx, &what, a);
    let into_dirs = plan
        .items
        .iter()
        .any(|i| matches!(i.target, run_restore::Target::Dir(_)));
    if into_dirs && !a.force && !a.delete {
        // Its host directories are not empty once it has begun: run again, it
        // replaces what it wrote there (and what a dead run left half-written).
        opts.again.push_str(" --force");
    }
    render::restore_plan(ctx, plan, a.dry_run);
    if let Some(refusal) = refusal {
        return Err(refusal.into());
    }
    if a.dry_run {
        return Ok(());
    }
    let observer = CliObserver::new(ctx);
    let report = run_restore::execute(repo, prepared.engine.as_ref(), plan, &opts, &observer)?;
    render::restored_all(ctx, plan, &report);
    Ok(report.outcome()?)
}

pub fn dump(ctx: &Ctx, a: DumpArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        anyhow::bail!("dump writes a tar stream; redirect it to a file or a pipe (`cbsnap dump NAME@latest > out.tar`)");
    }
    let mut repo = ctx.open(Access::Read)?;
    repo.let_go_of_index()?;
    let set = repo.snapshots()?;
    let (_, snap) = super::resolve_in(ctx, &set, &a.snapshot)?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let inexact = match restore::tar::dump(&repo, &snap, a.path.as_deref(), out) {
        Err(cbsnap::Error::Interrupted) => return Ok(()),
        r => r?,
    };
    for what in &inexact {
        render::warn(what);
    }
    if inexact.is_empty() {
        return Ok(());
    }
    Err(cbsnap::Error::RestoreIncomplete {
        target: "the tar stream".into(),
        problems: inexact.len(),
    }
    .into())
}
