//! Hooks: commands run around a snapshot so it is application-consistent.
//!
//! Host side, from the config file (`[hooks]`): `pre`/`post` once per run, and per
//! host path (`[hooks.path."~/.ollama"]`). Container side, from labels:
//! `cbsnap.exec-pre` / `cbsnap.exec-post` run inside the container through the
//! Docker exec API ([`crate::docker::Engine::exec`]) before and after its volumes are
//! read. A failing `pre` skips what it guards; the matching `post` always runs.
//! Commands run under `/bin/sh -c`, with `CBSNAP_RUN_ID`, `CBSNAP_SOURCE` and
//! `CBSNAP_PATH` in the environment of host hooks.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::docker::{ContainerInfo, DockerError, Engine};

/// The container label whose command runs in the container before its volume is read.
pub const EXEC_PRE_LABEL: &str = "cbsnap.exec-pre";
/// The container label whose command runs in the container after its volume is read.
pub const EXEC_POST_LABEL: &str = "cbsnap.exec-post";
/// The container label with how long its hooks may run: seconds, or a number with
/// `s`, `m` or `h` ([`DEFAULT_EXEC_TIMEOUT`] without it).
pub const EXEC_TIMEOUT_LABEL: &str = "cbsnap.exec-timeout";
/// How long a container hook may run when its container does not say: long enough
/// for a database dump, short enough that a hung hook does not hold the nightly run
/// (and the repository's lock) until morning.
pub const DEFAULT_EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// How many bytes of a host hook's output are kept for its error message.
const OUTPUT_KEEP: usize = 2048;

/// `[hooks]` of the config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run on the host before a `snapshot --all` run; if it fails, nothing is read.
    pub pre: Option<String>,
    /// Run on the host after the run, whatever happened.
    pub post: Option<String>,
    /// Per host path (as written in `paths`, `~` allowed): `pre`/`post` around it.
    #[serde(default)]
    pub path: BTreeMap<String, PathHooks>,
}

/// `[hooks.path."…"]`: commands around one host path.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathHooks {
    /// Run before the path is read; if it fails the path is skipped (exit 3).
    pub pre: Option<String>,
    /// Run after the path was read, or after its `pre` failed.
    pub post: Option<String>,
}

/// A hook that failed. `which` is `pre` or `post`.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A host hook could not be started.
    #[error("the {which} hook `{command}` could not be started: {source}")]
    Spawn {
        which: &'static str,
        command: String,
        source: std::io::Error,
    },
    /// A host hook ran and failed.
    #[error("the {which} hook `{command}` failed ({status}){}", output_suffix(.output))]
    Failed {
        which: &'static str,
        command: String,
        status: String,
        output: String,
    },
    /// A container hook ran and exited non-zero.
    #[error("the {which} hook `{command}` of container {container} failed (exit code {code}){}", output_suffix(.output))]
    ContainerFailed {
        which: &'static str,
        container: String,
        command: String,
        code: i64,
        output: String,
    },
    /// A container's `cbsnap.exec-timeout` label is not a number of seconds.
    #[error("container {container}: the label cbsnap.exec-timeout={value:?} is not a time such as 900, 900s, 15m or 2h; its hooks did not run")]
    BadTimeout { container: String, value: String },
    /// Docker could not run a container hook, or it did not end in time.
    #[error("the {which} hook `{command}` of container {container} could not run: {source}")]
    ContainerExec {
        which: &'static str,
        container: String,
        command: String,
        source: Box<DockerError>,
    },
}

fn output_suffix(o: &str) -> String {
    if o.is_empty() {
        String::new()
    } else {
        format!(": {o}")
    }
}

