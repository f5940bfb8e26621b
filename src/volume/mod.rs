//! Docker volumes, the use case: everything cbsnap knows about a volume beyond the
//! engine's API. Snapshot one ([`snapshot`]: quiesce its containers, read it as a
//! directory or a tar stream, commit) and restore one ([`restore`]: create it as
//! recorded, stop its users, write it, start them). This module owns the words both
//! directions share: how a volume is read or written ([`Via`]), a volume's source
//! name ([`source_name`], [`find_volume`]), the volume a snapshot recorded
//! ([`recorded_volume`]) and where a repository keeps its quiesce state
//! ([`quiesce_state_file`], [`recover`]).
//!
//! It sits above the pipeline (`ingest`), the restore writers (`restore`) and the
//! engine façade (`docker`), and drives them; the sources below it only yield
//! entries. `run` builds the nightly `snapshot --all` and `restore --all` on it.

pub mod restore;
pub mod snapshot;

use std::path::{Path, PathBuf};

use crate::docker::{ContainerInfo, Engine, VolumeInfo};
use crate::error::{Error, Result};
use crate::snapshot::{Snapshot, SourceKind};

/// Resume what the quiesce state file of the repository at `repo_root` lists for
/// dead cbsnap processes, and remove their helper containers. Unless `always`,
/// Docker is asked only when the file lists such a container (so commands that
/// open a repository need no engine otherwise). Returns what was resumed.
pub fn recover(repo_root: &Path, always: bool) -> Result<crate::docker::Recovery> {
    let state = quiesce_state_file(repo_root);
    if !always && !crate::docker::pending_recovery(&state)? {
        return Ok(crate::docker::Recovery::default());
    }
    let engine = Engine::connect()?;
    Ok(engine.recover_quiesced(&state)?)
}

/// How to read a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `mount` when possible, else `archive` (always for a volume with driver
    /// options, whose data is not at its mountpoint).
    Auto,
    /// Through a helper container and Docker's archive API.
    Archive,
    /// Walk the volume's directory on this host (root on the engine's host only;
    /// refused for a volume with driver options).
    Mount,
}

