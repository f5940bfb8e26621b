//! `cbsnap mirror s3://…` and `sftp://…` (issue 10): what the destination lacks is sent
//! through the storage backend, packs before snapshot files; a second mirror sends the
//! new packs and snapshot file and nothing else; `--delete` follows forget and prune.
//! Needs the test servers (see `remote.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cbsnap::storage::{Listed, Storage, StorageError};

use crate::common::*;

/// Every object of `dest` under the repository's prefixes, with its content.
fn objects(dest: &dyn Storage) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for prefix in ["packs/", "snapshots/", "keys/", "locks/", "index/"] {
        for l in dest.list(prefix).unwrap() {
            let bytes = dest.read(&l.key).unwrap();
            assert_eq!(bytes.len() as u64, l.size, "{}: listed size", l.key);
            out.insert(l.key, bytes);
        }
    }
    if let Ok(c) = dest.read("config") {
        out.insert("config".into(), c);
    }
    out
}

/// The files of a local repository that a mirror carries (no index, locks, temp files).
fn repo_files(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    files(repo)
        .into_iter()
        .filter(|(k, _)| {
            (k.starts_with("packs/")
                || k.starts_with("snapshots/")
                || k.starts_with("keys/")
                || k == "config")
                && !k.contains(".tmp-")
        })
        .collect()
}

#[cfg(feature = "remote")]
fn mirror_round(var: &str) {
    use crate::remote::{open_remote, server_location, servers_shared};
    let _g = servers_shared();
    let loc = server_location(var, "mirror");
    let dest = open_remote(&loc, cbsnap::storage::Retry::default());
    let env = Env::new();
    let src = env.path("src");
    for i in 0..4 {
        write(&src, &format!("f{i}.bin"), &random(3 << 20, 60 + i));
    }
    env.snapshot(&src, "data");
    let first = env.json(&env.repo(), &["mirror", &loc]);
    assert_eq!(first["snapshots"], 1, "{first}");
    assert_eq!(
        objects(&dest),
        repo_files(&env.repo()),
        "the mirror holds exactly the repository's files"
    );

    // A slowly changed tree: one new file, one changed in the middle.
    write(&src, "new.bin", &random(3 << 20, 70));
    let mut b = fs::read(src.join("f1.bin")).unwrap();
    b[1 << 20..(1 << 20) + 300_000].copy_from_slice(&random(300_000, 71));
    write(&src, "f1.bin", &b);
    let before = packs(&env.repo());
    let snaps_before: Vec<String> = files(&env.repo().join("snapshots")).into_keys().collect();
    let second = env.snapshot(&src, "data");
    let new_packs: u64 = packs(&env.repo())
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .map(|(_, s)| s)
        .sum();
    let new_snapshot = fs::metadata(env.repo().join("snapshots").join(&second))
        .unwrap()
        .len();
    assert!(!snaps_before.contains(&second));
    assert!(new_packs > 3 << 20, "{new_packs}");

    let again = env.json(&env.repo(), &["mirror", &loc]);
    let sent = again["uploaded_bytes"].as_u64().unwrap();
    assert_eq!(
        sent,
        new_packs + new_snapshot,
        "the second mirror uploads the new packs and the new snapshot file, nothing else: {again}"
    );
    eprintln!(
        "{var}: second mirror uploaded {sent} bytes in {} files ({new_packs} bytes of new packs, {new_snapshot} of snapshot file)",
        again["uploaded_files"]
    );
    assert_eq!(objects(&dest), repo_files(&env.repo()));

    // A third run has nothing to send.
    let third = env.json(&env.repo(), &["mirror", &loc]);
    assert_eq!(third["uploaded_files"], 0, "{third}");

    // --delete follows forget and prune; without it nothing is removed.
    env.ok(&["forget", "--keep-last", "1", "--prune"]);
    env.ok(&["mirror", &loc]);
    assert_eq!(
        dest.list("snapshots/").unwrap().len(),
        2,
        "without --delete nothing is removed"
    );
    let del = env.json(&env.repo(), &["mirror", "--delete", &loc]);
    assert!(del["deleted_files"].as_u64().unwrap() >= 1, "{del}");
    assert_eq!(objects(&dest), repo_files(&env.repo()));
}

