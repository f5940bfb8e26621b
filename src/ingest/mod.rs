//! The ingest pipeline: entries → chunks → hash → dedup → compress → packs → index →
//! snapshot commit.
//!
//! ```text
//!  source thread   reader threads        workers (one per core)   writer thread     flusher thread
//!  walk, tree ───► read, FastCDC ──────► BLAKE3, dedup, zstd ───► append to pack ─► fsync, rename,
//!  builder (in     (small files: BLAKE3  (bounded channel)        seal at target    index the pack
//!  walk order)      and dedup here too)                           size
//! ```
//!
//! One big file keeps every core busy: its reader only reads and finds the FastCDC
//! cut points, and the workers hash, deduplicate and compress its chunks in
//! parallel; their ids come back tagged with the chunk's position, so the file's
//! content list keeps its order. A file of one chunk (most small files) is hashed by
//! its reader, which saves the round trip; its compression still runs on the
//! workers. Several files are read at once, by a few reader threads, and applied to
//! the trees in walk order ([`read`]); tar streams are read on the source thread.
//! Fsync of a full pack runs on the flusher thread while the next pack fills; the
//! commit waits for it (packs durable, then indexed, then the snapshot file).
//!
//! Memory is bounded: the channels hold at most a few dozen chunks, the open pack is
//! streamed to disk, and the "pending" set only holds ids that are queued but not yet
//! indexed. Directories are turned into tree blobs as soon as the source says they are
//! complete, so a directory walk keeps only the current path's directories in memory.
//! Nothing is visible to other commands until [`snapshot`] writes the snapshot file,
//! after every pack is durable and indexed (the commit order of `docs/FORMAT.md`).
//!
//! One file per phase: [`pipeline`] (the compress workers, the pack writer and the
//! flusher), [`read`] (chunking a file's bytes, reading a live file), [`parent`] (the
//! parent snapshot's trees, to skip unchanged files), [`tree`] (assembling directories
//! into tree blobs the way `tar -x` would lay them out) and [`sink`] (the entry point
//! a source pushes entries into).

mod parent;
mod pipeline;
mod read;
mod sink;
mod spill;
mod tree;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::{bounded, Sender};

use self::parent::ParentTrees;
use self::pipeline::{compress_worker, write_packs, Job, Pending};
use self::tree::{DirBuild, Leaves};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::packer::Blob;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{Excluded, FileError, Snapshot, SnapshotStats, SourceKind};
use crate::source::dir::LeaveOut;
use crate::source::Sink;
use crate::tree::{Node, NodeKind};

/// What the new snapshot is.
#[derive(Clone)]
pub struct SnapshotSpec {
    pub name: String,
    pub kind: SourceKind,
    pub origin: serde_json::Value,
    pub tags: Vec<String>,
    pub run_id: Option<String>,
    /// What the run this snapshot belongs to set out to cover (`snapshot --all`).
    pub run: Option<crate::snapshot::RunPlan>,
    pub consistency: Option<String>,
    /// The time the snapshot records. An imported old backup (`snapshot --tar FILE
    /// --time TIME`) carries its real date, so it sorts among the older snapshots
    /// instead of becoming `@latest`.
    pub time: SnapshotTime,
    /// The snapshot to compare against: its files that look unchanged (size, mtime,
    /// ctime, inode) are not read again.
    pub parent: Option<(Id, Snapshot)>,
}

