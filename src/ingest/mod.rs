//! The ingest pipeline: entries → chunks → hash → dedup → compress → packs → index →
//! snapshot commit.
//!
//! ```text
//!  source thread          workers (one per core)     writer thread       flusher thread
//!  read, FastCDC ───────► BLAKE3, dedup, zstd ─────► append to pack ───► fsync, rename,
//!  (small files: BLAKE3   (bounded channel)          seal at target      index the pack
//!   and dedup here too)                              size
//! ```
//!
//! One big file keeps every core busy: the source thread only reads and finds the
//! FastCDC cut points, and the workers hash, deduplicate and compress its chunks in
//! parallel; their ids come back tagged with the chunk's position, so the file's
//! content list keeps its order. A file of one chunk (most small files) is hashed on
//! the source thread, which saves the round trip; its compression still runs on the
//! workers, overlapping with reading the next files. This scales with the number of
//! cores as long as one thread can read and chunk (FastCDC runs at ~1.3 GiB/s per
//! core, BLAKE3 and zstd are the expensive stages and are spread). Fsync of a full
//! pack runs on the flusher thread while the next pack fills; the commit waits for
//! it (packs durable, then indexed, then the snapshot file).
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

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{self, BlobKind, Compression, PackWriter, SealedPack};
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

/// The id of chunk `seq` of a file, or why it could not be stored.
type ChunkReply = (usize, Result<Id>);

/// Work for the compress workers.
enum Job {
    /// A blob the source thread already hashed and claimed (see [`claim`]): compress
    /// it and pass it to the writer.
    Store {
        id: Id,
        kind: BlobKind,
        raw: Vec<u8>,
    },
    /// Chunk `seq` of a file of several chunks: hash it, claim it, compress and store
    /// it if new, and send its id back on `reply`.
    Chunk {
        seq: usize,
        raw: Vec<u8>,
        reply: Sender<ChunkReply>,
    },
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
    // Set by the source on its own failure, to stop the writer without committing.
    let abort = AtomicBool::new(false);
    // Set when the writer (or a worker's hand-over to it) failed: the source stops early.
    let stopped = AtomicBool::new(false);
    let level = repo.config.zstd_level;
    // The parent's size is a good estimate of this run's: it gives the bar an ETA.
    if let Some((_, p)) = &spec.parent {
        progress.set_total(p.stats.bytes);
    }

