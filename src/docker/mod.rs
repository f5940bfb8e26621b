//! The Docker engine layer: a blocking façade over [bollard] for the rest of cbsnap.
//!
//! The engine core is synchronous (plain threads and rayon), while bollard is
//! async. Rather than letting tokio leak into the core, an [`Engine`] owns a small
//! tokio runtime and every public method blocks on it. Streams (the tar of a
//! volume) are pumped by a task on that runtime through a bounded channel, so a
//! volume of many GB never sits in memory. Do not call these methods from inside
//! an async context: they block.
//!
//! What is here, by file:
//!
//! - `mod.rs`: [`Engine::connect`] / [`Engine::connect_to`] and [`DockerError`],
//!   whose messages say what the operator should do next.
//! - `volume.rs`: [`VolumeInfo`] (recorded in snapshots), [`Engine::list_project_volumes`],
//!   [`Engine::inspect_volume`], [`Engine::create_volume`], [`Engine::remove_volume`],
//!   [`Engine::containers_using_volume`], [`Engine::volume_mountpoint_readable`]
//!   (may `--via mount` read `/var/lib/docker/volumes/<v>/_data` directly? never
//!   for a volume with driver options, [`VolumeInfo::data_outside_mountpoint`]) and
//!   [`Engine::runs_on_engine_host`].
//! - `bind.rs`: [`Engine::containers_using_dir`], the running containers that
//!   use a host directory (a bind mount, or a volume's directory), and
//!   [`Engine::connect_if_present`] for callers that work without an engine.
//! - `quiesce.rs`: [`Engine::quiesce`] returns a [`Quiesce`] guard that pauses or
//!   stops the running containers of a volume and resumes them in reverse order on
//!   [`Quiesce::resume`] or drop; [`Engine::with_quiesced`] wraps a closure in one;
//!   [`Engine::recover_quiesced`] undoes what a SIGKILLed run left behind. The
//!   snapshot records the [`Consistency`] obtained. Paused and restarting
//!   containers are stopped too when stopping is asked for, and returned to their
//!   state; a `docker run --rm` container is never stopped
//!   ([`Engine::auto_removes`], [`DockerError::AutoRemove`]).
//! - `state.rs`: the quiesce state file (`<repo>/locks/quiesced.json`), written
//!   atomically before any container is touched.
//! - `signals.rs`: the process-wide registry of paused containers and helper
//!   containers, and the SIGINT/SIGTERM/SIGHUP handler that undoes them.
//! - `undo.rs`: resuming a container and removing a helper, the leaf the guards
//!   and the signal handler share.
//! - [`notice`]: what this layer tells the program when no caller is there (a
//!   guard's failed clean-up, a signal), through the handler the program installs.
//! - `exec.rs`: [`Engine::exec`] runs a hook command inside a container.
//! - `archive.rs`: the helper image ([`Engine::ensure_helper_image`]) and
//!   [`Engine::read_volume_tar`] (a [`VolumeTarReader`]) and
//!   [`Engine::write_volume_tar`], both through helper containers that are
//!   created, never started, and always removed.
//!
//! # Tar entry names
//!
//! [`Engine::read_volume_tar`] asks Docker for the path `/volume/.` of a helper
//! container, and Docker (20.10, API 1.41) then names every entry relative to the
//! volume root with a `./` prefix: the root itself is `./` (carrying the mode,
//! owner and mtime of the volume's top directory), then `./a.txt`, `./sub/`,
//! `./sub/deep/f`. Asking for `/volume` instead would give `volume/`,
//! `volume/a.txt`, …. The stream is passed through untouched; callers strip the
//! prefix with [`volume_entry_path`]. [`Engine::write_volume_tar`] extracts into
//! `/volume`, so a tar with the same `./…` names (or bare relative names) restores
//! to the same place: the two calls round-trip. Docker ignores the `./` entry on
//! upload, so `write_volume_tar` applies it to the volume root itself when it is
//! the stream's first header. This is the same layout as the `tar -C /data .`
//! backups operators make today.
//!
//! Quiesce before reading if the copy must be consistent: the archive API does
//! not stop anyone from writing.
//!
//! # Signals
//!
//! The first [`Quiesce`] or helper container of the process installs a handler
//! for SIGINT, SIGTERM and SIGHUP (signal-hook, on its own thread). On a signal it
//! resumes every container this process paused or stopped (newest first), removes
//! the helper containers, updates the state files, and has the program's
//! [`notice`] handler end the process (`cbsnap` exits with 128 + signal: 130 for
//! Ctrl-C, 143 for SIGTERM). A second signal during that clean-up ends it at
//! once; the state file then lets the next run finish the job. Once installed the
//! handler stays for the life of the process, and it ends the process even when
//! nothing is quiesced, as the default action would.
//!
//! [bollard]: https://docs.rs/bollard/0.19

