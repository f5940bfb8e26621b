//! Command-line interface (clap). Each command lives in its own file and stays thin:
//! parse, call one engine function, render (`render.rs`: a table, lines or `--json`).
//! The command list is in `args.rs`; this file turns the result into the exit code.

/// `println!` that never panics: a closed stdout (`cbsnap check | head -3`) drops the
/// rest of the output instead of ending the command with a panic (exit 101); the
/// command's own exit code still says how it went.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout(), $($arg)*);
    }};
}

mod args;
mod check;
mod diff;
mod forget;
mod key;
mod list;
mod maint;
mod mirror;
mod mount;
mod prompt;
mod render;
mod repo;
mod restore;
mod shell;
mod snapshot;
mod stats;
mod warnings;

use std::path::Path;
use std::sync::Arc;

use cbsnap::storage::{Location, Storage};

use cbsnap::settings::Settings;
use cbsnap::snapshot::Snapshot;
use cbsnap::{Error, Id};

use args::{Command, IndexCmd};
pub use render::print_json;

/// Exit code when a command finished but some entries were not handled exactly: a
/// snapshot was committed without some files, or a restore left some entries out
/// or without some metadata. They are listed.
pub const EXIT_PARTIAL: i32 = 3;

/// Exit code when an encrypted repository could not be unlocked: the passphrase
/// opens none of its key files, or none was given.
pub const EXIT_PASSPHRASE: i32 = 4;

/// What every command needs: the parsed global flags and the configuration.
pub struct Ctx {
    pub settings: Settings,
    /// Where the repository is, as given (`--repo`, `CBSNAP_REPO` or the config).
    pub location: Location,
    /// The backend of `location`, made on first use (a remote one owns a runtime).
    storage: std::sync::OnceLock<Arc<dyn Storage>>,
    pub json: bool,
    pub quiet: bool,
}

impl Ctx {
    /// Where the repository's files are: the backend for `--repo` / `CBSNAP_REPO` /
    /// the config's `repo` (a path, S3 or SFTP).
    pub fn storage(&self) -> Result<Arc<dyn Storage>, Error> {
        if let Some(s) = self.storage.get() {
            return Ok(s.clone());
        }
        let s = open_storage(&self.location, &self.settings)?;
        Ok(self.storage.get_or_init(|| s).clone())
    }

    /// How to open the repository: the config's `transfers`.
    pub fn open_options(&self) -> cbsnap::repo::OpenOptions {
        cbsnap::repo::OpenOptions {
            transfers: self.settings.transfers,
            ..Default::default()
        }
    }

    /// The repository's directory, for what works on a path repository only (the
    /// rsync mirror). Errors: [`Error::Usage`] for a remote repository.
    pub fn local_path(&self, what: &str) -> Result<&Path, Error> {
        self.location.local_path().ok_or_else(|| {
            Error::Usage(format!(
                "{what} works from a repository on a path; {} is remote",
                self.location
            ))
        })
    }

    /// Open the repository, and resume containers an interrupted cbsnap left paused or
    /// stopped (issue 7, case 14): any command that opens the repository does it, not
    /// only the next snapshot of that volume.
    pub fn open(&self, access: cbsnap::repo::Access) -> Result<cbsnap::Repository, Error> {
        let repo = cbsnap::Repository::open_keyed(
            self.storage()?,
            access,
            &self.open_options(),
            &prompt::Prompt::current(),
        )?;
        match cbsnap::volume::recover(&repo.root, false) {
            Ok(rec) => render::resumed(&rec),
            Err(e) => render::warn(&format!("containers an interrupted cbsnap paused or stopped could not be resumed: {e}\nRun `cbsnap recover` once that is fixed (or `docker unpause`/`docker start` them).")),
        }
        Ok(repo)
    }

    /// Print informational text unless `--quiet` or `--json`.
    pub fn say(&self, s: &str) {
        if !self.quiet && !self.json {
            render::out(s);
        }
    }

    /// `cbsnap: …` on stderr unless `--quiet`.
    pub fn note(&self, s: &str) {
        if !self.quiet {
            render::note(s);
        }
    }

    /// The compose project of source names (`--project` is not a global flag).
    pub fn project(&self) -> Option<&str> {
        Some(
            self.settings
                .project
                .as_deref()
                .unwrap_or(cbsnap::settings::DEFAULT_PROJECT),
        )
    }
}

/// The backend of `location`: the path itself, or S3/SFTP through OpenDAL with the
/// config's `[s3]` section under the `AWS_*` variables.
pub fn open_storage(location: &Location, settings: &Settings) -> Result<Arc<dyn Storage>, Error> {
    match location {
        Location::Local(p) => Ok(Arc::new(cbsnap::storage::Local::new(p))),
        remote => {
            let r = cbsnap::storage::Remote::open(remote, &settings.s3, Default::default())
                .map_err(|source| Error::Storage {
                    context: format!("open {remote}"),
                    source,
                })?;
            Ok(Arc::new(r))
        }
    }
}

