//! Containers in every state a volume's users can be in, when a restore or a
//! snapshot must hold them still: a paused container and a restarting one (a crash
//! loop) are stopped too and returned to their state afterwards; a container started
//! with `docker run --rm`, which Docker deletes when it stops, is never stopped.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::docker::{self as fx, project_volume, TestContainer, TestVolume, BUSYBOX_IMAGE};
use crate::util::*;

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

/// The engine's clock, for `docker events --since/--until`.
fn engine_time() -> String {
    fx::docker(&["system", "info", "-f", "{{.SystemTime}}"])
}

/// The actions Docker logged for container `id` between `since` and `until`.
fn events(id: &str, since: &str, until: &str) -> Vec<String> {
    fx::docker(&[
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// A volume holding `f` = v1 in a snapshot, and v2 now.
fn snapshotted_volume(repo: &Repo, prefix: &str) -> TestVolume {
    let vol = TestVolume::new(prefix, &[("cbsnap.test", "1")]);
    vol.populate("echo v1 > /data/f");
    let o = cmd(repo).args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    vol.populate("echo v2 > /data/f");
    vol
}

/// `restore --stop` with a paused writer: without --stop it is refused as running;
/// with it the container is stopped for the restore (it was left paused, and the
/// volume rewritten under it) and is paused again afterwards.
#[test]
fn restore_stop_stops_a_paused_container_and_pauses_it_again() {
    let _e = fx::engine();
    let repo = Repo::new();
    let vol = snapshotted_volume(&repo, "cbsnap-t-paused");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    fx::docker(&["pause", &c.id]);
    let spec = format!("{}@latest", vol.name);

    let o = cmd(&repo).args(["restore", &spec]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&c.name), "{}", stderr(&o));

    let since = engine_time();
    let o = cmd(&repo)
        .args(["restore", &spec, "--stop"])
        .output()
        .unwrap();
    let until = engine_time();
    assert!(o.status.success(), "{}", stderr(&o));
    let actions = events(&c.id, &since, &until);
    let pos = |a: &str| actions.iter().position(|x| x == a);
    assert!(
        matches!((pos("die"), pos("start"), pos("pause")), (Some(d), Some(s), Some(p)) if d < s && s < p),
        "the paused container must be stopped, then started and paused again: {actions:?}"
    );
    assert_eq!(c.state(), "paused", "returned to the state it was found in");
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    fx::docker(&["unpause", &c.id]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
}

/// A `--restart always` container in a crash loop is restarting most of the time,
/// and its restart policy can start it in the middle of the restore: `--stop` stops
/// it (the restore had left it alone), and it is started again afterwards, back into
/// its loop.
#[test]
fn restore_stop_stops_a_restarting_container_and_starts_it_again() {
    let _e = fx::engine();
    fx::busybox_image();
    let repo = Repo::new();
    let vol = snapshotted_volume(&repo, "cbsnap-t-restarting");
    let name = fx::unique("cbsnap-test-c");
    let mount = format!("{}:{}", vol.name, fx::DATA);
    let id = fx::docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--restart",
        "always",
        "--name",
        &name,
        "-v",
        &mount,
        BUSYBOX_IMAGE,
        "/bin/busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    let c = TestContainer { id, name };
    // Docker's back-off doubles from 100 ms: after a few restarts the container
    // spends most of its time restarting.
    let start = Instant::now();
    loop {
        let s = fx::docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            &c.id,
        ]);
        let (state, count) = s.split_once(' ').unwrap();
        if state == "restarting" && count.parse::<u32>().unwrap() >= 4 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no crash loop: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let spec = format!("{}@latest", vol.name);
    let o = cmd(&repo).args(["restore", &spec]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    let since = engine_time();
    let o = cmd(&repo)
        .args(["restore", &spec, "--stop"])
        .output()
        .unwrap();
    let until = engine_time();
    assert!(o.status.success(), "{}", stderr(&o));
    let actions = events(&c.id, &since, &until);
    assert!(
        actions.iter().any(|a| a == "stop"),
        "the restarting container must be stopped for the restore: {actions:?}"
    );
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    // Started again: its restart policy runs it again and again, as before.
    let state = c.state();
    let count = |c: &TestContainer| {
        fx::docker(&["inspect", "-f", "{{.RestartCount}}", &c.id])
            .parse::<u32>()
            .unwrap()
    };
    let before = count(&c);
    let start = Instant::now();
    while count(&c) == before && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        count(&c) > before,
        "not back in its loop after the restore (state {state})"
    );
}

/// A container started with `docker run --rm` using `volume`, running a writer.
fn auto_remove_writer(volume: &str, labels: &[&str]) -> TestContainer {
    fx::busybox_image();
    let name = fx::unique("cbsnap-test-rm");
    let mount = format!("{volume}:{}", fx::DATA);
    let mut args = vec![
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--stop-timeout",
        "2",
    ];
    for l in labels {
        args.extend(["--label", l]);
    }
    args.extend(["--name", &name, "-v", &mount, BUSYBOX_IMAGE]);
    args.extend(["/bin/busybox", "sh", "-c", fx::WRITER_SCRIPT]);
    let id = fx::docker(&args);
    let c = TestContainer { id, name };
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    c
}

/// Stopping a `--rm` container deletes it. `restore --stop` (one volume, and the
/// whole stack) refuses before anything changes, naming it; a snapshot whose mode
/// says stop (the flag or the container's label) pauses it instead and says so.
#[test]
fn a_container_started_with_rm_is_never_stopped() {
    let _e = fx::engine();
    let repo = Repo::new();
    let vol = snapshotted_volume(&repo, "cbsnap-t-autorm");
    let c = auto_remove_writer(&vol.name, &[]);
    let spec = format!("{}@latest", vol.name);

    let o = cmd(&repo)
        .args(["restore", &spec, "--stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&c.name) && e.contains("--rm"), "{e}");
    assert_eq!(c.state(), "running", "the container was touched");
    assert_eq!(
        vol.inspect_with("cat /data/f"),
        "v2",
        "the volume was changed"
    );

    // A snapshot with --quiesce stop: paused instead of deleted, and said so.
    let o = cmd(&repo)
        .args(["snapshot", &vol.name, "--quiesce", "stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains(&c.name) && e.contains("--rm"), "{e}");
    assert_eq!(
        c.state(),
        "running",
        "the container must survive the snapshot"
    );
    let snaps = repo.snapshots_json();
    assert_eq!(snaps.last().unwrap()["consistency"], "paused", "{snaps:?}");

    // The label says stop: the same.
    let labelled = TestVolume::new("cbsnap-t-autorm-label", &[("cbsnap.test", "1")]);
    let l = auto_remove_writer(&labelled.name, &["cbsnap.quiesce=stop"]);
    let o = cmd(&repo)
        .args(["snapshot", &labelled.name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&l.name), "{}", stderr(&o));
    assert_eq!(l.state(), "running", "the labelled container must survive");

    // The whole stack: refused in the plan, before any container is stopped.
    let project = fx::unique("cbt-autorm");
    let pv = project_volume(&project, "data");
    pv.populate("echo v1 > /data/f");
    let o = cmd(&repo)
        .args(["snapshot", "--all", "--project", &project])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let other = TestContainer::writer(&pv.name, &[]);
    let p = auto_remove_writer(&pv.name, &[]);
    let o = cmd(&repo)
        .args(["restore", "--all", "--project", &project, "--stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    // Exit 1 as for the one volume: a state of the stack, not bad usage (it was 2).
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&p.name) && e.contains("--rm"), "{e}");
    assert_eq!(p.state(), "running");
    assert_eq!(other.state(), "running", "nothing may be stopped");
}