mod archive;
mod bind;
mod exec;
pub mod notice;
mod quiesce;
mod signals;
mod state;
mod undo;
mod volume;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

pub use archive::{volume_entry_path, VolumeTarReader, HELPER_IMAGE, HELPER_LABEL, VOLUME_LABEL};
pub use exec::{ExecOutput, OUTPUT_KEEP};
pub use quiesce::{
    by_hand, Consistency, Quiesce, QuiesceMode, Recovery, UnknownQuiesceMode, QUIESCE_LABEL,
};
pub use state::{held, pending_recovery, Hold, QuiesceAction, QuiesceRecord};
pub use undo::QuiescedContainer;
pub use volume::{ContainerInfo, ContainerState, VolumeInfo, COMPOSE_PROJECT_LABEL};

/// Where Docker listens when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How long connecting (one `/_ping`) and the `/info` asked with it may take: a
/// daemon that does not answer within this is as good as down for a backup tool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Per-request timeout of ordinary calls (bollard's default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Timeout of uploads. bollard's timeout covers the wait for the response
/// headers (a download's body is not timed), and for an upload Docker sends
/// them only after it has extracted the whole tar: a multi-GB restore must not
/// be cut at 2 minutes.
const STREAM_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Errors of the Docker layer. Each message names what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// Nothing answers at the engine's address.
    #[error(
        "Cannot reach the Docker engine at {host}: is it running? Start it with \
         `systemctl start docker` (without systemd: `service docker start`, or `dockerd &`), \
         or point DOCKER_HOST at the engine's socket. ({detail})"
    )]
    Unreachable { host: String, detail: String },

    /// The socket exists but we may not open it.
    #[error(
        "Permission denied on the Docker socket {host}: join the docker group \
         (`sudo usermod -aG docker $USER`, then log in again) or run cbsnap as root"
    )]
    PermissionDenied { host: String },

    /// `DOCKER_HOST` has a scheme this build cannot speak.
    #[error(
        "DOCKER_HOST={host} is not supported: use unix:///path/to/docker.sock or \
         tcp://host:port"
    )]
    UnsupportedHost { host: String },

    /// The engine accepted the connection but did not answer in time.
    #[error(
        "The Docker engine at {host} did not answer within {secs} s while {action}; \
         check `docker info` and retry"
    )]
    Timeout {
        host: String,
        action: String,
        secs: u64,
    },

    /// A command run in a container (a hook) did not end within its limit. The exec
    /// API cannot stop it, so it may still run there.
    #[error(
        "`{command}` in container {container} did not end within {secs} s and may still run there; \
         raise the limit with the container label `cbsnap.exec-timeout` (such as 2h) if it needs longer"
    )]
    ExecTimeout {
        container: String,
        command: String,
        secs: u64,
    },

    /// No volume of that name.
    #[error("no volume named {name}; `docker volume ls` lists them")]
    NoSuchVolume { name: String },

    /// The volume was removed (or removed and created again) between cbsnap's look
    /// at it and the helper container's mount of it (issue 7, case 3). Mounting a
    /// missing volume makes Docker create an empty one; cbsnap removes that again
    /// (`removed_empty`) and saves nothing of the source.
    #[error(
        "volume {name} was removed or replaced while cbsnap started reading it; nothing of it was saved{}. Check who removed it (`docker volume ls`), then snapshot it again",
        if *.removed_empty { " (the empty volume Docker created in its place was removed)" } else { "" }
    )]
    VolumeChanged { name: String, removed_empty: bool },

    /// A name Docker would never accept (and that must not reach a URL path).
    #[error("{name:?} is not a valid Docker volume name (they match [a-zA-Z0-9][a-zA-Z0-9_.-]+)")]
    InvalidVolumeName { name: String },

    /// `create_volume` of a name that exists.
    #[error(
        "a volume named {name} already exists; restore into it, or remove it first \
         with `docker volume rm {name}`"
    )]
    VolumeExists { name: String },

    /// `remove_volume` of a volume some container still mounts.
    #[error(
        "volume {name} is in use by container(s) {containers}; remove them first \
         (`docker ps -a --filter volume={name}` lists them)"
    )]
    VolumeInUse { name: String, containers: String },

    /// A `cbsnap.quiesce` label with a value we do not know.
    #[error(
        "container {container} has label cbsnap.quiesce={value:?}; use stop, pause \
         or none"
    )]
    BadQuiesceLabel { container: String, value: String },

    /// Pausing or stopping a container failed; what was already quiesced has
    /// been resumed.
    #[error(
        "could not {action} container {container} before reading its volume: \
         {source}; choose another quiesce mode, or label the container \
         cbsnap.quiesce=stop|pause|none"
    )]
    Quiesce {
        container: String,
        action: &'static str,
        source: BollardError,
    },

    /// Unpausing or restarting a container failed. Its entry stays in the state
    /// file, so the next run retries.
    #[error("could not resume container {container}: {source}; run `{hint}` by hand")]
    Resume {
        container: String,
        /// The command line that does it ([`QuiesceAction::undo_hint`]).
        hint: String,
        source: BollardError,
    },

    /// A container that must be stopped was started with `docker run --rm`
    /// (`HostConfig.AutoRemove`): Docker would delete it when it stops. Nothing was
    /// paused or stopped.
    #[error(
        "container {container} was started with `docker run --rm`: stopping it would make \
         Docker delete it, so cbsnap changed nothing. Stop it yourself (`docker stop \
         {container}`, which removes it) and run it again afterwards, or run it without \
         --rm (with a restart policy, or through `docker compose up`)"
    )]
    AutoRemove { container: String },

    /// Importing the empty helper image failed.
    #[error(
        "could not create the helper image cbsnap-helper:1: {detail}; check \
         `docker info` and free disk space under Docker's root directory"
    )]
    HelperImage { detail: String },

    /// The tar stream stopped without Docker saying it was complete.
    #[error(
        "the tar stream of volume {volume} ended before Docker finished sending it; \
         retry the backup"
    )]
    TruncatedStream { volume: String },

    /// The quiesce state file is unreadable or could not be written.
    #[error(
        "quiesce state file {path}: {reason}; containers listed in it may still be \
         paused or stopped: check `docker ps -a --filter status=paused`"
    )]
    StateFile { path: PathBuf, reason: String },

    /// Any other answer from Docker.
    #[error("Docker failed while {action}: {source}")]
    Api {
        action: String,
        source: BollardError,
    },

    /// Local I/O while talking to Docker (reading the tar to restore, …).
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },

    /// The tokio runtime could not be built (out of threads or file descriptors).
    #[error("could not start the runtime that talks to Docker: {0}")]
    Runtime(std::io::Error),

    /// signal-hook refused to install the handler.
    #[error("could not install the handler that resumes paused containers on Ctrl-C: {0}")]
    SignalHandler(std::io::Error),
}

