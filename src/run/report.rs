//! The Prometheus textfile of a run, for node_exporter's textfile collector
//! (`--collector.textfile.directory`): the exposition text format, rewritten
//! atomically after each run (temp file in the same directory, fsync, rename), so the
//! collector never reads half a file.
//!
//! Metrics (gauges; labels `project`, and `source` for per-source ones):
//!
//! | metric | meaning |
//! |---|---|
//! | `cbsnap_run_success` | 1 if the last run was complete and every source ok, else 0 |
//! | `cbsnap_run_start_timestamp_seconds` | when the last run started (Unix time) |
//! | `cbsnap_run_duration_seconds` | how long it took |
//! | `cbsnap_run_bytes_added` | bytes the repository grew by in it |
//! | `cbsnap_run_last_success_timestamp_seconds` | when the newest complete run of the project was taken |
//! | `cbsnap_source_success` | 1 if the source's snapshot in the last run is complete |
//! | `cbsnap_source_duration_seconds` | seconds the source took in the last run |
//! | `cbsnap_source_bytes` | logical size of the source's files |
//! | `cbsnap_source_bytes_added` | bytes the source added to the repository in the last run |
//! | `cbsnap_source_last_success_timestamp_seconds` | time of the source's newest snapshot without errors |

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::snapshot::Snapshot;
use crate::Id;

use super::backup::{RunReport, SourceStatus};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The textfile for `report`; `all` is the repository's snapshots after the run
/// (for the last-success times).
pub fn prometheus_text(report: &RunReport, all: &[(Id, Snapshot)]) -> String {
    let p = format!("project=\"{}\"", escape(&report.project));
    // The same rule as `RunInfo::is_complete`: a run that could not list a group of
    // sources, or that a command-line `--exclude` cut short, is not a success, so
    // `cbsnap_run_success` and `cbsnap_run_last_success_timestamp_seconds` agree.
    let ok = report.status == SourceStatus::Ok
        && report.plan.unlisted.is_empty()
        && report.plan.excluded.is_empty();
    let mut out = String::new();
    metric(
        &mut out,
        "cbsnap_run_success",
        "1 if the last run was complete and every source ok",
        &[(p.clone(), if ok { 1.0 } else { 0.0 })],
    );
    metric(
        &mut out,
        "cbsnap_run_start_timestamp_seconds",
        "Unix time the last run started",
        &[(p.clone(), report.started.timestamp() as f64)],
    );
    metric(
        &mut out,
        "cbsnap_run_duration_seconds",
        "Seconds the last run took",
        &[(p.clone(), report.duration_secs)],
    );
    metric(
        &mut out,
        "cbsnap_run_bytes_added",
        "Bytes the repository grew by in the last run",
        &[(p.clone(), report.bytes_added() as f64)],
    );
    let last_ok = super::list_runs(all)
        .into_iter()
        .rev()
        .find(|r| r.is_complete() && r.project() == Some(report.project.as_str()))
        .map(|r| r.time.timestamp() as f64);
    if let Some(t) = last_ok {
        metric(
            &mut out,
            "cbsnap_run_last_success_timestamp_seconds",
            "Unix time of the newest complete run",
            &[(p.clone(), t)],
        );
    }
    let label = |name: &str| format!("{p},source=\"{}\"", escape(name));
    let rows = |f: &dyn Fn(&super::backup::SourceResult) -> f64| -> Vec<(String, f64)> {
        report
            .sources
            .iter()
            .map(|s| (label(&s.name), f(s)))
            .collect()
    };
    metric(
        &mut out,
        "cbsnap_source_success",
        "1 if the source was snapshotted completely in the last run",
        &rows(&|s| {
            if s.status == SourceStatus::Ok {
                1.0
            } else {
                0.0
            }
        }),
    );
    metric(
        &mut out,
        "cbsnap_source_duration_seconds",
        "Seconds the source took in the last run",
        &rows(&|s| s.duration_secs),
    );
    metric(
        &mut out,
        "cbsnap_source_bytes",
        "Logical size of the source's files",
        &rows(&|s| s.bytes as f64),
    );
    metric(
        &mut out,
        "cbsnap_source_bytes_added",
        "Bytes the source added to the repository in the last run",
        &rows(&|s| s.bytes_added as f64),
    );
    let last: Vec<(String, f64)> = report
        .sources
        .iter()
        .filter_map(|s| {
            all.iter()
                .rev()
                .find(|(_, x)| x.name == s.name && x.errors.is_empty())
                .map(|(_, x)| (label(&s.name), x.time.timestamp() as f64))
        })
        .collect();
    metric(
        &mut out,
        "cbsnap_source_last_success_timestamp_seconds",
        "Unix time of the source's newest snapshot without errors",
        &last,
    );
    out
}

/// Where a run's summary goes once it ended: the Prometheus textfile and the
/// notification targets.
#[derive(Clone, Debug, Default)]
pub struct RunOutputs {
    /// Rewritten with [`prometheus_text`] after the run.
    pub metrics_file: Option<std::path::PathBuf>,
    /// Webhooks, pings and ntfy topics told about the run.
    pub notify: crate::run::notify::NotifySettings,
}

/// Write the metrics file and send the notifications of a finished run. Their
/// failures do not fail the run: they are returned as warnings to show.
pub fn publish(repo: &crate::repo::Repository, report: &RunReport, to: &RunOutputs) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(file) = &to.metrics_file {
        let written = crate::snapshot::load_all(repo.storage(), repo.crypt())
            .and_then(|all| write_textfile(file, &prometheus_text(report, &all)));
        if let Err(e) = written {
            warnings.push(format!("the metrics file was not written: {e}"));
        }
    }
    if !to.notify.is_empty() {
        warnings.extend(
            crate::run::notify::send(&to.notify, report)
                .iter()
                .map(ToString::to_string),
        );
    }
    warnings
}

/// Replace `path` with `text` atomically. The file is made readable by all
/// (0644): node_exporter usually runs as its own user, and it holds only names and
/// numbers.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cbsnap-metrics-")
        .tempfile_in(dir)
        .ctx(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .ctx(|| format!("write {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| Error::io_path("replace", path, e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::backup::SourceResult;
    use crate::run::RunPlan;
    use crate::snapshot::SourceKind;

    #[test]
    fn labels_are_escaped_and_every_sample_has_a_type() {
        let report = RunReport {
            run_id: Some("r".into()),
            project: "p\"x".into(),
            started: chrono::Utc::now(),
            duration_secs: 1.5,
            status: SourceStatus::Partial,
            plan: RunPlan::default(),
            sources: vec![SourceResult {
                name: "we\\ird\nname".into(),
                kind: SourceKind::Path,
                status: SourceStatus::Partial,
                snapshot_id: None,
                bytes: 10,
                bytes_read: 10,
                bytes_added: 4,
                duration_secs: 0.5,
                consistency: None,
                errors: vec!["x".into()],
                snapshot: None,
            }],
            skipped: vec![],
            warnings: vec![],
            errors: vec![],
        };
        let text = prometheus_text(&report, &[]);
        assert!(
            text.contains(
                "cbsnap_source_bytes_added{project=\"p\\\"x\",source=\"we\\\\ird\\nname\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("cbsnap_run_success{project=\"p\\\"x\"} 0\n"));
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split('{').next().unwrap();
            assert!(typed.contains(&name), "{name} has no TYPE line");
        }
    }
}
