//! Helpers: run the real binary against repositories in temporary directories.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};

pub const BIN: &str = env!("CARGO_BIN_EXE_cbsnap");

/// A temporary directory holding a repository (`repo/`) and whatever a test needs.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let e = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(e.path("config-home")).unwrap();
        let out = e.run(&e.repo(), &["init"]);
        assert!(out.status.success(), "{}", stderr(&out));
        e
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// A command for `repo`, isolated from the user's configuration.
    pub fn cmd(&self, repo: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--repo")
            .arg(repo)
            .args(args)
            .env("XDG_CONFIG_HOME", self.path("config-home"))
            .env_remove("CBSNAP_REPO")
            .env_remove("CBSNAP_LOCK_WAIT");
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
        let out = self.run(repo, args);
        assert!(
            out.status.success(),
            "cbsnap {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
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

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn write(dir: &Path, name: &str, data: &[u8]) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Every regular file below `dir`, by relative path, with its content.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(root, &e.path(), out);
            } else if t.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
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