/// A connection to one Docker engine, with the runtime that drives it.
///
/// Cheap to clone; `Send + Sync`, so one engine can serve several threads.
#[derive(Clone)]
pub struct Engine {
    rt: Arc<tokio::runtime::Runtime>,
    docker: Docker,
    host: String,
    /// The daemon's host name from `/info`, to tell a local engine from a
    /// forwarded one (see [`Engine::volume_mountpoint_readable`]).
    daemon_name: Arc<DaemonName>,
}

/// The daemon's host name: asked in the background from the moment we connect
/// (for `/info` Docker 20.10 runs `runc --version` and `docker-init --version`:
/// 8 ms warm, up to 94 ms cold, measured), answered once when first needed.
#[derive(Default)]
struct DaemonName {
    asked: std::sync::Mutex<Option<tokio::task::JoinHandle<Option<String>>>>,
    name: std::sync::OnceLock<Option<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .field("daemon_name", &self.daemon_name.name.get())
            .finish()
    }
}

impl Engine {
    /// Connects to the engine named by `DOCKER_HOST` (default
    /// `unix:///var/run/docker.sock`) as [`Engine::connect_to`] does.
    pub fn connect() -> Result<Engine, DockerError> {
        match std::env::var("DOCKER_HOST") {
            // The docker CLI treats an empty DOCKER_HOST as unset; so do we.
            Ok(host) if !host.is_empty() => Engine::connect_to(&host),
            _ => Engine::connect_to(DEFAULT_DOCKER_HOST),
        }
    }

