//! Directory source: a depth-first walk in name order that yields every entry kind
//! (regular, empty and sparse files, directories, symlinks, hard links, fifos, device
//! nodes, sockets; names that are not UTF-8) with its full metadata.
//!
//! Symlinks are never followed. File content is not read here: the sink gets the path
//! and reads it only if the parent snapshot does not already hold it unchanged.
//! Anything that cannot be read is reported to the sink and the walk goes on.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::source::{Content, Entry, Sink};
use crate::tree::{Node, NodeKind};

/// Caches uid/gid → name lookups.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Names {
    pub fn user(&mut self, uid: u32) -> Vec<u8> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid)
                    .map(|u| u.name().as_bytes().to_vec())
                    .unwrap_or_default()
            })
            .clone()
    }
    pub fn group(&mut self, gid: u32) -> Vec<u8> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                uzers::get_group_by_gid(gid)
                    .map(|g| g.name().as_bytes().to_vec())
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Build a node from `lstat` metadata (name left empty).
pub fn node_from_metadata(path: &Path, md: &Metadata, names: &mut Names) -> std::io::Result<Node> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDev
    } else if ft.is_block_device() {
        NodeKind::BlockDev
    } else {
        NodeKind::Socket
    };
    let mut n = Node::new(Vec::new(), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.user = names.user(n.uid);
    n.group = names.group(n.gid);
    n.mtime = md.mtime();
    n.mtime_nsec = md.mtime_nsec() as u32;
    n.ctime = md.ctime();
    n.ctime_nsec = md.ctime_nsec() as u32;
    n.inode = md.ino();
    if kind == NodeKind::File {
        n.size = md.len();
    }
    if matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) {
        let rdev = md.rdev();
        n.rdev_major = libc::major(rdev);
        n.rdev_minor = libc::minor(rdev);
    }
    if kind == NodeKind::Symlink {
        n.target = fs::read_link(path)?.as_os_str().as_bytes().to_vec();
    }
    n.xattrs = read_xattrs(path);
    Ok(n)
}

/// Extended attributes of `path` (not following symlinks), sorted by name. A
/// filesystem without xattr support yields none.
fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .filter_map(|k| {
            let v = xattr::get(path, &k).ok()??;
            Some((k.as_bytes().to_vec(), v))
        })
        .collect();
    out.sort();
    out
}

/// Walk `root` and push every entry into `sink`.
pub fn walk(root: &Path, sink: &mut dyn Sink) -> Result<()> {
    let md = fs::symlink_metadata(root).map_err(|e| {
        Error::Source(format!(
            "cannot snapshot {}: {e}. Check the path (it must be an existing directory).",
            root.display()
        ))
    })?;
    if !md.is_dir() {
        return Err(Error::Source(format!(
            "cannot snapshot {}: not a directory. Pass a directory to --path (or a tar file to --tar).",
            root.display()
        )));
    }
    let mut names = Names::default();
    let node = node_from_metadata(root, &md, &mut names)
        .map_err(|e| Error::io(format!("stat {}", root.display()), e))?;
    sink.entry(Entry::new(Vec::new(), node), Content::None)?;
    walk_dir(root, &mut Vec::new(), md.dev(), sink, &mut names)?;
    sink.dir_done(b"")
}

fn walk_dir(
    dir: &Path,
    rel: &mut Vec<u8>,
    dev: u64,
    sink: &mut dyn Sink,
    names: &mut Names,
) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            sink.warn(rel, format!("cannot list directory: {e}"));
            return Ok(());
        }
    };
    let mut children: Vec<(Vec<u8>, std::path::PathBuf)> = Vec::new();
    for e in rd {
        match e {
            Ok(e) => children.push((e.file_name().as_bytes().to_vec(), e.path())),
            Err(err) => sink.warn(rel, format!("cannot list directory: {err}")),
        }
    }
    children.sort();
    for (name, path) in children {
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let r = visit(&path, rel, dev, sink, names);
        rel.truncate(len);
        r?;
    }
    Ok(())
}

fn visit(
    path: &Path,
    rel: &mut Vec<u8>,
    dev: u64,
    sink: &mut dyn Sink,
    names: &mut Names,
) -> Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            sink.warn(rel, format!("cannot stat: {e}"));
            return Ok(());
        }
    };
    let node = match node_from_metadata(path, &md, names) {
        Ok(n) => n,
        Err(e) => {
            sink.warn(rel, format!("cannot read metadata: {e}"));
            return Ok(());
        }
    };
    let kind = node.kind;
    let mut entry = Entry::new(rel.clone(), node);
    match kind {
        NodeKind::Dir => {
            sink.entry(entry, Content::None)?;
            walk_dir(path, rel, dev, sink, names)?;
            sink.dir_done(rel)
        }
        NodeKind::File => {
            if md.nlink() > 1 {
                entry.link_key = Some((md.dev(), md.ino()));
            }
            sink.entry(entry, Content::File(path))
        }
        _ => sink.entry(entry, Content::None),
    }
}
