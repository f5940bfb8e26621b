//! The Docker layer against the real engine: discovery, tar streams, helper
//! containers, quiescing and its recovery after signals and SIGKILL.
//!
//! Tests fail when no engine answers (`util::docker::engine` says how to start one). The signal
//! tests re-run this binary as a child process (`child_process` below), so
//! that a real signal can end a real cbsnap process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::docker::{
    docker, engine, parse_tar, payload, state_file, state_file_lists, unique, Item, TestContainer,
    TestVolume,
};
use cbsnap::docker::{
    Consistency, DockerError, Engine, QuiesceAction, QuiesceMode, VolumeInfo, COMPOSE_PROJECT_LABEL,
};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- volumes

#[test]
fn project_volumes_are_found_by_their_compose_label() {
    let engine = engine();
    let project = unique("cbsnap-proj");
    let other = unique("cbsnap-other");
    let a = TestVolume::new(
        "cbsnap-t-a",
        &[
            (COMPOSE_PROJECT_LABEL, &project),
            ("com.docker.compose.volume", "a"),
        ],
    );
    let b = TestVolume::new("cbsnap-t-b", &[(COMPOSE_PROJECT_LABEL, &project)]);
    let _c = TestVolume::new("cbsnap-t-c", &[(COMPOSE_PROJECT_LABEL, &other)]);
    let _d = TestVolume::new("cbsnap-t-d", &[]);

    let found = engine.list_project_volumes(&project).unwrap();
    let names: Vec<&str> = found.iter().map(|v| v.name.as_str()).collect();
    let mut want = vec![a.name.as_str(), b.name.as_str()];
    want.sort();
    assert_eq!(names, want);
    let va = found.iter().find(|v| v.name == a.name).unwrap();
    assert_eq!(va.driver, "local");
    assert_eq!(
        va.labels
            .get("com.docker.compose.volume")
            .map(String::as_str),
        Some("a")
    );
    assert!(va.mountpoint.starts_with('/'), "{}", va.mountpoint);
    assert!(engine
        .list_project_volumes(&unique("cbsnap-none"))
        .unwrap()
        .is_empty());
}

#[test]
fn volumes_are_created_inspected_and_removed() {
    let engine = engine();
    let name = unique("cbsnap-t-create");
    let _guard = TestVolume::adopt(&name);
    assert_eq!(engine.inspect_volume(&name).unwrap(), None);

    let wanted = VolumeInfo {
        name: name.clone(),
        driver: "local".into(),
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::from([(COMPOSE_PROJECT_LABEL.into(), "code-buddy".into())]),
        mountpoint: String::new(),
    };
    let created = engine.create_volume(&wanted).unwrap();
    assert_eq!(created.labels, wanted.labels);
    assert!(!created.mountpoint.is_empty());
    assert_eq!(engine.inspect_volume(&name).unwrap(), Some(created.clone()));
    assert!(matches!(
        engine.create_volume(&wanted),
        Err(DockerError::VolumeExists { .. })
    ));

    {
        let user = TestContainer::writer(&name, &[]);
        let err = engine.remove_volume(&name).unwrap_err();
        assert!(matches!(err, DockerError::VolumeInUse { .. }), "{err}");
        assert!(err.to_string().contains(&user.name), "{err}");
    }
    engine.remove_volume(&name).unwrap();
    assert_eq!(engine.inspect_volume(&name).unwrap(), None);
    let err = engine.remove_volume(&name).unwrap_err();
    assert!(matches!(err, DockerError::NoSuchVolume { .. }));
    assert!(err.to_string().contains("`docker volume ls`"), "{err}");
    assert!(matches!(
        engine.inspect_volume("../etc"),
        Err(DockerError::InvalidVolumeName { .. })
    ));
}