    /// Connects to an explicit address, `unix:///path` or `tcp://host:port`,
    /// ignoring `DOCKER_HOST`, and pings it: one `GET /_ping`, the cheapest
    /// request an engine answers.
    ///
    /// No API version is negotiated: bollard 0.19 sends every request without a
    /// `/vX.Y` prefix (its `Uri::parse` joins the absolute path over the prefix),
    /// so the engine answers each at its own API version whatever the client
    /// says. Asking `/version` first, as `negotiate_version` does, changed nothing
    /// on the wire and cost 6–70 ms (Docker 20.10 runs `runc --version` and
    /// `docker-init --version` for it; docs/BENCHMARKS.md).
    ///
    /// Errors: [`DockerError::UnsupportedHost`] for another scheme;
    /// [`DockerError::Unreachable`], [`DockerError::PermissionDenied`] or
    /// [`DockerError::Timeout`] (after [`CONNECT_TIMEOUT`]) when the daemon does
    /// not answer; [`DockerError::Api`] for an error answer.
    pub fn connect_to(host: &str) -> Result<Engine, DockerError> {
        let timeout = REQUEST_TIMEOUT.as_secs();
        let version = bollard::API_DEFAULT_VERSION;
        let docker = if host.starts_with("unix://") {
            Docker::connect_with_unix(host, timeout, version)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(host, timeout, version)
        } else {
            return Err(DockerError::UnsupportedHost {
                host: host.to_string(),
            });
        };
        let docker = docker.map_err(|e| classify(host, "connecting", e))?;
        let rt = runtime()?;
        rt.block_on(docker.clone().with_timeout(CONNECT_TIMEOUT).ping())
            .map_err(|e| match classify(host, "pinging the engine", e) {
                DockerError::Timeout { host, action, .. } => DockerError::Timeout {
                    host,
                    action,
                    secs: CONNECT_TIMEOUT.as_secs(),
                },
                other => other,
            })?;
        let info = docker.clone().with_timeout(CONNECT_TIMEOUT);
        let asked = rt.spawn(async move { info.info().await.ok().and_then(|i| i.name) });
        Ok(Engine {
            rt,
            docker,
            host: host.to_string(),
            daemon_name: Arc::new(DaemonName {
                asked: std::sync::Mutex::new(Some(asked)),
                name: Default::default(),
            }),
        })
    }

    /// The daemon's host name from its `/info` (asked when we connected); `None`
    /// when `/info` failed or did not parse (an old daemon: only the `--via mount`
    /// shortcut is lost, see [`Engine::volume_mountpoint_readable`]).
    fn daemon_name(&self) -> Option<&str> {
        let d = &self.daemon_name;
        d.name
            .get_or_init(|| {
                let asked = d.asked.lock().unwrap_or_else(|e| e.into_inner()).take();
                asked.and_then(|h| self.block_on(h).ok().flatten())
            })
            .as_deref()
    }

