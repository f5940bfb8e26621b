//! The passphrase of an encrypted repository: from the environment or a file, else
//! typed at the terminal without echo (every command that opens one, and `key`).

use std::io::IsTerminal;
use std::path::PathBuf;

use cbsnap::crypto::passphrase::{self, PassphraseSource};
use cbsnap::crypto::CryptoError;
use zeroize::Zeroizing;

/// A passphrase from the environment (`CBSNAP_PASSWORD*`, or `CBSNAP_NEW_PASSWORD*`
/// for a new one), else typed at a prompt when stdin is a terminal; never echoed.
pub struct Prompt {
    prefix: &'static str,
    file: Option<PathBuf>,
    new: bool,
}

impl Prompt {
    /// The repository's passphrase.
    pub fn current() -> Prompt {
        Prompt {
            prefix: passphrase::PASSWORD,
            file: None,
            new: false,
        }
    }

    /// A new passphrase: `--new-password-file`, else `CBSNAP_NEW_PASSWORD*`, else
    /// typed twice.
    pub fn new_one(file: Option<PathBuf>) -> Prompt {
        Prompt {
            prefix: passphrase::NEW_PASSWORD,
            file,
            new: true,
        }
    }

    /// The first passphrase of a new repository: `CBSNAP_PASSWORD*` (so that the next
    /// commands find it where they look), else typed twice.
    pub fn for_init() -> Prompt {
        Prompt {
            prefix: passphrase::PASSWORD,
            file: None,
            new: true,
        }
    }
}

impl PassphraseSource for Prompt {
    fn passphrase(&self) -> Result<Zeroizing<String>, CryptoError> {
        if let Some(f) = &self.file {
            let bytes = std::fs::read(f).map_err(|source| CryptoError::PassphraseFile {
                path: f.clone(),
                source,
            })?;
            let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
            let p = text.strip_suffix('\n').unwrap_or(&text);
            if p.is_empty() {
                return Err(CryptoError::EmptyPassphrase(f.display().to_string()));
            }
            return Ok(Zeroizing::new(p.to_string()));
        }
        if let Some(p) = passphrase::from_env(self.prefix)? {
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            return Err(if self.prefix == passphrase::NEW_PASSWORD {
                CryptoError::NoNewPassphrase
            } else {
                CryptoError::NoPassphrase
            });
        }
        let ask = |what: &str| {
            rpassword::prompt_password(what)
                .map(Zeroizing::new)
                .map_err(CryptoError::Prompt)
        };
        if !self.new {
            return ask("passphrase for the repository: ");
        }
        let first = ask("new passphrase: ")?;
        if first.is_empty() {
            return Err(CryptoError::EmptyPassphrase("the prompt".into()));
        }
        let again = ask("the new passphrase again: ")?;
        if *first != *again {
            return Err(CryptoError::Mismatch);
        }
        Ok(first)
    }
}
