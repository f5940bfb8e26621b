//! Restore into a directory.
//!
//! The walk creates directories, links and special files in name order and creates
//! regular files empty; file contents are then written in parallel batches (rayon),
//! skipping all-zero chunks so sparse files stay sparse. Metadata is applied last and
//! in the order that keeps it: xattrs, owner (as root), mode (after chown, which would
//! clear setuid), times; directories deepest first, after their contents.
//!
//! Safety against a hostile or corrupt repository and an existing target: every name
//! is checked to be one path component, nothing is created by following a symlink
//! (an existing entry of another type is removed first, files are created with
//! `O_EXCL`), and with `delete` entries absent from the snapshot are removed.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::load_tree;
use crate::snapshot::Snapshot;
use crate::tree::{valid_name, Node, NodeKind};

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

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Entries restored without some metadata, or skipped (devices as non-root,
    /// sockets that cannot be bound).
    pub warnings: Vec<String>,
}

struct FileJob {
    path: PathBuf,
    node: Node,
}

struct State<'r> {
    repo: &'r Repository,
    links: HashMap<u64, PathBuf>,
    jobs: Vec<FileJob>,
    job_bytes: u64,
    dirs: Vec<(PathBuf, Node)>,
    report: Report,
    progress: Progress,
    is_root: bool,
    delete: bool,
    filter: Filter,
}

/// Restore `snap` into `target`.
pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
    opts: &Options,
    progress: &Progress,
) -> Result<Report> {
    if target.exists() {
        let md = fs::symlink_metadata(target).ctx(|| format!("stat {}", target.display()))?;
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
    } else {
        fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))?;
    }
    let mut st = State {
        repo,
        links: HashMap::new(),
        jobs: Vec::new(),
        job_bytes: 0,
        dirs: Vec::new(),
        report: Report::default(),
        progress: progress.clone(),
        is_root: unsafe { libc::geteuid() } == 0,
        delete: opts.delete,
        filter: opts.filter.clone(),
    };
    for inc in opts.filter.includes() {
        let p = String::from_utf8_lossy(inc);
        crate::restore::lookup(repo, &snap.tree, &p)?;
    }
    if opts.filter.is_all() {
        progress.set_total(snap.stats.bytes);
    }
    let top = if opts.filter.include.is_empty() {
        Take::Whole
    } else {
        Take::Partial
    };
    restore_tree(&mut st, &snap.tree, target, b"", top)?;
    flush_jobs(&mut st)?;
    let root = snap.root_node();
    st.dirs.push((target.to_path_buf(), root));
    let dirs = std::mem::take(&mut st.dirs);
    for (path, node) in dirs.iter().rev() {
        apply_meta(&mut st, path, node)?;
    }
    progress.finish();
    Ok(st.report)
}

/// Restore the tree `tree` into `dir`, which is `rel` in the snapshot; `take` is what
/// the filter made of `dir` (only `Whole` directories are cleaned by `delete`).
fn restore_tree(
    st: &mut State<'_>,
    tree: &crate::id::Id,
    dir: &Path,
    rel: &[u8],
    take: Take,
) -> Result<()> {
    let nodes = load_tree(st.repo, tree)?;
    if st.delete && take == Take::Whole {
        remove_extraneous(dir, &nodes, rel, &st.filter)?;
    }
    for node in nodes {
        if !valid_name(&node.name) {
            return Err(Error::Corrupt(format!(
                "a tree holds the invalid name {:?}",
                node.name_lossy()
            )));
        }
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(&node.name);
        let child_take = st.filter.take(&child_rel, &node.name, take);
        if child_take == Take::Skip || (child_take == Take::Partial && node.kind != NodeKind::Dir) {
            continue;
        }
        let path = dir.join(OsStr::from_bytes(&node.name));
        clear_conflict(&path, node.kind)?;
        match node.kind {
            NodeKind::Dir => {
                match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io_path("create directory", &path, e)),
                }
                st.report.dirs += 1;
                let sub = node.subtree().ok_or_else(|| {
                    Error::Corrupt(format!("directory {} has no tree", path.display()))
                })?;
                restore_tree(st, &sub, &path, &child_rel, child_take)?;
                st.dirs.push((path, node));
            }
            NodeKind::File => {
                if node.link_group != 0 {
                    if let Some(first) = st.links.get(&node.link_group) {
                        fs::hard_link(first, &path)
                            .ctx(|| format!("link {} to {}", path.display(), first.display()))?;
                        st.report.files += 1;
                        continue;
                    }
                    st.links.insert(node.link_group, path.clone());
                }
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .ctx(|| format!("create {}", path.display()))?;
                st.job_bytes += node.size;
                st.jobs.push(FileJob { path, node });
                if st.jobs.len() >= 256 || st.job_bytes >= 64 << 20 {
                    flush_jobs(st)?;
                }
            }
            NodeKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), &path)
                    .ctx(|| format!("create symlink {}", path.display()))?;
                apply_meta(st, &path, &node)?;
            }
            NodeKind::Fifo | NodeKind::CharDev | NodeKind::BlockDev => {
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
                    let e = std::io::Error::last_os_error();
                    st.report.warnings.push(format!(
                        "{}: cannot create {:?}: {e}",
                        path.display(),
                        node.kind
                    ));
                    continue;
                }
                apply_meta(st, &path, &node)?;
            }
            NodeKind::Socket => match std::os::unix::net::UnixListener::bind(&path) {
                Ok(_) => apply_meta(st, &path, &node)?,
                Err(e) => st
                    .report
                    .warnings
                    .push(format!("{}: socket not recreated: {e}", path.display())),
            },
        }
    }
    Ok(())
}