    /// The address this engine was reached at, e.g. `unix:///var/run/docker.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs a future to completion on the engine's runtime.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// Maps a bollard error of `action` to a [`DockerError`].
    fn err(&self, action: impl Into<String>, e: BollardError) -> DockerError {
        classify(&self.host, action, e)
    }

    /// The client with the long timeout that uploads need.
    fn upload_client(&self) -> Docker {
        self.docker.clone().with_timeout(STREAM_TIMEOUT)
    }
}

fn runtime() -> Result<Arc<tokio::runtime::Runtime>, DockerError> {
    // Two workers: they only move bytes between sockets and channels, and
    // reading one volume while restoring another must not stall either.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cbsnap-docker")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(DockerError::Runtime)
}

/// Turns a bollard error into a [`DockerError`], recognising the failures an
/// operator can fix (daemon down, socket permissions, timeouts).
fn classify(host: &str, action: impl Into<String>, e: BollardError) -> DockerError {
    let action = action.into();
    match &e {
        BollardError::SocketNotFoundError(path) => {
            return DockerError::Unreachable {
                host: host.to_string(),
                detail: format!("no socket at {path}"),
            }
        }
        BollardError::UnsupportedURISchemeError { uri } => {
            return DockerError::UnsupportedHost { host: uri.clone() }
        }
        BollardError::RequestTimeoutError => {
            return DockerError::Timeout {
                host: host.to_string(),
                action,
                secs: REQUEST_TIMEOUT.as_secs(),
            }
        }
        _ => {}
    }
    // `IOError` is `#[error(transparent)]`: its source() skips the io::Error.
    let io = match &e {
        BollardError::IOError { err } => Some(err),
        other => io_cause(other),
    };
    if let Some(io) = io {
        use std::io::ErrorKind;
        match io.kind() {
            ErrorKind::PermissionDenied => {
                return DockerError::PermissionDenied {
                    host: host.to_string(),
                }
            }
            ErrorKind::ConnectionRefused | ErrorKind::NotFound | ErrorKind::AddrNotAvailable => {
                return DockerError::Unreachable {
                    host: host.to_string(),
                    detail: io.to_string(),
                }
            }
            _ => {}
        }
    }
    DockerError::Api { action, source: e }
}

/// The innermost `io::Error` in an error's source chain, if any: hyper wraps the
/// connect error of the socket several layers deep.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut found = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            found = Some(io);
        }
        cur = err.source();
    }
    found
}

/// The HTTP status of an error answer from the daemon, if it is one.
fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn permission_denied_on_the_socket_says_what_to_do() {
        let e = BollardError::IOError {
            err: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let err = classify("unix:///var/run/docker.sock", "pinging", e);
        assert!(matches!(err, DockerError::PermissionDenied { .. }));
        assert!(err.to_string().contains("docker group"));
        assert!(err.to_string().contains("run cbsnap as root"));
    }

    #[test]
    fn refused_connection_is_unreachable() {
        let e = BollardError::IOError {
            err: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let err = classify("unix:///run/docker.sock", "pinging", e);
        assert!(matches!(err, DockerError::Unreachable { .. }));
        assert!(err.to_string().contains("systemctl start docker"));
    }

    #[test]
    fn server_errors_keep_the_action() {
        let e = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        };
        assert_eq!(status_of(&e), Some(500));
        let err = classify("unix:///x", "listing volumes", e);
        assert!(matches!(err, DockerError::Api { .. }));
        assert!(err.to_string().contains("listing volumes"));
    }

    #[test]
    fn unsupported_scheme_is_refused_before_any_io() {
        let err = Engine::connect_to("ssh://somewhere").unwrap_err();
        assert!(matches!(err, DockerError::UnsupportedHost { .. }));
    }
}
