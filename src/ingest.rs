//! The ingest pipeline: entries → chunks → hash → dedup → compress → packs → index →
//! snapshot commit.
//!
//! ```text
//!  source thread            workers (N)           writer thread
//!  read, FastCDC, BLAKE3 ─► zstd compress ──────► append to pack; at target size:
//!  dedup (pending+index)    (bounded channel)     fsync, rename, index the pack
//! ```
//!
//! Memory is bounded: the channels hold at most a few dozen chunks, the open pack is
//! streamed to disk, and the "pending" set only holds ids that are queued but not yet
//! indexed. Directories are turned into tree blobs as soon as the source says they are
//! complete, so a directory walk keeps only the current path's directories in memory.
//! Nothing is visible to other commands until [`snapshot`] writes the snapshot file,
//! after every pack is durable and indexed (the commit order of `docs/FORMAT.md`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{self, BlobKind, Compression, PackWriter};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{FileError, RootMeta, Snapshot, SnapshotStats, SourceKind};
use crate::source::dir::{FileStat, LiveFile, OpenError};
use crate::source::{Content, Entry, Sink};
use crate::tree::{self, Node, NodeKind};

/// What the new snapshot is.
#[derive(Clone)]
pub struct SnapshotSpec {
    pub name: String,
    pub kind: SourceKind,
    pub origin: serde_json::Value,
    pub tags: Vec<String>,
    pub run_id: Option<String>,
    /// What the run this snapshot belongs to set out to cover (`snapshot --all`).
    pub run: Option<crate::run::RunPlan>,
    pub consistency: Option<String>,
    /// The time the snapshot records. An imported old backup (`snapshot --tar FILE
    /// --time TIME`) carries its real date, so it sorts among the older snapshots
    /// instead of becoming `@latest`.
    pub time: SnapshotTime,
    /// The snapshot to compare against: its files that look unchanged (size, mtime,
    /// ctime, inode) are not read again.
    pub parent: Option<(Id, Snapshot)>,
}

/// The time a new snapshot records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotTime {
    /// When it is committed.
    #[default]
    Now,
    /// A given time (an imported backup's real date).
    At(chrono::DateTime<chrono::Utc>),
    /// The newest modification time among the entries (whole seconds), or now when
    /// the source yielded none: the date of an imported backup's content.
    NewestEntry,
}

struct Job {
    id: Id,
    kind: BlobKind,
    raw: Vec<u8>,
}

struct Stored {
    id: Id,
    kind: BlobKind,
    raw_len: u32,
    bytes: Vec<u8>,
    compression: Compression,
}

#[derive(Default)]
struct WriterStats {
    blobs: u64,
    raw: u64,
    stored: u64,
}

/// Take a snapshot: run `source`, which pushes entries into the sink it is given,
/// then commit. On any error nothing is committed; packs already written stay as
/// orphans that later snapshots reuse and `prune` removes.
pub fn snapshot(
    repo: &Repository,
    spec: SnapshotSpec,
    progress: &Progress,
    source: impl FnOnce(&mut dyn Sink) -> Result<()>,
) -> Result<(Id, Snapshot)> {
    let started = Instant::now();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let (job_tx, job_rx) = bounded::<Job>(workers * 8);
    let (st_tx, st_rx) = bounded::<Stored>(workers * 8);
    let pending: Mutex<HashSet<Id>> = Mutex::new(HashSet::new());
    let abort = AtomicBool::new(false);
    let level = repo.config.zstd_level;
    // The parent's size is a good estimate of this run's: it gives the bar an ETA.
    if let Some((_, p)) = &spec.parent {
        progress.set_total(p.stats.bytes);
    }

    std::thread::scope(|s| {
        for _ in 0..workers {
            let rx = job_rx.clone();
            let tx = st_tx.clone();
            s.spawn(move || compress_worker(rx, tx, level));
        }
        drop(job_rx);
        drop(st_tx);
        let writer = s.spawn(|| write_packs(repo, st_rx, &pending, &abort));

        let mut ing = Ingest {
            repo,
            tx: Some(job_tx),
            pending: &pending,
            root: DirBuild::new(Node::new(Vec::new(), NodeKind::Dir)),
            parent: spec.parent.as_ref().map(|(_, p)| ParentTrees::new(p.tree)),
            links_by_key: HashMap::new(),
            next_group: 1,
            stats: SnapshotStats::default(),
            errors: Vec::new(),
            progress: progress.clone(),
            newest_mtime: None,
        };
        let ran = source(&mut ing).and_then(|_| ing.finish_root());
        if ran.is_err() {
            abort.store(true, Ordering::SeqCst);
        }
        // Closing the job channel lets the workers and then the writer drain and stop.
        ing.tx = None;
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Source("pack writer panicked".into())));
        // The first cause wins: a source that stopped because the writer did (disk
        // full) reports the writer's error; a writer stopped by the source's failure
        // (`abort`) reports the source's.
        let ((tree, root), w) = match (ran, written) {
            (Err(Error::PipelineStopped), Err(w)) => return Err(w),
            (Err(e), _) => return Err(e),
            (Ok(_), Err(w)) => return Err(w),
            (Ok(r), Ok(w)) => (r, w),
        };
        repo.index().flush()?;
        let mut stats = ing.stats;
        stats.new_blobs = w.blobs;
        stats.new_bytes_raw = w.raw;
        stats.new_bytes_stored = w.stored;
        stats.duration_secs = started.elapsed().as_secs_f64();
        let snap = Snapshot {
            name: spec.name,
            kind: spec.kind,
            origin: spec.origin,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            time: match spec.time {
                SnapshotTime::Now => chrono::Utc::now(),
                SnapshotTime::At(t) => t,
                SnapshotTime::NewestEntry => ing
                    .newest_mtime
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                    .unwrap_or_else(chrono::Utc::now),
            },
            tags: spec.tags,
            parent: spec.parent.as_ref().map(|(id, _)| *id),
            run_id: spec.run_id,
            run: spec.run,
            consistency: spec.consistency,
            tree,
            root,
            stats,
            errors: ing.errors,
            cbsnap_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let id = snap.save(&repo.snapshots_dir())?;
        Ok((id, snap))
    })
}

