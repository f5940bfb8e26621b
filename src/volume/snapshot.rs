//! Docker volumes as a source: discovery, naming, and reading a volume while the
//! containers that use it are held still.
//!
//! A volume is read in one of two ways. `mount`: when cbsnap runs as root on the
//! engine's host and the volume's mountpoint is readable, the directory is walked
//! directly — faster, and unchanged files are skipped by comparing with the parent
//! snapshot. `archive`: otherwise, through the archive API of a helper container that
//! is created but never started ([`crate::docker`]); the tar stream goes straight into
//! the same pipeline. Containers that mount the volume are paused (or stopped) only
//! while that one volume is read, and always resumed.

use std::path::{Path, PathBuf};

use crate::docker::{Engine, QuiesceMode, VolumeInfo};
use crate::error::{Error, Result};
use crate::ingest::{self, SnapshotSpec};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{Snapshot, SourceKind};
use crate::Id;

/// How to read a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `mount` when possible, else `archive`.
    Auto,
    /// Through a helper container and Docker's archive API.
    Archive,
    /// Walk the volume's directory on this host (root on the engine's host only).
    Mount,
}

/// The source name of a volume: its name without the `<project>_` prefix.
pub fn source_name(volume: &str, project: Option<&str>) -> String {
    if let Some(p) = project {
        if let Some(rest) = volume.strip_prefix(&format!("{p}_")) {
            if !rest.is_empty() {
                return rest.to_string();
            }
        }
    }
    volume.to_string()
}

/// Find a volume by the name a user typed: as given, else with the project prefix.
pub fn find_volume(engine: &Engine, typed: &str, project: Option<&str>) -> Result<VolumeInfo> {
    if let Some(v) = engine.inspect_volume(typed)? {
        return Ok(v);
    }
    if let Some(p) = project {
        let full = format!("{p}_{typed}");
        if let Some(v) = engine.inspect_volume(&full)? {
            return Ok(v);
        }
        return Err(Error::Usage(format!(
            "no Docker volume named `{typed}` or `{full}`; `docker volume ls` lists them"
        )));
    }
    Err(Error::Usage(format!(
        "no Docker volume named `{typed}`; `docker volume ls` lists them"
    )))
}

/// Where the quiesce state of a repository lives (see [`Engine::recover_quiesced`]).
pub fn quiesce_state_file(repo_root: &Path) -> PathBuf {
    repo_root.join("locks").join("quiesced.json")
}

/// How [`snapshot_volume`] reads a volume and what it records.
pub struct VolumeSnapshot<'a> {
    pub project: Option<&'a str>,
    pub via: Via,
    pub quiesce: QuiesceMode,
    pub run_id: Option<String>,
    /// The plan of the run the snapshot belongs to.
    pub run: Option<crate::run::RunPlan>,
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
    let mount = match opts.via {
        Via::Archive => false,
        Via::Auto => engine.volume_mountpoint_readable(vol),
        Via::Mount => {
            if !engine.volume_mountpoint_readable(vol) {
                return Err(Error::Usage(format!(
                    "--via mount: cannot read {} directly (run as root on the Docker host, or use --via archive)",
                    vol.mountpoint
                )));
            }
            true
        }
    };
    let containers = engine.containers_using_volume(&vol.name)?;
    let guard = engine.quiesce(&containers, opts.quiesce, &quiesce_state_file(&repo.root))?;
    let spec = SnapshotSpec {
        name,
        kind: SourceKind::Volume,
        origin: serde_json::json!({
            "volume": vol,
            "via": if mount { "mount" } else { "archive" },
        }),
        tags: opts.tags.clone(),
        run_id: opts.run_id.clone(),
        run: opts.run.clone(),
        consistency: Some(guard.consistency().to_string()),
        time: crate::ingest::SnapshotTime::Now,
        parent,
    };
    ingest::snapshot(repo, spec, progress, move |sink| {
        if mount {
            crate::source::dir::walk(Path::new(&vol.mountpoint), sink)?;
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
