//! The archive route (a helper container and Docker's archive API) as a volume's
//! only faithful route: it keeps the volume root's owner and mode on restore, and it
//! is the route taken for volumes whose data is not under their mountpoint.

use std::process::Command;

use crate::util::docker::{self as fx, TestVolume};
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
