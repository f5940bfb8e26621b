//! Host directories that running containers use: through a bind mount
//! (`-v /srv/workspace:/ws`), or as a volume's directory on this host
//! (`/var/lib/docker/volumes/<v>/_data`).
//!
//! A restore into a host directory rewrites what such a container sees, as a
//! restore into its volume would; it is held to the same rule (refused unless the
//! containers are stopped for it). Docker reports each mount's host path in the
//! container list (`Mounts[].Source`: the bind source, or the volume's
//! mountpoint), so one `GET /containers/json` answers for every directory.
//!
//! A directory is used by a mount when one holds the other: the mount's source is
//! the directory, lies inside it (a restore with `--delete` would replace it), or
//! contains it (the container sees the files written). Both paths are compared
//! with their symlinks resolved, as far as they exist, so `/srv/ws` through a
//! symlink and its target are one directory.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::ListContainersOptions;

use super::{ContainerInfo, DockerError, Engine, DEFAULT_DOCKER_HOST, HELPER_LABEL};

impl Engine {
    /// Connects to the engine as [`Engine::connect`] does, or `Ok(None)` when this
    /// host has no engine to ask: `DOCKER_HOST` (or the default) names a Unix
    /// socket that does not exist, or nothing answers there. For callers that work
    /// without Docker and only ask it whether containers are in the way (a restore
    /// into a host directory): a host without an engine runs no containers. No
    /// request is made when the socket is absent.
    pub fn connect_if_present() -> Result<Option<Engine>, DockerError> {
        let host = match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => h,
            _ => DEFAULT_DOCKER_HOST.to_string(),
        };
        if let Some(path) = host.strip_prefix("unix://") {
            if !Path::new(path).exists() {
                return Ok(None);
            }
        }
        match Engine::connect_to(&host) {
            Ok(e) => Ok(Some(e)),
            Err(DockerError::Unreachable { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the engine's host paths (bind sources, volume mountpoints) are paths
    /// of this host: it is reached over a Unix socket, or reports our host name.
    pub fn shares_our_paths(&self) -> bool {
        self.host.starts_with("unix://")
            || self.daemon_name() == Some(crate::host::hostname().as_str())
    }

    /// The running, paused or restarting containers with a mount (a bind mount, or
    /// a volume at its directory on the engine's host) whose host path is `dir`,
    /// lies inside it or contains it; sorted by name, cbsnap's helpers left out.
    /// Empty when the engine's paths are not ours ([`Engine::shares_our_paths`]).
    pub fn containers_using_dir(&self, dir: &Path) -> Result<Vec<ContainerInfo>, DockerError> {
        if !self.shares_our_paths() {
            return Ok(Vec::new());
        }
        let dir = crate::fsutil::resolved(dir);
        // Without `all`, Docker lists running containers, paused and restarting
        // ones included; the filter says so rather than rely on it.
        let filters = HashMap::from([(
            "status".to_string(),
            vec![
                "running".to_string(),
                "paused".to_string(),
                "restarting".to_string(),
            ],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .block_on(self.docker.list_containers(Some(options)))
            .map_err(|e| {
                self.err(
                    format!("listing the containers that use {}", dir.display()),
                    e,
                )
            })?;
        let mut found: Vec<ContainerInfo> = list
            .into_iter()
            .filter(|c| {
                c.mounts.iter().flatten().any(|m| {
                    let Some(s) = m.source.as_deref().filter(|s| !s.is_empty()) else {
                        return false;
                    };
                    uses(
                        &crate::fsutil::resolved(Path::new(s)),
                        m.rw != Some(false),
                        &dir,
                    )
                })
            })
            .filter_map(ContainerInfo::from_summary)
            .filter(|c| !c.labels.contains_key(HELPER_LABEL))
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

/// Whether a container mounting the resolved host path `source` (read-write when
/// `rw`) uses the resolved directory `dir`: it mounts `dir` or a part of it, so it
/// reads or writes what a restore writes; or it mounts a directory holding `dir`
/// read-write. A read-only mount holding it (a monitoring agent's `/:/rootfs:ro`)
/// writes nothing there, and would otherwise hold every directory of the host.
fn uses(source: &Path, rw: bool, dir: &Path) -> bool {
    source.starts_with(dir) || (rw && dir.starts_with(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_used_by_mounts_of_it_of_its_parts_and_rw_ones_holding_it() {
        let ws = Path::new("/srv/stack/workspace");
        for rw in [true, false] {
            assert!(uses(ws, rw, ws));
            assert!(uses(Path::new("/srv/stack/workspace/src"), rw, ws));
            assert!(!uses(Path::new("/srv/stack/workspace2"), rw, ws));
            assert!(!uses(Path::new("/srv/stack/other"), rw, ws));
        }
        assert!(uses(Path::new("/srv/stack"), true, ws));
        assert!(uses(Path::new("/"), true, ws));
        // `/:/rootfs:ro`: writes nothing to the directory.
        assert!(!uses(Path::new("/"), false, ws));
        assert!(!uses(Path::new("/srv/stack"), false, ws));
    }
}
