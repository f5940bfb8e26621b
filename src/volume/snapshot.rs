//! Snapshot one Docker volume: read it, through the `dir` or `tar` source, while the
//! containers that use it are held still, and commit it through `ingest`.
//!
//! A volume is read in one of two ways. `mount`: when cbsnap runs as root on the
//! engine's host, the volume's mountpoint is readable and the volume keeps its data
//! there (no driver options: a bind-backed or NFS volume is mounted there only while a
//! container uses it), the directory is walked directly — faster, and unchanged files
//! are skipped by comparing with the parent snapshot. `archive`: otherwise, through the archive API of a helper container that
//! is created but never started ([`crate::docker`]); the tar stream goes straight into
//! the same pipeline. Containers that mount the volume are paused (or stopped) only
//! while that one volume is read, and always resumed.

use std::path::PathBuf;

use crate::docker::{Engine, QuiesceMode, VolumeInfo};
use crate::error::{Error, Result};
use crate::ingest::{self, SnapshotSpec};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{Snapshot, SourceKind};
use crate::Id;

use super::{quiesce_state_file, source_name, Via};

/// How [`snapshot_volume`] reads a volume and what it records.
pub struct VolumeSnapshot<'a> {
    /// The compose project: its `<project>_` prefix is dropped from the source name.
    pub project: Option<&'a str>,
    /// How to read the volume.
    pub via: Via,
    /// The default quiesce mode (the container label `cbsnap.quiesce` overrides it).
    pub quiesce: QuiesceMode,
    /// The run the snapshot belongs to (`snapshot --all`), if any.
    pub run_id: Option<String>,
    /// The plan of the run the snapshot belongs to.
    pub run: Option<crate::snapshot::RunPlan>,
    /// Tags of the snapshot.
    pub tags: Vec<String>,
}

/// Snapshot one volume: quiesce its containers, read it, resume them, commit.
/// `parent` is the source's latest snapshot ([`snapshot::latest_of`]).
pub fn snapshot_volume(
    repo: &Repository,
    engine: &Engine,
    vol: &VolumeInfo,
    opts: &VolumeSnapshot<'_>,
    parent: Option<(Id, Snapshot)>,
    progress: &Progress,
) -> Result<(Id, Snapshot)> {
    let name = source_name(&vol.name, opts.project);
    // The directory walked on this host, if any; else the volume is read as a tar
    // stream through a helper container.
    let walked: Option<(PathBuf, &str)> = match opts.via {
        Via::Archive => None,
        Via::Auto if engine.volume_mountpoint_readable(vol) => {
            Some((PathBuf::from(&vol.mountpoint), "mount"))
        }
        // A bind-backed volume's data is its device directory on this host: walked
        // there, it keeps what Docker's tar drops (extended attributes other than
        // `security.capability`, sub-second times).
        // Docker follows a symlinked `device`; so does this (the walk would refuse it).
        Via::Auto => vol
            .bind_device()
            .filter(|d| engine.runs_on_engine_host() && d.is_dir())
            .and_then(|d| std::fs::canonicalize(d).ok())
            .map(|d| (d, "device")),
        Via::Mount => {
            if !engine.volume_mountpoint_readable(vol) {
                return Err(super::via_mount_refused(vol));
            }
            Some((PathBuf::from(&vol.mountpoint), "mount"))
        }
    };
    // Not while a restore writes it, nor once one has left it half written: the
    // snapshot would become its `@latest` and its last whole copy would age out.
    let _reading = super::VolumeLock::reading(&vol.name)?;
    let containers = engine.containers_using_volume(&vol.name)?;
    let state_file = quiesce_state_file(&repo.root);
    let target = format!("volume {}", vol.name);
    let held = crate::docker::held(&state_file)?
        .into_iter()
        .find(|r| {
            r.hold.as_ref().is_some_and(|h| h.target == target)
                || containers.iter().any(|c| c.id == r.id)
        })
        // Or by a restore from another repository, whose own runs would forget a
        // container started by hand since: only one still stopped counts.
        .or_else(|| {
            let other = super::held_in(&vol.name)?;
            let stopped = super::stopped(&containers);
            super::held_volume(&other, &vol.name, &stopped)
                .filter(|r| stopped.iter().any(|c| c.id == r.id))
        });
    // That repository's state cannot be read (moved, or lost) while containers of
    // the volume are stopped: they may be held there.
    if held.is_none() {
        if let Some(other) = super::held_in(&vol.name).filter(|p| !p.exists()) {
            let stopped = super::stopped(&containers);
            if !stopped.is_empty() {
                return Err(Error::InUse(format!(
                    "volume {} may be half restored: a restore into it did not finish, and the repository that holds its stopped containers ({}) cannot be read now ({} is gone). It is not snapshotted, so that its last snapshot stays its last whole copy. Finish the restore from any copy of that repository, or start its containers ({}) to keep it as it is; the next snapshot then takes it",
                    vol.name,
                    names(&stopped),
                    other.display(),
                    names(&stopped)
                )));
            }
        }
    }
    if let Some(h) = held.as_ref().and_then(|r| r.hold.as_ref()) {
        return Err(Error::InUse(format!(
            "volume {} is half restored: the restore into {} did not finish. It is not snapshotted, so that its last snapshot stays its last whole copy. Finish the restore (`{}`), or start its containers (`docker start`) to keep it as it is; the next snapshot then takes it",
            vol.name, h.target, h.again
        )));
    }
    let guard = engine.quiesce(&containers, opts.quiesce, &state_file)?;
    let spec = SnapshotSpec {
        name,
        kind: SourceKind::Volume,
        origin: serde_json::json!({
            "volume": vol,
            "via": walked.as_ref().map_or("archive", |(_, via)| *via),
            "uid": crate::host::reader_uid(),
        }),
        tags: opts.tags.clone(),
        run_id: opts.run_id.clone(),
        run: opts.run.clone(),
        consistency: Some(guard.consistency().to_string()),
        time: crate::ingest::SnapshotTime::Now,
        parent,
    };
    // A tar stream carries no device and inode: through the archive API, a volume
    // that holds the repository is read with it.
    let leave_out = ingest::own_dirs(repo);
    ingest::snapshot(repo, spec, progress, move |sink| {
        if let Some((dir, _)) = &walked {
            crate::source::dir::walk(dir, &leave_out, sink)?;
        } else {
            let mut reader = engine.read_volume_tar(&vol.name)?;
            crate::source::tar::read_tar(&mut reader, b"", sink)?;
            reader.finish()?;
        }
        // Resume as soon as the volume is read; committing needs no quiet.
        guard.resume()?;
        Ok(())
    })
}

fn names(cs: &[crate::docker::ContainerInfo]) -> String {
    cs.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
