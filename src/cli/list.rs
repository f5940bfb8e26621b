//! `cbsnap snapshots` and `cbsnap ls`.

use cbsnap::repo::Access;
use cbsnap::snapshot;
use cbsnap::tree::Node;
use cbsnap::walk::{lookup, Entries};
use cbsnap::Id;

use super::render::{self, print_json};
use super::Ctx;

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this source
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// NAME@SELECTOR
    pub snapshot: String,
    /// Only below this path
    pub path: Option<String>,
}

pub fn snapshots(ctx: &Ctx, a: SnapshotsArgs) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let mut all = repo.readable_snapshots()?;
    if let Some(n) = &a.name {
        let project = ctx.settings.project(None);
        if !all
            .iter()
            .any(|(_, s)| snapshot::name_matches(s, n, Some(&project)))
        {
            // The resolver's message lists what exists.
            super::resolve(ctx, &all, n)?;
        }
        all.retain(|(_, s)| snapshot::name_matches(s, n, Some(&project)));
    }
    if ctx.json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).expect("snapshot serializes");
                v["id"] = serde_json::Value::String(id.to_hex());
                v
            })
            .collect();
        print_json(&v);
        return Ok(());
    }
    render::snapshot_table(&all);
    Ok(())
}

/// `ls`: one line per entry, or with `--json` one JSON document: an array of
/// `{path, type, mode, uid, gid, size, mtime, target}` objects, in tree order.
pub fn ls(ctx: &Ctx, a: LsArgs) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let set = repo.snapshots()?;
    let (_, snap) = super::resolve_in(ctx, &set, &a.snapshot)?;
    let prefix = a
        .path
        .as_deref()
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    let mut json: Vec<serde_json::Value> = Vec::new();
    let mut emit = |path: &str, n: &Node| {
        if ctx.json {
            json.push(render::node_json(path, n));
        } else {
            render::node_line(path, n);
        }
    };
    let start: Option<Id> = if prefix.is_empty() {
        Some(snap.tree)
    } else {
        let n = lookup(&repo, &snap.tree, &prefix)?
            .ok_or_else(|| cbsnap::Error::Usage(format!("no such path: {prefix}")))?;
        let sub = n.subtree();
        emit(&prefix, &n);
        sub
    };
    if let Some(t) = start {
        walk(&repo, &t, &prefix, &mut emit)?;
    }
    if ctx.json {
        print_json(&json);
    }
    Ok(())
}

fn walk(
    repo: &cbsnap::Repository,
    tree: &Id,
    prefix: &str,
    emit: &mut dyn FnMut(&str, &Node),
) -> anyhow::Result<()> {
    for e in Entries::new(repo, tree, prefix.as_bytes())? {
        let (path, n) = e?;
        emit(&String::from_utf8_lossy(&path), &n);
    }
    Ok(())
}
