//! Restore into a directory.
//!
//! The walk creates directories, links and special files in name order; file
//! contents are written in parallel batches (rayon), skipping all-zero chunks so
//! sparse files stay sparse. The chunks of a batch's small files are read first,
//! each distinct chunk once and each pack's needed range in one read ([`plan`]);
//! every chunk is verified against its id. Trees are walked with an explicit stack: a snapshot's
//! depth is untrusted input, and a path deeper than the kernel accepts becomes one
//! listed failure, not a stack overflow.
//!
//! Nothing half-written replaces anything: each regular file is written under a
//! temporary name in its directory (mode 0600), given its metadata, and renamed over
//! its final name only when every chunk was read and verified. A file that fails
//! (a damaged chunk, an uncreatable name) leaves the target's entry of that name as
//! it was; the failure is collected in [`Report::problems`] and the restore goes on.
//! Only conditions that would fail every later entry as well (disk full, quota,
//! read-only filesystem, I/O error, a remote repository's server gone after its
//! retries) stop it.
//!
//! Metadata is applied in the order that keeps what the kernel resets: owner first
//! (`chown` clears setuid/setgid and file capabilities), then mode, then xattrs
//! (`security.capability` included), then times; directories deepest first, after
//! their contents. Directories are created 0700 and files 0600 until their recorded
//! modes are set, so the target is private while it is incomplete.
//!
//! Safety against a hostile or corrupt repository and an existing target: every name
//! is checked to be one path component, nothing is created by following a symlink
//! (an existing entry of another type is removed first, files are created with
//! `O_EXCL` and renamed into place), and with `delete` entries absent from the
//! snapshot are removed, but never inside another filesystem mounted below the
//! target. Without `delete`, a non-empty directory in the way of a file is kept
//! (it holds what the snapshot does not have). A target that holds the local
//! repository, or lies inside it, is refused before anything is written.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use filetime::FileTime;
use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::plan;
use crate::snapshot::Snapshot;
use crate::tree::{valid_name, Node, NodeKind};
use crate::walk::load as load_tree;

/// How to treat an existing target.
#[derive(Clone, Default)]
pub struct Options {
    /// Restore into a non-empty target, replacing entries of the same name.
    pub force: bool,
    /// Remove entries of the target that are not in the snapshot (the target ends up
    /// equal to the snapshot). Implies `force`. With a [`Filter`], only inside the
    /// included subtrees, and never entries the filter excludes.
    pub delete: bool,
    /// Which part of the snapshot to restore (everything by default).
    pub filter: Filter,
    /// Set (to a signal's number, or any non-zero value) from outside, such as a
    /// signal handler, to stop the restore: it stops between entries and between
    /// chunks, removes its temporary files and returns [`Error::Interrupted`]. What
    /// was renamed into place stays; nothing half-written does.
    pub stop: Arc<AtomicUsize>,
}

/// Which entries of a snapshot a partial restore takes: the subtrees at the
/// `include` paths (all of it when there are none), minus every entry whose path
/// relative to the snapshot root, or whose name, matches an `exclude` glob.
#[derive(Clone, Default)]
pub struct Filter {
    include: Vec<Vec<u8>>,
    exclude: Option<globset::GlobSet>,
}

/// What a [`Filter`] makes of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Take {
    /// Left out, with everything below it.
    Skip,
    /// A directory on the way to an included path: created, but only the children
    /// that lead to an included path are taken.
    Partial,
    /// Taken, with everything below it that no exclude matches.
    Whole,
}

