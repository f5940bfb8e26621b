//! `cbsnap snapshot`: directories (`--path`) and tar streams (`--tar`).

use std::path::PathBuf;

use anyhow::Context;
use cbsnap::ingest::{self, SnapshotSpec};
use cbsnap::progress::Progress;
use cbsnap::repo::Access;
use cbsnap::snapshot::{self, Snapshot, SourceKind};
use cbsnap::{Error, Id};

use super::{absolute, print_json, Ctx, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to snapshot
    #[arg(long, value_name = "DIR", conflicts_with = "tar")]
    pub path: Option<PathBuf>,
    /// Tar stream to snapshot (plain, gzip or zstd; `-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Source name [default: the directory's base name]
    #[arg(long)]
    pub name: Option<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<i32> {
    let repo = ctx.open(Access::Append)?;
    let (id, snap) = if let Some(dir) = &a.path {
        let abs = absolute(dir);
        let name = match &a.name {
            Some(n) => n.clone(),
            None => abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "cannot derive a name from {}; pass --name",
                        abs.display()
                    ))
                })?,
        };
        let spec = SnapshotSpec {
            parent: latest(&repo, &name)?,
            name,
            kind: SourceKind::Path,
            origin: serde_json::json!({ "path": abs }),
            tags: a.tags.clone(),
            run_id: None,
            consistency: None,
        };
        let progress = Progress::new(ctx.quiet || ctx.json, "snapshot");
        let r = ingest::snapshot(&repo, spec, &progress, |sink| {
            cbsnap::source::dir::walk(&abs, sink)
        });
        progress.finish();
        r?
    } else if let Some(file) = &a.tar {
        let name = a
            .name
            .clone()
            .ok_or_else(|| Error::Usage("--tar needs --name NAME".into()))?;
        let progress = Progress::new(ctx.quiet || ctx.json, "snapshot");
        let origin = if file.as_os_str() == "-" {
            serde_json::json!({ "tar": "-" })
        } else {
            serde_json::json!({ "tar": absolute(file) })
        };
        let spec = SnapshotSpec {
            parent: latest(&repo, &name)?,
            name,
            kind: SourceKind::Tar,
            origin,
            tags: a.tags.clone(),
            run_id: None,
            consistency: None,
        };
        let r = if file.as_os_str() == "-" {
            let stdin = std::io::stdin().lock();
            ingest::snapshot(&repo, spec, &progress, |sink| {
                cbsnap::source::tar::read_tar(stdin, b"", sink)
            })
        } else {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open the tar file {}", file.display()))?;
            ingest::snapshot(&repo, spec, &progress, |sink| {
                cbsnap::source::tar::read_tar(f, b"", sink)
            })
        };
        progress.finish();
        r?
    } else {
        return Err(Error::Usage(
            "say what to snapshot: --path DIR, --tar FILE --name NAME".into(),
        )
        .into());
    };
    report(ctx, &id, &snap);
    Ok(if snap.errors.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}

/// The newest snapshot of `name`, used as the parent.
pub fn latest(repo: &cbsnap::Repository, name: &str) -> cbsnap::Result<Option<(Id, Snapshot)>> {
    let all = snapshot::load_all(&repo.snapshots_dir())?;
    Ok(all.into_iter().rev().find(|(_, s)| s.name == name))
}

pub fn report(ctx: &Ctx, id: &Id, s: &Snapshot) {
    if ctx.json {
        let mut v = serde_json::to_value(s).expect("snapshot serializes");
        v["id"] = serde_json::Value::String(id.to_hex());
        print_json(&v);
        return;
    }
    let st = &s.stats;
    ctx.say(&format!(
        "snapshot {} of {} saved: {} files, {} dirs, {} in {:.1}s; added {} ({} stored)",
        id.short(),
        s.name,
        st.files,
        st.dirs,
        indicatif::HumanBytes(st.bytes),
        st.duration_secs,
        indicatif::HumanBytes(st.new_bytes_raw),
        indicatif::HumanBytes(st.new_bytes_stored),
    ));
    if !s.errors.is_empty() {
        eprintln!(
            "cbsnap: {} entries could not be read and are not in snapshot {} (exit code 3):",
            s.errors.len(),
            id.short()
        );
        for e in s.errors.iter().take(20) {
            eprintln!("  {}: {}", e.path, e.error);
        }
    }
}
