//! The maintenance commands, flattened into the top-level command list so that each
//! keeps its own spelling (`cbsnap forget`, `cbsnap check`, …).

use super::{check, diff, forget, mirror, stats, Ctx};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Remove snapshots by a retention policy (the data goes with `prune`)
    Forget(forget::ForgetArgs),
    /// Remove data no snapshot references; repack mostly unused packs
    Prune(forget::PruneArgs),
    /// Verify the repository; with --read-data also every blob's content
    Check(check::Args),
    /// Sizes, deduplication, and what each snapshot added
    Stats(stats::Args),
    /// Show what changed between two snapshots
    Diff(diff::Args),
    /// Copy the repository to a mirror with rsync, safely while snapshots run
    Mirror(mirror::MirrorArgs),
    /// Run a command while holding the repository lock (e.g. your own rsync)
    WithLock(mirror::WithLockArgs),
    /// Remove stale and unreadable lock files (locks of running commands stay)
    Unlock(UnlockArgs),
}

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock file, also of running commands: only when no cbsnap runs on
    /// any host that uses this repository
    #[arg(long)]
    pub all: bool,
}

fn unlock(ctx: &Ctx, a: UnlockArgs) -> anyhow::Result<i32> {
    let storage = ctx.storage()?;
    cbsnap::Repository::read_config_in(&*storage)?;
    let u = cbsnap::lock::unlock(&*storage, a.all)?;
    for (what, list) in [
        ("stale", &u.stale),
        ("unreadable", &u.unreadable),
        ("live", &u.live),
    ] {
        for p in list {
            ctx.say(&format!("removed {what} lock {}", p.display()));
        }
    }
    ctx.say(&format!(
        "{} lock file(s) removed",
        u.stale.len() + u.unreadable.len() + u.live.len()
    ));
    Ok(0)
}

/// Run one maintenance command; returns the exit code.
pub fn run(ctx: &Ctx, c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Forget(a) => forget::forget(ctx, a).map(|_| 0),
        Command::Prune(a) => forget::prune(ctx, a).map(|_| 0),
        Command::Check(a) => check::run(ctx, a),
        Command::Stats(a) => stats::run(ctx, a).map(|_| 0),
        Command::Diff(a) => diff::run(ctx, a).map(|_| 0),
        Command::Mirror(a) => mirror::mirror(ctx, a).map(|_| 0),
        Command::WithLock(a) => mirror::with_lock(ctx, a),
        Command::Unlock(a) => unlock(ctx, a),
    }
}
