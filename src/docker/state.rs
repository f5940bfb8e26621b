//! The quiesce state file: which containers this cbsnap paused or stopped.
//!
//! A SIGKILL (or OOM kill, or power loss) runs no destructor and no signal
//! handler, so a paused Qdrant would stay frozen until someone noticed. Hence
//! every container is recorded here *before* it is paused or stopped, and
//! forgotten only *after* it has been resumed; the next run calls
//! [`Engine::recover_quiesced`](super::Engine::recover_quiesced), which resumes
//! what is listed. The caller chooses the path, normally
//! `<repo>/locks/quiesced.json`.
//!
//! Format (JSON, version 1):
//!
//! ```json
//! {"format": "cbsnap-quiesced", "version": 1, "containers": [
//!   {"id": "<64 hex>", "name": "code-buddy-qdrant-1", "action": "pause",
//!    "pid": 4242, "host": "buildbox", "process": "<boot id>:<start>",
//!    "since": "2026-11-26T13:00:00Z"}]}
//! ```
//!
//! `action` is `pause`, `stop` or `stop-paused` (stopped while paused: started and
//! paused again to undo; a cbsnap older than that variant refuses the file); `pid` and `host` name the cbsnap process that
//! did it, so that a run does not undo the work of another one that is still
//! alive, and `process` ([`crate::host::process_identity`]) tells that process from
//! a later one given the same pid (after a reboot, or in another PID namespace). No file means nothing is quiesced.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DockerError;

const FORMAT: &str = "cbsnap-quiesced";
/// The version written when no record is [held](QuiesceRecord::hold): what every
/// cbsnap reads.
const VERSION: u32 = 1;
/// The version written when some record is held, so that a cbsnap older than
/// holds refuses the file instead of starting a container on a half-restored
/// volume; this one reads both.
const VERSION_HOLD: u32 = 2;

/// What was done to a container, and therefore how to undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuiesceAction {
    /// Paused (cgroup freezer); undone by `docker unpause`.
    Pause,
    /// Stopped (SIGTERM, then SIGKILL after the grace period); undone by
    /// `docker start`.
    Stop,
    /// Stopped while it was paused (`docker stop` ends a paused container too:
    /// Docker thaws it to deliver the signal); undone by `docker start`, then
    /// `docker pause`, so that it is paused again, as it was found.
    #[serde(rename = "stop-paused")]
    StopPaused,
}

impl QuiesceAction {
    /// The docker CLI command line that undoes it for `container`.
    pub fn undo_hint(self, container: &str) -> String {
        match self {
            QuiesceAction::Pause => format!("docker unpause {container}"),
            QuiesceAction::Stop => format!("docker start {container}"),
            QuiesceAction::StopPaused => {
                format!("docker start {container} && docker pause {container}")
            }
        }
    }

    /// Whether it stops the container (which Docker deletes if it was started with
    /// `--rm`).
    pub fn stops(self) -> bool {
        matches!(self, QuiesceAction::Stop | QuiesceAction::StopPaused)
    }
}

/// One entry of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuiesceRecord {
    /// Full container id.
    pub id: String,
    /// Container name, for messages.
    pub name: String,
    /// What was done.
    pub action: QuiesceAction,
    /// The cbsnap process that did it.
    pub pid: u32,
    /// The host that process ran on.
    pub host: String,
    /// Who that process was ([`crate::host::process_identity`]): its pid alone names
    /// another process after a reboot or from another PID namespace. Absent in
    /// records of older cbsnap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// When (RFC 3339, UTC).
    pub since: String,
    /// Set when a restore stopped it: if the restore does not finish, the container
    /// stays stopped (its volume holds part old data, part the snapshot's) until a
    /// restore of the same target finishes or the operator starts it. Absent in
    /// every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

/// Why a container a restore stopped is not started again when the restore fails
/// or is interrupted, and what finishes the restore (version 2 of the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// What the restore writes, as the operator names it: `volume qdrant-data`,
    /// `the sources of run 1a2b3c4d`. A restore of the same target that finishes
    /// takes the record over and starts the container.
    pub target: String,
    /// The command that restores it again, for messages:
    /// `cbsnap restore qdrant-data@1a2b3c4d --stop`.
    pub again: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    containers: Vec<QuiesceRecord>,
    /// [`crate::codec::json_check`] of the other fields, so that a damaged file (a
    /// flipped digit of a container id would make recovery skip that container) is
    /// an error. Absent in files of older cbsnap (accepted); they ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
}

