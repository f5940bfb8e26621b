//! Volumes and the containers that use them.
//!
//! [`VolumeInfo`] is what a snapshot records about a volume, so that a restore on
//! another host can recreate it with the same driver, options and labels (the
//! Compose labels matter: without `com.docker.compose.project` and
//! `com.docker.compose.volume`, `docker compose up` refuses to adopt the
//! volume). It uses `BTreeMap`s so its serialisation is deterministic.
//!
//! Volume names come from the operator and bollard pastes them into URL paths
//! unescaped, so every entry point checks them first.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, Volume, VolumeCreateOptions};
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions, RemoveVolumeOptions};
use serde::{Deserialize, Serialize};

use super::{status_of, DockerError, Engine, HELPER_LABEL};

/// The label Docker Compose puts on every volume of a project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// A volume as recorded in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// e.g. `code-buddy_qdrant-data`.
    pub name: String,
    /// Usually `local`.
    pub driver: String,
    /// Driver options (`type`, `o`, `device` for a bind-backed local volume).
    pub driver_opts: BTreeMap<String, String>,
    /// Labels, including Compose's.
    pub labels: BTreeMap<String, String>,
    /// Where the engine's host keeps the data, e.g.
    /// `/var/lib/docker/volumes/code-buddy_qdrant-data/_data`. A path on the
    /// engine's host, which is not necessarily ours.
    pub mountpoint: String,
}

impl VolumeInfo {
    /// Whether the volume's data may be elsewhere than at its mountpoint on the
    /// engine's host: a volume of another driver than `local`, or a `local` one
    /// with driver options (`--opt type=none --opt o=bind --opt device=DIR`, NFS,
    /// tmpfs). Docker mounts such a volume on its mountpoint only while a
    /// container uses it; otherwise the directory there is empty or stale. Only a
    /// helper container, which mounts it, sees its data.
    pub fn data_outside_mountpoint(&self) -> bool {
        self.driver != "local" || !self.driver_opts.is_empty()
    }

    /// The host directory a bind-backed `local` volume shows (`o` lists `bind`,
    /// `device` is an absolute path), if it is one.
    pub fn bind_device(&self) -> Option<&Path> {
        let bind = self
            .driver_opts
            .get("o")
            .is_some_and(|o| o.split(',').any(|opt| opt.trim() == "bind"));
        let device = Path::new(self.driver_opts.get("device")?);
        (self.driver == "local" && bind && device.is_absolute()).then_some(device)
    }

    /// `driver local, type=none, o=bind, device=/srv/x`: how the volume keeps its
    /// data, for messages.
    pub fn describe_driver(&self) -> String {
        let mut s = format!("driver {}", self.driver);
        for (k, v) in &self.driver_opts {
            s.push_str(&format!(", {k}={v}"));
        }
        s
    }
}

impl From<Volume> for VolumeInfo {
    fn from(v: Volume) -> Self {
        VolumeInfo {
            name: v.name,
            driver: v.driver,
            driver_opts: v.options.into_iter().collect(),
            labels: v.labels.into_iter().collect(),
            mountpoint: v.mountpoint,
        }
    }
}

/// Which volume a name stands for right now: a volume removed and created again under
/// the same name has another creation time (to the second) or, when Docker made it
/// for a mount, no labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VolumeIdentity {
    /// `CreatedAt` as the engine reports it (RFC 3339).
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
}

/// The state of a container, as `docker ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// A state this build does not know (a newer engine).
    Unknown,
}

impl ContainerState {
    /// Parses Docker's spelling (`running`, `exited`, …).
    pub fn parse(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Unknown,
        }
    }

    /// Is it up: running, paused or restarting? Such a container uses its mounts
    /// now; a restore stops it (`--stop`) or refuses. Created and exited ones do not.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
        )
    }

    /// Could processes of the container be writing right now?
    pub fn may_write(self) -> bool {
        matches!(
            self,
            ContainerState::Running | ContainerState::Restarting | ContainerState::Unknown
        )
    }
}

impl From<Option<ContainerSummaryStateEnum>> for ContainerState {
    fn from(s: Option<ContainerSummaryStateEnum>) -> Self {
        match s {
            Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
            Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
            Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
            Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
            Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
            Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited,
            Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
            Some(ContainerSummaryStateEnum::EMPTY) | None => ContainerState::Unknown,
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Unknown => "unknown",
        };
        f.write_str(s)
    }
}

