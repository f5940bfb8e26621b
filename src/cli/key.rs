//! `cbsnap key add|list|remove|passwd`; passphrases come from [`Prompt`].

use std::path::PathBuf;

use cbsnap::run::key as manage;

use super::prompt::Prompt;
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

/// Run one `key` command.
pub fn run(ctx: &Ctx, cmd: KeyCmd) -> anyhow::Result<()> {
    let root = &ctx.repo_path;
    match cmd {
        KeyCmd::List => {
            let keys = manage::list(root)?;
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
