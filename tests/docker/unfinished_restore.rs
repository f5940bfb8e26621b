//! A restore into a volume that does not finish (the disk fills up, a signal ends
//! it, a kill) leaves the volume part old, part restored. The containers it stopped
//! stay stopped rather than start on that: the state file holds them, every run and
//! `cbsnap recover` (exit 1) name them with the command that finishes the restore,
//! and that restore, once it finishes, starts them again.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::docker::{self as fx, TestContainer, TestVolume};
use crate::util::mount::Mount;
use crate::util::*;

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

/// A volume whose snapshot holds `f` = v1 and 4 MB of random bytes; now `f` = v2.
fn snapshotted(repo: &Repo, prefix: &str) -> TestVolume {
    let vol = TestVolume::new(prefix, &[("cbsnap.test", "1")]);
    fill(repo, vol)
}

/// [`snapshotted`] for a volume bound to a host directory (`--opt o=bind`; the
/// returned temporary directory, which outlives the volume), which a restore through
/// a helper container empties in that directory, and a container writing to it
/// (Docker could not recreate the volume under it).
struct Bound {
    // Dropped in this order: the container, the volume, then its directory.
    writer: TestContainer,
    vol: TestVolume,
    _device: tempfile::TempDir,
}

fn snapshotted_bound(repo: &Repo, prefix: &str) -> Bound {
    let device = tempfile::tempdir().unwrap();
    let name = fx::unique(prefix);
    let vol = fill(
        repo,
        fx::bound_volume(&name, device.path(), &[("cbsnap.test", "1")]),
    );
    let writer = TestContainer::writer(&vol.name, &[]);
    assert_eq!(
        writer.wait_for("running", Duration::from_secs(10)),
        "running"
    );
    Bound {
        writer,
        vol,
        _device: device,
    }
}

fn fill(repo: &Repo, vol: TestVolume) -> TestVolume {
    vol.populate("echo v1 > /data/f; head -c 4000000 /dev/urandom > /data/big");
    let o = cmd(repo).args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    vol.populate("echo v2 > /data/f");
    vol
}

/// `cbsnap recover` keeps `c` stopped, names it and the command, and exits 1.
fn recover_keeps_it_stopped(repo: &Repo, c: &TestContainer, vol: &TestVolume) {
    let o = cmd(repo).args(["recover"]).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&c.name) && e.contains("did not finish"), "{e}");
    assert!(
        e.contains(&format!(
            "cbsnap --repo {} restore {}@",
            repo.path().display(),
            vol.name
        )) && e.contains("--stop"),
        "the command that finishes it: {e}"
    );
    assert_eq!(c.state(), "exited", "recover must not start it");
}

