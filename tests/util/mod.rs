//! Shared helpers of every integration test: a repository in a temp dir, the real
//! `cbsnap` binary, test data, and a tree comparison that checks everything a restore
//! must keep. Docker fixtures are in [`docker`].

#![allow(dead_code)]

pub mod docker;
pub mod mount;
pub mod servers;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};

pub const BIN: &str = env!("CARGO_BIN_EXE_cbsnap");

/// `cbsnap --repo REPO`, isolated from the user's configuration and environment:
/// `XDG_CONFIG_HOME` is `HOME/no-config` (absent), `CBSNAP_REPO` and
/// `CBSNAP_LOCK_WAIT` are unset.
pub fn cbsnap(home: &Path, repo: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--repo")
        .arg(repo)
        .env("XDG_CONFIG_HOME", home.join("no-config"))
        .env_remove("CBSNAP_REPO")
        .env_remove("CBSNAP_LOCK_WAIT");
    c
}

/// Require that `cbsnap ARGS` exited 0; returns its stdout.
pub fn expect_success(args: &[&str], o: Output) -> String {
    assert!(
        o.status.success(),
        "cbsnap {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        r.ok(&["init"]);
        r
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// `cbsnap --repo REPO -q`, isolated as [`cbsnap`] says.
    pub fn cmd(&self) -> Command {
        let mut c = cbsnap(self.dir.path(), &self.path());
        c.arg("-q");
        c
    }

    /// `cbsnap --repo REPO` run as the unprivileged user `nobody` (uid and gid
    /// 65534, no supplementary groups) through util-linux's `setpriv`.
    pub fn cmd_as_nobody(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--repo",
        ])
        .arg(self.path())
        .env("HOME", self.dir.path())
        .env("XDG_CONFIG_HOME", self.dir.path().join("no-config"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run and require exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        expect_success(args, self.run(args))
    }

    pub fn snapshot_dir(&self, dir: &Path, name: &str) -> String {
        self.ok(&["snapshot", "--path", dir.to_str().unwrap(), "--name", name])
    }

    pub fn snapshots_json(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["--json", "snapshots"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    }

    pub fn restore(&self, spec: &str, to: &Path) {
        self.ok(&["restore", spec, "--to", to.to_str().unwrap()]);
    }

    /// Bytes on disk under the repository (files only).
    pub fn size(&self) -> u64 {
        dir_size(&self.path())
    }
}

/// Wait until files just written count as settled for a snapshot started after this
/// returns: cbsnap reads a file again, though its ctime matches the parent's, while
/// that ctime is within 100 ms of the parent's start (`ingest::parent::SETTLED_NS`).
/// For tests that assert a second snapshot reuses what the first one read.
pub fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(200));
}

pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in walk(p) {
        let md = fs::symlink_metadata(&e).unwrap();
        if md.is_file() {
            total += md.len();
        }
    }
    total
}

/// Every path below `p` (files, directories, links), sorted.
pub fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Compressible text, like source code.
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "fn", "let", "mut", "impl", "struct", "return", "self", "match", "Some", "None", "{", "}",
        "(", ")", ";", "\n", "    ",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let w = words[(rng.next_u32() as usize) % words.len()];
        v.extend_from_slice(w.as_bytes());
        v.push(b' ');
    }
    v.truncate(len);
    v
}

pub fn set_mtime(p: &Path, secs: i64, nsec: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nsec);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

fn mknod(p: &Path, kind: libc::mode_t, dev: libc::dev_t) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    unsafe { libc::mknod(c.as_ptr(), kind | 0o640, dev) == 0 }
}

