//! The same tests for every storage backend (issue 10): round trip from an empty
//! cache, dedup against what is stored, a failed upload that commits nothing, and two
//! "hosts" snapshotting into one repository at once, then a prune.
//!
//! Each test body takes the backend as an argument and runs once per backend, in a
//! module of the backend's name ([`contract!`]): `path` (the path backend), `remote`
//! (the path backend seen as remote, [`Remote`]: `local_root()` is `None`, so the
//! repository takes its remote paths: index in the cache directory, packs uploaded
//! with `write_file`, blobs read with ranged reads), `s3` (moto through OpenDAL's S3
//! service) and `sftp` (a real sshd through OpenDAL's SFTP service), the last two
//! started by `scripts/test-servers.sh`. Run one backend with
//! `cargo test --test tests backends::s3::`.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cbsnap::lock::LockKind;
use cbsnap::progress::Progress;
use cbsnap::repo::{Access, OpenOptions};
use cbsnap::storage::{Listed, Local, Storage, StorageError};
use cbsnap::{Error, Repository};

mod cli;
mod encrypted;
mod frozen;
mod mirror_damage;
mod upload;

/// A real backend reached only through the trait, as a remote one is: the path
/// backend with `local_root()` hidden. Counts the bytes written to it (what a server
/// would receive) and can be made to fail uploads (the server gone mid-snapshot).
/// Keeps the most ranged reads of packs it served at once, which `slow_reads` makes
/// take 50 ms each (a round trip), so that reads allowed to overlap do.
#[derive(Debug)]
pub struct Remote {
    inner: Local,
    pub written: AtomicU64,
    pub fail_uploads: AtomicBool,
    pub slow_reads: AtomicBool,
    pack_reads_now: AtomicUsize,
    pub most_pack_reads_at_once: AtomicUsize,
}

impl Remote {
    pub fn new(dir: &Path) -> Remote {
        Remote {
            inner: Local::new(dir),
            written: AtomicU64::new(0),
            fail_uploads: AtomicBool::new(false),
            slow_reads: AtomicBool::new(false),
            pack_reads_now: AtomicUsize::new(0),
            most_pack_reads_at_once: AtomicUsize::new(0),
        }
    }
}

impl Storage for Remote {
    fn location(&self) -> String {
        format!("remote-test://{}", self.inner.location())
    }
    fn read(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.inner.read(key)
    }
    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        if !key.starts_with("packs/") {
            return self.inner.read_range(key, offset, len);
        }
        let now = self.pack_reads_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_pack_reads_at_once
            .fetch_max(now, Ordering::SeqCst);
        if self.slow_reads.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let r = self.inner.read_range(key, offset, len);
        self.pack_reads_now.fetch_sub(1, Ordering::SeqCst);
        r
    }
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        self.inner.write(key, bytes)
    }
    fn write_file(&self, key: &str, local: &Path) -> Result<(), StorageError> {
        if self.fail_uploads.load(Ordering::SeqCst) {
            return Err(StorageError::Transient {
                key: key.to_string(),
                source: "connection refused".into(),
            });
        }
        let len = std::fs::metadata(local).map(|m| m.len()).unwrap_or(0);
        self.written.fetch_add(len, Ordering::SeqCst);
        self.inner.write_file(key, local)
    }
    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        self.inner.create_new(key, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        self.inner.list(prefix)
    }
    fn size(&self, key: &str) -> Result<u64, StorageError> {
        self.inner.size(key)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
    fn local_root(&self) -> Option<&Path> {
        None
    }
}

/// A backend under test: a new, empty repository location (below `dir` for the
/// local ones).
#[derive(Clone, Copy)]
pub struct Backend {
    pub name: &'static str,
    pub make: fn(&Path) -> Arc<dyn Storage>,
}

