//! The set-up scripts as an operator runs them: `scripts/install.sh` (binary,
//! completions, man pages, timer or cron line), `scripts/docker-start.sh` (starting
//! an installed but stopped engine the way the machine starts services) and
//! `scripts/backup.sh` (the README's main command: never rebuilds once installed, and
//! saves the host paths when the compose project has no volumes).
//!
//! Commands the scripts must or must not run (`systemctl`, `service`, `cargo`,
//! `docker`) are replaced by recording stubs on PATH where the real one would touch
//! the machine.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{stderr, BIN};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// A stub command in `bin` that appends its arguments to `log` and runs `body`.
fn stub(bin: &Path, name: &str, log: &Path, body: &str) {
    fs::create_dir_all(bin).unwrap();
    let p = bin.join(name);
    fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

fn log_of(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}

fn run_ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    o
}

#[test]
fn install_puts_binary_completions_man_pages_and_the_nightly_run_in_place() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("log");
    let bin = t.path().join("stubs");
    // cargo must not run when a binary is given; systemctl is only looked for.
    stub(&bin, "cargo", &log, "exit 97");
    stub(&bin, "systemctl", &log, "exit 0");
    let with_systemd = t.path().join("run-systemd");
    fs::create_dir(&with_systemd).unwrap();

    let dest = t.path().join("root-systemd");
    run_ok(
        Command::new(script("install.sh"))
            .env("PATH", path_with(&bin))
            .env("CBSNAP_BIN", BIN)
            .env("CBSNAP_DESTDIR", &dest)
            .env("CBSNAP_SYSTEMD_DIR", &with_systemd)
            .env("CBSNAP_REPO", "/srv/backup/cbsnap"),
    );
    for f in [
        "usr/local/bin/cbsnap",
        "usr/share/bash-completion/completions/cbsnap",
        "usr/share/zsh/vendor-completions/_cbsnap",
        "usr/share/fish/vendor_completions.d/cbsnap.fish",
        "usr/local/share/man/man1/cbsnap.1",
        "usr/local/share/man/man1/cbsnap-snapshot.1",
        "etc/systemd/system/cbsnap.service",
        "etc/systemd/system/cbsnap.timer",
    ] {
        let md = fs::metadata(dest.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(md.len() > 0, "{f} is empty");
    }
    assert!(!dest.join("etc/cron.d/cbsnap").exists());
    let service = fs::read_to_string(dest.join("etc/systemd/system/cbsnap.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/cbsnap -q snapshot --all"));
    assert!(service.contains("EnvironmentFile=-/etc/default/cbsnap"));
    let default = fs::read_to_string(dest.join("etc/default/cbsnap")).unwrap();
    assert!(
        default.contains("\nCBSNAP_REPO=/srv/backup/cbsnap\n"),
        "{default}"
    );
    let installed = dest.join("usr/local/bin/cbsnap");
    run_ok(Command::new(&installed).arg("--version"));
    let l = log_of(&log);
    assert!(
        !l.contains("cargo"),
        "install with CBSNAP_BIN must not build: {l}"
    );
    assert!(
        !l.contains("systemctl daemon-reload"),
        "a DESTDIR install starts nothing: {l}"
    );

    // No systemd: the cron line.
    let dest = t.path().join("root-cron");
    run_ok(
        Command::new(script("install.sh"))
            .env("PATH", path_with(&bin))
            .env("CBSNAP_BIN", BIN)
            .env("CBSNAP_DESTDIR", &dest)
            .env("CBSNAP_SYSTEMD_DIR", t.path().join("no-systemd"))
            .env_remove("CBSNAP_REPO"),
    );
    let cron = fs::read_to_string(dest.join("etc/cron.d/cbsnap")).unwrap();
    assert!(
        cron.contains("root  set -a; [ -r /etc/default/cbsnap ] && . /etc/default/cbsnap; /usr/local/bin/cbsnap -q snapshot --all"),
        "{cron}"
    );
    assert!(!dest.join("etc/systemd/system/cbsnap.timer").exists());
    let default = fs::read_to_string(dest.join("etc/default/cbsnap")).unwrap();
    assert!(default.contains("#CBSNAP_REPO="), "{default}");
}

/// A `docker` stub whose `info` fails until the service stub created `started`.
fn docker_stubs(t: &Path) -> (PathBuf, PathBuf) {
    let bin = t.join("stubs");
    let log = t.join("log");
    let started = t.join("started");
    stub(
        &bin,
        "docker",
        &log,
        &format!("[ -e '{}' ]", started.display()),
    );
    let start = format!("touch '{}'", started.display());
    stub(&bin, "systemctl", &log, &start);
    stub(&bin, "service", &log, &start);
    (bin, log)
}

