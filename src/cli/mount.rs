//! `cbsnap mount DIR`: the read-only FUSE view of every snapshot ([`cbsnap::mount`]),
//! in the foreground until it is unmounted (`fusermount3 -u DIR`, `umount DIR`) or
//! cbsnap gets Ctrl-C / SIGTERM, which unmount it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cbsnap::mount::SnapshotFs;
use cbsnap::repo::Access;

use super::Ctx;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An existing empty directory to mount the snapshots on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    if !a.mountpoint.is_dir() {
        return Err(cbsnap::Error::Usage(format!(
            "{} is not a directory; create an empty one to mount on (mkdir -p {})",
            a.mountpoint.display(),
            a.mountpoint.display()
        ))
        .into());
    }
    let mut repo = ctx.open(Access::Read)?;
    // A mount stays up for hours: it must not hold the index the night's snapshot
    // writes to.
    repo.let_go_of_index()?;
    let all = repo.readable_snapshots()?;
    let count = all.len();
    let fs = SnapshotFs::new(repo, &all);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("cbsnap".into()),
        fuser::MountOption::Subtype("cbsnap".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handlers")?;
    }
    let session = fuser::spawn_mount(fs, &a.mountpoint, &config).with_context(|| {
        format!(
            "cannot mount on {} (FUSE needs /dev/fuse, and fusermount3 from Debian's fuse3 when not root)",
            a.mountpoint.display()
        )
    })?;
    ctx.say(&format!(
        "{count} snapshots mounted read-only at {}; unmount with `fusermount3 -u {}` or Ctrl-C",
        a.mountpoint.display(),
        a.mountpoint.display()
    ));
    while !session.guard.is_finished() {
        if stop.load(Ordering::Relaxed) {
            session
                .umount_and_join()
                .with_context(|| format!("unmount {}", a.mountpoint.display()))?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Unmounted from outside: the session ended by itself.
    session
        .join()
        .with_context(|| format!("serve {}", a.mountpoint.display()))
}