fn compress_worker(rx: Receiver<Job>, tx: Sender<Stored>, level: i32) {
    for job in rx {
        let (bytes, compression) = pack::compress(&job.raw, level);
        let out = Stored {
            id: job.id,
            kind: job.kind,
            raw_len: job.raw.len() as u32,
            bytes,
            compression,
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}

/// The only writer of packs. A pack is indexed only after it is durable; ids leave
/// the pending set only after they are indexed, so a concurrent dedup check always
/// finds a blob in one of the two.
fn write_packs(
    repo: &Repository,
    rx: Receiver<Stored>,
    pending: &Mutex<HashSet<Id>>,
    abort: &AtomicBool,
) -> Result<WriterStats> {
    let dir = repo.packs_dir();
    let target = repo.config.pack_target_size;
    let mut stats = WriterStats::default();
    let mut cur: Option<PackWriter> = None;
    let seal = |w: PackWriter| -> Result<()> {
        let (pid, size, entries) = w
            .finish(&dir)
            .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e))?;
        repo.index().add_pack(&pid, size, &entries)?;
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        for e in &entries {
            p.remove(&e.id);
        }
        Ok(())
    };
    let result = (|| {
        for s in rx.iter() {
            if abort.load(Ordering::Relaxed) {
                break;
            }
            if cur.is_none() {
                cur = Some(
                    PackWriter::create(&dir)
                        .map_err(|e| Error::io(format!("create pack in {}", dir.display()), e))?,
                );
            }
            let w = cur.as_mut().expect("pack is open");
            w.add(s.id, s.kind, s.raw_len, &s.bytes, s.compression)
                .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e))?;
            stats.blobs += 1;
            stats.raw += s.raw_len as u64;
            stats.stored += s.bytes.len() as u64;
            if w.size() >= target {
                seal(cur.take().expect("pack is open"))?;
            }
        }
        if abort.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if let Some(w) = cur.take() {
            seal(w)?;
        }
        Ok(())
    })();
    if let Some(w) = cur.take() {
        w.abandon();
    }
    // Dropping `rx` on error makes the workers' sends fail, which stops the pipeline.
    result.map(|_| stats)
}

/// A directory being assembled.
struct DirBuild {
    node: Node,
    children: BTreeMap<Vec<u8>, Child>,
}

// Leaves are by far the most common children; boxing them would allocate per file.
#[allow(clippy::large_enum_variant)]
enum Child {
    Open(Box<DirBuild>),
    /// A leaf, or a directory whose tree is already written.
    Done(Node),
}

impl DirBuild {
    fn new(node: Node) -> DirBuild {
        DirBuild {
            node,
            children: BTreeMap::new(),
        }
    }
}

/// Trees of the parent snapshot, loaded lazily along the current path.
struct ParentTrees {
    root: Id,
    cache: HashMap<Vec<u8>, Option<std::rc::Rc<Vec<Node>>>>,
}

impl ParentTrees {
    fn new(root: Id) -> ParentTrees {
        ParentTrees {
            root,
            cache: HashMap::new(),
        }
    }

