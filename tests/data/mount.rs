//! `cbsnap mount` with real FUSE: the binary serves a mount in a background process,
//! the test reads it through the kernel like any program would, compares it with the
//! sources, then unmounts it with `fusermount3 -u` and checks the process ended.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{build_every_kind, diff_r, random_bytes, stderr, Repo, BIN};

/// The mount process; unmounts and reaps it on drop, so a failing test leaves no
/// mount behind.
struct Mounted {
    child: Child,
    dir: PathBuf,
}

impl Mounted {
    fn start(repo: &Repo, dir: &Path) -> Mounted {
        fs::create_dir_all(dir).unwrap();
        let child = Command::new(BIN)
            .arg("--repo")
            .arg(repo.path())
            .env("XDG_CONFIG_HOME", repo.dir.path().join("no-config"))
            .arg("mount")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mounted {
            child,
            dir: dir.to_path_buf(),
        };
        // The mount must appear: a mount that never came up fails the test.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mountpoint(dir) {
            if let Some(status) = m.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                m.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("cbsnap mount exited with {status} before mounting: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "the mount never appeared at {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// `fusermount3 -u`, then the mount process must end by itself, successfully.
    fn unmount(mut self) {
        let o = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "fusermount3 -u: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "cbsnap mount ended with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cbsnap mount did not end after the unmount"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!is_mountpoint(&self.dir));
    }
}

impl Mounted {
    /// SIGTERM (as systemd or Ctrl-C would stop it): the process unmounts and exits 0.
    fn terminate(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "cbsnap mount ended with {status} on SIGTERM"
                );
                break;
            }
            assert!(Instant::now() < deadline, "cbsnap mount ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!is_mountpoint(&self.dir), "SIGTERM must unmount");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mountpoint(dir: &Path) -> bool {
    let (Ok(a), Ok(b)) = (fs::metadata(dir), fs::metadata(dir.join(".."))) else {
        return false;
    };
    a.dev() != b.dev()
}

/// Every file, directory and symlink of `src` has the same kind, mode, size, mtime
/// (with nanoseconds), symlink target and content under `mounted`.
fn compare_with_mount(src: &Path, mounted: &Path) {
    let mut stack = vec![PathBuf::new()];
    let mut seen = 0;
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(src.join(&rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            if name.to_string_lossy().starts_with("special-") {
                continue;
            }
            let r = rel.join(&name);
            let a = fs::symlink_metadata(src.join(&r)).unwrap();
            let b = fs::symlink_metadata(mounted.join(&r))
                .unwrap_or_else(|e| panic!("{} is missing in the mount: {e}", r.display()));
            let what = r.display();
            assert_eq!(a.mode(), b.mode(), "{what}: mode");
            assert_eq!(a.file_type(), b.file_type(), "{what}: kind");
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{what}: mtime"
            );
            if a.is_file() {
                assert_eq!(a.len(), b.len(), "{what}: size");
                assert!(
                    fs::read(src.join(&r)).unwrap() == fs::read(mounted.join(&r)).unwrap(),
                    "{what}: content"
                );
            } else if a.file_type().is_symlink() {
                assert_eq!(
                    fs::read_link(src.join(&r)).unwrap(),
                    fs::read_link(mounted.join(&r)).unwrap(),
                    "{what}: target"
                );
            } else if a.is_dir() {
                stack.push(r.clone());
            }
            seen += 1;
        }
    }
    assert!(seen > 20, "the source tree was compared ({seen} entries)");
}

#[test]
fn mount_shows_every_snapshot_by_source_and_time_with_latest_links() {
    let repo = Repo::new();
    let src = repo.dir.path().join("data");
    build_every_kind(&src);
    repo.snapshot_dir(&src, "data");
    let first = repo.dir.path().join("first");
    repo.restore("data@latest", &first);
    fs::write(src.join("hello.txt"), b"changed after the first snapshot\n").unwrap();
    fs::remove_file(src.join("empty")).unwrap();
    crate::util::set_mtime(&src.join("hello.txt"), 1_700_000_000, 5);
    repo.snapshot_dir(&src, "data");
    let other = repo.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("o"), b"other source").unwrap();
    repo.snapshot_dir(&other, "other");

    let mnt = repo.dir.path().join("mnt");
    let m = Mounted::start(&repo, &mnt);

    let mut sources: Vec<String> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    sources.sort();
    assert_eq!(sources, ["data", "other"]);

    let mut entries: Vec<String> = fs::read_dir(mnt.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 3, "two snapshots and latest: {entries:?}");
    assert_eq!(entries[2], "latest");
    let snaps = repo.snapshots_json();
    let data_times: Vec<String> = snaps
        .iter()
        .filter(|s| s["name"] == "data")
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        })
        .collect();
    let latest = mnt.join("data/latest");
    assert!(fs::symlink_metadata(&latest)
        .unwrap()
        .file_type()
        .is_symlink());
    let target = fs::read_link(&latest).unwrap();
    assert_eq!(
        target.to_str().unwrap(),
        entries[1],
        "latest links to the newest"
    );
    for (i, t) in data_times.iter().enumerate() {
        assert!(
            entries[i] == *t || entries[i].starts_with(&format!("{t}-")),
            "snapshot directories are named by local time: {entries:?} vs {data_times:?}"
        );
    }

    // The newest snapshot equals the source now, the older one the first restore.
    compare_with_mount(&src, &latest);
    diff_r(&src, &mnt.join("data").join(&entries[1]));
    compare_with_mount(&first, &mnt.join("data").join(&entries[0]));
    assert_eq!(
        fs::read(mnt.join("data").join(&entries[0]).join("hello.txt")).unwrap(),
        b"hello, world\n"
    );
    assert!(mnt.join("data").join(&entries[0]).join("empty").exists());
    assert!(!latest.join("empty").exists());
    assert_eq!(
        fs::read(mnt.join("other/latest/o")).unwrap(),
        b"other source"
    );

    // A read in the middle of a multi-chunk file.
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(latest.join("dir/random.bin")).unwrap();
    let mut buf = vec![0u8; 100_000];
    f.read_exact_at(&mut buf, 1_500_000).unwrap();
    assert_eq!(
        buf,
        fs::read(src.join("dir/random.bin")).unwrap()[1_500_000..1_600_000]
    );
    drop(f); // an open file keeps the mount busy

    // Read-only.
    let w = fs::OpenOptions::new()
        .write(true)
        .open(latest.join("hello.txt"));
    assert!(w.is_err(), "the mount must be read-only");
    assert!(fs::write(latest.join("new-file"), b"x").is_err());

    m.unmount();
}

