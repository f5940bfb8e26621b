//! Command-line interface (clap). Each command lives in its own file and stays thin:
//! resolve the repository, call the engine, print a table or `--json`.

/// `println!` that never panics: a closed stdout (`cbsnap check | head -3`) drops the
/// rest of the output instead of ending the command with a panic (exit 101); the
/// command's own exit code still says how it went.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout(), $($arg)*);
    }};
}

mod check;
mod diff;
mod forget;
mod list;
mod maint;
mod mirror;
mod mount;
mod restore;
mod shell;
mod snapshot;
mod stats;

use std::path::{Path, PathBuf};

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use cbsnap::settings::Settings;
use cbsnap::Error;

/// Exit code when a command finished but some entries were not handled exactly: a
/// snapshot was committed without some files, or a restore left some entries out
/// or without some metadata. They are listed.
pub const EXIT_PARTIAL: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "cbsnap",
    version,
    about = "Deduplicating snapshots of Docker volumes and host directories",
    long_about = "Deduplicating snapshots of Docker volumes and host directories.\n\nExit codes: 0 ok, 1 error, 2 usage error, 3 snapshot committed but some files could not be read (see its `errors`)."
)]
pub struct Cli {
    /// Repository path [default: config file `repo`, else ~/.local/share/cbsnap/repo]
    #[arg(long, global = true, env = "CBSNAP_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,
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
    Init,
    /// Take snapshots of directories or tar streams
    Snapshot(snapshot::Args),
    /// List snapshots
    Snapshots(list::SnapshotsArgs),
    /// Restore a snapshot into a directory
    Restore(restore::Args),
    /// List the files of a snapshot
    Ls(list::LsArgs),
    /// Write a snapshot (or a path in it) as a tar stream to stdout
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

#[derive(Subcommand, Debug)]
pub enum IndexCmd {
    /// Delete the index and recreate it from the pack files
    Rebuild,
}

/// What every command needs: the parsed global flags and the configuration.
pub struct Ctx {
    pub settings: Settings,
    pub repo_path: PathBuf,
    pub json: bool,
    pub quiet: bool,
}

impl Ctx {
    /// Where the repository's files are: the backend for `--repo` / `CBSNAP_REPO` /
    /// the config's `repo`.
    pub fn storage(&self) -> Result<std::sync::Arc<dyn cbsnap::storage::Storage>, Error> {
        Ok(std::sync::Arc::new(cbsnap::storage::Local::new(
            &self.repo_path,
        )))
    }

    /// Open the repository, and resume containers an interrupted cbsnap left paused or
    /// stopped (issue 7, case 14): any command that opens the repository does it, not
    /// only the next snapshot of that volume.
    pub fn open(&self, access: cbsnap::repo::Access) -> Result<cbsnap::Repository, Error> {
        let repo = cbsnap::Repository::open_in(self.storage()?, access)?;
        if let Err(e) = self.recover_quiesced(&repo, false) {
            let _ = writeln!(
                std::io::stderr(),
                "cbsnap: warning: containers an interrupted cbsnap paused or stopped could not be resumed: {e}\nRun `cbsnap recover` once that is fixed (or `docker unpause`/`docker start` them)."
            );
        }
        Ok(repo)
    }

    /// Resume what `locks/quiesced.json` lists for dead processes. Unless `always`,
    /// Docker is asked only when the file lists such a container. Returns how many
    /// containers were resumed; prints each.
    pub fn recover_quiesced(
        &self,
        repo: &cbsnap::Repository,
        always: bool,
    ) -> Result<usize, Error> {
        let state = cbsnap::volume::snapshot::quiesce_state_file(&repo.root);
        if !always && !cbsnap::docker::pending_recovery(&state)? {
            return Ok(0);
        }
        let engine = cbsnap::docker::Engine::connect()?;
        let rec = engine.recover_quiesced(&state)?;
        for r in &rec.resumed {
            let _ = writeln!(
                std::io::stderr(),
                "cbsnap: resumed container {} left {} by an interrupted cbsnap (pid {} on {}, since {})",
                r.name,
                match r.action {
                    cbsnap::docker::QuiesceAction::Pause => "paused",
                    cbsnap::docker::QuiesceAction::Stop => "stopped",
                },
                r.pid,
                r.host,
                r.since
            );
        }
        Ok(rec.resumed.len())
    }

