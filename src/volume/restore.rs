//! Restore into a Docker volume: afterwards the volume holds exactly the snapshot —
//! no stale files — and the containers that use it are as they were.
//!
//! The volume is created with its recorded driver, options and labels if it is
//! missing. Another volume than the snapshot's own (`--to-volume`) that already holds
//! files is refused unless `delete` is set, before anything is touched: making it
//! equal to the snapshot deletes what it holds, as `--to DIR --delete` does. Running
//! containers that use it make the restore refuse unless `stop` is set; then they are
//! stopped for the restore and started again once it has finished: if it fails or is
//! interrupted, they stay stopped (see [`Engine::quiesce_for_restore`]). As root on the engine's host the
//! volume's directory is synchronised directly (extra entries removed); otherwise the
//! snapshot is uploaded as a tar stream through a helper container, into an empty
//! volume. A non-empty one is cleared first ([`clearing`]): recreated, which Docker
//! only allows when no container references it; or, for a volume whose data is not
//! at its mountpoint (driver options), emptied in its bind device on this host, since
//! recreating it would not touch its data. One that can be cleared neither way is
//! refused before anything is touched.

use std::path::{Path, PathBuf};

use crate::docker::{ContainerInfo, Engine, Hold, QuiesceMode, VolumeInfo};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::dir;
use crate::snapshot::{Snapshot, SourceKind};

use super::{quiesce_state_file, recorded_volume, volume_is_empty, Via};

/// How [`restore_volume`] writes a volume.
pub struct VolumeRestore {
    /// Target volume name (default: the recorded one).
    pub target: Option<String>,
    /// Stop the containers that use the volume (running, paused or restarting),
    /// restore, and return each to its state (a paused one is paused again).
    pub stop: bool,
    /// Allow restoring into an existing, non-empty volume other than the one the
    /// snapshot was taken from (`--delete`): its contents are replaced by the
    /// snapshot's. The snapshot's own volume is always made equal to the snapshot.
    pub delete: bool,
    /// How to write the volume.
    pub via: Via,
    /// The command that runs this restore again, named when it does not finish and
    /// leaves the containers stopped (`cbsnap restore qdrant-data@1a2b3c4d --stop`).
    pub again: String,
}

/// `cbsnap restore NAME@SELECTOR [--to-volume VOLUME]`: connect to the engine,
/// resume what an interrupted cbsnap left quiesced, and [`restore_volume`].
/// [`Error::Usage`] before anything is asked of Docker when the snapshot is not of a
/// volume and no target volume is given.
pub fn restore_snapshot(
    repo: &Repository,
    snap: &Snapshot,
    opts: &VolumeRestore,
    progress: &Progress,
) -> Result<(String, dir::Report)> {
    if opts.target.is_none() && snap.kind != SourceKind::Volume {
        // Where it was taken from, which `restore --all` restores into.
        let from = match snap.origin_path() {
            Some(p) => format!(
                " It was taken from {}: `--to {} --force` puts it back there.",
                p.display(),
                p.display()
            ),
            None => String::new(),
        };
        return Err(Error::Usage(format!(
            "{} is a snapshot of a {}: say where to restore it with --to DIR (or --to-volume VOLUME).{from}",
            snap.name,
            format!("{:?}", snap.kind).to_lowercase()
        )));
    }
    let engine = Engine::connect()?;
    engine.recover_quiesced(&quiesce_state_file(&repo.root))?;
    restore_volume(repo, &engine, snap, opts, progress)
}

