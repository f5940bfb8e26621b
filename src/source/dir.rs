//! Directory source: a depth-first walk in name order that yields every entry kind
//! (regular, empty and sparse files, directories, symlinks, hard links, fifos, device
//! nodes, sockets; names that are not UTF-8) with its full metadata.
//!
//! The tree being walked is live and may belong to someone else (a container's
//! volume, read as root), so nothing is ever looked up by a full path: every entry
//! is `fstatat`ed and opened relative to its parent directory's descriptor, without
//! following symlinks (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` where
//! the kernel has it, else `openat` with `O_NOFOLLOW`), and the descriptor's `fstat`
//! must be the object the walk recorded (device, inode, type). A file swapped for a
//! symlink to a host file between the two steps is "changed while read", never
//! followed (issue 7 case 17, the class of `docker cp`'s symlink-exchange CVEs).
//!
//! File content is not read here: the sink gets a [`LiveFile`] and opens it only if
//! the parent snapshot does not already hold it unchanged; [`LiveFile::open`] does
//! the identity check and [`FileStat`] lets the reader compare before and after.
//! Anything that cannot be read is reported to the sink and the walk goes on.
//!
//! Depth is untrusted: the walk keeps an explicit stack, holds descriptors for the
//! top [`FD_BUDGET`] levels only, and below that returns to a parent through its
//! child's `..`, checked against the parent's recorded identity.
//!
//! Directories given in a [`LeaveOut`] (the repository the snapshot writes to) are
//! left out wherever the walk meets them, known by device and inode, not by path: a
//! symlink to one is stored as a symlink, a bind mount of one is left out too.
//!
//! The walk is one thread; on a cold cache a few threads list and `stat` the same
//! tree a little ahead of it ([`super::prefetch`]) so that the disk serves several
//! requests at once. They only warm the kernel's caches: nothing they read reaches
//! the snapshot.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::prefetch::Prefetch;
use crate::error::{Error, Result};
use crate::source::{Content, Entry, Sink};
use crate::tree::{Node, NodeKind, Xattrs};

/// Directory levels whose descriptors the walk keeps open; deeper, a parent is
/// reopened through `..` when the walk returns to it.
pub const FD_BUDGET: usize = 128;

/// Caches uid/gid → name lookups.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Names {
    /// The user name of `uid`, empty when it has none.
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
    /// The group name of `gid`, empty when it has none.
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

/// What `stat` says about one filesystem object, reduced to what identifies it and
/// what changes when it is written: (device, inode, type) and (size, mtime, ctime),
/// times in seconds and nanoseconds since the epoch. GNU tar and restic compare the
/// same fields to detect a file that changed while it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Device of the filesystem holding it (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`).
    pub ino: u64,
    /// `st_mode` (type bits and permission bits).
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node (`st_rdev`).
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last content change, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of `mtime`.
    pub mtime_nsec: u32,
    /// Last inode change (content, metadata, rename), seconds since the epoch.
    pub ctime: i64,
    /// Nanoseconds of `ctime`.
    pub ctime_nsec: u32,
}

impl FileStat {
    // The field types of `struct stat` differ between architectures; the casts
    // widen each to one fixed type.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(st: &rustix::fs::Stat) -> FileStat {
        FileStat {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as u32,
        }
    }

    /// `fstat` of an open descriptor.
    pub fn of(fd: impl AsFd) -> std::io::Result<FileStat> {
        Ok(FileStat::from_raw(&rustix::fs::fstat(fd)?))
    }

    /// The type bits of `mode` (`S_IFMT`).
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// Whether both describe the same object: device, inode and type.
    pub fn same_object(&self, other: &FileStat) -> bool {
        self.dev == other.dev && self.ino == other.ino && self.file_type() == other.file_type()
    }

    /// Whether both describe the same object with the same content as far as `stat`
    /// can tell: same object, size, mtime and ctime.
    pub fn unchanged(&self, other: &FileStat) -> bool {
        self.same_object(other)
            && self.size == other.size
            && (self.mtime, self.mtime_nsec) == (other.mtime, other.mtime_nsec)
            && (self.ctime, self.ctime_nsec) == (other.ctime, other.ctime_nsec)
    }

    fn kind(&self) -> NodeKind {
        match self.file_type() {
            libc::S_IFDIR => NodeKind::Dir,
            libc::S_IFREG => NodeKind::File,
            libc::S_IFLNK => NodeKind::Symlink,
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFCHR => NodeKind::CharDev,
            libc::S_IFBLK => NodeKind::BlockDev,
            _ => NodeKind::Socket,
        }
    }
}

