//! Quiescing the containers that write to a volume while it is copied.
//!
//! Copying the files of a live database gives a torn copy. Pausing the
//! container (cgroup freezer) makes the copy crash-consistent, like a power
//! cut, in milliseconds; stopping it makes the copy clean, at the price of a
//! restart. The operator picks a default mode, and a container can override
//! it with the label `cbsnap.quiesce=stop|pause|none` (Qdrant recovers from a
//! crash-consistent copy through its WAL; a cache can stay live).
//!
//! [`Engine::quiesce`] returns a [`Quiesce`] guard. It resumes what it changed,
//! in reverse order, on [`Quiesce::resume`], on drop (also during a panic), on
//! SIGINT/SIGTERM/SIGHUP (`signals.rs`), and after a SIGKILL through the state
//! file and [`Engine::recover_quiesced`]. A container the operator had stopped
//! stays so; one found paused is left paused, or, when it must be stopped (a
//! restore, `--quiesce stop`), stopped and paused again afterwards; one found
//! restarting (a crash loop) is stopped and started again afterwards ([`decide`]).
//! A container started with `docker run --rm` is never stopped: Docker would
//! delete it.
//!
//! A restore quiesces with a [`Hold`] ([`Engine::quiesce_for_restore`]): once it
//! has begun to write ([`Quiesce::arm`]), its containers are started again only by
//! [`Quiesce::resume`], when the restore has finished. If it fails, is interrupted
//! or killed, they stay stopped, because their volume holds part old data, part the
//! snapshot's; the state file keeps
//! them, every run says so, and the next restore of the same target that finishes
//! takes them over and starts them (or the operator starts them by hand).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bollard::query_parameters::StopContainerOptions;
use bollard::Docker;
use serde::{Deserialize, Serialize};

use super::notice::{self, Notice};
use super::signals::{self, ActiveQuiesce};
use super::state::{self, Hold, QuiesceAction, QuiesceRecord};
use super::undo::{current_state, inspect_now, undo, undo_all, QuiescedContainer};
use super::{ContainerInfo, ContainerState, DockerError, Engine};
use crate::warn::Warning;

/// The container label that overrides the default mode for one container.
pub const QUIESCE_LABEL: &str = "cbsnap.quiesce";

/// How to keep a running container from writing while its volume is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuiesceMode {
    /// Leave it running: the copy may be torn.
    None,
    /// Freeze it: crash-consistent, milliseconds of downtime.
    Pause,
    /// Stop and restart it: clean, seconds of downtime.
    Stop,
}

/// A quiesce mode that is none of `stop`, `pause`, `none` (the text given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quiesce mode {0:?}; use stop, pause or none")]
pub struct UnknownQuiesceMode(pub String);

impl FromStr for QuiesceMode {
    type Err = UnknownQuiesceMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(QuiesceMode::None),
            "pause" => Ok(QuiesceMode::Pause),
            "stop" => Ok(QuiesceMode::Stop),
            _ => Err(UnknownQuiesceMode(s.to_string())),
        }
    }
}

/// What the copy of a volume can be trusted to be; recorded in the snapshot.
/// Ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Some container using the volume kept running: files may be torn.
    Live,
    /// Every writer was frozen: crash-consistent.
    Paused,
    /// No writer ran during the copy (stopped by us, or not running anyway).
    Stopped,
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::Live => "live",
            Consistency::Paused => "paused",
            Consistency::Stopped => "stopped",
        })
    }
}

/// What [`Engine::recover_quiesced`] did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Containers an interrupted run had left paused or stopped, now resumed.
    pub resumed: Vec<QuiesceRecord>,
    /// Entries left alone: made by a cbsnap still running on this host, or
    /// on another host for containers this engine does not have.
    pub left_alone: Vec<QuiesceRecord>,
    /// Helper containers of dead cbsnap processes, now removed (ids).
    pub helpers_removed: Vec<String>,
    /// Containers a restore stopped and that stay stopped because it did not
    /// finish ([`QuiesceRecord::hold`] says what to run): still stopped now.
    pub held: Vec<QuiesceRecord>,
}

