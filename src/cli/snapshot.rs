//! `cbsnap snapshot`: directories (`--path`), tar streams (`--tar`), Docker volumes
//! (`VOLUME...`) and everything of the stack (`--all`).

use std::path::PathBuf;

use anyhow::Context;
use cbsnap::docker::{Engine, QuiesceMode};
use cbsnap::ingest::{self, SnapshotSpec, SnapshotTime};
use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::settings::expand_tilde;
use cbsnap::snapshot::{self, Snapshot, SourceKind};
use cbsnap::source::docker::{
    find_volume, quiesce_state_file, snapshot_volume, source_name, Via, VolumeSnapshot,
};
use cbsnap::source::NewestMtime;
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
}

/// One line of the `--all` summary.
#[derive(serde::Serialize)]
struct Outcome {
    source: String,
    id: Option<Id>,
    error: Option<String>,
    #[serde(skip)]
    snapshot: Option<Snapshot>,
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
                    eprintln!("cbsnap: {note}");
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
    abs.file_name()
        .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "cannot derive a name from {}; pass --name",
                abs.display()
            ))
            .into()
        })
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
    let mut patterns = ctx.settings.exclude.clone();
    patterns.extend(a.exclude.iter().cloned());
    let mut excludes = globset::GlobSetBuilder::new();
    for p in &patterns {
        excludes.add(
            globset::Glob::new(p)
                .map_err(|e| Error::Usage(format!("bad --exclude pattern {p:?}: {e}")))?,
        );
    }
    let excludes = excludes.build()?;
    let via = a.via.or(ctx.settings.via).unwrap_or(Via::Auto);
    let quiesce = match (a.quiesce, &ctx.settings.quiesce) {
        (Some(q), _) => q,
        (None, Some(s)) => s.parse().map_err(Error::Usage)?,
        (None, None) => QuiesceMode::Pause,
    };
    let repo = ctx.open(Access::Append)?;
    let run_id = a.all.then(new_run_id);
    // Read once: each source's parent comes from this list.
    let existing = snapshot::load_all(&repo.snapshots_dir())?;
    let mut outcomes: Vec<Outcome> = Vec::new();

    // Volumes. An unreachable engine does not stop the host paths from being saved.
    match Engine::connect() {
        Ok(engine) => {
            let engine = &engine;
            let rec = engine.recover_quiesced(&quiesce_state_file(&repo.root))?;
            for r in &rec.resumed {
                eprintln!(
                    "cbsnap: resumed container {} left quiesced by an interrupted run",
                    r.name
                );
            }
            let volumes = if a.all {
                let v = engine.list_project_volumes(&project)?;
                if v.is_empty() {
                    eprintln!(
                        "cbsnap: warning: no Docker volume carries the label com.docker.compose.project={project}; is the stack's compose project named differently? (--project NAME, or `project` in the config)"
                    );
                }
                v
            } else {
                a.volumes
                    .iter()
                    .map(|v| find_volume(engine, v, Some(&project)))
                    .collect::<cbsnap::Result<Vec<_>>>()?
            };
            let opts = VolumeSnapshot {
                project: Some(&project),
                via,
                quiesce,
                run_id: run_id.clone(),
                tags: a.tags.clone(),
            };
            for v in volumes {
                let name = source_name(&v.name, Some(&project));
                if a.all && (excludes.is_match(&name) || excludes.is_match(&v.name)) {
                    ctx.say(&format!("skipped {name} (excluded)"));
                    continue;
                }
                let progress = Progress::new(ctx.quiet || ctx.json, &name);
                let parent = snapshot::latest_of(&existing, &name);
                let r = snapshot_volume(&repo, engine, &v, &opts, parent, &progress);
                progress.finish();
                outcomes.push(outcome(name, r));
            }
        }
        Err(e) => {
            if !a.all {
                return Err(Error::Docker(e).into());
            }
            outcomes.push(Outcome {
                source: format!("volumes of {project}"),
                id: None,
                error: Some(e.to_string()),
                snapshot: None,
            });
        }
    }

    // Host paths.
    if a.all {
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
        for p in paths {
            let name = default_name(&absolute(&p))?;
            if excludes.is_match(&name) {
                ctx.say(&format!("skipped {name} (excluded)"));
                continue;
            }
            let parent = snapshot::latest_of(&existing, &name);
            let r = snapshot_path(
                ctx,
                &repo,
                &p,
                name.clone(),
                parent,
                &a.tags,
                run_id.clone(),
            );
            outcomes.push(outcome(name, r));
        }
    }

    let mut code = 0;
    for o in &outcomes {
        match (&o.snapshot, &o.error) {
            (Some(s), _) => {
                if !ctx.json {
                    report(ctx, o.id.as_ref().expect("id with snapshot"), s);
                }
                if !s.errors.is_empty() && code == 0 {
                    code = EXIT_PARTIAL;
                }
            }
            (None, Some(e)) => {
                eprintln!("cbsnap: error: {}: {e}", o.source);
                code = 1;
            }
            _ => {}
        }
    }
    if ctx.json {
        print_json(&serde_json::json!({ "run_id": run_id, "results": outcomes }));
    } else if let Some(r) = &run_id {
        ctx.say(&format!(
            "run {r}: {} sources, {} failed",
            outcomes.len(),
            outcomes.iter().filter(|o| o.error.is_some()).count()
        ));
    }
    Ok(code)
}

fn outcome(source: String, r: cbsnap::Result<(Id, Snapshot)>) -> Outcome {
    match r {
        Ok((id, s)) => Outcome {
            source,
            id: Some(id),
            error: None,
            snapshot: Some(s),
        },
        Err(e) => Outcome {
            source,
            id: None,
            error: Some(e.to_string()),
            snapshot: None,
        },
    }
}

fn new_run_id() -> String {
    let t = chrono::Utc::now();
    let nonce = Id::hash(format!("{:?}{}", t, std::process::id()).as_bytes());
    format!("{}-{}", t.format("%Y%m%dT%H%M%SZ"), &nonce.to_hex()[..6])
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
        "snapshot {} of {} saved: {} files, {} dirs, {} in {:.1}s; added {} ({} stored){}",
        id.short(),
        s.name,
        st.files,
        st.dirs,
        indicatif::HumanBytes(st.bytes),
        st.duration_secs,
        indicatif::HumanBytes(st.new_bytes_raw),
        indicatif::HumanBytes(st.new_bytes_stored),
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