/// Directories a walk leaves out, known by identity (device and inode), which every
/// path to the same directory shares: a symlink to it, a bind mount of it. A snapshot
/// leaves out the directories of the repository it writes to
/// ([`crate::ingest::own_dirs`]): stored, they would grow the repository by its own
/// new packs every night. borg does the same for its repository and cache
/// (`skip_inodes` of `borg create`).
#[derive(Clone, Debug, Default)]
pub struct LeaveOut {
    /// (device, inode, what the directory is: "this snapshot's repository").
    dirs: Vec<(u64, u64, String)>,
}

impl LeaveOut {
    /// Leave out the directory `path` resolves to (symlinks followed), which is `what`
    /// ("this snapshot's repository"). A path that names no directory, or one already
    /// left out under another name, adds nothing.
    pub fn dir(&mut self, path: &Path, what: impl Into<String>) {
        let Ok(st) = rustix::fs::stat(path) else {
            return;
        };
        let st = FileStat::from_raw(&st);
        if st.file_type() == libc::S_IFDIR && self.what(&st).is_none() {
            self.dirs.push((st.dev, st.ino, what.into()));
        }
    }

    /// What the object `st` describes is, when it is a directory left out.
    pub fn what(&self, st: &FileStat) -> Option<&str> {
        if st.file_type() != libc::S_IFDIR {
            return None;
        }
        self.dirs
            .iter()
            .find(|(dev, ino, _)| (*dev, *ino) == (st.dev, st.ino))
            .map(|(_, _, what)| what.as_str())
    }

    /// Whether the directory of device `dev` and inode `ino` is left out.
    pub(super) fn holds(&self, dev: u64, ino: u64) -> bool {
        self.dirs.iter().any(|(d, i, _)| (*d, *i) == (dev, ino))
    }

    /// What the directory `fd` (whose `stat` is `st`) lies inside of, when one of
    /// its ancestors is left out: each `..` up to the root of the file system tree
    /// (whose `..` is itself), as the kernel resolves it (symlinks resolved, the
    /// parent of a bind mount where it is mounted). `O_PATH` needs only search
    /// permission, not read permission, on each ancestor; one that still cannot be
    /// opened ends the search.
    fn enclosing(&self, fd: &OwnedFd, st: &FileStat) -> Option<&str> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut at = *st;
        let mut up = rustix::fs::openat(fd, c"..", flags, Mode::empty()).ok()?;
        // A bound, in case a file system's `..` never ends; no repository is that far up.
        for _ in 0..libc::PATH_MAX {
            let up_st = FileStat::of(&up).ok()?;
            if up_st.same_object(&at) {
                return None;
            }
            if let Some(what) = self.what(&up_st) {
                return Some(what);
            }
            let next = rustix::fs::openat(&up, c"..", flags, Mode::empty()).ok()?;
            (up, at) = (next, up_st);
        }
        None
    }
}

/// Why a [`LiveFile`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The name no longer refers to the regular file the walk recorded (it was
    /// replaced, e.g. by a symlink, another file or a fifo). Nothing was read.
    #[error(
        "changed while read: it was replaced by another object after it was listed; not stored"
    )]
    Replaced,
    /// Opening or `fstat` failed.
    #[error("cannot open: {0}")]
    Io(#[from] std::io::Error),
}

/// A regular file found by the walk: its parent directory's descriptor, its name in
/// it and what `fstatat` recorded. The descriptor is valid while the sink's
/// `entry` call runs.
pub struct LiveFile<'a> {
    dir: BorrowedFd<'a>,
    name: &'a CStr,
    /// What the walk recorded (`fstatat` without following symlinks).
    pub seen: FileStat,
}

