//! How the commands show their results: tables and lines on stdout, `--json`
//! documents, warnings and notes on stderr, progress bars. Every message goes
//! through here without panicking on a closed pipe (`outln!`, `warn_stderr!`).

use chrono::{Local, TimeZone};
use indicatif::HumanBytes;

use cbsnap::forget::{self, Policy};
use cbsnap::progress::Progress;
use cbsnap::prune::{self, Plan, PruneReport};
use cbsnap::restore::dir::Report;
use cbsnap::run::backup::{RunReport, SourceStatus};
use cbsnap::run::restore::{RestoreAllReport, RestorePlan};
use cbsnap::run::Observer;
use cbsnap::snapshot::Snapshot;
use cbsnap::tree::{Node, NodeKind};
use cbsnap::Id;

use super::Ctx;

/// One value as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) {
    out(&serde_json::to_string_pretty(v).expect("value serializes"));
}

/// One line on stdout. A closed stdout (`cbsnap snapshot --all --json | head -1`)
/// is ignored: what was committed stays committed, and the run still writes its
/// metrics and notifies, instead of a panic ending it half-way.
pub fn out(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

/// `cbsnap: warning: …` on stderr.
pub fn warn(message: &str) {
    cbsnap::warn_stderr!("cbsnap: warning: {message}");
}

/// `cbsnap: …` on stderr: what the command is doing, or a note about its result.
pub fn note(message: &str) {
    cbsnap::warn_stderr!("cbsnap: {message}");
}

/// Each container an interrupted cbsnap had left paused or stopped, now resumed.
pub fn resumed(rec: &cbsnap::docker::Recovery) {
    for r in &rec.resumed {
        note(&format!(
            "resumed container {} left {} by an interrupted cbsnap (pid {} on {}, since {})",
            r.name,
            match r.action {
                cbsnap::docker::QuiesceAction::Pause => "paused",
                cbsnap::docker::QuiesceAction::Stop => "stopped",
            },
            r.pid,
            r.host,
            r.since
        ));
    }
}

/// The progress display of one command; hidden under `-q` and `--json`.
pub fn progress(ctx: &Ctx, what: &str) -> Progress {
    Progress::new(ctx.quiet || ctx.json, what)
}

/// Draws `[i/n] name` progress bars and says what the run waits for, on a terminal.
pub struct CliObserver {
    quiet: bool,
}

impl CliObserver {
    /// Hidden under `-q`, `--json`, or when stderr is not a terminal.
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
            note(message);
        }
    }
}

