//! Real mounts for the tests that need them (root only), undone on drop so that a
//! failed assertion leaves no mount behind.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount at a directory, unmounted on drop.
pub struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size` (`1m`) at `at`, created if missing: a small disk that fills.
    pub fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs at {at:?} (this test runs as root)");
        Mount(at.to_path_buf())
    }

    /// A bind mount of `from` at `at`: the same filesystem, the same device number.
    pub fn bind(from: &Path, at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "bind-mount {from:?} at {at:?} (this test runs as root)");
        Mount(at.to_path_buf())
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