impl LiveFile<'_> {
    /// Open the file for reading without following a symlink and check that it is
    /// the object the walk recorded (device, inode, type). Returns the file and its
    /// `fstat` at open, which the reader compares with an `fstat` after reading.
    /// `O_NONBLOCK` keeps a fifo swapped in from blocking the open.
    pub fn open(&self) -> Result<(File, FileStat), OpenError> {
        open_live(self.dir, self.name, &self.seen)
    }

    /// The same file for another thread, valid after the walk moved on: it holds its
    /// own duplicate of the directory's descriptor (one descriptor per detached file,
    /// closed when it is dropped). Errors: `dup` failed (the descriptor limit).
    pub fn detach(&self) -> std::io::Result<DetachedFile> {
        Ok(DetachedFile {
            dir: rustix::io::fcntl_dupfd_cloexec(self.dir, 0).map_err(std::io::Error::from)?,
            name: self.name.to_owned(),
            seen: self.seen,
        })
    }
}

/// A [`LiveFile`] that owns its directory's descriptor ([`LiveFile::detach`]), so a
/// reader thread can open it while the walk goes on. It is opened with the same
/// checks as a [`LiveFile`].
pub struct DetachedFile {
    dir: OwnedFd,
    name: CString,
    /// What the walk recorded (`fstatat` without following symlinks).
    pub seen: FileStat,
}

impl DetachedFile {
    /// As [`LiveFile::open`].
    pub fn open(&self) -> Result<(File, FileStat), OpenError> {
        open_live(self.dir.as_fd(), &self.name, &self.seen)
    }
}

/// Open `name` in `dir` for reading (see [`LiveFile::open`]) and check that it is
/// still the object `seen` describes.
fn open_live(
    dir: BorrowedFd<'_>,
    name: &CStr,
    seen: &FileStat,
) -> Result<(File, FileStat), OpenError> {
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match open_beneath(dir, name, flags) {
        Ok(fd) => fd,
        // The name is a symlink now (or a socket): it was replaced.
        Err(e) if e == Errno::LOOP || e == Errno::NXIO => return Err(OpenError::Replaced),
        Err(e) => return Err(OpenError::Io(e.into())),
    };
    let now = FileStat::of(&fd)?;
    if !now.same_object(seen) {
        return Err(OpenError::Replaced);
    }
    // Reads are plain blocking reads from here on.
    rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(std::io::Error::from)?;
    Ok((File::from(fd), now))
}

/// Open one name below `dir`, never following a symlink and never leaving `dir`.
fn open_beneath(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dir, name, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) | Err(Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // EXDEV and EAGAIN come from resolution rules our single component never
            // meets; the plain `openat` below answers those cases too.
            Err(Errno::XDEV) | Err(Errno::AGAIN) => {}
            r => return r,
        }
    }
    rustix::fs::openat(dir, name, flags, Mode::empty())
}

/// Walk `root` and push every entry into `sink`, parents before children, each
/// directory's entries in byte order of their names, `dir_done` after a directory's
/// last entry. Entries that cannot be read, or that change identity between being
/// listed and opened, go to [`Sink::warn`] and the walk goes on. A directory of
/// `leave_out` is not entered and not yielded: it goes to [`Sink::left_out`].
///
/// Errors: `root` is not an existing directory (a symlink to one is refused), it is
/// or lies inside a directory of `leave_out`, or the sink failed.
pub fn walk(root: &Path, leave_out: &LeaveOut, sink: &mut dyn Sink) -> Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| match e {
        // Not followed: the snapshot records the path it walked, and a restore to
        // it would write through the link, wherever it points then.
        Errno::NOTDIR | Errno::LOOP if root.is_symlink() => Error::Source(format!(
            "cannot snapshot {}: it is a symbolic link{}. Pass the directory itself to --path.",
            root.display(),
            match std::fs::canonicalize(root) {
                Ok(to) if to.is_dir() => format!(" to {} (--path {})", to.display(), to.display()),
                Ok(to) => format!(" to {}, which is not a directory", to.display()),
                Err(e) => format!(" that does not lead to a directory ({e})"),
            }
        )),
        Errno::NOTDIR | Errno::LOOP => Error::Source(format!(
            "cannot snapshot {}: not a directory. Pass a directory to --path (or a tar file to --tar).",
            root.display()
        )),
        e => Error::Source(format!(
            "cannot snapshot {}: {}. Check the path (it must be an existing directory).",
            root.display(),
            std::io::Error::from(e)
        )),
    })?;
    let st = FileStat::of(&fd).map_err(|e| Error::io(format!("stat {}", root.display()), e))?;
    // A snapshot of the repository, or of a directory inside it, would store the
    // repository's new packs in it again every night: nothing of it is left to walk.
    if let Some(what) = leave_out.what(&st) {
        return Err(Error::Source(format!(
            "cannot snapshot {}: it is {what}. Snapshot another directory; a repository is copied with `cbsnap mirror`.",
            root.display()
        )));
    }
    if let Some(what) = leave_out.enclosing(&fd, &st) {
        return Err(Error::Source(format!(
            "cannot snapshot {}: it is inside {what}. Snapshot another directory; a repository is copied with `cbsnap mirror`.",
            root.display()
        )));
    }
    // The read-ahead's own descriptor of the root (the walk's may be closed while
    // deep); without one, the walk goes alone.
    match fd.try_clone() {
        Ok(ahead) => super::prefetch::around(ahead.as_fd(), leave_out, |p| {
            walk_from(root, fd, st, leave_out, sink, Some(p))
        }),
        Err(_) => walk_from(root, fd, st, leave_out, sink, None),
    }
}

