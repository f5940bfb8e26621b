//! Where a volume restore may write: the snapshot's own volume is made equal to the
//! snapshot, a new or empty volume is filled, and any other volume that holds files
//! is refused unless `--delete` says its contents may go (as `--to DIR` refuses a
//! non-empty directory). The refusal comes before anything is touched.

use std::process::Command;

use crate::util::docker::{self as fx, project_volume, TestVolume};
use crate::util::*;

fn cmd(repo: &Repo) -> Command {
    let mut c = repo.cmd();
    c.env("HOME", repo.dir.path());
    c
}

/// `restore NAME@latest --to-volume OTHER`, by the given route: an unrelated volume
/// holding a file is refused (exit 2, naming it and --delete) and keeps its file; an
/// empty one is filled; with --delete the non-empty one is made equal to the snapshot;
/// the snapshot's own volume, named with --to-volume, is still made equal to it.
fn a_non_empty_other_volume_is_refused(via: &str) {
    let _e = fx::engine();
    let project = fx::unique("cbt-target");
    let config = project_volume(&project, "qdrant-config");
    config.populate("echo 'storage: /qdrant' > /data/config.yaml");
    let repo = Repo::new();
    let o = cmd(&repo)
        .args(["snapshot", &config.name, "--via", via])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let precious = TestVolume::new("cbsnap-t-precious", &[("cbsnap.test", "1")]);
    precious.populate("echo x > /data/thesis.tex");
    let spec = format!("{}@latest", config.name);
    let o = cmd(&repo)
        .args([
            "restore",
            &spec,
            "--to-volume",
            &precious.name,
            "--via",
            via,
        ])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{via}: {e}");
    assert!(
        e.contains(&precious.name) && e.contains("not empty") && e.contains("--delete"),
        "{via}: {e}"
    );
    assert_eq!(
        precious.inspect_with("cat /data/thesis.tex"),
        "x",
        "{via}: the refused volume was changed"
    );
    // --force keeps other entries for a directory; a volume never does, so it is
    // no licence to wipe one.
    let o = cmd(&repo)
        .args(["restore", &spec, "--to-volume", &precious.name, "--force"])
        .args(["--via", via])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{via}: {}", stderr(&o));
    assert_eq!(precious.inspect_with("cat /data/thesis.tex"), "x");

    // An empty volume needs no flag.
    let empty = TestVolume::new("cbsnap-t-empty", &[("cbsnap.test", "1")]);
    let o = cmd(&repo)
        .args(["restore", &spec, "--to-volume", &empty.name, "--via", via])
        .output()
        .unwrap();
    assert!(o.status.success(), "{via}: {}", stderr(&o));
    assert_eq!(empty.inspect_with("ls /data"), "config.yaml");

    // --delete: the operator said its contents may go.
    let o = cmd(&repo)
        .args(["restore", &spec, "--to-volume", &precious.name, "--delete"])
        .args(["--via", via])
        .output()
        .unwrap();
    assert!(o.status.success(), "{via}: {}", stderr(&o));
    assert_eq!(precious.inspect_with("ls /data"), "config.yaml");

    // The snapshot's own volume, even named with --to-volume, is made equal to it.
    config.populate("echo stale > /data/added-later");
    let o = cmd(&repo)
        .args(["restore", &spec, "--to-volume", &config.name, "--via", via])
        .output()
        .unwrap();
    assert!(o.status.success(), "{via}: {}", stderr(&o));
    assert_eq!(config.inspect_with("ls /data"), "config.yaml");
}

#[test]
fn restore_to_a_non_empty_other_volume_is_refused_via_mount() {
    assert!(is_root(), "--via mount needs root on the Docker host");
    a_non_empty_other_volume_is_refused("mount");
}

#[test]
fn restore_to_a_non_empty_other_volume_is_refused_via_archive() {
    a_non_empty_other_volume_is_refused("archive");
}

/// A tar import has no source volume: restoring it into a volume that holds files
/// is refused (exit 2) with a message that says so, not that the volume "is not the
/// volume it was taken from" (there is none), and the volume keeps its file.
/// `--delete` replaces its contents.
#[test]
fn restore_of_a_tar_import_into_a_non_empty_volume_says_it_has_no_source_volume() {
    let _e = fx::engine();
    let repo = Repo::new();
    let tar = repo.dir.path().join("old-backup.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(5);
    b.append_data(&mut h, "config.yaml", &b"old:\n"[..])
        .unwrap();
    std::fs::write(&tar, b.into_inner().unwrap()).unwrap();
    let o = cmd(&repo)
        .args(["snapshot", "--tar", tar.to_str().unwrap(), "--name", "old"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let precious = TestVolume::new("cbsnap-t-precious", &[("cbsnap.test", "1")]);
    precious.populate("echo x > /data/thesis.tex");
    let o = cmd(&repo)
        .args(["restore", "old@latest", "--to-volume", &precious.name])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&precious.name)
            && e.contains("old is a tar import, which has no source volume")
            && e.contains("--delete"),
        "{e}"
    );
    assert!(!e.contains("taken from"), "{e}");
    assert_eq!(precious.inspect_with("cat /data/thesis.tex"), "x");

    let o = cmd(&repo)
        .args(["restore", "old@latest", "--to-volume", &precious.name])
        .arg("--delete")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(precious.inspect_with("ls /data"), "config.yaml");
}
