//! The command line: the global flags and the command list (clap), and parsing with
//! close-spelling suggestions for a mistyped command.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use super::{key, list, maint, mount, restore, shell, snapshot};

#[derive(Parser, Debug)]
#[command(
    name = "cbsnap",
    version,
    about = "Deduplicating snapshots of Docker volumes and host directories",
    long_about = "Deduplicating snapshots of Docker volumes and host directories.\n\nExit codes: 0 ok, 1 error, 2 usage error, 3 snapshot committed but some entries could not be read or not stored exactly (see its `errors`), 4 wrong or no passphrase for an encrypted repository."
)]
pub struct Cli {
    /// Repository: a path, s3://bucket/prefix or sftp://[user@]host[:port]/path [default: config file `repo`, else ~/.local/share/cbsnap/repo]
    #[arg(long, global = true, env = "CBSNAP_REPO", value_name = "LOCATION")]
    pub repo: Option<String>,
    /// Configuration file [default: ~/.config/cbsnap/config.toml, else /etc/cbsnap/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable output
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress display and no informational output
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(InitArgs),
    /// Manage the passphrases of an encrypted repository
    Key {
        #[command(subcommand)]
        cmd: key::KeyCmd,
    },
    /// Take snapshots of directories or tar streams
    Snapshot(snapshot::Args),
    /// List snapshots
    Snapshots(list::SnapshotsArgs),
    /// Restore a snapshot into a directory
    Restore(restore::Args),
    /// List the files of a snapshot
    Ls(list::LsArgs),
    /// Write a snapshot (or a path in it) as a tar stream to stdout (sockets, which tar
    /// cannot carry, are named and left out)
    Dump(restore::DumpArgs),
    /// Browse every snapshot in a read-only FUSE mount, until unmounted
    Mount(mount::Args),
    /// Resume containers an interrupted cbsnap left paused or stopped
    Recover,
    /// Index maintenance
    Index {
        #[command(subcommand)]
        cmd: IndexCmd,
    },
    #[command(flatten)]
    Maint(maint::Command),
    /// Print the shell completion script (bash, zsh, fish, …)
    Completions(shell::CompletionsArgs),
    /// Print the man page, or write every man page into a directory
    Man(shell::ManArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Encrypt the repository (passphrase from CBSNAP_PASSWORD, CBSNAP_PASSWORD_FILE,
    /// CBSNAP_PASSWORD_COMMAND or a prompt) [default: off for a path, on for s3:// and sftp://]
    #[arg(long, value_name = "on|off")]
    pub encryption: Option<OnOff>,
}

/// `on` or `off`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum IndexCmd {
    /// Delete the index and recreate it from the pack files
    Rebuild,
}

/// The whole command tree, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parse the arguments; on an unknown command, suggest only a close spelling (or
/// the command people mean by a common other word), never a far-fetched one.
pub fn parse() -> Cli {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let e = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    let typed = match (e.kind(), e.get(ContextKind::InvalidSubcommand)) {
        (ErrorKind::InvalidSubcommand, Some(ContextValue::String(s))) => s.clone(),
        _ => e.exit(),
    };
    let cmd = Cli::command();
    let names: Vec<&str> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name())
        .collect();
    let mut err = clap::Error::new(ErrorKind::InvalidSubcommand).with_cmd(&cmd);
    err.insert(
        ContextKind::InvalidSubcommand,
        ContextValue::String(typed.clone()),
    );
    if let Some(s) = shell::suggest(&typed, &names) {
        err.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::String(s.to_string()),
        );
    }
    if let Some(hint) = shell::synonym(&typed) {
        err.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![hint.into()]),
        );
    }
    if let Some(usage) = e.get(ContextKind::Usage) {
        err.insert(ContextKind::Usage, usage.clone());
    }
    err.exit()
}