impl SnapshotSpec {
    /// A snapshot of `kind` named `name`: no origin, tags, run or parent, taken now.
    /// Callers fill in the rest with struct update syntax.
    pub fn new(name: impl Into<String>, kind: SourceKind) -> SnapshotSpec {
        SnapshotSpec {
            name: name.into(),
            kind,
            origin: serde_json::Value::Null,
            tags: Vec::new(),
            run_id: None,
            run: None,
            consistency: None,
            time: SnapshotTime::Now,
            parent: None,
        }
    }
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

struct Ingest<'a> {
    repo: &'a Repository,
    tx: Option<Sender<(Job, pipeline::Held)>>,
    in_flight: std::sync::Arc<pipeline::InFlight>,
    pending: &'a Mutex<Pending>,
    stopped: &'a AtomicBool,
    root: DirBuild,
    /// The leaves of `root` written to disk (a tar import's, see [`tree`]).
    leaves: Leaves,
    parent: Option<ParentTrees>,
    links_by_key: HashMap<(u64, u64), (u64, Vec<Id>, u64)>,
    next_group: u64,
    stats: SnapshotStats,
    errors: Vec<FileError>,
    /// Entries the source left out on purpose ([`Sink::left_out`]).
    excluded: Vec<Excluded>,
    /// The source's name, for the notices of what is left out.
    source: String,
    progress: Progress,
    /// The newest mtime of any entry (for [`SnapshotTime::NewestEntry`]).
    newest_mtime: Option<i64>,
    /// Files being read by the reader threads, and what waits for them.
    ahead: read::ReadAhead,
    /// Chunks of changed files taken at their parent's cuts (tests check it).
    known_chunks: usize,
}

/// What a directory walk into `repo` leaves out ([`crate::source::dir::walk`]): the
/// directories the repository writes on this host ([`Repository::own_dirs`]). A
/// snapshot of a directory that holds them (a home directory holds the default
/// repository) would otherwise store the repository's new packs again every night,
/// and the repository would grow by everything it ever added.
pub fn own_dirs(repo: &Repository) -> LeaveOut {
    let mut leave_out = LeaveOut::default();
    for (dir, what) in repo.own_dirs() {
        leave_out.dir(&dir, what);
    }
    leave_out
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
    snapshot_with(
        repo,
        spec,
        progress,
        read::default_readers(),
        tree::SPILL_AFTER,
        source,
    )
    .map(|(id, snap, _)| (id, snap))
}

/// What a snapshot did that its result does not show; tests check it.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(not(test), allow(dead_code))]
struct Counts {
    /// Runs of leaves written to disk ([`tree::SPILL_AFTER`]).
    spill_runs: usize,
    /// Chunks of changed files taken at their parent's cuts
    /// ([`crate::chunker::Chunker::next_known`]).
    known_chunks: usize,
}

/// [`snapshot`] with `readers` reader threads for the files of a directory walk (0:
/// they are read on the source thread). The snapshot is the same for every count.
#[cfg(test)]
fn snapshot_with_readers(
    repo: &Repository,
    spec: SnapshotSpec,
    progress: &Progress,
    readers: usize,
    source: impl FnOnce(&mut dyn Sink) -> Result<()>,
) -> Result<(Id, Snapshot, Counts)> {
    snapshot_with(repo, spec, progress, readers, tree::SPILL_AFTER, source)
}

/// [`snapshot`], writing leaves to disk once more than `spill_after` are held.
#[cfg(test)]
fn snapshot_spilling(
    repo: &Repository,
    spec: SnapshotSpec,
    progress: &Progress,
    spill_after: usize,
    source: impl FnOnce(&mut dyn Sink) -> Result<()>,
) -> Result<(Id, Snapshot, Counts)> {
    snapshot_with(
        repo,
        spec,
        progress,
        read::default_readers(),
        spill_after,
        source,
    )
}