#[test]
fn docker_start_uses_the_machines_service_manager_or_says_what_to_run() {
    // systemd runs: systemctl.
    let t = tempfile::tempdir().unwrap();
    let (bin, log) = docker_stubs(t.path());
    let systemd = t.path().join("systemd");
    fs::create_dir(&systemd).unwrap();
    run_ok(
        Command::new(script("docker-start.sh"))
            .env("PATH", path_with(&bin))
            .env("CBSNAP_SYSTEMD_DIR", &systemd)
            .env("CBSNAP_INITD_DIR", t.path().join("no-initd")),
    );
    let l = log_of(&log);
    assert!(l.contains("systemctl start docker"), "{l}");
    assert!(!l.contains("service docker"), "{l}");

    // No systemd but an init script: service.
    let t = tempfile::tempdir().unwrap();
    let (bin, log) = docker_stubs(t.path());
    let initd = t.path().join("init.d");
    fs::create_dir(&initd).unwrap();
    fs::write(initd.join("docker"), "").unwrap();
    run_ok(
        Command::new(script("docker-start.sh"))
            .env("PATH", path_with(&bin))
            .env("CBSNAP_SYSTEMD_DIR", t.path().join("no-systemd"))
            .env("CBSNAP_INITD_DIR", &initd),
    );
    let l = log_of(&log);
    assert!(l.contains("service docker start"), "{l}");
    assert!(!l.contains("systemctl"), "{l}");

    // Neither: exit 1 and the exact command.
    let t = tempfile::tempdir().unwrap();
    let (bin, log) = docker_stubs(t.path());
    let o = Command::new(script("docker-start.sh"))
        .env("PATH", path_with(&bin))
        .env("CBSNAP_SYSTEMD_DIR", t.path().join("no-systemd"))
        .env("CBSNAP_INITD_DIR", t.path().join("no-initd"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("start it with: dockerd"),
        "{}",
        stderr(&o)
    );
    assert!(!log_of(&log).contains("start"), "{}", log_of(&log));
}

#[test]
fn docker_backup_script_does_not_rebuild_and_saves_host_paths_of_a_project_without_volumes() {
    // The real engine answers (docker-start.sh does nothing); the project has no volumes.
    let _engine = crate::util::docker::engine();
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("log");
    let bin = t.path().join("stubs");
    for tool in ["cargo", "apt-get", "rustc"] {
        stub(&bin, tool, &log, "exit 97");
    }
    // Installed already: CBSNAP_PREFIX/bin/cbsnap is the binary under test.
    let prefix = t.path().join("prefix");
    fs::create_dir_all(prefix.join("bin")).unwrap();
    std::os::unix::fs::symlink(BIN, prefix.join("bin/cbsnap")).unwrap();
    let ws = t.path().join("workspace");
    fs::create_dir(&ws).unwrap();
    fs::write(ws.join("notes"), "host path").unwrap();
    let config_home = t.path().join("config");
    fs::create_dir_all(config_home.join("cbsnap")).unwrap();
    let project = format!("cbsnap-test-novolumes-{}", std::process::id());
    fs::write(
        config_home.join("cbsnap/config.toml"),
        format!(
            "project = {project:?}\npaths = [{:?}]\n",
            ws.display().to_string()
        ),
    )
    .unwrap();
    let repo = t.path().join("repo");
    let backup = || {
        Command::new(script("backup.sh"))
            .env("PATH", path_with(&bin))
            .env("CBSNAP_PREFIX", &prefix)
            .env("CBSNAP_REPO", &repo)
            .env("XDG_CONFIG_HOME", &config_home)
            .output()
            .unwrap()
    };
    for night in 1..=2 {
        let o = backup();
        assert_eq!(
            o.status.code(),
            Some(0),
            "night {night}: stdout {}\nstderr {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        let e = stderr(&o);
        assert!(
            e.contains(&format!("com.docker.compose.project={project}")),
            "it says the project has no volumes: {e}"
        );
    }
    assert!(
        log_of(&log).is_empty(),
        "nothing was built: {}",
        log_of(&log)
    );
    let o = Command::new(BIN)
        .arg("--repo")
        .arg(&repo)
        .args(["--json", "snapshots"])
        .env("XDG_CONFIG_HOME", &config_home)
        .output()
        .unwrap();
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        snaps.iter().filter(|s| s["name"] == "workspace").count(),
        2,
        "{snaps:?}"
    );
}
