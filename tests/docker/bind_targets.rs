//! Host directories that running containers use are restore targets like their
//! volumes: the stack's `./workspace` bind mount, a directory holding it or inside
//! it, a volume's own directory given as `--to DIR`. `restore --all` stops their
//! containers with `--stop` and refuses without it; `restore NAME --to DIR`
//! refuses (exit 1) while they run. A host whose engine does not answer restores as
//! before. These restores used to rewrite the directory under the running
//! container, deleting its unsaved files, with exit 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::docker::{self as fx, project_volume, TestContainer, TestVolume};
use crate::util::*;

const SLEEPER: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

/// A container of compose project `project` that bind-mounts `dir` at `/ws`.
fn bind_user(project: &str, dir: &Path) -> TestContainer {
    let mount = format!("{}:/ws", dir.display());
    let c = TestContainer::with_mounts(
        &[&mount],
        &[
            ("com.docker.compose.project", project),
            ("com.docker.compose.service", "ws"),
        ],
        SLEEPER,
    );
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    c
}

/// A repository and a config naming `project` and the host `paths`.
fn stack(project: &str, paths: &[&Path]) -> (Repo, PathBuf) {
    let repo = Repo::new();
    let config = repo.dir.path().join("config.toml");
    let paths: Vec<String> = paths
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    std::fs::write(
        &config,
        format!("project = \"{project}\"\npaths = [{}]\n", paths.join(", ")),
    )
    .unwrap();
    (repo, config)
}