#[test]
fn containers_using_a_volume_include_stopped_ones() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-users", &[]);
    let running = TestContainer::writer(&vol.name, &[("cbsnap.quiesce", "stop")]);
    let exited = TestContainer::run(&vol.name, &[], "true");
    assert_eq!(exited.wait_for("exited", WAIT), "exited");
    let other = TestVolume::new("cbsnap-t-x", &[]);
    let _unrelated = TestContainer::writer(&other.name, &[]);

    let users = engine.containers_using_volume(&vol.name).unwrap();
    let mut got: Vec<(String, String)> = users
        .iter()
        .map(|c| (c.id.clone(), c.state.to_string()))
        .collect();
    got.sort();
    let mut want = vec![
        (running.id.clone(), "running".into()),
        (exited.id.clone(), "exited".into()),
    ];
    want.sort();
    assert_eq!(got, want);
    let r = users.iter().find(|c| c.id == running.id).unwrap();
    assert_eq!(r.name, running.name);
    assert_eq!(
        r.labels.get("cbsnap.quiesce").map(String::as_str),
        Some("stop")
    );
}

/// A fake engine on a unix socket, for what connecting asks: `/_ping` gets `OK`,
/// `/info` gets `{"Name": name}`, anything else 404. Returns the socket's
/// directory (keep it), its `unix://` address and the request lines it saw.
fn fake_engine(name: &str) -> (tempfile::TempDir, String, Arc<Mutex<Vec<String>>>) {
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, info) = (seen.clone(), format!(r#"{{"Name":"{name}"}}"#));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (log, info) = (log.clone(), info.clone());
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut lines = BufReader::new(conn).lines();
                // GET requests only: a head, no body, maybe several per connection.
                while let Some(Ok(request)) = lines.next() {
                    while let Some(Ok(header)) = lines.next() {
                        if header.is_empty() {
                            break;
                        }
                    }
                    let path = request.split(' ').nth(1).unwrap_or("").to_string();
                    log.lock().unwrap().push(format!("GET {path}"));
                    let (status, body) = match path.as_str() {
                        "/_ping" => ("200 OK", "OK".to_string()),
                        "/info" => ("200 OK", info.clone()),
                        _ => (
                            "404 Not Found",
                            r#"{"message":"no such route"}"#.to_string(),
                        ),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if out.write_all(head.as_bytes()).is_err()
                        || out.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let host = format!("unix://{}", sock.display());
    (dir, host, seen)
}

#[test]
fn connecting_costs_a_ping_and_one_info_no_version_request() {
    // Docker 20.10 runs `runc --version` for each `/version` and `/info`: connecting
    // asks `/_ping` only, and `/info` (for the `--via mount` check) once, in the
    // background.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the mount check needs root");
    let here = cbsnap::host::hostname();
    let (_dir, host, seen) = fake_engine(&here);
    let engine = Engine::connect_to(&host).unwrap();
    let data = tempfile::tempdir().unwrap();
    let volume = VolumeInfo {
        name: "v".into(),
        driver: "local".into(),
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::new(),
        mountpoint: data.path().display().to_string(),
    };
    assert!(engine.volume_mountpoint_readable(&volume));
    assert!(engine.volume_mountpoint_readable(&volume));
    assert_eq!(*seen.lock().unwrap(), ["GET /_ping", "GET /info"]);

    // An engine on another host (a forwarded socket): its paths are not ours.
    let (_dir, host, seen) = fake_engine(&format!("not-{here}"));
    let engine = Engine::connect_to(&host).unwrap();
    assert!(!engine.volume_mountpoint_readable(&volume));
    assert_eq!(*seen.lock().unwrap(), ["GET /_ping", "GET /info"]);
}

/// `snapshot --all` reaches the engine while the repository opens (a cold start spends
/// ~0.07 s on each). A repository that cannot be opened is still the error shown, and
/// at once: not after an engine that accepts and never answers has timed out (15 s).
#[test]
fn a_bad_repository_is_reported_without_waiting_for_a_silent_engine() {
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // Accept and hold every connection, never answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let mut child = crate::util::cbsnap(dir.path(), &dir.path().join("no-repo"))
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .args(["-q", "snapshot", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("cbsnap waited for the silent engine instead of reporting the repository");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = rest_of_stderr(&mut child);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no-repo") && !err.contains("Docker"), "{err}");
}

#[test]
fn mountpoint_is_readable_only_when_it_really_is() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-mp", &[]);
    let info = engine.inspect_volume(&vol.name).unwrap().unwrap();
    // This test machine runs the engine locally and the tests as root.
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let local = std::fs::metadata(&info.mountpoint).is_ok();
    assert_eq!(engine.volume_mountpoint_readable(&info), root && local);
    let bogus = VolumeInfo {
        mountpoint: "/nonexistent/_data".into(),
        ..info.clone()
    };
    assert!(!engine.volume_mountpoint_readable(&bogus));
    let relative = VolumeInfo {
        mountpoint: "_data".into(),
        ..info
    };
    assert!(!engine.volume_mountpoint_readable(&relative));
}

// ---------------------------------------------------------------- tar streams

#[test]
fn read_volume_tar_names_entries_dot_slash() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-read", &[]);
    vol.populate(
        "cd /data && echo hello > a.txt && mkdir -p sub/deep empty && printf x > sub/deep/f \
         && ln -s a.txt link && chown 1000:1000 a.txt && chmod 640 a.txt && chmod 750 /data",
    );

    let reader = engine.read_volume_tar(&vol.name).unwrap();
    let (mut names, items) = parse_tar(reader);
    // The convention callers rely on: the root is `./`, everything below `./…`.
    assert_eq!(names.first().map(String::as_str), Some("./"));
    names.sort();
    assert_eq!(
        names,
        [
            "./",
            "./a.txt",
            "./empty/",
            "./link",
            "./sub/",
            "./sub/deep/",
            "./sub/deep/f"
        ]
    );
    assert_eq!(items[""].kind, 'd');
    assert_eq!(
        items[""].mode, 0o750,
        "the volume root's mode travels in `./`"
    );
    assert_eq!(
        items["a.txt"],
        Item {
            kind: 'f',
            mode: 0o640,
            uid: 1000,
            link: None,
            data: b"hello\n".to_vec()
        }
    );
    assert_eq!(items["sub/deep/f"].data, b"x");
    assert_eq!(items["link"].link.as_deref(), Some("a.txt"));
    assert_eq!(items["empty"].kind, 'd');
    assert!(vol.helper_containers().is_empty(), "helper left after EOF");
}

#[test]
fn write_then_read_round_trips() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-rt", &[]);
    let long_name = format!("dir/{}", "n".repeat(150));
    let big = payload(5 * 1024 * 1024 + 7, 1);

    let mut tar = tar::Builder::new(Vec::new());
    let mut add =
        |path: &str, kind: tar::EntryType, mode: u32, uid: u64, link: Option<&str>, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            match link {
                Some(target) => tar.append_link(&mut h, path, target).unwrap(),
                None => tar.append_data(&mut h, path, data).unwrap(),
            }
        };
    add(".", tar::EntryType::Directory, 0o700, 0, None, b"");
    add("big.bin", tar::EntryType::Regular, 0o600, 1234, None, &big);
    add("dir", tar::EntryType::Directory, 0o755, 0, None, b"");
    add(&long_name, tar::EntryType::Regular, 0o644, 0, None, b"long");
    add("dir/empty", tar::EntryType::Regular, 0o644, 0, None, b"");
    add(
        "to-big",
        tar::EntryType::Symlink,
        0o777,
        0,
        Some("big.bin"),
        b"",
    );
    let bytes = tar.into_inner().unwrap();

    engine
        .write_volume_tar(&vol.name, bytes.as_slice())
        .unwrap();
    assert!(
        vol.helper_containers().is_empty(),
        "helper left after write"
    );

    // Checked from inside a container, independently of our reader.
    let seen = vol.inspect_with("cd /data && stat -c '%a %u %s %Y' . big.bin && md5sum big.bin");
    let lines: Vec<&str> = seen.lines().collect();
    let root: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        (root[0], root[1], root[3]),
        ("700", "0", "1700000000"),
        "{seen}"
    );
    assert!(
        lines[1].starts_with(&format!("600 1234 {} 1700000000", big.len())),
        "{seen}"
    );

    let (_, items) = parse_tar(engine.read_volume_tar(&vol.name).unwrap());
    let paths: Vec<&str> = items.keys().map(String::as_str).collect();
    let mut want = vec![
        "",
        "big.bin",
        "dir",
        long_name.as_str(),
        "dir/empty",
        "to-big",
    ];
    want.sort();
    assert_eq!(paths, want);
    assert_eq!(items[""].mode, 0o700);
    assert_eq!(items["big.bin"].uid, 1234);
    assert_eq!(items["big.bin"].mode, 0o600);
    assert!(
        items["big.bin"].data == big,
        "big.bin differs after the round trip"
    );
    assert_eq!(items[long_name.as_str()].data, b"long");
    assert_eq!(items["to-big"].link.as_deref(), Some("big.bin"));
    assert!(vol.helper_containers().is_empty());
}

