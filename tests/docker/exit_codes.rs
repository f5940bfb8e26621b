//! Exit codes by kind (`src/error.rs`, rule 4): `2` is for bad usage only; a state of
//! the environment, such as a volume that running containers use, is exit `1`.

use std::time::Duration;

use crate::util::docker::{self as fx, TestContainer, TestVolume};
use crate::util::*;

/// Restoring into a volume that a running container uses, without `--stop`, is
/// refused with exit 1 (it was 2, as if the command had been mistyped), names the
/// container and the way out, and changes nothing. A mistyped flag value is still 2.
#[test]
fn a_volume_in_use_is_exit_1_not_bad_usage() {
    let _engine = fx::engine();
    let repo = Repo::new();
    let vol = TestVolume::new("cbsnap-t-inuse", &[("cbsnap.test", "1")]);
    vol.populate("echo v1 > /data/f");
    let o = repo.cmd().args(["snapshot", &vol.name]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    vol.populate("echo v2 > /data/f");
    let c = TestContainer::run(&vol.name, &[], "while true; do sleep 1; done");
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");

    let o = repo
        .cmd()
        .env("HOME", repo.dir.path())
        .args(["restore", &format!("{}@latest", vol.name)])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("in use") && e.contains(&c.name) && e.contains("--stop"),
        "{e}"
    );
    assert_eq!(
        vol.inspect_with("cat /data/f"),
        "v2",
        "the volume was changed"
    );
    assert_eq!(c.state(), "running");

    // Bad usage keeps its code: the same restore with a value clap rejects.
    let o = repo
        .cmd()
        .args(["restore", &format!("{}@latest", vol.name), "--via", "bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