impl Filter {
    /// `include`: paths relative to the snapshot root (`models/blobs`); `exclude`:
    /// globs (`*.log`, `cache/**`). A bad path or glob is a usage error.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        let mut inc = Vec::new();
        for p in include {
            match crate::source::normalize_path(p.as_bytes()) {
                Some(n) if !n.is_empty() => inc.push(n),
                Some(_) => {} // the root: everything
                None => {
                    return Err(Error::Usage(format!(
                        "--include {p:?}: a path inside the snapshot, without `..`"
                    )))
                }
            }
        }
        if inc.len() < include.len() {
            inc.clear();
        }
        let exclude = if exclude.is_empty() {
            None
        } else {
            let mut b = globset::GlobSetBuilder::new();
            for g in exclude {
                b.add(
                    globset::Glob::new(g)
                        .map_err(|e| Error::Usage(format!("bad --exclude pattern {g:?}: {e}")))?,
                );
            }
            Some(
                b.build()
                    .map_err(|e| Error::Usage(format!("bad --exclude: {e}")))?,
            )
        };
        Ok(Filter {
            include: inc,
            exclude,
        })
    }

    /// Whether the restore reaches the path `rel` (relative to the snapshot root):
    /// every entry on the way to it is taken.
    fn reaches(&self, rel: &[u8]) -> bool {
        let mut parent = if self.include.is_empty() {
            Take::Whole
        } else {
            Take::Partial
        };
        let mut end = 0;
        for name in rel.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
            end = if end == 0 {
                name.len()
            } else {
                end + 1 + name.len()
            };
            parent = self.take(&rel[..end], name, parent);
            if parent == Take::Skip {
                return false;
            }
        }
        true
    }

    /// The include paths (normalized), to check that each exists in the snapshot.
    pub fn includes(&self) -> impl Iterator<Item = &[u8]> {
        self.include.iter().map(|p| p.as_slice())
    }

    /// Whether the filter takes everything.
    pub fn is_all(&self) -> bool {
        self.include.is_empty() && self.exclude.is_none()
    }

    fn take(&self, rel: &[u8], name: &[u8], parent: Take) -> Take {
        if let Some(ex) = &self.exclude {
            let rel_s = String::from_utf8_lossy(rel);
            let name_s = String::from_utf8_lossy(name);
            if ex.is_match(rel_s.as_ref()) || ex.is_match(name_s.as_ref()) {
                return Take::Skip;
            }
        }
        if parent == Take::Whole || self.include.is_empty() {
            return Take::Whole;
        }
        let under = |p: &[u8], dir: &[u8]| p.starts_with(dir) && p.get(dir.len()) == Some(&b'/');
        if self.include.iter().any(|p| p == rel || under(rel, p)) {
            Take::Whole
        } else if self.include.iter().any(|p| under(p, rel)) {
            Take::Partial
        } else {
            Take::Skip
        }
    }
}

/// What went wrong with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The entry (and for a directory, what is below it) was not restored; the
    /// target keeps whatever it had under that name.
    NotRestored,
    /// The entry was restored without some of its metadata (named in the detail).
    Metadata,
}

/// One entry that was not restored exactly.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The path in the target.
    pub path: PathBuf,
    pub kind: ProblemKind,
    /// What failed, for the operator.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ProblemKind::NotRestored => {
                write!(f, "{}: not restored: {}", self.path.display(), self.detail)
            }
            ProblemKind::Metadata => write!(f, "{}: {}", self.path.display(), self.detail),
        }
    }
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub files: u64,
    pub dirs: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries not restored, or restored without some metadata; empty when the
    /// target holds exactly the snapshot.
    pub problems: Vec<Problem>,
}

impl Report {
    /// How the restore into `target` ended, for the exit code:
    /// [`Error::RestoreIncomplete`] when some entries were not restored exactly
    /// (they are in `problems`), else `Ok`.
    pub fn outcome(&self, target: &str) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(Error::RestoreIncomplete {
            target: target.to_string(),
            problems: self.problems.len(),
        })
    }
}

struct FileJob {
    /// Temporary file, in the same directory as `path`; removed if dropped before
    /// it is renamed into place.
    tmp: tempfile::TempPath,
    path: PathBuf,
    node: Node,
}

struct Frame {
    dir: PathBuf,
    /// `dir`'s path in the snapshot.
    rel: Vec<u8>,
    /// What the filter made of `dir`.
    take: Take,
    nodes: std::vec::IntoIter<Node>,
}

struct State<'r> {
    repo: &'r Repository,
    /// Link group → the path of its first member, once that is in place.
    links: HashMap<u64, PathBuf>,
    /// Link groups whose first member is in `jobs`, not yet written.
    pending_links: HashSet<u64>,
    jobs: Vec<FileJob>,
    job_bytes: u64,
    /// Bytes of the queued files whose chunks are read by a plan ([`plan`]).
    plan_bytes: u64,
    dirs: Vec<(PathBuf, Node)>,
    report: Report,
    progress: Progress,
    is_root: bool,
    delete: bool,
    filter: Filter,
    stop: Arc<AtomicUsize>,
    /// With `delete`: the mount points below the target (resolved), whose contents
    /// the restore leaves alone. Usually none.
    mounts: Vec<PathBuf>,
}

impl State<'_> {
    fn not_restored(&mut self, path: &Path, detail: impl Into<String>) {
        self.report.problems.push(Problem {
            path: path.to_path_buf(),
            kind: ProblemKind::NotRestored,
            detail: detail.into(),
        });
    }
}