/// Why `--via mount` cannot be used for `vol` (the mountpoint is not where its data
/// is, or this process cannot use it), as the [`Error::Usage`] to return.
pub fn via_mount_refused(vol: &VolumeInfo) -> Error {
    if vol.data_outside_mountpoint() {
        return Error::Usage(format!(
            "--via mount: volume {} keeps its data outside its mountpoint {} ({}): Docker mounts it there only while a container uses it, so that directory may be empty or stale. Use --via archive (or auto), which mounts it in a helper container",
            vol.name,
            vol.mountpoint,
            vol.describe_driver()
        ));
    }
    Error::Usage(format!(
        "--via mount: cannot use {} directly (run as root on the Docker host, or use --via archive)",
        vol.mountpoint
    ))
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

/// The volume a snapshot was taken from, as recorded.
pub fn recorded_volume(snap: &Snapshot) -> Option<VolumeInfo> {
    if snap.kind != SourceKind::Volume {
        return None;
    }
    serde_json::from_value(snap.origin.get("volume")?.clone()).ok()
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

/// `/run/lock/cbsnap-volume-<volume><suffix>` (else that file in the temporary
/// directory): where this host keeps what it knows of one volume across processes
/// and repositories ([`VolumeLock`], [`held_in`]).
fn host_file(volume: &str, suffix: &str) -> PathBuf {
    let dir = [PathBuf::from("/run/lock"), std::env::temp_dir()]
        .into_iter()
        .find(|d| rustix::fs::access(d, rustix::fs::Access::WRITE_OK).is_ok())
        .unwrap_or_else(std::env::temp_dir);
    // Docker's names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else (a typo
    // Docker refuses later) must not reach outside `dir`.
    let file_name: String = volume
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    dir.join(format!("cbsnap-volume-{file_name}{suffix}"))
}

/// The quiesce state file ([`quiesce_state_file`]) of the repository that the last
/// restore into `volume` on this host used, while that restore may have left its
/// containers stopped (held): a restore of the volume from another repository (a
/// mirror, the remote copy of a lost local repository) takes them over from there
/// and starts them once it finishes, and a snapshot into any repository sees that
/// the volume is half restored. Kept in `/run/lock/cbsnap-volume-<volume>.held`
/// (one absolute path, UTF-8), so it is gone after a reboot: the repository's own
/// state file still holds the containers then. `None` when no such file, or no
/// restore left one. The file named may be gone (its repository moved or lost):
/// callers ask.
pub fn held_in(volume: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(host_file(volume, ".held")).ok()?;
    let path = PathBuf::from(text.trim_end_matches('\n'));
    path.is_absolute().then_some(path)
}

/// The containers that use volume `info`: those that mount it by name, in any
/// state, and the running, paused or restarting ones that bind-mount its directory on
/// this host (its mountpoint, or the device directory of a bind-backed volume), a
/// directory in it, or one holding it read-write
/// ([`Engine::containers_using_dir`]): a restore writes under all of them.
///
/// Errors: those of asking the engine.
pub fn users(engine: &Engine, info: &VolumeInfo) -> Result<Vec<ContainerInfo>> {
    let mut users = engine.containers_using_volume(&info.name)?;
    let mut dirs = Vec::new();
    if !info.mountpoint.is_empty() {
        dirs.push(PathBuf::from(&info.mountpoint));
    }
    dirs.extend(info.bind_device().map(Path::to_path_buf));
    for dir in dirs {
        for c in engine.containers_using_dir(&dir)? {
            if !users.iter().any(|u| u.id == c.id) {
                users.push(c);
            }
        }
    }
    Ok(users)
}

/// Stop `each` for a restore of `hold.target` into `volumes`
/// ([`Engine::quiesce_for_restore`], with the quiesce state file of the repository at
/// `repo_root`), taking over the containers an unfinished restore of the same target
/// left held: in this repository, or in the one [`held_in`] names for a volume (this
/// repository is its mirror, finishing that restore). Then records this repository
/// for each volume ([`set_held_in`]). Returns the guard, and the state files named
/// for a volume but gone (their repository moved or lost), whose holds could not be
/// taken over.
///
/// Errors: those of [`Engine::quiesce_for_restore`].
pub fn quiesce_for_restore(
    engine: &Engine,
    repo_root: &Path,
    each: &[(&ContainerInfo, crate::docker::QuiesceMode)],
    hold: crate::docker::Hold,
    volumes: &[&str],
) -> Result<(crate::docker::Quiesce, Vec<PathBuf>)> {
    let ours = quiesce_state_file(repo_root);
    let same = |a: &Path, b: &Path| crate::fsutil::resolved(a) == crate::fsutil::resolved(b);
    let (mut elsewhere, mut gone): (Vec<PathBuf>, Vec<PathBuf>) = (Vec::new(), Vec::new());
    for p in volumes.iter().filter_map(|v| held_in(v)) {
        if same(&p, &ours) || elsewhere.iter().chain(&gone).any(|e| same(e, &p)) {
            continue;
        }
        if p.exists() {
            elsewhere.push(p);
        } else {
            gone.push(p);
        }
    }
    let target = hold.target.clone();
    let guard = engine.quiesce_for_restore(
        each,
        &ours,
        hold,
        &|r| r.hold.as_ref().is_some_and(|h| h.target == target),
        &elsewhere,
    )?;
    for v in volumes {
        set_held_in(v, &ours);
    }
    Ok((guard, gone))
}

/// The users of a volume that are stopped (exited or created).
pub fn stopped(users: &[ContainerInfo]) -> Vec<ContainerInfo> {
    users.iter().filter(|c| !c.state.is_up()).cloned().collect()
}

/// Record that restores into `volume` keep their holds in `state_file` ([`held_in`]),
/// replacing what was recorded. A file that cannot be written is named in a warning:
/// only a restore from another repository misses the holds then.
pub fn set_held_in(volume: &str, state_file: &Path) {
    let path = host_file(volume, ".held");
    let state_file = std::path::absolute(state_file).unwrap_or_else(|_| state_file.into());
    let mut text = state_file.as_os_str().as_encoded_bytes().to_vec();
    text.push(b'\n');
    if let Err(e) = crate::fsutil::write_atomic(&path, &text) {
        crate::warn::emit(crate::warn::Warning::Line(format!(
            "cannot record where volume {volume}'s restore keeps the containers it stops ({}: {e}); if it does not finish, finish it from the same repository",
            path.display()
        )));
    }
}

/// Forget [`held_in`] for `volume` once `state_file` holds none of its containers
/// (its records of `users`, or of the target `volume <volume>`): the restore into it
/// finished.
pub fn clear_held_in(volume: &str, state_file: &Path, users: &[ContainerInfo]) {
    if held_volume(state_file, volume, users).is_some() {
        return;
    }
    let _ = std::fs::remove_file(host_file(volume, ".held"));
}

/// A held record ([`crate::docker::held`]) of `state_file` that keeps `volume`
/// half restored: one of the restore of `volume <volume>`, or of a container in
/// `users` (a `restore --all`). `None` also when the file cannot be read.
pub fn held_volume(
    state_file: &Path,
    volume: &str,
    users: &[ContainerInfo],
) -> Option<crate::docker::QuiesceRecord> {
    let target = format!("volume {volume}");
    crate::docker::held(state_file).ok()?.into_iter().find(|r| {
        r.hold.as_ref().is_some_and(|h| h.target == target) || users.iter().any(|c| c.id == r.id)
    })
}

/// A lock on one volume on this host: a restore holds it exclusively, a snapshot
/// shared, so that a snapshot never reads a volume a restore is writing and two
/// restores never write one at once (they would mix their files, and each would
/// start the containers on the mixture). It is a `flock` of
/// `/run/lock/cbsnap-volume-<volume>` (else of that file in the temporary
/// directory), which the kernel releases when the process ends, however it ends;
/// repositories do not matter, two restores from two of them mix as well. Held while
/// the value lives.
pub struct VolumeLock {
    file: std::fs::File,
    /// A restore's: its pid is in the file while it holds it.
    exclusive: bool,
}

impl Drop for VolumeLock {
    fn drop(&mut self) {
        if self.exclusive {
            // So that a snapshot holding it later is not named by this pid.
            let _ = self.file.set_len(0);
        }
    }
}

impl VolumeLock {
    /// The exclusive lock of a restore into `volume`, or [`Error::InUse`] naming the
    /// process that holds the volume (a restore, or a snapshot reading it).
    pub fn restoring(volume: &str) -> Result<VolumeLock> {
        Self::take(volume, true)
    }

    /// The shared lock of a snapshot of `volume`, or [`Error::InUse`] naming the
    /// restore that writes it.
    pub fn reading(volume: &str) -> Result<VolumeLock> {
        Self::take(volume, false)
    }

    fn take(volume: &str, exclusive: bool) -> Result<VolumeLock> {
        use rustix::fs::FlockOperation;
        use std::io::{Read, Seek, Write};
        let path = host_file(volume, "");
        let what = |e| Error::io(format!("lock {}", path.display()), e);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(what)?;
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "pid unknown".to_string(),
                    pid => format!("pid {pid}"),
                };
                return Err(Error::InUse(if exclusive {
                    format!("another cbsnap ({holder}) is restoring into volume {volume}, or reading it, now; two restores into one volume would mix their files. Wait for it to end, then run this one if it is still wanted")
                } else {
                    format!("a restore into volume {volume} is running now ({holder}): it is not snapshotted half written. Snapshot it once the restore has ended")
                }));
            }
            Err(e) => return Err(what(e.into())),
        }
        if exclusive {
            let _ = file.set_len(0).and_then(|()| file.rewind());
            let _ = writeln!(file, "{}", std::process::id());
        }
        Ok(VolumeLock { file, exclusive })
    }
}
