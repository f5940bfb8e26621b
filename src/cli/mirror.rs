//! `cbsnap mirror` and `cbsnap with-lock`.

use std::ffi::OsString;

use cbsnap::lock::{self, LockKind};
use cbsnap::{mirror, repo, Error, Repository};

use super::{print_json, Ctx};

#[derive(clap::Args, Debug)]
pub struct MirrorArgs {
    /// Where to: a directory, or rsync's [user@]host:path
    pub dest: String,
    /// Make the mirror equal to the repository: remove forgotten snapshots and pruned packs
    #[arg(long)]
    pub delete: bool,
    /// Copy the index too (by default the mirror rebuilds its own when first opened)
    #[arg(long)]
    pub with_index: bool,
    /// Extra rsync arguments, after `--` (e.g. -- --stats -z)
    #[arg(last = true, value_name = "RSYNC_ARGS")]
    pub rsync_args: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
pub struct WithLockArgs {
    /// Take the exclusive lock (as prune does) instead of a shared one
    #[arg(long)]
    pub exclusive: bool,
    /// The command and its arguments, after `--`
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

pub fn mirror(ctx: &Ctx, a: MirrorArgs) -> anyhow::Result<()> {
    let opts = mirror::Options {
        delete: a.delete,
        with_index: a.with_index,
        rsync_args: a.rsync_args,
    };
    let r = mirror::mirror(&ctx.repo_path, &a.dest, &opts)?;
    if ctx.json {
        print_json(&serde_json::json!({"dest": a.dest, "snapshots": r.snapshots}));
    } else {
        ctx.say(&format!(
            "mirrored {} snapshots to {}; check it with `cbsnap --repo {} check`",
            r.snapshots, a.dest, a.dest
        ));
    }
    Ok(())
}

/// Hold the lock while the command runs; exit with its exit code. A shared lock keeps
/// `prune` away (so an `rsync --delete` of the repository cannot race it) and lets
/// snapshots go on.
pub fn with_lock(ctx: &Ctx, a: WithLockArgs) -> anyhow::Result<i32> {
    let storage = ctx.storage()?;
    Repository::read_config_in(&*storage)?;
    let kind = if a.exclusive {
        LockKind::Exclusive
    } else {
        LockKind::Shared
    };
    let _lock = lock::acquire(&storage, kind, repo::lock_wait())?;
    let (prog, args) = a.command.split_first().ok_or_else(|| {
        Error::Usage("say which command to run: `cbsnap with-lock -- rsync …`".into())
    })?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env("CBSNAP_REPO", &ctx.repo_path);
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl,
    // which is async-signal-safe. If this process dies (and its lock with it), the
    // command gets SIGTERM instead of running on unprotected.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let status = cmd
        .status()
        .map_err(|e| Error::io(format!("run {}", std::path::Path::new(prog).display()), e))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
