//! Docker volumes end to end, against the real engine: `snapshot --all`, restore
//! into volumes, quiescing, and the errors an operator meets.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::docker::{self as fx, fill_volume, mountpoint, project_volume, TestContainer};
use crate::util::*;

/// A repository whose commands see no config file and no ~/.ollama.
fn repo() -> Repo {
    Repo::new()
}

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

fn snapshot_all(repo: &Repo, project: &str, extra: &[&str]) -> serde_json::Value {
    let o = cmd(repo)
        .args(["--json", "snapshot", "--all", "--project", project])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "snapshot --all failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn snapshot_named<'a>(snaps: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    snaps.iter().filter(|s| s["name"] == name).collect()
}

#[test]
fn snapshot_all_takes_the_project_pauses_each_writer_only_for_its_volume() {
    let _e = fx::engine();
    let project = fx::unique("cbt");
    let data = project_volume(&project, "data");
    data.populate("mkdir -p /data/sub && echo hello > /data/sub/f && echo top > /data/top");
    let busy = project_volume(&project, "busy");
    let cache = project_volume(&project, "x-cache");
    cache.populate("echo cached > /data/c");
    let other = fx::unique("cbother");
    let foreign = project_volume(&other, "data");
    foreign.populate("echo theirs > /data/t");
    let writer = TestContainer::writer(&busy.name, &[]);
    assert_eq!(
        writer.wait_for("running", Duration::from_secs(10)),
        "running"
    );
    let foreign_user = TestContainer::writer(&foreign.name, &[]);

    let repo = repo();
    let since = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let out = snapshot_all(&repo, &project, &["--exclude", "*-cache"]);
    let until = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    assert!(out["run_id"].is_string(), "{out}");

    let snaps = repo.snapshots_json();
    let mut names: Vec<&str> = snaps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["busy", "data"],
        "excluded and foreign volumes must not be taken"
    );
    assert!(snaps.iter().all(|s| s["run_id"] == out["run_id"]));
    assert_eq!(snapshot_named(&snaps, "busy")[0]["consistency"], "paused");
    assert_eq!(snapshot_named(&snaps, "data")[0]["consistency"], "stopped");
    assert_eq!(
        snapshot_named(&snaps, "busy")[0]["origin"]["volume"]["labels"]
            ["com.docker.compose.project"],
        project.as_str()
    );

    // The writer was paused exactly once and runs again; the other project's
    // container was never touched.
    assert_eq!(writer.state(), "running");
    let events = |id: &str| {
        fx::docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &format!("container={id}"),
            "--format",
            "{{.Action}}",
        ])
    };
    let actions: Vec<String> = events(&writer.id)
        .lines()
        .map(str::to_string)
        .filter(|a| a == "pause" || a == "unpause")
        .collect();
    // Paused, then resumed. Once, in CI under load, the events read pause, unpause,
    // pause, unpause for a run that quiesced the writer once (one snapshot of its
    // volume; the test passes alone and beside CPU hogs). The likely cause, not proven,
    // is dockerd 20.10 logging containerd's late "paused" event again after the
    // unpause (`daemon/monitor.go`). What must hold: at least one pause, every pause
    // followed by an unpause, so the last word is an unpause.
    assert!(
        !actions.is_empty()
            && actions
                .chunks(2)
                .all(|pair| pair == ["pause".to_string(), "unpause".to_string()]),
        "the writer must be paused and resumed: {actions:?}"
    );
    assert!(!events(&foreign_user.id).contains("pause"));
    // No helper container is left behind.
    assert!(data.helper_containers().is_empty() && busy.helper_containers().is_empty());

    // Both spellings of a name work.
    let out_dir = tempfile::tempdir().unwrap();
    repo.restore(&format!("{project}_data@latest"), &out_dir.path().join("a"));
    assert_eq!(
        std::fs::read(out_dir.path().join("a/sub/f")).unwrap(),
        b"hello\n"
    );
}