    fn dir(&mut self, repo: &Repository, path: &[u8]) -> Option<std::rc::Rc<Vec<Node>>> {
        if let Some(c) = self.cache.get(path) {
            return c.clone();
        }
        let id = if path.is_empty() {
            Some(self.root)
        } else {
            let (parent, name) = split_last(path);
            let p = self.dir(repo, parent)?;
            p.binary_search_by(|n| n.name.as_slice().cmp(name))
                .ok()
                .and_then(|i| p[i].subtree())
        };
        let t = id
            .and_then(|id| repo.read_blob(&id).ok())
            .and_then(|b| tree::decode(&b).ok())
            .map(std::rc::Rc::new);
        self.cache.insert(path.to_vec(), t.clone());
        t
    }

    fn node(&mut self, repo: &Repository, path: &[u8]) -> Option<Node> {
        let (dir, name) = split_last(path);
        let t = self.dir(repo, dir)?;
        t.binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| t[i].clone())
    }

    fn forget(&mut self, path: &[u8]) {
        self.cache.remove(path);
    }
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

struct Ingest<'a> {
    repo: &'a Repository,
    tx: Option<Sender<Job>>,
    pending: &'a Mutex<HashSet<Id>>,
    root: DirBuild,
    parent: Option<ParentTrees>,
    links_by_key: HashMap<(u64, u64), (u64, Vec<Id>, u64)>,
    next_group: u64,
    stats: SnapshotStats,
    errors: Vec<FileError>,
    progress: Progress,
    /// The newest mtime of any entry (for [`SnapshotTime::NewestEntry`]).
    newest_mtime: Option<i64>,
}

