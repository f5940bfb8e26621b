//! The archive route (a helper container and Docker's archive API) as a volume's
//! only faithful route: it keeps the volume root's owner and mode on restore, and it
//! is the route taken for volumes whose data is not under their mountpoint.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::docker::{self as fx, TestContainer, TestVolume};
use crate::util::*;

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

/// The owner and mode of the volume's root, as a container sees them.
fn root_of(vol: &TestVolume) -> String {
    vol.inspect_with("stat -c '%u:%g %a' /data")
}

/// A Postgres-style volume root (999:999 0770), snapshotted through the mountpoint
/// (sub-second times: its dump starts with a PAX header) and through the archive
/// API, comes back with its owner and mode from an archive restore, into a removed
/// volume and over a changed one.
#[test]
fn archive_restore_keeps_the_owner_and_mode_of_the_volume_root() {
    let _e = fx::engine();
    assert!(is_root(), "--via mount needs root on the Docker host");
    let repo = Repo::new();
    let vol = TestVolume::new("cbsnap-t-pgroot", &[("cbsnap.test", "1")]);
    vol.populate("echo 16 > /data/PG_VERSION && chown 999:999 /data && chmod 0770 /data");
    assert_eq!(root_of(&vol), "999:999 770");
    for read_via in ["mount", "archive"] {
        let o = cmd(&repo)
            .args(["snapshot", &vol.name, "--via", read_via])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let spec = format!("{}@latest", vol.name);

        fx::docker(&["volume", "rm", &vol.name]);
        let o = cmd(&repo)
            .args(["restore", &spec, "--via", "archive"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(root_of(&vol), "999:999 770", "read via {read_via}, removed");

        vol.populate("echo junk > /data/junk && chown 0:0 /data && chmod 0755 /data");
        let o = cmd(&repo)
            .args(["restore", &spec, "--via", "archive"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(root_of(&vol), "999:999 770", "read via {read_via}, changed");
        assert_eq!(vol.inspect_with("ls /data"), "PG_VERSION");
    }
}

/// A volume bound to a host directory (`--opt type=none --opt o=bind --opt
/// device=DIR`), the compose project's. Its `_data` is empty while no container uses
/// it; `snapshot`, `snapshot --all` and `restore` read and write DIR through a helper
/// container, `--via mount` is refused naming the route to use, and a restore over
/// changed data makes the volume equal to the snapshot (extra files removed).
#[test]
fn a_bind_backed_volume_is_read_and_written_where_its_data_is() {
    let _e = fx::engine();
    assert!(is_root(), "the bind device is written as root");
    let device = tempfile::tempdir().unwrap();
    let dir = device.path();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("real.txt"), b"data\n").unwrap();
    std::fs::write(dir.join("sub/deep"), b"deep\n").unwrap();
    let project = fx::unique("cbt-bind");
    let name = format!("{project}_data");
    let label = ("com.docker.compose.project", project.as_str());
    let vol = fx::bound_volume(&name, dir, &[label]);
    let repo = Repo::new();
    let ls = |spec: &str| {
        let o = cmd(&repo).args(["ls", spec]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let o = cmd(&repo).args(["snapshot", &name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = ls(&format!("{name}@latest"));
    assert!(
        listed.contains("real.txt") && listed.contains("sub"),
        "{listed}"
    );

    let o = cmd(&repo)
        .args(["snapshot", &name, "--via", "mount"])
        .output()
        .unwrap();
    let e = stderr(&o);
    // A volume snapshot is a run of one source: a source that fails is exit 1.
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&name) && e.contains("--via archive"), "{e}");

    let o = cmd(&repo)
        .args(["snapshot", "--all", "--project", &project])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = ls("data@latest");
    assert!(listed.contains("real.txt"), "snapshot --all: {listed}");

    // Changed data: a restore makes it equal to the snapshot, by either route.
    for via in ["auto", "archive"] {
        std::fs::write(dir.join("real.txt"), b"changed\n").unwrap();
        std::fs::write(dir.join("added-later"), b"stale\n").unwrap();
        std::fs::create_dir_all(dir.join("new-dir/deep")).unwrap();
        let o = cmd(&repo)
            .args(["restore", &format!("{name}@latest"), "--via", via])
            .output()
            .unwrap();
        assert!(o.status.success(), "{via}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(dir.join("real.txt")).unwrap(),
            b"data\n",
            "{via}"
        );
        assert_eq!(std::fs::read(dir.join("sub/deep")).unwrap(), b"deep\n");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["real.txt", "sub"], "{via}: extra files left behind");
        assert_eq!(vol.inspect_with("cat /data/real.txt"), "data");
    }
    let o = cmd(&repo)
        .args(["restore", &format!("{name}@latest"), "--via", "mount"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A bind-backed volume is emptied in its device directory before the upload, but
/// never while something is mounted inside that directory: emptying it would empty
/// the mounted filesystem too. The restore is refused (exit 1, naming the mount),
/// by either route, and changes nothing: the directory keeps what it held, the
/// mounted tmpfs its files; once that is unmounted the same restore succeeds.
#[test]
fn a_bind_backed_volume_is_not_emptied_while_something_is_mounted_inside_it() {
    let _e = fx::engine();
    assert!(
        is_root(),
        "the bind device is emptied, and a tmpfs mounted, as root"
    );
    // Declared first, dropped last: the volume is removed and the tmpfs unmounted
    // before the directory is, also when an assertion fails.
    let device = tempfile::tempdir().unwrap();
    let dir = device.path();
    std::fs::write(dir.join("real.txt"), b"data\n").unwrap();
    let name = fx::unique("cbt-bindmnt");
    let _vol = fx::bound_volume(&name, dir, &[]);
    let repo = Repo::new();
    let o = cmd(&repo).args(["snapshot", &name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    std::fs::write(dir.join("real.txt"), b"changed\n").unwrap();
    std::fs::write(dir.join("added-later"), b"stale\n").unwrap();
    // As the mount table names it.
    let at = std::fs::canonicalize(dir).unwrap().join("cache");
    let tmpfs = crate::util::mount::Mount::tmpfs(&at, "1m");
    std::fs::write(at.join("on-tmpfs"), b"mounted\n").unwrap();
    let dev = |p: &Path| p.metadata().unwrap().dev();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let spec = format!("{name}@latest");
    for via in ["auto", "archive"] {
        let o = cmd(&repo)
            .args(["restore", &spec, "--via", via])
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{via}: {e}");
        assert!(
            e.contains(&at.display().to_string()) && e.contains("mounted inside it"),
            "{via}: {e}"
        );
        assert_eq!(listing(), ["added-later", "cache", "real.txt"], "{via}");
        assert_eq!(std::fs::read(dir.join("real.txt")).unwrap(), b"changed\n");
        assert_eq!(std::fs::read(at.join("on-tmpfs")).unwrap(), b"mounted\n");
        assert_ne!(dev(&at), dev(dir), "{via}: the tmpfs is still mounted");
    }
    // With a container using it and `--stop`: refused before it is stopped, so it
    // keeps running (refused after, a restore that changed nothing kept it stopped).
    let user = TestContainer::run(
        &name,
        &[],
        "trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    assert_eq!(user.wait_for("running", Duration::from_secs(10)), "running");
    let o = cmd(&repo)
        .args(["restore", &spec, "--stop"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("mounted inside it") && !e.contains("did not finish"),
        "{e}"
    );
    assert_eq!(user.state(), "running", "never stopped");
    assert!(!repo.path().join("locks/quiesced.json").exists());
    drop(user);

    drop(tmpfs);
    let o = cmd(&repo).args(["restore", &spec]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(listing(), ["real.txt"]);
    assert_eq!(std::fs::read(dir.join("real.txt")).unwrap(), b"data\n");
}

/// A volume with driver options that is no host directory (tmpfs here; NFS is the
/// same case: removing and recreating the volume leaves its data where it is, and
/// the archive API cannot delete files) and holds files: `restore --stop` refuses
/// before anything is touched, saying why, instead of stopping the container.
#[test]
fn a_volume_that_cannot_be_cleared_is_refused_before_anything_is_touched() {
    let _e = fx::engine();
    let name = fx::unique("cbsnap-t-tmpfs");
    fx::docker(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        &name,
    ]);
    let vol = TestVolume::adopt(&name);
    // A tmpfs volume holds data only while mounted: a container keeps it mounted.
    let c = fx::TestContainer::run(
        &name,
        &[],
        "echo v1 > /data/f; trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    assert_eq!(
        c.wait_for("running", std::time::Duration::from_secs(10)),
        "running"
    );
    let repo = Repo::new();
    let o = cmd(&repo).args(["snapshot", &name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    vol.populate("echo v2 > /data/f");

    let since = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let o = cmd(&repo)
        .args(["restore", &format!("{name}@latest"), "--stop"])
        .output()
        .unwrap();
    let until = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&name) && e.contains("type=tmpfs") && e.contains("--to-volume"),
        "{e}"
    );
    let events = fx::docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={}", c.id),
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        !events.contains("stop") && !events.contains("die"),
        "{events}"
    );
    assert_eq!(c.state(), "running");
    assert_eq!(
        vol.inspect_with("cat /data/f"),
        "v2",
        "the data was touched"
    );
}
