//! What `snapshot` shows: a run's report (`--all` or several volumes) and one
//! committed snapshot.

use cbsnap::run::backup::{RunReport, SourceStatus};
use cbsnap::snapshot::Snapshot;
use cbsnap::Id;

use super::{print_json, warn};
use crate::cli::Ctx;

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
    // Entries left out and entries stored otherwise than the source has them are
    // told apart: "not in snapshot" is untrue of a file stored as read.
    let (stored, left_out): (Vec<_>, Vec<_>) = s.errors.iter().partition(|e| e.stored);
    let short = id.short();
    for (errors, what) in [
        (
            left_out,
            format!("could not be read and are not in snapshot {short}, or only in part"),
        ),
        (
            stored,
            format!("are in snapshot {short}, but not exactly as the source has them"),
        ),
    ] {
        if errors.is_empty() {
            continue;
        }
        cbsnap::warn_stderr!("cbsnap: {} entries {what} (exit code 3):", errors.len());
        for e in errors.iter().take(20) {
            cbsnap::warn_stderr!("  {}: {}", e.path, e.error);
        }
        if errors.len() > 20 {
            cbsnap::warn_stderr!("  … and {} more (--json lists all)", errors.len() - 20);
        }
    }
}
