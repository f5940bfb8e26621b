//! `cbsnap forget` and `cbsnap prune`.

use cbsnap::forget::{self, Keep, Policy};
use cbsnap::prune::{self, PlanOptions};
use cbsnap::repo::Access;
use cbsnap::Id;

use super::render;
use super::Ctx;

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
    /// The `--keep-*` flags as given.
    fn keep(&self) -> Keep {
        Keep {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within.clone(),
            tags: self.keep_tags.clone(),
        }
    }
}

pub fn forget(ctx: &Ctx, a: ForgetArgs) -> anyhow::Result<()> {
    let policy = Policy::resolve(&a.keep(), &ctx.settings.keep)?;
    let threshold = ctx.settings.prune.repack_threshold;
    let opts = PlanOptions::resolve(a.repack_threshold.as_deref(), threshold)?;
    // Removing snapshot files needs no more than a shared lock; prune needs it all.
    let access = if a.prune && !a.dry_run {
        Access::Exclusive
    } else {
        Access::Read
    };
    let repo = ctx.open(access)?;
    let all = repo.readable_snapshots()?;
    let groups = forget::plan(&all, &a.names, Some(&ctx.settings.project(None)), &policy)?;
    render::future_dated(&groups);
    let remove: Vec<Id> = groups
        .iter()
        .flat_map(|g| g.decisions.iter().filter(|d| !d.keep).map(|d| d.id))
        .collect();
    if !ctx.json {
        render::forget_groups(ctx, &policy, &groups, a.dry_run);
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
        render::print_json(&serde_json::json!({
            "policy": policy.to_string(), "dry_run": a.dry_run, "groups": groups,
            "removed": if a.dry_run { Vec::new() } else { remove.clone() },
            "prune": plan.map(|p| serde_json::json!({"plan": p, "result": result})),
        }));
        return Ok(());
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    ctx.say(&format!("{verb} {} snapshot(s)", remove.len()));
    if let Some((p, r)) = &pruned {
        render::prune(ctx, p, r.as_ref());
    }
    Ok(())
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<()> {
    let threshold = ctx.settings.prune.repack_threshold;
    let opts = PlanOptions::resolve(a.repack_threshold.as_deref(), threshold)?;
    let access = if a.dry_run {
        Access::Read
    } else {
        Access::Exclusive
    };
    let repo = ctx.open(access)?;
    let (p, r) = prune::prune(&repo, &opts, a.dry_run)?;
    if ctx.json {
        render::print_json(&serde_json::json!({"plan": p, "result": r}));
    } else {
        render::prune(ctx, &p, r.as_ref());
    }
    Ok(())
}
