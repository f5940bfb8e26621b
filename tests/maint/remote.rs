//! The storage backend contract (issue 10): one test body run against every backend
//! (a local path, S3 through moto, SFTP through sshd), and a server stopped in the
//! middle of an upload.
//!
//! The S3 and SFTP tests need the test servers: `eval "$(scripts/test-servers.sh
//! start)"` (scripts/test.sh does it and runs them with `--ignored`). They are
//! `#[ignore]`d so that a plain `cargo test` shows them as skipped; run without the
//! servers' variables they fail and say how to start them, never pass.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cbsnap::storage::{Location, Remote, Retry, S3Settings, Storage, StorageError};
use rand::{RngCore, SeedableRng};

/// Tests that stop a server take this for writing; every other test that talks to a
/// server takes it for reading.
pub static SERVERS: RwLock<()> = RwLock::new(());

pub fn servers_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SERVERS.read().unwrap_or_else(|e| e.into_inner())
}

fn servers_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    SERVERS.write().unwrap_or_else(|e| e.into_inner())
}

/// The location of a test server from `var` (`CBSNAP_TEST_S3`, `CBSNAP_TEST_SFTP`), with
/// a fresh sub-directory for this test. Panics with the way to start the servers when
/// the variable is missing.
pub fn server_location(var: &str, test: &str) -> String {
    let base = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test servers with `eval \"$(scripts/test-servers.sh start)\"` \
             (needs `scripts/deps.sh --test`), then run the tests again"
        )
    });
    let unique = format!(
        "{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    format!("{}/{unique}", base.trim_end_matches('/'))
}

pub fn open_remote(location: &str, retry: Retry) -> Remote {
    let loc = Location::parse(location).unwrap();
    Remote::open(&loc, &S3Settings::default(), retry).unwrap()
}

/// `scripts/test-servers.sh ACTION WHICH` (stop or start a server).
fn servers(action: &str, which: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-servers.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args([action, which])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{action} {which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::NotFound { .. }))
}

const PACK: &str = "packs/ab/ab00000000000000000000000000000000000000000000000000000000000000";