    /// Print informational text unless `--quiet` or `--json`.
    pub fn say(&self, s: &str) {
        if !self.quiet && !self.json {
            out(s);
        }
    }

    pub fn project(&self) -> Option<&str> {
        Some(self.settings.project.as_deref().unwrap_or("code-buddy"))
    }
}

pub fn print_json(v: &impl serde::Serialize) {
    out(&serde_json::to_string_pretty(v).expect("value serializes"));
}

/// One line on stdout. A closed stdout (`cbsnap snapshot --all --json | head -1`)
/// is ignored: what was committed stays committed, and the run still writes its
/// metrics and notifies, instead of a panic ending it half-way.
fn out(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

/// Parse the arguments; on an unknown command, suggest only a close spelling (or
/// the command people mean by a common other word), never a far-fetched one.
fn parse() -> Cli {
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

pub fn run() -> i32 {
    // Everything cbsnap creates (repository, index, temporary files, a restore
    // target before its modes are set) is private to its owner, as with borg's
    // umask 0077; files that the library creates also pass 0600/0700 explicitly.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = parse();
    let filter = matches!(
        cli.command,
        Command::Ls(_)
            | Command::Snapshots(_)
            | Command::Dump(_)
            | Command::Completions(_)
            | Command::Man(_)
    );
    if filter {
        // A closed stdout (`cbsnap ls | head`) ends these quietly, as for any Unix
        // filter. Not for the others: their internal pipes must see EPIPE instead.
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // These need no configuration: a broken config file must not break them.
    match cli.command {
        Command::Completions(a) => return finish(shell::completions(a).map(|_| 0), filter),
        Command::Man(a) => return finish(shell::man(a).map(|_| 0), filter),
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e.into(), filter),
    };
    let ctx = Ctx {
        repo_path: settings.repo_path(cli.repo.as_deref()),
        settings,
        json: cli.json,
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Init => init(&ctx),
        Command::Recover => recover(&ctx),
        Command::Snapshot(a) => snapshot::run(&ctx, a),
        Command::Snapshots(a) => list::snapshots(&ctx, a).map(|_| 0),
        Command::Restore(a) => restore::run(&ctx, a).map(|_| 0),
        Command::Ls(a) => list::ls(&ctx, a).map(|_| 0),
        Command::Dump(a) => restore::dump(&ctx, a).map(|_| 0),
        Command::Mount(a) => mount::run(&ctx, a).map(|_| 0),
        Command::Index {
            cmd: IndexCmd::Rebuild,
        } => index_rebuild(&ctx).map(|_| 0),
        Command::Maint(c) => maint::run(&ctx, c),
        Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled before the config is read")
        }
    };
    finish(result, filter)
}

fn finish(result: anyhow::Result<i32>, filter: bool) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => fail(&e, filter),
    }
}

