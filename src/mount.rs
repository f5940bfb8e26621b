//! A read-only FUSE view of the repository (`cbsnap mount DIR`), as restic's and
//! borg's mounts offer: browse every snapshot with `ls`, `cp`, `diff` or a file
//! manager instead of restoring it first.
//!
//! ```text
//! DIR/
//!   qdrant-data/
//!     2026-11-28T03:15:02/      one directory per snapshot, named by its local time
//!     2026-11-29T03:15:01/
//!     latest -> 2026-11-29T03:15:01
//!   ollama/
//!     …
//! ```
//!
//! Inodes are handed out lazily as directories are listed and looked up, and kept for
//! the life of the mount, so a browse costs memory in proportion to what was visited,
//! not to the repository. A file's chunk offsets come from the index when it is
//! opened; a read decompresses only the chunks it covers, each verified against its
//! BLAKE3 id ([`Repository::read_blob`]), and a damaged chunk fails that read with
//! `EIO` instead of returning wrong bytes. Extended attributes are shown as
//! recorded; hard links appear as separate files with the same content. The
//! repository is opened with a shared lock for the life of the mount, so `prune`
//! waits until it is unmounted.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Local;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};

use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind, Xattrs};
use crate::walk;

/// Nothing in a repository changes under a mount except new snapshots; a short TTL
/// lets those appear.
const TTL: Duration = Duration::from_secs(1);

/// The name of the symlink to a source's newest snapshot.
pub const LATEST: &str = "latest";

/// What an inode is.
enum Kind {
    /// The mount point: one directory per source.
    Root,
    /// A source's directory: one directory per snapshot and `latest`.
    Source { time: i64 },
    /// A snapshot's root directory.
    SnapshotRoot { tree: Id, node: Node },
    /// The `latest` symlink of a source.
    Latest { target: Vec<u8>, time: i64 },
    /// An entry inside a snapshot.
    Entry(Node),
}

/// A directory's entries in name order: (name, inode).
type Listing = Arc<Vec<(Vec<u8>, u64)>>;

struct Inode {
    kind: Kind,
    /// The directory holding it (the root's is the root).
    parent: u64,
    /// Entries in name order, once listed (directories only).
    children: Option<Listing>,
    /// A file's chunk start offsets and its size at the end, once opened.
    offsets: Option<Arc<Vec<u64>>>,
}

/// The filesystem. Build it with [`SnapshotFs::new`] and mount it with
/// [`fuser::spawn_mount`] or [`fuser::mount`].
pub struct SnapshotFs {
    repo: Repository,
    inodes: Mutex<Vec<Inode>>,
    /// The last chunk read, so that the kernel's 128 KiB reads of one ~1 MiB chunk
    /// decompress it once.
    last_chunk: Mutex<Option<(Id, Arc<Vec<u8>>)>>,
    uid: u32,
    gid: u32,
}

impl SnapshotFs {
    /// The view of `snapshots` (oldest first, as [`crate::snapshot::load_all`] returns)
    /// in `repo`. Snapshot directories are named by local time
    /// (`2026-11-29T03:15:01`); two snapshots of one source in the same second get
    /// their short id appended.
    pub fn new(repo: Repository, snapshots: &[(Id, Snapshot)]) -> SnapshotFs {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut inodes = vec![
            // Index 0 is unused: inode numbers start at 1, the root.
            Inode::new(Kind::Root, 1),
            Inode::new(Kind::Root, 1),
        ];
        let mut by_source: BTreeMap<&str, Vec<&(Id, Snapshot)>> = BTreeMap::new();
        for s in snapshots {
            by_source.entry(s.1.name.as_str()).or_default().push(s);
        }
        let mut root_children = Vec::new();
        for (name, snaps) in by_source {
            let newest = snaps.iter().map(|(_, s)| s.time.timestamp()).max();
            let source_ino = inodes.len() as u64;
            inodes.push(Inode::new(
                Kind::Source {
                    time: newest.unwrap_or(0),
                },
                1,
            ));
            root_children.push((name.as_bytes().to_vec(), source_ino));
            let mut children: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut latest: Option<(&Snapshot, Vec<u8>)> = None;
            for (id, snap) in snaps {
                let mut dir = snap
                    .time
                    .with_timezone(&Local)
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string()
                    .into_bytes();
                if children.iter().any(|(n, _)| *n == dir) {
                    dir.extend_from_slice(format!("-{}", id.short()).as_bytes());
                }
                let ino = inodes.len() as u64;
                inodes.push(Inode::new(
                    Kind::SnapshotRoot {
                        tree: snap.tree,
                        node: snap.root_node(),
                    },
                    source_ino,
                ));
                children.push((dir.clone(), ino));
                if latest.as_ref().is_none_or(|(l, _)| snap.time >= l.time) {
                    latest = Some((snap, dir));
                }
            }
            if let Some((snap, target)) = latest {
                let ino = inodes.len() as u64;
                inodes.push(Inode::new(
                    Kind::Latest {
                        target,
                        time: snap.time.timestamp(),
                    },
                    source_ino,
                ));
                children.push((LATEST.as_bytes().to_vec(), ino));
            }
            children.sort();
            inodes[source_ino as usize].children = Some(Arc::new(children));
        }
        root_children.sort();
        inodes[1].children = Some(Arc::new(root_children));
        SnapshotFs {
            repo,
            inodes: Mutex::new(inodes),
            last_chunk: Mutex::new(None),
            uid,
            gid,
        }
    }

