//! How the commands show their results: tables and lines on stdout, `--json`
//! documents, warnings and notes on stderr, progress bars. Every message goes
//! through here without panicking on a closed pipe (`outln!`, `warn_stderr!`).
//! One file per command's results ([`snapshot`], [`restore`], [`forget`], [`list`]);
//! this one holds what they share.

mod forget;
mod list;
mod restore;
mod snapshot;

pub use forget::{forget_groups, future_dated, prune};
pub use list::{node_json, node_line, snapshot_table};
pub use restore::{restore_plan, restored, restored_all};
pub use snapshot::{run_report, snapshot};

use cbsnap::progress::Progress;
use cbsnap::run::Observer;

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

/// Each container an interrupted cbsnap had left paused or stopped, now resumed, and
/// those a restore that did not finish keeps stopped.
pub fn resumed(rec: &cbsnap::docker::Recovery) {
    held(rec);
    for r in &rec.resumed {
        note(&format!(
            "resumed container {} left {} by an interrupted cbsnap (pid {} on {}, since {})",
            r.name,
            match r.action {
                cbsnap::docker::QuiesceAction::Pause => "paused",
                cbsnap::docker::QuiesceAction::Stop => "stopped",
                cbsnap::docker::QuiesceAction::StopPaused =>
                    "stopped (it had been paused: paused again)",
            },
            r.pid,
            r.host,
            r.since
        ));
    }
}

/// Containers a restore into `target` stopped and left stopped because it did not
/// finish; `again` finishes it, `by_hand` returns them to their state on the data as
/// it is.
pub fn left_stopped(containers: &[String], target: &str, again: &str, by_hand: &str) {
    warn(&format!(
        "left {} stopped: the restore into {target} did not finish, so it holds part of the old data and part of the snapshot's. Run `{again}` to finish it (they start again when it does), or start them on the data as it is: {by_hand}",
        containers.join(", "),
    ));
}

/// [`left_stopped`] for each restore whose containers [`Recovery::held`] lists.
///
/// [`Recovery::held`]: cbsnap::docker::Recovery::held
pub fn held(rec: &cbsnap::docker::Recovery) {
    let mut by_hold: Vec<(&cbsnap::docker::Hold, Vec<&cbsnap::docker::QuiesceRecord>)> = Vec::new();
    for r in &rec.held {
        let Some(h) = &r.hold else { continue };
        match by_hold.iter_mut().find(|(k, _)| *k == h) {
            Some((_, records)) => records.push(r),
            None => by_hold.push((h, vec![r])),
        }
    }
    for (h, records) in by_hold {
        let names: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        let by_hand = cbsnap::docker::by_hand(records.iter().map(|r| (r.action, r.name.as_str())));
        left_stopped(&names, &h.target, &h.again, &by_hand);
    }
}

/// The progress display of one command; hidden under `-q` and `--json`.
pub fn progress(ctx: &Ctx, what: &str) -> Progress {
    Progress::new(ctx.quiet || ctx.json, what)
}

/// Draws `[i/n] name` progress bars and says what the run waits for, on a terminal.
pub struct CliObserver<'a> {
    ctx: &'a Ctx,
    quiet: bool,
}

impl CliObserver<'_> {
    /// Hidden under `-q`, `--json`, or when stderr is not a terminal.
    pub fn new(ctx: &Ctx) -> CliObserver<'_> {
        use std::io::IsTerminal;
        CliObserver {
            ctx,
            quiet: ctx.quiet || ctx.json || !std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for CliObserver<'_> {
    /// The line of a restored source (its problems on stderr), or its error, as it
    /// ends; `--json` says it all at the end ([`restore::restored_all`]).
    fn restored(
        &self,
        item: &cbsnap::run::restore::PlanItem,
        result: &cbsnap::Result<cbsnap::restore::dir::Report>,
    ) {
        if self.ctx.json {
            return;
        }
        let to = item.target.to_string();
        match result {
            Ok(r) => restore::restored(self.ctx, &item.id, &item.snapshot, &to, r),
            Err(e) => cbsnap::warn_stderr!("cbsnap: error: {} to {to}: {e}", item.snapshot.name),
        }
    }
    fn progress(&self, index: usize, count: usize, name: &str) -> Progress {
        Progress::new(self.quiet, &format!("[{index}/{count}] {name}"))
    }
    fn note(&self, message: &str) {
        if !self.quiet {
            note(message);
        }
    }
}
