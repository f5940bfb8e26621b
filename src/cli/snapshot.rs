//! `cbsnap snapshot`: directories (`--path`), tar streams (`--tar`), Docker volumes
//! (`VOLUME...`) and everything of the stack (`--all`).

use std::path::PathBuf;

use anyhow::Context;
use cbsnap::docker::{Engine, QuiesceMode};
use cbsnap::ingest::{self, SnapshotSpec, SnapshotTime};
use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::run::backup::{self, AllOptions, RunReport, SourceStatus};
use cbsnap::run::Observer;
use cbsnap::settings::expand_tilde;
use cbsnap::snapshot::{self, Snapshot, SourceKind};
use cbsnap::source::NewestMtime;
use cbsnap::volume::snapshot::Via;
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
    /// Source name [default: the directory's base name without a leading dot; for --tar
    /// the file name without `.tar.gz` and the compose project prefix]
    #[arg(long)]
    pub name: Option<String>,
    /// With --tar: the date the snapshot records, e.g. 2026-11-01, "2026-11-01 03:15"
    /// (local time), an RFC 3339 time, or `tar` for the newest file in the tar
    /// [default: now]
    #[arg(long, value_name = "TIME", requires = "tar")]
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
    let repo = ctx.open(Access::Append)?;
    let (id, snap) = if let Some(dir) = &a.path {
        let name = match &a.name {
            Some(n) => n.clone(),
            None => default_name(&absolute(dir))?,
        };
        let parent = latest(&repo, &name)?;
        snapshot_path(ctx, &repo, dir, name, parent, &a.tags, None)?
    } else if let Some(file) = &a.tar {
        let name = match &a.name {
            Some(n) => n.clone(),
            None => tar_name(file, ctx.project())?,
        };
        let time = match a.time.as_deref() {
            None => SnapshotTime::Now,
            Some("tar") => SnapshotTime::NewestEntry,
            Some(t) => SnapshotTime::At(parse_time(t)?),
        };
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
            time,
        };
        let mut newest = None;
        let mut read = |r: &mut dyn std::io::Read, sink: &mut dyn cbsnap::source::Sink| {
            let mut sink = NewestMtime::new(sink);
            let res = cbsnap::source::tar::read_tar(r, b"", &mut sink);
            newest = sink.newest;
            res
        };
        let r = if file.as_os_str() == "-" {
            let mut stdin = std::io::stdin().lock();
            ingest::snapshot(&repo, spec, &progress, |sink| read(&mut stdin, sink))
        } else {
            let mut f = std::fs::File::open(file)
                .with_context(|| format!("cannot open the tar file {}", file.display()))?;
            ingest::snapshot(&repo, spec, &progress, |sink| read(&mut f, sink))
        };
        progress.finish();
        let (id, snap) = r?;
        if a.time.is_none() {
            if let Some(note) = newest.and_then(|n| old_content_note(&snap, n)) {
                if !ctx.quiet {
                    cbsnap::warn_stderr!("cbsnap: {note}");
                }
            }
        }
        (id, snap)
    } else {
        return Err(Error::Usage(
            "say what to snapshot: --all, VOLUME..., --path DIR, or --tar FILE".into(),
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

/// The source name of a tar file: its file name without the tar and compression
/// extensions and without the compose project prefix
/// (`code-buddy_qdrant-data.tar.gz` → `qdrant-data`).
fn tar_name(file: &std::path::Path, project: Option<&str>) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        return Err(Error::Usage("--tar - (stdin) needs --name NAME".into()).into());
    }
    let base = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stem = base.as_str();
    for ext in [".gz", ".zst", ".zstd", ".tgz", ".tzst", ".tar"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    let name = project
        .and_then(|p| stem.strip_prefix(&format!("{p}_")))
        .unwrap_or(stem);
    if name.is_empty() {
        return Err(Error::Usage(format!(
            "cannot derive a name from {}; pass --name",
            file.display()
        ))
        .into());
    }
    Ok(name.to_string())
}

/// `--time`: `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM[:SS]` in local time, or RFC 3339.
fn parse_time(t: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&chrono::Utc));
    }
    let naive = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| {
            [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        });
    naive
        .and_then(|n| Local.from_local_datetime(&n).earliest())
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--time {t:?}: give a date (2026-11-01), a local time (\"2026-11-01 03:15\"), an RFC 3339 time, or `tar` for the newest file in the tar"
            ))
            .into()
        })
}