/// What every backend must do, in one body.
pub fn contract(s: &dyn Storage) {
    // Missing keys are NotFound, for every way of reading them.
    assert!(not_found(s.read("config")), "{}", s.location());
    assert!(not_found(s.size("config")));
    assert!(not_found(s.read_range(PACK, 0, 4)));
    assert!(
        s.list("packs/").unwrap().is_empty(),
        "an empty prefix lists nothing"
    );

    // write / read / overwrite
    s.write("config", b"first config").unwrap();
    assert_eq!(s.read("config").unwrap(), b"first config");
    s.write("config", b"second").unwrap();
    assert_eq!(s.read("config").unwrap(), b"second", "write replaces");
    assert_eq!(s.size("config").unwrap(), 6);

    // Nested keys and ranged reads.
    let pack = random(300_000, 1);
    s.write(PACK, &pack).unwrap();
    assert_eq!(s.size(PACK).unwrap(), pack.len() as u64);
    assert_eq!(s.read_range(PACK, 1000, 500).unwrap(), &pack[1000..1500]);
    assert_eq!(
        s.read_range(PACK, pack.len() as u64 - 10, 10).unwrap(),
        &pack[pack.len() - 10..]
    );
    assert_eq!(s.read(PACK).unwrap(), pack);

    // list: every key under the prefix, recursively, with sizes; nothing else.
    s.write("snapshots/02", b"two").unwrap();
    s.write("snapshots/01", b"one!").unwrap();
    s.write("keys/k", b"key").unwrap();
    let listed = |p: &str| -> Vec<(String, u64)> {
        let mut v: Vec<_> = s
            .list(p)
            .unwrap()
            .into_iter()
            .map(|l| (l.key, l.size))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        listed("packs/"),
        vec![(PACK.to_string(), pack.len() as u64)]
    );
    assert_eq!(
        listed("snapshots/"),
        vec![
            ("snapshots/01".to_string(), 4),
            ("snapshots/02".to_string(), 3)
        ]
    );
    assert!(listed("locks/").is_empty());

    // create_new: once, then AlreadyExists, and the first content stays.
    s.create_new("locks/a", b"mine").unwrap();
    let again = s.create_new("locks/a", b"theirs");
    assert!(
        matches!(again, Err(StorageError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(s.read("locks/a").unwrap(), b"mine");

    // delete; deleting a missing key is Ok.
    s.delete("locks/a").unwrap();
    assert!(not_found(s.read("locks/a")));
    s.delete("locks/a").unwrap();
    assert!(listed("locks/").is_empty());
    s.delete("snapshots/01").unwrap();
    assert_eq!(listed("snapshots/"), vec![("snapshots/02".to_string(), 3)]);
}

/// Many threads race `create_new` on one key: exactly one wins (what a lock needs).
pub fn create_new_race(s: Arc<dyn Storage>) {
    let winners: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                scope.spawn(
                    move || match s.create_new("locks/race", format!("{i}").as_bytes()) {
                        Ok(()) => 1,
                        Err(StorageError::AlreadyExists { .. }) => 0,
                        Err(e) => panic!("create_new: {e}"),
                    },
                )
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        winners, 1,
        "exactly one create_new of the same key succeeds"
    );
}

/// A 100 MB file through `write_file` (multipart on S3), read back exactly.
pub fn big_file(s: &dyn Storage) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pack");
    let data = write_big(&path, 100 << 20);
    s.write_file(PACK, &path).unwrap();
    assert_eq!(s.size(PACK).unwrap(), data.len() as u64);
    for off in [0usize, 8 << 20, (8 << 20) - 3, data.len() - 1000] {
        assert_eq!(
            s.read_range(PACK, off as u64, 1000.min((data.len() - off) as u64))
                .unwrap(),
            &data[off..(off + 1000).min(data.len())],
            "range at {off}"
        );
    }
    assert!(s.read(PACK).unwrap() == data, "the whole object reads back");
}

fn write_big(path: &Path, len: usize) -> Vec<u8> {
    let data = random(len, 7);
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    data
}

/// The server stops in the middle of a 100 MB upload: the upload fails with a clear
/// `Transient` error, the key holds nothing, and once the server is back the next call
/// succeeds on the same handle.
fn stopped_mid_upload(which: &str, var: &str) {
    let _g = servers_exclusive();
    let loc = server_location(var, "stopped");
    let retry = Retry {
        attempts: 2,
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    };
    let s = Arc::new(open_remote(&loc, retry));
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("pack");
    let data = write_big(&path, 100 << 20);
    s.write("config", b"before").unwrap();

    let upload = {
        let (s, path) = (s.clone(), path.clone());
        std::thread::spawn(move || s.write_file(PACK, &path))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !upload.is_finished(),
        "the upload finished before the server was stopped; use a bigger file"
    );
    servers("stop", which);
    let r = upload.join().unwrap();
    // Whatever happens next, the server must run again for the other tests.
    servers("start", which);
    let e = r.expect_err("an upload to a stopped server fails");
    assert!(
        matches!(e, StorageError::Transient { .. }),
        "a stopped server is a Transient error: {e:?}"
    );
    assert!(e.to_string().contains("check the network"), "{e}");
    assert!(
        not_found(s.size(PACK)),
        "a failed upload leaves nothing at its key"
    );
    s.write_file(PACK, &path).unwrap();
    assert_eq!(s.size(PACK).unwrap(), data.len() as u64);
    assert_eq!(s.read_range(PACK, 12345, 100).unwrap(), &data[12345..12445]);
}

const NEEDS_SERVERS: &str =
    "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored";

#[test]
#[ignore = "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored"]
fn remote_s3_contract() {
    let _g = servers_shared();
    let s: Arc<dyn Storage> = Arc::new(open_remote(
        &server_location("CBSNAP_TEST_S3", "contract"),
        Retry::default(),
    ));
    assert!(s.location().starts_with("s3://"), "{NEEDS_SERVERS}");
    contract(&*s);
    create_new_race(s.clone());
    big_file(&*s);
}

#[test]
#[ignore = "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored"]
fn remote_sftp_contract() {
    let _g = servers_shared();
    let s: Arc<dyn Storage> = Arc::new(open_remote(
        &server_location("CBSNAP_TEST_SFTP", "contract"),
        Retry::default(),
    ));
    assert!(s.location().starts_with("sftp://"));
    contract(&*s);
    create_new_race(s.clone());
    big_file(&*s);
}

#[test]
#[ignore = "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored"]
fn remote_s3_server_stopped_mid_upload() {
    stopped_mid_upload("s3", "CBSNAP_TEST_S3");
}

#[test]
#[ignore = "needs the S3/SFTP test servers: eval \"$(scripts/test-servers.sh start)\", then --ignored"]
fn remote_sftp_server_stopped_mid_upload() {
    stopped_mid_upload("sftp", "CBSNAP_TEST_SFTP");
}