#[test]
fn helper_containers_are_removed_on_drop_and_on_errors() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-helpers", &[]);
    vol.populate("head -c 3000000 /dev/urandom > /data/r && mkdir /data/d");

    let mut reader = engine.read_volume_tar(&vol.name).unwrap();
    let mut first = [0u8; 512];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(vol.helper_containers().len(), 1, "one helper while reading");
    let volume_helpers = docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=cbsnap.helper=1",
        "--filter",
        &format!("label=cbsnap.volume={}", vol.name),
    ]);
    assert!(!volume_helpers.is_empty());
    drop(reader);
    assert!(
        vol.helper_containers().is_empty(),
        "helper left after drop mid-stream"
    );

    let reader = engine.read_volume_tar(&vol.name).unwrap();
    reader.finish().unwrap();
    assert!(
        vol.helper_containers().is_empty(),
        "helper left after finish()"
    );

    // A source that fails halfway: the error is ours, and no helper remains.
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let err = engine
        .write_volume_tar(&vol.name, Failing(4096))
        .unwrap_err();
    assert!(matches!(err, DockerError::Io { .. }), "{err}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert!(
        vol.helper_containers().is_empty(),
        "helper left after a failed write"
    );

    // Not a tar: Docker refuses it.
    let err = engine
        .write_volume_tar(&vol.name, &b"not a tar at all"[..])
        .unwrap_err();
    assert!(matches!(err, DockerError::Api { .. }), "{err}");
    assert!(
        vol.helper_containers().is_empty(),
        "helper left after a refused write"
    );

    let missing = unique("cbsnap-t-missing");
    let err = engine
        .read_volume_tar(&missing)
        .err()
        .expect("reading a missing volume must fail");
    assert!(matches!(err, DockerError::NoSuchVolume { .. }), "{err}");
    assert_eq!(
        engine.inspect_volume(&missing).unwrap(),
        None,
        "reading must not create the volume"
    );
}

