//! This host, as cbsnap names it in what it writes (lock files, temp names, the
//! quiesce record, snapshots), and whether a process of this host still runs.
//!
//! One implementation of each, because lock, temp and quiesce recovery all decide
//! "is that holder gone?" by comparing the same host string and asking the same
//! liveness question; two helpers that disagree (one lossy, one not; one treating
//! `EPERM` as dead) would make one of them remove a live holder's file.

/// This host's name (`gethostname(2)`), non-UTF-8 bytes replaced by U+FFFD.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The effective uid this process reads sources as (`geteuid(2)`), recorded in a
/// snapshot's `origin` as `uid`: what it may list of a file's xattrs depends on it
/// (`trusted.*` is for root only, and left out of the list silently otherwise).
pub fn reader_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a process with this pid exists on this host. `kill(pid, 0)`: `EPERM`
/// means it exists but belongs to another user, so it counts as alive. Pid 0 and
/// pids beyond `pid_t` are never alive (signal 0 to pid 0 would ask about our own
/// process group).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists
    // and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
    }
}
