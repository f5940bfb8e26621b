//! `cbsnap check`.

use cbsnap::check::{self, ReadData};
use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::Error;
use chrono::Local;
use indicatif::HumanBytes;

use super::{print_json, Ctx};

/// Exit code when damage was found.
pub const EXIT_DAMAGE: i32 = 1;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also read every pack and verify each blob against its id
    #[arg(long)]
    pub read_data: bool,
    /// Read a random PCT percent of the packs (a different part on every run)
    #[arg(long, value_name = "PCT", conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<i32> {
    let read = match (&a.read_data, &a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => {
            let pct: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| {
                Error::Usage(format!(
                    "--read-data-subset takes a percentage such as 5 or 12.5, not {s:?}"
                ))
            })?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(Error::Usage(format!("--read-data-subset {pct}: use 0 to 100")).into());
            }
            ReadData::Subset(pct / 100.0)
        }
        (false, None) => ReadData::None,
    };
    let repo = ctx.open(Access::Read)?;
    let exposed = cbsnap::fsutil::readable_by_others(&repo.root);
    if !exposed.is_empty() {
        cbsnap::warn_stderr!(
            "cbsnap: warning: other users can read {} files and directories of this repository (e.g. {}), and with them the data of every snapshot. Make it private: chmod -R go-rwx {}",
            exposed.len(),
            exposed[0].display(),
            repo.root.display()
        );
    }
    let progress = Progress::new(ctx.quiet || ctx.json, "check");
    let report = check::check(&repo, read, &progress)?;
    progress.finish();
    if ctx.json {
        print_json(&report);
    } else {
        print(ctx, &report);
    }
    if report.is_clean() {
        return Ok(0);
    }
    if report.index_damaged.is_some() {
        // Missing blobs, broken snapshots and unreferenced packs would be the index's
        // word: acting on them (moving packs, forgetting, pruning) could destroy data
        // that a rebuilt index finds whole.
        cbsnap::warn_stderr!(
            "cbsnap: the index is damaged, so this check could not tell which blobs are stored, which snapshots are whole or which packs are unused. The index is a cache of the pack trailers: run `cbsnap index rebuild`, then `cbsnap check` again. Move, forget or prune nothing before that."
        );
        return Ok(EXIT_DAMAGE);
    }
    if report
        .problems
        .iter()
        .all(|p| p.pack.is_some() && p.snapshots.is_empty())
    {
        // Damaged copies that the index no longer reads (a snapshot that met them
        // stored the blobs again): moving the packs out or forgetting would only
        // lose what else they hold.
        cbsnap::warn_stderr!(
            "cbsnap: damage found in the packs above, but no snapshot needs the damaged data: every snapshot restores. `cbsnap prune` drops damaged copies the index no longer reads, with the rest of the unused data (a pack is rewritten once more than its repack threshold is unused; `--repack-threshold 0` rewrites each such pack now)."
        );
        return Ok(EXIT_DAMAGE);
    }
    // Blobs no pack holds come from packs that are gone or unreadable; a pack that is
    // gone cannot be named from here.
    let lost = report.problems.iter().any(|p| p.pack.is_none());
    cbsnap::warn_stderr!(
        "cbsnap: damage found. Files not listed above restore fine. To repair: copy the named packs back from a mirror if you have one{}; otherwise move each damaged pack out of packs/ so the next snapshot stores its data again, then forget the broken snapshots and run `cbsnap prune`.",
        if lost {
            " (packs that are gone cannot be named: copy every pack the mirror has and this repository lacks, `rsync -a --ignore-existing MIRROR/packs/ REPOSITORY/packs/`, then run `cbsnap check` again)"
        } else {
            ""
        }
    );
    Ok(EXIT_DAMAGE)
}

fn print(ctx: &Ctx, r: &check::Report) {
    let read = if r.packs_read > 0 {
        format!(
            "; read {} packs ({})",
            r.packs_read,
            HumanBytes(r.bytes_read)
        )
    } else {
        String::new()
    };
    ctx.say(&format!(
        "checked {} snapshots ({} trees, {} blobs referenced) and {} packs ({}){read}",
        r.snapshots,
        r.trees,
        r.referenced_blobs,
        r.packs,
        HumanBytes(r.pack_bytes)
    ));
    let o = &r.orphans;
    if r.index_damaged.is_none() && (o.packs > 0 || o.blobs > 0) {
        ctx.say(&format!(
            "info: {} unreferenced packs ({}), {} unreferenced blobs ({}); `cbsnap prune` removes them",
            o.packs,
            HumanBytes(o.pack_bytes),
            o.blobs,
            HumanBytes(o.bytes)
        ));
    }
    if o.unindexed_packs > 0 {
        ctx.say(&format!(
            "info: {} packs are not indexed yet (a snapshot is being written, or the index is read-only)",
            o.unindexed_packs
        ));
    }
    if o.duplicates > 0 {
        ctx.say(&format!("info: {} blobs are stored twice", o.duplicates));
    }
    for p in &r.problems {
        match &p.pack {
            Some(id) => outln!("DAMAGE in pack {id}:"),
            None => outln!("DAMAGE:"),
        }
        for w in &p.what {
            outln!("  - {w}");
        }
        if p.snapshots.is_empty() {
            // With a damaged index, what a problem breaks is not known.
            if r.index_damaged.is_some() {
                continue;
            }
            if r.problems
                .iter()
                .any(|q| q.pack.is_none() && !q.snapshots.is_empty())
            {
                // An unreadable pack's blobs are not indexed: the snapshots that need
                // them are counted with the blobs no pack holds.
                outln!(
                    "  its blobs are not indexed: snapshots that need them are listed under \"referenced blobs that no pack holds\""
                );
            } else {
                outln!("  breaks no snapshot");
            }
            continue;
        }
        outln!(
            "  {} referenced blob(s) unreadable; breaks {} snapshot(s):",
            p.damaged_blobs,
            p.snapshots.len()
        );
        for s in &p.snapshots {
            outln!(
                "    {}@{}  {}",
                s.name,
                s.id.short(),
                s.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S")
            );
            for path in s.paths.iter().take(20) {
                outln!("      {path}");
            }
            if s.paths.len() > 20 {
                outln!("      … and {} more (--json lists all)", s.paths.len() - 20);
            }
        }
    }
    if r.is_clean() {
        ctx.say("no damage found");
    }
}