// ---------------------------------------------------------------- quiescing

#[test]
fn pause_guard_pauses_while_alive_and_resumes_on_drop() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-pause", &[]);
    let writer = TestContainer::writer(&vol.name, &[]);
    let stopped = TestContainer::run(&vol.name, &[], "true");
    assert_eq!(stopped.wait_for("exited", WAIT), "exited");
    let (_dir, state) = state_file();

    let users = engine.containers_using_volume(&vol.name).unwrap();
    let guard = engine.quiesce(&users, QuiesceMode::Pause, &state).unwrap();
    assert_eq!(guard.consistency(), Consistency::Paused);
    assert_eq!(
        guard.quiesced().len(),
        1,
        "only the running container is touched"
    );
    assert_eq!(writer.state(), "paused");
    assert_eq!(stopped.state(), "exited");
    assert!(
        state_file_lists(&state, &writer.id),
        "recorded before pausing"
    );
    // Reading works while paused.
    let (_, items) = parse_tar(engine.read_volume_tar(&vol.name).unwrap());
    assert!(items.contains_key("log"));
    drop(guard);
    assert_eq!(writer.state(), "running");
    assert_eq!(
        stopped.state(),
        "exited",
        "a stopped container stays stopped"
    );
    assert!(!state.exists(), "state file cleared after resuming");
}