    fn inodes(&self) -> MutexGuard<'_, Vec<Inode>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries of directory `ino`, listing its tree on first use.
    fn children(&self, ino: u64) -> std::result::Result<Listing, Errno> {
        let tree = {
            let inodes = self.inodes();
            let inode = inodes.get(ino as usize).ok_or(Errno::ENOENT)?;
            if let Some(c) = &inode.children {
                return Ok(c.clone());
            }
            match &inode.kind {
                Kind::SnapshotRoot { tree, .. } => *tree,
                Kind::Entry(n) if n.kind == NodeKind::Dir => n.subtree().ok_or(Errno::EIO)?,
                _ => return Err(Errno::ENOTDIR),
            }
        };
        // Read the tree without holding the lock: it may take a pack read.
        let nodes = walk::load(&self.repo, &tree).map_err(|_| Errno::EIO)?;
        let mut inodes = self.inodes();
        if let Some(c) = &inodes[ino as usize].children {
            return Ok(c.clone()); // listed by another thread meanwhile
        }
        let mut children = Vec::with_capacity(nodes.len());
        for n in nodes {
            let child = inodes.len() as u64;
            children.push((n.name.clone(), child));
            inodes.push(Inode::new(Kind::Entry(n), ino));
        }
        let children = Arc::new(children);
        inodes[ino as usize].children = Some(children.clone());
        Ok(children)
    }

    fn attr(&self, ino: u64) -> std::result::Result<FileAttr, Errno> {
        let inodes = self.inodes();
        let inode = inodes.get(ino as usize).ok_or(Errno::ENOENT)?;
        let virtual_dir = |time: i64| self.virtual_attr(ino, FileType::Directory, 0, time);
        Ok(match &inode.kind {
            Kind::Root => virtual_dir(0),
            Kind::Source { time } => virtual_dir(*time),
            Kind::Latest { target, time } => {
                self.virtual_attr(ino, FileType::Symlink, target.len() as u64, *time)
            }
            Kind::SnapshotRoot { node, .. } | Kind::Entry(node) => node_attr(ino, node),
        })
    }

