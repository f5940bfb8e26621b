//! Live sources (issue 7 cases 2, 17 and 15): a directory that changes while it is
//! walked never yields a snapshot that claims a state it did not have, never lets a
//! symlink swap pull in a file from outside the tree, and may be arbitrarily deep.

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::util::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `f` on a thread until the returned guard is dropped.
struct Looper {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Looper {
    fn start(mut f: impl FnMut() + Send + 'static) -> Looper {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !s.load(Ordering::Relaxed) {
                f();
                rounds += 1;
            }
            rounds
        });
        Looper {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Looper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Case 2: a file rewritten in place while it is read. Every sweep of the writer
/// fills the whole file with one byte value, so any state that existed is uniform;
/// a mixed file is a torn read. A torn file may only be committed when it is named
/// in the snapshot's errors and the exit code is 3.
#[test]
fn file_rewritten_while_read_is_never_committed_torn_silently() {
    const SIZE: usize = 8 << 20;
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("db");
    fs::write(&file, vec![b'a'; SIZE]).unwrap();
    fs::write(src.path().join("quiet"), b"unchanged").unwrap();
    let repo = Repo::new();
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    let writer = Looper::start({
        let mut fill = b'a';
        move || {
            fill = if fill == b'z' { b'a' } else { fill + 1 };
            let block = vec![fill; 64 << 10];
            for off in (0..SIZE).step_by(block.len()) {
                f.write_all_at(&block, off as u64).unwrap();
            }
        }
    });
    let mut flagged = 0;
    for i in 0..5 {
        let o = repo.run(&[
            "snapshot",
            "--path",
            src.path().to_str().unwrap(),
            "--name",
            &format!("live{i}"),
        ]);
        let snaps = repo.snapshots_json();
        let snap = snaps.last().unwrap();
        assert_eq!(snap["name"], format!("live{i}"), "{}", stderr(&o));
        let named = snap["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "db" && e["error"].as_str().unwrap().contains("changed"));
        let out = tempfile::tempdir().unwrap();
        let to = out.path().join("r");
        repo.restore(&format!("live{i}@latest"), &to);
        assert_eq!(fs::read(to.join("quiet")).unwrap(), b"unchanged");
        let got = fs::read(to.join("db")).unwrap();
        assert_eq!(got.len(), SIZE);
        let uniform = got.iter().all(|b| *b == got[0]);
        if named {
            flagged += 1;
            assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
            assert!(stderr(&o).contains("db"), "{}", stderr(&o));
            // Stored as read: the summary must not say it is not in the snapshot.
            assert!(
                stderr(&o).contains("but not exactly as the source has them"),
                "{}",
                stderr(&o)
            );
            assert!(
                !stderr(&o).contains("are not in snapshot"),
                "{}",
                stderr(&o)
            );
        } else {
            assert!(
                uniform,
                "snapshot {i} committed a torn file (exit {:?}) without naming it",
                o.status.code()
            );
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
    }
    let sweeps = writer.stop();
    assert!(sweeps > 5, "the writer ran only {sweeps} sweeps");
    // The writer never paused: a file read twice under it is flagged at least once.
    assert!(flagged > 0, "no snapshot noticed the writer");
}

/// A file that changed once between the walk and the read is read again and stored
/// whole, without an error.
#[test]
fn file_changed_before_read_is_stored_as_it_was_read() {
    let src = tempfile::tempdir().unwrap();
    let p = src.path().join("f");
    fs::write(&p, b"first version").unwrap();
    let repo = Repo::new();
    repo.snapshot_dir(src.path(), "s");
    fs::write(&p, b"second, longer version").unwrap();
    repo.snapshot_dir(src.path(), "s");
    let out = tempfile::tempdir().unwrap();
    repo.restore("s@latest", &out.path().join("r"));
    assert_eq!(
        fs::read(out.path().join("r/f")).unwrap(),
        b"second, longer version"
    );
    assert!(repo.snapshots_json()[1]["errors"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// Case 17: a container swaps a volume file for a symlink to a root-only host file
/// in a loop. No snapshot may ever contain the host file's content.
#[test]
fn symlink_swap_never_stores_a_file_from_outside_the_tree() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("token");
    let marker = b"HOST-SECRET-7f3a9c-DO-NOT-COPY";
    fs::write(&secret, marker.repeat(64)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

    let src = tempfile::tempdir().unwrap();
    let vol = src.path().to_path_buf();
    fs::write(vol.join("victim"), b"volume data ".repeat(64)).unwrap();
    let swapper = Looper::start({
        let vol = vol.clone();
        let secret = secret.clone();
        let mut n = 0u64;
        move || {
            n += 1;
            // Alternate atomically between a regular file (a new inode each time, so
            // it is never "unchanged") and a symlink to the secret.
            let link = vol.join(".link");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&secret, &link).unwrap();
            fs::rename(&link, vol.join("victim")).unwrap();
            let reg = vol.join(".reg");
            fs::write(&reg, format!("volume data {n} ").repeat(64)).unwrap();
            fs::rename(&reg, vol.join("victim")).unwrap();
        }
    });
    let repo = Repo::new();
    let runs = 30;
    for i in 0..runs {
        let o = repo.run(&["snapshot", "--path", vol.to_str().unwrap(), "--name", "vol"]);
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "run {i}: {}",
            stderr(&o)
        );
    }
    let swaps = swapper.stop();
    assert!(swaps > 30, "the swapper ran only {swaps} rounds");
    let snaps = repo.snapshots_json();
    assert_eq!(snaps.len(), runs);
    for (i, _) in snaps.iter().enumerate() {
        let sel = format!("vol@latest~{i}");
        let o = repo.cmd().args(["dump", &sel]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            !o.stdout.windows(marker.len()).any(|w| w == marker),
            "snapshot {sel} holds the host file's content"
        );
    }
}

/// Case 15 (the restore's part): a tree nested deeper than PATH_MAX allows (built
/// and walked relative to descriptors) restores what fits in a path, names the
/// first directory it could not create, and goes on with the rest. (The walk at
/// 100,000 levels is `source::dir`'s unit test; here ingest's per-entry path
/// handling keeps the depth modest.)
#[test]
fn deeply_nested_directories_are_walked_and_restored_without_overflow() {
    const DEPTH: usize = 3_000;
    let src = tempfile::tempdir().unwrap();
    // Paths this deep exceed PATH_MAX: build it relative to descriptors.
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os\nfd=os.open({:?},os.O_RDONLY)\nfor i in range({DEPTH}):\n  os.mkdir('d',dir_fd=fd)\n  n=os.open('d',os.O_RDONLY,dir_fd=fd)\n  os.close(fd)\n  fd=n\nf=os.open('leaf',os.O_WRONLY|os.O_CREAT,0o644,dir_fd=fd)\nos.write(f,b'bottom')\n",
            src.path()
        ))
        .status()
        .expect("python3 is needed to build the deep tree");
    assert!(status.success());
    fs::write(src.path().join("top"), b"top file").unwrap();
    let repo = Repo::new();
    let o = repo.run(&[
        "snapshot",
        "--path",
        src.path().to_str().unwrap(),
        "--name",
        "deep",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let snaps = repo.snapshots_json();
    assert_eq!(snaps[0]["stats"]["dirs"].as_u64(), Some(DEPTH as u64));
    assert_eq!(snaps[0]["stats"]["files"].as_u64(), Some(2));

    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("r");
    let o = repo.run(&["restore", "deep@latest", "--to", to.to_str().unwrap()]);
    // Deeper than PATH_MAX the restore cannot follow by path: it says so and goes on.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("not restored"), "{}", stderr(&o));
    assert_eq!(fs::read(to.join("top")).unwrap(), b"top file");
    assert!(to.join("d/d/d/d").is_dir());
    rm_deep(&to);
    rm_deep(src.path());
}

/// Remove a chain of `d` directories too deep for a removal by path: go down, then
/// remove upwards through `..`.
fn rm_deep(p: &Path) {
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os\ntop=os.open({p:?},os.O_RDONLY)\nino=os.fstat(top).st_ino\nfd=top\nwhile True:\n  try: n=os.open('d',os.O_RDONLY,dir_fd=fd)\n  except FileNotFoundError: break\n  fd=n\nfor e in os.listdir(fd):\n  os.unlink(e,dir_fd=fd)\nwhile os.fstat(fd).st_ino!=ino:\n  up=os.open('..',os.O_RDONLY,dir_fd=fd)\n  os.close(fd)\n  for e in os.listdir(up):\n    if e!='d': os.unlink(e,dir_fd=up)\n  os.rmdir('d',dir_fd=up)\n  fd=up\n"
        ))
        .status()
        .unwrap();
    assert!(status.success());
}
