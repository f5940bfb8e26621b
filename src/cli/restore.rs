//! `cbsnap restore` and `cbsnap dump`.

use std::path::PathBuf;

use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::restore;
use cbsnap::snapshot;

use super::{print_json, Ctx};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// NAME@SELECTOR: latest, latest~N, an id prefix or a date YYYY-MM-DD
    pub snapshot: String,
    /// Target directory (must not exist or be empty, unless --force)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Restore into a non-empty directory, replacing entries of the same name
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// NAME@SELECTOR
    pub snapshot: String,
    /// Only this file or directory of the snapshot
    pub path: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let all = snapshot::load_all(&repo.snapshots_dir())?;
    let (id, snap) = snapshot::resolve(&all, &a.snapshot, ctx.project())?;
    let progress = Progress::new(ctx.quiet || ctx.json, "restore");
    let opts = restore::dir::Options {
        force: a.force,
        delete: false,
    };
    let report = restore::dir::restore(&repo, &snap, &a.to, &opts, &progress)?;
    for w in &report.warnings {
        eprintln!("cbsnap: warning: {w}");
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot": id, "to": a.to, "files": report.files, "dirs": report.dirs,
            "bytes": report.bytes, "warnings": report.warnings,
        }));
    } else {
        ctx.say(&format!(
            "restored {}@{} ({}) to {}: {} files, {} dirs, {}",
            snap.name,
            id.short(),
            snap.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M"),
            a.to.display(),
            report.files,
            report.dirs,
            indicatif::HumanBytes(report.bytes)
        ));
    }
    Ok(())
}

pub fn dump(ctx: &Ctx, a: DumpArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        anyhow::bail!("dump writes a tar stream; redirect it to a file or a pipe (`cbsnap dump NAME@latest > out.tar`)");
    }
    let repo = ctx.open(Access::Read)?;
    let all = snapshot::load_all(&repo.snapshots_dir())?;
    let (_, snap) = snapshot::resolve(&all, &a.snapshot, ctx.project())?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    match restore::tar::dump(&repo, &snap, a.path.as_deref(), out) {
        Err(cbsnap::Error::Interrupted) => Ok(()),
        r => Ok(r?),
    }
}
