//! Docker fixtures for integration tests that run against the real engine.
//!
//! Set-up and checks go through the `docker` CLI, not through cbsnap's own
//! `docker` module, so a bug there cannot hide itself in the test. Every
//! volume and container gets a unique name (`<prefix>-<pid>-<random>`) and is
//! removed by its guard's `Drop`, so parallel tests and test binaries do not
//! see each other's objects.
//!
//! No image can be pulled in CI sandboxes, so [`busybox_image`] builds
//! `cbsnap-test-busybox:1` with `docker import` from the host's static busybox
//! (Debian package busybox-static) plus applet symlinks.
//!
//! [`engine`] fails the test, saying how to start an engine, when none answers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use cbsnap::docker::{volume_entry_path, Engine};

/// The test image: /bin/busybox and its applets, nothing else.
pub const BUSYBOX_IMAGE: &str = "cbsnap-test-busybox:1";

/// Where test containers mount their volume.
pub const DATA: &str = "/data";

/// A script that keeps writing to the volume, as a database would; it exits
/// promptly on SIGTERM (a shell as pid 1 ignores it otherwise).
pub const WRITER_SCRIPT: &str =
    "trap 'exit 0' TERM; while true; do date >> /data/log; sleep 0.2; done";

/// Connects to the engine. A test that needs Docker fails when none answers (a test
/// that returned early would pass without having run): start one, or leave the
/// Docker tests out by name.
pub fn engine() -> Engine {
    Engine::connect().unwrap_or_else(|e| {
        panic!(
            "this test needs a Docker engine and none answers: {e}\n\
             Start one (as root: `scripts/docker-up.sh`, or `dockerd &`), or leave the \
             tests that need it out: `cargo test -- --skip docker`"
        )
    })
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Runs the docker CLI and returns its trimmed stdout; panics with its
/// stderr if it fails.
pub fn docker(args: &[&str]) -> String {
    docker_with_input(args, None)
}

/// Like [`docker`], feeding `input` on stdin.
pub fn docker_with_input(args: &[&str], input: Option<&[u8]>) -> String {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the docker CLI must be installed to run these tests");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input).expect("writing to docker's stdin");
    }
    let out = child.wait_with_output().expect("waiting for docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs the docker CLI, ignoring failure (for clean-up).
fn docker_quiet(args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Makes sure [`BUSYBOX_IMAGE`] exists.
pub fn busybox_image() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", BUSYBOX_IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if present {
            return;
        }
        let busybox = std::fs::read("/bin/busybox")
            .expect("/bin/busybox is needed to build the test image (apt install busybox-static)");
        let mut tar = tar::Builder::new(Vec::new());
        for dir in ["bin", "tmp", "data"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
            h.set_size(0);
            tar.append_data(&mut h, dir, std::io::empty()).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(busybox.len() as u64);
        tar.append_data(&mut h, "bin/busybox", busybox.as_slice())
            .unwrap();
        let applets = [
            "sh", "date", "sleep", "cat", "ls", "mkdir", "touch", "echo", "chmod", "chown", "ln",
            "rm", "true", "head", "stat", "sync", "md5sum", "find", "wc",
        ];
        for applet in applets {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        docker_with_input(&["import", "-", BUSYBOX_IMAGE], Some(&bytes));
    });
}

/// A named volume, removed on drop.
pub struct TestVolume {
    pub name: String,
}

impl TestVolume {
    /// A new empty volume with these labels.
    pub fn new(prefix: &str, labels: &[(&str, &str)]) -> TestVolume {
        let name = unique(prefix);
        let mut args = vec!["volume".to_string(), "create".to_string()];
        for (k, v) in labels {
            args.push("--label".to_string());
            args.push(format!("{k}={v}"));
        }
        args.push(name.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
        TestVolume { name }
    }

    /// Guards a volume created by the code under test.
    pub fn adopt(name: &str) -> TestVolume {
        TestVolume {
            name: name.to_string(),
        }
    }

    /// Runs a busybox shell script with the volume at `/data`, to completion.
    pub fn populate(&self, script: &str) {
        self.run_script(script, "");
    }

    /// Output of a busybox shell script run with the volume at `/data`.
    pub fn inspect_with(&self, script: &str) -> String {
        self.run_script(script, ":ro")
    }

    fn run_script(&self, script: &str, mount_opts: &str) -> String {
        busybox_image();
        let mount = format!("{}:{DATA}{mount_opts}", self.name);
        docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mount,
            BUSYBOX_IMAGE,
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ])
    }

    /// Ids of cbsnap helper containers still mounting this volume.
    pub fn helper_containers(&self) -> Vec<String> {
        let filter = format!("label=cbsnap.volume={}", self.name);
        docker(&["ps", "-aq", "--filter", &filter])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        // Helpers a failed test left behind would keep the volume alive.
        for id in self.helper_containers() {
            docker_quiet(&["rm", "-f", &id]);
        }
        docker_quiet(&["volume", "rm", "-f", &self.name]);
    }
}

/// A busybox container, removed (forcibly) on drop.
pub struct TestContainer {
    pub id: String,
    pub name: String,
}

impl TestContainer {
    /// Starts a container running `script` with `volume` at `/data`.
    pub fn run(volume: &str, labels: &[(&str, &str)], script: &str) -> TestContainer {
        TestContainer::with_mounts(&[&format!("{volume}:{DATA}")], labels, script)
    }