/// The one implementation of [`snapshot`]: see [`snapshot_with_readers`] and
/// [`snapshot_spilling`] for `readers` and `spill_after`.
fn snapshot_with(
    repo: &Repository,
    spec: SnapshotSpec,
    progress: &Progress,
    readers: usize,
    spill_after: usize,
    source: impl FnOnce(&mut dyn Sink) -> Result<()>,
) -> Result<(Id, Snapshot, Counts)> {
    let started = Instant::now();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let (job_tx, job_rx) = bounded::<(Job, pipeline::Held)>(workers * 8);
    let (st_tx, st_rx) = bounded::<(Blob, pipeline::Held)>(workers * 8);
    let pending: Mutex<Pending> = Mutex::new(Pending::default());
    // Set by the source on its own failure, to stop the writer without committing.
    let abort = AtomicBool::new(false);
    // Set when the writer (or a worker's hand-over to it) failed: the source stops early.
    let stopped = AtomicBool::new(false);
    let level = repo.config.zstd_level;
    // The parent's size is a good estimate of this run's: it gives the bar an ETA.
    if let Some((_, p)) = &spec.parent {
        progress.set_total(p.stats.bytes);
    }

    let (ahead_tx, ahead_rx) = bounded(parent::AHEAD_BATCHES);
    let parent = match &spec.parent {
        Some((id, p)) => Some(ParentTrees::new(
            repo,
            id,
            p.tree,
            parent::started_ns(p),
            parent::same_reader(&spec.origin, &p.origin),
            ahead_rx,
        )?),
        None => None,
    };

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
        // Stops when `ing`, which holds the receiving end, is dropped at the end. A tar
        // stream has no inodes, so nothing in it is taken from the parent
        // (`parent_says`) and no tree is read ahead for it.
        match &spec.parent {
            Some((_, p)) if spec.kind != SourceKind::Tar => {
                let root = p.tree;
                named("cbsnap-parent", s, move || {
                    parent::read_ahead(repo, root, ahead_tx)
                });
            }
            _ => drop(ahead_tx),
        }
        let writer = named("cbsnap-writer", s, || {
            write_packs(repo, st_rx, &pending, &abort, &stopped)
        });

        let feed = pipeline::Feed {
            repo,
            tx: job_tx,
            in_flight: std::sync::Arc::new(pipeline::InFlight::new(workers)),
            pending: &pending,
            stopped: &stopped,
            progress: progress.clone(),
        };
        let ahead = read::ReadAhead::start(s, readers, &feed, &abort);
        let mut ing = Ingest {
            repo,
            in_flight: std::sync::Arc::clone(&feed.in_flight),
            tx: Some(feed.tx),
            pending: &pending,
            stopped: &stopped,
            root: DirBuild::new(Node::new(Vec::new(), NodeKind::Dir)),
            leaves: Leaves::new(spill_after),
            parent,
            links_by_key: HashMap::new(),
            next_group: 1,
            stats: SnapshotStats::default(),
            errors: Vec::new(),
            excluded: Vec::new(),
            source: spec.name.clone(),
            progress: progress.clone(),
            newest_mtime: None,
            ahead,
            known_chunks: 0,
        };
        let ran = source(&mut ing)
            .and_then(|_| ing.apply_ready(true))
            .and_then(|_| ing.finish_root());
        if ran.is_err() {
            abort.store(true, Ordering::SeqCst);
        }
        // Closing the job channel lets the workers and then the writer drain and stop.
        ing.tx = None;
        ing.ahead.stop();
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Source("pack writer panicked".into())));
        // The first cause wins: a source that stopped because the writer did (disk
        // full) reports the writer's error; a writer stopped by the source's failure
        // (`abort`, reported as `Interrupted`) gives way to the source's error.
        let ((tree, root), w) = crate::error::first_cause(ran, written)?;
        repo.index().flush()?;
        let mut stats = ing.stats;
        stats.new_blobs = w.blobs;
        stats.new_bytes_raw = w.raw_bytes;
        stats.new_bytes_stored = w.stored_bytes;
        stats.duration_secs = started.elapsed().as_secs_f64();
        let snap = Snapshot {
            name: spec.name,
            kind: spec.kind,
            origin: spec.origin,
            hostname: crate::host::hostname(),
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
            excluded: ing.excluded,
            cbsnap_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        repo.check_lock()?;
        let id = snap.save(repo.storage(), repo.crypt())?;
        // Every blob it references was found in the index or written to it above. The
        // record only spares the next snapshot lookups: failing to write it must not
        // turn a committed snapshot into a reported failure.
        let _ = repo.index().mark_snapshot_indexed(&id);
        let counts = Counts {
            spill_runs: ing.leaves.runs(),
            known_chunks: ing.known_chunks,
        };
        Ok((id, snap, counts))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker;
    use crate::repo::Access;
    use crate::source::{Content, Entry};
    use rand::{RngCore, SeedableRng};
    use std::collections::HashSet;

    /// A path snapshot named `t`, taken now, without a parent.
    fn test_spec() -> SnapshotSpec {
        SnapshotSpec::new("t", SourceKind::Path)
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
                    && crate::fsutil::os_code(source) == Some(libc::ENOTDIR)),
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

        let nodes = crate::tree::decode(&repo.read_blob(&snap.tree).unwrap()).unwrap();
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
