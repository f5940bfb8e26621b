//! One source outside a run: `snapshot --path DIR` and `snapshot --tar FILE`, as
//! library calls. Each names the source (from the directory or the tar file when no
//! name is given), takes the source's newest snapshot as the parent, and commits
//! through [`crate::ingest::snapshot`]. A tar import can carry its own date
//! ([`parse_time`], or the newest entry's), so an old backup sorts among the older
//! snapshots instead of becoming `@latest`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ingest::{self, SnapshotSpec, SnapshotTime};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{self, Snapshot, SourceKind};
use crate::source::Tap;
use crate::Id;

use super::backup::path_source_name;

/// How [`snapshot_dir`] and [`snapshot_tar`] name and tag the snapshot.
#[derive(Clone, Debug, Default)]
pub struct SingleOptions {
    /// The source name; derived from the directory or the tar file when `None`.
    pub name: Option<String>,
    /// Tags of the snapshot.
    pub tags: Vec<String>,
    /// The compose project, whose `<project>_` prefix a tar file's derived name
    /// loses (`code-buddy_qdrant-data.tar.gz` → `qdrant-data`).
    pub project: Option<String>,
    /// With a tar: the date the snapshot records, as [`parse_time`] reads it, or
    /// `tar` for the newest entry's; `None`: now.
    pub time: Option<String>,
}

/// A committed snapshot of one source, and a note for the operator, if any.
#[derive(Debug)]
pub struct SingleSnapshot {
    /// The new snapshot's id.
    pub id: Id,
    /// The new snapshot.
    pub snapshot: Snapshot,
    /// Said once the snapshot is committed: an import dated now whose content is
    /// more than a day old ([`old_content_note`]).
    pub note: Option<String>,
}

/// The newest snapshot of `name`, the parent of its next snapshot.
pub fn latest(repo: &Repository, name: &str) -> Result<Option<(Id, Snapshot)>> {
    Ok(snapshot::latest_of(
        &snapshot::load_all(repo.storage(), repo.crypt())?,
        name,
    ))
}

/// Snapshot the directory `dir` (recorded by its absolute path).
/// [`Error::Usage`] when no name is given and none can be derived (`/`).
pub fn snapshot_dir(
    repo: &Repository,
    dir: &Path,
    opts: &SingleOptions,
    progress: &Progress,
) -> Result<SingleSnapshot> {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => path_source_name(&abs)?,
    };
    let spec = SnapshotSpec {
        parent: latest(repo, &name)?,
        origin: serde_json::json!({ "path": abs, "uid": crate::host::reader_uid() }),
        tags: opts.tags.clone(),
        ..SnapshotSpec::new(name, SourceKind::Path)
    };
    let leave_out = ingest::own_dirs(repo);
    let (id, snapshot) = ingest::snapshot(repo, spec, progress, |sink| {
        crate::source::dir::walk(&abs, &leave_out, sink)
    })?;
    Ok(SingleSnapshot {
        id,
        snapshot,
        note: None,
    })
}

/// Take one snapshot with `take` into `repo`, mending the index when it is found
/// damaged (README: "a damaged index is rebuilt the same way"). A snapshot that met a
/// damaged index ([`crate::index::Index::damage`]) committed nothing on its word if it
/// failed, and a lookup never answers wrongly (RocksDB checks every block), so a
/// snapshot that succeeded stands. Either way the index is then rebuilt from the pack
/// trailers, and a failed snapshot is taken once more on the rebuilt index when
/// `again` (its source can be read twice: a directory, a tar file, not stdin).
///
/// Errors: those of `take`; [`Error::IndexRebuilt`] when the snapshot failed on the
/// damage and was not taken again; those of the rebuild.
pub fn repairing_index<T>(
    repo: Repository,
    again: bool,
    take: impl Fn(&Repository) -> Result<T>,
) -> Result<T> {
    let first = take(&repo);
    let Some(cause) = repo.index().damage() else {
        return first;
    };
    let repo = repo.rebuild_damaged_index(cause.clone())?;
    match first {
        Ok(done) => Ok(done),
        Err(_) if again => take(&repo),
        Err(_) => Err(Error::IndexRebuilt { cause }),
    }
}