    /// Starts a container running `script` with these `-v` mounts (`VOLUME:/dest`,
    /// or a bind mount `/host/dir:/dest`).
    pub fn with_mounts(mounts: &[&str], labels: &[(&str, &str)], script: &str) -> TestContainer {
        busybox_image();
        let name = unique("cbsnap-test-c");
        let mut args: Vec<String> = ["run", "-d", "--network", "none", "--stop-timeout", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--name".to_string(), name.clone()]);
        for m in mounts {
            args.extend(["-v".to_string(), m.to_string()]);
        }
        for (k, v) in labels {
            args.push("--label".to_string());
            args.push(format!("{k}={v}"));
        }
        args.extend(
            [BUSYBOX_IMAGE, "/bin/busybox", "sh", "-c", script]
                .iter()
                .map(|s| s.to_string()),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&args);
        TestContainer { id, name }
    }

    /// A container that keeps appending to `/data/log`.
    pub fn writer(volume: &str, labels: &[(&str, &str)]) -> TestContainer {
        TestContainer::run(volume, labels, WRITER_SCRIPT)
    }

    /// `running`, `paused`, `exited`, ….
    pub fn state(&self) -> String {
        docker(&["inspect", "-f", "{{.State.Status}}", &self.id])
    }

    /// Waits up to `timeout` for the state; returns the last state seen.
    pub fn wait_for(&self, want: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let state = self.state();
            if state == want || start.elapsed() > timeout {
                return state;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        docker_quiet(&["rm", "-f", &self.id]);
    }
}

/// A fresh path for a quiesce state file, in a temp dir that lives as long as
/// the returned guard.
pub fn state_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("locks").join("quiesced.json");
    (dir, path)
}

/// Does the state file list this container?
pub fn state_file_lists(path: &Path, id: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(id))
}

/// What a tar entry says, comparable across a round trip.
#[derive(Debug, PartialEq, Eq)]
pub struct Item {
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Raw entry names in order, and the entries by volume-relative path.
pub fn parse_tar(reader: impl Read) -> (Vec<String>, BTreeMap<String, Item>) {
    let mut archive = tar::Archive::new(reader);
    let mut names = Vec::new();
    let mut items = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let raw = entry.path().unwrap().into_owned();
        names.push(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
        let rel = volume_entry_path(&raw)
            .unwrap_or_else(|| panic!("entry {raw:?} lacks the ./ prefix"))
            .to_string_lossy()
            .into_owned();
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            other => panic!("unexpected entry type {other:?} for {raw:?}"),
        };
        let mode = header.mode().unwrap() & 0o7777;
        let uid = header.uid().unwrap();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        items.insert(
            rel,
            Item {
                kind,
                mode,
                uid,
                link,
                data,
            },
        );
    }
    (names, items)
}

/// A deterministic, incompressible-looking payload.
pub fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A volume named `name` bound to the host directory `device` (`--opt type=none
/// --opt o=bind`: its data lives there, not at its mountpoint), with these labels;
/// removed on drop.
pub fn bound_volume(name: &str, device: &Path, labels: &[(&str, &str)]) -> TestVolume {
    let device = format!("device={}", device.display());
    let mut args = vec!["volume", "create", "--driver", "local"];
    args.extend(["--opt", "type=none", "--opt", "o=bind", "--opt", &device]);
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for l in &labels {
        args.extend(["--label", l]);
    }
    args.push(name);
    docker(&args);
    TestVolume::adopt(name)
}

/// A volume of compose project `project` (`<project>_<short>`), removed on drop.
pub fn project_volume(project: &str, short: &str) -> TestVolume {
    let name = format!("{project}_{short}");
    let label = format!("com.docker.compose.project={project}");
    docker(&[
        "volume",
        "create",
        "--label",
        &label,
        "--label",
        "cbsnap.test=1",
        &name,
    ]);
    TestVolume::adopt(&name)
}

pub fn mountpoint(volume: &str) -> std::path::PathBuf {
    docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).into()
}

/// Copy a directory's contents into a volume, as root, keeping everything.
pub fn fill_volume(volume: &str, src: &std::path::Path) {
    let mp = mountpoint(volume);
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(&mp)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A Unix-socket proxy in front of the real engine that runs `before` once, just
/// before it forwards the first request whose head contains `marker` (for
/// example `/containers/create`). It makes a race with the code under test happen
/// every time, at the point the test names, instead of by luck of timing.
///
/// Point cbsnap at it with `DOCKER_HOST=`[`EngineProxy::host`]. Each connection is
/// forwarded byte for byte to `/var/run/docker.sock`, on two threads; a request
/// head is found within one read, which holds for the small heads bollard writes.
pub struct EngineProxy {
    dir: tempfile::TempDir,
    fired: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl EngineProxy {
    /// Starts the proxy; `before` returns a note of what it did, kept for [`EngineProxy::fired`].
    pub fn new(
        marker: &'static str,
        before: impl Fn() -> String + Send + Sync + 'static,
    ) -> EngineProxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().expect("temp dir");
        let listener =
            UnixListener::bind(dir.path().join("docker.sock")).expect("bind the proxy socket");
        let fired: Arc<Mutex<Option<String>>> = Arc::default();
        let before = Arc::new(before);
        let state = fired.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    return;
                };
                let (before, state) = (before.clone(), state.clone());
                super::servers::pipe(
                    client.try_clone().unwrap(),
                    engine.try_clone().unwrap(),
                    move |piece| {
                        if piece.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                            let mut state = state.lock().unwrap();
                            if state.is_none() {
                                *state = Some(before());
                            }
                        }
                    },
                );
                super::servers::pipe(engine, client, |_| {});
            }
        });
        EngineProxy { dir, fired }
    }

    /// The value for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// What `before` returned, if a request with the marker came through.
    pub fn fired(&self) -> Option<String> {
        self.fired.lock().unwrap().clone()
    }
}
