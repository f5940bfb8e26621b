//! `cbsnap stats`.

use cbsnap::repo::Access;
use cbsnap::stats;
use chrono::Local;
use indicatif::HumanBytes;

use super::{print_json, Ctx};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this source's snapshots [default: all]
    pub name: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let st = stats::stats(&repo, a.name.as_deref(), ctx.project())?;
    if ctx.json {
        print_json(&st);
        return Ok(());
    }
    let t = &st.repository;
    outln!(
        "repository: {} snapshots, {} packs, {} stored ({} blobs, {} raw)",
        t.snapshots,
        t.packs,
        HumanBytes(t.pack_bytes),
        t.blobs,
        HumanBytes(t.raw_bytes)
    );
    if t.unreferenced_blobs > 0 {
        outln!(
            "unreferenced: {} blobs, {} stored; `cbsnap prune` removes them",
            t.unreferenced_blobs,
            HumanBytes(t.unreferenced_bytes)
        );
    }
    let s = &st.selection;
    outln!(
        "{}: {} snapshots, logical size {} in {} files",
        s.name.as_deref().unwrap_or("all sources"),
        s.snapshots,
        HumanBytes(s.logical_bytes),
        s.files
    );
    outln!(
        "  unique data {} raw, {} stored; dedup {:.2}x, compression {:.2}x, together {:.2}x",
        HumanBytes(s.raw_bytes),
        HumanBytes(s.stored_bytes),
        s.dedup_ratio,
        s.compression_ratio,
        s.total_ratio
    );
    if s.missing_blobs > 0 {
        cbsnap::warn_stderr!(
            "cbsnap: warning: {} referenced blobs are missing from the index; run `cbsnap check`",
            s.missing_blobs
        );
    }
    outln!();
    outln!(
        "{:<8}  {:<19}  {:<24}  {:>8}  {:>10}  {:>10}  {:>10}",
        "ID",
        "TIME",
        "NAME",
        "FILES",
        "LOGICAL",
        "ADDED",
        "STORED"
    );
    for c in &st.snapshots {
        outln!(
            "{:<8}  {:<19}  {:<24}  {:>8}  {:>10}  {:>10}  {:>10}",
            c.id.short(),
            c.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            c.name,
            c.files,
            HumanBytes(c.logical_bytes).to_string(),
            HumanBytes(c.added_raw_bytes).to_string(),
            HumanBytes(c.added_stored_bytes).to_string(),
        );
    }
    Ok(())
}
