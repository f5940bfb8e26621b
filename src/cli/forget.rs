//! `cbsnap forget` and `cbsnap prune`.

use cbsnap::forget::{self, Policy};
use cbsnap::prune::{self, Plan, PlanOptions, PruneReport};
use cbsnap::repo::Access;
use cbsnap::snapshot;
use cbsnap::{Error, Id};
use chrono::Local;
use indicatif::HumanBytes;

use super::{print_json, Ctx};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Sources to apply the policy to [default: every source]
    pub names: Vec<String>,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot newer than the newest minus DURATION (1y6m2d12h: m is months)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Show what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Then remove the data no remaining snapshot needs (`cbsnap prune`)
    #[arg(long)]
    pub prune: bool,
    /// With --prune: see `cbsnap prune --repack-threshold`
    #[arg(long, value_name = "PCT", requires = "prune")]
    pub repack_threshold: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Show what would be removed and repacked; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Repack a pack when more than PCT percent of it is unused [default: config
    /// `prune.repack_threshold`, else 10]
    #[arg(long, value_name = "PCT")]
    pub repack_threshold: Option<String>,
}

impl ForgetArgs {
    fn policy(&self, ctx: &Ctx) -> cbsnap::Result<Policy> {
        let flags = Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within.as_deref().map(str::parse).transpose()?,
            tags: self.keep_tags.clone(),
        };
        let any_flag = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
            || self.keep_within.is_some()
            || !self.keep_tags.is_empty();
        // Flags replace the config file's policy as a whole, never merge with it.
        if any_flag {
            Ok(flags)
        } else {
            Policy::from_keep(&ctx.settings.keep)
        }
    }
}

fn plan_options(ctx: &Ctx, flag: Option<&str>) -> cbsnap::Result<PlanOptions> {
    let pct = match flag {
        Some(s) => s.trim().trim_end_matches('%').parse::<f64>().map_err(|_| {
            Error::Usage(format!(
                "--repack-threshold takes a percentage such as 10 or 2.5, not {s:?}"
            ))
        })?,
        None => ctx
            .settings
            .prune
            .repack_threshold
            .unwrap_or(prune::plan::DEFAULT_REPACK_THRESHOLD * 100.0),
    };
    if !(0.0..=100.0).contains(&pct) {
        return Err(Error::Usage(format!(
            "the repack threshold is a percentage between 0 and 100, not {pct}"
        )));
    }
    Ok(PlanOptions {
        repack_threshold: pct / 100.0,
    })
}

pub fn forget(ctx: &Ctx, a: ForgetArgs) -> anyhow::Result<()> {
    let policy = a.policy(ctx)?;
    let opts = plan_options(ctx, a.repack_threshold.as_deref())?;
    // Removing snapshot files needs no more than a shared lock; prune needs it all.
    let access = if a.prune && !a.dry_run {
        Access::Exclusive
    } else {
        Access::Read
    };
    let repo = ctx.open(access)?;
    let all = snapshot::load_all(repo.storage())?;
    let groups = forget::plan(&all, &a.names, ctx.project(), &policy)?;
    for d in groups.iter().flat_map(|g| &g.decisions) {
        if d.future_dated {
            cbsnap::warn_stderr!(
                "cbsnap: warning: snapshot {} is dated {}, in the future: check the clock of the host that took it (`cbsnap snapshots` shows the host). It is kept and takes the place of no real snapshot in any --keep rule.",
                d.id.short(),
                d.time.to_rfc3339()
            );
        }
    }
    let remove: Vec<Id> = groups
        .iter()
        .flat_map(|g| g.decisions.iter().filter(|d| !d.keep).map(|d| d.id))
        .collect();
    if !ctx.json {
        print_groups(ctx, &policy, &groups, a.dry_run);
    }
    if !a.dry_run {
        forget::remove(&repo, &remove)?;
    }
    let pruned = if a.prune {
        Some(prune::prune(&repo, &opts, a.dry_run)?)
    } else {
        None
    };
    if ctx.json {
        let (plan, result) = match &pruned {
            Some((p, r)) => (Some(p), r.as_ref()),
            None => (None, None),
        };
        print_json(&serde_json::json!({
            "policy": policy.to_string(), "dry_run": a.dry_run, "groups": groups,
            "removed": if a.dry_run { Vec::new() } else { remove.clone() },
            "prune": plan.map(|p| serde_json::json!({"plan": p, "result": result})),
        }));
        return Ok(());
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    ctx.say(&format!("{verb} {} snapshot(s)", remove.len()));
    if let Some((p, r)) = &pruned {
        print_prune(ctx, p, r.as_ref());
    }
    Ok(())
}

fn print_groups(ctx: &Ctx, policy: &Policy, groups: &[forget::Group], dry_run: bool) {
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

pub fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<()> {
    let opts = plan_options(ctx, a.repack_threshold.as_deref())?;
    let access = if a.dry_run {
        Access::Read
    } else {
        Access::Exclusive
    };
    let repo = ctx.open(access)?;
    let (p, r) = prune::prune(&repo, &opts, a.dry_run)?;
    if ctx.json {
        print_json(&serde_json::json!({"plan": p, "result": r}));
    } else {
        print_prune(ctx, &p, r.as_ref());
    }
    Ok(())
}

fn print_prune(ctx: &Ctx, p: &Plan, r: Option<&PruneReport>) {
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
