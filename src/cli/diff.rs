//! `cbsnap diff`.

use cbsnap::diff;
use cbsnap::repo::Access;
use indicatif::HumanBytes;

use super::{print_json, Ctx};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older snapshot, NAME@SELECTOR
    pub from: String,
    /// The newer snapshot, NAME@SELECTOR
    pub to: String,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let set = repo.snapshots()?;
    let (_, old) = super::resolve_in(ctx, &set, &a.from)?;
    let (_, new) = super::resolve_in(ctx, &set, &a.to)?;
    let size = |s: Option<u64>| s.map_or("-".to_string(), |s| s.to_string());
    if ctx.json {
        let mut changes = Vec::new();
        let summary = diff::diff(&repo, &old, &new, &mut |e| changes.push(e.clone()))?;
        print_json(&serde_json::json!({"changes": changes, "summary": summary}));
        return Ok(());
    }
    let summary = diff::diff(&repo, &old, &new, &mut |e| {
        let sizes = match e.change {
            diff::Change::Added => size(e.new_size),
            diff::Change::Removed => size(e.old_size),
            _ => format!("{} -> {}", size(e.old_size), size(e.new_size)),
        };
        outln!("{}  {}  {}", e.change.letter(), e.path, sizes);
    })?;
    ctx.say(&format!(
        "{} added ({}), {} removed ({}), {} modified ({} -> {}), {} type changed, {} metadata only",
        summary.added,
        HumanBytes(summary.added_bytes),
        summary.removed,
        HumanBytes(summary.removed_bytes),
        summary.modified,
        HumanBytes(summary.modified_old_bytes),
        HumanBytes(summary.modified_new_bytes),
        summary.type_changed,
        summary.metadata
    ));
    Ok(())
}