/// Restore `snap` into `target`. Per-entry failures are collected in the report;
/// the error is for what stops the whole restore (an unusable target, a damaged
/// root tree, a full disk).
pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
    opts: &Options,
    progress: &Progress,
) -> Result<Report> {
    refuse_repository_inside(repo, snap, target, opts)?;
    // A typo in --include is refused before the target is made.
    for inc in opts.filter.includes() {
        let p = String::from_utf8_lossy(inc);
        crate::walk::lookup(repo, &snap.tree, &p)?;
    }
    if target.exists() {
        let md = fs::symlink_metadata(target).ctx(|| format!("stat {}", target.display()))?;
        if md.file_type().is_symlink() {
            // Never followed: a restore creates nothing through a symlink.
            let to = fs::read_link(target).unwrap_or_default();
            return Err(Error::Usage(format!(
                "{} is a symlink (to {}); a restore does not follow it: give the directory itself as --to",
                target.display(),
                to.display()
            )));
        }
        if !md.is_dir() {
            return Err(Error::Usage(format!(
                "{} exists and is not a directory; choose a new path for --to",
                target.display()
            )));
        }
        let non_empty = fs::read_dir(target)
            .ctx(|| format!("read {}", target.display()))?
            .next()
            .is_some();
        if non_empty && !(opts.force || opts.delete) {
            return Err(Error::Usage(format!(
                "{} is not empty; restore into a new or empty directory, or pass --force to replace the entries it shares with the snapshot",
                target.display()
            )));
        }
        // Partial files of a restore that was killed or interrupted here (those
        // below, in each directory the restore enters).
        if opts.filter.is_all() {
            crate::fsutil::remove_dead_temps(target);
        }
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(target)
            .ctx(|| format!("create {}", target.display()))?;
    }
    let mut st = State {
        repo,
        links: HashMap::new(),
        pending_links: HashSet::new(),
        jobs: Vec::new(),
        job_bytes: 0,
        plan_bytes: 0,
        dirs: Vec::new(),
        report: Report::default(),
        progress: progress.clone(),
        // SAFETY: geteuid has no preconditions and cannot fail.
        is_root: unsafe { libc::geteuid() } == 0,
        delete: opts.delete,
        filter: opts.filter.clone(),
        stop: opts.stop.clone(),
        mounts: if opts.delete {
            crate::fsutil::mounts_below(target)
        } else {
            Vec::new()
        },
    };
    if opts.filter.is_all() {
        progress.set_total(snap.stats.bytes);
    }
    let top = if opts.filter.include.is_empty() {
        Take::Whole
    } else {
        Take::Partial
    };
    let nodes = load_tree(repo, &snap.tree)?;
    if st.delete && top == Take::Whole {
        remove_extraneous(&mut st, target, &nodes, b"")?;
    }
    let mut stack = vec![Frame {
        dir: target.to_path_buf(),
        rel: Vec::new(),
        take: top,
        nodes: nodes.into_iter(),
    }];
    while let Some(top) = stack.last_mut() {
        if st.stop.load(Ordering::Relaxed) != 0 {
            // Dropping the queued jobs removes their temporary files.
            return Err(Error::Interrupted);
        }
        let Some(node) = top.nodes.next() else {
            stack.pop();
            continue;
        };
        let mut rel = top.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&node.name);
        let take = st.filter.take(&rel, &node.name, top.take);
        if take == Take::Skip || (take == Take::Partial && node.kind != NodeKind::Dir) {
            continue;
        }
        let dir = top.dir.clone();
        if let Some(frame) = restore_entry(&mut st, &dir, node, rel, take)? {
            stack.push(frame);
        }
    }
    flush_jobs(&mut st)?;
    let root = snap.root_node();
    st.dirs.push((target.to_path_buf(), root));
    // Directories were recorded parents first: reversed, each one's times are set
    // after everything inside it is done.
    let dirs = std::mem::take(&mut st.dirs);
    for (path, node) in dirs.iter().rev() {
        apply_meta(&mut st, path, node)?;
    }
    progress.finish();
    Ok(st.report)
}