/// Keeps containers paused or stopped while it lives; see the module docs.
#[must_use = "dropping the guard resumes the containers at once"]
pub struct Quiesce {
    rt: Arc<tokio::runtime::Runtime>,
    docker: Docker,
    state_file: PathBuf,
    /// Registry entry; `None` once resumed.
    token: Option<u64>,
    consistency: Consistency,
    quiesced: Vec<QuiescedContainer>,
    /// Set for a restore ([`Engine::quiesce_for_restore`]): once [`Quiesce::arm`]ed,
    /// the containers stay stopped unless [`Quiesce::resume`] is called.
    hold: Option<Hold>,
    /// Whether the restore has begun to write ([`Quiesce::arm`]).
    armed: bool,
    /// Containers an earlier, unfinished restore of the same target left stopped,
    /// taken over: started by [`Quiesce::resume`] only, never by a drop or a
    /// signal (their volume is half-restored whether this restore writes or not).
    adopted: Vec<QuiescedContainer>,
}

impl std::fmt::Debug for Quiesce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quiesce")
            .field("consistency", &self.consistency)
            .field("quiesced", &self.quiesced)
            .finish()
    }
}

impl Quiesce {
    /// The consistency the copy gets while this guard lives.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    /// The containers this guard paused or stopped, in that order, and those it
    /// took over from an unfinished restore of the same target (first).
    pub fn quiesced(&self) -> Vec<QuiescedContainer> {
        self.adopted.iter().chain(&self.quiesced).cloned().collect()
    }

    /// For a restore: it begins to write now. From here on a drop (the restore
    /// failed) or a signal leaves the containers stopped, and their records say so
    /// ([`QuiesceRecord::hold`]); before, nothing was changed and they are started
    /// again as after a snapshot. Does nothing for a guard without a hold.
    ///
    /// Errors: the state file could not be written (the guard is not armed).
    pub fn arm(&mut self) -> Result<(), DockerError> {
        let (Some(hold), false) = (&self.hold, self.armed) else {
            return Ok(());
        };
        let mut reg = signals::registry();
        if signals::cleaning() {
            // A signal came while the containers were being stopped: its handler
            // starts them again (nothing was written) and ends the process. Write
            // nothing meanwhile.
            drop(reg);
            signals::wait_for_exit();
        }
        let records: Vec<_> = self
            .quiesced
            .iter()
            .map(|c| state::record_for(&c.id, &c.name, c.action, Some(hold)))
            .collect();
        // Recorded first: a SIGKILL from here on leaves them held.
        state::add(&self.state_file, &records)?;
        if let Some(active) = self.token.and_then(|t| reg.quiesces.get_mut(&t)) {
            active.hold = Some(hold.clone());
        }
        self.armed = true;
        Ok(())
    }

    /// Resumes the containers (reverse order), then those taken over, and reports
    /// the first failure. A container that could not be resumed stays in the state
    /// file.
    pub fn resume(mut self) -> Result<(), DockerError> {
        let done = self.resume_inner();
        let mut adopted = std::mem::take(&mut self.adopted);
        let taken = undo_all(&self.rt, &self.docker, &self.state_file, &mut adopted);
        self.hold = None;
        done.and(taken)
    }

    fn resume_inner(&mut self) -> Result<(), DockerError> {
        let Some(token) = self.token.take() else {
            return Ok(());
        };
        let mut reg = signals::registry();
        // Absent if the signal handler already took it over.
        let Some(mut entry) = reg.quiesces.remove(&token) else {
            return Ok(());
        };
        undo_all(&self.rt, &self.docker, &self.state_file, &mut entry.done)
    }
}

