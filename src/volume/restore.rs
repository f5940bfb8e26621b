//! Restore into a Docker volume: afterwards the volume holds exactly the snapshot —
//! no stale files — and the containers that use it are as they were.
//!
//! The volume is created with its recorded driver, options and labels if it is
//! missing. Running containers that use it make the restore refuse unless `stop` is
//! set; then they are stopped for the restore and started again. As root on the
//! engine's host the volume's directory is synchronised directly (extra entries
//! removed); otherwise the snapshot is uploaded as a tar stream through a helper
//! container, into an empty volume (a non-empty one is recreated first, which Docker
//! only allows when no container references it).

use crate::docker::{ContainerState, Engine, QuiesceMode, VolumeInfo};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::dir::{self, Report};
use crate::snapshot::{Snapshot, SourceKind};
use crate::volume::snapshot::{quiesce_state_file, Via};

/// The volume a snapshot was taken from, as recorded.
pub fn recorded_volume(snap: &Snapshot) -> Option<VolumeInfo> {
    if snap.kind != SourceKind::Volume {
        return None;
    }
    serde_json::from_value(snap.origin.get("volume")?.clone()).ok()
}

pub struct VolumeRestore {
    /// Target volume name (default: the recorded one).
    pub target: Option<String>,
    /// Stop running containers that use the volume, restore, start them again.
    pub stop: bool,
    pub via: Via,
}

/// Restore `snap` into a volume; returns the volume name and what was written.
pub fn restore_volume(
    repo: &Repository,
    engine: &Engine,
    snap: &Snapshot,
    opts: &VolumeRestore,
    progress: &Progress,
) -> Result<(String, Report)> {
    let recorded = recorded_volume(snap);
    let name = match (&opts.target, &recorded) {
        (Some(t), _) => t.clone(),
        (None, Some(r)) => r.name.clone(),
        (None, None) => {
            return Err(Error::Usage(format!(
            "snapshot {} is of a {}, not a volume: restore it with --to DIR or --to-volume NAME",
            snap.name,
            format!("{:?}", snap.kind).to_lowercase()
        )))
        }
    };
    let mut info = match engine.inspect_volume(&name)? {
        Some(v) => v,
        None => {
            let mut v = recorded.clone().unwrap_or(VolumeInfo {
                name: name.clone(),
                driver: "local".into(),
                driver_opts: Default::default(),
                labels: Default::default(),
                mountpoint: String::new(),
            });
            if v.name != name {
                // A new name is not the compose volume: keep its driver, not its labels.
                v.labels.clear();
                v.name = name.clone();
            }
            engine.create_volume(&v)?
        }
    };
    let users = engine.containers_using_volume(&name)?;
    let running: Vec<_> = users
        .iter()
        .filter(|c| {
            matches!(
                c.state,
                ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
            )
        })
        .cloned()
        .collect();
    if !running.is_empty() && !opts.stop {
        return Err(Error::Usage(format!(
            "volume {name} is in use by running containers: {}. Stop them first, or pass --stop to stop them for the restore and start them again afterwards",
            running.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    // Stopped whatever their `cbsnap.quiesce` label says: that label is about how to
    // read a volume; writing one under a paused or live container is never safe.
    let each: Vec<_> = running.iter().map(|c| (c, QuiesceMode::Stop)).collect();
    let guard = engine.quiesce_each(&each, &quiesce_state_file(&repo.root))?;
    let mount = match opts.via {
        Via::Archive => false,
        Via::Auto => engine.volume_mountpoint_readable(&info),
        Via::Mount => true,
    };
    let report = if mount {
        let o = dir::Options {
            force: true,
            delete: true,
            filter: dir::Filter::default(),
        };
        dir::restore(
            repo,
            snap,
            std::path::Path::new(&info.mountpoint),
            &o,
            progress,
        )?
    } else {
        if !volume_is_empty(engine, &name)? {
            if !users.is_empty() {
                return Err(Error::Usage(format!(
                    "volume {name} is not empty and containers reference it ({}), so it can be neither cleared through the archive API nor recreated. Run cbsnap as root on the Docker host (--via mount), or remove those containers (`docker compose down`) and retry",
                    users.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            engine.remove_volume(&name)?;
            info = engine.create_volume(&info)?;
        }
        upload(repo, engine, snap, &info.name)?;
        Report {
            files: snap.stats.files,
            dirs: snap.stats.dirs,
            bytes: snap.stats.bytes,
            problems: Vec::new(),
        }
    };
    guard.resume()?;
    Ok((name, report))
}

/// Whether the volume holds no entries besides its root, read through a helper
/// container.
pub fn volume_is_empty(engine: &Engine, name: &str) -> Result<bool> {
    let reader = engine.read_volume_tar(name)?;
    let mut ar = ::tar::Archive::new(reader);
    let entries = ar
        .entries()
        .map_err(|e| Error::io(format!("read volume {name}"), e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(format!("read volume {name}"), e))?;
        let p = e.path_bytes();
        if crate::source::normalize_path(&p).is_some_and(|p| !p.is_empty()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stream the snapshot as tar into the volume: a thread dumps into a pipe that the
/// upload reads.
fn upload(repo: &Repository, engine: &Engine, snap: &Snapshot, volume: &str) -> Result<()> {
    let (reader, writer) = std::io::pipe().map_err(|e| Error::io("create pipe", e))?;
    std::thread::scope(|s| {
        let dumper = s.spawn(move || crate::restore::tar::dump(repo, snap, None, writer));
        let up = engine.write_volume_tar(volume, reader);
        let dumped = dumper
            .join()
            .unwrap_or_else(|_| Err(Error::Source("tar writer panicked".into())));
        up?;
        dumped
    })
}
