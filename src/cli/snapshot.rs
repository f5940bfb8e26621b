//! `cbsnap snapshot`: directories (`--path`), tar streams (`--tar`), Docker volumes
//! (`VOLUME...`) and everything of the stack (`--all`).

use std::path::PathBuf;

use cbsnap::docker::{Engine, QuiesceMode};
use cbsnap::repo::Access;
use cbsnap::run::backup::{self, SourceStatus};
use cbsnap::run::single::{self, SingleOptions};
use cbsnap::settings::AllFlags;
use cbsnap::volume::Via;
use cbsnap::Error;

use super::render::{self, CliObserver};
use super::{Ctx, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Docker volumes to snapshot, with or without the compose project prefix
    #[arg(value_name = "VOLUME", conflicts_with_all = ["path", "tar"])]
    pub volumes: Vec<String>,
    /// Every volume of the compose project and every host path of the config
    #[arg(long, conflicts_with_all = ["path", "tar", "volumes"])]
    pub all: bool,
    /// Directory to snapshot
    #[arg(long, value_name = "DIR", conflicts_with = "tar")]
    pub path: Option<PathBuf>,
    /// Tar stream to snapshot (plain, gzip or zstd; `-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Source name [default: the directory's base name without a leading dot; for --tar
    /// the file name without `.tar.gz` and the compose project prefix]
    #[arg(long)]
    pub name: Option<String>,
    /// With --tar: the date the snapshot records, e.g. 2026-11-01, "2026-11-01 03:15"
    /// (local time), an RFC 3339 time, or `tar` for the newest file in the tar
    /// [default: now]
    // `requires` alone let `--path DIR --time T` through (clap does not enforce it
    // when the required argument conflicts with a present one): the conflicts say it.
    #[arg(long, value_name = "TIME", requires = "tar", conflicts_with_all = ["path", "volumes", "all"])]
    pub time: Option<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Compose project whose volumes --all takes [default: config `project`, else code-buddy]
    #[arg(long)]
    pub project: Option<String>,
    /// Skip sources whose name matches this glob, e.g. '*-cache' (repeatable; adds to the config's)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// How to read volumes
    #[arg(long, value_enum)]
    pub via: Option<Via>,
    /// How to keep containers from writing while their volume is read (the container
    /// label cbsnap.quiesce overrides it)
    #[arg(long, value_name = "pause|stop|none")]
    pub quiesce: Option<QuiesceMode>,
    /// With --all: POST the run's JSON summary to this URL afterwards (repeatable;
    /// adds to the config's [notify] webhook)
    #[arg(long, value_name = "URL", requires = "all")]
    pub notify: Vec<String>,
    /// With --all: write a Prometheus textfile here after the run [default: config
    /// `metrics_file`]
    #[arg(long, value_name = "FILE", requires = "all")]
    pub metrics_file: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<i32> {
    if a.all || !a.volumes.is_empty() {
        return run_docker(ctx, a);
    }
    let opts = SingleOptions {
        name: a.name,
        tags: a.tags,
        project: Some(ctx.settings.project(None)),
        time: a.time,
    };
    let repo = ctx.open(Access::Append)?;
    let progress = render::progress(ctx, "snapshot");
    // A tar on stdin cannot be read a second time, should the index be found damaged.
    let again = a.tar.as_ref().is_none_or(|f| f.as_os_str() != "-");
    let r = single::repairing_index(repo, again, |repo| match (&a.path, &a.tar) {
        (Some(dir), _) => single::snapshot_dir(repo, dir, &opts, &progress),
        (None, Some(file)) => single::snapshot_tar(repo, file, &opts, &progress),
        (None, None) => Err(Error::Usage(
            "say what to snapshot: --all, VOLUME..., --path DIR, or --tar FILE".into(),
        )),
    });
    progress.finish();
    let done = r?;
    if let Some(note) = &done.note {
        ctx.note(note);
    }
    render::snapshot(ctx, &done.id, &done.snapshot);
    Ok(if done.snapshot.errors.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}

fn run_docker(ctx: &Ctx, a: Args) -> anyhow::Result<i32> {
    let flags = AllFlags {
        volumes: (!a.all).then_some(a.volumes),
        project: a.project,
        exclude: a.exclude,
        via: a.via,
        quiesce: a.quiesce,
        tags: a.tags,
    };
    let opts = ctx.settings.all_options(&flags)?;
    let outputs = ctx
        .settings
        .run_outputs(a.metrics_file.as_deref(), &a.notify);
    // The engine is reached while the repository opens: both wait on disks and
    // daemons (a cold start spends ~0.07 s on each; docs/BENCHMARKS.md, sixth pass),
    // neither needs the other, and connecting only pings and asks `/info`. The
    // repository's error comes first and does not wait for a slow engine.
    let connecting = std::thread::Builder::new()
        .name("docker-connect".into())
        .spawn(Engine::connect);
    let repo = ctx.open(Access::Append)?;
    let engine = match connecting {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        Err(_) => Engine::connect(),
    };
    if a.all {
        if let Some(e) = cbsnap::run::notify::start(&outputs.notify) {
            render::warn(&e.to_string());
        }
    }
    let observer = CliObserver::new(ctx);
    let report = match engine {
        Ok(engine) => backup::snapshot_all(&repo, Ok(&engine), &opts, &observer)?,
        Err(e) => backup::snapshot_all(&repo, Err(e), &opts, &observer)?,
    };
    render::run_report(ctx, &report);
    if a.all {
        for w in cbsnap::run::report::publish(&repo, &report, &outputs) {
            render::warn(&w);
        }
    }
    // Sources that failed on a damaged index committed nothing: the index is rebuilt
    // from the packs now, so that the next run stores them.
    if let Some(cause) = repo.index().damage() {
        if let Err(e) = repo.rebuild_damaged_index(cause) {
            render::warn(&format!("the index could not be rebuilt: {e}"));
        }
    }
    Ok(match report.status {
        SourceStatus::Ok => 0,
        SourceStatus::Partial | SourceStatus::Skipped => EXIT_PARTIAL,
        SourceStatus::Failed => 1,
    })
}
