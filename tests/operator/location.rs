//! Repository locations (issue 10): a scheme cbsnap does not know is an error naming
//! the forms it takes, never a local folder, whether it comes from `--repo`,
//! `CBSNAP_REPO` or the config file's `repo`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{stderr, BIN};

/// Every file and directory under `dir`, relative.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// `cbsnap` run in an empty working directory `cwd`, with no configuration but `config`.
fn cbsnap_in(cwd: &Path, config_home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("CBSNAP_REPO")
        .env("XDG_CONFIG_HOME", config_home)
        .env("HOME", config_home)
        // A remote location must not reach a real server from this test.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    c
}

fn assert_refused(o: &std::process::Output, what: &str, cwd: &Path) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: exit code; stderr: {err}");
    assert!(
        err.contains("s3://bucket/prefix") && err.contains("sftp://"),
        "{what}: the error names the forms cbsnap knows: {err}"
    );
    assert_eq!(
        entries(cwd),
        Vec::<String>::new(),
        "{what}: nothing may be created in the working directory"
    );
}

#[test]
fn unknown_scheme_in_repo_flag_env_or_config_is_an_error_not_a_folder() {
    let t = tempfile::tempdir().unwrap();
    let cwd = t.path().join("cwd");
    let conf = t.path().join("conf");
    fs::create_dir_all(&cwd).unwrap();
    fs::create_dir_all(conf.join("cbsnap")).unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();

    for loc in [
        "b2://bucket/x",
        "s3:bucket/x",
        "backup.example.com:/srv/repo",
    ] {
        for args in [
            vec!["init"],
            vec!["snapshot", "--path", src.to_str().unwrap(), "--name", "d"],
        ] {
            let o = cbsnap_in(&cwd, &conf)
                .arg("--repo")
                .arg(loc)
                .args(&args)
                .output()
                .unwrap();
            assert_refused(&o, &format!("--repo {loc} {args:?}"), &cwd);

            let o = cbsnap_in(&cwd, &conf)
                .env("CBSNAP_REPO", loc)
                .args(&args)
                .output()
                .unwrap();
            assert_refused(&o, &format!("CBSNAP_REPO={loc} {args:?}"), &cwd);

            fs::write(
                conf.join("cbsnap/config.toml"),
                format!("repo = \"{loc}\"\n"),
            )
            .unwrap();
            let o = cbsnap_in(&cwd, &conf).args(&args).output().unwrap();
            fs::remove_file(conf.join("cbsnap/config.toml")).unwrap();
            assert_refused(&o, &format!("config repo = {loc} {args:?}"), &cwd);
        }
    }
}

/// `s3://` is a known scheme: with no server answering it fails, and it never falls
/// back to a local folder named `s3:` (what `--repo s3://bucket/x init` used to make).
#[test]
fn s3_location_never_becomes_a_local_folder() {
    let t = tempfile::tempdir().unwrap();
    let cwd = t.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let o = cbsnap_in(&cwd, t.path())
        .args(["--repo", "s3://bucket/x", "init"])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "init on an unreachable S3 endpoint fails"
    );
    assert_eq!(entries(&cwd), Vec::<String>::new(), "{}", stderr(&o));
}

/// A local directory whose name holds a ':' stays reachable as `./name`.
#[test]
fn a_colon_in_a_local_name_is_written_with_dot_slash() {
    let t = tempfile::tempdir().unwrap();
    let cwd = t.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let o = cbsnap_in(&cwd, t.path())
        .args(["--repo", "./a:b", "init"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cwd.join("a:b/config").is_file());
}