/// Refuse a target that holds the repository, or lies inside it: with `--delete` the
/// restore would remove the repository, and with `--force` a snapshot that holds an
/// older copy of it would write that copy over it. [`Error::Usage`] names both paths.
/// Only a local repository can be in the way; a path that does not exist yet is taken
/// from its nearest existing ancestor, so a symlink on the way is followed as the
/// restore would follow it.
fn refuse_repository_inside(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
    opts: &Options,
) -> Result<()> {
    let Some(root) = repo.local_root() else {
        return Ok(());
    };
    let Ok(root) = fs::canonicalize(root) else {
        return Ok(());
    };
    let resolved = resolve_as_created(target)?;
    // The repository below the target (a home directory restored with its default
    // repository in it) is in the way only where the restore reaches it: `--delete`
    // there, or a snapshot that holds its path.
    let reached = match root.strip_prefix(&resolved) {
        Ok(rel) if rel.as_os_str().is_empty() => true,
        Ok(rel) => {
            let rel = rel.as_os_str().as_bytes();
            opts.filter.reaches(rel)
                && (opts.delete
                    || match crate::walk::lookup(repo, &snap.tree, &String::from_utf8_lossy(rel)) {
                        Ok(n) => n.is_some(),
                        // No such path in the snapshot (or a file where it has a
                        // directory, which `--force` leaves in place): not reached.
                        Err(Error::Usage(_)) => false,
                        // The snapshot's trees could not be read: assume it is.
                        Err(_) => true,
                    })
        }
        Err(_) => resolved.starts_with(&root),
    };
    if reached {
        return Err(Error::Usage(format!(
            "the repository {} is inside {} or holds it: restoring there could overwrite or remove the repository. Restore into a directory outside it (then move what you need), or move the repository elsewhere first",
            root.display(),
            resolved.display()
        )));
    }
    Ok(())
}

/// `path` as the kernel will resolve it once the restore has created it: component
/// by component, each existing prefix through its symlinks (`fs::canonicalize`), a
/// `..` after a directory still to be created taken as that directory's parent (as
/// `mkdir -p` and the kernel then take it). `sib/new/..` is `sib`, whatever exists.
fn resolve_as_created(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(path).ctx(|| format!("resolve {}", path.display()))?;
    let mut p = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                p.pop();
            }
            Component::Normal(n) => {
                p.push(n);
                if let Ok(real) = fs::canonicalize(&p) {
                    p = real;
                }
            }
        }
    }
    Ok(p)
}

/// Whether an I/O error would fail every later entry too, so the restore stops on
/// it rather than listing it once per file.
fn fatal(e: &std::io::Error) -> bool {
    matches!(
        crate::fsutil::os_code(e),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS) | Some(libc::EIO)
    )
}

/// Split an error into one that stops the restore (`Err`) and one that is listed
/// for this entry (`Ok(detail)`).
fn classify(e: Error) -> Result<String> {
    match e {
        // The server went away (retries spent): every later read fails the same way.
        Error::Interrupted
        | Error::Storage {
            source: crate::storage::StorageError::Transient { .. },
            ..
        } => Err(e),
        Error::Io { ref source, .. } if fatal(source) => Err(e),
        // The index is damaged (a table block failed its checksum): every later
        // lookup may fail too, and what it left unrestored is the cache's fault, not
        // the data's. Stop, so that `index rebuild` and the same restore again put
        // everything in place (and a volume's containers stay stopped meanwhile).
        Error::Index(_) => Err(e),
        Error::Io { context, source } => Ok(format!("{context}: {source}")),
        other => Ok(other.to_string()),
    }
}