/// Runs `command` on the host under `/bin/sh -c` with `env` added, and waits.
pub fn run_host(which: &'static str, command: &str, env: &[(&str, &str)]) -> Result<(), HookError> {
    // The hook's stdout and stderr go to one anonymous temp file, not pipes: a hook
    // that starts something in the background (`indexer &`) leaves that process
    // holding its output, and reading a pipe to its end would wait for it. The run
    // waits for the hook's own shell only.
    let spawn_err = |source| HookError::Spawn {
        which,
        command: command.to_string(),
        source,
    };
    let mut log = tempfile::tempfile().map_err(spawn_err)?;
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(spawn_err)?)
        .stderr(log.try_clone().map_err(spawn_err)?)
        .status()
        .map_err(spawn_err)?;
    let mut out = Vec::new();
    let _ = log.seek(std::io::SeekFrom::Start(0));
    let _ = log.read_to_end(&mut out);
    if status.success() {
        return Ok(());
    }
    let start = out.len().saturating_sub(OUTPUT_KEEP);
    Err(HookError::Failed {
        which,
        command: command.to_string(),
        status: status.to_string(),
        output: String::from_utf8_lossy(&out[start..]).trim().to_string(),
    })
}

/// A `cbsnap.exec-timeout` value: seconds (`900`), or a number with `s`, `m` or `h`
/// (`900s`, `15m`, `2h`). `None` for anything else, zero included.
fn parse_timeout(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    let (n, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    let secs = n.parse::<u64>().ok()?.checked_mul(scale)?;
    (secs > 0).then(|| std::time::Duration::from_secs(secs))
}

/// Runs the `label` hook (`cbsnap.exec-pre` or `cbsnap.exec-post`) of every running
/// container in `containers` that has one, in order. With `stop_at_first`, the
/// first failure ends it (a pre-hook); otherwise every hook runs and all failures
/// are returned (post-hooks always run).
pub fn run_in_containers(
    engine: &Engine,
    containers: &[ContainerInfo],
    label: &str,
    stop_at_first: bool,
) -> Vec<HookError> {
    let which = if label == EXEC_PRE_LABEL {
        "pre"
    } else {
        "post"
    };
    let mut errors = Vec::new();
    for c in containers {
        let Some(command) = c.labels.get(label) else {
            continue;
        };
        let limit = match c.labels.get(EXEC_TIMEOUT_LABEL) {
            None => Ok(DEFAULT_EXEC_TIMEOUT),
            Some(v) => parse_timeout(v).ok_or_else(|| HookError::BadTimeout {
                container: c.name.clone(),
                value: v.clone(),
            }),
        };
        let r = match limit {
            Ok(limit) => engine.exec(&c.id, command, limit),
            Err(e) => {
                errors.push(e);
                if stop_at_first {
                    break;
                }
                continue;
            }
        };
        let e = match r {
            Ok(o) if o.exit_code == 0 => continue,
            Ok(o) => HookError::ContainerFailed {
                which,
                container: c.name.clone(),
                command: command.clone(),
                code: o.exit_code,
                output: o.output,
            },
            Err(source) => HookError::ContainerExec {
                which,
                container: c.name.clone(),
                command: command.clone(),
                source: Box::new(source),
            },
        };
        errors.push(e);
        if stop_at_first {
            break;
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_timeouts_are_seconds_or_a_number_with_a_unit() {
        let secs = |v| parse_timeout(v).map(|d| d.as_secs());
        assert_eq!(secs("900"), Some(900));
        assert_eq!(secs("900s"), Some(900));
        assert_eq!(secs(" 15m "), Some(900));
        assert_eq!(secs("2h"), Some(7200));
        for bad in ["", "0", "-1", "soon", "15 min", "1.5h", "m"] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_host_hook_that_fails_reports_its_status_and_output() {
        assert!(run_host(
            "pre",
            "test \"$CBSNAP_SOURCE\" = x",
            &[("CBSNAP_SOURCE", "x")]
        )
        .is_ok());
        let e = run_host("pre", "echo disk busy >&2; exit 7", &[]).unwrap_err();
        assert!(matches!(e, HookError::Failed { which: "pre", .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("exit status: 7") && msg.contains("disk busy"),
            "{msg}"
        );
    }

    /// A hook that leaves a process running in the background (holding the hook's
    /// stdout) must not hold the run until that process ends: when `run_host`
    /// returns, the background process has not finished yet.
    #[test]
    fn a_host_hook_that_starts_a_background_process_does_not_hold_the_run() {
        let d = tempfile::tempdir().unwrap();
        let done = d.path().join("background-done");
        let cmd = format!("echo started; (sleep 10; touch '{}') &", done.display());
        run_host("post", &cmd, &[]).unwrap();
        assert!(
            !done.exists(),
            "run_host waited for the hook's background process"
        );
    }
}
