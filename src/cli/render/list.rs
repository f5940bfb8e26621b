//! What `snapshots` and `ls` show: the snapshot table and one line (or JSON object)
//! per entry.

use chrono::{Local, TimeZone};

use cbsnap::snapshot::Snapshot;
use cbsnap::tree::{Node, NodeKind};
use cbsnap::Id;

/// The table of `cbsnap snapshots`.
pub fn snapshot_table(all: &[(Id, Snapshot)]) {
    if all.is_empty() {
        outln!("no snapshots yet; take one with `cbsnap snapshot --path DIR` or `cbsnap snapshot --all`");
        return;
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
    for (id, s) in all {
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
}

/// One entry of `ls --json`.
pub fn node_json(path: &str, n: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": path, "type": n.kind.letter().to_string(), "mode": n.mode, "uid": n.uid, "gid": n.gid,
        "size": n.size, "mtime": n.mtime, "target": String::from_utf8_lossy(&n.target),
    })
}

/// One line of `ls`: type and mode, owner, group, size, mtime, path (and a link's target).
pub fn node_line(path: &str, n: &Node) {
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