/// One module per backend, each with every contract test.
macro_rules! contract {
    ($($name:ident => $make:expr;)*) => {$(
        mod $name {
            const B: super::Backend = super::Backend { name: stringify!($name), make: $make };
            #[test]
            fn round_trip_from_an_empty_cache() {
                super::round_trip_from_an_empty_cache(B)
            }
            #[test]
            fn second_snapshot_stores_only_what_is_new() {
                super::second_snapshot_stores_only_what_is_new(B)
            }
            #[test]
            fn two_hosts_snapshot_at_once_and_prune_loses_nothing() {
                super::two_hosts_snapshot_at_once_and_prune_loses_nothing(B)
            }
        }
    )*};
}

contract! {
    path => |d| std::sync::Arc::new(cbsnap::storage::Local::new(d.join("repo")));
    remote => |d| std::sync::Arc::new(super::Remote::new(&d.join("repo")));
    s3 => |_| crate::util::servers::storage(&crate::util::servers::Server::S3.location());
    sftp => |_| crate::util::servers::storage(&crate::util::servers::Server::Sftp.location());
}

use crate::util::snapshot_files as snapshot;

/// The content of `file` in the newest snapshot named `name`.
fn read_back(repo: &Repository, name: &str, file: &str) -> Vec<u8> {
    let all = cbsnap::snapshot::load_all(repo.storage(), repo.crypt()).unwrap();
    let (_, snap) = all.iter().rev().find(|(_, s)| s.name == name).unwrap();
    let node = cbsnap::walk::lookup(repo, &snap.tree, file)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    cbsnap::restore::ChunkReader::new(repo, &node)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn open(s: &Arc<dyn Storage>, access: Access, cache: &Path) -> Repository {
    let opts = OpenOptions {
        cache_dir: Some(cache.to_path_buf()),
        transfers: Some(3),
    };
    Repository::open_with(s.clone(), access, &opts).unwrap()
}

fn pack_bytes(s: &dyn Storage) -> u64 {
    s.list("packs/").unwrap().iter().map(|l| l.size).sum()
}

fn clean_check(repo: &Repository) {
    let r = cbsnap::check::check(
        repo,
        cbsnap::check::ReadData::All,
        &Progress::new(true, "check"),
    )
    .unwrap();
    assert!(r.is_clean(), "{r:?}");
}

/// Several packs (uploaded in parallel on a remote backend) come back byte-exact from
/// a "new host": an empty cache, whose index is rebuilt from the pack trailers.
fn round_trip_from_an_empty_cache(b: Backend) {
    {
        let d = tempfile::tempdir().unwrap();
        let s = (b.make)(d.path());
        Repository::init_in(s.clone()).unwrap();
        let big = crate::util::random_bytes(40 << 20, 1);
        let files = vec![
            ("big", big.clone()),
            ("small", b"hello".to_vec()),
            ("empty", Vec::new()),
        ];
        {
            let repo = open(&s, Access::Append, &d.path().join("cache-a"));
            snapshot(&repo, "t", &files).unwrap();
        }
        assert!(s.list("packs/").unwrap().len() >= 3, "{}: packs", b.name);
        let fresh = d.path().join("cache-b");
        let repo = open(&s, Access::Read, &fresh);
        for (name, data) in &files {
            assert!(&read_back(&repo, "t", name) == data, "{}: {name}", b.name);
        }
        clean_check(&repo);
        if s.local_root().is_none() {
            let id = repo.config.id.to_hex();
            assert!(fresh.join(&id).join("index").is_dir(), "{}", b.name);
            assert!(
                s.list("index/").unwrap().is_empty(),
                "no index in the repository"
            );
            drop(repo);
            std::fs::remove_dir_all(&fresh).unwrap();
            let repo = open(&s, Access::Read, &fresh);
            assert!(
                read_back(&repo, "t", "big") == big,
                "after the cache was deleted"
            );
        }
    }
}

/// A second snapshot of a slowly changed tree stores little more than its new data.
fn second_snapshot_stores_only_what_is_new(b: Backend) {
    {
        let d = tempfile::tempdir().unwrap();
        let s = (b.make)(d.path());
        Repository::init_in(s.clone()).unwrap();
        let big = crate::util::random_bytes(20 << 20, 2);
        let repo = open(&s, Access::Append, &d.path().join("cache"));
        snapshot(&repo, "t", &[("big", big.clone())]).unwrap();
        let before = pack_bytes(&*s);
        let new = crate::util::random_bytes(100_000, 3);
        snapshot(&repo, "t", &[("big", big.clone()), ("new", new.clone())]).unwrap();
        let added = pack_bytes(&*s) - before;
        assert!(added < 200_000, "{}: {added} bytes of packs added", b.name);
        assert!(read_back(&repo, "t", "new") == new, "{}", b.name);
    }
}

/// The server stops mid-upload: a clear storage error, no snapshot committed, and
/// the next run, once it is back, succeeds with a clean check.
#[test]
fn failed_upload_commits_nothing_and_the_next_run_succeeds() {
    let d = tempfile::tempdir().unwrap();
    let remote = Arc::new(Remote::new(&d.path().join("repo")));
    let s: Arc<dyn Storage> = remote.clone();
    Repository::init_in(s.clone()).unwrap();
    let big = crate::util::random_bytes(40 << 20, 4);
    let repo = open(&s, Access::Append, &d.path().join("cache"));
    remote.fail_uploads.store(true, Ordering::SeqCst);
    let err = snapshot(&repo, "t", &[("big", big.clone())]).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Storage {
                source: StorageError::Transient { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        s.list("snapshots/").unwrap().is_empty(),
        "nothing committed"
    );
    assert!(s.list("packs/").unwrap().is_empty(), "no pack was uploaded");
    remote.fail_uploads.store(false, Ordering::SeqCst);
    snapshot(&repo, "t", &[("big", big.clone())]).unwrap();
    assert!(read_back(&repo, "t", "big") == big);
    clean_check(&repo);
}

/// `index rebuild` of a remote repository finds it as opening it does: its index in
/// the cache directory it is given (a new host's, created), its pack trailers read
/// `transfers` at a time (the config's `transfers`). It took the default cache
/// directory and read 4 at a time whatever it was given: the handle was built apart
/// from the one opening builds.
#[test]
fn index_rebuild_takes_the_cache_directory_and_transfers_it_is_given() {
    let d = tempfile::tempdir().unwrap();
    let remote = Arc::new(Remote::new(&d.path().join("repo")));
    let s: Arc<dyn Storage> = remote.clone();
    Repository::init_in(s.clone()).unwrap();
    let id = {
        let repo = open(&s, Access::Append, &d.path().join("cache-a"));
        for i in 0..6 {
            let data = crate::util::random_bytes(1 << 10, 20 + i);
            snapshot(&repo, &format!("s{i}"), &[("f", data)]).unwrap();
        }
        repo.config.id.to_hex()
    };
    let packs = s.list("packs/").unwrap().len();
    assert!(packs >= 6, "{packs} packs");
    remote.slow_reads.store(true, Ordering::SeqCst);
    for transfers in [1, 3] {
        let cache = d.path().join(format!("new-host-{transfers}"));
        let opts = OpenOptions {
            cache_dir: Some(cache.clone()),
            transfers: Some(transfers),
        };
        remote.most_pack_reads_at_once.store(0, Ordering::SeqCst);
        let passphrase = cbsnap::crypto::passphrase::FromEnv;
        let r = Repository::rebuild_index_in(s.clone(), &opts, &passphrase).unwrap();
        assert_eq!(r.added_packs, packs);
        assert!(cache.join(&id).join("index").is_dir(), "{transfers}");
        // With 3 allowed, more than one is seen: the count does see reads overlap.
        let most = remote.most_pack_reads_at_once.load(Ordering::SeqCst);
        let want = if transfers == 1 { 1..=1 } else { 2..=transfers };
        assert!(
            want.contains(&most),
            "{most} pack reads at once with transfers = {transfers}"
        );
    }
}

/// Two hosts (two caches) snapshot into one repository at the same time: both commit,
/// the data they share (stored before) is not stored again, and a prune afterwards
/// loses nothing.
fn two_hosts_snapshot_at_once_and_prune_loses_nothing(b: Backend) {
    {
        let d = tempfile::tempdir().unwrap();
        let s = (b.make)(d.path());
        Repository::init_in(s.clone()).unwrap();
        let shared = crate::util::random_bytes(20 << 20, 5);
        {
            let repo = open(&s, Access::Append, &d.path().join("cache-a"));
            snapshot(&repo, "a", &[("shared", shared.clone())]).unwrap();
        }
        let before = pack_bytes(&*s);
        let own: Vec<Vec<u8>> = (0..2)
            .map(|i| crate::util::random_bytes(3 << 20, 10 + i))
            .collect();
        let run = |host: &str, own: Vec<u8>| {
            let repo = open(&s, Access::Append, &d.path().join(format!("cache-{host}")));
            snapshot(&repo, host, &[("shared", shared.clone()), ("own", own)]).unwrap();
        };
        if s.local_root().is_some() {
            // A path repository's index is one RocksDB per repository, which one
            // process opens once: two processes at once are tested through the binary
            // (maintenance::concurrency). Here the two "hosts" take turns.
            run("a", own[0].clone());
            run("b", own[1].clone());
        } else {
            std::thread::scope(|sc| {
                sc.spawn(|| run("a", own[0].clone()));
                sc.spawn(|| run("b", own[1].clone()));
            });
        }
        let added = pack_bytes(&*s) - before;
        assert!(
            added < 7 << 20,
            "{}: {added} bytes added for 6 MiB of new data",
            b.name
        );
        let repo = open(&s, Access::Exclusive, &d.path().join("cache-c"));
        let opts = cbsnap::prune::plan::PlanOptions {
            repack_threshold: 0.0,
        };
        cbsnap::prune::sweep::prune(&repo, &opts, false).unwrap();
        for (i, host) in ["a", "b"].iter().enumerate() {
            assert!(read_back(&repo, host, "shared") == shared, "{}", b.name);
            assert!(read_back(&repo, host, "own") == own[i], "{}", b.name);
        }
        clean_check(&repo);
    }
}

/// A lock on a remote repository names host, pid and time; another host's lock not
/// refreshed for the stale time is removed, a fresh one blocks an exclusive lock.
#[test]
fn remote_locks_are_judged_by_their_time() {
    let d = tempfile::tempdir().unwrap();
    let s: Arc<dyn Storage> = Arc::new(Remote::new(&d.path().join("repo")));
    Repository::init_in(s.clone()).unwrap();
    let lock = |time: &str| {
        format!("{{\"kind\":\"shared\",\"host\":\"elsewhere\",\"pid\":1,\"time\":\"{time}\"}}")
    };
    let old = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    s.write("locks/shared-elsewhere-1-1", lock(&old).as_bytes())
        .unwrap();
    let cache = d.path().join("cache");
    drop(open(&s, Access::Exclusive, &cache));
    assert!(
        s.list("locks/").unwrap().is_empty(),
        "the stale lock was removed, ours released"
    );
    let now = chrono::Utc::now().to_rfc3339();
    s.write("locks/shared-elsewhere-1-2", lock(&now).as_bytes())
        .unwrap();
    let r = cbsnap::lock::acquire(&s, LockKind::Exclusive, Duration::ZERO);
    assert!(matches!(r, Err(Error::Locked(_))), "a fresh lock blocks");
    let _shared = cbsnap::lock::acquire(&s, LockKind::Shared, Duration::ZERO).unwrap();
    // A fresh lock of this host's name with a dead pid still holds on a remote
    // repository: the pid may be of another machine or container with the same name.
    s.delete("locks/shared-elsewhere-1-2").unwrap();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mine = format!(
        "{{\"kind\":\"exclusive\",\"host\":\"{host}\",\"pid\":999999999,\"time\":\"{now}\"}}"
    );
    s.write("locks/exclusive-same-name-1", mine.as_bytes())
        .unwrap();
    let r = cbsnap::lock::acquire(&s, LockKind::Shared, Duration::ZERO);
    assert!(
        matches!(r, Err(Error::Locked(_))),
        "judged by time, not pid"
    );
}