impl Drop for Quiesce {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            let mut held = std::mem::take(&mut self.adopted);
            if self.armed {
                // The restore did not finish: leave them stopped, recorded.
                if let Some(token) = self.token.take() {
                    let entry = signals::registry().quiesces.remove(&token);
                    held.extend(entry.map(|e| e.done).unwrap_or_default());
                }
            } else if let Err(e) = self.resume_inner() {
                super::notice::tell(super::notice::Notice::Warning(e.to_string()));
            }
            if !held.is_empty() {
                notice::tell(left_stopped(&held, hold));
            }
            return;
        }
        if let Err(e) = self.resume_inner() {
            // Nobody to return it to; the state file keeps the entry, so the
            // next run retries.
            super::notice::tell(super::notice::Notice::Warning(e.to_string()));
        }
    }
}

/// The notice that `done` stay stopped because of `hold`.
pub(super) fn left_stopped(done: &[QuiescedContainer], hold: Hold) -> Notice {
    Notice::LeftStopped {
        containers: done.iter().map(|c| c.name.clone()).collect(),
        by_hand: by_hand(done.iter().map(|c| (c.action, c.name.as_str()))),
        target: hold.target,
        again: hold.again,
    }
}

/// The docker commands that return each `(action, container)` to its state, joined
/// by `&&` ([`QuiesceAction::undo_hint`]).
pub fn by_hand<'a>(each: impl IntoIterator<Item = (QuiesceAction, &'a str)>) -> String {
    each.into_iter()
        .map(|(action, name)| action.undo_hint(name))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Which held records of a gone process a restore takes over
/// ([`Engine::quiesce_for_restore`]).
type Adopt<'a> = &'a dyn Fn(&QuiesceRecord) -> bool;

/// What to do with a container that its mode says to stop but that Docker
/// deletes when it stops (`docker run --rm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnAutoRemove {
    /// Refuse before anything is touched: a restore must not write under it.
    Refuse,
    /// Pause it instead, and warn: a snapshot is then crash-consistent.
    Pause,
}

/// What quiescing a container found in `state` (`None`: gone) with `mode` gives:
/// the consistency of the copy, and the action to take, if any.
///
/// Every state in which the container's processes may write, or may start writing
/// during the copy, gets an action unless the mode is `none`: a running container
/// is paused or stopped; a paused one is frozen already, and `stop` stops it (it is
/// paused again afterwards); a restarting one (a crash loop) cannot be paused and
/// its restart policy may start it at any moment, so it is stopped, and started
/// again afterwards, back into its loop.
fn decide(
    state: Option<ContainerState>,
    mode: QuiesceMode,
) -> (Consistency, Option<QuiesceAction>) {
    use ContainerState as S;
    match (state, mode) {
        (None, _) => (Consistency::Stopped, None),
        (Some(S::Running), QuiesceMode::None) => (Consistency::Live, None),
        (Some(S::Running), QuiesceMode::Pause) => (Consistency::Paused, Some(QuiesceAction::Pause)),
        (Some(S::Running), QuiesceMode::Stop) => (Consistency::Stopped, Some(QuiesceAction::Stop)),
        (Some(S::Paused), QuiesceMode::None | QuiesceMode::Pause) => (Consistency::Paused, None),
        (Some(S::Paused), QuiesceMode::Stop) => {
            (Consistency::Stopped, Some(QuiesceAction::StopPaused))
        }
        (Some(S::Restarting), QuiesceMode::None) => (Consistency::Live, None),
        (Some(S::Restarting), QuiesceMode::Pause | QuiesceMode::Stop) => {
            (Consistency::Stopped, Some(QuiesceAction::Stop))
        }
        (Some(s), _) if s.may_write() => (Consistency::Live, None),
        (Some(_), _) => (Consistency::Stopped, None),
    }
}

