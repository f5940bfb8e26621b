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

/// Who process `pid` is, beyond its number: this boot's id
/// (`/proc/sys/kernel/random/boot_id`) and the process's start time in clock ticks
/// since boot (field 22 of `/proc/PID/stat`, proc(5)), as `BOOT:START`. A pid is
/// reused after a reboot, and a process in another PID namespace has a number that
/// names someone else here; the pair tells them apart. `None` where `/proc` cannot
/// say.
pub fn process_identity(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or `)`; the
    // fields after the last `)` start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(22 - 3)?;
    Some(format!("{}:{start}", boot.trim()))
}

/// Whether the process that recorded `pid` (and `identity`, from
/// [`process_identity`] when it was recorded) still runs here: [`process_alive`],
/// and, for a record with an identity, the same boot and start time. A record
/// without one (older cbsnap) is judged by the pid alone.
pub fn recorded_process_alive(pid: u32, identity: Option<&str>) -> bool {
    if !process_alive(pid) {
        return false;
    }
    match identity {
        None => true,
        // Unknown now (no /proc): alive, as by the pid, rather than undo a live
        // process's work.
        Some(recorded) => process_identity(pid).is_none_or(|now| now == recorded),
    }
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
    fn a_recorded_process_is_told_from_a_later_one_with_its_pid() {
        let me = std::process::id();
        let id = process_identity(me).expect("/proc tells who this process is");
        assert!(recorded_process_alive(me, Some(&id)));
        assert!(recorded_process_alive(me, None));
        // The same pid, another start: a reboot or another PID namespace.
        let (boot, start) = id.rsplit_once(':').unwrap();
        let later = format!("{boot}:{}", start.parse::<u64>().unwrap() + 1);
        assert!(!recorded_process_alive(me, Some(&later)));
        assert!(!recorded_process_alive(0, Some(&id)));
    }

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
