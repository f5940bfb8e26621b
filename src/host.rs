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
    Some(format!("{}:{}", boot_id()?, start_time(pid)?))
}

/// This boot's id, which changes at every boot.
fn boot_id() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(boot.trim().to_string())
}

/// Field 22 of `/proc/PID/stat`: when `pid` started, in clock ticks since boot.
/// `None` for a process that has ended but is not yet reaped (a zombie, state `Z`
/// or `X`): it is dead.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or `)`; the
    // fields after the last `)` start at field 3, the state.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    Some(fields.nth(22 - 4)?.to_string())
}

/// Whether the process that recorded `pid` (and `identity`, from
/// [`process_identity`] when it was recorded) still runs here. Judged for the
/// case that matters, never undoing a live process's work:
///
/// - the pid is gone: dead;
/// - no identity recorded (older cbsnap), or none to compare now: alive, by the pid;
/// - the same identity: alive;
/// - another boot: dead (the pid was reused after a reboot);
/// - the same boot, another start: the recorder ran in another PID namespace (its
///   pid names another process here) or died and its pid was reused. Alive if any
///   process here started at the recorded tick (a namespaced recorder is visible
///   here under another pid), else dead.
pub fn recorded_process_alive(pid: u32, identity: Option<&str>) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let (Some(recorded), Some(now)) = (identity, process_identity(pid)) else {
        return true;
    };
    if now == recorded {
        return true;
    }
    let Some((boot, start)) = recorded.rsplit_once(':') else {
        return true;
    };
    if boot_id().is_some_and(|b| b != boot) {
        return false;
    }
    any_process_started_at(start)
}

/// Whether a process in another PID namespace than ours (those below ours are
/// visible in our `/proc`) started at `start` clock ticks since boot. One in our own
/// namespace cannot be the recorder: it would have the recorded pid. Leaving those
/// out keeps a busy host's processes that merely started in the same tick (10 ms)
/// from passing for it.
fn any_process_started_at(start: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    let ours = std::fs::read_link("/proc/self/ns/pid").ok();
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| start_time(pid).is_some_and(|s| s == start))
        .any(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != ours)
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
        // The same pid, a start no process here has: it died, the pid was reused.
        let (boot, start) = id.rsplit_once(':').unwrap();
        let never = format!("{boot}:{}", start.parse::<u64>().unwrap() + 1_000_000_000);
        assert!(!recorded_process_alive(me, Some(&never)));
        // Another boot: reused after a reboot.
        assert!(!recorded_process_alive(
            me,
            Some(&format!("another-boot:{start}"))
        ));
        assert!(!recorded_process_alive(0, Some(&id)));
        // A process of our own namespace that started in the recorded tick is not
        // the recorder (this one, asked about pid 1): it would have the pid.
        assert!(!recorded_process_alive(1, Some(&id)));
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