#[derive(Debug)]
enum TestError {
    #[allow(dead_code)] // read through Debug when a test fails
    Docker(DockerError),
    Copy,
}

impl From<DockerError> for TestError {
    fn from(e: DockerError) -> Self {
        TestError::Docker(e)
    }
}

#[test]
fn containers_resume_when_the_guarded_work_fails_or_panics() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-fail", &[]);
    let writer = TestContainer::writer(&vol.name, &[]);
    let (_dir, state) = state_file();
    let users = engine.containers_using_volume(&vol.name).unwrap();

    let result: Result<(), TestError> =
        engine.with_quiesced(&users, QuiesceMode::Pause, &state, |consistency| {
            assert_eq!(consistency, Consistency::Paused);
            assert_eq!(writer.state(), "paused");
            Err(TestError::Copy)
        });
    assert!(matches!(result, Err(TestError::Copy)));
    assert_eq!(writer.state(), "running");

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _guard = engine.quiesce(&users, QuiesceMode::Pause, &state).unwrap();
        assert_eq!(writer.state(), "paused");
        panic!("copy blew up");
    }));
    assert!(panicked.is_err());
    assert_eq!(writer.state(), "running", "resumed while unwinding");
    assert!(!state.exists());

    let ok: Result<u32, TestError> =
        engine.with_quiesced(&users, QuiesceMode::Pause, &state, |_| Ok(7));
    assert!(matches!(ok, Ok(7)));
    assert_eq!(writer.state(), "running");
}

#[test]
fn labels_override_the_default_mode() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-labels", &[]);
    let to_stop = TestContainer::writer(&vol.name, &[("cbsnap.quiesce", "stop")]);
    let to_pause = TestContainer::writer(&vol.name, &[]);
    let (_dir, state) = state_file();
    let users = engine.containers_using_volume(&vol.name).unwrap();

    let guard = engine.quiesce(&users, QuiesceMode::Pause, &state).unwrap();
    assert_eq!(to_stop.state(), "exited");
    assert_eq!(to_pause.state(), "paused");
    assert_eq!(
        guard.consistency(),
        Consistency::Paused,
        "the weakest level wins"
    );
    let quiesced = guard.quiesced();
    let actions: BTreeMap<&str, QuiesceAction> =
        quiesced.iter().map(|c| (c.id.as_str(), c.action)).collect();
    assert_eq!(actions[to_stop.id.as_str()], QuiesceAction::Stop);
    assert_eq!(actions[to_pause.id.as_str()], QuiesceAction::Pause);
    guard.resume().unwrap();
    assert_eq!(to_stop.state(), "running");
    assert_eq!(to_pause.state(), "running");

    let live = TestContainer::writer(&vol.name, &[("cbsnap.quiesce", "none")]);
    let users = engine.containers_using_volume(&vol.name).unwrap();
    let guard = engine.quiesce(&users, QuiesceMode::Stop, &state).unwrap();
    assert_eq!(guard.consistency(), Consistency::Live);
    assert_eq!(live.state(), "running");
    drop(guard);

    let bad = TestContainer::writer(&vol.name, &[("cbsnap.quiesce", "freeze")]);
    let users = engine.containers_using_volume(&vol.name).unwrap();
    let err = engine
        .quiesce(&users, QuiesceMode::Pause, &state)
        .unwrap_err();
    assert!(matches!(err, DockerError::BadQuiesceLabel { .. }), "{err}");
    assert!(err.to_string().contains(&bad.name));
    for c in [&to_stop, &to_pause, &live, &bad] {
        assert_eq!(
            c.state(),
            "running",
            "a bad label must stop us before touching anything"
        );
    }
}