/// Restore `snap` into a volume; returns the volume name and what was written.
pub fn restore_volume(
    repo: &Repository,
    engine: &Engine,
    snap: &Snapshot,
    opts: &VolumeRestore,
    progress: &Progress,
) -> Result<(String, dir::Report)> {
    // Its root tree read first: a damaged index or a lost pack that fails the whole
    // restore does so before any container is stopped or held.
    repo.read_blob(&snap.tree)?;
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
    // One restore into a volume at a time: two would mix their files, and each
    // would start the containers on the mixture.
    let _restoring = super::VolumeLock::restoring(&name)?;
    // The snapshot's own volume is made equal to it; any other volume that holds
    // files belongs to someone else until the operator says it may be replaced.
    let own = recorded.as_ref().is_some_and(|r| r.name == name);
    let existing = engine.inspect_volume(&name)?;
    let mount = match &existing {
        Some(info) => writes_through_mountpoint(engine, info, opts.via)?,
        None => opts.via != Via::Archive,
    };
    let holds_files = match &existing {
        Some(info) if mount => std::fs::read_dir(&info.mountpoint)
            .map_err(|e| Error::io(format!("read volume {name} at {}", info.mountpoint), e))?
            .next()
            .is_some(),
        Some(_) => !volume_is_empty(engine, &name)?,
        None => false,
    };
    if holds_files && !own && !opts.delete {
        // A tar import or a path snapshot was taken from no volume at all.
        let whose = match (&recorded, snap.kind) {
            (Some(_), _) => format!("is not the volume {} was taken from", snap.name),
            (None, SourceKind::Tar) => {
                format!("{} is a tar import, which has no source volume", snap.name)
            }
            (None, SourceKind::Path) => format!(
                "{} is a snapshot of a path, which has no source volume",
                snap.name
            ),
            (None, SourceKind::Volume) => {
                format!("{} does not record its source volume", snap.name)
            }
        };
        return Err(Error::Usage(format!(
            "volume {name} is not empty and {whose}; restoring into it would delete everything it holds. Pass --delete to replace its contents with the snapshot's, or restore into a new or empty volume (--to-volume NEW)"
        )));
    }
    let mut info = match existing {
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
    let users = super::users(engine, &info)?;
    let running: Vec<_> = users.iter().filter(|c| c.state.is_up()).cloned().collect();
    if !running.is_empty() && !opts.stop {
        return Err(Error::InUse(format!(
            "volume {name} is in use by running containers: {}. Stop them first, or pass --stop to stop them for the restore and start them again afterwards",
            running.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if holds_files && !mount {
        // Found out now, before any container is stopped.
        clearing(engine, &info, &users)?;
    }
    // Stopped whatever their `cbsnap.quiesce` label says: that label is about how to
    // read a volume; writing one under a paused or live container is never safe.
    // They start again only if the restore finishes; so do those an earlier restore
    // of this volume left stopped when it did not.
    let each: Vec<_> = running.iter().map(|c| (c, QuiesceMode::Stop)).collect();
    let hold = Hold {
        target: format!("volume {name}"),
        again: opts.again.clone(),
    };
    // `gone`: what a restore from a repository that moved or was lost holds cannot
    // be taken over; said once this restore has finished.
    let (mut guard, gone) =
        super::quiesce_for_restore(engine, &repo.root, &each, hold, &[name.as_str()])?;
    let ours = quiesce_state_file(&repo.root);
    // A volume created just now has a new mountpoint: ask again.
    let mount = mount && writes_through_mountpoint(engine, &info, opts.via)?;
    let report = if mount {
        guard.arm()?;
        let o = dir::Options {
            force: true,
            delete: true,
            filter: dir::Filter::default(),
            ..dir::Options::default()
        };
        dir::restore(
            repo,
            snap,
            std::path::Path::new(&info.mountpoint),
            &o,
            progress,
        )?
    } else {
        // Asked again: a container may have written to it until it was stopped.
        let clear = match volume_is_empty(engine, &name)? {
            true => None,
            false => Some(clearing(engine, &info, &users)?),
        };
        // Nothing was changed so far: a refusal above starts the containers again.
        guard.arm()?;
        if let Some(clear) = clear {
            match clear {
                Clearing::Recreate => {
                    engine.remove_volume(&name)?;
                    info = engine.create_volume(&info)?;
                }
                Clearing::Device(dir) => empty_dir(&dir)?,
            }
        }
        let inexact = upload(repo, engine, snap, &info.name)?;
        dir::Report {
            files: snap.stats.files,
            dirs: snap.stats.dirs,
            bytes: snap.stats.bytes,
            problems: inexact
                .into_iter()
                .map(|detail| dir::Problem {
                    path: std::path::PathBuf::from(&info.name),
                    kind: dir::ProblemKind::NotRestored,
                    detail,
                })
                .collect(),
        }
    };
    let started = guard.quiesced();
    guard.resume()?;
    super::clear_held_in(&name, &ours, &users);
    if let Some(gone) = gone.first() {
        let left: Vec<_> = super::stopped(&users)
            .into_iter()
            .filter(|c| !started.iter().any(|s| s.id == c.id))
            .collect();
        if !left.is_empty() {
            crate::warn::emit(crate::warn::Warning::Line(format!(
                "volume {name} is restored, but {} stay stopped: an earlier restore into it that did not finish may have stopped them, and it recorded them in {}, which is gone (its repository moved or lost), so they were not started. Start them if they should run: {}",
                left.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                gone.display(),
                left.iter()
                    .map(|c| format!("docker start {}", c.name))
                    .collect::<Vec<_>>()
                    .join(" && ")
            )));
        }
    }
    Ok((name, report))
}

/// How a volume that holds files is emptied before the snapshot is uploaded into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clearing {
    /// Removed and created again with the same driver, options and labels.
    Recreate,
    /// Its data is this host directory, its bind device: emptied there (removing
    /// and recreating the volume would leave it as it is).
    Device(PathBuf),
}

/// How the non-empty volume `info`, which `users` reference, can be emptied for an
/// upload through the archive API (which cannot delete files); the error says why
/// it cannot be and what to do ([`Error::InUse`]: nothing was changed).
///
/// A volume whose data is not at its mountpoint (driver options) keeps that data
/// when it is removed and recreated: it is emptied in its bind device when it has
/// one and cbsnap runs as root on the engine's host, and is refused otherwise (an
/// NFS export, a remote engine). Any other volume is recreated, which Docker allows
/// only when no container references it.
pub fn clearing(engine: &Engine, info: &VolumeInfo, users: &[ContainerInfo]) -> Result<Clearing> {
    let name = &info.name;
    if info.data_outside_mountpoint() {
        return match info.bind_device() {
            Some(dir) if engine.runs_on_engine_host() && dir.is_dir() => {
                // Found out here, before any container is stopped: a refusal
                // from `empty_dir` would come after, and keep them stopped.
                refuse_mounts_inside(dir)?;
                Ok(Clearing::Device(dir.to_path_buf()))
            }
            _ => Err(Error::InUse(format!(
                "volume {name} is not empty and keeps its data outside Docker ({}): removing and recreating it would not clear it, and Docker's archive API cannot delete files, so the restore could not make it equal to the snapshot; nothing was changed. Empty it where its data lives, run cbsnap as root on the Docker host if it is bound to a directory there, or restore into a new volume (--to-volume NEW)",
                info.describe_driver()
            ))),
        };
    }
    if !users.is_empty() {
        return Err(Error::InUse(format!(
            "volume {name} is not empty and containers reference it ({}), so it can be neither cleared through the archive API nor recreated. Run cbsnap as root on the Docker host (--via mount), or remove those containers (`docker compose down`) and retry",
            users.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(Clearing::Recreate)
}

/// [`Error::InUse`] when something is mounted inside the bind device `dir`.
fn refuse_mounts_inside(dir: &Path) -> Result<()> {
    match crate::fsutil::mounts_below(dir).first() {
        Some(m) => Err(Error::InUse(format!(
            "the volume's bind device {} has {} mounted inside it; a restore never removes what is mounted there, and nothing was changed. Unmount it and run the restore again",
            dir.display(),
            m.display()
        ))),
        None => Ok(()),
    }
}

/// Removes every entry of `dir`, never following a symlink out of it.
fn empty_dir(dir: &Path) -> Result<()> {
    // `remove_dir_all` would go into what is mounted below and empty it: refuse
    // before anything is removed (asked again: it may have been mounted since).
    refuse_mounts_inside(dir)?;
    let what = |e| {
        Error::io(
            format!("empty {} (the volume's bind device)", dir.display()),
            e,
        )
    };
    for entry in std::fs::read_dir(dir).map_err(what)? {
        let entry = entry.map_err(what)?;
        let path = entry.path();
        // `file_type` does not follow symlinks; `remove_dir_all` does not either.
        if entry.file_type().map_err(what)?.is_dir() {
            std::fs::remove_dir_all(&path).map_err(what)?;
        } else {
            std::fs::remove_file(&path).map_err(what)?;
        }
    }
    Ok(())
}

/// Whether the volume is written through its mountpoint on this host (`--via mount`)
/// rather than through a helper container. [`Error::Usage`] when `--via mount` was
/// asked for and the mountpoint cannot be used.
fn writes_through_mountpoint(engine: &Engine, info: &VolumeInfo, via: Via) -> Result<bool> {
    match via {
        Via::Archive => Ok(false),
        Via::Auto => Ok(engine.volume_mountpoint_readable(info)),
        Via::Mount => {
            if !engine.volume_mountpoint_readable(info) {
                return Err(super::via_mount_refused(info));
            }
            Ok(true)
        }
    }
}

/// Stream the snapshot as tar into the volume: a thread dumps into a pipe that the
/// upload reads. Returns what the tar stream could not carry
/// ([`crate::restore::tar::dump`]).
fn upload(
    repo: &Repository,
    engine: &Engine,
    snap: &Snapshot,
    volume: &str,
) -> Result<Vec<crate::restore::tar::Inexact>> {
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