/// A tree the archive API carries faithfully: files, dirs, symlinks, hard links,
/// modes, owners and times. Times are whole seconds: Docker's archive API truncates
/// mtimes to the second when it reads a volume (the mount path keeps nanoseconds).
fn build_plain(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("segments/0")).unwrap();
    std::fs::write(root.join("segments/0/data.bin"), random_bytes(2 << 20, 11)).unwrap();
    std::fs::write(root.join("config.yaml"), b"storage: /qdrant/storage\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("config.yaml", root.join("link")).unwrap();
    std::fs::hard_link(root.join("config.yaml"), root.join("segments/hard")).unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(root.join("segments"), Some(1000), Some(1000)).unwrap();
    for (i, p) in [
        "segments/0/data.bin",
        "config.yaml",
        "empty",
        "link",
        "segments/0",
        "segments",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&root.join(p), 1_650_000_000 + i as i64, 0);
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();
}

fn rm_and_restore_brings_it_back(via: &str) {
    let _e = fx::engine();
    assert!(
        is_root(),
        "these tests fill volumes through their mountpoints and need root"
    );
    let project = fx::unique("cbt");
    let vol = project_volume(&project, "qdrant-data");
    let src = tempfile::tempdir().unwrap();
    if via == "mount" {
        build_every_kind(src.path());
    } else {
        build_plain(src.path());
    }
    fill_volume(&vol.name, src.path());
    let root_mode = std::fs::metadata(src.path()).unwrap().permissions();
    std::fs::set_permissions(mountpoint(&vol.name), root_mode).unwrap();
    let t = std::fs::metadata(src.path()).unwrap();
    filetime::set_file_mtime(
        mountpoint(&vol.name),
        filetime::FileTime::from_last_modification_time(&t),
    )
    .unwrap();

    let repo = repo();
    snapshot_all(&repo, &project, &["--via", via]);
    fx::docker(&["volume", "rm", &vol.name]);
    let o = cmd(&repo)
        .args(["restore", "qdrant-data@latest", "--via", via])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let labels = fx::docker(&["volume", "inspect", "-f", "{{json .Labels}}", &vol.name]);
    assert!(
        labels.contains(&format!("\"com.docker.compose.project\":\"{project}\"")),
        "{labels}"
    );
    compare_trees(src.path(), &mountpoint(&vol.name));

    // Restore over a modified volume: files added since are removed, changed ones reverted.
    let mp = mountpoint(&vol.name);
    std::fs::write(mp.join("added-later"), b"stale").unwrap();
    std::fs::create_dir_all(mp.join("new-dir/deep")).unwrap();
    std::fs::write(mp.join("config.yaml"), b"changed").unwrap_or(());
    let o = cmd(&repo)
        .args(["restore", "qdrant-data@latest", "--via", via])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    compare_trees(src.path(), &mountpoint(&vol.name));
}

#[test]
fn volume_removed_then_restored_via_mount_is_identical() {
    rm_and_restore_brings_it_back("mount");
}

#[test]
fn volume_removed_then_restored_via_archive_is_identical() {
    rm_and_restore_brings_it_back("archive");
}

fn one_percent_change(via: &str) {
    let _e = fx::engine();
    let project = fx::unique("cbt");
    let vol = project_volume(&project, "data");
    let src = tempfile::tempdir().unwrap();
    for i in 0..100u64 {
        std::fs::write(
            src.path().join(format!("seg{i:03}")),
            random_bytes(400 << 10, 700 + i),
        )
        .unwrap();
    }
    fill_volume(&vol.name, src.path());
    let size = dir_size(src.path());
    let repo = repo();
    snapshot_all(&repo, &project, &["--via", via]);
    std::fs::write(
        mountpoint(&vol.name).join("seg042"),
        random_bytes(400 << 10, 99),
    )
    .unwrap();
    snapshot_all(&repo, &project, &["--via", via]);
    let snaps = repo.snapshots_json();
    let added = snaps[1]["stats"]["new_bytes_stored"].as_u64().unwrap();
    assert!(
        added as f64 <= size as f64 * 0.03,
        "{via}: a 1% change stored {added} of {size} bytes"
    );
    assert!(
        added >= 400 << 10,
        "{via}: the change itself must be stored ({added})"
    );
}

#[test]
fn one_percent_change_stores_at_most_three_percent_via_mount() {
    one_percent_change("mount");
}

#[test]
fn one_percent_change_stores_at_most_three_percent_via_archive() {
    one_percent_change("archive");
}

