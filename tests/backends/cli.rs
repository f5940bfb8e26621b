//! The binary against the real S3 (moto) and SFTP (sshd) servers of
//! `scripts/test-servers.sh`: every command on both backends, a volume restored on a
//! "new host", bytes counted on the wire, two hosts and a prune at once, a server
//! that goes away mid-upload, and what encryption must hide.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::util::servers::{self, Proxy, Server};
use crate::util::*;

const PASS: &str = "correct horse battery staple";

/// A "host": its own home (cache, no config) and the repository location.
struct Host {
    home: tempfile::TempDir,
    location: String,
}

impl Host {
    fn new(location: &str) -> Host {
        Host {
            home: tempfile::tempdir().unwrap(),
            location: location.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = servers::cbsnap(self.home.path(), &self.location);
        c.env("CBSNAP_PASSWORD", PASS)
            .env("HOME", self.home.path())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        expect_success(args, self.run(args))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

/// Every entry kind through the backend and back, and every command once: init
/// (encrypted by default off-host), snapshot, snapshots, ls, dump, diff, restore,
/// check --read-data, stats, forget, prune, mirror, key list; then the same
/// repository from a second host with an empty cache.
fn every_command(server: Server) {
    let h = Host::new(&server.location());
    // Before init: "not a repository", naming the location as written, and an init
    // command that works (it said `s3:/…`, a location cbsnap does not take).
    let o = h.run(&["snapshots"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("--repo {} init", h.location)),
        "{}",
        stderr(&o)
    );
    let v = h.json(&["init"]);
    assert_eq!(
        v["encrypted"], true,
        "off-host repositories are encrypted by default"
    );
    let src = tempfile::tempdir().unwrap();
    let src = src.path().join("src");
    build_every_kind(&src);
    let s = src.to_str().unwrap();
    h.ok(&["snapshot", "--path", s, "--name", "app"]);
    std::fs::write(src.join("hello.txt"), b"changed\n").unwrap();
    h.ok(&["snapshot", "--path", s, "--name", "app"]);
    let snaps = h.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    let ls = h.ok(&["ls", "app@latest"]);
    assert!(ls.contains("dir/sub/code.rs"), "{ls}");
    let diff = h.ok(&["diff", "app@latest~1", "app@latest"]);
    assert!(diff.contains("hello.txt"), "{diff}");
    let dump = h.cmd(&["dump", "app@latest"]).output().unwrap();
    assert!(dump.status.success(), "{}", stderr(&dump));
    let names = servers_tar_names(&dump.stdout);
    assert!(
        names.iter().any(|n| n.ends_with("dir/random.bin")),
        "{names:?}"
    );

    // A second host: an empty cache, the index rebuilt from the pack trailers.
    let other = Host::new(&h.location);
    let to = other.home.path().join("restored");
    other.ok(&["restore", "app@latest", "--to", to.to_str().unwrap()]);
    compare_trees(&src, &to);
    other.ok(&["check", "--read-data"]);
    let stats = other.json(&["stats"]);
    assert!(stats.is_object(), "{stats}");
    other.ok(&["forget", "--keep-last", "1"]);
    other.ok(&["prune"]);
    assert_eq!(other.json(&["snapshots"]).as_array().unwrap().len(), 1);
    let keys = other.ok(&["key", "list"]);
    assert_eq!(keys.lines().count(), 2, "a header and one key: {keys}");

    // Mirror to a path and to another location on the same server: both open and
    // restore with the same passphrase, and a second mirror sends nothing.
    let local = other.home.path().join("mirror");
    other.ok(&["mirror", local.to_str().unwrap()]);
    let m = Host::new(local.to_str().unwrap());
    m.ok(&["check", "--read-data"]);
    let second = server.location();
    let r = other.json(&["mirror", &second]);
    assert!(r["report"]["uploaded_files"].as_u64().unwrap() > 0, "{r}");
    let r = other.json(&["mirror", &second]);
    assert_eq!(r["report"]["uploaded_files"], 0, "{r}");
    // Another repository is never mirrored over this mirror: it would replace its
    // config and, with --delete, its snapshots (it did, with exit 0).
    let stranger_dir = other.home.path().join("stranger");
    let stranger = Host::new(stranger_dir.to_str().unwrap());
    stranger.ok(&["init"]);
    let o = stranger.run(&["mirror", &second, "--delete"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another cbsnap repository"),
        "{}",
        stderr(&o)
    );
    let m = Host::new(&second);
    let to = m.home.path().join("from-mirror");
    m.ok(&["restore", "app@latest", "--to", to.to_str().unwrap()]);
    compare_trees(&src, &to);
}

/// The member names of a tar stream.
fn servers_tar_names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn s3_every_command_and_every_entry_kind() {
    every_command(Server::S3);
}

#[test]
fn sftp_every_command_and_every_entry_kind() {
    every_command(Server::Sftp);
}

/// `restore qdrant-data@latest` on a new host (an empty cache) brings the volume back
/// byte-exact from S3.
#[test]
fn s3_docker_volume_restored_on_a_new_host_is_byte_exact() {
    let _e = docker::engine();
    let project = docker::unique("cbs3");
    let vol = docker::project_volume(&project, "qdrant-data");
    let src = tempfile::tempdir().unwrap();
    build_plain_tree(src.path());
    docker::fill_volume(&vol.name, src.path());
    let location = Server::S3.location();
    let night = Host::new(&location);
    night.ok(&["init"]);
    night.ok(&["snapshot", "--all", "--project", &project]);
    docker::docker(&["volume", "rm", &vol.name]);

    let new_host = Host::new(&location);
    let o = new_host.run(&["restore", "qdrant-data@latest", "--project", &project]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _guard = docker::TestVolume::adopt(&vol.name);
    compare_trees(src.path(), &docker::mountpoint(&vol.name));
}

/// Files of a volume a database would hold (no special files: the archive path).
fn build_plain_tree(root: &Path) {
    std::fs::create_dir_all(root.join("collections/code/segments")).unwrap();
    std::fs::write(
        root.join("collections/code/segments/0.bin"),
        random_bytes(5 << 20, 7),
    )
    .unwrap();
    std::fs::write(
        root.join("collections/code/config.json"),
        b"{\"dim\": 768}\n",
    )
    .unwrap();
    std::fs::write(root.join("raft_state.json"), text_bytes(10_000, 8)).unwrap();
}

/// The second snapshot of a slowly changed tree sends little more than its new
/// packs: bytes counted on the wire to the server, through a proxy.
fn second_snapshot_sends_little(server: Server) {
    let proxy = Proxy::new(&server.addr());
    let (location, env) = through(server, &proxy);
    let h = Host::new(&location);
    let run = |args: &[&str]| {
        let mut c = h.cmd(args);
        c.envs(env.clone());
        expect_success(args, c.output().unwrap());
    };
    run(&["init"]);
    let src = tempfile::tempdir().unwrap();
    for i in 0..8 {
        write(src.path(), &format!("f{i}"), &random_bytes(4 << 20, 20 + i));
    }
    let s = src.path().to_str().unwrap();
    run(&["snapshot", "--path", s, "--name", "t"]);
    let first = proxy.sent.load(Ordering::SeqCst);
    assert!(first > 32 << 20, "the first snapshot sent {first} bytes");
    write(src.path(), "new", &random_bytes(1 << 20, 99));
    let before = proxy.sent.load(Ordering::SeqCst);
    run(&["snapshot", "--path", s, "--name", "t"]);
    let second = proxy.sent.load(Ordering::SeqCst) - before;
    assert!(
        second < (1 << 20) + (512 << 10),
        "{server:?}: the second snapshot sent {second} bytes for 1 MiB of new data"
    );
}

#[test]
fn s3_second_snapshot_sends_little_more_than_the_new_data() {
    second_snapshot_sends_little(Server::S3);
}

#[test]
fn sftp_second_snapshot_sends_little_more_than_the_new_data() {
    second_snapshot_sends_little(Server::Sftp);
}

/// The location and environment that reach `server` through `proxy`.
fn through(server: Server, proxy: &Proxy) -> (String, Vec<(String, String)>) {
    let base = server.location();
    match server {
        Server::S3 => (
            base,
            vec![(
                "AWS_ENDPOINT_URL".to_string(),
                format!("http://127.0.0.1:{}", proxy.port),
            )],
        ),
        Server::Sftp => {
            // sftp://cbsnap-test-sftp/dir → sftp://cbsnap-test-sftp:PORT/dir (the ssh
            // config's HostKeyAlias keeps the host key check strict on any port).
            let rest = base.strip_prefix("sftp://cbsnap-test-sftp").unwrap();
            (
                format!("sftp://cbsnap-test-sftp:{}{rest}", proxy.port),
                Vec::new(),
            )
        }
    }
}

/// The server goes away mid-upload: a clear error, nothing committed, and the next
/// run succeeds once it is back. Then it goes away mid-restore: exit 1 naming it,
/// not a list of "damaged" files.
fn server_gone_mid_upload(server: Server, config: Option<&str>) {
    let proxy = Proxy::new(&server.addr());
    let (location, env) = through(server, &proxy);
    let h = Host::new(&location);
    if let Some(c) = config {
        let dir = h.home.path().join("no-config/cbsnap");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), c).unwrap();
    }
    let cmd = |args: &[&str]| {
        let mut c = h.cmd(args);
        c.envs(env.clone());
        c
    };
    expect_success(&["init"], cmd(&["init"]).output().unwrap());
    let src = tempfile::tempdir().unwrap();
    for i in 0..12 {
        write(src.path(), &format!("f{i}"), &random_bytes(8 << 20, 40 + i));
    }
    let s = src.path().to_str().unwrap();
    let start = proxy.sent.load(Ordering::SeqCst);
    let mut child = cmd(&["snapshot", "--path", s, "--name", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.sent.load(Ordering::SeqCst) - start < 20 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the snapshot ended before the server went away"
        );
        assert!(Instant::now() < deadline, "nothing was uploaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the snapshot ended before the server went away"
    );
    proxy.stop();
    // Bounded: a failed part must end the upload, not leave it waiting for memory
    // that only the failed part holds.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the snapshot still ran 180 s after the server went away: it hangs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&location) || err.contains("server"), "{err}");
    proxy.start();
    let direct = servers::storage(&server_location(server, &location));
    assert!(
        direct.list("snapshots/").unwrap().is_empty(),
        "no snapshot was committed"
    );
    expect_success(
        &["snapshot"],
        cmd(&["snapshot", "--path", s, "--name", "t"])
            .output()
            .unwrap(),
    );
    expect_success(&["check"], cmd(&["check", "--read-data"]).output().unwrap());
    let to = h.home.path().join("restored");
    expect_success(
        &["restore"],
        cmd(&["restore", "t@latest", "--to", to.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    compare_trees(src.path(), &to);

    // Gone mid-restore: the restore stops with exit 1 naming the server; it listed
    // every later file as "not restored exactly" and exited 3, as if the data were
    // damaged.
    let gone = h.home.path().join("gone");
    let start = proxy.received.load(Ordering::SeqCst);
    let mut child = cmd(&["restore", "t@latest", "--to", gone.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.received.load(Ordering::SeqCst) - start < 20 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before the server went away"
        );
        assert!(Instant::now() < deadline, "nothing was downloaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.stop();
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the restore still ran 180 s after the server went away: it hangs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("server"), "{err}");
}

/// The location of the server itself for a location through the proxy.
fn server_location(server: Server, through_proxy: &str) -> String {
    match server {
        Server::S3 => through_proxy.to_string(),
        Server::Sftp => {
            let rest = through_proxy
                .strip_prefix("sftp://cbsnap-test-sftp:")
                .unwrap();
            let slash = rest.find('/').unwrap();
            format!("sftp://cbsnap-test-sftp{}", &rest[slash..])
        }
    }
}

#[test]
fn s3_server_gone_mid_upload_commits_nothing_and_the_next_run_succeeds() {
    server_gone_mid_upload(Server::S3, None);
}

#[test]
fn sftp_server_gone_mid_upload_commits_nothing_and_the_next_run_succeeds() {
    server_gone_mid_upload(Server::Sftp, None);
}

/// The smallest upload budget (3 parts of 5 MiB) with packs of 4 parts: the reading
/// thread waits for memory that the parts in OpenDAL's hands hold, one of them failed.
/// It must fail (exit 1), not wait for ever (helper-25 found it hanging with 2).
#[test]
fn s3_server_gone_mid_upload_with_the_smallest_upload_budget_fails_and_does_not_hang() {
    server_gone_mid_upload(Server::S3, Some("[s3]\nconcurrency = 3\n"));
}

/// Two hosts (other host names, other caches) snapshot into one S3 repository at the
/// same time while a prune waits for them: both commit, the prune loses nothing,
/// what they share is stored once, and `check --read-data` passes.
#[test]
fn s3_two_hosts_and_a_racing_prune() {
    let location = Server::S3.location();
    let first = Host::new(&location);
    first.ok(&["init"]);
    let shared = tempfile::tempdir().unwrap();
    write(shared.path(), "model.bin", &random_bytes(24 << 20, 60));
    // The shared model stored once before, by a first host.
    first.ok(&[
        "snapshot",
        "--path",
        shared.path().to_str().unwrap(),
        "--name",
        "models",
    ]);
    let hosts: Vec<(Host, tempfile::TempDir)> = (0..2)
        .map(|i| {
            let d = tempfile::tempdir().unwrap();
            write(d.path(), "model.bin", &random_bytes(24 << 20, 60));
            write(d.path(), "own.bin", &random_bytes(2 << 20, 70 + i));
            (Host::new(&location), d)
        })
        .collect();
    // Each host under its own host name (a UTS namespace), as two machines would be.
    let spawn = |h: &Host, name: &str, args: &[&str]| {
        let mut c = Command::new("unshare");
        c.arg("--uts")
            .arg("sh")
            .arg("-c")
            .arg(format!("hostname {name} && exec \"$0\" \"$@\""));
        let inner = h.cmd(args);
        c.arg(inner.get_program());
        c.args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(
        &hosts[0].0,
        "host-a",
        &[
            "snapshot",
            "--path",
            hosts[0].1.path().to_str().unwrap(),
            "--name",
            "a",
        ],
    );
    let b = spawn(
        &hosts[1].0,
        "host-b",
        &[
            "snapshot",
            "--path",
            hosts[1].1.path().to_str().unwrap(),
            "--name",
            "b",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let prune = spawn(&first, "host-c", &["prune"]);
    for (what, c) in [("a", a), ("b", b), ("prune", prune)] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{what}: {}", stderr(&o));
    }
    let checker = Host::new(&location);
    checker.ok(&["check", "--read-data"]);
    let hosts_seen: Vec<String> = checker
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        hosts_seen.iter().any(|h| h == "host-a") && hosts_seen.iter().any(|h| h == "host-b"),
        "{hosts_seen:?}"
    );
    for (i, (_, d)) in hosts.iter().enumerate() {
        let name = ["a", "b"][i];
        let to = checker.home.path().join(name);
        checker.ok(&[
            "restore",
            &format!("{name}@latest"),
            "--to",
            to.to_str().unwrap(),
        ]);
        diff_r(d.path(), &to);
    }
    // The shared 24 MiB once, each host's own 2 MiB, and little else.
    let stored: u64 = servers::storage(&location)
        .list("packs/")
        .unwrap()
        .iter()
        .map(|l| l.size)
        .sum();
    assert!(
        stored < 30 << 20,
        "{stored} bytes of packs for 28 MiB of distinct data"
    );
}

/// Encryption on S3: no object holds a plaintext piece of a known file (and the same
/// test on an unencrypted repository finds it, so the search works); a wrong
/// passphrase is exit 4; `key add` then `key remove` of the first key keeps the
/// repository readable with the second; a flipped byte in a pack is an
/// authentication failure naming the pack.
#[test]
fn s3_encryption_hides_content_and_names_damage() {
    let known = random_bytes(2 << 20, 80);
    let needles: Vec<&[u8]> = (0..8)
        .map(|i| &known[i * 200_000..i * 200_000 + 64])
        .collect();
    let holds_plaintext = |location: &str| {
        let s = servers::storage(location);
        s.list("").unwrap().iter().any(|l| {
            let body = s.read(&l.key).unwrap();
            needles
                .iter()
                .any(|n| body.windows(n.len()).any(|w| w == *n))
        })
    };
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "model.bin", &known);
    let s = src.path().to_str().unwrap();

    let plain = Host::new(&Server::S3.location());
    plain.ok(&["init", "--encryption", "off"]);
    plain.ok(&["snapshot", "--path", s, "--name", "m"]);
    assert!(
        holds_plaintext(&plain.location),
        "the search finds plaintext where it is"
    );

    let h = Host::new(&Server::S3.location());
    h.ok(&["init"]);
    h.ok(&["snapshot", "--path", s, "--name", "m"]);
    assert!(
        !holds_plaintext(&h.location),
        "an encrypted object holds plaintext"
    );

    let o = h
        .cmd(&["snapshots"])
        .env("CBSNAP_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("passphrase"), "{}", stderr(&o));

    let first_key = h.json(&["key", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = h
        .cmd(&["key", "add"])
        .env("CBSNAP_NEW_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = h
        .cmd(&["key", "remove", &first_key[..8]])
        .env("CBSNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = h.cmd(&["snapshots"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(4),
        "the first passphrase no longer opens it"
    );
    let fresh = Host::new(&h.location);
    let to = fresh.home.path().join("r");
    let o = fresh
        .cmd(&["restore", "m@latest", "--to", to.to_str().unwrap()])
        .env("CBSNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(to.join("model.bin")).unwrap() == known);

    // Flip a byte in the middle of the biggest pack.
    let store = servers::storage(&h.location);
    let packs = store.list("packs/").unwrap();
    let big = packs.iter().max_by_key(|l| l.size).unwrap();
    let mut body = store.read(&big.key).unwrap();
    let mid = body.len() / 3;
    body[mid] ^= 0x40;
    store.write(&big.key, &body).unwrap();
    let pack_id = big.key.rsplit('/').next().unwrap();
    let o = fresh
        .cmd(&["check", "--read-data"])
        .env("CBSNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("authentication") && all.contains(&pack_id[..8]),
        "{all}"
    );
}

/// S3 with no credentials anywhere (no `AWS_ACCESS_KEY_ID`, no `[s3]` keys, no
/// `~/.aws`): the error says so and names what to set, exit 1. It said "the server
/// did not answer; check the network or the endpoint".
#[test]
fn s3_without_credentials_says_which_to_set() {
    let host = Host::new(&Server::S3.location());
    host.ok(&["init"]);
    let o = host
        .cmd(&["snapshots"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("no credentials") && e.contains("AWS_ACCESS_KEY_ID"),
        "{e}"
    );
    assert!(!e.contains("did not answer"), "{e}");
}