#[test]
fn mount_fails_a_read_of_a_damaged_chunk_with_eio() {
    let repo = Repo::new();
    let src = repo.dir.path().join("data");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big"), crate::util::random_bytes(4 << 20, 7)).unwrap();
    repo.snapshot_dir(&src, "data");
    // Flip one byte in the middle of every pack big enough to hold file data.
    let mut damaged = 0;
    let mut stack = vec![repo.path().join("packs")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if fs::metadata(&p).unwrap().len() > 1 << 20 {
                let mut bytes = fs::read(&p).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0xff;
                fs::write(&p, bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "no pack was damaged");

    let mnt = repo.dir.path().join("mnt");
    let m = Mounted::start(&repo, &mnt);
    let r = fs::read(mnt.join("data/latest/big"));
    let err = r.expect_err("a damaged chunk must not read as data");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    m.terminate();
}

/// A mount does not hold the index: the night's snapshots go ahead while it is up
/// (they waited 120 s for it and failed), and it still reads what it showed, also
/// after they wrote to the index (it reads it as a RocksDB secondary instance).
#[test]
fn snapshots_go_ahead_while_a_mount_is_up() {
    let repo = Repo::new();
    let src = repo.dir.path().join("data");
    fs::create_dir_all(&src).unwrap();
    let first = random_bytes(3 << 20, 7);
    fs::write(src.join("f"), &first).unwrap();
    repo.snapshot_dir(&src, "data");
    let mnt = repo.dir.path().join("mnt");
    let m = Mounted::start(&repo, &mnt);
    for round in 0..3u64 {
        fs::write(
            src.join(format!("new{round}")),
            random_bytes(2 << 20, 100 + round),
        )
        .unwrap();
        let o = repo
            .cmd()
            .env("CBSNAP_LOCK_WAIT", "2")
            .args([
                "snapshot",
                "--path",
                src.to_str().unwrap(),
                "--name",
                "data",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            fs::read(mnt.join("data/latest/f")).unwrap(),
            first,
            "round {round}"
        );
    }
    m.unmount();
    let o = repo.cmd().args(["check"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
