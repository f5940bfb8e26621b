//! `cbsnap mirror` and `cbsnap with-lock`.

use std::ffi::OsString;

use cbsnap::lock::{self, LockKind};
use cbsnap::storage::location::MirrorDest;
use cbsnap::storage::Location;
use cbsnap::{mirror, repo, Error, Repository};

use super::{print_json, render, Ctx};

#[derive(clap::Args, Debug)]
pub struct MirrorArgs {
    /// Where to: a directory or rsync's [user@]host:path (copied with rsync), or
    /// s3://bucket/prefix or sftp://[user@]host[:port]/path
    pub dest: String,
    /// Make the mirror equal to the repository: remove forgotten snapshots and pruned packs
    #[arg(long)]
    pub delete: bool,
    /// Copy the index too (by default the mirror rebuilds its own when first opened)
    #[arg(long)]
    pub with_index: bool,
    /// Copies in flight at once, to s3:// and sftp://
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
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
    match MirrorDest::parse(&a.dest)? {
        MirrorDest::Backend(location) => return mirror_to_backend(ctx, a, location),
        // From a remote repository, a path is written through the path backend.
        MirrorDest::Rsync(_) if ctx.location.is_remote() && !is_rsync_remote(&a.dest) => {
            let location = Location::Local(a.dest.clone().into());
            return mirror_to_backend(ctx, a, location);
        }
        MirrorDest::Rsync(_) => {}
    }
    let opts = mirror::Options {
        delete: a.delete,
        with_index: a.with_index,
        rsync_args: a.rsync_args,
    };
    let r = mirror::mirror(
        ctx.local_path("a mirror to a path or host:path (rsync)")?,
        &a.dest,
        &opts,
    )?;
    if r.kept_packs {
        render::warn(KEPT_PACKS);
    }
    if ctx.json {
        print_json(
            &serde_json::json!({"dest": a.dest, "snapshots": r.snapshots, "kept_packs": r.kept_packs}),
        );
    } else {
        ctx.say(&format!(
            "mirrored {} snapshots to {}; check it with `cbsnap --repo {} check`",
            r.snapshots, a.dest, a.dest
        ));
    }
    Ok(())
}

/// Why `--delete` left packs in the mirror, and what brings it back.
const KEPT_PACKS: &str = "--delete kept in the mirror the packs this repository no longer has: its index does not vouch that every snapshot has all its data here (a pack went missing since a snapshot was taken, or the index was rebuilt), so one of them may be a lost pack a snapshot needs, not a pruned one. Run `cbsnap check`: if it finds damage, copy the packs it names back from the mirror; once it is clean, the next `mirror --delete` removes pruned packs again";

/// `host:path` or `rsync://…`: a destination only rsync reaches.
fn is_rsync_remote(dest: &str) -> bool {
    dest.starts_with("rsync://")
        || dest
            .split('/')
            .next()
            .is_some_and(|first| first.contains(':'))
}

fn mirror_to_backend(ctx: &Ctx, a: MirrorArgs, location: Location) -> anyhow::Result<()> {
    if a.with_index || !a.rsync_args.is_empty() {
        return Err(Error::Usage(format!(
            "--with-index and rsync arguments are for rsync destinations; {location} gets packs, snapshot files, the config and keys (its index is rebuilt by whoever opens it)"
        ))
        .into());
    }
    let dest = super::open_storage(&location, &ctx.settings)?;
    let r = mirror::remote::mirror(&ctx.storage()?, &dest, a.delete, a.jobs)?;
    if r.kept_packs > 0 {
        render::warn(&format!("{} packs: {KEPT_PACKS}", r.kept_packs));
    }
    if ctx.json {
        print_json(&serde_json::json!({"dest": a.dest, "report": r}));
    } else {
        ctx.say(&format!(
            "mirrored {} snapshots to {location}: {} files ({} bytes) sent, {} already there{}; check it with `cbsnap --repo {location} check`",
            r.snapshots,
            r.uploaded_files,
            r.uploaded_bytes,
            r.skipped_files,
            if a.delete {
                format!(", {} deleted", r.deleted_files)
            } else {
                String::new()
            },
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
    let lock = lock::acquire(&storage, kind, repo::lock_wait())?;
    let (prog, args) = a.command.split_first().ok_or_else(|| {
        Error::Usage("say which command to run: `cbsnap with-lock -- rsync …`".into())
    })?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    match ctx.location.local_path() {
        Some(p) => cmd.env("CBSNAP_REPO", p),
        None => cmd.env("CBSNAP_REPO", ctx.location.to_string()),
    };
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
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    // The command ran unprotected from the moment the lock lapsed (an `unlock --all`,
    // a host asleep past the stale time): what it did may have raced a prune.
    if let Err(lost) = lock.check() {
        render::warn(&format!(
            "the repository lock was lost while `{}` ran ({lost}): a prune may have run meanwhile, so what it did may be incomplete; run it again",
            std::path::Path::new(prog).display()
        ));
        return Ok(if code == 0 { 1 } else { code });
    }
    Ok(code)
}
