//! Where a passphrase comes from, without a terminal: the environment variables
//! `<PREFIX>` (the passphrase itself), `<PREFIX>_FILE` (a file holding it) and
//! `<PREFIX>_COMMAND` (a command printing it, run with `sh -c`), in that order, as
//! restic's `RESTIC_PASSWORD*`. The prefix is `CBSNAP_PASSWORD` for the repository's
//! passphrase and `CBSNAP_NEW_PASSWORD` for the new one of `key add` and `key passwd`.
//! The terminal prompt is the CLI's (it prints); the library only asks a
//! [`PassphraseSource`].

use std::path::PathBuf;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::CryptoError;

/// The prefix of the repository passphrase's variables.
pub const PASSWORD: &str = "CBSNAP_PASSWORD";
/// The prefix of the new passphrase's variables (`key add`, `key passwd`).
pub const NEW_PASSWORD: &str = "CBSNAP_NEW_PASSWORD";

/// Gives the passphrase of an encrypted repository. Asked only when the repository is
/// encrypted, at most once per open.
pub trait PassphraseSource {
    /// The passphrase.
    ///
    /// Errors: [`CryptoError::NoPassphrase`] when there is none, or why it could not
    /// be read.
    fn passphrase(&self) -> Result<Zeroizing<String>, CryptoError>;
}

/// The `CBSNAP_PASSWORD*` variables only: [`CryptoError::NoPassphrase`] when none is
/// set.
pub struct FromEnv;

impl PassphraseSource for FromEnv {
    fn passphrase(&self) -> Result<Zeroizing<String>, CryptoError> {
        from_env(PASSWORD)?.ok_or(CryptoError::NoPassphrase)
    }
}

/// A fixed passphrase (tests, and library callers that hold one).
pub struct Given(pub Zeroizing<String>);

impl PassphraseSource for Given {
    fn passphrase(&self) -> Result<Zeroizing<String>, CryptoError> {
        Ok(self.0.clone())
    }
}

/// The passphrase from `<prefix>`, `<prefix>_FILE` or `<prefix>_COMMAND` (the first
/// that is set and not empty), or `None` when none is set. One trailing newline
/// (`\n` or `\r\n`) of a file or a command's output is not part of it.
///
/// Errors: [`CryptoError::PassphraseFile`], [`CryptoError::PassphraseCommand`],
/// [`CryptoError::EmptyPassphrase`].
pub fn from_env(prefix: &str) -> Result<Option<Zeroizing<String>>, CryptoError> {
    let var =
        |suffix: &str| std::env::var_os(format!("{prefix}{suffix}")).filter(|v| !v.is_empty());
    if let Some(v) = var("") {
        let s = Zeroizing::new(v.to_string_lossy().into_owned());
        return Ok(Some(s));
    }
    if let Some(path) = var("_FILE") {
        let path = PathBuf::from(path);
        let bytes =
            Zeroizing::new(
                std::fs::read(&path).map_err(|source| CryptoError::PassphraseFile {
                    path: path.clone(),
                    source,
                })?,
            );
        return nonempty(&bytes, format!("{prefix}_FILE ({})", path.display())).map(Some);
    }
    if let Some(cmd) = var("_COMMAND") {
        let command = cmd.to_string_lossy().into_owned();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| CryptoError::PassphraseCommand {
                command: command.clone(),
                why: format!("could not be started: {e}"),
            })?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(CryptoError::PassphraseCommand {
                command,
                why: format!(
                    "failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        return nonempty(&stdout, format!("{prefix}_COMMAND")).map(Some);
    }
    Ok(None)
}

/// `bytes` without one trailing newline, as a string; empty is an error.
fn nonempty(bytes: &[u8], from: String) -> Result<Zeroizing<String>, CryptoError> {
    let b = bytes
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(bytes);
    if b.is_empty() {
        return Err(CryptoError::EmptyPassphrase(from));
    }
    Ok(Zeroizing::new(String::from_utf8_lossy(b).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(*nonempty(b"pw\n", "t".into()).unwrap(), "pw");
        assert_eq!(*nonempty(b"pw\r\n", "t".into()).unwrap(), "pw");
        assert_eq!(*nonempty(b"pw\n\n", "t".into()).unwrap(), "pw\n");
        assert!(matches!(
            nonempty(b"\n", "t".into()),
            Err(CryptoError::EmptyPassphrase(_))
        ));
    }
}