/// A container that mounts a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Full id.
    pub id: String,
    /// Name without Docker's leading `/`, e.g. `code-buddy-qdrant-1`.
    pub name: String,
    /// State when listed.
    pub state: ContainerState,
    /// Labels; `cbsnap.quiesce` chooses how it is quiesced.
    pub labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    pub(super) fn from_summary(c: ContainerSummary) -> Option<ContainerInfo> {
        let id = c.id?;
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.chars().take(12).collect());
        Some(ContainerInfo {
            id,
            name,
            state: c.state.into(),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
        })
    }
}

/// Rejects names that are not Docker volume names. Docker's own rule is
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; this is what keeps `/`, `?` and `..` out of
/// the URL paths bollard builds.
pub(super) fn check_volume_name(name: &str) -> Result<(), DockerError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(DockerError::InvalidVolumeName {
            name: name.to_string(),
        })
    }
}

impl Engine {
    /// The volumes of a Compose project (label
    /// `com.docker.compose.project=<project>`), sorted by name.
    pub fn list_project_volumes(&self, project: &str) -> Result<Vec<VolumeInfo>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{COMPOSE_PROJECT_LABEL}={project}")],
        )]);
        let options = ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .block_on(self.docker.list_volumes(Some(options)))
            .map_err(|e| self.err(format!("listing the volumes of project {project}"), e))?;
        let mut volumes: Vec<VolumeInfo> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(VolumeInfo::from)
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// The volume of that name, or `None` if there is none.
    pub fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>, DockerError> {
        check_volume_name(name)?;
        match self.block_on(self.docker.inspect_volume(name)) {
            Ok(v) => Ok(Some(v.into())),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.err(format!("inspecting volume {name}"), e)),
        }
    }

    /// The volume's identity, `None` if there is no such volume.
    pub(super) fn volume_identity(
        &self,
        name: &str,
    ) -> Result<Option<VolumeIdentity>, DockerError> {
        check_volume_name(name)?;
        match self.block_on(self.docker.inspect_volume(name)) {
            Ok(v) => Ok(Some(VolumeIdentity {
                created_at: v.created_at.unwrap_or_default(),
                labels: v.labels.into_iter().collect(),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.err(format!("inspecting volume {name}"), e)),
        }
    }

    /// Like [`Engine::inspect_volume`], but a missing volume is an error.
    pub fn require_volume(&self, name: &str) -> Result<VolumeInfo, DockerError> {
        self.inspect_volume(name)?
            .ok_or_else(|| DockerError::NoSuchVolume {
                name: name.to_string(),
            })
    }

    /// Creates a volume with the recorded driver, options and labels, and
    /// returns it as the engine now describes it (its mountpoint is new).
    ///
    /// Fails with [`DockerError::VolumeExists`] if the name is taken: Docker
    /// would silently return the existing volume with *its* options and labels.
    pub fn create_volume(&self, info: &VolumeInfo) -> Result<VolumeInfo, DockerError> {
        check_volume_name(&info.name)?;
        if self.inspect_volume(&info.name)?.is_some() {
            return Err(DockerError::VolumeExists {
                name: info.name.clone(),
            });
        }
        let options = VolumeCreateOptions {
            name: Some(info.name.clone()),
            driver: Some(info.driver.clone()),
            driver_opts: Some(info.driver_opts.clone().into_iter().collect()),
            labels: Some(info.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let v = self
            .block_on(self.docker.create_volume(options))
            .map_err(|e| self.err(format!("creating volume {}", info.name), e))?;
        Ok(v.into())
    }

    /// Removes a volume (and its data).
    pub fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        check_volume_name(name)?;
        let result = self.block_on(
            self.docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: false })),
        );
        match result {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(DockerError::NoSuchVolume {
                name: name.to_string(),
            }),
            Err(e) if status_of(&e) == Some(409) => {
                let users = self.containers_using_volume_all(name).unwrap_or_default();
                let containers = if users.is_empty() {
                    "(unknown)".to_string()
                } else {
                    users
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Err(DockerError::VolumeInUse {
                    name: name.to_string(),
                    containers,
                })
            }
            Err(e) => Err(self.err(format!("removing volume {name}"), e)),
        }
    }

    /// Every container, running or not, that mounts the volume, sorted by
    /// name. cbsnap's own helper containers are left out.
    pub fn containers_using_volume(&self, name: &str) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut all = self.containers_using_volume_all(name)?;
        all.retain(|c| !c.labels.contains_key(HELPER_LABEL));
        Ok(all)
    }

    pub(super) fn containers_using_volume_all(
        &self,
        name: &str,
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        check_volume_name(name)?;
        // The `volume` filter matches a volume name or a mount destination;
        // destinations start with `/`, names cannot, so there is no confusion.
        let list = self.list_all_containers(
            "volume",
            name,
            &format!("listing the containers using volume {name}"),
        )?;
        let mut containers: Vec<ContainerInfo> = list
            .into_iter()
            .filter_map(ContainerInfo::from_summary)
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    /// May cbsnap read the volume's files straight from its mountpoint
    /// (`--via mount`) instead of streaming a tar through the engine?
    ///
    /// Only if all of these hold: the volume keeps its data at its mountpoint
    /// (not [`VolumeInfo::data_outside_mountpoint`]: no driver options, driver
    /// `local`); cbsnap runs as root on the engine's host
    /// ([`Engine::runs_on_engine_host`]); and the mountpoint is an absolute path
    /// to a directory we can list.
    pub fn volume_mountpoint_readable(&self, volume: &VolumeInfo) -> bool {
        let path = Path::new(&volume.mountpoint);
        !volume.data_outside_mountpoint()
            && path.is_absolute()
            && path.is_dir()
            && std::fs::read_dir(path).is_ok()
            && self.runs_on_engine_host()
    }

    /// Whether this process is root on the engine's host, so that the engine's
    /// paths are ours and every file is readable: the engine is reached over a unix
    /// socket and reports our host name (not a remote engine, not a socket mounted
    /// into a container, not Docker Desktop's VM), and we are root (volume files
    /// belong to arbitrary uids).
    pub fn runs_on_engine_host(&self) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let local_socket = self.host.starts_with("unix://");
        // The host name last: its `/info` may still be on its way.
        root && local_socket && self.daemon_name() == Some(crate::host::hostname().as_str())
    }
}

