//! Undoing what this process changed on the engine: resuming a container it
//! paused or stopped, removing a helper container it created. A leaf of the Docker
//! layer: the guards (`quiesce.rs`, `archive.rs`) and the signal handler
//! (`signals.rs`) all call it, and it calls none of them.

use std::path::Path;

use bollard::errors::Error as BollardError;
use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::{
    InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;

use super::state::{self, QuiesceAction};
use super::{status_of, ContainerState, DockerError};

/// A container a [`Quiesce`](super::Quiesce) guard paused or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuiescedContainer {
    /// Full id.
    pub id: String,
    /// Name, for messages.
    pub name: String,
    /// What was done to it, and so how it is undone.
    pub action: QuiesceAction,
}

/// Removes a container by force; a container already gone is fine.
pub(super) async fn remove_helper(docker: &Docker, id: &str) -> Result<(), BollardError> {
    let options = RemoveContainerOptions {
        force: true,
        // Never `v`: it would delete anonymous volumes, and is pointless here.
        v: false,
        link: false,
    };
    match docker.remove_container(id, Some(options)).await {
        // 404: gone already. 409 (with force): another process is removing it.
        Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => Ok(()),
        other => other,
    }
}

/// What a container is now, as far as quiescing it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ContainerNow {
    pub state: ContainerState,
    /// Started with `docker run --rm` (`HostConfig.AutoRemove`): Docker deletes it
    /// when it stops.
    pub auto_remove: bool,
}

/// The container now, `None` if it no longer exists.
pub(super) async fn inspect_now(
    docker: &Docker,
    id: &str,
) -> Result<Option<ContainerNow>, BollardError> {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(c) => {
            let status = c.state.and_then(|s| s.status);
            let state = match status {
                Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
                Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
                Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
                Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
                Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
                Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
                Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
                Some(ContainerStateStatusEnum::EMPTY) | None => ContainerState::Unknown,
            };
            let auto_remove = c.host_config.and_then(|h| h.auto_remove).unwrap_or(false);
            Ok(Some(ContainerNow { state, auto_remove }))
        }
        Err(e) if status_of(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state of a container now, `None` if it no longer exists.
pub(super) async fn current_state(
    docker: &Docker,
    id: &str,
) -> Result<Option<ContainerState>, BollardError> {
    Ok(inspect_now(docker, id).await?.map(|c| c.state))
}

/// Undoes one pause or stop if it is still in effect. Returns whether it
/// changed anything. Looking first makes it safe to call twice, on a
/// container someone else resumed, or on one whose pause never happened.
pub(super) async fn undo(
    docker: &Docker,
    id: &str,
    action: QuiesceAction,
) -> Result<bool, BollardError> {
    let Some(state) = current_state(docker, id).await? else {
        return Ok(false);
    };
    match (action, state) {
        (QuiesceAction::Pause, ContainerState::Paused) => {
            docker.unpause_container(id).await?;
            Ok(true)
        }
        (QuiesceAction::Stop, ContainerState::Exited | ContainerState::Created) => {
            docker
                .start_container(id, None::<StartContainerOptions>)
                .await?;
            Ok(true)
        }
        // It was paused when it was stopped: paused again, as found. It runs for the
        // moment between the two calls, as a new process.
        (QuiesceAction::StopPaused, ContainerState::Exited | ContainerState::Created) => {
            docker
                .start_container(id, None::<StartContainerOptions>)
                .await?;
            docker.pause_container(id).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Resumes `done` from the back, forgetting each container in the state file
/// once it runs again. Failed ones are dropped from `done` but stay in the
/// state file; the first failure is returned after trying all.
pub(super) fn undo_all(
    rt: &tokio::runtime::Runtime,
    docker: &Docker,
    state_file: &Path,
    done: &mut Vec<QuiescedContainer>,
) -> Result<(), DockerError> {
    let mut first_err = None;
    while let Some(c) = done.pop() {
        match rt.block_on(undo(docker, &c.id, c.action)) {
            Ok(_) => {
                if let Err(e) = state::remove(state_file, &[c.id.as_str()]) {
                    first_err.get_or_insert(e);
                }
            }
            Err(source) => {
                first_err.get_or_insert(DockerError::Resume {
                    container: c.name.clone(),
                    hint: c.action.undo_hint(&c.name),
                    source,
                });
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
