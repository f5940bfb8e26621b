//! What `forget` and `prune` show: the decisions per source and the prune plan.

use chrono::Local;
use indicatif::HumanBytes;

use cbsnap::forget::{self, Policy};
use cbsnap::prune::{self, Plan, PruneReport};

use crate::cli::Ctx;

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