impl Engine {
    /// Pauses or stops the running containers among `containers` (normally
    /// [`Engine::containers_using_volume`]) according to `default` and their
    /// `cbsnap.quiesce` labels, and returns the guard that resumes them.
    ///
    /// Each container is entered in `state_file` (created with its directory
    /// if needed) before it is touched. If one cannot be quiesced, those
    /// already quiesced are resumed and the error is returned. Labels are all
    /// checked before anything is touched.
    ///
    /// What each state gets is the table of `decide` (`docker/quiesce.rs`): a
    /// paused container is stopped too when its mode is `stop`, a restarting one
    /// unless it is `none`, and the guard returns each to its state. A container to
    /// be stopped that
    /// was started with `docker run --rm` is paused instead (stopping it would
    /// make Docker delete it), with a [`Warning::AutoRemoveNotStopped`]: the copy
    /// is then crash-consistent (`paused`) rather than clean.
    pub fn quiesce(
        &self,
        containers: &[ContainerInfo],
        default: QuiesceMode,
        state_file: &Path,
    ) -> Result<Quiesce, DockerError> {
        let mut plan = Vec::new();
        for c in containers {
            let mode = match c.labels.get(QUIESCE_LABEL) {
                Some(value) => value.parse().map_err(|_| DockerError::BadQuiesceLabel {
                    container: c.name.clone(),
                    value: value.clone(),
                })?,
                None => default,
            };
            plan.push((c, mode));
        }
        self.quiesce_plan(&plan, state_file, OnAutoRemove::Pause, None)
    }

    /// Like [`Engine::quiesce`], with each container's mode given (labels are not
    /// read), in the order given; the guard resumes them in reverse order. A
    /// whole-stack restore stops every container this way, dependents first, so
    /// they start again dependencies first.
    ///
    /// A container that must be stopped and was started with `docker run --rm`
    /// makes it fail with [`DockerError::AutoRemove`] before anything is touched:
    /// Docker would delete it.
    pub fn quiesce_each(
        &self,
        plan: &[(&ContainerInfo, QuiesceMode)],
        state_file: &Path,
    ) -> Result<Quiesce, DockerError> {
        self.quiesce_plan(plan, state_file, OnAutoRemove::Refuse, None)
    }

    /// Like [`Engine::quiesce_each`], for a restore into `hold.target`: once the
    /// restore begins to write ([`Quiesce::arm`]), the guard starts the containers
    /// again only on [`Quiesce::resume`], called when the restore has finished.
    /// Dropped without it (the restore failed), or on a signal, it leaves them
    /// stopped and tells [`Notice::LeftStopped`]; after a SIGKILL the state file
    /// keeps them stopped (their records carry `hold` from `arm` on). Before `arm`,
    /// nothing was written and they are started again as after a snapshot.
    ///
    /// Containers an earlier restore of the same target left stopped (held records
    /// of a process that is gone, for which `adopt` is true) are taken over: their
    /// records now name this process, and `resume` starts them too, as this restore
    /// finishes what that one began; nothing else does, armed or not. They are
    /// taken over once every container of `plan` is stopped.
    ///
    /// `elsewhere` are the state files of other repositories that an unfinished
    /// restore of the same target used (one from which a mirror now finishes it):
    /// their held records are taken over the same way, moved into `state_file`.
    /// One that cannot be read is named in a warning and skipped: its containers
    /// stay stopped, as before this restore.
    pub fn quiesce_for_restore(
        &self,
        plan: &[(&ContainerInfo, QuiesceMode)],
        state_file: &Path,
        hold: Hold,
        adopt: &dyn Fn(&QuiesceRecord) -> bool,
        elsewhere: &[PathBuf],
    ) -> Result<Quiesce, DockerError> {
        self.quiesce_plan(
            plan,
            state_file,
            OnAutoRemove::Refuse,
            Some((hold, adopt, elsewhere)),
        )
    }

    /// Whether Docker deletes the container when it stops (`docker run --rm`,
    /// `HostConfig.AutoRemove`); `false` for a container that is gone.
    pub fn auto_removes(&self, container: &ContainerInfo) -> Result<bool, DockerError> {
        let now = self
            .block_on(inspect_now(&self.docker, &container.id))
            .map_err(|e| self.err(format!("inspecting container {}", container.name), e))?;
        Ok(now.is_some_and(|n| n.auto_remove))
    }