#[test]
fn recover_quiesced_resumes_what_a_killed_run_left() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-recover", &[]);
    let paused = TestContainer::writer(&vol.name, &[]);
    let stopped = TestContainer::writer(&vol.name, &[]);
    let someone_elses = TestContainer::writer(&vol.name, &[]);
    let (_dir, state) = state_file();

    // A dead pid: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    docker(&["pause", &paused.id]);
    docker(&["stop", &stopped.id]);
    docker(&["pause", &someone_elses.id]);
    let entry = |id: &str, action: &str, pid: u32| {
        format!(
            r#"{{"id":"{id}","name":"n","action":"{action}","pid":{pid},"host":"{host}","since":"2026-01-01T00:00:00Z"}}"#
        )
    };
    let json = format!(
        r#"{{"format":"cbsnap-quiesced","version":1,"containers":[{},{},{}]}}"#,
        entry(&paused.id, "pause", dead),
        entry(&stopped.id, "stop", dead),
        // pid 1 is alive: that run is still going, leave it alone.
        entry(&someone_elses.id, "pause", 1),
    )
    .replace(
        "]}",
        // Another host's run, for a container our engine does not have.
        &format!(
            r#",{{"id":"{}","name":"elsewhere","action":"stop","pid":7,"host":"other-host","since":"2026-01-01T00:00:00Z"}}]}}"#,
            "f".repeat(64)
        ),
    );
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, json).unwrap();

    let recovery = engine.recover_quiesced(&state).unwrap();
    let mut resumed: Vec<&str> = recovery.resumed.iter().map(|r| r.id.as_str()).collect();
    resumed.sort();
    let mut want = vec![paused.id.as_str(), stopped.id.as_str()];
    want.sort();
    assert_eq!(resumed, want);
    assert_eq!(paused.state(), "running");
    assert_eq!(stopped.state(), "running");
    assert_eq!(someone_elses.state(), "paused");
    assert_eq!(recovery.left_alone.len(), 2);
    assert!(state_file_lists(&state, &someone_elses.id));
    assert!(!state_file_lists(&state, &paused.id));

    // Recovering twice changes nothing; an entry whose container is running
    // is simply dropped.
    docker(&["unpause", &someone_elses.id]);
    let again = engine.recover_quiesced(&state).unwrap();
    assert!(again.resumed.is_empty());
    assert!(state.exists(), "the live process's entry stays");
}

// ---------------------------------------------------------------- signals and SIGKILL

/// The child side of the signal tests: quiesce the volume's containers, open
/// a tar stream (a helper container), say READY, and wait to be killed.
#[test]
#[ignore = "child process of the signal tests; run by them"]
fn child_process() {
    let Ok(mode) = std::env::var("CBSNAP_TEST_CHILD") else {
        return;
    };
    match mode.as_str() {
        "connect" => match Engine::connect() {
            Ok(_) => println!("CONNECTED"),
            Err(e) => println!("ERROR: {e}"),
        },
        "quiesce" => {
            // As the binary does: the library reports a signal as a notice, and
            // the program chooses the exit code (128 + signal).
            fn exit_on_signal(notice: cbsnap::docker::notice::Notice) {
                if let cbsnap::docker::notice::Notice::Exit { signal, .. } = notice {
                    std::process::exit(128 + signal);
                }
            }
            cbsnap::docker::notice::set_handler(exit_on_signal);
            let volume = std::env::var("CBSNAP_TEST_VOLUME").unwrap();
            let state = PathBuf::from(std::env::var("CBSNAP_TEST_STATE").unwrap());
            let engine = Engine::connect().unwrap();
            let users = engine.containers_using_volume(&volume).unwrap();
            let _guard = engine.quiesce(&users, QuiesceMode::Pause, &state).unwrap();
            let mut reader = engine.read_volume_tar(&volume).unwrap();
            let mut block = [0u8; 512];
            reader.read_exact(&mut block).unwrap();
            println!("READY");
            std::thread::sleep(Duration::from_secs(60));
            println!("NOT KILLED");
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(mode: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "docker::engine::child_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CBSNAP_TEST_CHILD", mode)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout until a line starts with `prefix`; returns it.
fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest prints `test child_process ... ` before the child's output.
        if let Some(at) = line.find(prefix) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return line[at..].to_string();
        }
    }
    let err = rest_of_stderr(child);
    panic!("child ended without printing {prefix}: {err}");
}