/// The restore that finishes: `f` is v1 again, the container runs, nothing is held.
fn finishing_restore_starts_it(repo: &Repo, c: &TestContainer, vol: &TestVolume, via: &str) {
    let o = cmd(repo)
        .args([
            "restore",
            &format!("{}@latest", vol.name),
            "--stop",
            "--via",
            via,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    assert!(
        !repo.path().join("locks/quiesced.json").exists(),
        "nothing is held once the restore finished"
    );
    let o = cmd(repo).args(["recover"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The disk fills up halfway through a restore through the volume's mountpoint:
/// the restore fails (1), and the container it stopped stays stopped, named with
/// the command that finishes the restore. It used to be started again on a volume
/// holding a new `f` and no `big`.
#[test]
fn a_restore_that_fills_the_disk_keeps_the_containers_stopped() {
    if !is_root() {
        panic!("this test mounts a tmpfs over a volume's directory: run it as root");
    }
    let _e = fx::engine();
    let repo = Repo::new();
    let vol = snapshotted(&repo, "cbsnap-t-full");
    // 1 MB of room where the snapshot needs 4: the container sees the tmpfs too.
    let full = Mount::tmpfs(&fx::mountpoint(&vol.name), "1m");
    vol.populate("echo v2 > /data/f");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");

    let o = cmd(&repo)
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("No space left") || e.contains("full"), "{e}");
    assert!(
        e.contains(&format!("left {} stopped", c.name)) && e.contains("did not finish"),
        "{e}"
    );
    assert_eq!(c.state(), "exited", "not started on a half-restored volume");

    // Any command that opens the repository says so; `recover` too, with exit 1.
    let o = cmd(&repo).args(["snapshots"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&c.name), "{}", stderr(&o));
    recover_keeps_it_stopped(&repo, &c, &vol);

    // The night's snapshot leaves the half-restored volume out (exit 1), so that its
    // last snapshot stays its last whole copy; it was saved as its `@latest`.
    let o = cmd(&repo).args(["snapshot", &vol.name]).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("half restored") && e.contains("not snapshotted"),
        "{e}"
    );
    let o = cmd(&repo).args(["--json", "snapshots"]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Room again: the restore finishes, and starts the container it had stopped.
    drop(full);
    finishing_restore_starts_it(&repo, &c, &vol, "mount");
    let o = cmd(&repo).args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// SIGINT in the middle of a restore through a helper container (the proxy sends
/// it as the upload begins, after the volume was emptied in its bind device): exit 130, the container
/// stays stopped and held; the restore run again finishes and starts it.
#[test]
fn a_signal_during_a_volume_restore_keeps_the_containers_stopped() {
    let _e = fx::engine();
    let repo = Repo::new();
    let bound = snapshotted_bound(&repo, "cbsnap-t-sigrestore");
    let (c, vol) = (&bound.writer, &bound.vol);

    // `PUT` is the archive upload, the only PUT of Docker's API; it is held back
    // until the signal has ended the process.
    let (proxy, pid) = signal_at("PUT /", libc::SIGINT, Duration::from_secs(2));
    let child = cmd(&repo)
        .env("DOCKER_HOST", proxy.host())
        .args([
            "restore",
            &format!("{}@latest", vol.name),
            "--stop",
            "--via",
            "archive",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pid.store(child.id(), Ordering::SeqCst);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(
        proxy.fired().as_deref(),
        Some(format!("signal {} to {}: 0", libc::SIGINT, o_pid(&pid)).as_str()),
        "the signal must land during the upload: {e}"
    );
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(
        e.contains(&format!("left {} stopped", c.name)) && e.contains("did not finish"),
        "{e}"
    );
    assert_eq!(c.state(), "exited", "not started on an emptied volume");
    let state = std::fs::read_to_string(repo.path().join("locks/quiesced.json")).unwrap();
    assert!(
        state.contains(&c.id) && state.contains("\"version\": 2"),
        "{state}"
    );

    recover_keeps_it_stopped(&repo, c, vol);
    finishing_restore_starts_it(&repo, c, vol, "archive");
}

/// An engine proxy that sends `sig` to the process whose pid the test stores in the
/// returned cell, just before it forwards the first request whose head holds
/// `marker`, then holds that request back for `hold`.
pub(crate) fn signal_at(
    marker: &'static str,
    sig: i32,
    hold: Duration,
) -> (fx::EngineProxy, Arc<AtomicU32>) {
    let pid = Arc::new(AtomicU32::new(0));
    let target = pid.clone();
    let proxy = fx::EngineProxy::new(marker, move || {
        let pid = target.load(Ordering::SeqCst);
        // SAFETY: kill(2) of the cbsnap child the test started.
        let sent = unsafe { libc::kill(pid as libc::pid_t, sig) };
        std::thread::sleep(hold);
        format!("signal {sig} to {pid}: {sent}")
    });
    (proxy, pid)
}

pub(crate) fn o_pid(pid: &AtomicU32) -> u32 {
    pid.load(Ordering::SeqCst)
}

/// SIGTERM while the containers are being stopped, before anything is written: they
/// are started again and nothing is held (they were held, with a message saying the
/// volume was half-restored when it was untouched).
#[test]
fn a_signal_before_the_restore_writes_starts_the_containers_again() {
    let _e = fx::engine();
    let repo = Repo::new();
    let vol = snapshotted(&repo, "cbsnap-t-sigstop");
    // Ignores SIGTERM: Docker's stop waits out its 2 s grace, then kills it.
    let c = TestContainer::run(
        &vol.name,
        &[],
        "trap '' TERM; while true; do sleep 0.2; done",
    );
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let (proxy, pid) = signal_at("/stop", libc::SIGTERM, Duration::ZERO);
    let child = cmd(&repo)
        .env("DOCKER_HOST", proxy.host())
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pid.store(child.id(), Ordering::SeqCst);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(
        proxy.fired(),
        Some(format!("signal {} to {}: 0", libc::SIGTERM, o_pid(&pid))),
        "the signal must land while the container is stopped: {e}"
    );
    assert_eq!(o.status.code(), Some(143), "{e}");
    assert!(!e.contains("did not finish"), "{e}");
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(vol.inspect_with("cat /data/f"), "v2", "nothing was written");
    assert!(!repo.path().join("locks/quiesced.json").exists());
}

/// A second restore into a volume while one runs is refused before it touches
/// anything, naming the first (two ran at once, mixed their files, and the stack
/// was started on a volume that matched neither snapshot).
#[test]
fn a_second_restore_into_a_volume_being_restored_is_refused() {
    let _e = fx::engine();
    let repo = Repo::new();
    let bound = snapshotted_bound(&repo, "cbsnap-t-tworestores");
    let (c, vol) = (&bound.writer, &bound.vol);
    let spec = format!("{}@latest", vol.name);
    let second = Arc::new(std::sync::Mutex::new(None));
    let seen = second.clone();
    let (repo_dir, home) = (repo.path(), repo.dir.path().to_path_buf());
    let spec2 = spec.clone();
    // While the first one's upload is held back, the second is run.
    let name = vol.name.clone();
    let proxy = fx::EngineProxy::new("PUT /", move || {
        let run = |args: &[&str]| {
            let o = crate::util::cbsnap(&home, &repo_dir)
                .env("HOME", &home)
                .arg("-q")
                .args(args)
                .output()
                .unwrap();
            format!("{:?}: {}", o.status.code(), stderr(&o))
        };
        let r = format!(
            "{}\n=====\n{}",
            run(&["restore", &spec2, "--stop"]),
            run(&["snapshot", &name])
        );
        *seen.lock().unwrap() = Some(r.clone());
        r
    });
    let o = cmd(&repo)
        .env("DOCKER_HOST", proxy.host())
        .args(["restore", &spec, "--stop", "--via", "archive"])
        .output()
        .unwrap();
    assert!(o.status.success(), "the first restore: {}", stderr(&o));
    let second = second
        .lock()
        .unwrap()
        .clone()
        .expect("the second restore ran");
    let (restore, snapshot) = second.split_once("\n=====\n").unwrap();
    assert!(
        restore.starts_with("Some(1)") && restore.contains("is restoring into volume"),
        "{restore}"
    );
    // Nor is it snapshotted half written.
    assert!(
        snapshot.starts_with("Some(1)") && snapshot.contains("a restore into volume"),
        "{snapshot}"
    );
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
}

/// A volume restore from `repo` left unfinished (the disk full), its container held,
/// with `repo` mirrored (`cbsnap mirror`) to `mirror` before.
struct Held {
    // Dropped in this order: the container, the tmpfs, then the volume.
    c: TestContainer,
    full: Mount,
    vol: TestVolume,
    mirror: std::path::PathBuf,
}

fn held_with_a_mirror(repo: &Repo, prefix: &str) -> Held {
    let vol = snapshotted(repo, prefix);
    let mirror = repo.dir.path().join("mirror");
    let o = cmd(repo).arg("mirror").arg(&mirror).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let full = Mount::tmpfs(&fx::mountpoint(&vol.name), "1m");
    vol.populate("echo v2 > /data/f");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let o = cmd(repo)
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(c.state(), "exited", "not started on a half-restored volume");
    Held {
        c,
        full,
        vol,
        mirror,
    }
}

/// `cbsnap --repo MIRROR -q`, with `repo`'s home.
fn in_mirror(repo: &Repo, mirror: &std::path::Path) -> Command {
    let mut c = cbsnap(repo.dir.path(), mirror);
    c.arg("-q").env("HOME", repo.dir.path());
    c
}

/// The disk fills up halfway through a restore, and the operator finishes it from the
/// repository's mirror (the local repository lost, or on another disk): the mirror's
/// restore takes the held container over from the first repository's state file and
/// starts it, and neither repository holds it after. It used to exit 0 and leave the
/// container stopped, held in the first repository. Meanwhile a snapshot into the
/// mirror sees the volume half restored, as one into the first repository does.
#[test]
fn a_restore_finished_from_a_mirror_starts_the_containers() {
    if !is_root() {
        panic!("this test mounts a tmpfs over a volume's directory: run it as root");
    }
    let _e = fx::engine();
    let repo = Repo::new();
    let Held {
        vol,
        mirror,
        c,
        full,
    } = held_with_a_mirror(&repo, "cbsnap-t-mirror");
    let in_mirror = || in_mirror(&repo, &mirror);
    assert!(repo.path().join("locks/quiesced.json").exists());

    let o = in_mirror().args(["snapshot", &vol.name]).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("half restored"), "{e}");

    drop(full);
    let o = in_mirror()
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    for r in [repo.path(), mirror.clone()] {
        assert!(
            !r.join("locks/quiesced.json").exists(),
            "{} holds nothing once the restore finished",
            r.display()
        );
    }
    let o = cmd(&repo).args(["recover"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = in_mirror().args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// As above, but the first repository is gone (moved away, or lost with its disk)
/// when the mirror finishes the restore: the snapshot into the mirror is refused
/// while the container is stopped (it was taken, half restored, with exit 0); the
/// mirror's restore finishes, and says that the container stays stopped and how to
/// start it (it said nothing, exit 0, and left it stopped). Started by hand, the
/// volume is snapshotted again.
#[test]
fn a_restore_finished_from_a_mirror_with_the_first_repository_gone_says_what_stays_stopped() {
    if !is_root() {
        panic!("this test mounts a tmpfs over a volume's directory: run it as root");
    }
    let _e = fx::engine();
    let repo = Repo::new();
    let Held {
        vol,
        mirror,
        c,
        full,
    } = held_with_a_mirror(&repo, "cbsnap-t-gone");
    let in_mirror = || in_mirror(&repo, &mirror);
    std::fs::rename(repo.path(), repo.dir.path().join("moved")).unwrap();

    let o = in_mirror().args(["snapshot", &vol.name]).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("may be half restored") && e.contains(&c.name),
        "{e}"
    );

    drop(full);
    let o = in_mirror()
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    assert!(
        e.contains("stay stopped") && e.contains(&format!("docker start {}", c.name)),
        "{e}"
    );
    assert_eq!(c.state(), "exited");
    fx::docker(&["start", &c.name]);
    let o = in_mirror().args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A restore whose snapshot cannot be read at all (its packs lost; a damaged index
/// fails the same first read) fails before it stops anything: the container keeps
/// running, nothing is held, the volume is untouched. The container was held, with
/// a message saying the volume was half restored, though nothing had been written.
#[test]
fn a_restore_that_cannot_read_its_snapshot_fails_before_anything_is_stopped() {
    let _e = fx::engine();
    let repo = Repo::new();
    let vol = snapshotted(&repo, "cbsnap-t-lost");
    let mut lost = 0;
    for sub in std::fs::read_dir(repo.path().join("packs"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            std::fs::remove_file(f.path()).unwrap();
            lost += 1;
        }
    }
    assert!(lost > 0, "no pack to lose");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let o = cmd(&repo)
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("no pack holds it") && !e.contains("did not finish"),
        "{e}"
    );
    assert_eq!(c.state(), "running");
    assert!(!repo.path().join("locks/quiesced.json").exists());
    assert_eq!(vol.inspect_with("cat /data/f"), "v2");
}
