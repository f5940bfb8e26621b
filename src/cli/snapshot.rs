//! `cbsnap snapshot`: directories (`--path`), tar streams (`--tar`), Docker volumes
//! (`VOLUME...`) and everything of the stack (`--all`).

use std::path::PathBuf;

use anyhow::Context;
use cbsnap::docker::{Engine, QuiesceMode};
use cbsnap::ingest::{self, SnapshotSpec};
use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::run::backup::{self, AllOptions, RunReport, SourceStatus};
use cbsnap::run::Observer;
use cbsnap::settings::expand_tilde;
use cbsnap::snapshot::{self, Snapshot, SourceKind};
use cbsnap::source::docker::Via;
use cbsnap::{Error, Id, Repository};

use super::{absolute, print_json, Ctx, EXIT_PARTIAL};

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
    /// Source name [default: the directory's base name without a leading dot]
    #[arg(long)]
    pub name: Option<String>,
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
    let repo = ctx.open(Access::Append)?;
    let (id, snap) = if let Some(dir) = &a.path {
        let name = match &a.name {
            Some(n) => n.clone(),
            None => default_name(&absolute(dir))?,
        };
        let parent = latest(&repo, &name)?;
        snapshot_path(ctx, &repo, dir, name, parent, &a.tags, None)?
    } else if let Some(file) = &a.tar {
        let name = a
            .name
            .clone()
            .ok_or_else(|| Error::Usage("--tar needs --name NAME".into()))?;
        let progress = Progress::new(ctx.quiet || ctx.json, "snapshot");
        let origin = if file.as_os_str() == "-" {
            serde_json::json!({ "tar": "-" })
        } else {
            serde_json::json!({ "tar": absolute(file) })
        };
        let spec = SnapshotSpec {
            parent: latest(&repo, &name)?,
            name,
            kind: SourceKind::Tar,
            origin,
            tags: a.tags.clone(),
            run_id: None,
            run: None,
            consistency: None,
        };
        let r = if file.as_os_str() == "-" {
            let stdin = std::io::stdin().lock();
            ingest::snapshot(&repo, spec, &progress, |sink| {
                cbsnap::source::tar::read_tar(stdin, b"", sink)
            })
        } else {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open the tar file {}", file.display()))?;
            ingest::snapshot(&repo, spec, &progress, |sink| {
                cbsnap::source::tar::read_tar(f, b"", sink)
            })
        };
        progress.finish();
        r?
    } else {
        return Err(Error::Usage(
            "say what to snapshot: --all, VOLUME..., --path DIR, or --tar FILE --name NAME".into(),
        )
        .into());
    };
    report(ctx, &id, &snap);
    Ok(if snap.errors.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}

/// A directory's base name without leading dots (`~/.ollama` → `ollama`).
fn default_name(abs: &std::path::Path) -> anyhow::Result<String> {
    Ok(backup::path_source_name(abs)?)
}

fn snapshot_path(
    ctx: &Ctx,
    repo: &Repository,
    dir: &std::path::Path,
    name: String,
    parent: Option<(Id, Snapshot)>,
    tags: &[String],
    run_id: Option<String>,
) -> cbsnap::Result<(Id, Snapshot)> {
    let abs = absolute(dir);
    let spec = SnapshotSpec {
        parent,
        name,
        kind: SourceKind::Path,
        origin: serde_json::json!({ "path": abs }),
        tags: tags.to_vec(),
        run_id,
        run: None,
        consistency: None,
    };
    let progress = Progress::new(ctx.quiet || ctx.json, "snapshot");
    let r = ingest::snapshot(repo, spec, &progress, |sink| {
        cbsnap::source::dir::walk(&abs, sink)
    });
    progress.finish();
    r
}

fn run_docker(ctx: &Ctx, a: Args) -> anyhow::Result<i32> {
    let project = a
        .project
        .clone()
        .or_else(|| ctx.settings.project.clone())
        .unwrap_or_else(|| "code-buddy".into());
    let quiesce = match (a.quiesce, &ctx.settings.quiesce) {
        (Some(q), _) => q,
        (None, Some(s)) => s.parse().map_err(Error::Usage)?,
        (None, None) => QuiesceMode::Pause,
    };
    let paths: Vec<PathBuf> = match &ctx.settings.paths {
        Some(p) => p.iter().map(|s| expand_tilde(s)).collect(),
        None => {
            let o = expand_tilde("~/.ollama");
            if o.is_dir() {
                vec![o]
            } else {
                vec![]
            }
        }
    };
    let opts = AllOptions {
        project,
        volumes: (!a.all).then(|| a.volumes.clone()),
        paths,
        exclude_config: ctx.settings.exclude.clone(),
        exclude_flag: a.exclude.clone(),
        via: a.via.or(ctx.settings.via).unwrap_or(Via::Auto),
        quiesce,
        tags: a.tags.clone(),
        hooks: ctx.settings.hooks.clone(),
    };
    let repo = ctx.open(Access::Append)?;
    if a.all {
        if let Some(e) = cbsnap::run::notify::start(&ctx.settings.notify) {
            eprintln!("cbsnap: warning: {e}");
        }
    }
    let observer = CliObserver::new(ctx);
    let report = match Engine::connect() {
        Ok(engine) => backup::snapshot_all(&repo, Ok(&engine), &opts, &observer)?,
        Err(e) => backup::snapshot_all(&repo, Err(e), &opts, &observer)?,
    };
    render(ctx, &report);
    if a.all {
        after_run(ctx, &repo, &a, &report);
    }
    Ok(match report.status {
        SourceStatus::Ok => 0,
        SourceStatus::Partial | SourceStatus::Skipped => EXIT_PARTIAL,
        SourceStatus::Failed => 1,
    })
}