fn state_err(path: &Path, reason: impl std::fmt::Display) -> DockerError {
    DockerError::StateFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads the records; a missing file is an empty list.
pub(super) fn load(path: &Path) -> Result<Vec<QuiesceRecord>, DockerError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(state_err(path, format!("cannot read it: {e}"))),
    };
    let file: StateFile = serde_json::from_slice(&bytes)
        .map_err(|e| state_err(path, format!("not a cbsnap quiesce state file: {e}")))?;
    if file.format != FORMAT {
        return Err(state_err(
            path,
            format!("unexpected format {:?}", file.format),
        ));
    }
    if let Some(check) = &file.check {
        let bare = StateFile {
            check: None,
            ..file.clone()
        };
        if &crate::codec::json_check(&bare) != check {
            return Err(state_err(
                path,
                "its checksum does not match its contents (damaged); check which containers are paused or stopped (`docker ps -a`), resume them by hand and remove the file",
            ));
        }
    }
    if file.version != VERSION && file.version != VERSION_HOLD {
        return Err(state_err(
            path,
            format!(
                "written in version {} of the format, this cbsnap reads versions {VERSION} and {VERSION_HOLD}; \
                 use a newer cbsnap",
                file.version
            ),
        ));
    }
    Ok(file.containers)
}

/// Replaces the file's content with `records`, or removes the file when there
/// are none.
///
/// Durability: when this returns `Ok`, the new content (or the removal) is on
/// stable storage: temp file, fsync, rename, fsync of the directory. A crash
/// at any point leaves either the old or the new list, never a torn one.
pub(super) fn store(path: &Path, records: &[QuiesceRecord]) -> Result<(), DockerError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if records.is_empty() {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(state_err(path, format!("cannot remove it: {e}"))),
        }
        return crate::fsutil::fsync_dir(&dir)
            .map_err(|e| state_err(path, format!("fsync of {}: {e}", dir.display())));
    }
    crate::fsutil::create_private_dir_all(&dir)
        .map_err(|e| state_err(path, format!("cannot create {}: {e}", dir.display())))?;
    let mut file = StateFile {
        format: FORMAT.to_string(),
        version: if records.iter().any(|r| r.hold.is_some()) {
            VERSION_HOLD
        } else {
            VERSION
        },
        containers: records.to_vec(),
        check: None,
    };
    file.check = Some(crate::codec::json_check(&file));
    let mut json = serde_json::to_vec_pretty(&file).map_err(|e| state_err(path, e))?;
    json.push(b'\n');
    crate::fsutil::write_atomic(path, &json)
        .map_err(|e| state_err(path, format!("cannot write it: {e}")))
}

/// Whether `path` lists a container that [`Engine::recover_quiesced`](super::Engine::recover_quiesced)
/// would act on: one quiesced by a process that is gone, or by another host. Reads
/// only the file (no engine), so every command can ask it cheaply; entries of live
/// cbsnap processes on this host are theirs to resume.
///
/// Errors: the file exists but cannot be read or parsed.
pub fn pending_recovery(path: &Path) -> Result<bool, DockerError> {
    let host = crate::host::hostname();
    Ok(load(path)?
        .iter()
        .any(|r| r.host != host || !r.recorder_alive()))
}

/// The [held](QuiesceRecord::hold) records of `path`: containers a restore stopped
/// and keeps stopped because it did not finish, or has not yet.
///
/// Errors: the file exists but cannot be read or parsed.
pub fn held(path: &Path) -> Result<Vec<QuiesceRecord>, DockerError> {
    Ok(load(path)?
        .into_iter()
        .filter(|r| r.hold.is_some())
        .collect())
}