impl Ingest<'_> {
    /// Queue a blob unless the repository has it or it is already queued.
    fn put_blob(&mut self, kind: BlobKind, raw: Vec<u8>) -> Result<Id> {
        let id = Id::hash(&raw);
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.contains(&id) {
                return Ok(id);
            }
            // Checked under the lock: the writer indexes a pack before it removes the
            // pack's ids from `pending`, so an id is always in one or the other.
            if self.repo.index().contains(&id)? {
                return Ok(id);
            }
            p.insert(id);
        }
        let tx = self.tx.as_ref().expect("pipeline is open");
        if tx.send(Job { id, kind, raw }).is_err() {
            // The writer stopped (disk full, I/O error); its error is reported by `snapshot`.
            return Err(Error::PipelineStopped);
        }
        Ok(id)
    }

    fn store_stream(&mut self, r: &mut dyn Read, path: &[u8]) -> Result<(Vec<Id>, u64)> {
        let params = self.repo.config.chunker.clone();
        let mut ids = Vec::new();
        let mut failed: Option<Error> = None;
        let n = chunker::chunk_stream(
            r,
            &params,
            |c| {
                let len = c.len() as u64;
                match self.put_blob(BlobKind::Data, c) {
                    Ok(id) => {
                        ids.push(id);
                        self.stats.bytes_read += len;
                        self.progress.inc(len);
                        Ok(())
                    }
                    Err(e) => {
                        failed = Some(e);
                        Err(None)
                    }
                }
            },
            Some,
        );
        if let Some(e) = failed {
            return Err(e);
        }
        match n {
            Ok(n) => Ok((ids, n)),
            Err(Some(io)) => Err(Error::io(
                format!("read {}", String::from_utf8_lossy(path)),
                io,
            )),
            Err(None) => unreachable!("pipeline errors are returned above"),
        }
    }

    /// The open directory at `path`, creating missing directories on the way (a tar
    /// stream may name a file before, or without, its directories).
    fn open_dir(&mut self, path: &[u8]) -> Result<&mut DirBuild> {
        let mut cur = &mut self.root;
        if path.is_empty() {
            return Ok(cur);
        }
        for comp in path.split(|b| *b == b'/') {
            let child = cur.children.entry(comp.to_vec()).or_insert_with(|| {
                Child::Open(Box::new(DirBuild::new(Node::new(
                    comp.to_vec(),
                    NodeKind::Dir,
                ))))
            });
            if let Child::Done(n) = child {
                if n.kind == NodeKind::Dir {
                    return Err(Error::Source(format!(
                        "entry below {} arrived after the directory was complete",
                        String::from_utf8_lossy(path)
                    )));
                }
                // A later entry replaces an earlier non-directory of the same name, as
                // tar extraction would.
                *child = Child::Open(Box::new(DirBuild::new(Node::new(
                    comp.to_vec(),
                    NodeKind::Dir,
                ))));
            }
            cur = match child {
                Child::Open(d) => d,
                Child::Done(_) => unreachable!(),
            };
        }
        Ok(cur)
    }

    fn find_leaf(&mut self, path: &[u8]) -> Option<&mut Node> {
        let (dir, name) = split_last(path);
        let mut cur = &mut self.root;
        if !dir.is_empty() {
            for comp in dir.split(|b| *b == b'/') {
                cur = match cur.children.get_mut(comp)? {
                    Child::Open(d) => d,
                    Child::Done(_) => return None,
                };
            }
        }
        match cur.children.get_mut(name)? {
            Child::Done(n) if n.kind == NodeKind::File => Some(n),
            _ => None,
        }
    }

    fn insert(&mut self, path: &[u8], node: Node) -> Result<()> {
        let (dir, name) = split_last(path);
        let d = self.open_dir(dir)?;
        d.children.insert(name.to_vec(), Child::Done(node));
        Ok(())
    }

    /// Write the tree of an open directory (children first) and return its node.
    fn seal_dir(&mut self, mut d: DirBuild) -> Result<Node> {
        let mut nodes = Vec::with_capacity(d.children.len());
        for (_, c) in std::mem::take(&mut d.children) {
            nodes.push(match c {
                Child::Done(n) => n,
                Child::Open(sub) => self.seal_dir(*sub)?,
            });
        }
        let id = self.put_blob(BlobKind::Tree, tree::encode(&nodes))?;
        let mut node = d.node;
        node.content = vec![id];
        Ok(node)
    }

    fn finish_root(&mut self) -> Result<(Id, RootMeta)> {
        let root = std::mem::replace(
            &mut self.root,
            DirBuild::new(Node::new(Vec::new(), NodeKind::Dir)),
        );
        let meta = RootMeta {
            mode: root.node.mode,
            uid: root.node.uid,
            gid: root.node.gid,
            mtime: root.node.mtime,
            mtime_nsec: root.node.mtime_nsec,
        };
        let node = self.seal_dir(root)?;
        Ok((node.content[0], meta))
    }

    fn file_content(
        &mut self,
        e: &mut Entry,
        content: Content<'_>,
    ) -> Result<Option<(Vec<Id>, u64)>> {
        match content {
            Content::None => Ok(Some((Vec::new(), 0))),
            Content::Stream(r) => self.store_stream(r, &e.path).map(Some),
            Content::File(f) => {
                if let Some(ids) = self.unchanged_in_parent(e)? {
                    self.stats.files_unchanged += 1;
                    self.progress.inc(e.node.size);
                    return Ok(Some((ids, e.node.size)));
                }
                self.read_live(e, f)
            }
        }
    }

    /// Read a file of a live tree. Its `fstat` at open and after reading must agree
    /// (device, inode, type, size, mtime, ctime) and match the bytes read; a file
    /// that changed is read once more, and if it changed again it is stored as read
    /// and named in the snapshot's errors, as GNU tar and restic do. A name that no
    /// longer is the file the walk listed (swapped for a symlink, say) is never read.
    fn read_live(&mut self, e: &mut Entry, f: &LiveFile<'_>) -> Result<Option<(Vec<Id>, u64)>> {
        let mut last = None;
        for _ in 0..2 {
            let (mut file, before) = match f.open() {
                Ok(x) => x,
                Err(OpenError::Replaced) if last.is_none() => continue,
                Err(err) => {
                    self.warn(&e.path, err.to_string());
                    return Ok(None);
                }
            };
            let (ids, n) = match self.store_stream(&mut file, &e.path) {
                Ok(r) => r,
                Err(Error::Io { source, .. }) => {
                    self.warn(&e.path, format!("read failed: {source}"));
                    return Ok(None);
                }
                Err(other) => return Err(other),
            };
            let after = FileStat::of(&file).map_err(|err| {
                Error::io(format!("stat {}", String::from_utf8_lossy(&e.path)), err)
            })?;
            // What is stored is described by the `stat` taken when it was read.
            e.node.mtime = before.mtime;
            e.node.mtime_nsec = before.mtime_nsec;
            e.node.ctime = before.ctime;
            e.node.ctime_nsec = before.ctime_nsec;
            if before.unchanged(&after) && n == before.size {
                return Ok(Some((ids, n)));
            }
            last = Some((ids, n));
        }
        match last {
            Some(read) => {
                self.warn(
                    &e.path,
                    "changed while read (twice); stored as read, which may mix old and new content"
                        .into(),
                );
                Ok(Some(read))
            }
            None => {
                self.warn(&e.path, OpenError::Replaced.to_string());
                Ok(None)
            }
        }
    }

    fn unchanged_in_parent(&mut self, e: &Entry) -> Result<Option<Vec<Id>>> {
        let Some(parent) = self.parent.as_mut() else {
            return Ok(None);
        };
        let Some(old) = parent.node(self.repo, &e.path) else {
            return Ok(None);
        };
        let n = &e.node;
        let same = old.kind == NodeKind::File
            && n.inode != 0
            && old.inode == n.inode
            && old.size == n.size
            && old.mtime == n.mtime
            && old.mtime_nsec == n.mtime_nsec
            && old.ctime == n.ctime
            && old.ctime_nsec == n.ctime_nsec;
        if !same {
            return Ok(None);
        }
        for id in &old.content {
            if !self.repo.index().contains(id)? {
                return Ok(None);
            }
        }
        Ok(Some(old.content))
    }
}