/// Draws `[i/n] name` progress bars and says what the run waits for, on a terminal.
pub struct CliObserver {
    quiet: bool,
}

impl CliObserver {
    pub fn new(ctx: &Ctx) -> CliObserver {
        use std::io::IsTerminal;
        CliObserver {
            quiet: ctx.quiet || ctx.json || !std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for CliObserver {
    fn progress(&self, index: usize, count: usize, name: &str) -> Progress {
        Progress::new(self.quiet, &format!("[{index}/{count}] {name}"))
    }
    fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("cbsnap: {message}");
        }
    }
}

fn render(ctx: &Ctx, r: &RunReport) {
    for w in &r.warnings {
        eprintln!("cbsnap: warning: {w}");
    }
    for s in &r.skipped {
        ctx.say(&format!("skipped {} ({})", s.name, s.reason));
    }
    for e in &r.errors {
        eprintln!("cbsnap: error: {e}");
    }
    if ctx.json {
        print_json(r);
        return;
    }
    for s in &r.sources {
        if let (Some(id), Some(snap)) = (&s.snapshot_id, &s.snapshot) {
            report(ctx, id, snap);
            // Entry errors were listed by `report`; the rest are hook failures.
            for e in s.errors.iter().skip(snap.errors.len()) {
                eprintln!("cbsnap: error: {}: {e}", s.name);
            }
        } else {
            for e in &s.errors {
                eprintln!("cbsnap: error: {}: {e}", s.name);
            }
        }
    }
    if let Some(id) = &r.run_id {
        let not_ok = r
            .sources
            .iter()
            .filter(|s| s.status != SourceStatus::Ok)
            .count();
        ctx.say(&format!(
            "run {id}: {} sources, {not_ok} not ok, {} added in {:.1}s",
            r.sources.len(),
            indicatif::HumanBytes(r.bytes_added()),
            r.duration_secs
        ));
    }
}

/// The Prometheus textfile and the notifications; their failures are warnings.
fn after_run(ctx: &Ctx, repo: &Repository, a: &Args, r: &RunReport) {
    if let Some(file) = a
        .metrics_file
        .as_ref()
        .or(ctx.settings.metrics_file.as_ref())
    {
        let written = snapshot::load_all(&repo.snapshots_dir()).and_then(|all| {
            cbsnap::run::report::write_textfile(
                file,
                &cbsnap::run::report::prometheus_text(r, &all),
            )
        });
        if let Err(e) = written {
            eprintln!("cbsnap: warning: the metrics file was not written: {e}");
        }
    }
    let mut notify = ctx.settings.notify.clone();
    notify.webhook.extend(a.notify.iter().cloned());
    if !notify.is_empty() {
        for e in cbsnap::run::notify::send(&notify, r) {
            eprintln!("cbsnap: warning: {e}");
        }
    }
}

/// The newest snapshot of `name`, used as the parent.
pub fn latest(repo: &cbsnap::Repository, name: &str) -> cbsnap::Result<Option<(Id, Snapshot)>> {
    Ok(snapshot::latest_of(
        &snapshot::load_all(&repo.snapshots_dir())?,
        name,
    ))
}

pub fn report(ctx: &Ctx, id: &Id, s: &Snapshot) {
    if ctx.json {
        let mut v = serde_json::to_value(s).expect("snapshot serializes");
        v["id"] = serde_json::Value::String(id.to_hex());
        print_json(&v);
        return;
    }
    let st = &s.stats;
    ctx.say(&format!(
        "snapshot {} of {} saved: {} files, {} dirs, {} in {:.1}s; read {}, added {} ({} new before compression){}",
        id.short(),
        s.name,
        st.files,
        st.dirs,
        indicatif::HumanBytes(st.bytes),
        st.duration_secs,
        indicatif::HumanBytes(st.bytes_read),
        indicatif::HumanBytes(st.new_bytes_stored),
        indicatif::HumanBytes(st.new_bytes_raw),
        s.consistency
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default(),
    ));
    if !s.errors.is_empty() {
        eprintln!(
            "cbsnap: {} entries could not be read and are not in snapshot {} (exit code 3):",
            s.errors.len(),
            id.short()
        );
        for e in s.errors.iter().take(20) {
            eprintln!("  {}: {}", e.path, e.error);
        }
    }
}