/// A tree with every entry kind the engine must keep. Names of special files start
/// with `special-` so `diff -r` can skip them (it cannot compare fifos or devices);
/// [`compare_trees`] checks them.
pub fn build_every_kind(root: &Path) {
    fs::create_dir_all(root.join("dir/sub/deeper")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, world\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("dir/random.bin"), random_bytes(3 << 20, 1)).unwrap();
    fs::write(root.join("dir/sub/code.rs"), text_bytes(200_000, 2)).unwrap();
    fs::write(root.join("dir/sub/deeper/small"), b"x").unwrap();
    // Sparse: 8 MiB with data only in the middle.
    let f = fs::File::create(root.join("sparse.img")).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &random_bytes(100_000, 3), 4 << 20).unwrap();
    drop(f);
    // Not UTF-8.
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9-latin1")),
        b"non-utf8 name",
    )
    .unwrap();
    fs::create_dir(root.join(OsStr::from_bytes(b"dir-\xff\xfe"))).unwrap();
    // Symlinks: relative, absolute, dangling, to a directory.
    std::os::unix::fs::symlink("hello.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink("dir/sub", root.join("link-dir")).unwrap();
    // Hard links across directories.
    fs::write(root.join("dir/hard-a"), text_bytes(50_000, 4)).unwrap();
    fs::hard_link(root.join("dir/hard-a"), root.join("hard-b")).unwrap();
    fs::hard_link(root.join("dir/hard-a"), root.join("dir/sub/hard-c")).unwrap();
    // Modes.
    use std::os::unix::fs::PermissionsExt;
    fs::write(root.join("readonly"), b"ro").unwrap();
    fs::set_permissions(root.join("readonly"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::write(root.join("setuid-tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("setuid-tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("private")).unwrap();
    fs::write(root.join("private/secret"), b"s").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(root.join("sticky")).unwrap();
    fs::set_permissions(root.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    // xattrs (user namespace works unprivileged on ext4/tmpfs).
    xattr::set(root.join("hello.txt"), "user.origin", b"test suite").unwrap();
    xattr::set(root.join("dir"), "user.dirattr", b"\x00\x01binary").unwrap();
    // Special files.
    let fifo = std::ffi::CString::new(root.join("special-fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    if is_root() {
        assert!(mknod(
            &root.join("special-null"),
            libc::S_IFCHR,
            libc::makedev(1, 3)
        ));
        assert!(mknod(
            &root.join("special-blk"),
            libc::S_IFBLK,
            libc::makedev(7, 42)
        ));
        std::os::unix::fs::lchown(root.join("dir/sub/code.rs"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("link-rel"), Some(4321), Some(8765)).unwrap();
    }
    // Times with nanoseconds, set last (children first, then directories).
    for (i, p) in walk(root).iter().rev().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64 * 1000, 123_456_789 + i as u32);
    }
    set_mtime(root, 1_500_000_000, 42);
}

#[derive(Debug, PartialEq, Eq)]
struct Facts {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    content: Option<[u8; 32]>,
}

fn facts(p: &Path, owners: bool) -> Facts {
    let md = fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let mut xattrs = BTreeMap::new();
    if let Ok(names) = xattr::list(p) {
        for n in names {
            if let Ok(Some(v)) = xattr::get(p, &n) {
                xattrs.insert(n.as_bytes().to_vec(), v);
            }
        }
    }
    Facts {
        kind: md.mode() & libc::S_IFMT,
        mode: md.mode() & 0o7777,
        uid: if owners { md.uid() } else { 0 },
        gid: if owners { md.gid() } else { 0 },
        size: if ft.is_file() { md.len() } else { 0 },
        mtime: if ft.is_dir() && !owners {
            (0, 0)
        } else {
            (md.mtime(), md.mtime_nsec())
        },
        rdev: md.rdev(),
        target: ft
            .is_symlink()
            .then(|| fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()),
        xattrs,
        content: ft
            .is_file()
            .then(|| *blake3::hash(&fs::read(p).unwrap()).as_bytes()),
    }
}

/// Compare two trees entry by entry: type, mode, owner (as root), size, mtime with
/// nanoseconds, device numbers, symlink target, xattrs, content, and hard-link
/// groups (two paths share an inode in `a` exactly when they do in `b`).
pub fn compare_trees(a: &Path, b: &Path) {
    let owners = is_root();
    let rel = |root: &Path, v: Vec<PathBuf>| -> Vec<PathBuf> {
        v.into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect()
    };
    let la = rel(a, walk(a));
    let lb = rel(b, walk(b));
    assert_eq!(la, lb, "the trees list different paths");
    let mut inodes_a: BTreeMap<u64, Vec<&PathBuf>> = BTreeMap::new();
    let mut inodes_b: BTreeMap<u64, Vec<&PathBuf>> = BTreeMap::new();
    for p in &la {
        let fa = facts(&a.join(p), true);
        let fb = facts(&b.join(p), true);
        let (fa, fb) = if owners {
            (fa, fb)
        } else {
            (
                Facts {
                    uid: 0,
                    gid: 0,
                    ..fa
                },
                Facts {
                    uid: 0,
                    gid: 0,
                    ..fb
                },
            )
        };
        assert_eq!(fa, fb, "{} differs", p.display());
        let ma = fs::symlink_metadata(a.join(p)).unwrap();
        let mb = fs::symlink_metadata(b.join(p)).unwrap();
        if ma.is_file() && ma.nlink() > 1 {
            inodes_a.entry(ma.ino()).or_default().push(p);
            inodes_b.entry(mb.ino()).or_default().push(p);
        }
    }
    let mut ga: Vec<_> = inodes_a.into_values().collect();
    let mut gb: Vec<_> = inodes_b.into_values().collect();
    ga.sort();
    gb.sort();
    assert_eq!(ga, gb, "hard-link groups differ");
    let root_a = fs::metadata(a).unwrap();
    let root_b = fs::metadata(b).unwrap();
    assert_eq!(root_a.mode(), root_b.mode(), "root mode differs");
}

/// `diff -r` agrees too (special files excluded: diff cannot compare them).
pub fn diff_r(a: &Path, b: &Path) {
    let o = Command::new("diff")
        .args(["-r", "--no-dereference", "--exclude=special-*"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "diff -r found differences:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A repository (`repo/`) in a temporary directory that also holds whatever a test
/// needs (sources, restores, mirrors), with commands on any repository: the
/// maintenance tests work with mirrors beside the repository.
pub struct Env {
    repo: Repo,
}

impl Env {
    pub fn new() -> Env {
        Env { repo: Repo::new() }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.repo.dir.path().join(p)
    }

    pub fn repo(&self) -> PathBuf {
        self.repo.path()
    }

    /// `cbsnap --repo REPO ARGS`, isolated as [`cbsnap`] says (not quiet).
    pub fn cmd(&self, repo: &Path, args: &[&str]) -> Command {
        let mut c = cbsnap(self.repo.dir.path(), repo);
        c.args(args);
        c
    }

    pub fn run(&self, repo: &Path, args: &[&str]) -> Output {
        self.cmd(repo, args).output().unwrap()
    }

    /// Run against `repo/` and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(&self.repo(), args)
    }

    pub fn ok_in(&self, repo: &Path, args: &[&str]) -> String {
        expect_success(args, self.run(repo, args))
    }

    pub fn json(&self, repo: &Path, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok_in(repo, &a)).unwrap()
    }

    /// Snapshot `dir` as `name`; returns the snapshot id.
    pub fn snapshot(&self, dir: &Path, name: &str) -> String {
        let v = self.json(
            &self.repo(),
            &["snapshot", "--path", dir.to_str().unwrap(), "--name", name],
        );
        v["id"].as_str().unwrap().to_string()
    }

    /// Restore `sel` from `repo` into a new directory and return it.
    pub fn restore(&self, repo: &Path, sel: &str, to: &str) -> PathBuf {
        let to = self.path(to);
        self.ok_in(repo, &["restore", sel, "--to", to.to_str().unwrap()]);
        to
    }
}

pub fn write(dir: &Path, name: &str, data: &[u8]) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Every regular file below `dir`, by relative path, with its content.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let data = fs::read(&p).unwrap();
            (rel, data)
        })
        .collect()
}

/// Assert two directories hold the same files with the same bytes.
pub fn assert_same_files(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    let names_a: Vec<_> = fa.keys().collect();
    let names_b: Vec<_> = fb.keys().collect();
    assert_eq!(names_a, names_b, "{} vs {}", a.display(), b.display());
    for (k, v) in &fa {
        assert!(
            fb[k] == *v,
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Copy a directory tree (a saved state of a source).
pub fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Pack files of a repository with their sizes.
pub fn packs(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for sub in fs::read_dir(repo.join("packs")).unwrap() {
        let sub = sub.unwrap();
        if !sub.file_type().unwrap().is_dir() {
            continue;
        }
        for f in fs::read_dir(sub.path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                out.insert(name, f.metadata().unwrap().len());
            }
        }
    }
    out
}

pub fn pack_bytes(repo: &Path) -> u64 {
    packs(repo).values().sum()
}

pub fn pack_path(repo: &Path, id: &str) -> PathBuf {
    repo.join("packs").join(&id[..2]).join(id)
}

/// Wait until a cbsnap process holds a lock in `repo` (it has opened the repository).
pub fn wait_for_lock(repo: &Path) {
    for _ in 0..500 {
        let held = fs::read_dir(repo.join("locks"))
            .unwrap()
            .flatten()
            .any(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"));
        if held {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no lock appeared in {}", repo.display());
}

/// Snapshot `files` (path, bytes; parent directories are implied) through the
/// library as `name`, a path source taken now. Returns the snapshot's id.
pub fn snapshot_files(
    repo: &cbsnap::Repository,
    name: &str,
    files: &[(&str, Vec<u8>)],
) -> cbsnap::Result<cbsnap::Id> {
    use cbsnap::source::{Content, Entry};
    use cbsnap::tree::{Node, NodeKind};
    let spec = cbsnap::ingest::SnapshotSpec::new(name, cbsnap::snapshot::SourceKind::Path);
    let progress = cbsnap::progress::Progress::new(true, "test");
    cbsnap::ingest::snapshot(repo, spec, &progress, |sink| {
        for (file, data) in files {
            let mut n = Node::new(Vec::new(), NodeKind::File);
            n.mode = 0o644;
            n.size = data.len() as u64;
            let e = Entry::new(file.as_bytes().to_vec(), n);
            sink.entry(e, Content::Stream(&mut &data[..]))?;
        }
        Ok(())
    })
    .map(|(id, _)| id)
}
