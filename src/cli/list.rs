//! `cbsnap snapshots` and `cbsnap ls`.

use cbsnap::repo::Access;
use cbsnap::restore::{lookup, Entries};
use cbsnap::snapshot;
use cbsnap::tree::{Node, NodeKind};
use cbsnap::Id;
use chrono::{Local, TimeZone};

use super::{print_json, Ctx};

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
    let mut all = snapshot::load_all(repo.storage())?;
    if let Some(n) = &a.name {
        if !all
            .iter()
            .any(|(_, s)| snapshot::name_matches(s, n, ctx.project()))
        {
            // The resolver's message lists what exists.
            super::resolve(ctx, &all, n)?;
        }
        all.retain(|(_, s)| snapshot::name_matches(s, n, ctx.project()));
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
    if all.is_empty() {
        outln!("no snapshots yet; take one with `cbsnap snapshot --path DIR` or `cbsnap snapshot --all`");
        return Ok(());
    }
    outln!(
        "{:<8}  {:<19}  {:<24}  {:<6}  {:>8}  {:>10}  {:>10}  {:<23}  TAGS",
        "ID",
        "TIME",
        "NAME",
        "KIND",
        "FILES",
        "SIZE",
        "ADDED",
        "RUN"
    );
    for (id, s) in &all {
        outln!(
            "{:<8}  {:<19}  {:<24}  {:<6}  {:>8}  {:>10}  {:>10}  {:<23}  {}{}",
            id.short(),
            s.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            s.name,
            format!("{:?}", s.kind).to_lowercase(),
            s.stats.files,
            indicatif::HumanBytes(s.stats.bytes).to_string(),
            indicatif::HumanBytes(s.stats.new_bytes_stored).to_string(),
            s.run_id.as_deref().unwrap_or("-"),
            s.tags.join(","),
            if s.errors.is_empty() {
                String::new()
            } else {
                format!("  ({} unreadable)", s.errors.len())
            },
        );
    }
    Ok(())
}

/// `ls`: one line per entry, or with `--json` one JSON document: an array of
/// `{path, type, mode, uid, gid, size, mtime, target}` objects, in tree order.
pub fn ls(ctx: &Ctx, a: LsArgs) -> anyhow::Result<()> {
    let repo = ctx.open(Access::Read)?;
    let set = snapshot::scan(repo.storage())?;
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
            json.push(node_json(path, n));
        } else {
            print_node(path, n);
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

fn node_json(path: &str, n: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": path, "type": n.kind.letter().to_string(), "mode": n.mode, "uid": n.uid, "gid": n.gid,
        "size": n.size, "mtime": n.mtime, "target": String::from_utf8_lossy(&n.target),
    })
}

fn print_node(path: &str, n: &Node) {
    let t = Local
        .timestamp_opt(n.mtime, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let owner = if n.user.is_empty() {
        n.uid.to_string()
    } else {
        String::from_utf8_lossy(&n.user).into_owned()
    };
    let group = if n.group.is_empty() {
        n.gid.to_string()
    } else {
        String::from_utf8_lossy(&n.group).into_owned()
    };
    let link = if n.kind == NodeKind::Symlink {
        format!(" -> {}", String::from_utf8_lossy(&n.target))
    } else {
        String::new()
    };
    outln!(
        "{}{} {:>8} {:>8} {:>12} {} {}{}",
        n.kind.letter(),
        mode_string(n.mode),
        owner,
        group,
        n.size,
        t,
        path,
        link
    );
}

fn mode_string(m: u32) -> String {
    let mut s = String::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if m & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}