/// [`walk`] from the open root `fd` (whose `stat` is `st`), with `prefetch` told of
/// each entry reached.
fn walk_from(
    root: &Path,
    fd: OwnedFd,
    st: FileStat,
    leave_out: &LeaveOut,
    sink: &mut dyn Sink,
    prefetch: Option<&Prefetch<'_>>,
) -> Result<()> {
    let mut w = Walker {
        sink,
        leave_out,
        names: Names::default(),
        proc_fd: Path::new("/proc/self/fd").is_dir(),
        root: root.to_path_buf(),
        rel: Vec::new(),
        stack: Vec::new(),
        prefetch,
    };
    let mut node = w.node(&st, Vec::new());
    node.xattrs = w.xattrs_of_dir(&fd);
    w.sink.entry(Entry::new(Vec::new(), node), Content::None)?;
    w.push_dir(fd, st)?;
    w.run()
}

/// One directory being walked.
struct Frame {
    /// `None` while the walk is deeper than [`FD_BUDGET`] below it.
    fd: Option<OwnedFd>,
    stat: FileStat,
    /// Children names, sorted; `next` is the first not yet visited.
    names: Vec<CString>,
    next: usize,
    /// Length of the walker's `rel` for this directory.
    rel_len: usize,
}

struct Walker<'s> {
    sink: &'s mut dyn Sink,
    leave_out: &'s LeaveOut,
    names: Names,
    /// Whether `/proc/self/fd` exists: xattrs are read through it (relative to a
    /// descriptor); without it they are read by full path.
    proc_fd: bool,
    root: PathBuf,
    /// Path of the current entry relative to the root.
    rel: Vec<u8>,
    stack: Vec<Frame>,
    /// Threads listing and `stat`ing the tree a little ahead of this walk.
    prefetch: Option<&'s Prefetch<'s>>,
}