#[test]
fn unreachable_daemon_unknown_volume_and_volume_in_use_are_clear_errors() {
    let _e = fx::engine();
    let repo = repo();
    let o = cmd(&repo)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["snapshot", "--all"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Docker engine"), "{}", stderr(&o));

    let o = cmd(&repo)
        .args(["snapshot", "no-such-volume-xyz"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("docker volume ls"), "{}", stderr(&o));

    let project = fx::unique("cbt");
    let vol = project_volume(&project, "state");
    vol.populate("echo v1 > /data/f");
    let o = cmd(&repo).args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let o = cmd(&repo)
        .args(["restore", &format!("{}@latest", vol.name)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&c.name) && stderr(&o).contains("--stop"),
        "{}",
        stderr(&o)
    );
    // With --stop: restored, and the container runs again.
    let o = cmd(&repo)
        .args(["restore", &format!("{}@latest", vol.name), "--stop"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(vol.inspect_with("cat /data/f"), "v1");
}

#[test]
fn cbsnap_killed_while_a_container_is_paused_is_recovered_by_the_next_run() {
    let _e = fx::engine();
    let project = fx::unique("cbt");
    let vol = project_volume(&project, "big");
    let src = tempfile::tempdir().unwrap();
    for i in 0..16u64 {
        std::fs::write(
            src.path().join(format!("blob{i}")),
            random_bytes(16 << 20, 900 + i),
        )
        .unwrap();
    }
    fill_volume(&vol.name, src.path());
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let repo = repo();
    let mut child = cmd(&repo)
        .args(["snapshot", &vol.name, "--via", "archive"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while c.state() != "paused" && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.state(), "paused", "the container was never paused");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        c.state(),
        "paused",
        "SIGKILL leaves it paused; the next run must fix that"
    );
    let o = cmd(&repo).args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resumed container"), "{}", stderr(&o));
    assert_eq!(c.state(), "running");
    assert_eq!(repo.snapshots_json().len(), 1);
}

/// A bind-backed volume (`--opt type=none,o=bind,device=DIR`), snapshotted with the
/// default `--via auto` as root on the engine's host, is read in its device
/// directory: a file's user xattr is kept, where Docker's tar (`--via archive`)
/// drops it. The first such snapshot after archive ones reads the xattrs anew, not
/// from its parent. They were dropped with exit 0 and no word.
#[test]
fn a_bind_backed_volume_keeps_its_xattrs() {
    assert!(
        is_root(),
        "the volume is read in its device directory as root"
    );
    let _e = fx::engine();
    let repo = repo();
    let device = tempfile::tempdir().unwrap();
    std::fs::write(device.path().join("f"), "data").unwrap();
    xattr::set(device.path().join("f"), "user.kept", b"yes").unwrap();
    let vol = fx::bound_volume(&fx::unique("cbsnap-t-xattr"), device.path(), &[]);
    let snapshot = |via: &str| {
        let o = cmd(&repo)
            .args(["snapshot", &vol.name, "--via", via])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    let restored_xattr = |n: usize| {
        let to = repo.dir.path().join(format!("r{n}"));
        let o = cmd(&repo)
            .args(["restore", &format!("{}@latest", vol.name), "--to"])
            .arg(&to)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        xattr::get(to.join("f"), "user.kept").unwrap()
    };
    snapshot("archive");
    assert_eq!(
        restored_xattr(1),
        None,
        "Docker's tar carries no user xattr"
    );
    snapshot("auto");
    let o = cmd(&repo).args(["--json", "snapshots"]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let vias: Vec<&serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["origin"]["via"])
        .collect();
    assert_eq!(vias, ["archive", "device"], "{listed}");
    assert_eq!(restored_xattr(2).as_deref(), Some(&b"yes"[..]));
    drop(vol);

    // A `device` given through a symbolic link, which Docker follows: read there too
    // (it was refused as a symlinked --path).
    let link = repo.dir.path().join("device-link");
    std::os::unix::fs::symlink(device.path(), &link).unwrap();
    let linked = fx::bound_volume(&fx::unique("cbsnap-t-xattrl"), &link, &[]);
    let o = cmd(&repo)
        .args(["snapshot", &linked.name])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    drop(linked);
}
