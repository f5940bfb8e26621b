//! Running a command inside a container through the exec API: the
//! application hooks (`cbsnap.exec-pre` / `cbsnap.exec-post` labels) that make
//! a snapshot application-consistent (a `sqlite3 .backup`, a Qdrant snapshot
//! call, a flush) before a volume is read.
//!
//! The command is run as `/bin/sh -c COMMAND`, as `docker exec` users write it,
//! and waited for; its combined output is kept (the last [`OUTPUT_KEEP`] bytes)
//! for the error message when it fails.

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;

use super::{DockerError, Engine};

/// How many bytes of a hook's output are kept for its error message.
pub const OUTPUT_KEEP: usize = 2048;

/// What a command run in a container did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (`-1` when Docker did not report one).
    pub exit_code: i64,
    /// The end of its stdout and stderr, interleaved, lossily decoded.
    pub output: String,
}

impl Engine {
    /// Runs `/bin/sh -c command` in the running container `container` (id or
    /// name) and waits for it, at most `limit`. A command that runs and fails is an
    /// `Ok` with a non-zero `exit_code`; an `Err` means Docker could not run it at
    /// all (the container is not running, has no `/bin/sh`, …), or
    /// [`DockerError::ExecTimeout`] when it did not end within `limit`: the exec API
    /// cannot stop it, so it may still run in the container.
    pub fn exec(
        &self,
        container: &str,
        command: &str,
        limit: std::time::Duration,
    ) -> Result<ExecOutput, DockerError> {
        let action = format!("running `{command}` in container {container}");
        // A hook may take long (a database dump): the long timeout of uploads, and
        // `limit` over the whole of it, so that a hook that hangs cannot hold the
        // run (and the repository's lock) for the uploads' days.
        let docker = self.upload_client();
        let run = async {
            let created = docker
                .create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(vec!["/bin/sh", "-c", command]),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.err(action.clone(), e))?;
            let mut out: Vec<u8> = Vec::new();
            match docker
                .start_exec(&created.id, None)
                .await
                .map_err(|e| self.err(action.clone(), e))?
            {
                StartExecResults::Attached { mut output, .. } => {
                    while let Some(chunk) = output.next().await {
                        let chunk = chunk.map_err(|e| self.err(action.clone(), e))?;
                        out.extend_from_slice(&chunk.into_bytes());
                        if out.len() > 2 * OUTPUT_KEEP {
                            out.drain(..out.len() - OUTPUT_KEEP);
                        }
                    }
                }
                StartExecResults::Detached => {}
            }
            let inspect = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| self.err(action.clone(), e))?;
            if out.len() > OUTPUT_KEEP {
                out.drain(..out.len() - OUTPUT_KEEP);
            }
            Ok(ExecOutput {
                exit_code: inspect.exit_code.unwrap_or(-1),
                output: String::from_utf8_lossy(&out).trim().to_string(),
            })
        };
        self.block_on(async {
            match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => Err(DockerError::ExecTimeout {
                    container: container.to_string(),
                    command: command.to_string(),
                    secs: limit.as_secs(),
                }),
            }
        })
    }
}
