//! `cbsnap key add|list|remove|passwd`, and the terminal prompt for passphrases.

use std::io::IsTerminal;
use std::path::PathBuf;

use cbsnap::crypto::passphrase::{self, PassphraseSource};
use cbsnap::crypto::CryptoError;
use cbsnap::run::key as manage;
use zeroize::Zeroizing;

use super::{print_json, Ctx};

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a passphrase (the new one from CBSNAP_NEW_PASSWORD*, --new-password-file or a prompt)
    Add(NewArgs),
    /// List the key files (no passphrase needed)
    List,
    /// Remove a passphrase's key file; give another key's passphrase. The last key stays
    Remove {
        /// The key id, or a unique prefix of it (`cbsnap key list`)
        id: String,
    },
    /// Change the passphrase: add the new key, then remove the one the current passphrase opened
    Passwd(NewArgs),
}

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// Read the new passphrase from this file (one trailing newline is dropped)
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

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

/// Run one `key` command.
pub fn run(ctx: &Ctx, cmd: KeyCmd) -> anyhow::Result<()> {
    let storage = ctx.storage()?;
    let root = &storage;
    match cmd {
        KeyCmd::List => {
            let keys = manage::list(&**root)?;
            if ctx.json {
                print_json(&keys);
                return Ok(());
            }
            outln!(
                "{:<10} {:<26} {:<20} argon2id memory",
                "id",
                "created",
                "host"
            );
            for k in keys {
                outln!(
                    "{:<10} {:<26} {:<20} {} MiB",
                    &k.id[..8.min(k.id.len())],
                    k.created.get(..19).unwrap_or(&k.created),
                    k.host,
                    k.memory_kib / 1024
                );
            }
        }
        KeyCmd::Add(a) => {
            let id = manage::add(
                root,
                &Prompt::current(),
                &Prompt::new_one(a.new_password_file),
            )?;
            if ctx.json {
                print_json(&serde_json::json!({"added": id}));
            } else {
                ctx.say(&format!("added key {}", &id[..8]));
            }
        }
        KeyCmd::Remove { id } => {
            let id = manage::remove(root, &id, &Prompt::current())?;
            if ctx.json {
                print_json(&serde_json::json!({"removed": id}));
            } else {
                ctx.say(&format!("removed key {}", &id[..8]));
            }
        }
        KeyCmd::Passwd(a) => {
            let (added, removed) = manage::passwd(
                root,
                &Prompt::current(),
                &Prompt::new_one(a.new_password_file),
            )?;
            if ctx.json {
                print_json(&serde_json::json!({"added": added, "removed": removed}));
            } else {
                ctx.say(&format!(
                    "passphrase changed: added key {}, removed key {}",
                    &added[..8],
                    &removed[..8]
                ));
            }
        }
    }
    Ok(())
}