/// Loads the records, lets `f` change them, and stores them when it says it did
/// (`true`), all under an exclusive `flock` of the file's directory: two processes
/// rewriting one file at once (a snapshot pausing a container while another run
/// recovers, or a restore from a mirror taking records over from this repository's
/// file) each read the other's records, rather than store over them. The lock is
/// held for the read and the write only, never across a call to Docker.
fn update(path: &Path, f: impl FnOnce(&mut Vec<QuiesceRecord>) -> bool) -> Result<(), DockerError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::fsutil::create_private_dir_all(&dir)
        .map_err(|e| state_err(path, format!("cannot create {}: {e}", dir.display())))?;
    let lock = fs::File::open(&dir)
        .map_err(|e| state_err(path, format!("cannot open {}: {e}", dir.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| state_err(path, format!("cannot lock {}: {e}", dir.display())))?;
    let mut records = load(path)?;
    if f(&mut records) {
        store(path, &records)?;
    }
    Ok(())
}

/// Adds records (replacing any for the same container).
pub(super) fn add(path: &Path, new: &[QuiesceRecord]) -> Result<(), DockerError> {
    update(path, |records| {
        records.retain(|r| !new.iter().any(|n| n.id == r.id));
        records.extend_from_slice(new);
        true
    })
}

/// Forgets the records of these containers.
pub(super) fn remove(path: &Path, ids: &[&str]) -> Result<(), DockerError> {
    update(path, |records| {
        let before = records.len();
        records.retain(|r| !ids.contains(&r.id.as_str()));
        records.len() != before
    })
}

/// Forgets these records, each only while the file holds it as it is (a record
/// another process wrote since for the same container stays).
pub(super) fn forget(path: &Path, done: &[QuiesceRecord]) -> Result<(), DockerError> {
    if done.is_empty() {
        return Ok(());
    }
    update(path, |records| {
        let before = records.len();
        records.retain(|r| !done.contains(r));
        records.len() != before
    })
}

impl QuiesceRecord {
    /// Whether the process that made this record still runs on this host (the
    /// same process: [`crate::host::recorded_process_alive`]).
    pub fn recorder_alive(&self) -> bool {
        crate::host::recorded_process_alive(self.pid, self.process.as_deref())
    }
}

/// A record for a container this process is about to quiesce.
pub(super) fn record_for(
    id: &str,
    name: &str,
    action: QuiesceAction,
    hold: Option<&Hold>,
) -> QuiesceRecord {
    QuiesceRecord {
        id: id.to_string(),
        name: name.to_string(),
        action,
        pid: std::process::id(),
        host: crate::host::hostname(),
        process: crate::host::process_identity(std::process::id()),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        hold: hold.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> QuiesceRecord {
        record_for(id, &format!("c-{id}"), QuiesceAction::Pause, None)
    }

    /// Two writers at once (two processes in practice; two open file descriptions
    /// here, which `flock` tells apart the same way) each add their records one by
    /// one, and a third forgets some: no record added is lost. Without the lock,
    /// one's write replaced the other's (it read the file before the other wrote).
    #[test]
    fn concurrent_writers_lose_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/quiesced.json");
        let stale = rec("stale");
        add(&path, std::slice::from_ref(&stale)).unwrap();
        std::thread::scope(|s| {
            for w in 0..2 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..60 {
                        add(path, &[rec(&format!("{w}-{i}"))]).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..60 {
                    forget(&path, std::slice::from_ref(&stale)).unwrap();
                }
            });
        });
        let ids: std::collections::BTreeSet<String> =
            load(&path).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 120, "{ids:?}");
        assert!(!ids.contains("stale"));
    }

    /// A held record makes the file version 2, which a cbsnap older than holds
    /// refuses (it would start the container on a half-restored volume); without
    /// one the file stays version 1, which every cbsnap reads.
    #[test]
    fn a_held_record_makes_the_file_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quiesced.json");
        let version = || -> u64 {
            let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            v["version"].as_u64().unwrap()
        };
        add(&path, &[rec("a")]).unwrap();
        assert_eq!(version(), 1);
        let hold = Hold {
            target: "volume v".into(),
            again: "cbsnap restore v@1234 --stop".into(),
        };
        add(
            &path,
            &[record_for("b", "c-b", QuiesceAction::Stop, Some(&hold))],
        )
        .unwrap();
        assert_eq!(version(), 2);
        let read = load(&path).unwrap();
        assert_eq!(read[1].hold.as_ref(), Some(&hold));
        assert_eq!(read[0].hold, None);
        remove(&path, &["b"]).unwrap();
        assert_eq!(version(), 1);
    }

    #[test]
    fn add_remove_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks").join("quiesced.json");
        assert!(load(&path).unwrap().is_empty());
        add(&path, &[rec("a"), rec("b")]).unwrap();
        add(&path, &[rec("a")]).unwrap();
        let ids: Vec<_> = load(&path).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["b", "a"]);
        remove(&path, &["a"]).unwrap();
        let left = load(&path).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].id.as_str(), left[0].pid),
            ("b", std::process::id())
        );
        remove(&path, &["b"]).unwrap();
        assert!(!path.exists(), "an empty state file is removed");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "temp files left behind: {leftovers:?}"
        );
    }

    /// Issue 7, case 13 (kind): the state file is verifiable; a flipped digit of a
    /// container id is an error, not a container silently left paused.
    #[test]
    fn a_damaged_state_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quiesced.json");
        add(&path, &[rec("1234abcd")]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("1234abcd", "1234abce")).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // A file of an older cbsnap (no checksum) is read as before.
        let old = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("\"check\""))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("}\n  ],", "}\n  ]");
        fs::write(&path, &old).unwrap();
        assert_eq!(load(&path).unwrap().len(), 1, "{old}");
    }

    #[test]
    fn unknown_versions_are_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quiesced.json");
        fs::write(
            &path,
            r#"{"format":"cbsnap-quiesced","version":9,"containers":[]}"#,
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, DockerError::StateFile { .. }));
        assert!(err.to_string().contains("newer cbsnap"), "{err}");
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(load(&path), Err(DockerError::StateFile { .. })));
    }
}