/// Restore one node into `dir`; `rel` is its path in the snapshot and `take` what
/// the filter made of it. Returns the frame of a directory to descend into.
fn restore_entry(
    st: &mut State<'_>,
    dir: &Path,
    node: Node,
    rel: Vec<u8>,
    take: Take,
) -> Result<Option<Frame>> {
    if !valid_name(&node.name) {
        st.not_restored(
            dir,
            format!(
                "the snapshot holds the invalid name {:?} here (a damaged or hostile tree)",
                node.name_lossy()
            ),
        );
        return Ok(None);
    }
    let path = dir.join(OsStr::from_bytes(&node.name));
    match node.kind {
        NodeKind::Dir => {
            let created =
                clear_conflict(&path, node.kind, st.delete).and_then(
                    |_| match fs::DirBuilder::new().mode(0o700).create(&path) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            // What an interrupted restore left half-written here.
                            crate::fsutil::remove_dead_temps(&path);
                            Ok(())
                        }
                        Err(e) => Err(Error::io_path("create directory", &path, e)),
                    },
                );
            if let Err(e) = created {
                let detail = classify(e)?;
                st.not_restored(&path, detail);
                return Ok(None);
            }
            st.report.dirs += 1;
            let Some(sub) = node.subtree() else {
                st.not_restored(&path, "the directory has no tree (a damaged snapshot)");
                return Ok(None);
            };
            let nodes = match load_tree(st.repo, &sub) {
                Ok(n) => n,
                Err(e) => {
                    let detail = classify(e)?;
                    st.not_restored(&path, format!("its contents: {detail}"));
                    st.dirs.push((path, node));
                    return Ok(None);
                }
            };
            if st.delete && take == Take::Whole {
                let mounted = !st.mounts.is_empty()
                    && fs::canonicalize(&path).is_ok_and(|p| st.mounts.contains(&p));
                if mounted {
                    st.not_restored(
                        &path,
                        "what the snapshot lacks here was not removed: it is a mount point (another filesystem), and a restore never removes what is mounted there",
                    );
                } else {
                    remove_extraneous(st, &path, &nodes, &rel)?;
                }
            }
            st.dirs.push((path.clone(), node));
            Ok(Some(Frame {
                dir: path,
                rel,
                take,
                nodes: nodes.into_iter(),
            }))
        }
        NodeKind::File => {
            if node.link_group != 0 {
                if st.pending_links.contains(&node.link_group) {
                    // The first member is still being written: finish it first.
                    flush_jobs(st)?;
                }
                if let Some(first) = st.links.get(&node.link_group).cloned() {
                    if let Err(e) = link_into_place(&first, &path, st.delete) {
                        let detail = classify(e)?;
                        st.not_restored(&path, detail);
                    } else {
                        st.report.files += 1;
                    }
                    return Ok(None);
                }
                // No member in place yet (none seen, or the first one failed): this
                // one carries the content.
                st.pending_links.insert(node.link_group);
            }
            let created = crate::fsutil::temp_file(dir)
                .ctx(|| format!("create a temporary file in {}", dir.display()));
            let tmp = match created {
                Ok(t) => t.into_temp_path(),
                Err(e) => {
                    st.pending_links.remove(&node.link_group);
                    let detail = classify(e)?;
                    st.not_restored(&path, detail);
                    return Ok(None);
                }
            };
            st.job_bytes += node.size;
            if node.size <= plan::MAX_FILE {
                st.plan_bytes += node.size;
            }
            st.jobs.push(FileJob { tmp, path, node });
            if st.jobs.len() >= 256 || st.job_bytes >= 64 << 20 || st.plan_bytes >= plan::MAX_BATCH
            {
                flush_jobs(st)?;
            }
            Ok(None)
        }
        _ => {
            if let Err(e) = clear_conflict(&path, node.kind, st.delete)
                .and_then(|_| create_special(&path, &node))
            {
                let detail = classify(e)?;
                st.not_restored(&path, detail);
                return Ok(None);
            }
            apply_meta(st, &path, &node)?;
            Ok(None)
        }
    }
}

/// Create a symlink, fifo, device node or socket at `path` (which is free).
fn create_special(path: &Path, node: &Node) -> Result<()> {
    match node.kind {
        NodeKind::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), path)
            .ctx(|| format!("create symlink {}", path.display())),
        NodeKind::Socket => std::os::unix::net::UnixListener::bind(path)
            .map(drop)
            .ctx(|| format!("create socket {}", path.display())),
        _ => {
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| Error::Corrupt("path with NUL".into()))?;
            let (fmt, dev) = match node.kind {
                NodeKind::Fifo => (libc::S_IFIFO, 0),
                NodeKind::CharDev => (
                    libc::S_IFCHR,
                    libc::makedev(node.rdev_major, node.rdev_minor),
                ),
                _ => (
                    libc::S_IFBLK,
                    libc::makedev(node.rdev_major, node.rdev_minor),
                ),
            };
            // SAFETY: `c` is a valid NUL-terminated path; mknod does not retain it.
            let r = unsafe { libc::mknod(c.as_ptr(), fmt | 0o600, dev) };
            if r != 0 {
                return Err(Error::io(
                    format!("create {:?} {}", node.kind, path.display()),
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
    }
}

/// Make `path` a hard link to `first`, replacing what is there atomically.
fn link_into_place(first: &Path, path: &Path, delete: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = crate::fsutil::temp_made_by(dir, |p| fs::hard_link(first, p))
        .ctx(|| format!("link {} to {}", path.display(), first.display()))?
        .into_temp_path();
    // On error, dropping `tmp` removes the link.
    rename_into_place(&tmp, path, delete)?;
    tmp.disable_cleanup(true);
    Ok(())
}

/// Rename a finished temporary file over `path`; a directory in the way is removed
/// as [`remove_in_the_way`] allows (the snapshot has a file there).
fn rename_into_place(tmp: &Path, path: &Path, delete: bool) -> Result<()> {
    match fs::rename(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::ENOTEMPTY)) => {
            remove_in_the_way(path, delete)?;
            fs::rename(tmp, path).ctx(|| format!("rename into {}", path.display()))
        }
        Err(e) => Err(Error::io_path("rename into", path, e)),
    }
}