fn run(repo: &Repo, config: &Path, args: &[&str]) -> Output {
    cmd(repo)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// The tester's case: a stack of a volume and a `./workspace` that the running `ws`
/// service bind-mounts. `restore --all --delete` without `--stop` refuses, naming
/// it, before anything is touched (it rewrote the workspace and deleted the file the
/// service had just written); the plan lists it among the containers it stops; with
/// `--stop` it is stopped once, the workspace restored, and it is started again.
#[test]
fn restore_all_stops_or_refuses_for_a_container_that_bind_mounts_a_host_path() {
    let _e = fx::engine();
    let project = fx::unique("cbt-bind");
    let db = project_volume(&project, "db");
    db.populate("echo db-v1 > /data/f");
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("workspace");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("notes"), "v1").unwrap();
    let (repo, config) = stack(&project, &[&ws]);
    let o = run(&repo, &config, &["snapshot", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let c = bind_user(&project, &ws);
    std::fs::write(ws.join("notes"), "v2").unwrap();
    std::fs::write(ws.join("unsaved.txt"), "live").unwrap();

    let o = run(&repo, &config, &["restore", "--all", "--delete"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("half-old stack") && e.contains(&c.name) && e.contains("--stop"),
        "{e}"
    );
    assert_eq!(
        read(&ws.join("unsaved.txt")),
        "live",
        "the workspace was touched"
    );
    assert_eq!(read(&ws.join("notes")), "v2");
    assert_eq!(c.state(), "running");

    let o = run(
        &repo,
        &config,
        &["restore", "--all", "--delete", "--stop", "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("stops once before: {}", c.name)),
        "{}",
        stdout(&o)
    );
    assert_eq!(c.state(), "running");

    let since = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let o = run(&repo, &config, &["restore", "--all", "--delete", "--stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let until = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    assert_eq!(read(&ws.join("notes")), "v1");
    assert!(!ws.join("unsaved.txt").exists());
    assert_eq!(db.inspect_with("cat /data/f"), "db-v1");
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let events = fx::docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={}", c.id),
        "--filter",
        "event=stop",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["stop", "start"],
        "{events}"
    );
}

/// A run of host paths only, whose directory a running container reaches through a
/// bind mount of the directory holding it: refused without `--stop` (exit 1), and
/// with it the container is stopped for the restore and started again.
#[test]
fn restore_all_of_host_paths_only_sees_a_bind_mount_of_the_directory_holding_one() {
    let _e = fx::engine();
    let project = fx::unique("cbt-bindup");
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("stack").join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("notes"), "v1").unwrap();
    let (repo, config) = stack(&project, &[&ws]);
    let o = run(&repo, &config, &["snapshot", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let c = bind_user(&project, &work.path().join("stack"));
    std::fs::write(ws.join("notes"), "v2").unwrap();
    let o = run(&repo, &config, &["restore", "--all", "--force"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&c.name), "{e}");
    assert_eq!(read(&ws.join("notes")), "v2", "the path was touched");
    assert_eq!(c.state(), "running");

    let o = run(&repo, &config, &["restore", "--all", "--force", "--stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read(&ws.join("notes")), "v1");
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
}

/// `restore NAME --to DIR` into a directory a running container bind-mounts, into a
/// directory inside that mount, or into one holding it, is refused with exit 1,
/// naming the container and saying to stop it, and nothing is written (also while
/// it is paused); a neighbouring directory is not in use. With the engine
/// unreachable the restore goes on as on a host without Docker.
#[test]
fn a_restore_to_a_directory_a_running_container_bind_mounts_is_refused() {
    let _e = fx::engine();
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("workspace");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/main.rs"), "v1").unwrap();
    let repo = Repo::new();
    let o = cmd(&repo)
        .args(["snapshot", "--path"])
        .arg(&ws)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::write(ws.join("src/main.rs"), "v2").unwrap();
    std::fs::write(ws.join("unsaved.txt"), "live").unwrap();
    let c = bind_user(&fx::unique("cbt-bindto"), &ws);

    let targets: [(PathBuf, &str); 3] = [
        (ws.clone(), "--delete"),
        (ws.join("src"), "--delete"),
        (work.path().to_path_buf(), "--force"),
    ];
    for (to, flag) in &targets {
        let o = cmd(&repo)
            .args(["restore", "workspace@latest", "--to"])
            .arg(to)
            .arg(flag)
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {e}", to.display());
        assert!(
            e.contains("in use") && e.contains(&c.name) && e.contains("docker stop"),
            "{e}"
        );
    }
    // Paused, it is still in use: it goes on where it stopped.
    fx::docker(&["pause", &c.id]);
    let o = cmd(&repo)
        .args(["restore", "workspace@latest", "--delete", "--to"])
        .arg(&ws)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&c.name), "{}", stderr(&o));
    fx::docker(&["unpause", &c.id]);
    assert_eq!(
        read(&ws.join("unsaved.txt")),
        "live",
        "the workspace was touched"
    );
    assert_eq!(read(&ws.join("src/main.rs")), "v2");
    assert!(!ws.join("src/workspace").exists() && !work.path().join("src").exists());
    assert_eq!(c.state(), "running");

    let beside = work.path().join("workspace2");
    let o = cmd(&repo)
        .args(["restore", "workspace@latest", "--to"])
        .arg(&beside)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read(&beside.join("src/main.rs")), "v1");

    // A container that mounts a directory holding it read-only (a monitoring agent's
    // `/:/rootfs:ro`) writes nothing there: it does not hold the restore back.
    let agent = TestContainer::with_mounts(
        &[&format!("{}:/rootfs:ro", work.path().display())],
        &[],
        SLEEPER,
    );
    assert_eq!(
        agent.wait_for("running", Duration::from_secs(10)),
        "running"
    );
    let o = cmd(&repo)
        .args(["restore", "workspace@latest", "--force", "--to"])
        .arg(&beside)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    drop(agent);

    let o = cmd(&repo)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["restore", "workspace@latest", "--delete", "--to"])
        .arg(&ws)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read(&ws.join("src/main.rs")), "v1");
    assert!(!ws.join("unsaved.txt").exists());
}

/// A volume's own directory on this host given as `--to DIR`, while a running
/// container uses the volume, is refused as a restore into the volume would be;
/// it used to be rewritten under the container with exit 0.
#[test]
fn a_restore_to_the_directory_of_a_volume_in_use_is_refused() {
    assert!(is_root(), "this test writes a volume's directory");
    let _e = fx::engine();
    let vol = TestVolume::new("cbsnap-t-voldir", &[("cbsnap.test", "1")]);
    vol.populate("echo v1 > /data/f");
    let repo = Repo::new();
    let o = cmd(&repo).args(["snapshot", &vol.name]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    vol.populate("echo v2 > /data/f; echo live > /data/unsaved");
    let c = TestContainer::run(&vol.name, &[], SLEEPER);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");

    let dir = fx::mountpoint(&vol.name);
    let o = cmd(&repo)
        .args([
            "restore",
            &format!("{}@latest", vol.name),
            "--delete",
            "--to",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&c.name) && e.contains("in use"), "{e}");
    assert_eq!(vol.inspect_with("cat /data/f /data/unsaved"), "v2\nlive");
    assert_eq!(c.state(), "running");
}

/// A container that bind-mounts a volume's directory (`-v
/// /var/lib/docker/volumes/NAME/_data:/x`) uses the volume as one that mounts it by
/// name does: a restore of the volume without `--stop` is refused naming it, and
/// with `--stop` stops and starts it. Its files were replaced under it, exit 0.
#[test]
fn a_volume_restore_counts_containers_that_bind_mount_its_directory() {
    assert!(is_root(), "the volume's directory is bind-mounted");
    let _e = fx::engine();
    let vol = TestVolume::new("cbsnap-t-voluser", &[("cbsnap.test", "1")]);
    vol.populate("echo v1 > /data/f");
    let repo = Repo::new();
    let o = cmd(&repo).args(["snapshot", &vol.name]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    vol.populate("echo v2 > /data/f");
    let dir = fx::mountpoint(&vol.name);
    let c = TestContainer::with_mounts(&[&format!("{}:/x", dir.display())], &[], SLEEPER);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");

    let spec = format!("{}@latest", vol.name);
    let o = cmd(&repo).args(["restore", &spec]).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&c.name), "{e}");
    assert_eq!(vol.inspect_with("cat /data/f"), "v2");
    assert_eq!(c.state(), "running");

    let o = cmd(&repo)
        .args(["restore", &spec, "--stop"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
}