pub fn run() -> i32 {
    // Everything cbsnap creates (repository, index, temporary files, a restore
    // target before its modes are set) is private to its owner, as with borg's
    // umask 0077; files that the library creates also pass 0600/0700 explicitly.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
    cbsnap::docker::notice::set_handler(on_docker_notice);
    let cli = args::parse();
    warnings::install(cli.quiet);
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
        Command::Completions(a) => {
            return finish(shell::completions(a, args::command()).map(|_| 0), filter)
        }
        Command::Man(a) => return finish(shell::man(a, args::command()).map(|_| 0), filter),
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e.into(), filter),
    };
    let location = match settings.repo_location(cli.repo.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(&e.into(), filter),
    };
    let ctx = Ctx {
        location,
        storage: std::sync::OnceLock::new(),
        settings,
        json: cli.json,
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Init(a) => repo::init(&ctx, a),
        Command::Key { cmd } => key::run(&ctx, cmd).map(|_| 0),
        Command::Recover => repo::recover(&ctx),
        Command::Snapshot(a) => snapshot::run(&ctx, a),
        Command::Snapshots(a) => list::snapshots(&ctx, a).map(|_| 0),
        Command::Restore(a) => restore::run(&ctx, a).map(|_| 0),
        Command::Ls(a) => list::ls(&ctx, a).map(|_| 0),
        Command::Dump(a) => restore::dump(&ctx, a).map(|_| 0),
        Command::Mount(a) => mount::run(&ctx, a).map(|_| 0),
        Command::Index {
            cmd: IndexCmd::Rebuild,
        } => repo::index_rebuild(&ctx).map(|_| 0),
        Command::Maint(c) => maint::run(&ctx, c),
        Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled before the config is read")
        }
    };
    finish(result, filter)
}

/// Shows what the Docker layer reports outside any command's result, and ends the
/// process when a signal interrupted it: 128 + signal (130 for Ctrl-C, 143 for
/// SIGTERM), once the containers it held are resumed.
fn on_docker_notice(n: cbsnap::docker::notice::Notice) {
    use cbsnap::docker::notice::Notice;
    match n {
        Notice::Warning(m) => render::note(&m),
        Notice::LeftStopped {
            containers,
            target,
            again,
            by_hand,
        } => render::left_stopped(&containers, &target, &again, &by_hand),
        Notice::CleaningUp { name, .. } => render::note(&format!(
            "{name} received; resuming containers and removing helpers (send it again to quit at once)"
        )),
        Notice::Exit { signal, finished } => {
            if !finished {
                render::note("second signal, exiting without finishing the clean-up; the next cbsnap run resumes what is still paused");
            }
            std::process::exit(128 + signal)
        }
    }
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
        // Containers in use are a state of the stack, not bad usage (exit 1).
        Some(RunError::Docker(_))
        | Some(RunError::NotRestored { .. })
        | Some(RunError::ContainersRunning { .. })
        | Some(RunError::InUse { .. }) => None,
        // The run cannot be restored as asked; nothing was changed.
        Some(_) => {
            let _ = writeln!(std::io::stderr(), "cbsnap: error: {}", chain(e));
            return 2;
        }
        None => e.downcast_ref::<Error>(),
    };
    if let Some(Error::Interrupted) = engine_error {
        return 130;
    }
    let _ = writeln!(std::io::stderr(), "cbsnap: error: {}", chain(e));
    match engine_error {
        Some(Error::Crypto(
            cbsnap::crypto::CryptoError::WrongPassphrase { .. }
            | cbsnap::crypto::CryptoError::NoPassphrase,
        )) => EXIT_PASSPHRASE,
        Some(Error::Usage(_)) | Some(Error::NoSuchSnapshot(_)) | Some(Error::Location(_)) => 2,
        Some(Error::RestoreIncomplete { .. }) => EXIT_PARTIAL,
        _ => 1,
    }
}

/// An error and its causes, `outer: cause: cause`, leaving out a cause whose text the
/// message already holds (many errors show their source in their own text).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Resolve `NAME@SELECTOR`, and note when a date selector picked an earlier day's
/// snapshot.
pub fn resolve(ctx: &Ctx, all: &[(Id, Snapshot)], spec: &str) -> cbsnap::Result<(Id, Snapshot)> {
    let (id, snap) = cbsnap::snapshot::resolve(all, spec, ctx.project())?;
    if let Some(note) = cbsnap::snapshot::date_note(spec, &snap) {
        ctx.note(&note);
    }
    Ok((id, snap))
}

/// [`resolve`] over every snapshot file: a damaged one makes order selectors an error
/// that names it ([`cbsnap::snapshot::resolve_in`]).
pub fn resolve_in(
    ctx: &Ctx,
    set: &cbsnap::snapshot::SnapshotSet,
    spec: &str,
) -> cbsnap::Result<(Id, Snapshot)> {
    let (id, snap) = cbsnap::snapshot::resolve_in(set, spec, ctx.project())?;
    if let Some(note) = cbsnap::snapshot::date_note(spec, &snap) {
        ctx.note(&note);
    }
    Ok((id, snap))
}