/// The one place an error becomes an exit code (ripgrep's way). For the commands that
/// are filters writing to stdout (`filter`: ls, snapshots, dump), a broken pipe anywhere
/// in the chain means the reader went away (`cbsnap dump … | head`), which is not an
/// error. Other commands talk to helper processes through pipes, where a broken pipe
/// is a real failure. The message is written without panicking: stderr may be a closed
/// pipe too (issue 7, case 15: that used to end in a panic, exit 101).
fn fail(e: &anyhow::Error, filter: bool) -> i32 {
    use cbsnap::run::RunError;
    use std::io::Write;
    let broken_pipe = filter
        && e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
    if broken_pipe {
        return 0;
    }
    let engine_error = match e.downcast_ref::<RunError>() {
        Some(RunError::Repo(inner)) => Some(inner),
        Some(RunError::Docker(_)) => None,
        // The run cannot be restored as asked; nothing was changed.
        Some(_) => {
            let _ = writeln!(std::io::stderr(), "cbsnap: error: {e:#}");
            return 2;
        }
        None => e.downcast_ref::<Error>(),
    };
    if let Some(Error::Interrupted) = engine_error {
        return 130;
    }
    let _ = writeln!(std::io::stderr(), "cbsnap: error: {e:#}");
    match engine_error {
        Some(Error::Usage(_)) | Some(Error::NoSuchSnapshot(_)) => 2,
        Some(Error::RestoreIncomplete { .. }) => EXIT_PARTIAL,
        _ => 1,
    }
}

fn init(ctx: &Ctx) -> anyhow::Result<i32> {
    let cfg = cbsnap::Repository::init_in(ctx.storage()?)?;
    if ctx.json {
        print_json(&serde_json::json!({"repo": ctx.repo_path, "id": cfg.id}));
    } else {
        ctx.say(&format!(
            "created cbsnap repository {} at {}",
            cfg.id.short(),
            ctx.repo_path.display()
        ));
    }
    Ok(0)
}

fn recover(ctx: &Ctx) -> anyhow::Result<i32> {
    // Opening recovers when the state file asks for it; then ask Docker anyway, so
    // that helper containers of dead processes are removed too.
    let repo = cbsnap::Repository::open_in(ctx.storage()?, cbsnap::repo::Access::Read)?;
    let n = ctx.recover_quiesced(&repo, true)?;
    ctx.say(&format!("{n} container(s) resumed"));
    Ok(0)
}

fn index_rebuild(ctx: &Ctx) -> anyhow::Result<()> {
    let r = cbsnap::Repository::rebuild_index_in(ctx.storage()?)?;
    if ctx.json {
        print_json(&serde_json::json!({"packs": r.added_packs, "unreadable": r.unreadable.len()}));
    } else {
        ctx.say(&format!(
            "index rebuilt from {} packs ({} unreadable)",
            r.added_packs,
            r.unreadable.len()
        ));
    }
    if !r.unreadable.is_empty() {
        anyhow::bail!(
            "{} packs could not be read: {}; run `cbsnap check`",
            r.unreadable.len(),
            r.unreadable
                .iter()
                .map(|(p, e)| format!("{} ({e})", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Resolve `NAME@SELECTOR` and say on stderr when a date selector picked an earlier
/// day's snapshot (unless `--quiet`).
pub fn resolve(
    ctx: &Ctx,
    all: &[(cbsnap::Id, cbsnap::snapshot::Snapshot)],
    spec: &str,
) -> cbsnap::Result<(cbsnap::Id, cbsnap::snapshot::Snapshot)> {
    let (id, snap) = cbsnap::snapshot::resolve(all, spec, ctx.project())?;
    if let Some(note) = cbsnap::snapshot::date_note(spec, &snap) {
        if !ctx.quiet {
            cbsnap::warn_stderr!("cbsnap: {note}");
        }
    }
    Ok((id, snap))
}

/// [`resolve`] over every snapshot file: a damaged one makes order selectors an error
/// that names it ([`cbsnap::snapshot::resolve_in`]).
pub fn resolve_in(
    ctx: &Ctx,
    set: &cbsnap::snapshot::SnapshotSet,
    spec: &str,
) -> cbsnap::Result<(cbsnap::Id, cbsnap::snapshot::Snapshot)> {
    let (id, snap) = cbsnap::snapshot::resolve_in(set, spec, ctx.project())?;
    if let Some(note) = cbsnap::snapshot::date_note(spec, &snap) {
        if !ctx.quiet {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "cbsnap: {note}");
        }
    }
    Ok((id, snap))
}

/// Absolute form of a path, for recording in snapshots.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