impl Engine {
    /// Every container (running or not) matching one `docker ps` filter.
    pub(super) fn list_all_containers(
        &self,
        filter: &str,
        value: &str,
        action: &str,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let filters = HashMap::from([(filter.to_string(), vec![value.to_string()])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.block_on(self.docker.list_containers(Some(options)))
            .map_err(|e| self.err(action, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_that_could_escape_the_url_are_rejected() {
        for bad in ["", "../x", "a/b", "x?force=1", ".hidden", "-x", "a b", "é"] {
            assert!(
                matches!(
                    check_volume_name(bad),
                    Err(DockerError::InvalidVolumeName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for good in ["code-buddy_qdrant-data", "a", "v1.2", "0abc"] {
            assert!(check_volume_name(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn volume_info_serialises_deterministically() {
        let info = VolumeInfo {
            name: "code-buddy_qdrant-data".into(),
            driver: "local".into(),
            driver_opts: BTreeMap::from([
                ("type".into(), "none".into()),
                ("o".into(), "bind".into()),
            ]),
            labels: BTreeMap::from([(COMPOSE_PROJECT_LABEL.into(), "code-buddy".into())]),
            mountpoint: "/var/lib/docker/volumes/code-buddy_qdrant-data/_data".into(),
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains(r#""driver_opts":{"o":"bind","type":"none"}"#));
        let back: VolumeInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
    }

    /// Issue: a bind-backed volume was walked at its empty `_data` directory.
    #[test]
    fn volumes_with_driver_options_keep_their_data_elsewhere() {
        let mut v = VolumeInfo {
            name: "v".into(),
            driver: "local".into(),
            driver_opts: BTreeMap::new(),
            labels: BTreeMap::new(),
            mountpoint: "/var/lib/docker/volumes/v/_data".into(),
        };
        assert!(!v.data_outside_mountpoint());
        assert_eq!(v.bind_device(), None);
        v.driver_opts = BTreeMap::from([
            ("type".into(), "none".into()),
            ("o".into(), "bind".into()),
            ("device".into(), "/srv/data".into()),
        ]);
        assert!(v.data_outside_mountpoint());
        assert_eq!(v.bind_device(), Some(Path::new("/srv/data")));
        assert_eq!(
            v.describe_driver(),
            "driver local, device=/srv/data, o=bind, type=none"
        );
        v.driver_opts = BTreeMap::from([
            ("type".into(), "nfs".into()),
            ("o".into(), "addr=10.0.0.1,rw".into()),
            ("device".into(), ":/export".into()),
        ]);
        assert!(v.data_outside_mountpoint());
        assert_eq!(v.bind_device(), None, "an NFS export is no host directory");
        v.driver_opts.clear();
        v.driver = "rexray".into();
        assert!(v.data_outside_mountpoint());
    }

    #[test]
    fn container_states_parse_and_print_alike() {
        for s in [
            "created",
            "running",
            "paused",
            "restarting",
            "removing",
            "exited",
            "dead",
        ] {
            assert_eq!(ContainerState::parse(s).to_string(), s);
        }
        assert_eq!(
            ContainerState::parse("hibernating"),
            ContainerState::Unknown
        );
    }
}