impl Walker<'_> {
    fn run(&mut self) -> Result<()> {
        while let Some(top) = self.stack.last_mut() {
            if top.next == top.names.len() {
                self.pop_dir()?;
                continue;
            }
            if let Some(p) = self.prefetch {
                p.walked();
            }
            let name = std::mem::take(&mut top.names[top.next]);
            top.next += 1;
            let rel_len = top.rel_len;
            self.rel.truncate(rel_len);
            if !self.rel.is_empty() {
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(name.as_bytes());
            self.visit(&name)?;
        }
        Ok(())
    }

    /// Leave the directory on top of the stack: tell the sink, then make sure the
    /// directory below it has its descriptor again.
    fn pop_dir(&mut self) -> Result<()> {
        let done = self.stack.pop().expect("a directory is open");
        self.rel.truncate(done.rel_len);
        self.sink.dir_done(&self.rel)?;
        let Some(parent) = self.stack.last_mut() else {
            return Ok(());
        };
        if parent.fd.is_some() {
            return Ok(());
        }
        // `..` of the child is the parent unless the child was moved meanwhile.
        let reopened = done.fd.as_ref().and_then(|child| {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(child, c"..", flags, Mode::empty()).ok()?;
            let st = FileStat::of(&fd).ok()?;
            st.same_object(&parent.stat).then_some(fd)
        });
        match reopened {
            Some(fd) => parent.fd = Some(fd),
            None => {
                parent.next = parent.names.len();
                self.rel.truncate(parent.rel_len);
                let path = self.rel.clone();
                self.sink.warn(
                    &path,
                    "changed while read: the directory was moved during the walk; the rest of it is not in the snapshot".into(),
                );
            }
        }
        Ok(())
    }

    /// Open the directory `fd` (already checked and sent to the sink) and push it.
    fn push_dir(&mut self, fd: OwnedFd, stat: FileStat) -> Result<()> {
        let mut names = Vec::new();
        match rustix::fs::Dir::read_from(&fd) {
            Ok(dir) => {
                for e in dir {
                    match e {
                        Ok(e) => {
                            let n = e.file_name();
                            if n != c"." && n != c".." {
                                names.push(n.to_owned());
                            }
                        }
                        Err(err) => {
                            let path = self.rel.clone();
                            self.sink.warn(
                                &path,
                                format!("cannot list directory: {}", std::io::Error::from(err)),
                            );
                            break;
                        }
                    }
                }
            }
            Err(err) => {
                let path = self.rel.clone();
                self.sink.warn(
                    &path,
                    format!("cannot list directory: {}", std::io::Error::from(err)),
                );
            }
        }
        names.sort();
        if self.stack.len() >= FD_BUDGET {
            if let Some(parent) = self.stack.last_mut() {
                parent.fd = None;
            }
        }
        self.stack.push(Frame {
            fd: Some(fd),
            stat,
            names,
            next: 0,
            rel_len: self.rel.len(),
        });
        Ok(())
    }

    fn visit(&mut self, name: &CStr) -> Result<()> {
        // The parent's descriptor is lent out for the visit and put back before a
        // child directory is pushed (which may release it, see `FD_BUDGET`).
        let Some(dir) = self.stack.last_mut().and_then(|f| f.fd.take()) else {
            return Ok(());
        };
        let r = self.visit_in(&dir, name);
        if let Some(top) = self.stack.last_mut() {
            top.fd = Some(dir);
        }
        match r? {
            Some((fd, st)) => self.push_dir(fd, st),
            None => Ok(()),
        }
    }

    /// Visit `name` in `dir`; returns a directory to descend into.
    fn visit_in(&mut self, dir: &OwnedFd, name: &CStr) -> Result<Option<(OwnedFd, FileStat)>> {
        let rel = self.rel.clone();
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileStat::from_raw(&st),
            Err(e) => {
                self.sink
                    .warn(&rel, format!("cannot stat: {}", std::io::Error::from(e)));
                return Ok(None);
            }
        };
        if let Some(what) = self.leave_out.what(&st) {
            self.sink.left_out(&rel, format!("it is {what}"));
            return Ok(None);
        }
        match st.kind() {
            NodeKind::Dir => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOCTTY;
                let fd = match open_beneath(dir.as_fd(), name, flags) {
                    Ok(fd) => fd,
                    Err(e) if e == Errno::LOOP || e == Errno::NOTDIR => {
                        self.sink.warn(&rel, OpenError::Replaced.to_string());
                        return Ok(None);
                    }
                    Err(e) => {
                        self.sink.warn(
                            &rel,
                            format!("cannot open directory: {}", std::io::Error::from(e)),
                        );
                        return Ok(None);
                    }
                };
                let now = match FileStat::of(&fd) {
                    Ok(now) if now.same_object(&st) => now,
                    Ok(_) => {
                        self.sink.warn(&rel, OpenError::Replaced.to_string());
                        return Ok(None);
                    }
                    Err(e) => {
                        self.sink.warn(&rel, format!("cannot stat: {e}"));
                        return Ok(None);
                    }
                };
                let mut node = self.node(&now, Vec::new());
                self.fill_xattrs(&mut node, |w| w.xattrs_of_dir(&fd));
                self.sink.entry(Entry::new(rel, node), Content::None)?;
                Ok(Some((fd, now)))
            }
            NodeKind::File => {
                let mut node = self.node(&st, Vec::new());
                self.fill_xattrs(&mut node, |w| w.xattrs_at(dir.as_fd(), name));
                let mut entry = Entry::new(rel, node);
                if st.nlink > 1 {
                    entry.link_key = Some((st.dev, st.ino));
                }
                let file = LiveFile {
                    dir: dir.as_fd(),
                    name,
                    seen: st,
                };
                self.sink.entry(entry, Content::File(&file))?;
                Ok(None)
            }
            NodeKind::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
                    Ok(t) => t.into_bytes(),
                    Err(e) => {
                        self.sink.warn(
                            &rel,
                            format!("cannot read metadata: {}", std::io::Error::from(e)),
                        );
                        return Ok(None);
                    }
                };
                let mut node = self.node(&st, target);
                self.fill_xattrs(&mut node, |w| w.xattrs_at(dir.as_fd(), name));
                self.sink.entry(Entry::new(rel, node), Content::None)?;
                Ok(None)
            }
            _ => {
                let mut node = self.node(&st, Vec::new());
                self.fill_xattrs(&mut node, |w| w.xattrs_at(dir.as_fd(), name));
                self.sink.entry(Entry::new(rel, node), Content::None)?;
                Ok(None)
            }
        }
    }

    /// Build a node from `stat` (name and xattrs left empty).
    fn node(&mut self, st: &FileStat, target: Vec<u8>) -> Node {
        let kind = st.kind();
        let mut n = Node::new(Vec::new(), kind);
        n.mode = st.mode & 0o7777;
        n.uid = st.uid;
        n.gid = st.gid;
        n.user = self.names.user(n.uid);
        n.group = self.names.group(n.gid);
        n.mtime = st.mtime;
        n.mtime_nsec = st.mtime_nsec;
        n.ctime = st.ctime;
        n.ctime_nsec = st.ctime_nsec;
        n.inode = st.ino;
        if kind == NodeKind::File {
            n.size = st.size;
        }
        if matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) {
            n.rdev_major = libc::major(st.rdev);
            n.rdev_minor = libc::minor(st.rdev);
        }
        n.target = target;
        n
    }

    /// Fill the xattrs of `node`, the current entry's (`rel`): the sink's copy when
    /// it has this object unchanged ([`Sink::unchanged_xattrs`]: an unchanged
    /// snapshot then lists no xattrs, which through `/proc/self/fd` cost a sixth of
    /// this thread's time), else `read()`.
    fn fill_xattrs(&mut self, node: &mut Node, read: impl FnOnce(&Self) -> Xattrs) {
        node.xattrs = match self.sink.unchanged_xattrs(&self.rel, node) {
            Some(known) => known,
            None => read(self),
        };
    }

    /// xattrs of `name` in `dir`, not following a symlink: through
    /// `/proc/self/fd/DIR/NAME`, which pins the directory to its descriptor (there is
    /// no `*xattrat` system call before Linux 6.13).
    fn xattrs_at(&self, dir: BorrowedFd<'_>, name: &CStr) -> Xattrs {
        if self.proc_fd {
            let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            p.extend_from_slice(name.to_bytes());
            read_xattrs(Path::new(OsStr::from_bytes(&p)))
        } else {
            read_xattrs(&self.root.join(OsStr::from_bytes(&self.rel)))
        }
    }

    /// xattrs of an open directory.
    fn xattrs_of_dir(&self, fd: &OwnedFd) -> Xattrs {
        if self.proc_fd {
            // The magic link is followed to the directory itself.
            let p = format!("/proc/self/fd/{}/.", fd.as_raw_fd());
            read_xattrs(Path::new(&p))
        } else {
            read_xattrs(&self.root.join(OsStr::from_bytes(&self.rel)))
        }
    }
}