/// Remove whatever is at `path` unless it is a directory and a directory is wanted;
/// a directory is removed as [`remove_in_the_way`] allows.
fn clear_conflict(path: &Path, kind: NodeKind, delete: bool) -> Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io_path("stat", path, e)),
    };
    if md.is_dir() {
        if kind == NodeKind::Dir {
            return Ok(());
        }
        remove_in_the_way(path, delete)
    } else {
        fs::remove_file(path).ctx(|| format!("remove {}", path.display()))
    }
}

/// Remove the directory `path`, where the snapshot has an entry of another type. An
/// empty one always goes. A non-empty one goes only with `delete`: `--force` keeps
/// what the snapshot does not have, and what is inside is not in the snapshot; the
/// entry is then not restored, and the error says why (for [`classify`] to list).
fn remove_in_the_way(path: &Path, delete: bool) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !delete => Err(Error::Usage(
            "a non-empty directory is in the way, and --force keeps what the snapshot does not have; move it aside, or restore with --delete to make the target equal the snapshot".into(),
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => remove_tree(path),
        Err(e) => Err(Error::io_path("remove", path, e)),
    }
}

/// Remove the directory `path` and everything below it, without leaving its
/// filesystem: a mount point inside (or `path` itself, when it is one) is an error
/// naming it, and nothing of the other filesystem is touched. `remove_dir_all` would
/// go into a mounted volume or a bind mount and empty it.
fn remove_tree(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let dev = fs::symlink_metadata(parent)
        .ctx(|| format!("stat {}", parent.display()))?
        .dev();
    // A bind mount of the same filesystem has the same device number: the mount
    // table names those (`path` itself, or one below it). Checked before anything is
    // removed, with one read of the table.
    let resolved = fs::canonicalize(path).ok();
    let mounted = resolved.as_ref().and_then(|p| {
        crate::fsutil::mount_points()
            .into_iter()
            .find(|m| m.starts_with(p))
    });
    if let Some(m) = mounted {
        return Err(Error::Usage(format!(
            "{} is or holds the mount point {}, and a restore never removes what is mounted there; unmount it, or restore elsewhere",
            path.display(),
            m.display()
        )));
    }
    // Depth first, with an explicit stack: the target's depth is not ours to trust.
    let mut stack = vec![(path.to_path_buf(), false)];
    while let Some((dir, listed)) = stack.pop() {
        if listed {
            fs::remove_dir(&dir).ctx(|| format!("remove {}", dir.display()))?;
            continue;
        }
        let md = fs::symlink_metadata(&dir).ctx(|| format!("stat {}", dir.display()))?;
        if md.dev() != dev {
            return Err(Error::Usage(format!(
                "{} is a mount point (another filesystem), and a restore never removes what is mounted there; unmount it, or restore elsewhere",
                dir.display()
            )));
        }
        stack.push((dir.clone(), true));
        for e in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let e = e.ctx(|| format!("read {}", dir.display()))?;
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push((p, false));
            } else {
                fs::remove_file(&p).ctx(|| format!("remove {}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Remove the entries of `dir` (which is `rel` in the snapshot) that `nodes` lacks,
/// except those the filter excludes: an excluded entry is left alone either way.
/// An entry that cannot be removed is listed in `st`'s report and the rest go on;
/// the error is for what stops the restore ([`classify`]).
fn remove_extraneous(st: &mut State<'_>, dir: &Path, nodes: &[Node], rel: &[u8]) -> Result<()> {
    let listed = match fs::read_dir(dir).ctx(|| format!("read {}", dir.display())) {
        Ok(l) => l,
        Err(e) => {
            let detail = classify(e)?;
            st.not_restored(dir, format!("extra entries not removed: {detail}"));
            return Ok(());
        }
    };
    for e in listed {
        let e = match e.ctx(|| format!("read {}", dir.display())) {
            Ok(e) => e,
            Err(e) => {
                let detail = classify(e)?;
                st.not_restored(dir, format!("extra entries not removed: {detail}"));
                return Ok(());
            }
        };
        let name = e.file_name();
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(name.as_bytes());
        let excluded = st.filter.take(&child_rel, name.as_bytes(), Take::Whole) == Take::Skip;
        if excluded
            || nodes
                .binary_search_by(|n| n.name.as_slice().cmp(name.as_bytes()))
                .is_ok()
        {
            continue;
        }
        let p = e.path();
        let removed = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&p)
        } else {
            fs::remove_file(&p).ctx(|| format!("remove {}", p.display()))
        };
        if let Err(e) = removed {
            let detail = classify(e)?;
            st.not_restored(
                &p,
                format!("not in the snapshot, but not removed: {detail}"),
            );
        }
    }
    Ok(())
}

/// Write the queued files (content, then metadata) in parallel, then rename each
/// complete one into place. A failed file's temporary is removed and its final name
/// left untouched.
fn flush_jobs(st: &mut State<'_>) -> Result<()> {
    let jobs = std::mem::take(&mut st.jobs);
    st.job_bytes = 0;
    st.plan_bytes = 0;
    let repo = st.repo;
    let progress = st.progress.clone();
    let is_root = st.is_root;
    let stop = &*st.stop;
    // The small files' chunks, each read once, pack range by pack range.
    let chunks = plan::read_chunks(
        repo,
        jobs.iter()
            .filter(|j| j.node.size <= plan::MAX_FILE)
            .flat_map(|j| &j.node.content),
    );
    let results: Vec<Result<Vec<String>>> = jobs
        .par_iter()
        .map(|j| write_file(repo, &chunks, j, is_root, &progress, stop))
        .collect();
    // The first fatal error (in the order of the snapshot) stops the restore; the
    // temporaries of the whole batch are removed either way.
    let mut fatal_err = None;
    for (mut j, r) in jobs.into_iter().zip(results) {
        st.pending_links.remove(&j.node.link_group);
        let r = r.and_then(|meta| rename_into_place(&j.tmp, &j.path, st.delete).map(|_| meta));
        match r {
            Ok(meta) => {
                // Renamed: nothing is left under the temporary name to remove.
                j.tmp.disable_cleanup(true);
                st.report.files += 1;
                st.report.bytes += j.node.size;
                for detail in meta {
                    st.report.problems.push(Problem {
                        path: j.path.clone(),
                        kind: ProblemKind::Metadata,
                        detail,
                    });
                }
                if j.node.link_group != 0 {
                    st.links.insert(j.node.link_group, j.path);
                }
            }
            Err(e) => {
                // Dropping `j` removes its temporary file.
                if fatal_err.is_some() {
                    continue;
                }
                match classify(e) {
                    Ok(detail) => st.not_restored(&j.path, detail),
                    Err(e) => fatal_err = Some(e),
                }
            }
        }
    }
    match fatal_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Write one file's content into its temporary and apply its metadata; returns the
/// metadata that could not be applied. Chunks are taken from `chunks` (read by the
/// batch's plan), else read here.
fn write_file(
    repo: &Repository,
    chunks: &plan::Chunks,
    j: &FileJob,
    is_root: bool,
    progress: &Progress,
    stop: &AtomicUsize,
) -> Result<Vec<String>> {
    let f = OpenOptions::new()
        .write(true)
        .open(&j.tmp)
        .ctx(|| format!("open {}", j.tmp.display()))?;
    let mut off = 0u64;
    for id in &j.node.content {
        if stop.load(Ordering::Relaxed) != 0 {
            return Err(Error::Interrupted);
        }
        let read;
        let data = match chunks.get(id) {
            Some(d) => d,
            None => {
                read = read_chunk(repo, id, &j.path)?;
                &read
            }
        };
        // All-zero chunks become holes: sparse files stay sparse, and the bytes read
        // back are the same.
        if !data.iter().all(|&b| b == 0) {
            f.write_all_at(data, off)
                .ctx(|| format!("write {}", j.path.display()))?;
        }
        off += data.len() as u64;
        progress.inc(data.len() as u64);
    }
    if off != j.node.size {
        return Err(Error::Corrupt(format!(
            "{}: content is {off} bytes, the tree says {}",
            j.path.display(),
            j.node.size
        )));
    }
    f.set_len(off)
        .ctx(|| format!("truncate {}", j.path.display()))?;
    Ok(file_meta(&f, &j.node, is_root))
}

fn read_chunk(repo: &Repository, id: &Id, path: &Path) -> Result<Vec<u8>> {
    repo.read_blob(id).map_err(|e| match e {
        Error::Io { context, source } => Error::Io {
            context: format!("read chunk {id} of {}: {context}", path.display()),
            source,
        },
        other => other,
    })
}

/// The owner of `n` as `chown(2)` takes it. An id of 4294967295 (a tar may carry
/// one) is `-1` to `chown`, which means "leave unchanged": the entry would keep
/// root's owner without a word, so it is an error to list instead.
fn settable_owner(n: &Node) -> std::io::Result<(Option<u32>, Option<u32>)> {
    if n.uid == u32::MAX || n.gid == u32::MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the id 4294967295 means \"leave unchanged\" to chown(2) and cannot be set",
        ));
    }
    Ok((Some(n.uid), Some(n.gid)))
}