/// When an import dated now holds nothing newer than a day before: say that it became
/// `@latest` and how to give it its own date.
fn old_content_note(snap: &Snapshot, newest: i64) -> Option<String> {
    let newest = chrono::DateTime::from_timestamp(newest, 0)?;
    (snap.time - newest > chrono::Duration::days(1)).then(|| {
        format!(
            "note: the newest file in this tar is from {}, but the snapshot is dated now and is {}@latest. For an old backup, import it with --time tar (or --time DATE) so it sorts by its real date.",
            newest.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
            snap.name
        )
    })
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
        time: SnapshotTime::Now,
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
            cbsnap::warn_stderr!("cbsnap: warning: {e}");
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
            cbsnap::warn_stderr!("cbsnap: {message}");
        }
    }
}

fn render(ctx: &Ctx, r: &RunReport) {
    for w in &r.warnings {
        cbsnap::warn_stderr!("cbsnap: warning: {w}");
    }
    for s in &r.skipped {
        ctx.say(&format!("skipped {} ({})", s.name, s.reason));
    }
    for e in &r.errors {
        cbsnap::warn_stderr!("cbsnap: error: {e}");
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
                cbsnap::warn_stderr!("cbsnap: error: {}: {e}", s.name);
            }
        } else {
            for e in &s.errors {
                cbsnap::warn_stderr!("cbsnap: error: {}: {e}", s.name);
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
        let written = snapshot::load_all(repo.storage()).and_then(|all| {
            cbsnap::run::report::write_textfile(
                file,
                &cbsnap::run::report::prometheus_text(r, &all),
            )
        });
        if let Err(e) = written {
            cbsnap::warn_stderr!("cbsnap: warning: the metrics file was not written: {e}");
        }
    }
    let mut notify = ctx.settings.notify.clone();
    notify.webhook.extend(a.notify.iter().cloned());
    if !notify.is_empty() {
        for e in cbsnap::run::notify::send(&notify, r) {
            cbsnap::warn_stderr!("cbsnap: warning: {e}");
        }
    }
}

/// The newest snapshot of `name`, used as the parent.
pub fn latest(repo: &cbsnap::Repository, name: &str) -> cbsnap::Result<Option<(Id, Snapshot)>> {
    Ok(snapshot::latest_of(
        &snapshot::load_all(repo.storage())?,
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
        cbsnap::warn_stderr!(
            "cbsnap: {} entries could not be read and are not in snapshot {} (exit code 3):",
            s.errors.len(),
            id.short()
        );
        for e in s.errors.iter().take(20) {
            cbsnap::warn_stderr!("  {}: {}", e.path, e.error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn tar_names_drop_extensions_and_the_project_prefix() {
        let n = |f: &str| tar_name(Path::new(f), Some("code-buddy")).unwrap();
        assert_eq!(n("backups/code-buddy_qdrant-data.tar.gz"), "qdrant-data");
        assert_eq!(n("agent-state.tar.zst"), "agent-state");
        assert_eq!(n("x.tgz"), "x");
        assert_eq!(n("other_vol.tar"), "other_vol");
        assert!(tar_name(Path::new("-"), None).is_err());
        assert!(tar_name(Path::new(".tar.gz"), None).is_err());
    }

    #[test]
    fn times_parse_as_dates_local_times_and_rfc3339() {
        assert_eq!(
            parse_time("2026-11-01T03:15:00Z").unwrap().to_rfc3339(),
            "2026-11-01T03:15:00+00:00"
        );
        let local = parse_time("2026-11-01 03:15").unwrap();
        assert_eq!(
            local
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            "2026-11-01 03:15"
        );
        assert!(parse_time("2026-11-01").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}