    std::thread::scope(|s| {
        for _ in 0..workers {
            let rx = job_rx.clone();
            let tx = st_tx.clone();
            let (pending, stopped) = (&pending, &stopped);
            named("cbsnap-worker", s, move || {
                compress_worker(repo, pending, stopped, rx, tx, level)
            });
        }
        drop(job_rx);
        drop(st_tx);
        let writer = named("cbsnap-writer", s, || {
            write_packs(repo, st_rx, &pending, &abort, &stopped)
        });

        let mut ing = Ingest {
            repo,
            tx: Some(job_tx),
            pending: &pending,
            stopped: &stopped,
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
        // (`abort`, reported as `Interrupted`) gives way to the source's error.
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
        repo.check_lock()?;
        let id = snap.save(repo.storage())?;
        Ok((id, snap))
    })
}

/// Spawn a scoped thread with a name (it shows in `top -H` and `perf report --sort
/// comm`). Panics when the OS cannot create a thread, as `Scope::spawn` does.
fn named<'scope, T: Send + 'scope>(
    name: &str,
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(s, f)
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
}

/// Whether the blob `id` must be stored: true when neither the repository nor the
/// queue has it, and it is now in the queue (`pending`). Checked under the lock: the
/// flusher indexes a pack before it removes the pack's ids from `pending`, so an id
/// is always in one or the other.
fn claim(repo: &Repository, pending: &Mutex<HashSet<Id>>, id: &Id) -> Result<bool> {
    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
    if p.contains(id) || repo.index().contains(id)? {
        return Ok(false);
    }
    p.insert(*id);
    Ok(true)
}

fn writer_stopped() -> Error {
    Error::PipelineStopped
}

/// Hash (for [`Job::Chunk`]), deduplicate, compress, hand to the writer. A worker
/// keeps draining its jobs after the writer stopped, so that every chunk of a file
/// gets a reply and the source never waits for one that will not come.
fn compress_worker(
    repo: &Repository,
    pending: &Mutex<HashSet<Id>>,
    stopped: &AtomicBool,
    rx: Receiver<Job>,
    tx: Sender<Stored>,
    level: i32,
) {
    for job in rx {
        let (id, kind, raw, reply) = match job {
            Job::Store { id, kind, raw } => (id, kind, raw, None),
            Job::Chunk { seq, raw, reply } => {
                let id = Id::hash(&raw);
                match claim(repo, pending, &id) {
                    Ok(true) => (id, BlobKind::Data, raw, Some((seq, reply))),
                    Ok(false) => {
                        let _ = reply.send((seq, Ok(id)));
                        continue;
                    }
                    Err(e) => {
                        let _ = reply.send((seq, Err(e)));
                        continue;
                    }
                }
            }
        };
        let sent = !stopped.load(Ordering::Relaxed) && {
            let raw_len = raw.len() as u32;
            let (bytes, compression) = pack::compress_vec(raw, level);
            let out = Stored {
                id,
                kind,
                raw_len,
                bytes,
                compression,
            };
            tx.send(out).is_ok()
        };
        if !sent {
            stopped.store(true, Ordering::Relaxed);
        }
        if let Some((seq, reply)) = reply {
            let _ = reply.send((seq, if sent { Ok(id) } else { Err(writer_stopped()) }));
        }
    }
}

/// The only writer of packs. Full packs go to a flusher thread that makes them
/// durable and indexes them while the next pack fills; this returns only after the
/// flusher has finished every pack handed to it. Ids leave the pending set only
/// after they are indexed, so a concurrent dedup check always finds a blob in one of
/// the two.
fn write_packs(
    repo: &Repository,
    rx: Receiver<Stored>,
    pending: &Mutex<HashSet<Id>>,
    abort: &AtomicBool,
    stopped: &AtomicBool,
) -> Result<WriterStats> {
    let dir = repo.packs_dir();
    let target = repo.config.pack_target_size;
    let mut stats = WriterStats::default();
    let mut cur: Option<PackWriter> = None;
    // One pack may wait while others are made durable: at most 1 + transfers full
    // packs are in flight (a path repository: one fsync at a time; a remote one:
    // `transfers` uploads).
    let transfers = repo.transfers();
    let (seal_tx, seal_rx) = bounded::<SealedPack>(1);
    let flush_failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let result = std::thread::scope(|s| {
        let flushers: Vec<_> = (0..transfers)
            .map(|_| {
                let rx = seal_rx.clone();
                let (failed, first) = (&flush_failed, &first_error);
                named("cbsnap-flusher", s, move || {
                    flush_packs(repo, rx, pending, failed, first)
                })
            })
            .collect();
        drop(seal_rx);
        let seal = |w: PackWriter| -> Result<bool> {
            let sealed = w
                .seal()
                .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e))?;
            // A send fails only when the flusher stopped on an error, reported below.
            Ok(seal_tx.send(sealed).is_ok())
        };
        let filled = (|| {
            for s in rx.iter() {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                if cur.is_none() {
                    cur =
                        Some(PackWriter::create(&dir).map_err(|e| {
                            Error::io(format!("create pack in {}", dir.display()), e)
                        })?);
                }
                let w = cur.as_mut().expect("pack is open");
                w.add(s.id, s.kind, s.raw_len, &s.bytes, s.compression)
                    .map_err(|e| Error::io(format!("write pack in {}", dir.display()), e))?;
                stats.blobs += 1;
                stats.raw += s.raw_len as u64;
                stats.stored += s.bytes.len() as u64;
                if w.size() >= target && !seal(cur.take().expect("pack is open"))? {
                    return Err(writer_stopped());
                }
            }
            if abort.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            if let Some(w) = cur.take() {
                if !seal(w)? {
                    return Err(writer_stopped());
                }
            }
            Ok(())
        })();
        drop(seal_tx);
        for f in flushers {
            if f.join().is_err() {
                record_first(&first_error, Error::Source("pack flusher panicked".into()));
            }
        }
        // A flusher's failure is the first cause of the writer's "stopped".
        match first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => filled,
        }
    });
    if let Some(w) = cur.take() {
        w.abandon();
    }
    if result.is_err() {
        stopped.store(true, Ordering::Relaxed);
    }
    // Dropping `rx` on error makes the workers' sends fail, which stops the pipeline.
    result.map(|_| stats)
}