    fn quiesce_plan(
        &self,
        plan: &[(&ContainerInfo, QuiesceMode)],
        state_file: &Path,
        on_auto_remove: OnAutoRemove,
        hold: Option<(Hold, Adopt<'_>, &[PathBuf])>,
    ) -> Result<Quiesce, DockerError> {
        // Look at every container first, so that nothing is touched when one of
        // them may not be. The listing may be stale; what matters is the state now.
        let mut steps = Vec::with_capacity(plan.len());
        for &(c, mode) in plan {
            let now = self
                .block_on(inspect_now(&self.docker, &c.id))
                .map_err(|e| self.err(format!("inspecting container {}", c.name), e))?;
            let state = now.map(|n| n.state);
            let (mut level, mut action) = decide(state, mode);
            if action.is_some_and(QuiesceAction::stops) && now.is_some_and(|n| n.auto_remove) {
                match on_auto_remove {
                    OnAutoRemove::Refuse => {
                        return Err(DockerError::AutoRemove {
                            container: c.name.clone(),
                        })
                    }
                    OnAutoRemove::Pause => {
                        (level, action) = match decide(state, QuiesceMode::Pause) {
                            (_, Some(a)) if a.stops() => (Consistency::Live, None),
                            other => other,
                        };
                        crate::warn::emit(Warning::AutoRemoveNotStopped {
                            container: c.name.clone(),
                            consistency: level.to_string(),
                        });
                    }
                }
            }
            steps.push((c, level, action));
        }

        signals::install()?;
        let mut consistency = Consistency::Stopped;
        let token = {
            let mut reg = signals::registry();
            let token = reg.token();
            reg.quiesces.insert(
                token,
                ActiveQuiesce {
                    docker: self.docker.clone(),
                    state_file: state_file.to_path_buf(),
                    done: Vec::new(),
                    hold: None,
                },
            );
            token
        };
        let mut guard = Quiesce {
            rt: self.rt.clone(),
            docker: self.docker.clone(),
            state_file: state_file.to_path_buf(),
            token: Some(token),
            consistency,
            quiesced: Vec::new(),
            hold: None,
            armed: false,
            adopted: Vec::new(),
        };
        // Declared after `guard`, so every early return unlocks before the
        // guard's drop resumes what was done (the lock is not reentrant).
        let mut reg = signals::registry();

        for (c, level, action) in steps {
            consistency = consistency.min(level);
            let Some(action) = action else { continue };

            // Record first: a SIGKILL from here on leaves a trace to recover.
            // Without its hold until the restore writes ([`Quiesce::arm`]).
            let record = state::record_for(&c.id, &c.name, action, None);
            state::add(state_file, &[record])?;
            let entry = QuiescedContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                action,
            };
            if let Some(active) = reg.quiesces.get_mut(&token) {
                active.done.push(entry.clone());
            }
            let result = match action {
                QuiesceAction::Pause => self.block_on(self.docker.pause_container(&c.id)),
                // Docker's own grace period (the container's StopTimeout, 10 s
                // by default), then SIGKILL. A paused container is stopped the
                // same way (Docker thaws it to deliver the signal), and a
                // restarting one stays down (its restart policy is held off).
                QuiesceAction::Stop | QuiesceAction::StopPaused => self.block_on(
                    self.docker
                        .stop_container(&c.id, None::<StopContainerOptions>),
                ),
            };
            if let Err(source) = result {
                // Returning drops `reg`, then `guard`, which resumes the
                // earlier ones, and this one if the call took effect after all.
                return Err(DockerError::Quiesce {
                    container: c.name.clone(),
                    action: match action {
                        QuiesceAction::Pause => "pause",
                        QuiesceAction::Stop | QuiesceAction::StopPaused => "stop",
                    },
                    source,
                });
            }
            guard.quiesced.push(entry);
        }
        guard.consistency = consistency;
        if let Some((hold, adopt, elsewhere)) = hold {
            let host = crate::host::hostname();
            let files = std::iter::once(state_file).chain(elsewhere.iter().map(PathBuf::as_path));
            for file in files {
                let records = match state::load(file) {
                    Ok(r) => r,
                    Err(e) if file != state_file => {
                        notice::tell(Notice::Warning(format!(
                            "containers an unfinished restore left stopped are not taken over from {}: {e}",
                            file.display()
                        )));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let taken = &guard.adopted;
                let adopted: Vec<QuiesceRecord> = records
                    .into_iter()
                    .filter(|r| r.hold.is_some() && adopt(r))
                    .filter(|r| !(r.host == host && r.recorder_alive()))
                    .filter(|r| !guard.quiesced.iter().chain(taken).any(|c| c.id == r.id))
                    .map(|r| state::record_for(&r.id, &r.name, r.action, Some(&hold)))
                    .collect();
                if adopted.is_empty() {
                    continue;
                }
                // Ours first: a kill in between leaves them held in both files, and
                // either restore, finished, starts them.
                state::add(state_file, &adopted)?;
                if file != state_file {
                    let ids: Vec<&str> = adopted.iter().map(|r| r.id.as_str()).collect();
                    state::remove(file, &ids)?;
                }
                guard
                    .adopted
                    .extend(adopted.into_iter().map(|r| QuiescedContainer {
                        id: r.id,
                        name: r.name,
                        action: r.action,
                    }));
            }
            guard.hold = Some(hold);
        }
        Ok(guard)
    }

    /// Runs `f` with the containers quiesced, passing it the consistency
    /// obtained, and resumes them afterwards, whether `f` succeeds, fails or
    /// panics. If both `f` and the resume fail, `f`'s error is returned and
    /// the resume failure is printed (the state file keeps the container).
    pub fn with_quiesced<T, E>(
        &self,
        containers: &[ContainerInfo],
        default: QuiesceMode,
        state_file: &Path,
        f: impl FnOnce(Consistency) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DockerError>,
    {
        let guard = self.quiesce(containers, default, state_file)?;
        match f(guard.consistency()) {
            Ok(value) => {
                guard.resume()?;
                Ok(value)
            }
            Err(e) => {
                drop(guard);
                Err(e)
            }
        }
    }

    /// Resumes what an interrupted cbsnap left paused or stopped, as listed in
    /// `state_file`, and removes the helper containers of dead cbsnap
    /// processes. Call it first thing in every run that may quiesce.
    ///
    /// A container is unpaused only if it is still paused, started only if it
    /// is still stopped. Entries of a cbsnap process still running on this
    /// host, and entries from another host naming containers this engine does
    /// not have, are left alone. The file is rewritten with what could not be
    /// resumed (removed when nothing is left); the first failure is returned.
    pub fn recover_quiesced(&self, state_file: &Path) -> Result<Recovery, DockerError> {
        let reg = signals::registry();
        let records = state::load(state_file)?;
        let me = std::process::id();
        let host = crate::host::hostname();
        let mut recovery = Recovery::default();
        let mut keep = Vec::new();
        let mut first_err = None;
        let loaded = records.clone();
        for r in records {
            let same_host = r.host == host;
            let alive_elsewhere = same_host && r.pid != me && r.recorder_alive();
            let alive_here = same_host && r.pid == me && reg.holds_quiesced(&r.id);
            if alive_elsewhere || alive_here {
                recovery.left_alone.push(r.clone());
                keep.push(r);
                continue;
            }
            if !same_host {
                // A repository shared between hosts: the container may live
                // on the other host's engine. Only act if it lives on ours.
                match self.block_on(current_state(&self.docker, &r.id)) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        recovery.left_alone.push(r.clone());
                        keep.push(r);
                        continue;
                    }
                    Err(e) => {
                        first_err
                            .get_or_insert(self.err(format!("inspecting container {}", r.name), e));
                        keep.push(r);
                        continue;
                    }
                }
            }
            if r.hold.is_some() {
                // Its restore did not finish: it stays stopped while it is, and is
                // forgotten once the operator has started or removed it.
                match self.block_on(current_state(&self.docker, &r.id)) {
                    Ok(Some(ContainerState::Exited | ContainerState::Created)) => {
                        recovery.held.push(r.clone());
                        keep.push(r);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        first_err
                            .get_or_insert(self.err(format!("inspecting container {}", r.name), e));
                        keep.push(r);
                    }
                }
                continue;
            }
            match self.block_on(undo(&self.docker, &r.id, r.action)) {
                Ok(true) => recovery.resumed.push(r),
                // Already running again, or removed: nothing left to undo.
                Ok(false) => {}
                Err(source) => {
                    first_err.get_or_insert(DockerError::Resume {
                        container: r.name.clone(),
                        hint: r.action.undo_hint(&r.name),
                        source,
                    });
                    keep.push(r);
                }
            }
        }
        // What was dealt with is forgotten; records another process added since the
        // file was read stay.
        let done: Vec<QuiesceRecord> = loaded.into_iter().filter(|r| !keep.contains(r)).collect();
        state::forget(state_file, &done)?;
        recovery.helpers_removed = self.remove_stale_helpers(&reg)?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(recovery),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_labels() {
        assert_eq!("stop".parse(), Ok(QuiesceMode::Stop));
        assert_eq!(" Pause ".parse(), Ok(QuiesceMode::Pause));
        assert_eq!("none".parse(), Ok(QuiesceMode::None));
        assert!("freeze".parse::<QuiesceMode>().is_err());
    }

    /// Issue: a paused or restarting container was left alone by `restore --stop`
    /// and `--quiesce stop`, and the volume was written or read under it.
    #[test]
    fn paused_and_restarting_containers_are_stopped_when_stop_is_asked() {
        use ContainerState as S;
        let stop = |s| decide(Some(s), QuiesceMode::Stop);
        assert_eq!(
            stop(S::Running),
            (Consistency::Stopped, Some(QuiesceAction::Stop))
        );
        assert_eq!(
            stop(S::Paused),
            (Consistency::Stopped, Some(QuiesceAction::StopPaused))
        );
        assert_eq!(
            stop(S::Restarting),
            (Consistency::Stopped, Some(QuiesceAction::Stop))
        );
        assert_eq!(stop(S::Exited), (Consistency::Stopped, None));
        assert_eq!(
            decide(Some(S::Paused), QuiesceMode::Pause),
            (Consistency::Paused, None)
        );
        assert_eq!(
            decide(Some(S::Restarting), QuiesceMode::Pause),
            (Consistency::Stopped, Some(QuiesceAction::Stop))
        );
        assert_eq!(
            decide(Some(S::Restarting), QuiesceMode::None),
            (Consistency::Live, None)
        );
        assert_eq!(
            decide(None, QuiesceMode::Stop),
            (Consistency::Stopped, None)
        );
    }

    /// The notice of containers left stopped says how to return each to the state it
    /// was found in: a container found paused is paused again (it said `docker
    /// start` for all, which left a paused one running).
    #[test]
    fn containers_left_stopped_are_named_with_what_returns_each_to_its_state() {
        let done = [
            QuiescedContainer {
                id: "1".into(),
                name: "db".into(),
                action: QuiesceAction::Stop,
            },
            QuiescedContainer {
                id: "2".into(),
                name: "cache".into(),
                action: QuiesceAction::StopPaused,
            },
        ];
        let hold = Hold {
            target: "volume v".into(),
            again: "cbsnap restore v@1234 --stop".into(),
        };
        let Notice::LeftStopped {
            containers,
            by_hand,
            ..
        } = left_stopped(&done, hold)
        else {
            panic!("not a LeftStopped notice");
        };
        assert_eq!(containers, ["db", "cache"]);
        assert_eq!(
            by_hand,
            "docker start db && docker start cache && docker pause cache"
        );
    }

    #[test]
    fn consistency_orders_weakest_first() {
        assert!(Consistency::Live < Consistency::Paused);
        assert!(Consistency::Paused < Consistency::Stopped);
        assert_eq!(
            serde_json::to_string(&Consistency::Paused).unwrap(),
            "\"paused\""
        );
    }
}