/// Everything the child writes to its (piped) stderr from here to its end.
fn rest_of_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn signal_child(child: &Child, sig: i32) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn quiescing_child(vol: &TestVolume, state: &Path) -> Child {
    let mut child = spawn_child(
        "quiesce",
        &[
            ("CBSNAP_TEST_VOLUME", &vol.name),
            ("CBSNAP_TEST_STATE", state.to_str().unwrap()),
        ],
    );
    wait_for_line(&mut child, "READY");
    child
}

fn signal_resumes_and_exits(sig: i32, code: i32) {
    let _engine = engine();
    let vol = TestVolume::new("cbsnap-t-sig", &[]);
    vol.populate("echo data > /data/f");
    let writer = TestContainer::writer(&vol.name, &[]);
    let (_dir, state) = state_file();

    let mut child = quiescing_child(&vol, &state);
    assert_eq!(writer.state(), "paused");
    assert_eq!(vol.helper_containers().len(), 1);
    signal_child(&child, sig);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "exit status {status:?}");
    assert_eq!(
        writer.state(),
        "running",
        "the handler resumes before exiting"
    );
    assert!(!state.exists(), "the handler clears the state file");
    assert!(
        vol.helper_containers().is_empty(),
        "the handler removes helpers"
    );
}

#[test]
fn sigterm_resumes_containers_and_exits_143() {
    signal_resumes_and_exits(libc::SIGTERM, 143);
}

#[test]
fn ctrl_c_resumes_containers_and_exits_130() {
    signal_resumes_and_exits(libc::SIGINT, 130);
}

#[test]
fn after_sigkill_the_next_run_recovers() {
    let engine = engine();
    let vol = TestVolume::new("cbsnap-t-kill", &[]);
    vol.populate("echo data > /data/f");
    let writer = TestContainer::writer(&vol.name, &[]);
    let (_dir, state) = state_file();

    let mut child = quiescing_child(&vol, &state);
    signal_child(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert_eq!(writer.state(), "paused", "nothing can run on SIGKILL");
    assert!(
        state_file_lists(&state, &writer.id),
        "but the state file says what to undo"
    );
    // The killed run's helper is removed by the next cbsnap that looks: this
    // recovery, or any other cbsnap on this host (the suite runs many at once), which
    // may come first. So: at most one before, and none after.
    let helpers = vol.helper_containers();
    assert!(helpers.len() <= 1, "{helpers:?}");

    let recovery = engine.recover_quiesced(&state).unwrap();
    assert_eq!(recovery.resumed.len(), 1);
    assert_eq!(recovery.resumed[0].id, writer.id);
    assert_eq!(writer.state(), "running");
    assert!(!state.exists());
    assert!(
        vol.helper_containers().is_empty(),
        "the dead run's helper is left: {:?}",
        recovery.helpers_removed
    );
}

// ---------------------------------------------------------------- unreachable engine

#[test]
fn an_unreachable_engine_gives_advice_not_a_panic() {
    let err = Engine::connect_to("unix:///nonexistent.sock").unwrap_err();
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("Cannot reach the Docker engine at unix:///nonexistent.sock"),
        "{msg}"
    );
    assert!(msg.contains("systemctl start docker"), "{msg}");

    // A stale socket file with nobody listening (dockerd crashed).
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let err = Engine::connect_to(&format!("unix://{}", sock.display())).unwrap_err();
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");

    // Through DOCKER_HOST, in a child so the variable cannot leak into other tests.
    let mut child = spawn_child("connect", &[("DOCKER_HOST", "unix:///nonexistent.sock")]);
    let line = wait_for_line(&mut child, "ERROR");
    child.wait().unwrap();
    assert!(
        line.contains("Cannot reach the Docker engine at unix:///nonexistent.sock: is it running?"),
        "{line}"
    );
}
