//! What the Docker layer has to tell the operator when no caller is there to
//! return it to: a guard that could not undo its change in its destructor, and the
//! signal handler (`signals.rs`), which runs on its own thread. The library neither
//! prints nor exits: the program installs a [`Handler`] ([`set_handler`]) that shows
//! each [`Notice`] and, on [`Notice::Exit`], ends the process with the exit code it
//! chooses (`cbsnap` exits with 128 + signal: 130 for Ctrl-C, 143 for SIGTERM).
//! Without a handler notices are dropped, and an interrupt ends the process by the
//! signal's default action.

use std::sync::OnceLock;

/// Something the Docker layer tells the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A change could not be undone where no caller could be told (a guard dropped
    /// during an error or a panic): resuming a container or removing a helper
    /// container failed. The message says what to do; the state file keeps the
    /// entry, so the next run retries.
    Warning(String),
    /// A restore that stopped these containers did not finish (it failed, or a
    /// signal ended it): they stay stopped, because the volumes they use hold part
    /// old data, part the snapshot's. The state file keeps them; a restore of
    /// `target` that finishes starts them, or the operator does (`by_hand`).
    LeftStopped {
        /// Container names.
        containers: Vec<String>,
        /// The docker commands that return them to the state they were found in,
        /// on the data as it is ([`QuiesceAction::undo_hint`] of each, joined by
        /// `&&`): a container found paused is paused again.
        ///
        /// [`QuiesceAction::undo_hint`]: super::QuiesceAction::undo_hint
        by_hand: String,
        /// What the restore was writing: `volume qdrant-data`.
        target: String,
        /// The command that finishes it.
        again: String,
    },
    /// `signal` arrived while this process had containers paused or stopped, or
    /// helper containers: they are being resumed and removed now. A second signal
    /// quits at once.
    CleaningUp {
        /// The signal number (`SIGINT` = 2, `SIGTERM` = 15, `SIGHUP` = 1).
        signal: i32,
        /// Its name, `SIGINT`.
        name: &'static str,
    },
    /// The process must end now because of `signal`: after the clean-up
    /// (`finished`), or at once on a second signal, leaving the rest to the next
    /// run's recovery. The handler ends the process; if it returns, the signal's
    /// default action does.
    Exit {
        /// The signal number.
        signal: i32,
        /// Whether the clean-up ran to its end.
        finished: bool,
    },
}

/// Shows a [`Notice`]; on [`Notice::Exit`] it should end the process.
pub type Handler = fn(Notice);

static HANDLER: OnceLock<Handler> = OnceLock::new();

/// Install the program's handler, once per process. Returns `false` (and keeps the
/// first) when one was installed already.
pub fn set_handler(handler: Handler) -> bool {
    HANDLER.set(handler).is_ok()
}

/// Give `notice` to the handler, if there is one.
pub(super) fn tell(notice: Notice) {
    if let Some(handler) = HANDLER.get() {
        handler(notice);
    }
}

/// End the process because of `signal`: the handler's exit, else the signal's
/// default action (which terminates for SIGINT, SIGTERM and SIGHUP).
pub(super) fn end(signal: i32, finished: bool) -> ! {
    tell(Notice::Exit { signal, finished });
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    // Not reached for the signals installed; never return into a cleaned-up run.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_without_a_handler_is_dropped_and_the_first_handler_stays() {
        // No handler yet in this test binary: telling is a no-op, not a print.
        tell(Notice::Warning("nobody listens".into()));
        fn first(_: Notice) {}
        fn second(_: Notice) {}
        assert!(set_handler(first));
        assert!(!set_handler(second));
        assert!(std::ptr::fn_addr_eq(
            *HANDLER.get().unwrap(),
            first as Handler
        ));
    }
}