/// The result of `snapshot --all` or `snapshot VOLUME...`: its warnings, skipped
/// sources and errors on stderr, then each snapshot, or the whole report as JSON.
pub fn run_report(ctx: &Ctx, r: &RunReport) {
    for w in &r.warnings {
        warn(w);
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
            snapshot(ctx, id, snap);
            // Entry errors were listed by `snapshot`; the rest are hook failures.
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

/// One committed snapshot: a line (or its JSON), and the entries it could not read.
pub fn snapshot(ctx: &Ctx, id: &Id, s: &Snapshot) {
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
pub fn restored(ctx: &Ctx, id: &Id, snap: &Snapshot, to: &str, report: &Report) {
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

/// Warn of every snapshot dated in the future: a wrong clock on the host that took it.
pub fn future_dated(groups: &[forget::Group]) {
    for d in groups.iter().flat_map(|g| &g.decisions) {
        if d.future_dated {
            cbsnap::warn_stderr!(
                "cbsnap: warning: snapshot {} is dated {}, in the future: check the clock of the host that took it (`cbsnap snapshots` shows the host). It is kept and takes the place of no real snapshot in any --keep rule.",
                d.id.short(),
                d.time.to_rfc3339()
            );
        }
    }
}

/// What `forget` keeps and removes, source by source, with the rules that keep each.
pub fn forget_groups(ctx: &Ctx, policy: &Policy, groups: &[forget::Group], dry_run: bool) {
    if ctx.quiet {
        return;
    }
    outln!("policy: keep {policy}");
    for g in groups {
        let kept = g.decisions.iter().filter(|d| d.keep).count();
        outln!(
            "{}: keep {kept}, {} {}",
            g.name,
            if dry_run { "would remove" } else { "remove" },
            g.decisions.len() - kept
        );
        for d in &g.decisions {
            let line = format!(
                "  {:<6}  {}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                d.id.short(),
                d.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
                d.reasons.join(", ")
            );
            outln!("{}", line.trim_end());
        }
    }
}

/// The prune plan, and what was done (`None` for a dry run).
pub fn prune(ctx: &Ctx, p: &Plan, r: Option<&PruneReport>) {
    let sum = |v: &[prune::PackUse]| v.iter().map(|u| u.size).sum::<u64>();
    let unused = |v: &[prune::PackUse]| v.iter().map(|u| u.unused_bytes()).sum::<u64>();
    ctx.say(&format!(
        "{} snapshots reference {} blobs in {} trees (referenced set: {})",
        p.snapshots,
        p.referenced_blobs,
        p.trees,
        HumanBytes(p.referenced_set_bytes as u64)
    ));
    ctx.say(&format!(
        "{} packs, {}: delete {} ({}), repack {} ({}, {} of it unused), keep {} ({} unused)",
        p.packs,
        HumanBytes(p.pack_bytes),
        p.delete.len(),
        HumanBytes(sum(&p.delete)),
        p.repack.len(),
        HumanBytes(sum(&p.repack)),
        HumanBytes(unused(&p.repack)),
        p.keep_packs,
        HumanBytes(p.keep_unused_bytes),
    ));
    match r {
        None => ctx.say(&format!(
            "dry run: would free about {}; nothing was changed",
            HumanBytes(p.bytes_freed())
        )),
        Some(r) => {
            if r.temps_removed > 0 {
                ctx.say(&format!(
                    "removed {} temporary files of interrupted writes ({})",
                    r.temps_removed,
                    HumanBytes(r.temp_bytes_removed)
                ));
            }
            for (id, why) in &r.damaged_kept {
                cbsnap::warn_stderr!(
                    "cbsnap: warning: pack {id} was not repacked: {why}. Run `cbsnap check --read-data`"
                );
            }
            ctx.say(&format!(
                "removed {} packs ({} unused, {} repacked into {} new with {} blobs, {}); repository {} -> {} (freed {})",
                r.packs_deleted,
                r.packs_deleted - r.packs_repacked,
                r.packs_repacked,
                r.packs_written,
                r.blobs_copied,
                HumanBytes(r.bytes_written),
                HumanBytes(r.bytes_before),
                HumanBytes(r.bytes_after),
                HumanBytes(r.bytes_before.saturating_sub(r.bytes_after))
            ));
        }
    }
}

/// The table of `cbsnap snapshots`.
pub fn snapshot_table(all: &[(Id, Snapshot)]) {
    if all.is_empty() {
        outln!("no snapshots yet; take one with `cbsnap snapshot --path DIR` or `cbsnap snapshot --all`");
        return;
    }
    outln!(
        "{:<8}  {:<19}  {:<24}  {:<6}  {:>8}  {:>10}  {:>10}  {:<23}  TAGS",
        "ID",
        "TIME",
        "NAME",
        "KIND",
        "FILES",
        "SIZE",
        "ADDED",
        "RUN"
    );
    for (id, s) in all {
        outln!(
            "{:<8}  {:<19}  {:<24}  {:<6}  {:>8}  {:>10}  {:>10}  {:<23}  {}{}",
            id.short(),
            s.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            s.name,
            format!("{:?}", s.kind).to_lowercase(),
            s.stats.files,
            indicatif::HumanBytes(s.stats.bytes).to_string(),
            indicatif::HumanBytes(s.stats.new_bytes_stored).to_string(),
            s.run_id.as_deref().unwrap_or("-"),
            s.tags.join(","),
            if s.errors.is_empty() {
                String::new()
            } else {
                format!("  ({} unreadable)", s.errors.len())
            },
        );
    }
}

/// One entry of `ls --json`.
pub fn node_json(path: &str, n: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": path, "type": n.kind.letter().to_string(), "mode": n.mode, "uid": n.uid, "gid": n.gid,
        "size": n.size, "mtime": n.mtime, "target": String::from_utf8_lossy(&n.target),
    })
}

/// One line of `ls`: type and mode, owner, group, size, mtime, path (and a link's target).
pub fn node_line(path: &str, n: &Node) {
    let t = Local
        .timestamp_opt(n.mtime, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let owner = if n.user.is_empty() {
        n.uid.to_string()
    } else {
        String::from_utf8_lossy(&n.user).into_owned()
    };
    let group = if n.group.is_empty() {
        n.gid.to_string()
    } else {
        String::from_utf8_lossy(&n.group).into_owned()
    };
    let link = if n.kind == NodeKind::Symlink {
        format!(" -> {}", String::from_utf8_lossy(&n.target))
    } else {
        String::new()
    };
    outln!(
        "{}{} {:>8} {:>8} {:>12} {} {}{}",
        n.kind.letter(),
        mode_string(n.mode),
        owner,
        group,
        n.size,
        t,
        path,
        link
    );
}

fn mode_string(m: u32) -> String {
    let mut s = String::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if m & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}