/// Snapshot the tar stream in `file` (plain, gzip or zstd; `-` is stdin).
/// [`Error::Usage`] for a bad `time` or a name that cannot be derived; an
/// [`Error::Io`] when the file cannot be opened.
pub fn snapshot_tar(
    repo: &Repository,
    file: &Path,
    opts: &SingleOptions,
    progress: &Progress,
) -> Result<SingleSnapshot> {
    let stdin = file.as_os_str() == "-";
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => tar_name(file, opts.project.as_deref())?,
    };
    let time = match opts.time.as_deref() {
        None => SnapshotTime::Now,
        Some("tar") => SnapshotTime::NewestEntry,
        Some(t) => SnapshotTime::At(parse_time(t)?),
    };
    let origin = if stdin {
        serde_json::json!({ "tar": "-" })
    } else {
        let abs: PathBuf = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        serde_json::json!({ "tar": abs })
    };
    let spec = SnapshotSpec {
        parent: latest(repo, &name)?,
        origin,
        tags: opts.tags.clone(),
        time,
        ..SnapshotSpec::new(name, SourceKind::Tar)
    };
    // The newest mtime of any entry: the date of the imported backup's content.
    let mut newest: Option<i64> = None;
    let mut read = |r: &mut dyn std::io::Read, sink: &mut dyn crate::source::Sink| {
        let mut sink = Tap::new(sink, |e| {
            newest = Some(newest.map_or(e.node.mtime, |n| n.max(e.node.mtime)));
        });
        crate::source::tar::read_tar(r, b"", &mut sink)
    };
    let (id, snapshot) = if stdin {
        let mut input = std::io::stdin().lock();
        ingest::snapshot(repo, spec, progress, |sink| read(&mut input, sink))?
    } else {
        let mut f = std::fs::File::open(file)
            .map_err(|e| Error::io_path("cannot open the tar file", file, e))?;
        ingest::snapshot(repo, spec, progress, |sink| read(&mut f, sink))?
    };
    let note = match opts.time {
        None => newest.and_then(|n| old_content_note(&snapshot, n)),
        Some(_) => None,
    };
    Ok(SingleSnapshot { id, snapshot, note })
}

/// The source name of a tar file: its file name without the tar and compression
/// extensions and without the compose project prefix
/// (`code-buddy_qdrant-data.tar.gz` → `qdrant-data`). [`Error::Usage`] for stdin
/// (`-`) or a name that is all extension.
pub fn tar_name(file: &Path, project: Option<&str>) -> Result<String> {
    if file.as_os_str() == "-" {
        return Err(Error::Usage("--tar - (stdin) needs --name NAME".into()));
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
        )));
    }
    Ok(name.to_string())
}

/// `--time`: `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM[:SS]` in local time, or
/// RFC 3339. [`Error::Usage`] for anything else.
pub fn parse_time(t: &str) -> Result<DateTime<Utc>> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
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
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--time {t:?}: give a date (2026-11-01), a local time (\"2026-11-01 03:15\"), an RFC 3339 time, or `tar` for the newest file in the tar"
            ))
        })
}

/// When an import dated now holds nothing newer than a day before (`newest`, Unix
/// seconds): say that it became `@latest` and how to give it its own date.
pub fn old_content_note(snap: &Snapshot, newest: i64) -> Option<String> {
    let newest = DateTime::from_timestamp(newest, 0)?;
    (snap.time - newest > chrono::Duration::days(1)).then(|| {
        format!(
            "note: the newest file in this tar is from {}, but the snapshot is dated now and is {}@latest. For an old backup, import it with --time tar (or --time DATE) so it sorts by its real date.",
            newest.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
            snap.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_names_drop_extensions_and_the_project_prefix() {
        let n = |f: &str| tar_name(Path::new(f), Some("code-buddy")).unwrap();
        assert_eq!(n("backups/code-buddy_qdrant-data.tar.gz"), "qdrant-data");
        assert_eq!(n("agent-state.tar.zst"), "agent-state");
        assert_eq!(n("x.tgz"), "x");
        assert_eq!(n("other_vol.tar"), "other_vol");
        assert!(matches!(
            tar_name(Path::new("-"), None),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            tar_name(Path::new(".tar.gz"), None),
            Err(Error::Usage(_))
        ));
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
        assert!(matches!(parse_time("yesterday"), Err(Error::Usage(_))));
    }

    #[test]
    fn a_directory_snapshot_is_named_after_it_and_takes_its_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let repo_dir = tmp.path().join("repo");
        Repository::init(&repo_dir).unwrap();
        let repo = Repository::open(&repo_dir, crate::repo::Access::Append).unwrap();
        let src = tmp.path().join(".ollama");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"hello").unwrap();
        let opts = SingleOptions::default();
        let first = snapshot_dir(&repo, &src, &opts, &Progress::hidden()).unwrap();
        assert_eq!(first.snapshot.name, "ollama");
        assert_eq!(first.snapshot.stats.files, 1);
        let second = snapshot_dir(&repo, &src, &opts, &Progress::hidden()).unwrap();
        assert_eq!(second.snapshot.parent, Some(first.id));
    }
}
