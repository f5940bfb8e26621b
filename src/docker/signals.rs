//! What this process must undo if it is interrupted, and the signal handler
//! that undoes it.
//!
//! A paused database container is an outage: Ctrl-C in the middle of a backup
//! must not leave Qdrant frozen. Destructors do not run when a signal ends the
//! process, so every pause/stop and every helper container is also entered in a
//! process-wide [`Registry`], and a signal-hook thread resumes and removes what
//! is registered before the process ends: the program's [`notice`](super::notice)
//! handler exits (`cbsnap` with 128 + signal: 130 for SIGINT, 143 for SIGTERM, 129
//! for SIGHUP). SIGKILL cannot be caught; the state file
//! (`state.rs`) covers it.
//!
//! Every change to a registered container happens while holding the registry
//! lock, so the handler never races a pause that is still in flight: it waits
//! for the call to return, then undoes it. The clean-up runs on its own thread;
//! a second signal while it runs exits at once, leaving the rest to the next
//! run's [`Engine::recover_quiesced`](super::Engine::recover_quiesced).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bollard::Docker;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::notice::{self, Notice};
use super::undo::{undo_all, QuiescedContainer};
use super::DockerError;

/// Per-request timeout while cleaning up after a signal: the operator is
/// waiting and a hung daemon must not keep the process alive for minutes.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Containers one [`Quiesce`](super::Quiesce) guard has paused or stopped.
pub(super) struct ActiveQuiesce {
    pub docker: Docker,
    pub state_file: PathBuf,
    /// In the order they were quiesced; undone from the back.
    pub done: Vec<QuiescedContainer>,
    /// Set for a restore under way: on a signal they stay stopped, recorded.
    pub hold: Option<super::state::Hold>,
}

/// A helper container that exists until its guard removes it.
pub(super) struct ActiveHelper {
    pub docker: Docker,
    pub id: String,
}

/// Everything this process has changed on the engine and not yet undone.
pub(super) struct Registry {
    next: u64,
    pub quiesces: BTreeMap<u64, ActiveQuiesce>,
    pub helpers: BTreeMap<u64, ActiveHelper>,
}

impl Registry {
    /// A fresh token; tokens grow, so iterating backwards visits newest first.
    pub fn token(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Is this container quiesced by a live guard of this process?
    pub fn holds_quiesced(&self, id: &str) -> bool {
        self.quiesces
            .values()
            .any(|q| q.done.iter().any(|c| c.id == id))
    }

    /// Is this helper container owned by a live guard of this process?
    pub fn holds_helper(&self, id: &str) -> bool {
        self.helpers.values().any(|h| h.id == id)
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    quiesces: BTreeMap::new(),
    helpers: BTreeMap::new(),
});

/// Locks the registry. A panic while it was held does not make the data
/// wrong (every field is updated in one step), so poisoning is ignored.
pub(super) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Set by the signal handler before it waits for the registry: a clean-up is
/// coming, and the process ends after it.
static CLEANING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal's clean-up has begun (or is about to): nothing new may start.
pub(super) fn cleaning() -> bool {
    CLEANING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Waits for the signal handler to end the process; for a thread that must not go
/// on once [`cleaning`] says a clean-up is coming.
pub(super) fn wait_for_exit() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler, once per process.
pub(super) fn install() -> Result<(), DockerError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return Ok(());
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(DockerError::SignalHandler)?;
    std::thread::Builder::new()
        .name("cbsnap-signals".into())
        .spawn(move || {
            let mut cleaning = false;
            for sig in signals.forever() {
                if cleaning {
                    notice::end(sig, false);
                }
                cleaning = true;
                // On its own thread, so that this one can still see a second
                // signal if the clean-up hangs on the daemon.
                let spawned = std::thread::Builder::new()
                    .name("cbsnap-cleanup".into())
                    .spawn(move || clean_up_and_exit(sig));
                if spawned.is_err() {
                    clean_up_and_exit(sig);
                }
            }
        })
        .map_err(DockerError::SignalHandler)?;
    *installed = true;
    Ok(())
}

fn clean_up_and_exit(sig: i32) -> ! {
    CLEANING.store(true, std::sync::atomic::Ordering::SeqCst);
    // Held until exit: no guard may quiesce anything new meanwhile.
    let mut reg = registry();
    if !reg.quiesces.is_empty() || !reg.helpers.is_empty() {
        notice::tell(Notice::CleaningUp {
            signal: sig,
            name: signal_name(sig),
        });
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let quiesces = std::mem::take(&mut reg.quiesces);
                for (_, mut q) in quiesces.into_iter().rev() {
                    if let Some(hold) = q.hold.take() {
                        if !q.done.is_empty() {
                            notice::tell(super::quiesce::left_stopped(&q.done, hold));
                        }
                        continue;
                    }
                    let docker = q.docker.clone().with_timeout(CLEANUP_TIMEOUT);
                    if let Err(e) = undo_all(&rt, &docker, &q.state_file, &mut q.done) {
                        notice::tell(Notice::Warning(e.to_string()));
                    }
                }
                let helpers = std::mem::take(&mut reg.helpers);
                for (_, h) in helpers.into_iter().rev() {
                    let docker = h.docker.with_timeout(CLEANUP_TIMEOUT);
                    if let Err(e) = rt.block_on(super::undo::remove_helper(&docker, &h.id)) {
                        notice::tell(Notice::Warning(format!(
                            "could not remove helper container {}: {e}; \
                             remove it with `docker rm -f {}`",
                            h.id, h.id
                        )));
                    }
                }
            }
            Err(e) => notice::tell(Notice::Warning(format!(
                "cannot clean up ({e}); the next cbsnap run resumes paused containers"
            ))),
        }
    }
    notice::end(sig, true)
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