/// Keep `e` if it is the first error of the flushers (the cause to report).
fn record_first(first: &Mutex<Option<Error>>, e: Error) {
    let mut slot = first.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// Make each sealed pack a repository file ([`Repository::commit_pack`]: fsync and
/// rename, or upload), then index it, then drop its ids from `pending`: the commit
/// order of `docs/FORMAT.md`. Several run at once for a remote repository. On an
/// error (the first is kept in `first`) every flusher stops and the packs still
/// queued are dropped, which removes their temporary files.
fn flush_packs(
    repo: &Repository,
    rx: Receiver<SealedPack>,
    pending: &Mutex<HashSet<Id>>,
    failed: &AtomicBool,
    first: &Mutex<Option<Error>>,
) {
    for sealed in rx {
        if failed.load(Ordering::SeqCst) {
            return;
        }
        let r = repo.commit_pack(sealed).and_then(|(pid, size, entries)| {
            repo.index().add_pack(&pid, size, &entries)?;
            Ok(entries)
        });
        match r {
            Ok(entries) => {
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                for e in &entries {
                    p.remove(&e.id);
                }
            }
            Err(e) => {
                record_first(first, e);
                failed.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
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

    fn dir(name: &[u8]) -> Child {
        Child::Open(Box::new(DirBuild::new(Node::new(
            name.to_vec(),
            NodeKind::Dir,
        ))))
    }
}

/// Drops nested directories with an explicit stack: a hostile tar can nest them
/// deeper than the thread's stack would survive a recursive drop.
impl Drop for DirBuild {
    fn drop(&mut self) {
        let mut stack: Vec<Box<DirBuild>> = Vec::new();
        let take = |d: &mut DirBuild, stack: &mut Vec<Box<DirBuild>>| {
            for (_, c) in std::mem::take(&mut d.children) {
                if let Child::Open(sub) = c {
                    stack.push(sub);
                }
            }
        };
        take(self, &mut stack);
        while let Some(mut d) = stack.pop() {
            take(&mut d, &mut stack);
        }
    }
}

/// How a path's directories resolve, as `tar -x` into an empty directory would.
enum Resolved {
    /// The path itself: only directories (or nothing yet) on the way.
    AsIs,
    /// The directory's components (symlinks along the way followed).
    Dir(Vec<Vec<u8>>),
    /// `tar -x` would fail here too; the reason, for the snapshot's errors.
    Fails(String),
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
            .and_then(|id| tree::load(&|id| repo.read_blob(id), &id).ok())
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

/// The non-empty components of `path`, owned.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
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
    stopped: &'a AtomicBool,
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
    fn send(&self, job: Job) -> Result<()> {
        let tx = self.tx.as_ref().expect("pipeline is open");
        if self.stopped.load(Ordering::Relaxed) || tx.send(job).is_err() {
            // The writer stopped (disk full, I/O error); its error is reported by `snapshot`.
            return Err(writer_stopped());
        }
        Ok(())
    }

    /// Queue a blob unless the repository has it or it is already queued.
    fn put_blob(&mut self, kind: BlobKind, raw: Vec<u8>) -> Result<Id> {
        if raw.len() > pack::MAX_BLOB as usize {
            return Err(Error::Source(format!(
                "a {kind:?} blob of {} bytes exceeds the {}-byte blob limit (a cbsnap bug: please report it)",
                raw.len(),
                pack::MAX_BLOB
            )));
        }
        let id = Id::hash(&raw);
        if claim(self.repo, self.pending, &id)? {
            self.send(Job::Store { id, kind, raw })?;
        }
        Ok(id)
    }

    /// Chunk a file's bytes and store the chunks; returns their ids in file order and
    /// the number of bytes read. The first chunk is held back: if it is the only one
    /// it is hashed here ([`Ingest::put_blob`]); once a second one arrives, every
    /// chunk goes to the workers to be hashed in parallel, and this waits for their
    /// ids at the end of the file.
    fn store_stream(&mut self, r: &mut dyn Read, path: &[u8]) -> Result<(Vec<Id>, u64)> {
        let params = self.repo.config.chunker.clone();
        let mut first: Option<Vec<u8>> = None;
        let (reply_tx, reply_rx) = unbounded::<ChunkReply>();
        let mut count = 0usize;
        let mut failed: Option<Error> = None;
        let n = chunker::chunk_stream(
            r,
            &params,
            |c| {
                let len = c.len() as u64;
                let sent = match count {
                    0 => {
                        first = Some(c);
                        Ok(())
                    }
                    _ => {
                        let send = |seq, raw| {
                            let reply = reply_tx.clone();
                            self.send(Job::Chunk { seq, raw, reply })
                        };
                        match first.take() {
                            Some(head) => send(0, head).and_then(|_| send(count, c)),
                            None => send(count, c),
                        }
                    }
                };
                match sent {
                    Ok(()) => {
                        count += 1;
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
        drop(reply_tx);
        if let Some(e) = failed {
            return Err(e);
        }
        let n = match n {
            Ok(n) => n,
            Err(Some(io)) => {
                return Err(Error::io(
                    format!("read {}", String::from_utf8_lossy(path)),
                    io,
                ))
            }
            Err(None) => unreachable!("pipeline errors are returned above"),
        };
        if let Some(only) = first {
            return Ok((vec![self.put_blob(BlobKind::Data, only)?], n));
        }
        let mut ids: Vec<Option<Id>> = vec![None; count];
        // Ends when every job of this file has been answered (their senders dropped).
        for (seq, id) in reply_rx.iter() {
            ids[seq] = Some(id?);
        }
        let ids = ids
            .into_iter()
            .collect::<Option<Vec<Id>>>()
            .ok_or_else(|| Error::Source("a compress worker stopped".into()))?;
        Ok((ids, n))
    }

    /// Resolve the directories of `path` the way `tar -x` into an empty directory
    /// does: a symlink on the way whose target is relative and stays below it is
    /// followed (its target must already exist, as GNU tar needs), any other
    /// non-directory on the way makes extraction fail. `explicit_last`: the last
    /// component is a directory entry itself, which replaces a non-directory there.
    fn resolve(&self, path: &[u8], explicit_last: bool) -> Resolved {
        // The common case, without allocating: directories all the way.
        let mut cur: Option<&DirBuild> = Some(&self.root);
        let mut comps = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .peekable();
        let mut plain = true;
        while let Some(c) = comps.next() {
            let last = comps.peek().is_none();
            cur = match cur.and_then(|d| d.children.get(c)) {
                Some(Child::Open(d)) => Some(d),
                None => None,
                Some(Child::Done(n)) if n.kind == NodeKind::Dir || (last && explicit_last) => None,
                Some(Child::Done(_)) => {
                    plain = false;
                    break;
                }
            };
        }
        if plain {
            return Resolved::AsIs;
        }
        let mut todo: std::collections::VecDeque<Vec<u8>> = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let mut out: Vec<Vec<u8>> = Vec::new();
        // Components that come from a symlink's target and must exist.
        let mut must_exist = 0usize;
        let mut hops = 0;
        let shown = |out: &[Vec<u8>], c: &[u8]| {
            let mut p = out.join(&b'/');
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(c);
            String::from_utf8_lossy(&p).into_owned()
        };
        // `cur`: the open directory at `out`, while every component so far exists.
        let mut cur: Option<&DirBuild> = Some(&self.root);
        while let Some(c) = todo.pop_front() {
            let last = todo.is_empty();
            let existing = cur.and_then(|d| d.children.get(&c));
            let linked = must_exist > 0;
            must_exist = must_exist.saturating_sub(1);
            match existing {
                None if linked => {
                    return Resolved::Fails(format!(
                        "written through a symlink whose target {} is not in the archive before it (tar -x fails: No such file or directory); not stored",
                        shown(&out, &c)
                    ))
                }
                None => {
                    cur = None;
                    out.push(c);
                }
                Some(Child::Open(d)) => {
                    cur = Some(d);
                    out.push(c);
                }
                Some(Child::Done(n)) if n.kind == NodeKind::Dir => {
                    cur = None;
                    out.push(c);
                }
                Some(Child::Done(_)) if last && explicit_last => {
                    cur = None;
                    out.push(c);
                }
                Some(Child::Done(n)) if n.kind == NodeKind::Symlink => {
                    hops += 1;
                    let t = &n.target;
                    let comps: Vec<Vec<u8>> = t
                        .split(|b| *b == b'/')
                        .filter(|c| !c.is_empty() && *c != b".")
                        .map(<[u8]>::to_vec)
                        .collect();
                    if t.first() == Some(&b'/') || comps.iter().any(|c| c == b"..") || hops > 40
                    {
                        return Resolved::Fails(format!(
                            "written through the symlink {} -> {}, which tar -x does not follow (absolute, leaves its directory, or loops); not stored",
                            shown(&out, &c),
                            String::from_utf8_lossy(t)
                        ));
                    }
                    must_exist = comps.len();
                    for tc in comps.into_iter().rev() {
                        todo.push_front(tc);
                    }
                    // Resolve the target from the symlink's own directory again.
                    cur = self.dir_at(&out);
                }
                Some(Child::Done(_)) => {
                    return Resolved::Fails(format!(
                        "{} is not a directory in the archive (tar -x fails: Not a directory); not stored",
                        shown(&out, &c)
                    ))
                }
            }
        }
        Resolved::Dir(out)
    }

    /// The open directory at `comps`, if every component is one.
    fn dir_at(&self, comps: &[Vec<u8>]) -> Option<&DirBuild> {
        let mut cur = &self.root;
        for c in comps {
            cur = match cur.children.get(c)? {
                Child::Open(d) => d,
                Child::Done(_) => return None,
            };
        }
        Some(cur)
    }

    /// The open directory at `path`, creating missing directories on the way (a tar
    /// stream may name a file before, or without, its directories). `None` (recorded
    /// in the snapshot's errors) where `tar -x` would fail too, see [`Self::resolve`].
    /// `entry` is the path of the entry being stored, named if it cannot be.
    fn open_dir(
        &mut self,
        path: &[u8],
        explicit: bool,
        entry: &[u8],
    ) -> Result<Option<&mut DirBuild>> {
        let comps = match self.resolve(path, explicit) {
            Resolved::AsIs => components(path),
            Resolved::Dir(c) => c,
            Resolved::Fails(why) => {
                self.warn(entry, why);
                return Ok(None);
            }
        };
        let mut cur = &mut self.root;
        for comp in comps {
            let child = cur
                .children
                .entry(comp)
                .or_insert_with_key(|k| DirBuild::dir(k));
            if let Child::Done(n) = child {
                if n.kind == NodeKind::Dir {
                    return Err(Error::Source(format!(
                        "entry below {} arrived after the directory was complete",
                        String::from_utf8_lossy(path)
                    )));
                }
                // A directory entry replaces a non-directory of its name, as tar -x does.
                *child = DirBuild::dir(&n.name);
            }
            cur = match child {
                Child::Open(d) => d,
                Child::Done(_) => unreachable!("replaced above"),
            };
        }
        Ok(Some(cur))
    }

    fn find_leaf(&mut self, path: &[u8]) -> Option<&mut Node> {
        let (dir, name) = split_last(path);
        let comps = match self.resolve(dir, false) {
            Resolved::AsIs => components(dir),
            Resolved::Dir(c) => c,
            Resolved::Fails(_) => return None,
        };
        let mut cur = &mut self.root;
        for comp in &comps {
            cur = match cur.children.get_mut(comp)? {
                Child::Open(d) => d,
                Child::Done(_) => return None,
            };
        }
        match cur.children.get_mut(name)? {
            Child::Done(n) if n.kind == NodeKind::File => Some(n),
            _ => None,
        }
    }

    /// Put a non-directory at `path`. It replaces an earlier entry of the name, as
    /// `tar -x` does, except a directory that holds entries: there `tar -x` fails
    /// (`File exists`) and keeps the directory, so this does too and records it.
    /// Returns whether the node was stored.
    fn insert(&mut self, path: &[u8], node: Node) -> Result<bool> {
        let (dir, name) = split_last(path);
        let Some(d) = self.open_dir(dir, false, path)? else {
            return Ok(false);
        };
        if let Some(Child::Open(old)) = d.children.get(name) {
            if !old.children.is_empty() {
                self.warn(
                    path,
                    "a non-directory entry of the name of an earlier directory that holds entries (tar -x fails: File exists); the directory is kept, the entry not stored".into(),
                );
                return Ok(false);
            }
        }
        d.children.insert(name.to_vec(), Child::Done(node));
        Ok(true)
    }

    /// Store one directory's tree ([`tree::write`] splits one too large for a blob).
    fn write_tree(&mut self, nodes: &[Node]) -> Result<Id> {
        tree::write(nodes, |raw| self.put_blob(BlobKind::Tree, raw))
    }

    /// Write the tree of an open directory (children first) and return its node.
    /// Post-order with an explicit stack: the depth comes from untrusted input.
    fn seal_dir(&mut self, mut d: DirBuild) -> Result<Node> {
        struct Frame {
            node: Node,
            rest: std::collections::btree_map::IntoIter<Vec<u8>, Child>,
            done: Vec<Node>,
        }
        let frame = |d: &mut DirBuild| Frame {
            node: std::mem::replace(&mut d.node, Node::new(Vec::new(), NodeKind::Dir)),
            done: Vec::with_capacity(d.children.len()),
            rest: std::mem::take(&mut d.children).into_iter(),
        };
        let mut stack = vec![frame(&mut d)];
        loop {
            let top = stack
                .last_mut()
                .expect("the stack holds the directory being sealed");
            match top.rest.next() {
                Some((_, Child::Done(n))) => top.done.push(n),
                Some((_, Child::Open(mut sub))) => stack.push(frame(&mut sub)),
                None => {
                    let f = stack.pop().expect("checked above");
                    let id = self.write_tree(&f.done)?;
                    let mut node = f.node;
                    node.content = vec![id];
                    match stack.last_mut() {
                        Some(parent) => parent.done.push(node),
                        None => return Ok(node),
                    }
                }
            }
        }
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
        // The parent's blobs cannot be pruned while this snapshot holds its shared
        // lock, but the index may have lost them (a pack deleted by hand, then
        // `sync_index`): then the file is read again rather than referenced.
        if !self.repo.index().contains_all(&old.content)? {
            return Ok(None);
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
        if tree::truncate_owner_names(&mut e.node) {
            self.warn(
                &e.path,
                format!(
                    "owner or group name longer than {} bytes; stored cut to that length",
                    tree::MAX_OWNER_NAME
                ),
            );
        }
        let (_, name) = split_last(&e.path);
        e.node.name = name.to_vec();
        match e.node.kind {
            NodeKind::Dir => {
                let path = e.path.clone();
                let Some(d) = self.open_dir(&path, true, &e.path)? else {
                    return Ok(());
                };
                let name = std::mem::take(&mut e.node.name);
                d.node = e.node;
                d.node.name = name;
                self.stats.dirs += 1;
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
                    // One inode: `tar -x` gives the link the target's metadata, and
                    // restore creates whichever name comes first in the tree.
                    let name = std::mem::take(&mut e.node.name);
                    e.node = t.clone();
                    e.node.name = name;
                    if t.link_group == group {
                        self.next_group += 1;
                    }
                    if self.insert(&e.path.clone(), e.node)? {
                        self.stats.files += 1;
                    }
                    return Ok(());
                }
                if let Some(key) = e.link_key {
                    if let Some((g, ids, size)) = self.links_by_key.get(&key) {
                        e.node.link_group = *g;
                        e.node.content = ids.clone();
                        e.node.size = *size;
                        if self.insert(&e.path.clone(), e.node)? {
                            self.stats.files += 1;
                        }
                        return Ok(());
                    }
                }
                let Some((ids, size)) = self.file_content(&mut e, content)? else {
                    return Ok(());
                };
                e.node.content = ids;
                e.node.size = size;
                // Only now is the chunk list known: a file of millions of chunks can
                // outgrow what one tree blob holds.
                if let Err(why) = tree::fits(&e.node) {
                    self.warn(&e.path, format!("{why}; file not stored"));
                    return Ok(());
                }
                if let Some(key) = e.link_key {
                    e.node.link_group = self.next_group;
                    self.next_group += 1;
                    self.links_by_key
                        .insert(key, (e.node.link_group, e.node.content.clone(), size));
                }
                if self.insert(&e.path.clone(), e.node)? {
                    self.stats.files += 1;
                    self.stats.bytes += size;
                }
                Ok(())
            }
            _ => {
                if self.insert(&e.path.clone(), e.node)? {
                    self.stats.other += 1;
                }
                Ok(())
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
        let Some(parent) = self.open_dir(dir, false, path)? else {
            return Ok(());
        };
        let Some(Child::Open(d)) = parent.children.remove(name) else {
            return Ok(());
        };
        let node = self.seal_dir(*d)?;
        if let Some(parent) = self.open_dir(dir, false, path)? {
            parent.children.insert(name.to_vec(), Child::Done(node));
        }
        Ok(())
    }

    fn warn(&mut self, path: &[u8], error: String) {
        let p = String::from_utf8_lossy(path).into_owned();
        self.progress
            .println(&format!("cbsnap: warning: {p}: {error}"));
        self.errors.push(FileError { path: p, error });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Access;
    use rand::{RngCore, SeedableRng};

    /// A path snapshot named `t`, taken now, without a parent.
    fn test_spec() -> SnapshotSpec {
        SnapshotSpec {
            name: "t".into(),
            kind: SourceKind::Path,
            origin: serde_json::Value::Null,
            tags: Vec::new(),
            run_id: None,
            run: None,
            consistency: None,
            time: SnapshotTime::Now,
            parent: None,
        }
    }

    fn seeded(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    fn chunk_ids(data: &[u8]) -> Vec<Id> {
        let mut ids = Vec::new();
        let p = crate::config::ChunkerParams::default();
        let sink = |c: Vec<u8>| {
            ids.push(Id::hash(&c));
            Ok::<(), std::io::Error>(())
        };
        chunker::chunk_stream(data, &p, sink, |e| e).unwrap();
        ids
    }

    /// When the pack writer fails, its error is the one reported, not the "writer
    /// stopped" that the source thread sees as a consequence.
    #[test]
    fn a_failing_pack_writer_is_the_reported_cause() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        Repository::init(&root).unwrap();
        let repo = Repository::open(&root, Access::Append).unwrap();
        // Packs cannot be created below a regular file (ENOTDIR, even for root).
        std::fs::remove_dir_all(repo.packs_dir()).unwrap();
        std::fs::write(repo.packs_dir(), b"not a directory").unwrap();
        let data = seeded(16 << 20, 3);
        let spec = test_spec();
        let progress = Progress::new(true, "test");
        let err = snapshot(&repo, spec, &progress, |sink| {
            for i in 0..4 {
                let mut n = Node::new(Vec::new(), NodeKind::File);
                n.size = data.len() as u64;
                let e = Entry::new(format!("f{i}").into_bytes(), n);
                sink.entry(e, Content::Stream(&mut &data[..]))?;
            }
            Ok(())
        })
        .map(|_| ())
        .unwrap_err();
        assert!(
            matches!(&err, Error::Io { context, source }
                if context.starts_with("create pack in")
                    && source.raw_os_error() == Some(libc::ENOTDIR)),
            "{err:?}"
        );
        assert!(repo.snapshots_dir().read_dir().unwrap().next().is_none());
    }

    /// Files of many chunks are hashed on the workers, out of order: each file must
    /// still list its chunks in file order, a chunk repeated while an earlier copy is
    /// still in flight must be stored once, and every byte must come back.
    #[test]
    fn parallel_chunks_keep_file_order_and_store_each_blob_once() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        Repository::init(&root).unwrap();
        let repo = Repository::open(&root, Access::Append).unwrap();
        let (a, b) = (seeded(3 << 20, 1), seeded(1 << 20, 2));
        let big = [&a[..], &b, &a, &a].concat();
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("big", big.clone()),
            ("empty", Vec::new()),
            ("one-chunk", b"hello".to_vec()),
            ("same-big", big),
            ("tail-of-a", a[a.len() - 100_000..].to_vec()),
        ];
        let spec = test_spec();
        let progress = Progress::new(true, "test");
        let (_, snap) = snapshot(&repo, spec, &progress, |sink| {
            for (name, data) in &files {
                let mut n = Node::new(Vec::new(), NodeKind::File);
                n.mode = 0o644;
                n.size = data.len() as u64;
                let e = Entry::new(name.as_bytes().to_vec(), n);
                sink.entry(e, Content::Stream(&mut &data[..]))?;
            }
            Ok(())
        })
        .unwrap();

        let nodes = tree::decode(&repo.read_blob(&snap.tree).unwrap()).unwrap();
        let mut distinct = HashSet::new();
        for (name, data) in &files {
            let node = nodes
                .iter()
                .find(|n| n.name == name.as_bytes())
                .unwrap_or_else(|| panic!("{name} missing from the tree"));
            let want = chunk_ids(data);
            assert!(name.ends_with("big") == (want.len() > 60), "{name}");
            assert_eq!(node.content, want, "{name}: chunk ids out of order");
            let joined: Vec<u8> = node
                .content
                .iter()
                .flat_map(|id| repo.read_blob(id).unwrap())
                .collect();
            assert!(&joined == data, "{name}: restored bytes differ");
            distinct.extend(want);
        }
        // Every distinct chunk once, plus the root tree.
        assert_eq!(snap.stats.new_blobs, distinct.len() as u64 + 1);
        assert!(repo
            .index()
            .contains_all(&distinct.into_iter().collect::<Vec<_>>())
            .unwrap());
        assert!(!repo
            .index()
            .contains_all(&[Id::hash(b"not stored")])
            .unwrap());
    }
}