impl Sink for Ingest<'_> {
    fn entry(&mut self, mut e: Entry, content: Content<'_>) -> Result<()> {
        self.progress.set_path(&e.path);
        self.newest_mtime = Some(
            self.newest_mtime
                .map_or(e.node.mtime, |n| n.max(e.node.mtime)),
        );
        if e.path.is_empty() {
            if e.node.kind == NodeKind::Dir {
                let children = std::mem::take(&mut self.root.children);
                self.root = DirBuild {
                    node: e.node,
                    children,
                };
            }
            return Ok(());
        }
        if !e.path.split(|b| *b == b'/').all(tree::valid_name) {
            self.warn(
                &e.path,
                "a name in this path cannot be stored; entry skipped".into(),
            );
            return Ok(());
        }
        if let Err(why) = tree::fits(&e.node) {
            self.warn(&e.path, format!("{why}; entry skipped"));
            return Ok(());
        }
        let (_, name) = split_last(&e.path);
        e.node.name = name.to_vec();
        match e.node.kind {
            NodeKind::Dir => {
                self.stats.dirs += 1;
                let path = e.path.clone();
                let d = self.open_dir(&path)?;
                let name = std::mem::take(&mut e.node.name);
                d.node = e.node;
                d.node.name = name;
                Ok(())
            }
            NodeKind::File => {
                if let Some(target) = e.hardlink_to.take() {
                    let group = self.next_group;
                    let Some(t) = self.find_leaf(&target) else {
                        self.warn(
                            &e.path,
                            format!(
                                "hard link to {} which is not in the stream before it",
                                String::from_utf8_lossy(&target)
                            ),
                        );
                        return Ok(());
                    };
                    if t.link_group == 0 {
                        t.link_group = group;
                    }
                    e.node.link_group = t.link_group;
                    e.node.content = t.content.clone();
                    e.node.size = t.size;
                    if t.link_group == group {
                        self.next_group += 1;
                    }
                    self.stats.files += 1;
                    return self.insert(&e.path.clone(), e.node);
                }
                if let Some(key) = e.link_key {
                    if let Some((g, ids, size)) = self.links_by_key.get(&key) {
                        e.node.link_group = *g;
                        e.node.content = ids.clone();
                        e.node.size = *size;
                        self.stats.files += 1;
                        return self.insert(&e.path.clone(), e.node);
                    }
                }
                let Some((ids, size)) = self.file_content(&mut e, content)? else {
                    return Ok(());
                };
                e.node.content = ids;
                e.node.size = size;
                if let Some(key) = e.link_key {
                    e.node.link_group = self.next_group;
                    self.next_group += 1;
                    self.links_by_key
                        .insert(key, (e.node.link_group, e.node.content.clone(), size));
                }
                self.stats.files += 1;
                self.stats.bytes += size;
                self.insert(&e.path.clone(), e.node)
            }
            _ => {
                self.stats.other += 1;
                self.insert(&e.path.clone(), e.node)
            }
        }
    }

    fn dir_done(&mut self, path: &[u8]) -> Result<()> {
        if let Some(p) = self.parent.as_mut() {
            p.forget(path);
        }
        if path.is_empty() {
            return Ok(());
        }
        let (dir, name) = split_last(path);
        let parent = self.open_dir(dir)?;
        let Some(Child::Open(d)) = parent.children.remove(name) else {
            return Ok(());
        };
        let node = self.seal_dir(*d)?;
        let parent = self.open_dir(dir)?;
        parent.children.insert(name.to_vec(), Child::Done(node));
        Ok(())
    }

    fn warn(&mut self, path: &[u8], error: String) {
        let p = String::from_utf8_lossy(path).into_owned();
        self.progress
            .println(&format!("cbsnap: warning: {p}: {error}"));
        self.errors.push(FileError { path: p, error });
    }
}
