//! Issue 7 against the real Docker engine: a container left paused by a killed
//! cbsnap is resumed by any command that opens the repository (case 14), and a
//! volume removed as `snapshot --via archive` starts is never re-created by the
//! helper nor saved as an empty snapshot (case 3).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::docker::{self as fx, TestContainer, TestVolume};
use crate::util::*;

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

/// Start `snapshot VOLUME --via archive` and SIGKILL it while `c` is paused.
fn kill_while_paused(repo: &Repo, volume: &str, c: &TestContainer) {
    let mut child = cmd(repo)
        .args(["snapshot", volume, "--via", "archive"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while c.state() != "paused" && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.state(), "paused", "the container was never paused");
    assert!(
        child.try_wait().unwrap().is_none(),
        "cbsnap ended by itself"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(c.state(), "paused", "SIGKILL leaves it paused");
}

#[test]
fn any_command_and_recover_resume_a_container_left_paused() {
    let _e = fx::engine();
    let vol = TestVolume::new("cbtq", &[("cbsnap.test", "1")]);
    // Enough data that the snapshot is still reading when it is killed.
    vol.populate("for i in 1 2 3 4 5 6 7 8; do head -c 16777216 /dev/urandom > /data/blob$i; done");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let repo = Repo::new();

    // `snapshots` is not a snapshot of that volume, and needs no Docker: it resumes
    // the container all the same.
    kill_while_paused(&repo, &vol.name, &c);
    let o = cmd(&repo).args(["snapshots"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resumed container"), "{}", stderr(&o));
    assert_eq!(c.state(), "running");

    // `cbsnap recover` does it explicitly.
    kill_while_paused(&repo, &vol.name, &c);
    let o = cmd(&repo).args(["recover"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&c.name), "{}", stderr(&o));
    assert_eq!(c.state(), "running");
    assert!(!repo.path().join("locks/quiesced.json").exists());
}

#[test]
fn a_volume_removed_as_the_archive_snapshot_starts_is_not_recreated() {
    let _e = fx::engine();
    let repo = Repo::new();

    // The race made to happen: a proxy in front of the engine removes the volume just
    // before it forwards the helper's `containers/create`, after cbsnap looked at the
    // volume. Docker then creates an empty volume of that name for the mount.
    let vol = TestVolume::new("cbtv", &[("cbsnap.test", "1")]);
    vol.populate("echo precious > /data/f");
    let name = vol.name.clone();
    let proxy = fx::EngineProxy::new("/containers/create", move || {
        let rm = Command::new("docker")
            .args(["volume", "rm", &name])
            .output()
            .unwrap();
        format!("{} {}", rm.status, String::from_utf8_lossy(&rm.stderr))
    });
    let o = cmd(&repo)
        .env("DOCKER_HOST", proxy.host())
        .args(["snapshot", &vol.name, "--via", "archive"])
        .output()
        .unwrap();
    let e = stderr(&o);
    let fired = proxy.fired();
    assert!(
        fired
            .as_deref()
            .is_some_and(|f| f.starts_with("exit status: 0")),
        "the proxy did not remove the volume before the helper's create: {fired:?}; {e}"
    );
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("removed or replaced"), "{e}");
    assert!(e.contains("empty volume Docker created"), "{e}");
    assert!(
        !volume_exists(&vol.name),
        "the volume was created again: {e}"
    );
    assert!(vol.helper_containers().is_empty(), "a helper was left");
    assert!(
        repo.snapshots_json().is_empty(),
        "a snapshot was committed: {e}"
    );

    // Whatever the timing, the same holds: a `docker volume rm` at 0..350 ms into the
    // run either fails (the helper mounts the volume), or cbsnap stops with an error,
    // or it comes after the snapshot; never a volume made again or an empty snapshot.
    for trial in 0..8u64 {
        let vol = TestVolume::new("cbtv", &[("cbsnap.test", "1")]);
        vol.populate("echo precious > /data/f");
        let child = cmd(&repo)
            .args(["snapshot", &vol.name, "--via", "archive"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(trial * 50));
        let rm = Command::new("docker")
            .args(["volume", "rm", &vol.name])
            .output()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        let e = stderr(&o);
        if rm.status.success() {
            assert!(
                !volume_exists(&vol.name),
                "trial {trial}: the volume was created again: {e}"
            );
        }
        // Removed before cbsnap resolved the name: an unknown name (2); after that,
        // before the helper mounted it: a volume gone (1) or "removed or replaced" (1).
        if !o.status.success() {
            let code = o.status.code();
            assert!(
                (code == Some(2) && e.contains("no Docker volume named"))
                    || (code == Some(1) && e.contains(": no volume named"))
                    || (code == Some(1) && e.contains("removed or replaced")),
                "trial {trial}: {code:?} {e}"
            );
        }
        for s in repo.snapshots_json() {
            assert!(
                s["stats"]["files"].as_u64().unwrap() >= 1,
                "trial {trial}: {s}"
            );
        }
    }
}

fn volume_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// A run in its own PID namespace records pid 1, which here names init, alive for
/// ever; so does a run before a reboot whose pid a new process took. Killed while a
/// container is paused, such a run left it paused: `recover` said "0 container(s)
/// resumed" and exited 0. The record also says who the process was (boot and start
/// time), so the pid alone no longer keeps the container paused.
#[test]
fn a_recorded_pid_that_names_another_process_keeps_nothing_paused() {
    let _e = fx::engine();
    let vol = TestVolume::new("cbtn", &[("cbsnap.test", "1")]);
    vol.populate("for i in $(seq 1 24); do head -c 16777216 /dev/urandom > /data/blob$i; done");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let repo = Repo::new();
    // cbsnap as pid 1 of a new PID namespace; --kill-child: SIGKILL to unshare kills it.
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            BIN,
            "-q",
            "--repo",
        ])
        .arg(repo.path())
        .args(["snapshot", &vol.name, "--via", "archive"])
        .env("HOME", repo.dir.path())
        .env("XDG_CONFIG_HOME", repo.dir.path().join("no-config"))
        .env_remove("CBSNAP_REPO")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let start = Instant::now();
    while c.state() != "paused" && start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "cbsnap ended before it paused the container: {}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.state(), "paused", "the container was never paused");
    // While that run lives, `recover` here leaves its container alone: its pid 1
    // names init here, but a process in another namespace started at its tick.
    let o = cmd(&repo).args(["--json", "recover"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "cbsnap ended by itself (give it more to read)"
    );
    assert_eq!(v["left_alone"][0]["name"], c.name.as_str(), "{v}");
    assert_eq!(c.state(), "paused", "a live run's container was resumed");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.state(), "paused", "SIGKILL leaves it paused");
    let state = std::fs::read_to_string(repo.path().join("locks/quiesced.json")).unwrap();
    assert!(
        state.contains("\"pid\":1,") || state.contains("\"pid\": 1,"),
        "{state}"
    );

    let o = cmd(&repo).args(["--json", "recover"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["resumed"][0]["name"], c.name.as_str(), "{v}");
    assert_eq!(v["left_alone"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(c.state(), "running");
    assert!(
        vol.helper_containers().is_empty(),
        "the dead run's helper was left"
    );
}