#[cfg(feature = "remote")]
#[test]
#[ignore = "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored"]
fn remote_mirror_to_s3_sends_what_is_missing_in_order() {
    mirror_round("CBSNAP_TEST_S3");
}

#[cfg(feature = "remote")]
#[test]
#[ignore = "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored"]
fn remote_mirror_to_sftp_sends_what_is_missing_in_order() {
    mirror_round("CBSNAP_TEST_SFTP");
}

/// Options that only rsync understands are refused for a backend destination, before
/// anything is sent; a scheme name used as an rsync host is refused too.
#[test]
fn mirror_refuses_rsync_options_and_unknown_schemes_for_backends() {
    let env = Env::new();
    let o = env.run(&env.repo(), &["mirror", "--with-index", "s3://bucket/x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--with-index"), "{}", stderr(&o));
    for dest in ["b2://bucket/x", "s3:bucket/x"] {
        let o = env.run(&env.repo(), &["mirror", dest]);
        assert_eq!(o.status.code(), Some(2), "{dest}: {}", stderr(&o));
        assert!(stderr(&o).contains("s3://bucket/prefix"), "{}", stderr(&o));
    }
}

/// A directory seen through the storage trait, as a mirror destination without a
/// server: keys are relative paths under `root`.
#[derive(Debug)]
struct Dir {
    root: std::path::PathBuf,
}

impl Storage for Dir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }
    fn read(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        fs::read(self.root.join(key)).map_err(|_| StorageError::NotFound { key: key.into() })
    }
    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let b = self.read(key)?;
        Ok(b[offset as usize..(offset + len) as usize].to_vec())
    }
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let p = self.root.join(key);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
        Ok(())
    }
    fn write_file(&self, key: &str, local: &Path) -> Result<(), StorageError> {
        // Packs must arrive before the snapshot files that reference them.
        if key.starts_with("snapshots/") {
            for (k, _) in files(local.parent().unwrap().parent().unwrap()) {
                if k.starts_with("packs/") {
                    assert!(
                        self.root.join(&k).exists(),
                        "{key} was sent before its pack {k}"
                    );
                }
            }
        }
        self.write(key, &fs::read(local).unwrap())
    }
    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.write(key, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let dir = self.root.join(prefix);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        Ok(files(&dir)
            .into_iter()
            .map(|(k, v)| Listed {
                key: format!("{prefix}{k}"),
                size: v.len() as u64,
            })
            .collect())
    }
    fn size(&self, key: &str) -> Result<u64, StorageError> {
        Ok(self.read(key)?.len() as u64)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let _ = fs::remove_file(self.root.join(key));
        Ok(())
    }
    fn local_root(&self) -> Option<&Path> {
        None
    }
}

/// The mirror through the storage trait, without a server: everything arrives, packs
/// before snapshot files, a second run sends only the new packs and snapshot file, and
/// `--delete` follows forget and prune.
#[test]
fn mirror_through_the_trait_sends_what_is_missing_packs_first() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3 {
        write(&src, &format!("f{i}.bin"), &random(2 << 20, 80 + i));
    }
    env.snapshot(&src, "data");
    let dest = Dir {
        root: env.path("dest"),
    };
    let r = cbsnap::mirror::remote::mirror(&env.repo(), &dest, false, 3).unwrap();
    assert_eq!(r.snapshots, 1);
    assert_eq!(objects(&dest), repo_files(&env.repo()));

    write(&src, "new.bin", &random(2 << 20, 90));
    let before = packs(&env.repo());
    let second = env.snapshot(&src, "data");
    let new_packs: u64 = packs(&env.repo())
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .map(|(_, s)| s)
        .sum();
    let new_snapshot = fs::metadata(env.repo().join("snapshots").join(&second))
        .unwrap()
        .len();
    let r = cbsnap::mirror::remote::mirror(&env.repo(), &dest, false, 3).unwrap();
    assert_eq!(r.uploaded_bytes, new_packs + new_snapshot, "{r:?}");
    assert_eq!(objects(&dest), repo_files(&env.repo()));

    env.ok(&["forget", "--keep-last", "1", "--prune"]);
    let r = cbsnap::mirror::remote::mirror(&env.repo(), &dest, true, 3).unwrap();
    assert!(r.deleted_files >= 1, "{r:?}");
    assert_eq!(objects(&dest), repo_files(&env.repo()));
}