    fn virtual_attr(&self, ino: u64, kind: FileType, size: u64, time: i64) -> FileAttr {
        let t = system_time(time, 0);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm: if kind == FileType::Directory {
                0o555
            } else {
                0o777
            },
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// A file's chunk ids and start offsets (one more offset than chunks: the size).
    fn layout(&self, ino: u64) -> std::result::Result<(Vec<Id>, Arc<Vec<u64>>), Errno> {
        let content = {
            let inodes = self.inodes();
            let inode = inodes.get(ino as usize).ok_or(Errno::ENOENT)?;
            let Kind::Entry(node) = &inode.kind else {
                return Err(Errno::EISDIR);
            };
            if node.kind != NodeKind::File {
                return Err(Errno::EINVAL);
            }
            if let Some(o) = &inode.offsets {
                return Ok((node.content.clone(), o.clone()));
            }
            node.content.clone()
        };
        let mut offsets = Vec::with_capacity(content.len() + 1);
        let mut pos = 0u64;
        for id in &content {
            offsets.push(pos);
            let loc = self.repo.locate(id).map_err(|_| Errno::EIO)?;
            pos += u64::from(loc.entry.raw_len);
        }
        offsets.push(pos);
        let offsets = Arc::new(offsets);
        self.inodes()[ino as usize].offsets = Some(offsets.clone());
        Ok((content, offsets))
    }

    /// A chunk's bytes, verified against its id.
    fn chunk(&self, id: &Id) -> Result<Arc<Vec<u8>>> {
        {
            let last = self.last_chunk.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((lid, data)) = &*last {
                if lid == id {
                    return Ok(data.clone());
                }
            }
        }
        let data = Arc::new(self.repo.read_blob(id)?);
        *self.last_chunk.lock().unwrap_or_else(|p| p.into_inner()) = Some((*id, data.clone()));
        Ok(data)
    }

    /// Bytes `[offset, offset + size)` of file `ino`, short at the end of the file.
    fn read_range(&self, ino: u64, offset: u64, size: u32) -> std::result::Result<Vec<u8>, Errno> {
        let (content, offsets) = self.layout(ino)?;
        let end = offsets
            .last()
            .copied()
            .unwrap_or(0)
            .min(offset + u64::from(size));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        // The chunk holding `pos`: the last start offset at or before it.
        let mut i = offsets.partition_point(|&o| o <= pos).saturating_sub(1);
        while pos < end && i < content.len() {
            let data = self.chunk(&content[i]).map_err(|_| Errno::EIO)?;
            let start = (pos - offsets[i]) as usize;
            let stop = ((end - offsets[i]) as usize).min(data.len());
            if start >= stop {
                return Err(Errno::EIO); // the index and the chunk disagree on its size
            }
            out.extend_from_slice(&data[start..stop]);
            pos = offsets[i] + stop as u64;
            i += 1;
        }
        Ok(out)
    }
}

impl Inode {
    fn new(kind: Kind, parent: u64) -> Inode {
        Inode {
            kind,
            parent,
            children: None,
            offsets: None,
        }
    }
}

fn system_time(secs: i64, nsec: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsec.into())
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDev => FileType::CharDevice,
        NodeKind::BlockDev => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// The attributes a snapshot recorded for `n`.
fn node_attr(ino: u64, n: &Node) -> FileAttr {
    let t = system_time(n.mtime, n.mtime_nsec);
    let size = match n.kind {
        NodeKind::File => n.size,
        NodeKind::Symlink => n.target.len() as u64,
        _ => 0,
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: system_time(n.ctime, n.ctime_nsec).max(t),
        crtime: t,
        kind: file_type(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink: if n.kind == NodeKind::Dir { 2 } else { 1 },
        uid: n.uid,
        gid: n.gid,
        rdev: libc::makedev(n.rdev_major, n.rdev_minor) as u32,
        flags: 0,
        blksize: 4096,
    }
}

impl SnapshotFs {
    /// The extended attributes a snapshot recorded for `ino` (none for the virtual
    /// directories and links).
    fn xattrs(&self, ino: u64) -> std::result::Result<Xattrs, Errno> {
        let inodes = self.inodes();
        match &inodes.get(ino as usize).ok_or(Errno::ENOENT)?.kind {
            Kind::SnapshotRoot { node, .. } | Kind::Entry(node) => Ok(node.xattrs.clone()),
            _ => Ok(Vec::new()),
        }
    }
}

/// Answer an xattr request the FUSE way: its size when asked with `size` 0, the
/// bytes when they fit, `ERANGE` when they do not.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() <= size as usize {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl Filesystem for SnapshotFs {
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(x) => match x.iter().find(|(k, _)| k.as_slice() == name.as_bytes()) {
                Some((_, v)) => reply_xattr(reply, size, v),
                None => reply.error(Errno::NO_XATTR),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(x) => {
                let mut names = Vec::new();
                for (k, _) in &x {
                    names.extend_from_slice(k);
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
            Err(e) => reply.error(e),
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.children(parent.0).and_then(|c| {
            c.binary_search_by(|(n, _)| n.as_slice().cmp(name.as_bytes()))
                .map(|i| c[i].1)
                .map_err(|_| Errno::ENOENT)
        });
        match found.and_then(|ino| self.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inodes = self.inodes();
        match inodes.get(ino.0 as usize).map(|i| &i.kind) {
            Some(Kind::Latest { target, .. }) => reply.data(target),
            Some(Kind::Entry(n)) if n.kind == NodeKind::Symlink => reply.data(&n.target),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.layout(ino.0) {
            // The content of a snapshot never changes: let the kernel keep its cache.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_range(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino.0) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        let (parent, kinds): (u64, HashMap<u64, FileType>) = {
            let inodes = self.inodes();
            let kinds = children
                .iter()
                .map(|(_, c)| (*c, inode_type(&inodes[*c as usize].kind)))
                .collect();
            (inodes[ino.0 as usize].parent, kinds)
        };
        let dots = [(b".".to_vec(), ino.0), (b"..".to_vec(), parent)];
        let all = dots
            .iter()
            .map(|(n, i)| (n.as_slice(), *i, FileType::Directory))
            .chain(children.iter().map(|(n, c)| (n.as_slice(), *c, kinds[c])));
        for (i, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(child),
                (i + 1) as u64,
                kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }
}

fn inode_type(k: &Kind) -> FileType {
    match k {
        Kind::Root | Kind::Source { .. } | Kind::SnapshotRoot { .. } => FileType::Directory,
        Kind::Latest { .. } => FileType::Symlink,
        Kind::Entry(n) => file_type(n.kind),
    }
}