/// Metadata of a regular file, through its descriptor, in the order that keeps it:
/// owner, mode, xattrs, times. Returns what could not be applied.
fn file_meta(f: &File, n: &Node, is_root: bool) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    use xattr::FileExt as _;
    let mut failed = Vec::new();
    if is_root {
        let owned = settable_owner(n).and_then(|(u, g)| std::os::unix::fs::fchown(f, u, g));
        if let Err(e) = owned {
            failed.push(format!("owner {}:{} not restored: {e}", n.uid, n.gid));
        }
    }
    if let Err(e) = f.set_permissions(fs::Permissions::from_mode(n.mode & 0o7777)) {
        failed.push(format!("mode {:o} not restored: {e}", n.mode & 0o7777));
    }
    for (k, v) in &n.xattrs {
        if let Err(e) = f.set_xattr(OsStr::from_bytes(k), v) {
            failed.push(format!(
                "xattr {} not restored: {e}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    let t = FileTime::from_unix_time(n.mtime, n.mtime_nsec);
    if let Err(e) = filetime::set_file_handle_times(f, Some(t), Some(t)) {
        failed.push(format!("times not restored: {e}"));
    }
    failed
}

/// Metadata of a directory, symlink or special file, by path without following a
/// symlink, in the order that keeps it: owner, mode, xattrs, times.
fn apply_meta(st: &mut State<'_>, path: &Path, n: &Node) -> Result<()> {
    let mut failed: Vec<std::io::Result<()>> = Vec::new();
    let mut what: Vec<String> = Vec::new();
    if st.is_root {
        what.push(format!("owner {}:{}", n.uid, n.gid));
        failed.push(settable_owner(n).and_then(|(u, g)| std::os::unix::fs::lchown(path, u, g)));
    }
    if n.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        what.push(format!("mode {:o}", n.mode & 0o7777));
        failed.push(fs::set_permissions(
            path,
            fs::Permissions::from_mode(n.mode & 0o7777),
        ));
    }
    for (k, v) in &n.xattrs {
        what.push(format!("xattr {}", String::from_utf8_lossy(k)));
        failed.push(xattr::set(path, OsStr::from_bytes(k), v));
    }
    let t = FileTime::from_unix_time(n.mtime, n.mtime_nsec);
    what.push("times".into());
    failed.push(filetime::set_symlink_file_times(path, t, t));
    for (w, r) in what.into_iter().zip(failed) {
        if let Err(e) = r {
            if fatal(&e) {
                return Err(Error::io_path(&format!("set {w} of"), path, e));
            }
            st.report.problems.push(Problem {
                path: path.to_path_buf(),
                kind: ProblemKind::Metadata,
                detail: format!("{w} not restored: {e}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_takes_included_subtrees_minus_excluded_globs() {
        let f = Filter::new(
            &["app/".into(), "./etc/x".into()],
            &["*.log".into(), "cache".into()],
        )
        .unwrap();
        assert_eq!(f.take(b"app", b"app", Take::Partial), Take::Whole);
        assert_eq!(f.take(b"app/src", b"src", Take::Whole), Take::Whole);
        assert_eq!(f.take(b"app/run.log", b"run.log", Take::Whole), Take::Skip);
        assert_eq!(f.take(b"app/cache", b"cache", Take::Whole), Take::Skip);
        assert_eq!(f.take(b"etc", b"etc", Take::Partial), Take::Partial);
        assert_eq!(f.take(b"etc/x", b"x", Take::Partial), Take::Whole);
        assert_eq!(f.take(b"etc/y", b"y", Take::Partial), Take::Skip);
        assert_eq!(
            f.take(b"application", b"application", Take::Partial),
            Take::Skip
        );
        assert!(matches!(
            Filter::new(&["../up".into()], &[]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            Filter::new(&[], &["[".into()]),
            Err(Error::Usage(_))
        ));
        assert!(Filter::new(&[], &[]).unwrap().is_all());
        // Including the root means everything.
        assert!(Filter::new(&["/".into()], &[]).unwrap().is_all());
    }
}