/// Remove whatever is at `path` unless it is a directory and a directory is wanted.
fn clear_conflict(path: &Path, kind: NodeKind) -> Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io_path("stat", path, e)),
    };
    if md.is_dir() {
        if kind == NodeKind::Dir {
            return Ok(());
        }
        fs::remove_dir_all(path).ctx(|| format!("remove {}", path.display()))
    } else {
        fs::remove_file(path).ctx(|| format!("remove {}", path.display()))
    }
}

/// Remove the entries of `dir` (which is `rel` in the snapshot) that `nodes` lacks,
/// except those the filter excludes: an excluded entry is left alone either way.
fn remove_extraneous(dir: &Path, nodes: &[Node], rel: &[u8], filter: &Filter) -> Result<()> {
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        let name = e.file_name();
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(name.as_bytes());
        let excluded = filter.take(&child_rel, name.as_bytes(), Take::Whole) == Take::Skip;
        if !excluded
            && nodes
                .binary_search_by(|n| n.name.as_slice().cmp(name.as_bytes()))
                .is_err()
        {
            let p = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                fs::remove_dir_all(&p).ctx(|| format!("remove {}", p.display()))?;
            } else {
                fs::remove_file(&p).ctx(|| format!("remove {}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Write the queued files' contents in parallel, then their metadata.
fn flush_jobs(st: &mut State<'_>) -> Result<()> {
    let jobs = std::mem::take(&mut st.jobs);
    st.job_bytes = 0;
    let repo = st.repo;
    let progress = st.progress.clone();
    jobs.par_iter()
        .map(|j| write_content(repo, j, &progress))
        .collect::<Result<Vec<()>>>()?;
    for j in jobs {
        st.report.files += 1;
        st.report.bytes += j.node.size;
        apply_meta(st, &j.path, &j.node)?;
    }
    Ok(())
}

fn write_content(repo: &Repository, j: &FileJob, progress: &Progress) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(&j.path)
        .ctx(|| format!("open {}", j.path.display()))?;
    let mut off = 0u64;
    for id in &j.node.content {
        let data = repo.read_blob(id)?;
        // All-zero chunks become holes: sparse files stay sparse, and the bytes read
        // back are the same.
        if !data.iter().all(|&b| b == 0) {
            f.write_all_at(&data, off)
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
    Ok(())
}

fn apply_meta(st: &mut State<'_>, path: &Path, n: &Node) -> Result<()> {
    for (k, v) in &n.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(k), v) {
            st.report.warnings.push(format!(
                "{}: xattr {} not restored: {e}",
                path.display(),
                String::from_utf8_lossy(k)
            ));
        }
    }
    if st.is_root {
        std::os::unix::fs::lchown(path, Some(n.uid), Some(n.gid))
            .ctx(|| format!("chown {}", path.display()))?;
    }
    if n.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(n.mode & 0o7777))
            .ctx(|| format!("chmod {}", path.display()))?;
    }
    let t = FileTime::from_unix_time(n.mtime, n.mtime_nsec);
    filetime::set_symlink_file_times(path, t, t)
        .ctx(|| format!("set times of {}", path.display()))?;
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
