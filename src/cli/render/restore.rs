//! What `restore` shows: the plan and the result of `restore --all`, and one
//! restored snapshot.

use cbsnap::restore;
use cbsnap::run::restore::{RestoreAllReport, RestorePlan};
use cbsnap::snapshot::Snapshot;
use cbsnap::Id;

use super::print_json;
use crate::cli::Ctx;

/// The plan of `restore --all`, on stdout; under `-q` only for a dry run (which
/// shows nothing else); with `--json` only for a dry run, as one document.
pub fn restore_plan(ctx: &Ctx, plan: &RestorePlan, dry_run: bool) {
    if ctx.json {
        if dry_run {
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
        return;
    }
    if ctx.quiet && !dry_run {
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

/// What `restore --all` did, source by source (one JSON document with `--json`).
pub fn restored_all(ctx: &Ctx, plan: &RestorePlan, report: &RestoreAllReport) {
    if !ctx.json {
        // Each source was said as it ended ([`super::CliObserver`]).
        return;
    }
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
            Ok(r) => restored(ctx, &s.id, &item.snapshot, &s.target.to_string(), r),
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
}

/// One restored snapshot: its problems on stderr, then a line (or its JSON).
pub fn restored(ctx: &Ctx, id: &Id, snap: &Snapshot, to: &str, report: &restore::dir::Report) {
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