/// Extended attributes of `path` (not following a symlink in its last component),
/// sorted by name. A filesystem without xattr support yields none.
fn read_xattrs(path: &Path) -> Xattrs {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Xattrs = names
        .filter_map(|k| {
            let v = xattr::get(path, &k).ok()??;
            Some((k.as_bytes().to_vec(), v))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what a walk yields.
    #[derive(Default)]
    struct Count {
        dirs: usize,
        files: Vec<Vec<u8>>,
        done: usize,
        warnings: Vec<String>,
        left_out: Vec<String>,
    }

    impl Sink for Count {
        fn entry(&mut self, e: Entry, content: Content<'_>) -> Result<()> {
            match content {
                Content::File(f) => {
                    let (mut file, _) = f.open().expect("open");
                    let mut s = Vec::new();
                    std::io::Read::read_to_end(&mut file, &mut s).unwrap();
                    self.files.push(s);
                }
                _ if e.node.kind == NodeKind::Dir => self.dirs += 1,
                _ => {}
            }
            Ok(())
        }
        fn dir_done(&mut self, _path: &[u8]) -> Result<()> {
            self.done += 1;
            Ok(())
        }
        fn warn(&mut self, path: &[u8], error: String) {
            self.warnings
                .push(format!("{}: {error}", String::from_utf8_lossy(path)));
        }
        fn left_out(&mut self, path: &[u8], why: String) {
            self.left_out
                .push(format!("{}: {why}", String::from_utf8_lossy(path)));
        }
    }

    /// A directory of the [`LeaveOut`], given through a symlink to it, is named to
    /// the sink once and nothing below it is yielded (the symlink is yielded as a
    /// symlink). A root that is one, or lies inside one, is refused.
    #[test]
    fn a_directory_left_out_is_named_once_and_not_entered() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/repo/packs")).unwrap();
        std::fs::write(d.path().join("a/repo/packs/p"), b"pack").unwrap();
        std::fs::write(d.path().join("a/f"), b"file").unwrap();
        std::os::unix::fs::symlink("a/repo", d.path().join("link")).unwrap();
        let mut leave_out = LeaveOut::default();
        // Given through the symlink: the directory it names is left out.
        leave_out.dir(&d.path().join("link"), "the repository");
        leave_out.dir(&d.path().join("missing"), "nothing");
        let mut c = Count::default();
        walk(d.path(), &leave_out, &mut c).unwrap();
        assert_eq!(c.left_out, ["a/repo: it is the repository"]);
        assert_eq!(c.files, [b"file".to_vec()]);
        assert_eq!(c.dirs, 2, "the root and a");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        for root in ["a/repo", "a/repo/packs"] {
            let e = walk(&d.path().join(root), &leave_out, &mut Count::default());
            let msg = e.map_err(|e| e.to_string()).unwrap_err();
            assert!(msg.contains("the repository"), "{root}: {msg}");
        }
    }

    /// A root that is a symbolic link is refused, and the message names where it
    /// leads and the `--path` to pass (it said "not a directory" of a link to one).
    #[test]
    fn a_symlinked_root_is_refused_naming_its_directory() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("models");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("gone", d.path().join("dangling")).unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        let refused = |root: &str| {
            walk(
                &d.path().join(root),
                &LeaveOut::default(),
                &mut Count::default(),
            )
            .map_err(|e| e.to_string())
            .unwrap_err()
        };
        let msg = refused("link");
        assert!(
            msg.contains("symbolic link") && msg.contains(&format!("--path {}", real.display())),
            "{msg}"
        );
        let msg = refused("dangling");
        assert!(msg.contains("does not lead to a directory"), "{msg}");
    }

    /// Answers [`Sink::unchanged_xattrs`] for one path and records every entry's xattrs.
    struct Known {
        path: &'static [u8],
        asked: Vec<(Vec<u8>, u64)>,
        xattrs: Vec<(Vec<u8>, Xattrs)>,
    }

    impl Sink for Known {
        fn entry(&mut self, e: Entry, _content: Content<'_>) -> Result<()> {
            self.xattrs.push((e.path, e.node.xattrs));
            Ok(())
        }
        fn warn(&mut self, path: &[u8], error: String) {
            panic!("{}: {error}", String::from_utf8_lossy(path));
        }
        fn unchanged_xattrs(&mut self, path: &[u8], node: &Node) -> Option<Xattrs> {
            self.asked.push((path.to_vec(), node.inode));
            (path == self.path).then(|| vec![(b"user.from".to_vec(), b"sink".to_vec())])
        }
    }

    /// The walk takes the xattrs the sink already has and reads only the others.
    #[test]
    fn xattrs_the_sink_has_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        for name in ["kept", "read"] {
            std::fs::write(d.path().join(name), name).unwrap();
            xattr::set(d.path().join(name), "user.from", b"file").unwrap();
        }
        let mut sink = Known {
            path: b"kept",
            asked: Vec::new(),
            xattrs: Vec::new(),
        };
        walk(d.path(), &LeaveOut::default(), &mut sink).unwrap();
        let from = |v: &[u8]| vec![(b"user.from".to_vec(), v.to_vec())];
        let of = |p: &[u8]| sink.xattrs.iter().find(|(q, _)| q == p).unwrap().1.clone();
        assert_eq!(of(b"kept"), from(b"sink"));
        assert_eq!(of(b"read"), from(b"file"));
        let ino =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(d.path().join("kept")).unwrap());
        assert!(
            sink.asked.contains(&(b"kept".to_vec(), ino)),
            "{:?}",
            sink.asked
        );
    }

    /// Build `depth` nested directories `d` below `root` (relative to descriptors:
    /// the paths exceed PATH_MAX) with a file at the bottom.
    fn nest(root: &Path, depth: usize) {
        let mut fd =
            rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(&fd, c"d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
        let f = rustix::fs::openat(
            &fd,
            c"leaf",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, b"bottom").unwrap();
    }

    /// Remove the chain built by `nest`: go down, then remove upwards through `..`
    /// (by path, or by renaming, this is quadratic in the depth).
    fn unnest(root: &Path) {
        let dir = OFlags::RDONLY | OFlags::DIRECTORY;
        let top = rustix::fs::open(root, dir, Mode::empty()).unwrap();
        let top_ino = FileStat::of(&top).unwrap().ino;
        let mut fd = top;
        while let Ok(next) = rustix::fs::openat(&fd, c"d", dir, Mode::empty()) {
            fd = next;
        }
        let _ = rustix::fs::unlinkat(&fd, c"leaf", AtFlags::empty());
        while FileStat::of(&fd).unwrap().ino != top_ino {
            let up = rustix::fs::openat(&fd, c"..", dir, Mode::empty()).unwrap();
            rustix::fs::unlinkat(&up, c"d", AtFlags::REMOVEDIR).unwrap();
            fd = up;
        }
    }

    /// Issue 7 case 15: 100,000 nested directories are walked with an explicit
    /// stack (a recursive walk overflows a thread's stack long before) and with a
    /// bounded number of open descriptors (the `..` path below `FD_BUDGET`).
    #[test]
    fn walks_100k_nested_directories_on_a_small_stack() {
        const DEPTH: usize = 100_000;
        let root = tempfile::tempdir().unwrap();
        nest(root.path(), DEPTH);
        let p = root.path().to_path_buf();
        let count = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut c = Count::default();
                walk(&p, &LeaveOut::default(), &mut c).unwrap();
                c
            })
            .unwrap()
            .join()
            .unwrap();
        unnest(root.path());
        assert!(count.warnings.is_empty(), "{:?}", count.warnings);
        assert_eq!(count.dirs, DEPTH + 1);
        assert_eq!(count.done, DEPTH + 1);
        assert_eq!(count.files, vec![b"bottom".to_vec()]);
    }

    /// Issue 7 case 17: a name that is a symlink by the time it is opened is never
    /// followed, and a different file under the recorded name is refused.
    #[test]
    fn live_file_refuses_a_swapped_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"mine").unwrap();
        std::fs::write(d.path().join("host"), b"host secret").unwrap();
        let dir =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let seen =
            FileStat::from_raw(&rustix::fs::statat(&dir, c"f", AtFlags::SYMLINK_NOFOLLOW).unwrap());
        let file = LiveFile {
            dir: dir.as_fd(),
            name: c"f",
            seen,
        };
        let (_, at_open) = file.open().unwrap();
        assert!(at_open.unchanged(&seen));
        // A reader thread's copy, taken before the swap, is checked the same way.
        let detached = file.detach().unwrap();
        assert!(detached.open().unwrap().1.unchanged(&seen));

        // The original stays alive under another name, so no new file can reuse
        // its inode number.
        std::fs::hard_link(d.path().join("f"), d.path().join("keep")).unwrap();
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::os::unix::fs::symlink(d.path().join("host"), d.path().join("f")).unwrap();
        assert!(matches!(file.open(), Err(OpenError::Replaced)));
        assert!(matches!(detached.open(), Err(OpenError::Replaced)));

        std::fs::remove_file(d.path().join("f")).unwrap();
        std::fs::write(d.path().join("other"), b"another file").unwrap();
        std::fs::rename(d.path().join("other"), d.path().join("f")).unwrap();
        assert!(matches!(file.open(), Err(OpenError::Replaced)));
    }
}
